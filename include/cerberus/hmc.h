/* hmc: step-wise Hamiltonian Monte Carlo for any target with a log density and its gradient
 * (HMCLET, MODEL.md section 8), in the manner of GSL's gsl_multimin: create, step, read the
 * state, destroy; the driver owns the loop, the logging and the checkpoints.
 *
 * Variants (hmc_config):
 *  - integrator: leapfrog (default), Omelyan's 2nd-order minimal-norm scheme (two gradients a
 *    step, error constant ~10x smaller), Yoshida's 4th-order scheme (three gradients a step);
 *  - jitter (MODEL.md 8): eps = eps_max (1 - U1), n = 1 + floor(n_max U2); MAMS keeps eps and
 *    draws n = 1 + floor(n_max U2) with n_max = ceil(2 L / eps), so the mean length is about L;
 *  - metric: unit, diagonal or dense mass matrix M = C^-1, C the running posterior covariance
 *    (Welford) in warm-up windows like Stan's, shrunk towards its initial value with weight
 *    5/(5+n) (diagonal) or 10/(10+n) (dense), the dense one regularised by flooring its
 *    eigenvalues at eig_floor times the largest;
 *  - quasi-Newton (metric HMC_METRIC_BFGS): C = B, a BFGS estimate of the inverse Hessian of
 *    -ln p updated from the successive (q, grad) pairs of every integration step (skipped when
 *    (s.y)^2 < bfgs_skip |s|^2 |y|^2 or s.y <= 0), frozen for the length of a trajectory
 *    (p ~ N(0, B^-1) through the Cholesky factor of B, drift q += eps B p, kick as usual);
 *    the pairs of a rejected trajectory are discarded (B reset to its value at the start of
 *    that trajectory), or with bfgs_reset_full B is reset to its initial value. By default B
 *    is updated during warm-up only, up to its final fast buffer (window_term steps, where the
 *    step size is learnt afresh for the B that sampling keeps), and frozen after it (so
 *    sampling is exactly invariant);
 *    bfgs_update_always keeps updating it (exact for Gaussians, adaptive MCMC otherwise);
 *  - step size adapted by dual averaging (Hoffman & Gelman 2014, Stan's constants) to a target
 *    acceptance (0.8), restarted at each metric update, frozen at its averaged value at the end
 *    of warm-up;
 *  - MAMS (algorithm HMC_ALG_MAMS; Robnik, Cohn-Gordon & Seljak 2025): isokinetic dynamics
 *    with a unit-speed velocity in the preconditioned coordinates (metric unit, diagonal or
 *    dense), the energy error from the kinetic-energy change of the ESH velocity update, a
 *    Metropolis test, a full velocity refresh per trajectory (or a partial one with a flip on
 *    rejection), the step size tuned by dual averaging to mams_target_accept (0.9) and the
 *    trajectory length L from the effective sample size of the last warm-up window
 *    (L = mams_l_factor * integration time / ESS, averaged over the coordinates), the L used
 *    capped at mams_mean_steps_max step sizes.
 *  - pooled adaptation across chains (pool_chains): one step size and one Welford metric for
 *    all the chains of a run, see hmc_pool.
 *
 * Parallelism. The parameters q are replicated: the same q on every rank of comm. The target
 * is collective over comm (it reduces its own sums inside) and must return the same values
 * and status on every rank. The root (rank 0) alone owns the random numbers: it draws the
 * momentum, the jitter and the uniform of the Metropolis test, decides whether a trajectory
 * stops (non-finite value, divergence) and whether it is accepted, and broadcasts the momentum,
 * the decisions and finally its position, log density and gradient, so no rank decides from
 * its own copy and the ranks cannot drift apart.
 *
 * A target value or gradient that is NaN or infinite (or an energy error above
 * divergence_threshold) ends the trajectory, which is rejected and counted (info->diverging,
 * hmc_n_diverging); it is never fatal. A non-zero status returned by the target is an error
 * and is passed up.
 *
 * Distributed mode (cfg.distributed; for the white-noise field of the joint sampler, MODEL.md
 * section 7): each rank holds its own dim parameters (q, gradient, diagonal metric: metric unit or
 * diag only), the target reduces ln p over comm and returns the local gradient; kinetic energy,
 * norms and dot products are summed over comm; each rank draws the momentum of its own part from
 * its own RNG stream (seed + 1000003 rank), the root draws the jitter and the uniform of the test
 * and decides. The chain then depends on the number of ranks; hmc_state_save / load are per rank
 * (a state resumes on the same number of ranks only; hmc_state_load refuses another).
 *
 * Restarts: hmc_state_save writes everything that evolves (position, lp, grad, the RNG state,
 * the metric, Welford and dual-averaging state, BFGS matrix, MAMS tuning buffer, counters);
 * a sampler created with the same dim and config and given that buffer by hmc_state_load
 * continues bit for bit as the saved one would have. In the replicated mode the buffer is the
 * same on every rank and independent of the number of ranks (a state saved on 4 ranks resumes
 * on 1, bit for bit when the target's values do not depend on the number of ranks). */
