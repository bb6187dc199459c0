/* bench_lpt: `cerberus bench lpt -n_grid N [-repeat R] [-lpt_order 1|2] [-scaling]`, the
 * forward model's cost in units of one FFT (issue 3's benchmark).
 *
 * On an N^3 grid (250 Mpc/h, Eisenstein-Hu P(k)) at the current number of ranks, times, each
 * the fastest of R rounds (the operations interleaved in each round) after one untimed
 * warm-up: one r2c transform (field_r2c); LPT
 * forward (lpt_forward, delta_L -> positions, including its r2c); cloud-in-cell assignment of
 * those positions (migration + deposit); the full chain forward (forward_run: s -> delta); and
 * the full chain forward plus adjoint (forward_run + forward_adjoint); and one c2r transform
 * (field_c2r) and one r2c in the transposed layout (field_r2c_t). It prints
 *   bench,n_grid,ranks,repeat,lpt_order,fft_r2c_s,lpt_forward_s,cic_assign_s,chain_forward_s,
 *   chain_fwd_adj_s,fwd_adj_in_ffts,cpu_... (the same six in CPU time),fft_c2r_s,
 *   fwd_adj_in_mean_ffts,fft_r2c_t_s,fwd_adj_in_t_ffts,peak_bytes_per_voxel,net_bytes_per_voxel
 * fwd_adj_in_ffts = chain_fwd_adj_s / fft_r2c_s (issue 3's target: at most 12), and
 * fwd_adj_in_mean_ffts the same over the mean of the r2c and the c2r: the chain makes as many
 * of each (1LPT: 4 and 4), and on some machines the two differ by more than half; and
 * fwd_adj_in_t_ffts over one r2c in the transposed layout (field_r2c_t), the kind the chain
 * itself makes. Peak memory
 * is getrusage's ru_maxrss over the rank's local voxels, the maximum over ranks; "net"
 * subtracts the peak measured before the grid was made (MPI, PETSc and the program).
 *
 * With -scaling, the same on the first 1, 2, 4, ... ranks of the run (sub-communicators) as
 * well as on all of them, one row per rank count: the rounds interleave the rank counts too
 * (the ranks outside a count wait asleep, in bench_agreed, so that their cores are idle as in
 * a run of the smaller count alone), so that the speed-up between two rows is measured under
 * the same conditions, which on a shared machine separate runs are not. The
 * memory columns of a row are then its own rise of the peak (plus, for the peak column, the
 * program's), since the other counts' grids are held at the same time. */
#include "cerberus/bench.h"
#include "cerberus/cic.h"
#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/forward.h"
#include "cerberus/ic.h"
#include "cerberus/lpt.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

enum { N_OPS = 7 }; /* the ops of run_op */

static double peak_bytes(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss * 1024.0; /* kilobytes on Linux */
}

typedef struct lpt_bench {
  MPI_Comm comm; /* the ranks this one runs on; MPI_COMM_NULL on the others */
  bool in;       /* this rank is one of them */
  field *f;
  lpt *lpt;
  cic *cic;
  forward *fw;
  double *s, *delta_L, *delta, *pos, *g;
  fftw_complex *sk;
  double t[N_OPS], cpu[N_OPS]; /* the fastest of the rounds */
  double mem[2];               /* peak and net bytes per voxel */
} lpt_bench;

/* op: 0 r2c, 1 lpt forward, 2 cic, 3 chain forward, 4 chain forward + adjoint, 5 c2r, 6 r2c in
 * the transposed layout (the chain's own) */
static int run_op(lpt_bench *b, int op) {
  const size_t np = (size_t)b->f->n_real_local;
  switch (op) {
  case 0: CB_CALL(field_r2c(b->f, b->s, b->sk)); break;
  case 1: CB_CALL(lpt_forward(b->lpt, b->delta_L, b->pos)); break;
  case 2: CB_CALL(cic_assign(b->cic, np, b->pos, NULL, b->delta)); break;
  case 3: CB_CALL(forward_run(b->fw, b->s, NULL, b->delta)); break;
  case 5: CB_CALL(field_c2r(b->f, b->sk, b->delta_L)); break;
  case 6: CB_CALL(field_r2c_t(b->f, b->s, b->sk)); break;
  default:
    CB_CALL(forward_run(b->fw, b->s, NULL, b->delta));
    CB_CALL(forward_adjoint(b->fw, b->delta, b->g));
    break;
  }
  return CB_OK;
}

