/* weights: model architectures and their weights files (include/cerberus/weights.h).
 *
 * The architecture is carried entirely by attributes on the file's root, so a weights file
 * alone rebuilds the model: the engine's layers (kernel, lmax, channels, activation name),
 * eps, the head's G and offsets (A0, M0, S0, sigma_min) and the vector's length. Reading
 * checks every attribute and the length against the architecture; commands that were
 * given an architecture as well compare the two (weights_read_expect). MODEL.md sections
 * 3-5 (the order of the 17 paper weights is the engine's then the head's order). */
#include "cerberus/weights.h"

#include "cerberus/conv.h"
#include "cerberus/h5io.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void weights_arch_default(weights_arch *a) {
  memset(a, 0, sizeof *a);
  a->model = WEIGHTS_NPE;
  npe_config_default(&a->npe);
  mdn_config_default(&a->mdn);
  a->mdn.n_features = npe_n_features(&a->npe);
}

int weights_arch_check(weights_arch *a) {
  CB_CHECK(a->model == WEIGHTS_NPE || a->model == WEIGHTS_POWERLAW, CB_ERR_INPUT,
           "unknown model %d", a->model);
  CB_CALL(npe_config_check(&a->npe));
  a->mdn.n_features = a->model == WEIGHTS_NPE ? npe_n_features(&a->npe) : 0;
  CB_CALL(mdn_config_check(&a->mdn));
  return CB_OK;
}

size_t weights_count(const weights_arch *a) {
  mdn_config m = a->mdn;
  if (a->model == WEIGHTS_POWERLAW) {
    m.n_features = 0;
    return 1 + mdn_n_weights(&m);
  }
  m.n_features = npe_n_features(&a->npe);
  return npe_n_weights(&a->npe) + mdn_n_weights(&m);
}

void weights_arch_describe(const weights_arch *a, char *buf, size_t n) {
  size_t k = 0;
  if (a->model == WEIGHTS_POWERLAW) {
    k += (size_t)snprintf(buf, n, "powerlaw (eps %g)", a->npe.eps);
  } else {
    k += (size_t)snprintf(buf, n, "npe: %d layer(s) [", a->npe.n_layers);
    for (int l = 0; l < a->npe.n_layers && k < n; l++) {
      const npe_layer_config *c = &a->npe.layer[l];
      k += (size_t)snprintf(buf + k, n - k, "%s%d^3 lmax%d x%d %s", l ? ", " : "", c->kernel,
                            c->lmax, c->channels, npe_activation_name(c->activation));
    }
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "] eps %g", a->npe.eps);
  }
  if (k < n)
    snprintf(buf + k, n - k, ", G=%d (A0 %g, M0 %g, S0 %g, sigma_min %g), %zu weights",
             a->mdn.n_gauss, a->mdn.A0, a->mdn.M0, a->mdn.S0, a->mdn.sigma_min, weights_count(a));
}

bool weights_arch_equal(const weights_arch *a, const weights_arch *b) {
  if (a->model != b->model || a->mdn.n_gauss != b->mdn.n_gauss || a->npe.eps != b->npe.eps ||
      a->mdn.A0 != b->mdn.A0 || a->mdn.M0 != b->mdn.M0 || a->mdn.S0 != b->mdn.S0 ||
      a->mdn.sigma_min != b->mdn.sigma_min)
    return false;
  if (a->model == WEIGHTS_POWERLAW) return true;
  if (a->npe.n_layers != b->npe.n_layers) return false;
  for (int l = 0; l < a->npe.n_layers; l++) {
    const npe_layer_config *x = &a->npe.layer[l], *y = &b->npe.layer[l];
    if (x->kernel != y->kernel || x->lmax != y->lmax || x->channels != y->channels ||
        x->activation != y->activation)
      return false;
  }
  return true;
}

