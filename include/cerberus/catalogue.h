/* catalogue: halo catalogues in memory and in the HDF5 layout every command shares.
 *
 * The layout (MODEL.md sections 5 and 6), written by `cerberus mock` and
 * `cerberus catalogue import`, read by the likelihood:
 *   /halos/position   n x 3 doubles, Mpc/h, each coordinate in [0, box_size)
 *   /halos/mass       n doubles, M_sun/h, finite and >= mass_threshold
 *   root attributes   box_size (double), n_grid (long), mass_threshold (double)
 * A halo lies in voxel floor(x n_grid / box_size) per axis (catalogue_voxel_axis).
 *
 * In memory a catalogue holds the halos of one rank (positions x,y,z per halo, masses) and
 * the three numbers of the layout. catalogue_write gathers every rank's halos in rank order;
 * catalogue_read gives every rank the whole catalogue, checked, and catalogue_keep_local
 * then keeps those in the rank's slab. Errors name the file and the halo (row) or line. */
#ifndef CERBERUS_CATALOGUE_H
#define CERBERUS_CATALOGUE_H

#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

#include "cerberus/field.h"
#include "cerberus/h5io.h"

typedef struct catalogue {
  size_t n;              /* halos held by this rank */
  size_t capacity;       /* allocated rows */
  double *position;      /* 3 n: x, y, z of halo j at 3 j .. 3 j + 2 (Mpc/h) */
  double *mass;          /* n (M_sun/h) */
  double box_size;       /* L, Mpc/h */
  long n_grid;           /* voxels per side of the grid the catalogue belongs to */
  double mass_threshold; /* Mth, M_sun/h: every halo has mass >= Mth */
} catalogue;

/* An empty catalogue with room for capacity halos (it grows as needed). Not collective. */
int catalogue_create(size_t capacity, double box_size, long n_grid, double mass_threshold,
                     catalogue **cat);
void catalogue_destroy(catalogue **cat); /* Not collective; accepts NULL, leaves NULL */

/* Add one halo (no check). Not collective. */
int catalogue_append(catalogue *cat, double x, double y, double z, double mass);

/* Every local halo inside [0, L)^3 with finite mass >= threshold, and L, n_grid, Mth
 * sensible; otherwise an error naming `source` and the halo's local row. Not collective. */
int catalogue_check(const catalogue *cat, const char *source);

/* Write /halos/position, /halos/mass and the root attributes (every rank's halos, in rank
 * order). Collective over the file's communicator. */
int catalogue_write(h5file *h, const catalogue *cat);

/* Read and check the whole catalogue on every rank (errors name the file and the row).
 * mth <= 0: the file's mass_threshold attribute is the threshold (and required). mth > 0: the
 * attribute is optional (every halo must still lie above it when present) and the halos below
 * mth are dropped, their number in *n_below (may be NULL); the catalogue's threshold is mth.
 * Collective over the file's communicator. */
int catalogue_read(h5file *h, double mth, catalogue **cat, size_t *n_below);

/* Keep only the halos whose voxel plane (first axis) is one of f's local planes; f must
 * have the catalogue's n_grid and box_size. Not collective. */
int catalogue_keep_local(catalogue *cat, const field *f);

/* Total number of halos over the ranks. Collective. */
size_t catalogue_count(const catalogue *cat, MPI_Comm comm);

/* The voxel index along one axis of coordinate x in [0, L): floor(x n / L), kept in [0, n).
 * Not collective. */
static inline ptrdiff_t catalogue_voxel_axis(double x, double L, ptrdiff_t n) {
  ptrdiff_t i = (ptrdiff_t)floor(x * (double)n / L);
  return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

/* Read a plain-text catalogue: one halo a line, columns separated by blanks or commas, '#'
 * lines and blank lines skipped. `columns` names the x, y, z and mass columns, either by
 * 1-based number ("1,2,3,4", the default when NULL or "") or by name ("X,Y,Z,Mvir"), the
 * names being looked up in a header line (a '#' comment or the first line; a "(17)" suffix
 * on a header name, as in consistent-trees, is ignored). Refuses, naming the file and the
 * line: malformed lines (too few columns, a needed column that is not a number), positions
 * outside [0, box_size) (unless wrap: then any finite position is wrapped periodically
 * into the box, for simulation outputs that write x = L), non-positive or non-finite masses.
 * Halos below mass_threshold are left out and counted in *n_below (may be NULL). Rank 0 reads the
 * file and holds the halos; the others get an empty catalogue and the same error. Collective. */
int catalogue_read_text(MPI_Comm comm, const char *path, const char *columns, double box_size,
                        long n_grid, double mass_threshold, bool wrap, catalogue **cat,
                        size_t *n_below);

#endif
