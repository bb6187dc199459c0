/* npe: the neural physical engine, layer by layer on the slabs (MODEL.md section 3).
 *
 * Input x0(v) = ln(1 + delta(v) + eps); layer l convolves its input buffer a[l] (owned
 * planes plus (K_l - 1) / 2 ghost planes each side) into pre-activations z[l] (owned planes
 * only) and applies the activation into the next layer's input buffer, or into the
 * features psi after the last layer. Each layer starts the ghost exchange of its input,
 * computes the interior planes (which need no ghost) while the messages travel, waits, then
 * computes the edge planes.
 *
 * The forward pass keeps act'(z) (for softplus the sigmoid, from the exp the softplus took,
 * vmath_softplus) in place of z: the reverse pass runs the layers backwards with
 * dz = d(out) * act'(z); the convolution's
 * reverse adds the kernel gradients and scatters d(in) into a buffer with ghost planes;
 * the edge planes are done first, so the ghost planes (contributions that belong to the
 * neighbours) can travel back to their owners while the interior is computed, and are
 * added there by exchange_reverse_end. Finally d lnL / d delta = d lnL / d x0 / (1 + delta
 * + eps). Buffers are made once at creation (memory ~ sum over layers of the channels,
 * twice, plus ghosts). */
#include "cerberus/npe.h"

#include "cerberus/conv.h"
#include "cerberus/exchange.h"
#include "cerberus/status.h"
#include "cerberus/vmath.h"

#include <math.h>
#include <petsclog.h>
#include <stdlib.h>
#include <string.h>

static const char *act_names[NPE_N_ACTIVATIONS] = {"softplus", "relu", "tanh", "identity",
                                                   "square"};
const char *npe_activation_name(int act) {
  return (act >= 0 && act < NPE_N_ACTIVATIONS) ? act_names[act] : "?";
}

static inline double act_f(int act, double z);
static inline double act_d(int act, double z);

struct npe {
  field *f;
  npe_config cfg;
  int L;
  conv *cv[NPE_MAX_LAYERS];
  exchange *ex[NPE_MAX_LAYERS];
  int g[NPE_MAX_LAYERS], cin[NPE_MAX_LAYERS], cout[NPE_MAX_LAYERS];
  size_t woff[NPE_MAX_LAYERS];
  double *a[NPE_MAX_LAYERS];  /* inputs with ghosts */
  double *da[NPE_MAX_LAYERS]; /* their adjoints with ghosts */
  double *z[NPE_MAX_LAYERS];  /* pre-activations, owned; act'(z) after npe_forward */
  double *psi;                /* features, owned */
  double *x0;                 /* 1 + delta + eps, owned (for d x0 / d delta) */
  double *dz;                 /* workspace, owned, max channels */
  size_t bytes;
};

double npe_activate(int act, double z) {
  return act_f(act, z);
}
double npe_activate_deriv(int act, double z) {
  return act_d(act, z);
}

int npe_activation_index(const char *name) {
  for (int i = 0; i < NPE_N_ACTIVATIONS; i++)
    if (!strcmp(name, act_names[i])) return i;
  return -1;
}

int npe_layers_parse(const char *option, char *spec, npe_config *cfg) {
  int nl = 0;
  char *save = NULL;
  for (char *tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    CB_CHECK(nl < NPE_MAX_LAYERS, CB_ERR_INPUT, "%s: at most %d layers", option, NPE_MAX_LAYERS);
    int K, lmax, ch;
    char act[64] = "";
    CB_CHECK(sscanf(tok, "%d:%d:%d:%63s", &K, &lmax, &ch, act) == 4, CB_ERR_INPUT,
             "%s: '%s' is not K:lmax:channels:activation (e.g. 3:0:1:softplus)", option, tok);
    int ai = npe_activation_index(act);
    CB_CHECK(ai >= 0, CB_ERR_INPUT, "%s: unknown activation '%s' (choose from %s)", option, act,
             NPE_ACTIVATION_CHOICES);
    cfg->layer[nl++] = (npe_layer_config){K, lmax, ch, ai};
  }
  cfg->n_layers = nl;
  return CB_OK;
}

static PetscLogEvent ev_conv = 0, ev_conv_back = 0;

void npe_config_default(npe_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->n_layers = 1;
  cfg->layer[0] = (npe_layer_config){3, 0, 1, NPE_SOFTPLUS};
  cfg->eps = 1e-3;
}

