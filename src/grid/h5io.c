/* h5io: parallel HDF5 input and output (include/cerberus/h5io.h).
 *
 * Files are opened with the MPI-IO driver on the caller's communicator. Fields are written
 * as one n^3 dataset, each rank selecting the hyperslab of its planes, with collective
 * transfers. Tables of rows are gathered in rank order (offsets from MPI_Exscan) and written
 * collectively. HDF5's own error stack printing is switched off: failures become one-line
 * messages naming the file and the object. Output goes to a temporary name first; rank 0
 * renames it after the collective close. */
#include "cerberus/h5io.h"

#include "cerberus/status.h"
#include "cerberus/version.h"

#include <errno.h>
#include <hdf5.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct h5file {
  MPI_Comm comm;
  int rank, size;
  hid_t file;
  bool writing;
  char path[4096];
  char tmp[4200];
};

static void quiet_hdf5(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

const char *h5io_path(const h5file *h) {
  return h->path;
}

/* Every rank gets rank 0's value. */
static int bcast_int(MPI_Comm comm, int v) {
  MPI_Bcast(&v, 1, MPI_INT, 0, comm);
  return v;
}

int h5io_check_output(MPI_Comm comm, const char *path, bool overwrite) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  CB_CHECK(path && path[0], CB_ERR_INPUT, "no output file given (use -o FILE)");
  int exists = 0, dir_ok = 0;
  if (rank == 0) {
    exists = access(path, F_OK) == 0;
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    const char *dir = dirname(copy);
    dir_ok = access(dir, W_OK | X_OK) == 0;
  }
  exists = bcast_int(comm, exists);
  dir_ok = bcast_int(comm, dir_ok);
  CB_CHECK(!exists || overwrite, CB_ERR_IO, "output '%s' exists (use -overwrite to replace it)",
           path);
  CB_CHECK(dir_ok, CB_ERR_IO, "output '%s': its directory does not exist or is not writable", path);
  return CB_OK;
}

int h5io_create(MPI_Comm comm, const char *path, bool overwrite, h5file **out) {
  *out = NULL;
  quiet_hdf5();
  CB_CALL(h5io_check_output(comm, path, overwrite));
  h5file *h;
  CB_CALLOC(h, 1);
  h->comm = comm;
  MPI_Comm_rank(comm, &h->rank);
  MPI_Comm_size(comm, &h->size);
  h->writing = true;
  snprintf(h->path, sizeof h->path, "%s", path);
  long pid = (long)getpid();
  MPI_Bcast(&pid, 1, MPI_LONG, 0, comm);
  snprintf(h->tmp, sizeof h->tmp, "%s.tmp.%ld", path, pid);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  h->file = H5Fcreate(h->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (h->file < 0) {
    free(h);
    return CB_ERROR(CB_ERR_IO, "cannot create output '%s' (is its directory writable?)", path);
  }
  *out = h;
  return CB_OK;
}

int h5io_commit(h5file **ph) {
  h5file *h = *ph;
  *ph = NULL;
  herr_t e = H5Fclose(h->file);
  int ok = e >= 0, renamed = 1;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, h->comm);
  if (h->rank == 0) {
    if (ok)
      renamed = rename(h->tmp, h->path) == 0;
    else
      unlink(h->tmp);
  }
  renamed = bcast_int(h->comm, renamed);
  char path[4096];
  snprintf(path, sizeof path, "%s", h->path);
  free(h);
  CB_CHECK(ok, CB_ERR_IO, "cannot finish writing '%s'", path);
  CB_CHECK(renamed, CB_ERR_IO, "cannot rename the temporary file to '%s'", path);
  return CB_OK;
}

void h5io_abort(h5file **ph) {
  if (!ph || !*ph) return;
  h5file *h = *ph;
  *ph = NULL;
  H5Fclose(h->file);
  MPI_Barrier(h->comm);
  if (h->rank == 0 && h->writing) unlink(h->tmp);
  free(h);
}

