/* field: FFTW-MPI slab decomposition and the r2c / c2r transforms (MODEL.md section 1).
 *
 * FFTW decides the slabs with fftw_mpi_local_size_3d (planes along the first axis, the same
 * for the real and the non-transposed complex layout) and needs a padded in-place buffer
 * of alloc_local complex numbers. Everything above this module sees unpadded real arrays
 * (local_n0 * n * n) and compact half-complex arrays (local_n0 * n * (n/2 + 1)): the copy in
 * and out of the padded buffer costs one pass over memory, far less than the transform, and
 * spares every other module FFTW's padding. Plans are made once (FFTW_ESTIMATE, so plans and
 * results do not depend on timing) and reused. */
#include "cerberus/field.h"

#include "cerberus/logevent.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int fftw_mpi_ready = 0;

int field_create(MPI_Comm comm, ptrdiff_t n, double L, ptrdiff_t min_planes, field **out) {
  *out = NULL;
  CB_CHECK(n >= 2, CB_ERR_INPUT, "-n_grid must be at least 2 (got %td)", n);
  CB_CHECK(n % 2 == 0, CB_ERR_INPUT, "-n_grid must be even (got %td)", n);
  CB_CHECK(n <= 65536, CB_ERR_INPUT, "-n_grid %td is too large", n);
  CB_CHECK(isfinite(L) && L > 0, CB_ERR_INPUT, "-box_size must be positive and finite (got %g)", L);
  if (min_planes < 1) min_planes = 1;
  if (!fftw_mpi_ready) {
    fftw_mpi_init();
    fftw_mpi_ready = 1;
  }
  field *f;
  CB_CALLOC(f, 1);
  f->comm = comm;
  MPI_Comm_rank(comm, &f->rank);
  MPI_Comm_size(comm, &f->size);
  f->n = n;
  f->nc = n / 2 + 1;
  f->L = L;
  ptrdiff_t tn0, t0s, tn1, t1s; /* the transposed layout's split: the same for a cube */
  const ptrdiff_t alloc_t =
      fftw_mpi_local_size_3d_transposed(n, n, f->nc, comm, &tn0, &t0s, &tn1, &t1s);
  f->alloc_local = fftw_mpi_local_size_3d(n, n, f->nc, comm, &f->local_n0, &f->local_0_start);
  if (alloc_t > f->alloc_local) f->alloc_local = alloc_t;
  if (tn0 != f->local_n0 || t0s != f->local_0_start || tn1 != f->local_n0 ||
      t1s != f->local_0_start) {
    free(f);
    return CB_ERROR(CB_ERR_INTERNAL, "FFTW split the two axes of a %td^3 grid differently", n);
  }
  long mine = (long)f->local_n0, fewest = 0;
  MPI_Allreduce(&mine, &fewest, 1, MPI_LONG, MPI_MIN, comm);
  if (fewest < (long)min_planes) {
    int size = f->size;
    free(f);
    return CB_ERROR(CB_ERR_INPUT,
                    "-n_grid %td cannot be split over %d ranks: each rank needs at least %td "
                    "plane(s) of the first axis (use fewer ranks or a larger grid)",
                    n, size, min_planes);
  }
  f->n_real_local = f->local_n0 * n * n;
  f->n_complex_local = f->local_n0 * n * f->nc;
  f->plane_start = calloc((size_t)f->size + 1, sizeof *f->plane_start);
  long start = (long)f->local_0_start;
  long *starts = calloc((size_t)f->size, sizeof *starts);
  f->work = fftw_alloc_real(2 * (size_t)(f->alloc_local > 0 ? f->alloc_local : 1));
  if (!f->plane_start || !starts || !f->work) {
    free(starts);
    field_destroy(&f);
    return CB_ERROR(CB_ERR_MEM, "out of memory for a %td^3 grid", n);
  }
  MPI_Allgather(&start, 1, MPI_LONG, starts, 1, MPI_LONG, comm);
  for (int r = 0; r < f->size; r++) f->plane_start[r] = (ptrdiff_t)starts[r];
  f->plane_start[f->size] = n;
  free(starts);
  f->r2c = fftw_mpi_plan_dft_r2c_3d(n, n, n, f->work, (fftw_complex *)f->work, comm, FFTW_ESTIMATE);
  f->c2r = fftw_mpi_plan_dft_c2r_3d(n, n, n, (fftw_complex *)f->work, f->work, comm, FFTW_ESTIMATE);
  f->r2c_t = fftw_mpi_plan_dft_r2c_3d(n, n, n, f->work, (fftw_complex *)f->work, comm,
                                      FFTW_ESTIMATE | FFTW_MPI_TRANSPOSED_OUT);
  f->c2r_t = fftw_mpi_plan_dft_c2r_3d(n, n, n, (fftw_complex *)f->work, f->work, comm,
                                      FFTW_ESTIMATE | FFTW_MPI_TRANSPOSED_IN);
  if (!f->r2c || !f->c2r || !f->r2c_t || !f->c2r_t) {
    field_destroy(&f);
    return CB_ERROR(CB_ERR_INTERNAL, "FFTW could not plan a %td^3 transform", n);
  }
  *out = f;
  return CB_OK;
}

