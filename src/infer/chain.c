/* chain: the chain file in ArviZ's InferenceData layout, NetCDF-4 flavoured HDF5
 * (include/cerberus/chain.h; MODEL.md section 8 for what is sampled).
 *
 * NetCDF-4 keeps a dimension as an HDF5 dimension scale: a dataset marked with
 * H5DSset_scale, whose NAME is the dimension's name when the dimension has a coordinate
 * variable (here every dimension has one: chain and draw hold 0, 1, 2, ..., weight the
 * weights' names as variable-length strings, density_bin the bins' centres, mass the masses),
 * with the attribute _Netcdf4Dimid (the dimension's id, in order of creation). Every variable
 * has each of its axes attached to the scale of its dimension (H5DSattach_scale), which is how
 * netCDF and h5netcdf find the dimension names. draw is unlimited: its scale and every
 * variable are chunked along it and extended at each flush. Unwritten values read as NaN (the
 * datasets' fill value), which chain_read uses to find where a running chain stands.
 *
 * Only rank 0 touches the file, through HDF5's default (serial) driver: the samples are the
 * same on every rank. Its status is broadcast so that every rank returns the same code. The
 * file is closed between flushes so that a reader (plot_chain.py, cerberus diagnose, xarray)
 * sees a complete file while the job runs. */
#include "cerberus/chain.h"

#include "cerberus/log.h"
#include "cerberus/status.h"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *stat_names[CHAIN_N_STATS] = {"lp",           "log_likelihood", "acceptance_rate",
                                                "step_size",    "n_steps",        "energy",
                                                "energy_error", "diverging",      "wall_time"};

const char *chain_stat_name(int s) {
  return s >= 0 && s < CHAIN_N_STATS ? stat_names[s] : "?";
}

size_t chain_record_size(const chain_layout *l) {
  return l->dim + (size_t)l->n_bins * (size_t)l->n_masses + CHAIN_N_STATS;
}

enum { N_PENDING_ATTRS = 64 };

typedef struct pending_attr {
  char name[64];
  int kind; /* 0 string, 1 long, 2 doubles */
  char *s;
  long l;
  double *v;
  size_t n;
} pending_attr;

struct chain_file {
  MPI_Comm comm;
  int rank;
  char path[4096];
  chain_layout l;
  size_t rec;
  long written[2]; /* draws in the file, per phase */
  long n_buf[2];   /* buffered draws, per phase */
  size_t cap[2];   /* buffered draws the buffer holds */
  double *buf[2];  /* [n_buf][n_chains][rec] */
  pending_attr attrs[N_PENDING_ATTRS];
  int n_attrs;
};

/* ------------------------------------------------------------------ rank-0 status sharing */

static int shared_status(MPI_Comm comm, int st) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  MPI_Bcast(&st, 1, MPI_INT, 0, comm);
  if (st && rank != 0) return CB_ERROR(st, "chain file error (reported by rank 0)");
  return st;
}

/* ------------------------------------------------------------------ layout */

static int attr_int(hid_t obj, const char *name, int v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_NATIVE_INT, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT, &v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return e < 0 ? -1 : 0;
}

static int attr_str(hid_t obj, const char *name, const char *s) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(s) ? strlen(s) : 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  hid_t sp = H5Screate(H5S_SCALAR);
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = a < 0 ? -1 : H5Awrite(a, t, s);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  return e < 0 ? -1 : 0;
}

static int attr_doubles(hid_t obj, const char *name, size_t n, const double *v) {
  hsize_t dn = n;
  hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dn, NULL);
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  hid_t a = H5Acreate2(obj, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_DOUBLE, v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return e < 0 ? -1 : 0;
}