int h5io_open(MPI_Comm comm, const char *path, h5file **out) {
  *out = NULL;
  quiet_hdf5();
  int rank;
  MPI_Comm_rank(comm, &rank);
  CB_CHECK(path && path[0], CB_ERR_INPUT, "no input file given");
  int readable = rank == 0 ? access(path, R_OK) == 0 : 0;
  readable = bcast_int(comm, readable);
  CB_CHECK(readable, CB_ERR_IO, "input '%s' does not exist or is not readable", path);
  int is_h5 = rank == 0 ? H5Fis_hdf5(path) > 0 : 0;
  is_h5 = bcast_int(comm, is_h5);
  CB_CHECK(is_h5, CB_ERR_INPUT, "input '%s' is not an HDF5 file (corrupt or wrong format)", path);
  h5file *h;
  CB_CALLOC(h, 1);
  h->comm = comm;
  MPI_Comm_rank(comm, &h->rank);
  MPI_Comm_size(comm, &h->size);
  snprintf(h->path, sizeof h->path, "%s", path);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  h->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  int ok = h->file >= 0;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm);
  if (!ok) {
    if (h->file >= 0) H5Fclose(h->file);
    free(h);
    return CB_ERROR(CB_ERR_INPUT, "cannot open '%s' as HDF5 (corrupt?)", path);
  }
  *out = h;
  return CB_OK;
}

void h5io_close(h5file **ph) {
  if (!ph || !*ph) return;
  if ((*ph)->writing) {
    h5io_abort(ph);
    return;
  }
  H5Fclose((*ph)->file);
  free(*ph);
  *ph = NULL;
}

bool h5io_has(h5file *h, const char *name) {
  /* check each component of the path so missing groups are not an error */
  char part[1024];
  size_t n = strlen(name);
  for (size_t i = 1; i <= n; i++) {
    if (name[i] == '/' || name[i] == '\0') {
      if (i >= sizeof part) return false;
      memcpy(part, name, i);
      part[i] = '\0';
      if (!strcmp(part, "/")) continue;
      if (H5Lexists(h->file, part, H5P_DEFAULT) <= 0) return false;
    }
  }
  return true;
}

/* Link creation property list that makes intermediate groups. */
static hid_t lcpl_groups(void) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  return lcpl;
}

static hid_t xfer_collective(void) {
  hid_t x = H5Pcreate(H5P_DATASET_XFER);
  H5Pset_dxpl_mpio(x, H5FD_MPIO_COLLECTIVE);
  return x;
}

/* ---------------------------------------------------------------- attributes */

static int attr_write(h5file *h, const char *obj, const char *name, hid_t type, const void *v) {
  hid_t o = H5Oopen(h->file, obj, H5P_DEFAULT);
  CB_CHECK(o >= 0, CB_ERR_IO, "'%s': no object '%s' for attribute '%s'", h->path, obj, name);
  if (H5Aexists(o, name) > 0) H5Adelete(o, name);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(o, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = a >= 0 ? H5Awrite(a, type, v) : -1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(space);
  H5Oclose(o);
  CB_CHECK(e >= 0, CB_ERR_IO, "'%s': cannot write attribute '%s' of '%s'", h->path, name, obj);
  return CB_OK;
}

int h5io_attr_write_double(h5file *h, const char *obj, const char *name, double v) {
  return attr_write(h, obj, name, H5T_NATIVE_DOUBLE, &v);
}

int h5io_attr_write_long(h5file *h, const char *obj, const char *name, long v) {
  return attr_write(h, obj, name, H5T_NATIVE_LONG, &v);
}

int h5io_attr_write_string(h5file *h, const char *obj, const char *name, const char *s) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(s) + 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  int st = attr_write(h, obj, name, t, s);
  H5Tclose(t);
  return st;
}

bool h5io_attr_exists(h5file *h, const char *obj, const char *name) {
  if (strcmp(obj, "/") && !h5io_has(h, obj)) return false;
  hid_t o = H5Oopen(h->file, obj, H5P_DEFAULT);
  if (o < 0) return false;
  bool e = H5Aexists(o, name) > 0;
  H5Oclose(o);
  return e;
}

static int attr_open(h5file *h, const char *obj, const char *name, hid_t *o, hid_t *a) {
  CB_CHECK(h5io_attr_exists(h, obj, name), CB_ERR_INPUT, "'%s': attribute '%s' missing on '%s'",
           h->path, name, obj);
  *o = H5Oopen(h->file, obj, H5P_DEFAULT);
  *a = H5Aopen(*o, name, H5P_DEFAULT);
  return CB_OK;
}

static int attr_read_num(h5file *h, const char *obj, const char *name, hid_t mem, void *v) {
  hid_t o = H5I_INVALID_HID, a = H5I_INVALID_HID;
  CB_CALL(attr_open(h, obj, name, &o, &a));
  hid_t space = H5Aget_space(a);
  hssize_t npts = H5Sget_simple_extent_npoints(space);
  hid_t ft = H5Aget_type(a);
  H5T_class_t cls = H5Tget_class(ft);
  herr_t e = -1;
  if (npts == 1 && (cls == H5T_INTEGER || cls == H5T_FLOAT)) e = H5Aread(a, mem, v);
  H5Tclose(ft);
  H5Sclose(space);
  H5Aclose(a);
  H5Oclose(o);
  CB_CHECK(e >= 0, CB_ERR_INPUT, "'%s': attribute '%s' of '%s' is not a single number", h->path,
           name, obj);
  return CB_OK;
}

