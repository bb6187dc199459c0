/* field: FFTW-MPI slab decomposition and the r2c / c2r transforms (MODEL.md section 1).
 *
 * FFTW decides the slabs with fftw_mpi_local_size_3d (planes along the first axis, the same
 * for the real and the non-transposed complex layout) and needs a padded in-place buffer
 * of alloc_local complex numbers. Everything above this module sees unpadded real arrays
 * (local_n0 * n * n) and compact half-complex arrays (local_n0 * n * (n/2 + 1)): the copy in
 * and out of the padded buffer costs one pass over memory, far less than the transform, and
 * spares every other module FFTW's padding. Plans are made once and reused.
 *
 * Planner rigour (field_plan_options): FFTW_ESTIMATE by default, so that plans, and results
 * to the last bit, do not depend on timing; -fft_plan measure or patient lets FFTW time
 * candidate plans when a field is made (about twice as fast transforms at 128^3 on the
 * development machine, for a second or two of planning), and -fft_wisdom FILE keeps the
 * plans found: rank 0 reads the file (when it exists) before planning and FFTW broadcasts it,
 * and after planning the wisdom of all ranks is gathered and written back (to a temporary
 * name, then renamed). With the same file, later runs make the same plans, hence the same
 * results. FFTW's planner and wisdom are process-wide, so these settings are too. */
#include "cerberus/field.h"

#include "cerberus/logevent.h"
#include "cerberus/status.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fftw_mpi_ready = 0;

/* The planner settings of this process (see the top). */
static unsigned plan_rigour = FFTW_ESTIMATE;
static char wisdom_path[4096];

static const unsigned rigour_flags[] = {FFTW_ESTIMATE, FFTW_MEASURE, FFTW_PATIENT};

int field_plan_options(options *o) {
  int idx = 0;
  CB_CALL(options_choice(o, "-fft_plan",
                         "FFTW planner: estimate (no planning; reruns identical to the last bit), "
                         "measure or patient (candidate plans timed at start-up: faster)",
                         "estimate,measure,patient", "estimate", &idx));
  bool set = false;
  CB_CALL(options_string(o, "-fft_wisdom",
                         "FFTW wisdom file, read when it exists and written back with new plans "
                         "(runs that share it make the same plans)",
                         NULL, wisdom_path, sizeof wisdom_path, &set));
  if (!set) wisdom_path[0] = '\0';
  plan_rigour = rigour_flags[idx];
  return CB_OK;
}

/* Rank 0 reads the wisdom file, if there is one, and FFTW hands it to every rank. Collective;
 * the outcome is the same on every rank. */
static int wisdom_import(MPI_Comm comm) {
  int rank, st[2] = {0, 0}; /* st[0]: the import failed; st[1]: why, if unreadable (errno) */
  MPI_Comm_rank(comm, &rank);
  if (rank == 0 && access(wisdom_path, F_OK) == 0 &&
      !fftw_import_wisdom_from_filename(wisdom_path)) {
    st[0] = 1;
    st[1] = access(wisdom_path, R_OK) == 0 ? 0 : errno;
  }
  MPI_Bcast(st, 2, MPI_INT, 0, comm);
  CB_CHECK(!st[0] || !st[1], CB_ERR_IO, "-fft_wisdom %s: %s", wisdom_path, strerror(st[1]));
  CB_CHECK(!st[0], CB_ERR_INPUT, "-fft_wisdom %s: not an FFTW wisdom file", wisdom_path);
  fftw_mpi_broadcast_wisdom(comm);
  return CB_OK;
}

/* Every rank's wisdom to rank 0, which writes it to a temporary name and renames it over the
 * file. Collective. */