static int attr_long(hid_t obj, const char *name, long v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  hid_t a = H5Acreate2(obj, name, H5T_NATIVE_LONG, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_LONG, &v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return e < 0 ? -1 : 0;
}

/* A coordinate variable that is also the dimension scale `name` of length n (unlimited:
 * extendible, chunked). data may be NULL (unlimited draw: filled at flush). */
static hid_t make_scale(hid_t g, const char *name, hid_t type, hsize_t n, bool unlimited, int dimid,
                        const void *data) {
  hsize_t maxd = unlimited ? H5S_UNLIMITED : n, chunk = 256;
  hid_t sp = H5Screate_simple(1, &n, &maxd);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (unlimited) H5Pset_chunk(dcpl, 1, &chunk);
  hid_t d = H5Dcreate2(g, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(sp);
  if (d < 0) return -1;
  if ((data && n > 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) ||
      H5DSset_scale(d, name) < 0 || attr_int(d, "_Netcdf4Dimid", dimid) < 0) {
    H5Dclose(d);
    return -1;
  }
  return d;
}

/* A variable (chain, draw, ...) of type type with the scales attached; draw starts at 0. */
static int make_var(hid_t g, const char *name, hid_t type, int ndim, const hid_t *scales,
                    const hsize_t *dims, const char *long_name) {
  hsize_t cur[4], maxd[4], chunk[4];
  for (int i = 0; i < ndim; i++) {
    cur[i] = i == 1 ? 0 : dims[i];
    maxd[i] = i == 1 ? H5S_UNLIMITED : dims[i];
    chunk[i] = i == 0 ? 1 : i == 1 ? 64 : (dims[i] ? dims[i] : 1);
  }
  hid_t sp = H5Screate_simple(ndim, cur, maxd);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, ndim, chunk);
  if (H5Tequal(type, H5T_NATIVE_DOUBLE) > 0) {
    double nan = NAN;
    H5Pset_fill_value(dcpl, type, &nan);
  } else if (H5Tequal(type, H5T_NATIVE_INT8) > 0) {
    signed char m = -1;
    H5Pset_fill_value(dcpl, type, &m);
  } else {
    long long m = -1;
    H5Pset_fill_value(dcpl, type, &m);
  }
  hid_t d = H5Dcreate2(g, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(sp);
  if (d < 0) return -1;
  int bad = 0;
  for (int i = 0; i < ndim; i++) bad |= H5DSattach_scale(d, scales[i], (unsigned)i) < 0;
  if (long_name) bad |= attr_str(d, "long_name", long_name);
  if (H5Tequal(type, H5T_NATIVE_INT8) > 0) bad |= attr_str(d, "dtype", "bool");
  H5Dclose(d);
  return bad ? -1 : 0;
}

/* One group: posterior variables (part 0), sample statistics (part 1), or both (warmup). */
static int make_group(hid_t file, const char *gname, bool post, bool stats, const chain_layout *l,
                      int *next_dimid) {
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  hid_t g = H5Gcreate2(file, gname, H5P_DEFAULT, gcpl, H5P_DEFAULT);
  H5Pclose(gcpl);
  if (g < 0) return -1;
  int bad = 0, dimid = *next_dimid;
  long long *ci = calloc((size_t)l->n_chains, sizeof *ci);
  if (!ci) {
    H5Gclose(g);
    return -1;
  }
  for (int c = 0; c < l->n_chains; c++) ci[c] = c;
  hid_t sc = make_scale(g, "chain", H5T_NATIVE_LLONG, (hsize_t)l->n_chains, false, dimid++, ci);
  free(ci);
  hid_t sd = make_scale(g, "draw", H5T_NATIVE_LLONG, 0, true, dimid++, NULL);
  hid_t sw = -1, sb = -1, sm = -1;
  bad |= sc < 0 || sd < 0;
  if (post && !bad) {
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    const char **nm = calloc(l->dim ? l->dim : 1, sizeof *nm);
    for (size_t i = 0; nm && i < l->dim; i++) nm[i] = l->names[i];
    sw = nm ? make_scale(g, "weight", st, (hsize_t)l->dim, false, dimid++, nm) : -1;
    free(nm);
    H5Tclose(st);
    double centre[64];
    int nb = l->n_bins < 64 ? l->n_bins : 64;
    for (int b = 0; b < nb; b++) centre[b] = 0.5 * (l->bin_edges[b] + l->bin_edges[b + 1]);
    sb = make_scale(g, "density_bin", H5T_NATIVE_DOUBLE, (hsize_t)nb, false, dimid++, centre);
    sm = make_scale(g, "mass", H5T_NATIVE_DOUBLE, (hsize_t)l->n_masses, false, dimid++, l->masses);
    bad |= sw < 0 || sb < 0 || sm < 0;
    if (!bad) {
      bad |= attr_doubles(sb, "delta_edges", (size_t)nb + 1, l->bin_edges);
      bad |=
          attr_str(sb, "long_name", "centre of the bin in delta (equal widths in ln(1+delta+eps))");
      bad |= attr_str(sm, "units", "M_sun/h");
      hid_t s3[3] = {sc, sd, sw}, s4[4] = {sc, sd, sb, sm};
      hsize_t d3[3] = {(hsize_t)l->n_chains, 0, l->dim};
      hsize_t d4[4] = {(hsize_t)l->n_chains, 0, (hsize_t)nb, (hsize_t)l->n_masses};
      bad |= make_var(g, "weights", H5T_NATIVE_DOUBLE, 3, s3, d3, "weights of the model");
      bad |= make_var(g, "mass_function", H5T_NATIVE_DOUBLE, 4, s4, d4,
                      "dn/dlnM per (Mpc/h)^3, mean over the voxels of the density bin");
    }
  }
  if (stats && !bad) {
    hid_t s2[2] = {sc, sd};
    hsize_t d2[2] = {(hsize_t)l->n_chains, 0};
    for (int s = 0; s < CHAIN_N_STATS && !bad; s++) {
      hid_t t = s == CHAIN_N_STEPS     ? H5T_NATIVE_LLONG
                : s == CHAIN_DIVERGING ? H5T_NATIVE_INT8
                                       : H5T_NATIVE_DOUBLE;
      bad |= make_var(g, stat_names[s], t, 2, s2, d2, NULL);
    }
  }
  hid_t all[5] = {sc, sd, sw, sb, sm};
  for (int i = 0; i < 5; i++)
    if (all[i] >= 0) H5Dclose(all[i]);
  H5Gclose(g);
  *next_dimid = dimid;
  return bad ? -1 : 0;
}

static int layout_write(const char *path, const chain_layout *l) {
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  H5Pset_attr_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
  H5Pclose(fcpl);
  if (f < 0) return CB_ERROR(CB_ERR_IO, "cannot create the chain file '%s'", path);
  /* netCDF-4 numbers dimensions across the whole file, groups in creation order */
  int dimid = 0;
  int bad = make_group(f, "posterior", true, false, l, &dimid);
  bad |= make_group(f, "sample_stats", false, true, l, &dimid);
  bad |= make_group(f, "warmup", true, true, l, &dimid);
  bad |= attr_long(f, "n_chains", l->n_chains);
  bad |= attr_long(f, "n_weights", (long)l->dim);
  bad |= attr_str(f, "inference_library", "cerberus");
  H5Fclose(f);
  if (bad) return CB_ERROR(CB_ERR_IO, "cannot write the layout of the chain file '%s'", path);
  return CB_OK;
}

/* ------------------------------------------------------------------ create, reopen, close */

static int cf_alloc(MPI_Comm comm, const char *path, const chain_layout *l, chain_file **out) {
  CB_CHECK(l->n_chains >= 1 && l->dim >= 1, CB_ERR_INTERNAL, "empty chain layout");
  chain_file *cf = calloc(1, sizeof *cf);
  CB_CHECK(cf, CB_ERR_MEM, "out of memory for the chain file");
  cf->comm = comm;
  MPI_Comm_rank(comm, &cf->rank);
  snprintf(cf->path, sizeof cf->path, "%s", path);
  cf->l = *l;
  cf->l.names = NULL;
  cf->l.bin_edges = NULL;
  cf->l.masses = NULL;
  cf->rec = chain_record_size(l);
  *out = cf;
  return CB_OK;
}

int chain_create(MPI_Comm comm, const char *path, bool overwrite, const chain_layout *l,
                 chain_file **out) {
  *out = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  int rank, st = CB_OK;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    if (!overwrite && access(path, F_OK) == 0) {
      st = CB_ERROR(CB_ERR_IO, "output '%s' exists (use -overwrite to replace it)", path);
    } else {
      char tmp[4200];
      snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
      st = layout_write(tmp, l);
      if (!st && rename(tmp, path) != 0)
        st = CB_ERROR(CB_ERR_IO, "cannot rename '%s' to '%s'", tmp, path);
      if (st) remove(tmp);
    }
  }
  CB_CALL(shared_status(comm, st));
  CB_CALL(cf_alloc(comm, path, l, out));
  return CB_OK;
}

/* Set the draw extent of every dataset of a group (shrink or grow). */
static int group_extent(hid_t file, const char *gname, long n, bool post, bool stats) {
  hid_t g = H5Gopen2(file, gname, H5P_DEFAULT);
  if (g < 0) return -1;
  int bad = 0;
  const char *names[2 + CHAIN_N_STATS + 1];
  int k = 0;
  names[k++] = "draw";
  if (post) {
    names[k++] = "weights";
    names[k++] = "mass_function";
  }
  if (stats)
    for (int s = 0; s < CHAIN_N_STATS; s++) names[k++] = stat_names[s];
  for (int i = 0; i < k && !bad; i++) {
    hid_t d = H5Dopen2(g, names[i], H5P_DEFAULT);
    if (d < 0) {
      bad = 1;
      break;
    }
    hid_t sp = H5Dget_space(d);
    hsize_t dims[4];
    int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (nd == 1)
      dims[0] = (hsize_t)n;
    else
      dims[1] = (hsize_t)n;
    bad |= H5Dset_extent(d, dims) < 0;
    H5Dclose(d);
  }
  H5Gclose(g);
  return bad ? -1 : 0;
}

/* open_retry: the chain file opened with flags, tried up to tries times 50 ms apart while it
 * exists: a running job holds it for a moment at each flush, and a reader (cerberus diagnose,
 * plot_chain.py) may hold it too (HDF5 locks a file open for writing). Returns the id, or < 0. */
static hid_t open_retry(const char *path, unsigned flags, int tries) {
  hid_t f = -1;
  for (int t = 0; t < tries && f < 0 && access(path, F_OK) == 0; t++) {
    if (t) nanosleep(&(struct timespec){0, 50000000}, NULL);
    f = H5Fopen(path, flags, H5P_DEFAULT);
  }
  return f;
}

int chain_reopen(MPI_Comm comm, const char *path, const chain_layout *l, long n_warmup,
                 long n_samples, chain_file **out) {
  *out = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  int rank, st = CB_OK;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    hid_t f = open_retry(path, H5F_ACC_RDWR, 20);
    if (f < 0) {
      st = CB_ERROR(CB_ERR_IO, "cannot open the chain file '%s' to continue it", path);
    } else {
      long nc = -1, nw = -1;
      hid_t a = H5Aopen(f, "n_chains", H5P_DEFAULT);
      if (a >= 0) {
        H5Aread(a, H5T_NATIVE_LONG, &nc);
        H5Aclose(a);
      }
      a = H5Aopen(f, "n_weights", H5P_DEFAULT);
      if (a >= 0) {
        H5Aread(a, H5T_NATIVE_LONG, &nw);
        H5Aclose(a);
      }
      if (nc != l->n_chains || nw != (long)l->dim)
        st = CB_ERROR(CB_ERR_INPUT,
                      "chain file '%s' holds %ld chains of %ld weights, but the checkpoint has %d "
                      "of %zu",
                      path, nc, nw, l->n_chains, l->dim);
      if (!st && (group_extent(f, "warmup", n_warmup, true, true) ||
                  group_extent(f, "posterior", n_samples, true, false) ||
                  group_extent(f, "sample_stats", n_samples, false, true)))
        st = CB_ERROR(CB_ERR_IO, "cannot cut the chain file '%s' back to the checkpoint", path);
      H5Fclose(f);
    }
  }
  CB_CALL(shared_status(comm, st));
  CB_CALL(cf_alloc(comm, path, l, out));
  (*out)->written[CHAIN_WARMUP] = n_warmup;
  (*out)->written[CHAIN_SAMPLING] = n_samples;
  return CB_OK;
}

