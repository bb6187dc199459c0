/* mdn: the mixture density network head, per voxel (MODEL.md section 4).
 *
 * From P features psi (a dot product per output) the head gives G Gaussians in u = ln M:
 * weights alpha_i (kept as ln alpha_i), ordered means mu_i and widths sigma_i, with the
 * offsets ln A0, ln M0 and ln(e^(S0 - sigma_min) - 1) that put the zero-weight head at
 * alpha = A0, mu_1 = ln M0, mu_2 = mu_1 + ln 2, sigma = S0. It then evaluates, in log space,
 * ln dn/dlnM at a halo's mass (log-sum-exp over the components) and the expected number of
 * halos above Mth in a voxel (each component's ln(alpha / 2) + ln erfc(x) summed by
 * log-sum-exp, ln erfc from GSL's gsl_sf_log_erfc, which uses the scaled complementary
 * error function for large x). The reverse pass takes adjoints with respect to
 * (y_alpha, mu, sigma) and returns those of the weights and features: derivatives are
 * formed as exponentials of sums of logs, so that huge alpha times a vanishing erfc never
 * gives inf * 0. mdn_row evaluates a whole row of voxels (and the halos in it) in one fused
 * pass, four voxels at a time (see "The row kernel" below).
 *
 * The floor (issue 15): what ln L and its two gradients cost at least, per voxel, for the
 * paper's model (one 3^3 softplus layer, G = 2, P = 1, N^3 / 20 halos).
 *   Transcendental evaluations a voxel needs, forward:
 *     ln(1 + delta + eps)                                    1 log
 *     the activation softplus(z)                             1 exp + 1 log
 *     softplus of y_alpha_1, y_alpha_2, y_mu_2, y_sigma_1, y_sigma_2
 *                                                            5 exp + 5 log
 *       (each: t = e^-|y|, ln(1 + t); the sigmoid, its derivative, is t / (1 + t) or
 *       1 / (1 + t) from the same t: no further call; mu_1 is linear)
 *     Nbar = V sum_i alpha_i / 2 erfc(x_i), directly      2 erfc
 *       (ln erfc, through the scaled erfcx of gsl_sf_log_erfc, and the log-sum-exp are only
 *       needed where the direct sum under- or overflows: x >= 25, alpha or V e^extra out of
 *       range; those voxels are rare and take the per-voxel path)
 *     a halo (1/20 per voxel): ln(alpha_i / sigma_i) (2 log), the log-sum-exp (2 exp, 1 log)
 *                                                            0.1 exp + 0.15 log
 *   reverse:
 *     d erfc(x_i) / dx_i = -2 / sqrt(pi) e^-x_i^2         2 exp
 *     the softplus derivatives (head and activation): the sigmoids kept from the forward
 *     pass, 0; d x0 / d delta = 1 / (1 + delta + eps), a division, 0
 *     a halo's responsibilities e^(lc_i - lse): the log-sum-exp's exponentials over their
 *       sum, 0
 *   In all: forward 6.1 exp + 7.15 log + 2 erfc, with both gradients 8.1 exp + 7.15 log + 2 erfc.
 * Bytes that must cross memory: delta in (8) and the halos (16 / 20), d lnL / d delta out (8):
 * 17 bytes a voxel; everything else (x0, z, psi and their adjoints) can stay in cache.
 * Measured rates on this machine (AMD EPYC, AVX2; one core; 2026-12-07): libmvec's four-lane
 * exp 0.72 ns a value, log 1.01 ns, erfc 1.37 ns (a loop over 4096 values in L1); the STREAM
 * triad (`cerberus bench memory`) 76 GB/s at 64^3 (in cache), 56 GB/s at 128^3, 19 GB/s at
 * 256^3 (DRAM). So the transcendentals take 6.1 x 0.72 + 7.15 x 1.01 + 2 x 1.37 = 14.4 ns a
 * voxel forward and 15.8 ns with both gradients, the bytes 0.9 ns even from DRAM: the floor is
 * the arithmetic, about 16 ns a voxel (4.2 ms at 64^3 on one core). `cerberus bench loglike`
 * measures the same rates when it runs, computes this floor for the architecture given, and
 * prints the share of it reached. The code keeps x0, act'(z), psi and their adjoints as arrays
 * (in cache at 64^3) and evaluates a halo's G logs and G exps in four-lane calls that hold
 * its G components (half empty at G = 2) and the log of the sum by libm (1 voxel in 20). The floor
 * leaves out the convolution's arithmetic: with the tie-class sums (conv.c) the paper's 3^3 layer
 * takes 9 adds and 4 multiply-adds a voxel forward and 9 adds and 8 multiply-adds in reverse
 * (against 27 and 54 multiply-adds for the taps one by one): 22 and 28 instructions a voxel by
 * callgrind (53 and 119 before), some 4 ns a voxel for both on this machine, against the
 * transcendentals' 16 ns. */
