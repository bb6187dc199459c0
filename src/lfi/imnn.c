/* imnn: information maximising neural networks (MODEL.md section 9; include/cerberus/imnn.h).
 *
 * The network: a front end (identity, band powers from power.h, or the engine's multipole
 * convolutions from npe.h followed by a global average over the distributed field), a
 * standardisation of its features, and dense layers with a linear output of p summaries.
 * Forward and reverse passes work on one simulation at a time and keep their activations in
 * the object's buffers (no allocation per call).
 *
 * The loss. With D = dmu (p x p, row a = d mu / d theta_a) and F = D C^-1 D^T:
 *   d(-ln det F)/dD = -2 F^-1 D C^-1,   d(-ln det F)/dC = C^-1 D^T F^-1 D C^-1;
 *   L2 = ||C - I||_F + ||C^-1 - I||_F,  dL2/dC = (C - I)/||C - I|| - C^-1 (C^-1 - I) C^-1 / ||C^-1
 * - I||; R = r L2, r = lambda L2 / (L2 + e), e = exp(-alpha L2): dR/dL2 = r + L2 lambda e (1 +
 * alpha L2) / (L2 + e)^2. With G_C the (symmetric) total gradient with respect to C and G_D with
 * respect to D, the summaries get dL/dx_i = 2 / (n_s - 1) G_C (x_i - mu) (the mean's own variation
 * cancels since sum_i (x_i - mu) = 0) and dL/dx+-_{a,j} = +- G_D[a] / (n_d dtheta_a).
 * tests/test_imnn.c checks both against finite differences. The small p x p algebra uses GSL's
 * Cholesky (C and F are symmetric positive definite when the statistics are usable; otherwise
 * CB_ERR_NUMERIC). */
#include "cerberus/imnn.h"

#include "cerberus/h5io.h"
#include "cerberus/power.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *front_names[] = {"identity", "bandpower", "conv"};
const char *imnn_front_name(int front) {
  return front >= 0 && front < 3 ? front_names[front] : "?";
}
static const char *bp_scale_names[] = {"log", "linear"};
const char *imnn_bp_scale_name(int scale) {
  return scale >= 0 && scale < 2 ? bp_scale_names[scale] : "?";
}

/* ---------------------------------------------------------------- architecture */

/* Shell index (rounded |k| / k_f, shells centred on k_f, 2 k_f, ...) of every half-complex mode
 * of an n^3 grid: the bins the band-power front end keeps are the non-empty shells. */
static int bandpower_n_shells(long n) {
  long maxr2 = 3 * (n / 2) * (n / 2);
  return (int)floor(sqrt((double)maxr2) + 0.5);
}

int imnn_arch_check(const imnn_arch *a) {
  CB_CHECK(a->front >= 0 && a->front <= 2, CB_ERR_INPUT, "unknown front end %d", a->front);
  CB_CHECK(a->n_params >= 1 && a->n_params <= IMNN_MAX_PARAMS, CB_ERR_INPUT,
           "the network needs 1 to %d summaries (got %d)", IMNN_MAX_PARAMS, a->n_params);
  CB_CHECK(a->n_hidden >= 0 && a->n_hidden < IMNN_MAX_DENSE, CB_ERR_INPUT,
           "-hidden: 0 to %d hidden layers (got %d)", IMNN_MAX_DENSE - 1, a->n_hidden);
  for (int l = 0; l < a->n_hidden; l++) {
    CB_CHECK(a->width[l] >= 1 && a->width[l] <= IMNN_MAX_WIDTH, CB_ERR_INPUT,
             "-hidden: layer %d width must be 1 to %d (got %d)", l, IMNN_MAX_WIDTH, a->width[l]);
    CB_CHECK(a->act[l] >= 0 && a->act[l] < NPE_N_ACTIVATIONS, CB_ERR_INPUT,
             "-hidden: layer %d activation %d", l, a->act[l]);
  }
  if (a->front == IMNN_FRONT_IDENTITY) {
    CB_CHECK(a->n_input >= 1 && a->n_input <= 1000000, CB_ERR_INPUT,
             "identity front end: input size must be 1 to 1e6 (got %ld)", a->n_input);
  } else {
    CB_CHECK(a->n_input >= 4 && a->n_input % 2 == 0, CB_ERR_INPUT,
             "%s front end: grid side must be even and at least 4 (got %ld)",
             imnn_front_name(a->front), a->n_input);
    CB_CHECK(a->box_size > 0 && isfinite(a->box_size), CB_ERR_INPUT,
             "%s front end: box size must be positive (got %g)", imnn_front_name(a->front),
             a->box_size);
  }
  if (a->front == IMNN_FRONT_BANDPOWER)
    CB_CHECK(a->bp_scale == IMNN_BP_LOG || a->bp_scale == IMNN_BP_LINEAR, CB_ERR_INPUT,
             "band-power scale %d (log or linear)", a->bp_scale);
  if (a->front == IMNN_FRONT_CONV) {
    CB_CALL(npe_config_check(&a->conv));
    CB_CHECK(a->conv.linear_input, CB_ERR_INTERNAL, "conv front end without linear input");
  }
  return CB_OK;
}

int imnn_arch_n_features(const imnn_arch *a) {
  switch (a->front) {
  case IMNN_FRONT_IDENTITY: return (int)a->n_input;
  case IMNN_FRONT_BANDPOWER: return bandpower_n_shells(a->n_input);
  default: return npe_n_features(&a->conv);
  }
}

int imnn_arch_n_scale(const imnn_arch *a) {
  return a->front == IMNN_FRONT_CONV ? 1 + imnn_arch_n_features(a) : imnn_arch_n_features(a);
}

static size_t conv_weights(const imnn_arch *a) {
  return a->front == IMNN_FRONT_CONV ? npe_n_weights(&a->conv) : 0;
}

