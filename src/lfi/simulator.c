/* simulator: the table of simulators and the three built-in ones (MODEL.md sections 2, 9, 10).
 *
 * The table holds pointers to simulator_type objects: the built-in gaussian, grf and lpt
 * first, then whatever users register. A simulator object binds a type to a communicator (a
 * rank group) and a configuration; simulator_run calls the type's run.
 *
 * gaussian. n values x_i ~ N(0, theta) drawn with gsl_ran_gaussian_ziggurat from an MT19937
 * seeded by ic_stream_seed(seed, SIM_STREAM_GAUSSIAN, 0): every rank of the group draws the
 * same numbers. ln L = -1/2 sum (x^2 / theta + ln(2 pi theta)), score
 * -n / (2 theta) + S / (2 theta^2), F = n / (2 theta^2).
 *
 * grf. White noise s from ic_white_noise (the MT19937 stream of each global plane, so the same
 * seed gives the same field on any number of ranks), then delta(k) = sqrt(P(|k|) / V) s(k) with
 * P(k) = A k^-B, delta(0) = 0 (MODEL.md section 2). |k|^2 = (2 pi / L)^2 m2 with an integer
 * m2 = a^2 + b^2 + c^2, so the amplitude is tabulated once per m2 for each run and looked up
 * per local mode. The exact likelihood of MODEL.md section 9 sums over all N^3 - 1 modes k != 0:
 * on the half-complex grid every mode counts with its hermitian weight (k and -k), which gives
 * exactly the sum over the full grid. d ln P / dA = 1 / A, d ln P / dB = -ln k, so
 * score_a = 1/2 sum_k d_a ln P (|d(k)|^2 / (N^3 P / V) - 1) and F_ab = 1/2 sum d_a ln P d_b ln P
 * (independent of the data; F_BB and F_AB do not depend on A, B).
 *
 * lpt. For each run a cosmology (Eisenstein-Hu with the run's Omega_m and sigma_8) and a forward
 * model (forward.h) are made on the group's field, and delta = forward(s) with s the white noise
 * of the seed. Making them costs a few milliseconds a run, small beside LPT and CIC. */
#include "cerberus/simulator.h"

#include "cerberus/forward.h"
#include "cerberus/h5io.h"
#include "cerberus/ic.h"
#include "cerberus/status.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double sim_pi = 3.14159265358979323846;
#define SIM_STREAM_GAUSSIAN 0x676175737369616eULL /* "gaussian" */

/* ------------------------------------------------------------------ gaussian */

typedef struct gauss_state {
  gsl_rng *rng;
} gauss_state;

static int gauss_create(simulator *sim, const simulator_config *cfg) {
  CB_CHECK(cfg->n_draws >= 1 && cfg->n_draws <= 100000000, CB_ERR_INPUT,
           "-sim_n must be in [1, 1e8] for the gaussian simulator (got %ld)", cfg->n_draws);
  gauss_state *s;
  CB_CALLOC(s, 1);
  sim->state = s;
  s->rng = gsl_rng_alloc(gsl_rng_mt19937);
  CB_CHECK(s->rng != NULL, CB_ERR_MEM, "out of memory for a random number generator");
  sim->is_field = false;
  sim->n_data = sim->n_local = (size_t)cfg->n_draws;
  return CB_OK;
}

static int gauss_run(simulator *sim, const double *theta, uint64_t seed, double *data) {
  gauss_state *s = sim->state;
  const double v = theta[0];
  if (!(isfinite(v) && v > 0.0)) {
    for (size_t i = 0; i < sim->n_data; i++) data[i] = NAN;
    return CB_OK;
  }
  gsl_rng_set(s->rng, ic_stream_seed((unsigned long)seed, SIM_STREAM_GAUSSIAN, 0));
  const double sd = sqrt(v);
  for (size_t i = 0; i < sim->n_data; i++) data[i] = gsl_ran_gaussian_ziggurat(s->rng, sd);
  return CB_OK;
}

static void gauss_destroy(simulator *sim) {
  gauss_state *s = sim->state;
  if (!s) return;
  if (s->rng) gsl_rng_free(s->rng);
  free(s);
  sim->state = NULL;
}

