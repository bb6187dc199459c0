/* hmc: step-wise Hamiltonian Monte Carlo (HMCLET) and the Metropolis-adjusted microcanonical
 * sampler (include/cerberus/hmc.h, MODEL.md section 8).
 *
 * One hmc_step is one trajectory followed by a Metropolis test:
 *  - HMC: momentum p ~ N(0, M), M = C^-1 (C: unit, the diagonal or dense Welford covariance,
 *    or the BFGS inverse-Hessian estimate B); kinetic energy K = p^T C p / 2; a symplectic
 *    splitting K(a_0 eps) D(b_0 eps) K(a_1 eps) ... D(b_{m-1} eps) K(a_m eps) per step, kick
 *    p += a eps grad ln p, drift q += b eps C p (leapfrog m = 1, Omelyan m = 2, Yoshida m = 3);
 *    accept with min(1, exp(-dH)).
 *  - MAMS: unit velocity u in the coordinates z with q = S z (S = sqrt(C) diagonal or C's
 *    Cholesky factor), the ESH velocity update in place of the kick (Steeg & Galstyan 2021;
 *    Robnik et al. 2023, 2025): with g = S^T grad, e = g/|g|, delta = a eps |g| / (d - 1),
 *    zeta = exp(-delta): u <- normalise(e (1 - zeta)(1 + zeta + u.e (1 - zeta)) + 2 zeta u) and
 *    the kinetic energy changes by (d - 1)(delta - ln 2 + ln(1 + u.e + (1 - u.e) zeta^2)); the
 *    drift is q += b eps S u; accept with min(1, exp(-(dK - d ln p))).
 * Warm-up (Stan's windows): a fast initial buffer, slow windows doubling in length in which the
 * Welford covariance is gathered (the metric updated and the dual averaging restarted at each
 * window's end), a fast final buffer (where MAMS records its draws to tune L); the step size by
 * dual averaging throughout. The quasi-Newton variant updates B from each integration step's
 * (s, y) pair, into a copy kept for the trajectory's end: accepted, the copy becomes B; rejected,
 * it is dropped (or B reset to its initial value); B is frozen for the final fast buffer, where
 * the dual averaging restarts.
 * With pool_chains each of these adaptation points is deferred to hmc_pool, where every chain
 * adopts the pooled Welford metric and the geometric mean of the chains' step sizes.
 *
 * The root draws every random number and decides every stop and acceptance; packets broadcast
 * from it keep the ranks identical (momentum, per-evaluation continue flags, the decision, the
 * position with its ln p and gradient, and the metric when it changes). In distributed mode
 * (each rank its own block of q) every sum over the parameters (kinetic energy, MAMS's norms and
 * dot products, counts of non-finite values) is reduced over the ranks, each rank draws its own
 * block of the momentum, and the root still draws the jitter and the uniform and decides.
 *
 * All evolving state lives in one struct of 8-byte scalars and one block of doubles plus the
 * RNG's state: hmc_state_save / hmc_state_load copy exactly these. */
#include "cerberus/hmc.h"

#include "cerberus/diagnose.h"
#include "cerberus/options.h"
#include "cerberus/status.h"

#include <gsl/gsl_blas.h>
#include <gsl/gsl_eigen.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Evolving scalars (all 8 bytes: no padding in the saved bytes). */
typedef struct hmc_scalars {
  double lp;
  double eps;      /* current eps_max */
  double traj_len; /* MAMS's L */
  double da_mu, da_sbar, da_xbar;
  int64_t da_count;
  int64_t warm; /* in warm-up */
  int64_t warm_total, warm_i, init_end, slow_end, win_start, win_end, win_size;
  int64_t w_n;      /* Welford count */
  int64_t mams_n;   /* draws in the MAMS tuning buffer */
  double mams_time; /* integration time of those draws */
  int64_t n_iter, n_acc, n_div, n_nonfinite, n_grad;
  int64_t pool; /* pooled adaptation pending (pool_chains): POOL_* bits */
} hmc_scalars;

/* The adaptation points that cfg.pool_chains defers to hmc_pool. */
enum { POOL_WINDOW = 1, POOL_FREEZE = 2, POOL_END = 4 };

#define HMC_MAGIC 0x31434d4842434dULL /* "MCBHMC1" */
typedef struct hmc_header {
  uint64_t magic, dim, algorithm, integrator, metric, size, mams_cap, rng_size;
  uint64_t distributed, nranks, rank; /* distributed mode: every rank saves its own part */
} hmc_header;

struct hmc {
  MPI_Comm comm;
  int rank;
  size_t dim, dd; /* dd: entries of C (dim or dim * dim); dim is local in distributed mode */
  bool dist;      /* distributed mode: q split over the ranks */
  int nranks;
  double dim_global; /* sum of dim over the ranks (distributed) or dim */
  bool dense;        /* C is a matrix (dense, bfgs) */
  hmc_config cfg;
  hmc_target_fn fn;
  void *ctx;
  gsl_rng *rng;
  hmc_scalars s;
  /* The block of evolving doubles and views into it. */
  double *block;
  size_t n_block;
  double *q, *g, *c, *chol, *c0, *w_mean, *w_m2, *u, *mams_buf;
  size_t mams_cap;
  /* Scratch. */
  double *p, *p0, *q1, *g1, *qp, *gp, *t1, *t2, *bn, *ework, *pkt;
  gsl_eigen_symmv_workspace *eig;
  gsl_vector *eval;
  gsl_matrix *evec;
  /* Integrator. */
  int m;
  double a[4], b[3];
};

const char *hmc_algorithm_name(int a) {
  static const char *n[] = {"hmc", "mams"};
  return a >= 0 && a < 2 ? n[a] : "?";
}
const char *hmc_integrator_name(int i) {
  static const char *n[] = {"leapfrog", "omelyan", "yoshida4"};
  return i >= 0 && i < 3 ? n[i] : "?";
}
const char *hmc_metric_name(int m) {
  static const char *n[] = {"unit", "diag", "dense", "bfgs"};
  return m >= 0 && m < 4 ? n[m] : "?";
}

void hmc_config_default(hmc_config *c) {
  memset(c, 0, sizeof *c);
  c->algorithm = HMC_ALG_HMC;
  c->integrator = HMC_LEAPFROG;
  c->metric = HMC_METRIC_DIAG;
  c->step_size = 0.1;
  c->n_steps = 10;
  c->jitter = true;
  c->n_warmup = 1000;
  c->adapt_step = true;
  c->adapt_metric = true;
  c->target_accept = 0.8;
  c->da_gamma = 0.05;
  c->da_t0 = 10;
  c->da_kappa = 0.75;
  c->window_init = 75;
  c->window_base = 25;
  c->window_term = 50;
  c->metric_init = 1.0;
  c->metric_init_diag = NULL;
  c->metric_init_dense = NULL;
  c->shrink_diag = 5;
  c->shrink_dense = 10;
  c->eig_floor = 1e-10;
  c->bfgs_skip = 1e-5;
  c->bfgs_reset_full = false;
  c->bfgs_update_always = false;
  c->divergence_threshold = 1000;
  c->mams_target_accept = 0.9;
  c->mams_refresh = 1.0;
  c->mams_l_factor = 0.4;
  c->mams_tune_l = true;
  c->mams_mean_steps_max = 16;
  c->max_steps = 1024;
  c->pool_chains = false;
  c->seed = 1;
}

int hmc_config_options(struct options *o, hmc_config *c) {
  CB_CALL(options_real(o, "-step_size", "initial step size eps_max", c->step_size, &c->step_size));
  CB_CHECK(c->step_size > 0, CB_ERR_INPUT, "-step_size must be positive (got %g)", c->step_size);
  long ns = c->n_steps;
  CB_CALL(options_int(o, "-n_steps", "largest number of steps a trajectory n_max", ns, &ns));
  CB_CHECK(ns >= 1 && ns <= c->max_steps, CB_ERR_INPUT, "-n_steps: %ld not in [1, %d]", ns,
           c->max_steps);
  c->n_steps = (int)ns;
  CB_CALL(options_real(o, "-target_accept", "dual-averaging target acceptance", c->target_accept,
                       &c->target_accept));
  CB_CHECK(c->target_accept > 0 && c->target_accept < 1, CB_ERR_INPUT,
           "-target_accept: %g not in (0, 1)", c->target_accept);
  return CB_OK;
}

