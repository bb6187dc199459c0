/* posterior: ln p of the weights given a field and a catalogue, its gradient, the monotone
 * engine's parametrisation and the binned mass function (include/cerberus/posterior.h,
 * MODEL.md sections 5 and 8).
 *
 * The likelihood module gives ln L(w) and d ln L / d w (reduced over the ranks); this module
 * adds the Gaussian prior and, for the monotone engine, maps the sampled t_c to the centre
 * weight w_c = softplus(t_c) and multiplies its gradient by sigmoid(t_c). The mass-function
 * summary reuses the likelihood's engine (one forward pass) and the head, voxel by voxel, as
 * `cerberus hmf` does, and reduces the bin sums over the ranks. */
#include "cerberus/posterior.h"

#include "cerberus/conv.h"
#include "cerberus/field.h"
#include "cerberus/mdn.h"
#include "cerberus/npe.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CB_STATS_MAX_P 64 /* features a standardised head takes (checked at creation) */

struct posterior {
  likelihood *lk;
  field *f;
  const double *delta;
  weights_arch a;
  posterior_config cfg;
  size_t dim;
  size_t ne;  /* engine weights (the power law's beta): the head starts at ne */
  bool *mono; /* [dim] */
  long *rel;  /* [ne]: the centre weight that weight i is sampled relative to, or -1 */
  double *w;  /* [dim] scratch weights */
  double *gw; /* [dim] scratch gradient */
  /* standardised features: P features, their mean m and sd s over the voxels at the engine
   * weights of te (the engine part of the theta they were computed for) */
  bool std, have_stats;
  int P;
  double *m, *s, *te, *ge; /* [P], [P], [ne], [ne] */
  double *u;               /* d(ln p) / d psi through m and s (the psi layout) */
  const double *psi;       /* the engine's features at te */
  int *bin;                /* [n_real_local] density bin of each owned voxel */
  double *dn;              /* [n^2 POSTERIOR_MF_MASSES] a plane's dn/dlnM at the masses */
  double edges[POSTERIOR_MF_BINS + 1], masses[POSTERIOR_MF_MASSES];
  double nvox[POSTERIOR_MF_BINS];
  long n_eval;
};

void posterior_config_default(posterior_config *c) {
  c->monotone = false;
  c->standardise = false;
  c->relative_bias = false;
  c->prior_sigma = 10.0;
}

static double inv_softplus(double w) { /* ln(e^w - 1), w > 0 */
  return w > 30 ? w + log1p(-exp(-w)) : log(expm1(w));
}

void posterior_destroy(posterior **pp) {
  if (!pp || !*pp) return;
  posterior *p = *pp;
  free(p->mono);
  free(p->rel);
  free(p->w);
  free(p->gw);
  free(p->bin);
  free(p->dn);
  free(p->m);
  free(p->s);
  free(p->te);
  free(p->ge);
  free(p->u);
  free(p);
  *pp = NULL;
}

