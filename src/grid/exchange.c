/* exchange: ghost planes between neighbouring slabs (include/cerberus/exchange.h).
 *
 * Planes are contiguous, so no packing: the forward exchange receives straight into the
 * ghost planes and sends straight from the owned edge planes, `ghost` planes a message, two
 * messages each way (tags tell "from below" and "from above" apart, which matters on two
 * ranks where both neighbours are the same rank). The reverse exchange sends the ghost
 * planes (contributions computed for the neighbours' planes) and receives the neighbours'
 * into a workspace owned by the object, then adds them. On one rank both are local copies.
 * The time spent in MPI_Waitall is accumulated so the benchmark can report the share of
 * the run spent waiting on neighbours. MODEL.md section 3 (the engine's halo exchange). */
#include "cerberus/exchange.h"

#include "cerberus/status.h"

#include <stdlib.h>
#include <string.h>

struct exchange {
  MPI_Comm comm;
  int rank, size, below, above;
  ptrdiff_t nloc;
  size_t plane; /* doubles per plane */
  int ghost;
  size_t block; /* ghost * plane */
  MPI_Request req[4];
  int nreq;
  double *recv;    /* reverse workspace: 2 blocks (from below, from above) */
  double *pending; /* buffer of the reverse exchange in flight */
  double wait;
};

enum { TAG_UP = 701, TAG_DOWN = 702 };

int exchange_create(MPI_Comm comm, ptrdiff_t nloc, size_t plane_size, int ghost, exchange **out) {
  *out = NULL;
  long mine = (long)nloc, fewest = 0;
  MPI_Allreduce(&mine, &fewest, 1, MPI_LONG, MPI_MIN, comm);
  int size;
  MPI_Comm_size(comm, &size);
  CB_CHECK(fewest >= ghost, CB_ERR_INPUT,
           "a rank owns %ld plane(s) but the kernels need %d ghost plane(s): use at most as "
           "many ranks as n_grid / %d",
           fewest, ghost, ghost > 0 ? ghost : 1);
  exchange *ex;
  CB_CALLOC(ex, 1);
  ex->comm = comm;
  MPI_Comm_rank(comm, &ex->rank);
  ex->size = size;
  ex->below = (ex->rank - 1 + size) % size;
  ex->above = (ex->rank + 1) % size;
  ex->nloc = nloc;
  ex->plane = plane_size;
  ex->ghost = ghost;
  ex->block = (size_t)ghost * plane_size;
  ex->recv = malloc((ex->block ? 2 * ex->block : 1) * sizeof(double));
  if (!ex->recv) {
    free(ex);
    return CB_ERROR(CB_ERR_MEM, "out of memory for exchange buffers");
  }
  *out = ex;
  return CB_OK;
}

void exchange_destroy(exchange **pex) {
  if (!pex || !*pex) return;
  free((*pex)->recv);
  free(*pex);
  *pex = NULL;
}

int exchange_begin(exchange *ex, double *buf) {
  const size_t B = ex->block;
  if (B == 0) return CB_OK;
  double *lo_ghost = buf;                                              /* planes -g..-1 */
  double *lo_edge = buf + B;                                           /* planes 0..g-1 */
  double *hi_edge = buf + (size_t)ex->nloc * ex->plane;                /* planes nloc-g..nloc-1 */
  double *hi_ghost = buf + (size_t)(ex->nloc + ex->ghost) * ex->plane; /* nloc..nloc+g-1 */
  if (ex->size == 1) {
    memcpy(lo_ghost, hi_edge, B * sizeof(double));
    memcpy(hi_ghost, lo_edge, B * sizeof(double));
    ex->nreq = 0;
    return CB_OK;
  }
  int e = 0;
  e |= MPI_Irecv(lo_ghost, (int)B, MPI_DOUBLE, ex->below, TAG_UP, ex->comm, &ex->req[0]);
  e |= MPI_Irecv(hi_ghost, (int)B, MPI_DOUBLE, ex->above, TAG_DOWN, ex->comm, &ex->req[1]);
  e |= MPI_Isend(hi_edge, (int)B, MPI_DOUBLE, ex->above, TAG_UP, ex->comm, &ex->req[2]);
  e |= MPI_Isend(lo_edge, (int)B, MPI_DOUBLE, ex->below, TAG_DOWN, ex->comm, &ex->req[3]);
  ex->nreq = 4;
  CB_CHECK(e == MPI_SUCCESS, CB_ERR_MPI, "ghost exchange: MPI_Isend/Irecv failed");
  return CB_OK;
}

int exchange_end(exchange *ex) {
  if (ex->nreq == 0) return CB_OK;
  double t0 = MPI_Wtime();
  int e = MPI_Waitall(ex->nreq, ex->req, MPI_STATUSES_IGNORE);
  ex->wait += MPI_Wtime() - t0;
  ex->nreq = 0;
  CB_CHECK(e == MPI_SUCCESS, CB_ERR_MPI, "ghost exchange: MPI_Waitall failed");
  return CB_OK;
}

int exchange_reverse_begin(exchange *ex, double *buf) {
  const size_t B = ex->block;
  ex->pending = buf;
  if (B == 0) return CB_OK;
  double *lo_ghost = buf;
  double *hi_ghost = buf + (size_t)(ex->nloc + ex->ghost) * ex->plane;
  if (ex->size == 1) {
    /* my low ghosts are my own top planes, my high ghosts my bottom planes */
    memcpy(ex->recv, hi_ghost, B * sizeof(double));     /* to add at the bottom */
    memcpy(ex->recv + B, lo_ghost, B * sizeof(double)); /* to add at the top */
    ex->nreq = 0;
    return CB_OK;
  }
  int e = 0;
  /* recv[0..B): from below (its high ghosts = my bottom planes); recv[B..2B): from above */
  e |= MPI_Irecv(ex->recv, (int)B, MPI_DOUBLE, ex->below, TAG_UP, ex->comm, &ex->req[0]);
  e |= MPI_Irecv(ex->recv + B, (int)B, MPI_DOUBLE, ex->above, TAG_DOWN, ex->comm, &ex->req[1]);
  e |= MPI_Isend(hi_ghost, (int)B, MPI_DOUBLE, ex->above, TAG_UP, ex->comm, &ex->req[2]);
  e |= MPI_Isend(lo_ghost, (int)B, MPI_DOUBLE, ex->below, TAG_DOWN, ex->comm, &ex->req[3]);
  ex->nreq = 4;
  CB_CHECK(e == MPI_SUCCESS, CB_ERR_MPI, "reverse ghost exchange: MPI_Isend/Irecv failed");
  return CB_OK;
}

int exchange_reverse_end(exchange *ex) {
  const size_t B = ex->block;
  if (B == 0) return CB_OK;
  CB_CALL(exchange_end(ex));
  double *buf = ex->pending;
  double *lo_edge = buf + B;
  double *hi_edge = buf + (size_t)ex->nloc * ex->plane;
  for (size_t i = 0; i < B; i++) lo_edge[i] += ex->recv[i];
  for (size_t i = 0; i < B; i++) hi_edge[i] += ex->recv[B + i];
  ex->pending = NULL;
  return CB_OK;
}

double exchange_wait_time(const exchange *ex) {
  return ex->wait;
}
void exchange_reset_time(exchange *ex) {
  ex->wait = 0;
}
