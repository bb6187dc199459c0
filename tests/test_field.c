/* test_field: the distributed FFT (MODEL.md section 1) at 1-4 ranks.
 *
 * - the forward sign and layout: the transform of a unit impulse at voxel (3, 5, 7) is
 *   exp(-i k.x) with x the voxel index times L/N, checked on every local mode;
 * - round trip c2r(r2c(f)) = f and Parseval sum |f|^2 = 1/N^3 sum_k |f(k)|^2 (hermitian
 *   weights on the half-complex modes) on an 18^3 grid, which splits unevenly over 4 ranks
 *   (5, 5, 5, 3 planes), filled with values that have no symmetry;
 * - the transposed layout (field_r2c_t, the ky planes local): the same impulse on every local
 *   mode of it, its round trip, and the padded transposed transforms against the compact ones;
 * - field_owner agrees with the slabs FFTW gave every rank;
 * - a grid that cannot be split (a rank with no plane, or fewer than min_planes) is refused
 *   with CB_ERR_INPUT and a message that says so, at every rank count. */
#include "testing.h"

#include "cerberus/field.h"
#include "cerberus/status.h"

#include <complex.h>
#include <stdlib.h>
#include <string.h>

static double value(ptrdiff_t i, ptrdiff_t j, ptrdiff_t k) {
  return sin(0.731 * (double)i + 1.93 * (double)j * (double)j + 0.417 * (double)k) +
         0.113 * (double)(i * 7 + j * 3 + k) / 18.0 - 0.37;
}

static void test_impulse(MPI_Comm comm) {
  field *f = NULL;
  const ptrdiff_t n = 12;
  const double L = 137.5;
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field_create 12^3");
  if (!f) return;
  double *x = field_alloc_real(f);
  fftw_complex *xk = field_alloc_complex(f);
  const ptrdiff_t i0 = 3, j0 = 5, k0 = 7;
  if (i0 >= f->local_0_start && i0 < f->local_0_start + f->local_n0)
    x[((i0 - f->local_0_start) * n + j0) * n + k0] = 2.5;
  field_r2c(f, x, xk);
  double err = 0;
  const double dx = L / (double)n;
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t c = 0; c < f->nc; c++) {
        double kx = field_k_of(f, f->local_0_start + il), ky = field_k_of(f, j),
               kz = field_k_of(f, c);
        double complex want = 2.5 * cexp(-I * (kx * i0 + ky * j0 + kz * k0) * dx);
        err = fmax(err, cabs(xk[(il * n + j) * f->nc + c] - want));
      }
  TEST_CHECK(err < 1e-12, "impulse transform differs from 2.5 exp(-i k.x) by %g", err);
  /* the transposed layout: local index (jl n + a) nc + c holds (kx_a, ky_{i0 + jl}, kz_c) */
  field_r2c_t(f, x, xk);
  err = 0;
  for (ptrdiff_t jl = 0; jl < f->local_n0; jl++)
    for (ptrdiff_t a = 0; a < n; a++)
      for (ptrdiff_t c = 0; c < f->nc; c++) {
        double kx = field_k_of(f, a), ky = field_k_of(f, f->local_0_start + jl),
               kz = field_k_of(f, c);
        double complex want = 2.5 * cexp(-I * (kx * i0 + ky * j0 + kz * k0) * dx);
        err = fmax(err, cabs(xk[(jl * n + a) * f->nc + c] - want));
      }
  TEST_CHECK(err < 1e-12, "transposed impulse transform differs from 2.5 exp(-i k.x) by %g", err);
  fftw_free(x);
  fftw_free(xk);
  field_destroy(&f);
  TEST_CHECK(f == NULL, "field_destroy leaves NULL");
  field_destroy(&f); /* accepts NULL */
}