#ifndef CERBERUS_HMC_H
#define CERBERUS_HMC_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

/* The target: ln p(q) and its gradient d ln p / dq (dim values, may not be NULL). Collective
 * over the sampler's comm; q is the same on every rank and *logp, grad must come out the same on
 * every rank (distributed mode: q and grad are this rank's block, *logp the same on every
 * rank). Return CB_OK, also for a non-finite value (a rejected trajectory); any other
 * status is an error that stops the sampler. */
typedef int (*hmc_target_fn)(void *ctx, const double *q, double *logp, double *grad);

enum hmc_algorithm { HMC_ALG_HMC = 0, HMC_ALG_MAMS = 1 };
#define HMC_ALGORITHM_CHOICES "hmc,mams"
enum hmc_integrator { HMC_LEAPFROG = 0, HMC_OMELYAN = 1, HMC_YOSHIDA4 = 2 };
#define HMC_INTEGRATOR_CHOICES "leapfrog,omelyan,yoshida4"
enum hmc_metric {
  HMC_METRIC_UNIT = 0,
  HMC_METRIC_DIAG = 1,
  HMC_METRIC_DENSE = 2,
  HMC_METRIC_BFGS = 3
};
#define HMC_METRIC_CHOICES "unit,diag,dense,bfgs"
/* The names in enum order ("leapfrog", ...); "?" out of range. Not collective. */
const char *hmc_algorithm_name(int a);
const char *hmc_integrator_name(int i);
const char *hmc_metric_name(int m);