#include "cerberus/mdn.h"

#include "cerberus/status.h"
#include "cerberus/vmath.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_sf_erf.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#define LN_2PI_HALF 0.91893853320467274178 /* ln sqrt(2 pi) */
#define LN_SQRT_PI 0.57236494292470008707  /* ln sqrt(pi) */
#define MDN_LN2 0.69314718055994530942
#define MDN_SQRT2 1.41421356237309504880

void mdn_config_default(mdn_config *cfg) {
  cfg->n_gauss = 2;
  cfg->n_features = 1;
  cfg->A0 = 1e-3;
  cfg->M0 = 2e12;
  cfg->S0 = 1.0;
  cfg->sigma_min = 0.05;
}

int mdn_config_check(const mdn_config *c) {
  CB_CHECK(c->n_gauss >= 1 && c->n_gauss <= MDN_MAX_G, CB_ERR_INPUT,
           "-n_gauss must be 1 to %d (got %d)", MDN_MAX_G, c->n_gauss);
  CB_CHECK(c->n_features >= 0, CB_ERR_INPUT, "the head needs P >= 0 features (got %d)",
           c->n_features);
  CB_CHECK(isfinite(c->A0) && c->A0 > 0, CB_ERR_INPUT, "-A0 must be positive (got %g)", c->A0);
  CB_CHECK(isfinite(c->M0) && c->M0 > 0, CB_ERR_INPUT, "-M0 must be positive (got %g)", c->M0);
  CB_CHECK(isfinite(c->sigma_min) && c->sigma_min > 0, CB_ERR_INPUT,
           "-sigma_min must be positive (got %g)", c->sigma_min);
  CB_CHECK(isfinite(c->S0) && c->S0 > c->sigma_min, CB_ERR_INPUT,
           "-S0 must exceed -sigma_min %g (got %g)", c->sigma_min, c->S0);
  return CB_OK;
}

size_t mdn_n_weights(const mdn_config *c) {
  return 3 * (size_t)c->n_gauss * ((size_t)c->n_features + 1);
}

/* log1p(t) for t in [0, 1] through log (much faster than glibc's log1p), with Goldberg's
 * correction log(u) t / (u - 1), u = 1 + t rounded: accurate to a few ulp. */
static inline double log1p_unit(double t) {
  double u = 1.0 + t;
  return u == 1.0 ? t : log(u) * t / (u - 1.0);
}

double mdn_softplus(double y) {
  return fmax(y, 0.0) + log1p_unit(exp(-fabs(y)));
}
double mdn_sigmoid(double y) {
  if (y >= 0) return 1.0 / (1.0 + exp(-y));
  double e = exp(y);
  return e / (1.0 + e);
}
double mdn_ln_softplus(double y) {
  if (y < -30) return y - 0.5 * exp(y); /* ln(e^y - e^2y / 2 + ...) */
  return log(mdn_softplus(y));
}
double mdn_dln_softplus(double y) {
  if (y < -30) return 1.0 - 0.5 * exp(y);
  return mdn_sigmoid(y) / mdn_softplus(y);
}

static double safe_log_erfc(double x) {
  if (isnan(x)) return x;
  if (x < -30) return MDN_LN2;
  if (x > 1e150) return -INFINITY;
  if (x < 5) return log(erfc(x));
  return gsl_sf_log_erfc(x);
}

/* The offsets ln A0, ln M0, ln(e^(S0 - sigma_min) - 1), remembered for the last config. */
static void offsets(const mdn_config *c, double *lnA0, double *lnM0, double *s_off) {
  static double A0 = -1, M0 = -1, S0 = -1, smin = -1, a = 0, m = 0, s = 0;
  if (c->A0 != A0 || c->M0 != M0 || c->S0 != S0 || c->sigma_min != smin) {
    a = log(c->A0);
    m = log(c->M0);
    s = log(expm1(c->S0 - c->sigma_min));
    A0 = c->A0, M0 = c->M0, S0 = c->S0, smin = c->sigma_min;
  }
  *lnA0 = a, *lnM0 = m, *s_off = s;
}

/* softplus(y) and its derivative sigmoid(y) from one exp and one log. */
static inline double softplus_sig(double y, double *sig) {
  double t = exp(-fabs(y)), u = 1.0 + t;
  *sig = y >= 0 ? 1.0 / u : t / u;
  return fmax(y, 0.0) + log1p_unit(t);
}

