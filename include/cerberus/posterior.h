/* posterior: the target the sampler explores, the posterior of the weights of the neural bias
 * model (or of the power-law baseline) given a density field and a catalogue (MODEL.md
 * sections 5 and 8):
 *
 *   ln p(theta) = ln L(w(theta)) + sum_i ln N(theta_i; 0, sigma_prior^2),  sigma_prior = 10,
 *
 * with w = theta except, for the monotone engine, the centre weight of each l = 0 output
 * channel of the first layer, w_c = softplus(t_c), where t_c is the sampled number (its prior
 * is the same N(0, 10^2)). The gradient follows by the chain rule, d w_c / d t_c = sigmoid(t_c).
 * The normalisation constant of the prior is left out (only differences of ln p matter).
 *
 * Standardised features (-standardise_features, MODEL.md section 8): the head's weights are
 * sampled as the weights of the standardised features (psi_p - m_p) / s_p, where m_p and s_p are
 * the mean and standard deviation over the voxels of feature p at the current engine weights.
 * For each head output o (alpha_i, mu_i, sigma_i) with slopes a_o (one per feature) and
 * intercept b_o the sampled numbers are a'_op = a_op s_p and b'_o = b_o + sum_p a_op m_p, so
 * a_op psi_p + b_o = sum_p a'_op (psi_p - m_p) / s_p + b'_o: the same model, and the prior
 * stays N(0, 10^2) on the head's weights a, b themselves, with the Jacobian of the change,
 * ln |d(a, b) / d(a', b')| = -n_out sum_p ln s_p (n_out = 3 G), added to ln p. The posterior
 * of the weights is therefore exactly that of the plain parametrisation; what changes is its
 * shape in the sampled numbers: the engine's scale and shift of psi, which the head's slopes
 * and intercepts would otherwise have to follow along a curved ridge, no longer move them. The
 * gradient through m_p and s_p is one more reverse pass of the engine. A feature constant over
 * the field (s_p = 0) gives ln p = -inf. With the monotone engine as well, the other weights of
 * each monotone channel's l = 0 kernel are sampled relative to its centre weight, w_i = r_i w_c
 * (ln |J| += ln w_c each, the prior still on w_i): the scale of the first layer is then t_c
 * alone. Its bias stays a number of its own: on the 64^3 posterior (t_c, b) lie along a nearly
 * straight ridge (the log scale rising with b), which r_b = b / w_c bends into a curve the
 * metric cannot follow (cfg.relative_bias makes the bias relative too, w_b = r_b w_c: the kink
 * of the softplus then sits at -r_b whatever the scale).
 *
 * It also gives the identifiable summary the diagnostics judge convergence on: the model's
 * mass function dn/dlnM (per (Mpc/h)^3 per ln M), averaged over the voxels of each of
 * five density bins of about equal voxel counts (quintiles of ln(1 + delta + eps) to 1/4096 of
 * its range), at three masses (Mth times 1.5, 10, 100 by default).
 * Collective on the likelihood's field communicator unless said otherwise. */
#ifndef CERBERUS_POSTERIOR_H
#define CERBERUS_POSTERIOR_H

#include "cerberus/likelihood.h"
#include "cerberus/weights.h"

#include <stdbool.h>
#include <stddef.h>

#define POSTERIOR_MF_BINS 5
#define POSTERIOR_MF_MASSES 3

typedef struct posterior_config {
  bool monotone;      /* -engine_monotone */
  bool standardise;   /* -standardise_features (npe model only; ignored for the power law) */
  bool relative_bias; /* -relative_bias: with monotone and standardised, the first layer's bias
                         too is sampled relative to the centre weight (false: its own number) */
  double prior_sigma; /* 10 */
} posterior_config;

void posterior_config_default(posterior_config *c); /* Not collective. */

typedef struct posterior posterior;

/* f, lk (made on f with the architecture a) and delta (owned planes of f) must outlive the
 * posterior. CB_ERR_INPUT for a monotone power law (there is no engine), a prior width
 * <= 0, or relative_bias without monotone and standardise. Collective (the bin edges). */
int posterior_create(field *f, likelihood *lk, const double *delta, const weights_arch *a,
                     const posterior_config *cfg, posterior **p);
void posterior_destroy(posterior **p); /* Not collective; accepts NULL, leaves NULL. */

/* Number of sampled parameters (= weights_count). Not collective. */
size_t posterior_dim(const posterior *p);
/* Whether parameter i is a softplus-parametrised centre weight. Not collective. */
bool posterior_is_monotone(const posterior *p, size_t i);

/* ln p and its gradient (grad may be NULL) at theta (same on every rank); lnL, if not NULL,
 * receives ln L. A -inf likelihood gives ln p = -inf (the gradient is then 0), not an error.
 * Collective. */
int posterior_evaluate(posterior *p, const double *theta, double *lnp, double *grad, double *lnL);

/* theta -> weights, and back. The inverse refuses (CB_ERR_INPUT naming `what` and the weight)
 * a centre weight <= 0 under the monotone engine, and a constant feature under standardised
 * features. Collective when the features are standardised (an engine pass, unless theta's
 * engine part is that of the last call); else Not collective. */
int posterior_to_weights(posterior *p, const double *theta, double *w);
int posterior_from_weights(posterior *p, const char *what, const double *w, double *theta);

/* ln p(theta) - ln L(w(theta)): the prior and, with standardised features, the Jacobian.
 * Collective as posterior_to_weights. */
int posterior_log_prior(posterior *p, const double *theta, double *lprior);

/* The binned mass function at theta: mf[b * POSTERIOR_MF_MASSES + m]. Collective. */
int posterior_mass_function(posterior *p, const double *theta, double *mf);
/* The same at weights w (e.g. a mock's true weights, which the monotone parametrisation
 * may not reach). Collective. */
int posterior_mass_function_weights(posterior *p, const double *w, double *mf);
/* Bin edges in delta (POSTERIOR_MF_BINS + 1 values) and the masses. Not collective. */
const double *posterior_mf_edges(const posterior *p);
const double *posterior_mf_masses(const posterior *p);

/* Evaluations of ln p (with or without gradient) since creation. Not collective. */
long posterior_n_evaluations(const posterior *p);

#endif
