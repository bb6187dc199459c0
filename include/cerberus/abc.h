/* abc: approximate Bayesian computation over rank groups, step-wise (MODEL.md section 10).
 *
 * A campaign draws parameters, simulates on rank groups (groups.h), compresses (compress.h)
 * and keeps what lands close to the observed summaries, in rounds:
 *  - round 0 (rejection): n_initial draws from the prior; the n_particles closest are kept
 *    (or those with rho < epsilon when -epsilon is given);
 *  - rounds 1, 2, ... (population Monte Carlo): epsilon = the 75th percentile of the current
 *    distances; every particle above it is moved by draws from N(theta_i, 2 Cov_w) truncated to
 *    the prior (redrawn until inside, no simulation spent outside) until rho < epsilon;
 *    a moved particle's weight is pi(theta) / sum_j w_j N(theta; theta_j, 2 Cov_w); the moved
 *    and the kept particles, two weighted samples of the same distribution, are each
 *    normalised and joined in proportion to their numbers; the campaign stops when a round's
 *    acceptance (moves / simulations spent on them) falls below the criterion, or after
 *    max_rounds.
 * Reproducible by construction: attempt a of particle (slot) i in round r has the key
 * (r, i, a); its parameter draw and its simulation's seed are hashes of the campaign seed and
 * the key (groups_task_seed), and a slot takes the accepted attempt with the smallest a. The
 * coordinator may hand out attempts beyond the first accepted one to keep every group busy
 * (they are recorded, not used): the populations do not depend on the number of groups or on
 * which group ran what. A simulation whose summaries are not finite is recorded as failed and
 * counts as a rejected attempt.
 *
 * Persistence: every simulation is appended to the journal <path>.journal (fixed-size binary
 * records, flushed as they arrive; a torn last record is dropped) and the campaign file <path>
 * (HDF5) is rewritten atomically (temporary name + rename) at each round's end, every
 * checkpoint_interval seconds and at the end. A resumed campaign replays its journal as a cache
 * of results (a key found there is not simulated again) and so reaches the same populations as
 * one run without interruption; only the simulations in flight when it stopped are lost. */
#ifndef CERBERUS_ABC_H
#define CERBERUS_ABC_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "cerberus/compress.h"
#include "cerberus/groups.h"
#include "cerberus/options.h"
#include "cerberus/simulator.h"

enum abc_prior_kind { ABC_PRIOR_UNIFORM = 0, ABC_PRIOR_GAUSSIAN = 1 };
#define ABC_PRIOR_CHOICES "uniform,gaussian"

typedef struct abc_prior {
  int kind;                                                /* enum abc_prior_kind */
  int n;                                                   /* parameters */
  double a[SIMULATOR_MAX_PARAMS], b[SIMULATOR_MAX_PARAMS]; /* lower, upper / mean, sd */
} abc_prior;

/* CB_ERR_INPUT naming -prior_lower / -prior_upper / -prior_mean / -prior_sd: wrong count,
 * lower >= upper, sd <= 0, a non-finite value. Not collective. */
int abc_prior_check(const abc_prior *p, int n_params);
/* ln pi(theta) up to a constant; -inf outside a uniform box. Not collective. */
double abc_prior_logpdf(const abc_prior *p, const double *theta);

enum abc_method { ABC_REJECTION = 0, ABC_PMC = 1 };
enum abc_move { ABC_MOVE_ANCESTOR = 0, ABC_MOVE_PARTICLE = 1 };
#define ABC_MOVE_CHOICES "ancestor,particle"
#define ABC_METHOD_CHOICES "rejection,pmc"

typedef struct abc_config {
  int method;                  /* enum abc_method (-method pmc) */
  long n_particles;            /* -n_particles (500) */
  long n_initial;              /* -n_initial (2000): prior draws of round 0 */
  double epsilon;              /* -epsilon (0: keep the n_particles closest) */
  double percentile;           /* -percentile (75) */
  int move;                    /* enum abc_move (-pmc_move ancestor) */
  double criterion;            /* -criterion (0.1) */
  int max_rounds;              /* -max_rounds (30), PMC rounds after round 0 */
  uint64_t seed;               /* -seed */
  abc_prior prior;             /* -prior uniform|gaussian, -prior_lower/-prior_upper, ... */
  double checkpoint_interval;  /* -checkpoint_interval s (30) */
  double progress_interval;    /* -progress_interval s (5): a progress line */
  char path[4096];             /* the campaign file (-o) */
  bool resume;                 /* -resume */
  bool overwrite;              /* -overwrite */
  bool quiet;                  /* no progress lines (benchmarks) */
  volatile sig_atomic_t *stop; /* set (by a signal handler) to stop after the tasks in flight */
} abc_config;

