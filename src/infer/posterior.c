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

#include "cerberus/field.h"
#include "cerberus/mdn.h"
#include "cerberus/npe.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct posterior {
  likelihood *lk;
  field *f;
  const double *delta;
  weights_arch a;
  posterior_config cfg;
  size_t dim;
  bool *mono; /* [dim] */
  double *w;  /* [dim] scratch weights */
  double *gw; /* [dim] scratch gradient */
  int *bin;   /* [n_real_local] density bin of each owned voxel */
  double edges[POSTERIOR_MF_BINS + 1], masses[POSTERIOR_MF_MASSES];
  double nvox[POSTERIOR_MF_BINS];
  long n_eval;
};

void posterior_config_default(posterior_config *c) {
  c->monotone = false;
  c->prior_sigma = 10.0;
}

static double inv_softplus(double w) { /* ln(e^w - 1), w > 0 */
  return w > 30 ? w + log1p(-exp(-w)) : log(expm1(w));
}

void posterior_destroy(posterior **pp) {
  if (!pp || !*pp) return;
  posterior *p = *pp;
  free(p->mono);
  free(p->w);
  free(p->gw);
  free(p->bin);
  free(p);
  *pp = NULL;
}

int posterior_create(field *f, likelihood *lk, const double *delta, const weights_arch *a,
                     const posterior_config *cfg, posterior **out) {
  *out = NULL;
  CB_CHECK(cfg->prior_sigma > 0 && isfinite(cfg->prior_sigma), CB_ERR_INPUT,
           "the prior width must be positive (got %g)", cfg->prior_sigma);
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
  if (!p->mono || !p->w || !p->gw || !p->bin) {
    posterior_destroy(&p);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the posterior");
  }
  if (cfg->monotone)
    for (int o = 0; o < a->npe.layer[0].channels; o++) {
      long c = weights_centre_index(a, o);
      if (c >= 0) p->mono[c] = true;
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

void posterior_to_weights(const posterior *p, const double *theta, double *w) {
  for (size_t i = 0; i < p->dim; i++) w[i] = p->mono[i] ? mdn_softplus(theta[i]) : theta[i];
}

int posterior_from_weights(const posterior *p, const char *what, const double *w, double *theta) {
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
  return CB_OK;
}

int posterior_evaluate(posterior *p, const double *theta, double *lnp, double *grad,
                       double *lnL_out) {
  posterior_to_weights(p, theta, p->w);
  double lnL = 0;
  CB_CALL(likelihood_evaluate(p->lk, p->delta, p->w, &lnL, grad ? p->gw : NULL, NULL));
  p->n_eval++;
  if (lnL_out) *lnL_out = lnL;
  const double s2 = p->cfg.prior_sigma * p->cfg.prior_sigma;
  if (!isfinite(lnL)) {
    *lnp = -INFINITY;
    if (grad) memset(grad, 0, p->dim * sizeof *grad);
    return CB_OK;
  }
  double prior = 0;
  for (size_t i = 0; i < p->dim; i++) prior -= 0.5 * theta[i] * theta[i] / s2;
  *lnp = lnL + prior;
  if (grad)
    for (size_t i = 0; i < p->dim; i++) {
      double g = p->gw[i];
      if (p->mono[i]) g *= mdn_sigmoid(theta[i]);
      grad[i] = g - theta[i] / s2;
    }
  return CB_OK;
}

int posterior_mass_function(posterior *p, const double *theta, double *mf) {
  posterior_to_weights(p, theta, p->w);
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
  for (ptrdiff_t q = 0; q < p->f->local_n0; q++)
    for (ptrdiff_t jk = 0; jk < nn; jk++) {
      size_t v = (size_t)(q * nn + jk);
      mdn_voxel vox;
      mdn_forward(&p->a.mdn, head, P ? psi + (size_t)q * (size_t)P * (size_t)nn + (size_t)jk : NULL,
                  nn, &vox);
      double extra = pl ? p->w[0] * log(1 + p->delta[v] + eps) : 0;
      for (int m = 0; m < POSTERIOR_MF_MASSES; m++)
        sum[p->bin[v] * POSTERIOR_MF_MASSES + m] +=
            exp(mdn_ln_dndlnm(&p->a.mdn, &vox, u[m], 0, NULL) + extra);
    }
  field_allreduce_sum_n(p->f, sum, POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES);
  for (int b = 0; b < POSTERIOR_MF_BINS; b++)
    for (int m = 0; m < POSTERIOR_MF_MASSES; m++)
      mf[b * POSTERIOR_MF_MASSES + m] =
          p->nvox[b] > 0 ? sum[b * POSTERIOR_MF_MASSES + m] / p->nvox[b] : NAN;
  return CB_OK;
}
