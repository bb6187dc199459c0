/* forward: the forward model s -> delta_L -> LPT -> CIC -> delta, and its adjoint.
 *
 * MODEL.md section 2. White noise s (n_real_local values on the field's slabs) is filtered to
 * the linear field delta_L(k) = sqrt(P(k)/V) s(k) (the ic module's filter), displaced by LPT
 * (order 1 or 2, one particle per voxel), assigned by cloud-in-cell with migration, and
 * delta = rho - 1 returned on the same slabs. forward_adjoint maps dF/d delta to dF/d s at
 * the state of the last forward_run (the 2LPT linearisation point and the migrated
 * particles). The object owns every workspace; a run allocates nothing once the particle
 * counts per rank are steady. */
#ifndef CERBERUS_FORWARD_H
#define CERBERUS_FORWARD_H

#include "cerberus/cosmology.h"
#include "cerberus/field.h"

#include <stddef.h>

typedef struct forward forward;

/* lpt_order 1 or 2 (CB_ERR_INPUT otherwise); P(k) from c must cover the grid's k range
 * (error naming the table). Collective. */
int forward_create(field *f, const cosmology *c, int lpt_order, forward **fw);
void forward_destroy(forward **fw); /* Not collective; accepts NULL, leaves NULL. */

/* delta (out) from s; delta_L (out) too unless NULL. s may alias delta_L, not delta.
 * Collective. */
int forward_run(forward *fw, const double *s, double *delta_L, double *delta);
/* g_s = dF/ds from g_delta = dF/d delta, at the last forward_run: once per run (it uses the
 * run's displacements as its workspace; a second call is CB_ERR_INTERNAL). g_delta and g_s
 * may alias. Collective. */
int forward_adjoint(forward *fw, const double *g_delta, double *g_s);

/* Eulerian positions of the local particles of the last run (3 per particle, Lagrangian
 * order, before migration; *np = n_real_local), made on the first call after the run (one
 * pass; the array is allocated then and kept). NULL if forward_adjoint has consumed the run's
 * displacements before any call, or without a successful run or memory. Not collective. */
const double *forward_positions(forward *fw, size_t *np);

#endif