/* The options above (not -o, -resume, -overwrite: the command's). Collective. */
int abc_options(options *o, int n_params, abc_config *cfg);

/* One population. Arrays of n rows (theta, x: n_params per row). */
typedef struct abc_population {
  long n;
  double *theta, *x, *rho, *w;
  double epsilon;    /* the threshold the round used (round 0: the largest kept distance) */
  double acceptance; /* moves (round 0: draws) / simulations spent on them */
  long n_sims;       /* simulations the round spent, its speculative ones included */
} abc_population;

typedef struct abc abc;

/* Calibrate a bandpower or identity compressor (compress_calibrate) on its n_s + 2 n_params n_d
 * simulations, run on the groups with seeds from the campaign seed (a stream of their own);
 * every rank gets the map. Nothing to do for a calibrated compressor. Collective on
 * g->world. */
int abc_calibrate(groups *g, simulator *sim, compressor *c, uint64_t seed);

/* A campaign on the groups g, each running its own simulator and compressor (made on its
 * group's communicator, compressor calibrated), with observed summaries x_obs (n_params, the
 * same on every rank). o is the options record written into the campaign file. With
 * cfg->resume the journal of cfg->path is read (refused if its settings differ; "nothing to
 * resume" if there is none). Collective on g->world. */
int abc_create(groups *g, simulator *sim, compressor *c, const abc_config *cfg, const double *x_obs,
               const options *o, abc **a);
void abc_destroy(abc **a); /* Collective; accepts NULL, leaves NULL. */

/* x_obs (n_params, on every rank) from the observed data, which group 0 holds (data: the local
 * part on group 0's ranks; ignored elsewhere). Collective on g->world. */
int abc_observed(groups *g, simulator *sim, compressor *c, const double *data, double *x_obs);

/* One round (round 0 first). *done becomes true when the campaign has finished (its
 * criterion, max_rounds, or the rejection method's single round), *stopped when cfg->stop was
 * raised (the round is incomplete; the journal holds what came in). Collective on g->world. */
int abc_round(abc *a, bool *done, bool *stopped);

/* Rounds finished, and round r's population (0 <= r < rounds; coordinator only, NULL
 * elsewhere). */
int abc_rounds(const abc *a);
const abc_population *abc_population_of(const abc *a, int r);
/* Simulations recorded (cached from the journal included), and of those run in this process. */
long abc_n_sims(const abc *a);
long abc_n_new_sims(const abc *a);

/* Write the campaign file (atomically): every simulation, every population, the compressor,
 * x_obs, options and code version, and "complete". Extra arrays may be added by the caller
 * before (abc_set_exact). Collective on g->world (the coordinator writes). */
int abc_write(abc *a, bool complete);
/* The exact posterior on a grid to store beside the samples (n_params <= 2): axis values
 * (n_axis per parameter) and ln posterior (row-major over the axes), coordinator's copy. */
int abc_set_exact(abc *a, int n_axis, const double *axes, const double *log_post);

/* ln L + ln pi on the grid axes[p * n_axis + i] (n_params <= 2), for the data of one
 * simulation (the local part), with the simulator's exact likelihood. Collective on
 * sim->comm. out has n_axis^n_params values. */
int abc_exact_grid(simulator *sim, const abc_prior *prior, const double *data, int n_axis,
                   const double *axes, double *out);

/* Weighted mean, sd and quantiles q[k] (n_q of them) of parameter p of a population. Not
 * collective. */
void abc_population_stats(const abc_population *pop, int n_params, int p, double *mean, double *sd,
                          int n_q, const double *q, double *quantiles);

#endif
