/* test_mdn: the head's mass function and the value of ln L against truths computed here
 * (MODEL.md sections 4 and 5), at 1-4 ranks.
 *
 * - Nbar in closed form (erfc) equals GSL quadrature of V dn/dlnM over ln M above ln Mth,
 *   at random non-trivial features and weights, G = 1, 2, 3, and several thresholds.
 * - ln L of a tiny field (8^3) and catalogue equals a direct summation written out here
 *   in plain C (the 27-point convolution with its four tied weights, softplus, the head's
 *   formulas, the Gaussian mixture and erfc): no code shared with the implementation. The
 *   same for the power law.
 * - Zero weights give the documented head: alpha = softplus(ln A0) = ln(1 + A0) (MODEL.md
 *   rounds this to A0; it is 5e-4 below), mu_1 = ln M0, mu_2 = mu_1 + ln 2, sigma = S0.
 * - Huge weights: the value is finite or -inf with a counted reason, never NaN, and the
 *   gradients stay finite. */
#include "testing.h"

#include "cerberus/field.h"
#include "cerberus/likelihood.h"
#include "cerberus/mdn.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_integration.h>
#include <gsl/gsl_math.h>
#include <gsl/gsl_rng.h>
#include <stdlib.h>
#include <string.h>

typedef struct qp {
  const mdn_config *c;
  const mdn_voxel *v;
} qp;

static double integrand(double u, void *p) {
  const qp *q = p;
  return exp(mdn_ln_dndlnm(q->c, q->v, u, 0, NULL));
}

static void test_quadrature(void) {
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 31);
  gsl_integration_workspace *ws = gsl_integration_workspace_alloc(2000);
  for (int G = 1; G <= 3; G++)
    for (int trial = 0; trial < 4; trial++) {
      mdn_config c;
      mdn_config_default(&c);
      c.n_gauss = G;
      c.n_features = 3;
      c.A0 = 3.7e-4;
      c.M0 = 1.3e13;
      c.S0 = 0.8;
      double w[64], psi[3];
      for (size_t i = 0; i < mdn_n_weights(&c); i++) w[i] = 0.6 * (2 * gsl_rng_uniform(r) - 1);
      for (int p = 0; p < 3; p++) psi[p] = 2.5 * gsl_rng_uniform(r);
      mdn_voxel v;
      mdn_forward(&c, w, psi, 1, &v);
      double lnV = log(123.4), u_th = log(2e12) + 1.7 * trial - 1.0;
      double closed = exp(mdn_ln_nbar(&c, &v, lnV, u_th, 0, 0, NULL));
      qp q = {&c, &v};
      gsl_function F = {integrand, &q};
      double res, err;
      gsl_integration_qagiu(&F, u_th, 0, 1e-12, 2000, ws, &res, &err);
      char name[64];
      snprintf(name, sizeof name, "Nbar G=%d trial %d", G, trial);
      TEST_CLOSE(closed, exp(lnV) * res, 1e-9, name);
    }
  gsl_integration_workspace_free(ws);
  gsl_rng_free(r);
}

static void test_zero_weights(void) {
  mdn_config c;
  mdn_config_default(&c);
  double w[12] = {0}, psi = 0.73;
  mdn_voxel v;
  mdn_forward(&c, w, &psi, 1, &v);
  TEST_CLOSE(exp(v.ln_alpha[0]), log1p(1e-3), 1e-12, "alpha_1 at zero weights");
  TEST_CLOSE(exp(v.ln_alpha[1]), log1p(1e-3), 1e-12, "alpha_2 at zero weights");
  TEST_CLOSE(v.mu[0], log(2e12), 1e-14, "mu_1 at zero weights");
  TEST_CLOSE(v.mu[1], log(2e12) + log(2.0), 1e-14, "mu_2 at zero weights");
  TEST_CLOSE(v.sigma[0], 1.0, 1e-14, "sigma_1 at zero weights");
  TEST_CLOSE(v.sigma[1], 1.0, 1e-14, "sigma_2 at zero weights");
}

/* ------------------------------------------------- direct summation, plain C */
static double sp(double y) {
  return log(1.0 + exp(y));
}
static double hash01(unsigned long a, unsigned long b) {
  unsigned long long x = (a + 13) * 0x9E3779B97F4A7C15ULL ^ (b + 1) * 0xC2B2AE3D27D4EB4FULL;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 32;
  return (double)(x >> 11) / 9007199254740992.0;
}

enum { NG = 8, NH = 40 };
static const double BOX = 41.9;

