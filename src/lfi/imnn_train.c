/* imnn_train: the IMNN's training loop over rank groups (MODEL.md section 9;
 * include/cerberus/imnn_train.h for the layout of the sets, the blocks and the seeds).
 *
 * Work is split by blocks of consecutive simulations, block b on group b mod G
 * (groups_static_owns); groups_static_gather puts the per-simulation rows (features, summaries)
 * and the per-block gradient rows on every rank, where the loss, its gradient with respect to
 * the summaries and Adam's step are computed identically. Keys of the seeds: training set
 * r (renewal r) at r * 2^32, validation at 2^48, test at 2^49; simulation i of a set uses key
 * key0 + i for the fiducial ones and key0 + j for both sides of pair j. */
#include "cerberus/imnn_train.h"

#include "cerberus/log.h"
#include "cerberus/status.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct simset {
  int n_fid, n_pairs, n; /* this view (a whole set or a batch): n = n_fid + 2 p n_pairs */
  int N_fid, N_pairs;    /* the whole set */
  int f0, j0;            /* the view's first fiducial simulation and first pair */
  uint64_t key0;
  double *feat;    /* n x n_feat: cached features (identity, bandpower; conv: at the start) */
  double **fields; /* conv: the whole set's fields (local slabs) this rank has kept, or NULL */
  bool store;      /* a view whose blocks own the simulations they run: keep their fields */
  double *x;       /* n x p: summaries */
  double *gx;      /* n x p: d loss / d x */
} simset;

typedef struct trainer {
  groups *g;
  simulator *sim;
  imnn_model *m;
  imnn_net *net;
  const imnn_train_config *cfg;
  int p, n_feat, B;
  size_t nw;
  bool cached;
  double *data; /* one simulation's local data */
  long n_kept;  /* conv: fields kept on this rank */
  double *rows; /* gather buffer, max over uses */
  size_t rows_len;
  double *featv, *dfeat;
  long n_sims;
} trainer;

static int set_alloc(trainer *t, simset *s, int n_fid, int n_pairs, uint64_t key0) {
  s->N_fid = s->n_fid = n_fid;
  s->N_pairs = s->n_pairs = n_pairs;
  s->f0 = s->j0 = 0;
  s->n = n_fid + 2 * t->p * n_pairs;
  s->key0 = key0;
  s->feat = calloc((size_t)s->n * (size_t)t->n_feat, sizeof(double));
  s->x = calloc((size_t)s->n * (size_t)t->p, sizeof(double));
  s->gx = calloc((size_t)s->n * (size_t)t->p, sizeof(double));
  CB_CHECK(s->feat && s->x && s->gx, CB_ERR_MEM, "out of memory for a set of %d simulations", s->n);
  if (!t->cached) {
    s->fields = calloc((size_t)s->n, sizeof(double *));
    CB_CHECK(s->fields, CB_ERR_MEM, "out of memory for a set of %d simulations", s->n);
  }
  return CB_OK;
}

/* Forget the kept fields (a renewed training set). */
static void set_forget(trainer *t, simset *s) {
  for (int i = 0; s->fields && i < s->n; i++)
    if (s->fields[i]) {
      free(s->fields[i]);
      s->fields[i] = NULL;
      t->n_kept--;
    }
}

static void set_free(trainer *t, simset *s) {
  set_forget(t, s);
  free(s->fields);
  free(s->feat);
  free(s->x);
  free(s->gx);
  memset(s, 0, sizeof *s);
}

/* The whole set's index of simulation i of a view. */
static int set_global(const trainer *t, const simset *s, int i) {
  if (i < s->n_fid) return s->f0 + i;
  int k = i - s->n_fid, side = k / (t->p * s->n_pairs), a = (k / s->n_pairs) % t->p,
      j = k % s->n_pairs;
  return s->N_fid + (side * t->p + a) * s->N_pairs + s->j0 + j;
}

