/* power: shell-averaged power spectrum of a distributed field (include/cerberus/power.h).
 *
 * MODEL.md section 1: P(k) = V^2 / L^3 |f(k)|^2, f the forward DFT, averaged over the modes
 * whose |k| falls in each bin. At creation every local half-complex mode gets its bin (or -1:
 * k = 0 or outside the bins) and its weight w V^2 / L^3 / W(k)^2, w the hermitian weight
 * (1 on the c = 0 and c = N/2 columns, which hold k and -k separately, 2 elsewhere, where -k
 * is implied), W the CIC window when asked. The mode counts and the mean |k| per shell do not
 * depend on the data and are reduced once there; power_measure is one r2c, one pass over the
 * local modes and one MPI_Allreduce of n_bins sums. */
#include "cerberus/power.h"

#include "cerberus/logevent.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double power_pi = 3.14159265358979323846;

static double sinc(double x) {
  return fabs(x) < 1e-8 ? 1.0 - x * x / 6.0 : sin(x) / x;
}

void power_destroy(power **pp) {
  if (!pp || !*pp) return;
  power *p = *pp;
  free(p->k_lo);
  free(p->k_hi);
  free(p->k_mean);
  free(p->n_modes);
  free(p->pk);
  free(p->bin);
  free(p->weight);
  free(p->sum);
  fftw_free(p->work);
  free(p);
  *pp = NULL;
}