static double direct_lnl(const double *D, const double (*pos)[3], const double *mass,
                         const double *w, int powerlaw) {
  const double eps = 1e-3, V = pow(BOX / NG, 3), lnA0 = log(1e-3), lnM0 = log(2e12);
  const double s_off = log(exp(1.0 - 0.05) - 1.0), Mth = 2e12;
  static double psi[NG][NG][NG], x0[NG][NG][NG];
  for (int i = 0; i < NG; i++)
    for (int j = 0; j < NG; j++)
      for (int k = 0; k < NG; k++) x0[i][j][k] = log(1 + D[(i * NG + j) * NG + k] + eps);
  const double *h = w + (powerlaw ? 1 : 5); /* a1 a2 ba1 ba2 m1 m2 bm1 bm2 s1 s2 bs1 bs2 */
  for (int i = 0; i < NG; i++)
    for (int j = 0; j < NG; j++)
      for (int k = 0; k < NG; k++) {
        double z = w[4];
        for (int a = -1; a <= 1; a++)
          for (int b = -1; b <= 1; b++)
            for (int c = -1; c <= 1; c++) {
              int cls = a * a + b * b + c * c; /* 0 centre, 1 face, 2 edge, 3 corner */
              z += w[cls] * x0[(i + a + NG) % NG][(j + b + NG) % NG][(k + c + NG) % NG];
            }
        psi[i][j][k] = powerlaw ? 0.0 : sp(z);
      }
  /* powerlaw head: b_alpha (2), b_mu (2), b_sigma (2) with a = m = s = 0 */
  double A[2], B[2], Mm[2], Bm[2], S[2], Bs[2];
  for (int g = 0; g < 2; g++) {
    if (powerlaw) {
      A[g] = 0, Mm[g] = 0, S[g] = 0, B[g] = h[g], Bm[g] = h[2 + g], Bs[g] = h[4 + g];
    } else {
      A[g] = h[g], B[g] = h[2 + g], Mm[g] = h[4 + g], Bm[g] = h[6 + g], S[g] = h[8 + g],
      Bs[g] = h[10 + g];
    }
  }
  double lnl = 0;
  for (int i = 0; i < NG; i++)
    for (int j = 0; j < NG; j++)
      for (int k = 0; k < NG; k++) {
        double p = psi[i][j][k], f = powerlaw ? exp(w[0] * x0[i][j][k]) : 1.0;
        double al1 = sp(A[0] * p + B[0] + lnA0), al2 = sp(A[1] * p + B[1] + lnA0);
        double mu1 = Mm[0] * p + Bm[0] + lnM0, mu2 = mu1 + sp(Mm[1] * p + Bm[1]);
        double s1 = 0.05 + sp(S[0] * p + Bs[0] + s_off), s2 = 0.05 + sp(S[1] * p + Bs[1] + s_off);
        double nbar = V * (al1 / 2 * erfc((log(Mth) - mu1) / (sqrt(2) * s1)) +
                           al2 / 2 * erfc((log(Mth) - mu2) / (sqrt(2) * s2)));
        lnl -= f * nbar;
        for (int t = 0; t < NH; t++) {
          int vi = (int)floor(pos[t][0] * NG / BOX) % NG,
              vj = (int)floor(pos[t][1] * NG / BOX) % NG,
              vk = (int)floor(pos[t][2] * NG / BOX) % NG;
          if (vi != i || vj != j || vk != k || mass[t] < Mth) continue;
          double u = log(mass[t]);
          double dn = al1 * exp(-0.5 * pow((u - mu1) / s1, 2)) / (sqrt(2 * M_PI) * s1) +
                      al2 * exp(-0.5 * pow((u - mu2) / s2, 2)) / (sqrt(2 * M_PI) * s2);
          lnl += log(f * dn);
        }
      }
  return lnl;
}

static void test_direct(MPI_Comm comm, int powerlaw) {
  weights_arch a;
  weights_arch_default(&a);
  a.model = powerlaw ? WEIGHTS_POWERLAW : WEIGHTS_NPE;
  field *f = NULL;
  likelihood *lk = NULL;
  int st = field_create(comm, NG, BOX, 1, &f);
  if (!st) st = likelihood_create(f, &a, &lk);
  TEST_CHECK(st == CB_OK, "setup: %s", status_message());
  if (st) {
    field_destroy(&f);
    return;
  }
  double D[NG * NG * NG], pos[NH][3], mass[NH];
  for (int v = 0; v < NG * NG * NG; v++) D[v] = exp(1.4 * (hash01(1, (unsigned long)v) - 0.5)) - 1;
  for (int t = 0; t < NH; t++) {
    for (int x = 0; x < 3; x++) pos[t][x] = BOX * hash01(2, (unsigned long)(3 * t + x));
    mass[t] = 1.1e12 * exp(5.0 * hash01(3, (unsigned long)t));
  }
  pos[0][0] = BOX; /* on the upper face: wraps to voxel 0 */
  st = likelihood_set_halos(lk, "test", NH, &pos[0][0], mass, 2e12);
  TEST_CHECK(st == CB_OK, "halos: %s", status_message());
  size_t nw = weights_count(&a);
  double w[17];
  for (size_t i = 0; i < nw; i++) w[i] = 0.45 * (2 * hash01(4, i) - 1);
  double value = 0;
  st = likelihood_evaluate(lk, D + f->local_0_start * NG * NG, w, &value, NULL, NULL);
  TEST_CHECK(st == CB_OK, "evaluate: %s", status_message());
  TEST_CLOSE(value, direct_lnl(D, (const double(*)[3])pos, mass, w, powerlaw), 1e-12,
             powerlaw ? "power law ln L vs direct summation" : "npe ln L vs direct summation");
  likelihood_destroy(&lk);
  field_destroy(&f);
}