int npe_config_check(const npe_config *cfg) {
  CB_CHECK(cfg->n_layers >= 1 && cfg->n_layers <= NPE_MAX_LAYERS, CB_ERR_INPUT,
           "the engine needs 1 to %d layers (got %d)", NPE_MAX_LAYERS, cfg->n_layers);
  for (int l = 0; l < cfg->n_layers; l++) {
    const npe_layer_config *c = &cfg->layer[l];
    CB_CHECK(c->kernel == 3 || c->kernel == 5, CB_ERR_INPUT,
             "layer %d: kernel size must be 3 or 5 (got %d)", l, c->kernel);
    CB_CHECK(c->lmax >= 0 && c->lmax <= 2, CB_ERR_INPUT,
             "layer %d: lmax must be 0, 1 or 2 (got %d)", l, c->lmax);
    CB_CHECK(c->channels >= 1 && c->channels * (c->lmax + 1) * (c->lmax + 1) <= NPE_MAX_CHANNELS,
             CB_ERR_INPUT, "layer %d: channels must be 1 to %d (got %d)", l,
             NPE_MAX_CHANNELS / ((c->lmax + 1) * (c->lmax + 1)), c->channels);
    CB_CHECK(c->activation >= 0 && c->activation < NPE_N_ACTIVATIONS, CB_ERR_INPUT,
             "layer %d: unknown activation %d", l, c->activation);
  }
  CB_CHECK(isfinite(cfg->eps) && cfg->eps >= 0, CB_ERR_INPUT,
           "eps must be finite and non-negative (got %g)", cfg->eps);
  return CB_OK;
}

int npe_layer_out_channels(const npe_config *cfg, int l) {
  const npe_layer_config *c = &cfg->layer[l];
  return c->channels * (c->lmax + 1) * (c->lmax + 1);
}
int npe_layer_in_channels(const npe_config *cfg, int l) {
  return l == 0 ? 1 : npe_layer_out_channels(cfg, l - 1);
}
int npe_n_features(const npe_config *cfg) {
  return npe_layer_out_channels(cfg, cfg->n_layers - 1);
}
int npe_ghost_width(const npe_config *cfg) {
  int g = 0;
  for (int l = 0; l < cfg->n_layers; l++)
    if ((cfg->layer[l].kernel - 1) / 2 > g) g = (cfg->layer[l].kernel - 1) / 2;
  return g;
}

size_t npe_n_weights(const npe_config *cfg) {
  size_t n = 0;
  for (int l = 0; l < cfg->n_layers; l++) {
    conv *cv = NULL;
    if (conv_create(cfg->layer[l].kernel, cfg->layer[l].lmax, npe_layer_in_channels(cfg, l),
                    cfg->layer[l].channels, &cv) != CB_OK)
      return 0;
    n += conv_n_weights(cv);
    conv_destroy(&cv);
  }
  return n;
}

static double *alloc_doubles(size_t n, size_t *bytes) {
  *bytes += n * sizeof(double);
  return calloc(n ? n : 1, sizeof(double));
}

int npe_create(field *f, const npe_config *cfg, npe **out) {
  *out = NULL;
  CB_CALL(npe_config_check(cfg));
  if (!ev_conv) {
    PetscLogEventRegister("npe_conv", PETSC_OBJECT_CLASSID, &ev_conv);
    PetscLogEventRegister("npe_conv_back", PETSC_OBJECT_CLASSID, &ev_conv_back);
  }
  npe *net;
  CB_CALLOC(net, 1);
  net->f = f;
  net->cfg = *cfg;
  net->L = cfg->n_layers;
  const ptrdiff_t nloc = f->local_n0, nn = f->n * f->n;
  int st = CB_OK, maxc = 1;
  size_t off = 0;
  for (int l = 0; l < net->L; l++) {
    const npe_layer_config *c = &cfg->layer[l];
    net->cin[l] = npe_layer_in_channels(cfg, l);
    net->cout[l] = npe_layer_out_channels(cfg, l);
    if (net->cout[l] > maxc) maxc = net->cout[l];
    net->g[l] = (c->kernel - 1) / 2;
    if ((st = conv_create(c->kernel, c->lmax, net->cin[l], c->channels, &net->cv[l]))) goto fail;
    if ((st = conv_prepare(net->cv[l], f->n, false))) goto fail;
    net->bytes += conv_memory(net->cv[l]);
    if ((st = exchange_create(f->comm, nloc, (size_t)net->cin[l] * nn, net->g[l], &net->ex[l])))
      goto fail;
    net->woff[l] = off;
    off += conv_n_weights(net->cv[l]);
    size_t na = (size_t)(nloc + 2 * net->g[l]) * net->cin[l] * nn;
    net->a[l] = alloc_doubles(na, &net->bytes);
    net->da[l] = alloc_doubles(na, &net->bytes);
    net->z[l] = alloc_doubles((size_t)nloc * net->cout[l] * nn, &net->bytes);
    if (!net->a[l] || !net->da[l] || !net->z[l]) {
      st = CB_ERROR(CB_ERR_MEM, "out of memory for the engine's layer %d", l);
      goto fail;
    }
  }
  net->psi = alloc_doubles((size_t)nloc * net->cout[net->L - 1] * nn, &net->bytes);
  net->x0 = alloc_doubles((size_t)nloc * nn, &net->bytes);
  net->dz = alloc_doubles((size_t)nloc * maxc * nn, &net->bytes);
  if (!net->psi || !net->x0 || !net->dz) {
    st = CB_ERROR(CB_ERR_MEM, "out of memory for the engine's features");
    goto fail;
  }
  *out = net;
  return CB_OK;
fail:
  npe_destroy(&net);
  return st;
}

