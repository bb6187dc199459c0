/* bench_lpt: `cerberus bench lpt -n_grid N [-repeat R] [-lpt_order 1|2]`, the forward model's
 * cost in units of one FFT (issue 3's benchmark).
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
 * subtracts the peak measured before the grid was made (MPI, PETSc and the program). */
#include "cerberus/bench.h"
#include "cerberus/cic.h"
#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/forward.h"
#include "cerberus/ic.h"
#include "cerberus/lpt.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double peak_bytes(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss * 1024.0; /* kilobytes on Linux */
}

typedef struct lpt_bench {
  field *f;
  lpt *lpt;
  cic *cic;
  forward *fw;
  double *s, *delta_L, *delta, *pos, *g;
  fftw_complex *sk;
} lpt_bench;

/* op: 0 r2c, 1 lpt forward, 2 cic, 3 chain forward, 4 chain forward + adjoint, 5 c2r, 6 r2c in
 * the transposed layout (the chain's own) */
enum { N_OPS = 7 };
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

/* One timed run of op, in wall time (from a barrier to the slowest rank) and in this
 * process's CPU time (the maximum over ranks; Open MPI polls while it waits, so waiting still
 * counts as CPU time, but time other programs held the core does not). */
static int time_op(MPI_Comm comm, lpt_bench *b, int op, double *wall, double *cpu) {
  double t0 = bench_clock_start(comm), c0 = cpu_seconds();
  CB_CALL(run_op(b, op));
  double dc = cpu_seconds() - c0;
  *wall = bench_clock_stop(comm, t0);
  MPI_Allreduce(MPI_IN_PLACE, &dc, 1, MPI_DOUBLE, MPI_MAX, comm);
  *cpu = dc;
  return CB_OK;
}

/* The fastest of repeat rounds per op, the ops interleaved within each round (after one
 * untimed warm-up round): on a shared, oversubscribed machine the minimum is the stable
 * estimate, and interleaving exposes the FFT and the chain to the same conditions, so that
 * their ratio does not depend on when the machine was busy. */
static int time_ops(MPI_Comm comm, lpt_bench *b, long repeat, double wall[N_OPS],
                    double cpu[N_OPS]) {
  for (int op = 0; op < N_OPS; op++) {
    CB_CALL(run_op(b, op));
    wall[op] = cpu[op] = INFINITY;
  }
  for (long r = 0; r < repeat; r++)
    for (int op = 0; op < N_OPS; op++) {
      double w, c;
      CB_CALL(time_op(comm, b, op, &w, &c));
      wall[op] = fmin(wall[op], w);
      cpu[op] = fmin(cpu[op], c);
    }
  return CB_OK;
}

static int lpt_bench_run(MPI_Comm comm, lpt_bench *b, const cosmology *c, int order, long repeat,
                         double base) {
  field *f = b->f;
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
  double t[N_OPS], cpu[N_OPS];
  CB_CALL(time_ops(comm, b, repeat, t, cpu));
  const double voxels = (double)(f->n_real_local > 0 ? f->n_real_local : 1);
  double mem[2] = {peak_bytes() / voxels, (peak_bytes() - base) / voxels};
  MPI_Allreduce(MPI_IN_PLACE, mem, 2, MPI_DOUBLE, MPI_MAX, comm);
  char row[768];
  snprintf(
      row, sizeof row,
      "lpt,%td,%d,%ld,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.3g,%.6g,%.6g,%.6g,%.6g,%.6g,%.3g,%.6g,%.3g,"
      "%.6g,%.3g,%.4g,%.4g",
      f->n, f->size, repeat, order, t[0], t[1], t[2], t[3], t[4], t[4] / t[0], cpu[0], cpu[1],
      cpu[2], cpu[3], cpu[4], cpu[4] / cpu[0], t[5], t[4] / (0.5 * (t[0] + t[5])), t[6],
      t[4] / t[6], mem[0], mem[1]);
  bench_print_csv(comm,
                  "bench,n_grid,ranks,repeat,lpt_order,fft_r2c_s,lpt_forward_s,cic_assign_s,"
                  "chain_forward_s,chain_fwd_adj_s,fwd_adj_in_ffts,cpu_fft_r2c_s,cpu_lpt_forward_s,"
                  "cpu_cic_assign_s,cpu_chain_forward_s,cpu_chain_fwd_adj_s,cpu_fwd_adj_in_ffts,"
                  "fft_c2r_s,fwd_adj_in_mean_ffts,fft_r2c_t_s,fwd_adj_in_t_ffts,"
                  "peak_bytes_per_voxel,net_bytes_per_voxel",
                  row);
  return CB_OK;
}

int bench_lpt(MPI_Comm comm, options *o) {
  long n, repeat, order;
  CB_CALL(bench_grid_options(o, 5, &n, &repeat));
  CB_CALL(options_int(o, "-lpt_order", "1 (Zel'dovich) or 2 (2LPT)", 1, &order));
  CB_CALL(options_finish(o));
  CB_CHECK(order == 1 || order == 2, CB_ERR_INPUT, "-lpt_order must be 1 or 2 (got %ld)", order);
  const double base = peak_bytes();
  cosmo_params p = cosmo_params_default();
  cosmology *c = NULL;
  CB_CALL(cosmology_create(&p, NULL, &c));
  lpt_bench b = {0};
  int st = field_create(comm, n, 250.0, 1, &b.f);
  if (st == CB_OK) st = lpt_bench_run(comm, &b, c, (int)order, repeat, base);
  forward_destroy(&b.fw);
  cic_destroy(&b.cic);
  lpt_destroy(&b.lpt);
  fftw_free(b.s);
  fftw_free(b.delta_L);
  fftw_free(b.delta);
  fftw_free(b.g);
  fftw_free(b.sk);
  free(b.pos);
  field_destroy(&b.f);
  cosmology_destroy(&c);
  CB_CALL(st);
  return CB_OK;
}