static int wisdom_export(MPI_Comm comm) {
  int rank, err = 0;
  MPI_Comm_rank(comm, &rank);
  fftw_mpi_gather_wisdom(comm);
  if (rank == 0) {
    char tmp[sizeof wisdom_path + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", wisdom_path, (long)getpid());
    errno = 0;
    if (!fftw_export_wisdom_to_filename(tmp))
      err = errno ? errno : EIO;
    else if (rename(tmp, wisdom_path) != 0) {
      err = errno;
      remove(tmp);
    }
  }
  MPI_Bcast(&err, 1, MPI_INT, 0, comm);
  CB_CHECK(!err, CB_ERR_IO, "-fft_wisdom %s: cannot write it: %s", wisdom_path, strerror(err));
  return CB_OK;
}

/* The plans of f, on its own buffer (measuring overwrites it: nothing is in it yet),
 * with the wisdom file read before and written after when there is one. Collective. */
static int make_plans(field *f) {
  const MPI_Comm comm = f->comm;
  const ptrdiff_t n = f->n;
  if (wisdom_path[0]) CB_CALL(wisdom_import(comm));
  const unsigned r = plan_rigour;
  double *w = f->work;
  f->r2c = fftw_mpi_plan_dft_r2c_3d(n, n, n, w, (fftw_complex *)w, comm, r);
  f->c2r = fftw_mpi_plan_dft_c2r_3d(n, n, n, (fftw_complex *)w, w, comm, r);
  f->r2c_t =
      fftw_mpi_plan_dft_r2c_3d(n, n, n, w, (fftw_complex *)w, comm, r | FFTW_MPI_TRANSPOSED_OUT);
  f->c2r_t =
      fftw_mpi_plan_dft_c2r_3d(n, n, n, (fftw_complex *)w, w, comm, r | FFTW_MPI_TRANSPOSED_IN);
  /* the stages of r2c_t / c2r_t (field_padded_c2r_x and the others): 1-D along x, the
   * transposed layout's second axis (stride nc), for each of the rank's ky and each kz; 2-D
   * over (y, z) for each of its x planes; the exchange of the first two axes, whose elements
   * are rows of nc complex values */
  const ptrdiff_t nc = f->nc, l0 = f->local_n0;
  fftw_complex *wk = (fftw_complex *)w;
  const fftw_iodim64 x_dim = {n, nc, nc};
  const fftw_iodim64 x_many[2] = {{l0, n * nc, n * nc}, {nc, 1, 1}};
  f->x_fwd = fftw_plan_guru64_dft(1, &x_dim, 2, x_many, wk, wk, FFTW_FORWARD, r);
  f->x_bwd = fftw_plan_guru64_dft(1, &x_dim, 2, x_many, wk, wk, FFTW_BACKWARD, r);
  /* (y, z) with the real rows 2 nc doubles apart and the complex ones nc values apart */
  const fftw_iodim64 yz_r2c[2] = {{n, 2 * nc, nc}, {n, 1, 1}},
                     yz_c2r[2] = {{n, nc, 2 * nc}, {n, 1, 1}};
  const fftw_iodim64 planes_r2c = {l0, 2 * n * nc, n * nc}, planes_c2r = {l0, n * nc, 2 * n * nc};
  f->yz_r2c = fftw_plan_guru64_dft_r2c(2, yz_r2c, 1, &planes_r2c, w, wk, r);
  f->yz_c2r = fftw_plan_guru64_dft_c2r(2, yz_c2r, 1, &planes_c2r, wk, w, r);
  f->swap = fftw_mpi_plan_many_transpose(n, n, 2 * f->nc, FFTW_MPI_DEFAULT_BLOCK,
                                         FFTW_MPI_DEFAULT_BLOCK, w, w, comm, r);
  CB_CHECK(f->r2c && f->c2r && f->r2c_t && f->c2r_t && f->x_fwd && f->x_bwd && f->yz_r2c &&
               f->yz_c2r && f->swap,
           CB_ERR_INTERNAL, "FFTW could not plan a %td^3 transform", n);
  if (wisdom_path[0]) CB_CALL(wisdom_export(comm));
  return CB_OK;
}

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
  const int st = make_plans(f);
  if (st != CB_OK) {
    field_destroy(&f);
    CB_CALL(st);
  }
  *out = f;
  return CB_OK;
}