int power_create(field *f, const power_config *cfg, power **out) {
  *out = NULL;
  const ptrdiff_t n = f->n, nc = f->nc;
  const double kf = 2.0 * power_pi / f->L, kny = kf * (double)(n / 2);
  CB_CHECK(cfg->k_min >= 0, CB_ERR_INPUT, "-k_min must be non-negative (got %g)", cfg->k_min);
  CB_CHECK(cfg->k_max >= 0, CB_ERR_INPUT, "-k_max must be non-negative (got %g)", cfg->k_max);
  CB_CHECK(cfg->dk >= 0, CB_ERR_INPUT, "-dk must be non-negative (got %g)", cfg->dk);
  CB_CHECK(cfg->n_bins >= 0, CB_ERR_INPUT, "-n_bins must be non-negative (got %d)", cfg->n_bins);
  double dk = cfg->n_bins > 0 || cfg->dk == 0 ? kf : cfg->dk;
  double k_min = cfg->k_min > 0 ? cfg->k_min : 0.5 * dk;
  double k_max = cfg->k_max > 0 ? cfg->k_max : kny + 0.5 * kf;
  CB_CHECK(isfinite(k_min) && isfinite(k_max) && isfinite(dk) && k_max > k_min, CB_ERR_INPUT,
           "-k_max (%g h/Mpc) must be larger than -k_min (%g h/Mpc)", k_max, k_min);
  int nb;
  if (cfg->n_bins > 0) {
    nb = cfg->n_bins;
    dk = (k_max - k_min) / nb;
  } else {
    double want = ceil((k_max - k_min) / dk * (1.0 - 1e-12));
    CB_CHECK(want <= 1e6, CB_ERR_INPUT, "-dk %g h/Mpc makes %.0f bins (at most 1e6)", dk, want);
    nb = (int)want;
  }
  CB_CHECK(nb >= 1 && nb <= 1000000, CB_ERR_INPUT, "-n_bins must be in [1, 1e6] (got %d)", nb);

  power *p;
  CB_CALLOC(p, 1);
  p->f = f;
  p->n_bins = nb;
  p->k_lo = calloc((size_t)nb, sizeof(double));
  p->k_hi = calloc((size_t)nb, sizeof(double));
  p->k_mean = calloc((size_t)nb, sizeof(double));
  p->n_modes = calloc((size_t)nb, sizeof(double));
  p->pk = calloc((size_t)nb, sizeof(double));
  p->sum = calloc((size_t)nb, sizeof(double));
  size_t nm = (size_t)(f->n_complex_local > 0 ? f->n_complex_local : 1);
  p->bin = calloc(nm, sizeof *p->bin);
  p->weight = calloc(nm, sizeof *p->weight);
  p->work = field_alloc_complex(f);
  if (!p->k_lo || !p->k_hi || !p->k_mean || !p->n_modes || !p->pk || !p->sum || !p->bin ||
      !p->weight || !p->work) {
    power_destroy(&p);
    return CB_ERROR(CB_ERR_MEM, "out of memory for a power spectrum with %d bins", nb);
  }
  for (int b = 0; b < nb; b++) {
    p->k_lo[b] = k_min + dk * b;
    p->k_hi[b] = k_min + dk * (b + 1);
  }
  const double cell = f->L / (double)n, V = cell * cell * cell;
  const double norm = V * V / (f->L * f->L * f->L);
  /* sinc^2(k_i L / (2N)) = sinc^2(pi a / N) per axis, tabulated on the signed index */
  double *w1 = calloc((size_t)n, sizeof *w1);
  if (!w1) {
    power_destroy(&p);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the CIC window");
  }
  for (ptrdiff_t a = 0; a < n; a++) {
    double s = sinc(power_pi * (double)field_freq(f, a) / (double)n);
    w1[a] = s * s;
  }
  double *ksum = p->sum; /* reuse as scratch for the mean k */
  for (ptrdiff_t il = 0; il < f->local_n0; il++) {
    ptrdiff_t i = f->local_0_start + il;
    double ka = field_k_of(f, i);
    for (ptrdiff_t j = 0; j < n; j++) {
      double kb = field_k_of(f, j);
      for (ptrdiff_t c = 0; c < nc; c++) {
        ptrdiff_t m = (il * n + j) * nc + c;
        double kc = kf * (double)c;
        double k = sqrt(ka * ka + kb * kb + kc * kc);
        int b = -1;
        if (k > 0 && k >= k_min) {
          double x = floor((k - k_min) / dk);
          if (x < nb) b = (int)x;
          /* rounding at the edges: keep the bins' [k_lo, k_hi) promise exactly */
          while (b >= 0 && k < p->k_lo[b]) b--;
          while (b >= 0 && b < nb && k >= p->k_hi[b]) b = b + 1 < nb ? b + 1 : -1;
        }
        double w = field_hermitian_weight(f, c);
        p->bin[m] = b;
        double win = 1.0;
        if (cfg->deconvolve_cic) {
          double W = w1[i] * w1[j] * w1[c];
          win = 1.0 / (W * W);
        }
        p->weight[m] = b >= 0 ? w * norm * win : 0.0;
        if (b >= 0) {
          p->n_modes[b] += w;
          ksum[b] += w * k;
        }
      }
    }
  }
  free(w1);
  MPI_Allreduce(MPI_IN_PLACE, p->n_modes, nb, MPI_DOUBLE, MPI_SUM, f->comm);
  MPI_Allreduce(MPI_IN_PLACE, ksum, nb, MPI_DOUBLE, MPI_SUM, f->comm);
  for (int b = 0; b < nb; b++)
    p->k_mean[b] = p->n_modes[b] > 0 ? ksum[b] / p->n_modes[b] : 0.5 * (p->k_lo[b] + p->k_hi[b]);
  *out = p;
  return CB_OK;
}

int power_measure_complex(power *p, const fftw_complex *xk) {
  const field *f = p->f;
  logevent_begin(LOGEVENT_POWER);
  memset(p->sum, 0, (size_t)p->n_bins * sizeof *p->sum);
  for (ptrdiff_t m = 0; m < f->n_complex_local; m++) {
    int b = p->bin[m];
    if (b < 0) continue;
    double re = creal(xk[m]), im = cimag(xk[m]);
    p->sum[b] += p->weight[m] * (re * re + im * im);
  }
  MPI_Allreduce(p->sum, p->pk, p->n_bins, MPI_DOUBLE, MPI_SUM, f->comm);
  for (int b = 0; b < p->n_bins; b++) p->pk[b] = p->n_modes[b] > 0 ? p->pk[b] / p->n_modes[b] : 0;
  logevent_end(LOGEVENT_POWER);
  return CB_OK;
}

int power_measure(power *p, const double *x) {
  CB_CALL(field_r2c(p->f, x, p->work));
  CB_CALL(power_measure_complex(p, p->work));
  return CB_OK;
}
