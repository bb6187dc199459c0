/* particles: moving particle data between ranks (migration) and the ghost plane of a slab.
 *
 * MODEL.md section 2 ("particles that leave a rank's slab are handed to the rank that owns
 * them"). A particles object is an exchange plan plus its buffers, the only place of the
 * particle code that speaks MPI. particles_plan takes each local particle's destination rank,
 * whatever the distance (MPI_Alltoall of the counts), and fixes a permutation: particles go
 * out grouped by destination, in their local order, and arrive grouped by source rank, in the
 * sender's order, so the received order is deterministic. particles_forward then moves any
 * number of doubles per particle along the plan (MPI_Alltoallv) and particles_reverse brings
 * per-particle values back to the original owners in their original order (the adjoint of
 * forward, used by gradients). The plan stays valid until the next particles_plan.
 *
 * The ghost-plane calls serve slab deposits whose stencil reaches one plane past the slab's
 * end (cloud-in-cell): particles_ghost_add sends this rank's ghost plane to the next rank
 * (periodic) and adds the previous rank's into this rank's first plane; particles_ghost_fetch
 * is its transpose (each rank receives the next rank's first plane). Buffers grow to the
 * largest size seen and are reused: no allocation once the sizes are steady. */
#ifndef CERBERUS_PARTICLES_H
#define CERBERUS_PARTICLES_H

#include <mpi.h>
#include <stddef.h>

typedef struct particles particles;

/* Collective. */
int particles_create(MPI_Comm comm, particles **pe);
void particles_destroy(particles **pe); /* Not collective; accepts NULL, leaves NULL. */

/* dest[p] in [0, size) for each of np local particles; dest[p] < 0 marks a particle that
 * cannot be placed (a non-finite position): then every rank returns CB_ERR_NUMERIC. On success
 * *n_recv is the number of particles this rank will receive and *n_total the number of
 * particles over all ranks. Collective. */
int particles_plan(particles *pe, size_t np, const int *dest, size_t *n_recv, size_t *n_total);
/* The same with a finer key: bucket[p] in [0, nbucket) (negative: unplaceable) and
 * bucket_rank[b] the rank owning bucket b, non-decreasing in b (e.g. planes and their slab
 * owners). Particles travel grouped by bucket, so each source rank's particles arrive sorted
 * by bucket (stable): a deposit over them then sweeps the grid in order. Collective. */
int particles_plan_buckets(particles *pe, size_t np, const int *bucket, int nbucket,
                           const int *bucket_rank, size_t *n_recv, size_t *n_total);
/* in: np * width doubles (particle p at in[p * width]); out: n_recv * width. Collective. */
int particles_forward(particles *pe, int width, const double *in, double *out);
/* in: n_recv * width in received order; out: np * width in the original order. Collective. */
int particles_reverse(particles *pe, int width, const double *in, double *out);

/* Send count doubles (ghost) to the next rank; add those from the previous one into first.
 * With one rank, ghost is added into first. ghost and first must not overlap.
 * Neighbor-wise collective. */
int particles_ghost_add(particles *pe, size_t count, const double *ghost, double *first);
/* Send count doubles (first) to the previous rank; receive the next rank's into ghost.
 * Neighbor-wise collective. */
int particles_ghost_fetch(particles *pe, size_t count, const double *first, double *ghost);

/* Grow a per-particle buffer *buf (capacity *cap elements of sz bytes) to hold n elements,
 * by at least a quarter at a time; the contents are not kept. CB_ERR_MEM on failure (this
 * rank only). Not collective. */
int particles_reserve(void **buf, size_t *cap, size_t n, size_t sz);

#endif