int chain_close(chain_file **pcf) {
  if (!pcf || !*pcf) return CB_OK;
  chain_file *cf = *pcf;
  int st = chain_sync(cf);
  for (int p = 0; p < 2; p++) free(cf->buf[p]);
  for (int i = 0; i < cf->n_attrs; i++) {
    free(cf->attrs[i].s);
    free(cf->attrs[i].v);
  }
  free(cf);
  *pcf = NULL;
  CB_CALL(st);
  return CB_OK;
}

long chain_draws(const chain_file *cf, int phase) {
  return cf->written[phase] + cf->n_buf[phase];
}

int chain_append(chain_file *cf, int phase, const double *rec) {
  CB_CHECK(phase == CHAIN_WARMUP || phase == CHAIN_SAMPLING, CB_ERR_INTERNAL, "bad phase %d",
           phase);
  if (cf->rank != 0) {
    cf->n_buf[phase]++;
    return CB_OK;
  }
  const size_t per = (size_t)cf->l.n_chains * cf->rec;
  if ((size_t)cf->n_buf[phase] == cf->cap[phase]) {
    size_t cap = cf->cap[phase] ? 2 * cf->cap[phase] : 16;
    double *b = realloc(cf->buf[phase], cap * per * sizeof *b);
    CB_CHECK(b, CB_ERR_MEM, "out of memory buffering the chain");
    cf->buf[phase] = b;
    cf->cap[phase] = cap;
  }
  memcpy(cf->buf[phase] + (size_t)cf->n_buf[phase] * per, rec, per * sizeof *rec);
  cf->n_buf[phase]++;
  return CB_OK;
}

