/* test_diagnose: R-hat, ESS and MCSE (MODEL.md section 8) against truths computed here.
 *
 * - The FFT autocovariance equals the direct sum (1/n) sum_i (x_i - m)(x_{i+t} - m).
 * - An independent transcription of the R package posterior's formulas (ess_rfun, rhat_rfun,
 *   z_scale with ranks counted pairwise, autocovariances summed directly) on small ragged
 *   inputs (odd draw counts, ties) gives the same bulk/tail R-hat, bulk/tail/mean ESS.
 * - AR(1) chains: ESS of the mean against the analytic N (1 - rho) / (1 + rho), for rho = 0.6,
 *   0.9 and the antithetic -0.3 (more effective draws than draws).
 * - Well-mixed chains have R-hat below 1.01; chains split between two modes are flagged.
 * - Quantiles by linear interpolation; a constant input (ESS = S, R-hat NaN); fewer than 4 draws
 *   or a NaN draw is CB_ERR_INPUT naming the quantity. */
#include "testing.h"

#include "cerberus/diagnose.h"
#include "cerberus/status.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reference: posterior's R code transcribed (1-based comments) ---- */

static void ref_acov(size_t n, const double *x, double *acov) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m += x[i];
  m /= (double)n;
  for (size_t t = 0; t < n; t++) {
    double s = 0;
    for (size_t i = 0; i + t < n; i++) s += (x[i] - m) * (x[i + t] - m);
    acov[t] = s / (double)n;
  }
}

/* mean(acov[t1, ]) in R, t1 1-based */
static double acovmean(const double *acov, size_t chains, size_t n, long t1) {
  double s = 0;
  for (size_t c = 0; c < chains; c++) s += acov[c * n + (size_t)t1 - 1];
  return s / (double)chains;
}

/* ess_rfun: sims is chains x n (chain-major). */
static double ref_ess(size_t chains, size_t n, const double *sims) {
  double *acov = malloc(chains * n * sizeof *acov), *rho = calloc(n + 2, sizeof *rho);
  double *cm = malloc(chains * sizeof *cm);
  for (size_t c = 0; c < chains; c++) {
    ref_acov(n, sims + c * n, acov + c * n);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += sims[c * n + i];
    cm[c] = s / (double)n;
  }
  double mean_var = acovmean(acov, chains, n, 1) * (double)n / (double)(n - 1);
  double var_plus = mean_var * (double)(n - 1) / (double)n;
  if (chains > 1) {
    double mm = 0, v = 0;
    for (size_t c = 0; c < chains; c++) mm += cm[c];
    mm /= (double)chains;
    for (size_t c = 0; c < chains; c++) v += (cm[c] - mm) * (cm[c] - mm);
    var_plus += v / (double)(chains - 1);
  }
  /* rho[1..n] 1-based */
  long t = 0;
  double even = 1, odd;
  rho[t + 1] = even;
  odd = 1 - (mean_var - acovmean(acov, chains, n, t + 2)) / var_plus;
  rho[t + 2] = odd;
  /* posterior runs while t < n - 5; ArviZ's bound (t < n_draw - 3 in its indexing) is one
   * pair later, t < n - 4 here: they differ only when the positive sequence runs to the end,
   * as it does for the short, strongly correlated chains below. diagnose follows ArviZ. */
  while (t < (long)n - 4 && even + odd > 0) {
    t += 2;
    even = 1 - (mean_var - acovmean(acov, chains, n, t + 1)) / var_plus;
    odd = 1 - (mean_var - acovmean(acov, chains, n, t + 2)) / var_plus;
    if (even + odd >= 0) {
      rho[t + 1] = even;
      rho[t + 2] = odd;
    }
  }
  long max_t = t;
  if (even > 0) rho[max_t + 1] = even;
  t = 0;
  while (t <= max_t - 4) {
    t += 2;
    if (rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]) {
      rho[t + 1] = (rho[t - 1] + rho[t]) / 2;
      rho[t + 2] = rho[t + 1];
    }
  }
  double ess = (double)(chains * n), sum = 0;
  for (long i = 1; i <= max_t; i++) sum += rho[i];
  double tau = -1 + 2 * sum + rho[max_t + 1];
  if (tau < 1 / log10(ess)) tau = 1 / log10(ess);
  free(acov), free(rho), free(cm);
  return ess / tau;
}