void field_destroy(field **pf) {
  if (!pf || !*pf) return;
  field *f = *pf;
  const fftw_plan plans[] = {f->r2c,   f->c2r,    f->r2c_t,  f->c2r_t, f->x_fwd,
                             f->x_bwd, f->yz_r2c, f->yz_c2r, f->swap};
  for (size_t i = 0; i < sizeof plans / sizeof *plans; i++)
    if (plans[i]) fftw_destroy_plan(plans[i]);
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

int field_padded_c2r_x(field *f, double *buf) {
  logevent_begin(LOGEVENT_FFT);
  fftw_execute_dft(f->x_bwd, (fftw_complex *)buf, (fftw_complex *)buf);
  logevent_end(LOGEVENT_FFT);
  return CB_OK;
}

int field_padded_r2c_x(field *f, double *buf) {
  logevent_begin(LOGEVENT_FFT);
  fftw_execute_dft(f->x_fwd, (fftw_complex *)buf, (fftw_complex *)buf);
  logevent_end(LOGEVENT_FFT);
  return CB_OK;
}

int field_padded_swap(field *f, double *buf) {
  logevent_begin(LOGEVENT_FFT);
  fftw_mpi_execute_r2r(f->swap, buf, buf);
  logevent_end(LOGEVENT_FFT);
  return CB_OK;
}

int field_padded_c2r_yz(field *f, double *buf) {
  logevent_begin(LOGEVENT_FFT);
  fftw_execute_dft_c2r(f->yz_c2r, (fftw_complex *)buf, buf);
  logevent_end(LOGEVENT_FFT);
  return CB_OK;
}

int field_padded_r2c_yz(field *f, double *buf) {
  logevent_begin(LOGEVENT_FFT);
  fftw_execute_dft_r2c(f->yz_r2c, buf, (fftw_complex *)buf);
  logevent_end(LOGEVENT_FFT);
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

/* MemAvailable in bytes, or -1 when /proc/meminfo cannot be read. */
static double mem_available(void) {
  FILE *fp = fopen("/proc/meminfo", "r");
  if (!fp) return -1;
  char line[256];
  double kb = -1;
  while (fgets(line, sizeof line, fp))
    if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
  fclose(fp);
  return kb >= 0 ? kb * 1024.0 : -1;
}

int field_check_memory(const field *f, double bytes_per_voxel, const char *what) {
  MPI_Comm node;
  MPI_Comm_split_type(f->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int node_rank, node_size;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &node_size);
  double need = bytes_per_voxel * (double)f->n_real_local,
         have = node_rank == 0 ? mem_available() : 0;
  MPI_Allreduce(MPI_IN_PLACE, &need, 1, MPI_DOUBLE, MPI_SUM, node);
  MPI_Bcast(&have, 1, MPI_DOUBLE, 0, node);
  MPI_Comm_free(&node);
  /* the worst node, and its figures, on every rank */
  struct {
    double excess;
    int rank;
  } mine = {have >= 0 ? need - have : -1.0, f->rank}, worst;
  MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE_INT, MPI_MAXLOC, f->comm);
  double fig[3] = {need, have, (double)node_size};
  MPI_Bcast(fig, 3, MPI_DOUBLE, worst.rank, f->comm);
  CB_CHECK(worst.excess <= 0, CB_ERR_MEM,
           "-n_grid %td is too large for %s: it needs about %.1f GB on the node of rank %d (%d "
           "rank(s) there) but %.1f GB is available (use a smaller -n_grid or more nodes)",
           f->n, what, fig[0] * 1e-9, worst.rank, (int)fig[2], fig[1] * 1e-9);
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

void field_allreduce_sum_n(const field *f, double *x, size_t n) {
  MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, f->comm);
}

void field_allreduce_max_n(const field *f, double *x, size_t n) {
  MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_MAX, f->comm);
}

double field_sum(const field *f, const double *x) {
  double s = 0;
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) s += x[i];
  return field_allreduce_sum(f, s);
}