static double sum_sq(const double *x, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += x[i] * x[i];
  return s;
}

static int gauss_loglike(simulator *sim, const double *theta, const double *data, double *lnL) {
  const double v = theta[0], n = (double)sim->n_data;
  if (!(isfinite(v) && v > 0.0)) {
    *lnL = -INFINITY;
    return CB_OK;
  }
  *lnL = -0.5 * (sum_sq(data, sim->n_data) / v + n * log(2.0 * sim_pi * v));
  return CB_OK;
}

static int gauss_score(simulator *sim, const double *theta, const double *data, double *score) {
  const double v = theta[0], n = (double)sim->n_data;
  score[0] = -0.5 * n / v + 0.5 * sum_sq(data, sim->n_data) / (v * v);
  return CB_OK;
}

static int gauss_fisher(simulator *sim, const double *theta, double *F) {
  F[0] = 0.5 * (double)sim->n_data / (theta[0] * theta[0]);
  return CB_OK;
}

static const simulator_type gaussian_type = {
    .name = "gaussian",
    .description = "n draws (-sim_n) of N(0, theta), theta the variance",
    .n_params = 1,
    .param_names = {"theta"},
    .fiducial = {1.0},
    .create = gauss_create,
    .run = gauss_run,
    .destroy = gauss_destroy,
    .loglike = gauss_loglike,
    .score = gauss_score,
    .fisher = gauss_fisher,
};

/* ------------------------------------------------------------------ grf */

typedef struct grf_state {
  field *f;
  size_t m2max;     /* 3 (N/2)^2 */
  int *m2;          /* per local half-complex mode: a^2 + b^2 + c^2 */
  double *lnk;      /* per m2: ln |k| (0 at m2 = 0, unused) */
  double *amp;      /* per m2: sqrt(P/V) of the current run */
  double *mult;     /* per m2: how many of the N^3 modes have it (every rank the same) */
  fftw_complex *dk; /* the transform of a field */
} grf_state;

static int grf_create(simulator *sim, const simulator_config *cfg) {
  grf_state *s;
  CB_CALLOC(s, 1);
  sim->state = s;
  CB_CALL(field_create(sim->comm, cfg->n_grid, cfg->box_size, 1, &s->f));
  field *f = s->f;
  const ptrdiff_t n = f->n, nc = f->nc, h = n / 2;
  s->m2max = 3 * (size_t)h * (size_t)h;
  CB_CALLOC(s->m2, f->n_complex_local);
  CB_CALLOC(s->lnk, s->m2max + 1);
  CB_CALLOC(s->amp, s->m2max + 1);
  CB_CALLOC(s->mult, s->m2max + 1);
  s->dk = field_alloc_complex(f);
  CB_CHECK(s->dk != NULL, CB_ERR_MEM, "out of memory for a %td^3 field", n);
  const double kf = 2.0 * sim_pi / f->L;
  for (size_t m = 1; m <= s->m2max; m++) s->lnk[m] = log(kf * sqrt((double)m));
  for (ptrdiff_t il = 0; il < f->local_n0; il++) {
    ptrdiff_t a = field_freq(f, f->local_0_start + il);
    for (ptrdiff_t j = 0; j < n; j++) {
      ptrdiff_t b = field_freq(f, j);
      for (ptrdiff_t c = 0; c < nc; c++)
        s->m2[(il * n + j) * nc + c] = (int)(a * a + b * b + c * c);
    }
  }
  /* multiplicities over the full grid, the same on every rank (no communication) */
  for (ptrdiff_t a = -h; a < h; a++)
    for (ptrdiff_t b = -h; b < h; b++)
      for (ptrdiff_t c = -h; c < h; c++) s->mult[a * a + b * b + c * c] += 1.0;
  s->mult[0] = 0.0; /* k = 0 is not a mode of the likelihood */
  sim->is_field = true;
  sim->field = f;
  sim->n_data = (size_t)(n * n * n);
  sim->n_local = (size_t)f->n_real_local;
  return CB_OK;
}

static void grf_destroy(simulator *sim) {
  grf_state *s = sim->state;
  if (!s) return;
  free(s->m2);
  free(s->lnk);
  free(s->amp);
  free(s->mult);
  fftw_free(s->dk);
  field_destroy(&s->f);
  free(s);
  sim->state = NULL;
  sim->field = NULL;
}

