/* cmd_infer: `cerberus infer`, HMC sampling of the weights of the neural bias model (or of the
 * power-law baseline) given a density field and a halo catalogue (MODEL.md sections 5 and 8).
 *
 *   cerberus infer -options_file params/infer.opts -field F.h5 -catalogue C.h5 -o chain.h5
 *
 * Target: the posterior module (ln L + N(0, 10^2) prior; -engine_monotone samples the
 * engine's centre weight through softplus). Chains: -chains K, each with its own seed
 * (-seed + chain index). When the world's ranks allow, the chains run side by side on rank
 * groups (the largest number of groups G <= K that divides the ranks; the world is split, each
 * group reads the field and catalogue and evaluates the likelihood on its own communicator);
 * the chains of a group take their steps in turn, so every chain has made the same number of
 * steps after each round. -pool_adaptation: at each adaptation point of the warm-up (hmc_pool)
 * the chains adopt one metric, from all their draws, and one step size; the group roots pool
 * over their own communicator. Starts (-start): the best of -map_starts optimisations to the
 * maximum a posteriori point (PETSc TAO, -tao_type blmvm by default, from seeded random points N(0,
 * init_scale^2)), or a random point of that kind per chain ("prior"), or the weights of -weights
 * FILE ("file").
 *
 * Output: the chain file (chain.h: ArviZ InferenceData layout) flushed every -flush_every
 * rounds; at the end its root attributes hold the options, the code version, the gradient
 * evaluations of optimisation, warm-up and sampling and each chain's inverse mass matrix. A
 * progress line per chain every -progress_every rounds (a SLURM log's kind: no carriage
 * returns); at the end the diagnostics table (summary.h), as `cerberus diagnose` prints it.
 *
 * Checkpoints (checkpoint.h) go to -checkpoint FILE (default OUT.ckpt) every
 * -checkpoint_interval seconds, and at the next round after SIGUSR1 (then the run goes on)
 * or SIGTERM (then it stops cleanly, exit 0, after saying how to continue). -resume continues
 * from the checkpoint (or from the previous one, with a warning, when the newest is damaged):
 * on the same ranks the chain file equals the one of an uninterrupted run bit for bit
 * (wall_time apart). A checkpoint written with other options is refused with a line naming
 * the option. The rank groups are an MPI matter of this command alone: everything below
 * receives its group's communicator. Collective. */
#include "cerberus/chain.h"
#include "cerberus/checkpoint.h"
#include "cerberus/commands.h"
#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/hmc.h"
#include "cerberus/likelihood.h"
#include "cerberus/log.h"
#include "cerberus/map.h"
#include "cerberus/options.h"
#include "cerberus/posterior.h"
#include "cerberus/status.h"
#include "cerberus/summary.h"
#include "cerberus/version.h"
#include "cerberus/weights.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { START_MAP = 0, START_PRIOR = 1, START_FILE = 2 };
/* counters kept in the checkpoint */
enum { CNT_GRAD_MAP = 0, CNT_GRAD_WARMUP = 1, CNT_GRAD_SAMPLING = 2 };

typedef struct infer_opts {
  char field[4096], catalogue[4096], weights[4096], truth[4096], out[4096], ckpt[4200];
  double mth, prior_sigma, init_scale, ckpt_interval;
  long chains, seed, warmup, samples, map_starts, map_iterations, progress_every, flush_every,
      signal_at;
  int start;
  bool overwrite, monotone, standardise, relative_bias, laplace, resume, have_weights, have_truth;
  hmc_config hmc;
  weights_arch arch;
} infer_opts;

/* ------------------------------------------------------------------ signals */

static volatile sig_atomic_t got_signal = 0; /* 1: SIGTERM, 2: SIGUSR1 */

static void on_signal(int sig) {
  got_signal |= sig == SIGTERM ? 1 : 2;
}

/* ------------------------------------------------------------------ options */