static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One timed run of op on b's ranks, in wall time (from a barrier to the slowest rank) and in
 * this process's CPU time (the maximum over ranks; Open MPI polls while it waits, so waiting
 * still counts as CPU time, but time other programs held the core does not); the fastest
 * so far kept. */
static int time_op(lpt_bench *b, int op) {
  double t0 = bench_clock_start(b->comm), c0 = cpu_seconds();
  CB_CALL(run_op(b, op));
  double dc = cpu_seconds() - c0;
  const double wall = bench_clock_stop(b->comm, t0);
  MPI_Allreduce(MPI_IN_PLACE, &dc, 1, MPI_DOUBLE, MPI_MAX, b->comm);
  b->t[op] = fmin(b->t[op], wall);
  b->cpu[op] = fmin(b->cpu[op], dc);
  return CB_OK;
}

/* The grid, the objects and the fields of one rank count (on its ranks), then one untimed
 * warm-up round; the memory columns from the rise of the peak that this caused. */
static int lpt_bench_setup(lpt_bench *b, const cosmology *c, long n, int order, double base) {
  const double before = peak_bytes();
  CB_CALL(field_create(b->comm, n, 250.0, 1, &b->f));
  field *f = b->f;
  /* the rise of the peak measured at 128^3 (net_bytes_per_voxel: 180 at 1 rank, 197 at 2) */
  CB_CALL(field_check_memory(f, 180.0, "bench lpt"));
  CB_CALL(lpt_create(f, order, &b->lpt));
  CB_CALL(cic_create(f, &b->cic));
  CB_CALL(forward_create(f, c, order, &b->fw));
  b->s = field_alloc_real(f);
  b->delta_L = field_alloc_real(f);
  b->delta = field_alloc_real(f);
  b->g = field_alloc_real(f);
  b->sk = field_alloc_complex(f);
  b->pos = malloc(3 * (size_t)(f->n_real_local ? f->n_real_local : 1) * sizeof(double));
  CB_CHECK(b->s && b->delta_L && b->delta && b->g && b->sk && b->pos, CB_ERR_MEM,
           "out of memory for a %td^3 benchmark", f->n);
  CB_CALL(ic_white_noise(f, 1, b->s));
  CB_CALL(forward_run(b->fw, b->s, b->delta_L, b->delta));
  for (int op = 0; op < N_OPS; op++) {
    CB_CALL(run_op(b, op));
    b->t[op] = b->cpu[op] = INFINITY;
  }
  const double voxels = (double)(f->n_real_local > 0 ? f->n_real_local : 1);
  const double net = peak_bytes() - before;
  b->mem[0] = (base + net) / voxels;
  b->mem[1] = net / voxels;
  MPI_Allreduce(MPI_IN_PLACE, b->mem, 2, MPI_DOUBLE, MPI_MAX, b->comm);
  return CB_OK;
}

static void lpt_bench_free(lpt_bench *b) {
  forward_destroy(&b->fw);
  cic_destroy(&b->cic);
  lpt_destroy(&b->lpt);
  fftw_free(b->s);
  fftw_free(b->delta_L);
  fftw_free(b->delta);
  fftw_free(b->g);
  fftw_free(b->sk);
  free(b->pos);
  field_destroy(&b->f);
  if (b->comm != MPI_COMM_NULL) MPI_Comm_free(&b->comm);
}

/* The rounds: in each, every op on every rank count in turn (the ranks outside a count wait
 * asleep in the reduction of the outcome), the fastest of repeat rounds kept. On a shared,
 * oversubscribed machine the minimum is the stable estimate, and interleaving exposes the FFT, the
 * chain and the rank counts to the same conditions, so that their ratios do not depend on when the
 * machine was busy. A failure on some ranks is reported on all (the outcome is reduced). */