int posterior_create(field *f, likelihood *lk, const double *delta, const weights_arch *a,
                     const posterior_config *cfg, posterior **out) {
  *out = NULL;
  CB_CHECK(cfg->prior_sigma > 0 && isfinite(cfg->prior_sigma), CB_ERR_INPUT,
           "the prior width -prior_sigma must be positive (got %g)", cfg->prior_sigma);
  CB_CHECK(!cfg->relative_bias || (cfg->monotone && cfg->standardise), CB_ERR_INPUT,
           "-relative_bias needs -engine_monotone and -standardise_features");
  CB_CHECK(!cfg->monotone || a->model == WEIGHTS_NPE, CB_ERR_INPUT,
           "-engine_monotone needs the npe model (the power law has no engine)");
  posterior *p = calloc(1, sizeof *p);
  CB_CHECK(p, CB_ERR_MEM, "out of memory for the posterior");
  p->lk = lk;
  p->f = f;
  p->delta = delta;
  p->a = *a;
  p->cfg = *cfg;
  p->dim = weights_count(a);
  p->mono = calloc(p->dim, sizeof *p->mono);
  p->w = calloc(p->dim, sizeof *p->w);
  p->gw = calloc(p->dim, sizeof *p->gw);
  p->bin = calloc(f->n_real_local ? (size_t)f->n_real_local : 1, sizeof *p->bin);
  p->dn = malloc((size_t)f->n * (size_t)f->n * POSTERIOR_MF_MASSES * sizeof *p->dn);
  p->ne = a->model == WEIGHTS_POWERLAW ? 1 : npe_n_weights(&a->npe);
  p->P = a->mdn.n_features;
  p->std = cfg->standardise && a->model == WEIGHTS_NPE && p->P > 0;
  if (p->std && p->P > CB_STATS_MAX_P) {
    posterior_destroy(&p);
    return CB_ERROR(CB_ERR_INPUT, "-standardise_features takes at most %d engine features (got %d)",
                    CB_STATS_MAX_P, a->mdn.n_features);
  }
  if (p->std) {
    p->m = calloc((size_t)p->P, sizeof *p->m);
    p->s = calloc((size_t)p->P, sizeof *p->s);
    p->te = calloc(p->ne, sizeof *p->te);
    p->ge = calloc(p->ne, sizeof *p->ge);
    p->u = calloc(f->n_real_local ? (size_t)f->n_real_local * (size_t)p->P : 1, sizeof *p->u);
  }
  p->rel = malloc(p->ne * sizeof *p->rel);
  if (!p->mono || !p->w || !p->gw || !p->bin || !p->dn || !p->rel ||
      (p->std && (!p->m || !p->s || !p->te || !p->ge || !p->u))) {
    posterior_destroy(&p);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the posterior");
  }
  for (size_t i = 0; i < p->ne; i++) p->rel[i] = -1;
  if (cfg->monotone)
    for (int o = 0; o < a->npe.layer[0].channels; o++) {
      long c = weights_centre_index(a, o);
      if (c >= 0) p->mono[c] = true;
    }
  if (cfg->monotone && p->std) {
    /* the other weights of each monotone channel's l = 0 kernel (and with relative_bias its
     * bias) relative to the centre weight */
    const npe_layer_config *l0 = &a->npe.layer[0];
    conv *cv = NULL;
    int st = conv_create(l0->kernel, l0->lmax, 1, l0->channels, &cv);
    if (st) {
      posterior_destroy(&p);
      return st;
    }
    const int nlm = (l0->lmax + 1) * (l0->lmax + 1), ng = conv_n_groups(cv, 0);
    const size_t n_kern = conv_n_weights(cv) - (size_t)conv_c_out(cv);
    for (int o = 0; o < l0->channels; o++) {
      long c = weights_centre_index(a, o);
      if (c < 0) continue;
      for (int g = 1; g < ng; g++) p->rel[c + g] = c;
      if (cfg->relative_bias) p->rel[n_kern + (size_t)(o * nlm)] = c;
    }
    conv_destroy(&cv);
  }
  /* bins in x = ln(1 + delta + eps): the extremes first */
  const double eps = a->npe.eps;
  double lo = INFINITY, hi = -INFINITY;
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    double x = log(1 + delta[v] + eps);
    lo = fmin(lo, x);
    hi = fmax(hi, x);
  }
  double mm[2] = {-lo, hi};
  field_allreduce_max_n(f, mm, 2);
  lo = -mm[0];
  hi = mm[1];
  if (!(hi > lo) || !isfinite(lo) || !isfinite(hi)) {
    posterior_destroy(&p);
    return CB_ERROR(CB_ERR_INPUT, "the density field is constant or not finite: no density bins");
  }
  hi += 1e-9 * (hi - lo) + 1e-12;
  /* edges at the quintiles of x, from a fine histogram reduced over the ranks (bins of equal
   * voxel counts to the fine bins' resolution, 1/4096 of the range) */
  enum { NH = 4096 };
  double *hist = calloc(NH, sizeof *hist);
  if (!hist) {
    posterior_destroy(&p);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the density bins");
  }
  const double dx = (hi - lo) / NH;
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    int k = (int)floor((log(1 + delta[v] + eps) - lo) / dx);
    hist[k < 0 ? 0 : k >= NH ? NH - 1 : k] += 1;
  }
  field_allreduce_sum_n(f, hist, NH);
  double total = 0, cum = 0;
  for (int k = 0; k < NH; k++) total += hist[k];
  double xe[POSTERIOR_MF_BINS + 1];
  xe[0] = lo;
  xe[POSTERIOR_MF_BINS] = hi;
  int b = 1;
  for (int k = 0; k < NH && b < POSTERIOR_MF_BINS; k++) {
    cum += hist[k];
    while (b < POSTERIOR_MF_BINS && cum >= total * b / POSTERIOR_MF_BINS)
      xe[b++] = lo + (k + 1) * dx;
  }
  free(hist);
  for (int e = 0; e <= POSTERIOR_MF_BINS; e++) p->edges[e] = exp(xe[e]) - 1 - eps;
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    double x = log(1 + delta[v] + eps);
    int k = 0;
    while (k < POSTERIOR_MF_BINS - 1 && x >= xe[k + 1]) k++;
    p->bin[v] = k;
    p->nvox[k] += 1;
  }
  field_allreduce_sum_n(f, p->nvox, POSTERIOR_MF_BINS);
  const double mth = likelihood_mth(lk), fac[POSTERIOR_MF_MASSES] = {1.5, 10, 100};
  for (int m = 0; m < POSTERIOR_MF_MASSES; m++) p->masses[m] = fac[m] * mth;
  *out = p;
  return CB_OK;
}

