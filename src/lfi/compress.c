/* compress: raw summaries of a simulation and their map to parameter space (MODEL.md 9, 10).
 *
 * Raw summaries, collectively on the group: the exact score at theta* (simulator_score), the
 * band powers of a field (power_measure, default shells k_f wide centred on k_f .. k_Ny), the
 * data themselves, or an IMNN's summaries. The affine map to parameter space is the
 * quasi-maximum-likelihood estimate of MODEL.md section 9, x = theta* + F^-1 dmu^T C^-1 (s - mu):
 * for the score it is exact (mu = 0, dmu^T C^-1 = I, F exact); for band powers and the identity
 * mu, C and dmu come from calibration simulations (MOPED). The inverse covariance carries the
 * Hartlap factor (n_s - n_raw - 2) / (n_s - 1), which removes the bias of inverting a sample
 * covariance. Small dense algebra with GSL (Cholesky). */
#include "cerberus/compress.h"

#include "cerberus/h5io.h"
#include "cerberus/imnn.h"
#include "cerberus/status.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int compress_options(options *o, compress_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  CB_CALL(options_choice(o, "-compressor",
                         "summaries: exact score at the fiducial, band powers (MOPED), the data "
                         "(MOPED), or an IMNN network file",
                         COMPRESS_CHOICES, "score", &cfg->kind));
  CB_CALL(options_string(o, "-network", "IMNN network file (-compressor imnn)", NULL, cfg->network,
                         sizeof cfg->network, NULL));
  int n = 0;
  CB_CALL(options_real_array(o, "-fiducial", "theta* of the compression (default the simulator's)",
                             cfg->fiducial, &n, SIMULATOR_MAX_PARAMS, &cfg->fiducial_set));
  cfg->n_fiducial = cfg->fiducial_set ? n : 0;
  int nd = 0;
  bool dset = false;
  CB_CALL(options_real_array(o, "-compress_dtheta",
                             "finite-difference steps of the calibration (default 10% of theta*)",
                             cfg->dtheta, &nd, SIMULATOR_MAX_PARAMS, &dset));
  if (!dset)
    for (int i = 0; i < SIMULATOR_MAX_PARAMS; i++) cfg->dtheta[i] = 0.0;
  CB_CALL(options_int(o, "-compress_n_s", "calibration: fiducial simulations", 200, &cfg->n_s));
  CB_CALL(options_int(o, "-compress_n_d", "calibration: seed-matched pairs per parameter", 100,
                      &cfg->n_d));
  return CB_OK;
}

/* A network file must be an IMNN's, trained for this simulator. Collective on sim->comm. */
static int network_check(simulator *sim, const char *path) {
  h5file *h = NULL;
  CB_CALL(h5io_open(sim->comm, path, &h));
  char model[64] = "", name[64] = "";
  int st = h5io_attr_read_string(h, "/", "model", model, sizeof model);
  if (st == CB_OK && strcmp(model, "imnn") != 0)
    st = CB_ERROR(CB_ERR_INPUT, "-network '%s' is not an IMNN network file (model '%s')", path,
                  model);
  if (st == CB_OK) st = h5io_attr_read_string(h, "/", "simulator", name, sizeof name);
  if (st == CB_OK && strcmp(name, sim->type->name) != 0)
    st = CB_ERROR(CB_ERR_INPUT,
                  "-network '%s' was trained for simulator '%s', not for '%s' (-simulator)", path,
                  name, sim->type->name);
  h5io_close(&h);
  return st;
}

typedef struct compress_net {
  imnn_model *m;
  imnn_net *net;
} compress_net;

/* Read the network, check it fits the simulator's data, make its workspace. The summaries'
 * statistics come from the file (theta*, mu, C, dmu/dtheta, F). Collective on sim->comm. */
