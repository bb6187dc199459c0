/* bench_hmc: `cerberus bench hmc -field F -catalogue C [options]`, the samplers of issue 12 on
 * the posterior of the weights (MODEL.md section 8): for each variant, K chains (-chains, 4)
 * of -warmup + -samples steps, taken in rounds (every chain one step a round) on the whole
 * communicator, all from the best of -map_starts MAP optimisations (map.h; its cost is reported
 * apart, map_seconds, and not counted in grads), or from random starts N(0, 0.1^2) with
 * -map_starts 0, or from -weights FILE. The default mock is `cerberus mock -o mock.h5` (64^3,
 * 250 Mpc/h, st-pbs); -engine_monotone, -standardise_features, -relative_bias, -prior_sigma,
 * -pool_adaptation, -target_accept and the architecture options apply to every variant.
 *
 * Variants (-variants, comma-separated): diag, dense, bfgs (HMC, leapfrog, with that metric;
 * bfgs is the quasi-Newton variant), mams (MAMS with a diagonal metric), mams_dense, unit.
 * One CSV row per variant:
 *   bench,n_grid,ranks,variant,monotone,chains,warmup,samples,grads,seconds,cpu_seconds,
 *   map_seconds,map_cpu_seconds,ess_lp,ess_mf_min,ess_lp_per_1000_grads,ess_mf_per_1000_grads,
 *   ess_lp_per_s,ess_mf_per_s,rhat_lp,rhat_mf_max,rhat_weights_max,draws_to_rhat,
 *   grads_to_rhat,seconds_to_rhat,cpu_seconds_to_rhat,sampling_grads,
 *   ess_lp_per_1000_sampling_grads,ess_mf_per_1000_sampling_grads
 * ess_* are bulk ESS (diagnose.h) of the sampling draws: lp, and the smallest over the 15
 * binned mass-function values; per 1000 gradient evaluations and per second of the whole run
 * (warm-up included: the cost of getting there), and per 1000 gradients of the sampling phase
 * alone (sampling_grads: the figure samplers are usually quoted by, Stan's n_leapfrog summed
 * over the kept draws). cpu_seconds: CPU time of all the ranks
 * (bench_cpu_seconds), the load-independent cost on a shared machine. The R-hats (rank-
 * normalised split, of lp, the largest over the mass function, the largest over the weights)
 * are of all the draws kept. *_to_rhat: the draws a chain, the gradients (all chains, warm-up
 * included) and the wall and CPU seconds from the start of the warm-up until R-hat < 1.01 on lp
 * and on every binned mass-function value, checked on the growing draws every -rhat_every
 * (50) draws from the 20th (-1 if never); -stop_at_rhat ends the variant there (samples is
 * then the draws kept). Add map_seconds for the time from nothing. Collective. */
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

/* Draws [0, n) of quantity q of every chain, contiguous (chain after chain), into buf; x holds
 * x[q][chain][draw] with stride S per chain. */
static const double *gather(const double *x, int q, int K, long S, long n, double *buf) {
  for (int c = 0; c < K; c++)
    memcpy(buf + (size_t)c * (size_t)n, x + ((size_t)q * (size_t)K + (size_t)c) * (size_t)S,
           (size_t)n * sizeof *buf);
  return buf;
}

/* R-hat of draws [0, n): of lp, the largest over the binned mass function, and (w not NULL) the
 * largest over the weights (w[chain][draw][weight], stride S per chain). */
static int rhats(const double *x, const double *w, int K, long S, long n, size_t d, double *rlp,
                 double *rmf, double *wmax, double *buf) {
  int worst = 0; /* the mass-function value with the largest R-hat */
  *rlp = diagnose_rhat((size_t)K, (size_t)n, gather(x, 0, K, S, n, buf));
  *rmf = 0;
  *wmax = NAN;
  for (int q = 1; q < NQ; q++) {
    double r = diagnose_rhat((size_t)K, (size_t)n, gather(x, q, K, S, n, buf));
    if (!(r <= *rmf)) {
      *rmf = r;
      worst = q - 1;
    }
  }
  for (size_t j = 0; w && j < d; j++) {
    for (int c = 0; c < K; c++)
      for (long s = 0; s < n; s++)
        buf[(size_t)c * (size_t)n + (size_t)s] = w[(((size_t)c * (size_t)S) + (size_t)s) * d + j];
    double r = diagnose_rhat((size_t)K, (size_t)n, buf);
    if (!(r <= *wmax)) *wmax = r;
  }
  return worst;
}

typedef struct hmc_run {
  int K;                 /* chains */
  long W, S;             /* warm-up, largest number of samples */
  long seed, rhat_every; /* R-hat checked every rhat_every draws */
  bool stop, monotone;   /* stop at R-hat < 1.01 */
  double map_s, map_cpu; /* the MAP's cost (the same for every variant) */
  long n_grid;
  const double *w0, *map; /* starting weights, or the MAP (theta), or NULL: random starts */
} hmc_run;