/* Parameters and seed of simulation i of a view. */
static void set_point(const trainer *t, const simset *s, int i, double *theta, uint64_t *seed) {
  const imnn_stats *st = &t->m->stats;
  for (int a = 0; a < t->p; a++) theta[a] = st->theta_fid[a];
  long key = s->f0 + i;
  if (i >= s->n_fid) {
    int k = i - s->n_fid, side = k / (t->p * s->n_pairs), a = (k / s->n_pairs) % t->p,
        j = k % s->n_pairs;
    theta[a] += (side == 0 ? 0.5 : -0.5) * st->dtheta[a];
    key = s->j0 + j;
  }
  *seed = groups_task_seed(t->cfg->seed, s->key0 + (uint64_t)key);
}

/* Batch b of nb of a whole set: its share of the fiducial simulations and of the pairs. */
static simset set_batch(const simset *s, int b, int nb, int p) {
  simset v = *s;
  v.f0 = (int)((long)s->N_fid * b / nb);
  v.n_fid = (int)((long)s->N_fid * (b + 1) / nb) - v.f0;
  v.j0 = (int)((long)s->N_pairs * b / nb);
  v.n_pairs = (int)((long)s->N_pairs * (b + 1) / nb) - v.j0;
  v.n = v.n_fid + 2 * p * v.n_pairs;
  return v;
}

static int run_sim(trainer *t, const double *theta, uint64_t seed) {
  CB_CALL(simulator_run(t->sim, theta, seed, t->data));
  t->n_sims++;
  CB_CHECK(simulator_data_finite(t->sim, t->data), CB_ERR_NUMERIC,
           "simulator '%s' gave data that are not finite at the training parameters",
           t->sim->type->name);
  return CB_OK;
}

/* The data of simulation i of a view: its kept field, or a run (kept if the view stores and
 * the set keeps fields). */
static int sim_data(trainer *t, simset *s, int i, const double **out) {
  const int g = set_global(t, s, i);
  if (s->fields && s->fields[g]) {
    *out = s->fields[g];
    return CB_OK;
  }
  double theta[IMNN_MAX_PARAMS];
  uint64_t seed;
  set_point(t, s, i, theta, &seed);
  CB_CALL(run_sim(t, theta, seed));
  *out = t->data;
  if (s->fields && s->store) {
    const size_t nl = t->sim->n_local;
    double *keep = malloc(sizeof(double) * (nl ? nl : 1));
    CB_CHECK(keep, CB_ERR_MEM,
             "out of memory keeping simulated fields (%ld kept on this rank): use fewer "
             "simulations",
             t->n_kept);
    memcpy(keep, t->data, sizeof(double) * nl);
    s->fields[g] = keep;
    t->n_kept++;
  }
  return CB_OK;
}

/* Features of simulation i into out (from the cache, or through the front end). */
static int sim_features(trainer *t, simset *s, int i, const double *w, double *out) {
  if (t->cached) {
    memcpy(out, s->feat + (size_t)set_global(t, s, i) * t->n_feat,
           sizeof(double) * (size_t)t->n_feat);
    return CB_OK;
  }
  const double *d;
  CB_CALL(sim_data(t, s, i, &d));
  CB_CALL(imnn_net_features(t->net, w, d, out));
  return CB_OK;
}

static int n_blocks(const trainer *t, int n) {
  return (n + t->B - 1) / t->B;
}

static int need_rows(trainer *t, size_t len) {
  if (len <= t->rows_len) return CB_OK;
  free(t->rows);
  t->rows = calloc(len, sizeof(double));
  t->rows_len = t->rows ? len : 0;
  CB_CHECK(t->rows, CB_ERR_MEM, "out of memory for %zu gathered values", len);
  return CB_OK;
}

