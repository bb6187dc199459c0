/* test_posterior: the sampler's target (MODEL.md sections 5 and 8).
 *
 * - ln p = ln L(w(theta)) - |theta|^2 / 200 exactly, with ln L from the likelihood module.
 * - d ln p / d theta against central differences for every parameter: the paper's engine,
 *   the monotone engine (centre weight softplus(t_c)), a two-channel monotone engine
 *   (3:0:2:softplus, two centre weights), an lmax 1 first layer (the centre of its l = 1
 *   channels carries no weight and stays unconstrained) and the power law.
 * - Standardised features: ln p = ln L(w) + prior on the engine's numbers and the head's
 *   weights + ln |J|, ln |J| = -3 G sum_p ln s_p from the test's own engine pass; ln p minus the
 *   plain parametrisation's ln p at the same weights is ln |J|; the gradient (through m_p, s_p)
 *   against differences; one and two layers, several features, monotone or not. With the
 *   monotone engine the face, edge, corner weights (and with relative_bias the bias) are
 *   sampled relative to the centre weight (w_i = r_i w_c, ln |J| += ln w_c each).
 * - map_laplace: its covariance C satisfies (C H)^2 = I with H from second differences of ln p
 *   here (C = V |Lambda|^-1 V^T), and a cap var_max bounds every variance.
 * - theta -> w -> theta round trip; a non-positive centre weight refused under -engine_monotone.
 * - Names of the weights: the paper's 17, and unique names for multi-channel engines.
 * - The binned mass function: for the power law with G = 1 it is known in closed form in
 *   each voxel, so the bin means are checked against a direct sum.
 * Runs at 1-4 ranks: the field and catalogue come from hashes of global indices. */
#include "testing.h"

#include "cerberus/field.h"
#include "cerberus/likelihood.h"
#include "cerberus/map.h"
#include "cerberus/mdn.h"
#include "cerberus/npe.h"
#include "cerberus/posterior.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_math.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double BOX = 83.7;

typedef struct setup {
  const char *name;
  int model;
  const char *layers;
  bool monotone;
  int n_mono;       /* centre weights expected to be parametrised */
  bool standardise; /* -standardise_features */
  bool rel_bias;    /* relative_bias */
} setup;

/* ln |J| = -3 G sum_p ln s_p, with s_p the sd over the voxels of engine feature p at w, from an
 * engine of the test's own. */
static double test_ln_jacobian(field *f, const weights_arch *a, const double *delta,
                               const double *w) {
  npe *net = NULL;
  const double *psi = NULL;
  TEST_STATUS(npe_create(f, &a->npe, &net), CB_OK, "engine");
  TEST_STATUS(npe_forward(net, delta, w, &psi), CB_OK, "engine forward");
  const int P = a->mdn.n_features;
  const ptrdiff_t nn = f->n * f->n;
  double lj = 0;
  for (int j = 0; j < P; j++) {
    double sum[3] = {0, 0, 0};
    for (ptrdiff_t q = 0; q < f->local_n0; q++)
      for (ptrdiff_t k = 0; k < nn; k++) {
        double x = psi[(q * P + j) * nn + k];
        sum[0] += 1;
        sum[1] += x;
        sum[2] += x * x;
      }
    MPI_Allreduce(MPI_IN_PLACE, sum, 3, MPI_DOUBLE, MPI_SUM, f->comm);
    double m = sum[1] / sum[0], var = sum[2] / sum[0] - m * m;
    lj -= 3.0 * a->mdn.n_gauss * 0.5 * log(var);
  }
  npe_destroy(&net);
  return lj;
}

/* Monotone standardised single-layer engines with one 3^3 channel: the face, edge and corner
 * weights (and with relative_bias the bias of the l = 0 output) are sampled relative to the
 * centre weight (index 0); the biases are the layer's last (lmax + 1)^2 weights. */
static bool test_is_relative(const weights_arch *a, const setup *s, size_t i) {
  if (!s->monotone || !s->standardise || a->npe.n_layers != 1 || a->npe.layer[0].channels != 1)
    return false;
  const int lm = a->npe.layer[0].lmax, n_out = (lm + 1) * (lm + 1);
  return (i >= 1 && i <= 3) || (s->rel_bias && i == npe_n_weights(&a->npe) - (size_t)n_out);
}

