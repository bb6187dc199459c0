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
 * gives inf * 0. */
#include "cerberus/mdn.h"

#include "cerberus/status.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_sf_erf.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#ifdef CERBERUS_HAVE_MVEC
#include <immintrin.h>
/* glibc's libmvec, AVX2 variants (4 doubles a call, a few ulp). */
__attribute__((target("avx2"))) __m256d _ZGVdN4v_exp(__m256d);
__attribute__((target("avx2"))) __m256d _ZGVdN4v_log(__m256d);
__attribute__((target("avx2"))) __m256d _ZGVdN4v_erfc(__m256d);

__attribute__((target("avx2"))) static void vec4(int f, ptrdiff_t n4, const double *x, double *y) {
  for (ptrdiff_t i = 0; i < n4; i += 4) {
    __m256d a = _mm256_loadu_pd(x + i);
    __m256d r = f == 0 ? _ZGVdN4v_exp(a) : f == 1 ? _ZGVdN4v_log(a) : _ZGVdN4v_erfc(a);
    _mm256_storeu_pd(y + i, r);
  }
}
#endif

/* y = exp(x) (f = 0), log(x) (1), erfc(x) (2) on n values; four at a time with AVX2. Which
 * path a value takes depends only on its position in the row. */
static void vmath(int f, ptrdiff_t n, const double *x, double *y) {
  ptrdiff_t done = 0;
#ifdef CERBERUS_HAVE_MVEC
  static int avx2 = -1;
  if (avx2 < 0) avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
  if (avx2) {
    done = n - n % 4;
    vec4(f, done, x, y);
  }
#endif
  for (ptrdiff_t i = done; i < n; i++) y[i] = f == 0 ? exp(x[i]) : f == 1 ? log(x[i]) : erfc(x[i]);
}

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
      adj->y_alpha[i] += r * mdn_dln_softplus(v->y_alpha[i]);
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
      adj->y_alpha[i] += scale * exp(base + lt[i]) * mdn_dln_softplus(v->y_alpha[i]);
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

size_t mdn_row_workspace(const mdn_config *c, ptrdiff_t n) {
  return (size_t)(11 * c->n_gauss + 4) * (size_t)(n > 0 ? n : 1);
}

