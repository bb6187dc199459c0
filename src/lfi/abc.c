/* abc: rejection and population Monte Carlo ABC over rank groups (MODEL.md section 10).
 *
 * The coordinator (world rank 0) owns the campaign: the populations, the record of every
 * simulation, the journal and the campaign file. A round is one groups_schedule: its slots
 * (round 0: n_initial prior draws; PMC rounds: the particles above epsilon) each need one
 * accepted attempt; next() hands out attempt a of a slot as a task (theta and the key
 * (round, particle, attempt)); the groups simulate and compress (raw summaries, collectively on
 * their communicator); done() maps the raw summaries to parameter space, measures rho, records
 * and journals the simulation, and updates the slot. A slot is resolved when its lowest
 * accepted attempt is known, i.e. every attempt below it has come back rejected or failed:
 * that choice depends only on the keys, so the populations are the same for any number and
 * size of groups. next() prefers slots with nothing in flight; when every open slot has work in
 * flight it hands out further attempts of the open slots (speculation) rather than let a group
 * idle; those extra simulations are recorded but do not count in the acceptance.
 *
 * Random numbers: each attempt has its own stream, splitmix64 seeded by
 * groups_task_seed(seed ^ stream, key) (64-bit; uniforms with 53 bits, normals by Box-Muller),
 * for the parameter draw; the simulation's seed is another such hash.
 *
 * Journal: an 8-byte magic, 4096 bytes of settings text (a resume with other settings is
 * refused), then one fixed-size abc_record per simulation with a checksum; fflush after each so
 * that a killed process loses only what was in flight. Resuming replays the campaign from
 * round 0 with the journal as a cache keyed by (round, particle, attempt). */
#include "cerberus/abc.h"

#include "cerberus/h5io.h"
#include "cerberus/log.h"
#include "cerberus/status.h"

#include <glob.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NP SIMULATOR_MAX_PARAMS
#define STREAM_THETA 0x7468657461ULL /* "theta" */
#define STREAM_SIM 0x73696dULL       /* "sim" */
#define STREAM_CALIB 0x63616c6962ULL /* "calib" */
#define JOURNAL_MAGIC "CBABCJ01"
#define JOURNAL_HEADER 4096
#define ROUND_CALIB (-1)

static const double abc_pi = 3.14159265358979323846;

/* ------------------------------------------------------------------ prior */

int abc_prior_check(const abc_prior *p, int n_params) {
  const bool u = p->kind == ABC_PRIOR_UNIFORM;
  const char *na = u ? "-prior_lower" : "-prior_mean", *nb = u ? "-prior_upper" : "-prior_sd";
  CB_CHECK(p->n == n_params, CB_ERR_INPUT,
           "%s / %s: %d values given, the simulator has %d "
           "parameters",
           na, nb, p->n, n_params);
  for (int i = 0; i < p->n; i++) {
    CB_CHECK(isfinite(p->a[i]) && isfinite(p->b[i]), CB_ERR_INPUT,
             "%s / %s: parameter %d is not finite (%g, %g)", na, nb, i, p->a[i], p->b[i]);
    if (u)
      CB_CHECK(p->a[i] < p->b[i], CB_ERR_INPUT,
               "-prior_lower %g is not below -prior_upper %g for parameter %d", p->a[i], p->b[i],
               i);
    else
      CB_CHECK(p->b[i] > 0.0, CB_ERR_INPUT, "-prior_sd must be positive (parameter %d: %g)", i,
               p->b[i]);
  }
  return CB_OK;
}

double abc_prior_logpdf(const abc_prior *p, const double *theta) {
  double lp = 0.0;
  for (int i = 0; i < p->n; i++) {
    if (p->kind == ABC_PRIOR_UNIFORM) {
      if (!(theta[i] >= p->a[i] && theta[i] <= p->b[i])) return -INFINITY;
    } else {
      double z = (theta[i] - p->a[i]) / p->b[i];
      lp -= 0.5 * z * z;
    }
  }
  return lp;
}