int h5io_attr_read_double(h5file *h, const char *obj, const char *name, double *v) {
  CB_CALL(attr_read_num(h, obj, name, H5T_NATIVE_DOUBLE, v));
  CB_CHECK(isfinite(*v), CB_ERR_INPUT, "'%s': attribute '%s' is not finite", h->path, name);
  return CB_OK;
}

int h5io_attr_read_long(h5file *h, const char *obj, const char *name, long *v) {
  return attr_read_num(h, obj, name, H5T_NATIVE_LONG, v);
}

int h5io_attr_read_string(h5file *h, const char *obj, const char *name, char *buf, size_t n) {
  hid_t o = H5I_INVALID_HID, a = H5I_INVALID_HID;
  CB_CALL(attr_open(h, obj, name, &o, &a));
  hid_t ft = H5Aget_type(a);
  herr_t e = -1;
  if (H5Tget_class(ft) == H5T_STRING) {
    if (H5Tis_variable_str(ft) > 0) {
      char *s = NULL;
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      H5Tset_cset(mt, H5Tget_cset(ft)); /* h5py writes UTF-8 */
      e = H5Aread(a, mt, &s);
      if (e >= 0 && s) {
        snprintf(buf, n, "%s", s);
        H5free_memory(s);
      }
      H5Tclose(mt);
    } else {
      size_t sz = H5Tget_size(ft);
      char *s = calloc(sz + 1, 1);
      if (s) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz + 1);
        H5Tset_cset(mt, H5Tget_cset(ft));
        e = H5Aread(a, mt, s);
        H5Tclose(mt);
        snprintf(buf, n, "%s", s);
        free(s);
      }
    }
  }
  H5Tclose(ft);
  H5Aclose(a);
  H5Oclose(o);
  CB_CHECK(e >= 0, CB_ERR_INPUT, "'%s': attribute '%s' of '%s' is not a string", h->path, name,
           obj);
  return CB_OK;
}

int h5io_write_provenance(h5file *h, const options *o) {
  CB_CALL(h5io_attr_write_string(h, "/", "code_version", version_string()));
  CB_CALL(h5io_attr_write_string(h, "/", "command", options_command(o)));
  CB_CALL(h5io_attr_write_string(h, "/", "options", options_record(o)));
  CB_CALL(h5io_attr_write_long(h, "/", "n_ranks", h->size));
  return CB_OK;
}

int h5io_write_grid_attrs(h5file *h, const field *f) {
  CB_CALL(h5io_attr_write_double(h, "/", "box_size", f->L));
  CB_CALL(h5io_attr_write_long(h, "/", "n_grid", (long)f->n));
  return CB_OK;
}

/* ---------------------------------------------------------------- fields */

/* create_f64: the float64 dataset name (its groups made on the way) with file space fs; on
 * failure fs is closed and the error names the file and the dataset. Collective. */