static void test_round_trip(MPI_Comm comm) {
  field *f = NULL;
  const ptrdiff_t n = 18;
  TEST_STATUS(field_create(comm, n, 250.0, 1, &f), CB_OK, "field_create 18^3");
  if (!f) return;
  double *x = field_alloc_real(f), *y = field_alloc_real(f);
  fftw_complex *xk = field_alloc_complex(f);
  double sum2 = 0;
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t k = 0; k < n; k++) {
        double v = value(f->local_0_start + il, j, k);
        x[(il * n + j) * n + k] = v;
        sum2 += v * v;
      }
  field_r2c(f, x, xk);
  double ksum2 = 0;
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t c = 0; c < f->nc; c++) {
        double complex z = xk[(il * n + j) * f->nc + c];
        ksum2 += field_hermitian_weight(f, c) * creal(z * conj(z));
      }
  sum2 = field_allreduce_sum(f, sum2);
  ksum2 = field_allreduce_sum(f, ksum2) / ((double)n * n * n);
  TEST_CLOSE(sum2, ksum2, 1e-12, "Parseval sum |f|^2 vs sum |f(k)|^2 / N^3");
  field_c2r(f, xk, y);
  double err = 0;
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) err = fmax(err, fabs(y[i] - x[i]));
  TEST_CHECK(err < 1e-13, "round trip error %g", err);
  /* the input is not modified by r2c */
  double changed = 0;
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t k = 0; k < n; k++)
        changed = fmax(changed, fabs(x[(il * n + j) * n + k] - value(f->local_0_start + il, j, k)));
  TEST_CHECK(changed == 0, "field_r2c modified its input (by %g)", changed);
  /* the mean is the k = 0 mode over N^3 */
  double mean = field_sum(f, x) / ((double)n * n * n);
  double k0 = f->local_0_start == 0 && f->local_n0 > 0 ? creal(xk[0]) : 0;
  k0 = field_allreduce_sum(f, k0) / ((double)n * n * n);
  TEST_CLOSE(mean, k0, 1e-12, "field_sum mean vs f(k = 0) / N^3");

  /* the padded transforms, on a buffer of the caller's and on the field's own: the same
   * numbers as field_r2c / field_c2r (the c2r without 1/N^3) */
  double *pb = field_alloc_padded(f);
  const ptrdiff_t stride = field_work_stride(f);
  TEST_CHECK(pb != NULL && stride == 2 * f->nc, "field_alloc_padded, stride %td", stride);
  for (int own = 0; own < 2 && pb; own++) {
    double *buf = own ? field_work(f) : pb;
    for (ptrdiff_t r = 0; r < f->local_n0 * n; r++)
      for (ptrdiff_t k = 0; k < n; k++) buf[r * stride + k] = x[r * n + k];
    TEST_STATUS(field_padded_r2c(f, buf), CB_OK, "field_padded_r2c");
    const fftw_complex *bk = (const fftw_complex *)buf;
    double ek = 0;
    for (ptrdiff_t m = 0; m < f->n_complex_local; m++) ek = fmax(ek, cabs(bk[m] - xk[m]));
    TEST_CHECK(ek == 0, "field_padded_r2c (%s buffer) differs from field_r2c by %g",
               own ? "the field's" : "a caller's", ek);
    TEST_STATUS(field_padded_c2r(f, buf), CB_OK, "field_padded_c2r");
    double er = 0;
    for (ptrdiff_t r = 0; r < f->local_n0 * n; r++)
      for (ptrdiff_t k = 0; k < n; k++)
        er = fmax(er, fabs(buf[r * stride + k] / ((double)n * n * n) - x[r * n + k]));
    TEST_CHECK(er < 1e-13, "field_padded_c2r (%s buffer): round trip error %g",
               own ? "the field's" : "a caller's", er);
  }
  /* the same in the transposed layout: compact round trip, padded against compact */
  field_r2c_t(f, x, xk);
  field_c2r_t(f, xk, y);
  double et = 0;
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) et = fmax(et, fabs(y[i] - x[i]));
  TEST_CHECK(et < 1e-13, "transposed round trip error %g", et);
  for (ptrdiff_t r = 0; r < f->local_n0 * n; r++)
    for (ptrdiff_t k = 0; k < n; k++) pb[r * stride + k] = x[r * n + k];
  TEST_STATUS(field_padded_r2c_t(f, pb), CB_OK, "field_padded_r2c_t");
  et = 0;
  for (ptrdiff_t m = 0; m < f->n_complex_local; m++)
    et = fmax(et, cabs(((const fftw_complex *)pb)[m] - xk[m]));
  TEST_CHECK(et == 0, "field_padded_r2c_t differs from field_r2c_t by %g", et);
  TEST_STATUS(field_padded_c2r_t(f, pb), CB_OK, "field_padded_c2r_t");
  et = 0;
  for (ptrdiff_t r = 0; r < f->local_n0 * n; r++)
    for (ptrdiff_t k = 0; k < n; k++)
      et = fmax(et, fabs(pb[r * stride + k] / ((double)n * n * n) - x[r * n + k]));
  TEST_CHECK(et < 1e-13, "field_padded_c2r_t: round trip error %g", et);
  fftw_free(pb);

  /* field_owner against the slabs every rank reports */
  long *starts = calloc((size_t)f->size, sizeof(long)),
       *counts = calloc((size_t)f->size, sizeof(long));
  long s0 = (long)f->local_0_start, c0 = (long)f->local_n0;
  MPI_Allgather(&s0, 1, MPI_LONG, starts, 1, MPI_LONG, comm);
  MPI_Allgather(&c0, 1, MPI_LONG, counts, 1, MPI_LONG, comm);
  long total = 0;
  for (int r = 0; r < f->size; r++) total += counts[r];
  TEST_CHECK(total == n, "slabs hold %ld planes, not %td", total, n);
  for (ptrdiff_t i = 0; i < n; i++) {
    int want = -1;
    for (int r = 0; r < f->size; r++)
      if (i >= starts[r] && i < starts[r] + counts[r]) want = r;
    TEST_CHECK(field_owner(f, i) == want, "field_owner(%td) = %d, expected %d", i,
               field_owner(f, i), want);
  }
  free(starts);
  free(counts);
  fftw_free(x);
  fftw_free(y);
  fftw_free(xk);
  field_destroy(&f);
}