int weights_arch_from_options(options *o, weights_arch *a) {
  weights_arch_default(a);
  CB_CALL(options_choice(o, "-model", "model: the neural engine or the power-law baseline",
                         WEIGHTS_MODEL_CHOICES, "npe", &a->model));
  char spec[1024];
  CB_CALL(options_string(o, "-layers", "engine layers, comma-separated K:lmax:channels:activation",
                         "3:0:1:softplus", spec, sizeof spec, NULL));
  CB_CALL(npe_layers_parse("-layers", spec, &a->npe));
  CB_CALL(options_real(o, "-eps", "x0 = ln(1 + delta + eps)", 1e-3, &a->npe.eps));
  long G = 2;
  CB_CALL(options_int(o, "-n_gauss", "Gaussians in the mass function", 2, &G));
  a->mdn.n_gauss = (int)G;
  CB_CALL(options_real(o, "-A0", "alpha offset, (Mpc/h)^-3", 1e-3, &a->mdn.A0));
  CB_CALL(options_real(o, "-M0", "mean offset, M_sun/h", 2e12, &a->mdn.M0));
  CB_CALL(options_real(o, "-S0", "width at zero weights", 1.0, &a->mdn.S0));
  CB_CALL(options_real(o, "-sigma_min", "smallest width", 0.05, &a->mdn.sigma_min));
  CB_CALL(weights_arch_check(a));
  return CB_OK;
}

int weights_write_layers(h5file *h, const char *count_name, const char *prefix,
                         const npe_config *c) {
  char name[96];
  CB_CALL(h5io_attr_write_long(h, "/", count_name, c->n_layers));
  for (int l = 0; l < c->n_layers; l++) {
    const npe_layer_config *y = &c->layer[l];
    snprintf(name, sizeof name, "%s%d_kernel", prefix, l);
    CB_CALL(h5io_attr_write_long(h, "/", name, y->kernel));
    snprintf(name, sizeof name, "%s%d_lmax", prefix, l);
    CB_CALL(h5io_attr_write_long(h, "/", name, y->lmax));
    snprintf(name, sizeof name, "%s%d_channels", prefix, l);
    CB_CALL(h5io_attr_write_long(h, "/", name, y->channels));
    snprintf(name, sizeof name, "%s%d_activation", prefix, l);
    CB_CALL(h5io_attr_write_string(h, "/", name, npe_activation_name(y->activation)));
  }
  return CB_OK;
}

int weights_read_layers(h5file *h, const char *count_name, const char *prefix, npe_config *c) {
  char name[96], buf[64];
  long x;
  CB_CALL(h5io_attr_read_long(h, "/", count_name, &x));
  CB_CHECK(x >= 1 && x <= NPE_MAX_LAYERS, CB_ERR_INPUT, "'%s': %s %ld outside 1..%d", h5io_path(h),
           count_name, x, NPE_MAX_LAYERS);
  c->n_layers = (int)x;
  for (int l = 0; l < c->n_layers; l++) {
    npe_layer_config *y = &c->layer[l];
    snprintf(name, sizeof name, "%s%d_kernel", prefix, l);
    CB_CALL(h5io_attr_read_long(h, "/", name, &x));
    y->kernel = (int)x;
    snprintf(name, sizeof name, "%s%d_lmax", prefix, l);
    CB_CALL(h5io_attr_read_long(h, "/", name, &x));
    y->lmax = (int)x;
    snprintf(name, sizeof name, "%s%d_channels", prefix, l);
    CB_CALL(h5io_attr_read_long(h, "/", name, &x));
    y->channels = (int)x;
    snprintf(name, sizeof name, "%s%d_activation", prefix, l);
    CB_CALL(h5io_attr_read_string(h, "/", name, buf, sizeof buf));
    y->activation = npe_activation_index(buf);
    CB_CHECK(y->activation >= 0, CB_ERR_INPUT, "'%s': layer %d has unknown activation '%s'",
             h5io_path(h), l, buf);
  }
  return CB_OK;
}