void field_destroy(field **pf) {
  if (!pf || !*pf) return;
  field *f = *pf;
  if (f->r2c) fftw_destroy_plan(f->r2c);
  if (f->c2r) fftw_destroy_plan(f->c2r);
  if (f->r2c_t) fftw_destroy_plan(f->r2c_t);
  if (f->c2r_t) fftw_destroy_plan(f->c2r_t);
  fftw_free(f->work);
  free(f->plane_start);
  free(f);
  *pf = NULL;
}

double *field_alloc_real(const field *f) {
  size_t n = (size_t)(f->n_real_local > 0 ? f->n_real_local : 1);
  double *p = fftw_alloc_real(n);
  if (p) memset(p, 0, n * sizeof *p);
  return p;
}

fftw_complex *field_alloc_complex(const field *f) {
  size_t n = (size_t)(f->n_complex_local > 0 ? f->n_complex_local : 1);
  fftw_complex *p = fftw_alloc_complex(n);
  if (p) memset(p, 0, n * sizeof *p);
  return p;
}

void field_padded_load(const field *f, const double *in, double *buf) {
  const ptrdiff_t n = f->n, pad = 2 * f->nc;
  for (ptrdiff_t row = 0; row < f->local_n0 * n; row++)
    memcpy(buf + row * pad, in + row * n, (size_t)n * sizeof(double));
}

void field_padded_store(const field *f, const double *buf, double scale, double *out) {
  const ptrdiff_t n = f->n, pad = 2 * f->nc;
  for (ptrdiff_t row = 0; row < f->local_n0 * n; row++) {
    const double *src = buf + row * pad;
    double *dst = out + row * n;
    if (scale == 1.0)
      memcpy(dst, src, (size_t)n * sizeof(double));
    else
      for (ptrdiff_t k = 0; k < n; k++) dst[k] = scale * src[k];
  }
}

/* One in-place transform of a padded buffer with FFTW's new-array execute: the plans were
 * made in place on f->work, and every padded buffer has its size and fftw_malloc's
 * alignment. */
static void exec_r2c(fftw_plan plan, double *buf) {
  logevent_begin(LOGEVENT_FFT);
  fftw_mpi_execute_dft_r2c(plan, buf, (fftw_complex *)buf);
  logevent_end(LOGEVENT_FFT);
}

static void exec_c2r(fftw_plan plan, double *buf) {
  logevent_begin(LOGEVENT_FFT);
  fftw_mpi_execute_dft_c2r(plan, (fftw_complex *)buf, buf);
  logevent_end(LOGEVENT_FFT);
}

/* The compact transforms, through the field's own buffer, with plan r2c or r2c_t. */
static int r2c_via_work(field *f, fftw_plan plan, const double *in, fftw_complex *out) {
  field_padded_load(f, in, f->work);
  exec_r2c(plan, f->work);
  memcpy(out, f->work, (size_t)f->n_complex_local * sizeof(fftw_complex));
  return CB_OK;
}

static int c2r_via_work(field *f, fftw_plan plan, const fftw_complex *in, double *out) {
  const double n = (double)f->n;
  memcpy(f->work, in, (size_t)f->n_complex_local * sizeof(fftw_complex));
  exec_c2r(plan, f->work);
  field_padded_store(f, f->work, 1.0 / (n * n * n), out);
  return CB_OK;
}

int field_r2c(field *f, const double *in, fftw_complex *out) {
  CB_CALL(r2c_via_work(f, f->r2c, in, out));
  return CB_OK;
}

int field_r2c_t(field *f, const double *in, fftw_complex *out) {
  CB_CALL(r2c_via_work(f, f->r2c_t, in, out));
  return CB_OK;
}

double *field_alloc_padded(const field *f) {
  size_t n = 2 * (size_t)(f->alloc_local > 0 ? f->alloc_local : 1);
  double *p = fftw_alloc_real(n);
  if (p) memset(p, 0, n * sizeof *p);
  return p;
}

int field_padded_r2c(field *f, double *buf) {
  exec_r2c(f->r2c, buf);
  return CB_OK;
}

int field_padded_c2r(field *f, double *buf) {
  exec_c2r(f->c2r, buf);
  return CB_OK;
}

int field_padded_r2c_t(field *f, double *buf) {
  exec_r2c(f->r2c_t, buf);
  return CB_OK;
}

int field_padded_c2r_t(field *f, double *buf) {
  exec_c2r(f->c2r_t, buf);
  return CB_OK;
}

int field_c2r(field *f, const fftw_complex *in, double *out) {
  CB_CALL(c2r_via_work(f, f->c2r, in, out));
  return CB_OK;
}

int field_c2r_t(field *f, const fftw_complex *in, double *out) {
  CB_CALL(c2r_via_work(f, f->c2r_t, in, out));
  return CB_OK;
}

int field_owner(const field *f, ptrdiff_t i) {
  int lo = 0, hi = f->size - 1;
  while (lo < hi) { /* last rank whose start <= i */
    int mid = (lo + hi + 1) / 2;
    if (f->plane_start[mid] <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  /* ranks with zero planes share a start with the next: skip them */
  while (lo < f->size - 1 && f->plane_start[lo + 1] == f->plane_start[lo]) lo++;
  return lo;
}

double field_allreduce_sum(const field *f, double x) {
  double s = 0;
  MPI_Allreduce(&x, &s, 1, MPI_DOUBLE, MPI_SUM, f->comm);
  return s;
}

double field_sum(const field *f, const double *x) {
  double s = 0;
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) s += x[i];
  return field_allreduce_sum(f, s);
}