/* A grid FFTW leaves some rank without a plane, or one with fewer planes than asked. */
static void test_unsplittable(MPI_Comm comm, int size) {
  ptrdiff_t bad_n = 0;
  if (size >= 3) { /* smallest even n for which FFTW's blocks leave the last rank empty */
    fftw_mpi_init();
    for (ptrdiff_t n = 2; n <= 64 && !bad_n; n += 2) {
      ptrdiff_t ln0, l0;
      fftw_mpi_local_size_3d(n, n, n / 2 + 1, comm, &ln0, &l0);
      long mine = (long)ln0, fewest = 0;
      MPI_Allreduce(&mine, &fewest, 1, MPI_LONG, MPI_MIN, comm);
      if (fewest == 0) bad_n = n;
    }
    TEST_CHECK(bad_n > 0, "no even n <= 64 leaves a rank without planes at %d ranks", size);
  }
  field *f = NULL;
  int st;
  if (bad_n) {
    st = field_create(comm, bad_n, 100.0, 1, &f);
    TEST_CHECK(st == CB_ERR_INPUT, "n = %td at %d ranks: status %d, expected an input error", bad_n,
               size, st);
  } else {
    /* at 1 or 2 ranks every even n splits: ask for more planes than a rank can have */
    ptrdiff_t n = 4;
    st = field_create(comm, n, 100.0, n / size + 1, &f);
    TEST_CHECK(st == CB_ERR_INPUT, "n = %td, min_planes %td at %d ranks: status %d", n,
               n / size + 1, size, st);
  }
  TEST_CHECK(f == NULL, "a refused field is NULL");
  char over[64];
  snprintf(over, sizeof over, "cannot be split over %d ranks", size);
  TEST_CHECK(strstr(status_message(), over) != NULL, "message does not say '%s': '%s'", over,
             status_message());
  status_clear();
  /* bad sizes */
  TEST_STATUS(field_create(comm, 17, 100.0, 1, &f), CB_ERR_INPUT, "odd n");
  TEST_CHECK(strstr(status_message(), "-n_grid") != NULL, "odd n message: '%s'", status_message());
  TEST_STATUS(field_create(comm, 0, 100.0, 1, &f), CB_ERR_INPUT, "n = 0");
  TEST_STATUS(field_create(comm, 16, -3.0, 1, &f), CB_ERR_INPUT, "negative L");
  TEST_CHECK(strstr(status_message(), "-box_size") != NULL, "L message: '%s'", status_message());
  TEST_STATUS(field_create(comm, 16, 0.0, 1, &f), CB_ERR_INPUT, "zero L");
  status_clear();
}

