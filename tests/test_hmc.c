/* test_hmc: the sampler (MODEL.md section 8) against truth, at 1-4 ranks.
 *
 * Targets are Gaussians N(mu, Sigma) whose work is split over the ranks: rank r computes the
 * rows i = r mod size of P (q - mu), P = Sigma^-1, and the pieces are summed by MPI_Allreduce
 * (each gradient element is non-zero on one rank only, so the gradient is exact on every rank
 * count; ln p is rounded differently).
 *
 * - Statistics (on one rank, where the runs are cheap): on a 2-D correlated Gaussian and on a
 *   50-D Gaussian with condition number 1e4, every variant (leapfrog diag, dense, Omelyan,
 *   Yoshida, quasi-Newton, MAMS diag and dense) gives means and covariance elements within
 *   5 MCSE of the truth (MCSE from diagnose_mcse_mean), with a bulk ESS large enough for the
 *   MCSE to mean something; on a rotated ill-conditioned 50-D Gaussian the quasi-Newton variant
 *   reaches more ESS per gradient than leapfrog with a diagonal mass matrix.
 * - A truncated Gaussian whose ln p is NaN for q_0 < 0: rejections are counted, the chain goes on,
 *   and q_0's mean is the half-normal's sqrt(2/pi) within MCSE.
 * - At every rank count: the chain on the whole communicator equals, bit for bit, the chain run
 *   alone on each rank (MPI_COMM_SELF), for every variant; the ranks agree with each other.
 * - Save at step k (inside warm-up), continue; load into a new sampler started elsewhere,
 *   continue: the positions are bit-identical, for every variant; a state of another dimension
 *   or metric is refused.
 * - Bad configurations: step size <= 0, unknown metric, dim 0, MAMS with BFGS, a non-finite start
 *   are CB_ERR_INPUT. */
#include "testing.h"

#include "cerberus/diagnose.h"
#include "cerberus/hmc.h"
#include "cerberus/status.h"

#include <gsl/gsl_linalg.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <stdlib.h>
#include <string.h>

static bool verbose = false;

typedef struct gauss {
  MPI_Comm comm;
  size_t d;
  double *mu, *prec, *cov; /* d, d*d, d*d */
  double *r;               /* scratch d */
  bool truncate;           /* ln p = NaN for q_0 < 0 */
  long calls;
} gauss;

static int gauss_logp(void *ctx, const double *q, double *logp, double *grad) {
  gauss *g = ctx;
  int rank, size;
  MPI_Comm_rank(g->comm, &rank);
  MPI_Comm_size(g->comm, &size);
  size_t d = g->d;
  double lp = 0;
  for (size_t i = 0; i < d; i++) grad[i] = 0;
  for (size_t i = (size_t)rank; i < d; i += (size_t)size) {
    double s = 0;
    for (size_t j = 0; j < d; j++) s += g->prec[i * d + j] * (q[j] - g->mu[j]);
    grad[i] = -s;
    lp += -0.5 * (q[i] - g->mu[i]) * s;
  }
  MPI_Allreduce(MPI_IN_PLACE, &lp, 1, MPI_DOUBLE, MPI_SUM, g->comm);
  MPI_Allreduce(MPI_IN_PLACE, grad, (int)d, MPI_DOUBLE, MPI_SUM, g->comm);
  if (g->truncate && q[0] < 0) lp = NAN;
  *logp = lp;
  g->calls++;
  return CB_OK;
}

/* Sigma = R diag(lambda) R^T (R a random rotation, or I), lambda log-spaced over [lmin, lmax]. */
static void gauss_init(gauss *g, MPI_Comm comm, size_t d, double lmin, double lmax, bool rotate,
                       unsigned long seed) {
  memset(g, 0, sizeof *g);
  g->comm = comm;
  g->d = d;
  g->mu = calloc(d, sizeof(double));
  g->prec = calloc(d * d, sizeof(double));
  g->cov = calloc(d * d, sizeof(double));
  g->r = calloc(d, sizeof(double));
  gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(rng, seed);
  gsl_matrix *R = gsl_matrix_alloc(d, d);
  gsl_matrix_set_identity(R);
  if (rotate) {
    gsl_matrix *A = gsl_matrix_alloc(d, d);
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j < d; j++) gsl_matrix_set(A, i, j, gsl_ran_gaussian(rng, 1.0));
    gsl_vector *tau = gsl_vector_alloc(d);
    gsl_linalg_QR_decomp(A, tau);
    gsl_linalg_QR_unpack(A, tau, R, A);
    gsl_matrix_free(A);
    gsl_vector_free(tau);
  }
  for (size_t i = 0; i < d; i++) g->mu[i] = 2.385 * gsl_ran_gaussian(rng, 1.0);
  for (size_t k = 0; k < d; k++) {
    double lam = d > 1 ? lmin * pow(lmax / lmin, (double)k / (double)(d - 1)) : lmin;
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j < d; j++) {
        double rr = gsl_matrix_get(R, i, k) * gsl_matrix_get(R, j, k);
        g->cov[i * d + j] += lam * rr;
        g->prec[i * d + j] += rr / lam;
      }
  }
  gsl_matrix_free(R);
  gsl_rng_free(rng);
}

