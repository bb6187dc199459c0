/* test_hmc: the sampler (MODEL.md section 8) against truth, at 1-4 ranks.
 *
 * Targets are Gaussians N(mu, Sigma) whose work is split over the ranks: rank r computes the
 * rows i = r mod size of P (q - mu), P = Sigma^-1, and the pieces are summed by MPI_Allreduce
 * (each gradient element is non-zero on one rank only, so the gradient is exact on every rank
 * count, and ln p = (q - mu).grad / 2 is computed from it: the target has the same bits on any
 * number of ranks, so any difference between rank counts would be the sampler's).
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
 * - Distributed mode (q split over the ranks, 13 coordinates in blocks): means and variances
 *   within 5 MCSE for leapfrog and MAMS; bitwise resume from per-rank states; on one rank it is
 *   the replicated chain bit for bit; a dense metric or a rank without parameters is refused.
 * - The schedule: hmc_set_warmup(h, 0) ends warm-up (step size and metric frozen after it),
 *   hmc_set_warmup(h, 40) adapts again for exactly 40 steps; getters and step info agree.
 * - Pooled adaptation (hmc_pool): the window's metric is the shrunk covariance of every chain's
 *   window draws, step size and metric are shared after warm-up (and not without pooling), the
 *   quasi-Newton B stays each chain's own, a step with a pool pending is refused, chains grouped
 * over the ranks equal the all-local ones bit for bit, pooled chains sample a 50-D Gaussian.
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
  for (size_t i = 0; i < d; i++) grad[i] = 0;
  for (size_t i = (size_t)rank; i < d; i += (size_t)size) {
    double s = 0;
    for (size_t j = 0; j < d; j++) s += g->prec[i * d + j] * (q[j] - g->mu[j]);
    grad[i] = -s;
  }
  MPI_Allreduce(MPI_IN_PLACE, grad, (int)d, MPI_DOUBLE, MPI_SUM, g->comm);
  /* From the whole (exact) gradient, so ln p has the same bits on every rank count. */
  double lp = 0;
  for (size_t i = 0; i < d; i++) lp += 0.5 * (q[i] - g->mu[i]) * grad[i];
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

/* Every variant on target g from q0 (seeds seed0 + v): moments within 5 MCSE, ESS >= min_ess. */
static void statistics_of(MPI_Comm comm, gauss *g, const char *label, const double *q0,
                          unsigned long seed0, long warmup, int n_steps, long n, double min_ess) {
  for (size_t v = 0; v < N_VARIANTS; v++) {
    hmc_config c;
    config_of(&variants[v], &c, seed0 + v);
    c.n_warmup = warmup;
    c.n_steps = n_steps;
    run r = {0};
    char what[96];
    snprintf(what, sizeof what, "%s %s", label, variants[v].name);
    TEST_STATUS(run_chain(comm, g, &c, q0, n, &r), CB_OK, what);
    double e = check_moments(what, g, &r, n, 5.0, min_ess, true);
    if (verbose)
      printf("%-22s ESS %7.1f grads %7ld ESS/1000 grad %7.2f acc %.2f eps %.3g\n", what, e,
             r.n_grad, 1000 * e / (double)r.n_grad, (double)r.n_acc / (double)n, r.eps);
    free(r.draws);
  }
}