int hmc_config_check(const hmc_config *c, size_t dim) {
  CB_CHECK(c != NULL, CB_ERR_INPUT, "hmc: no configuration");
  CB_CHECK(dim > 0, CB_ERR_INPUT, "hmc: dimension 0 (nothing to sample)");
  CB_CHECK(c->algorithm == HMC_ALG_HMC || c->algorithm == HMC_ALG_MAMS, CB_ERR_INPUT,
           "hmc: unknown algorithm %d (%s)", c->algorithm, HMC_ALGORITHM_CHOICES);
  CB_CHECK(c->integrator >= HMC_LEAPFROG && c->integrator <= HMC_YOSHIDA4, CB_ERR_INPUT,
           "hmc: unknown integrator %d (%s)", c->integrator, HMC_INTEGRATOR_CHOICES);
  CB_CHECK(c->metric >= HMC_METRIC_UNIT && c->metric <= HMC_METRIC_BFGS, CB_ERR_INPUT,
           "hmc: unknown metric %d (%s)", c->metric, HMC_METRIC_CHOICES);
  CB_CHECK(c->algorithm != HMC_ALG_MAMS || c->metric != HMC_METRIC_BFGS, CB_ERR_INPUT,
           "hmc: MAMS takes the metric unit, diag or dense, not bfgs");
  CB_CHECK(!c->distributed || c->metric == HMC_METRIC_UNIT || c->metric == HMC_METRIC_DIAG,
           CB_ERR_INPUT, "hmc: the distributed mode takes the metric unit or diag, not %s",
           hmc_metric_name(c->metric));
  CB_CHECK(!c->distributed || !c->pool_chains, CB_ERR_INPUT,
           "hmc: pooled adaptation across chains is not available in the distributed mode");
  CB_CHECK(c->distributed || c->algorithm != HMC_ALG_MAMS || dim >= 2, CB_ERR_INPUT,
           "hmc: MAMS needs at least 2 dimensions (its isokinetic velocity lives on a sphere)");
  CB_CHECK(isfinite(c->step_size) && c->step_size > 0, CB_ERR_INPUT,
           "hmc: step size %g must be positive", c->step_size);
  CB_CHECK(c->n_steps >= 1, CB_ERR_INPUT, "hmc: number of steps %d must be at least 1", c->n_steps);
  CB_CHECK(c->max_steps >= c->n_steps, CB_ERR_INPUT,
           "hmc: max_steps %d below the number of steps %d", c->max_steps, c->n_steps);
  CB_CHECK(c->n_warmup >= 0, CB_ERR_INPUT, "hmc: warm-up length %ld is negative", c->n_warmup);
  CB_CHECK(c->target_accept > 0 && c->target_accept < 1, CB_ERR_INPUT,
           "hmc: target acceptance %g not in (0, 1)", c->target_accept);
  CB_CHECK(c->mams_target_accept > 0 && c->mams_target_accept < 1, CB_ERR_INPUT,
           "hmc: MAMS target acceptance %g not in (0, 1)", c->mams_target_accept);
  CB_CHECK(c->da_gamma > 0 && c->da_t0 >= 0 && c->da_kappa > 0 && c->da_kappa <= 1, CB_ERR_INPUT,
           "hmc: dual averaging gamma %g, t0 %g, kappa %g (need gamma > 0, t0 >= 0, 0 < kappa "
           "<= 1)",
           c->da_gamma, c->da_t0, c->da_kappa);
  CB_CHECK(c->window_init >= 0 && c->window_base >= 1 && c->window_term >= 0, CB_ERR_INPUT,
           "hmc: warm-up windows %ld, %ld, %ld (init, base >= 1, term)", c->window_init,
           c->window_base, c->window_term);
  CB_CHECK(isfinite(c->metric_init) && c->metric_init > 0, CB_ERR_INPUT,
           "hmc: initial metric %g must be positive", c->metric_init);
  if (c->metric_init_diag)
    for (size_t i = 0; i < dim; i++)
      CB_CHECK(isfinite(c->metric_init_diag[i]) && c->metric_init_diag[i] > 0, CB_ERR_INPUT,
               "hmc: initial metric element %zu is %g, must be positive", i,
               c->metric_init_diag[i]);
  if (c->metric_init_dense)
    for (size_t i = 0; i < dim; i++) {
      CB_CHECK(c->metric_init_dense[i * dim + i] > 0, CB_ERR_INPUT,
               "hmc: initial dense metric diagonal element %zu is %g, must be positive", i,
               c->metric_init_dense[i * dim + i]);
      for (size_t j = 0; j < dim; j++)
        CB_CHECK(isfinite(c->metric_init_dense[i * dim + j]), CB_ERR_INPUT,
                 "hmc: initial dense metric element (%zu, %zu) is not finite", i, j);
    }
  CB_CHECK(c->shrink_diag >= 0 && c->shrink_dense >= 0, CB_ERR_INPUT,
           "hmc: shrinkage weights %g, %g must not be negative", c->shrink_diag, c->shrink_dense);
  CB_CHECK(c->eig_floor > 0 && c->eig_floor < 1, CB_ERR_INPUT,
           "hmc: eigenvalue floor %g not in (0, 1)", c->eig_floor);
  CB_CHECK(c->bfgs_skip >= 0 && c->bfgs_skip < 1, CB_ERR_INPUT,
           "hmc: BFGS skip threshold %g not in [0, 1)", c->bfgs_skip);
  CB_CHECK(c->divergence_threshold > 0, CB_ERR_INPUT,
           "hmc: divergence threshold %g must be positive", c->divergence_threshold);
  CB_CHECK(c->mams_refresh > 0 && c->mams_refresh <= 1, CB_ERR_INPUT,
           "hmc: MAMS refresh %g not in (0, 1]", c->mams_refresh);
  CB_CHECK(c->mams_mean_steps_max >= 1, CB_ERR_INPUT,
           "hmc: MAMS mean steps cap %d must be at least 1", c->mams_mean_steps_max);
  CB_CHECK(c->mams_l_factor > 0, CB_ERR_INPUT, "hmc: MAMS L factor %g must be positive",
           c->mams_l_factor);
  return CB_OK;
}

/* ---- linear algebra on C ---- */

/* chol <- Cholesky factor (lower) of c; on failure, floor c's eigenvalues first. */
static int metric_factor(hmc *h, bool floor_always) {
  size_t d = h->dim;
  if (!h->dense) {
    for (size_t i = 0; i < d; i++) h->chol[i] = sqrt(h->c[i]);
    return CB_OK;
  }
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  int st = GSL_FAILURE;
  if (!floor_always) {
    memcpy(h->chol, h->c, d * d * sizeof *h->c);
    gsl_matrix_view L = gsl_matrix_view_array(h->chol, d, d);
    st = gsl_linalg_cholesky_decomp1(&L.matrix);
  }
  if (st != GSL_SUCCESS) {
    /* C = V diag(max(lambda, floor lambda_max)) V^T */
    memcpy(h->ework, h->c, d * d * sizeof *h->c);
    gsl_matrix_view A = gsl_matrix_view_array(h->ework, d, d);
    st = gsl_eigen_symmv(&A.matrix, h->eval, h->evec, h->eig);
    double lmax = 0;
    for (size_t i = 0; i < d; i++) lmax = fmax(lmax, gsl_vector_get(h->eval, i));
    if (st != GSL_SUCCESS || !(lmax > 0) || !isfinite(lmax)) {
      gsl_set_error_handler(old);
      return CB_ERROR(CB_ERR_NUMERIC, "hmc: the metric has no positive eigenvalue");
    }
    double fl = h->cfg.eig_floor * lmax;
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j <= i; j++) {
        double s = 0;
        for (size_t k = 0; k < d; k++)
          s += gsl_matrix_get(h->evec, i, k) * fmax(gsl_vector_get(h->eval, k), fl) *
               gsl_matrix_get(h->evec, j, k);
        h->c[i * d + j] = h->c[j * d + i] = s;
      }
    memcpy(h->chol, h->c, d * d * sizeof *h->c);
    gsl_matrix_view L = gsl_matrix_view_array(h->chol, d, d);
    st = gsl_linalg_cholesky_decomp1(&L.matrix);
  }
  gsl_set_error_handler(old);
  CB_CHECK(st == GSL_SUCCESS, CB_ERR_NUMERIC, "hmc: the metric is not positive definite");
  /* Zero the upper triangle (decomp1 leaves L^T there). */
  for (size_t i = 0; i < d; i++)
    for (size_t j = i + 1; j < d; j++) h->chol[i * d + j] = 0;
  return CB_OK;
}

