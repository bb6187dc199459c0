/* test_power: the power spectrum estimator (include/cerberus/power.h) at 1-4 ranks.
 *
 * - mode counts and mean |k| per shell against a brute-force count over the full complex grid
 *   (every (a, b, c) in [-N/2, N/2)^3, no hermitian shortcut); all bins together hold
 *   N^3 - 1 modes;
 * - white noise of unit variance has P = V exactly in expectation, and n_b P_b / V is exactly
 *   chi2(n_b) (each hermitian pair gives chi2(2), each self-conjugate mode chi2(1)): every
 *   shell within its two-sided 99.9% / n_bins interval, at a fixed seed;
 * - CIC deconvolution: a field multiplied by W(k) = prod sinc^2(pi a / N) in k space, measured
 *   with deconvolution, gives the P(k) of the field itself;
 * - the same P(k) on any number of ranks as on rank 0 alone;
 * - user bins (-k_min, -k_max, -dk, -n_bins) and their bad values. */
#include "testing.h"

#include "cerberus/field.h"
#include "cerberus/ic.h"
#include "cerberus/power.h"
#include "cerberus/status.h"

#include <complex.h>
#include <gsl/gsl_cdf.h>
#include <stdlib.h>
#include <string.h>

static const double pi = 3.14159265358979323846;

static void test_counts(MPI_Comm comm) {
  const ptrdiff_t n = 20;
  const double L = 173.0, kf = 2 * pi / L;
  field *f = NULL;
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field 20^3");
  power *p = NULL;
  power_config cfg = {0};
  TEST_STATUS(power_create(f, &cfg, &p), CB_OK, "default bins");
  TEST_CHECK(p->n_bins == n / 2, "%d default bins, expected %td", p->n_bins, n / 2);
  int nb = p->n_bins;
  double *cnt = calloc((size_t)nb, sizeof(double)), *ks = calloc((size_t)nb, sizeof(double));
  for (ptrdiff_t a = -n / 2; a < n / 2; a++) /* every rank counts the whole grid */
    for (ptrdiff_t b = -n / 2; b < n / 2; b++)
      for (ptrdiff_t c = -n / 2; c < n / 2; c++) {
        double k = kf * sqrt((double)(a * a + b * b + c * c));
        int bin = (int)floor(k / kf + 0.5) - 1; /* shells centred on kf, 2 kf, ... */
        if (a == 0 && b == 0 && c == 0) continue;
        if (bin >= 0 && bin < nb) {
          cnt[bin] += 1;
          ks[bin] += k;
        }
      }
  for (int b = 0; b < nb; b++) {
    TEST_CLOSE(p->k_lo[b], (b + 0.5) * kf, 1e-14, "k_lo");
    TEST_CLOSE(p->k_hi[b], (b + 1.5) * kf, 1e-14, "k_hi");
    TEST_CHECK(p->n_modes[b] == cnt[b], "shell %d: %g modes, brute force %g", b, p->n_modes[b],
               cnt[b]);
    TEST_CLOSE(p->k_mean[b], ks[b] / cnt[b], 1e-12, "mean k of a shell");
  }
  TEST_CHECK(cnt[0] == 18, "first shell: %g modes (6 at kf, 12 at sqrt(2) kf)", cnt[0]);
  power_destroy(&p);
  TEST_CHECK(p == NULL, "power_destroy leaves NULL");
  /* one bin holding everything: N^3 - 1 modes */
  cfg = (power_config){.k_min = 0.01 * kf, .k_max = 2 * kf * n, .n_bins = 1};
  TEST_STATUS(power_create(f, &cfg, &p), CB_OK, "one bin");
  if (p) TEST_CHECK(p->n_modes[0] == (double)(n * n * n - 1), "%g modes in all", p->n_modes[0]);
  power_destroy(&p);
  /* -dk and -k_min / -k_max */
  cfg = (power_config){.k_min = 0.05, .k_max = 0.3, .dk = 0.02};
  TEST_STATUS(power_create(f, &cfg, &p), CB_OK, "dk bins");
  if (p) {
    TEST_CHECK(p->n_bins == 13, "%d bins of 0.02 from 0.05 to 0.3 (13 expected)", p->n_bins);
    TEST_CLOSE(p->k_lo[0], 0.05, 1e-14, "first edge");
    TEST_CLOSE(p->k_hi[12], 0.31, 1e-14, "last edge (rounded up to whole bins)");
  }
  power_destroy(&p);
  /* bad values, each naming its option */
  const char *names[] = {"-k_min", "-k_max", "-dk", "-n_bins", "-k_max"};
  power_config bad[] = {
      {.k_min = -0.1}, {.k_max = -1}, {.dk = -0.01}, {.n_bins = -3}, {.k_min = 0.4, .k_max = 0.2}};
  for (int i = 0; i < 5; i++) {
    int st = power_create(f, &bad[i], &p);
    TEST_CHECK(st == CB_ERR_INPUT && p == NULL && strstr(status_message(), names[i]),
               "bad bins %d: status %d '%s'", i, st, status_message());
    status_clear();
  }
  free(cnt);
  free(ks);
  field_destroy(&f);
}

