/* bench_loglike: `cerberus bench loglike -n_grid N [-repeat R] [architecture options]`, the
 * cost of ln L and of its exact gradients (MODEL.md sections 3-5), and of the ghost
 * exchange against PETSc's DMDA ghost update.
 *
 * On a synthetic field (lognormal-like, from a hash of the global voxel: the same at any
 * rank count) in a box of 2 N Mpc/h with N^3 / 20 halos, times R evaluations of ln L alone
 * and R of ln L with d lnL / d w and d lnL / d delta (after one untimed call of each), and
 * prints
 *   bench,n_grid,ranks,repeat,fwd_s,fwd_grad_s,grad_over_fwd,exchange_wait_share,
 *   bytes_per_voxel,ghost_ours_s,ghost_dmda_s,cpu_fwd_s,cpu_fwd_grad_s,ns_voxel_fwd,
 *   ns_voxel_fwd_grad,floor_ns_fwd,floor_ns_fwd_grad,floor_share,cpu_floor_share,lnL
 * exchange_wait_share is the time spent in the exchange's waits (forward and reverse, max
 * over ranks) over the time of the forward + gradient runs; bytes_per_voxel the engine,
 * likelihood, field and gradient arrays over the local voxels (max over ranks). The last two
 * columns time one ghost update of a one-channel field with a ghost width of (K - 1) / 2 by
 * our exchange (begin + end) and by DMGlobalToLocal on a DMDA with the same ownership
 * (periodic, box stencil), each averaged over 20 updates. cpu_* are the main thread's CPU
 * seconds per evaluation (max over ranks): on a shared, oversubscribed machine they show the
 * work per rank when wall times only show the share of the cores a run was given (MPI's
 * polling while waiting counts as CPU time).
 *
 * ns_voxel_* are the wall times in core nanoseconds a voxel (time x ranks / N^3), floor_ns_*
 * the least any code could take on this core (the floor analysis at the top of mdn.c): the
 * transcendental functions a voxel needs at least (counted from the architecture: the log of
 * x0, the softplus of every activation and head output, the erfc, the e^-x^2 of the
 * reverse pass, the halos' ln(alpha / sigma) and log-sum-exp), each costed at the rate of
 * libmvec's four-lane exp, log and erfc measured here on a vector in L1 (the fastest of 50
 * sweeps), or
 * the bytes a voxel must move (delta in, d lnL / d delta out) at the STREAM triad rate
 * measured here over the rank's voxels, whichever is larger. floor_share = floor_ns_fwd_grad
 * / ns_voxel_fwd_grad, cpu_floor_share the same from cpu_fwd_grad_s (what a loaded machine
 * left the run aside). lnL is the value (for comparing with scripts/bench_loglike_torch.py).
 * Collective. */
#include "cerberus/bench.h"
#include "cerberus/exchange.h"
#include "cerberus/field.h"
#include "cerberus/likelihood.h"
#include "cerberus/status.h"
#include "cerberus/vmath.h"
#include "cerberus/weights.h"

#include <math.h>
#include <petscdmda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_max(MPI_Comm comm, double x) {
  MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_MAX, comm);
  return x;
}

static double hash01(unsigned long a, unsigned long b) {
  unsigned long long x = (a + 1) * 0x9E3779B97F4A7C15ULL ^ (b + 7) * 0xC2B2AE3D27D4EB4FULL;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  return (double)(x >> 11) / 9007199254740992.0;
}

/* ns a value of exp, log, erfc through vmath (the fastest of 50 sweeps of 4096 values). */
static void vmath_rates(double ns[3]) {
  enum { M = 4096 };
  static double x[M], y[M];
  for (int i = 0; i < M; i++) x[i] = 0.25 + 2.5 * (double)i / M;
  for (int f = 0; f < 3; f++) {
    ns[f] = INFINITY;
    for (int r = 0; r < 50; r++) {
      struct timespec t0, t1;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      if (f == 0) vmath_exp(M, x, y);
      if (f == 1) vmath_log(M, x, y);
      if (f == 2) vmath_erfc(M, x, y);
      clock_gettime(CLOCK_MONOTONIC, &t1);
      double t = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
      if (t / M < ns[f]) ns[f] = t / M;
    }
  }
}