static int create_f64(h5file *h, const char *name, hid_t fs, hid_t *d) {
  hid_t lcpl = lcpl_groups();
  *d = H5Dcreate2(h->file, name, H5T_IEEE_F64LE, fs, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  if (*d < 0) {
    H5Sclose(fs);
    return CB_ERROR(CB_ERR_IO, "'%s': cannot create dataset '%s'", h->path, name);
  }
  return CB_OK;
}

/* slab_transfer: this rank's slab of the field (its local_n0 planes from local_0_start) to or
 * from the 3-D dataset d whose file space is fs (selected here), in one collective call; a rank
 * with no planes takes part with empty selections. Collective. */
static herr_t slab_transfer(hid_t d, hid_t fs, const field *f, double *local, bool write) {
  hsize_t start[3] = {(hsize_t)f->local_0_start, 0, 0};
  hsize_t count[3] = {(hsize_t)f->local_n0, (hsize_t)f->n, (hsize_t)f->n};
  hid_t ms = H5Screate_simple(3, count, NULL);
  if (f->local_n0 > 0) {
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
  } else {
    H5Sselect_none(fs);
    H5Sselect_none(ms);
  }
  hid_t x = xfer_collective();
  herr_t e = write ? H5Dwrite(d, H5T_NATIVE_DOUBLE, ms, fs, x, local)
                   : H5Dread(d, H5T_NATIVE_DOUBLE, ms, fs, x, local);
  H5Pclose(x);
  H5Sclose(ms);
  return e;
}

int h5io_write_field(h5file *h, const char *name, const field *f, const double *local) {
  hsize_t dims[3] = {(hsize_t)f->n, (hsize_t)f->n, (hsize_t)f->n};
  hid_t fs = H5Screate_simple(3, dims, NULL);
  hid_t d;
  CB_CALL(create_f64(h, name, fs, &d));
  herr_t e = slab_transfer(d, fs, f, (double *)local, true);
  H5Sclose(fs);
  H5Dclose(d);
  CB_CHECK(e >= 0, CB_ERR_IO, "'%s': cannot write dataset '%s'", h->path, name);
  return CB_OK;
}

int h5io_read_field(h5file *h, const char *name, const field *f, double *local) {
  CB_CHECK(h5io_has(h, name), CB_ERR_INPUT, "'%s': no dataset '%s'", h->path, name);
  hid_t d = H5Dopen2(h->file, name, H5P_DEFAULT);
  CB_CHECK(d >= 0, CB_ERR_INPUT, "'%s': '%s' is not a dataset", h->path, name);
  hid_t fs = H5Dget_space(d);
  hsize_t dims[3] = {0, 0, 0};
  int nd = H5Sget_simple_extent_ndims(fs);
  if (nd == 3) H5Sget_simple_extent_dims(fs, dims, NULL);
  hid_t ft = H5Dget_type(d);
  bool numeric = H5Tget_class(ft) == H5T_FLOAT || H5Tget_class(ft) == H5T_INTEGER;
  H5Tclose(ft);
  hsize_t n = (hsize_t)f->n;
  if (nd != 3 || dims[0] != n || dims[1] != n || dims[2] != n || !numeric) {
    H5Sclose(fs);
    H5Dclose(d);
    if (nd != 3 || !numeric)
      return CB_ERROR(CB_ERR_INPUT, "'%s': dataset '%s' is not a 3-D numeric field", h->path, name);
    return CB_ERROR(CB_ERR_INPUT, "'%s': dataset '%s' has shape %llux%llux%llu, expected %td^3",
                    h->path, name, (unsigned long long)dims[0], (unsigned long long)dims[1],
                    (unsigned long long)dims[2], f->n);
  }
  herr_t e = slab_transfer(d, fs, f, local, false);
  H5Sclose(fs);
  H5Dclose(d);
  int ok = e >= 0;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, h->comm);
  CB_CHECK(ok, CB_ERR_INPUT, "'%s': cannot read dataset '%s' (corrupt?)", h->path, name);
  long bad = -1;
  for (ptrdiff_t i = 0; i < f->n_real_local; i++)
    if (!isfinite(local[i])) {
      bad = (long)(f->local_0_start * f->n * f->n + i);
      break;
    }
  long first_bad = bad < 0 ? -1 : bad;
  long all = -1;
  long mine = first_bad < 0 ? (long)9e18 : first_bad;
  MPI_Allreduce(&mine, &all, 1, MPI_LONG, MPI_MIN, h->comm);
  if (all != (long)9e18) {
    long nn = (long)f->n;
    return CB_ERROR(CB_ERR_INPUT,
                    "'%s': dataset '%s' has a NaN or infinite value at voxel (%ld,%ld,%ld)",
                    h->path, name, all / (nn * nn), (all / nn) % nn, all % nn);
  }
  return CB_OK;
}

int h5io_read_field_file(MPI_Comm comm, const char *path, const char *name, ptrdiff_t min_planes,
                         field **f, double **data) {
  *f = NULL;
  *data = NULL;
  h5file *h = NULL;
  CB_CALL(h5io_open(comm, path, &h));
  double L = 0;
  long n = 0;
  int st = h5io_attr_read_double(h, "/", "box_size", &L);
  if (!st) st = h5io_attr_read_long(h, "/", "n_grid", &n);
  if (!st) st = field_create(comm, (ptrdiff_t)n, L, min_planes, f);
  if (!st) {
    *data = field_alloc_real(*f);
    if (!*data) st = CB_ERROR(CB_ERR_MEM, "out of memory for the field of '%s'", path);
  }
  if (!st) st = h5io_read_field(h, name, *f, *data);
  h5io_close(&h);
  if (st) {
    fftw_free(*data);
    *data = NULL;
    field_destroy(f);
    status_trace(__FILE__, __LINE__, __func__);
  }
  return st;
}