/* Write draws [w0, w0 + nb) of every chain of one variable: columns j0 .. j0 + ncol of each
 * buffered record, converted to the dataset's type (double, int64 or int8). */
static int write_var(hid_t g, const char *name, const chain_file *cf, const double *buf, long w0,
                     long nb, size_t j0, size_t ncol, hid_t memtype) {
  hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
  if (d < 0) return -1;
  const int K = cf->l.n_chains;
  const size_t per = (size_t)K * cf->rec, n = (size_t)K * (size_t)nb * ncol;
  double *x = malloc((n ? n : 1) * sizeof *x);
  long long *xl = malloc((n ? n : 1) * sizeof *xl);
  signed char *xb = malloc(n ? n : 1);
  int bad = !x || !xl || !xb;
  for (int c = 0; !bad && c < K; c++) /* dataset order: chain, draw, then the columns */
    for (long t = 0; t < nb; t++)
      for (size_t j = 0; j < ncol; j++) {
        size_t o = ((size_t)c * (size_t)nb + (size_t)t) * ncol + j;
        x[o] = buf[(size_t)t * per + (size_t)c * cf->rec + j0 + j];
        xl[o] = (long long)x[o];
        xb[o] = (signed char)(x[o] != 0);
      }
  hid_t fs = H5Dget_space(d);
  hsize_t dims[4], start[4] = {0, (hsize_t)w0, 0, 0}, count[4];
  int nd = H5Sget_simple_extent_dims(fs, dims, NULL);
  for (int i = 0; i < nd; i++) count[i] = dims[i];
  count[1] = (hsize_t)nb;
  hid_t ms = H5Screate_simple(nd, count, NULL);
  bad |= H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0;
  const void *src = memtype == H5T_NATIVE_LLONG  ? (const void *)xl
                    : memtype == H5T_NATIVE_INT8 ? (const void *)xb
                                                 : (const void *)x;
  if (!bad) bad |= H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, src) < 0;
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  free(x);
  free(xl);
  free(xb);
  return bad ? -1 : 0;
}