typedef struct hmc_config {
  int algorithm;        /* enum hmc_algorithm (HMC_ALG_HMC) */
  int integrator;       /* enum hmc_integrator (HMC_LEAPFROG); for MAMS too */
  int metric;           /* enum hmc_metric (HMC_METRIC_DIAG); MAMS: unit, diag or dense */
  double step_size;     /* initial eps_max, > 0 (0.1) */
  int n_steps;          /* n_max, the largest number of integration steps (10); for MAMS the
                           trajectory length L starts as n_steps * step_size, becomes sqrt(dim)
                           at each metric update and is tuned at the end of warm-up */
  bool jitter;          /* jitter eps and n (true); false: eps = eps_max, n = n_max */
  long n_warmup;        /* warm-up steps counted from creation (1000); see hmc_set_warmup */
  bool adapt_step;      /* dual averaging during warm-up (true) */
  bool adapt_metric;    /* Welford metric (diag, dense) / BFGS updates during warm-up (true) */
  double target_accept; /* HMC's dual-averaging target (0.8), in (0, 1) */
  double da_gamma;      /* 0.05 */
  double da_t0;         /* 10 */
  double da_kappa;      /* 0.75 */
  long window_init;     /* Stan's initial fast buffer (75) */
  long window_base;     /* first slow window, doubling (25) */
  long window_term;     /* final fast buffer (50) */
  double metric_init;   /* initial C = metric_init * I (1.0), > 0 */
  const double *metric_init_diag;  /* optional initial diag(C) (dim values, copied); NULL */
  const double *metric_init_dense; /* optional initial C (dim * dim row-major, copied; e.g.
                                      map_laplace's covariance): the dense and BFGS metrics start
                                      from it, and its diagonal is C0 (the diagonal metric's start,
                                      the shrinkage target, BFGS's full reset) unless
                                      metric_init_diag is given; ignored in distributed mode;
                                      NULL */
  double shrink_diag;              /* 5: C = n/(n+5) S + 5/(n+5) C0 */
  double shrink_dense;             /* 10 */
  double eig_floor;            /* dense/BFGS eigenvalues floored at eig_floor * largest (1e-10) */
  double bfgs_skip;            /* 1e-5 */
  bool bfgs_reset_full;        /* a rejection resets B to its initial value (false: to the value at
                                  the start of the rejected trajectory) */
  bool bfgs_update_always;     /* keep updating B after warm-up (false) */
  double divergence_threshold; /* energy error above which a trajectory stops (1000) */
  double mams_target_accept;   /* 0.9 */
  double mams_refresh;         /* 1: full velocity refresh a trajectory; in (0, 1): partial refresh
                                  u <- normalise(sqrt(1 - r) u + sqrt(r) z / sqrt(dim)), u flipped on
                                  rejection */
  double mams_l_factor;        /* 0.4 */
  bool mams_tune_l;            /* tune L from the ESS of the last warm-up window (true) */
  int mams_mean_steps_max;     /* cap on L / eps, the mean steps of a MAMS trajectory (16): the
                                  L used is min(L, mams_mean_steps_max eps), so an ill-conditioned
                                  target (eps far below the scale sqrt(dim) of L) costs at most
                                  this many gradients a trajectory on average, not max_steps / 2 */
  int max_steps;               /* cap on the integration steps of one trajectory (1024): MAMS's
                                  n = 2 L / eps grows as the dual averaging shrinks eps (e.g. when a
                                  truncated target rejects trajectories whatever eps) */
  bool pool_chains;            /* pooled adaptation across chains (false): see hmc_pool */
  bool distributed;            /* distributed mode (false): q split over the ranks, see above */
  unsigned long seed;          /* seed of the root's RNG (gsl_rng_mt19937) (1) */
} hmc_config;

/* Fill the defaults given above. Not collective. */
void hmc_config_default(hmc_config *cfg);
/* CB_ERR_INPUT with a line naming the bad field. Not collective. */
int hmc_config_check(const hmc_config *cfg, size_t dim);

/* The trajectory options every sampler command shares, read into cfg and checked with lines
 * naming them: -step_size (eps_max, > 0), -n_steps (n_max, in [1, max_steps]) and
 * -target_accept (in (0, 1)); cfg's values are the defaults. */
struct options;
int hmc_config_options(struct options *o, hmc_config *cfg);

typedef struct hmc_step_info {
  bool accepted;       /* the proposal was accepted */
  double accept_prob;  /* min(1, exp(-dH)), 0 for a diverging trajectory */
  double lp;           /* ln p at the chain's position after the step */
  double energy;       /* Hamiltonian -lp + K at the chain's state after the step (the start's
                          K when rejected); MAMS: -lp (its kinetic energy is only a change) */
  double energy_error; /* H(proposal) - H(start); +inf for a diverging trajectory */
  double step_size;    /* eps of this trajectory (after jitter) */
  int n_steps;         /* integration steps taken (fewer than drawn if it stopped) */
  bool diverging;      /* stopped by a non-finite value or an energy error above the threshold */
  bool nonfinite;      /* the target gave a non-finite ln p or gradient */
  long n_grad;         /* target evaluations (gradients) spent by this step */
  bool warmup;         /* this step was a warm-up step */
} hmc_step_info;

typedef struct hmc hmc;

/* A sampler of dimension dim starting at q0 (dim values, the same on every rank): evaluates the
 * target once at q0 (a non-finite ln p there is CB_ERR_INPUT). cfg is copied, ctx is kept.
 * Collective. */
int hmc_create(MPI_Comm comm, size_t dim, const hmc_config *cfg, hmc_target_fn logp, void *ctx,
               const double *q0, hmc **h);
void hmc_destroy(hmc **h); /* Not collective; accepts NULL, leaves NULL. */

/* One trajectory (or one MAMS proposal) and, in warm-up, the adaptation. info may be NULL.
 * Collective. */
int hmc_step(hmc *h, hmc_step_info *info);

