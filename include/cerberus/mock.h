/* mock: halo catalogues drawn from a mass function per voxel (MODEL.md section 6).
 *
 * A truth gives dn/dlnM (M | v), halos per (Mpc/h)^3 per unit ln M, in every voxel v. The
 * sampler tabulates it on a fine grid in u = ln M from ln Mth to ln Mmax (Mmax = 1e16 for the
 * commands), integrates it with the trapezoid rule, and draws, voxel by voxel:
 *   - a Poisson count with mean Nbar(v) = V * integral (none where the mean is zero);
 *   - masses by inverse transform of the voxel's cumulative mass function, linear in u
 *     within each grid cell (so the cumulative is exactly invertible, a quadratic per cell);
 *   - positions uniform within the voxel.
 * Random numbers come from a generator seeded by a hash of (seed, global plane index), and a
 * plane is never split across ranks: a seed gives the same catalogue, as a set, on any number
 * of ranks. Halos stay on the rank that owns their voxel.
 *
 * The st-pbs truth (Sheth-Tormen with peak-background-split Lagrangian bias):
 *   n(M | v) = n_ST(M) (1 + delta(v)) exp(b_L(nu(M)) delta_R(v)) / Z(M),
 *   Z(M)     = box average of (1 + delta) exp(b_L delta_R),
 * with delta_R the Gaussian-smoothed linear field carried to the Eulerian voxels by the
 * particles (mock_smooth_gaussian, then mock_carry). Evaluated in log space (no overflow for
 * any delta_R). */
#ifndef CERBERUS_MOCK_H
#define CERBERUS_MOCK_H

#include "cerberus/catalogue.h"
#include "cerberus/cosmology.h"
#include "cerberus/field.h"

#include <stddef.h>

#define MOCK_MASS_MAX 1e16 /* top of the mass grid, M_sun/h (MODEL.md section 6) */
#define MOCK_DLNM 0.02     /* default step of the mass grid in ln M */

/* A truth: fill dndlnm[b], b < nm, with dn/dlnM at u = lnm[b] in local voxel v (index in
 * the field's real layout, 0 <= v < n_real_local), in (Mpc/h)^-3; values must be finite and
 * >= 0. Returns a status. */
typedef int (*mock_dndlnm_fn)(void *ctx, ptrdiff_t v, size_t nm, const double *lnm, double *dndlnm);

typedef struct mock mock;

/* The grid: ln mth .. ln mmax in ceil((ln mmax - ln mth) / dlnm) equal cells. Errors
 * (CB_ERR_INPUT) for mth <= 0, mmax <= mth, dlnm <= 0. f must outlive the sampler.
 * Not collective. */
int mock_create(field *f, double mth, double mmax, double dlnm, mock **m);
void mock_destroy(mock **m); /* Not collective; accepts NULL, leaves NULL */

/* The grid points u_b = ln M_b (mock_n_mass of them). Not collective. */
size_t mock_n_mass(const mock *m);
const double *mock_lnm(const mock *m);

/* Draw a catalogue of the local voxels' halos (*cat, new) for the truth (fn, ctx) and the
 * seed; expected (n_real_local values, may be NULL) receives Nbar(v). Collective (the box
 * average of the truth is reduced: mock_mean_dndlnm). */
int mock_sample(mock *m, unsigned long seed, mock_dndlnm_fn fn, void *ctx, double *expected,
                catalogue **cat);

/* The box average of the truth's dn/dlnM on the grid, from the last mock_sample (zeros
 * before). Not collective. */
const double *mock_mean_dndlnm(const mock *m);

/* The truth's own ln L of the last catalogue, MODEL.md section 5's sum
 * sum_j ln dn/dlnM(M_j | v_j) - sum_v Nbar(v) with the density the sampler draws from (linear
 * in ln M between the grid points, Nbar by the trapezoid rule up to the grid's top): the
 * benchmark a fitted model's ln L of the same catalogue is measured against (0 before).
 * Not collective. */
double mock_truth_ln_l(const mock *m);

/* out = in smoothed with a Gaussian of radius R (Mpc/h): W(k) = exp(-k^2 R^2 / 2); R = 0
 * copies. in and out may alias. Collective. */
int mock_smooth_gaussian(field *f, const double *in, double R, double *out);

/* The environment of the st-pbs truth: delta_L smoothed with a Gaussian of radius R, carried
 * to the Eulerian voxels by the particles at pos (np local particles in Lagrangian order, one
 * per local voxel: forward_positions), as the cloud-in-cell average of the particles' values,
 * CIC(w) / CIC(1); 0 in voxels no particle reaches. Collective. */
int mock_environment(field *f, const double *delta_L, double R, size_t np, const double *pos,
                     double *env);

/* ------------------------------------------------------------ the st-pbs truth */

typedef struct mock_stpbs mock_stpbs;

/* From the Eulerian density contrast delta and environment delta_R (both n_real_local values,
 * local planes), on the sampler's mass grid: tabulates ln n_ST, b_L(nu) and ln Z(M) (Z is
 * reduced over the ranks). delta and delta_R must outlive the truth. A voxel with
 * 1 + delta <= 0 gets no halo. Collective. */
int mock_stpbs_create(const mock *m, const cosmology *c, const double *delta, const double *delta_R,
                      mock_stpbs **t);
void mock_stpbs_destroy(mock_stpbs **t); /* Not collective; accepts NULL, leaves NULL */
/* The truth's callback for mock_sample (ctx: the mock_stpbs). Not collective. */
int mock_stpbs_dndlnm(void *ctx, ptrdiff_t v, size_t nm, const double *lnm, double *dndlnm);
/* ln Z(M_b) on the sampler's grid. Not collective. */
const double *mock_stpbs_ln_z(const mock_stpbs *t);

#endif