/* The draw coordinate of a group: w0 .. w0 + nb - 1. */
static int write_draw(hid_t g, long w0, long nb) {
  hid_t d = H5Dopen2(g, "draw", H5P_DEFAULT);
  if (d < 0) return -1;
  long long *v = malloc((size_t)(nb ? nb : 1) * sizeof *v);
  int bad = !v;
  for (long t = 0; !bad && t < nb; t++) v[t] = w0 + t;
  hid_t fs = H5Dget_space(d);
  hsize_t start = (hsize_t)w0, count = (hsize_t)nb;
  hid_t ms = H5Screate_simple(1, &count, NULL);
  bad |= H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0;
  if (!bad) bad |= H5Dwrite(d, H5T_NATIVE_LLONG, ms, fs, H5P_DEFAULT, v) < 0;
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  free(v);
  return bad ? -1 : 0;
}

static int flush_group(hid_t f, const char *gname, const chain_file *cf, const double *buf, long w0,
                       long nb, bool post, bool stats) {
  if (group_extent(f, gname, w0 + nb, post, stats)) return -1;
  hid_t g = H5Gopen2(f, gname, H5P_DEFAULT);
  if (g < 0) return -1;
  int bad = write_draw(g, w0, nb);
  const size_t nmf = (size_t)cf->l.n_bins * (size_t)cf->l.n_masses, d = cf->l.dim;
  if (post) {
    bad |= write_var(g, "weights", cf, buf, w0, nb, 0, d, H5T_NATIVE_DOUBLE);
    bad |= write_var(g, "mass_function", cf, buf, w0, nb, d, nmf, H5T_NATIVE_DOUBLE);
  }
  if (stats)
    for (int s = 0; s < CHAIN_N_STATS; s++)
      bad |= write_var(g, stat_names[s], cf, buf, w0, nb, d + nmf + (size_t)s, 1,
                       s == CHAIN_N_STEPS     ? H5T_NATIVE_LLONG
                       : s == CHAIN_DIVERGING ? H5T_NATIVE_INT8
                                              : H5T_NATIVE_DOUBLE);
  H5Gclose(g);
  return bad ? -1 : 0;
}