int weights_write(MPI_Comm comm, const char *path, bool overwrite, const weights_arch *a,
                  const double *w, const options *o) {
  h5file *h = NULL;
  CB_CALL(h5io_create(comm, path, overwrite, &h));
  int st = CB_OK;
  size_t nw = weights_count(a);
#define TRY(x)                                                                                     \
  if ((st = (x))) goto fail
  if (o) TRY(h5io_write_provenance(h, o));
  TRY(h5io_write_array(h, "/weights", 1, &nw, w));
  TRY(h5io_attr_write_string(h, "/", "model", a->model == WEIGHTS_NPE ? "npe" : "powerlaw"));
  TRY(h5io_attr_write_long(h, "/", "n_weights", (long)nw));
  if (a->model == WEIGHTS_NPE) {
    TRY(weights_write_layers(h, "n_layers", "layer", &a->npe));
  } else {
    TRY(h5io_attr_write_long(h, "/", "n_layers", 0));
  }
  TRY(h5io_attr_write_double(h, "/", "eps", a->npe.eps));
  TRY(h5io_attr_write_long(h, "/", "n_gauss", a->mdn.n_gauss));
  TRY(h5io_attr_write_double(h, "/", "A0", a->mdn.A0));
  TRY(h5io_attr_write_double(h, "/", "M0", a->mdn.M0));
  TRY(h5io_attr_write_double(h, "/", "S0", a->mdn.S0));
  TRY(h5io_attr_write_double(h, "/", "sigma_min", a->mdn.sigma_min));
#undef TRY
  CB_CALL(h5io_commit(&h));
  return CB_OK;
fail:
  h5io_abort(&h);
  return st;
}

int weights_read(MPI_Comm comm, const char *path, weights_arch *a, double **w) {
  *w = NULL;
  h5file *h = NULL;
  CB_CALL(h5io_open(comm, path, &h));
  int st = CB_OK;
  double *v = NULL;
  char buf[64];
  long x;
#define TRY(e)                                                                                     \
  if ((st = (e))) goto fail
  weights_arch_default(a);
  TRY(h5io_attr_read_string(h, "/", "model", buf, sizeof buf));
  if (!strcmp(buf, "npe"))
    a->model = WEIGHTS_NPE;
  else if (!strcmp(buf, "powerlaw"))
    a->model = WEIGHTS_POWERLAW;
  else {
    st = CB_ERROR(CB_ERR_INPUT, "weights '%s': unknown model '%s' (npe or powerlaw)", path, buf);
    goto fail;
  }
  if (a->model == WEIGHTS_NPE) {
    TRY(weights_read_layers(h, "n_layers", "layer", &a->npe));
  }
  TRY(h5io_attr_read_double(h, "/", "eps", &a->npe.eps));
  TRY(h5io_attr_read_long(h, "/", "n_gauss", &x));
  a->mdn.n_gauss = (int)x;
  TRY(h5io_attr_read_double(h, "/", "A0", &a->mdn.A0));
  TRY(h5io_attr_read_double(h, "/", "M0", &a->mdn.M0));
  TRY(h5io_attr_read_double(h, "/", "S0", &a->mdn.S0));
  TRY(h5io_attr_read_double(h, "/", "sigma_min", &a->mdn.sigma_min));
  if ((st = weights_arch_check(a))) {
    st = CB_ERROR(CB_ERR_INPUT, "weights '%s': bad architecture: %s", path, status_message());
    goto fail;
  }
  size_t nc = 0, nr = 0;
  TRY(h5io_read_rows_all(h, "/weights", &nc, &nr, &v));
  size_t want = weights_count(a);
  if (nc > 1 || nr != want) {
    st = CB_ERROR(
        CB_ERR_INPUT,
        "weights '%s': /weights has %zu values but the architecture it describes needs %zu", path,
        nr * (nc ? nc : 1), want);
    goto fail;
  }
  for (size_t i = 0; i < nr; i++)
    if (!isfinite(v[i])) {
      st = CB_ERROR(CB_ERR_INPUT, "weights '%s': weight %zu is not finite", path, i);
      goto fail;
    }
#undef TRY
  h5io_close(&h);
  *w = v;
  return CB_OK;
fail:
  free(v);
  h5io_close(&h);
  return st;
}

int weights_read_expect(MPI_Comm comm, const char *path, const weights_arch *want, double **w) {
  weights_arch a;
  CB_CALL(weights_read(comm, path, &a, w));
  if (!weights_arch_equal(&a, want)) {
    char d1[512], d2[512];
    weights_arch_describe(&a, d1, sizeof d1);
    weights_arch_describe(want, d2, sizeof d2);
    free(*w);
    *w = NULL;
    return CB_ERROR(CB_ERR_INPUT, "weights '%s' are for %s, but %s was asked for", path, d1, d2);
  }
  return CB_OK;
}

