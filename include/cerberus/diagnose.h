/* diagnose: convergence diagnostics of MCMC draws (MODEL.md section 8), as defined by Vehtari,
 * Gelman, Simpson, Carpenter & Buerkner (2021) and implemented by ArviZ (arviz.stats.
 * diagnostics) and the R package posterior, so that the numbers can be compared one to one.
 *
 * Draws are an array x of n_chains x n_draws doubles, chain-major: x[c * n_draws + d].
 *  - split: each chain cut in two halves of floor(n_draws / 2) draws (the middle draw of an
 *    odd count is left out), giving 2 n_chains chains;
 *  - rank normalisation: the pooled draws ranked (ties get their average rank r, from 1), and
 *    z = Phi^-1((r - 3/8) / (S + 1/4)), S the number of draws;
 *  - R-hat: sqrt(((n - 1)/n W + B/n) / W) on the split, rank-normalised chains ("bulk") and on
 *    the split chains of |x - median(x)| rank-normalised ("tail"); reported: the larger;
 *  - ESS: autocovariances (FFT, biased 1/n estimator), rho_t = 1 - (W - mean_c acov_c(t)) / var+
 *    with var+ = (n - 1)/n W + var(chain means), truncated by Geyer's initial positive sequence
 *    and made monotone (Geyer's initial monotone sequence), tau = -1 + 2 sum rho_t (+ the last
 *    even pair member), tau >= 1 / log10(S), ESS = S / tau; bulk: on the split rank-normalised
 *    chains; tail: the smaller of the ESS of the indicators x <= q_0.05 and x <= q_0.95 on the
 *    split chains; mean: on the split chains as they are (used for the MCSE of the mean);
 *  - quantiles: linear interpolation between order statistics (numpy's default, R type 7);
 *  - sd with n - 1 in the denominator; MCSE of the mean = sd / sqrt(ESS_mean).
 * A constant input has ESS = S (as ArviZ); R-hat of a constant input is NaN. Functions on a
 * NaN/inf input or fewer than 4 draws return NaN. All functions here are Not collective. */
#ifndef CERBERUS_DIAGNOSE_H
#define CERBERUS_DIAGNOSE_H

#include <stdbool.h>
#include <stddef.h>

/* Rank-normalised split R-hat: max of bulk and folded (tail). */
double diagnose_rhat(size_t n_chains, size_t n_draws, const double *x);
/* The classic split R-hat (no rank normalisation), and its bulk and folded parts. */
double diagnose_rhat_split(size_t n_chains, size_t n_draws, const double *x);
double diagnose_rhat_bulk(size_t n_chains, size_t n_draws, const double *x);
double diagnose_rhat_tail(size_t n_chains, size_t n_draws, const double *x);
/* Bulk ESS (split, rank-normalised), tail ESS (min of the 5% and 95% quantile indicators),
 * ESS of the mean (split, as is), ESS of the quantile indicator x <= q_prob. */
double diagnose_ess_bulk(size_t n_chains, size_t n_draws, const double *x);
double diagnose_ess_tail(size_t n_chains, size_t n_draws, const double *x);
double diagnose_ess_mean(size_t n_chains, size_t n_draws, const double *x);
double diagnose_ess_quantile(size_t n_chains, size_t n_draws, const double *x, double prob);
/* ESS of the chains exactly as given (no split, no rank normalisation): ArviZ's _ess. */
double diagnose_ess_raw(size_t n_chains, size_t n_draws, const double *x);
/* sd / sqrt(ESS_mean). */
double diagnose_mcse_mean(size_t n_chains, size_t n_draws, const double *x);
/* Quantile of the n pooled values (linear interpolation, prob in [0, 1]). */
double diagnose_quantile(size_t n, const double *x, double prob);
/* Autocovariance acov[t] = (1/n) sum_i (x_i - m)(x_{i+t} - m), t = 0 .. n-1, of one chain, by
 * GSL's FFT (zero-padded to a power of two >= 2n). Returns CB_OK, CB_ERR_MEM or CB_ERR_INPUT
 * (n = 0). */
int diagnose_autocov(size_t n, const double *x, double *acov);

typedef struct diagnose_stats {
  double mean, sd, q05, q95;
  double mcse_mean;
  double ess_bulk, ess_tail;
  double rhat; /* rank-normalised split R-hat, max of bulk and tail */
} diagnose_stats;

/* Every figure above for one quantity. CB_ERR_INPUT naming `what` when there are fewer than 4
 * draws or a non-finite draw; CB_ERR_MEM. */
int diagnose_summary(const char *what, size_t n_chains, size_t n_draws, const double *x,
                     diagnose_stats *s);
/* R-hat above the threshold (1.01) or NaN. */
static inline bool diagnose_flag(const diagnose_stats *s) {
  return !(s->rhat <= 1.01);
}

#endif