static void arch_of(const setup *s, weights_arch *a) {
  weights_arch_default(a);
  a->model = s->model;
  if (s->layers) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s->layers);
    a->npe.n_layers = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      npe_layer_config *c = &a->npe.layer[a->npe.n_layers++];
      sscanf(t, "%d:%d:%d", &c->kernel, &c->lmax, &c->channels);
      c->activation = NPE_SOFTPLUS;
    }
  }
  weights_arch_check(a);
}

static void run_setup(MPI_Comm comm, const setup *s) {
  weights_arch a;
  arch_of(s, &a);
  field *f = NULL;
  double *delta = NULL;
  likelihood *lk = NULL;
  posterior *p = NULL;
  TEST_STATUS(field_create(comm, 8, BOX, a.model == WEIGHTS_NPE ? npe_ghost_width(&a.npe) : 1, &f),
              CB_OK, s->name);
  if (!f) return;
  delta = field_alloc_real(f);
  testing_wavy_delta(f, 0.7, 1.2, 3, delta);
  enum { NH = 60 };
  double pos[3 * NH], mass[NH];
  for (size_t h = 0; h < NH; h++) {
    for (int c = 0; c < 3; c++) pos[3 * h + c] = BOX * testing_hash01(11, 3 * h + c);
    mass[h] = exp(log(2.1e12) + (log(2e14) - log(2.1e12)) * pow(testing_hash01(12, h), 2.0));
  }
  TEST_STATUS(likelihood_create(f, &a, &lk), CB_OK, s->name);
  TEST_STATUS(likelihood_set_halos(lk, "test", NH, pos, mass, 2e12), CB_OK, s->name);
  posterior_config cfg;
  posterior_config_default(&cfg);
  cfg.monotone = s->monotone;
  cfg.standardise = s->standardise;
  cfg.relative_bias = s->rel_bias;
  TEST_STATUS(posterior_create(f, lk, delta, &a, &cfg, &p), CB_OK, s->name);
  const size_t d = posterior_dim(p);
  TEST_CHECK(d == weights_count(&a), "%s: dim %zu", s->name, d);
  int nm = 0;
  for (size_t i = 0; i < d; i++) nm += posterior_is_monotone(p, i);
  TEST_CHECK(nm == s->n_mono, "%s: %d monotone parameters, expected %d", s->name, nm, s->n_mono);

  double *th = calloc(d, sizeof *th), *g = calloc(d, sizeof *g), *w = calloc(d, sizeof *w),
         *back = calloc(d, sizeof *back), *gl = calloc(d, sizeof *gl);
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 29);
  for (size_t i = 0; i < d; i++) th[i] = 0.35 * (2 * gsl_rng_uniform(r) - 1) + 0.05;
  double lnp = 0, lnL = 0, lnL2 = 0;
  TEST_STATUS(posterior_evaluate(p, th, &lnp, g, &lnL), CB_OK, s->name);
  TEST_CHECK(isfinite(lnp), "%s: ln p not finite", s->name);
  /* ln p = ln L(w) - |theta|^2 / 200 (standardised: the head's prior on w, and ln |J|) */
  TEST_STATUS(posterior_to_weights(p, th, w), CB_OK, s->name);
  TEST_STATUS(likelihood_evaluate(lk, delta, w, &lnL2, gl, NULL), CB_OK, s->name);
  const size_t ne = a.model == WEIGHTS_NPE ? npe_n_weights(&a.npe) : 1;
  const bool stdz = s->standardise && a.model == WEIGHTS_NPE; /* the power law has no features */
  double prior = stdz ? test_ln_jacobian(f, &a, delta, w) : 0, lprior = 0;
  int n_rel = 0;
  for (size_t i = 0; i < d; i++) {
    const bool rel = i < ne && test_is_relative(&a, s, i);
    double x = (i < ne && !rel) || !stdz ? th[i] : w[i];
    prior -= x * x / 200.0;
    if (rel) { /* w_i = r_i w_c, ln |J| += ln w_c */
      TEST_CLOSE(w[i], th[i] * w[0], 1e-14, "relative weight");
      prior += log(w[0]);
      n_rel++;
    } else if (posterior_is_monotone(p, i)) {
      TEST_CLOSE(w[i], log1p(exp(th[i])), 1e-14, "softplus centre");
    } else if (i < ne || !stdz) {
      TEST_CHECK(w[i] == th[i], "%s: w[%zu] != theta", s->name, i);
    }
  }
  TEST_CHECK(n_rel == (s->monotone && stdz && a.npe.layer[0].channels == 1 ? 3 + s->rel_bias : 0),
             "%s: %d relative weights", s->name, n_rel);
  TEST_CLOSE(lnL, lnL2, 1e-14, s->name);
  TEST_CLOSE(lnp, lnL2 + prior, 1e-12, s->name);
  TEST_STATUS(posterior_log_prior(p, th, &lprior), CB_OK, s->name);
  TEST_CLOSE(lnp - lprior, lnL2, 1e-14, "ln p - posterior_log_prior = ln L");
  if (stdz) {
    /* the same weights in the plain parametrisation: ln p differs by ln |J| alone */
    posterior *pl = NULL;
    posterior_config c2 = cfg;
    c2.standardise = false;
    c2.relative_bias = false; /* the plain parametrisation has no relative weights */
    double *th2 = calloc(d, sizeof *th2), lnp2 = 0;
    TEST_STATUS(posterior_create(f, lk, delta, &a, &c2, &pl), CB_OK, "plain posterior");
    TEST_STATUS(posterior_from_weights(pl, "test", w, th2), CB_OK, "plain theta");
    TEST_STATUS(posterior_evaluate(pl, th2, &lnp2, NULL, NULL), CB_OK, "plain ln p");
    double lj = test_ln_jacobian(f, &a, delta, w);
    for (size_t i = 0; i < ne; i++) lj += test_is_relative(&a, s, i) ? log(w[0]) : 0;
    TEST_CLOSE(lnp - lnp2, lj, 1e-9, "ln p(std) - ln p(plain)");
    /* and the standardised head reproduces a_op psi_p + b_o: a'_op = a_op s_p */
    for (size_t i = ne; i < d; i++)
      TEST_CHECK(th[i] != w[i], "%s: head weight %zu not transformed", s->name, i);
    free(th2);
    posterior_destroy(&pl);
  }
  /* gradient against central differences */
  for (size_t i = 0; i < d; i++) {
    double h = 1e-5, lp1, lm1, save = th[i];
    th[i] = save + h;
    posterior_evaluate(p, th, &lp1, NULL, NULL);
    th[i] = save - h;
    posterior_evaluate(p, th, &lm1, NULL, NULL);
    th[i] = save;
    double fd = (lp1 - lm1) / (2 * h);
    if (!(fabs(fd - g[i]) <= 1e-6 * fmax(1.0, fabs(g[i]))))
      testing_fail(__FILE__, __LINE__, "%s: d ln p / d theta_%zu = %.10g, differences %.10g",
                   s->name, i, g[i], fd);
  }
  if (d <= 17) { /* the Laplace covariance: C = V |Lambda|^-1 V^T, so (C H)^2 = I, with H from
                    second differences of ln p here */
    double *H = calloc(d * d, sizeof *H), *C = calloc(d * d, sizeof *C),
           *CH = calloc(d * d, sizeof *CH);
    long nev = 0;
    TEST_STATUS(map_laplace(p, th, 1e12, C, &nev), CB_OK, "map_laplace");
    TEST_CHECK(nev == (long)(2 * d), "%s: map_laplace spent %ld evaluations", s->name, nev);
    const double hs = 1e-3;
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j <= i; j++) {
        double f[4], si = th[i], sj = th[j];
        for (int k = 0; k < 4; k++) {
          th[i] += (k & 1 ? -hs : hs);
          th[j] += (k & 2 ? -hs : hs);
          posterior_evaluate(p, th, &f[k], NULL, NULL);
          th[i] = si;
          th[j] = sj;
        }
        H[i * d + j] = H[j * d + i] = -(f[0] - f[1] - f[2] + f[3]) / (4 * hs * hs);
      }
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j < d; j++) {
        for (size_t k = 0; k < d; k++) CH[i * d + j] += C[i * d + k] * H[k * d + j];
        TEST_CLOSE(C[i * d + j], C[j * d + i], 1e-12, "Laplace covariance symmetric");
      }
    double worst = 0;
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j < d; j++) {
        double t = i == j ? -1 : 0;
        for (size_t k = 0; k < d; k++) t += CH[i * d + k] * CH[k * d + j];
        worst = fmax(worst, fabs(t));
      }
    TEST_CHECK(worst < 1e-3, "%s: (C H)^2 - I has an entry %g", s->name, worst);
    /* positive definite, also where H is not */
    gsl_matrix_view Cv = gsl_matrix_view_array(C, d, d);
    gsl_error_handler_t *old = gsl_set_error_handler_off();
    TEST_CHECK(gsl_linalg_cholesky_decomp1(&Cv.matrix) == GSL_SUCCESS,
               "%s: the Laplace covariance is not positive definite", s->name);
    gsl_set_error_handler(old);
    /* the cap: every variance at most var_max */
    TEST_STATUS(map_laplace(p, th, 1e-6, C, &nev), CB_OK, "map_laplace capped");
    for (size_t i = 0; i < d; i++)
      TEST_CHECK(C[i * d + i] > 0 && C[i * d + i] <= 1e-6 * (1 + 1e-9), "%s: capped variance %g",
                 s->name, C[i * d + i]);
    free(H);
    free(C);
    free(CH);
  }
  /* round trip */
  TEST_STATUS(posterior_from_weights(p, "test", w, back), CB_OK, s->name);
  for (size_t i = 0; i < d; i++) TEST_CLOSE(back[i], th[i], 1e-10, "theta round trip");
  if (s->monotone) {
    long c = weights_centre_index(&a, 0);
    w[c] = -0.3;
    TEST_STATUS(posterior_from_weights(p, "test", w, back), CB_ERR_INPUT, "negative centre");
    TEST_CHECK(strstr(status_message(), "w_centre") || strstr(status_message(), "centre"),
               "message names the centre weight: %s", status_message());
    status_clear();
  }
  /* names: unique */
  char names[64][64]; /* on the stack: a calloc'd array made GCC's sanitizer build warn */
  TEST_CHECK(d <= 64, "%s: %zu weights, more than the test's 64 names", s->name, d);
  for (size_t i = 0; i < d && i < 64; i++) {
    TEST_STATUS(weights_name(&a, i, names[i], 64), CB_OK, "name");
    for (size_t j = 0; j < i; j++)
      TEST_CHECK(strcmp(names[i], names[j]), "%s: names %zu and %zu are both %s", s->name, j, i,
                 names[i]);
  }
  gsl_rng_free(r);
  free(th);
  free(g);
  free(w);
  free(back);
  free(gl);
  posterior_destroy(&p);
  likelihood_destroy(&lk);
  fftw_free(delta);
  field_destroy(&f);
}