static void test_statistics(void) {
  MPI_Comm self = MPI_COMM_SELF;
  /* 2-D correlated Gaussian. */
  gauss g2;
  gauss_init_2d(&g2, self);
  double q2[2] = {-1.1, 0.9};
  statistics_of(self, &g2, "2-D", q2, 101, 500, 8, 3000, 200);
  gauss_free(&g2);

  /* 50-D, condition number 1e4 (sd 0.1 to 10) along the axes. */
  gauss g50;
  gauss_init(&g50, self, 50, 1e-2, 1e2, false, 7);
  double *q50 = calloc(50, sizeof(double));
  statistics_of(self, &g50, "50-D", q50, 201, 1000, 16, 1500, 100);
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
    if (v == 1) check_moments(what, &gr, &r, n, 5.0, 100, true);
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

/* A truncated Gaussian: ln p = NaN where q_0 < 0. */
static void test_truncated(void) {
  MPI_Comm self = MPI_COMM_SELF;
  gauss g;
  gauss_init(&g, self, 2, 2.385 * 2.385, 2.385 * 2.385, false, 3);
  g.mu[0] = 0;
  g.mu[1] = 0.4;
  g.truncate = true;
  const variant *vs[2] = {&variants[0], &variants[4]};
  for (int v = 0; v < 2; v++) {
    hmc_config c;
    config_of(vs[v], &c, 401 + (unsigned long)v);
    c.n_warmup = 500;
    c.n_steps = 8;
    const long n = 4000;
    double q0[2] = {0.5, 0.3};
    hmc *h = NULL;
    char what[96];
    snprintf(what, sizeof what, "truncated %s", vs[v]->name);
    TEST_STATUS(hmc_create(self, 2, &c, gauss_logp, &g, q0, &h), CB_OK, what);
    if (!h) continue;
    double *x = malloc(3 * (size_t)n * sizeof *x);
    long grads = 0, div = 0, nonfin = 0, below = 0;
    for (long k = 0; k < c.n_warmup + n; k++) {
      hmc_step_info info;
      TEST_STATUS(hmc_step(h, &info), CB_OK, what);
      grads += info.n_grad;
      div += info.diverging;
      nonfin += info.nonfinite;
      if (info.nonfinite && (info.accepted || info.accept_prob != 0 || !info.diverging))
        TEST_CHECK(0, "%s: a non-finite trajectory accepted (p %g)", what, info.accept_prob);
      const double *q = hmc_position(h);
      below += q[0] < 0;
      if (k >= c.n_warmup) {
        size_t i = (size_t)(k - c.n_warmup);
        x[i] = q[0];
        x[(size_t)n + i] = q[1];
        x[2 * (size_t)n + i] = q[0] * q[0];
      }
    }
    TEST_CHECK(nonfin > 20, "%s: only %ld non-finite trajectories", what, nonfin);
    TEST_CHECK(nonfin == hmc_n_nonfinite(h) && div == hmc_n_diverging(h),
               "%s: counts %ld/%ld vs %ld/%ld", what, nonfin, div, hmc_n_nonfinite(h),
               hmc_n_diverging(h));
    TEST_CHECK(grads + 1 == hmc_n_grad(h), "%s: gradients %ld + 1 vs %ld", what, grads,
               hmc_n_grad(h));
    TEST_CHECK(below == 0, "%s: %ld draws outside the domain", what, below);
    double sd = 2.385, truth[3] = {sd * sqrt(2 / M_PI), 0.4, sd * sd};
    for (int k = 0; k < 3; k++) {
      diagnose_stats st;
      TEST_STATUS(diagnose_summary(what, 1, (size_t)n, x + k * n, &st), CB_OK, what);
      TEST_CHECK(fabs(st.mean - truth[k]) < 5 * st.mcse_mean && st.ess_bulk > 200,
                 "%s: moment %d %.4g vs %.4g (MCSE %.3g, ESS %.0f)", what, k, st.mean, truth[k],
                 st.mcse_mean, st.ess_bulk);
    }
    if (verbose)
      printf("%s: %ld non-finite of %ld, acceptance %.2f\n", what, nonfin, c.n_warmup + n,
             (double)hmc_n_accepted(h) / (double)(c.n_warmup + n));
    free(x);
    hmc_destroy(&h);
  }
  gauss_free(&g);
}

static bool same_bits(size_t n, const double *a, const double *b) {
  return memcmp(a, b, n * sizeof *a) == 0;
}

/* The chain on comm equals the chain alone on each rank; the ranks agree. */
static void test_ranks(MPI_Comm comm) {
  const size_t d = 7;
  gauss gw, gs;
  gauss_init(&gw, comm, d, 0.05, 20, true, 5);
  gauss_init(&gs, MPI_COMM_SELF, d, 0.05, 20, true, 5);
  double q0[7] = {0.3, -1.2, 2.385, 0.7, -0.1, 1.9, -2.2};
  for (size_t v = 0; v < N_VARIANTS; v++) {
    hmc_config c;
    config_of(&variants[v], &c, 501 + v);
    c.n_warmup = 80;
    c.n_steps = 4;
    c.window_init = 15;
    c.window_base = 10;
    c.window_term = 20;
    hmc *hw = NULL, *hs = NULL;
    TEST_STATUS(hmc_create(comm, d, &c, gauss_logp, &gw, q0, &hw), CB_OK, variants[v].name);
    TEST_STATUS(hmc_create(MPI_COMM_SELF, d, &c, gauss_logp, &gs, q0, &hs), CB_OK,
                variants[v].name);
    if (!hw || !hs) continue;
    int bad = 0, worst = 0;
    for (int k = 0; k < 110 && !bad; k++) {
      hmc_step_info iw, is;
      TEST_STATUS(hmc_step(hw, &iw), CB_OK, "step on comm");
      TEST_STATUS(hmc_step(hs, &is), CB_OK, "step alone");
      if (!same_bits(d, hmc_position(hw), hmc_position(hs)) || iw.accepted != is.accepted ||
          iw.n_steps != is.n_steps || iw.step_size != is.step_size) {
        TEST_CHECK(0, "%s: the chain on %d ranks leaves the one on 1 rank at step %d",
                   variants[v].name, testing_size(), k);
        bad = 1;
      }
      if (hmc_lp(hw) != hmc_lp(hs) && !bad++)
        TEST_CHECK(0, "%s: lp %.17g vs %.17g", variants[v].name, hmc_lp(hw), hmc_lp(hs));
      /* every rank holds the same position as the root */
      double mine[7], lo[7], hi[7];
      memcpy(mine, hmc_position(hw), sizeof mine);
      MPI_Allreduce(mine, lo, (int)d, MPI_DOUBLE, MPI_MIN, comm);
      MPI_Allreduce(mine, hi, (int)d, MPI_DOUBLE, MPI_MAX, comm);
      if (!same_bits(d, lo, hi)) worst = 1;
    }
    TEST_CHECK(!worst, "%s: the ranks hold different positions", variants[v].name);
    TEST_CHECK(hmc_n_accepted(hw) > 40, "%s: %ld accepted", variants[v].name, hmc_n_accepted(hw));
    hmc_destroy(&hw);
    hmc_destroy(&hs);
  }
  gauss_free(&gw);
  gauss_free(&gs);
}

/* Save at step k inside warm-up; load into a new sampler (on comm, and alone on each rank). */
static void test_restart(MPI_Comm comm) {
  const size_t d = 5;
  gauss gw, gs;
  gauss_init(&gw, comm, d, 0.1, 10, true, 9);
  gauss_init(&gs, MPI_COMM_SELF, d, 0.1, 10, true, 9);
  double q0[5] = {0.3, -1.2, 2.385, 0.7, -0.1}, q1[5] = {1, 2, 3, 4, 5};
  const int k_save = 70, n_more = 60;
  for (size_t v = 0; v < N_VARIANTS; v++) {
    hmc_config c;
    config_of(&variants[v], &c, 601 + v);
    c.n_warmup = 100;
    c.n_steps = 4;
    c.window_init = 20; /* windows end inside the continued part */
    c.window_base = 10;
    c.window_term = 30;
    hmc *a = NULL, *b = NULL, *s = NULL;
    const char *nm = variants[v].name;
    TEST_STATUS(hmc_create(comm, d, &c, gauss_logp, &gw, q0, &a), CB_OK, nm);
    TEST_STATUS(hmc_create(comm, d, &c, gauss_logp, &gw, q1, &b), CB_OK, nm);
    TEST_STATUS(hmc_create(MPI_COMM_SELF, d, &c, gauss_logp, &gs, q1, &s), CB_OK, nm);
    if (!a || !b || !s) continue;
    for (int k = 0; k < k_save; k++) TEST_STATUS(hmc_step(a, NULL), CB_OK, nm);
    size_t n = hmc_state_size(a);
    TEST_CHECK(n == hmc_state_size(b), "%s: state sizes differ", nm);
    unsigned char *buf = malloc(n), *buf2 = malloc(n), *buf3 = malloc(n);
    TEST_STATUS(hmc_state_save(a, buf), CB_OK, nm);
    TEST_STATUS(hmc_state_load(b, buf), CB_OK, nm);
    TEST_STATUS(hmc_state_load(s, buf), CB_OK, nm);
    int bad = 0;
    for (int k = 0; k < n_more && !bad; k++) {
      hmc_step_info ia, ib, is;
      TEST_STATUS(hmc_step(a, &ia), CB_OK, nm);
      TEST_STATUS(hmc_step(b, &ib), CB_OK, nm);
      TEST_STATUS(hmc_step(s, &is), CB_OK, nm);
      if (!same_bits(d, hmc_position(a), hmc_position(b)) || ia.step_size != ib.step_size ||
          ia.energy != ib.energy || hmc_lp(a) != hmc_lp(b)) {
        TEST_CHECK(0, "%s: the resumed chain differs at step %d after the save", nm, k);
        bad = 1;
      }
      if (!same_bits(d, hmc_position(a), hmc_position(s)) || ia.step_size != is.step_size) {
        TEST_CHECK(0, "%s: the chain resumed on 1 rank differs at step %d", nm, k);
        bad = 1;
      }
    }
    TEST_CHECK(!hmc_in_warmup(a) && !hmc_in_warmup(b), "%s: still in warm-up", nm);
    /* The whole states agree at the end. */
    TEST_STATUS(hmc_state_save(a, buf), CB_OK, nm);
    TEST_STATUS(hmc_state_save(b, buf2), CB_OK, nm);
    TEST_CHECK(memcmp(buf, buf2, n) == 0, "%s: the final states differ", nm);
    /* The saved state is the same on every rank. */
    memcpy(buf3, buf, n);
    MPI_Bcast(buf3, (int)n, MPI_BYTE, 0, comm);
    TEST_CHECK(memcmp(buf, buf3, n) == 0, "%s: the state differs between ranks", nm);
    free(buf), free(buf2), free(buf3);
    hmc_destroy(&a);
    hmc_destroy(&b);
    hmc_destroy(&s);
  }
  /* A state of another metric, another dimension: refused. */
  {
    hmc_config c1, c2;
    config_of(&variants[0], &c1, 1);
    config_of(&variants[1], &c2, 1);
    hmc *a = NULL, *b = NULL, *e = NULL;
    TEST_STATUS(hmc_create(comm, d, &c1, gauss_logp, &gw, q0, &a), CB_OK, "diag");
    TEST_STATUS(hmc_create(comm, d, &c2, gauss_logp, &gw, q0, &b), CB_OK, "dense");
    gauss g4;
    gauss_init(&g4, comm, 4, 0.1, 10, false, 9);
    TEST_STATUS(hmc_create(comm, 4, &c1, gauss_logp, &g4, q0, &e), CB_OK, "dim 4");
    if (a && b && e) {
      unsigned char *buf = malloc(hmc_state_size(a));
      TEST_STATUS(hmc_state_save(a, buf), CB_OK, "save");
      TEST_STATUS(hmc_state_load(b, buf), CB_ERR_INPUT, "load a diag state into dense");
      TEST_STATUS(hmc_state_load(e, buf), CB_ERR_INPUT, "load a 5-D state into 4-D");
      TEST_CHECK(strstr(status_message(), "dimension") != NULL, "message: %s", status_message());
      status_clear();
      free(buf);
    }
    hmc_destroy(&a);
    hmc_destroy(&b);
    hmc_destroy(&e);
    gauss_free(&g4);
  }
  gauss_free(&gw);
  gauss_free(&gs);
}

/* Distributed mode: an independent Gaussian of D = 13 coordinates split in blocks over the ranks;
 * ln p is reduced, the gradient stays local. */
typedef struct dgauss {
  MPI_Comm comm;
  size_t n, off; /* local count, first global index */
} dgauss;

static double dg_mu(size_t i) {
  return 2.385 * sin(1.0 + (double)i);
}
static double dg_sd(size_t i) {
  return 0.5 + 0.2 * (double)i;
}

static int dgauss_logp(void *ctx, const double *q, double *logp, double *grad) {
  dgauss *g = ctx;
  double lp = 0;
  for (size_t i = 0; i < g->n; i++) {
    double s = dg_sd(g->off + i), z = (q[i] - dg_mu(g->off + i)) / s;
    lp += -0.5 * z * z;
    grad[i] = -z / s;
  }
  MPI_Allreduce(MPI_IN_PLACE, &lp, 1, MPI_DOUBLE, MPI_SUM, g->comm);
  *logp = lp;
  return CB_OK;
}

static void test_distributed(MPI_Comm comm) {
  const size_t D = 13;
  int rank = testing_rank(), size = testing_size();
  dgauss g = {comm, D / (size_t)size + ((size_t)rank < D % (size_t)size), 0};
  for (int r = 0; r < rank; r++) g.off += D / (size_t)size + ((size_t)r < D % (size_t)size);
  double q0[13];
  for (size_t i = 0; i < g.n; i++) q0[i] = 0.3 * (double)(g.off + i) - 1;
  const variant *vs[2] = {&variants[0], &variants[5]};
  for (int v = 0; v < 2; v++) {
    char what[96];
    snprintf(what, sizeof what, "distributed %s", vs[v]->name);
    hmc_config c;
    config_of(vs[v], &c, 701 + (unsigned long)v);
    c.distributed = true;
    c.n_warmup = 250;
    c.n_steps = 8;
    const long n = 700;
    hmc *h = NULL;
    TEST_STATUS(hmc_create(comm, g.n, &c, dgauss_logp, &g, q0, &h), CB_OK, what);
    if (!h) continue;
    double *x = malloc(g.n * (size_t)n * sizeof *x);
    for (long k = 0; k < c.n_warmup + n; k++) {
      TEST_STATUS(hmc_step(h, NULL), CB_OK, what);
      if (k >= c.n_warmup)
        for (size_t i = 0; i < g.n; i++)
          x[i * (size_t)n + (size_t)(k - c.n_warmup)] = hmc_position(h)[i];
    }
    for (size_t i = 0; i < g.n; i++) {
      diagnose_stats st;
      TEST_STATUS(diagnose_summary(what, 1, (size_t)n, x + i * (size_t)n, &st), CB_OK, what);
      double m = dg_mu(g.off + i), sd = dg_sd(g.off + i);
      if (verbose) printf("%s: ESS[%zu] %.0f\n", what, g.off + i, st.ess_bulk);
      TEST_CHECK(fabs(st.mean - m) < 5 * st.mcse_mean && st.ess_bulk > 60,
                 "%s: mean[%zu] %.4g vs %.4g (MCSE %.3g, ESS %.0f)", what, g.off + i, st.mean, m,
                 st.mcse_mean, st.ess_bulk);
      for (long k = 0; k < n; k++)
        x[i * (size_t)n + (size_t)k] = pow(x[i * (size_t)n + (size_t)k] - m, 2);
      double mv = 0;
      for (long k = 0; k < n; k++) mv += x[i * (size_t)n + (size_t)k] / (double)n;
      double mc = diagnose_mcse_mean(1, (size_t)n, x + i * (size_t)n);
      TEST_CHECK(fabs(mv - sd * sd) < 5 * mc, "%s: var[%zu] %.4g vs %.4g (MCSE %.3g)", what,
                 g.off + i, mv, sd * sd, mc);
    }
    free(x);
    /* Bitwise resume, each rank from its own state. */
    hmc *b = NULL;
    TEST_STATUS(hmc_create(comm, g.n, &c, dgauss_logp, &g, q0, &b), CB_OK, what);
    if (b) {
      size_t ns = hmc_state_size(h);
      unsigned char *buf = malloc(ns);
      TEST_STATUS(hmc_state_save(h, buf), CB_OK, what);
      TEST_STATUS(hmc_state_load(b, buf), CB_OK, what);
      int bad = 0;
      for (int k = 0; k < 40 && !bad; k++) {
        TEST_STATUS(hmc_step(h, NULL), CB_OK, what);
        TEST_STATUS(hmc_step(b, NULL), CB_OK, what);
        if (!same_bits(g.n, hmc_position(h), hmc_position(b)) || hmc_lp(h) != hmc_lp(b)) bad = 1;
      }
      TEST_CHECK(!bad, "%s: the resumed chain differs", what);
      free(buf);
      hmc_destroy(&b);
    }
    /* On one rank, the distributed mode is the replicated one. */
    if (size == 1) {
      hmc_config cr = c;
      cr.distributed = false;
      hmc *r = NULL, *d = NULL;
      TEST_STATUS(hmc_create(comm, g.n, &cr, dgauss_logp, &g, q0, &r), CB_OK, what);
      TEST_STATUS(hmc_create(comm, g.n, &c, dgauss_logp, &g, q0, &d), CB_OK, what);
      int bad = 0;
      for (int k = 0; r && d && k < 200 && !bad; k++) {
        TEST_STATUS(hmc_step(r, NULL), CB_OK, what);
        TEST_STATUS(hmc_step(d, NULL), CB_OK, what);
        bad = !same_bits(g.n, hmc_position(r), hmc_position(d));
      }
      TEST_CHECK(!bad, "%s: on one rank it leaves the replicated chain", what);
      hmc_destroy(&r);
      hmc_destroy(&d);
    }
    hmc_destroy(&h);
  }
  /* Dense metric: refused; a rank without parameters: refused on every rank. */
  hmc_config c;
  config_of(&variants[1], &c, 1);
  c.distributed = true;
  hmc *h = NULL;
  TEST_STATUS(hmc_create(comm, g.n, &c, dgauss_logp, &g, q0, &h), CB_ERR_INPUT,
              "distributed dense");
  config_of(&variants[0], &c, 1);
  c.distributed = true;
  if (size > 1) {
    dgauss g0 = g;
    if (rank == size - 1) g0.n = 0;
    TEST_STATUS(hmc_create(comm, g0.n, &c, dgauss_logp, &g0, q0, &h), CB_ERR_INPUT,
                "a rank without parameters");
  }
  status_clear();
}

/* The quasi-Newton variant's B is learnt up to the end of the slow phase and frozen for the
 * final fast buffer (window_term steps), where only the step size adapts: B at the end of
 * warm-up is the one sampling keeps, and the step size is learnt for it. */
static void test_bfgs_freeze(MPI_Comm comm) {
  gauss g;
  gauss_init(&g, comm, 5, 0.1, 10, true, 17);
  double q0[5] = {0.3, -0.2, 0.1, 0.5, -0.4};
  hmc_config c;
  config_of(&variants[4], &c, 1201);
  c.n_warmup = 300; /* windows 75 + 175 slow + 50 final */
  hmc *h = NULL;
  TEST_STATUS(hmc_create(comm, 5, &c, gauss_logp, &g, q0, &h), CB_OK, "bfgs freeze");
  if (!h) {
    gauss_free(&g);
    return;
  }
  const double *m;
  size_t nm = hmc_inverse_metric(h, &m);
  double b100[25], b250[25], eps250 = 0;
  hmc_step_info info;
  for (long k = 0; k < c.n_warmup; k++) {
    TEST_STATUS(hmc_step(h, &info), CB_OK, "bfgs freeze: warm-up step");
    if (k + 1 == 100) memcpy(b100, m, nm * sizeof *m);
    if (k + 1 == 250) {
      memcpy(b250, m, nm * sizeof *m);
      eps250 = hmc_step_size(h);
    }
  }
  TEST_CHECK(nm == 25 && !hmc_in_warmup(h), "bfgs freeze: %zu metric entries", nm);
  TEST_CHECK(memcmp(b100, b250, sizeof b250) != 0, "bfgs freeze: B not learnt in the slow phase");
  TEST_CHECK(memcmp(b250, m, sizeof b250) == 0, "bfgs freeze: B changed in the final buffer");
  TEST_CHECK(hmc_step_size(h) != eps250,
             "bfgs freeze: the step size not adapted in the final buffer");
  hmc_destroy(&h);
  gauss_free(&g);
}

/* ---- pooled adaptation across chains (hmc_pool) ---- */

/* K chains in rounds on comm from q0 (seeds seed + c), pooled after every round (across: see
 * hmc_pool; chain c here when c % n_groups == group), W warm-up and n sampling steps. Chain c's
 * sampling draws go to out[c] (coordinate-major) when out is not NULL, its final position to
 * qend + c d when qend is not NULL. */
static int run_pooled(MPI_Comm comm, MPI_Comm across, int group, int n_groups, gauss *g,
                      const hmc_config *c0, int K, const double *q0, long W, long n, run *out,
                      double *qend) {
  hmc *h[8] = {0};
  int idx[8], nl = 0, st = CB_OK;
  hmc_config c = *c0;
  c.n_warmup = W;
  c.pool_chains = true;
  for (int k = 0; k < K && !st; k++) {
    if (k % n_groups != group) continue;
    c.seed = c0->seed + (unsigned long)k;
    idx[nl] = k;
    st = hmc_create(comm, g->d, &c, gauss_logp, g, q0, &h[nl++]);
  }
  for (int i = 0; out && i < nl; i++) {
    out[idx[i]].draws = malloc(g->d * (size_t)n * sizeof(double));
    if (!out[idx[i]].draws) st = CB_ERR_MEM;
  }
  for (long t = 0; t < W + n && !st; t++) {
    for (int i = 0; i < nl && !st; i++) {
      st = hmc_step(h[i], NULL);
      if (st || t < W || !out) continue;
      const double *q = hmc_position(h[i]);
      for (size_t j = 0; j < g->d; j++) out[idx[i]].draws[j * (size_t)n + (size_t)(t - W)] = q[j];
    }
    if (!st) st = hmc_pool(h, idx, nl, K, across);
  }
  for (int i = 0; i < nl; i++) {
    if (!st && out) {
      out[idx[i]].n_grad = hmc_n_grad(h[i]);
      out[idx[i]].eps = hmc_step_size(h[i]);
    }
    if (!st && qend)
      memcpy(qend + (size_t)idx[i] * g->d, hmc_position(h[i]), g->d * sizeof(double));
    hmc_destroy(&h[i]);
  }
  return st;
}

/* K chains of variant v with warm-up 300 (seeds seed + k), pooled or not; *c their config. */
static int pool_chains(MPI_Comm comm, gauss *g, const variant *v, unsigned long seed, bool pooled,
                       const double *q0, int K, hmc **h, hmc_config *c) {
  config_of(v, c, seed);
  c->n_warmup = 300;
  c->pool_chains = pooled;
  for (int k = 0; k < K; k++) {
    c->seed = seed + (unsigned long)k;
    CB_CALL(hmc_create(comm, g->d, c, gauss_logp, g, q0, &h[k]));
  }
  return CB_OK;
}

/* Pooled adaptation: the metric at a window's end is the shrunk covariance of every chain's
 * window draws (computed here from the positions); after warm-up the chains share step size
 * and metric bit for bit (without pooling they do not); the quasi-Newton variant keeps each
 * chain's B and shares the step size; a step while a pool is pending is refused; grouping the
 * chains over the ranks (each rank a group, the chains dealt out) gives the chains of an all-local
 * run bit for bit; pooled chains sample the 50-D Gaussian correctly (1 rank). */
static void test_pool(MPI_Comm comm) {
  enum { K = 3, D = 5 };
  gauss g;
  gauss_init(&g, comm, D, 0.1, 10, true, 23);
  double q0[D] = {0.3, -0.2, 0.1, 0.5, -0.4};
  int idx[K] = {0, 1, 2};
  /* The diagonal metric at the first window's end (warm-up 300: draws 75..99). */
  for (int pooled = 1; pooled >= 0; pooled--) {
    const char *what = pooled ? "pool diag" : "alone diag";
    hmc_config c;
    hmc *h[K] = {0};
    int st = pool_chains(comm, &g, &variants[0], 1301, pooled, q0, K, h, &c);
    TEST_STATUS(st, CB_OK, what);
    double sum[D] = {0}, sum2[D] = {0};
    for (long t = 0; t < 300 && !st; t++) {
      for (int k = 0; k < K && !st; k++) {
        st = hmc_step(h[k], NULL);
        if (t >= 75 && t < 100)
          for (int i = 0; i < D; i++) {
            double x = hmc_position(h[k])[i];
            sum[i] += x;
            sum2[i] += x * x;
          }
      }
      if (st) break;
      if (t == 99 && pooled) {
        TEST_CHECK(hmc_pool_pending(h[0]) && hmc_pool_pending(h[2]), "%s: no pool pending", what);
        TEST_STATUS(hmc_step(h[1], NULL), CB_ERR_INPUT, "a step with a pool pending");
        status_clear();
      }
      st = hmc_pool(h, idx, K, K, MPI_COMM_NULL);
      if (t == 99 && pooled && !st) {
        const double n = 75, w = c.shrink_diag;
        for (int k = 0; k < K; k++) {
          const double *m;
          hmc_inverse_metric(h[k], &m);
          for (int i = 0; i < D; i++) {
            double mean = sum[i] / n, var = (sum2[i] - n * mean * mean) / (n - 1);
            double want = n / (n + w) * var + w / (n + w) * c.metric_init;
            TEST_CHECK(fabs(m[i] - want) < 1e-9 * want, "%s: chain %d metric[%d] %.12g vs %.12g",
                       what, k, i, m[i], want);
          }
        }
      }
    }
    TEST_STATUS(st, CB_OK, what);
    status_clear();
    if (st) {
      for (int k = 0; k < K; k++) hmc_destroy(&h[k]);
      continue;
    }
    const double *m0, *m1;
    hmc_inverse_metric(h[0], &m0);
    hmc_inverse_metric(h[1], &m1);
    bool same = hmc_step_size(h[0]) == hmc_step_size(h[1]) && memcmp(m0, m1, D * sizeof *m0) == 0;
    TEST_CHECK(!hmc_in_warmup(h[0]) && same == pooled,
               "%s: after warm-up the chains %s step size and metric (eps %.17g, %.17g)", what,
               same ? "share" : "do not share", hmc_step_size(h[0]), hmc_step_size(h[1]));
    TEST_CHECK(memcmp(hmc_position(h[0]), hmc_position(h[1]), D * sizeof(double)) != 0,
               "%s: the chains are at the same position", what);
    for (int k = 0; k < K; k++) hmc_destroy(&h[k]);
  }
  /* The quasi-Newton variant at the freeze (warm-up 300: slow phase to 250): each chain keeps
   * its own B, the step size is pooled. */
  {
    hmc_config c;
    hmc *h[K] = {0};
    int st = pool_chains(comm, &g, &variants[4], 1401, true, q0, K, h, &c);
    double own[K][D * D];
    for (long t = 0; t < 300 && !st; t++) {
      for (int k = 0; k < K && !st; k++) st = hmc_step(h[k], NULL);
      if (t == 249 && !st) {
        TEST_CHECK(hmc_pool_pending(h[0]), "pool bfgs: no pool pending at the freeze");
        for (int k = 0; k < K; k++) {
          const double *m;
          hmc_inverse_metric(h[k], &m);
          memcpy(own[k], m, sizeof own[k]);
        }
      }
      if (!st) st = hmc_pool(h, idx, K, K, MPI_COMM_NULL);
      if (t == 249 && !st)
        TEST_CHECK(hmc_step_size(h[0]) == hmc_step_size(h[1]) &&
                       hmc_step_size(h[0]) == hmc_step_size(h[2]),
                   "pool bfgs: step sizes %g %g %g after the freeze", hmc_step_size(h[0]),
                   hmc_step_size(h[1]), hmc_step_size(h[2]));
    }
    TEST_STATUS(st, CB_OK, "pool bfgs");
    status_clear();
    if (!st) {
      bool kept = true;
      for (int k = 0; k < K; k++) {
        const double *m;
        hmc_inverse_metric(h[k], &m);
        kept = kept && memcmp(own[k], m, sizeof own[k]) == 0;
      }
      TEST_CHECK(kept && memcmp(own[0], own[1], sizeof own[0]) != 0,
                 "pool bfgs: the chains' B were not kept (or were equal)");
      TEST_CHECK(hmc_step_size(h[0]) == hmc_step_size(h[2]),
                 "pool bfgs: after warm-up the chains differ in step size");
    }
    for (int k = 0; k < K; k++) hmc_destroy(&h[k]);
  }
  gauss_free(&g);
  /* Grouping: each rank a group of its own (MPI_COMM_SELF), the 4 chains dealt out, against all
   * 4 chains on every rank. */
  {
    int rank = testing_rank(), size = testing_size();
    gauss gs;
    gauss_init(&gs, MPI_COMM_SELF, D, 0.1, 10, true, 23);
    for (int v = 0; v < 2; v++) {
      const variant *var = &variants[v == 0 ? 1 : 4];
      hmc_config c;
      config_of(var, &c, 1501);
      double local[4 * D] = {0}, grouped[4 * D] = {0};
      int st = run_pooled(MPI_COMM_SELF, MPI_COMM_NULL, 0, 1, &gs, &c, 4, q0, 200, 30, NULL, local);
      TEST_STATUS(st, CB_OK, "pool: all chains local");
      st = run_pooled(MPI_COMM_SELF, comm, rank, size < 4 ? size : 4, &gs, &c, 4, q0, 200, 30, NULL,
                      grouped);
      TEST_STATUS(st, CB_OK, "pool: chains in groups");
      status_clear();
      /* every chain's end point to every rank */
      MPI_Allreduce(MPI_IN_PLACE, grouped, 4 * D, MPI_DOUBLE, MPI_SUM, comm);
      if (size > 4) continue;
      TEST_CHECK(same_bits(4 * D, local, grouped),
                 "pool %s: chains grouped over %d ranks leave the all-local ones", var->name, size);
    }
    gauss_free(&gs);
  }
  /* Statistics of pooled chains on the 50-D Gaussian with condition number 1e4. */
  if (testing_size() == 1) {
    gauss g50;
    gauss_init(&g50, MPI_COMM_SELF, 50, 1e-2, 1e2, false, 7);
    double *q50 = calloc(50, sizeof(double));
    const size_t vs[] = {0, 4, 5};
    for (size_t k = 0; k < sizeof vs / sizeof *vs; k++) {
      hmc_config c;
      config_of(&variants[vs[k]], &c, 1601);
      c.n_steps = 16;
      run r[4] = {{0}};
      char what[96];
      snprintf(what, sizeof what, "50-D pooled %s", variants[vs[k]].name);
      TEST_STATUS(
          run_pooled(MPI_COMM_SELF, MPI_COMM_NULL, 0, 1, &g50, &c, 4, q50, 1000, 1000, r, NULL),
          CB_OK, what);
      for (int ch = 0; ch < 4; ch += 3)
        if (r[ch].draws) check_moments(what, &g50, &r[ch], 1000, 5.0, 60, false);
      if (r[0].draws && r[3].draws)
        TEST_CHECK(r[0].eps == r[3].eps, "%s: step sizes %g, %g", what, r[0].eps, r[3].eps);
      for (int ch = 0; ch < 4; ch++) free(r[ch].draws);
    }
    free(q50);
    gauss_free(&g50);
  }
}

/* The warm-up schedule and the getters. */
static void test_schedule(MPI_Comm comm) {
  gauss g;
  gauss_init_2d(&g, comm);
  double q0[2] = {0.4, -0.2};
  for (int v = 0; v < 2; v++) {
    hmc_config c;
    config_of(&variants[v], &c, 801);
    c.n_warmup = 1000;
    hmc *h = NULL;
    TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, q0, &h), CB_OK, "schedule");
    if (!h) continue;
    const double *m;
    TEST_CHECK(hmc_dim(h) == 2 && hmc_inverse_metric(h, &m) == (v ? 4u : 2u),
               "dim %zu, metric entries %zu", hmc_dim(h), hmc_inverse_metric(h, &m));
    TEST_CHECK(hmc_get_config(h)->metric == variants[v].metric, "config copy");
    hmc_step_info info;
    for (int k = 0; k < 30; k++) {
      TEST_STATUS(hmc_step(h, &info), CB_OK, "warm-up step");
      TEST_CHECK(info.warmup && info.n_steps >= 1 && info.n_steps <= c.n_steps &&
                     info.step_size > 0 && info.step_size <= c.step_size * 1e3,
                 "warm-up step %d: warmup %d, n %d, eps %g", k, info.warmup, info.n_steps,
                 info.step_size);
    }
    TEST_CHECK(hmc_in_warmup(h), "in warm-up after 30 of 1000 steps");
    TEST_STATUS(hmc_set_warmup(h, 0), CB_OK, "end warm-up");
    TEST_CHECK(!hmc_in_warmup(h), "warm-up ended");
    double eps = hmc_step_size(h), m0 = m[0];
    for (int k = 0; k < 20; k++) {
      TEST_STATUS(hmc_step(h, &info), CB_OK, "sampling step");
      TEST_CHECK(!info.warmup && info.step_size <= eps, "sampling step %d: warmup %d, eps %g", k,
                 info.warmup, info.step_size);
    }
    TEST_CHECK(hmc_step_size(h) == eps && m[0] == m0, "adapted after warm-up: eps %g -> %g", eps,
               hmc_step_size(h));
    TEST_STATUS(hmc_set_warmup(h, 40), CB_OK, "a second warm-up");
    for (int k = 0; k < 40; k++) TEST_STATUS(hmc_step(h, &info), CB_OK, "second warm-up");
    TEST_CHECK(!hmc_in_warmup(h) && info.warmup, "the second warm-up lasts 40 steps");
    TEST_CHECK(hmc_step_size(h) != eps, "the second warm-up adapted nothing");
    TEST_CHECK(hmc_n_iterations(h) == 90 && hmc_trajectory_length(h) > 0,
               "iterations %ld, length %g", hmc_n_iterations(h), hmc_trajectory_length(h));
    TEST_STATUS(hmc_set_warmup(h, -3), CB_ERR_INPUT, "negative warm-up");
    status_clear();
    hmc_destroy(&h);
    TEST_CHECK(h == NULL, "destroy leaves NULL");
  }
  gauss_free(&g);
}