static double ref_rhat(size_t chains, size_t n, const double *sims) {
  double W = 0, mm = 0, B = 0;
  double *cm = malloc(chains * sizeof *cm);
  for (size_t c = 0; c < chains; c++) {
    double s = 0, v = 0;
    for (size_t i = 0; i < n; i++) s += sims[c * n + i];
    cm[c] = s / (double)n;
    for (size_t i = 0; i < n; i++) v += pow(sims[c * n + i] - cm[c], 2);
    W += v / (double)(n - 1) / (double)chains;
    mm += cm[c] / (double)chains;
  }
  for (size_t c = 0; c < chains; c++) B += pow(cm[c] - mm, 2);
  B *= (double)n / (double)(chains - 1);
  double var_hat = (double)(n - 1) / (double)n * W + B / (double)n;
  free(cm);
  return sqrt(var_hat / W);
}

/* split_chains: out has 2*chains chains of floor(n/2) draws */
static size_t ref_split(size_t chains, size_t n, const double *x, double *out) {
  size_t h = n / 2;
  for (size_t c = 0; c < chains; c++)
    for (size_t i = 0; i < h; i++) {
      out[c * h + i] = x[c * n + i];
      out[(chains + c) * h + i] = x[c * n + (n - h) + i];
    }
  return h;
}

/* z_scale with ranks counted pairwise (average for ties). */
static void ref_z(size_t S, const double *x, double *z) {
  for (size_t i = 0; i < S; i++) {
    double less = 0, eq = 0;
    for (size_t j = 0; j < S; j++) {
      less += x[j] < x[i];
      eq += x[j] == x[i];
    }
    double r = less + (eq + 1) / 2;
    z[i] = gsl_cdf_ugaussian_Pinv((r - 0.375) / ((double)S + 0.25));
  }
}

static double ref_quantile(size_t S, const double *x, double p) { /* R type 7 by counting */
  double *s = malloc(S * sizeof *s);
  for (size_t i = 0; i < S; i++) {
    size_t r = 0;
    for (size_t j = 0; j < S; j++) r += x[j] < x[i] || (x[j] == x[i] && j < i);
    s[r] = x[i];
  }
  double hh = (double)(S - 1) * p;
  size_t lo = (size_t)hh;
  double q = lo + 1 < S ? s[lo] + (hh - (double)lo) * (s[lo + 1] - s[lo]) : s[lo];
  free(s);
  return q;
}