static int imnn_open(compressor *c, const char *path) {
  simulator *sim = c->sim;
  compress_net *cn;
  CB_CALLOC(cn, 1);
  c->net = cn;
  CB_CALL(imnn_model_read(sim->comm, path, 0, &cn->m));
  const imnn_arch *a = &cn->m->arch;
  const bool field_front = a->front != IMNN_FRONT_IDENTITY;
  CB_CHECK(field_front == sim->is_field, CB_ERR_INPUT,
           "-network '%s' has the %s front end, which does not take the data of '%s'", path,
           imnn_front_name(a->front), sim->type->name);
  CB_CALL(
      imnn_model_check_input(cn->m, path, field_front ? (long)sim->field->n : (long)sim->n_data));
  CB_CHECK(!field_front || fabs(sim->field->L - a->box_size) <= 1e-9 * a->box_size, CB_ERR_INPUT,
           "-network '%s' was trained in a box of %g Mpc/h, the simulator's is %g", path,
           a->box_size, sim->field->L);
  CB_CHECK(a->n_params == c->n_params, CB_ERR_INPUT,
           "-network '%s' makes %d summaries, simulator '%s' has %d parameters", path, a->n_params,
           sim->type->name, c->n_params);
  CB_CALL(imnn_net_create(field_front ? sim->field : NULL, a, &cn->net));
  CB_CALL(imnn_net_set_scaling(cn->net, cn->m->shift, cn->m->scale));
  return CB_OK;
}

/* x = theta* + F^-1 dmu C^-1 (s - mu) with the network file's statistics (imnn_estimate). */
static void imnn_map(compressor *c) {
  const imnn_stats *st = &((compress_net *)c->net)->m->stats;
  const int p = c->n_params;
  for (int a = 0; a < p; a++) {
    c->theta_fid[a] = st->theta_fid[a];
    c->dtheta[a] = st->dtheta[a];
    c->mu[a] = st->mu[a];
  }
  for (int a = 0; a < p; a++)
    for (int r = 0; r < p; r++) {
      double v = 0.0;
      for (int b = 0; b < p; b++)
        for (int s = 0; s < p; s++)
          v += st->Finv[a * p + b] * st->dmu[b * p + s] * st->Cinv[s * p + r];
      c->M[a * p + r] = v;
    }
  for (int i = 0; i < p * p; i++) c->F[i] = st->F[i];
  c->calibrated = true;
}

static void compress_free(compressor *c) {
  if (c->net) {
    compress_net *cn = c->net;
    imnn_net_destroy(&cn->net);
    imnn_model_destroy(&cn->m);
    free(cn);
  }
  power_destroy(&c->pw);
  free(c->mu);
  free(c->M);
  free(c);
}

void compress_destroy(compressor **pc) {
  if (!pc || !*pc) return;
  compress_free(*pc);
  *pc = NULL;
}