static void test_bad_config(MPI_Comm comm) {
  gauss g;
  gauss_init_2d(&g, comm);
  double q0[2] = {0.1, 0.2};
  hmc *h = NULL;
  hmc_config c;
  hmc_config_default(&c);
  c.step_size = 0;
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, q0, &h), CB_ERR_INPUT, "step size 0");
  c.step_size = -0.3;
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, q0, &h), CB_ERR_INPUT, "step size < 0");
  c.step_size = NAN;
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, q0, &h), CB_ERR_INPUT, "step size NaN");
  hmc_config_default(&c);
  c.metric = 7;
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, q0, &h), CB_ERR_INPUT, "metric 7");
  TEST_CHECK(strstr(status_message(), "metric") != NULL, "message: %s", status_message());
  hmc_config_default(&c);
  c.integrator = -1;
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, q0, &h), CB_ERR_INPUT, "integrator -1");
  hmc_config_default(&c);
  TEST_STATUS(hmc_create(comm, 0, &c, gauss_logp, &g, q0, &h), CB_ERR_INPUT, "dim 0");
  c.algorithm = HMC_ALG_MAMS;
  c.metric = HMC_METRIC_BFGS;
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, q0, &h), CB_ERR_INPUT, "MAMS + BFGS");
  hmc_config_default(&c);
  c.target_accept = 1.2;
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, q0, &h), CB_ERR_INPUT, "target 1.2");
  hmc_config_default(&c);
  c.n_steps = 0;
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, q0, &h), CB_ERR_INPUT, "0 steps");
  hmc_config_default(&c);
  double qn[2] = {NAN, 0};
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, qn, &h), CB_ERR_INPUT, "NaN start");
  g.truncate = true;
  double qo[2] = {-0.5, 0};
  TEST_STATUS(hmc_create(comm, 2, &c, gauss_logp, &g, qo, &h), CB_ERR_INPUT,
              "start where ln p is NaN");
  TEST_CHECK(h == NULL, "a failed create leaves NULL");
  hmc_destroy(&h); /* accepts NULL */
  status_clear();
  gauss_free(&g);
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Not a test: with CERBERUS_HMC_COMPARE=K, K seeds of every variant on the 50-D targets (axes and
 * rotated, condition number 1e4), printing ESS per 1000 sampling gradients (the smallest bulk
 * ESS over the coordinates, and the bulk ESS of ln p): median and range over the seeds. */
