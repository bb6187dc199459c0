/* bench_hmc: `cerberus bench hmc -field F -catalogue C [options]`, the samplers of issue 12 on
 * the posterior of the weights (MODEL.md section 8): for each variant, K chains (-chains, 4)
 * of -warmup + -samples steps, taken in rounds (every chain one step a round) on the whole
 * communicator, all from the best of -map_starts MAP optimisations (map.h; not counted in
 * grads), or from random starts N(0, 0.1^2) with -map_starts 0, or from -weights FILE. The default
 * mock is `cerberus mock -o mock.h5` (64^3, 250 Mpc/h, st-pbs); -engine_monotone and the
 * architecture options apply to every variant.
 *
 * Variants (-variants, comma-separated): diag, dense, bfgs (HMC, leapfrog, with that metric;
 * bfgs is the quasi-Newton variant), mams (MAMS with a diagonal metric), unit.
 * One CSV row per variant:
 *   bench,n_grid,ranks,variant,monotone,chains,warmup,samples,grads,seconds,
 *   ess_lp,ess_mf_min,ess_lp_per_1000_grads,ess_mf_per_1000_grads,ess_lp_per_s,ess_mf_per_s,
 *   rhat_lp,rhat_mf_max,rhat_weights_max,seconds_to_rhat
 * ess_* are bulk ESS (diagnose.h) of the sampling draws: lp, and the smallest over the 15
 * binned mass-function values; per 1000 gradient evaluations and per second of the whole run
 * (warm-up included: the cost of getting there). seconds_to_rhat: wall time from the start
 * until R-hat < 1.01 on lp and on every binned mass-function value, checked every 10 rounds of
 * sampling from the 20th (-1 if never). Collective. */
#include "cerberus/bench.h"
#include "cerberus/diagnose.h"
#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/hmc.h"
#include "cerberus/likelihood.h"
#include "cerberus/log.h"
#include "cerberus/map.h"
#include "cerberus/posterior.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NMF = POSTERIOR_MF_BINS * POSTERIOR_MF_MASSES, NQ = 1 + NMF };

static int target(void *ctx, const double *q, double *lp, double *grad) {
  return posterior_evaluate(ctx, q, lp, grad, NULL);
}

/* max R-hat over lp and the mass function, and over the weights, of draws [0, t) of x
 * (x[q][chain][draw] with stride S per chain). */
static void rhats(const double *x, const double *w, int K, long S, long t, size_t d, double *id,
                  double *wmax, double *buf) {
  *id = 0;
  *wmax = 0;
  for (int q = 0; q < NQ; q++) {
    for (int c = 0; c < K; c++)
      memcpy(buf + (size_t)c * (size_t)t, x + ((size_t)q * (size_t)K + (size_t)c) * (size_t)S,
             (size_t)t * sizeof *buf);
    double r = diagnose_rhat((size_t)K, (size_t)t, buf);
    if (!(r <= *id)) *id = r;
  }
  for (size_t j = 0; w && j < d; j++) {
    for (int c = 0; c < K; c++)
      for (long s = 0; s < t; s++)
        buf[(size_t)c * (size_t)t + (size_t)s] = w[(((size_t)c * (size_t)S) + (size_t)s) * d + j];
    double r = diagnose_rhat((size_t)K, (size_t)t, buf);
    if (!(r <= *wmax)) *wmax = r;
  }
}

