/* power: the power spectrum estimator of a distributed field (MODEL.md section 1).
 *
 * P(k) = V^2 / L^3 |f(k)|^2 averaged over the modes in shells of |k|, V = (L/N)^3, with the
 * forward DFT of field.h. Every half-complex mode counts with its hermitian weight
 * (field_hermitian_weight), so n_modes counts k and -k separately, like a full complex
 * transform; k = 0 is never counted. For a Gaussian field the shell mean then has variance
 * 2 P^2 / n_modes (exactly, self-conjugate modes included).
 *
 * Bins are [k_lo, k_hi) of equal width. Default (every field of power_config zero): width
 * k_f = 2 pi / L from 0.5 k_f to (N/2 + 0.5) k_f, i.e. N/2 shells centred on k_f, 2 k_f, ...,
 * the Nyquist frequency k_Ny = pi N / L; the corner modes beyond k_Ny (|k| up to sqrt(3) k_Ny)
 * are left out by default because those shells are incomplete. Optional CIC window
 * deconvolution divides |f(k)|^2 by W(k)^2, W = prod_i sinc^2(k_i L / (2 N)).
 * The object keeps each local mode's bin, weight and window, and a complex work buffer:
 * power_measure allocates nothing. */
#ifndef CERBERUS_POWER_H
#define CERBERUS_POWER_H

#include <stdbool.h>

#include "cerberus/field.h"

typedef struct power_config {
  double k_min;        /* lower edge of the first bin, h/Mpc (0: half the bin width, or
                          0.5 k_f with n_bins, so that bins centre on multiples of dk) */
  double k_max;        /* upper edge of the last bin (0: k_Ny + 0.5 k_f); rounded up to
                          whole bins when dk is used */
  double dk;           /* bin width (0: k_f); ignored when n_bins > 0 */
  int n_bins;          /* > 0: this many equal bins between k_min and k_max */
  bool deconvolve_cic; /* divide by the CIC window W(k)^2 */
} power_config;

typedef struct power {
  int n_bins;
  double *k_lo, *k_hi; /* bin edges, h/Mpc */
  double *k_mean;      /* mode-weighted mean |k| of the shell (its centre when empty) */
  double *n_modes;     /* modes in the shell, k and -k both counted */
  double *pk;          /* shell mean of P(k), (Mpc/h)^3, after power_measure (0 when empty) */
  /* private */
  field *f;
  int *bin;       /* per local half-complex mode: its bin or -1 */
  double *weight; /* hermitian weight * V^2/L^3 (/ W^2 when deconvolving) */
  fftw_complex *work;
  double *sum; /* [n_bins] partial sums */
} power;

/* Make the bins and the per-mode tables. CB_ERR_INPUT naming the option (-k_min, -k_max, -dk,
 * -n_bins) for a negative value, k_max <= k_min, or more than 1e6 bins. Collective. */
int power_create(field *f, const power_config *cfg, power **p);
void power_destroy(power **p); /* Not collective; accepts NULL, leaves NULL. */

/* Measure the shell means of a real field x (local slab) into p->pk. Collective. */
int power_measure(power *p, const double *x);
/* The same from its half-complex transform (field_r2c output). Collective. */
int power_measure_complex(power *p, const fftw_complex *xk);

#endif
