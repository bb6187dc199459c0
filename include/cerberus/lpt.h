/* lpt: Lagrangian perturbation theory, delta_L -> particle positions, and its adjoint.
 *
 * MODEL.md section 2. One particle per voxel at the voxel centre q = (i+1/2, j+1/2, k+1/2) L/N,
 * in the field's slab decomposition (particle p of a rank is its local voxel p, in the local
 * real-array order). Zel'dovich: x = q + Psi1, Psi1(k) = i k / k^2 delta_L(k), the Nyquist
 * planes of i k set to zero. Second order (order 2) adds Psi2 = D2 grad phi2 with D2 = -3/7
 * (D1 = 1: delta_L already carries the growth), lap phi2 = sum_{i<j} (phi_ii phi_jj - phi_ij^2),
 * phi_ij(k) = k_i k_j / k^2 delta_L(k); so Psi2(k) = (3/7) i k / k^2 S(k), S the source.
 * Positions are wrapped periodically into [0, L). Arrays of positions hold 3 doubles per
 * particle (x, y, z), 3 * n_real_local in all.
 *
 * The object owns its workspaces; with order 2 it keeps the six phi_ij of the last forward
 * call, which lpt_adjoint linearises about. */
#ifndef CERBERUS_LPT_H
#define CERBERUS_LPT_H

#include "cerberus/field.h"

typedef struct lpt lpt;

/* order 1 (Zel'dovich) or 2 (2LPT); other values are CB_ERR_INPUT. Collective. */
int lpt_create(field *f, int order, lpt **p);
void lpt_destroy(lpt **p); /* Not collective; accepts NULL, leaves NULL. */
int lpt_order(const lpt *p);

/* pos = q + Psi(delta_L), wrapped into [0, L). delta_L: n_real_local values. Collective. */
int lpt_forward(lpt *p, const double *delta_L, double *pos);
/* The same from the half-complex transform of delta_L in the transposed layout (field_r2c_t
 * of it; n_complex_local values, Hermitian): saves one FFT when the caller has it. With
 * filter (n_complex_local real, even values in the same layout, or NULL for 1), delta_L(k) =
 * filter(k) in_k(k): a linear filter such as sqrt(P(k)/V) applied on the way, with no pass
 * of its own (a function of |k| has the same array in both layouts). in_k may be the field's work
 * buffer (lpt transforms in buffers of its own). pos NULL: no positions (lpt_displace_k).
 * Collective. */
int lpt_forward_k(lpt *p, const fftw_complex *in_k, const double *filter, double *pos);

/* lpt_forward_k without the positions: Psi is left in the object's three buffers
 * (lpt_displacements), for a caller that reads it there (cic_assign_lattice). Collective. */
int lpt_displace_k(lpt *p, const fftw_complex *in_k, const double *filter);
/* The three buffers: Psi_x, Psi_y, Psi_z of the last forward call, each local_n0 * n rows of
 * n values, *stride apart (stride may be NULL). The caller may overwrite them with dF/dPsi
 * for lpt_adjoint_disp_k; lpt_positions needs them unchanged. Not collective. */
double *const *lpt_displacements(lpt *p, ptrdiff_t *stride);
/* Positions q + Psi, wrapped, from the buffers (as lpt_forward writes). Not collective. */
void lpt_positions(const lpt *p, double *pos);

/* Given g_pos = dF/dpos (3 per particle, Lagrangian order), return g_delta_L = dF/d delta_L
 * at the last forward call's delta_L (only 2LPT depends on it). g_pos and g_delta_L must not
 * alias. Collective. */
int lpt_adjoint(lpt *p, const double *g_pos, double *g_delta_L);
/* The same, returned as half-complex G with g_delta_L = field_c2r_t(G) (Hermitian), times
 * filter (as in lpt_forward_k, or NULL): with the filter of lpt_forward_k, G is the
 * gradient with respect to in_k's real-space field. g_k may be the field's work buffer.
 * Collective. */
int lpt_adjoint_k(lpt *p, const double *g_pos, const double *filter, fftw_complex *g_k);

/* lpt_adjoint_k with dF/dPsi (= dF/dpos) already in the three buffers of lpt_displacements,
 * which it overwrites. Collective. */
int lpt_adjoint_disp_k(lpt *p, const double *filter, fftw_complex *g_k);

/* Lagrangian coordinate component d (0, 1, 2) of local particle p. Not collective. */
double lpt_q(const field *f, ptrdiff_t p, int d);

#endif