static void compare_variants(int K) {
  MPI_Comm self = MPI_COMM_SELF;
  for (int rot = 0; rot < 2; rot++) {
    gauss g;
    gauss_init(&g, self, 50, 1e-2, 1e2, rot, rot ? 11 : 7);
    double *q0 = calloc(50, sizeof(double));
    printf("50-D Gaussian, condition number 1e4, %s; warm-up 1000, 2000 draws, %d seeds\n",
           rot ? "rotated" : "along the axes", K);
    printf("%-16s %26s %26s %8s\n", "variant", "min-coord ESS/1000 grad", "lp ESS/1000 grad",
           "grad/it");
    for (size_t v = 0; v < N_VARIANTS; v++) {
      double *ex = calloc((size_t)K, sizeof(double)), *el = calloc((size_t)K, sizeof(double));
      double gpi = 0;
      for (int k = 0; k < K; k++) {
        hmc_config c;
        config_of(&variants[v], &c, 1000 + 17 * (unsigned long)k + v);
        c.n_warmup = 1000;
        c.n_steps = 16;
        const long n = 2000;
        hmc *h = NULL;
        if (hmc_create(self, 50, &c, gauss_logp, &g, q0, &h) != CB_OK) break;
        for (long i = 0; i < c.n_warmup; i++) hmc_step(h, NULL);
        long g0 = hmc_n_grad(h);
        double *x = malloc(51 * (size_t)n * sizeof *x);
        for (long i = 0; i < n; i++) {
          hmc_step(h, NULL);
          for (size_t j = 0; j < 50; j++) x[j * (size_t)n + (size_t)i] = hmc_position(h)[j];
          x[50 * (size_t)n + (size_t)i] = hmc_lp(h);
        }
        double ng = (double)(hmc_n_grad(h) - g0), e = INFINITY;
        for (size_t j = 0; j < 50; j++)
          e = fmin(e, diagnose_ess_bulk(1, (size_t)n, x + j * (size_t)n));
        ex[k] = 1000 * e / ng;
        el[k] = 1000 * diagnose_ess_bulk(1, (size_t)n, x + 50 * (size_t)n) / ng;
        gpi += ng / (double)n / K;
        free(x);
        hmc_destroy(&h);
      }
      qsort(ex, (size_t)K, sizeof *ex, cmp_dbl);
      qsort(el, (size_t)K, sizeof *el, cmp_dbl);
      printf("%-16s %8.2f [%7.2f, %7.2f] %8.2f [%7.2f, %7.2f] %8.1f\n", variants[v].name, ex[K / 2],
             ex[0], ex[K - 1], el[K / 2], el[0], el[K - 1], gpi);
      free(ex), free(el);
    }
    free(q0);
    gauss_free(&g);
  }
}