/* Input and output sizes of dense layer l (0 .. n_hidden; the last is the linear output). */
static int dense_in(const imnn_arch *a, int l) {
  return l == 0 ? imnn_arch_n_features(a) : a->width[l - 1];
}
static int dense_out(const imnn_arch *a, int l) {
  return l == a->n_hidden ? a->n_params : a->width[l];
}

size_t imnn_arch_n_weights(const imnn_arch *a) {
  size_t n = conv_weights(a);
  for (int l = 0; l <= a->n_hidden; l++)
    n += (size_t)dense_out(a, l) * (size_t)(dense_in(a, l) + 1);
  return n;
}

void imnn_arch_describe(const imnn_arch *a, char *buf, size_t n) {
  size_t k = 0;
  if (a->front == IMNN_FRONT_IDENTITY)
    k += (size_t)snprintf(buf, n, "identity (%ld)", a->n_input);
  else if (a->front == IMNN_FRONT_BANDPOWER)
    k += (size_t)snprintf(buf, n, "bandpower (%ld^3, %d bins, %s)", a->n_input,
                          imnn_arch_n_features(a), a->bp_scale == IMNN_BP_LINEAR ? "P" : "ln P");
  else {
    k += (size_t)snprintf(buf, n, "conv (%ld^3: ", a->n_input);
    for (int l = 0; l < a->conv.n_layers && k < n; l++) {
      const npe_layer_config *c = &a->conv.layer[l];
      k += (size_t)snprintf(buf + k, n - k, "%s%d^3 lmax%d x%d %s", l ? ", " : "", c->kernel,
                            c->lmax, c->channels, npe_activation_name(c->activation));
    }
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "; mean)");
  }
  for (int l = 0; l < a->n_hidden && k < n; l++)
    k += (size_t)snprintf(buf + k, n - k, " -> %d %s", a->width[l], npe_activation_name(a->act[l]));
  if (k < n) snprintf(buf + k, n - k, " -> %d, %zu weights", a->n_params, imnn_arch_n_weights(a));
}

int imnn_arch_from_options(options *o, imnn_arch *a) {
  char spec[1024];
  CB_CALL(options_choice(o, "-front", "front end: data vector, band powers or convolutions",
                         IMNN_FRONT_CHOICES, "identity", &a->front));
  CB_CALL(options_choice(o, "-bandpower_scale",
                         "band-power front end: features ln P (log) or P (linear)",
                         IMNN_BP_SCALE_CHOICES, "log", &a->bp_scale));
  CB_CALL(options_string(o, "-hidden",
                         "hidden dense layers, comma-separated width:activation (none: linear)",
                         "32:softplus,32:softplus", spec, sizeof spec, NULL));
  a->n_hidden = 0;
  char *save = NULL;
  if (!strcmp(spec, "none")) spec[0] = '\0'; /* a linear network */
  for (char *tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    CB_CHECK(a->n_hidden < IMNN_MAX_DENSE - 1, CB_ERR_INPUT, "-hidden: at most %d layers",
             IMNN_MAX_DENSE - 1);
    int wdt = 0;
    char act[64] = "";
    CB_CHECK(sscanf(tok, "%d:%63s", &wdt, act) == 2, CB_ERR_INPUT,
             "-hidden: '%s' is not width:activation (e.g. 32:softplus)", tok);
    int ai = npe_activation_index(act);
    CB_CHECK(ai >= 0, CB_ERR_INPUT, "-hidden: unknown activation '%s' (choose from %s)", act,
             NPE_ACTIVATION_CHOICES);
    a->width[a->n_hidden] = wdt;
    a->act[a->n_hidden++] = ai;
  }
  CB_CALL(options_string(o, "-conv_layers",
                         "conv front end: layers, comma-separated K:lmax:channels:activation",
                         "3:0:4:softplus,3:0:4:softplus", spec, sizeof spec, NULL));
  memset(&a->conv, 0, sizeof a->conv);
  a->conv.linear_input = true;
  CB_CALL(npe_layers_parse("-conv_layers", spec, &a->conv));
  return CB_OK;
}

/* ---------------------------------------------------------------- small linear algebra */

/* Inverse and ln det of a symmetric positive-definite p x p matrix; CB_ERR_NUMERIC if it is
 * not (or not finite). */