size_t posterior_dim(const posterior *p) {
  return p->dim;
}
bool posterior_is_monotone(const posterior *p, size_t i) {
  return i < p->dim && p->mono[i];
}
long posterior_n_evaluations(const posterior *p) {
  return p->n_eval;
}
const double *posterior_mf_edges(const posterior *p) {
  return p->edges;
}
const double *posterior_mf_masses(const posterior *p) {
  return p->masses;
}

/* The engine's weights at theta (the monotone centre weights through softplus). */
static void engine_weights(const posterior *p, const double *theta, double *w) {
  for (size_t i = 0; i < p->ne; i++) w[i] = p->mono[i] ? mdn_softplus(theta[i]) : theta[i];
  for (size_t i = 0; i < p->ne; i++)
    if (p->rel[i] >= 0) w[i] = theta[i] * w[p->rel[i]];
}

/* m_p and s_p at the engine part of theta (kept for the next call with the same engine part,
 * unless forward: then the engine runs at theta in any case, and its features are current);
 * *ok false if a feature is constant or not finite. Collective. */
static int feature_stats(posterior *p, const double *theta, bool forward, bool *ok) {
  if (forward || !p->have_stats || memcmp(p->te, theta, p->ne * sizeof *theta)) {
    engine_weights(p, theta, p->w);
    p->have_stats = false;
    CB_CALL(npe_forward(likelihood_engine(p->lk), p->delta, p->w, &p->psi));
    const int P = p->P;
    const ptrdiff_t nn = p->f->n * p->f->n;
    const double N = (double)p->f->n * (double)nn;
    double sum[2 * CB_STATS_MAX_P];
    memset(sum, 0, sizeof sum);
    for (int pass = 0; pass < 2; pass++) {
      for (ptrdiff_t q = 0; q < p->f->local_n0; q++)
        for (int j = 0; j < P; j++) {
          const double *x = p->psi + ((size_t)q * (size_t)P + (size_t)j) * (size_t)nn;
          double t = 0;
          if (pass == 0)
            for (ptrdiff_t k = 0; k < nn; k++) t += x[k];
          else
            for (ptrdiff_t k = 0; k < nn; k++) t += (x[k] - p->m[j]) * (x[k] - p->m[j]);
          sum[pass * P + j] += t;
        }
      field_allreduce_sum_n(p->f, sum + pass * P, (size_t)P);
      for (int j = 0; j < P; j++) {
        if (pass == 0)
          p->m[j] = sum[j] / N;
        else
          p->s[j] = sqrt(sum[P + j] / N);
      }
    }
    memcpy(p->te, theta, p->ne * sizeof *theta);
    p->have_stats = true;
  }
  *ok = true;
  for (int j = 0; j < p->P; j++)
    if (!(p->s[j] > 0) || !isfinite(p->s[j]) || !isfinite(p->m[j])) *ok = false;
  return CB_OK;
}