/* MAMS on an ill-conditioned Gaussian (variances 1e-6 .. 1, unit metric): eps is set by the
 * narrowest direction, so the tuned L (~ the widest scale) would be ~1000 step sizes; the L in
 * use is capped at mams_mean_steps_max eps and no trajectory draws more than twice the cap. */
static void test_mams_cap(MPI_Comm comm) {
  gauss g;
  gauss_init(&g, comm, 6, 1e-6, 1.0, false, 11);
  hmc_config c;
  hmc_config_default(&c);
  c.algorithm = HMC_ALG_MAMS;
  c.metric = HMC_METRIC_UNIT;
  c.mams_mean_steps_max = 5;
  c.n_warmup = 60;
  c.seed = 3;
  hmc *h = NULL;
  TEST_STATUS(hmc_create(comm, g.d, &c, gauss_logp, &g, g.mu, &h), CB_OK, "create MAMS (cap 5)");
  int n_max = 0;
  bool bound = true;
  for (int k = 0; h && k < 100; k++) {
    hmc_step_info info;
    TEST_STATUS(hmc_step(h, &info), CB_OK, "MAMS step");
    if (info.n_steps > n_max) n_max = info.n_steps;
    double L = hmc_trajectory_length(h), eps = hmc_step_size(h);
    if (!(L <= 5 * eps * (1 + 1e-12))) bound = false;
  }
  if (h) {
    double eps = hmc_step_size(h);
    TEST_CHECK(eps < 0.05, "eps %g set by the narrowest scale 1e-3", eps);
    TEST_CHECK(fabs(hmc_trajectory_length(h) - 5 * eps) <= 1e-12 * eps,
               "the cap binds: L %g = 5 eps %g", hmc_trajectory_length(h), 5 * eps);
    TEST_CHECK(hmc_n_steps_max(h) <= 10, "steps max %d <= 2 x cap", hmc_n_steps_max(h));
  }
  TEST_CHECK(bound, "L <= cap eps at every step");
  TEST_CHECK(n_max >= 1 && n_max <= 10, "largest trajectory %d steps, cap 2 x 5", n_max);
  hmc_destroy(&h);
  c.mams_mean_steps_max = 0;
  TEST_STATUS(hmc_create(comm, g.d, &c, gauss_logp, &g, g.mu, &h), CB_ERR_INPUT, "MAMS cap 0");
  status_clear();
  gauss_free(&g);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  verbose = getenv("CERBERUS_TEST_VERBOSE") != NULL;
  if (getenv("CERBERUS_HMC_COMPARE") && testing_rank() == 0) {
    compare_variants(atoi(getenv("CERBERUS_HMC_COMPARE")) > 0 ? atoi(getenv("CERBERUS_HMC_COMPARE"))
                                                              : 5);
    return testing_finish();
  }
  if (testing_size() == 1) {
    test_statistics();
    test_truncated();
  }
  double t0 = MPI_Wtime();
  test_ranks(comm);
  double t1 = MPI_Wtime();
  test_restart(comm);
  double t2 = MPI_Wtime();
  test_distributed(comm);
  double t3 = MPI_Wtime();
  test_bad_config(comm);
  test_schedule(comm);
  test_bfgs_freeze(comm);
  test_pool(comm);
  test_mams_cap(comm);
  if (verbose && testing_rank() == 0)
    printf("ranks %.2f s, restart %.2f s, distributed %.2f s\n", t1 - t0, t2 - t1, t3 - t2);
  return testing_finish();
}