static void test_names(void) {
  weights_arch a;
  weights_arch_default(&a);
  const char *want = "w_centre w_face w_edge w_corner b_conv a_1 a_2 b_alpha_1 b_alpha_2 m_1 m_2 "
                     "b_mu_1 b_mu_2 s_1 s_2 b_sigma_1 b_sigma_2";
  char got[512] = "", name[64];
  for (size_t i = 0; i < weights_count(&a); i++) {
    weights_name(&a, i, name, sizeof name);
    strcat(got, i ? " " : "");
    strcat(got, name);
  }
  TEST_CHECK(!strcmp(got, want), "paper names: %s", got);
  TEST_CHECK(weights_centre_index(&a, 0) == 0, "centre index");
  a.model = WEIGHTS_POWERLAW;
  weights_arch_check(&a);
  got[0] = 0;
  for (size_t i = 0; i < weights_count(&a); i++) {
    weights_name(&a, i, name, sizeof name);
    strcat(got, i ? " " : "");
    strcat(got, name);
  }
  TEST_CHECK(!strcmp(got, "beta b_alpha_1 b_alpha_2 b_mu_1 b_mu_2 b_sigma_1 b_sigma_2"),
             "power-law names: %s", got);
  TEST_STATUS(weights_name(&a, 7, name, sizeof name), CB_ERR_INPUT, "name out of range");
  status_clear();
  /* two channels: centre of channel 1 follows the 4 weights of channel 0 */
  weights_arch_default(&a);
  a.npe.layer[0].channels = 2;
  weights_arch_check(&a);
  TEST_CHECK(weights_centre_index(&a, 1) == 4, "centre of channel 1: %ld",
             weights_centre_index(&a, 1));
  weights_name(&a, 4, name, sizeof name);
  TEST_CHECK(!strcmp(name, "w0_1.0_centre"), "channel 1 centre name: %s", name);
}