/* Per-simulation rows of `len` values (fn fills row i) gathered into out (n x len). */
typedef int (*row_fn)(trainer *t, simset *s, int i, double *row);
static int gather_rows(trainer *t, simset *s, size_t len, row_fn fn, double *out) {
  const int nb = n_blocks(t, s->n);
  const size_t blen = (size_t)t->B * len;
  CB_CALL(need_rows(t, (size_t)nb * blen));
  for (int b = 0; b < nb; b++) {
    if (!groups_static_owns(t->g, b)) continue;
    for (int i = b * t->B; i < s->n && i < (b + 1) * t->B; i++)
      CB_CALL(fn(t, s, i, t->rows + (size_t)b * blen + (size_t)(i - b * t->B) * len));
  }
  CB_CALL(groups_static_gather(t->g, nb, blen, t->rows));
  memcpy(out, t->rows, sizeof(double) * (size_t)s->n * len);
  return CB_OK;
}

static int row_features(trainer *t, simset *s, int i, double *row) {
  const double *d;
  CB_CALL(sim_data(t, s, i, &d));
  CB_CALL(imnn_net_features(t->net, t->m->w, d, row));
  return CB_OK;
}

static int row_field_moments(trainer *t, simset *s, int i, double *row) {
  const double *d;
  CB_CALL(sim_data(t, s, i, &d));
  field *f = t->sim->field;
  double s1 = 0, s2 = 0;
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    s1 += d[v];
    s2 += d[v] * d[v];
  }
  row[0] = field_allreduce_sum(f, s1);
  row[1] = field_allreduce_sum(f, s2);
  return CB_OK;
}

static int row_summary(trainer *t, simset *s, int i, double *row) {
  CB_CALL(sim_features(t, s, i, t->m->w, t->featv));
  imnn_net_head(t->net, t->m->w, t->featv, row);
  return CB_OK;
}

static int set_forward(trainer *t, simset *s) {
  CB_CALL(gather_rows(t, s, (size_t)t->p, row_summary, s->x));
  return CB_OK;
}

/* grad = sum over the set of d loss / d w, in block order. */
static int set_backward(trainer *t, simset *s, double *grad) {
  const int nb = n_blocks(t, s->n);
  CB_CALL(need_rows(t, (size_t)nb * t->nw));
  memset(t->rows, 0, sizeof(double) * (size_t)nb * t->nw);
  double x[IMNN_MAX_PARAMS];
  for (int b = 0; b < nb; b++) {
    if (!groups_static_owns(t->g, b)) continue;
    double *gb = t->rows + (size_t)b * t->nw;
    for (int i = b * t->B; i < s->n && i < (b + 1) * t->B; i++) {
      CB_CALL(sim_features(t, s, i, t->m->w, t->featv));
      imnn_net_head(t->net, t->m->w, t->featv, x);
      imnn_net_head_backward(t->net, t->m->w, s->gx + (size_t)i * t->p, gb, t->dfeat);
      CB_CALL(imnn_net_front_backward(t->net, t->dfeat, gb));
    }
  }
  CB_CALL(groups_static_gather(t->g, nb, t->nw, t->rows));
  memset(grad, 0, sizeof(double) * t->nw);
  for (int b = 0; b < nb; b++)
    for (size_t k = 0; k < t->nw; k++) grad[k] += t->rows[(size_t)b * t->nw + k];
  return CB_OK;
}

static int set_stats(trainer *t, simset *s, imnn_stats *st, imnn_loss *L, bool grad) {
  const int p = t->p;
  const double *x = s->x;
  return imnn_stats_compute(&t->cfg->reg, s->n_fid, x, s->n_pairs, x + (size_t)s->n_fid * p,
                            x + ((size_t)s->n_fid + (size_t)p * s->n_pairs) * p, st, L,
                            grad ? s->gx : NULL, grad ? s->gx + (size_t)s->n_fid * p : NULL,
                            grad ? s->gx + ((size_t)s->n_fid + (size_t)p * s->n_pairs) * p : NULL);
}

/* Features of a set (cached front ends). */
static int set_prepare(trainer *t, simset *s) {
  if (t->cached) CB_CALL(gather_rows(t, s, (size_t)t->n_feat, row_features, s->feat));
  return CB_OK;
}