enum { FLUSH_DEFERRED = 98 }; /* the file was busy: the draws stay buffered */

static int flush_rank0(chain_file *cf, int tries) {
  if (!cf->n_buf[0] && !cf->n_buf[1] && !cf->n_attrs) return CB_OK;
  hid_t f = open_retry(cf->path, H5F_ACC_RDWR, tries);
  if (f < 0) {
    if (tries < 100) return FLUSH_DEFERRED;
    return CB_ERROR(CB_ERR_IO,
                    "cannot open the chain file '%s' to add draws (removed, or locked "
                    "by a reader?)",
                    cf->path);
  }
  int bad = 0;
  if (cf->n_buf[CHAIN_WARMUP])
    bad |= flush_group(f, "warmup", cf, cf->buf[0], cf->written[0], cf->n_buf[0], true, true);
  if (cf->n_buf[CHAIN_SAMPLING]) {
    bad |= flush_group(f, "posterior", cf, cf->buf[1], cf->written[1], cf->n_buf[1], true, false);
    bad |=
        flush_group(f, "sample_stats", cf, cf->buf[1], cf->written[1], cf->n_buf[1], false, true);
  }
  for (int i = 0; i < cf->n_attrs; i++) {
    pending_attr *a = &cf->attrs[i];
    bad |= a->kind == 0   ? attr_str(f, a->name, a->s)
           : a->kind == 1 ? attr_long(f, a->name, a->l)
                          : attr_doubles(f, a->name, a->n, a->v);
  }
  bad |= H5Fclose(f) < 0;
  if (bad) return CB_ERROR(CB_ERR_IO, "cannot write draws to the chain file '%s'", cf->path);
  return CB_OK;
}

static int flush(chain_file *cf, int tries) {
  int st = cf->rank == 0 ? flush_rank0(cf, tries) : CB_OK;
  int deferred = st == FLUSH_DEFERRED;
  MPI_Bcast(&deferred, 1, MPI_INT, 0, cf->comm);
  if (deferred) {
    log_warn("the chain file '%s' is busy (opened by a reader?): its draws stay buffered until "
             "the next write",
             cf->path);
    return CB_OK;
  }
  CB_CALL(shared_status(cf->comm, st));
  for (int p = 0; p < 2; p++) {
    cf->written[p] += cf->n_buf[p];
    cf->n_buf[p] = 0;
  }
  for (int i = 0; i < cf->n_attrs; i++) {
    free(cf->attrs[i].s);
    free(cf->attrs[i].v);
  }
  memset(cf->attrs, 0, sizeof cf->attrs);
  cf->n_attrs = 0;
  return CB_OK;
}

int chain_flush(chain_file *cf) {
  CB_CALL(flush(cf, 20));
  return CB_OK;
}

int chain_sync(chain_file *cf) {
  CB_CALL(flush(cf, 200));
  return CB_OK;
}

static pending_attr *attr_slot(chain_file *cf, const char *name) {
  for (int i = 0; i < cf->n_attrs; i++)
    if (!strcmp(cf->attrs[i].name, name)) {
      free(cf->attrs[i].s);
      free(cf->attrs[i].v);
      cf->attrs[i].s = NULL;
      cf->attrs[i].v = NULL;
      return &cf->attrs[i];
    }
  if (cf->n_attrs == N_PENDING_ATTRS) return NULL;
  pending_attr *a = &cf->attrs[cf->n_attrs++];
  snprintf(a->name, sizeof a->name, "%s", name);
  return a;
}

int chain_set_attr_string(chain_file *cf, const char *name, const char *value) {
  pending_attr *a = attr_slot(cf, name);
  CB_CHECK(a, CB_ERR_INTERNAL, "too many chain attributes");
  a->kind = 0;
  a->s = strdup(value);
  CB_CHECK(a->s, CB_ERR_MEM, "out of memory");
  return CB_OK;
}

int chain_set_attr_long(chain_file *cf, const char *name, long value) {
  pending_attr *a = attr_slot(cf, name);
  CB_CHECK(a, CB_ERR_INTERNAL, "too many chain attributes");
  a->kind = 1;
  a->l = value;
  return CB_OK;
}

