/* exchange: ghost planes of a slab-decomposed field, split into begin and end.
 *
 * A buffer holds nloc owned planes and `ghost` ghost planes on each side, every plane being
 * plane_size contiguous doubles: buffer plane b in [0, nloc + 2 ghost), owned plane p at
 * b = p + ghost. exchange_begin posts MPI_Irecv into the ghost planes and MPI_Isend of the
 * owned edge planes to both neighbours (periodic, ranks r - 1 and r + 1); exchange_end
 * waits. The reverse (for adjoints) sends the ghost planes back to their owners, where
 * exchange_reverse_end ADDS them to the owned edge planes. One rank: copies, no messages.
 * This is the only module of the engine that speaks MPI. Every rank must own at least
 * `ghost` planes (checked collectively at creation). */
#ifndef CERBERUS_EXCHANGE_H
#define CERBERUS_EXCHANGE_H

#include <mpi.h>
#include <stddef.h>

typedef struct exchange exchange;

/* Collective. CB_ERR_INPUT if any rank owns fewer than ghost planes. */
int exchange_create(MPI_Comm comm, ptrdiff_t nloc, size_t plane_size, int ghost, exchange **ex);
void exchange_destroy(exchange **ex); /* Not collective; accepts NULL, leaves NULL. */

/* Neighbor-wise collective. buf must stay untouched (ghosts and edge planes) until _end. */
int exchange_begin(exchange *ex, double *buf);
int exchange_end(exchange *ex);
/* Ghost planes of buf go to their owners and are added there. Neighbor-wise collective. */
int exchange_reverse_begin(exchange *ex, double *buf);
int exchange_reverse_end(exchange *ex);

/* Seconds spent inside the waits of _end since creation or the last reset. Not collective. */
double exchange_wait_time(const exchange *ex);
void exchange_reset_time(exchange *ex);

#endif