/* ---------------------------------------------------------------- tables */

int h5io_write_rows(h5file *h, const char *name, size_t ncols, size_t nlocal, const double *rows) {
  unsigned long long mine = nlocal, offset = 0, total = 0;
  MPI_Exscan(&mine, &offset, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, h->comm);
  if (h->rank == 0) offset = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, h->comm);
  int nd = ncols == 0 ? 1 : 2;
  size_t w = ncols == 0 ? 1 : ncols;
  hsize_t dims[2] = {(hsize_t)total, (hsize_t)w};
  hid_t fs = H5Screate_simple(nd, dims, NULL);
  hid_t d;
  CB_CALL(create_f64(h, name, fs, &d));
  hsize_t start[2] = {(hsize_t)offset, 0}, count[2] = {(hsize_t)nlocal, (hsize_t)w};
  hid_t ms = H5Screate_simple(nd, count, NULL);
  if (nlocal > 0) {
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
  } else {
    H5Sselect_none(fs);
    H5Sselect_none(ms);
  }
  hid_t x = xfer_collective();
  double dummy = 0;
  herr_t e = H5Dwrite(d, H5T_NATIVE_DOUBLE, ms, fs, x, nlocal ? rows : &dummy);
  H5Pclose(x);
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  CB_CHECK(e >= 0, CB_ERR_IO, "'%s': cannot write dataset '%s'", h->path, name);
  return CB_OK;
}

int h5io_read_rows_all(h5file *h, const char *name, size_t *ncols, size_t *nrows, double **rows) {
  *rows = NULL;
  CB_CHECK(h5io_has(h, name), CB_ERR_INPUT, "'%s': no dataset '%s'", h->path, name);
  hid_t d = H5Dopen2(h->file, name, H5P_DEFAULT);
  CB_CHECK(d >= 0, CB_ERR_INPUT, "'%s': '%s' is not a dataset", h->path, name);
  hid_t fs = H5Dget_space(d);
  int nd = H5Sget_simple_extent_ndims(fs);
  hsize_t dims[2] = {0, 1};
  if (nd == 1 || nd == 2) H5Sget_simple_extent_dims(fs, dims, NULL);
  H5Sclose(fs);
  hid_t ft = H5Dget_type(d);
  bool numeric = H5Tget_class(ft) == H5T_FLOAT || H5Tget_class(ft) == H5T_INTEGER;
  H5Tclose(ft);
  if (!(nd == 1 || nd == 2) || !numeric) {
    H5Dclose(d);
    return CB_ERROR(CB_ERR_INPUT, "'%s': dataset '%s' is not a 1-D or 2-D numeric table", h->path,
                    name);
  }
  *nrows = (size_t)dims[0];
  *ncols = nd == 1 ? 0 : (size_t)dims[1];
  size_t count = (size_t)dims[0] * (size_t)(nd == 1 ? 1 : dims[1]);
  double *buf = malloc((count ? count : 1) * sizeof *buf);
  if (!buf) {
    H5Dclose(d);
    return CB_ERROR(CB_ERR_MEM, "out of memory reading '%s' from '%s'", name, h->path);
  }
  herr_t e = count ? H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
  H5Dclose(d);
  if (e < 0) {
    free(buf);
    return CB_ERROR(CB_ERR_INPUT, "'%s': cannot read dataset '%s' (corrupt?)", h->path, name);
  }
  *rows = buf;
  return CB_OK;
}

int h5io_write_array(h5file *h, const char *name, int ndim, const size_t *dims,
                     const double *data) {
  CB_CHECK(ndim >= 1 && ndim <= 4, CB_ERR_INTERNAL, "array '%s' has %d dimensions", name, ndim);
  hsize_t hd[4];
  for (int i = 0; i < ndim; i++) hd[i] = (hsize_t)dims[i];
  hid_t fs = H5Screate_simple(ndim, hd, NULL);
  hid_t d;
  CB_CALL(create_f64(h, name, fs, &d));
  hid_t ms = H5Scopy(fs);
  if (h->rank != 0) {
    H5Sselect_none(fs);
    H5Sselect_none(ms);
  }
  hid_t x = xfer_collective();
  herr_t e = H5Dwrite(d, H5T_NATIVE_DOUBLE, ms, fs, x, data);
  H5Pclose(x);
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  CB_CHECK(e >= 0, CB_ERR_IO, "'%s': cannot write dataset '%s'", h->path, name);
  return CB_OK;
}