/* d ln alpha / d y_alpha = sigmoid / softplus, from the values the forward pass kept. */
static inline double dln_alpha(const mdn_voxel *v, int i) {
  return v->alpha[i] > 1e-300 ? v->sig_alpha[i] / v->alpha[i] : mdn_dln_softplus(v->y_alpha[i]);
}

static inline void forward(const mdn_config *c, const double *w, const double *psi,
                           ptrdiff_t stride, mdn_voxel *v, bool need_ln) {
  const int G = c->n_gauss, P = c->n_features;
  const double *a = w, *ba = w + G * P, *m = ba + G, *bm = m + G * P, *s = bm + G, *bs = s + G * P;
  double lnA0, lnM0, s_off;
  offsets(c, &lnA0, &lnM0, &s_off);
  for (int i = 0; i < G; i++) {
    double da = 0, dm = 0, ds = 0;
    for (int p = 0; p < P; p++) {
      double x = psi[p * stride];
      da += a[i * P + p] * x;
      dm += m[i * P + p] * x;
      ds += s[i * P + p] * x;
    }
    double y = da + ba[i] + lnA0;
    v->y_alpha[i] = y;
    v->alpha[i] = softplus_sig(y, &v->sig_alpha[i]);
    v->ln_alpha[i] = !need_ln ? NAN : v->alpha[i] > 1e-300 ? log(v->alpha[i]) : mdn_ln_softplus(y);
    v->y_mu[i] = dm + bm[i];
    double spm = softplus_sig(v->y_mu[i], &v->sig_mu[i]);
    v->mu[i] = i == 0 ? v->y_mu[0] + lnM0 : v->mu[i - 1] + spm;
    v->y_sigma[i] = ds + bs[i] + s_off;
    v->sigma[i] = c->sigma_min + softplus_sig(v->y_sigma[i], &v->sig_sigma[i]);
  }
}

void mdn_forward(const mdn_config *c, const double *w, const double *psi, ptrdiff_t stride,
                 mdn_voxel *v) {
  forward(c, w, psi, stride, v, true);
}

void mdn_forward_counts(const mdn_config *c, const double *w, const double *psi, ptrdiff_t stride,
                        mdn_voxel *v) {
  forward(c, w, psi, stride, v, false);
}

double mdn_ln_dndlnm(const mdn_config *c, const mdn_voxel *v, double u, double scale,
                     mdn_adjoint *adj) {
  const int G = c->n_gauss;
  double lc[MDN_MAX_G], t[MDN_MAX_G], mx = -INFINITY;
  for (int i = 0; i < G; i++) {
    t[i] = (u - v->mu[i]) / v->sigma[i];
    lc[i] = v->ln_alpha[i] - 0.5 * t[i] * t[i] - log(v->sigma[i]) - LN_2PI_HALF;
    if (lc[i] > mx) mx = lc[i];
  }
  if (!(mx > -INFINITY)) return isnan(mx) ? NAN : -INFINITY;
  double sum = 0;
  for (int i = 0; i < G; i++) sum += exp(lc[i] - mx);
  double lse = mx + log(sum);
  if (adj) {
    for (int i = 0; i < G; i++) {
      double r = scale * exp(lc[i] - lse);
      adj->y_alpha[i] += r * dln_alpha(v, i);
      adj->mu[i] += r * t[i] / v->sigma[i];
      adj->sigma[i] += r * (t[i] * t[i] - 1.0) / v->sigma[i];
    }
  }
  return lse;
}

double mdn_ln_nbar(const mdn_config *c, const mdn_voxel *v, double ln_V, double u_th,
                   double ln_extra, double scale, mdn_adjoint *adj) {
  const int G = c->n_gauss;
  double lt[MDN_MAX_G], x[MDN_MAX_G], mx = -INFINITY;
  for (int i = 0; i < G; i++) {
    x[i] = (u_th - v->mu[i]) / (MDN_SQRT2 * v->sigma[i]);
    lt[i] = v->ln_alpha[i] - MDN_LN2 + safe_log_erfc(x[i]);
    if (lt[i] > mx) mx = lt[i];
  }
  double lse;
  if (!(mx > -INFINITY)) {
    lse = isnan(mx) ? NAN : -INFINITY;
  } else {
    double sum = 0;
    for (int i = 0; i < G; i++) sum += exp(lt[i] - mx);
    lse = mx + log(sum);
  }
  if (adj) {
    const double base = ln_extra + ln_V;
    for (int i = 0; i < G; i++) {
      /* T_i = exp(base + lt_i): dT/dy_alpha = T dln_softplus; dT/dx = -2/sqrt(pi) e^-x^2 ... */
      adj->y_alpha[i] += scale * exp(base + lt[i]) * dln_alpha(v, i);
      double e =
          exp(base + v->ln_alpha[i] - x[i] * x[i] - LN_SQRT_PI); /* alpha/2 * 2/sqrt(pi) e^-x^2 */
      adj->mu[i] += scale * e / (MDN_SQRT2 * v->sigma[i]);
      adj->sigma[i] += scale * e * x[i] / v->sigma[i];
    }
  }
  return ln_V + lse;
}

