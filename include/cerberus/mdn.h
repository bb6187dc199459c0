/* mdn: the mixture density network head and the halo mass function it defines
 * (MODEL.md section 4).
 *
 * Per voxel, from P features psi (P may be 0: the constant head of the power-law baseline):
 *   alpha_i = softplus(a_i . psi + b_alpha_i + ln A0)
 *   mu_1    = m_1 . psi + b_mu_1 + ln M0,  mu_i = mu_{i-1} + softplus(m_i . psi + b_mu_i)
 *   sigma_i = sigma_min + softplus(s_i . psi + b_sigma_i + ln(e^(S0 - sigma_min) - 1))
 *   dn/dlnM = sum_i alpha_i N(ln M; mu_i, sigma_i)
 *   Nbar    = V sum_i (alpha_i / 2) erfc((ln Mth - mu_i) / (sqrt(2) sigma_i))
 * Everything is evaluated in log space (ln alpha is kept, never alpha alone; log-erfc for
 * large arguments; softplus that neither overflows nor loses precision).
 *
 * Weights (3 G (P + 1) numbers), in this order: a (G x P, a_1 first), b_alpha (G),
 * m (G x P), b_mu (G), s (G x P), b_sigma (G). For P = 1, G = 2 that is
 * a_1 a_2 b_alpha_1 b_alpha_2 m_1 m_2 b_mu_1 b_mu_2 s_1 s_2 b_sigma_1 b_sigma_2.
 * All functions here are per voxel and Not collective. */
#ifndef CERBERUS_MDN_H
#define CERBERUS_MDN_H

#include <stddef.h>

#define MDN_MAX_G 8

typedef struct mdn_config {
  int n_gauss;      /* G, default 2 */
  int n_features;   /* P: set from the engine (npe_n_features), 0 for the power law */
  double A0;        /* default 1e-3 (Mpc/h)^-3 */
  double M0;        /* default 2e12 M_sun/h */
  double S0;        /* default 1 */
  double sigma_min; /* default 0.05 */
} mdn_config;

/* Defaults above, with n_features = 1. */
void mdn_config_default(mdn_config *cfg);
/* CB_ERR_INPUT naming the bad value (G outside 1..MDN_MAX_G, A0, M0 <= 0, S0 <= sigma_min...). */
int mdn_config_check(const mdn_config *cfg);
size_t mdn_n_weights(const mdn_config *cfg);

/* The head's outputs in one voxel (and what the reverse pass needs). */
typedef struct mdn_voxel {
  double y_alpha[MDN_MAX_G], ln_alpha[MDN_MAX_G];
  double y_mu[MDN_MAX_G], mu[MDN_MAX_G];
  double y_sigma[MDN_MAX_G], sigma[MDN_MAX_G];
  double alpha[MDN_MAX_G]; /* softplus(y_alpha): may underflow to 0, ln_alpha does not */
  /* sigmoid of y_alpha, y_mu, y_sigma (the softplus derivatives, kept for the reverse pass) */
  double sig_alpha[MDN_MAX_G], sig_mu[MDN_MAX_G], sig_sigma[MDN_MAX_G];
} mdn_voxel;

/* Adjoints of one voxel: d lnL / d y_alpha_i, d lnL / d mu_i, d lnL / d sigma_i. */
typedef struct mdn_adjoint {
  double y_alpha[MDN_MAX_G], mu[MDN_MAX_G], sigma[MDN_MAX_G];
} mdn_adjoint;

/* Head forward: psi[c * stride], c < P. */
void mdn_forward(const mdn_config *cfg, const double *w, const double *psi, ptrdiff_t stride,
                 mdn_voxel *vox);

/* The same without ln_alpha (set to NaN): enough for mdn_nbar's direct path, two logs
 * cheaper per voxel. */
void mdn_forward_counts(const mdn_config *cfg, const double *w, const double *psi, ptrdiff_t stride,
                        mdn_voxel *vox);

/* ln dn/dlnM (M | v) at u = ln M (log-sum-exp over the Gaussians); -inf if every component
 * underflows. If adj is not NULL, ADDS scale * d/d(y_alpha, mu, sigma) of the value. */
double mdn_ln_dndlnm(const mdn_config *cfg, const mdn_voxel *vox, double u, double scale,
                     mdn_adjoint *adj);

