/* bench_heldout: `cerberus bench heldout -field A.h5 -catalogue A.h5 -heldout B.h5 [options]`,
 * the held-out ln L gain of the neural engine over the power-law baseline (issue 12's
 * benchmark; MODEL.md sections 5 and 8).
 *
 * A and B are two catalogues of the same universe and truth, drawn with different halo seeds:
 *   cerberus mock -o A.h5 && cerberus mock -halo_seed 2 -o B.h5
 * (the same -seed, so the same /delta: checked here, voxel by voxel). Each model of -models
 * (separated by '/': "powerlaw" or an engine's layers K:lmax:channels:activation,..., default
 * powerlaw/3:0:1:softplus/3:0:2:softplus; the other architecture options, -n_gauss, -eps, ...,
 * apply to all) is fitted on A: the maximum a posteriori point of ln L_A + the N(0, 10^2)
 * prior, the best of -map_starts PETSc TAO optimisations (map.h). Then ln L_B, the held-out
 * likelihood of B at those weights, measures what the fit learnt about the truth rather than
 * about A's Poisson noise. The truth's own ln L of each catalogue is the mock's attribute
 * truth_ln_l (mock_truth_ln_l; NaN if the file lacks it) and the gain of a model is
 *
 *   gain = (ln L_B(model) - ln L_B(power law)) / (ln L_B(truth) - ln L_B(power law)),
 *
 * 0 for the power law, 1 for a model as good as the truth on held-out halos (the first
 * "powerlaw" of -models is the baseline; without one, or without the truth's ln L, gain is NaN).
 * One CSV row per model:
 *   bench,n_grid,ranks,model,n_weights,halos_a,halos_b,lnp_a,lnl_a,lnl_a_truth,lnl_b,
 *   lnl_b_truth,gain,map_evaluations,seconds
 * -o_prefix P writes each fit's weights to P<i>.h5 (i the model's place in -models), for
 * `cerberus loglike` or a chain's -weights. Collective. */
#include "cerberus/bench.h"
#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/likelihood.h"
#include "cerberus/log.h"
#include "cerberus/map.h"
#include "cerberus/posterior.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HELDOUT_MAX_MODELS = 8 };

typedef struct heldout_cfg {
  char field[4096], cat_a[4096], cat_b[4096], prefix[4096];
  bool have_prefix;
  map_config mc;
  weights_arch arch[HELDOUT_MAX_MODELS];
  char name[HELDOUT_MAX_MODELS][256];
  int n_models;
} heldout_cfg;

/* "powerlaw/3:0:1:softplus/..." -> architectures on the base's other options. */
static int parse_models(char *spec, const weights_arch *base, heldout_cfg *c) {
  char *save = NULL;
  c->n_models = 0;
  for (char *m = strtok_r(spec, "/", &save); m; m = strtok_r(NULL, "/", &save)) {
    CB_CHECK(c->n_models < HELDOUT_MAX_MODELS, CB_ERR_INPUT, "-models: more than %d models",
             HELDOUT_MAX_MODELS);
    weights_arch *a = &c->arch[c->n_models];
    *a = *base;
    snprintf(c->name[c->n_models], sizeof c->name[0], "%s", m);
    if (!strcmp(m, "powerlaw")) {
      a->model = WEIGHTS_POWERLAW;
    } else {
      char buf[256];
      snprintf(buf, sizeof buf, "%s", m);
      a->model = WEIGHTS_NPE;
      CB_CALL(npe_layers_parse("-models", buf, &a->npe));
    }
    CB_CALL(weights_arch_check(a));
    c->n_models++;
  }
  CB_CHECK(c->n_models > 0, CB_ERR_INPUT, "-models: no model given");
  return CB_OK;
}