static int run_variant(MPI_Comm comm, posterior *post, const char *name, const hmc_config *base,
                       int K, long W, long S, long seed, const double *w0, const double *map,
                       long n_grid, bool monotone, bool header) {
  const size_t d = posterior_dim(post);
  hmc_config cfg = *base;
  if (!strcmp(name, "diag"))
    cfg.metric = HMC_METRIC_DIAG;
  else if (!strcmp(name, "dense"))
    cfg.metric = HMC_METRIC_DENSE;
  else if (!strcmp(name, "bfgs"))
    cfg.metric = HMC_METRIC_BFGS;
  else if (!strcmp(name, "unit"))
    cfg.metric = HMC_METRIC_UNIT;
  else if (!strcmp(name, "mams")) {
    cfg.algorithm = HMC_ALG_MAMS;
    cfg.metric = HMC_METRIC_DIAG;
  } else
    return CB_ERROR(CB_ERR_INPUT, "-variants: unknown variant '%s' (diag, dense, bfgs, mams, unit)",
                    name);
  cfg.n_warmup = W;
  hmc **h = calloc((size_t)K, sizeof *h);
  double *x = calloc((size_t)NQ * (size_t)K * (size_t)S, sizeof *x);
  double *wd = calloc((size_t)K * (size_t)S * d, sizeof *wd);
  double *buf = calloc((size_t)K * (size_t)S + 1, sizeof *buf), *q0 = calloc(d, sizeof *q0);
  double mf[NMF];
  int st = h && x && wd && buf && q0 ? CB_OK : CB_ERROR(CB_ERR_MEM, "out of memory");
  double t0 = bench_clock_start(comm), t_rhat = -1;
  for (int c = 0; c < K && !st; c++) {
    cfg.seed = (unsigned long)(seed + c);
    if (w0) {
      st = posterior_from_weights(post, "-weights", w0, q0);
    } else if (map) {
      memcpy(q0, map, d * sizeof *q0);
    } else {
      gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
      gsl_rng_set(r, (unsigned long)(seed + 7919 * (c + 2)));
      for (size_t i = 0; i < d; i++) q0[i] = gsl_ran_gaussian(r, 0.1);
      gsl_rng_free(r);
    }
    if (!st) st = hmc_create(comm, d, &cfg, target, post, q0, &h[c]);
  }
  for (long t = 0; t < W + S && !st; t++) {
    for (int c = 0; c < K && !st; c++) {
      hmc_step_info info;
      st = hmc_step(h[c], &info);
      if (st || t < W) continue;
      const long s = t - W;
      st = posterior_mass_function(post, hmc_position(h[c]), mf);
      x[(size_t)c * (size_t)S + (size_t)s] = info.lp;
      for (int q = 0; q < NMF; q++)
        x[((size_t)(q + 1) * (size_t)K + (size_t)c) * (size_t)S + (size_t)s] = mf[q];
      posterior_to_weights(post, hmc_position(h[c]), wd + ((size_t)c * (size_t)S + (size_t)s) * d);
    }
    const long n = t + 1 - W;
    if (!st && t_rhat < 0 && n >= 20 && n % 10 == 0) {
      double rid, rw;
      rhats(x, NULL, K, S, n, d, &rid, &rw, buf);
      if (rid < 1.01) t_rhat = MPI_Wtime() - t0;
    }
  }
  double secs = bench_clock_stop(comm, t0);
  if (!st) {
    long grads = 0;
    for (int c = 0; c < K; c++) grads += hmc_n_grad(h[c]);
    double ess_lp = diagnose_ess_bulk((size_t)K, (size_t)S, x), ess_mf = INFINITY;
    for (int q = 1; q < NQ; q++) {
      double e = diagnose_ess_bulk((size_t)K, (size_t)S, x + (size_t)q * (size_t)K * (size_t)S);
      if (!(e >= ess_mf)) ess_mf = e;
    }
    double rid, rw, rlp = diagnose_rhat((size_t)K, (size_t)S, x);
    rhats(x, wd, K, S, S, d, &rid, &rw, buf);
    int ranks;
    MPI_Comm_size(comm, &ranks);
    char row[1024];
    snprintf(
        row, sizeof row,
        "hmc,%ld,%d,%s,%d,%d,%ld,%ld,%ld,%.3f,%.1f,%.1f,%.3f,%.3f,%.3f,%.3f,%.4f,%.4f,%.4f,%.2f",
        n_grid, ranks, name, monotone, K, W, S, grads, secs, ess_lp, ess_mf,
        1000 * ess_lp / (double)grads, 1000 * ess_mf / (double)grads, ess_lp / secs, ess_mf / secs,
        rlp, rid, rw, t_rhat);
    const char *head = "bench,n_grid,ranks,variant,monotone,chains,warmup,samples,grads,seconds,"
                       "ess_lp,ess_mf_min,ess_lp_per_1000_grads,ess_mf_per_1000_grads,"
                       "ess_lp_per_s,ess_mf_per_s,rhat_lp,rhat_mf_max,rhat_weights_max,"
                       "seconds_to_rhat";
    if (header) {
      bench_print_csv(comm, head, row);
    } else {
      int rank;
      MPI_Comm_rank(comm, &rank);
      if (rank == 0) printf("%s\n", row);
      fflush(stdout);
    }
  }
  for (int c = 0; h && c < K; c++) hmc_destroy(&h[c]);
  free(h);
  free(x);
  free(wd);
  free(buf);
  free(q0);
  CB_CALL(st);
  return CB_OK;
}