double mdn_nbar(const mdn_config *c, const mdn_voxel *v, double ln_V, double u_th, double ln_extra,
                double scale, mdn_adjoint *adj) {
  const int G = c->n_gauss;
  double x[MDN_MAX_G], ec[MDN_MAX_G];
  bool fast = ln_extra > -600 && ln_extra < 600 && ln_V < 600;
  for (int i = 0; i < G && fast; i++) {
    x[i] = (u_th - v->mu[i]) / (MDN_SQRT2 * v->sigma[i]);
    fast = v->alpha[i] > 1e-250 && v->alpha[i] < 1e250 && x[i] < 25 && !isnan(x[i]);
  }
  if (!fast) {
    mdn_voxel full = *v;
    for (int i = 0; i < G; i++)
      if (isnan(full.ln_alpha[i]))
        full.ln_alpha[i] =
            full.alpha[i] > 1e-300 ? log(full.alpha[i]) : mdn_ln_softplus(full.y_alpha[i]);
    return exp(mdn_ln_nbar(c, &full, ln_V, u_th, ln_extra, scale, adj) + ln_extra);
  }
  const double C = exp(ln_V + ln_extra); /* V e^extra */
  double sum = 0;
  for (int i = 0; i < G; i++) {
    ec[i] = erfc(x[i]);
    sum += v->alpha[i] * ec[i];
  }
  if (adj) {
    for (int i = 0; i < G; i++) {
      /* dT/dy = C/2 erfc sigmoid(y), sigmoid(y) = 1 - e^-alpha; dT/dx = -C alpha e^-x^2/sqrt(pi) */
      adj->y_alpha[i] += scale * 0.5 * C * ec[i] * v->sig_alpha[i];
      double e = C * v->alpha[i] * exp(-x[i] * x[i] - LN_SQRT_PI);
      adj->mu[i] += scale * e / (MDN_SQRT2 * v->sigma[i]);
      adj->sigma[i] += scale * e * x[i] / v->sigma[i];
    }
  }
  return 0.5 * C * sum;
}

/* ---- The row kernel: mdn_nbar_row ----
 * One fused pass over a row, four voxels at a time in GCC vector types (v4): the head's
 * pre-activations, the softplus values and their sigmoids (one exp and one log each), the
 * cumulative means, the widths, the erfc arguments and the erfc, the count, and, with
 * gradients, e^-x^2, the adjoints, and their sums into the weight gradient (lane-wise
 * accumulators in the workspace, summed once at the end of the row) and d/dpsi (added to the
 * caller's array in the same visit). Nothing is written in between but the count itself. The
 * body is compiled twice: with AVX2 calling libmvec, and plainly calling libm on each lane;
 * which one runs is vmath_vector(). A voxel whose numbers leave the direct formula's range
 * (the checks of mdn_nbar), and the last n % 4 voxels of a row, go through mdn_forward,
 * mdn_nbar and mdn_backward one by one: the path of a voxel depends on its row alone. */
typedef struct row_args {
  const mdn_config *c;
  const double *w, *psi, *ln_extra;
  ptrdiff_t stride, n;
  double ln_V, u_th, scale;
  size_t nh, hbase; /* halos of the row: voxel hk[h] - hbase, ln M hu[h], ln dn/dlnM -> hld[h] */
  const size_t *hk;
  const double *hu;
  double *hld;
  double *grad_w, *dpsi, *nb, *acc;
} row_args;

/* One voxel through the per-voxel functions (out of range, or past the last full block),
 * with its halos h in [h0, h1). */