void npe_destroy(npe **pnet) {
  if (!pnet || !*pnet) return;
  npe *net = *pnet;
  for (int l = 0; l < NPE_MAX_LAYERS; l++) {
    conv_destroy(&net->cv[l]);
    exchange_destroy(&net->ex[l]);
    free(net->a[l]);
    free(net->da[l]);
    free(net->z[l]);
  }
  free(net->psi);
  free(net->x0);
  free(net->dz);
  free(net);
  *pnet = NULL;
}

/* The activations and their slopes, one value at a time (the layers' softplus goes through
 * vmath_softplus, four at a time; npe_activate, used by dense networks, through these). */
static inline double act_f(int act, double z) {
  switch (act) {
  case NPE_SOFTPLUS: {
    double t = exp(-fabs(z)), u = 1.0 + t; /* log1p(t) with Goldberg's correction, see mdn.c */
    return fmax(z, 0.0) + (u == 1.0 ? t : log(u) * t / (u - 1.0));
  }
  case NPE_RELU: return z > 0 ? z : 0.0;
  case NPE_TANH: return tanh(z);
  case NPE_SQUARE: return z * z;
  default: return z;
  }
}

static inline double act_d(int act, double z) {
  switch (act) {
  case NPE_SOFTPLUS: {
    double e = exp(-fabs(z)); /* the logistic function, without overflow */
    return z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
  }
  case NPE_RELU: return z > 0 ? 1.0 : 0.0;
  case NPE_TANH: {
    double t = tanh(z);
    return 1.0 - t * t;
  }
  case NPE_SQUARE: return 2.0 * z;
  default: return 1.0;
  }
}

/* Interior [lo, hi) and edges [0, lo), [hi, nloc) of a slab for ghost width g. */
static void split(ptrdiff_t nloc, int g, ptrdiff_t *lo, ptrdiff_t *hi) {
  *lo = g < nloc ? g : nloc;
  *hi = nloc - g > *lo ? nloc - g : *lo;
}

int npe_forward(npe *net, const double *delta, const double *w, const double **psi) {
  field *f = net->f;
  const ptrdiff_t nloc = f->local_n0, n = f->n, nn = n * n;
  const double eps = net->cfg.eps;
  /* input, with the collective check of 1 + delta + eps > 0 */
  long bad = -1;
  double badv = 0;
  double *x0 = net->a[0] + (size_t)net->g[0] * nn;
  for (ptrdiff_t v = 0; v < nloc * nn; v++) {
    double y = 1.0 + delta[v] + eps;
    if (net->cfg.linear_input && isfinite(delta[v])) {
      x0[v] = delta[v];
    } else if (!(y > 0) || !isfinite(y)) {
      if (bad < 0) {
        bad = (long)(f->local_0_start * nn + v);
        badv = delta[v];
      }
      x0[v] = 1;
    } else {
      x0[v] = y;
    }
  }
  /* keep 1 + delta + eps: d x0 / d delta is its reciprocal, a division in the reverse pass */
  if (!net->cfg.linear_input) {
    memcpy(net->x0, x0, (size_t)nloc * nn * sizeof(double));
    vmath_log(nloc * nn, x0, x0);
  }
  long mine = bad < 0 ? -1 : bad, first = -1;
  struct {
    long idx;
    int rank;
  } loc = {mine < 0 ? (long)9e18 : mine, f->rank}, glob;
  MPI_Allreduce(&loc, &glob, 1, MPI_LONG_INT, MPI_MINLOC, f->comm);
  if (glob.idx != (long)9e18) {
    first = glob.idx;
    (void)MPI_Bcast(&badv, 1, MPI_DOUBLE, glob.rank, f->comm);
    return CB_ERROR(CB_ERR_INPUT,
                    "density field: 1 + delta + eps must be positive, but delta = %g at voxel "
                    "(%ld,%ld,%ld) (eps = %g)",
                    badv, first / (long)nn, (first / (long)n) % (long)n, first % (long)n, eps);
  }
  (void)PetscLogEventBegin(ev_conv, 0, 0, 0, 0);
  for (int l = 0; l < net->L; l++) {
    conv_set_weights(net->cv[l], w + net->woff[l]);
    ptrdiff_t lo, hi;
    split(nloc, net->g[l], &lo, &hi);
    CB_CALL(exchange_begin(net->ex[l], net->a[l]));
    conv_forward(net->cv[l], n, net->a[l], net->z[l], lo, hi);
    CB_CALL(exchange_end(net->ex[l]));
    conv_forward(net->cv[l], n, net->a[l], net->z[l], 0, lo);
    conv_forward(net->cv[l], n, net->a[l], net->z[l], hi, nloc);
    double *o =
        l + 1 < net->L ? net->a[l + 1] + (size_t)net->g[l + 1] * net->cin[l + 1] * nn : net->psi;
    const int act = net->cfg.layer[l].activation;
    const size_t m = (size_t)nloc * net->cout[l] * nn;
    double *z = net->z[l]; /* becomes act'(z), all the reverse pass needs of it */
    if (act == NPE_SOFTPLUS) {
      vmath_softplus((ptrdiff_t)m, z, o, z);
    } else {
      for (size_t i = 0; i < m; i++) {
        o[i] = act_f(act, z[i]);
        z[i] = act_d(act, z[i]);
      }
    }
  }
  (void)PetscLogEventEnd(ev_conv, 0, 0, 0, 0);
  *psi = net->psi;
  return CB_OK;
}

