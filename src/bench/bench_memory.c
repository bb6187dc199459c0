/* bench_memory: `cerberus bench memory -n_grid N [-repeat R] [-scaling]`, the memory bandwidth
 * the ranks get together: the yardstick for the speed-ups of the other benchmarks.
 *
 * On each rank, the STREAM triad a = b + q c over three arrays of the rank's voxels of an N^3
 * grid (the field's slabs), timed R times after one untimed warm-up, the fastest kept. It
 * prints
 *   bench,n_grid,ranks,repeat,triad_s,gbytes_per_s,gbytes_per_s_per_rank
 * counting 24 bytes a voxel (two reads and a write). The forward model's fields have this
 * size, so from 128^3 up (three arrays of 16 MB) they outgrow the caches of most nodes and
 * this is the node's memory bandwidth: the passes over whole fields in the other benchmarks
 * (the FFT's transposes, the CIC grid, the k-space multipliers) cannot speed up from 1 to P
 * ranks by more than it does. Every element is checked afterwards (a starts as NaN), so a
 * kernel that skipped some cannot post a time.
 *
 * With -scaling, rows for the first 1, 2, 4, ... ranks too, the rank counts interleaved round
 * by round as in bench lpt -scaling (the ranks outside a count wait asleep). */
#include "cerberus/bench.h"
#include "cerberus/field.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdio.h>

static const double TRIAD_Q = 0.75;

typedef struct mem_bench {
  MPI_Comm comm; /* the ranks this one runs on; MPI_COMM_NULL on the others */
  bool in;       /* this rank is one of them */
  field *f;
  double *a, *b, *c;
  double t; /* the fastest triad */
} mem_bench;

static void triad(mem_bench *m) {
  double *restrict a = m->a;
  const double *restrict b = m->b, *restrict c = m->c;
  const ptrdiff_t nv = m->f->n_real_local;
  for (ptrdiff_t i = 0; i < nv; i++) a[i] = b[i] + TRIAD_Q * c[i];
}

static int mem_setup(mem_bench *m, long n) {
  CB_CALL(field_create(m->comm, n, 1.0, 1, &m->f));
  /* the three arrays and the field's padded buffer */
  const double voxels = (double)m->f->n_real_local;
  CB_CALL(
      field_check_memory(m->f, 24.0 + 16.0 * (double)m->f->alloc_local / voxels, "bench memory"));
  m->a = field_alloc_real(m->f);
  m->b = field_alloc_real(m->f);
  m->c = field_alloc_real(m->f);
  CB_CHECK(m->a && m->b && m->c, CB_ERR_MEM, "out of memory for three %ld^3 arrays", n);
  for (ptrdiff_t i = 0; i < m->f->n_real_local; i++) {
    m->a[i] = NAN;
    m->b[i] = (double)(i % 1009);
    m->c[i] = (double)(i % 997);
  }
  triad(m); /* warm-up */
  m->t = INFINITY;
  return CB_OK;
}

static int mem_time(mem_bench *m) {
  const double t0 = bench_clock_start(m->comm);
  triad(m);
  m->t = fmin(m->t, bench_clock_stop(m->comm, t0));
  return CB_OK;
}

/* Every element is b + q c (exactly: the same operations). */
static int mem_check(const mem_bench *m) {
  ptrdiff_t wrong = 0;
  for (ptrdiff_t i = 0; i < m->f->n_real_local; i++)
    if (!(m->a[i] == m->b[i] + TRIAD_Q * m->c[i])) wrong++;
  CB_CHECK(wrong == 0, CB_ERR_INTERNAL, "bench memory: %td element(s) of the triad are wrong",
           wrong);
  return CB_OK;
}

static void mem_free(mem_bench *m) {
  fftw_free(m->a);
  fftw_free(m->b);
  fftw_free(m->c);
  field_destroy(&m->f);
  if (m->comm != MPI_COMM_NULL) MPI_Comm_free(&m->comm);
}

static void mem_row(const mem_bench *m, long repeat, int header) {
  const double n = (double)m->f->n, gb = 24.0 * n * n * n / m->t * 1e-9;
  if (header) printf("bench,n_grid,ranks,repeat,triad_s,gbytes_per_s,gbytes_per_s_per_rank\n");
  printf("memory,%td,%d,%ld,%.6g,%.4g,%.4g\n", m->f->n, m->f->size, repeat, m->t, gb,
         gb / m->f->size);
}

int bench_memory(MPI_Comm comm, options *o) {
  long n, repeat;
  bool scaling = false;
  CB_CALL(bench_grid_options(o, 20, &n, &repeat));
  CB_CALL(bench_scaling_option(o, &scaling));
  CB_CALL(options_finish(o));
  int rank, counts[BENCH_MAX_COUNTS];
  MPI_Comm_rank(comm, &rank);
  const int nb = bench_rank_counts(comm, scaling, counts);
  mem_bench m[BENCH_MAX_COUNTS];
  for (int i = 0; i < nb; i++) m[i] = (mem_bench){.comm = MPI_COMM_NULL};
  int st = CB_OK;
  /* the full count first: its errors (a grid that cannot be split) come before any other */
  for (int i = nb - 1; i >= 0 && st == CB_OK; i--) {
    m[i].comm = bench_first_ranks(comm, counts[i]);
    m[i].in = m[i].comm != MPI_COMM_NULL;
    st = bench_agreed(comm, m[i].in ? mem_setup(&m[i], n) : CB_OK, m[i].in);
  }
  for (long r = 0; r < repeat && st == CB_OK; r++)
    for (int i = 0; i < nb && st == CB_OK; i++)
      st = bench_agreed(comm, m[i].in ? mem_time(&m[i]) : CB_OK, m[i].in);
  for (int i = 0; i < nb && st == CB_OK; i++)
    st = bench_agreed(comm, m[i].in ? mem_check(&m[i]) : CB_OK, m[i].in);
  if (st == CB_OK && rank == 0) {
    for (int i = 0; i < nb; i++) mem_row(&m[i], repeat, i == 0);
    fflush(stdout);
  }
  for (int i = 0; i < nb; i++) mem_free(&m[i]);
  CB_CALL(st);
  return CB_OK;
}