/* The 2-D correlated Gaussian: sd 1.5 and 0.4, correlation 0.85. */
static void gauss_init_2d(gauss *g, MPI_Comm comm) {
  memset(g, 0, sizeof *g);
  g->comm = comm;
  g->d = 2;
  g->mu = calloc(2, sizeof(double));
  g->prec = calloc(4, sizeof(double));
  g->cov = calloc(4, sizeof(double));
  g->r = calloc(2, sizeof(double));
  g->mu[0] = 1.3;
  g->mu[1] = -0.7;
  double s0 = 1.5, s1 = 0.4, rho = 0.85;
  g->cov[0] = s0 * s0;
  g->cov[3] = s1 * s1;
  g->cov[1] = g->cov[2] = rho * s0 * s1;
  double det = g->cov[0] * g->cov[3] - g->cov[1] * g->cov[2];
  g->prec[0] = g->cov[3] / det;
  g->prec[3] = g->cov[0] / det;
  g->prec[1] = g->prec[2] = -g->cov[1] / det;
}

static void gauss_free(gauss *g) {
  free(g->mu), free(g->prec), free(g->cov), free(g->r);
}

typedef struct variant {
  const char *name;
  int algorithm, integrator, metric;
} variant;

static const variant variants[] = {
    {"leapfrog diag", HMC_ALG_HMC, HMC_LEAPFROG, HMC_METRIC_DIAG},
    {"leapfrog dense", HMC_ALG_HMC, HMC_LEAPFROG, HMC_METRIC_DENSE},
    {"omelyan diag", HMC_ALG_HMC, HMC_OMELYAN, HMC_METRIC_DIAG},
    {"yoshida4 dense", HMC_ALG_HMC, HMC_YOSHIDA4, HMC_METRIC_DENSE},
    {"quasi-newton", HMC_ALG_HMC, HMC_LEAPFROG, HMC_METRIC_BFGS},
    {"mams diag", HMC_ALG_MAMS, HMC_LEAPFROG, HMC_METRIC_DIAG},
    {"mams dense", HMC_ALG_MAMS, HMC_LEAPFROG, HMC_METRIC_DENSE},
};
#define N_VARIANTS (sizeof variants / sizeof *variants)

static void config_of(const variant *v, hmc_config *c, unsigned long seed) {
  hmc_config_default(c);
  c->algorithm = v->algorithm;
  c->integrator = v->integrator;
  c->metric = v->metric;
  c->seed = seed;
}

typedef struct run {
  double *draws; /* dim x n (coordinate-major: draws[i * n + k]) */
  long n_grad;   /* sampling phase only */
  long n_acc, n_div, n_nonfinite;
  double eps;
} run;

static int run_chain(MPI_Comm comm, gauss *g, const hmc_config *c, const double *q0, long n,
                     run *out) {
  hmc *h;
  CB_CALL(hmc_create(comm, g->d, c, gauss_logp, g, q0, &h));
  for (long k = 0; k < c->n_warmup; k++) CB_CALL(hmc_step(h, NULL));
  long g0 = hmc_n_grad(h), a0 = hmc_n_accepted(h);
  out->draws = malloc(g->d * (size_t)n * sizeof(double));
  for (long k = 0; k < n; k++) {
    CB_CALL(hmc_step(h, NULL));
    const double *q = hmc_position(h);
    for (size_t i = 0; i < g->d; i++) out->draws[i * (size_t)n + (size_t)k] = q[i];
  }
  out->n_grad = hmc_n_grad(h) - g0;
  out->n_acc = hmc_n_accepted(h) - a0;
  out->n_div = hmc_n_diverging(h);
  out->n_nonfinite = hmc_n_nonfinite(h);
  out->eps = hmc_step_size(h);
  hmc_destroy(&h);
  return CB_OK;
}

/* Means and covariance elements within `z` MCSE of the truth; returns the smallest bulk ESS. */
static double check_moments(const char *what, gauss *g, const run *r, long n, double z,
                            double min_ess, bool all_pairs) {
  size_t d = g->d;
  double ess_min = INFINITY;
  double *y = malloc((size_t)n * sizeof *y);
  int bad = 0;
  for (size_t i = 0; i < d; i++) {
    const double *x = r->draws + i * (size_t)n;
    diagnose_stats st;
    if (diagnose_summary(what, 1, (size_t)n, x, &st) != CB_OK) {
      TEST_CHECK(0, "%s: summary failed: %s", what, status_message());
      break;
    }
    ess_min = fmin(ess_min, st.ess_bulk);
    if (fabs(st.mean - g->mu[i]) > z * st.mcse_mean && bad++ < 3)
      TEST_CHECK(0, "%s: mean[%zu] %.5g vs %.5g (MCSE %.3g, ESS %.0f)", what, i, st.mean, g->mu[i],
                 st.mcse_mean, st.ess_bulk);
    for (size_t j = all_pairs ? 0 : i; j <= i; j++) {
      const double *xj = r->draws + j * (size_t)n;
      for (long k = 0; k < n; k++) y[k] = (x[k] - g->mu[i]) * (xj[k] - g->mu[j]);
      double m = 0;
      for (long k = 0; k < n; k++) m += y[k] / (double)n;
      double mc = diagnose_mcse_mean(1, (size_t)n, y);
      double scale = sqrt(g->cov[i * d + i] * g->cov[j * d + j]);
      if (fabs(m - g->cov[i * d + j]) > z * mc + 1e-12 * scale && bad++ < 3)
        TEST_CHECK(0, "%s: cov[%zu][%zu] %.5g vs %.5g (MCSE %.3g)", what, i, j, m,
                   g->cov[i * d + j], mc);
    }
  }
  TEST_CHECK(ess_min >= min_ess, "%s: smallest bulk ESS %.1f below %.0f", what, ess_min, min_ess);
  free(y);
  return ess_min;
}