static void test_extremes(MPI_Comm comm) {
  weights_arch a;
  weights_arch_default(&a);
  field *f = NULL;
  likelihood *lk = NULL;
  int st = field_create(comm, 8, 50.0, 1, &f);
  if (!st) st = likelihood_create(f, &a, &lk);
  TEST_CHECK(st == CB_OK, "setup: %s", status_message());
  if (st) {
    field_destroy(&f);
    return;
  }
  double pos[30], mass[10];
  for (int t = 0; t < 10; t++) {
    for (int x = 0; x < 3; x++) pos[3 * t + x] = 50.0 * hash01(8, (unsigned long)(3 * t + x));
    mass[t] = 3e12 * exp(3.0 * hash01(9, (unsigned long)t));
  }
  likelihood_set_halos(lk, "test", 10, pos, mass, 2e12);
  double *D = field_alloc_real(f), *gd = field_alloc_real(f), w[17], gw[17];
  for (ptrdiff_t v = 0; v < f->n_real_local; v++)
    D[v] = 0.9 * sin(0.37 * (double)(v + f->local_0_start * 64));
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 5);
  int n_inf = 0;
  for (int trial = 0; trial < 60; trial++) {
    double scale = pow(10.0, 1 + trial % 6); /* 10 .. 1e6 */
    for (int i = 0; i < 17; i++) w[i] = scale * (2 * gsl_rng_uniform(r) - 1);
    double value = 0;
    st = likelihood_evaluate(lk, D, w, &value, gw, gd);
    TEST_CHECK(st == CB_OK, "evaluate: %s", status_message());
    int ok = !isnan(value) && value < INFINITY;
    for (int i = 0; i < 17; i++) ok = ok && isfinite(gw[i]);
    for (ptrdiff_t v = 0; v < f->n_real_local; v++) ok = ok && isfinite(gd[v]);
    TEST_CHECK(ok, "scale %g: ln L = %g or a gradient is not finite", scale, value);
    if (value == -INFINITY) {
      n_inf++;
      TEST_CHECK(likelihood_reason(lk) != LK_FINITE, "-inf without a reason");
    } else {
      TEST_CHECK(likelihood_reason(lk) == LK_FINITE, "finite value with a reason");
    }
  }
  long counted = 0;
  for (int k = 1; k < LK_N_REASONS; k++) counted += likelihood_reason_count(lk, k);
  TEST_CHECK(counted == n_inf, "reasons counted %ld, -inf values %d", counted, n_inf);
  /* a forced overflow of the expected count and a halo of vanishing density */
  memset(w, 0, sizeof w);
  w[7] = 1.7e308; /* b_alpha_1: alpha ~ 1.7e308, times V = 244 (Mpc/h)^3 */
  double value;
  likelihood_evaluate(lk, D, w, &value, gw, gd);
  TEST_CHECK(value == -INFINITY && likelihood_reason(lk) == LK_NBAR_OVERFLOW,
             "b_alpha = 1.7e308: ln L %g, reason %s", value,
             likelihood_reason_name(likelihood_reason(lk)));
  memset(w, 0, sizeof w);
  w[11] = 1e300; /* b_mu_1: every mean so far above the halos that (u - mu)^2 overflows */
  w[15] = -1e3;  /* b_sigma_1: narrow */
  w[16] = -1e3;
  likelihood_evaluate(lk, D, w, &value, gw, gd);
  TEST_CHECK(value == -INFINITY && likelihood_reason(lk) == LK_HALO_DENSITY,
             "mu far away: ln L %g, reason %s", value,
             likelihood_reason_name(likelihood_reason(lk)));
  gsl_rng_free(r);
  fftw_free(D);
  fftw_free(gd);
  likelihood_destroy(&lk);
  field_destroy(&f);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  gsl_set_error_handler_off();
  test_quadrature();
  test_zero_weights();
  test_direct(comm, 0);
  test_direct(comm, 1);
  test_extremes(comm);
  return testing_finish();
}