/* Standardisation from the fiducial simulations of the first training set. */
static int set_scaling(trainer *t, simset *s) {
  imnn_model *m = t->m;
  if (t->cached) {
    const int nf = t->n_feat;
    for (int k = 0; k < nf; k++) {
      double mu = 0, var = 0;
      for (int i = 0; i < s->n_fid; i++) mu += s->feat[(size_t)i * nf + k];
      mu /= s->n_fid;
      for (int i = 0; i < s->n_fid; i++) {
        double d = s->feat[(size_t)i * nf + k] - mu;
        var += d * d;
      }
      var /= (s->n_fid - 1);
      m->shift[k] = mu;
      m->scale[k] = var > 0 && isfinite(var) ? sqrt(var) : 1.0;
    }
  } else {
    simset fid = *s;
    fid.n = s->n_fid; /* the fiducial ones only */
    double *mom = calloc((size_t)fid.n * 2, sizeof(double));
    CB_CHECK(mom, CB_ERR_MEM, "out of memory for the field moments");
    int st = gather_rows(t, &fid, 2, row_field_moments, mom);
    double s1 = 0, s2 = 0, nv = (double)t->sim->n_data * fid.n;
    for (int i = 0; !st && i < fid.n; i++) {
      s1 += mom[2 * i];
      s2 += mom[2 * i + 1];
    }
    free(mom);
    CB_CALL(st);
    double mu = s1 / nv, var = s2 / nv - mu * mu;
    m->shift[0] = mu;
    m->scale[0] = var > 0 ? sqrt(var) : 1.0;
    /* the pooled features at the initial weights, standardised over the fiducial simulations;
     * a linear head's start needs those of the whole set */
    CB_CALL(imnn_net_set_scaling(t->net, m->shift, m->scale));
    const int nf = t->n_feat;
    const double *fe = s->feat;
    CB_CALL(gather_rows(t, m->arch.n_hidden == 0 ? s : &fid, (size_t)nf, row_features, s->feat));
    for (int k = 0; k < nf; k++) {
      double fm = 0, fv = 0;
      for (int i = 0; i < fid.n; i++) fm += fe[(size_t)i * nf + k] / fid.n;
      for (int i = 0; i < fid.n; i++)
        fv += (fe[(size_t)i * nf + k] - fm) * (fe[(size_t)i * nf + k] - fm) / (fid.n - 1);
      m->shift[1 + k] = fm;
      m->scale[1 + k] = fv > 0 && isfinite(fv) ? sqrt(fv) : 1.0;
    }
  }
  CB_CALL(imnn_net_set_scaling(t->net, m->shift, m->scale));
  return CB_OK;
}

/* A linear head (no hidden layer) starts from the best linear compression of the training set's
 * features (for conv, at the initial convolution weights) (MOPED: W = M^-1 D C^-1 with D the
 * features' finite-difference mean derivatives, C their fiducial covariance and F = D C^-1 D^T = M
 * M^T, so that the summaries have unit covariance; b = -W mean): Adam then only refines it. Plain
 * Adam from random weights creeps towards this optimum (0.974 of the exact det F on the 32^3 grf
 * after 100 epochs, its training det F flat). Left at the random weights (with a line) if C or F is
 * singular. */