int bench_hmc(MPI_Comm comm, options *o) {
  char fpath[4096], cpath[4096], wpath[4096], variants[256];
  bool monotone = false, have_w = false;
  long K = 4, W = 200, S = 200, seed = 1, ns = 10;
  weights_arch a;
  CB_CALL(options_string(o, "-field", "density field file (/delta), e.g. a mock", "mock.h5", fpath,
                         sizeof fpath, NULL));
  CB_CALL(options_string(o, "-catalogue", "halo catalogue file (/halos)", "mock.h5", cpath,
                         sizeof cpath, NULL));
  CB_CALL(weights_arch_from_options(o, &a));
  CB_CALL(options_string(o, "-weights", "starting weights (default: the MAP)", NULL, wpath,
                         sizeof wpath, &have_w));
  CB_CALL(options_bool(o, "-engine_monotone", "monotone engine", false, &monotone));
  long map_starts = 2, map_its = 200;
  CB_CALL(options_int(o, "-map_starts", "MAP optimisations for the start (0: random starts)", 2,
                      &map_starts));
  CB_CALL(options_int(o, "-map_iterations", "iterations of each MAP optimisation", 200, &map_its));
  CB_CALL(options_string(o, "-variants", "comma-separated: diag,dense,bfgs,mams,unit",
                         "diag,dense,bfgs,mams", variants, sizeof variants, NULL));
  CB_CALL(options_int(o, "-chains", "chains per variant", 4, &K));
  CB_CALL(options_int(o, "-warmup", "warm-up steps", 200, &W));
  CB_CALL(options_int(o, "-samples", "samples after warm-up", 200, &S));
  CB_CALL(options_int(o, "-seed", "seed (chain c: seed + c)", 1, &seed));
  hmc_config base;
  hmc_config_default(&base);
  CB_CALL(options_real(o, "-step_size", "initial step size", 0.05, &base.step_size));
  CB_CALL(options_int(o, "-n_steps", "largest number of steps a trajectory", 10, &ns));
  base.n_steps = (int)ns;
  long mcap = base.mams_mean_steps_max;
  CB_CALL(options_int(o, "-mams_mean_steps_max", "MAMS: cap on L / eps", mcap, &mcap));
  CB_CHECK(mcap >= 1 && mcap <= 100000, CB_ERR_INPUT, "-mams_mean_steps_max: %ld not in [1, 1e5]",
           mcap);
  base.mams_mean_steps_max = (int)mcap;
  CB_CALL(options_finish(o));
  CB_CHECK(K >= 2, CB_ERR_INPUT, "-chains must be at least 2 for R-hat (got %ld)", K);
  CB_CHECK(W >= 0 && S >= 20, CB_ERR_INPUT, "-samples must be >= 20 and -warmup >= 0");
  int ghost = a.model == WEIGHTS_NPE ? npe_ghost_width(&a.npe) : 1;
  field *f = NULL;
  double *delta = NULL, *w0 = NULL;
  likelihood *lk = NULL;
  posterior *post = NULL;
  int st = h5io_read_field_file(comm, fpath, "/delta", ghost, &f, &delta);
  if (!st) st = likelihood_create(f, &a, &lk);
  if (!st) st = likelihood_read_catalogue(lk, cpath, 0);
  if (!st && have_w) st = weights_read_expect(comm, wpath, &a, &w0);
  if (!st) {
    posterior_config pc;
    posterior_config_default(&pc);
    pc.monotone = monotone;
    st = posterior_create(f, lk, delta, &a, &pc, &post);
  }
  if (!st)
    log_info("bench hmc: %ld halos, %zu weights, %ld chains x (%ld + %ld) per variant",
             likelihood_n_halos(lk), posterior_dim(post), K, W, S);
  double *map = NULL;
  if (!st && !have_w && map_starts > 0) {
    map_config mc;
    map_config_default(&mc);
    mc.n_starts = map_starts;
    mc.max_iterations = map_its;
    mc.seed = (unsigned long)seed + 7919;
    double lp;
    long nev;
    map = calloc(posterior_dim(post), sizeof *map);
    st = map ? map_find(post, &mc, map, &lp, &nev) : CB_ERROR(CB_ERR_MEM, "out of memory");
  }
  char *save = NULL;
  bool header = true;
  for (char *v = strtok_r(variants, ",", &save); v && !st; v = strtok_r(NULL, ",", &save)) {
    st = run_variant(comm, post, v, &base, (int)K, W, S, seed, w0, map, (long)f->n, monotone,
                     header);
    header = false;
  }
  posterior_destroy(&post);
  likelihood_destroy(&lk);
  if (delta) fftw_free(delta);
  field_destroy(&f);
  free(w0);
  free(map);
  CB_CALL(st);
  return CB_OK;
}