/* Bytes a second of the triad a = b + q c over nv doubles (the fastest of 10; 24 bytes each). */
static double triad_rate(size_t nv, double *a, double *b, double *c) {
  for (size_t i = 0; i < nv; i++) b[i] = 1.0 + 1e-3 * (double)(i % 7), c[i] = 0.5;
  double best = INFINITY;
  for (int r = 0; r < 10; r++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < nv; i++) a[i] = b[i] + 0.75 * c[i];
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double t = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (t < best) best = t;
  }
  return 24.0 * (double)nv / best;
}

/* The floor in ns a voxel (see the top of mdn.c), forward alone and with both gradients. */
static void floor_ns(const weights_arch *a, double halos_per_voxel, const double ns[3],
                     double bytes_per_s, double *fwd, double *both) {
  const int G = a->mdn.n_gauss;
  double e = 0, l = 1, erfc = G, eg = G; /* x0's log; the erfc; the reverse pass's e^-x^2 */
  if (a->model == WEIGHTS_NPE) {
    for (int k = 0; k < a->npe.n_layers; k++)
      if (a->npe.layer[k].activation == NPE_SOFTPLUS) {
        e += npe_layer_out_channels(&a->npe, k);
        l += npe_layer_out_channels(&a->npe, k);
      }
    e += 3 * G - 1; /* softplus of alpha_i, of the mean steps i >= 2, of sigma_i */
    l += 3 * G - 1;
  } else {
    e += 1; /* e^(beta x0); the head is the same in every voxel */
  }
  /* a halo: ln(alpha_i / sigma_i), the log-sum-exp (G exp, one log); the reverse pass's
   * responsibilities are those exps over their sum */
  e += halos_per_voxel * G;
  l += halos_per_voxel * (G + 1);
  const double cf = e * ns[0] + l * ns[1] + erfc * ns[2], cb = cf + eg * ns[0];
  const double mf = 8.0 / bytes_per_s * 1e9, mb = 16.0 / bytes_per_s * 1e9;
  *fwd = cf > mf ? cf : mf;
  *both = cb > mb ? cb : mb;
}

/* One ghost update by DMDA with the slab ownership (x fastest = our k; z = our i). */
static int dmda_time(field *f, int g, int reps, double *secs) {
  *secs = NAN;
  PetscInt *lz = malloc((size_t)f->size * sizeof *lz);
  if (!lz) return CB_ERROR(CB_ERR_MEM, "out of memory");
  for (int r = 0; r < f->size; r++) lz[r] = (PetscInt)(f->plane_start[r + 1] - f->plane_start[r]);
  DM da;
  Vec gv, lv;
  PetscInt n = (PetscInt)f->n;
  PetscErrorCode e =
      DMDACreate3d(f->comm, DM_BOUNDARY_PERIODIC, DM_BOUNDARY_PERIODIC, DM_BOUNDARY_PERIODIC,
                   DMDA_STENCIL_BOX, n, n, n, 1, 1, f->size, 1, g, NULL, NULL, lz, &da);
  free(lz);
  if (e) return CB_ERROR(CB_ERR_MPI, "DMDACreate3d failed (%d)", (int)e);
  e = DMSetUp(da);
  if (!e) e = DMCreateGlobalVector(da, &gv);
  if (!e) e = DMCreateLocalVector(da, &lv);
  if (e) return CB_ERROR(CB_ERR_MPI, "DMDA set-up failed (%d)", (int)e);
  VecSet(gv, 1.25);
  DMGlobalToLocalBegin(da, gv, INSERT_VALUES, lv);
  DMGlobalToLocalEnd(da, gv, INSERT_VALUES, lv);
  double t0 = bench_clock_start(f->comm);
  for (int r = 0; r < reps; r++) {
    DMGlobalToLocalBegin(da, gv, INSERT_VALUES, lv);
    DMGlobalToLocalEnd(da, gv, INSERT_VALUES, lv);
  }
  *secs = bench_clock_stop(f->comm, t0) / reps;
  VecDestroy(&lv);
  VecDestroy(&gv);
  DMDestroy(&da);
  return CB_OK;
}