/* out = C x */
static void apply_c(const hmc *h, const double *x, double *out) {
  size_t d = h->dim;
  if (h->cfg.metric == HMC_METRIC_UNIT) {
    memcpy(out, x, d * sizeof *x);
  } else if (!h->dense) {
    for (size_t i = 0; i < d; i++) out[i] = h->c[i] * x[i];
  } else {
    for (size_t i = 0; i < d; i++) {
      double s = 0;
      const double *row = h->c + i * d;
      for (size_t j = 0; j < d; j++) s += row[j] * x[j];
      out[i] = s;
    }
  }
}

/* out = S x (trans false) or S^T x (trans true), S = chol: the diagonal, or the lower
 * Cholesky factor (BLAS dtrmv) of a dense metric. */
static void apply_chol(const hmc *h, bool trans, const double *x, double *out) {
  size_t d = h->dim;
  if (h->cfg.metric == HMC_METRIC_UNIT) {
    memcpy(out, x, d * sizeof *x);
  } else if (!h->dense) {
    for (size_t i = 0; i < d; i++) out[i] = h->chol[i] * x[i];
  } else {
    memcpy(out, x, d * sizeof *x);
    gsl_matrix_const_view S = gsl_matrix_const_view_array(h->chol, d, d);
    gsl_vector_view o = gsl_vector_view_array(out, d);
    gsl_blas_dtrmv(CblasLower, trans ? CblasTrans : CblasNoTrans, CblasNonUnit, &S.matrix,
                   &o.vector);
  }
}

/* K = p^T C p / 2 of the local part. */
static double kinetic_local(const hmc *h, const double *p) {
  apply_c(h, p, h->t2);
  double k = 0;
  for (size_t i = 0; i < h->dim; i++) k += p[i] * h->t2[i];
  return 0.5 * k;
}

/* K summed over the ranks in distributed mode (collective there). */
static double kinetic(const hmc *h, const double *p) {
  double k = kinetic_local(h, p);
  if (h->dist) MPI_Allreduce(MPI_IN_PLACE, &k, 1, MPI_DOUBLE, MPI_SUM, h->comm);
  return k;
}

static double dot(size_t n, const double *x, const double *y) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i] * y[i];
  return s;
}

static bool finite_all(size_t n, const double *x) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return false;
  return true;
}

/* ---- collective helpers (root decides) ---- */

static int bcast(hmc *h, void *buf, size_t n, MPI_Datatype t) {
  CB_CHECK(MPI_Bcast(buf, (int)n, t, 0, h->comm) == MPI_SUCCESS, CB_ERR_MPI,
           "hmc: MPI_Bcast failed");
  return CB_OK;
}

static int bcast_flag(hmc *h, int *flag) {
  return bcast(h, flag, 1, MPI_INT);
}

/* Distributed mode: sum n local values over the ranks (in place); replicated: nothing to do. */
static int allsum(hmc *h, double *x, int n) {
  if (!h->dist) return CB_OK;
  CB_CHECK(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, h->comm) == MPI_SUCCESS,
           CB_ERR_MPI, "hmc: MPI_Allreduce failed");
  return CB_OK;
}

/* Broadcast the metric (C and its factor) from the root. */
static int bcast_metric(hmc *h) {
  if (h->dist) return CB_OK; /* every rank owns its part of a diagonal metric */
  CB_CALL(bcast(h, h->c, h->dd, MPI_DOUBLE));
  CB_CALL(bcast(h, h->chol, h->dd, MPI_DOUBLE));
  return CB_OK;
}

static int evaluate(hmc *h, const double *q, double *lp, double *g) {
  CB_CALL(h->fn(h->ctx, q, lp, g));
  h->s.n_grad++;
  return CB_OK;
}

/* MAMS's trajectory length in use: the tuned L, capped at mams_mean_steps_max step sizes. On an
 * ill-conditioned target the step size (set by the narrowest direction left after the
 * preconditioner) is far below L's scale sqrt(dim) (the widest): uncapped, every trajectory
 * would take max_steps steps. A function of the state, so a restart gives the same. */
static double mams_length(const hmc *h) {
  double cap = h->cfg.mams_mean_steps_max * h->s.eps;
  return h->s.traj_len < cap ? h->s.traj_len : cap;
}

/* The most steps a MAMS trajectory draws: 2 L / eps in [1, max_steps], at most twice the cap
 * (counted in steps, so rounding cannot add one). */
static double mams_n_max(const hmc *h) {
  double nm = ceil(2 * h->s.traj_len / h->s.eps), cap = 2.0 * h->cfg.mams_mean_steps_max;
  nm = nm > cap ? cap : nm;
  return nm < 1 ? 1 : (nm > h->cfg.max_steps ? h->cfg.max_steps : nm);
}

/* ---- adaptation ---- */

static void da_restart(hmc *h) {
  h->s.da_mu = log(10 * h->s.eps);
  h->s.da_sbar = 0;
  h->s.da_xbar = 0;
  h->s.da_count = 0;
}

static void da_learn(hmc *h, double stat) {
  const hmc_config *c = &h->cfg;
  double delta = c->algorithm == HMC_ALG_MAMS ? c->mams_target_accept : c->target_accept;
  h->s.da_count++;
  double t = (double)h->s.da_count;
  stat = stat > 1 ? 1 : stat;
  double eta = 1.0 / (t + c->da_t0);
  h->s.da_sbar = (1 - eta) * h->s.da_sbar + eta * (delta - stat);
  double x = h->s.da_mu - h->s.da_sbar * sqrt(t) / c->da_gamma;
  double xe = pow(t, -c->da_kappa);
  h->s.da_xbar = (1 - xe) * h->s.da_xbar + xe * x;
  h->s.eps = exp(x);
}

static void welford_reset(hmc *h) {
  h->s.w_n = 0;
  memset(h->w_mean, 0, h->dim * sizeof *h->w_mean);
  memset(h->w_m2, 0, h->dd * sizeof *h->w_m2);
}

static void welford_add(hmc *h) {
  size_t d = h->dim;
  h->s.w_n++;
  double n = (double)h->s.w_n;
  for (size_t i = 0; i < d; i++) {
    h->t1[i] = h->q[i] - h->w_mean[i];
    h->w_mean[i] += h->t1[i] / n;
  }
  if (!h->dense) {
    for (size_t i = 0; i < d; i++) h->w_m2[i] += (h->q[i] - h->w_mean[i]) * h->t1[i];
  } else {
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j < d; j++) h->w_m2[i * d + j] += (h->q[i] - h->w_mean[i]) * h->t1[j];
  }
}

static void set_initial_metric(hmc *h) {
  size_t d = h->dim;
  if (!h->dense) {
    memcpy(h->c, h->c0, d * sizeof *h->c);
  } else {
    memset(h->c, 0, d * d * sizeof *h->c);
    for (size_t i = 0; i < d; i++) h->c[i * d + i] = h->c0[i];
  }
}

