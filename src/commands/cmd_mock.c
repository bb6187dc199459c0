/* cmd_mock: `cerberus mock`, a mock universe with its halo catalogue (MODEL.md sections 2, 6).
 *
 *   cerberus mock [-n_grid 64 -box_size 250 -seed 1 -redshift 0 -Omega_m ... -pk_file FILE]
 *                 [-truth st-pbs|npe] [-weights FILE] [-mass_threshold 2e12] [-lpt_order 1|2]
 *                 [-smoothing_radius R] [-halo_seed S] -o mock.h5 [-overwrite]
 *
 * Runs seed -> white noise s -> delta_L -> LPT -> CIC -> delta, then draws halos above Mth
 * with a Poisson count per voxel and masses by inverse transform (module mock) from the truth
 * (the halos' random numbers from -halo_seed, by default -seed: another halo seed draws a
 * second catalogue of the same universe, e.g. a held-out one for `cerberus bench heldout`):
 *  - st-pbs: Sheth-Tormen with the peak-background-split Lagrangian bias on the linear field
 *    smoothed with a Gaussian of radius R (default 2 voxels), carried to the Eulerian voxels by
 *    the particles (a truth the neural engine does not contain);
 *  - npe: the neural engine and mixture head with the weights of -weights FILE (a weights
 *    file of model "npe", or "powerlaw" for the baseline (1 + delta + eps)^beta n0(M)): a
 *    well-specified truth for the likelihood of MODEL.md section 5.
 * Writes /white_noise, /delta_linear, /delta, /environment (st-pbs), /expected_count (the mean
 * count per voxel under the truth), /halos/position, /halos/mass, /truth/log_mass and
 * /truth/dndlnm_mean (the box average of the truth's dn/dlnM on the sampling grid), and
 * attributes: halo_seed, truth_ln_l (the truth's own ln L of the catalogue, MODEL.md
 * section 5: mock_truth_ln_l), the grid and cosmology (ic_config_write_attrs),
 * mass_threshold, truth and its parameters, lpt_order, the provenance. Every option is checked
 * before any work and the output is written under a temporary name: a refused input leaves no file.
 * Collective. */
#include "cerberus/catalogue.h"
#include "cerberus/commands.h"
#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/forward.h"
#include "cerberus/h5io.h"
#include "cerberus/ic.h"
#include "cerberus/log.h"
#include "cerberus/mdn.h"
#include "cerberus/mock.h"
#include "cerberus/npe.h"
#include "cerberus/options.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <gsl/gsl_math.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { TRUTH_STPBS = 0, TRUTH_NPE = 1 };
#define TRUTH_CHOICES "st-pbs,npe"

typedef struct mock_config {
  ic_config ic;
  int truth;
  char weights[4096];
  double mth, radius;
  long lpt_order, halo_seed;
  char out[4096];
  bool overwrite;
} mock_config;

/* ------------------------------------------------------------ the npe truth */

/* dn/dlnM from the engine and head (MODEL.md section 4), or from the power law
 * (1 + delta + eps)^beta n0(M) (MODEL.md section 5), per local voxel. The head's outputs
 * (ln alpha_i, mu_i, sigma_i) come from mdn_forward; the mixture sum_i alpha_i N(u; mu_i,
 * sigma_i) is summed here with one exp per Gaussian and grid point (mdn_ln_dndlnm, a
 * log-sum-exp with its logs, costs three times more on the ~430-point grid of every voxel);
 * the first voxel of each rank is checked against mdn_ln_dndlnm. */
typedef struct npe_truth {
  const weights_arch *arch;
  const double *w;      /* the weights (engine then head; beta then head for the power law) */
  const double *psi;    /* features (npe), or NULL */
  ptrdiff_t stride, n2; /* distance between channels of a voxel in psi; n * n */
  const double *delta;  /* for the power law */
  bool checked;
} npe_truth;