/* Start a warm-up of n_warmup steps from now (windows as in the config), or with 0 end the
 * current warm-up now (the step size freezes at its dual-averaging mean, the metric at its
 * last update). Collective (every rank must call it with the same value). */
int hmc_set_warmup(hmc *h, long n_warmup);
bool hmc_in_warmup(const hmc *h); /* Not collective. */

/* Getters. Not collective; the values are the same on every rank. */
size_t hmc_dim(const hmc *h);
const double *hmc_position(const hmc *h); /* dim values */
const double *hmc_gradient(const hmc *h); /* dim values, d ln p / dq at the position */
double hmc_lp(const hmc *h);
double hmc_step_size(const hmc *h);         /* current eps_max */
int hmc_n_steps_max(const hmc *h);          /* current n_max (MAMS: from the tuned L) */
double hmc_trajectory_length(const hmc *h); /* MAMS's L (HMC: eps_max * n_max) */
/* The inverse mass matrix C (the covariance estimate; for BFGS the current B): dim values
 * (unit, diag) or dim*dim row-major (dense, bfgs) in *c; returns the count. */
size_t hmc_inverse_metric(const hmc *h, const double **c);
long hmc_n_iterations(const hmc *h); /* hmc_step calls since creation */
long hmc_n_accepted(const hmc *h);
long hmc_n_diverging(const hmc *h); /* includes the non-finite ones */
long hmc_n_nonfinite(const hmc *h);
long hmc_n_grad(const hmc *h); /* target evaluations, including the one of hmc_create */
const hmc_config *hmc_get_config(const hmc *h);

/* Pooled adaptation across chains (cfg.pool_chains, not in the distributed mode). Chains that
 * adapt alone each learn their own step size and metric from their own few hundred draws. With
 * pool_chains the sampler defers each adaptation point (the end of a slow window, the freezing
 * of the quasi-Newton B, the end of warm-up) to hmc_pool, which every chain of the run reaches
 * at the same step when the chains step in rounds with the same warm-up, and where all of them
 * adopt
 *  - the Welford metric (diag, dense) of every chain's window draws pooled: K times the draws,
 *    so a K-th of the shrinkage;
 *  - the geometric mean of their step sizes (the current ones at a window's end, the dual-
 *    averaging means at the freeze and at the end of warm-up);
 *  - MAMS: L from the ESS sums of every chain's tuning buffer.
 * The quasi-Newton B stays each chain's own: B is a local curvature estimate, learnt along the
 * chain's own trajectories, and the mean of the chains' B matched none of them (on the 32^3
 * posterior of issue 12 it halved the ESS of lp on four seeds of four).
 * After warm-up the chains sample with one step size (and, diag and dense, one metric); each
 * keeps its own jitter and random numbers. While an adaptation is pending (hmc_pool_pending),
 * hmc_step refuses to run.
 *
 * hmc_pool(h, chain, n_local, n_chains, across): h[0..n_local) are the samplers of this rank,
 * all on one communicator, chain[i] the index in [0, n_chains) of h[i]; across joins one rank
 * (the root of the samplers' communicator) of every group of ranks that holds chains, or is
 * MPI_COMM_NULL (on the other ranks, or when all the chains are here). Call it after every round
 * of steps; it does nothing (no communication) when nothing is pending. The chains' parts are
 * summed in chain order, so the result does not depend on how the chains are grouped.
 * Collective over the samplers' communicator and across. */
bool hmc_pool_pending(const hmc *h); /* Not collective. */
int hmc_pool(hmc *const *h, const int *chain, int n_local, int n_chains, MPI_Comm across);

/* Bitwise state. hmc_state_size: bytes (depends on dim and config only). hmc_state_save fills
 * buf on every rank with the same bytes (the root's RNG state is broadcast): Collective.
 * hmc_state_load: the root's buf is read and broadcast (other ranks' buf may be NULL), its fixed-
 * size header first; a buffer
 * of another dimension or config (the fields that change the state's layout or dynamics) is
 * CB_ERR_INPUT naming the difference. Collective. */
size_t hmc_state_size(const hmc *h);
int hmc_state_save(hmc *h, void *buf);
int hmc_state_load(hmc *h, const void *buf);

#endif
