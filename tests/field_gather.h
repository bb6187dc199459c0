/* field_gather: test helpers for comparing a distributed run with a one-rank run.
 *
 * field_gather_real collects per-voxel values (width doubles per local voxel, local voxel
 * order) from every rank of f->comm onto rank 0, in global voxel order (the slabs are
 * contiguous and ordered by rank). self_comm_on_root gives rank 0 a one-rank communicator
 * (MPI_COMM_NULL elsewhere) for the reference run. Header-only, for tests. */
#ifndef CERBERUS_TEST_FIELD_GATHER_H
#define CERBERUS_TEST_FIELD_GATHER_H

#include "cerberus/field.h"

#include <mpi.h>
#include <stdlib.h>

/* out (rank 0): n^3 * width doubles; NULL elsewhere is fine. Collective. */
static inline void field_gather_real(const field *f, int width, const double *local, double *out) {
  int *counts = calloc((size_t)f->size, sizeof(int)),
      *displs = calloc((size_t)f->size, sizeof(int));
  for (int r = 0; r < f->size; r++) {
    counts[r] = (int)((f->plane_start[r + 1] - f->plane_start[r]) * f->n * f->n * width);
    displs[r] = (int)(f->plane_start[r] * f->n * f->n * width);
  }
  MPI_Gatherv(local, (int)(f->n_real_local * width), MPI_DOUBLE, out, counts, displs, MPI_DOUBLE, 0,
              f->comm);
  free(counts);
  free(displs);
}

static inline MPI_Comm self_comm_on_root(MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm self;
  MPI_Comm_split(comm, rank == 0 ? 0 : MPI_UNDEFINED, 0, &self);
  return self;
}

#endif