static int ours_time(field *f, int g, int reps, double *secs) {
  exchange *ex = NULL;
  const size_t nn = (size_t)(f->n * f->n);
  CB_CALL(exchange_create(f->comm, f->local_n0, nn, g, &ex));
  double *buf = calloc((size_t)(f->local_n0 + 2 * g) * nn, sizeof *buf);
  if (!buf) {
    exchange_destroy(&ex);
    return CB_ERROR(CB_ERR_MEM, "out of memory");
  }
  for (size_t i = 0; i < (size_t)(f->local_n0 + 2 * g) * nn; i++) buf[i] = 1.25;
  int st = exchange_begin(ex, buf);
  if (!st) st = exchange_end(ex);
  double t0 = bench_clock_start(f->comm);
  for (int r = 0; r < reps && !st; r++) {
    st = exchange_begin(ex, buf);
    if (!st) st = exchange_end(ex);
  }
  *secs = bench_clock_stop(f->comm, t0) / reps;
  free(buf);
  exchange_destroy(&ex);
  CB_CALL(st);
  return CB_OK;
}

int bench_loglike(MPI_Comm comm, options *o) {
  long n, repeat;
  weights_arch a;
  CB_CALL(bench_grid_options(o, 3, &n, &repeat));
  CB_CALL(weights_arch_from_options(o, &a));
  CB_CALL(options_finish(o));
  const int g = a.model == WEIGHTS_NPE ? npe_ghost_width(&a.npe) : 1;
  field *f = NULL;
  CB_CALL(field_create(comm, n, 2.0 * (double)n, g, &f));
  likelihood *lk = NULL;
  int st = likelihood_create(f, &a, &lk);
  const size_t nv = (size_t)f->n_real_local, nw = weights_count(&a);
  double *delta = field_alloc_real(f), *gd = field_alloc_real(f);
  double *w = calloc(nw, sizeof *w), *gw = calloc(nw, sizeof *gw);
  size_t nh = (size_t)(n * n * n / 20);
  double *pos = malloc(3 * nh * sizeof *pos), *mass = malloc(nh * sizeof *mass);
  if (!st && (!delta || !gd || !w || !gw || !pos || !mass))
    st = CB_ERROR(CB_ERR_MEM, "out of memory for bench loglike at %ld^3", n);
  double fwd = 0, both = 0, share = 0, bpv = 0, t_ours = 0, t_dmda = 0, L1 = 0, cf = 0, cb = 0;
  if (!st) {
    const ptrdiff_t nn = f->n * f->n;
    for (size_t v = 0; v < nv; v++)
      delta[v] = exp(1.2 * (hash01(3, (unsigned long)(f->local_0_start * nn) + v) - 0.5)) - 1;
    for (size_t h = 0; h < nh; h++) {
      for (int x = 0; x < 3; x++) pos[3 * h + x] = f->L * hash01(4, 3 * h + x);
      mass[h] = 2e12 * exp(4.0 * hash01(5, h));
    }
    for (size_t i = 0; i < nw; i++) w[i] = 0.3 * (2 * hash01(6, i) - 1);
    st = likelihood_set_halos(lk, "bench", nh, pos, mass, 2e12);
  }
  if (!st) st = likelihood_evaluate(lk, delta, w, &L1, NULL, NULL);
  if (!st) st = likelihood_evaluate(lk, delta, w, &L1, gw, gd);
  if (!st) {
    double t0 = bench_clock_start(comm), c0 = cpu_now();
    for (long r = 0; r < repeat && !st; r++)
      st = likelihood_evaluate(lk, delta, w, &L1, NULL, NULL);
    cf = cpu_max(comm, (cpu_now() - c0) / (double)repeat);
    fwd = bench_clock_stop(comm, t0) / (double)repeat;
  }
  if (!st) {
    npe *net = likelihood_engine(lk);
    double w0 = net ? npe_exchange_wait(net) : 0;
    double t0 = bench_clock_start(comm), c0 = cpu_now();
    for (long r = 0; r < repeat && !st; r++) st = likelihood_evaluate(lk, delta, w, &L1, gw, gd);
    cb = cpu_max(comm, (cpu_now() - c0) / (double)repeat);
    both = bench_clock_stop(comm, t0) / (double)repeat;
    double wait = (net ? npe_exchange_wait(net) : 0) - w0;
    MPI_Allreduce(MPI_IN_PLACE, &wait, 1, MPI_DOUBLE, MPI_MAX, comm);
    share = wait / ((double)repeat * both);
    double bytes = (double)likelihood_memory(lk) + 2.0 * (double)nv * sizeof(double);
    bpv = bytes / (double)(nv ? nv : 1);
    MPI_Allreduce(MPI_IN_PLACE, &bpv, 1, MPI_DOUBLE, MPI_MAX, comm);
  }
  double rates[3] = {0}, bw = 0, ffwd = 0, fboth = 0;
  if (!st) {
    vmath_rates(rates);
    MPI_Allreduce(MPI_IN_PLACE, rates, 3, MPI_DOUBLE, MPI_MIN, comm);
    double *tmp = field_alloc_real(f);
    if (!tmp) st = CB_ERROR(CB_ERR_MEM, "out of memory for bench loglike at %ld^3", n);
    if (!st) bw = triad_rate(nv, tmp, delta, gd); /* delta and gd are not needed any more */
    if (tmp) fftw_free(tmp);
    MPI_Allreduce(MPI_IN_PLACE, &bw, 1, MPI_DOUBLE, MPI_MAX, comm);
    floor_ns(&a, (double)likelihood_n_halos(lk) / ((double)n * n * n), rates, bw, &ffwd, &fboth);
  }
  if (!st) st = ours_time(f, g, 20, &t_ours);
  if (!st) st = dmda_time(f, g, 20, &t_dmda);
  if (!st) {
    char row[640];
    const double nvox = (double)n * n * n, nsf = fwd * f->size / nvox * 1e9,
                 nsb = both * f->size / nvox * 1e9;
    snprintf(row, sizeof row,
             "loglike,%ld,%d,%ld,%.5g,%.5g,%.3f,%.4f,%.0f,%.4g,%.4g,%.5g,%.5g,%.4g,%.4g,%.4g,%.4g,"
             "%.3f,%.3f,%.17g",
             n, f->size, repeat, fwd, both, both / fwd, share, bpv, t_ours, t_dmda, cf, cb, nsf,
             nsb, ffwd, fboth, fboth / nsb, fboth / (cb * f->size / nvox * 1e9), L1);
    bench_print_csv(comm,
                    "bench,n_grid,ranks,repeat,fwd_s,fwd_grad_s,grad_over_fwd,exchange_wait_share,"
                    "bytes_per_voxel,ghost_ours_s,ghost_dmda_s,cpu_fwd_s,cpu_fwd_grad_s,"
                    "ns_voxel_fwd,ns_voxel_fwd_grad,floor_ns_fwd,floor_ns_fwd_grad,floor_share,"
                    "cpu_floor_share,lnL",
                    row);
  }
  free(pos);
  free(mass);
  free(w);
  free(gw);
  if (delta) fftw_free(delta);
  if (gd) fftw_free(gd);
  likelihood_destroy(&lk);
  field_destroy(&f);
  CB_CALL(st);
  return CB_OK;
}