static void test_statistics(void) {
  MPI_Comm self = MPI_COMM_SELF;
  /* 2-D correlated Gaussian. */
  gauss g2;
  gauss_init_2d(&g2, self);
  double q2[2] = {-1.1, 0.9};
  for (size_t v = 0; v < N_VARIANTS; v++) {
    hmc_config c;
    config_of(&variants[v], &c, 101 + v);
    c.n_warmup = 500;
    c.n_steps = 8;
    long n = 3000;
    run r = {0};
    char what[96];
    snprintf(what, sizeof what, "2-D %s", variants[v].name);
    TEST_STATUS(run_chain(self, &g2, &c, q2, n, &r), CB_OK, what);
    double e = check_moments(what, &g2, &r, n, 5.0, 200, true);
    if (verbose)
      printf("%-22s ESS %7.1f grads %7ld ESS/1000 grad %7.2f acc %.2f eps %.3g\n", what, e,
             r.n_grad, 1000 * e / (double)r.n_grad, (double)r.n_acc / (double)n, r.eps);
    free(r.draws);
  }
  gauss_free(&g2);

  /* 50-D, condition number 1e4 (sd 0.1 to 10) along the axes. */
  gauss g50;
  gauss_init(&g50, self, 50, 1e-2, 1e2, false, 7);
  double *q50 = calloc(50, sizeof(double));
  for (size_t v = 0; v < N_VARIANTS; v++) {
    hmc_config c;
    config_of(&variants[v], &c, 201 + v);
    c.n_warmup = 1000;
    c.n_steps = 16;
    long n = 1500;
    run r = {0};
    char what[96];
    snprintf(what, sizeof what, "50-D %s", variants[v].name);
    TEST_STATUS(run_chain(self, &g50, &c, q50, n, &r), CB_OK, what);
    double e = check_moments(what, &g50, &r, n, 5.0, 100, false);
    if (verbose)
      printf("%-22s ESS %7.1f grads %7ld ESS/1000 grad %7.2f acc %.2f eps %.3g\n", what, e,
             r.n_grad, 1000 * e / (double)r.n_grad, (double)r.n_acc / (double)n, r.eps);
    free(r.draws);
  }
  gauss_free(&g50);

  /* The same spectrum rotated: a diagonal mass matrix cannot undo the rotation, BFGS can. */
  gauss gr;
  gauss_init(&gr, self, 50, 1e-2, 1e2, true, 11);
  double epg[2] = {0, 0};
  const variant *cmp[2] = {&variants[0], &variants[4]};
  for (int v = 0; v < 2; v++) {
    hmc_config c;
    config_of(cmp[v], &c, 301 + (unsigned long)v);
    c.n_warmup = 1000;
    c.n_steps = 16;
    long n = 1500;
    run r = {0};
    char what[96];
    snprintf(what, sizeof what, "rotated 50-D %s", cmp[v]->name);
    TEST_STATUS(run_chain(self, &gr, &c, q50, n, &r), CB_OK, what);
    double e = INFINITY;
    for (size_t i = 0; i < gr.d; i++)
      e = fmin(e, diagnose_ess_bulk(1, (size_t)n, r.draws + i * (size_t)n));
    if (v == 1) check_moments(what, &gr, &r, n, 5.0, 100, false);
    epg[v] = 1000 * e / (double)r.n_grad;
    if (verbose)
      printf("%-22s ESS %7.1f grads %7ld ESS/1000 grad %7.2f acc %.2f eps %.3g\n", what, e,
             r.n_grad, epg[v], (double)r.n_acc / (double)n, r.eps);
    free(r.draws);
  }
  TEST_CHECK(epg[1] > 3 * epg[0],
             "rotated 50-D: quasi-Newton %.2f ESS/1000 gradients, not 3x "
             "leapfrog diag's %.2f",
             epg[1], epg[0]);
  free(q50);
  gauss_free(&gr);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  verbose = getenv("CERBERUS_TEST_VERBOSE") != NULL;
  if (testing_size() == 1) test_statistics();
  return testing_finish();
}