#define BENCH_HMC_RHAT 1.01

static int run_variant(MPI_Comm comm, posterior *post, const char *name, const hmc_config *base,
                       const hmc_run *R, bool header) {
  const size_t d = posterior_dim(post);
  const int K = R->K;
  const long W = R->W, S = R->S;
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
  } else if (!strcmp(name, "mams_dense")) {
    cfg.algorithm = HMC_ALG_MAMS;
    cfg.metric = HMC_METRIC_DENSE;
  } else
    return CB_ERROR(CB_ERR_INPUT,
                    "-variants: unknown variant '%s' (diag, dense, bfgs, mams, mams_dense, unit)",
                    name);
  cfg.n_warmup = W;
  hmc **h = calloc((size_t)K, sizeof *h);
  double *x = calloc((size_t)NQ * (size_t)K * (size_t)S, sizeof *x);
  double *wd = calloc((size_t)K * (size_t)S * d, sizeof *wd);
  double *buf = calloc((size_t)K * (size_t)S + 1, sizeof *buf), *q0 = calloc(d, sizeof *q0);
  double mf[NMF];
  int st = h && x && wd && buf && q0 ? CB_OK : CB_ERROR(CB_ERR_MEM, "out of memory");
  double c0 = bench_cpu_seconds(comm), t0 = bench_clock_start(comm);
  double t_rhat = -1, cpu_rhat = -1;
  long n_rhat = -1, g_rhat = -1, n = 0; /* draws at R-hat < 1.01, draws kept */
  long g_warm = 0;                      /* gradients at the end of the warm-up */
  for (int c = 0; c < K && !st; c++) {
    cfg.seed = (unsigned long)(R->seed + c);
    if (R->w0) {
      st = posterior_from_weights(post, "-weights", R->w0, q0);
    } else if (R->map) {
      memcpy(q0, R->map, d * sizeof *q0);
    } else {
      gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
      gsl_rng_set(r, (unsigned long)(R->seed + 7919 * (c + 2)));
      for (size_t i = 0; i < d; i++) q0[i] = gsl_ran_gaussian(r, 0.1);
      gsl_rng_free(r);
    }
    if (!st) st = hmc_create(comm, d, &cfg, target, post, q0, &h[c]);
  }
  int *idx = calloc((size_t)K, sizeof *idx);
  if (!idx && !st) st = CB_ERROR(CB_ERR_MEM, "out of memory");
  for (int c = 0; idx && c < K; c++) idx[c] = c;
  for (long t = 0; t < W + S && !st; t++) {
    if (t > 0) st = hmc_pool(h, idx, K, K, MPI_COMM_NULL); /* the last round's adaptation */
    if (t == W)
      for (int c = 0; c < K; c++) g_warm += hmc_n_grad(h[c]);
    for (int c = 0; c < K && !st; c++) {
      hmc_step_info info;
      st = hmc_step(h[c], &info);
      if (st || t < W) continue;
      const long s = t - W;
      st = posterior_mass_function(post, hmc_position(h[c]), mf);
      x[(size_t)c * (size_t)S + (size_t)s] = info.lp;
      for (int q = 0; q < NMF; q++)
        x[((size_t)(q + 1) * (size_t)K + (size_t)c) * (size_t)S + (size_t)s] = mf[q];
      if (!st)
        st = posterior_to_weights(post, hmc_position(h[c]),
                                  wd + ((size_t)c * (size_t)S + (size_t)s) * d);
    }
    if (st || t < W) continue;
    n = t + 1 - W;
    if (t_rhat < 0 && n >= 20 && n % R->rhat_every == 0) {
      double rlp, rmf, rw;
      const int q = rhats(x, NULL, K, S, n, d, &rlp, &rmf, &rw, buf);
      const double wall = MPI_Wtime() - t0, cpu = bench_cpu_seconds(comm) - c0;
      long g = 0;
      for (int c = 0; c < K; c++) g += hmc_n_grad(h[c]);
      log_info("bench hmc %s: %ld draws a chain, %ld gradients, %.0f s (%.0f CPU s): R-hat lp "
               "%.4f, mass function %.4f (density bin %d, M = %.3g)",
               name, n, g, wall, cpu, rlp, rmf, q / POSTERIOR_MF_MASSES,
               posterior_mf_masses(post)[q % POSTERIOR_MF_MASSES]);
      if (rlp < BENCH_HMC_RHAT && rmf < BENCH_HMC_RHAT) {
        t_rhat = wall;
        cpu_rhat = cpu;
        n_rhat = n;
        g_rhat = g;
        if (R->stop) break;
      }
    }
  }
  double secs = bench_clock_stop(comm, t0), cpu = bench_cpu_seconds(comm) - c0;
  if (!st && n < 20) st = CB_ERROR(CB_ERR_INPUT, "bench hmc: fewer than 20 draws");
  if (!st) {
    long grads = 0;
    for (int c = 0; c < K; c++) grads += hmc_n_grad(h[c]);
    double ess_lp = diagnose_ess_bulk((size_t)K, (size_t)n, gather(x, 0, K, S, n, buf));
    double ess_mf = INFINITY;
    for (int q = 1; q < NQ; q++) {
      double e = diagnose_ess_bulk((size_t)K, (size_t)n, gather(x, q, K, S, n, buf));
      if (!(e >= ess_mf)) ess_mf = e;
    }
    double rlp, rmf, rw;
    rhats(x, wd, K, S, n, d, &rlp, &rmf, &rw, buf);
    int ranks;
    MPI_Comm_size(comm, &ranks);
    char row[1024];
    snprintf(row, sizeof row,
             "hmc,%ld,%d,%s,%d,%d,%ld,%ld,%ld,%.2f,%.2f,%.2f,%.2f,%.1f,%.1f,%.3f,%.3f,%.4f,%.4f,"
             "%.4f,%.4f,%.4f,%ld,%ld,%.2f,%.2f,%ld,%.3f,%.3f",
             R->n_grid, ranks, name, R->monotone, K, W, n, grads, secs, cpu, R->map_s, R->map_cpu,
             ess_lp, ess_mf, 1000 * ess_lp / (double)grads, 1000 * ess_mf / (double)grads,
             ess_lp / secs, ess_mf / secs, rlp, rmf, rw, n_rhat, g_rhat, t_rhat, cpu_rhat,
             grads - g_warm, 1000 * ess_lp / (double)(grads - g_warm),
             1000 * ess_mf / (double)(grads - g_warm));
    const char *head = "bench,n_grid,ranks,variant,monotone,chains,warmup,samples,grads,seconds,"
                       "cpu_seconds,map_seconds,map_cpu_seconds,ess_lp,ess_mf_min,"
                       "ess_lp_per_1000_grads,ess_mf_per_1000_grads,ess_lp_per_s,ess_mf_per_s,"
                       "rhat_lp,rhat_mf_max,rhat_weights_max,draws_to_rhat,grads_to_rhat,"
                       "seconds_to_rhat,cpu_seconds_to_rhat,sampling_grads,"
                       "ess_lp_per_1000_sampling_grads,ess_mf_per_1000_sampling_grads";
    bench_print_csv(comm, header ? head : NULL, row);
  }
  for (int c = 0; h && c < K; c++) hmc_destroy(&h[c]);
  free(h);
  free(idx);
  free(x);
  free(wd);
  free(buf);
  free(q0);
  CB_CALL(st);
  return CB_OK;
}