static void measure(MPI_Comm comm, ptrdiff_t n, double L, unsigned long seed, double *pk, int nb) {
  field *f = NULL;
  power *p = NULL;
  power_config cfg = {0};
  field_create(comm, n, L, 1, &f);
  double *s = field_alloc_real(f);
  ic_white_noise(f, seed, s);
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) s[i] = 1.3 * s[i] + 0.4 * s[i] * s[i];
  power_create(f, &cfg, &p);
  power_measure(p, s);
  memcpy(pk, p->pk, (size_t)nb * sizeof(double));
  power_destroy(&p);
  fftw_free(s);
  field_destroy(&f);
}

static void test_white_noise(MPI_Comm comm) {
  const ptrdiff_t n = 32;
  const double L = 300.0, V = pow(L / (double)n, 3);
  field *f = NULL;
  power *p = NULL;
  power_config cfg = {0};
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field 32^3");
  double *s = field_alloc_real(f);
  ic_white_noise(f, 31337, s);
  TEST_STATUS(power_create(f, &cfg, &p), CB_OK, "power");
  TEST_STATUS(power_measure(p, s), CB_OK, "measure");
  double alpha = 0.001 / p->n_bins, total = 0, nmodes = 0;
  for (int b = 0; b < p->n_bins; b++) {
    double x = p->n_modes[b] * p->pk[b] / V;
    double lo = gsl_cdf_chisq_Pinv(alpha / 2, p->n_modes[b]);
    double hi = gsl_cdf_chisq_Qinv(alpha / 2, p->n_modes[b]);
    TEST_CHECK(x > lo && x < hi, "white noise shell %d: n P / V = %g outside [%g, %g] (n = %g)", b,
               x, lo, hi, p->n_modes[b]);
    total += x;
    nmodes += p->n_modes[b];
  }
  double lo = gsl_cdf_chisq_Pinv(0.0005, nmodes), hi = gsl_cdf_chisq_Qinv(0.0005, nmodes);
  TEST_CHECK(total > lo && total < hi, "white noise: sum n P / V = %g outside [%g, %g]", total, lo,
             hi);
  if (f->rank == 0)
    printf("white noise: sum_b n_b P_b / V = %.1f for %.0f modes (99.9%%: [%.1f, %.1f])\n", total,
           nmodes, lo, hi);

  /* CIC deconvolution: y(k) = W(k) s(k) */
  fftw_complex *sk = field_alloc_complex(f);
  double *y = field_alloc_real(f);
  field_r2c(f, s, sk);
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t c = 0; c < f->nc; c++) {
        double w = 1;
        ptrdiff_t idx[3] = {field_freq(f, f->local_0_start + il), field_freq(f, j), c};
        for (int d = 0; d < 3; d++) {
          double x = pi * (double)idx[d] / (double)n;
          double sinc = idx[d] == 0 ? 1.0 : sin(x) / x;
          w *= sinc * sinc;
        }
        sk[(il * n + j) * f->nc + c] *= w;
      }
  field_c2r(f, sk, y);
  power *pd = NULL;
  power_config dcfg = {.deconvolve_cic = true};
  TEST_STATUS(power_create(f, &dcfg, &pd), CB_OK, "power with deconvolution");
  power_measure(pd, y);
  double err = 0, changed = 0;
  for (int b = 0; b < p->n_bins; b++) err = fmax(err, fabs(pd->pk[b] / p->pk[b] - 1));
  power_measure(p, y); /* without deconvolution the window shows */
  for (int b = 0; b < p->n_bins; b++) changed = fmax(changed, fabs(pd->pk[b] / p->pk[b] - 1));
  TEST_CHECK(err < 1e-10, "deconvolved P(k) of W s differs from P(k) of s by %g", err);
  TEST_CHECK(changed > 0.1, "the CIC window changes P(k) by only %g", changed);
  power_destroy(&pd);
  fftw_free(sk);
  fftw_free(y);
  power_destroy(&p);
  fftw_free(s);
  field_destroy(&f);
}

static void test_ranks(MPI_Comm comm, int rank) {
  const ptrdiff_t n = 24;
  const int nb = 12;
  double pk[12], ref[12];
  measure(comm, n, 99.5, 4711, pk, nb);
  MPI_Comm self;
  MPI_Comm_split(comm, rank == 0 ? 0 : MPI_UNDEFINED, 0, &self);
  if (self != MPI_COMM_NULL) {
    measure(self, n, 99.5, 4711, ref, nb);
    double err = 0;
    for (int b = 0; b < nb; b++) err = fmax(err, fabs(pk[b] / ref[b] - 1));
    TEST_CHECK(err < 1e-12, "P(k) on %d ranks differs from 1 rank by %g", testing_size(), err);
    MPI_Comm_free(&self);
  }
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  test_counts(comm);
  test_white_noise(comm);
  test_ranks(comm, testing_rank());
  return testing_finish();
}
