/* particles: particle migration between ranks and the slab ghost plane (MPI lives here).
 *
 * MODEL.md section 2. A plan is made from each particle's destination rank: a counting sort
 * by destination gives every particle its slot in the send buffer (stable, so the order is
 * the local order within a destination), MPI_Alltoall exchanges the counts, and the
 * displacements follow. The same plan moves positions and weights forward (MPI_Alltoallv)
 * and brings gradients back (the reverse MPI_Alltoallv and the inverse permutation), which is
 * the exact adjoint of the forward move. Any rank can send to any rank: a particle displaced
 * by several slabs, or across the periodic edge, goes straight to its owner.
 *
 * The ghost plane: a deposit on planes [i0, i0 + n0] of a slab [i0, i0 + n0) spills onto the
 * first plane of the next rank (rank 0 after the last: periodic); MPI_Sendrecv along the ring
 * carries it, and the transposed exchange fetches that plane for the adjoint.
 * Buffers grow to the largest size seen and are kept. */
#include "cerberus/particles.h"

#include "cerberus/logevent.h"
#include "cerberus/status.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct particles {
  MPI_Comm comm;
  int rank, size;
  int *scount, *sdispl, *rcount, *rdispl; /* per rank, in particles */
  int *scw, *sdw, *rcw, *rdw;             /* per rank, in doubles (times width) */
  size_t np, n_recv, n_total;
  int planned;
  size_t *slot; /* slot of local particle p in the send order */
  size_t slot_cap;
  int *bstart; /* per bucket: cursor of the counting sort */
  size_t bstart_cap;
  int *identity; /* size values 0 .. size-1: buckets = ranks for particles_plan */
  double *sbuf;
  size_t sbuf_cap;
  double *gbuf;
  size_t gbuf_cap;
};

int particles_create(MPI_Comm comm, particles **out) {
  *out = NULL;
  particles *pe;
  CB_CALLOC(pe, 1);
  pe->comm = comm;
  MPI_Comm_rank(comm, &pe->rank);
  MPI_Comm_size(comm, &pe->size);
  const size_t s = (size_t)pe->size;
  pe->scount = calloc(s, sizeof(int));
  pe->sdispl = calloc(s, sizeof(int));
  pe->rcount = calloc(s, sizeof(int));
  pe->rdispl = calloc(s, sizeof(int));
  pe->scw = calloc(s, sizeof(int));
  pe->sdw = calloc(s, sizeof(int));
  pe->rcw = calloc(s, sizeof(int));
  pe->rdw = calloc(s, sizeof(int));
  pe->identity = calloc(s, sizeof(int));
  if (!pe->identity || !pe->scount || !pe->sdispl || !pe->rcount || !pe->rdispl || !pe->scw ||
      !pe->sdw || !pe->rcw || !pe->rdw) {
    particles_destroy(&pe);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the particle exchange of %d ranks", (int)s);
  }
  for (int r = 0; r < pe->size; r++) pe->identity[r] = r;
  *out = pe;
  return CB_OK;
}

void particles_destroy(particles **ppe) {
  if (!ppe || !*ppe) return;
  particles *pe = *ppe;
  free(pe->scount);
  free(pe->sdispl);
  free(pe->rcount);
  free(pe->rdispl);
  free(pe->scw);
  free(pe->sdw);
  free(pe->rcw);
  free(pe->rdw);
  free(pe->slot);
  free(pe->bstart);
  free(pe->identity);
  free(pe->sbuf);
  free(pe->gbuf);
  free(pe);
  *ppe = NULL;
}

int particles_reserve(void **buf, size_t *cap, size_t n, size_t sz) {
  if (n <= *cap && *buf) return CB_OK;
  size_t want = n > *cap + *cap / 4 ? n : *cap + *cap / 4;
  if (want == 0) want = 1;
  free(*buf);
  *buf = malloc(want * sz);
  *cap = *buf ? want : 0;
  CB_CHECK(*buf != NULL, CB_ERR_MEM, "out of memory for %zu particle values", want);
  return CB_OK;
}

int particles_plan(particles *pe, size_t np, const int *dest, size_t *n_recv, size_t *n_total) {
  CB_CALL(particles_plan_buckets(pe, np, dest, pe->size, pe->identity, n_recv, n_total));
  return CB_OK;
}

