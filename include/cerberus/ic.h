/* ic: white noise and the linear density field (MODEL.md section 2).
 *
 * White noise s(x) ~ N(0, 1) per voxel, drawn plane by plane from a GSL generator seeded by
 * a hash of (seed, global plane index): the same field for a given seed whatever the number
 * of ranks. The linear field is delta_L(k) = sqrt(P(k) / V) s(k), delta_L(k = 0) = 0, done
 * with the field's r2c / c2r; the filter amplitude sqrt(P(|k|)/V) is tabulated once per
 * local mode. The map s -> delta_L is linear and self-adjoint (a real, even filter), and
 * ic_delta_linear_adjoint applies its transpose for the gradient chain. */
#ifndef CERBERUS_IC_H
#define CERBERUS_IC_H

#include "cerberus/cosmology.h"
#include "cerberus/field.h"

/* Fill the local planes of s. Not collective. */
int ic_white_noise(const field *f, unsigned long seed, double *s);

typedef struct ic_filter ic_filter;
/* Tabulate sqrt(P(k)/V) on the local modes; checks the grid's k range against a P(k)
 * table (error naming the file). Collective. */
int ic_filter_create(field *f, const cosmology *c, ic_filter **flt);
void ic_filter_destroy(ic_filter **flt);
/* sqrt(P/V) per local half-complex mode (n_complex_local values; 0 at k = 0). */
const double *ic_filter_amplitude(const ic_filter *flt);

/* delta_L from s. Collective. s and delta_L may alias. */
int ic_delta_linear(field *f, const ic_filter *flt, const double *s, double *delta_L);
/* g_s = (d delta_L / d s)^T g_delta. Collective. May alias. */
int ic_delta_linear_adjoint(field *f, const ic_filter *flt, const double *g_delta, double *g_s);

#endif