int chain_set_attr_doubles(chain_file *cf, const char *name, size_t n, const double *v) {
  pending_attr *a = attr_slot(cf, name);
  CB_CHECK(a, CB_ERR_INTERNAL, "too many chain attributes");
  a->kind = 2;
  a->n = n;
  a->v = malloc((n ? n : 1) * sizeof *v);
  CB_CHECK(a->v, CB_ERR_MEM, "out of memory");
  memcpy(a->v, v, n * sizeof *v);
  return CB_OK;
}

/* ------------------------------------------------------------------ reading */

void chain_data_free(chain_data *d) {
  free(d->names);
  free(d->bin_edges);
  free(d->masses);
  free(d->weights);
  free(d->mass_function);
  free(d->stats);
  memset(d, 0, sizeof *d);
}

/* A whole dataset as doubles; dims and rank returned. */
static int read_all(hid_t g, const char *name, double **out, hsize_t *dims, int *nd) {
  hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
  if (d < 0) return -1;
  hid_t sp = H5Dget_space(d);
  *nd = H5Sget_simple_extent_dims(sp, dims, NULL);
  H5Sclose(sp);
  size_t n = 1;
  for (int i = 0; i < *nd; i++) n *= dims[i];
  *out = malloc((n ? n : 1) * sizeof **out);
  int bad = !*out || (n && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0);
  H5Dclose(d);
  return bad ? -1 : 0;
}