static bool grf_valid(const double *theta) {
  return isfinite(theta[0]) && theta[0] > 0.0 && isfinite(theta[1]);
}

/* amp[m2] = sqrt(A k^-B / V); false if a value is not finite. */
static bool grf_amplitudes(grf_state *s, const double *theta) {
  const double cell = s->f->L / (double)s->f->n, lnV = 3.0 * log(cell);
  const double lnA = log(theta[0]), B = theta[1];
  s->amp[0] = 0.0;
  bool ok = true;
  for (size_t m = 1; m <= s->m2max; m++) {
    s->amp[m] = exp(0.5 * (lnA - B * s->lnk[m] - lnV));
    ok = ok && isfinite(s->amp[m]);
  }
  return ok;
}

static int grf_run(simulator *sim, const double *theta, uint64_t seed, double *data) {
  grf_state *s = sim->state;
  field *f = s->f;
  /* the decision is the same on every rank (theta is): no rank waits in a transform alone */
  if (!grf_valid(theta) || !grf_amplitudes(s, theta)) {
    for (size_t i = 0; i < sim->n_local; i++) data[i] = NAN;
    return CB_OK;
  }
  CB_CALL(ic_white_noise(f, (unsigned long)seed, data));
  double *w = field_work(f);
  field_padded_load(f, data, w);
  CB_CALL(field_padded_r2c(f, w));
  fftw_complex *wk = (fftw_complex *)w;
  for (ptrdiff_t m = 0; m < f->n_complex_local; m++) wk[m] *= s->amp[s->m2[m]];
  CB_CALL(field_padded_c2r(f, w));
  const double nn = (double)f->n;
  field_padded_store(f, w, 1.0 / (nn * nn * nn), data);
  return CB_OK;
}

/* Sums over the modes k != 0 of the data's transform d(k), each with its hermitian weight w
 * (so over the full grid), with chi = |d(k)|^2 / (N^3 P(k) / V) at theta: out[0] = sum w chi,
 * out[1] = sum w ln P, out[2] = sum w, out[3] = sum w (chi - 1) ln k; reduced over the ranks.
 * Collective. */
static int grf_mode_sums(simulator *sim, const double *theta, const double *data, double out[4]) {
  grf_state *s = sim->state;
  field *f = s->f;
  CB_CALL(field_r2c(f, data, s->dk));
  const double nn = (double)f->n, cell = f->L / nn, V = cell * cell * cell;
  const double lnA = log(theta[0]), B = theta[1], n3_over_v = nn * nn * nn / V;
  const ptrdiff_t nc = f->nc;
  for (int i = 0; i < 4; i++) out[i] = 0.0;
  for (ptrdiff_t m = 0; m < f->n_complex_local; m++) {
    int m2 = s->m2[m];
    if (m2 == 0) continue;
    double w = field_hermitian_weight(f, m % nc);
    double lnP = lnA - B * s->lnk[m2];
    double d2 = creal(s->dk[m]) * creal(s->dk[m]) + cimag(s->dk[m]) * cimag(s->dk[m]);
    double chi = d2 * exp(-lnP) / n3_over_v;
    out[0] += w * chi;
    out[1] += w * lnP;
    out[2] += w;
    out[3] += w * (chi - 1.0) * s->lnk[m2];
  }
  field_allreduce_sum_n(f, out, 4);
  return CB_OK;
}

static int grf_loglike(simulator *sim, const double *theta, const double *data, double *lnL) {
  if (!grf_valid(theta)) {
    *lnL = -INFINITY;
    return CB_OK;
  }
  double t[4];
  CB_CALL(grf_mode_sums(sim, theta, data, t));
  *lnL = -0.5 * (t[0] + t[1]);
  return CB_OK;
}

static int grf_score(simulator *sim, const double *theta, const double *data, double *score) {
  double t[4];
  CB_CALL(grf_mode_sums(sim, theta, data, t));
  score[0] = 0.5 * (t[0] - t[2]) / theta[0]; /* d ln P / dA = 1 / A */
  score[1] = -0.5 * t[3];                    /* d ln P / dB = -ln k */
  return CB_OK;
}