/* The power law with G = 1: dn/dlnM(M | v) = (1 + delta + eps)^beta alpha N(ln M; mu, sigma)
 * with alpha, mu, sigma from the constant head: the bin means by a direct sum. */
static void test_mass_function(MPI_Comm comm) {
  weights_arch a;
  weights_arch_default(&a);
  a.model = WEIGHTS_POWERLAW;
  a.mdn.n_gauss = 1;
  weights_arch_check(&a);
  field *f = NULL;
  TEST_STATUS(field_create(comm, 8, BOX, 1, &f), CB_OK, "field");
  double *delta = field_alloc_real(f);
  testing_wavy_delta(f, 0.7, 1.2, 3, delta);
  likelihood *lk = NULL;
  posterior *p = NULL;
  double pos[3] = {10.0, 20.0, 30.0}, mass[1] = {5.3e12};
  likelihood_create(f, &a, &lk);
  likelihood_set_halos(lk, "test", 1, pos, mass, 2e12);
  posterior_config cfg;
  posterior_config_default(&cfg);
  TEST_STATUS(posterior_create(f, lk, delta, &a, &cfg, &p), CB_OK, "mf posterior");
  double th[4] = {1.37, 0.4, -0.3, 0.2}, mf[POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES];
  TEST_STATUS(posterior_mass_function(p, th, mf), CB_OK, "mass function");
  double alpha = mdn_softplus(0.4 + log(1e-3)), mu = -0.3 + log(2e12);
  double sigma = 0.05 + mdn_softplus(0.2 + log(exp(1 - 0.05) - 1));
  const double *edges = posterior_mf_edges(p), *ms = posterior_mf_masses(p);
  double want[POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES] = {0}, cnt[POSTERIOR_MF_BINS] = {0};
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    int b = 0;
    while (b < POSTERIOR_MF_BINS - 1 && delta[v] >= edges[b + 1]) b++;
    cnt[b] += 1;
    for (int m = 0; m < POSTERIOR_MF_MASSES; m++) {
      double z = (log(ms[m]) - mu) / sigma;
      want[b * POSTERIOR_MF_MASSES + m] +=
          pow(1 + delta[v] + 1e-3, 1.37) * alpha * exp(-0.5 * z * z) / (sqrt(2 * M_PI) * sigma);
    }
  }
  MPI_Allreduce(MPI_IN_PLACE, want, POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES, MPI_DOUBLE, MPI_SUM,
                comm);
  MPI_Allreduce(MPI_IN_PLACE, cnt, POSTERIOR_MF_BINS, MPI_DOUBLE, MPI_SUM, comm);
  for (int b = 0; b < POSTERIOR_MF_BINS; b++)
    for (int m = 0; m < POSTERIOR_MF_MASSES; m++)
      TEST_CLOSE(mf[b * POSTERIOR_MF_MASSES + m], want[b * POSTERIOR_MF_MASSES + m] / cnt[b], 1e-12,
                 "binned mass function");
  TEST_CLOSE(ms[1], 2e13, 1e-15, "mass 2");
  posterior_destroy(&p);
  likelihood_destroy(&lk);
  fftw_free(delta);
  field_destroy(&f);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  test_names();
  const setup setups[] = {
      {"paper", WEIGHTS_NPE, NULL, false, 0, false, false},
      {"paper monotone", WEIGHTS_NPE, NULL, true, 1, false, false},
      {"two channels monotone", WEIGHTS_NPE, "3:0:2", true, 2, false, false},
      {"lmax 1 monotone", WEIGHTS_NPE, "3:1:1", true, 1, false, false},
      {"power law", WEIGHTS_POWERLAW, NULL, false, 0, false, false},
      {"paper standardised", WEIGHTS_NPE, NULL, false, 0, true, false},
      {"paper monotone standardised", WEIGHTS_NPE, NULL, true, 1, true, false},
      {"paper monotone standardised relative bias", WEIGHTS_NPE, NULL, true, 1, true, true},
      {"lmax 1 monotone standardised", WEIGHTS_NPE, "3:1:1", true, 1, true, false},
      {"two layers standardised", WEIGHTS_NPE, "3:0:2,3:0:2", false, 0, true, false},
      {"power law standardised (ignored)", WEIGHTS_POWERLAW, NULL, false, 0, true, false},
  };
  for (size_t s = 0; s < sizeof setups / sizeof *setups; s++) run_setup(comm, &setups[s]);
  test_mass_function(comm);
  /* a monotone power law is refused */
  return testing_finish();
}