static int read_options(options *o, infer_opts *p) {
  memset(p, 0, sizeof *p);
  CB_CALL(options_string(o, "-field", "density field file (/delta)", NULL, p->field,
                         sizeof p->field, NULL));
  CB_CALL(options_string(o, "-catalogue", "halo catalogue file (/halos)", NULL, p->catalogue,
                         sizeof p->catalogue, NULL));
  CB_CALL(
      options_real(o, "-mass_threshold", "Mth in M_sun/h (default: the catalogue's)", 0, &p->mth));
  CB_CALL(weights_arch_from_options(o, &p->arch));
  CB_CALL(options_string(o, "-weights",
                         "weights file: must have the architecture above; the start of -start file",
                         NULL, p->weights, sizeof p->weights, &p->have_weights));
  CB_CALL(options_string(o, "-truth_weights",
                         "true weights of a mock (same architecture): their binned mass "
                         "function is stored beside the draws (mass_function_truth)",
                         NULL, p->truth, sizeof p->truth, &p->have_truth));
  CB_CALL(options_bool(o, "-engine_monotone",
                       "monotone engine: centre weight(s) of the first layer = softplus(t_c)",
                       false, &p->monotone));
  CB_CALL(options_bool(o, "-standardise_features",
                       "sample the head's weights of the standardised engine features (the same "
                       "posterior of the weights, better shaped for the sampler; MODEL.md 8)",
                       false, &p->standardise));
  CB_CALL(options_bool(o, "-relative_bias",
                       "with -engine_monotone -standardise_features: sample the first layer's "
                       "bias relative to its centre weight (default: its own number)",
                       false, &p->relative_bias));
  CB_CALL(options_real(o, "-prior_sigma", "width of the Gaussian prior on every weight", 10.0,
                       &p->prior_sigma));
  CB_CALL(options_int(o, "-chains", "number of chains", 4, &p->chains));
  CB_CALL(
      options_int(o, "-seed", "seed (chain c uses seed + c; the starts seed + 7919)", 1, &p->seed));
  CB_CHECK(p->seed >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", p->seed);
  CB_CALL(options_int(o, "-warmup", "warm-up steps per chain", 200, &p->warmup));
  CB_CALL(options_int(o, "-samples", "samples per chain after warm-up", 500, &p->samples));
  hmc_config_default(&p->hmc);
  CB_CALL(options_choice(o, "-algorithm", "sampler: HMC or MAMS", HMC_ALGORITHM_CHOICES, "hmc",
                         &p->hmc.algorithm));
  CB_CALL(options_choice(o, "-integrator", "HMC integrator", HMC_INTEGRATOR_CHOICES, "leapfrog",
                         &p->hmc.integrator));
  CB_CALL(options_choice(o, "-metric", "mass matrix: unit, diag, dense or bfgs (quasi-Newton)",
                         HMC_METRIC_CHOICES, "diag", &p->hmc.metric));
  p->hmc.step_size = 0.05;
  CB_CALL(hmc_config_options(o, &p->hmc)); /* -step_size, -n_steps, -target_accept */
  CB_CALL(options_bool(o, "-jitter", "jitter step size and number of steps", true, &p->hmc.jitter));
  CB_CALL(options_bool(o, "-pool_adaptation",
                       "the chains adapt together: at each adaptation point of the warm-up all "
                       "adopt one metric (from every chain's draws) and one step size",
                       false, &p->hmc.pool_chains));
  CB_CALL(options_choice(o, "-start", "starting points: map, prior (random) or file",
                         "map,prior,file", "map", &p->start));
  CB_CALL(
      options_int(o, "-map_starts", "random starts of the MAP optimisation", 4, &p->map_starts));
  CB_CALL(options_bool(o, "-laplace_metric",
                       "with -start map: every chain's metric starts from the Laplace covariance "
                       "at the MAP (2 x dim gradients)",
                       false, &p->laplace));
  CB_CALL(options_int(o, "-map_iterations", "iterations of each MAP optimisation", 200,
                      &p->map_iterations));
  CB_CALL(options_real(o, "-init_scale", "sd of the random starting points", 0.1, &p->init_scale));
  CB_CALL(options_string(o, "-o", "chain file (HDF5, ArviZ layout)", NULL, p->out, sizeof p->out,
                         NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing chain file", false, &p->overwrite));
  CB_CALL(
      options_int(o, "-progress_every", "rounds between progress lines", 10, &p->progress_every));
  CB_CALL(options_int(o, "-flush_every", "rounds between writes of the chain file", 10,
                      &p->flush_every));
  bool have_ck = false;
  CB_CALL(options_string(o, "-checkpoint", "checkpoint file (default: OUT.ckpt)", NULL, p->ckpt,
                         sizeof p->ckpt, &have_ck));
  CB_CALL(options_real(o, "-checkpoint_interval", "seconds between checkpoints", 300,
                       &p->ckpt_interval));
  CB_CALL(options_bool(o, "-resume", "continue from the checkpoint", false, &p->resume));
  CB_CALL(options_int(o, "-signal_at", "(tests) send SIGTERM to itself after this round", -1,
                      &p->signal_at));
  CB_CALL(options_finish(o));
  CB_CHECK(p->field[0], CB_ERR_INPUT, "no field given (-field FILE)");
  CB_CHECK(p->catalogue[0], CB_ERR_INPUT, "no catalogue given (-catalogue FILE)");
  CB_CHECK(p->out[0], CB_ERR_INPUT, "no chain file given (-o FILE)");
  CB_CHECK(p->chains >= 1 && p->chains <= 4096, CB_ERR_INPUT,
           "-chains must be between 1 and 4096 (got %ld)", p->chains);
  CB_CHECK(p->warmup >= 0, CB_ERR_INPUT, "-warmup must be >= 0 (got %ld)", p->warmup);
  CB_CHECK(p->samples >= 1, CB_ERR_INPUT, "-samples must be >= 1 (got %ld)", p->samples);
  CB_CHECK(p->map_starts >= 1, CB_ERR_INPUT, "-map_starts must be >= 1 (got %ld)", p->map_starts);
  CB_CHECK(p->map_iterations >= 1, CB_ERR_INPUT, "-map_iterations must be >= 1 (got %ld)",
           p->map_iterations);
  CB_CHECK(p->init_scale > 0 && isfinite(p->init_scale), CB_ERR_INPUT,
           "-init_scale must be positive (got %g)", p->init_scale);
  CB_CHECK(p->progress_every >= 1 && p->flush_every >= 1, CB_ERR_INPUT,
           "-progress_every and -flush_every must be >= 1");
  CB_CHECK(p->ckpt_interval > 0, CB_ERR_INPUT, "-checkpoint_interval must be positive (got %g)",
           p->ckpt_interval);
  CB_CHECK(p->mth >= 0 && isfinite(p->mth), CB_ERR_INPUT,
           "-mass_threshold must be positive (got %g)", p->mth);
  CB_CHECK(p->start != START_FILE || p->have_weights, CB_ERR_INPUT,
           "-start file needs -weights FILE");
  CB_CHECK(!p->laplace || p->start == START_MAP, CB_ERR_INPUT,
           "-laplace_metric needs -start map (the Laplace covariance is taken at the MAP)");
  if (!have_ck) snprintf(p->ckpt, sizeof p->ckpt, "%s.ckpt", p->out);
  p->hmc.n_warmup = p->warmup;
  return CB_OK;
}

/* Options that may change between a checkpoint and its -resume. */
static bool may_differ(const char *name) {
  static const char *ok[] = {
      "-resume",    "-overwrite", "-checkpoint_interval", "-progress_every", "-flush_every",
      "-signal_at", NULL};
  for (int i = 0; ok[i]; i++)
    if (!strcmp(name, ok[i])) return true;
  return false;
}

/* The value of option name in a record ("-name value\n" lines); NULL if absent. */
static const char *record_value(const char *rec, const char *name, char *buf, size_t n) {
  size_t ln = strlen(name);
  for (const char *l = rec; l && *l;) {
    const char *e = strchr(l, '\n');
    size_t len = e ? (size_t)(e - l) : strlen(l);
    if (len >= ln && !strncmp(l, name, ln) && (len == ln || l[ln] == ' ')) {
      const char *v = l + ln + (len > ln);
      size_t vl = len - ln - (len > ln);
      snprintf(buf, n, "%.*s", (int)vl, v);
      return buf;
    }
    l = e ? e + 1 : NULL;
  }
  return NULL;
}

static int compare_options(const char *now, const char *then, const char *ckpt) {
  const char *recs[2] = {now, then};
  for (int r = 0; r < 2; r++)
    for (const char *l = recs[r]; l && *l;) {
      const char *e = strchr(l, '\n');
      size_t len = e ? (size_t)(e - l) : strlen(l);
      char name[256];
      size_t nl = strcspn(l, " \n");
      snprintf(name, sizeof name, "%.*s", (int)(nl < len ? nl : len), l);
      if (!may_differ(name)) {
        char a[1024], b[1024];
        const char *va = record_value(now, name, a, sizeof a);
        const char *vb = record_value(then, name, b, sizeof b);
        if (!va || !vb || strcmp(va, vb))
          return CB_ERROR(CB_ERR_INPUT,
                          "option %s differs from the checkpoint '%s' (%s there, %s now): resume "
                          "with the same options",
                          name, ckpt, vb ? vb : "absent", va ? va : "absent");
      }
      l = e ? e + 1 : NULL;
    }
  return CB_OK;
}

/* ------------------------------------------------------------------ the run */

typedef struct run {
  infer_opts *p;
  MPI_Comm world, gcomm;
  MPI_Comm roots; /* the group roots (rank 0 of each gcomm), for the pooled adaptation */
  int wrank, wsize, grank, group, n_groups;
  int K, n_local;
  int *local; /* chain indices of this group */
  field *f;
  double *delta;
  likelihood *lk;
  posterior *post;
  size_t dim, R;
  hmc **h;
  chain_file *cf;
  double *rec, *rec_sum;
  long counters[CHECKPOINT_N_COUNTERS]; /* this rank's share (group roots; rank 0 the base) */
  char (*names)[64];
  const char *record; /* the options record */
} run;

static int target(void *ctx, const double *q, double *lp, double *grad) {
  return posterior_evaluate(ctx, q, lp, grad, NULL);
}

/* Every rank of the world gets the worst status; a rank without its own message gets one. */
static int agree(MPI_Comm comm, int st) {
  int all = st;
  (void)MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MAX, comm);
  if (all && !st) return CB_ERROR(all, "failed on another rank");
  return all;
}

static int setup_groups(run *r) {
  MPI_Comm_rank(r->world, &r->wrank);
  MPI_Comm_size(r->world, &r->wsize);
  int G = 1;
  for (int g = 1; g <= r->K && g <= r->wsize; g++)
    if (r->wsize % g == 0) G = g;
  r->n_groups = G;
  r->group = r->wrank / (r->wsize / G);
  CB_CHECK(MPI_Comm_split(r->world, r->group, r->wrank, &r->gcomm) == MPI_SUCCESS, CB_ERR_MPI,
           "cannot split the ranks into %d groups", G);
  MPI_Comm_rank(r->gcomm, &r->grank);
  CB_CHECK(MPI_Comm_split(r->world, r->grank == 0 ? 0 : MPI_UNDEFINED, r->wrank, &r->roots) ==
               MPI_SUCCESS,
           CB_ERR_MPI, "cannot make the communicator of the group roots");
  CB_CALLOC(r->local, (size_t)r->K);
  for (int c = r->group; c < r->K; c += G) r->local[r->n_local++] = c;
  log_info("infer: %d chain(s) on %d rank group(s) of %d rank(s)%s", r->K, G, r->wsize / G,
           r->n_local > 1 ? ", the chains of a group in turn" : "");
  return CB_OK;
}

static int setup_target(run *r) {
  infer_opts *p = r->p;
  const weights_arch *a = &p->arch;
  int ghost = a->model == WEIGHTS_NPE ? npe_ghost_width(&a->npe) : 1;
  CB_CALL(h5io_read_field_file(r->gcomm, p->field, "/delta", ghost, &r->f, &r->delta));
  CB_CALL(likelihood_create(r->f, a, &r->lk));
  CB_CALL(likelihood_read_catalogue(r->lk, p->catalogue, p->mth));
  posterior_config pc;
  posterior_config_default(&pc);
  pc.monotone = p->monotone;
  pc.standardise = p->standardise;
  pc.relative_bias = p->relative_bias;
  pc.prior_sigma = p->prior_sigma;
  CB_CALL(posterior_create(r->f, r->lk, r->delta, a, &pc, &r->post));
  r->dim = posterior_dim(r->post);
  CB_CALLOC(r->names, r->dim);
  for (size_t i = 0; i < r->dim; i++) CB_CALL(weights_name(a, i, r->names[i], 64));
  char desc[512];
  weights_arch_describe(a, desc, sizeof desc);
  log_info("infer: %s%s; %ld halos above Mth = %g", desc, p->monotone ? ", monotone engine" : "",
           likelihood_n_halos(r->lk), likelihood_mth(r->lk));
  return CB_OK;
}

static int map_start(run *r, double *best) {
  map_config mc;
  map_config_default(&mc);
  mc.n_starts = r->p->map_starts;
  mc.max_iterations = r->p->map_iterations;
  mc.init_scale = r->p->init_scale;
  mc.seed = (unsigned long)r->p->seed + 7919;
  double lp = 0;
  long nev = 0;
  CB_CALL(map_find(r->post, &mc, best, &lp, &nev));
  /* counted once (on world rank 0: the groups repeat the same optimisation) */
  if (r->wrank == 0) r->counters[CNT_GRAD_MAP] += nev;
  return CB_OK;
}

static int starting_point(run *r, int c, const double *map, double *q) {
  infer_opts *p = r->p;
  if (p->start == START_MAP) {
    memcpy(q, map, r->dim * sizeof *q);
  } else if (p->start == START_FILE) {
    double *w = NULL;
    CB_CALL(weights_read_expect(r->gcomm, p->weights, &p->arch, &w));
    int st = posterior_from_weights(r->post, p->weights, w, q);
    free(w);
    CB_CALL(st);
  } else {
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    CB_CHECK(rng, CB_ERR_MEM, "out of memory for the RNG");
    gsl_rng_set(rng, (unsigned long)(p->seed + 7919 * (c + 2)));
    for (size_t i = 0; i < r->dim; i++) q[i] = gsl_ran_gaussian(rng, p->init_scale);
    gsl_rng_free(rng);
  }
  return CB_OK;
}

static int make_samplers(run *r, const double *q0_all /* [K][dim] or NULL */, const double *map) {
  CB_CALLOC(r->h, (size_t)r->n_local);
  double *q = calloc(r->dim, sizeof *q);
  CB_CHECK(q, CB_ERR_MEM, "out of memory");
  int st = CB_OK;
  for (int i = 0; i < r->n_local && !st; i++) {
    int c = r->local[i];
    hmc_config cfg = r->p->hmc;
    cfg.seed = (unsigned long)(r->p->seed + c);
    if (q0_all)
      memcpy(q, q0_all + (size_t)c * r->dim, r->dim * sizeof *q);
    else
      st = starting_point(r, c, map, q);
    if (!st) st = hmc_create(r->gcomm, r->dim, &cfg, target, r->post, q, &r->h[i]);
    if (!st && r->grank == 0 && !q0_all) r->counters[CNT_GRAD_WARMUP] += 1;
  }
  free(q);
  CB_CALL(st);
  return CB_OK;
}

/* ---- checkpoints */

/* Collective: the chain file flushed, every chain's state gathered on world rank 0 (the
 * group roots contribute, the other ranks add zeros) and written there. */
static int write_checkpoint(run *r, long step) {
  const int K = r->K;
  const size_t d = r->dim, S = hmc_state_size(r->h[0]);
  CB_CALL(chain_sync(r->cf));
  unsigned char *st_loc = calloc((size_t)K * S + 1, 1), *st_all = calloc((size_t)K * S + 1, 1);
  double *pos = calloc((size_t)K * d, sizeof *pos), *pos_all = calloc((size_t)K * d, sizeof *pos);
  unsigned char *one = malloc(S + 1);
  int st =
      st_loc && st_all && pos && pos_all && one ? CB_OK : CB_ERROR(CB_ERR_MEM, "out of memory");
  for (int i = 0; i < r->n_local && !st; i++) {
    int c = r->local[i];
    st = hmc_state_save(r->h[i], one);
    if (!st && r->grank == 0) {
      memcpy(st_loc + (size_t)c * S, one, S);
      memcpy(pos + (size_t)c * d, hmc_position(r->h[i]), d * sizeof *pos);
    }
  }
  st = agree(r->world, st);
  long cnt[CHECKPOINT_N_COUNTERS] = {0};
  if (!st) {
    (void)MPI_Reduce(st_loc, st_all, (int)((size_t)K * S), MPI_BYTE, MPI_BOR, 0, r->world);
    (void)MPI_Reduce(pos, pos_all, (int)((size_t)K * d), MPI_DOUBLE, MPI_SUM, 0, r->world);
    (void)MPI_Reduce(r->counters, cnt, CHECKPOINT_N_COUNTERS, MPI_LONG, MPI_SUM, 0, r->world);
    if (r->wrank == 0) {
      checkpoint ck = {0};
      ck.options = (char *)r->record;
      ck.step = step;
      ck.draws[0] = chain_draws(r->cf, CHAIN_WARMUP);
      ck.draws[1] = chain_draws(r->cf, CHAIN_SAMPLING);
      memcpy(ck.counters, cnt, sizeof cnt);
      ck.n_chains = K;
      ck.dim = d;
      ck.state_size = S;
      ck.positions = pos_all;
      ck.states = st_all;
      st = checkpoint_write(r->p->ckpt, &ck);
    }
    st = agree(r->world, st);
  }
  free(st_loc);
  free(st_all);
  free(pos);
  free(pos_all);
  free(one);
  CB_CALL(st);
  log_info("infer: checkpoint after round %ld in %s", step, r->p->ckpt);
  return CB_OK;
}

/* Rank 0 reads the checkpoint (or the previous one) and checks the options; everything is
 * broadcast. Collective. */
static int read_checkpoint(run *r, checkpoint *ck) {
  memset(ck, 0, sizeof *ck);
  int st = CB_OK;
  if (r->wrank == 0) {
    bool prev = false;
    char why[4400] = "";
    st = checkpoint_read(r->p->ckpt, ck, &prev, why, sizeof why);
    if (!st && prev) log_warn("%s; resuming from the previous checkpoint %s.prev", why, r->p->ckpt);
    if (!st) st = compare_options(r->record, ck->options, r->p->ckpt);
  }
  st = agree(r->world, st);
  if (st) {
    checkpoint_free(ck);
    return st;
  }
  long hdr[4 + CHECKPOINT_N_COUNTERS + 3];
  hdr[0] = ck->step;
  hdr[1] = ck->draws[0];
  hdr[2] = ck->draws[1];
  hdr[3] = ck->n_chains;
  for (int i = 0; i < CHECKPOINT_N_COUNTERS; i++) hdr[4 + i] = ck->counters[i];
  hdr[4 + CHECKPOINT_N_COUNTERS] = (long)ck->dim;
  hdr[5 + CHECKPOINT_N_COUNTERS] = (long)ck->state_size;
  (void)MPI_Bcast(hdr, 4 + CHECKPOINT_N_COUNTERS + 3, MPI_LONG, 0, r->world);
  if (r->wrank != 0) {
    ck->step = hdr[0];
    ck->draws[0] = hdr[1];
    ck->draws[1] = hdr[2];
    ck->n_chains = (int)hdr[3];
    for (int i = 0; i < CHECKPOINT_N_COUNTERS; i++) ck->counters[i] = hdr[4 + i];
    ck->dim = (size_t)hdr[4 + CHECKPOINT_N_COUNTERS];
    ck->state_size = (size_t)hdr[5 + CHECKPOINT_N_COUNTERS];
    ck->positions = calloc((size_t)ck->n_chains * ck->dim + 1, sizeof(double));
    ck->states = calloc((size_t)ck->n_chains * ck->state_size + 1, 1);
  }
  st = ck->positions && ck->states ? CB_OK : CB_ERROR(CB_ERR_MEM, "out of memory");
  st = agree(r->world, st);
  if (st) {
    checkpoint_free(ck);
    return st;
  }
  (void)MPI_Bcast(ck->positions, (int)((size_t)ck->n_chains * ck->dim), MPI_DOUBLE, 0, r->world);
  (void)MPI_Bcast(ck->states, (int)((size_t)ck->n_chains * ck->state_size), MPI_BYTE, 0, r->world);
  /* options agree, so the chain count does; the dimension follows from the architecture */
  if (ck->n_chains != r->K || ck->dim != r->dim) {
    checkpoint_free(ck);
    return CB_ERROR(CB_ERR_INPUT,
                    "checkpoint '%s' holds %d chains of %zu parameters, not %d of %zu", r->p->ckpt,
                    ck->n_chains, ck->dim, r->K, r->dim);
  }
  return CB_OK;
}

/* ---- one round: every chain one step, its record reduced to world rank 0 */

static int round_step(run *r, long step, double *acc_sum) {
  const size_t R = r->R, nmf = POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES, d = r->dim;
  memset(r->rec, 0, (size_t)r->K * R * sizeof *r->rec);
  int st = CB_OK;
  for (int i = 0; i < r->n_local && !st; i++) {
    const int c = r->local[i];
    double t0 = MPI_Wtime();
    hmc_step_info info;
    st = hmc_step(r->h[i], &info);
    double *x = r->rec + (size_t)c * R;
    const double *q = hmc_position(r->h[i]);
    double lprior = 0;
    if (!st) st = posterior_to_weights(r->post, q, x);
    if (!st) st = posterior_log_prior(r->post, q, &lprior);
    if (!st) st = posterior_mass_function(r->post, q, x + d);
    if (st) break;
    double *s = x + d + nmf;
    s[CHAIN_LP] = info.lp;
    s[CHAIN_LOG_LIKELIHOOD] = info.lp - lprior; /* ln p minus the prior (and Jacobian) */
    s[CHAIN_ACCEPTANCE_RATE] = info.accept_prob;
    s[CHAIN_STEP_SIZE] = info.step_size;
    s[CHAIN_N_STEPS] = info.n_steps;
    s[CHAIN_ENERGY] = info.energy;
    s[CHAIN_ENERGY_ERROR] = info.energy_error;
    s[CHAIN_DIVERGING] = info.diverging;
    s[CHAIN_WALL_TIME] = MPI_Wtime() - t0;
    if (r->grank == 0)
      r->counters[step < r->p->warmup ? CNT_GRAD_WARMUP : CNT_GRAD_SAMPLING] += info.n_grad;
    if (r->grank != 0) memset(x, 0, R * sizeof *x); /* the group root's record counts */
  }
  CB_CALL(agree(r->world, st));
  /* the chains' adaptation, pooled when it is due (-pool_adaptation) */
  CB_CALL(agree(r->world, hmc_pool(r->h, r->local, r->n_local, r->K, r->roots)));
  (void)MPI_Reduce(r->rec, r->rec_sum, (int)((size_t)r->K * R), MPI_DOUBLE, MPI_SUM, 0, r->world);
  if (r->wrank == 0)
    for (int c = 0; c < r->K; c++)
      acc_sum[c] += r->rec_sum[(size_t)c * R + d + nmf + CHAIN_ACCEPTANCE_RATE];
  CB_CALL(chain_append(r->cf, step < r->p->warmup ? CHAIN_WARMUP : CHAIN_SAMPLING, r->rec_sum));
  return CB_OK;
}

static void progress(run *r, long step, long total, double rate, double *acc_sum, long n_acc) {
  if (r->wrank != 0) return;
  const size_t nmf = POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES, d = r->dim;
  double left = rate > 0 ? (double)(total - step) / rate : 0;
  for (int c = 0; c < r->K; c++) {
    const double *s = r->rec_sum + (size_t)c * r->R + d + nmf;
    log_info("infer: chain %d step %ld/%ld (%s) acceptance %.3f ln L %.4f step size %.4g n %d | "
             "%.2f rounds/s, %.0f s left",
             c, step, total, step <= r->p->warmup ? "warm-up" : "sampling",
             n_acc ? acc_sum[c] / (double)n_acc : 0.0, s[CHAIN_LOG_LIKELIHOOD], s[CHAIN_STEP_SIZE],
             (int)s[CHAIN_N_STEPS], rate, left);
    acc_sum[c] = 0;
  }
}

/* ---- the end: root attributes and the inverse mass matrices */

static int finish_attrs(run *r) {
  long cnt[CHECKPOINT_N_COUNTERS] = {0};
  (void)MPI_Reduce(r->counters, cnt, CHECKPOINT_N_COUNTERS, MPI_LONG, MPI_SUM, 0, r->world);
  const double *m = NULL;
  size_t nm = hmc_inverse_metric(r->h[0], &m);
  double *loc = calloc((size_t)r->K * nm + 1, sizeof *loc),
         *all = calloc((size_t)r->K * nm + 1, sizeof *all);
  CB_CHECK(loc && all, CB_ERR_MEM, "out of memory");
  for (int i = 0; i < r->n_local; i++) {
    nm = hmc_inverse_metric(r->h[i], &m);
    if (r->grank == 0) memcpy(loc + (size_t)r->local[i] * nm, m, nm * sizeof *m);
  }
  (void)MPI_Reduce(loc, all, (int)((size_t)r->K * nm), MPI_DOUBLE, MPI_SUM, 0, r->world);
  int st = chain_set_attr_long(r->cf, "grad_evals_map", cnt[CNT_GRAD_MAP]);
  if (!st) st = chain_set_attr_long(r->cf, "grad_evals_warmup", cnt[CNT_GRAD_WARMUP]);
  if (!st) st = chain_set_attr_long(r->cf, "grad_evals_sampling", cnt[CNT_GRAD_SAMPLING]);
  if (!st) st = chain_set_attr_doubles(r->cf, "inverse_mass_matrix", (size_t)r->K * nm, all);
  if (!st)
    st = chain_set_attr_string(r->cf, "inverse_mass_matrix_layout",
                               nm == r->dim ? "chain x weight (diagonal)"
                                            : "chain x weight x weight (dense, row-major)");
  if (!st) st = chain_set_attr_string(r->cf, "metric", hmc_metric_name(r->p->hmc.metric));
  if (!st) st = chain_set_attr_string(r->cf, "algorithm", hmc_algorithm_name(r->p->hmc.algorithm));
  if (!st) st = chain_set_attr_long(r->cf, "engine_monotone", r->p->monotone);
  if (!st && r->p->have_truth) {
    double *w = NULL, mf[POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES];
    st = weights_read_expect(r->gcomm, r->p->truth, &r->p->arch, &w);
    if (!st) st = posterior_mass_function_weights(r->post, w, mf);
    if (!st)
      st = chain_set_attr_doubles(r->cf, "mass_function_truth",
                                  POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES, mf);
    free(w);
  }
  free(loc);
  free(all);
  CB_CALL(st);
  if (r->wrank == 0)
    log_info("infer: gradient evaluations: %ld optimisation, %ld warm-up, %ld sampling",
             cnt[CNT_GRAD_MAP], cnt[CNT_GRAD_WARMUP], cnt[CNT_GRAD_SAMPLING]);
  return CB_OK;
}

static void run_free(run *r) {
  for (int i = 0; r->h && i < r->n_local; i++) hmc_destroy(&r->h[i]);
  free(r->h);
  if (r->cf) {
    chain_close(&r->cf);
    status_clear();
  }
  posterior_destroy(&r->post);
  likelihood_destroy(&r->lk);
  if (r->delta) fftw_free(r->delta);
  field_destroy(&r->f);
  free(r->local);
  free(r->names);
  free(r->rec);
  free(r->rec_sum);
  if (r->gcomm != MPI_COMM_NULL) MPI_Comm_free(&r->gcomm);
  if (r->roots != MPI_COMM_NULL) MPI_Comm_free(&r->roots);
}

static int infer_body(run *r, options *o) {
  infer_opts *p = r->p;
  CB_CALL(setup_groups(r));
  CB_CALL(agree(r->world, setup_target(r)));
  if (p->have_weights) { /* the architecture check, also when the file is not the start */
    double *w = NULL;
    int st = weights_read_expect(r->gcomm, p->weights, &p->arch, &w);
    free(w);
    CB_CALL(agree(r->world, st));
  }
  chain_layout lay = {r->K,
                      r->dim,
                      r->names,
                      POSTERIOR_MF_BINS,
                      POSTERIOR_MF_MASSES,
                      posterior_mf_edges(r->post),
                      posterior_mf_masses(r->post)};
  r->R = chain_record_size(&lay);
  CB_CALLOC(r->rec, (size_t)r->K * r->R);
  CB_CALLOC(r->rec_sum, (size_t)r->K * r->R);
  long step0 = 0;
  if (p->resume) {
    checkpoint ck;
    CB_CALL(read_checkpoint(r, &ck));
    int st = make_samplers(r, ck.positions, NULL);
    for (int i = 0; i < r->n_local && !st; i++)
      st = hmc_state_load(r->h[i], ck.states + (size_t)r->local[i] * ck.state_size);
    if (r->wrank == 0) memcpy(r->counters, ck.counters, sizeof r->counters);
    step0 = ck.step;
    if (!st) st = agree(r->world, st);
    if (!st) st = chain_reopen(r->world, p->out, &lay, ck.draws[0], ck.draws[1], &r->cf);
    checkpoint_free(&ck);
    CB_CALL(st);
    log_info("infer: resumed at round %ld of %ld from %s", step0, p->warmup + p->samples, p->ckpt);
  } else {
    double *map = calloc(r->dim, sizeof *map);
    CB_CHECK(map, CB_ERR_MEM, "out of memory");
    int st = p->start == START_MAP ? map_start(r, map) : CB_OK;
    double *cov = NULL; /* the Laplace covariance at the MAP: every chain's starting metric */
    if (!st && p->start == START_MAP && p->laplace) {
      long nev = 0;
      cov = malloc(r->dim * r->dim * sizeof *cov);
      st = cov ? map_laplace(r->post, map, p->prior_sigma * p->prior_sigma, cov, &nev)
               : CB_ERROR(CB_ERR_MEM, "out of memory");
      if (r->wrank == 0) r->counters[CNT_GRAD_MAP] += nev;
      p->hmc.metric_init_dense = cov;
    }
    st = agree(r->world, st);
    if (!st) st = agree(r->world, make_samplers(r, NULL, map));
    p->hmc.metric_init_dense = NULL;
    free(cov);
    free(map);
    CB_CALL(st);
    CB_CALL(chain_create(r->world, p->out, p->overwrite, &lay, &r->cf));
    if (r->wrank == 0) { /* a stale checkpoint of an earlier run must not be resumed */
      char prev[4300];
      snprintf(prev, sizeof prev, "%s.prev", p->ckpt);
      remove(p->ckpt);
      remove(prev);
    }
  }
  /* provenance from the first flush on, so that a running job's file carries it */
  CB_CALL(chain_set_attr_string(r->cf, "command", options_command(o)));
  CB_CALL(chain_set_attr_string(r->cf, "options", options_record(o)));
  CB_CALL(chain_set_attr_string(r->cf, "code_version", version_string()));
  const long total = p->warmup + p->samples;
  double *acc = calloc((size_t)r->K, sizeof *acc);
  CB_CHECK(acc, CB_ERR_MEM, "out of memory");
  double t_start = MPI_Wtime(), t_ckpt = t_start;
  long n_acc = 0, step0_rate = step0;
  int st = CB_OK;
  bool stopped = false;
  for (long step = step0; step < total && !st; step++) {
    st = round_step(r, step, acc);
    if (st) break;
    n_acc++;
    const long done = step + 1;
    if (done % p->flush_every == 0) st = chain_flush(r->cf);
    if (!st && (done % p->progress_every == 0 || done == total)) {
      double el = MPI_Wtime() - t_start;
      progress(r, done, total, el > 0 ? (double)(done - step0_rate) / el : 0, acc, n_acc);
      n_acc = 0;
    }
    if (st) break;
    if (p->signal_at == done) raise(SIGTERM);
    int flags = (int)got_signal;
    if (r->wrank == 0 && MPI_Wtime() - t_ckpt > p->ckpt_interval) flags |= 4;
    (void)MPI_Allreduce(MPI_IN_PLACE, &flags, 1, MPI_INT, MPI_BOR, r->world);
    if (flags && done < total) {
      st = write_checkpoint(r, done);
      t_ckpt = MPI_Wtime();
      got_signal = 0;
      if (!st && (flags & 1)) {
        log_warn("SIGTERM: stopped after round %ld of %ld with a checkpoint in "
                 "%s; continue with -resume",
                 done, total, p->ckpt);
        stopped = true;
        break;
      }
    }
  }
  free(acc);
  if (!st) st = finish_attrs(r);
  if (!st) st = chain_close(&r->cf);
  CB_CALL(st);
  if (stopped) return CB_OK;
  log_info("infer: wrote %s (%ld warm-up + %ld samples x %d chains)", p->out, p->warmup, p->samples,
           r->K);
  if (r->wrank == 0) {
    chain_data dd;
    st = chain_read(p->out, CHAIN_SAMPLING, &dd);
    if (!st && dd.n_draws >= 4) st = summary_print(stdout, &dd, NULL);
    if (!st) chain_data_free(&dd);
  }
  CB_CALL(agree(r->world, st));
  return CB_OK;
}

static int infer_run(options *o, MPI_Comm comm) {
  infer_opts p;
  CB_CALL(read_options(o, &p));
  if (!p.resume) CB_CALL(h5io_check_output(comm, p.out, p.overwrite));
  run r;
  memset(&r, 0, sizeof r);
  r.p = &p;
  r.world = comm;
  r.gcomm = MPI_COMM_NULL;
  r.roots = MPI_COMM_NULL;
  r.K = (int)p.chains;
  r.record = options_record(o);
  struct sigaction sa, old_term, old_usr1;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGUSR1, &sa, &old_usr1);
  got_signal = 0;
  int st = infer_body(&r, o);
  sigaction(SIGTERM, &old_term, NULL);
  sigaction(SIGUSR1, &old_usr1, NULL);
  run_free(&r);
  CB_CALL(st);
  return CB_OK;
}

int cmd_infer(int argc, char **argv, MPI_Comm comm) {
  options *o = NULL;
  CB_CALL(options_create(comm, "infer", "HMC sampling of the weights given a field and a catalogue",
                         &o));
  int st = argc == 0 ? infer_run(o, comm)
                     : CB_ERROR(CB_ERR_INPUT, "unexpected argument '%s' (infer takes options only)",
                                argv[0]);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