static int read_config(options *o, heldout_cfg *c) {
  memset(c, 0, sizeof *c);
  char models[1024];
  weights_arch base;
  CB_CALL(options_string(o, "-field", "density field file (/delta), e.g. mock A", "mock.h5",
                         c->field, sizeof c->field, NULL));
  CB_CALL(options_string(o, "-catalogue", "catalogue A (/halos): the fit's", "mock.h5", c->cat_a,
                         sizeof c->cat_a, NULL));
  CB_CALL(options_string(o, "-heldout", "catalogue B (/halos, same /delta): the held-out one", NULL,
                         c->cat_b, sizeof c->cat_b, NULL));
  CB_CALL(options_string(o, "-models", "'/'-separated: powerlaw or engine layers K:lmax:ch:act",
                         "powerlaw/3:0:1:softplus/3:0:2:softplus", models, sizeof models, NULL));
  CB_CALL(weights_arch_from_options(o, &base));
  map_config_default(&c->mc);
  long seed = 1;
  CB_CALL(
      options_int(o, "-map_starts", "MAP optimisations per model (best kept)", 4, &c->mc.n_starts));
  CB_CALL(options_int(o, "-map_iterations", "iterations of each MAP optimisation", 500,
                      &c->mc.max_iterations));
  CB_CALL(
      options_real(o, "-init_scale", "starts: N(0, init_scale^2) weights", 0.1, &c->mc.init_scale));
  CB_CALL(options_int(o, "-seed", "seed of the MAP starts", 1, &seed));
  CB_CHECK(seed >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", seed);
  c->mc.seed = (unsigned long)seed;
  CB_CALL(options_string(o, "-o_prefix", "write fit i's weights to PREFIX<i>.h5", NULL, c->prefix,
                         sizeof c->prefix, &c->have_prefix));
  CB_CALL(options_finish(o));
  CB_CHECK(c->cat_b[0], CB_ERR_INPUT, "-heldout: the held-out catalogue B is required");
  CB_CHECK(c->mc.n_starts >= 1, CB_ERR_INPUT, "-map_starts must be at least 1 (got %ld)",
           c->mc.n_starts);
  CB_CHECK(c->mc.max_iterations >= 1, CB_ERR_INPUT, "-map_iterations must be at least 1 (got %ld)",
           c->mc.max_iterations);
  CB_CHECK(seed >= 0, CB_ERR_INPUT, "-seed must be zero or positive (got %ld)", seed);
  CB_CHECK(c->mc.init_scale > 0, CB_ERR_INPUT, "-init_scale must be positive (got %g)",
           c->mc.init_scale);
  CB_CALL(parse_models(models, &base, c));
  return CB_OK;
}

/* The truth's ln L attribute of a mock file; NaN (with a warning) when it has none. Also checks
 * that the file's /delta is the field's (delta, owned planes), else CB_ERR_INPUT naming it. */
static int truth_and_check(field *f, const double *delta, const char *path, double *lnl) {
  h5file *h = NULL;
  CB_CALL(h5io_open(f->comm, path, &h));
  double *d = field_alloc_real(f);
  int st = d ? h5io_read_field(h, "/delta", f, d) : CB_ERROR(CB_ERR_MEM, "out of memory");
  double diff = 0;
  if (!st) {
    for (ptrdiff_t v = 0; v < f->n_real_local; v++) diff += fabs(d[v] - delta[v]);
    diff = field_allreduce_sum(f, diff);
    if (!(diff == 0))
      st = CB_ERROR(CB_ERR_INPUT,
                    "'%s': its /delta differs from the field's (sum |difference| %g): the "
                    "catalogues must come from the same universe (same -seed, another -halo_seed)",
                    path, diff);
  }
  if (!st && h5io_attr_read_double(h, "/", "truth_ln_l", lnl) != CB_OK) {
    status_clear();
    *lnl = NAN;
    log_warn("bench heldout: '%s' has no truth_ln_l attribute (an older mock?): no gain", path);
  }
  if (d) fftw_free(d);
  h5io_close(&h);
  CB_CALL(st);
  return CB_OK;
}

typedef struct heldout_row {
  double lnp_a, lnl_a, lnl_b, seconds;
  long halos_a, halos_b, evals;
  size_t nw;
} heldout_row;

/* Fit model i on A, evaluate on B. */
static int fit_one(const heldout_cfg *c, int i, field *f, const double *delta, heldout_row *r) {
  const weights_arch *a = &c->arch[i];
  likelihood *la = NULL, *lb = NULL;
  posterior *post = NULL;
  double *theta = NULL, *w = NULL;
  posterior_config pc;
  posterior_config_default(&pc);
  r->nw = weights_count(a);
  double t0 = bench_clock_start(f->comm);
  int st = likelihood_create(f, a, &la);
  if (!st) st = likelihood_read_catalogue(la, c->cat_a, 0);
  if (!st) st = likelihood_create(f, a, &lb);
  if (!st) st = likelihood_read_catalogue(lb, c->cat_b, likelihood_mth(la));
  if (!st) st = posterior_create(f, la, delta, a, &pc, &post);
  theta = calloc(r->nw, sizeof *theta);
  w = calloc(r->nw, sizeof *w);
  if (!st && !(theta && w)) st = CB_ERROR(CB_ERR_MEM, "out of memory");
  if (!st) {
    r->halos_a = likelihood_n_halos(la);
    r->halos_b = likelihood_n_halos(lb);
    log_info("bench heldout: fitting %s (%zu weights) on %ld halos", c->name[i], r->nw, r->halos_a);
    st = map_find(post, &c->mc, theta, &r->lnp_a, &r->evals);
  }
  if (!st) {
    st = posterior_to_weights(post, theta, w);
    if (!st) st = likelihood_evaluate(la, delta, w, &r->lnl_a, NULL, NULL);
  }
  if (!st) st = likelihood_evaluate(lb, delta, w, &r->lnl_b, NULL, NULL);
  if (!st && c->have_prefix) {
    char path[4200];
    snprintf(path, sizeof path, "%s%d.h5", c->prefix, i);
    st = weights_write(f->comm, path, true, a, w, NULL);
  }
  r->seconds = bench_clock_stop(f->comm, t0);
  if (!st)
    log_info("bench heldout: %s: ln L_A %.3f, ln L_B %.3f (%.1f s)", c->name[i], r->lnl_a, r->lnl_b,
             r->seconds);
  free(theta);
  free(w);
  posterior_destroy(&post);
  likelihood_destroy(&lb);
  likelihood_destroy(&la);
  CB_CALL(st);
  return CB_OK;
}

int bench_heldout(MPI_Comm comm, options *o) {
  heldout_cfg *c = calloc(1, sizeof *c);
  CB_CHECK(c, CB_ERR_MEM, "out of memory");
  int st = read_config(o, c);
  int ghost = 1;
  for (int i = 0; !st && i < c->n_models; i++)
    if (c->arch[i].model == WEIGHTS_NPE && npe_ghost_width(&c->arch[i].npe) > ghost)
      ghost = npe_ghost_width(&c->arch[i].npe);
  field *f = NULL;
  double *delta = NULL, truth_a = NAN, truth_b = NAN;
  heldout_row rows[HELDOUT_MAX_MODELS];
  if (!st) st = h5io_read_field_file(comm, c->field, "/delta", ghost, &f, &delta);
  if (!st) st = truth_and_check(f, delta, c->cat_a, &truth_a);
  if (!st) st = truth_and_check(f, delta, c->cat_b, &truth_b);
  for (int i = 0; !st && i < c->n_models; i++) st = fit_one(c, i, f, delta, &rows[i]);
  if (!st) {
    int base = -1;
    for (int i = 0; i < c->n_models && base < 0; i++)
      if (c->arch[i].model == WEIGHTS_POWERLAW) base = i;
    const char *head = "bench,n_grid,ranks,model,n_weights,halos_a,halos_b,lnp_a,lnl_a,"
                       "lnl_a_truth,lnl_b,lnl_b_truth,gain,map_evaluations,seconds";
    for (int i = 0; i < c->n_models; i++) {
      const heldout_row *r = &rows[i];
      double gain = base < 0    ? NAN
                    : i == base ? 0.0
                                : (r->lnl_b - rows[base].lnl_b) / (truth_b - rows[base].lnl_b);
      char row[1024];
      snprintf(row, sizeof row,
               "heldout,%ld,%d,%s,%zu,%ld,%ld,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%ld,%.2f", (long)f->n,
               f->size, c->name[i], r->nw, r->halos_a, r->halos_b, r->lnp_a, r->lnl_a, truth_a,
               r->lnl_b, truth_b, gain, r->evals, r->seconds);
      bench_print_csv(comm, i == 0 ? head : NULL, row);
    }
  }
  if (delta) fftw_free(delta);
  field_destroy(&f);
  free(c);
  CB_CALL(st);
  return CB_OK;
}