static int spd_inverse(int p, const double *A, double *Ainv, double *ln_det, const char *what) {
  double L[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  for (int i = 0; i < p * p; i++) {
    CB_CHECK(isfinite(A[i]), CB_ERR_NUMERIC, "%s is not finite", what);
    L[i] = A[i];
  }
  gsl_matrix_view m = gsl_matrix_view_array(L, (size_t)p, (size_t)p);
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  int e = gsl_linalg_cholesky_decomp1(&m.matrix);
  double ld = 0;
  for (int i = 0; !e && i < p; i++) ld += 2 * log(L[i * p + i]);
  if (!e) e = gsl_linalg_cholesky_invert(&m.matrix);
  gsl_set_error_handler(old);
  CB_CHECK(!e && isfinite(ld), CB_ERR_NUMERIC, "%s is not positive definite", what);
  memcpy(Ainv, L, sizeof(double) * (size_t)(p * p));
  *ln_det = ld;
  return CB_OK;
}

/* C = A B (p x p). */
static void matmul(int p, const double *A, const double *B, double *C) {
  for (int i = 0; i < p; i++)
    for (int j = 0; j < p; j++) {
      double s = 0;
      for (int k = 0; k < p; k++) s += A[i * p + k] * B[k * p + j];
      C[i * p + j] = s;
    }
}
/* C = A^T B. */
static void matmul_tn(int p, const double *A, const double *B, double *C) {
  for (int i = 0; i < p; i++)
    for (int j = 0; j < p; j++) {
      double s = 0;
      for (int k = 0; k < p; k++) s += A[k * p + i] * B[k * p + j];
      C[i * p + j] = s;
    }
}
/* C = A B^T. */
static void matmul_nt(int p, const double *A, const double *B, double *C) {
  for (int i = 0; i < p; i++)
    for (int j = 0; j < p; j++) {
      double s = 0;
      for (int k = 0; k < p; k++) s += A[i * p + k] * B[j * p + k];
      C[i * p + j] = s;
    }
}

/* ---------------------------------------------------------------- statistics and loss */

void imnn_reg_default(imnn_reg *r) {
  r->lambda = 10.0;
  r->eps = 0.1;
}

int imnn_stats_compute(const imnn_reg *reg, int n_s, const double *x_fid, int n_d,
                       const double *x_plus, const double *x_minus, imnn_stats *st, imnn_loss *L,
                       double *g_fid, double *g_plus, double *g_minus) {
  const int p = st->p;
  CB_CHECK(p >= 1 && p <= IMNN_MAX_PARAMS, CB_ERR_INPUT, "%d summaries (1 to %d)", p,
           IMNN_MAX_PARAMS);
  CB_CHECK(n_s >= 2, CB_ERR_INPUT, "n_s = %d fiducial simulations: at least 2 are needed", n_s);
  CB_CHECK(n_d >= 1, CB_ERR_INPUT, "n_d = %d derivative pairs: at least 1 is needed", n_d);
  for (int a = 0; a < p; a++)
    CB_CHECK(st->dtheta[a] != 0 && isfinite(st->dtheta[a]), CB_ERR_INPUT,
             "dtheta of parameter %d is %g: it must be non-zero", a, st->dtheta[a]);
  /* mean and covariance of the fiducial summaries */
  double *mu = st->mu, *C = st->C, *D = st->dmu;
  for (int s = 0; s < p; s++) mu[s] = 0;
  for (int i = 0; i < n_s; i++)
    for (int s = 0; s < p; s++) mu[s] += x_fid[(size_t)i * p + s];
  for (int s = 0; s < p; s++) mu[s] /= n_s;
  for (int s = 0; s < p * p; s++) C[s] = 0;
  for (int i = 0; i < n_s; i++)
    for (int s = 0; s < p; s++)
      for (int t = 0; t <= s; t++)
        C[s * p + t] += (x_fid[(size_t)i * p + s] - mu[s]) * (x_fid[(size_t)i * p + t] - mu[t]);
  for (int s = 0; s < p; s++)
    for (int t = 0; t <= s; t++) C[t * p + s] = C[s * p + t] /= (n_s - 1);
  /* finite-difference mean derivatives, seed-matched */
  for (int a = 0; a < p; a++)
    for (int s = 0; s < p; s++) {
      double sum = 0;
      for (int j = 0; j < n_d; j++) {
        size_t i = ((size_t)a * n_d + j) * p + s;
        sum += x_plus[i] - x_minus[i];
      }
      D[a * p + s] = sum / (n_d * st->dtheta[a]);
    }
  double ln_det_C;
  CB_CALL(spd_inverse(p, C, st->Cinv, &ln_det_C, "the covariance of the summaries"));
  double DCi[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  matmul(p, D, st->Cinv, DCi); /* D C^-1 */
  matmul_nt(p, DCi, D, st->F); /* D C^-1 D^T */
  for (int s = 0; s < p; s++)  /* symmetrise the rounding */
    for (int t = 0; t < s; t++)
      st->F[s * p + t] = st->F[t * p + s] = 0.5 * (st->F[s * p + t] + st->F[t * p + s]);
  CB_CALL(spd_inverse(p, st->F, st->Finv, &st->ln_det_F, "the Fisher matrix of the summaries"));
  /* regulariser */
  double a1 = 0, a2 = 0;
  for (int s = 0; s < p; s++)
    for (int t = 0; t < p; t++) {
      double id = s == t ? 1.0 : 0.0, u = C[s * p + t] - id, v = st->Cinv[s * p + t] - id;
      a1 += u * u;
      a2 += v * v;
    }
  a1 = sqrt(a1);
  a2 = sqrt(a2);
  const double lam = reg->lambda, eps = reg->eps;
  const double alpha = -log(eps * (lam - 1) + eps * eps / (1 + eps)) / eps;
  const double L2 = a1 + a2, e = exp(-alpha * L2);
  const double r = lam * L2 / (L2 + e);
  L->ln_det_F = st->ln_det_F;
  L->L2 = L2;
  L->r = r;
  L->reg = r * L2;
  L->loss = -st->ln_det_F + L->reg;
  if (!g_fid && !g_plus && !g_minus) return CB_OK;

  /* gradients with respect to C and D */
  double GC[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS], GD[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  double T1[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS], T2[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  matmul(p, st->Finv, DCi, GD); /* F^-1 D C^-1 */
  for (int s = 0; s < p * p; s++) GD[s] *= -2.0;
  matmul_tn(p, DCi, st->Finv, T1); /* C^-1 D^T F^-1 */
  matmul(p, T1, DCi, GC);          /* C^-1 D^T F^-1 D C^-1 */
  const double dR = r + L2 * lam * e * (1 + alpha * L2) / ((L2 + e) * (L2 + e));
  for (int s = 0; s < p * p; s++) T1[s] = st->Cinv[s] - ((s % (p + 1)) == 0 ? 1.0 : 0.0);
  matmul(p, st->Cinv, T1, T2);
  matmul(p, T2, st->Cinv, T1); /* C^-1 (C^-1 - I) C^-1 */
  for (int s = 0; s < p; s++)
    for (int t = 0; t < p; t++) {
      double id = s == t ? 1.0 : 0.0, g = 0;
      if (a1 > 0) g += (C[s * p + t] - id) / a1;
      if (a2 > 0) g -= T1[s * p + t] / a2;
      GC[s * p + t] += dR * g;
    }
  if (g_fid)
    for (int i = 0; i < n_s; i++)
      for (int s = 0; s < p; s++) {
        double g = 0;
        for (int t = 0; t < p; t++) g += GC[s * p + t] * (x_fid[(size_t)i * p + t] - mu[t]);
        g_fid[(size_t)i * p + s] = 2.0 * g / (n_s - 1);
      }
  for (int a = 0; a < p; a++)
    for (int j = 0; j < n_d; j++)
      for (int s = 0; s < p; s++) {
        size_t i = ((size_t)a * n_d + j) * p + s;
        double g = GD[a * p + s] / (n_d * st->dtheta[a]);
        if (g_plus) g_plus[i] = g;
        if (g_minus) g_minus[i] = -g;
      }
  return CB_OK;
}

void imnn_estimate(const imnn_stats *st, const double *x, double *theta) {
  const int p = st->p;
  double y[IMNN_MAX_PARAMS], z[IMNN_MAX_PARAMS];
  for (int s = 0; s < p; s++) {
    y[s] = 0;
    for (int t = 0; t < p; t++) y[s] += st->Cinv[s * p + t] * (x[t] - st->mu[t]);
  }
  for (int a = 0; a < p; a++) { /* dmu C^-1 (x - mu) */
    z[a] = 0;
    for (int s = 0; s < p; s++) z[a] += st->dmu[a * p + s] * y[s];
  }
  for (int a = 0; a < p; a++) {
    theta[a] = st->theta_fid[a];
    for (int b = 0; b < p; b++) theta[a] += st->Finv[a * p + b] * z[b];
  }
}

double imnn_fisher_distance(const imnn_stats *st, const double *x, const double *y) {
  const int p = st->p;
  double tx[IMNN_MAX_PARAMS], ty[IMNN_MAX_PARAMS], d[IMNN_MAX_PARAMS];
  imnn_estimate(st, x, tx);
  imnn_estimate(st, y, ty);
  for (int a = 0; a < p; a++) d[a] = tx[a] - ty[a];
  double q = 0;
  for (int a = 0; a < p; a++)
    for (int b = 0; b < p; b++) q += d[a] * st->F[a * p + b] * d[b];
  return sqrt(fmax(q, 0.0));
}

/* ---------------------------------------------------------------- the network */

struct imnn_net {
  imnn_arch arch;
  field *f;
  int n_feat, n_scale;
  size_t n_conv_w;
  double *shift, *scale;
  /* dense activations: a[l] input of layer l (a[0] standardised features), z[l] pre-acts */
  double *a[IMNN_MAX_DENSE + 1], *z[IMNN_MAX_DENSE];
  double *da, *db; /* reverse workspaces, max width */
  /* band powers */
  power *pw;
  int *bin_of_feat;
  /* conv */
  npe *np;
  double *xin, *dpsi, *gconv;
};

int imnn_net_create(field *f, const imnn_arch *arch, imnn_net **out) {
  *out = NULL;
  CB_CALL(imnn_arch_check(arch));
  if (arch->front != IMNN_FRONT_IDENTITY) {
    CB_CHECK(f, CB_ERR_INTERNAL, "the %s front end needs a field", imnn_front_name(arch->front));
    CB_CHECK(f->n == arch->n_input, CB_ERR_INPUT,
             "the network takes %ld^3 fields but the field is %td^3", arch->n_input, f->n);
  }
  imnn_net *net;
  CB_CALLOC(net, 1);
  net->arch = *arch;
  net->f = f;
  net->n_feat = imnn_arch_n_features(arch);
  net->n_scale = imnn_arch_n_scale(arch);
  net->n_conv_w = conv_weights(arch);
  int st = CB_OK, maxw = net->n_feat;
  for (int l = 0; l <= arch->n_hidden; l++)
    if (dense_out(arch, l) > maxw) maxw = dense_out(arch, l);
  net->shift = calloc((size_t)net->n_scale, sizeof(double));
  net->scale = calloc((size_t)net->n_scale, sizeof(double));
  net->da = calloc((size_t)maxw, sizeof(double));
  net->db = calloc((size_t)maxw, sizeof(double));
  bool ok = net->shift && net->scale && net->da && net->db;
  for (int i = 0; i < net->n_scale && ok; i++) net->scale[i] = 1.0;
  for (int l = 0; l <= arch->n_hidden && ok; l++) {
    net->a[l] = calloc((size_t)dense_in(arch, l), sizeof(double));
    net->z[l] = calloc((size_t)dense_out(arch, l), sizeof(double));
    ok = net->a[l] && net->z[l];
  }
  if (!ok) {
    st = CB_ERROR(CB_ERR_MEM, "out of memory for the network");
    goto fail;
  }
  if (arch->front == IMNN_FRONT_BANDPOWER) {
    const double kf = 2 * 3.14159265358979323846 / f->L;
    power_config pc = {.k_min = 0.5 * kf, .dk = kf, .k_max = (net->n_feat + 0.5) * kf};
    if ((st = power_create(f, &pc, &net->pw))) goto fail;
    net->bin_of_feat = calloc((size_t)net->n_feat, sizeof(int));
    if (!net->bin_of_feat) {
      st = CB_ERROR(CB_ERR_MEM, "out of memory for the band powers");
      goto fail;
    }
    int nf = 0;
    for (int b = 0; b < net->pw->n_bins; b++)
      if (net->pw->n_modes[b] > 0 && nf < net->n_feat) net->bin_of_feat[nf++] = b;
    if (nf != net->n_feat) {
      st = CB_ERROR(CB_ERR_INTERNAL, "band powers: %d non-empty shells, expected %d", nf,
                    net->n_feat);
      goto fail;
    }
  } else if (arch->front == IMNN_FRONT_CONV) {
    if ((st = npe_create(f, &arch->conv, &net->np))) goto fail;
    const size_t nl = (size_t)f->n_real_local;
    net->xin = calloc(nl ? nl : 1, sizeof(double));
    net->dpsi = calloc(nl * (size_t)net->n_feat + 1, sizeof(double));
    net->gconv = calloc(net->n_conv_w, sizeof(double));
    if (!net->xin || !net->dpsi || !net->gconv) {
      st = CB_ERROR(CB_ERR_MEM, "out of memory for the convolutional front end");
      goto fail;
    }
  }
  *out = net;
  return CB_OK;
fail:
  imnn_net_destroy(&net);
  return st;
}

void imnn_net_destroy(imnn_net **pnet) {
  if (!pnet || !*pnet) return;
  imnn_net *net = *pnet;
  free(net->shift);
  free(net->scale);
  free(net->da);
  free(net->db);
  for (int l = 0; l <= IMNN_MAX_DENSE - 1; l++) {
    free(net->a[l]);
    free(net->z[l]);
  }
  power_destroy(&net->pw);
  free(net->bin_of_feat);
  npe_destroy(&net->np);
  free(net->xin);
  free(net->dpsi);
  free(net->gconv);
  free(net);
  *pnet = NULL;
}

const imnn_arch *imnn_net_arch(const imnn_net *net) {
  return &net->arch;
}

int imnn_net_set_scaling(imnn_net *net, const double *shift, const double *scale) {
  for (int i = 0; i < net->n_scale; i++) {
    CB_CHECK(isfinite(shift[i]) && scale[i] > 0 && isfinite(scale[i]), CB_ERR_INPUT,
             "input scaling %d: shift %g, scale %g (scale must be positive)", i, shift[i],
             scale[i]);
    net->shift[i] = shift[i];
    net->scale[i] = scale[i];
  }
  return CB_OK;
}

int imnn_net_features(imnn_net *net, const double *w, const double *data, double *feat) {
  const imnn_arch *a = &net->arch;
  if (a->front == IMNN_FRONT_IDENTITY) {
    memcpy(feat, data, sizeof(double) * (size_t)net->n_feat);
  } else if (a->front == IMNN_FRONT_BANDPOWER) {
    CB_CALL(power_measure(net->pw, data));
    for (int i = 0; i < net->n_feat; i++) {
      double P = net->pw->pk[net->bin_of_feat[i]];
      if (a->bp_scale == IMNN_BP_LINEAR) {
        CB_CHECK(isfinite(P), CB_ERR_NUMERIC, "band power %d (k = %g h/Mpc) is %g", i,
                 net->pw->k_mean[net->bin_of_feat[i]], P);
        feat[i] = P;
        continue;
      }
      CB_CHECK(P > 0 && isfinite(P), CB_ERR_NUMERIC,
               "band power %d (k = %g h/Mpc) is %g: its logarithm is not finite", i,
               net->pw->k_mean[net->bin_of_feat[i]], P);
      feat[i] = log(P);
    }
  } else {
    field *f = net->f;
    const ptrdiff_t nl = f->n_real_local;
    const double s0 = net->shift[0], is = 1.0 / net->scale[0];
    for (ptrdiff_t v = 0; v < nl; v++) net->xin[v] = (data[v] - s0) * is;
    const double *psi;
    CB_CALL(npe_forward(net->np, net->xin, w, &psi));
    const ptrdiff_t nn = f->n * f->n;
    const int P = net->n_feat;
    for (int c = 0; c < P; c++) feat[c] = 0;
    for (ptrdiff_t p = 0; p < f->local_n0; p++)
      for (int c = 0; c < P; c++) {
        const double *q = psi + (p * P + c) * nn;
        double s = 0;
        for (ptrdiff_t v = 0; v < nn; v++) s += q[v];
        feat[c] += s;
      }
    field_allreduce_sum_n(f, feat, (size_t)P);
    const double inv = 1.0 / ((double)f->n * (double)nn);
    for (int c = 0; c < P; c++) feat[c] *= inv;
  }
  return CB_OK;
}

void imnn_net_head(imnn_net *net, const double *w, const double *feat, double *x) {
  const imnn_arch *a = &net->arch;
  const int o = a->front == IMNN_FRONT_CONV; /* conv: entry 0 is the field's */
  for (int i = 0; i < net->n_feat; i++)
    net->a[0][i] = (feat[i] - net->shift[o + i]) / net->scale[o + i];
  const double *wl = w + net->n_conv_w;
  for (int l = 0; l <= a->n_hidden; l++) {
    const int ni = dense_in(a, l), no = dense_out(a, l);
    const double *W = wl, *b = wl + (size_t)no * ni, *in = net->a[l];
    double *z = net->z[l];
    for (int o = 0; o < no; o++) {
      double s = b[o];
      const double *row = W + (size_t)o * ni;
      for (int i = 0; i < ni; i++) s += row[i] * in[i];
      z[o] = s;
    }
    if (l < a->n_hidden)
      for (int o = 0; o < no; o++) net->a[l + 1][o] = npe_activate(a->act[l], z[o]);
    else
      for (int o = 0; o < no; o++) x[o] = z[o];
    wl += (size_t)no * (ni + 1);
  }
}

void imnn_net_head_backward(imnn_net *net, const double *w, const double *dx, double *grad_w,
                            double *dfeat) {
  const imnn_arch *a = &net->arch;
  /* offsets of each dense layer's weights */
  size_t off[IMNN_MAX_DENSE];
  size_t o0 = net->n_conv_w;
  for (int l = 0; l <= a->n_hidden; l++) {
    off[l] = o0;
    o0 += (size_t)dense_out(a, l) * (dense_in(a, l) + 1);
  }
  double *dz = net->da, *din = net->db;
  for (int o = 0; o < a->n_params; o++) dz[o] = dx[o];
  for (int l = a->n_hidden; l >= 0; l--) {
    const int ni = dense_in(a, l), no = dense_out(a, l);
    if (l < a->n_hidden) /* dz = d(out) * act'(z) */
      for (int o = 0; o < no; o++) dz[o] *= npe_activate_deriv(a->act[l], net->z[l][o]);
    const double *W = w + off[l], *in = net->a[l];
    double *gW = grad_w + off[l], *gb = gW + (size_t)no * ni;
    for (int i = 0; i < ni; i++) din[i] = 0;
    for (int o = 0; o < no; o++) {
      const double g = dz[o];
      double *grow = gW + (size_t)o * ni;
      const double *row = W + (size_t)o * ni;
      for (int i = 0; i < ni; i++) {
        grow[i] += g * in[i];
        din[i] += g * row[i];
      }
      gb[o] += g;
    }
    double *t = dz; /* din becomes the next layer's d(out) */
    dz = din;
    din = t;
  }
  if (dfeat) {
    const int o = a->front == IMNN_FRONT_CONV;
    for (int i = 0; i < net->n_feat; i++) dfeat[i] = dz[i] / net->scale[o + i];
  }
}

int imnn_net_front_backward(imnn_net *net, const double *dfeat, double *grad_w) {
  if (net->arch.front != IMNN_FRONT_CONV) return CB_OK;
  field *f = net->f;
  const ptrdiff_t nn = f->n * f->n;
  const int P = net->n_feat;
  const double inv = 1.0 / ((double)f->n * (double)nn);
  for (ptrdiff_t p = 0; p < f->local_n0; p++)
    for (int c = 0; c < P; c++) {
      double *q = net->dpsi + (p * P + c) * nn, g = dfeat[c] * inv;
      for (ptrdiff_t v = 0; v < nn; v++) q[v] = g;
    }
  memset(net->gconv, 0, sizeof(double) * net->n_conv_w);
  CB_CALL(npe_backward(net->np, net->dpsi, net->gconv, NULL));
  field_allreduce_sum_n(f, net->gconv, net->n_conv_w);
  for (size_t i = 0; i < net->n_conv_w; i++) grad_w[i] += net->gconv[i];
  return CB_OK;
}

int imnn_net_apply(imnn_net *net, const double *w, const double *data, double *x) {
  double *feat = net->db; /* the head copies feat into a[0] before using db */
  double tmp[IMNN_MAX_WIDTH];
  if (net->n_feat <= IMNN_MAX_WIDTH)
    feat = tmp;
  else {
    feat = malloc(sizeof(double) * (size_t)net->n_feat);
    CB_CHECK(feat, CB_ERR_MEM, "out of memory for the features");
  }
  int st = imnn_net_features(net, w, data, feat);
  if (!st) imnn_net_head(net, w, feat, x);
  if (feat != tmp) free(feat);
  CB_CALL(st);
  return CB_OK;
}

/* ---------------------------------------------------------------- weights, Adam */

/* Weights of convolution layer l of a stack (kernels and biases). */
static size_t conv_layer_weights(const npe_config *c, int l) {
  npe_config u = *c;
  u.n_layers = l + 1;
  size_t hi = npe_n_weights(&u);
  u.n_layers = l;
  return hi - (l ? npe_n_weights(&u) : 0);
}

void imnn_init_weights(const imnn_arch *a, unsigned long seed, double *w) {
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, seed);
  size_t k = 0;
  if (a->front == IMNN_FRONT_CONV) {
    for (int l = 0; l < a->conv.n_layers; l++) {
      const npe_layer_config *c = &a->conv.layer[l];
      const int cin = npe_layer_in_channels(&a->conv, l),
                cout = npe_layer_out_channels(&a->conv, l);
      const size_t nl = conv_layer_weights(&a->conv, l);
      const double lim = sqrt(3.0 / (double)(c->kernel * c->kernel * c->kernel * cin));
      for (size_t i = 0; i + (size_t)cout < nl; i++) w[k++] = lim * (2 * gsl_rng_uniform(r) - 1);
      for (int i = 0; i < cout; i++) w[k++] = 0;
    }
  }
  for (int l = 0; l <= a->n_hidden; l++) {
    const int ni = dense_in(a, l), no = dense_out(a, l);
    const double lim = sqrt(6.0 / (ni + no));
    for (size_t i = 0; i < (size_t)ni * no; i++) w[k++] = lim * (2 * gsl_rng_uniform(r) - 1);
    for (int o = 0; o < no; o++) w[k++] = 0;
  }
  gsl_rng_free(r);
}

struct imnn_adam {
  size_t n;
  double lr, b1, b2, eps;
  long t;
  double *m, *v;
};

int imnn_adam_create(size_t n, double lr, imnn_adam **out) {
  *out = NULL;
  imnn_adam *ad;
  CB_CALLOC(ad, 1);
  ad->n = n;
  ad->lr = lr;
  ad->b1 = 0.9;
  ad->b2 = 0.999;
  ad->eps = 1e-8;
  ad->m = calloc(n ? n : 1, sizeof(double));
  ad->v = calloc(n ? n : 1, sizeof(double));
  if (!ad->m || !ad->v) {
    imnn_adam_destroy(&ad);
    return CB_ERROR(CB_ERR_MEM, "out of memory for Adam");
  }
  *out = ad;
  return CB_OK;
}

void imnn_adam_destroy(imnn_adam **pad) {
  if (!pad || !*pad) return;
  free((*pad)->m);
  free((*pad)->v);
  free(*pad);
  *pad = NULL;
}

void imnn_adam_step(imnn_adam *ad, double *w, const double *g) {
  ad->t++;
  const double c1 = 1 - pow(ad->b1, (double)ad->t), c2 = 1 - pow(ad->b2, (double)ad->t);
  for (size_t i = 0; i < ad->n; i++) {
    ad->m[i] = ad->b1 * ad->m[i] + (1 - ad->b1) * g[i];
    ad->v[i] = ad->b2 * ad->v[i] + (1 - ad->b2) * g[i] * g[i];
    w[i] -= ad->lr * (ad->m[i] / c1) / (sqrt(ad->v[i] / c2) + ad->eps);
  }
}

/* ---------------------------------------------------------------- network files */

int imnn_model_alloc(const imnn_arch *a, imnn_model **out) {
  *out = NULL;
  CB_CALL(imnn_arch_check(a));
  imnn_model *m;
  CB_CALLOC(m, 1);
  m->arch = *a;
  m->stats.p = a->n_params;
  size_t nw = imnn_arch_n_weights(a), ns = (size_t)imnn_arch_n_scale(a);
  m->w = calloc(nw, sizeof(double));
  m->shift = calloc(ns, sizeof(double));
  m->scale = calloc(ns, sizeof(double));
  if (!m->w || !m->shift || !m->scale) {
    imnn_model_destroy(&m);
    return CB_ERROR(CB_ERR_MEM, "out of memory for a network of %zu weights", nw);
  }
  for (size_t i = 0; i < ns; i++) m->scale[i] = 1.0;
  *out = m;
  return CB_OK;
}

void imnn_model_destroy(imnn_model **pm) {
  if (!pm || !*pm) return;
  free((*pm)->w);
  free((*pm)->shift);
  free((*pm)->scale);
  free(*pm);
  *pm = NULL;
}

int imnn_model_write(MPI_Comm comm, const char *path, bool overwrite, const imnn_model *m,
                     const options *o, const imnn_extra *extra, int n_extra) {
  const imnn_arch *a = &m->arch;
  h5file *h = NULL;
  CB_CALL(h5io_create(comm, path, overwrite, &h));
  int st = CB_OK;
  char name[64];
  size_t nw = imnn_arch_n_weights(a), ns = (size_t)imnn_arch_n_scale(a), p = (size_t)a->n_params;
  size_t pp[2] = {p, p};
#define TRY(x)                                                                                     \
  if ((st = (x))) goto fail
  if (o) TRY(h5io_write_provenance(h, o));
  TRY(h5io_attr_write_string(h, "/", "model", "imnn"));
  TRY(h5io_attr_write_string(h, "/", "front", imnn_front_name(a->front)));
  TRY(h5io_attr_write_long(h, "/", "n_input", a->n_input));
  TRY(h5io_attr_write_double(h, "/", "box_size", a->box_size));
  if (a->front == IMNN_FRONT_BANDPOWER)
    TRY(h5io_attr_write_string(h, "/", "bandpower_scale", imnn_bp_scale_name(a->bp_scale)));
  TRY(h5io_attr_write_long(h, "/", "n_params", a->n_params));
  TRY(h5io_attr_write_long(h, "/", "n_hidden", a->n_hidden));
  TRY(h5io_attr_write_long(h, "/", "n_weights", (long)nw));
  TRY(h5io_attr_write_string(h, "/", "simulator", m->simulator));
  for (int l = 0; l < a->n_hidden; l++) {
    snprintf(name, sizeof name, "hidden%d_width", l);
    TRY(h5io_attr_write_long(h, "/", name, a->width[l]));
    snprintf(name, sizeof name, "hidden%d_activation", l);
    TRY(h5io_attr_write_string(h, "/", name, npe_activation_name(a->act[l])));
  }
  if (a->front == IMNN_FRONT_CONV) TRY(weights_write_layers(h, "conv_n_layers", "conv", &a->conv));
  TRY(h5io_write_array(h, "/weights", 1, &nw, m->w));
  TRY(h5io_write_array(h, "/shift", 1, &ns, m->shift));
  TRY(h5io_write_array(h, "/scale", 1, &ns, m->scale));
  TRY(h5io_write_array(h, "/theta_fid", 1, &p, m->stats.theta_fid));
  TRY(h5io_write_array(h, "/dtheta", 1, &p, m->stats.dtheta));
  TRY(h5io_write_array(h, "/mu", 1, &p, m->stats.mu));
  {
    double C[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS]; /* the arrays are packed p x p already */
    memcpy(C, m->stats.C, sizeof(double) * p * p);
    TRY(h5io_write_array(h, "/C", 2, pp, C));
  }
  TRY(h5io_write_array(h, "/dmu_dtheta", 2, pp, m->stats.dmu));
  TRY(h5io_write_array(h, "/F", 2, pp, m->stats.F));
  for (int i = 0; i < n_extra; i++)
    TRY(h5io_write_array(h, extra[i].name, extra[i].ndim, extra[i].dims, extra[i].data));
#undef TRY
  CB_CALL(h5io_commit(&h));
  return CB_OK;
fail:
  h5io_abort(&h);
  return st;
}

/* Read a dataset of exactly n numbers into out. */
static int read_exact(h5file *h, const char *name, size_t n, double *out) {
  size_t nc = 0, nr = 0;
  double *v = NULL;
  CB_CALL(h5io_read_rows_all(h, name, &nc, &nr, &v));
  size_t got = nr * (nc ? nc : 1);
  if (got != n) {
    free(v);
    return CB_ERROR(CB_ERR_INPUT, "network '%s': %s has %zu values, expected %zu", h5io_path(h),
                    name, got, n);
  }
  for (size_t i = 0; i < n; i++)
    if (!isfinite(v[i])) {
      free(v);
      return CB_ERROR(CB_ERR_INPUT, "network '%s': %s[%zu] is not finite", h5io_path(h), name, i);
    }
  memcpy(out, v, n * sizeof(double));
  free(v);
  return CB_OK;
}

int imnn_model_check_input(const imnn_model *m, const char *path, long n_input) {
  const imnn_arch *a = &m->arch;
  CB_CHECK(n_input <= 0 || a->n_input == n_input, CB_ERR_INPUT,
           "network '%s' takes inputs of size %ld%s but the data have size %ld", path, a->n_input,
           a->front == IMNN_FRONT_IDENTITY ? "" : " (grid side)", n_input);
  return CB_OK;
}

int imnn_model_read(MPI_Comm comm, const char *path, long n_input, imnn_model **out) {
  *out = NULL;
  h5file *h = NULL;
  CB_CALL(h5io_open(comm, path, &h));
  int st = CB_OK;
  imnn_model *m = NULL;
  imnn_arch a;
  memset(&a, 0, sizeof a);
  char buf[64], name[64];
  long x;
#define TRY(e)                                                                                     \
  if ((st = (e))) goto fail
  TRY(h5io_attr_read_string(h, "/", "model", buf, sizeof buf));
  if (strcmp(buf, "imnn")) {
    st = CB_ERROR(CB_ERR_INPUT, "'%s' is not an IMNN network file (model '%s')", path, buf);
    goto fail;
  }
  TRY(h5io_attr_read_string(h, "/", "front", buf, sizeof buf));
  a.front = -1;
  for (int i = 0; i < 3; i++)
    if (!strcmp(buf, imnn_front_name(i))) a.front = i;
  if (a.front < 0) {
    st = CB_ERROR(CB_ERR_INPUT, "network '%s': unknown front end '%s'", path, buf);
    goto fail;
  }
  TRY(h5io_attr_read_long(h, "/", "n_input", &a.n_input));
  TRY(h5io_attr_read_double(h, "/", "box_size", &a.box_size));
  a.bp_scale = IMNN_BP_LOG; /* files written before the choice existed hold ln P */
  if (a.front == IMNN_FRONT_BANDPOWER && h5io_attr_exists(h, "/", "bandpower_scale")) {
    TRY(h5io_attr_read_string(h, "/", "bandpower_scale", buf, sizeof buf));
    a.bp_scale = -1;
    for (int i = 0; i < 2; i++)
      if (!strcmp(buf, imnn_bp_scale_name(i))) a.bp_scale = i;
    if (a.bp_scale < 0) {
      st = CB_ERROR(CB_ERR_INPUT, "network '%s': unknown bandpower_scale '%s' (log or linear)",
                    path, buf);
      goto fail;
    }
  }
  TRY(h5io_attr_read_long(h, "/", "n_params", &x));
  a.n_params = (int)x;
  TRY(h5io_attr_read_long(h, "/", "n_hidden", &x));
  if (x < 0 || x >= IMNN_MAX_DENSE) {
    st = CB_ERROR(CB_ERR_INPUT, "network '%s': n_hidden %ld outside 0..%d", path, x,
                  IMNN_MAX_DENSE - 1);
    goto fail;
  }
  a.n_hidden = (int)x;
  for (int l = 0; l < a.n_hidden; l++) {
    snprintf(name, sizeof name, "hidden%d_width", l);
    TRY(h5io_attr_read_long(h, "/", name, &x));
    a.width[l] = (int)x;
    snprintf(name, sizeof name, "hidden%d_activation", l);
    TRY(h5io_attr_read_string(h, "/", name, buf, sizeof buf));
    a.act[l] = npe_activation_index(buf);
  }
  a.conv.linear_input = true;
  if (a.front == IMNN_FRONT_CONV) TRY(weights_read_layers(h, "conv_n_layers", "conv", &a.conv));
  if ((st = imnn_arch_check(&a))) {
    st = CB_ERROR(CB_ERR_INPUT, "network '%s': bad architecture: %s", path, status_message());
    goto fail;
  }
  if (n_input > 0 && a.n_input != n_input) {
    st =
        CB_ERROR(CB_ERR_INPUT, "network '%s' takes inputs of size %ld%s but the data have size %ld",
                 path, a.n_input, a.front == IMNN_FRONT_IDENTITY ? "" : " (grid side)", n_input);
    goto fail;
  }
  TRY(imnn_model_alloc(&a, &m));
  size_t p = (size_t)a.n_params, ns = (size_t)imnn_arch_n_scale(&a);
  TRY(read_exact(h, "/weights", imnn_arch_n_weights(&a), m->w));
  TRY(read_exact(h, "/shift", ns, m->shift));
  TRY(read_exact(h, "/scale", ns, m->scale));
  for (size_t i = 0; i < ns; i++)
    if (!(m->scale[i] > 0)) {
      st = CB_ERROR(CB_ERR_INPUT, "network '%s': scale[%zu] = %g is not positive", path, i,
                    m->scale[i]);
      goto fail;
    }
  TRY(read_exact(h, "/theta_fid", p, m->stats.theta_fid));
  TRY(read_exact(h, "/dtheta", p, m->stats.dtheta));
  TRY(read_exact(h, "/mu", p, m->stats.mu));
  TRY(read_exact(h, "/C", p * p, m->stats.C));
  TRY(read_exact(h, "/dmu_dtheta", p * p, m->stats.dmu));
  TRY(read_exact(h, "/F", p * p, m->stats.F));
  TRY(h5io_attr_read_string(h, "/", "simulator", m->simulator, sizeof m->simulator));
  {
    double ld;
    if ((st = spd_inverse((int)p, m->stats.C, m->stats.Cinv, &ld, "C")) ||
        (st = spd_inverse((int)p, m->stats.F, m->stats.Finv, &m->stats.ln_det_F, "F"))) {
      st = CB_ERROR(CB_ERR_INPUT, "network '%s': %s", path, status_message());
      goto fail;
    }
  }
#undef TRY
  h5io_close(&h);
  *out = m;
  return CB_OK;
fail:
  imnn_model_destroy(&m);
  h5io_close(&h);
  return st;
}