int chain_read(const char *path, int phase, chain_data *d) {
  memset(d, 0, sizeof *d);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = open_retry(path, H5F_ACC_RDONLY, 100);
  CB_CHECK(f >= 0, CB_ERR_IO, "cannot open the chain file '%s'", path);
  const char *gp = phase == CHAIN_WARMUP ? "warmup" : "posterior";
  const char *gs = phase == CHAIN_WARMUP ? "warmup" : "sample_stats";
  hid_t g = H5Gopen2(f, gp, H5P_DEFAULT), h = H5Gopen2(f, gs, H5P_DEFAULT);
  int st = CB_OK;
  double *w = NULL, *mf = NULL, *tmp = NULL;
  hsize_t dw[4], dm[4], ds[4];
  int nd;
  if (g < 0 || h < 0 || read_all(g, "weights", &w, dw, &nd) || nd != 3 ||
      read_all(g, "mass_function", &mf, dm, &nd) || nd != 4) {
    st = CB_ERROR(CB_ERR_INPUT, "'%s' is not a chain file (no /%s/weights and mass_function)", path,
                  gp);
    goto done;
  }
  d->n_chains = (int)dw[0];
  d->dim = dw[2];
  d->n_bins = (int)dm[2];
  d->n_masses = (int)dm[3];
  const long nt = (long)dw[1];
  const size_t nmf = (size_t)d->n_bins * (size_t)d->n_masses;
  d->stats = calloc((size_t)d->n_chains * (size_t)(nt ? nt : 1) * CHAIN_N_STATS, sizeof *d->stats);
  d->names = calloc(d->dim, sizeof *d->names);
  d->bin_edges = calloc((size_t)d->n_bins + 1, sizeof *d->bin_edges);
  d->masses = calloc((size_t)d->n_masses, sizeof *d->masses);
  if (!d->stats || !d->names || !d->bin_edges || !d->masses) {
    st = CB_ERROR(CB_ERR_MEM, "out of memory reading '%s'", path);
    goto done;
  }
  for (int s = 0; s < CHAIN_N_STATS; s++) {
    if (read_all(h, stat_names[s], &tmp, ds, &nd) || nd != 2 || ds[0] != dw[0] ||
        (long)ds[1] < nt) {
      st = CB_ERROR(CB_ERR_INPUT, "chain file '%s': /%s/%s missing or of the wrong shape", path, gs,
                    stat_names[s]);
      goto done;
    }
    for (int c = 0; c < d->n_chains; c++)
      for (long t = 0; t < nt; t++)
        d->stats[((size_t)c * (size_t)nt + (size_t)t) * CHAIN_N_STATS + (size_t)s] =
            tmp[(size_t)c * ds[1] + (size_t)t];
    free(tmp);
    tmp = NULL;
  }
  /* complete draws: lp written (not the NaN fill) in every chain */
  long n = nt;
  for (int c = 0; c < d->n_chains; c++)
    for (long t = 0; t < n; t++)
      if (isnan(d->stats[((size_t)c * (size_t)nt + (size_t)t) * CHAIN_N_STATS + CHAIN_LP]) &&
          isnan(d->stats[((size_t)c * (size_t)nt + (size_t)t) * CHAIN_N_STATS + CHAIN_WALL_TIME])) {
        n = t;
        break;
      }
  d->n_draws = n;
  /* compact every array to n draws */
  d->weights = malloc((size_t)d->n_chains * (size_t)(n ? n : 1) * d->dim * sizeof *d->weights);
  d->mass_function = malloc((size_t)d->n_chains * (size_t)(n ? n : 1) * nmf * sizeof *mf);
  double *st2 = malloc((size_t)d->n_chains * (size_t)(n ? n : 1) * CHAIN_N_STATS * sizeof *st2);
  if (!d->weights || !d->mass_function || !st2) {
    free(st2);
    st = CB_ERROR(CB_ERR_MEM, "out of memory reading '%s'", path);
    goto done;
  }
  for (int c = 0; c < d->n_chains; c++)
    for (long t = 0; t < n; t++) {
      size_t o = (size_t)c * (size_t)n + (size_t)t, i = (size_t)c * (size_t)nt + (size_t)t;
      memcpy(d->weights + o * d->dim, w + i * d->dim, d->dim * sizeof *w);
      memcpy(d->mass_function + o * nmf, mf + i * nmf, nmf * sizeof *mf);
      memcpy(st2 + o * CHAIN_N_STATS, d->stats + i * CHAIN_N_STATS, CHAIN_N_STATS * sizeof *st2);
    }
  free(d->stats);
  d->stats = st2;
  /* coordinates */
  {
    hid_t s = H5Dopen2(g, "weight", H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char **nm = calloc(d->dim, sizeof *nm);
    if (s < 0 || !nm || H5Dread(s, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, nm) < 0) {
      st = CB_ERROR(CB_ERR_INPUT, "chain file '%s': no weight names (/%s/weight)", path, gp);
    } else {
      for (size_t i = 0; i < d->dim; i++) {
        snprintf(d->names[i], sizeof d->names[i], "%s", nm[i] ? nm[i] : "?");
        free(nm[i]);
      }
    }
    free(nm);
    H5Tclose(t);
    if (s >= 0) H5Dclose(s);
    if (st) goto done;
    hid_t m = H5Dopen2(g, "mass", H5P_DEFAULT);
    if (m < 0 || H5Dread(m, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->masses) < 0)
      st = CB_ERROR(CB_ERR_INPUT, "chain file '%s': no /%s/mass", path, gp);
    if (m >= 0) H5Dclose(m);
    hid_t b = H5Dopen2(g, "density_bin", H5P_DEFAULT);
    hid_t a = b >= 0 ? H5Aopen(b, "delta_edges", H5P_DEFAULT) : -1;
    if (!st && (a < 0 || H5Aread(a, H5T_NATIVE_DOUBLE, d->bin_edges) < 0))
      st = CB_ERROR(CB_ERR_INPUT, "chain file '%s': no /%s/density_bin delta_edges", path, gp);
    if (a >= 0) H5Aclose(a);
    if (b >= 0) H5Dclose(b);
  }
done:
  free(w);
  free(mf);
  free(tmp);
  if (g >= 0) H5Gclose(g);
  if (h >= 0) H5Gclose(h);
  H5Fclose(f);
  if (st) chain_data_free(d);
  return st;
}

int chain_read_attr_string(const char *path, const char *name, char *buf, size_t n) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  buf[0] = 0;
  hid_t f = open_retry(path, H5F_ACC_RDONLY, 100);
  CB_CHECK(f >= 0, CB_ERR_IO, "cannot open the chain file '%s'", path);
  hid_t a = H5Aexists(f, name) > 0 ? H5Aopen(f, name, H5P_DEFAULT) : -1;
  if (a >= 0) {
    hid_t t = H5Aget_type(a);
    size_t sz = H5Tget_size(t);
    char *s = calloc(sz + 1, 1);
    if (s && H5Aread(a, t, s) >= 0) snprintf(buf, n, "%s", s);
    free(s);
    H5Tclose(t);
    H5Aclose(a);
  }
  H5Fclose(f);
  return CB_OK;
}