static void voxel_one(const row_args *r, ptrdiff_t k, double ex, size_t h0, size_t h1) {
  const mdn_config *c = r->c;
  if (ex == -INFINITY) {
    r->nb[k] = 0;
    for (size_t h = h0; h < h1; h++) r->hld[h] = 0;
    return;
  }
  const bool grad = r->grad_w || r->dpsi;
  const double *pk = r->psi ? r->psi + k : NULL;
  mdn_voxel v;
  mdn_adjoint adj;
  mdn_forward(c, r->w, pk, r->stride, &v);
  for (int i = 0; i < c->n_gauss; i++) adj.y_alpha[i] = adj.mu[i] = adj.sigma[i] = 0;
  r->nb[k] = mdn_nbar(c, &v, r->ln_V, r->u_th, ex, r->scale, grad ? &adj : NULL);
  for (size_t h = h0; h < h1; h++) {
    mdn_adjoint ah;
    for (int i = 0; i < c->n_gauss; i++) ah.y_alpha[i] = ah.mu[i] = ah.sigma[i] = 0;
    r->hld[h] = mdn_ln_dndlnm(c, &v, r->hu[h], 1.0, grad ? &ah : NULL);
    if (grad && isfinite(r->hld[h]))
      for (int i = 0; i < c->n_gauss; i++) {
        adj.y_alpha[i] += ah.y_alpha[i];
        adj.mu[i] += ah.mu[i];
        adj.sigma[i] += ah.sigma[i];
      }
  }
  if (grad)
    mdn_backward(c, r->w, pk, r->stride, &v, &adj, r->grad_w, r->dpsi ? r->dpsi + k : NULL,
                 r->stride);
}