/* The Welford estimate, shrunk towards C0, floored, factored. */
static int metric_update(hmc *h) {
  size_t d = h->dim;
  double n = (double)h->s.w_n;
  if (h->s.w_n < 3) return CB_OK;
  if (!h->dense) {
    double w = h->cfg.shrink_diag;
    for (size_t i = 0; i < d; i++)
      h->c[i] = n / (n + w) * (h->w_m2[i] / (n - 1)) + w / (n + w) * h->c0[i];
    for (size_t i = 0; i < d; i++)
      if (!(h->c[i] > 0) || !isfinite(h->c[i])) h->c[i] = h->c0[i];
    CB_CALL(metric_factor(h, false));
  } else {
    double w = h->cfg.shrink_dense;
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j < d; j++)
        h->c[i * d + j] =
            n / (n + w) * (h->w_m2[i * d + j] / (n - 1)) + (i == j ? w / (n + w) * h->c0[i] : 0);
    CB_CALL(metric_factor(h, true));
  }
  CB_CALL(bcast_metric(h));
  return CB_OK;
}

/* Stan's windows for a warm-up of W steps. */
static void warmup_schedule(hmc *h, long W) {
  const hmc_config *c = &h->cfg;
  long init = c->window_init, base = c->window_base, term = c->window_term;
  if (init + base + term > W) {
    init = (long)(0.15 * (double)W);
    term = (long)(0.1 * (double)W);
    base = W - init - term;
  }
  h->s.warm = W > 0;
  h->s.warm_total = W;
  h->s.warm_i = 0;
  h->s.init_end = init;
  h->s.slow_end = W - term;
  h->s.win_start = init;
  h->s.win_size = base;
  h->s.win_end = init + base;
  if (h->s.win_end + 2 * base > h->s.slow_end) h->s.win_end = h->s.slow_end;
  if (W < 20) { /* too short to learn a metric (as Stan) */
    h->s.init_end = h->s.slow_end = h->s.win_start = h->s.win_end = W;
  }
  h->s.mams_n = 0;
  h->s.mams_time = 0;
  h->s.pool = 0;
  welford_reset(h);
  da_restart(h);
}

/* MAMS: the sums over the coordinates of integration time / ESS of the tuning buffer, and
 * their count (su[0], su[1]; reduced over the ranks). */
static int mams_ess_sums(hmc *h, double su[2]) {
  su[0] = su[1] = 0;
  if (h->cfg.algorithm != HMC_ALG_MAMS || !h->cfg.mams_tune_l || h->s.mams_n < 20) return CB_OK;
  size_t n = (size_t)h->s.mams_n, d = h->dim;
  for (size_t i = 0; i < d; i++) {
    /* coordinate i of the buffer, whitened by S^-1 only in scale: ESS is scale-free */
    for (size_t k = 0; k < n; k++) h->ework[k] = h->mams_buf[k * d + i];
    double e = diagnose_ess_raw(1, n, h->ework);
    if (isfinite(e) && e > 0) {
      su[0] += h->s.mams_time / e;
      su[1]++;
    }
  }
  CB_CALL(allsum(h, su, 2));
  return CB_OK;
}

/* The end of warm-up's values: eps from the dual-averaging mean ln eps xbar (when learnt) and
 * MAMS's L from the sums su of mams_ess_sums (when any); one chain's, or the pooled ones. */
static void warmup_set(hmc *h, bool learnt, double xbar, const double su[2]) {
  if (h->cfg.adapt_step && learnt) h->s.eps = exp(xbar);
  if (su[1] > 0) h->s.traj_len = h->cfg.mams_l_factor * su[0] / su[1];
}

static int warmup_end(hmc *h) {
  h->s.warm = 0;
  if (h->cfg.pool_chains) { /* step size and L from every chain: hmc_pool */
    h->s.pool |= POOL_END;
    return CB_OK;
  }
  double su[2];
  CB_CALL(mams_ess_sums(h, su));
  warmup_set(h, h->s.da_count > 0, h->s.da_xbar, su);
  return CB_OK;
}

static bool uses_welford(const hmc *h) {
  return h->cfg.adapt_metric &&
         (h->cfg.metric == HMC_METRIC_DIAG || h->cfg.metric == HMC_METRIC_DENSE);
}

/* The end of a slow window: the metric from the Welford estimate, the dual averaging restarted
 * from the current step size. */
static int window_close(hmc *h) {
  CB_CALL(metric_update(h));
  welford_reset(h);
  if (h->cfg.algorithm == HMC_ALG_MAMS) h->s.traj_len = sqrt(h->dim_global);
  da_restart(h);
  return CB_OK;
}

/* The end of the slow phase of the quasi-Newton variant: B is frozen from here, the step size
 * learnt afresh for it, from the averaged one xbar (when learnt; the chain's own or pooled). */
static void bfgs_freeze(hmc *h, bool learnt, double xbar) {
  if (learnt) h->s.eps = exp(xbar);
  da_restart(h);
}

static int adapt(hmc *h, double accept_prob, double traj_time) {
  if (!h->s.warm) return CB_OK;
  int64_t i = h->s.warm_i;
  if (h->cfg.adapt_step) da_learn(h, accept_prob);
  if (uses_welford(h) && i >= h->s.win_start && i < h->s.win_end) {
    welford_add(h);
    if (i + 1 == h->s.win_end) {
      if (h->cfg.pool_chains)
        h->s.pool |= POOL_WINDOW; /* the Welford sums kept for hmc_pool */
      else
        CB_CALL(window_close(h));
      h->s.win_start = h->s.win_end;
      h->s.win_size *= 2;
      h->s.win_end = h->s.win_start + h->s.win_size;
      if (h->s.win_end + 2 * h->s.win_size > h->s.slow_end) h->s.win_end = h->s.slow_end;
      if (h->s.win_start >= h->s.slow_end) h->s.win_start = h->s.win_end = h->s.warm_total;
    }
  }
  if (h->cfg.metric == HMC_METRIC_BFGS && h->cfg.adapt_metric && !h->cfg.bfgs_update_always &&
      i + 1 == h->s.slow_end && h->s.slow_end < h->s.warm_total) {
    if (h->cfg.pool_chains)
      h->s.pool |= POOL_FREEZE;
    else
      bfgs_freeze(h, h->s.da_count > 0, h->s.da_xbar);
  }
  if (h->cfg.algorithm == HMC_ALG_MAMS && i >= h->s.slow_end &&
      h->s.mams_n < (int64_t)h->mams_cap) {
    memcpy(h->mams_buf + (size_t)h->s.mams_n * h->dim, h->q, h->dim * sizeof *h->q);
    h->s.mams_n++;
    h->s.mams_time += traj_time;
  }
  h->s.warm_i++;
  if (h->s.warm_i >= h->s.warm_total) CB_CALL(warmup_end(h));
  return CB_OK;
}

/* ---- pooled adaptation ---- */

/* A chain's contribution, summed elementwise over the chains by hmc_pool:
 *   [0] 1 (the chain count), [1] ln eps, [2] the dual-averaging mean ln eps (0 when it has not
 *   learnt), [3] 1 when it has learnt, [4..5] MAMS's sums of time / ESS and their count,
 *   [6] the Welford count n, [7, 7 + d) n * mean, then dd values of M2 + n mean mean^T (the
 *   diagonal alone for a diagonal metric). */
enum { POOL_HEAD = 7 };
static size_t pool_size(const hmc *h) {
  return POOL_HEAD + h->dim + h->dd;
}