static int npe_truth_dndlnm(void *ctx, ptrdiff_t v, size_t nm, const double *lnm, double *out) {
  npe_truth *t = ctx;
  const mdn_config *mc = &t->arch->mdn;
  mdn_voxel vox;
  double extra = 0;
  if (t->arch->model == WEIGHTS_NPE) {
    const ptrdiff_t p = v / t->n2, jk = v % t->n2, P = mc->n_features;
    const double *head = t->w + npe_n_weights(&t->arch->npe);
    mdn_forward(mc, head, t->psi + p * P * t->n2 + jk, t->stride, &vox);
  } else {
    double x = 1.0 + t->delta[v] + t->arch->npe.eps;
    CB_CHECK(x > 0, CB_ERR_INPUT, "power-law truth: 1 + delta + eps = %g <= 0 in a voxel", x);
    extra = t->w[0] * log(x);
    mdn_forward(mc, t->w + 1, NULL, 0, &vox);
  }
  memset(out, 0, nm * sizeof *out);
  for (int i = 0; i < mc->n_gauss; i++) {
    const double lc = vox.ln_alpha[i] + extra - log(vox.sigma[i]) - 0.5 * log(2.0 * M_PI);
    const double mu = vox.mu[i], is = 1.0 / vox.sigma[i];
    for (size_t b = 0; b < nm; b++) {
      double z = (lnm[b] - mu) * is;
      out[b] += exp(lc - 0.5 * z * z);
    }
  }
  if (!t->checked) {
    t->checked = true;
    for (size_t b = 0; b < nm; b++) {
      double want = exp(mdn_ln_dndlnm(mc, &vox, lnm[b], 0, NULL) + extra);
      CB_CHECK(fabs(out[b] - want) <= 1e-10 * want + 1e-300, CB_ERR_INTERNAL,
               "npe truth: mixture %.17g differs from mdn_ln_dndlnm's %.17g", out[b], want);
    }
  }
  return CB_OK;
}

/* ------------------------------------------------------------ options */

static int read_options(options *o, mock_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  bool weights_set = false;
  CB_CALL(ic_config_read(o, &cfg->ic));
  CB_CALL(options_choice(o, "-truth",
                         "halo model: st-pbs (Sheth-Tormen + peak-background split) or npe "
                         "(the engine with -weights)",
                         TRUTH_CHOICES, "st-pbs", &cfg->truth));
  CB_CALL(options_string(o, "-weights", "weights file (HDF5) of the npe truth", NULL, cfg->weights,
                         sizeof cfg->weights, &weights_set));
  CB_CALL(options_real(o, "-mass_threshold", "Mth [M_sun/h]: halos above it are drawn", 2e12,
                       &cfg->mth));
  CB_CALL(options_int(o, "-lpt_order", "LPT order of the forward model: 1 (Zel'dovich) or 2", 1,
                      &cfg->lpt_order));
  double def_r = cfg->ic.n_grid > 0 ? 2.0 * cfg->ic.box_size / (double)cfg->ic.n_grid : 0;
  CB_CALL(options_real(o, "-smoothing_radius",
                       "Gaussian radius R of the st-pbs environment [Mpc/h] (default 2 voxels)",
                       def_r, &cfg->radius));
  CB_CALL(options_int(o, "-halo_seed", "seed of the halos' random numbers (default: -seed)",
                      (long)cfg->ic.seed, &cfg->halo_seed));
  CB_CALL(options_string(o, "-o", "output HDF5 file", "mock.h5", cfg->out, sizeof cfg->out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &cfg->overwrite));
  CB_CALL(options_finish(o));

  /* every value is the same on every rank: these checks are collective */
  CB_CHECK(isfinite(cfg->mth) && cfg->mth > 0 && cfg->mth < MOCK_MASS_MAX, CB_ERR_INPUT,
           "-mass_threshold must be positive and below %g M_sun/h (got %g)", MOCK_MASS_MAX,
           cfg->mth);
  CB_CHECK(cfg->halo_seed >= 0, CB_ERR_INPUT, "-halo_seed must be zero or positive (got %ld)",
           cfg->halo_seed);
  CB_CHECK(cfg->lpt_order == 1 || cfg->lpt_order == 2, CB_ERR_INPUT,
           "-lpt_order must be 1 or 2 (got %ld)", cfg->lpt_order);
  CB_CHECK(cfg->radius >= 0, CB_ERR_INPUT, "-smoothing_radius must be zero or positive (got %g)",
           cfg->radius);
  if (cfg->truth == TRUTH_NPE)
    CB_CHECK(weights_set, CB_ERR_INPUT, "-truth npe needs -weights FILE");
  else
    CB_CHECK(!weights_set, CB_ERR_INPUT,
             "-weights '%s' is only used with -truth npe (the truth is st-pbs)", cfg->weights);
  return CB_OK;
}

/* ------------------------------------------------------------ the run */

typedef struct mock_state {
  field *f;
  cosmology *c;
  forward *fw;
  mock *m;
  mock_stpbs *stpbs;
  npe *net;
  weights_arch arch;
  double *w;
  double *s, *delta_L, *delta, *env, *expected;
  catalogue *cat;
} mock_state;