VMATH_INLINE double row_body(const row_args *r, lane_fn vexp, lane_fn vlog, lane_fn verfc) {
  const mdn_config *c = r->c;
  const int G = c->n_gauss, P = c->n_features, Q = 3 * G;
  const size_t GP = (size_t)G * P;
  const double *w = r->w, *psi = r->psi;
  const double *coef[3] = {w, w + GP + G, w + 2 * GP + 2 * G};          /* a, m, s */
  const double *bias[3] = {w + GP, w + 2 * GP + G, w + 3 * GP + 2 * G}; /* b_alpha, b_mu, b_sigma */
  double lnA0, lnM0, s_off;
  offsets(c, &lnA0, &lnM0, &s_off);
  const ptrdiff_t n = r->n, n4 = n - n % 4, stride = r->stride;
  const bool grad = r->grad_w || r->dpsi;
  const v4 zero = bc4(0.0), smin = bc4(c->sigma_min), uth = bc4(r->u_th);
  const v4 C0 = bc4(exp(r->ln_V)), sc = bc4(r->scale);
  const m4 vol_ok = r->ln_V < 600 ? (m4){-1, -1, -1, -1} : (m4){0, 0, 0, 0};
  double *acc = r->acc; /* [Q][P + 1] lanes of 4: coefficient sums, then the bias sum */
  if (r->grad_w) memset(acc, 0, (size_t)Q * (P + 1) * 4 * sizeof *acc);
  size_t h = 0; /* the next halo */
  for (ptrdiff_t k = 0; k < n4; k += 4) {
    const v4 ex = r->ln_extra ? ld4(r->ln_extra + k) : zero;
    v4 al[MDN_MAX_G], ya[MDN_MAX_G], siga[MDN_MAX_G], sigm[MDN_MAX_G], sg[MDN_MAX_G];
    v4 sigs[MDN_MAX_G], mu[MDN_MAX_G], x[MDN_MAX_G], ec[MDN_MAX_G], rs[MDN_MAX_G], sum = zero;
    m4 fast = (ex > bc4(-600.0)) & (ex < bc4(600.0)) & vol_ok;
    for (int i = 0; i < G; i++) {
      v4 da = zero, dm = zero, ds = zero;
      for (int p = 0; p < P; p++) {
        const v4 xp = ld4(psi + p * stride + k);
        da += coef[0][i * P + p] * xp;
        dm += coef[1][i * P + p] * xp;
        ds += coef[2][i * P + p] * xp;
      }
      ya[i] = da + bias[0][i] + lnA0;
      al[i] = softplus4(ya[i], &siga[i], vexp, vlog);
      const v4 ym = dm + bias[1][i];
      mu[i] = i == 0 ? ym + lnM0 : mu[i - 1] + softplus4(ym, &sigm[i], vexp, vlog);
      sg[i] = smin + softplus4(ds + bias[2][i] + s_off, &sigs[i], vexp, vlog);
      rs[i] = 1.0 / (MDN_SQRT2 * sg[i]); /* one division serves x and the adjoints */
      x[i] = (uth - mu[i]) * rs[i];
      ec[i] = lane(verfc, x[i]);
      sum += al[i] * ec[i];
      fast &= (al[i] > bc4(1e-250)) & (al[i] < bc4(1e250)) & (x[i] < bc4(25.0)) & (x[i] == x[i]);
    }
    const v4 C = r->ln_extra ? lane(vexp, r->ln_V + ex) : C0;
    st4(r->nb + k, and4(fast, 0.5 * C * sum));
    /* adjoints with respect to y_alpha, mu and sigma: the count's, then the halos' */
    v4 dya[MDN_MAX_G], dmu[MDN_MAX_G], dsg[MDN_MAX_G];
    if (grad)
      for (int i = 0; i < G; i++) {
        const v4 e = C * al[i] * lane(vexp, -x[i] * x[i] - LN_SQRT_PI);
        dya[i] = and4(fast, sc * 0.5 * C * ec[i] * siga[i]);
        dmu[i] = and4(fast, sc * e * rs[i]);
        dsg[i] = and4(fast, sc * e * x[i] * (MDN_SQRT2 * rs[i]));
      }
    const size_t hb = h;
    for (; h < r->nh && (ptrdiff_t)(r->hk[h] - r->hbase) < k + 4; h++) {
      const int l = (int)((ptrdiff_t)(r->hk[h] - r->hbase) - k);
      if (!fast[l]) continue;
      /* mdn_ln_dndlnm's sums for a fast lane (1e-250 < alpha < 1e250, sigma >= sigma_min):
       * ln(alpha_i / sigma_i) in four-lane logs, the log-sum-exp's e^(lc_i - max) in
       * four-lane exps, whose ratios to their sum are the responsibilities */
      const double u = r->hu[h];
      double t[MDN_MAX_G], lc[MDN_MAX_G], e[MDN_MAX_G], mx = -INFINITY, sum = 0;
      for (int i = 0; i < G; i++) {
        t[i] = (u - mu[i][l]) / sg[i][l];
        lc[i] = al[i][l] / sg[i][l];
      }
      for (int i0 = 0; i0 < G; i0 += 4) {
        double in[4] = {1, 1, 1, 1};
        for (int i = i0; i < G && i < i0 + 4; i++) in[i - i0] = lc[i];
        vlog(in, in);
        for (int i = i0; i < G && i < i0 + 4; i++) lc[i] = in[i - i0];
      }
      for (int i = 0; i < G; i++) {
        lc[i] += -0.5 * t[i] * t[i] - LN_2PI_HALF;
        if (lc[i] > mx) mx = lc[i];
      }
      if (!(mx > -INFINITY)) {
        r->hld[h] = isnan(mx) ? NAN : -INFINITY;
        continue;
      }
      for (int i0 = 0; i0 < G; i0 += 4) {
        double in[4] = {0, 0, 0, 0};
        for (int i = i0; i < G && i < i0 + 4; i++) in[i - i0] = lc[i] - mx;
        vexp(in, in);
        for (int i = i0; i < G && i < i0 + 4; i++) e[i] = in[i - i0];
      }
      for (int i = 0; i < G; i++) sum += e[i];
      r->hld[h] = mx + log(sum);
      if (grad)
        for (int i = 0; i < G; i++) {
          const double rr = e[i] / sum, is = 1.0 / sg[i][l];
          dya[i][l] += rr * siga[i][l] / al[i][l];
          dmu[i][l] += rr * t[i] * is;
          dsg[i][l] += rr * (t[i] * t[i] - 1.0) * is;
        }
    }
    if (grad) {
      /* through the softplus and the mean chain: d/dy of every head output */
      v4 d[3 * MDN_MAX_G], S = zero;
      for (int i = G - 1; i >= 0; i--) {
        S += dmu[i];
        d[i] = dya[i];
        d[G + i] = i == 0 ? S : and4(fast, S * sigm[i]);
        d[2 * G + i] = and4(fast, dsg[i] * sigs[i]);
      }
      if (r->grad_w)
        for (int q = 0; q < Q; q++) {
          double *aq = acc + (size_t)q * (P + 1) * 4;
          for (int p = 0; p < P; p++)
            st4(aq + 4 * p, ld4(aq + 4 * p) + d[q] * ld4(psi + p * stride + k));
          st4(aq + 4 * P, ld4(aq + 4 * P) + d[q]);
        }
      if (r->dpsi)
        for (int p = 0; p < P; p++) {
          double *dp = r->dpsi + p * stride + k;
          v4 s = ld4(dp);
          for (int q = 0; q < Q; q++) s += coef[q / G][(q % G) * P + p] * d[q];
          st4(dp, s);
        }
    }
    for (int l = 0; l < 4; l++) {
      if (fast[l]) continue;
      size_t h0 = hb;
      while (h0 < h && (ptrdiff_t)(r->hk[h0] - r->hbase) < k + l) h0++;
      size_t h1 = h0;
      while (h1 < h && (ptrdiff_t)(r->hk[h1] - r->hbase) == k + l) h1++;
      voxel_one(r, k + l, ex[l], h0, h1);
    }
  }
  for (ptrdiff_t k = n4; k < n; k++) {
    const size_t h0 = h;
    while (h < r->nh && (ptrdiff_t)(r->hk[h] - r->hbase) == k) h++;
    voxel_one(r, k, r->ln_extra ? r->ln_extra[k] : 0.0, h0, h);
  }
  if (r->grad_w)
    for (int q = 0; q < Q; q++) {
      const double *aq = acc + (size_t)q * (P + 1) * 4;
      const int kind = q / G, i = q % G;
      double *gc = r->grad_w + (coef[kind] - w) + i * P;
      for (int p = 0; p < P; p++) gc[p] += hsum4(ld4(aq + 4 * p));
      r->grad_w[(bias[kind] - w) + i] += hsum4(ld4(aq + 4 * P));
    }
  double total = 0;
  for (ptrdiff_t k = 0; k < n; k++) total += r->nb[k];
  return total;
}