static int time_rounds(MPI_Comm comm, lpt_bench *b, int nb, long repeat) {
  for (long r = 0; r < repeat; r++)
    for (int i = 0; i < nb; i++)
      for (int op = 0; op < N_OPS; op++)
        CB_CALL(bench_agreed(comm, b[i].in ? time_op(&b[i], op) : CB_OK, b[i].in));
  return CB_OK;
}

static void print_row(const lpt_bench *b, long repeat, int order, int header) {
  const double *t = b->t, *cpu = b->cpu, *mem = b->mem;
  if (header)
    printf("bench,n_grid,ranks,repeat,lpt_order,fft_r2c_s,lpt_forward_s,cic_assign_s,"
           "chain_forward_s,chain_fwd_adj_s,fwd_adj_in_ffts,cpu_fft_r2c_s,cpu_lpt_forward_s,"
           "cpu_cic_assign_s,cpu_chain_forward_s,cpu_chain_fwd_adj_s,cpu_fwd_adj_in_ffts,"
           "fft_c2r_s,fwd_adj_in_mean_ffts,fft_r2c_t_s,fwd_adj_in_t_ffts,"
           "peak_bytes_per_voxel,net_bytes_per_voxel\n");
  printf("lpt,%td,%d,%ld,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.3g,%.6g,%.6g,%.6g,%.6g,%.6g,%.3g,%.6g,%.3g,"
         "%.6g,%.3g,%.4g,%.4g\n",
         b->f->n, b->f->size, repeat, order, t[0], t[1], t[2], t[3], t[4], t[4] / t[0], cpu[0],
         cpu[1], cpu[2], cpu[3], cpu[4], cpu[4] / cpu[0], t[5], t[4] / (0.5 * (t[0] + t[5])), t[6],
         t[4] / t[6], mem[0], mem[1]);
}

int bench_lpt(MPI_Comm comm, options *o) {
  long n, repeat, order;
  bool scaling = false;
  CB_CALL(bench_grid_options(o, 5, &n, &repeat));
  CB_CALL(options_int(o, "-lpt_order", "1 (Zel'dovich) or 2 (2LPT)", 1, &order));
  CB_CALL(bench_scaling_option(o, &scaling));
  CB_CALL(options_finish(o));
  CB_CHECK(order == 1 || order == 2, CB_ERR_INPUT, "-lpt_order must be 1 or 2 (got %ld)", order);
  const double base = peak_bytes();
  int rank, counts[BENCH_MAX_COUNTS];
  MPI_Comm_rank(comm, &rank);
  const int nb = bench_rank_counts(comm, scaling, counts);
  cosmo_params p = cosmo_params_default();
  cosmology *c = NULL;
  CB_CALL(cosmology_create(&p, NULL, &c));
  lpt_bench b[BENCH_MAX_COUNTS];
  for (int i = 0; i < nb; i++) b[i] = (lpt_bench){.comm = MPI_COMM_NULL};
  int st = CB_OK;
  /* the full count first: its errors (a grid that cannot be split) come before any other */
  for (int i = nb - 1; i >= 0 && st == CB_OK; i--) {
    b[i].comm = bench_first_ranks(comm, counts[i]);
    b[i].in = b[i].comm != MPI_COMM_NULL;
    st = bench_agreed(comm, b[i].in ? lpt_bench_setup(&b[i], c, n, (int)order, base) : CB_OK,
                      b[i].in);
  }
  if (st == CB_OK) st = time_rounds(comm, b, nb, repeat);
  if (st == CB_OK && rank == 0) {
    for (int i = 0; i < nb; i++) print_row(&b[i], repeat, (int)order, i == 0);
    fflush(stdout);
  }
  for (int i = 0; i < nb; i++) lpt_bench_free(&b[i]);
  cosmology_destroy(&c);
  CB_CALL(st);
  return CB_OK;
}