static void state_free(mock_state *S) {
  catalogue_destroy(&S->cat);
  mock_stpbs_destroy(&S->stpbs);
  mock_destroy(&S->m);
  npe_destroy(&S->net);
  forward_destroy(&S->fw);
  cosmology_destroy(&S->c);
  fftw_free(S->s);
  fftw_free(S->delta_L);
  fftw_free(S->delta);
  fftw_free(S->env);
  fftw_free(S->expected);
  free(S->w);
  field_destroy(&S->f);
}

static int make_fields(const mock_config *cfg, MPI_Comm comm, mock_state *S) {
  CB_CALL(field_create(comm, cfg->ic.n_grid, cfg->ic.box_size, 1, &S->f));
  field *f = S->f;
  S->s = field_alloc_real(f);
  S->delta_L = field_alloc_real(f);
  S->delta = field_alloc_real(f);
  S->env = field_alloc_real(f);
  S->expected = field_alloc_real(f);
  CB_CHECK(S->s && S->delta_L && S->delta && S->env && S->expected, CB_ERR_MEM,
           "out of memory for %ld^3 fields", cfg->ic.n_grid);
  CB_CALL(cosmology_create(&cfg->ic.cosmo, cfg->ic.pk_file, &S->c));
  CB_CALL(forward_create(f, S->c, (int)cfg->lpt_order, &S->fw));
  CB_CALL(ic_white_noise(f, cfg->ic.seed, S->s));
  CB_CALL(forward_run(S->fw, S->s, S->delta_L, S->delta));
  return CB_OK;
}

static int draw(const mock_config *cfg, mock_state *S) {
  field *f = S->f;
  CB_CALL(mock_create(f, cfg->mth, MOCK_MASS_MAX, MOCK_DLNM, &S->m));
  if (cfg->truth == TRUTH_STPBS) {
    size_t np;
    const double *pos = forward_positions(S->fw, &np);
    CB_CHECK(pos != NULL, CB_ERR_MEM, "out of memory for the positions of %zu particles", np);
    CB_CALL(mock_environment(f, S->delta_L, cfg->radius, np, pos, S->env));
    CB_CALL(mock_stpbs_create(S->m, S->c, S->delta, S->env, &S->stpbs));
    CB_CALL(mock_sample(S->m, (unsigned long)cfg->halo_seed, mock_stpbs_dndlnm, S->stpbs,
                        S->expected, &S->cat));
    return CB_OK;
  }
  npe_truth t = {.arch = &S->arch, .w = S->w, .n2 = f->n * f->n, .delta = S->delta};
  if (S->arch.model == WEIGHTS_NPE) {
    CB_CALL(npe_create(f, &S->arch.npe, &S->net));
    CB_CALL(npe_forward(S->net, S->delta, S->w, &t.psi));
    t.stride = npe_feature_stride(S->net);
  }
  CB_CALL(
      mock_sample(S->m, (unsigned long)cfg->halo_seed, npe_truth_dndlnm, &t, S->expected, &S->cat));
  return CB_OK;
}

static int write_truth_attrs(h5file *h, const mock_config *cfg, const mock_state *S) {
  CB_CALL(h5io_attr_write_string(h, "/", "truth", cfg->truth == TRUTH_STPBS ? "st-pbs" : "npe"));
  CB_CALL(h5io_attr_write_long(h, "/", "lpt_order", cfg->lpt_order));
  CB_CALL(h5io_attr_write_long(h, "/", "halo_seed", cfg->halo_seed));
  CB_CALL(h5io_attr_write_double(h, "/", "truth_ln_l", mock_truth_ln_l(S->m)));
  CB_CALL(h5io_attr_write_double(h, "/", "mass_max", MOCK_MASS_MAX));
  CB_CALL(h5io_attr_write_double(h, "/", "mass_grid_step", MOCK_DLNM));
  if (cfg->truth == TRUTH_STPBS) {
    CB_CALL(h5io_attr_write_double(h, "/", "smoothing_radius", cfg->radius));
    CB_CALL(h5io_attr_write_double(h, "/", "delta_c", COSMO_DELTA_C));
    CB_CALL(h5io_attr_write_double(h, "/", "st_A", COSMO_ST_A));
    CB_CALL(h5io_attr_write_double(h, "/", "st_a", COSMO_ST_a));
    CB_CALL(h5io_attr_write_double(h, "/", "st_p", COSMO_ST_p));
    CB_CALL(h5io_write_field(h, "/environment", S->f, S->env));
    CB_CALL(h5io_attr_write_string(h, "/environment", "description",
                                   "delta_L smoothed with a Gaussian of radius smoothing_radius, "
                                   "carried to the Eulerian voxels by the particles (CIC mean)"));
  } else {
    char desc[512];
    weights_arch_describe(&S->arch, desc, sizeof desc);
    CB_CALL(h5io_attr_write_string(h, "/", "weights_file", cfg->weights));
    CB_CALL(h5io_attr_write_string(h, "/", "truth_model", desc));
    size_t nw = weights_count(&S->arch);
    CB_CALL(h5io_write_array(h, "/truth/weights", 1, &nw, S->w));
  }
  size_t nm = mock_n_mass(S->m);
  CB_CALL(h5io_write_array(h, "/truth/log_mass", 1, &nm, mock_lnm(S->m)));
  CB_CALL(h5io_write_array(h, "/truth/dndlnm_mean", 1, &nm, mock_mean_dndlnm(S->m)));
  return CB_OK;
}

