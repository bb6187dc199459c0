/* field: a periodic N^3 grid split in slabs along the first (slowest) axis, with FFTW-MPI.
 *
 * MODEL.md section 1. A field object holds the decomposition and the r2c / c2r plans
 * (made once, reused) with their padded work buffer. Real fields are plain arrays of
 * local_n0 * n * n doubles (no padding), index ((i - i0) * n + j) * n + k for global
 * plane i in [i0, i0 + local_n0). Complex fields hold local_n0 * n * nc values,
 * nc = n/2 + 1 (index ((i - i0) * n + j) * nc + c), in FFTW's non-transposed layout:
 * the same planes as the real field. Allocate with field_alloc_real / field_alloc_complex.
 *
 * Conventions: forward f(k) = sum_x f(x) exp(-i k.x); field_c2r includes the 1/N^3 so that
 * c2r(r2c(f)) = f. Wave numbers k = (2 pi / L) (a, b, c), a, b in [-N/2, N/2) and
 * c in [0, N/2] for the half-complex last axis.
 * The decomposition is FFTW's; a grid that leaves a rank without planes is an error.
 * -fft_wisdom errors name the file: malformed (CB_ERR_INPUT), unreadable or unwritable
 * (CB_ERR_IO). */
#ifndef CERBERUS_FIELD_H
#define CERBERUS_FIELD_H

#include <complex.h>
#include <mpi.h>
#include <stddef.h>

#include <fftw3-mpi.h>

#include "cerberus/options.h"

typedef struct field {
  MPI_Comm comm;
  int rank, size;
  ptrdiff_t n;        /* grid points per side */
  ptrdiff_t nc;       /* n / 2 + 1 */
  double L;           /* box side, Mpc/h */
  ptrdiff_t local_n0; /* planes on this rank */
  ptrdiff_t local_0_start;
  ptrdiff_t n_real_local;    /* local_n0 * n * n */
  ptrdiff_t n_complex_local; /* local_n0 * n * nc */
  ptrdiff_t *plane_start;    /* [size + 1]: first plane of each rank, then n */
  /* private */
  ptrdiff_t alloc_local;
  double *work; /* padded in-place buffer */
  fftw_plan r2c, c2r;
  fftw_plan r2c_t, c2r_t;   /* the transposed layout's (FFTW_MPI_TRANSPOSED_OUT / _IN) */
  fftw_plan x_fwd, x_bwd;   /* the stages of r2c_t / c2r_t: 1-D along x (transposed layout), */
  fftw_plan yz_r2c, yz_c2r; /* 2-D over (y, z) per local plane (serial), */
  fftw_plan swap;           /* and the global exchange of the first two axes */
} field;

/* The FFT planner options, -fft_plan estimate|measure|patient and -fft_wisdom FILE (see
 * src/grid/field.c), for the fields made after the call: commands that make fields read them
 * with their other options. Process-wide, like FFTW's planner. Collective on o. */
int field_plan_options(options *o);

/* Collective. Errors (CB_ERR_INPUT) for n < 2, odd n, L <= 0 or non-finite, and a grid that
 * cannot be split over the ranks (a rank with no plane, or fewer than min_planes planes:
 * pass 1 unless a stencil needs more). */
int field_create(MPI_Comm comm, ptrdiff_t n, double L, ptrdiff_t min_planes, field **f);
void field_destroy(field **f); /* Collective; accepts NULL, leaves NULL. */

double *field_alloc_real(const field *f);          /* zeroed; free with fftw_free */
fftw_complex *field_alloc_complex(const field *f); /* zeroed; free with fftw_free */

/* Collective. in and out may not alias the work buffer; in is not modified. */
int field_r2c(field *f, const double *in, fftw_complex *out);
/* Collective. Includes 1/N^3. in is not modified. */
int field_c2r(field *f, const fftw_complex *in, double *out);

/* Transforms in place on padded buffers, for callers that fuse their pass over a field with
 * the copy in or out that field_r2c / field_c2r make (one pass over memory saved each way),
 * or that keep several transforms at once. A padded buffer (the field's own, field_work(f),
 * or one from field_alloc_padded) holds, as real data, local_n0 * n rows of
 * field_work_stride(f) = 2 nc doubles (row r = (i - i0) * n + j, voxel k at
 * buf + r * stride + k; the padding is scratch), and, as complex data, the compact
 * half-complex layout of field_alloc_complex (n_complex_local values at (fftw_complex *)buf).
 * field_padded_r2c transforms the real rows in place; field_padded_c2r the complex values in
 * place WITHOUT the 1/N^3 (fold it into a multiplier or the pass that reads the rows).
 * field_r2c / field_c2r overwrite the field's own buffer. Collective (the transforms). */