static int pool_contribution(hmc *h, double *x) {
  const size_t d = h->dim;
  memset(x, 0, pool_size(h) * sizeof *x);
  x[0] = 1;
  x[1] = log(h->s.eps);
  if (h->s.da_count > 0) {
    x[2] = h->s.da_xbar;
    x[3] = 1;
  }
  if (h->s.pool & POOL_END) CB_CALL(mams_ess_sums(h, x + 4));
  const double n = (double)h->s.w_n;
  double *s1 = x + POOL_HEAD, *s2 = s1 + d;
  x[6] = n;
  for (size_t i = 0; i < d; i++) s1[i] = n * h->w_mean[i];
  if (!h->dense)
    for (size_t i = 0; i < d; i++) s2[i] = h->w_m2[i] + n * h->w_mean[i] * h->w_mean[i];
  else
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j < d; j++)
        s2[i * d + j] = h->w_m2[i * d + j] + n * h->w_mean[i] * h->w_mean[j];
  return CB_OK;
}

/* Apply the pooled sums x (pool_contribution's layout, summed over K chains). */
static int pool_apply(hmc *h, const double *x) {
  const size_t d = h->dim;
  const double K = x[0];
  const double *s1 = x + POOL_HEAD, *s2 = s1 + d;
  const int64_t bits = h->s.pool;
  h->s.pool = 0;
  if (bits & POOL_WINDOW) { /* the Welford estimate of all the chains' window draws */
    const double n = x[6];
    h->s.w_n = (int64_t)n;
    for (size_t i = 0; i < d; i++) h->w_mean[i] = n > 0 ? s1[i] / n : 0;
    if (!h->dense)
      for (size_t i = 0; i < d; i++) h->w_m2[i] = s2[i] - n * h->w_mean[i] * h->w_mean[i];
    else
      for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < d; j++)
          h->w_m2[i * d + j] = s2[i * d + j] - n * h->w_mean[i] * h->w_mean[j];
    if (h->cfg.adapt_step) h->s.eps = exp(x[1] / K); /* the geometric mean step size */
    CB_CALL(window_close(h));
  }
  const bool learnt = x[3] > 0;
  const double xbar = learnt ? x[2] / x[3] : 0;
  if (bits & POOL_FREEZE) bfgs_freeze(h, learnt, xbar); /* each chain keeps its own B */
  if (bits & POOL_END) warmup_set(h, learnt, xbar, x + 4);
  return CB_OK;
}

bool hmc_pool_pending(const hmc *h) {
  return h->s.pool != 0;
}

int hmc_pool(hmc *const *h, const int *chain, int n_local, int n_chains, MPI_Comm across) {
  if (n_local <= 0) return CB_OK;
  const int64_t bits = h[0]->s.pool;
  for (int i = 1; i < n_local; i++)
    CB_CHECK(h[i]->s.pool == bits && h[i]->dim == h[0]->dim && h[i]->dd == h[0]->dd &&
                 h[i]->comm == h[0]->comm,
             CB_ERR_INPUT, "hmc_pool: chain %d is not in step with chain %d", chain[i], chain[0]);
  if (!bits) return CB_OK;
  const size_t P = pool_size(h[0]);
  double *all = calloc((size_t)n_chains * P + P, sizeof *all);
  CB_CHECK(all != NULL, CB_ERR_MEM, "out of memory for the pooled adaptation");
  double *sum = all + (size_t)n_chains * P;
  int st = CB_OK;
  /* Each chain in its own slot, the others zero: the sum over the groups is exact and the
   * chains are added in chain order whatever the grouping. */
  for (int i = 0; i < n_local && !st; i++) {
    if (chain[i] < 0 || chain[i] >= n_chains)
      st = CB_ERROR(CB_ERR_INPUT, "hmc_pool: chain index %d not in [0, %d)", chain[i], n_chains);
    else
      st = pool_contribution(h[i], all + (size_t)chain[i] * P);
  }
  if (!st && across != MPI_COMM_NULL &&
      MPI_Allreduce(MPI_IN_PLACE, all, (int)((size_t)n_chains * P), MPI_DOUBLE, MPI_SUM, across) !=
          MPI_SUCCESS)
    st = CB_ERROR(CB_ERR_MPI, "hmc_pool: MPI_Allreduce failed");
  if (!st) st = bcast(h[0], all, (size_t)n_chains * P, MPI_DOUBLE);
  if (!st) {
    for (int c = 0; c < n_chains; c++)
      for (size_t k = 0; k < P; k++) sum[k] += all[(size_t)c * P + k];
    if (!(sum[0] == (double)n_chains))
      st = CB_ERROR(CB_ERR_INPUT, "hmc_pool: %g of %d chains contributed", sum[0], n_chains);
  }
  for (int i = 0; i < n_local && !st; i++) st = pool_apply(h[i], sum);
  free(all);
  return st;
}

/* ---- BFGS ---- */

/* B is updated during warm-up until the end of the slow phase (the whole warm-up when it is
 * too short for windows); the final fast buffer adapts the step size alone to the B that
 * sampling will use (adapt restarts the dual averaging there), as Stan's last window does for
 * its metric. */
static bool bfgs_updating(const hmc *h) {
  return h->cfg.metric == HMC_METRIC_BFGS && h->cfg.adapt_metric &&
         ((h->s.warm && h->s.warm_i < h->s.slow_end) || h->cfg.bfgs_update_always);
}

/* bn <- the BFGS update of bn by s = q1 - qp, y = gp - g1 (y: change of grad U = -grad ln p). */
static void bfgs_pair(hmc *h) {
  size_t d = h->dim;
  double *s = h->t1, *y = h->t2, *hy = h->ework;
  for (size_t i = 0; i < d; i++) {
    s[i] = h->q1[i] - h->qp[i];
    y[i] = h->gp[i] - h->g1[i];
  }
  double sy = dot(d, s, y), ss = dot(d, s, s), yy = dot(d, y, y);
  if (!(sy > 0) || sy * sy < h->cfg.bfgs_skip * ss * yy || !isfinite(sy)) return;
  double rho = 1.0 / sy;
  for (size_t i = 0; i < d; i++) {
    double t = 0;
    for (size_t j = 0; j < d; j++) t += h->bn[i * d + j] * y[j];
    hy[i] = t;
  }
  double yhy = dot(d, y, hy), f = rho * rho * yhy + rho;
  for (size_t i = 0; i < d; i++)
    for (size_t j = 0; j < d; j++)
      h->bn[i * d + j] += -rho * (s[i] * hy[j] + hy[i] * s[j]) + f * s[i] * s[j];
}

/* ---- create / destroy ---- */