double mdn_nbar_row(const mdn_config *c, const double *w, const double *psi, ptrdiff_t stride,
                    ptrdiff_t n, double ln_V, double u_th, const double *ln_extra, double scale,
                    double *grad_w, double *dpsi, double *nb, double *ws) {
  const int G = c->n_gauss, P = c->n_features, Q = 3 * G;
  const size_t GP = (size_t)G * P;
  const double *coef[3] = {w, w + GP + G, w + 2 * GP + 2 * G};          /* a, m, s */
  const double *bias[3] = {w + GP, w + 2 * GP + G, w + 3 * GP + 2 * G}; /* b_alpha, b_mu, b_sigma */
  double lnA0, lnM0, s_off;
  offsets(c, &lnA0, &lnM0, &s_off);
  const double off[3] = {lnA0, 0.0, s_off};
  /* rows q = kind * G + i: kind 0 alpha, 1 mu, 2 sigma */
  double *Y = ws, *SP = Y + (size_t)Q * n, *SG = SP + (size_t)Q * n, *X = SG + (size_t)Q * n,
         *EC = X + (size_t)G * n, *T = EC + (size_t)G * n, *U = T + n, *LG = U + n, *C = LG + n;
  for (int kind = 0; kind < 3; kind++)
    for (int i = 0; i < G; i++) {
      double *y = Y + (size_t)(kind * G + i) * n;
      const double b = bias[kind][i] + off[kind];
      for (ptrdiff_t k = 0; k < n; k++) y[k] = b;
      for (int p = 0; p < P; p++) {
        const double a = coef[kind][i * P + p], *x = psi + p * stride;
        for (ptrdiff_t k = 0; k < n; k++) y[k] += a * x[k];
      }
    }
  /* softplus and sigmoid of every row: one exp and one log per value */
  for (int q = 0; q < Q; q++) {
    const double *y = Y + (size_t)q * n;
    double *sp = SP + (size_t)q * n, *sg = SG + (size_t)q * n;
    for (ptrdiff_t k = 0; k < n; k++) T[k] = -fabs(y[k]);
    vmath(0, n, T, T);
    for (ptrdiff_t k = 0; k < n; k++) U[k] = 1.0 + T[k];
    vmath(1, n, U, LG);
    for (ptrdiff_t k = 0; k < n; k++) {
      sp[k] = fmax(y[k], 0.0) + (U[k] == 1.0 ? T[k] : LG[k] * T[k] / (U[k] - 1.0));
      sg[k] = y[k] >= 0 ? 1.0 / U[k] : T[k] / U[k];
    }
  }
  /* means (cumulative, in the mu rows of SP), widths, erfc arguments */
  double *mu = SP + (size_t)G * n, *sig = SP + (size_t)2 * G * n;
  for (ptrdiff_t k = 0; k < n; k++) mu[k] = Y[(size_t)G * n + k] + lnM0;
  for (int i = 1; i < G; i++)
    for (ptrdiff_t k = 0; k < n; k++) mu[(size_t)i * n + k] += mu[(size_t)(i - 1) * n + k];
  for (int i = 0; i < G; i++)
    for (ptrdiff_t k = 0; k < n; k++) {
      sig[(size_t)i * n + k] += c->sigma_min;
      X[(size_t)i * n + k] = (u_th - mu[(size_t)i * n + k]) / (MDN_SQRT2 * sig[(size_t)i * n + k]);
    }
  vmath(2, (ptrdiff_t)G * n, X, EC);
  /* the factor V e^extra; voxels outside the direct path are done one by one */
  const double *alpha = SP;
  for (ptrdiff_t k = 0; k < n; k++) T[k] = ln_V + (ln_extra ? ln_extra[k] : 0.0);
  vmath(0, n, T, C);
  double total = 0;
  bool grad = grad_w || dpsi;
  for (ptrdiff_t k = 0; k < n; k++) {
    double ex = ln_extra ? ln_extra[k] : 0.0;
    LG[k] = 0; /* 1: voxel on the row path (its adjoints come from the row sums) */
    if (ex == -INFINITY) {
      nb[k] = 0;
      continue;
    }
    bool fast = ex > -600 && ex < 600 && ln_V < 600;
    for (int i = 0; i < G && fast; i++) {
      double al = alpha[(size_t)i * n + k], x = X[(size_t)i * n + k];
      fast = al > 1e-250 && al < 1e250 && x < 25 && !isnan(x);
    }
    if (!fast) {
      mdn_voxel v;
      mdn_adjoint adj;
      mdn_forward(c, w, psi + k, stride, &v);
      for (int i = 0; i < G; i++) adj.y_alpha[i] = adj.mu[i] = adj.sigma[i] = 0;
      nb[k] = mdn_nbar(c, &v, ln_V, u_th, ex, scale, grad ? &adj : NULL);
      if (grad)
        mdn_backward(c, w, psi + k, stride, &v, &adj, grad_w, dpsi ? dpsi + k : NULL, stride);
    } else {
      LG[k] = 1;
      double sum = 0;
      for (int i = 0; i < G; i++) sum += alpha[(size_t)i * n + k] * EC[(size_t)i * n + k];
      nb[k] = 0.5 * C[k] * sum;
    }
    total += nb[k];
  }
  if (!grad) return total;
  /* adjoints in the rows of Y: d/dy_alpha, d/dmu, d/dsigma, then through the mean chain */
  double *dya = Y, *dmu = Y + (size_t)G * n, *dsg = Y + (size_t)2 * G * n;
  for (int i = 0; i < G; i++) {
    double *x = X + (size_t)i * n;
    for (ptrdiff_t k = 0; k < n; k++) T[k] = -x[k] * x[k] - LN_SQRT_PI;
    vmath(0, n, T, U);
    for (ptrdiff_t k = 0; k < n; k++) {
      size_t ik = (size_t)i * n + k;
      if (LG[k] == 0) {
        dya[ik] = dmu[ik] = dsg[ik] = 0;
        continue;
      }
      double e = C[k] * alpha[ik] * U[k];
      dya[ik] = scale * 0.5 * C[k] * EC[ik] * SG[ik];
      dmu[ik] = scale * e / (MDN_SQRT2 * sig[ik]);
      dsg[ik] = scale * e * x[k] / sig[ik] * SG[(size_t)2 * G * n + ik];
    }
  }
  for (int i = G - 2; i >= 0; i--) /* cumulative sums from the top: d/dmu_i of all mu_j, j >= i */
    for (ptrdiff_t k = 0; k < n; k++) dmu[(size_t)i * n + k] += dmu[(size_t)(i + 1) * n + k];
  for (int i = 1; i < G; i++)
    for (ptrdiff_t k = 0; k < n; k++) dmu[(size_t)i * n + k] *= SG[(size_t)(G + i) * n + k];
  for (int kind = 0; kind < 3; kind++)
    for (int i = 0; i < G; i++) {
      const double *d = Y + (size_t)(kind * G + i) * n;
      if (grad_w) {
        double *gc = grad_w + (coef[kind] - w), *gb = grad_w + (bias[kind] - w);
        double sb = 0;
        for (ptrdiff_t k = 0; k < n; k++) sb += d[k];
        gb[i] += sb;
        for (int p = 0; p < P; p++) {
          const double *x = psi + p * stride;
          double sp = 0;
          for (ptrdiff_t k = 0; k < n; k++) sp += d[k] * x[k];
          gc[i * P + p] += sp;
        }
      }
      if (dpsi)
        for (int p = 0; p < P; p++) {
          const double a = coef[kind][i * P + p];
          double *dp = dpsi + p * stride;
          for (ptrdiff_t k = 0; k < n; k++) dp[k] += a * d[k];
        }
    }
  return total;
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
