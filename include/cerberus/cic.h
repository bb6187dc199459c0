/* cic: cloud-in-cell density of particles on the slab grid, with migration, and its adjoint.
 *
 * MODEL.md section 2. rho(v) = m sum_p w_p W(x_p - v), W the trilinear cloud-in-cell kernel
 * of one cell width around the voxel centres (i + 1/2) L/N, periodic; m = N^3 / n_total with
 * n_total the number of particles over all ranks, so that with unit weights rho = 1 + delta has
 * mean exactly 1 (to rounding) and one particle per voxel carries mass 1. Positions may lie
 * anywhere (they are wrapped periodically); a particle whose lower-left cloud corner lies on
 * another rank's planes is handed to that rank, whatever the distance, and the deposit that
 * falls on the next rank's first plane (across the periodic edge for the last rank) is sent
 * there. Positions are 3 doubles per particle (x, y, z); weights one double per particle.
 *
 * Weighted mean of a particle quantity a on the grid: cic_assign with weights a, then with
 * NULL, and divide (the factor m cancels).
 *
 * The object owns its buffers and keeps the migration plan and the migrated particles of the
 * last cic_assign, so that cic_adjoint_last needs no new migration of positions. */
#ifndef CERBERUS_CIC_H
#define CERBERUS_CIC_H

#include "cerberus/field.h"

#include <stddef.h>

typedef struct cic cic;

int cic_create(field *f, cic **c); /* Collective. */
void cic_destroy(cic **c);         /* Not collective; accepts NULL, leaves NULL. */

/* rho (n_real_local values) from np local particles at pos (3 * np), weights (np, or NULL
 * for 1). A non-finite position anywhere is CB_ERR_NUMERIC on every rank. Collective. */
int cic_assign(cic *c, size_t np, const double *pos, const double *weights, double *rho);

/* g_pos = dF/dpos (3 * np, the callers' local particle order) from g_rho = dF/drho, at the
 * given particles (migrated again). Collective. */
int cic_adjoint(cic *c, size_t np, const double *pos, const double *weights, const double *g_rho,
                double *g_pos);
/* The same at the particles and weights of the last cic_assign, which pos and weights must
 * be, unchanged (CB_ERR_INTERNAL for another count or weighting): no migration of positions,
 * only the gradients of the particles that moved travel back. Collective. */
int cic_adjoint_last(cic *c, size_t np, const double *pos, const double *weights,
                     const double *g_rho, double *g_pos);

/* The same for the lattice of displaced voxel centres that LPT makes (one particle per local
 * voxel, unit weights, x = q + Psi): Psi read from disp[0..2], each local_n0 * n rows of n
 * values, stride apart (LPT's padded FFT buffers, say; read only), so that no array of
 * positions is written or read. rho starts from offset (-1 gives delta = rho - 1 at no extra
 * pass). Collective. */
int cic_assign_lattice(cic *c, double *const disp[3], ptrdiff_t stride, double offset, double *rho);
/* Its adjoint, in place: at the lattice of the last cic_assign_lattice, whose displacements
 * disp still holds (CB_ERR_INTERNAL if the last assign was another), overwrites disp with
 * dF/dPsi (= dF/dx) from g_rho = dF/drho. Collective. */
int cic_adjoint_lattice(cic *c, double *const disp[3], ptrdiff_t stride, const double *g_rho);

/* Particles this rank held after the last migration, and the total over ranks. Not collective. */
size_t cic_n_local(const cic *c);
size_t cic_n_total(const cic *c);

#endif
