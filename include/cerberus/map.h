/* map: the maximum a posteriori point of the weights' posterior (posterior.h), the best of
 * several optimisations by PETSc TAO (bound-constrained limited-memory variable metric,
 * TAOBLMVM, unless -tao_type says otherwise) from seeded random starts N(0, init_scale^2).
 * MODEL.md section 8: the posterior has many modes and a MAP Hessian condition number near
 * 1e10, so several starts are made and the best kept.
 *
 * The optimiser runs replicated on every rank of the posterior's communicator (vectors on
 * PETSC_COMM_SELF); the objective -ln p is collective and gives the same numbers on every
 * rank, so every rank makes the same iterations. A start that leaves the support (ln p = -inf)
 * sees a huge objective and backs off. Collective. */
#ifndef CERBERUS_MAP_H
#define CERBERUS_MAP_H

#include "cerberus/posterior.h"

typedef struct map_config {
  long n_starts;       /* 4 */
  long max_iterations; /* 200 per start */
  double init_scale;   /* 0.1 */
  unsigned long seed;  /* of the starts */
} map_config;

void map_config_default(map_config *c); /* Not collective. */

/* best (posterior_dim values): the parameters (theta) of the best start; *best_lp its ln p;
 * *n_eval the target evaluations spent. CB_ERR_NUMERIC when no start ends at a finite ln p.
 * Logs one line per start. Collective. */
int map_find(posterior *post, const map_config *cfg, double *best, double *best_lp, long *n_eval);

/* The Laplace approximation's covariance at theta (a MAP): the Hessian H of -ln p by central
 * differences of the gradient (2 dim evaluations, steps 1e-4 max(1, |theta_i|)), symmetrised,
 * and C = V diag(1 / max(|lambda|, 1 / var_max)) V^T from its eigenpairs: a direction of
 * negative or nearly zero curvature (the non-identifiable ridges of MODEL.md 8) gets at most
 * var_max (e.g. the prior's variance). cov: dim * dim, row-major. *n_eval: evaluations spent.
 * A non-finite gradient is CB_ERR_NUMERIC. Collective. */
int map_laplace(posterior *post, const double *theta, double var_max, double *cov, long *n_eval);

#endif