int hmc_create(MPI_Comm comm, size_t dim, const hmc_config *cfg, hmc_target_fn logp, void *ctx,
               const double *q0, hmc **out) {
  *out = NULL;
  double dim_global = (double)dim;
  if (cfg && cfg->distributed) { /* the checks of the local parts are made collective */
    double v[3] = {dim == 0, 0, (double)dim};
    for (size_t i = 0; q0 && i < dim; i++) v[1] += !isfinite(q0[i]);
    CB_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_DOUBLE, MPI_SUM, comm) == MPI_SUCCESS,
             CB_ERR_MPI, "hmc: MPI_Allreduce failed");
    CB_CHECK(v[0] == 0, CB_ERR_INPUT, "hmc: %g rank(s) hold no parameter (distributed mode)", v[0]);
    CB_CHECK(v[1] == 0, CB_ERR_INPUT, "hmc: %g element(s) of the starting point are not finite",
             v[1]);
    dim_global = v[2];
    CB_CHECK(cfg->algorithm != HMC_ALG_MAMS || dim_global >= 2, CB_ERR_INPUT,
             "hmc: MAMS needs at least 2 dimensions (its isokinetic velocity lives on a sphere)");
  }
  CB_CALL(hmc_config_check(cfg, dim));
  CB_CHECK(logp != NULL && q0 != NULL, CB_ERR_INPUT, "hmc: no target or no starting point");
  for (size_t i = 0; i < dim; i++)
    CB_CHECK(isfinite(q0[i]), CB_ERR_INPUT, "hmc: starting point element %zu is %g", i, q0[i]);
  hmc *h = calloc(1, sizeof *h);
  CB_CHECK(h != NULL, CB_ERR_MEM, "out of memory for the sampler");
  h->comm = comm;
  MPI_Comm_rank(comm, &h->rank);
  MPI_Comm_size(comm, &h->nranks);
  h->dist = cfg->distributed;
  h->dim_global = dim_global;
  h->dim = dim;
  h->cfg = *cfg;
  h->cfg.metric_init_diag = NULL;
  h->cfg.metric_init_dense = NULL;
  h->fn = logp;
  h->ctx = ctx;
  if (cfg->integrator == HMC_LEAPFROG) {
    h->m = 1;
    h->a[0] = h->a[1] = 0.5;
    h->b[0] = 1;
  } else if (cfg->integrator == HMC_OMELYAN) { /* Omelyan et al. 2003, minimal norm */
    const double lam = 0.1931833275037836;
    h->m = 2;
    h->a[0] = h->a[2] = lam;
    h->a[1] = 1 - 2 * lam;
    h->b[0] = h->b[1] = 0.5;
  } else { /* Yoshida 1990: three leapfrogs of w1, w0, w1 */
    double w1 = 1.0 / (2.0 - cbrt(2.0)), w0 = 1.0 - 2.0 * w1;
    h->m = 3;
    h->a[0] = h->a[3] = w1 / 2;
    h->a[1] = h->a[2] = (w1 + w0) / 2;
    h->b[0] = h->b[2] = w1;
    h->b[1] = w0;
  }
  h->dense = cfg->metric == HMC_METRIC_DENSE || cfg->metric == HMC_METRIC_BFGS;
  h->dd = h->dense ? dim * dim : dim;
  h->mams_cap = cfg->algorithm == HMC_ALG_MAMS ? (size_t)cfg->window_term : 0;
  size_t d = dim, dd = h->dd;
  h->n_block = 2 * d + 2 * dd + 2 * d + dd + d + h->mams_cap * d;
  int st = CB_OK;
  h->block = calloc(h->n_block, sizeof *h->block);
  h->rng = gsl_rng_alloc(gsl_rng_mt19937);
  size_t nw = dd > d + 8 ? dd : d + 8;
  if (h->mams_cap > nw) nw = h->mams_cap;
  double **scr[] = {&h->p, &h->p0, &h->q1, &h->g1, &h->qp, &h->gp, &h->t1, &h->t2};
  for (size_t k = 0; k < sizeof scr / sizeof *scr; k++) *scr[k] = calloc(d, sizeof(double));
  h->bn = calloc(dd, sizeof(double));
  h->ework = calloc(nw, sizeof(double));
  h->pkt = calloc(d + 8, sizeof(double));
  if (h->dense) {
    h->eig = gsl_eigen_symmv_alloc(d);
    h->eval = gsl_vector_alloc(d);
    h->evec = gsl_matrix_alloc(d, d);
  }
  bool ok = h->block && h->rng && h->bn && h->ework && h->pkt &&
            (!h->dense || (h->eig && h->eval && h->evec));
  for (size_t k = 0; k < sizeof scr / sizeof *scr; k++) ok = ok && *scr[k];
  if (!ok) {
    hmc_destroy(&h);
    return CB_ERROR(CB_ERR_MEM, "out of memory for a sampler of dimension %zu", dim);
  }
  double *b = h->block;
  h->q = b, b += d;
  h->g = b, b += d;
  h->c = b, b += dd;
  h->chol = b, b += dd;
  h->c0 = b, b += d;
  h->u = b, b += d;
  h->w_mean = b, b += d;
  h->w_m2 = b, b += dd;
  h->mams_buf = b;
  /* Distributed: each rank draws its own momenta from its own stream (rank 0's is the seed's). */
  gsl_rng_set(h->rng, cfg->seed + (h->dist ? 1000003UL * (unsigned long)h->rank : 0));
  const double *dense0 = h->dist ? NULL : cfg->metric_init_dense;
  for (size_t i = 0; i < d; i++)
    h->c0[i] = cfg->metric_init_diag ? cfg->metric_init_diag[i]
               : dense0              ? dense0[i * d + i]
                                     : cfg->metric_init;
  if (cfg->metric == HMC_METRIC_UNIT)
    for (size_t i = 0; i < d; i++) h->c0[i] = 1.0;
  set_initial_metric(h);
  if (dense0 && h->dense) memcpy(h->c, dense0, d * d * sizeof *h->c);
  st = metric_factor(h, false);
  if (st != CB_OK) goto fail;
  memcpy(h->q, q0, d * sizeof *q0);
  h->s.eps = cfg->step_size;
  h->s.traj_len = cfg->step_size * cfg->n_steps;
  warmup_schedule(h, cfg->n_warmup);
  st = evaluate(h, h->q, &h->s.lp, h->g);
  if (st != CB_OK) goto fail;
  double nbad = !(isfinite(h->s.lp) && finite_all(d, h->g));
  st = allsum(h, &nbad, 1);
  if (st != CB_OK) goto fail;
  int fin = nbad == 0;
  st = bcast_flag(h, &fin);
  if (st != CB_OK) goto fail;
  if (!fin) {
    st = CB_ERROR(CB_ERR_INPUT, "hmc: ln p or its gradient at the starting point is not finite");
    goto fail;
  }
  /* A starting velocity for MAMS's partial refresh: e_1. */
  h->u[0] = h->dist && h->rank != 0 ? 0.0 : 1.0;
  *out = h;
  return CB_OK;
fail:
  hmc_destroy(&h);
  return st;
}

void hmc_destroy(hmc **hp) {
  if (!hp || !*hp) return;
  hmc *h = *hp;
  free(h->block);
  if (h->rng) gsl_rng_free(h->rng);
  free(h->p), free(h->p0), free(h->q1), free(h->g1), free(h->qp), free(h->gp), free(h->t1),
      free(h->t2), free(h->bn), free(h->ework), free(h->pkt);
  if (h->eig) gsl_eigen_symmv_free(h->eig);
  if (h->eval) gsl_vector_free(h->eval);
  if (h->evec) gsl_matrix_free(h->evec);
  free(h);
  *hp = NULL;
}

/* ---- the step ---- */

typedef struct decision {
  double accepted, diverging, nonfinite, n_steps, accept_prob, energy, energy_error, eps;
} decision;

/* The velocity update of MAMS with step a eps at gradient g1 (ESH), returning the kinetic energy
 * change. u is h->p. */
static int esh_update(hmc *h, double step, double *dk, double *nbad) {
  size_t d = h->dim;
  double *gz = h->t1, D = h->dim_global;
  apply_chol(h, true, h->g1, gz);
  double r[3] = {dot(d, gz, gz), dot(d, h->p, gz), nbad ? *nbad : 0};
  CB_CALL(allsum(h, r, 3));
  *dk = 0;
  if (nbad) *nbad = r[2];
  if (r[2] > 0) return CB_OK; /* a non-finite gradient somewhere: the trajectory stops */
  double gn = sqrt(r[0]);
  if (!(gn > 0)) return CB_OK; /* flat: no change */
  for (size_t i = 0; i < d; i++) gz[i] /= gn;
  double ue = r[1] / gn;
  double delta = step * gn / (D - 1), zeta = exp(-delta);
  double nn = 0;
  for (size_t i = 0; i < d; i++) {
    h->p[i] = gz[i] * (1 - zeta) * (1 + zeta + ue * (1 - zeta)) + 2 * zeta * h->p[i];
    nn += h->p[i] * h->p[i];
  }
  CB_CALL(allsum(h, &nn, 1));
  nn = sqrt(nn);
  for (size_t i = 0; i < d; i++) h->p[i] /= nn;
  *dk = (D - 1) * (delta - M_LN2 + log(1 + ue + (1 - ue) * zeta * zeta));
  return CB_OK;
}

