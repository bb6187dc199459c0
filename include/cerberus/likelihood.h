/* likelihood: the Poisson likelihood of a halo catalogue given a density field
 * (MODEL.md section 5), for the neural engine + MDN or the power-law baseline, with exact
 * reverse-mode gradients.
 *
 *   ln L(w) = sum_j ln dn/dlnM (M_j | v_j) - sum_v m(v) Nbar(v)
 *
 * exactly, nothing added. Halos j with M_j >= Mth in voxel v_j = floor(x_j N / L) mod N per
 * axis; every rank keeps the halos of its planes; halos in voxels with m(v) = 0 are dropped.
 * Power law: dn/dlnM = (1 + delta + eps)^beta n0(M), n0 the head with psi = 0.
 * The value is reduced over the ranks (every rank gets it); d lnL / d w is reduced to every
 * rank; d lnL / d delta stays distributed (owned planes). For finite weights the value is
 * finite or -inf with a reason (likelihood_reason), never NaN; at -inf the gradients are 0. */
#ifndef CERBERUS_LIKELIHOOD_H
#define CERBERUS_LIKELIHOOD_H

#include "cerberus/field.h"
#include "cerberus/weights.h"

#include <stdbool.h>
#include <stddef.h>

enum likelihood_reason {
  LK_FINITE = 0,        /* the value is finite */
  LK_HALO_DENSITY = 1,  /* dn/dlnM underflows to 0 at a halo */
  LK_NBAR_OVERFLOW = 2, /* an expected count overflows */
  LK_NONFINITE = 3,     /* a feature or head output overflowed (huge weights) */
  LK_N_REASONS = 4
};
/* "finite", "halo density underflow", ... Not collective. */
const char *likelihood_reason_name(int reason);

typedef struct likelihood likelihood;

/* Collective on f->comm (creates the engine for WEIGHTS_NPE). f must outlive lk. */
int likelihood_create(field *f, const weights_arch *arch, likelihood **lk);
void likelihood_destroy(likelihood **lk); /* Collective; accepts NULL, leaves NULL. */

/* Halos from arrays given identically on every rank (n x 3 positions in Mpc/h, n masses in
 * M_sun/h); mth: threshold (halos below it are ignored and counted). Errors (collective,
 * CB_ERR_INPUT) name `what` (e.g. the file) and the halo: outside [0, L], mass <= 0 or NaN. */
int likelihood_set_halos(likelihood *lk, const char *what, size_t n, const double *pos,
                         const double *mass, double mth);
/* Read /halos/position and /halos/mass from a catalogue file; box_size must equal the
 * field's (error naming the file). mth <= 0: the file's mass_threshold attribute, or 2e12.
 * Collective. */
int likelihood_read_catalogue(likelihood *lk, const char *path, double mth);
/* Optional mask on the owned planes (copied; values in [0, 1]); NULL removes it.
 * Collective (the halo selection changes). */
int likelihood_set_mask(likelihood *lk, const double *mask);

/* ln L at delta (owned planes) and weights w (weights_count values, same on every rank).
 * grad_w (weights_count values, every rank) and grad_delta (owned planes) may be NULL.
 * Errors: 1 + delta + eps <= 0 in a voxel (CB_ERR_INPUT naming it). Collective. */
int likelihood_evaluate(likelihood *lk, const double *delta, const double *w, double *lnL,
                        double *grad_w, double *grad_delta);
/* The same when the caller has just run npe_forward(likelihood_engine(lk), delta, w) with these
 * delta and engine weights (e.g. for statistics of the features): the engine's features are
 * used as they are, not computed again. Collective. */
int likelihood_evaluate_forwarded(likelihood *lk, const double *delta, const double *w, double *lnL,
                                  double *grad_w, double *grad_delta);

/* Why the last value was -inf (LK_FINITE if it was not), and how many evaluations ended
 * with each reason since creation. Not collective (same on every rank). */
int likelihood_reason(const likelihood *lk);
long likelihood_reason_count(const likelihood *lk, int reason);

/* Halos used (sum over ranks), ignored below Mth, the threshold. Not collective. */
long likelihood_n_halos(const likelihood *lk);
long likelihood_n_below(const likelihood *lk);
double likelihood_mth(const likelihood *lk);
/* Local halos (this rank): local voxel index ((p * n + j) * n + k) and ln M. Not collective. */
size_t likelihood_local_halos(const likelihood *lk, const size_t **voxel, const double **lnm);
/* The engine (NULL for the power law). Not collective. */
npe *likelihood_engine(const likelihood *lk);
/* Bytes held on this rank (engine, halos, work arrays). Not collective. */
size_t likelihood_memory(const likelihood *lk);

#endif