int particles_plan_buckets(particles *pe, size_t np, const int *bucket, int nbucket,
                           const int *bucket_rank, size_t *n_recv, size_t *n_total) {
  logevent_begin(LOGEVENT_MIGRATE);
  pe->planned = 0;
  long bad = 0;
  for (size_t p = 0; p < np; p++)
    if (bucket[p] < 0 || bucket[p] >= nbucket) bad++;
  /* {particles, bad ones, ranks whose counts would overflow an int of doubles} */
  long loc[3] = {(long)np, bad, np > (size_t)(INT_MAX / 8) ? 1 : 0}, tot[3] = {0, 0, 0};
  MPI_Allreduce(loc, tot, 3, MPI_LONG, MPI_SUM, pe->comm);
  if (tot[1] > 0) {
    logevent_end(LOGEVENT_MIGRATE);
    return CB_ERROR(CB_ERR_NUMERIC, "%ld particle(s) have a non-finite position", tot[1]);
  }
  if (tot[2] > 0) {
    logevent_end(LOGEVENT_MIGRATE);
    return CB_ERROR(CB_ERR_INPUT,
                    "too many particles on one rank for the exchange (use more ranks)");
  }
  int st = particles_reserve((void **)&pe->slot, &pe->slot_cap, np, sizeof(size_t));
  if (st == CB_OK)
    st = particles_reserve((void **)&pe->bstart, &pe->bstart_cap, (size_t)nbucket, sizeof(int));
  int fail = st != CB_OK, anyfail = 0; /* collective: every rank learns whether one failed */
  MPI_Allreduce(&fail, &anyfail, 1, MPI_INT, MPI_MAX, pe->comm);
  if (anyfail) {
    logevent_end(LOGEVENT_MIGRATE);
    if (st != CB_OK) return st;
    return CB_ERROR(CB_ERR_MEM, "out of memory on another rank for the particle exchange");
  }
  /* stable counting sort by bucket; buckets of one rank are contiguous (bucket_rank is
   * non-decreasing), so the send order is grouped by rank and, within it, by bucket */
  memset(pe->bstart, 0, (size_t)nbucket * sizeof(int));
  memset(pe->scount, 0, (size_t)pe->size * sizeof(int));
  for (size_t p = 0; p < np; p++) pe->bstart[bucket[p]]++;
  int off = 0, monotone = 1;
  for (int b = 0; b < nbucket; b++) {
    const int cnt = pe->bstart[b];
    if (b > 0 && bucket_rank[b] < bucket_rank[b - 1]) monotone = 0;
    pe->scount[bucket_rank[b]] += cnt;
    pe->bstart[b] = off;
    off += cnt;
  }
  off = 0;
  for (int r = 0; r < pe->size; r++) {
    pe->sdispl[r] = off;
    off += pe->scount[r];
  }
  for (size_t p = 0; p < np; p++) pe->slot[p] = (size_t)pe->bstart[bucket[p]]++;
  if (pe->size == 1)
    pe->rcount[0] = pe->scount[0];
  else
    MPI_Alltoall(pe->scount, 1, MPI_INT, pe->rcount, 1, MPI_INT, pe->comm);
  long roff = 0;
  for (int r = 0; r < pe->size; r++) {
    pe->rdispl[r] = (int)roff;
    roff += pe->rcount[r];
  }
  logevent_end(LOGEVENT_MIGRATE);
  CB_CHECK(monotone, CB_ERR_INTERNAL, "particles_plan_buckets: bucket owners not in rank order");
  CB_CHECK(roff <= INT_MAX / 8, CB_ERR_INTERNAL, "rank %d receives too many particles (%ld)",
           pe->rank, roff);
  pe->np = np;
  pe->n_recv = (size_t)roff;
  pe->n_total = (size_t)tot[0];
  pe->planned = 1;
  *n_recv = pe->n_recv;
  if (n_total) *n_total = pe->n_total;
  return CB_OK;
}

static void scale_counts(particles *pe, int width) {
  for (int r = 0; r < pe->size; r++) {
    pe->scw[r] = pe->scount[r] * width;
    pe->sdw[r] = pe->sdispl[r] * width;
    pe->rcw[r] = pe->rcount[r] * width;
    pe->rdw[r] = pe->rdispl[r] * width;
  }
}