int bench_hmc(MPI_Comm comm, options *o) {
  char fpath[4096], cpath[4096], wpath[4096], variants[256];
  bool monotone = false, standardise = false, have_w = false, laplace = false, rel_bias = false;
  double *cov = NULL; /* the Laplace covariance at the MAP */
  long K = 4, W = 200, S = 200, seed = 1;
  weights_arch a;
  CB_CALL(options_string(o, "-field", "density field file (/delta), e.g. a mock", "mock.h5", fpath,
                         sizeof fpath, NULL));
  CB_CALL(options_string(o, "-catalogue", "halo catalogue file (/halos)", "mock.h5", cpath,
                         sizeof cpath, NULL));
  CB_CALL(weights_arch_from_options(o, &a));
  CB_CALL(options_string(o, "-weights", "starting weights (default: the MAP)", NULL, wpath,
                         sizeof wpath, &have_w));
  CB_CALL(options_bool(o, "-engine_monotone", "monotone engine", false, &monotone));
  double prior_sigma = 10;
  CB_CALL(options_real(o, "-prior_sigma",
                       "width of the Gaussian prior on every weight (MODEL.md: 10)", 10.0,
                       &prior_sigma));
  CB_CALL(options_bool(o, "-laplace_metric",
                       "start every metric from the Laplace covariance at the MAP", false,
                       &laplace));
  CB_CALL(options_bool(o, "-relative_bias",
                       "with -engine_monotone -standardise_features: the first layer's bias "
                       "relative to its centre weight",
                       false, &rel_bias));
  CB_CALL(options_bool(o, "-standardise_features",
                       "sample the head's weights of the standardised features", false,
                       &standardise));
  long map_starts = 4, map_its = 200;
  CB_CALL(options_int(o, "-map_starts", "MAP optimisations for the start (0: random starts)", 4,
                      &map_starts));
  CB_CALL(options_int(o, "-map_iterations", "iterations of each MAP optimisation", 200, &map_its));
  CB_CALL(options_string(o, "-variants", "comma-separated: diag,dense,bfgs,mams,mams_dense,unit",
                         "diag,dense,bfgs,mams", variants, sizeof variants, NULL));
  CB_CALL(options_int(o, "-chains", "chains per variant", 4, &K));
  CB_CALL(options_int(o, "-warmup", "warm-up steps", 200, &W));
  CB_CALL(options_int(o, "-samples", "samples after warm-up", 200, &S));
  CB_CALL(options_int(o, "-seed", "seed (chain c: seed + c)", 1, &seed));
  CB_CHECK(seed >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", seed);
  long rhat_every = 50;
  bool stop = false;
  CB_CALL(options_int(o, "-rhat_every", "draws between R-hat checks", 50, &rhat_every));
  CB_CALL(options_bool(o, "-stop_at_rhat", "end a variant at R-hat < 1.01 (lp, mass function)",
                       false, &stop));
  hmc_config base;
  hmc_config_default(&base);
  CB_CALL(options_bool(o, "-pool_adaptation",
                       "the chains adapt together: one step size and metric (hmc_pool)", false,
                       &base.pool_chains));
  base.step_size = 0.05;
  CB_CALL(hmc_config_options(o, &base)); /* -step_size, -n_steps, -target_accept */
  long mcap = base.mams_mean_steps_max;
  CB_CALL(options_int(o, "-mams_mean_steps_max", "MAMS: cap on L / eps", mcap, &mcap));
  CB_CHECK(mcap >= 1 && mcap <= 100000, CB_ERR_INPUT, "-mams_mean_steps_max: %ld not in [1, 1e5]",
           mcap);
  base.mams_mean_steps_max = (int)mcap;
  CB_CALL(options_finish(o));
  CB_CHECK(K >= 2, CB_ERR_INPUT, "-chains must be at least 2 for R-hat (got %ld)", K);
  CB_CHECK(W >= 0 && S >= 20, CB_ERR_INPUT, "-samples must be >= 20 and -warmup >= 0");
  CB_CHECK(rhat_every >= 1, CB_ERR_INPUT, "-rhat_every must be at least 1 (got %ld)", rhat_every);
  CB_CHECK(!laplace || (map_starts > 0 && !have_w), CB_ERR_INPUT,
           "-laplace_metric needs a MAP start (-map_starts > 0, no -weights)");
  int ghost = a.model == WEIGHTS_NPE ? npe_ghost_width(&a.npe) : 1;
  field *f = NULL;
  double *delta = NULL, *w0 = NULL;
  likelihood *lk = NULL;
  posterior *post = NULL;
  int st = h5io_read_field_file(comm, fpath, "/delta", ghost, &f, &delta);
  if (!st) st = likelihood_create(f, &a, &lk);
  if (!st) st = likelihood_read_catalogue(lk, cpath, 0);
  if (!st && have_w) st = weights_read_expect(comm, wpath, &a, &w0);
  posterior_config pc;
  posterior_config_default(&pc);
  pc.prior_sigma = prior_sigma;
  pc.monotone = monotone;
  pc.standardise = standardise;
  pc.relative_bias = rel_bias;
  if (!st) st = posterior_create(f, lk, delta, &a, &pc, &post);
  if (!st)
    log_info("bench hmc: %ld halos, %zu weights, %ld chains x (%ld + %ld) per variant",
             likelihood_n_halos(lk), posterior_dim(post), K, W, S);
  double *map = NULL, map_c0 = bench_cpu_seconds(comm), map_t0 = bench_clock_start(comm);
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
    if (!st && laplace) {
      const size_t d = posterior_dim(post);
      cov = malloc(d * d * sizeof *cov);
      st = cov ? map_laplace(post, map, pc.prior_sigma * pc.prior_sigma, cov, &nev)
               : CB_ERROR(CB_ERR_MEM, "out of memory");
      base.metric_init_dense = cov;
    }
  }
  hmc_run R = {.K = (int)K,
               .W = W,
               .S = S,
               .seed = seed,
               .rhat_every = rhat_every,
               .stop = stop,
               .monotone = monotone,
               .map_s = bench_clock_stop(comm, map_t0),
               .map_cpu = bench_cpu_seconds(comm) - map_c0,
               .n_grid = f ? (long)f->n : 0,
               .w0 = w0,
               .map = map};
  char *save = NULL;
  bool header = true;
  for (char *v = strtok_r(variants, ",", &save); v && !st; v = strtok_r(NULL, ",", &save)) {
    st = run_variant(comm, post, v, &base, &R, header);
    header = false;
  }
  posterior_destroy(&post);
  likelihood_destroy(&lk);
  if (delta) fftw_free(delta);
  field_destroy(&f);
  free(w0);
  free(map);
  free(cov);
  CB_CALL(st);
  return CB_OK;
}