int abc_options(options *o, int n_params, abc_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  long v;
  CB_CALL(options_choice(o, "-method", "rejection, or population Monte Carlo after it",
                         ABC_METHOD_CHOICES, "pmc", &cfg->method));
  CB_CALL(options_int(o, "-n_particles", "particles kept", 500, &cfg->n_particles));
  CB_CALL(options_int(o, "-n_initial", "prior draws of the first (rejection) round", 2000,
                      &cfg->n_initial));
  CB_CALL(options_real(o, "-epsilon",
                       "rejection: keep rho < epsilon (0: the n_particles closest); pmc: stop "
                       "once epsilon is this small",
                       0.0, &cfg->epsilon));
  CB_CALL(options_real(o, "-percentile", "pmc: epsilon as this percentile of the distances", 75.0,
                       &cfg->percentile));
  CB_CALL(options_choice(o, "-pmc_move",
                         "pmc: move a particle from a kernel on an ancestor drawn from the weights "
                         "(ancestor) or on the particle itself (particle)",
                         ABC_MOVE_CHOICES, "ancestor", &cfg->move));
  CB_CALL(options_real(o, "-criterion", "pmc: stop when a round's acceptance falls below", 0.1,
                       &cfg->criterion));
  CB_CALL(options_int(o, "-max_rounds", "pmc: at most this many rounds after the first", 30, &v));
  cfg->max_rounds = (int)v;
  CB_CALL(options_int(o, "-seed", "campaign seed (>= 0)", 1, &v));
  CB_CHECK(v >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", v);
  cfg->seed = (uint64_t)v;
  CB_CALL(options_choice(o, "-prior", "prior: a uniform box or independent Gaussians",
                         ABC_PRIOR_CHOICES, "uniform", &cfg->prior.kind));
  int na = 0, nb = 0;
  bool sa = false, sb = false;
  if (cfg->prior.kind == ABC_PRIOR_UNIFORM) {
    CB_CALL(options_real_array(o, "-prior_lower", "uniform prior: lower bounds", cfg->prior.a, &na,
                               NP, &sa));
    CB_CALL(options_real_array(o, "-prior_upper", "uniform prior: upper bounds", cfg->prior.b, &nb,
                               NP, &sb));
    CB_CHECK(sa && sb, CB_ERR_INPUT, "a uniform prior needs -prior_lower and -prior_upper");
  } else {
    CB_CALL(
        options_real_array(o, "-prior_mean", "Gaussian prior: means", cfg->prior.a, &na, NP, &sa));
    CB_CALL(options_real_array(o, "-prior_sd", "Gaussian prior: standard deviations", cfg->prior.b,
                               &nb, NP, &sb));
    CB_CHECK(sa && sb, CB_ERR_INPUT, "a Gaussian prior needs -prior_mean and -prior_sd");
  }
  CB_CHECK(na == nb, CB_ERR_INPUT, "the prior's two lists have %d and %d values", na, nb);
  cfg->prior.n = na;
  CB_CALL(abc_prior_check(&cfg->prior, n_params));
  CB_CALL(options_real(o, "-checkpoint_interval", "s between rewrites of the campaign file", 30.0,
                       &cfg->checkpoint_interval));
  CB_CALL(options_real(o, "-progress_interval", "s between progress lines", 5.0,
                       &cfg->progress_interval));
  CB_CHECK(cfg->n_particles >= 2, CB_ERR_INPUT, "-n_particles must be at least 2 (got %ld)",
           cfg->n_particles);
  CB_CHECK(cfg->n_initial >= cfg->n_particles && cfg->n_initial < (1L << 40), CB_ERR_INPUT,
           "-n_initial %ld must be at least -n_particles %ld", cfg->n_initial, cfg->n_particles);
  CB_CHECK(cfg->percentile > 0.0 && cfg->percentile < 100.0, CB_ERR_INPUT,
           "-percentile must be in (0, 100) (got %g)", cfg->percentile);
  CB_CHECK(cfg->criterion >= 0.0 && cfg->criterion < 1.0, CB_ERR_INPUT,
           "-criterion must be in [0, 1) (got %g)", cfg->criterion);
  CB_CHECK(cfg->epsilon >= 0.0, CB_ERR_INPUT, "-epsilon must be non-negative (got %g)",
           cfg->epsilon);
  CB_CHECK(cfg->max_rounds >= 0, CB_ERR_INPUT, "-max_rounds must be non-negative");
  return CB_OK;
}

/* ------------------------------------------------------------------ random streams */

typedef struct keyrng {
  uint64_t s;
  bool has_spare;
  double spare;
} keyrng;

static uint64_t key_seed(uint64_t seed, uint64_t stream, int64_t round, int64_t particle,
                         int64_t attempt) {
  uint64_t h = groups_task_seed(seed ^ stream, (uint64_t)round);
  h = groups_task_seed(h, (uint64_t)particle);
  return groups_task_seed(h, (uint64_t)attempt);
}

static uint64_t keyrng_next(keyrng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static double keyrng_uniform(keyrng *r) { /* (0, 1) */
  return ((double)(keyrng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

static double keyrng_normal(keyrng *r) {
  if (r->has_spare) {
    r->has_spare = false;
    return r->spare;
  }
  double u1 = keyrng_uniform(r), u2 = keyrng_uniform(r), m = sqrt(-2.0 * log(u1));
  r->spare = m * sin(2.0 * abc_pi * u2);
  r->has_spare = true;
  return m * cos(2.0 * abc_pi * u2);
}

/* ------------------------------------------------------------------ the campaign */

typedef struct abc_record {
  int32_t round, particle, attempt, status; /* status 1 passed, 0 rho >= epsilon, -1 failed */
  int32_t group, pad;
  uint64_t seed;
  double time;
  double theta[NP], x[NP];
  double rho;
  double check;
} abc_record;

enum { ST_PENDING = 0, ST_REJECTED = 1, ST_ACCEPTED = 2, ST_FAILED = 3, ST_OUTSIDE = 4 };

typedef struct slot {
  long particle; /* the particle it moves (round 0: the draw's index) */
  int n_issued, low, acc, in_flight, cap;
  signed char *st;
  bool resolved;
  long n_used; /* simulations among attempts 0 .. acc */
  double theta[NP], x[NP], rho;
} slot;

struct abc {
  groups *g;
  simulator *sim;
  compressor *c;
  abc_config cfg;
  const options *o;
  int np, n_raw;
  double x_obs[NP];
  double *data, *raw; /* work buffers (every rank) */
  /* coordinator */
  abc_population *pops;
  int n_pops;
  abc_record *recs;
  long n_recs, cap_recs, n_new;
  long *hash; /* records from the journal, open addressing */
  size_t hash_cap;
  FILE *journal;
  char journal_path[4200];
  char settings[JOURNAL_HEADER];
  int round;
  slot *slots;
  long n_slots, n_resolved, cursor;
  long *active, n_active;
  long *active_pos;
  double eps;
  double *cumw;      /* cumulative weights of the previous population (ancestor moves) */
  double L[NP * NP]; /* Cholesky factor of the proposal covariance */
  long round_sims;
  int64_t next_id;
  double t_start, t_round, t_ckpt, t_progress;
  bool stopped;
  int exact_n;
  double *exact_axes, *exact_lp;
};

static uint64_t rec_hash(int32_t r, int32_t p, int32_t a) {
  return groups_task_seed((uint64_t)(uint32_t)r, ((uint64_t)(uint32_t)p << 32) | (uint32_t)a);
}

static double rec_checksum(const abc_record *r) {
  const unsigned char *b = (const unsigned char *)r;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < offsetof(abc_record, check); i++) h = (h ^ b[i]) * 1099511628211ULL;
  return (double)(h >> 11);
}

static int hash_insert(abc *a, long idx) {
  if ((size_t)(a->n_recs + 1) * 2 > a->hash_cap) {
    size_t cap = a->hash_cap ? a->hash_cap * 2 : 1024;
    while (cap < (size_t)(a->n_recs + 1) * 2) cap *= 2;
    long *h = malloc(cap * sizeof *h);
    CB_CHECK(h != NULL, CB_ERR_MEM, "out of memory for the journal's index");
    for (size_t i = 0; i < cap; i++) h[i] = -1;
    for (size_t i = 0; i < a->hash_cap; i++)
      if (a->hash[i] >= 0) {
        const abc_record *r = &a->recs[a->hash[i]];
        size_t j = rec_hash(r->round, r->particle, r->attempt) & (cap - 1);
        while (h[j] >= 0) j = (j + 1) & (cap - 1);
        h[j] = a->hash[i];
      }
    free(a->hash);
    a->hash = h;
    a->hash_cap = cap;
  }
  const abc_record *r = &a->recs[idx];
  size_t j = rec_hash(r->round, r->particle, r->attempt) & (a->hash_cap - 1);
  while (a->hash[j] >= 0) j = (j + 1) & (a->hash_cap - 1);
  a->hash[j] = idx;
  return CB_OK;
}

static const abc_record *hash_find(const abc *a, int32_t r, int32_t p, int32_t at) {
  if (!a->hash_cap) return NULL;
  size_t j = rec_hash(r, p, at) & (a->hash_cap - 1);
  while (a->hash[j] >= 0) {
    const abc_record *x = &a->recs[a->hash[j]];
    if (x->round == r && x->particle == p && x->attempt == at) return x;
    j = (j + 1) & (a->hash_cap - 1);
  }
  return NULL;
}

static int rec_push(abc *a, const abc_record *r) {
  if (a->n_recs == a->cap_recs) {
    long cap = a->cap_recs ? 2 * a->cap_recs : 4096;
    abc_record *n = realloc(a->recs, (size_t)cap * sizeof *n);
    CB_CHECK(n != NULL, CB_ERR_MEM, "out of memory for %ld simulation records", cap);
    a->recs = n;
    a->cap_recs = cap;
  }
  a->recs[a->n_recs++] = *r;
  return CB_OK;
}

/* The settings a resume must share: everything that changes the populations. */
static void make_settings(abc *a) {
  const abc_config *c = &a->cfg;
  const simulator_config *s = &a->sim->cfg;
  char *b = a->settings;
  size_t n = sizeof a->settings, u = 0;
#define ADD(...) u += (size_t)snprintf(b + u, u < n ? n - u : 0, __VA_ARGS__)
  ADD("simulator %s n_draws %ld n_grid %ld box %.17g lpt %d cosmo %.17g %.17g %.17g %.17g %.17g "
      "%.17g\n",
      a->sim->type->name, s->n_draws, s->n_grid, s->box_size, s->lpt_order, s->cosmo.Omega_m,
      s->cosmo.Omega_b, s->cosmo.h, s->cosmo.n_s, s->cosmo.sigma_8, s->cosmo.redshift);
  ADD("compressor %d n_raw %d n_s %ld n_d %ld\nfid", a->c->kind, a->c->n_raw, a->c->n_s, a->c->n_d);
  for (int i = 0; i < a->np; i++) ADD(" %.17g/%.17g", a->c->theta_fid[i], a->c->dtheta[i]);
  ADD("\nmethod %d n_particles %ld n_initial %ld epsilon %.17g percentile %.17g criterion %.17g "
      "seed %llu\nprior %d",
      c->method, c->n_particles, c->n_initial, c->epsilon, c->percentile, c->criterion,
      (unsigned long long)c->seed, c->prior.kind);
  ADD(" move %d", c->move);
  for (int i = 0; i < a->np; i++) ADD(" %.17g/%.17g", c->prior.a[i], c->prior.b[i]);
  ADD("\nx_obs");
  for (int i = 0; i < a->np; i++) ADD(" %.17g", a->x_obs[i]);
  ADD("\n");
#undef ADD
}

static int journal_open(abc *a) {
  snprintf(a->journal_path, sizeof a->journal_path, "%s.journal", a->cfg.path);
  if (!a->cfg.resume) {
    CB_CHECK(a->cfg.overwrite || access(a->journal_path, F_OK) != 0, CB_ERR_IO,
             "'%s' exists: an interrupted campaign; continue it with -resume, or start again with "
             "-overwrite",
             a->journal_path);
    a->journal = fopen(a->journal_path, "wb");
    CB_CHECK(a->journal != NULL, CB_ERR_IO, "cannot create the journal '%s'", a->journal_path);
    fwrite(JOURNAL_MAGIC, 1, 8, a->journal);
    fwrite(a->settings, 1, JOURNAL_HEADER, a->journal);
    CB_CHECK(fflush(a->journal) == 0, CB_ERR_IO, "cannot write the journal '%s'", a->journal_path);
    return CB_OK;
  }
  FILE *f = fopen(a->journal_path, "rb");
  CB_CHECK(f != NULL, CB_ERR_IO, "-resume: no journal '%s' to resume (nothing was interrupted)",
           a->journal_path);
  char magic[8], head[JOURNAL_HEADER];
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, JOURNAL_MAGIC, 8) != 0 ||
      fread(head, 1, JOURNAL_HEADER, f) != JOURNAL_HEADER) {
    fclose(f);
    return CB_ERROR(CB_ERR_INPUT, "'%s' is not a campaign journal", a->journal_path);
  }
  if (memcmp(head, a->settings, JOURNAL_HEADER) != 0) {
    fclose(f);
    return CB_ERROR(CB_ERR_INPUT,
                    "-resume: '%s' was made with other settings (simulator, compressor, prior, "
                    "method, sizes, seed or observed data differ)",
                    a->journal_path);
  }
  abc_record r;
  long good = 0;
  while (fread(&r, sizeof r, 1, f) == 1) {
    if (r.check != rec_checksum(&r)) break; /* a torn or damaged tail */
    int st = rec_push(a, &r);
    if (st == CB_OK) st = hash_insert(a, a->n_recs - 1);
    if (st != CB_OK) {
      fclose(f);
      CB_CALL(st);
    }
    good++;
  }
  fclose(f);
  long keep = 8 + JOURNAL_HEADER + good * (long)sizeof(abc_record);
  CB_CHECK(truncate(a->journal_path, keep) == 0, CB_ERR_IO, "cannot trim the journal '%s'",
           a->journal_path);
  a->journal = fopen(a->journal_path, "ab");
  CB_CHECK(a->journal != NULL, CB_ERR_IO, "cannot append to the journal '%s'", a->journal_path);
  /* a campaign file the killed run was writing (h5io's "<path>.tmp.<pid>") is garbage now */
  char pattern[4200];
  snprintf(pattern, sizeof pattern, "%s.tmp.*", a->cfg.path);
  glob_t gl;
  if (glob(pattern, 0, NULL, &gl) == 0) {
    for (size_t i = 0; i < gl.gl_pathc; i++) unlink(gl.gl_pathv[i]);
    globfree(&gl);
  }
  log_info("resume: %ld simulations from '%s'", good, a->journal_path);
  return CB_OK;
}

/* ------------------------------------------------------------------ work (every group) */

static int abc_work(void *vc, const groups *g, int64_t index, const double *task, double *result) {
  (void)g;
  (void)index;
  abc *a = vc;
  const int np = a->np;
  uint64_t seed = key_seed(a->cfg.seed, STREAM_SIM, (int64_t)task[np], (int64_t)task[np + 1],
                           (int64_t)task[np + 2]);
  CB_CALL(simulator_run(a->sim, task, seed, a->data));
  bool ok = simulator_data_finite(a->sim, a->data);
  if (ok) CB_CALL(compress_raw(a->c, a->data, result + 1));
  for (int i = 0; ok && i < a->n_raw; i++) ok = isfinite(result[1 + i]);
  result[0] = ok ? 1.0 : 0.0;
  return CB_OK;
}

/* ------------------------------------------------------------------ rounds (coordinator) */

static int slot_grow(slot *s) {
  if (s->n_issued < s->cap) return CB_OK;
  int cap = s->cap ? 2 * s->cap : 8;
  signed char *n = realloc(s->st, (size_t)cap);
  CB_CHECK(n != NULL, CB_ERR_MEM, "out of memory for a slot's attempts");
  memset(n + s->cap, 0, (size_t)(cap - s->cap));
  s->st = n;
  s->cap = cap;
  return CB_OK;
}

static void active_remove(abc *a, long k) {
  long p = a->active_pos[k];
  if (p < 0) return;
  long last = a->active[--a->n_active];
  a->active[p] = last;
  a->active_pos[last] = p;
  a->active_pos[k] = -1;
}

static void slot_advance(abc *a, slot *s) {
  while (s->low < s->n_issued && (s->st[s->low] == ST_REJECTED || s->st[s->low] == ST_FAILED ||
                                  s->st[s->low] == ST_OUTSIDE))
    s->low++;
  if (!s->resolved && s->acc >= 0 && s->low == s->acc) {
    s->resolved = true;
    a->n_resolved++;
    s->n_used = 0;
    for (int i = 0; i <= s->acc; i++)
      if (s->st[i] != ST_OUTSIDE) s->n_used++;
  }
}

/* The parameters of attempt `att` of slot k; false when no draw fell inside the prior. */
static bool draw_theta(abc *a, long k, int att, double *theta) {
  const slot *s = &a->slots[k];
  keyrng r = {.s = key_seed(a->cfg.seed, STREAM_THETA, a->round, s->particle, att)};
  const abc_prior *p = &a->cfg.prior;
  if (a->round == 0) {
    for (int i = 0; i < a->np; i++)
      theta[i] = p->kind == ABC_PRIOR_UNIFORM ? p->a[i] + (p->b[i] - p->a[i]) * keyrng_uniform(&r)
                                              : p->a[i] + p->b[i] * keyrng_normal(&r);
    return true;
  }
  const abc_population *prev = &a->pops[a->n_pops - 1];
  const double *c = prev->theta + (size_t)s->particle * (size_t)a->np;
  for (int tries = 0; tries < 1000; tries++) {
    if (a->cfg.move == ABC_MOVE_ANCESTOR) { /* an ancestor drawn from the weights */
      double u = keyrng_uniform(&r) * a->cumw[prev->n - 1];
      long lo = 0, hi = prev->n - 1;
      while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (a->cumw[mid] < u)
          lo = mid + 1;
        else
          hi = mid;
      }
      c = prev->theta + (size_t)lo * (size_t)a->np;
    }
    double z[NP];
    for (int i = 0; i < a->np; i++) z[i] = keyrng_normal(&r);
    for (int i = 0; i < a->np; i++) {
      double v = c[i];
      for (int j = 0; j <= i; j++) v += a->L[i * a->np + j] * z[j];
      theta[i] = v;
    }
    if (isfinite(abc_prior_logpdf(p, theta))) return true;
  }
  return false;
}

static int write_file(abc *a, bool complete);

static void progress(abc *a, bool force) {
  if (a->cfg.quiet) return;
  double now = MPI_Wtime();
  if (!force && now - a->t_progress < a->cfg.progress_interval) return;
  a->t_progress = now;
  double dt = now - a->t_round, rate = dt > 0 ? (double)a->round_sims / dt : 0.0;
  long used = 0;
  for (long k = 0; k < a->n_slots; k++)
    if (a->slots[k].resolved) used += a->slots[k].n_used;
  double acc = used ? (double)a->n_resolved / (double)used : 0.0;
  double left = (a->n_resolved > 0 && rate > 0)
                    ? (double)(a->n_slots - a->n_resolved) *
                          ((double)a->round_sims / (double)a->n_resolved) / rate
                    : -1.0;
  char eps[32];
  if (isfinite(a->eps))
    snprintf(eps, sizeof eps, "%.4g", a->eps);
  else
    snprintf(eps, sizeof eps, "inf");
  char tl[32];
  if (left >= 0)
    snprintf(tl, sizeof tl, "%.0f s", left);
  else
    snprintf(tl, sizeof tl, "?");
  log_info("round %d: %ld/%ld done, %ld sims (%.1f/s), acceptance %.3f, epsilon %s, round time "
           "left ~%s",
           a->round, a->n_resolved, a->n_slots, a->round_sims, rate, acc, eps, tl);
}

/* One attempt's outcome (from a group or from the journal). */
static int take(abc *a, long k, int att, const double *theta, const double *x, bool ok,
                const groups_meta *meta, uint64_t seed, bool cached) {
  slot *s = &a->slots[k];
  double rho = ok ? compress_distance(a->c, x, a->x_obs) : NAN;
  if (ok && !isfinite(rho)) ok = false;
  int st = !ok ? ST_FAILED : (rho < a->eps ? ST_ACCEPTED : ST_REJECTED);
  s->st[att] = (signed char)st;
  if (!cached) {
    s->in_flight--;
    abc_record r = {.round = a->round,
                    .particle = (int32_t)s->particle,
                    .attempt = att,
                    .status = st == ST_FAILED ? -1 : (st == ST_ACCEPTED ? 1 : 0),
                    .group = meta ? meta->group : 0,
                    .seed = seed,
                    .time = meta ? meta->time : 0.0,
                    .rho = rho};
    for (int i = 0; i < a->np; i++) {
      r.theta[i] = theta[i];
      r.x[i] = ok ? x[i] : NAN;
    }
    r.check = rec_checksum(&r);
    CB_CALL(rec_push(a, &r));
    a->n_new++;
    if (fwrite(&r, sizeof r, 1, a->journal) != 1 || fflush(a->journal) != 0)
      return CB_ERROR(CB_ERR_IO, "cannot append to the journal '%s'", a->journal_path);
  }
  a->round_sims++;
  if (st == ST_ACCEPTED && !s->resolved && (s->acc < 0 || att < s->acc)) {
    s->acc = att;
    memcpy(s->theta, theta, (size_t)a->np * sizeof(double));
    memcpy(s->x, x, (size_t)a->np * sizeof(double));
    s->rho = rho;
    active_remove(a, k);
  }
  slot_advance(a, s);
  if (!cached) {
    progress(a, false);
    if (MPI_Wtime() - a->t_ckpt >= a->cfg.checkpoint_interval) CB_CALL(write_file(a, false));
  }
  return CB_OK;
}

static long pick_slot(abc *a) {
  if (a->n_active == 0) return -1;
  long best = -1;
  int best_fl = 1 << 30;
  for (long t = 0; t < a->n_active; t++) {
    long j = (a->cursor + t) % a->n_active;
    long k = a->active[j];
    if (a->slots[k].in_flight == 0) {
      a->cursor = j + 1;
      return k;
    }
    if (a->slots[k].in_flight < best_fl) {
      best_fl = a->slots[k].in_flight;
      best = k;
    }
  }
  return best;
}

static int abc_next(void *vc, int *what, int64_t *index, double *task) {
  abc *a = vc;
  if (a->cfg.stop && *a->cfg.stop) {
    a->stopped = true;
    *what = GROUPS_DONE;
    return CB_OK;
  }
  const int np = a->np;
  for (;;) {
    if (a->n_resolved == a->n_slots) {
      *what = GROUPS_DONE;
      return CB_OK;
    }
    long k = pick_slot(a);
    if (k < 0) {
      *what = GROUPS_WAIT;
      return CB_OK;
    }
    slot *s = &a->slots[k];
    CB_CALL(slot_grow(s));
    int att = s->n_issued++;
    s->st[att] = ST_PENDING;
    double theta[NP];
    if (!draw_theta(a, k, att, theta)) {
      s->st[att] = ST_OUTSIDE;
      slot_advance(a, s);
      continue;
    }
    const abc_record *r = hash_find(a, a->round, (int32_t)s->particle, att);
    if (r) {
      CB_CALL(take(a, k, att, r->theta, r->x, r->status != -1, NULL, r->seed, true));
      continue;
    }
    s->in_flight++;
    memcpy(task, theta, (size_t)np * sizeof(double));
    task[np] = a->round;
    task[np + 1] = (double)s->particle;
    task[np + 2] = att;
    *index = a->next_id++;
    *what = GROUPS_TASK;
    return CB_OK;
  }
}

static int abc_done(void *vc, const double *task, const double *result, const groups_meta *meta) {
  abc *a = vc;
  const int np = a->np;
  long particle = (long)task[np + 1];
  int att = (int)task[np + 2];
  long k = a->round == 0 ? particle : -1;
  if (k < 0) { /* PMC: slot of the particle */
    for (long j = 0; j < a->n_slots; j++)
      if (a->slots[j].particle == particle) {
        k = j;
        break;
      }
  }
  CB_CHECK(k >= 0 && k < a->n_slots, CB_ERR_INTERNAL, "a result for no slot");
  double x[NP];
  bool ok = result[0] == 1.0;
  if (ok) compress_apply(a->c, result + 1, x);
  for (int i = 0; ok && i < np; i++) ok = isfinite(x[i]);
  uint64_t seed = key_seed(a->cfg.seed, STREAM_SIM, a->round, particle, att);
  CB_CALL(take(a, k, att, task, x, ok, meta, seed, false));
  return CB_OK;
}

static void slots_free(abc *a) {
  for (long k = 0; k < a->n_slots; k++) free(a->slots[k].st);
  free(a->slots);
  free(a->active);
  free(a->active_pos);
  a->slots = NULL;
  a->active = a->active_pos = NULL;
  a->n_slots = a->n_active = 0;
}

static int slots_make(abc *a, long n, const long *particles) {
  slots_free(a);
  CB_CALLOC(a->slots, n);
  CB_CALLOC(a->active, n);
  CB_CALLOC(a->active_pos, n);
  for (long k = 0; k < n; k++) {
    a->slots[k].particle = particles ? particles[k] : k;
    a->slots[k].acc = -1;
    a->active[k] = k;
    a->active_pos[k] = k;
  }
  a->n_slots = a->n_active = n;
  a->n_resolved = 0;
  a->cursor = 0;
  a->round_sims = 0;
  return CB_OK;
}

static int pop_alloc(abc_population *p, long n, int np) {
  p->n = n;
  p->theta = calloc((size_t)(n * np) + 1, sizeof(double));
  p->x = calloc((size_t)(n * np) + 1, sizeof(double));
  p->rho = calloc((size_t)n + 1, sizeof(double));
  p->w = calloc((size_t)n + 1, sizeof(double));
  CB_CHECK(p->theta && p->x && p->rho && p->w, CB_ERR_MEM, "out of memory for a population");
  return CB_OK;
}

static void pop_free(abc_population *p) {
  free(p->theta);
  free(p->x);
  free(p->rho);
  free(p->w);
}

static int pops_push(abc *a, abc_population **p) {
  abc_population *n = realloc(a->pops, (size_t)(a->n_pops + 1) * sizeof *n);
  CB_CHECK(n != NULL, CB_ERR_MEM, "out of memory for the populations");
  a->pops = n;
  *p = &a->pops[a->n_pops++];
  memset(*p, 0, sizeof **p);
  return CB_OK;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

typedef struct idx_rho {
  double rho;
  long i;
} idx_rho;

static int cmp_idx_rho(const void *x, const void *y) {
  const idx_rho *a = x, *b = y;
  if (a->rho != b->rho) return (a->rho > b->rho) - (a->rho < b->rho);
  return (a->i > b->i) - (a->i < b->i);
}

/* Round 0 done: keep the closest (or those below epsilon for rejection with -epsilon). */
static int finish_round0(abc *a) {
  const int np = a->np;
  const long n0 = a->n_slots;
  idx_rho *o = malloc((size_t)n0 * sizeof *o);
  CB_CHECK(o != NULL, CB_ERR_MEM, "out of memory sorting distances");
  for (long k = 0; k < n0; k++) o[k] = (idx_rho){a->slots[k].rho, k};
  qsort(o, (size_t)n0, sizeof *o, cmp_idx_rho);
  long keep = a->cfg.n_particles;
  if (a->cfg.method == ABC_REJECTION && a->cfg.epsilon > 0.0) {
    keep = 0;
    while (keep < n0 && o[keep].rho < a->cfg.epsilon) keep++;
    if (keep < 2) {
      double closest = o[0].rho;
      free(o);
      return CB_ERROR(CB_ERR_INPUT,
                      "-epsilon %g: %ld of the %ld prior draws fall below it (at least 2 needed; "
                      "the closest is at %g)",
                      a->cfg.epsilon, keep, n0, closest);
    }
  }
  abc_population *p = NULL;
  int st = pops_push(a, &p);
  if (st == CB_OK) st = pop_alloc(p, keep, np);
  if (st != CB_OK) {
    free(o);
    CB_CALL(st);
  }
  long used = 0;
  for (long k = 0; k < n0; k++) used += a->slots[k].n_used;
  for (long m = 0; m < keep; m++) {
    const slot *s = &a->slots[o[m].i];
    memcpy(p->theta + m * np, s->theta, (size_t)np * sizeof(double));
    memcpy(p->x + m * np, s->x, (size_t)np * sizeof(double));
    p->rho[m] = s->rho;
    p->w[m] = 1.0 / (double)keep;
  }
  p->epsilon = keep ? o[keep - 1].rho : 0.0;
  if (a->cfg.method == ABC_REJECTION && a->cfg.epsilon > 0.0) p->epsilon = a->cfg.epsilon;
  p->acceptance = used ? (double)n0 / (double)used : 0.0;
  p->n_sims = a->round_sims;
  free(o);
  return CB_OK;
}

/* ln sum_j w_j N(theta; theta_j, S) up to a constant, S = L L^T. */
static double log_kernel_mixture(const abc *a, const abc_population *prev, const double *theta) {
  const int np = a->np;
  double m = -INFINITY, s = 0.0;
  for (long j = 0; j < prev->n; j++) {
    double d[NP], z[NP], q = 0.0;
    for (int i = 0; i < np; i++) d[i] = theta[i] - prev->theta[j * np + i];
    for (int i = 0; i < np; i++) { /* solve L z = d */
      double v = d[i];
      for (int k = 0; k < i; k++) v -= a->L[i * np + k] * z[k];
      z[i] = v / a->L[i * np + i];
      q += z[i] * z[i];
    }
    double l = log(prev->w[j]) - 0.5 * q;
    if (l > m) {
      s = s * exp(m - l) + 1.0;
      m = l;
    } else {
      s += exp(l - m);
    }
  }
  return m + log(s);
}

/* A PMC round: set epsilon and the proposal, and the slots of the particles to move. */
static int start_pmc(abc *a, long *n_move) {
  const int np = a->np;
  const abc_population *p = &a->pops[a->n_pops - 1];
  double *r = malloc((size_t)p->n * sizeof *r);
  long *mv = malloc((size_t)p->n * sizeof *mv);
  if (!r || !mv) {
    free(r);
    free(mv);
    return CB_ERROR(CB_ERR_MEM, "out of memory for a round");
  }
  memcpy(r, p->rho, (size_t)p->n * sizeof *r);
  qsort(r, (size_t)p->n, sizeof *r, cmp_double);
  long q = (long)ceil(a->cfg.percentile / 100.0 * (double)p->n) - 1;
  if (q < 0) q = 0;
  if (q >= p->n) q = p->n - 1;
  a->eps = r[q];
  free(r);
  long n = 0;
  for (long i = 0; i < p->n; i++)
    if (p->rho[i] > a->eps) mv[n++] = i;
  /* weighted mean and covariance; proposal 2 Cov_w */
  double mean[NP] = {0}, cov[NP * NP] = {0};
  for (long i = 0; i < p->n; i++)
    for (int k = 0; k < np; k++) mean[k] += p->w[i] * p->theta[i * np + k];
  for (long i = 0; i < p->n; i++)
    for (int k = 0; k < np; k++)
      for (int l = 0; l < np; l++)
        cov[k * np + l] +=
            p->w[i] * (p->theta[i * np + k] - mean[k]) * (p->theta[i * np + l] - mean[l]);
  for (int k = 0; k < np * np; k++) a->L[k] = 2.0 * cov[k];
  gsl_matrix_view Lv = gsl_matrix_view_array(a->L, (size_t)np, (size_t)np);
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  int gs = gsl_linalg_cholesky_decomp1(&Lv.matrix);
  gsl_set_error_handler(old);
  if (gs != GSL_SUCCESS) {
    free(mv);
    return CB_ERROR(CB_ERR_NUMERIC,
                    "round %d: the weighted covariance of the particles is singular (every "
                    "particle at the same parameters?)",
                    a->round);
  }
  for (int i = 0; i < np; i++)
    for (int j = i + 1; j < np; j++) a->L[i * np + j] = 0.0; /* lower triangle only */
  free(a->cumw);
  a->cumw = malloc((size_t)p->n * sizeof *a->cumw);
  if (!a->cumw) {
    free(mv);
    return CB_ERROR(CB_ERR_MEM, "out of memory for a round");
  }
  double cw = 0.0;
  for (long i = 0; i < p->n; i++) a->cumw[i] = (cw += p->w[i]);
  int st = slots_make(a, n, mv);
  free(mv);
  *n_move = n;
  return st;
}

static int finish_pmc(abc *a) {
  const int np = a->np;
  abc_population *p = NULL;
  CB_CALL(pops_push(a, &p));
  const abc_population *prev = &a->pops[a->n_pops - 2];
  CB_CALL(pop_alloc(p, prev->n, np));
  memcpy(p->theta, prev->theta, (size_t)(prev->n * np) * sizeof(double));
  memcpy(p->x, prev->x, (size_t)(prev->n * np) * sizeof(double));
  memcpy(p->rho, prev->rho, (size_t)prev->n * sizeof(double));
  const long n = prev->n, nm = a->n_slots;
  double *lw = calloc((size_t)nm + 1, sizeof *lw);
  CB_CHECK(lw != NULL, CB_ERR_MEM, "out of memory for weights");
  double wkept = 0.0, lmax = -INFINITY;
  bool *moved = calloc((size_t)n, sizeof *moved);
  if (!moved) {
    free(lw);
    return CB_ERROR(CB_ERR_MEM, "out of memory for weights");
  }
  long used = 0;
  for (long k = 0; k < nm; k++) {
    const slot *s = &a->slots[k];
    lw[k] = abc_prior_logpdf(&a->cfg.prior, s->theta) - log_kernel_mixture(a, prev, s->theta);
    if (lw[k] > lmax) lmax = lw[k];
    moved[s->particle] = true;
    used += s->n_used;
  }
  for (long i = 0; i < n; i++)
    if (!moved[i]) wkept += prev->w[i];
  double smoved = 0.0;
  for (long k = 0; k < nm; k++) smoved += exp(lw[k] - lmax);
  const double fk = (double)(n - nm) / (double)n, fm = (double)nm / (double)n;
  for (long i = 0; i < n; i++) p->w[i] = moved[i] ? 0.0 : fk * prev->w[i] / wkept;
  for (long k = 0; k < nm; k++) {
    const slot *s = &a->slots[k];
    long i = s->particle;
    memcpy(p->theta + i * np, s->theta, (size_t)np * sizeof(double));
    memcpy(p->x + i * np, s->x, (size_t)np * sizeof(double));
    p->rho[i] = s->rho;
    p->w[i] = fm * exp(lw[k] - lmax) / smoved;
  }
  free(lw);
  free(moved);
  p->epsilon = a->eps;
  p->acceptance = used ? (double)nm / (double)used : 0.0;
  p->n_sims = a->round_sims;
  return CB_OK;
}

/* ------------------------------------------------------------------ life */

int abc_create(groups *g, simulator *sim, compressor *c, const abc_config *cfg, const double *x_obs,
               const options *o, abc **out) {
  *out = NULL;
  CB_CHECK(c->calibrated, CB_ERR_INTERNAL, "abc_create: the compressor is not calibrated");
  abc *a;
  CB_CALLOC(a, 1);
  a->g = g;
  a->sim = sim;
  a->c = c;
  a->cfg = *cfg;
  a->o = o;
  a->np = sim->n_params;
  a->n_raw = c->n_raw;
  memcpy(a->x_obs, x_obs, (size_t)a->np * sizeof(double));
  a->data = calloc(sim->n_local + 1, sizeof(double));
  a->raw = calloc((size_t)c->n_raw + 1, sizeof(double));
  int st = (a->data && a->raw) ? CB_OK : CB_ERROR(CB_ERR_MEM, "out of memory for the campaign");
  if (st == CB_OK && g->is_coordinator) {
    make_settings(a);
    st = journal_open(a);
  }
  double v = st;
  groups_bcast(g, &v, 1);
  if (st == CB_OK && (int)v != CB_OK)
    st = CB_ERROR((int)v, "the campaign could not start (see the first rank's message)");
  if (st != CB_OK) {
    abc_destroy(&a);
    return st;
  }
  a->t_start = a->t_ckpt = a->t_progress = MPI_Wtime();
  *out = a;
  return CB_OK;
}

void abc_destroy(abc **pa) {
  if (!pa || !*pa) return;
  abc *a = *pa;
  if (a->journal) fclose(a->journal);
  slots_free(a);
  for (int r = 0; r < a->n_pops; r++) pop_free(&a->pops[r]);
  free(a->pops);
  free(a->recs);
  free(a->hash);
  free(a->data);
  free(a->raw);
  free(a->exact_axes);
  free(a->exact_lp);
  free(a->cumw);
  free(a);
  *pa = NULL;
}

int abc_round(abc *a, bool *done, bool *stopped) {
  groups *g = a->g;
  *done = *stopped = false;
  double flags[3] = {0, 0, 0}; /* status, done, stopped */
  int st = CB_OK;
  bool run = true;
  if (g->is_coordinator) {
    a->round = a->n_pops;
    a->t_round = MPI_Wtime();
    if (a->round == 0) {
      a->eps = INFINITY;
      st = slots_make(a, a->cfg.n_initial, NULL);
    } else {
      long n_move = 0;
      st = start_pmc(a, &n_move);
      if (st == CB_OK && n_move == 0) {
        run = false;
        flags[1] = 1;
      }
    }
    flags[0] = st;
    if (!run) flags[0] = -1; /* nothing to schedule */
  }
  CB_CALL(groups_bcast(g, flags, 3));
  if ((int)flags[0] > 0) {
    if (st == CB_OK) st = CB_ERROR((int)flags[0], "the round could not start");
    return st;
  }
  if (flags[0] == 0.0) {
    groups_scheduler s = {.task_len = (size_t)a->np + 3,
                          .result_len = (size_t)a->n_raw + 1,
                          .next = abc_next,
                          .done = abc_done,
                          .work = abc_work,
                          .ctx = a};
    CB_CALL(groups_schedule(g, &s, NULL));
  }
  if (g->is_coordinator) {
    flags[0] = CB_OK;
    flags[1] = flags[1] != 0.0;
    flags[2] = a->stopped;
    if (run && !a->stopped) {
      st = a->round == 0 ? finish_round0(a) : finish_pmc(a);
      if (st == CB_OK) {
        const abc_population *p = &a->pops[a->n_pops - 1];
        progress(a, true);
        if (!a->cfg.quiet)
          log_info("round %d done: epsilon %.4g, acceptance %.4f, %ld sims", a->round, p->epsilon,
                   p->acceptance, p->n_sims);
        if (a->cfg.method == ABC_REJECTION) flags[1] = 1;
        if (a->round > 0 && p->acceptance < a->cfg.criterion) flags[1] = 1;
        if (a->round > 0 && a->cfg.epsilon > 0.0 && p->epsilon <= a->cfg.epsilon) flags[1] = 1;
        if (a->round >= a->cfg.max_rounds) flags[1] = 1;
        st = write_file(a, false);
      }
      flags[0] = st;
    }
  }
  CB_CALL(groups_bcast(g, flags, 3));
  if ((int)flags[0] != CB_OK) {
    if (st == CB_OK) st = CB_ERROR((int)flags[0], "the round failed on the coordinator");
    return st;
  }
  *done = flags[1] != 0.0;
  *stopped = flags[2] != 0.0;
  return CB_OK;
}

int abc_rounds(const abc *a) {
  return a->n_pops;
}

const abc_population *abc_population_of(const abc *a, int r) {
  if (!a->g->is_coordinator || r < 0 || r >= a->n_pops) return NULL;
  return &a->pops[r];
}

long abc_n_sims(const abc *a) {
  return a->n_recs;
}

long abc_n_new_sims(const abc *a) {
  return a->n_new;
}

/* ------------------------------------------------------------------ the file */

static int write_contents(abc *a, h5file *h, bool complete) {
  const int np = a->np;
  const size_t n = (size_t)a->n_recs;
  if (a->o) CB_CALL(h5io_write_provenance(h, a->o)); /* NULL from a library caller */
  CB_CALL(h5io_attr_write_string(h, "/", "simulator", a->sim->type->name));
  char names[512] = "";
  for (int i = 0; i < np; i++) {
    size_t u = strlen(names);
    snprintf(names + u, sizeof names - u, "%s%s", i ? "," : "", a->sim->type->param_names[i]);
  }
  CB_CALL(h5io_attr_write_string(h, "/", "param_names", names));
  static const char *kinds[] = {"score", "bandpower", "identity", "imnn"};
  CB_CALL(h5io_attr_write_string(h, "/", "compressor", kinds[a->c->kind]));
  CB_CALL(h5io_attr_write_string(h, "/", "method", a->cfg.method == ABC_PMC ? "pmc" : "rejection"));
  CB_CALL(h5io_attr_write_long(h, "/", "complete", complete ? 1 : 0));
  CB_CALL(h5io_attr_write_long(h, "/", "n_rounds", a->n_pops));
  CB_CALL(h5io_attr_write_long(h, "/", "n_params", np));
  CB_CALL(h5io_attr_write_long(h, "/", "n_sims", (long)n));
  CB_CALL(h5io_attr_write_long(h, "/", "seed", (long)a->cfg.seed));
  CB_CALL(h5io_attr_write_string(h, "/", "settings", a->settings));
  size_t d1[1] = {(size_t)np}, d2[2] = {(size_t)np, (size_t)np};
  CB_CALL(h5io_write_array(h, "/x_obs", 1, d1, a->x_obs));
  CB_CALL(h5io_write_array(h, "/compressor/theta_fid", 1, d1, a->c->theta_fid));
  CB_CALL(h5io_write_array(h, "/compressor/F", 2, d2, a->c->F));
  size_t dm[2] = {(size_t)np, (size_t)a->c->n_raw}, dr[1] = {(size_t)a->c->n_raw};
  CB_CALL(h5io_write_array(h, "/compressor/M", 2, dm, a->c->M));
  CB_CALL(h5io_write_array(h, "/compressor/mu", 1, dr, a->c->mu));
  /* every simulation */
  const size_t w = np > 3 ? (size_t)np : 3; /* widest table: theta, summary, key (3) */
  double *buf = malloc((n * w + 1) * 3 * sizeof(double));
  CB_CHECK(buf != NULL, CB_ERR_MEM, "out of memory writing the campaign file");
  double *t = buf, *x = buf + n * w, *k3 = buf + 2 * n * w;
  for (size_t i = 0; i < n; i++)
    for (int j = 0; j < np; j++) {
      t[i * (size_t)np + (size_t)j] = a->recs[i].theta[j];
      x[i * (size_t)np + (size_t)j] = a->recs[i].x[j];
    }
  size_t dn[2] = {n, (size_t)np};
  int st = h5io_write_array(h, "/sims/theta", 2, dn, t);
  if (st == CB_OK) st = h5io_write_array(h, "/sims/summary", 2, dn, x);
  size_t d3[2] = {n, 3}, d2n[2] = {n, 2}, dn1[1] = {n};
  if (st == CB_OK) {
    for (size_t i = 0; i < n; i++) {
      k3[3 * i] = a->recs[i].round;
      k3[3 * i + 1] = a->recs[i].particle;
      k3[3 * i + 2] = a->recs[i].attempt;
    }
    st = h5io_write_array(h, "/sims/key", 2, d3, k3);
  }
  if (st == CB_OK) {
    for (size_t i = 0; i < n; i++) {
      t[2 * i] = (double)(a->recs[i].seed >> 32);
      t[2 * i + 1] = (double)(a->recs[i].seed & 0xffffffffULL);
    }
    st = h5io_write_array(h, "/sims/seed_hi_lo", 2, d2n, t);
  }
  const char *col[] = {"/sims/distance", "/sims/group", "/sims/time", "/sims/status"};
  for (int c = 0; c < 4 && st == CB_OK; c++) {
    for (size_t i = 0; i < n; i++)
      t[i] = c == 0   ? a->recs[i].rho
             : c == 1 ? a->recs[i].group
             : c == 2 ? a->recs[i].time
                      : a->recs[i].status;
    st = h5io_write_array(h, col[c], 1, dn1, t);
  }
  free(buf);
  CB_CALL(st);
  /* the rounds */
  if (a->n_pops > 0) {
    double *e = malloc((size_t)a->n_pops * 3 * sizeof(double));
    CB_CHECK(e != NULL, CB_ERR_MEM, "out of memory writing the campaign file");
    for (int r = 0; r < a->n_pops; r++) {
      e[r] = a->pops[r].epsilon;
      e[a->n_pops + r] = a->pops[r].acceptance;
      e[2 * a->n_pops + r] = (double)a->pops[r].n_sims;
    }
    size_t dp[1] = {(size_t)a->n_pops};
    st = h5io_write_array(h, "/rounds/epsilon", 1, dp, e);
    if (st == CB_OK) st = h5io_write_array(h, "/rounds/acceptance", 1, dp, e + a->n_pops);
    if (st == CB_OK) st = h5io_write_array(h, "/rounds/n_sims", 1, dp, e + 2 * a->n_pops);
    free(e);
    CB_CALL(st);
  }
  for (int r = 0; r < a->n_pops; r++) {
    const abc_population *p = &a->pops[r];
    char name[64];
    size_t dt[2] = {(size_t)p->n, (size_t)np}, dw[1] = {(size_t)p->n};
    for (int last = 0; last < 2; last++) {
      if (last && r != a->n_pops - 1) continue;
      const char *base = last ? "/posterior" : name;
      snprintf(name, sizeof name, "/round_%03d", r);
      char path[96];
      snprintf(path, sizeof path, "%s/theta", base);
      CB_CALL(h5io_write_array(h, path, 2, dt, p->theta));
      snprintf(path, sizeof path, "%s/weights", base);
      CB_CALL(h5io_write_array(h, path, 1, dw, p->w));
      snprintf(path, sizeof path, "%s/distance", base);
      CB_CALL(h5io_write_array(h, path, 1, dw, p->rho));
      snprintf(path, sizeof path, "%s/summary", base);
      CB_CALL(h5io_write_array(h, path, 2, dt, p->x));
      snprintf(path, sizeof path, "%s/theta", base);
      CB_CALL(h5io_attr_write_double(h, path, "epsilon", p->epsilon));
    }
  }
  if (a->exact_n > 0) {
    size_t da[1] = {(size_t)a->exact_n}, dl[2] = {(size_t)a->exact_n, (size_t)a->exact_n};
    for (int p = 0; p < np; p++) {
      char name[64];
      snprintf(name, sizeof name, "/exact/axis_%d", p);
      CB_CALL(h5io_write_array(h, name, 1, da, a->exact_axes + p * a->exact_n));
    }
    CB_CALL(h5io_write_array(h, "/exact/log_posterior", np, np == 1 ? da : dl, a->exact_lp));
  }
  return CB_OK;
}

/* Coordinator only (MPI_COMM_SELF): temporary name, then rename. */
static int write_file(abc *a, bool complete) {
  h5file *h = NULL;
  CB_CALL(h5io_create(MPI_COMM_SELF, a->cfg.path, true, &h));
  int st = write_contents(a, h, complete);
  if (st != CB_OK) {
    h5io_abort(&h);
    CB_CALL(st);
  }
  CB_CALL(h5io_commit(&h));
  a->t_ckpt = MPI_Wtime();
  return CB_OK;
}

int abc_write(abc *a, bool complete) {
  double v = CB_OK;
  int st = CB_OK;
  if (a->g->is_coordinator) {
    if (a->journal) fflush(a->journal);
    st = write_file(a, complete);
    if (st == CB_OK && complete) {
      if (a->journal) fclose(a->journal);
      a->journal = NULL;
      if (unlink(a->journal_path) != 0)
        st = CB_ERROR(CB_ERR_IO, "cannot remove the finished journal '%s'", a->journal_path);
    }
    v = st;
  }
  CB_CALL(groups_bcast(a->g, &v, 1));
  if (st != CB_OK) return st;
  CB_CHECK((int)v == CB_OK, (int)v, "writing '%s' failed (see the first rank's message)",
           a->cfg.path);
  return CB_OK;
}

int abc_set_exact(abc *a, int n_axis, const double *axes, const double *log_post) {
  if (!a->g->is_coordinator) return CB_OK;
  CB_CHECK(a->np <= 2 && n_axis >= 2, CB_ERR_INTERNAL, "abc_set_exact: %d parameters", a->np);
  size_t nl = a->np == 1 ? (size_t)n_axis : (size_t)n_axis * (size_t)n_axis;
  free(a->exact_axes);
  free(a->exact_lp);
  a->exact_axes = malloc((size_t)(a->np * n_axis) * sizeof(double));
  a->exact_lp = malloc(nl * sizeof(double));
  CB_CHECK(a->exact_axes && a->exact_lp, CB_ERR_MEM, "out of memory for the exact posterior");
  memcpy(a->exact_axes, axes, (size_t)(a->np * n_axis) * sizeof(double));
  memcpy(a->exact_lp, log_post, nl * sizeof(double));
  a->exact_n = n_axis;
  return CB_OK;
}

int abc_exact_grid(simulator *sim, const abc_prior *prior, const double *data, int n_axis,
                   const double *axes, double *out) {
  const int np = sim->n_params;
  CB_CHECK(np <= 2, CB_ERR_INPUT, "the exact posterior grid takes 1 or 2 parameters (not %d)", np);
  long n = np == 1 ? n_axis : (long)n_axis * n_axis;
  for (long m = 0; m < n; m++) {
    double th[2] = {axes[m % n_axis], np == 2 ? axes[n_axis + m / n_axis] : 0.0};
    if (np == 2) { /* row-major over (axis 0, axis 1) */
      th[0] = axes[m / n_axis];
      th[1] = axes[n_axis + m % n_axis];
    }
    double lnL = 0.0;
    CB_CALL(simulator_loglike(sim, th, data, &lnL));
    out[m] = lnL + abc_prior_logpdf(prior, th);
  }
  return CB_OK;
}

/* ------------------------------------------------------------------ statistics */

typedef struct wv {
  double v, w;
} wv;

static int cmp_wv(const void *x, const void *y) {
  double a = ((const wv *)x)->v, b = ((const wv *)y)->v;
  return (a > b) - (a < b);
}

void abc_population_stats(const abc_population *pop, int n_params, int p, double *mean, double *sd,
                          int n_q, const double *q, double *quantiles) {
  double sw = 0.0, m = 0.0, v = 0.0;
  for (long i = 0; i < pop->n; i++) {
    sw += pop->w[i];
    m += pop->w[i] * pop->theta[i * n_params + p];
  }
  m /= sw;
  for (long i = 0; i < pop->n; i++) {
    double d = pop->theta[i * n_params + p] - m;
    v += pop->w[i] * d * d;
  }
  *mean = m;
  *sd = sqrt(v / sw);
  if (n_q <= 0) return;
  wv *s = malloc((size_t)pop->n * sizeof *s);
  if (!s) {
    for (int k = 0; k < n_q; k++) quantiles[k] = NAN;
    return;
  }
  for (long i = 0; i < pop->n; i++) s[i] = (wv){pop->theta[i * n_params + p], pop->w[i] / sw};
  qsort(s, (size_t)pop->n, sizeof *s, cmp_wv);
  for (int k = 0; k < n_q; k++) {
    double c = 0.0;
    long i = 0;
    while (i < pop->n - 1 && c + s[i].w < q[k]) c += s[i++].w;
    quantiles[k] = s[i].v;
  }
  free(s);
}

/* ------------------------------------------------------------------ calibration */

typedef struct calib_ctx {
  simulator *sim;
  compressor *c;
  uint64_t seed;
  double *data;
} calib_ctx;

/* Task t: t < n_s the fiducial with seed (0, t); then pairs: u = t - n_s, a = u / (2 n_d),
 * j = (u % (2 n_d)) / 2, plus when even; seed (1, j) on both sides. */
static void calib_task(const compressor *c, int64_t t, double *theta, uint64_t *seed,
                       uint64_t campaign) {
  for (int i = 0; i < c->n_params; i++) theta[i] = c->theta_fid[i];
  if (t < c->n_s) {
    *seed = key_seed(campaign, STREAM_CALIB, 0, 0, t);
    return;
  }
  int64_t u = t - c->n_s, a = u / (2 * c->n_d), j = (u % (2 * c->n_d)) / 2;
  theta[a] += (u % 2 == 0 ? 0.5 : -0.5) * c->dtheta[a];
  *seed = key_seed(campaign, STREAM_CALIB, 1, 0, j);
}

static int calib_work(void *vc, const groups *g, int64_t t, const double *task, double *result) {
  (void)g;
  (void)task;
  calib_ctx *x = vc;
  double theta[NP];
  uint64_t seed;
  calib_task(x->c, t, theta, &seed, x->seed);
  CB_CALL(simulator_run(x->sim, theta, seed, x->data));
  bool ok = simulator_data_finite(x->sim, x->data);
  if (ok) CB_CALL(compress_raw(x->c, x->data, result));
  for (int i = 0; ok && i < x->c->n_raw; i++) ok = isfinite(result[i]);
  CB_CHECK(ok, CB_ERR_NUMERIC,
           "calibration simulation %lld (near the fiducial) gave non-finite summaries",
           (long long)t);
  return CB_OK;
}

int abc_calibrate(groups *g, simulator *sim, compressor *c, uint64_t seed) {
  if (c->calibrated) return CB_OK;
  const long np = c->n_params, nr = c->n_raw, ns = c->n_s, nd = c->n_d;
  const long n = ns + 2 * np * nd;
  calib_ctx x = {.sim = sim, .c = c, .seed = seed};
  x.data = calloc(sim->n_local + 1, sizeof(double));
  double *res = g->is_coordinator ? calloc((size_t)(n * nr), sizeof(double)) : NULL;
  double *fid = NULL, *plus = NULL, *minus = NULL;
  int st = (x.data && (res || !g->is_coordinator)) ? CB_OK
                                                   : CB_ERROR(CB_ERR_MEM, "out of memory for "
                                                                          "the calibration");
  double t0 = MPI_Wtime();
  if (st == CB_OK) st = groups_map(g, n, (size_t)nr, calib_work, &x, res, NULL);
  double v = st;
  if (st == CB_OK && g->is_coordinator) {
    fid = res;
    plus = malloc((size_t)(np * nd * nr) * sizeof(double));
    minus = malloc((size_t)(np * nd * nr) * sizeof(double));
    if (!plus || !minus) st = CB_ERROR(CB_ERR_MEM, "out of memory for the calibration");
    for (long a = 0; st == CB_OK && a < np; a++)
      for (long j = 0; j < nd; j++) {
        const double *p = res + (ns + a * 2 * nd + 2 * j) * nr;
        memcpy(plus + (a * nd + j) * nr, p, (size_t)nr * sizeof(double));
        memcpy(minus + (a * nd + j) * nr, p + nr, (size_t)nr * sizeof(double));
      }
    if (st == CB_OK) st = compress_calibrate(c, fid, plus, minus);
    v = st;
  }
  if (x.data) groups_bcast(g, &v, 1);
  free(plus);
  free(minus);
  free(res);
  free(x.data);
  if (st != CB_OK) return st;
  CB_CHECK((int)v == CB_OK, (int)v, "the calibration failed (see the first rank's message)");
  CB_CALL(groups_bcast(g, c->mu, (size_t)nr));
  CB_CALL(groups_bcast(g, c->M, (size_t)(np * nr)));
  CB_CALL(groups_bcast(g, c->F, (size_t)(np * np)));
  c->calibrated = true;
  log_info("compressor calibrated on %ld simulations in %.2f s", n, MPI_Wtime() - t0);
  return CB_OK;
}

int abc_observed(groups *g, simulator *sim, compressor *c, const double *data, double *x_obs) {
  int st = CB_OK;
  double xs[NP + 1] = {0};
  if (g->group == 0) {
    double *raw = calloc((size_t)c->n_raw + 1, sizeof(double));
    st = raw ? CB_OK : CB_ERROR(CB_ERR_MEM, "out of memory for the observed summaries");
    if (st == CB_OK) st = compress_raw(c, data, raw);
    if (st == CB_OK) compress_apply(c, raw, xs);
    for (int i = 0; st == CB_OK && i < sim->n_params; i++)
      if (!isfinite(xs[i]))
        st = CB_ERROR(CB_ERR_INPUT, "the observed data's summaries are not finite");
    free(raw);
  }
  xs[NP] = st;
  CB_CALL(groups_bcast(g, xs, NP + 1));
  if (st != CB_OK) return st;
  CB_CHECK((int)xs[NP] == CB_OK, (int)xs[NP],
           "the observed summaries failed on group 0 (see the first rank's message)");
  memcpy(x_obs, xs, (size_t)sim->n_params * sizeof(double));
  return CB_OK;
}