int particles_forward(particles *pe, int width, const double *in, double *out) {
  CB_CHECK(pe->planned && width >= 1 && width <= 8, CB_ERR_INTERNAL,
           "particles_forward without a plan or with width %d", width);
  const size_t w = (size_t)width;
  if (pe->size == 1) { /* one rank: only the permutation */
    for (size_t p = 0; p < pe->np; p++)
      for (size_t c = 0; c < w; c++) out[pe->slot[p] * w + c] = in[p * w + c];
    return CB_OK;
  }
  logevent_begin(LOGEVENT_MIGRATE);
  int st =
      particles_reserve((void **)&pe->sbuf, &pe->sbuf_cap, pe->np * (size_t)width, sizeof(double));
  if (st != CB_OK) {
    logevent_end(LOGEVENT_MIGRATE);
    return st; /* out of memory: the other ranks may hang, as with any failed allocation */
  }
  for (size_t p = 0; p < pe->np; p++)
    for (size_t c = 0; c < w; c++) pe->sbuf[pe->slot[p] * w + c] = in[p * w + c];
  scale_counts(pe, width);
  int rc = MPI_Alltoallv(pe->sbuf, pe->scw, pe->sdw, MPI_DOUBLE, out, pe->rcw, pe->rdw, MPI_DOUBLE,
                         pe->comm);
  logevent_end(LOGEVENT_MIGRATE);
  CB_CHECK(rc == MPI_SUCCESS, CB_ERR_MPI, "MPI_Alltoallv failed moving particles");
  return CB_OK;
}

int particles_reverse(particles *pe, int width, const double *in, double *out) {
  CB_CHECK(pe->planned && width >= 1 && width <= 8, CB_ERR_INTERNAL,
           "particles_reverse without a plan or with width %d", width);
  if (pe->size == 1) { /* one rank: only the permutation */
    const size_t w = (size_t)width;
    for (size_t p = 0; p < pe->np; p++)
      for (size_t c = 0; c < w; c++) out[p * w + c] = in[pe->slot[p] * w + c];
    return CB_OK;
  }
  logevent_begin(LOGEVENT_MIGRATE);
  int st =
      particles_reserve((void **)&pe->sbuf, &pe->sbuf_cap, pe->np * (size_t)width, sizeof(double));
  if (st != CB_OK) {
    logevent_end(LOGEVENT_MIGRATE);
    return st;
  }
  scale_counts(pe, width);
  int rc = MPI_Alltoallv(in, pe->rcw, pe->rdw, MPI_DOUBLE, pe->sbuf, pe->scw, pe->sdw, MPI_DOUBLE,
                         pe->comm);
  const size_t w = (size_t)width;
  for (size_t p = 0; p < pe->np; p++)
    for (size_t c = 0; c < w; c++) out[p * w + c] = pe->sbuf[pe->slot[p] * w + c];
  logevent_end(LOGEVENT_MIGRATE);
  CB_CHECK(rc == MPI_SUCCESS, CB_ERR_MPI, "MPI_Alltoallv failed returning particle values");
  return CB_OK;
}

int particles_ghost_add(particles *pe, size_t count, const double *ghost, double *first) {
  if (pe->size == 1) {
    for (size_t i = 0; i < count; i++) first[i] += ghost[i];
    return CB_OK;
  }
  CB_CHECK(count <= (size_t)INT_MAX, CB_ERR_INTERNAL, "ghost plane too large (%zu)", count);
  CB_CALL(particles_reserve((void **)&pe->gbuf, &pe->gbuf_cap, count, sizeof(double)));
  const int next = (pe->rank + 1) % pe->size, prev = (pe->rank + pe->size - 1) % pe->size;
  int rc = MPI_Sendrecv(ghost, (int)count, MPI_DOUBLE, next, 731, pe->gbuf, (int)count, MPI_DOUBLE,
                        prev, 731, pe->comm, MPI_STATUS_IGNORE);
  CB_CHECK(rc == MPI_SUCCESS, CB_ERR_MPI, "MPI_Sendrecv failed for the ghost plane");
  for (size_t i = 0; i < count; i++) first[i] += pe->gbuf[i];
  return CB_OK;
}

int particles_ghost_fetch(particles *pe, size_t count, const double *first, double *ghost) {
  if (pe->size == 1) {
    memcpy(ghost, first, count * sizeof(double));
    return CB_OK;
  }
  CB_CHECK(count <= (size_t)INT_MAX, CB_ERR_INTERNAL, "ghost plane too large (%zu)", count);
  const int next = (pe->rank + 1) % pe->size, prev = (pe->rank + pe->size - 1) % pe->size;
  int rc = MPI_Sendrecv(first, (int)count, MPI_DOUBLE, prev, 732, ghost, (int)count, MPI_DOUBLE,
                        next, 732, pe->comm, MPI_STATUS_IGNORE);
  CB_CHECK(rc == MPI_SUCCESS, CB_ERR_MPI, "MPI_Sendrecv failed fetching the ghost plane");
  return CB_OK;
}