static void check_against_reference(size_t chains, size_t n, const double *x, const char *name) {
  size_t S = chains * n, h;
  double *sp = malloc(S * sizeof *sp), *z = malloc(S * sizeof *z), *f = malloc(S * sizeof *f);
  h = ref_split(chains, n, x, sp);
  size_t S2 = 2 * chains * h;
  ref_z(S2, sp, z);
  double rhat_bulk = ref_rhat(2 * chains, h, z), ess_bulk = ref_ess(2 * chains, h, z);
  double med = ref_quantile(S, x, 0.5);
  for (size_t i = 0; i < S; i++) f[i] = fabs(x[i] - med);
  ref_split(chains, n, f, sp);
  ref_z(S2, sp, z);
  double rhat_tail = ref_rhat(2 * chains, h, z);
  ref_split(chains, n, x, sp);
  double ess_mean = ref_ess(2 * chains, h, sp);
  double ess_q[2];
  for (int k = 0; k < 2; k++) {
    double q = ref_quantile(S, x, k ? 0.95 : 0.05);
    for (size_t i = 0; i < S; i++) f[i] = x[i] <= q;
    ref_split(chains, n, f, sp);
    ess_q[k] = ref_ess(2 * chains, h, sp);
  }
  double ess_tail = fmin(ess_q[0], ess_q[1]);
  char what[128];
#define CMP(a, b, label)                                                                           \
  snprintf(what, sizeof what, "%s %s", name, label);                                               \
  TEST_CLOSE(a, b, 1e-9, what)
  CMP(diagnose_rhat_bulk(chains, n, x), rhat_bulk, "rhat bulk");
  CMP(diagnose_rhat_tail(chains, n, x), rhat_tail, "rhat tail");
  CMP(diagnose_rhat(chains, n, x), fmax(rhat_bulk, rhat_tail), "rhat");
  CMP(diagnose_ess_bulk(chains, n, x), ess_bulk, "ess bulk");
  CMP(diagnose_ess_tail(chains, n, x), ess_tail, "ess tail");
  CMP(diagnose_ess_mean(chains, n, x), ess_mean, "ess mean");
  CMP(diagnose_quantile(S, x, 0.05), ref_quantile(S, x, 0.05), "q05");
  CMP(diagnose_quantile(S, x, 0.95), ref_quantile(S, x, 0.95), "q95");
  double m = 0, v = 0;
  for (size_t i = 0; i < S; i++) m += x[i] / (double)S;
  for (size_t i = 0; i < S; i++) v += (x[i] - m) * (x[i] - m) / (double)(S - 1);
  CMP(diagnose_mcse_mean(chains, n, x), sqrt(v / ess_mean), "mcse");
  diagnose_stats st;
  TEST_STATUS(diagnose_summary(name, chains, n, x, &st), CB_OK, name);
  CMP(st.mean, m, "mean");
  CMP(st.sd, sqrt(v), "sd");
  CMP(st.ess_bulk, ess_bulk, "summary ess bulk");
#undef CMP
  free(sp), free(z), free(f);
}