static int grf_fisher(simulator *sim, const double *theta, double *F) {
  grf_state *s = sim->state;
  double n = 0.0, l1 = 0.0, l2 = 0.0;
  for (size_t m = 1; m <= s->m2max; m++) {
    n += s->mult[m];
    l1 += s->mult[m] * s->lnk[m];
    l2 += s->mult[m] * s->lnk[m] * s->lnk[m];
  }
  const double A = theta[0];
  F[0] = 0.5 * n / (A * A);
  F[1] = F[2] = -0.5 * l1 / A;
  F[3] = 0.5 * l2;
  return CB_OK;
}

static const simulator_type grf_type = {
    .name = "grf",
    .description = "3-D Gaussian random field, P(k) = A k^-B (k in h/Mpc), on -n_grid^3",
    .n_params = 2,
    .param_names = {"A", "B"},
    .fiducial = {1.0, 0.5},
    .create = grf_create,
    .run = grf_run,
    .destroy = grf_destroy,
    .loglike = grf_loglike,
    .score = grf_score,
    .fisher = grf_fisher,
};

/* ------------------------------------------------------------------ lpt */

typedef struct lpt_state {
  field *f;
  double *s; /* white noise */
} lpt_state;

static int lpt_sim_create(simulator *sim, const simulator_config *cfg) {
  CB_CHECK(cfg->lpt_order == 1 || cfg->lpt_order == 2, CB_ERR_INPUT,
           "-lpt_order must be 1 or 2 (got %d)", cfg->lpt_order);
  lpt_state *s;
  CB_CALLOC(s, 1);
  sim->state = s;
  /* the fiducial cosmology must itself be valid */
  cosmology *c = NULL;
  CB_CALL(cosmology_create(&cfg->cosmo, NULL, &c));
  cosmology_destroy(&c);
  CB_CALL(field_create(sim->comm, cfg->n_grid, cfg->box_size, 1, &s->f));
  s->s = field_alloc_real(s->f);
  CB_CHECK(s->s != NULL, CB_ERR_MEM, "out of memory for a %ld^3 field", cfg->n_grid);
  sim->fiducial[0] = cfg->cosmo.Omega_m;
  sim->fiducial[1] = cfg->cosmo.sigma_8;
  sim->is_field = true;
  sim->field = s->f;
  sim->n_data = (size_t)(s->f->n * s->f->n * s->f->n);
  sim->n_local = (size_t)s->f->n_real_local;
  return CB_OK;
}

static void lpt_sim_destroy(simulator *sim) {
  lpt_state *s = sim->state;
  if (!s) return;
  fftw_free(s->s);
  field_destroy(&s->f);
  free(s);
  sim->state = NULL;
  sim->field = NULL;
}

static int lpt_sim_run(simulator *sim, const double *theta, uint64_t seed, double *data) {
  lpt_state *s = sim->state;
  cosmo_params p = sim->cfg.cosmo;
  p.Omega_m = theta[0];
  p.sigma_8 = theta[1];
  if (!(isfinite(p.Omega_m) && p.Omega_m > p.Omega_b && p.Omega_m <= 1.0 && isfinite(p.sigma_8) &&
        p.sigma_8 > 0.0)) {
    for (size_t i = 0; i < sim->n_local; i++) data[i] = NAN;
    return CB_OK;
  }
  cosmology *c = NULL;
  forward *fw = NULL;
  int st = cosmology_create(&p, NULL, &c);
  if (st == CB_OK) st = forward_create(s->f, c, sim->cfg.lpt_order, &fw);
  if (st == CB_OK) st = ic_white_noise(s->f, (unsigned long)seed, s->s);
  if (st == CB_OK) st = forward_run(fw, s->s, NULL, data);
  forward_destroy(&fw);
  cosmology_destroy(&c);
  CB_CALL(st);
  return CB_OK;
}

static const simulator_type lpt_type = {
    .name = "lpt",
    .description = "LPT density field of the forward model, parameters (Omega_m, sigma_8)",
    .n_params = 2,
    .param_names = {"Omega_m", "sigma_8"},
    .fiducial = {0.3111, 0.8102},
    .create = lpt_sim_create,
    .run = lpt_sim_run,
    .destroy = lpt_sim_destroy,
};

