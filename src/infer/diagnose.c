/* diagnose: convergence diagnostics of MCMC draws (include/cerberus/diagnose.h, MODEL.md
 * section 8).
 *
 * Inputs: n_chains x n_draws draws of one quantity, chain-major. Outputs: rank-normalised split
 * R-hat (bulk, folded, their maximum), bulk, tail and mean ESS, the MCSE of the mean, mean, sd
 * and quantiles, following Vehtari et al. (2021) line for line as ArviZ implements them
 * (arviz/stats/diagnostics.py: _ess, _rhat, _rhat_rank, _z_scale, _split_chains, _ess_bulk,
 * _ess_tail, _ess_quantile, _mcse_mean), so the numbers agree with ArviZ's and posterior's to
 * rounding. Autocovariances come from GSL's radix-2 real FFT of the zero-padded chain. Every
 * function allocates its own scratch (they are not in any hot loop). Not collective. */
#include "cerberus/diagnose.h"

#include "cerberus/status.h"

#include <float.h>
#include <gsl/gsl_cdf.h>
#include <gsl/gsl_fft_halfcomplex.h>
#include <gsl/gsl_fft_real.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static bool all_finite(size_t n, const double *x) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return false;
  return true;
}

int diagnose_autocov(size_t n, const double *x, double *acov) {
  CB_CHECK(n > 0, CB_ERR_INPUT, "autocovariance of an empty chain");
  size_t m = 1;
  while (m < 2 * n) m <<= 1;
  double *buf = calloc(m, sizeof *buf);
  CB_CHECK(buf != NULL, CB_ERR_MEM, "out of memory for an autocovariance of %zu draws", n);
  double mean = 0;
  for (size_t i = 0; i < n; i++) mean += x[i];
  mean /= (double)n;
  for (size_t i = 0; i < n; i++) buf[i] = x[i] - mean;
  gsl_fft_real_radix2_transform(buf, 1, m);
  /* Half-complex layout: buf[0] = Re_0, buf[i] = Re_i, buf[m-i] = Im_i, buf[m/2] = Re_{m/2}. */
  buf[0] *= buf[0];
  buf[m / 2] *= buf[m / 2];
  for (size_t i = 1; i < m / 2; i++) {
    buf[i] = buf[i] * buf[i] + buf[m - i] * buf[m - i];
    buf[m - i] = 0;
  }
  gsl_fft_halfcomplex_radix2_inverse(buf, 1, m);
  for (size_t t = 0; t < n; t++) acov[t] = buf[t] / (double)n;
  free(buf);
  return CB_OK;
}

/* ArviZ's _ess on chains as given (n_chains x n_draws). */
static double ess_chains(size_t nc, size_t nd, const double *x) {
  size_t S = nc * nd;
  if (nd < 2 || !all_finite(S, x)) return NAN;
  double lo = x[0], hi = x[0];
  for (size_t i = 1; i < S; i++) {
    lo = fmin(lo, x[i]);
    hi = fmax(hi, x[i]);
  }
  if (hi - lo < 1e-15) return (double)S; /* numpy's float resolution */
  double *acov = malloc(S * sizeof *acov), *rho = calloc(nd, sizeof *rho),
         *cm = malloc(nc * sizeof *cm);
  double ess = NAN;
  if (!acov || !rho || !cm) goto done;
  for (size_t c = 0; c < nc; c++) {
    if (diagnose_autocov(nd, x + c * nd, acov + c * nd) != CB_OK) goto done;
    double s = 0;
    for (size_t d = 0; d < nd; d++) s += x[c * nd + d];
    cm[c] = s / (double)nd;
  }
  double n = (double)nd;
  double a0 = 0;
  for (size_t c = 0; c < nc; c++) a0 += acov[c * nd];
  a0 /= (double)nc;
  double mean_var = a0 * n / (n - 1.0);
  double var_plus = mean_var * (n - 1.0) / n;
  if (nc > 1) {
    double m = 0, v = 0;
    for (size_t c = 0; c < nc; c++) m += cm[c];
    m /= (double)nc;
    for (size_t c = 0; c < nc; c++) v += (cm[c] - m) * (cm[c] - m);
    var_plus += v / (double)(nc - 1);
  }
  double a1 = 0;
  for (size_t c = 0; c < nc; c++) a1 += acov[c * nd + 1];
  a1 /= (double)nc;
  double rho_even = 1.0, rho_odd = 1.0 - (mean_var - a1) / var_plus;
  rho[0] = rho_even;
  rho[1] = rho_odd;
  /* Geyer's initial positive sequence (indices as in ArviZ; max_t may be -1 for 2-3 draws). */
  ptrdiff_t t = 1, N = (ptrdiff_t)nd;
  while (t < N - 3 && rho_even + rho_odd > 0.0) {
    double e = 0, o = 0;
    for (size_t c = 0; c < nc; c++) {
      e += acov[c * nd + (size_t)t + 1];
      o += acov[c * nd + (size_t)t + 2];
    }
    rho_even = 1.0 - (mean_var - e / (double)nc) / var_plus;
    rho_odd = 1.0 - (mean_var - o / (double)nc) / var_plus;
    if (rho_even + rho_odd >= 0) {
      rho[t + 1] = rho_even;
      rho[t + 2] = rho_odd;
    }
    t += 2;
  }
  ptrdiff_t max_t = t - 2;
  if (rho_even > 0) rho[max_t + 1] = rho_even;
  /* Geyer's initial monotone sequence. */
  for (t = 1; t <= max_t - 2; t += 2) {
    if (rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]) {
      rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0;
      rho[t + 2] = rho[t + 1];
    }
  }
  double sum = 0;
  for (ptrdiff_t i = 0; i <= max_t; i++) sum += rho[i];
  double tau = -1.0 + 2.0 * sum + (max_t + 1 < N ? rho[max_t + 1] : 0.0);
  tau = fmax(tau, 1.0 / log10((double)S));
  ess = (double)S / tau;
  for (size_t i = 0; i < nd; i++)
    if (isnan(rho[i])) ess = NAN;