int compress_create(simulator *sim, const compress_config *cfg, compressor **out) {
  *out = NULL;
  const int np = sim->n_params;
  const char *name = sim->type->name;
  int n_raw = 0;
  switch (cfg->kind) {
  case COMPRESS_SCORE:
    CB_CHECK(simulator_has_exact(sim), CB_ERR_INPUT,
             "-compressor score needs a simulator with an exact likelihood ('%s' has none)", name);
    n_raw = np;
    break;
  case COMPRESS_BANDPOWER:
    CB_CHECK(sim->is_field, CB_ERR_INPUT,
             "-compressor bandpower needs a field simulator ('%s' makes %zu numbers)", name,
             sim->n_data);
    break;
  case COMPRESS_IDENTITY:
    CB_CHECK(!sim->is_field && sim->n_data <= COMPRESS_MAX_RAW, CB_ERR_INPUT,
             "-compressor identity takes at most %d numbers that are not a field ('%s' makes "
             "%zu%s)",
             COMPRESS_MAX_RAW, name, sim->n_data, sim->is_field ? ", a field" : "");
    n_raw = (int)sim->n_data;
    break;
  case COMPRESS_IMNN:
    CB_CHECK(cfg->network[0], CB_ERR_INPUT, "-compressor imnn needs -network FILE");
    CB_CALL(network_check(sim, cfg->network));
    n_raw = np;
    break;
  default: return CB_ERROR(CB_ERR_INPUT, "-compressor: unknown kind %d", cfg->kind);
  }
  CB_CHECK(!cfg->fiducial_set || cfg->n_fiducial == np, CB_ERR_INPUT,
           "-fiducial has %d values, simulator '%s' has %d parameters", cfg->n_fiducial, name, np);
  compressor *c;
  CB_CALLOC(c, 1);
  c->kind = cfg->kind;
  c->sim = sim;
  c->n_params = np;
  for (int a = 0; a < np; a++) {
    c->theta_fid[a] = cfg->fiducial_set ? cfg->fiducial[a] : sim->fiducial[a];
    double d = cfg->dtheta[a];
    if (d == 0.0) d = c->theta_fid[a] != 0.0 ? 0.1 * fabs(c->theta_fid[a]) : 0.1;
    c->dtheta[a] = d;
  }
  int st = CB_OK;
  if (c->kind == COMPRESS_IMNN) st = imnn_open(c, cfg->network);
  if (c->kind == COMPRESS_BANDPOWER) {
    power_config pc = {0};
    st = power_create(sim->field, &pc, &c->pw);
    if (st == CB_OK) n_raw = c->pw->n_bins;
  }
  c->n_raw = n_raw;
  if (st == CB_OK) {
    c->mu = calloc((size_t)n_raw, sizeof(double));
    c->M = calloc((size_t)(np * n_raw), sizeof(double));
    if (!c->mu || !c->M) st = CB_ERROR(CB_ERR_MEM, "out of memory for the compressor");
  }
  if (st == CB_OK && c->kind == COMPRESS_IMNN) imnn_map(c);
  if (st == CB_OK && (c->kind == COMPRESS_BANDPOWER || c->kind == COMPRESS_IDENTITY)) {
    c->n_s = cfg->n_s;
    c->n_d = cfg->n_d;
    for (int a = 0; a < np && st == CB_OK; a++)
      if (!(isfinite(c->dtheta[a]) && c->dtheta[a] > 0.0))
        st = CB_ERROR(CB_ERR_INPUT, "-compress_dtheta: step %d is %g, must be positive", a,
                      c->dtheta[a]);
    if (st == CB_OK && c->n_s <= n_raw + 2)
      st = CB_ERROR(CB_ERR_INPUT,
                    "-compress_n_s %ld: the calibration needs more fiducial simulations than "
                    "summaries + 2 (%d)",
                    c->n_s, n_raw + 2);
    if (st == CB_OK && c->n_d < 2)
      st = CB_ERROR(CB_ERR_INPUT, "-compress_n_d %ld: at least 2 pairs per parameter", c->n_d);
  }
  if (st == CB_OK && c->kind == COMPRESS_SCORE) {
    st = simulator_fisher(sim, c->theta_fid, c->F);
    if (st == CB_OK) {
      gsl_matrix_view Fv = gsl_matrix_view_array(c->F, (size_t)np, (size_t)np);
      gsl_matrix *L = gsl_matrix_alloc((size_t)np, (size_t)np);
      gsl_matrix_memcpy(L, &Fv.matrix);
      gsl_error_handler_t *old = gsl_set_error_handler_off();
      int gs = gsl_linalg_cholesky_decomp1(L);
      if (gs == GSL_SUCCESS) gs = gsl_linalg_cholesky_invert(L);
      gsl_set_error_handler(old);
      if (gs != GSL_SUCCESS)
        st = CB_ERROR(CB_ERR_NUMERIC, "the exact Fisher matrix of '%s' at the fiducial is singular",
                      name);
      else
        for (int i = 0; i < np * np; i++) c->M[i] = L->data[i];
      gsl_matrix_free(L);
      c->calibrated = st == CB_OK;
    }
  }
  if (st != CB_OK) {
    compress_free(c);
    CB_CALL(st);
  }
  *out = c;
  return CB_OK;
}

int compress_raw(compressor *c, const double *data, double *s) {
  switch (c->kind) {
  case COMPRESS_SCORE: CB_CALL(simulator_score(c->sim, c->theta_fid, data, s)); break;
  case COMPRESS_BANDPOWER:
    CB_CALL(power_measure(c->pw, data));
    memcpy(s, c->pw->pk, (size_t)c->n_raw * sizeof(double));
    break;
  case COMPRESS_IDENTITY: memcpy(s, data, (size_t)c->n_raw * sizeof(double)); break;
  case COMPRESS_IMNN: {
    compress_net *cn = c->net;
    CB_CALL(imnn_net_apply(cn->net, cn->m->w, data, s));
    break;
  }
  default: return CB_ERROR(CB_ERR_INTERNAL, "compress_raw: kind %d", c->kind);
  }
  return CB_OK;
}