/* ------------------------------------------------------------------ the table */

static const simulator_type *sim_table[SIMULATOR_MAX_TYPES];
static int sim_count = 0;

static void sim_builtins(void) {
  if (sim_count > 0) return;
  sim_table[sim_count++] = &gaussian_type;
  sim_table[sim_count++] = &grf_type;
  sim_table[sim_count++] = &lpt_type;
}

void simulator_names(char *buf, size_t n) {
  sim_builtins();
  if (n == 0) return;
  buf[0] = '\0';
  size_t used = 0;
  for (int i = 0; i < sim_count && used < n; i++) {
    int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", sim_table[i]->name);
    if (w < 0) break;
    used += (size_t)w;
  }
}

int simulator_register(const simulator_type *t) {
  sim_builtins();
  CB_CHECK(t && t->name && t->name[0], CB_ERR_INPUT, "a simulator type needs a name");
  CB_CHECK(t->create && t->run && t->destroy, CB_ERR_INPUT,
           "simulator '%s' needs create, run and destroy functions", t->name);
  CB_CHECK(t->n_params >= 1 && t->n_params <= SIMULATOR_MAX_PARAMS, CB_ERR_INPUT,
           "simulator '%s': %d parameters, expected 1 to %d", t->name, t->n_params,
           SIMULATOR_MAX_PARAMS);
  for (int i = 0; i < sim_count; i++)
    CB_CHECK(strcmp(sim_table[i]->name, t->name) != 0, CB_ERR_INPUT,
             "a simulator named '%s' is already registered", t->name);
  CB_CHECK(sim_count < SIMULATOR_MAX_TYPES, CB_ERR_INPUT,
           "the simulator table is full (%d types): cannot register '%s'", SIMULATOR_MAX_TYPES,
           t->name);
  sim_table[sim_count++] = t;
  return CB_OK;
}

int simulator_lookup(const char *name, const simulator_type **t) {
  sim_builtins();
  *t = NULL;
  for (int i = 0; i < sim_count; i++)
    if (strcmp(sim_table[i]->name, name) == 0) {
      *t = sim_table[i];
      return CB_OK;
    }
  char names[1024];
  simulator_names(names, sizeof names);
  return CB_ERROR(CB_ERR_INPUT, "unknown simulator '%s' (known: %s)", name, names);
}

simulator_config simulator_config_default(void) {
  return (simulator_config){.n_draws = 10,
                            .n_grid = 32,
                            .box_size = 250.0,
                            .lpt_order = 1,
                            .cosmo = cosmo_params_default(),
                            .user = NULL};
}

int simulator_options(options *o, const char *def, char *name, size_t name_size,
                      simulator_config *cfg) {
  *cfg = simulator_config_default();
  char names[1024], help[1200];
  simulator_names(names, sizeof names);
  snprintf(help, sizeof help, "simulator: %s", names);
  CB_CALL(options_string(o, "-simulator", help, def, name, name_size, NULL));
  const simulator_type *t = NULL;
  CB_CALL(simulator_lookup(name, &t));
  if (strcmp(name, "gaussian") == 0)
    CB_CALL(options_int(o, "-sim_n", "gaussian simulator: number of draws", 10, &cfg->n_draws));
  if (strcmp(name, "grf") == 0 || strcmp(name, "lpt") == 0) {
    CB_CALL(options_int(o, "-n_grid", "simulator grid points per side (even)", 32, &cfg->n_grid));
    CB_CALL(options_real(o, "-box_size", "simulator box side, Mpc/h", 250.0, &cfg->box_size));
  }
  if (strcmp(name, "lpt") == 0) {
    long order = 1;
    char pk_file[16];
    CB_CALL(options_int(o, "-lpt_order", "lpt simulator: 1 (Zel'dovich) or 2", 1, &order));
    cfg->lpt_order = (int)order;
    CB_CALL(ic_cosmo_options(o, &cfg->cosmo, pk_file, sizeof pk_file));
    CB_CHECK(pk_file[0] == '\0', CB_ERR_INPUT,
             "-pk_file: the lpt simulator uses Eisenstein-Hu (its parameters are Omega_m and "
             "sigma_8)");
    CB_CALL(field_plan_options(o));
  } else if (strcmp(name, "grf") == 0) {
    CB_CALL(field_plan_options(o));
  }
  return CB_OK;
}