static double row_c(const row_args *r) {
  return row_body(r, vmath4_exp_c, vmath4_log_c, vmath4_erfc_c);
}
#ifdef CERBERUS_HAVE_MVEC
VMATH_AVX2 static double row_avx2(const row_args *r) {
  return row_body(r, vmath4_exp_avx2, vmath4_log_avx2, vmath4_erfc_avx2);
}
#endif

/* ---- dn/dlnM at a few masses for a row of voxels: mdn_dndlnm_row ----
 * The head four voxels at a time as in row_body (softplus values from one exp and one log
 * each), then sum_i alpha_i e^(-t^2/2) / (sqrt(2 pi) sigma_i) directly, one four-lane exp per
 * Gaussian and mass. A voxel whose alpha leaves (1e-250, 1e250) or whose values are not finite,
 * and the last n % 4 voxels, go through mdn_forward and mdn_ln_dndlnm one by one. */
static void dndlnm_one(const mdn_config *c, const double *w, const double *psi, ptrdiff_t stride,
                       int nm, const double *u, double *out) {
  mdn_voxel v;
  mdn_forward(c, w, psi, stride, &v);
  for (int m = 0; m < nm; m++) out[m] = exp(mdn_ln_dndlnm(c, &v, u[m], 0, NULL));
}

VMATH_INLINE void dndlnm_body(const mdn_config *c, const double *w, const double *psi,
                              ptrdiff_t stride, ptrdiff_t n, int nm, const double *u, double *out,
                              lane_fn vexp, lane_fn vlog) {
  const int G = c->n_gauss, P = c->n_features;
  const size_t GP = (size_t)G * P;
  const double *coef[3] = {w, w + GP + G, w + 2 * GP + 2 * G};
  const double *bias[3] = {w + GP, w + 2 * GP + G, w + 3 * GP + 2 * G};
  double lnA0, lnM0, s_off;
  offsets(c, &lnA0, &lnM0, &s_off);
  const ptrdiff_t n4 = n - n % 4;
  const v4 smin = bc4(c->sigma_min), zero = bc4(0.0);
  for (ptrdiff_t k = 0; k < n4; k += 4) {
    v4 al[MDN_MAX_G], mu[MDN_MAX_G], sg[MDN_MAX_G], s;
    m4 fast = (m4){-1, -1, -1, -1};
    for (int i = 0; i < G; i++) {
      v4 da = zero, dm = zero, ds = zero;
      for (int p = 0; p < P; p++) {
        const v4 xp = ld4(psi + p * stride + k); /* P > 0: psi is not NULL */
        da += coef[0][i * P + p] * xp;
        dm += coef[1][i * P + p] * xp;
        ds += coef[2][i * P + p] * xp;
      }
      al[i] = softplus4(da + bias[0][i] + lnA0, &s, vexp, vlog);
      const v4 ym = dm + bias[1][i];
      mu[i] = i == 0 ? ym + lnM0 : mu[i - 1] + softplus4(ym, &s, vexp, vlog);
      sg[i] = smin + softplus4(ds + bias[2][i] + s_off, &s, vexp, vlog);
      fast &= (al[i] > bc4(1e-250)) & (al[i] < bc4(1e250)) & (mu[i] == mu[i]) & (sg[i] == sg[i]) &
              (mu[i] > bc4(-1e300)) & (mu[i] < bc4(1e300)) & (sg[i] < bc4(1e300));
    }
    for (int m = 0; m < nm; m++) {
      v4 sum = zero;
      for (int i = 0; i < G; i++) {
        const v4 t = (u[m] - mu[i]) / sg[i];
        sum += al[i] / sg[i] * lane(vexp, -0.5 * t * t - LN_2PI_HALF);
      }
      for (int l = 0; l < 4; l++) out[(k + l) * nm + m] = sum[l];
    }
    for (int l = 0; l < 4; l++)
      if (!fast[l]) dndlnm_one(c, w, psi ? psi + k + l : NULL, stride, nm, u, out + (k + l) * nm);
  }
  for (ptrdiff_t k = n4; k < n; k++)
    dndlnm_one(c, w, psi ? psi + k : NULL, stride, nm, u, out + k * nm);
}