done:
  free(acov);
  free(rho);
  free(cm);
  return ess;
}

/* Split each chain in halves: out has 2 nc chains of nd / 2 draws (the middle draw of an odd
 * count left out, as ArviZ's _split_chains: the first half and the last half). */
static double *split(size_t nc, size_t nd, const double *x) {
  size_t h = nd / 2;
  double *y = malloc((nc * h > 0 ? 2 * nc * h : 1) * sizeof *y);
  if (!y) return NULL;
  for (size_t c = 0; c < nc; c++) {
    memcpy(y + c * h, x + c * nd, h * sizeof *y);
    memcpy(y + (nc + c) * h, x + c * nd + nd - h, h * sizeof *y);
  }
  return y;
}

typedef struct ranked {
  double v;
  size_t i;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
  double x = ((const ranked *)a)->v, y = ((const ranked *)b)->v;
  return (x > y) - (x < y);
}

/* In place: x <- Phi^-1((rank - 3/8) / (S - 3/4 + 1)), average ranks for ties. */
static int z_scale(size_t S, double *x) {
  ranked *r = malloc((S ? S : 1) * sizeof *r);
  if (!r) return CB_ERR_MEM;
  for (size_t i = 0; i < S; i++) r[i] = (ranked){x[i], i};
  qsort(r, S, sizeof *r, cmp_ranked);
  for (size_t i = 0; i < S;) {
    size_t j = i;
    while (j + 1 < S && r[j + 1].v == r[i].v) j++;
    double rank = 0.5 * ((double)(i + 1) + (double)(j + 1));
    double z = gsl_cdf_ugaussian_Pinv((rank - 0.375) / ((double)S - 0.75 + 1.0));
    for (size_t k = i; k <= j; k++) x[r[k].i] = z;
    i = j + 1;
  }
  free(r);
  return CB_OK;
}

/* ArviZ's _rhat on chains as given. */
static double rhat_chains(size_t nc, size_t nd, const double *x) {
  if (nc < 2 || nd < 2 || !all_finite(nc * nd, x)) return NAN;
  double n = (double)nd, mm = 0, W = 0, B = 0;
  double *cm = malloc(nc * sizeof *cm);
  if (!cm) return NAN;
  for (size_t c = 0; c < nc; c++) {
    double s = 0;
    for (size_t d = 0; d < nd; d++) s += x[c * nd + d];
    cm[c] = s / n;
    double v = 0;
    for (size_t d = 0; d < nd; d++) v += (x[c * nd + d] - cm[c]) * (x[c * nd + d] - cm[c]);
    W += v / (n - 1.0);
    mm += cm[c];
  }
  W /= (double)nc;
  mm /= (double)nc;
  for (size_t c = 0; c < nc; c++) B += (cm[c] - mm) * (cm[c] - mm);
  B = n * B / (double)(nc - 1);
  free(cm);
  return sqrt((B / W + n - 1.0) / n);
}

static bool valid(size_t nc, size_t nd, const double *x) {
  return nc >= 1 && nd >= 4 && x && all_finite(nc * nd, x);
}

/* fn (rhat_chains or ess_chains) of the split chains, rank-normalised first when ranked. */
static double on_split(size_t nc, size_t nd, const double *x, bool ranked,
                       double (*fn)(size_t, size_t, const double *)) {
  if (!valid(nc, nd, x)) return NAN;
  double *y = split(nc, nd, x);
  if (!y) return NAN;
  double r = !ranked || z_scale(2 * nc * (nd / 2), y) == CB_OK ? fn(2 * nc, nd / 2, y) : NAN;
  free(y);
  return r;
}