int simulator_create(MPI_Comm comm, const char *name, const simulator_config *cfg,
                     simulator **out) {
  *out = NULL;
  const simulator_type *t = NULL;
  CB_CALL(simulator_lookup(name, &t));
  simulator *sim;
  CB_CALLOC(sim, 1);
  sim->type = t;
  sim->comm = comm;
  sim->cfg = *cfg;
  sim->n_params = t->n_params;
  for (int i = 0; i < t->n_params; i++) sim->fiducial[i] = t->fiducial[i];
  int st = t->create(sim, cfg);
  if (st == CB_OK && sim->n_local > 0 && sim->n_data == 0)
    st = CB_ERROR(CB_ERR_INTERNAL, "simulator '%s' made no data size", t->name);
  if (st != CB_OK) {
    simulator_destroy(&sim);
    CB_CALL(st);
  }
  *out = sim;
  return CB_OK;
}

void simulator_destroy(simulator **psim) {
  if (!psim || !*psim) return;
  simulator *sim = *psim;
  if (sim->type && sim->type->destroy) sim->type->destroy(sim);
  free(sim);
  *psim = NULL;
}

int simulator_run(simulator *sim, const double *theta, uint64_t seed, double *data) {
  CB_CALL(sim->type->run(sim, theta, seed, data));
  return CB_OK;
}

bool simulator_has_exact(const simulator *sim) {
  return sim->type->loglike && sim->type->score && sim->type->fisher;
}

int simulator_loglike(simulator *sim, const double *theta, const double *data, double *lnL) {
  CB_CHECK(sim->type->loglike, CB_ERR_INPUT, "simulator '%s' has no exact likelihood",
           sim->type->name);
  CB_CALL(sim->type->loglike(sim, theta, data, lnL));
  return CB_OK;
}

int simulator_score(simulator *sim, const double *theta, const double *data, double *score) {
  CB_CHECK(sim->type->score, CB_ERR_INPUT, "simulator '%s' has no exact score", sim->type->name);
  CB_CALL(sim->type->score(sim, theta, data, score));
  return CB_OK;
}

int simulator_fisher(simulator *sim, const double *theta, double *F) {
  CB_CHECK(sim->type->fisher, CB_ERR_INPUT, "simulator '%s' has no exact Fisher matrix",
           sim->type->name);
  CB_CALL(sim->type->fisher(sim, theta, F));
  return CB_OK;
}

bool simulator_data_finite(simulator *sim, const double *data) {
  double bad = 0.0;
  for (size_t i = 0; i < sim->n_local; i++)
    if (!isfinite(data[i])) {
      bad = 1.0;
      break;
    }
  if (sim->is_field && sim->field) bad = field_allreduce_sum(sim->field, bad);
  return bad == 0.0;
}

int simulator_write(simulator *sim, const double *theta, uint64_t seed, const double *data,
                    const char *path, const char *dataset, bool overwrite, const options *o) {
  h5file *h = NULL;
  CB_CALL(h5io_create(sim->comm, path, overwrite, &h));
  int st = CB_OK;
  size_t np = (size_t)sim->n_params;
  if (o) st = h5io_write_provenance(h, o);
  if (!st) st = h5io_attr_write_string(h, "/", "simulator", sim->type->name);
  if (!st) st = h5io_attr_write_long(h, "/", "seed", (long)seed);
  if (!st) st = h5io_write_array(h, "/theta_true", 1, &np, theta);
  if (!st && sim->is_field) {
    st = h5io_write_grid_attrs(h, sim->field);
    if (!st) st = h5io_write_field(h, dataset, sim->field, data);
  } else if (!st) {
    st = h5io_write_array(h, dataset, 1, &sim->n_data, data);
  }
  if (st) {
    h5io_abort(&h);
    return st;
  }
  CB_CALL(h5io_commit(&h));
  return CB_OK;
}
