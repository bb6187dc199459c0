/* h5io: parallel HDF5 files for fields, tables and attributes.
 *
 * Output files are created under a temporary name ("<path>.tmp.<pid>") and renamed to
 * <path> by h5io_commit, so a crash never leaves a half-written file under the final name;
 * h5io_abort removes the temporary file. An existing <path> is refused unless overwrite.
 * Fields (n^3 doubles) are written and read with collective hyperslabs of each rank's slab,
 * so a file written on 3 ranks reads on 2. Every output carries the provenance attributes
 * written by h5io_write_provenance: the command, the options used and the code version.
 * Errors name the file and the dataset or attribute. All functions are collective over the
 * communicator the file was opened with. Names may contain '/' (groups made as needed). */
#ifndef CERBERUS_H5IO_H
#define CERBERUS_H5IO_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

#include "cerberus/field.h"
#include "cerberus/options.h"

typedef struct h5file h5file;

int h5io_create(MPI_Comm comm, const char *path, bool overwrite, h5file **h);
int h5io_commit(h5file **h); /* close and rename to the final name */
void h5io_abort(h5file **h); /* close and delete the temporary file; accepts NULL */
int h5io_open(MPI_Comm comm, const char *path, h5file **h); /* read only */
void h5io_close(h5file **h);                                /* accepts NULL */
const char *h5io_path(const h5file *h);

/* Refuse early (before any work) an output that exists without overwrite, or whose
 * directory does not exist or is not writable. Collective. */
int h5io_check_output(MPI_Comm comm, const char *path, bool overwrite);

bool h5io_has(h5file *h, const char *name);

/* Attributes on object obj ("/" for the file, or a dataset/group path). */
int h5io_attr_write_double(h5file *h, const char *obj, const char *name, double v);
int h5io_attr_write_long(h5file *h, const char *obj, const char *name, long v);
int h5io_attr_write_string(h5file *h, const char *obj, const char *name, const char *s);
int h5io_attr_read_double(h5file *h, const char *obj, const char *name, double *v);
int h5io_attr_read_long(h5file *h, const char *obj, const char *name, long *v);
int h5io_attr_read_string(h5file *h, const char *obj, const char *name, char *buf, size_t n);
bool h5io_attr_exists(h5file *h, const char *obj, const char *name);

/* "command", "options" (the record), "code_version", "n_ranks" on "/". */
int h5io_write_provenance(h5file *h, const options *o);
/* "box_size", "n_grid" on "/". */
int h5io_write_grid_attrs(h5file *h, const field *f);

/* An n^3 field from each rank's slab; the read checks the shape (n^3 with the field's n)
 * and that every value is finite. */
int h5io_write_field(h5file *h, const char *name, const field *f, const double *local);
int h5io_read_field(h5file *h, const char *name, const field *f, double *local);

/* Open a field file, make the decomposition from its box_size and n_grid attributes (with at
 * least min_planes planes a rank) and read the n^3 dataset name. On error *f and *data are left
 * NULL. Caller destroys *f and fftw_free()s *data. */
int h5io_read_field_file(MPI_Comm comm, const char *path, const char *name, ptrdiff_t min_planes,
                         field **f, double **data);

/* A table of rows (n_total x ncols; ncols = 0 writes a 1-D dataset) gathered from every
 * rank's nlocal rows in rank order. */
int h5io_write_rows(h5file *h, const char *name, size_t ncols, size_t nlocal, const double *rows);
/* Every rank reads the whole table: *ncols = 0 for a 1-D dataset. Caller frees *rows. */
int h5io_read_rows_all(h5file *h, const char *name, size_t *ncols, size_t *nrows, double **rows);
/* A small array identical on every rank (rank 0's copy is written). ndim <= 4. */
int h5io_write_array(h5file *h, const char *name, int ndim, const size_t *dims, const double *data);

#endif