/* Head output o (block k of alpha, mu, sigma; Gaussian i): index of its slope for feature j and
 * of its intercept (mdn.h's order). */
static size_t slope_at(const posterior *p, int k, int i, int j) {
  const int G = p->a.mdn.n_gauss, P = p->P;
  return p->ne + (size_t)(k * G * (P + 1) + i * P + j);
}
static size_t intercept_at(const posterior *p, int k, int i) {
  const int G = p->a.mdn.n_gauss, P = p->P;
  return p->ne + (size_t)(k * G * (P + 1) + G * P + i);
}

/* w from theta (feature_stats done, if standardised). */
static void map_weights(const posterior *p, const double *theta, double *w) {
  engine_weights(p, theta, w);
  for (size_t i = p->ne; i < p->dim; i++) w[i] = theta[i];
  if (!p->std) return;
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < p->a.mdn.n_gauss; i++) {
      double b = theta[intercept_at(p, k, i)];
      for (int j = 0; j < p->P; j++) {
        double a1 = theta[slope_at(p, k, i, j)];
        w[slope_at(p, k, i, j)] = a1 / p->s[j];
        b -= a1 * p->m[j] / p->s[j];
      }
      w[intercept_at(p, k, i)] = b;
    }
}

static double ln_jacobian(const posterior *p, const double *w) {
  double t = 0;
  for (size_t i = 0; i < p->ne; i++)
    if (p->rel[i] >= 0) t += log(w[p->rel[i]]); /* w_i = r_i w_c */
  for (int j = 0; p->std && j < p->P; j++) t -= 3.0 * p->a.mdn.n_gauss * log(p->s[j]);
  return t;
}

static int constant_feature(const posterior *p, const char *what) {
  for (int j = 0; j < p->P; j++)
    if (!(p->s[j] > 0) || !isfinite(p->s[j]))
      return CB_ERROR(CB_ERR_INPUT,
                      "%s: engine feature %d is constant over the field (sd %g), which "
                      "standardised features (-standardise_features) cannot represent",
                      what, j, p->s[j]);
  return CB_OK;
}

int posterior_to_weights(posterior *p, const double *theta, double *w) {
  if (p->std) {
    bool ok = true;
    CB_CALL(feature_stats(p, theta, false, &ok));
    if (!ok) CB_CALL(constant_feature(p, "the sampled point"));
  }
  map_weights(p, theta, w);
  return CB_OK;
}

int posterior_from_weights(posterior *p, const char *what, const double *w, double *theta) {
  for (size_t i = 0; i < p->dim; i++) {
    if (p->mono[i]) {
      if (!(w[i] > 0)) {
        char name[64];
        CB_CALL(weights_name(&p->a, i, name, sizeof name));
        return CB_ERROR(CB_ERR_INPUT,
                        "%s: the centre weight %s = %g is not positive, which the monotone "
                        "engine (-engine_monotone) cannot represent",
                        what, name, w[i]);
      }
      theta[i] = inv_softplus(w[i]);
    } else {
      theta[i] = w[i];
    }
  }
  for (size_t i = 0; i < p->ne; i++)
    if (p->rel[i] >= 0) theta[i] = w[i] / w[p->rel[i]];
  if (!p->std) return CB_OK;
  bool ok = true;
  CB_CALL(feature_stats(p, theta, false, &ok));
  if (!ok) CB_CALL(constant_feature(p, what));
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < p->a.mdn.n_gauss; i++) {
      double b = w[intercept_at(p, k, i)];
      for (int j = 0; j < p->P; j++) {
        double a = w[slope_at(p, k, i, j)];
        theta[slope_at(p, k, i, j)] = a * p->s[j];
        b += a * p->m[j];
      }
      theta[intercept_at(p, k, i)] = b;
    }
  return CB_OK;
}