/* Name of free weight g of kernel type t (an (l, m) index, conv.h) of a K^3 kernel. */
static void group_name(int K, int t, int g, char *buf, size_t n) {
  static const char *k3[] = {"centre", "face", "edge", "corner"};
  if (t == 0 && K == 3 && g < 4) {
    snprintf(buf, n, "%s", k3[g]);
  } else if (t == 0) {
    snprintf(buf, n, "r%d", g);
  } else {
    int l = t < 4 ? 1 : 2, m = t - l * l - l;
    snprintf(buf, n, "Y%d%s%d_g%d", l, m < 0 ? "m" : "", m < 0 ? -m : m, g);
  }
}

static int engine_name(const weights_arch *a, size_t i, char *buf, size_t n) {
  const bool plain = a->npe.n_layers == 1 && npe_n_features(&a->npe) == 1;
  size_t off = 0;
  for (int l = 0; l < a->npe.n_layers; l++) {
    const npe_layer_config *c = &a->npe.layer[l];
    conv *cv = NULL;
    CB_CALL(conv_create(c->kernel, c->lmax, npe_layer_in_channels(&a->npe, l), c->channels, &cv));
    const int cin = conv_c_in(cv), cout = conv_c_out(cv), nlm = (c->lmax + 1) * (c->lmax + 1);
    const size_t nl = conv_n_weights(cv);
    if (i >= off + nl) {
      off += nl;
      conv_destroy(&cv);
      continue;
    }
    size_t r = i - off;
    char grp[32];
    for (int q = 0; q < cout; q++)
      for (int ci = 0; ci < cin; ci++) {
        size_t ng = (size_t)conv_n_groups(cv, q % nlm);
        if (r < ng) {
          group_name(c->kernel, q % nlm, (int)r, grp, sizeof grp);
          if (plain)
            snprintf(buf, n, "w_%s", grp);
          else
            snprintf(buf, n, "w%d_%d.%d_%s", l, q, ci, grp);
          conv_destroy(&cv);
          return CB_OK;
        }
        r -= ng;
      }
    if (plain)
      snprintf(buf, n, "b_conv");
    else
      snprintf(buf, n, "b%d_%zu", l, r);
    conv_destroy(&cv);
    return CB_OK;
  }
  return CB_ERROR(CB_ERR_INTERNAL, "weight %zu not found in the engine", i);
}

int weights_name(const weights_arch *a, size_t i, char *buf, size_t n) {
  CB_CHECK(i < weights_count(a), CB_ERR_INPUT, "weight %zu out of range (%zu weights)", i,
           weights_count(a));
  const int G = a->mdn.n_gauss;
  size_t head0 = 0;
  int P = 0;
  if (a->model == WEIGHTS_POWERLAW) {
    if (i == 0) {
      snprintf(buf, n, "beta");
      return CB_OK;
    }
    head0 = 1;
  } else {
    head0 = npe_n_weights(&a->npe);
    P = npe_n_features(&a->npe);
    if (i < head0) return engine_name(a, i, buf, n);
  }
  /* the head: for each of alpha, mu, sigma: G x P slopes then G offsets */
  static const char *slope[] = {"a", "m", "s"}, *offset[] = {"b_alpha", "b_mu", "b_sigma"};
  size_t r = i - head0, per = (size_t)G * (size_t)(P + 1);
  int part = (int)(r / per);
  r %= per;
  if (r < (size_t)G * (size_t)P) {
    int gi = (int)(r / (size_t)P), p = (int)(r % (size_t)P);
    if (P == 1)
      snprintf(buf, n, "%s_%d", slope[part], gi + 1);
    else
      snprintf(buf, n, "%s_%d_%d", slope[part], gi + 1, p);
  } else {
    snprintf(buf, n, "%s_%d", offset[part], (int)(r - (size_t)G * (size_t)P) + 1);
  }
  return CB_OK;
}

long weights_centre_index(const weights_arch *a, int o) {
  if (a->model != WEIGHTS_NPE || o < 0 || o >= a->npe.layer[0].channels) return -1;
  const npe_layer_config *c = &a->npe.layer[0];
  conv *cv = NULL;
  if (conv_create(c->kernel, c->lmax, 1, c->channels, &cv)) {
    status_clear();
    return -1;
  }
  const int nlm = (c->lmax + 1) * (c->lmax + 1), q0 = o * nlm;
  long off = 0;
  for (int q = 0; q < q0; q++) off += conv_n_groups(cv, q % nlm); /* one input channel */
  conv_destroy(&cv);
  return off;
}