/* The stages of the transposed-layout transforms compose to them: r2c_yz, swap, r2c_x gives
 * field_r2c_t's modes, and c2r_x, swap, c2r_yz brings them back to N^3 times the field (on
 * 4 ranks the 18 planes split 5, 5, 5, 3: unequal slabs). */
static void test_stages(MPI_Comm comm) {
  field *f = NULL;
  const ptrdiff_t n = 18;
  TEST_STATUS(field_create(comm, n, 250.0, 1, &f), CB_OK, "field_create 18^3");
  if (!f) return;
  double *x = field_alloc_real(f), *pb = field_alloc_padded(f);
  fftw_complex *xk = field_alloc_complex(f);
  const ptrdiff_t stride = field_work_stride(f);
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t k = 0; k < n; k++) {
        x[(il * n + j) * n + k] = value(f->local_0_start + il, j, k);
        pb[(il * n + j) * stride + k] = x[(il * n + j) * n + k];
      }
  field_r2c_t(f, x, xk);
  TEST_STATUS(field_padded_r2c_yz(f, pb), CB_OK, "field_padded_r2c_yz");
  TEST_STATUS(field_padded_swap(f, pb), CB_OK, "field_padded_swap");
  TEST_STATUS(field_padded_r2c_x(f, pb), CB_OK, "field_padded_r2c_x");
  double ek = 0, top = 0;
  for (ptrdiff_t m = 0; m < f->n_complex_local; m++) {
    ek = fmax(ek, cabs(((const fftw_complex *)pb)[m] - xk[m]));
    top = fmax(top, cabs(xk[m]));
  }
  MPI_Allreduce(MPI_IN_PLACE, &ek, 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &top, 1, MPI_DOUBLE, MPI_MAX, comm);
  TEST_CHECK(top > 1 && ek < 1e-13 * top, "r2c_yz, swap, r2c_x differ from field_r2c_t by %g", ek);
  TEST_STATUS(field_padded_c2r_x(f, pb), CB_OK, "field_padded_c2r_x");
  TEST_STATUS(field_padded_swap(f, pb), CB_OK, "field_padded_swap");
  TEST_STATUS(field_padded_c2r_yz(f, pb), CB_OK, "field_padded_c2r_yz");
  double er = 0;
  for (ptrdiff_t r = 0; r < f->local_n0 * n; r++)
    for (ptrdiff_t k = 0; k < n; k++)
      er = fmax(er, fabs(pb[r * stride + k] / ((double)n * n * n) - x[r * n + k]));
  TEST_CHECK(er < 1e-13, "c2r_x, swap, c2r_yz: round trip error %g", er);
  fftw_free(x);
  fftw_free(pb);
  fftw_free(xk);
  field_destroy(&f);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  test_impulse(comm);
  test_round_trip(comm);
  test_stages(comm);
  test_unsplittable(comm, testing_size());
  return testing_finish();
}
