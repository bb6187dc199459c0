/* bench_fft: `cerberus bench fft -n_grid N [-repeat R]`, the cost of the distributed FFT.
 *
 * Times R pairs of field_r2c + field_c2r on an N^3 grid (after one untimed pair that warms
 * the caches) at the current number of ranks, and prints
 *   bench,n_grid,ranks,repeat,seconds_per_pair,gflops
 * where gflops uses the conventional 5 N^3 log2(N^3) / 2 flops per real transform (two per
 * pair). The round trip is checked (max error), so a broken transform cannot post a time. */
#include "cerberus/bench.h"
#include "cerberus/field.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdio.h>

static int fft_pairs(field *f, double *x, fftw_complex *xk, long repeat) {
  for (long r = 0; r < repeat; r++) {
    CB_CALL(field_r2c(f, x, xk));
    CB_CALL(field_c2r(f, xk, x));
  }
  return CB_OK;
}

static int fft_run(MPI_Comm comm, field *f, long repeat) {
  double *x = field_alloc_real(f), *x0 = field_alloc_real(f);
  fftw_complex *xk = field_alloc_complex(f);
  int st = CB_OK;
  if (!x || !x0 || !xk) st = CB_ERROR(CB_ERR_MEM, "out of memory for a %td^3 grid", f->n);
  double secs = 0, err = 0;
  if (st == CB_OK) {
    for (ptrdiff_t i = 0; i < f->n_real_local; i++)
      x[i] = x0[i] = sin(0.37 * (double)(i + f->local_0_start * f->n * f->n)) + 0.25;
    st = fft_pairs(f, x, xk, 1);
  }
  if (st == CB_OK) {
    double t0 = bench_clock_start(comm);
    st = fft_pairs(f, x, xk, repeat);
    secs = bench_clock_stop(comm, t0) / (double)repeat;
  }
  if (st == CB_OK) {
    for (ptrdiff_t i = 0; i < f->n_real_local; i++) err = fmax(err, fabs(x[i] - x0[i]));
    MPI_Allreduce(MPI_IN_PLACE, &err, 1, MPI_DOUBLE, MPI_MAX, comm);
    if (!(err < 1e-8))
      st = CB_ERROR(CB_ERR_NUMERIC, "bench fft: round trip error %g after %ld pairs", err,
                    repeat + 1);
  }
  if (st == CB_OK) {
    double n3 = (double)f->n * (double)f->n * (double)f->n;
    double gflops = 2.0 * 2.5 * n3 * log2(n3) / secs * 1e-9;
    char row[256];
    snprintf(row, sizeof row, "fft,%td,%d,%ld,%.6g,%.4g", f->n, f->size, repeat, secs, gflops);
    bench_print_csv(comm, "bench,n_grid,ranks,repeat,seconds_per_pair,gflops", row);
  }
  fftw_free(x);
  fftw_free(x0);
  fftw_free(xk);
  return st;
}

int bench_fft(MPI_Comm comm, options *o) {
  long n, repeat;
  CB_CALL(bench_grid_options(o, 20, &n, &repeat));
  CB_CALL(options_finish(o));
  field *f = NULL;
  CB_CALL(field_create(comm, n, 250.0, 1, &f));
  /* two real fields, one complex and the field's padded buffer */
  int st = field_check_memory(f, 16.0 + 32.0 * (double)f->alloc_local / (double)f->n_real_local,
                              "bench fft");
  if (st == CB_OK) st = fft_run(comm, f, repeat);
  field_destroy(&f);
  CB_CALL(st);
  return CB_OK;
}