int hmc_step(hmc *h, hmc_step_info *info) {
  CB_CHECK(!h->s.pool, CB_ERR_INPUT,
           "hmc: a pooled adaptation is pending (pool_chains: call hmc_pool after the step)");
  size_t d = h->dim;
  const hmc_config *c = &h->cfg;
  bool mams = c->algorithm == HMC_ALG_MAMS;
  bool warm = h->s.warm != 0;
  long g0 = h->s.n_grad;
  /* Root: jitter and momentum; packet = eps, n, p. */
  double *pkt = h->pkt;
  if (h->rank == 0 || h->dist) {
    double eps = h->s.eps;
    int n = c->n_steps;
    if (mams) {
      double nm = mams_n_max(h);
      n = c->jitter ? 1 + (int)floor(nm * gsl_rng_uniform(h->rng)) : (int)ceil(nm / 2);
    } else if (c->jitter) {
      eps = h->s.eps * (1 - gsl_rng_uniform(h->rng));
      n = 1 + (int)floor(c->n_steps * gsl_rng_uniform(h->rng));
    }
    pkt[0] = eps;
    pkt[1] = n;
    if (mams) {
      double r = c->mams_refresh, nz = 0;
      for (size_t i = 0; i < d; i++) {
        double z = gsl_ran_gaussian_ziggurat(h->rng, 1.0);
        pkt[2 + i] = r >= 1 ? z : sqrt(1 - r) * h->u[i] + sqrt(r) * z / sqrt(h->dim_global);
        nz += pkt[2 + i] * pkt[2 + i];
      }
      CB_CALL(allsum(h, &nz, 1));
      nz = sqrt(nz);
      for (size_t i = 0; i < d; i++) pkt[2 + i] /= nz;
    } else {
      for (size_t i = 0; i < d; i++) h->t1[i] = gsl_ran_gaussian_ziggurat(h->rng, 1.0);
      /* p = M^(1/2) z: unit z, diag z / sqrt(c), dense: solve L^T p = z */
      if (c->metric == HMC_METRIC_UNIT) {
        for (size_t i = 0; i < d; i++) pkt[2 + i] = h->t1[i];
      } else if (!h->dense) {
        for (size_t i = 0; i < d; i++) pkt[2 + i] = h->t1[i] / h->chol[i];
      } else {
        for (size_t ii = d; ii-- > 0;) {
          double s = h->t1[ii];
          for (size_t j = ii + 1; j < d; j++) s -= h->chol[j * d + ii] * pkt[2 + j];
          pkt[2 + ii] = s / h->chol[ii * d + ii];
        }
      }
    }
  }
  /* Replicated: the root's packet for all. Distributed: each rank drew its own momentum (its own
   * RNG), the root's jitter is for all. */
  CB_CALL(bcast(h, pkt, h->dist ? 2 : d + 2, MPI_DOUBLE));
  double eps = pkt[0];
  int n = (int)pkt[1];
  memcpy(h->p, pkt + 2, d * sizeof *h->p);
  memcpy(h->p0, h->p, d * sizeof *h->p);
  memcpy(h->q1, h->q, d * sizeof *h->q);
  memcpy(h->g1, h->g, d * sizeof *h->g);
  double lp1 = h->s.lp;
  bool bfgs = bfgs_updating(h);
  if (bfgs) {
    memcpy(h->bn, h->c, d * d * sizeof *h->c);
    memcpy(h->qp, h->q, d * sizeof *h->q);
    memcpy(h->gp, h->g, d * sizeof *h->g);
  }
  double H0 = mams ? -h->s.lp : -h->s.lp + kinetic(h, h->p), dK = 0, H1 = H0;
  int steps = 0;
  bool stop = false, nonfinite = false;
  for (int s = 0; s < n && !stop; s++) {
    for (int k = 0; k < h->m && !stop; k++) {
      if (mams) {
        double dk;
        CB_CALL(esh_update(h, h->a[k] * eps, &dk, NULL));
        dK += dk;
        apply_chol(h, false, h->p, h->t2);
        for (size_t i = 0; i < d; i++) h->q1[i] += h->b[k] * eps * h->t2[i];
      } else {
        for (size_t i = 0; i < d; i++) h->p[i] += h->a[k] * eps * h->g1[i];
        apply_c(h, h->p, h->t2);
        for (size_t i = 0; i < d; i++) h->q1[i] += h->b[k] * eps * h->t2[i];
      }
      /* Distributed: a sum of counts is exact, the same on every rank, so it needs no broadcast. */
      double bad = !finite_all(d, h->q1);
      int cont = 1;
      if (h->dist) {
        CB_CALL(allsum(h, &bad, 1));
        cont = bad == 0;
      } else {
        if (h->rank == 0) cont = bad == 0;
        CB_CALL(bcast_flag(h, &cont));
      }
      if (!cont) {
        stop = nonfinite = true;
        break;
      }
      CB_CALL(evaluate(h, h->q1, &lp1, h->g1));
      /* Finite everywhere? Then the step's last kick and its energy. Distributed, the count of
       * non-finite ranks rides in the same reduction as the kinetic energy (or as MAMS's norms). */
      double nbad = !(isfinite(lp1) && finite_all(d, h->g1));
      bool last = k == h->m - 1, fin;
      if (mams && last) {
        double dk;
        CB_CALL(esh_update(h, h->a[h->m] * eps, &dk, &nbad));
        fin = nbad == 0;
        dK += dk;
        H1 = -lp1 + dK;
      } else if (last) {
        for (size_t i = 0; i < d; i++) h->p[i] += h->a[h->m] * eps * h->g1[i];
        double r[2] = {nbad, kinetic_local(h, h->p)};
        CB_CALL(allsum(h, r, 2));
        fin = r[0] == 0;
        H1 = -lp1 + r[1];
      } else {
        CB_CALL(allsum(h, &nbad, 1));
        fin = nbad == 0;
      }
      if (h->rank == 0) {
        cont = fin ? 1 : 0;
        if (fin && last && !(H1 - H0 <= c->divergence_threshold)) cont = 2;
      }
      if (!h->dist || last) CB_CALL(bcast_flag(h, &cont)); /* the energy test is the root's */
      if (h->dist && !last) cont = fin ? 1 : 0;
      if (cont != 1) {
        stop = true;
        nonfinite = cont == 0;
        break;
      }
      if (bfgs) {
        bfgs_pair(h);
        memcpy(h->qp, h->q1, d * sizeof *h->q1);
        memcpy(h->gp, h->g1, d * sizeof *h->g1);
      }
    }
    if (!stop) steps++;
  }
  /* Root decides. */
  decision dec = {0};
  if (h->rank == 0) {
    double U = gsl_rng_uniform(h->rng);
    dec.eps = eps;
    dec.n_steps = stop ? steps + 1 : steps;
    dec.diverging = stop;
    dec.nonfinite = nonfinite;
    dec.energy_error = stop ? INFINITY : H1 - H0;
    dec.accept_prob = stop ? 0 : fmin(1.0, exp(-(H1 - H0)));
    if (!isfinite(dec.accept_prob)) dec.accept_prob = 0;
    dec.accepted = !stop && log(U) < -(H1 - H0);
    dec.energy = mams ? (dec.accepted ? -lp1 : -h->s.lp) : (dec.accepted ? H1 : H0);
  }
  CB_CALL(bcast(h, &dec, sizeof dec / sizeof(double), MPI_DOUBLE));
  bool acc = dec.accepted != 0;
  if (acc) {
    memcpy(h->q, h->q1, d * sizeof *h->q);
    memcpy(h->g, h->g1, d * sizeof *h->g);
    h->s.lp = lp1;
  }
  if (mams) { /* the velocity kept for a partial refresh; flipped on rejection */
    if (acc)
      memcpy(h->u, h->p, d * sizeof *h->u);
    else
      for (size_t i = 0; i < d; i++) h->u[i] = -h->p0[i];
  }
  /* The root's state is the chain's (distributed: each rank owns its part, ln p is the root's). */
  if (h->dist) {
    CB_CALL(bcast(h, &h->s.lp, 1, MPI_DOUBLE));
  } else {
    memcpy(pkt, h->q, d * sizeof *pkt);
    pkt[d] = h->s.lp;
    CB_CALL(bcast(h, pkt, d + 1, MPI_DOUBLE));
    memcpy(h->q, pkt, d * sizeof *pkt);
    h->s.lp = pkt[d];
    CB_CALL(bcast(h, h->g, d, MPI_DOUBLE));
    if (mams) CB_CALL(bcast(h, h->u, d, MPI_DOUBLE));
  }
  if (bfgs) {
    if (acc) {
      memcpy(h->c, h->bn, d * d * sizeof *h->c);
      CB_CALL(metric_factor(h, false));
    } else if (c->bfgs_reset_full) {
      set_initial_metric(h);
      CB_CALL(metric_factor(h, false));
    }
    CB_CALL(bcast_metric(h));
  }
  h->s.n_iter++;
  h->s.n_acc += acc;
  h->s.n_div += dec.diverging != 0;
  h->s.n_nonfinite += dec.nonfinite != 0;
  CB_CALL(adapt(h, dec.accept_prob, eps * (double)steps));
  if (info) {
    info->accepted = acc;
    info->accept_prob = dec.accept_prob;
    info->lp = h->s.lp;
    info->energy = dec.energy;
    info->energy_error = dec.energy_error;
    info->step_size = dec.eps;
    info->n_steps = (int)dec.n_steps;
    info->diverging = dec.diverging != 0;
    info->nonfinite = dec.nonfinite != 0;
    info->n_grad = h->s.n_grad - g0;
    info->warmup = warm;
  }
  return CB_OK;
}