/* The prior at theta whose weights are w: N(0, sigma^2) on the engine's sampled numbers and on
 * the head's weights, plus the Jacobian. */
static double log_prior(const posterior *p, const double *theta, const double *w) {
  const double s2 = p->cfg.prior_sigma * p->cfg.prior_sigma;
  double t = ln_jacobian(p, w);
  for (size_t i = 0; i < p->dim; i++) {
    double x = i < p->ne && p->rel[i] < 0 ? theta[i] : w[i];
    t -= 0.5 * x * x / s2;
  }
  return t;
}

int posterior_log_prior(posterior *p, const double *theta, double *lprior) {
  CB_CALL(posterior_to_weights(p, theta, p->w));
  *lprior = log_prior(p, theta, p->w);
  return CB_OK;
}

/* Standardised features: the head's gradient in the sampled numbers from G = d ln p / d w, and
 * the engine's share through m and s, one reverse pass of the engine, added to G. */
static int standardised_gradient(posterior *p, double *G, double *grad) {
  const int P = p->P;
  double dm[CB_STATS_MAX_P] = {0}, ds[CB_STATS_MAX_P] = {0};
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < p->a.mdn.n_gauss; i++) {
      const double Gb = G[intercept_at(p, k, i)];
      for (int j = 0; j < P; j++) {
        const size_t at = slope_at(p, k, i, j);
        const double a = p->w[at], Ga = G[at];
        grad[at] = (Ga - Gb * p->m[j]) / p->s[j];
        dm[j] -= Gb * a;
        ds[j] += (Gb * a * p->m[j] - Ga * a) / p->s[j];
      }
      grad[intercept_at(p, k, i)] = Gb;
    }
  const ptrdiff_t nn = p->f->n * p->f->n;
  const double N = (double)p->f->n * (double)nn;
  for (int j = 0; j < P; j++) ds[j] -= 3.0 * p->a.mdn.n_gauss / p->s[j]; /* the Jacobian */
  for (ptrdiff_t q = 0; q < p->f->local_n0; q++)
    for (int j = 0; j < P; j++) {
      const size_t off = ((size_t)q * (size_t)P + (size_t)j) * (size_t)nn;
      const double c0 = dm[j] / N, c1 = ds[j] / (N * p->s[j]), mj = p->m[j];
      for (ptrdiff_t k = 0; k < nn; k++)
        p->u[off + (size_t)k] = c0 + c1 * (p->psi[off + (size_t)k] - mj);
    }
  memset(p->ge, 0, p->ne * sizeof *p->ge);
  CB_CALL(npe_backward(likelihood_engine(p->lk), p->u, p->ge, NULL));
  field_allreduce_sum_n(p->f, p->ge, p->ne);
  for (size_t i = 0; i < p->ne; i++) G[i] += p->ge[i];
  return CB_OK;
}