static void ar1(gsl_rng *r, size_t chains, size_t n, double rho, double shift, double *x) {
  for (size_t c = 0; c < chains; c++) {
    double v = gsl_ran_gaussian(r, 1.0);
    for (size_t i = 0; i < n; i++) {
      v = rho * v + sqrt(1 - rho * rho) * gsl_ran_gaussian(r, 1.0);
      x[c * n + i] = 2.385 * v + shift * (c % 2 ? 1 : -1);
    }
  }
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 20261207);

  /* FFT autocovariance against the direct sum, at a length that is not a power of two. */
  {
    size_t n = 157;
    double x[157], a[157], b[157];
    for (size_t i = 0; i < n; i++) x[i] = gsl_ran_gaussian(r, 1.3) + 0.01 * (double)i;
    TEST_STATUS(diagnose_autocov(n, x, a), CB_OK, "autocov");
    ref_acov(n, x, b);
    for (size_t t = 0; t < n; t++)
      TEST_CHECK(fabs(a[t] - b[t]) < 1e-12 * b[0], "acov[%zu] %.15g vs %.15g", t, a[t], b[t]);
    TEST_STATUS(diagnose_autocov(0, x, a), CB_ERR_INPUT, "autocov of nothing");
  }

  /* Against the transcription of posterior: ragged sizes, ties, correlated chains. */
  {
    size_t chains = 3, n = 101;
    double *x = malloc(chains * n * sizeof *x);
    ar1(r, chains, n, 0.7, 0.3, x);
    check_against_reference(chains, n, x, "ar1 3x101");
    for (size_t i = 0; i < chains * n; i++) x[i] = round(2 * x[i]) / 2; /* many ties */
    check_against_reference(chains, n, x, "ties 3x101");
    ar1(r, 1, 64, -0.2, 0, x);
    check_against_reference(1, 64, x, "antithetic 1x64");
    ar1(r, 4, 250, 0.95, 0.0, x = realloc(x, 1000 * sizeof *x));
    check_against_reference(4, 250, x, "ar1(0.95) 4x250");
    free(x);
  }

  /* AR(1): ESS of the mean against N (1 - rho) / (1 + rho). The estimator's relative error is
   * about sqrt(2 tau / N)-ish; 4 x 5000 draws keep it under a few percent. */
  {
    size_t chains = 4, n = 5000, N = chains * n;
    double *x = malloc(N * sizeof *x);
    const double rhos[] = {0.6, 0.9, -0.3};
    const double tol[] = {0.08, 0.15, 0.08};
    for (int k = 0; k < 3; k++) {
      ar1(r, chains, n, rhos[k], 0.0, x);
      double truth = (double)N * (1 - rhos[k]) / (1 + rhos[k]);
      char name[64];
      snprintf(name, sizeof name, "AR(1) rho %g ESS mean", rhos[k]);
      TEST_CLOSE(diagnose_ess_mean(chains, n, x), truth, tol[k], name);
      snprintf(name, sizeof name, "AR(1) rho %g ESS bulk", rhos[k]);
      TEST_CLOSE(diagnose_ess_bulk(chains, n, x), truth, tol[k] + 0.03, name);
      diagnose_stats st;
      TEST_STATUS(diagnose_summary("ar1", chains, n, x, &st), CB_OK, "summary");
      TEST_CHECK(st.rhat < 1.01 && st.rhat > 0.99, "AR(1) rho %g: R-hat %g", rhos[k], st.rhat);
      TEST_CHECK(!diagnose_flag(&st), "AR(1) rho %g flagged", rhos[k]);
      TEST_CHECK(st.ess_tail > 0.5 * truth && st.ess_tail < 2.0 * (double)N,
                 "AR(1) rho %g: tail ESS %g vs %g", rhos[k], st.ess_tail, truth);
      TEST_CHECK(fabs(st.mean) < 4 * st.mcse_mean, "AR(1) rho %g: mean %g, MCSE %g", rhos[k],
                 st.mean, st.mcse_mean);
      TEST_CLOSE(st.sd, 2.385, 0.05, "AR(1) sd");
      TEST_CLOSE(st.q95, 2.385 * 1.6448536, 0.08, "AR(1) q95");
    }
    /* Two modes: chains alternately around -3 and +3. */
    ar1(r, chains, n, 0.5, 3.0, x);
    diagnose_stats st;
    TEST_STATUS(diagnose_summary("two modes", chains, n, x, &st), CB_OK, "summary");
    TEST_CHECK(st.rhat > 1.3 && diagnose_flag(&st), "two modes: R-hat %g", st.rhat);
    /* One chain stuck in its first half elsewhere: split R-hat sees it. */
    ar1(r, chains, n, 0.5, 0.0, x);
    for (size_t i = 0; i < n / 2; i++) x[i] += 1.5;
    double rh = diagnose_rhat(chains, n, x);
    TEST_CHECK(rh > 1.01, "a drifting chain: R-hat %g", rh);
    free(x);
  }

  /* Constant input, bad input. */
  {
    double x[40];
    for (int i = 0; i < 40; i++) x[i] = 2.385;
    TEST_CLOSE(diagnose_ess_bulk(4, 10, x), 40.0, 1e-15, "constant ESS");
    TEST_CHECK(isnan(diagnose_rhat(4, 10, x)), "constant R-hat should be NaN");
    diagnose_stats st;
    TEST_STATUS(diagnose_summary("w3", 2, 3, x, &st), CB_ERR_INPUT, "3 draws");
    TEST_CHECK(strstr(status_message(), "w3") != NULL, "message names the quantity: %s",
               status_message());
    x[7] = NAN;
    TEST_STATUS(diagnose_summary("lp", 4, 10, x, &st), CB_ERR_INPUT, "NaN draw");
    TEST_CHECK(isnan(diagnose_ess_bulk(4, 10, x)), "NaN input gives NaN ESS");
    status_clear();
  }
  gsl_rng_free(r);
  return testing_finish();
}