int npe_backward(npe *net, const double *dpsi, double *grad_w, double *grad_delta) {
  field *f = net->f;
  const ptrdiff_t nloc = f->local_n0, n = f->n, nn = n * n;
  (void)PetscLogEventBegin(ev_conv_back, 0, 0, 0, 0);
  for (int l = net->L - 1; l >= 0; l--) {
    const double *dout =
        l + 1 < net->L ? net->da[l + 1] + (size_t)net->g[l + 1] * net->cin[l + 1] * nn : dpsi;
    const size_t m = (size_t)nloc * net->cout[l] * nn;
    const double *dact = net->z[l];
    for (size_t i = 0; i < m; i++) net->dz[i] = dout[i] * dact[i];
    bool need_din = l > 0 || grad_delta;
    double *din = need_din ? net->da[l] : NULL;
    if (din) memset(din, 0, (size_t)(nloc + 2 * net->g[l]) * net->cin[l] * nn * sizeof(double));
    double *gw = grad_w ? grad_w + net->woff[l] : NULL;
    ptrdiff_t lo, hi;
    split(nloc, net->g[l], &lo, &hi);
    conv_backward(net->cv[l], n, net->a[l], net->dz, gw, din, 0, lo);
    conv_backward(net->cv[l], n, net->a[l], net->dz, gw, din, hi, nloc);
    if (din) CB_CALL(exchange_reverse_begin(net->ex[l], din));
    conv_backward(net->cv[l], n, net->a[l], net->dz, gw, din, lo, hi);
    if (din) CB_CALL(exchange_reverse_end(net->ex[l]));
  }
  if (grad_delta) {
    const double *d0 = net->da[0] + (size_t)net->g[0] * nn;
    if (net->cfg.linear_input) {
      memcpy(grad_delta, d0, (size_t)(nloc * nn) * sizeof(double));
    } else {
      const double *y = net->x0; /* 1 + delta + eps */
      const ptrdiff_t m = nloc * nn;
      ptrdiff_t v = 0;
      for (; v + 4 <= m; v += 4) st4(grad_delta + v, ld4(d0 + v) / ld4(y + v));
      for (; v < m; v++) grad_delta[v] = d0[v] / y[v];
    }
  }
  (void)PetscLogEventEnd(ev_conv_back, 0, 0, 0, 0);
  return CB_OK;
}

const double *npe_features(const npe *net) {
  return net->psi;
}
ptrdiff_t npe_feature_stride(const npe *net) {
  return net->f->n * net->f->n;
}
const double *npe_input(const npe *net) {
  return net->a[0] + (size_t)net->g[0] * net->f->n * net->f->n;
}
double npe_exchange_wait(const npe *net) {
  double t = 0;
  for (int l = 0; l < net->L; l++) t += exchange_wait_time(net->ex[l]);
  return t;
}
size_t npe_memory(const npe *net) {
  return net->bytes;
}