static int linear_init(trainer *t, simset *s) {
  const imnn_model *m = t->m;
  const int nf = t->n_feat, p = t->p, nfid = s->N_fid, np = s->N_pairs;
  const int o = m->arch.front == IMNN_FRONT_CONV; /* conv: scale entry 0 is the field's */
  if (m->arch.n_hidden != 0) return CB_OK;
  double *mean = calloc((size_t)nf, sizeof(double)), *C = calloc((size_t)nf * nf, sizeof(double));
  double *Y = calloc((size_t)nf * p, sizeof(double)), *z = calloc((size_t)nf, sizeof(double));
  int st = CB_OK;
  if (!mean || !C || !Y || !z) {
    st = CB_ERROR(CB_ERR_MEM, "out of memory for the linear initialisation");
    goto done;
  }
#define FEAT(i, k) ((s->feat[(size_t)(i)*nf + (k)] - m->shift[o + (k)]) / m->scale[o + (k)])
  for (int i = 0; i < nfid; i++)
    for (int k = 0; k < nf; k++) mean[k] += FEAT(i, k) / nfid;
  for (int i = 0; i < nfid; i++) {
    for (int k = 0; k < nf; k++) z[k] = FEAT(i, k) - mean[k];
    for (int k = 0; k < nf; k++)
      for (int l = 0; l <= k; l++) C[k * nf + l] += z[k] * z[l] / (nfid - 1);
  }
  for (int k = 0; k < nf; k++)
    for (int l = 0; l < k; l++) C[l * nf + k] = C[k * nf + l];
  /* Y (nf x p): column a is D_a, then C^-1 D_a */
  for (int a = 0; a < p; a++)
    for (int j = 0; j < np; j++) {
      const int ip = nfid + a * np + j, im = nfid + (p + a) * np + j;
      for (int k = 0; k < nf; k++)
        Y[k * p + a] += (FEAT(ip, k) - FEAT(im, k)) / (np * m->stats.dtheta[a]);
    }
#undef FEAT
  double *Dt = malloc(sizeof(double) * (size_t)nf * p);
  if (!Dt) {
    st = CB_ERROR(CB_ERR_MEM, "out of memory for the linear initialisation");
    goto done;
  }
  memcpy(Dt, Y, sizeof(double) * (size_t)nf * p);
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  gsl_matrix_view Cm = gsl_matrix_view_array(C, (size_t)nf, (size_t)nf);
  int e = gsl_linalg_cholesky_decomp1(&Cm.matrix);
  for (int a = 0; !e && a < p; a++) {
    gsl_vector_view col = gsl_vector_view_array_with_stride(Y + a, (size_t)p, (size_t)nf);
    e = gsl_linalg_cholesky_svx(&Cm.matrix, &col.vector);
  }
  double F[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  for (int a = 0; !e && a < p; a++)
    for (int b = 0; b < p; b++) {
      double f = 0;
      for (int k = 0; k < nf; k++) f += Dt[k * p + a] * Y[k * p + b];
      F[a * p + b] = f;
    }
  for (int a = 0; !e && a < p; a++) /* symmetrise the rounding */
    for (int b = 0; b < a; b++) F[a * p + b] = F[b * p + a] = 0.5 * (F[a * p + b] + F[b * p + a]);
  gsl_matrix_view Fm = gsl_matrix_view_array(F, (size_t)p, (size_t)p);
  if (!e) e = gsl_linalg_cholesky_decomp1(&Fm.matrix);
  gsl_set_error_handler(old);
  free(Dt);
  bool ok = !e;
  for (int i = 0; ok && i < nf * p; i++) ok = isfinite(Y[i]);
  if (!ok) {
    log_info("imnn train: the features' covariance or Fisher matrix is singular: the linear head "
             "starts from random weights");
    goto done;
  }
  /* W (p x nf) = M^-1 Y^T, M lower triangular (forward substitution); b = -W mean */
  double *W = t->m->w + t->nw - (size_t)p * (nf + 1), *bias = W + (size_t)p * nf; /* the head */
  for (int a = 0; a < p; a++)
    for (int k = 0; k < nf; k++) {
      double v = Y[k * p + a];
      for (int b = 0; b < a; b++) v -= F[a * p + b] * W[(size_t)b * nf + k];
      W[(size_t)a * nf + k] = v / F[a * p + a];
    }
  for (int a = 0; a < p; a++) {
    bias[a] = 0;
    for (int k = 0; k < nf; k++) bias[a] -= W[(size_t)a * nf + k] * mean[k];
  }
done:
  free(mean);
  free(C);
  free(Y);
  free(z);
  return st;
}

static int row_test(trainer *t, simset *s, int i, double *row) {
  double x[IMNN_MAX_PARAMS]; /* the truths are in the test set's feat rows */
  const double *th = s->feat + (size_t)i * t->p;
  uint64_t seed = groups_task_seed(t->cfg->seed, s->key0 + (uint64_t)i);
  CB_CALL(run_sim(t, th, seed));
  CB_CALL(imnn_net_apply(t->net, t->m->w, t->data, x));
  imnn_estimate(&t->m->stats, x, row);
  return CB_OK;
}

static int train_run(trainer *t, imnn_train_result *res) {
  const imnn_train_config *cfg = t->cfg;
  imnn_model *m = t->m;
  const int p = t->p;
  simset tr = {0}, va = {0};
  imnn_adam *ad = NULL;
  double *grad = NULL, *best_w = NULL;
  int st = CB_OK;
  const uint64_t key_val = (uint64_t)1 << 48, key_test = (uint64_t)1 << 49;
#define TRY(x)                                                                                     \
  if ((st = (x))) goto done
  TRY(set_alloc(t, &tr, cfg->n_s, cfg->n_d, 0));
  TRY(set_alloc(t, &va, cfg->n_val, cfg->n_d_val, key_val));
  const int nbatch = cfg->n_batches > 0 ? cfg->n_batches : 1;
  tr.store = nbatch == 1; /* the whole set's blocks are the batch's */
  va.store = true;
  grad = calloc(t->nw, sizeof(double));
  best_w = calloc(t->nw, sizeof(double));
  res->history = calloc((size_t)cfg->max_epochs * IMNN_HISTORY_COLS, sizeof(double));
  if (!grad || !best_w || !res->history) {
    st = CB_ERROR(CB_ERR_MEM, "out of memory for training");
    goto done;
  }
  TRY(imnn_adam_create(t->nw, cfg->lr, &ad));
  imnn_init_weights(&m->arch, cfg->init_seed, m->w);
  double t0 = log_elapsed(); /* the clock of the run: simulations included */
  /* the first training set gives the standardisation */
  if (t->cached) TRY(set_prepare(t, &tr));
  TRY(set_scaling(t, &tr));
  TRY(linear_init(t, &tr));
  TRY(set_prepare(t, &va));
  double best = -INFINITY, te0 = log_elapsed(), n_eval = 0;
  int since = 0;
  res->best_epoch = -1;
  imnn_stats stt = m->stats, stv = m->stats;
  for (int e = 0; e < cfg->max_epochs; e++) {
    if (cfg->renew_every > 0 && e > 0 && e % cfg->renew_every == 0) {
      tr.key0 = (uint64_t)(e / cfg->renew_every) << 32;
      set_forget(t, &tr);
      TRY(set_prepare(t, &tr));
    }
    imnn_loss Lt = {0}, Lv;
    for (int b = 0; b < nbatch; b++) { /* one Adam step a batch */
      simset v = set_batch(&tr, b, nbatch, p);
      v.store = true; /* each simulation of the set is in one batch: kept by its owner there */
      imnn_loss Lb;
      TRY(set_forward(t, &v));
      TRY(set_stats(t, &v, &stt, &Lb, true));
      TRY(set_backward(t, &v, grad));
      imnn_adam_step(ad, m->w, grad);
      Lt.loss += Lb.loss / nbatch;
      Lt.ln_det_F += Lb.ln_det_F / nbatch;
      Lt.reg += Lb.reg / nbatch;
      Lt.L2 += Lb.L2 / nbatch;
    }
    TRY(set_forward(t, &va)); /* validation at the weights after the epoch's steps */
    double detv = 0;
    if (set_stats(t, &va, &stv, &Lv, false) == CB_OK)
      detv = exp(stv.ln_det_F);
    else {
      status_clear();
      stv.ln_det_F = -INFINITY;
    }
    double *h = res->history + (size_t)e * IMNN_HISTORY_COLS;
    h[0] = e;
    h[1] = Lt.loss;
    h[2] = Lt.ln_det_F;
    h[3] = exp(Lt.ln_det_F);
    h[4] = detv;
    h[5] = Lt.reg;
    h[6] = Lt.L2;
    res->n_epochs = e + 1;
    if (e == 0 && !t->cached) { /* the memory of the kept fields */
      double kept[2] = {(double)t->n_kept, (double)t->n_kept * sizeof(double) * t->sim->n_local};
      TRY(groups_allreduce_sum(t->g, kept, 2));
      log_info("imnn train: %.0f simulated fields kept in memory, %.2f GiB over all ranks",
               kept[0] / t->g->group_size, kept[1] / (1024.0 * 1024.0 * 1024.0));
    }
    if (stv.ln_det_F > best) {
      best = stv.ln_det_F;
      memcpy(best_w, m->w, sizeof(double) * t->nw);
      m->stats = stv;
      res->best_epoch = e;
      since = 0;
    } else {
      since++;
    }
    double el = log_elapsed() - te0, per = el / (e + 1);
    n_eval += 2.0 * tr.n + va.n; /* simulations (or their cached features) through the network */
    log_info("epoch %4d: loss %10.4f  det F %.5g (val %.5g)  reg %.3g  %.0f sims/s  %.0f s left", e,
             Lt.loss, h[3], detv, Lt.reg, n_eval / el, per * (cfg->max_epochs - e - 1));
    if (since >= cfg->patience) {
      log_info("stopping: no better validation det F in %d epochs (best %.5g at epoch %d)",
               cfg->patience, exp(best), res->best_epoch);
      break;
    }
  }
  if (res->best_epoch < 0) {
    st = CB_ERROR(CB_ERR_NUMERIC, "training never gave a usable validation Fisher matrix");
    goto done;
  }
  memcpy(m->w, best_w, sizeof(double) * t->nw);
  /* test simulations: truth around the fiducial (within 2 Fisher sigmas), estimates */
  if (cfg->n_test > 0) {
    simset te = {0};
    int n = cfg->n_test;
    te.n = n;
    te.n_fid = n;
    te.key0 = key_test;
    te.feat = calloc((size_t)n * p, sizeof(double)); /* the truths */
    res->test_theta = calloc((size_t)n * p, sizeof(double));
    res->test_est = calloc((size_t)n * p, sizeof(double));
    if (!te.feat || !res->test_theta || !res->test_est) {
      free(te.feat);
      st = CB_ERROR(CB_ERR_MEM, "out of memory for the test set");
      goto done;
    }
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, (unsigned long)(cfg->seed ^ 0x5eedULL));
    for (int i = 0; i < n; i++)
      for (int a = 0; a < p; a++) {
        double th = m->stats.theta_fid[a], w = 2.0 * sqrt(m->stats.Finv[a * p + a]);
        if (th != 0 && w > 0.5 * fabs(th)) w = 0.5 * fabs(th); /* stay where the simulator works */
        te.feat[(size_t)i * p + a] = th + w * (2 * gsl_rng_uniform(r) - 1);
      }
    gsl_rng_free(r);
    memcpy(res->test_theta, te.feat, sizeof(double) * (size_t)n * p);
    st = gather_rows(t, &te, (size_t)p, row_test, res->test_est);
    free(te.feat);
    if (st) goto done;
  }
  res->wall = log_elapsed() - t0;
#undef TRY
done:
  set_free(t, &tr);
  set_free(t, &va);
  imnn_adam_destroy(&ad);
  free(grad);
  free(best_w);
  return st;
}