static void dndlnm_c(const mdn_config *c, const double *w, const double *psi, ptrdiff_t stride,
                     ptrdiff_t n, int nm, const double *u, double *out) {
  dndlnm_body(c, w, psi, stride, n, nm, u, out, vmath4_exp_c, vmath4_log_c);
}
#ifdef CERBERUS_HAVE_MVEC
VMATH_AVX2 static void dndlnm_avx2(const mdn_config *c, const double *w, const double *psi,
                                   ptrdiff_t stride, ptrdiff_t n, int nm, const double *u,
                                   double *out) {
  dndlnm_body(c, w, psi, stride, n, nm, u, out, vmath4_exp_avx2, vmath4_log_avx2);
}
#endif

void mdn_dndlnm_row(const mdn_config *c, const double *w, const double *psi, ptrdiff_t stride,
                    ptrdiff_t n, int nm, const double *u, double *out) {
#ifdef CERBERUS_HAVE_MVEC
  if (vmath_vector()) {
    dndlnm_avx2(c, w, psi, stride, n, nm, u, out);
    return;
  }
#endif
  dndlnm_c(c, w, psi, stride, n, nm, u, out);
}

size_t mdn_row_workspace(const mdn_config *c, ptrdiff_t n) {
  (void)n;
  return (size_t)12 * c->n_gauss * ((size_t)c->n_features + 1);
}

double mdn_row(const mdn_config *c, const double *w, const double *psi, ptrdiff_t stride,
               ptrdiff_t n, double ln_V, double u_th, const double *ln_extra, double scale,
               size_t nh, const size_t *hk, size_t hbase, const double *hu, double *hld,
               double *grad_w, double *dpsi, double *nb, double *ws) {
  const row_args r = {c,  w,     psi, ln_extra, stride, n,      ln_V, u_th, scale,
                      nh, hbase, hk,  hu,       hld,    grad_w, dpsi, nb,   ws};
#ifdef CERBERUS_HAVE_MVEC
  if (vmath_vector()) return row_avx2(&r);
#endif
  return row_c(&r);
}

double mdn_nbar_row(const mdn_config *c, const double *w, const double *psi, ptrdiff_t stride,
                    ptrdiff_t n, double ln_V, double u_th, const double *ln_extra, double scale,
                    double *grad_w, double *dpsi, double *nb, double *ws) {
  return mdn_row(c, w, psi, stride, n, ln_V, u_th, ln_extra, scale, 0, NULL, 0, NULL, NULL, grad_w,
                 dpsi, nb, ws);
}

void mdn_backward(const mdn_config *c, const double *w, const double *psi, ptrdiff_t stride,
                  const mdn_voxel *v, const mdn_adjoint *adj, double *grad_w, double *dpsi,
                  ptrdiff_t dstride) {
  const int G = c->n_gauss, P = c->n_features;
  double dya[MDN_MAX_G], dym[MDN_MAX_G], dys[MDN_MAX_G];
  double S = 0;
  for (int i = G - 1; i >= 0; i--) {
    S += adj->mu[i];
    dym[i] = i == 0 ? S : S * v->sig_mu[i];
  }
  for (int i = 0; i < G; i++) {
    dya[i] = adj->y_alpha[i];
    dys[i] = adj->sigma[i] * v->sig_sigma[i];
  }
  const size_t GP = (size_t)G * P;
  if (grad_w) {
    double *ga = grad_w, *gba = ga + GP, *gm = gba + G, *gbm = gm + GP, *gs = gbm + G,
           *gbs = gs + GP;
    for (int i = 0; i < G; i++) {
      for (int p = 0; p < P; p++) {
        double x = psi[p * stride];
        ga[i * P + p] += dya[i] * x;
        gm[i * P + p] += dym[i] * x;
        gs[i * P + p] += dys[i] * x;
      }
      gba[i] += dya[i];
      gbm[i] += dym[i];
      gbs[i] += dys[i];
    }
  }
  if (dpsi) {
    const double *a = w, *m = w + GP + G, *s = w + 2 * GP + 2 * G;
    for (int p = 0; p < P; p++) {
      double d = 0;
      for (int i = 0; i < G; i++)
        d += dya[i] * a[i * P + p] + dym[i] * m[i * P + p] + dys[i] * s[i * P + p];
      dpsi[p * dstride] += d;
    }
  }
}