double diagnose_rhat_split(size_t nc, size_t nd, const double *x) {
  return on_split(nc, nd, x, false, rhat_chains);
}

double diagnose_rhat_bulk(size_t nc, size_t nd, const double *x) {
  return on_split(nc, nd, x, true, rhat_chains);
}

static double median(size_t n, const double *x) {
  return diagnose_quantile(n, x, 0.5);
}

double diagnose_rhat_tail(size_t nc, size_t nd, const double *x) {
  if (!valid(nc, nd, x)) return NAN;
  size_t S = nc * nd;
  double *f = malloc(S * sizeof *f);
  if (!f) return NAN;
  double med = median(S, x);
  for (size_t i = 0; i < S; i++) f[i] = fabs(x[i] - med);
  double r = diagnose_rhat_bulk(nc, nd, f);
  free(f);
  return r;
}

double diagnose_rhat(size_t nc, size_t nd, const double *x) {
  double b = diagnose_rhat_bulk(nc, nd, x), t = diagnose_rhat_tail(nc, nd, x);
  if (isnan(b) || isnan(t)) return NAN;
  return fmax(b, t);
}

double diagnose_ess_raw(size_t nc, size_t nd, const double *x) {
  if (!valid(nc, nd, x)) return NAN;
  return ess_chains(nc, nd, x);
}

double diagnose_ess_mean(size_t nc, size_t nd, const double *x) {
  return on_split(nc, nd, x, false, ess_chains);
}

double diagnose_ess_bulk(size_t nc, size_t nd, const double *x) {
  return on_split(nc, nd, x, true, ess_chains);
}

double diagnose_ess_quantile(size_t nc, size_t nd, const double *x, double prob) {
  if (!valid(nc, nd, x) || !(prob >= 0 && prob <= 1)) return NAN;
  size_t S = nc * nd;
  double q = diagnose_quantile(S, x, prob);
  double *ind = malloc(S * sizeof *ind);
  if (!ind) return NAN;
  for (size_t i = 0; i < S; i++) ind[i] = x[i] <= q ? 1.0 : 0.0;
  double e = diagnose_ess_mean(nc, nd, ind);
  free(ind);
  return e;
}

double diagnose_ess_tail(size_t nc, size_t nd, const double *x) {
  double lo = diagnose_ess_quantile(nc, nd, x, 0.05), hi = diagnose_ess_quantile(nc, nd, x, 0.95);
  if (isnan(lo) || isnan(hi)) return NAN;
  return fmin(lo, hi);
}

static double sd_of(size_t S, const double *x, double *mean) {
  double m = 0, v = 0;
  for (size_t i = 0; i < S; i++) m += x[i];
  m /= (double)S;
  for (size_t i = 0; i < S; i++) v += (x[i] - m) * (x[i] - m);
  if (mean) *mean = m;
  return sqrt(v / (double)(S - 1));
}

double diagnose_mcse_mean(size_t nc, size_t nd, const double *x) {
  if (!valid(nc, nd, x)) return NAN;
  return sd_of(nc * nd, x, NULL) / sqrt(diagnose_ess_mean(nc, nd, x));
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double diagnose_quantile(size_t n, const double *x, double prob) {
  if (n == 0 || !x || !(prob >= 0 && prob <= 1) || !all_finite(n, x)) return NAN;
  double *s = malloc(n * sizeof *s);
  if (!s) return NAN;
  memcpy(s, x, n * sizeof *s);
  qsort(s, n, sizeof *s, cmp_double);
  double h = prob * (double)(n - 1);
  size_t lo = (size_t)floor(h);
  if (lo >= n - 1) lo = n - 1;
  double q = lo + 1 < n ? s[lo] + (h - (double)lo) * (s[lo + 1] - s[lo]) : s[lo];
  free(s);
  return q;
}

int diagnose_summary(const char *what, size_t nc, size_t nd, const double *x, diagnose_stats *s) {
  CB_CHECK(nc >= 1 && nd >= 4, CB_ERR_INPUT, "%s: %zu chains of %zu draws, need at least 4 draws",
           what, nc, nd);
  CB_CHECK(x != NULL && all_finite(nc * nd, x), CB_ERR_INPUT, "%s: a draw is NaN or infinite",
           what);
  size_t S = nc * nd;
  s->sd = sd_of(S, x, &s->mean);
  s->q05 = diagnose_quantile(S, x, 0.05);
  s->q95 = diagnose_quantile(S, x, 0.95);
  s->mcse_mean = diagnose_mcse_mean(nc, nd, x);
  s->ess_bulk = diagnose_ess_bulk(nc, nd, x);
  s->ess_tail = diagnose_ess_tail(nc, nd, x);
  s->rhat = diagnose_rhat(nc, nd, x);
  CB_CHECK(!isnan(s->q05) && !isnan(s->ess_bulk), CB_ERR_MEM, "%s: out of memory for diagnostics",
           what);
  return CB_OK;
}