/* ln Nbar = ln(V sum_i (alpha_i / 2) erfc((u_th - mu_i) / (sqrt 2 sigma_i))) with ln V
 * given; -inf if the count underflows to zero. If adj is not NULL, ADDS
 * scale * d Nbar / d(y_alpha, mu, sigma) (Nbar = exp(ln Nbar + ln_extra), ln_extra being a
 * per-voxel log factor such as a mask or the power-law bias, which the caller includes). */
double mdn_ln_nbar(const mdn_config *cfg, const mdn_voxel *vox, double ln_V, double u_th,
                   double ln_extra, double scale, mdn_adjoint *adj);

/* Nbar itself, times e^ln_extra: V e^ln_extra sum_i (alpha_i / 2) erfc(...). The same number
 * as exp(mdn_ln_nbar(...) + ln_extra), computed directly (no logs) when alpha, the erfc and
 * the factor are in range, in log space otherwise; +inf if it overflows. adj as above. */
double mdn_nbar(const mdn_config *cfg, const mdn_voxel *vox, double ln_V, double u_th,
                double ln_extra, double scale, mdn_adjoint *adj);

/* A row of n voxels at once (the likelihood's hot loop): nb[k] = Nbar of voxel k times
 * e^ln_extra[k] (ln_extra may be NULL for 0; -inf marks a voxel to skip: nb = 0), features
 * psi[c * stride + k]. If grad_w / dpsi are not NULL, ADDS scale * d(nb[k])/dw summed over k
 * and scale * d(nb[k])/dpsi into dpsi[c * stride + k]. The same numbers as mdn_forward +
 * mdn_nbar voxel by voxel (exp, log and erfc four at a time where the CPU allows), and the
 * same path for a given row whatever the decomposition. ws: mdn_row_workspace(cfg, n)
 * doubles. Returns the sum of nb. */
size_t mdn_row_workspace(const mdn_config *cfg, ptrdiff_t n);
double mdn_nbar_row(const mdn_config *cfg, const double *w, const double *psi, ptrdiff_t stride,
                    ptrdiff_t n, double ln_V, double u_th, const double *ln_extra, double scale,
                    double *grad_w, double *dpsi, double *nb, double *ws);

/* mdn_nbar_row and, in the same pass, the halos of the row: nh halos in voxels hk[h] - hbase
 * (0 <= that < n, non-decreasing) of ln M = hu[h]; hld[h] = ln dn/dlnM (M_h | voxel), as
 * mdn_ln_dndlnm gives it (0 for a halo in a skipped voxel, ln_extra = -inf). With gradients,
 * ADDS the halos' d/dw and d/dpsi too, with scale 1, for each halo whose value is finite.
 * Returns the sum of nb. Not collective. */
double mdn_row(const mdn_config *cfg, const double *w, const double *psi, ptrdiff_t stride,
               ptrdiff_t n, double ln_V, double u_th, const double *ln_extra, double scale,
               size_t nh, const size_t *hk, size_t hbase, const double *hu, double *hld,
               double *grad_w, double *dpsi, double *nb, double *ws);

/* dn/dlnM (M | v) (not its log) at the nm masses u[m] = ln M_m for the n voxels of a row with
 * features psi[c * stride + k]: out[k * nm + m]. The value of exp(mdn_ln_dndlnm) to rounding,
 * computed directly four voxels at a time where the numbers allow (the rest one by one
 * through mdn_forward and mdn_ln_dndlnm). Not collective. */
void mdn_dndlnm_row(const mdn_config *cfg, const double *w, const double *psi, ptrdiff_t stride,
                    ptrdiff_t n, int nm, const double *u, double *out);

/* Reverse pass of mdn_forward: ADDS d lnL / d w into grad_w (may be NULL) and
 * d lnL / d psi into dpsi[c * stride] (may be NULL). */
void mdn_backward(const mdn_config *cfg, const double *w, const double *psi, ptrdiff_t stride,
                  const mdn_voxel *vox, const mdn_adjoint *adj, double *grad_w, double *dpsi,
                  ptrdiff_t dstride);

/* Stable scalar helpers (exported for tests and other modules). */
double mdn_softplus(double y);     /* ln(1 + e^y) */
double mdn_sigmoid(double y);      /* 1 / (1 + e^-y) */
double mdn_ln_softplus(double y);  /* ln softplus(y), accurate for y << 0 */
double mdn_dln_softplus(double y); /* d ln softplus(y) / dy = sigmoid(y) / softplus(y) */

#endif