int hmc_set_warmup(hmc *h, long n_warmup) {
  CB_CHECK(n_warmup >= 0, CB_ERR_INPUT, "hmc: warm-up length %ld is negative", n_warmup);
  if (n_warmup == 0) {
    if (h->s.warm) CB_CALL(warmup_end(h));
    return CB_OK;
  }
  warmup_schedule(h, n_warmup);
  return CB_OK;
}

bool hmc_in_warmup(const hmc *h) {
  return h->s.warm != 0;
}
size_t hmc_dim(const hmc *h) {
  return h->dim;
}
const double *hmc_position(const hmc *h) {
  return h->q;
}
const double *hmc_gradient(const hmc *h) {
  return h->g;
}
double hmc_lp(const hmc *h) {
  return h->s.lp;
}
double hmc_step_size(const hmc *h) {
  return h->s.eps;
}
int hmc_n_steps_max(const hmc *h) {
  if (h->cfg.algorithm != HMC_ALG_MAMS) return h->cfg.n_steps;
  return (int)mams_n_max(h);
}
double hmc_trajectory_length(const hmc *h) {
  return h->cfg.algorithm == HMC_ALG_MAMS ? mams_length(h) : h->s.eps * h->cfg.n_steps;
}
size_t hmc_inverse_metric(const hmc *h, const double **c) {
  *c = h->c;
  return h->dd;
}
long hmc_n_iterations(const hmc *h) {
  return (long)h->s.n_iter;
}
long hmc_n_accepted(const hmc *h) {
  return (long)h->s.n_acc;
}
long hmc_n_diverging(const hmc *h) {
  return (long)h->s.n_div;
}
long hmc_n_nonfinite(const hmc *h) {
  return (long)h->s.n_nonfinite;
}
long hmc_n_grad(const hmc *h) {
  return (long)h->s.n_grad;
}
const hmc_config *hmc_get_config(const hmc *h) {
  return &h->cfg;
}

/* ---- state ---- */

size_t hmc_state_size(const hmc *h) {
  return sizeof(hmc_header) + sizeof(hmc_scalars) + h->n_block * sizeof(double) +
         gsl_rng_size(h->rng);
}

static void header_of(const hmc *h, hmc_header *hd) {
  memset(hd, 0, sizeof *hd);
  hd->magic = HMC_MAGIC;
  hd->dim = h->dim;
  hd->algorithm = (uint64_t)h->cfg.algorithm;
  hd->integrator = (uint64_t)h->cfg.integrator;
  hd->metric = (uint64_t)h->cfg.metric;
  hd->size = hmc_state_size(h);
  hd->mams_cap = h->mams_cap;
  hd->rng_size = gsl_rng_size(h->rng);
  hd->distributed = h->dist;
  hd->nranks = h->dist ? (uint64_t)h->nranks : 0;
  hd->rank = h->dist ? (uint64_t)h->rank : 0;
}

int hmc_state_save(hmc *h, void *buf) {
  unsigned char *b = buf;
  hmc_header hd;
  header_of(h, &hd);
  memcpy(b, &hd, sizeof hd);
  b += sizeof hd;
  memcpy(b, &h->s, sizeof h->s);
  b += sizeof h->s;
  memcpy(b, h->block, h->n_block * sizeof(double));
  b += h->n_block * sizeof(double);
  memcpy(b, gsl_rng_state(h->rng), gsl_rng_size(h->rng));
  if (!h->dist) CB_CALL(bcast(h, buf, hmc_state_size(h), MPI_BYTE));
  return CB_OK;
}

int hmc_state_load(hmc *h, const void *buf) {
  /* The header first (its size is fixed), so a buffer of another layout is never read past its
   * own end. */
  hmc_header hd, mine;
  if (h->rank == 0 || h->dist) memcpy(&hd, buf, sizeof hd);
  if (!h->dist) CB_CALL(bcast(h, &hd, sizeof hd, MPI_BYTE));
  header_of(h, &mine);
  const char *what =
      hd.magic != mine.magic             ? "is not a sampler state"
      : hd.dim != mine.dim               ? "has another dimension"
      : hd.algorithm != mine.algorithm   ? "has another algorithm"
      : hd.integrator != mine.integrator ? "has another integrator"
      : hd.metric != mine.metric         ? "has another metric"
      : hd.size != mine.size || hd.mams_cap != mine.mams_cap || hd.rng_size != mine.rng_size
          ? "has another layout (window_term or RNG)"
      : hd.distributed != mine.distributed || hd.nranks != mine.nranks || hd.rank != mine.rank
          ? "belongs to another rank or number of ranks (distributed mode)"
          : NULL;
  if (h->dist) { /* each rank checked its own: agree on the verdict */
    int bad = what != NULL;
    CB_CHECK(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, h->comm) == MPI_SUCCESS,
             CB_ERR_MPI, "hmc: MPI_Allreduce failed");
    if (bad && !what) what = "does not fit on another rank";
  }
  if (what)
    return CB_ERROR(CB_ERR_INPUT, "hmc: the saved state %s (dim %llu %s %s %s, here %zu %s %s %s)",
                    what, (unsigned long long)hd.dim, hmc_algorithm_name((int)hd.algorithm),
                    hmc_integrator_name((int)hd.integrator), hmc_metric_name((int)hd.metric),
                    h->dim, hmc_algorithm_name(h->cfg.algorithm),
                    hmc_integrator_name(h->cfg.integrator), hmc_metric_name(h->cfg.metric));
  size_t n = hmc_state_size(h);
  unsigned char *tmp = malloc(n);
  CB_CHECK(tmp != NULL, CB_ERR_MEM, "out of memory for a sampler state of %zu bytes", n);
  if (h->rank == 0 || h->dist) memcpy(tmp, buf, n);
  int st = h->dist ? CB_OK : bcast(h, tmp, n, MPI_BYTE);
  if (st != CB_OK) {
    free(tmp);
    return st;
  }
  const unsigned char *b = tmp + sizeof hd;
  memcpy(&h->s, b, sizeof h->s);
  b += sizeof h->s;
  memcpy(h->block, b, h->n_block * sizeof(double));
  b += h->n_block * sizeof(double);
  memcpy(gsl_rng_state(h->rng), b, gsl_rng_size(h->rng));
  free(tmp);
  return CB_OK;
}