static int write_output(const options *o, const mock_config *cfg, const mock_state *S,
                        MPI_Comm comm) {
  h5file *h = NULL;
  CB_CALL(h5io_create(comm, cfg->out, cfg->overwrite, &h));
  int st = h5io_write_provenance(h, o);
  if (st == CB_OK) st = ic_config_write_attrs(h, &cfg->ic);
  if (st == CB_OK) st = h5io_write_field(h, "/white_noise", S->f, S->s);
  if (st == CB_OK) st = h5io_attr_write_string(h, "/white_noise", "spectrum", "white");
  if (st == CB_OK) st = h5io_write_field(h, "/delta_linear", S->f, S->delta_L);
  if (st == CB_OK) st = h5io_attr_write_string(h, "/delta_linear", "spectrum", "linear");
  if (st == CB_OK) st = h5io_write_field(h, "/delta", S->f, S->delta);
  if (st == CB_OK) st = h5io_write_field(h, "/expected_count", S->f, S->expected);
  if (st == CB_OK) st = catalogue_write(h, S->cat);
  if (st == CB_OK) st = write_truth_attrs(h, cfg, S);
  if (st == CB_OK) st = h5io_commit(&h);
  h5io_abort(&h);
  CB_CALL(st);
  return CB_OK;
}

static int mock_run(options *o, MPI_Comm comm) {
  mock_config cfg;
  CB_CALL(read_options(o, &cfg));
  CB_CALL(h5io_check_output(comm, cfg.out, cfg.overwrite)); /* before any work */

  double t0 = MPI_Wtime();
  mock_state S;
  memset(&S, 0, sizeof S);
  int st = CB_OK;
  if (cfg.truth == TRUTH_NPE) /* the weights file is checked before the fields are made */
    st = weights_read(comm, cfg.weights, &S.arch, &S.w);
  if (st == CB_OK) st = make_fields(&cfg, comm, &S);
  double t1 = MPI_Wtime();
  if (st == CB_OK) st = draw(&cfg, &S);
  if (st == CB_OK) {
    size_t n = catalogue_count(S.cat, comm);
    double mu = field_sum(S.f, S.expected);
    log_info("mock: %ld^3 grid, L = %g Mpc/h, seed %lu, halo seed %ld, truth %s, Mth = %g "
             "M_sun/h: %zu halos (expected %.1f; truth's ln L %.3f; forward model %.2f s, halos "
             "%.2f s on %d rank%s)",
             cfg.ic.n_grid, cfg.ic.box_size, cfg.ic.seed, cfg.halo_seed,
             cfg.truth == TRUTH_STPBS ? "st-pbs" : "npe", cfg.mth, n, mu, mock_truth_ln_l(S.m),
             t1 - t0, MPI_Wtime() - t1, S.f->size, S.f->size > 1 ? "s" : "");
    st = write_output(o, &cfg, &S, comm);
  }
  state_free(&S);
  CB_CALL(st);
  log_info("wrote '%s'", cfg.out);
  return CB_OK;
}

int cmd_mock(int argc, char **argv, MPI_Comm comm) {
  CB_CHECK(argc == 0, CB_ERR_INPUT, "unexpected argument '%s' (options start with '-')", argv[0]);
  options *o = NULL;
  CB_CALL(options_create(comm, "mock", "a mock universe: delta from a seed and its halo catalogue",
                         &o));
  int st = mock_run(o, comm);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