int compress_calibrate(compressor *c, const double *fid, const double *plus, const double *minus) {
  const size_t nr = (size_t)c->n_raw, np = (size_t)c->n_params;
  const long ns = c->n_s, nd = c->n_d;
  CB_CHECK(c->kind != COMPRESS_SCORE, CB_ERR_INTERNAL, "the score compressor needs no calibration");
  gsl_matrix *C = gsl_matrix_calloc(nr, nr), *D = gsl_matrix_calloc(nr, np);
  gsl_matrix *F = gsl_matrix_calloc(np, np);
  CB_CHECK(C && D && F, CB_ERR_MEM, "out of memory for the calibration");
  for (size_t r = 0; r < nr; r++) {
    double m = 0.0;
    for (long i = 0; i < ns; i++) m += fid[(size_t)i * nr + r];
    c->mu[r] = m / (double)ns;
  }
  for (long i = 0; i < ns; i++)
    for (size_t r = 0; r < nr; r++) {
      double dr = fid[(size_t)i * nr + r] - c->mu[r];
      for (size_t q = 0; q <= r; q++)
        C->data[r * nr + q] += dr * (fid[(size_t)i * nr + q] - c->mu[q]) / (double)(ns - 1);
    }
  for (size_t r = 0; r < nr; r++)
    for (size_t q = 0; q < r; q++) C->data[q * nr + r] = C->data[r * nr + q];
  for (size_t a = 0; a < np; a++)
    for (size_t r = 0; r < nr; r++) {
      double d = 0.0;
      for (long j = 0; j < nd; j++) {
        size_t row = (a * (size_t)nd + (size_t)j) * nr + r;
        d += plus[row] - minus[row];
      }
      D->data[r * np + a] = d / ((double)nd * c->dtheta[a]); /* D = dmu^T, n_raw x np */
    }
  /* Y = C^-1 D (Hartlap), F = D^T Y, M = F^-1 Y^T */
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  int gs = gsl_linalg_cholesky_decomp1(C);
  gsl_matrix *Y = gsl_matrix_alloc(nr, np);
  const double hartlap = (double)(ns - (long)nr - 2) / (double)(ns - 1);
  if (gs == GSL_SUCCESS) {
    gsl_matrix_memcpy(Y, D);
    for (size_t a = 0; a < np && gs == GSL_SUCCESS; a++) {
      gsl_vector_view col = gsl_matrix_column(Y, a);
      gs = gsl_linalg_cholesky_svx(C, &col.vector);
    }
    gsl_matrix_scale(Y, hartlap);
  }
  if (gs == GSL_SUCCESS) {
    for (size_t a = 0; a < np; a++)
      for (size_t b = 0; b < np; b++) {
        double s = 0.0;
        for (size_t r = 0; r < nr; r++) s += D->data[r * np + a] * Y->data[r * np + b];
        F->data[a * np + b] = s;
      }
    for (size_t a = 0; a < np; a++)
      for (size_t b = 0; b < np; b++) c->F[a * np + b] = F->data[a * np + b];
    gs = gsl_linalg_cholesky_decomp1(F);
    if (gs == GSL_SUCCESS) gs = gsl_linalg_cholesky_invert(F);
  }
  gsl_set_error_handler(old);
  int st = CB_OK;
  if (gs != GSL_SUCCESS || !isfinite(c->F[0]))
    st = CB_ERROR(CB_ERR_NUMERIC,
                  "the %s summaries of '%s' carry no usable Fisher information at the fiducial "
                  "(singular covariance or Fisher matrix)",
                  c->kind == COMPRESS_BANDPOWER ? "bandpower" : "identity", c->sim->type->name);
  else
    for (size_t a = 0; a < np; a++)
      for (size_t r = 0; r < nr; r++) {
        double s = 0.0;
        for (size_t b = 0; b < np; b++) s += F->data[a * np + b] * Y->data[r * np + b];
        c->M[a * nr + r] = s;
      }
  gsl_matrix_free(C);
  gsl_matrix_free(D);
  gsl_matrix_free(F);
  gsl_matrix_free(Y);
  c->calibrated = st == CB_OK;
  return st;
}

void compress_apply(const compressor *c, const double *s, double *x) {
  const int np = c->n_params, nr = c->n_raw;
  for (int a = 0; a < np; a++) {
    double v = c->theta_fid[a];
    for (int r = 0; r < nr; r++) v += c->M[a * nr + r] * (s[r] - c->mu[r]);
    x[a] = v;
  }
}

double compress_distance(const compressor *c, const double *x, const double *y) {
  const int np = c->n_params;
  double s = 0.0;
  for (int a = 0; a < np; a++)
    for (int b = 0; b < np; b++) s += (x[a] - y[a]) * c->F[a * np + b] * (x[b] - y[b]);
  return sqrt(fmax(s, 0.0));
}