int posterior_evaluate(posterior *p, const double *theta, double *lnp, double *grad,
                       double *lnL_out) {
  bool ok = true;
  if (p->std) CB_CALL(feature_stats(p, theta, true, &ok));
  double lnL = -INFINITY;
  if (ok) {
    map_weights(p, theta, p->w);
    /* standardised: the engine has just run at these weights */
    CB_CALL(p->std ? likelihood_evaluate_forwarded(p->lk, p->delta, p->w, &lnL, grad ? p->gw : NULL,
                                                   NULL)
                   : likelihood_evaluate(p->lk, p->delta, p->w, &lnL, grad ? p->gw : NULL, NULL));
  }
  p->n_eval++;
  if (lnL_out) *lnL_out = lnL;
  const double s2 = p->cfg.prior_sigma * p->cfg.prior_sigma;
  if (!isfinite(lnL)) {
    *lnp = -INFINITY;
    if (grad) memset(grad, 0, p->dim * sizeof *grad);
    return CB_OK;
  }
  *lnp = lnL + log_prior(p, theta, p->w);
  if (!grad) return CB_OK;
  double *G = p->gw; /* d ln p / d w: the head's prior is on w */
  for (size_t i = p->ne; i < p->dim; i++) G[i] -= p->w[i] / s2;
  if (p->std)
    CB_CALL(standardised_gradient(p, G, grad));
  else
    for (size_t i = p->ne; i < p->dim; i++) grad[i] = G[i];
  /* relative weights: w_i = r_i w_c, the prior on w_i, ln |J| += ln w_c */
  for (size_t i = 0; i < p->ne; i++)
    if (p->rel[i] >= 0) {
      const size_t c = (size_t)p->rel[i];
      G[i] -= p->w[i] / s2;
      G[c] += G[i] * theta[i] + 1.0 / p->w[c];
      grad[i] = G[i] * p->w[c];
    }
  for (size_t i = 0; i < p->ne; i++) {
    if (p->rel[i] >= 0) continue;
    double g = G[i];
    if (p->mono[i]) g *= mdn_sigmoid(theta[i]);
    grad[i] = g - theta[i] / s2;
  }
  return CB_OK;
}

int posterior_mass_function(posterior *p, const double *theta, double *mf) {
  CB_CALL(posterior_to_weights(p, theta, p->w));
  CB_CALL(posterior_mass_function_weights(p, p->w, mf));
  return CB_OK;
}

int posterior_mass_function_weights(posterior *p, const double *w, double *mf) {
  if (w != p->w) memcpy(p->w, w, p->dim * sizeof *w);
  const bool pl = p->a.model == WEIGHTS_POWERLAW;
  const double *psi = NULL;
  if (!pl) CB_CALL(npe_forward(likelihood_engine(p->lk), p->delta, p->w, &psi));
  const double *head = pl ? p->w + 1 : p->w + npe_n_weights(&p->a.npe);
  const int P = p->a.mdn.n_features;
  const ptrdiff_t nn = p->f->n * p->f->n;
  const double eps = p->a.npe.eps;
  double u[POSTERIOR_MF_MASSES], sum[POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES] = {0};
  for (int m = 0; m < POSTERIOR_MF_MASSES; m++) u[m] = log(p->masses[m]);
  const int NM = POSTERIOR_MF_MASSES;
  double *dn = p->dn;
  for (ptrdiff_t q = 0; q < p->f->local_n0; q++) {
    mdn_dndlnm_row(&p->a.mdn, head, P ? psi + (size_t)q * (size_t)P * (size_t)nn : NULL, nn, nn, NM,
                   u, dn);
    for (ptrdiff_t jk = 0; jk < nn; jk++) {
      const size_t v = (size_t)(q * nn + jk);
      const double f = pl ? exp(p->w[0] * log(1 + p->delta[v] + eps)) : 1.0;
      for (int m = 0; m < NM; m++) sum[p->bin[v] * NM + m] += f * dn[jk * NM + m];
    }
  }
  field_allreduce_sum_n(p->f, sum, POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES);
  for (int b = 0; b < POSTERIOR_MF_BINS; b++)
    for (int m = 0; m < POSTERIOR_MF_MASSES; m++)
      mf[b * POSTERIOR_MF_MASSES + m] =
          p->nvox[b] > 0 ? sum[b * POSTERIOR_MF_MASSES + m] / p->nvox[b] : NAN;
  return CB_OK;
}