int imnn_train(groups *g, simulator *sim, imnn_model *m, const imnn_train_config *cfg,
               imnn_train_result *res) {
  memset(res, 0, sizeof *res);
  const int p = m->arch.n_params;
  CB_CHECK(p == sim->n_params, CB_ERR_INPUT,
           "the network has %d summaries but simulator '%s' has %d parameters", p, sim->type->name,
           sim->n_params);
  CB_CHECK(cfg->n_s >= 2 && cfg->n_val >= 2, CB_ERR_INPUT,
           "-n_s and -n_val must be at least 2 (got %d and %d)", cfg->n_s, cfg->n_val);
  CB_CHECK(cfg->n_d >= 1 && cfg->n_d_val >= 1, CB_ERR_INPUT,
           "-n_d and -n_d_val must be at least 1 (got %d and %d)", cfg->n_d, cfg->n_d_val);
  CB_CHECK(cfg->n_d <= cfg->n_s, CB_ERR_INPUT,
           "-n_d %d is larger than -n_s %d: each derivative pair takes the seed of a fiducial "
           "simulation",
           cfg->n_d, cfg->n_s);
  CB_CHECK(cfg->n_batches <= 1 || (cfg->n_s >= 2 * cfg->n_batches && cfg->n_d >= cfg->n_batches),
           CB_ERR_INPUT,
           "-n_batches %d: each batch needs 2 fiducial simulations and a pair (-n_s %d, -n_d %d)",
           cfg->n_batches, cfg->n_s, cfg->n_d);
  CB_CHECK(cfg->n_d_val <= cfg->n_val, CB_ERR_INPUT, "-n_d_val %d is larger than -n_val %d",
           cfg->n_d_val, cfg->n_val);
  for (int a = 0; a < p; a++)
    CB_CHECK(m->stats.dtheta[a] != 0 && isfinite(m->stats.dtheta[a]), CB_ERR_INPUT,
             "-dtheta: the step of parameter %d (%s) is %g; it must be non-zero", a,
             sim->type->param_names[a], m->stats.dtheta[a]);
  CB_CHECK(cfg->max_epochs >= 1 && cfg->patience >= 1 && cfg->lr > 0, CB_ERR_INPUT,
           "-epochs, -patience and -learning_rate must be positive");
  if (m->arch.front == IMNN_FRONT_IDENTITY)
    CB_CHECK(!sim->is_field && (long)sim->n_data == m->arch.n_input, CB_ERR_INPUT,
             "the identity front end takes %ld values but simulator '%s' gives %zu%s",
             m->arch.n_input, sim->type->name, sim->n_data, sim->is_field ? " (a field)" : "");
  else
    CB_CHECK(sim->is_field, CB_ERR_INPUT,
             "the %s front end takes a field but simulator '%s' gives a vector",
             imnn_front_name(m->arch.front), sim->type->name);
  trainer t = {.g = g, .sim = sim, .m = m, .cfg = cfg, .p = p};
  t.n_feat = imnn_arch_n_features(&m->arch);
  t.B = cfg->block > 0 ? cfg->block : 8;
  t.nw = imnn_arch_n_weights(&m->arch);
  t.cached = m->arch.front != IMNN_FRONT_CONV;
  int st = imnn_net_create(sim->is_field ? sim->field : NULL, &m->arch, &t.net);
  if (!st) {
    t.data = calloc(sim->n_local ? sim->n_local : 1, sizeof(double));
    t.featv = calloc((size_t)t.n_feat, sizeof(double));
    t.dfeat = calloc((size_t)t.n_feat, sizeof(double));
    if (!t.data || !t.featv || !t.dfeat) st = CB_ERROR(CB_ERR_MEM, "out of memory for training");
  }
  if (!st) st = train_run(&t, res);
  if (!st) {
    double ns = (double)t.n_sims;
    CB_CALL(groups_allreduce_sum(g, &ns, 1));
    res->n_sims = (long)(ns / g->group_size);
  }
  imnn_net_destroy(&t.net);
  free(t.data);
  free(t.featv);
  free(t.dfeat);
  free(t.rows);
  CB_CALL(st);
  return CB_OK;
}

void imnn_train_result_free(imnn_train_result *res) {
  free(res->history);
  free(res->test_theta);
  free(res->test_est);
  memset(res, 0, sizeof *res);
}