static inline double *field_work(field *f) { /* Not collective. */
  return f->work;
}
static inline ptrdiff_t field_work_stride(const field *f) { /* Not collective. */
  return 2 * f->nc;
}
double *field_alloc_padded(const field *f); /* zeroed; free with fftw_free. Not collective. */
int field_padded_r2c(field *f, double *buf);
/* Copy an unpadded real field into a padded buffer's rows, and rows out times scale (1/N^3
 * after field_padded_c2r, or 1). Not collective. */
void field_padded_load(const field *f, const double *in, double *buf);
void field_padded_store(const field *f, const double *buf, double scale, double *out);
int field_padded_c2r(field *f, double *buf);

/* The transposed layout of Fourier space, for chains that go to Fourier space and back
 * without looking at the modes' order (the forward model): FFTW skips its last global
 * transpose each way (FFTW_MPI_TRANSPOSED_OUT / _IN), the largest part of a transform's
 * communication. A transposed half-complex array swaps the first two axes: local index
 * (jl * n + a) * nc + c holds wave numbers (a, b = local_0_start + jl, c), i.e. the rank
 * holds ky planes, the same ones as its x planes (FFTW splits both axes of a cube alike;
 * field_create checks it). A filter that is symmetric in kx and ky (a function of |k|) thus
 * has the same array in both layouts. Same contracts as the untransposed ones. Collective. */
int field_padded_r2c_t(field *f, double *buf);
int field_padded_c2r_t(field *f, double *buf);
int field_r2c_t(field *f, const double *in, fftw_complex *out);
int field_c2r_t(field *f, const fftw_complex *in, double *out);

/* The three stages of field_padded_c2r_t, for chains that apply a multiplier between them
 * (the LPT displacements: i k_x before the x stage, i k_y and i k_z after the exchange, so that
 * three components cost two x stages and two exchanges instead of three): field_padded_c2r_x,
 * the inverse 1-D transforms along x of the transposed layout (in place: local
 * (jl * n + a) * nc + c holds (x index a, ky = local_0_start + jl, kz = c) afterwards); then
 * field_padded_swap, which exchanges the first two axes across the ranks, so that local
 * (il * n + b) * nc + c holds (x = local_0_start + il, ky index b, kz = c), the mixed layout
 * (its own inverse: a cube's two axes are split alike); then field_padded_c2r_yz, the inverse
 * 2-D transforms over (ky, kz) of each local x plane into real rows. Unnormalised, as
 * field_padded_c2r_t: c2r_yz(swap(c2r_x(b))) is field_padded_c2r_t(b) to rounding. The
 * forward stages run the other way: r2c_yz, swap, r2c_x make field_padded_r2c_t. Collective
 * (field_padded_swap; the others are local, on a rank's own planes). */
int field_padded_c2r_x(field *f, double *buf);
int field_padded_r2c_x(field *f, double *buf);
int field_padded_swap(field *f, double *buf);
int field_padded_c2r_yz(field *f, double *buf);
int field_padded_r2c_yz(field *f, double *buf);
/* Wave number component of index a in [0, n): 2 pi / L * (a < n/2 ? a : a - n). */
static inline double field_k_of(const field *f, ptrdiff_t a) {
  ptrdiff_t m = a < f->n / 2 ? a : a - f->n;
  return 2.0 * 3.14159265358979323846 / f->L * (double)m;
}
/* Signed frequency index in [-n/2, n/2). */
static inline ptrdiff_t field_freq(const field *f, ptrdiff_t a) {
  return a < f->n / 2 ? a : a - f->n;
}

/* Refuse (CB_ERR_MEM, naming -n_grid and what) a grid whose ranks on one node would need more
 * than the node's available memory, at bytes_per_voxel bytes per local voxel: better a clear
 * error than the kernel's out-of-memory killer when the pages are touched (Linux lets the
 * allocations succeed). Available is MemAvailable of /proc/meminfo, read once per node; where
 * it cannot be read nothing is checked. Collective. */
int field_check_memory(const field *f, double bytes_per_voxel, const char *what);
/* Which rank owns global plane i (0 <= i < n). Not collective. */
int field_owner(const field *f, ptrdiff_t i);

/* Sum / max of local values over the ranks. Collective. */
double field_sum(const field *f, const double *x);
double field_allreduce_sum(const field *f, double x);
/* x[0..n) summed over the ranks in place (every rank gets the sums). Collective. */
void field_allreduce_sum_n(const field *f, double *x, size_t n);
/* x[0..n) replaced by its maximum over the ranks. Collective. */
void field_allreduce_max_n(const field *f, double *x, size_t n);

/* Hermitian weight of a half-complex column c: 1 for c = 0 and c = n/2, 2 otherwise. */
static inline double field_hermitian_weight(const field *f, ptrdiff_t c) {
  return (c == 0 || 2 * c == f->n) ? 1.0 : 2.0;
}

#endif
