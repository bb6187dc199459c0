/* cmd_abc: `cerberus abc run | observe | summary`, ABC campaigns (MODEL.md section 10).
 *
 *   cerberus abc run -options_file params/abc_grf.opts -o campaign.h5 [-overwrite | -resume]
 *       [-group_size 1] [-simulator grf ...] [-compressor score|bandpower|identity|imnn]
 *       [-obs_file obs.h5 | -theta_true 1,0.5 -obs_seed 7] [-exact_grid 41]
 *   cerberus abc observe -simulator grf -theta_true 1,0.5 -obs_seed 7 -o obs.h5
 *   cerberus abc summary campaign.h5
 *
 * run: the world is split into rank groups (-group_size), each with its own simulator and
 * compressor; the compressor is calibrated if it needs it; the observed data (a file written by
 * `abc observe`, /data: an n^3 field or a vector, or a simulation at -theta_true with
 * -obs_seed) are compressed by group 0; then the rounds run until the campaign finishes
 * (abc.h). SIGTERM, SIGUSR1 and SIGINT stop it after the simulations in flight, with the
 * campaign file written (complete = 0) and the journal kept for -resume. When the simulator has
 * an exact likelihood and at most 2 parameters, the exact posterior on a grid around the ABC
 * posterior is stored in /exact (for scripts/plot_abc.py).
 * summary: the posterior mean, sd and quantiles of the last population (and of /exact when
 * present). Collective. */
#include "cerberus/abc.h"
#include "cerberus/commands.h"
#include "cerberus/compress.h"
#include "cerberus/groups.h"
#include "cerberus/h5io.h"
#include "cerberus/log.h"
#include "cerberus/options.h"
#include "cerberus/simulator.h"
#include "cerberus/status.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t abc_stop_flag = 0;

static void abc_on_signal(int sig) {
  (void)sig;
  abc_stop_flag = 1;
}

/* Observed data: -obs_file or -theta_true/-obs_seed. */
typedef struct obs_config {
  char file[4096];
  char dataset[256];
  bool theta_set;
  int n_theta;
  double theta[SIMULATOR_MAX_PARAMS];
  long seed;
} obs_config;

static int obs_options(options *o, obs_config *c, bool need) {
  memset(c, 0, sizeof *c);
  bool fset = false;
  CB_CALL(options_string(o, "-obs_file", "observed data (HDF5, written by `abc observe`)", NULL,
                         c->file, sizeof c->file, &fset));
  CB_CALL(options_string(o, "-obs_dataset", "dataset of the observed data", "/data", c->dataset,
                         sizeof c->dataset, NULL));
  CB_CALL(options_real_array(o, "-theta_true", "simulate the observed data at these parameters",
                             c->theta, &c->n_theta, SIMULATOR_MAX_PARAMS, &c->theta_set));
  CB_CALL(options_int(o, "-obs_seed", "seed of the observed simulation", 7, &c->seed));
  CB_CHECK(c->seed >= 0, CB_ERR_INPUT, "-obs_seed must be non-negative (got %ld)", c->seed);
  if (need)
    CB_CHECK(fset != c->theta_set, CB_ERR_INPUT,
             "give the observed data as -obs_file FILE or as -theta_true (one of the two)");
  return CB_OK;
}

/* The observed data of sim (collective on sim->comm). */
static int obs_load(simulator *sim, const obs_config *c, double *data) {
  if (c->theta_set) {
    CB_CHECK(c->n_theta == sim->n_params, CB_ERR_INPUT,
             "-theta_true has %d values, simulator '%s' has %d parameters", c->n_theta,
             sim->type->name, sim->n_params);
    CB_CALL(simulator_run(sim, c->theta, (uint64_t)c->seed, data));
    CB_CHECK(simulator_data_finite(sim, data), CB_ERR_INPUT,
             "-theta_true: the simulation of the observed data is not finite");
    return CB_OK;
  }
  h5file *h = NULL;
  CB_CALL(h5io_open(sim->comm, c->file, &h));
  int st = CB_OK;
  if (sim->is_field) {
    st = h5io_read_field(h, c->dataset, sim->field, data);
  } else {
    size_t nc = 0, nr = 0;
    double *rows = NULL;
    st = h5io_read_rows_all(h, c->dataset, &nc, &nr, &rows);
    if (st == CB_OK && !(nc == 0 && nr == sim->n_data))
      st = CB_ERROR(CB_ERR_INPUT,
                    "observed data '%s' %s: %zu x %zu values, simulator '%s' makes a vector of "
                    "%zu",
                    c->file, c->dataset, nr, nc ? nc : 1, sim->type->name, sim->n_data);
    if (st == CB_OK) memcpy(data, rows, sim->n_data * sizeof(double));
    free(rows);
    if (st == CB_OK && !simulator_data_finite(sim, data))
      st = CB_ERROR(CB_ERR_INPUT, "observed data '%s' %s: a value is not finite", c->file,
                    c->dataset);
  }
  h5io_close(&h);
  CB_CALL(st);
  return CB_OK;
}

/* The exact posterior on a grid around the final population, for the file. */
static int exact_posterior(abc *a, groups *g, simulator *sim, const abc_config *cfg,
                           const double *obs, int n_axis) {
  const int np = sim->n_params;
  double *axes = calloc((size_t)(np * n_axis), sizeof(double));
  long nl = np == 1 ? n_axis : (long)n_axis * n_axis;
  double *lp = calloc((size_t)nl, sizeof(double));
  CB_CHECK(axes && lp, CB_ERR_MEM, "out of memory for the exact posterior");
  if (g->is_coordinator) {
    const abc_population *p = abc_population_of(a, abc_rounds(a) - 1);
    for (int k = 0; k < np; k++) {
      double m, sd;
      abc_population_stats(p, np, k, &m, &sd, 0, NULL, NULL);
      double lo = m - 6 * sd, hi = m + 6 * sd;
      if (cfg->prior.kind == ABC_PRIOR_UNIFORM) {
        lo = fmax(lo, cfg->prior.a[k]);
        hi = fmin(hi, cfg->prior.b[k]);
      }
      for (int i = 0; i < n_axis; i++) axes[k * n_axis + i] = lo + (hi - lo) * i / (n_axis - 1);
    }
  }
  int st = groups_bcast(g, axes, (size_t)(np * n_axis));
  if (st == CB_OK && g->group == 0) st = abc_exact_grid(sim, &cfg->prior, obs, n_axis, axes, lp);
  double v = st;
  if (groups_bcast(g, &v, 1) == CB_OK && st == CB_OK && (int)v != CB_OK)
    st = CB_ERROR((int)v, "the exact posterior failed on group 0");
  if (st == CB_OK) st = abc_set_exact(a, n_axis, axes, lp);
  free(axes);
  free(lp);
  return st;
}

static void print_population(const abc_population *p, int np, const char *names) {
  static const double q[5] = {0.025, 0.16, 0.5, 0.84, 0.975};
  double sw = 0, sw2 = 0;
  for (long i = 0; i < p->n; i++) {
    sw += p->w[i];
    sw2 += p->w[i] * p->w[i];
  }
  log_info("posterior: %ld particles, effective %.0f, epsilon %.4g", p->n, sw * sw / sw2,
           p->epsilon);
  log_info("%-10s %12s %12s %12s %12s %12s %12s %12s", "parameter", "mean", "sd", "2.5%", "16%",
           "50%", "84%", "97.5%");
  char buf[512];
  snprintf(buf, sizeof buf, "%s", names);
  char *save = NULL, *tok = strtok_r(buf, ",", &save);
  for (int k = 0; k < np; k++) {
    double m, sd, qs[5];
    abc_population_stats(p, np, k, &m, &sd, 5, q, qs);
    log_info("%-10s %12.6g %12.6g %12.6g %12.6g %12.6g %12.6g %12.6g", tok ? tok : "?", m, sd,
             qs[0], qs[1], qs[2], qs[3], qs[4]);
    tok = strtok_r(NULL, ",", &save);
  }
}

static int abc_run(options *o, MPI_Comm comm) {
  char simname[64], out[4096];
  simulator_config scfg;
  compress_config ccfg;
  abc_config acfg;
  obs_config ocfg;
  long group_size = 1, exact_n = 41;
  bool overwrite = false, resume = false;
  CB_CALL(simulator_options(o, "grf", simname, sizeof simname, &scfg));
  const simulator_type *t = NULL;
  CB_CALL(simulator_lookup(simname, &t));
  CB_CALL(options_int(o, "-group_size", "ranks per simulation group (must divide the ranks)", 1,
                      &group_size));
  CB_CALL(compress_options(o, &ccfg));
  CB_CALL(abc_options(o, t->n_params, &acfg));
  CB_CALL(obs_options(o, &ocfg, !options_help_requested(o)));
  CB_CALL(options_int(o, "-exact_grid",
                      "points per axis of the exact posterior stored beside the samples (0: none)",
                      41, &exact_n));
  CB_CALL(options_string(o, "-o", "campaign file (HDF5)", "abc.h5", out, sizeof out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing campaign", false, &overwrite));
  CB_CALL(options_bool(o, "-resume", "continue the interrupted campaign of -o", false, &resume));
  CB_CALL(options_finish(o));
  CB_CHECK(exact_n == 0 || (exact_n >= 3 && exact_n <= 2001), CB_ERR_INPUT,
           "-exact_grid must be 0 or in [3, 2001] (got %ld)", exact_n);
  if (!resume) CB_CALL(h5io_check_output(comm, out, overwrite));
  snprintf(acfg.path, sizeof acfg.path, "%s", out);
  acfg.resume = resume;
  acfg.overwrite = overwrite;
  acfg.stop = &abc_stop_flag;

  groups *g = NULL;
  simulator *sim = NULL;
  compressor *c = NULL;
  abc *a = NULL;
  double *obs = NULL;
  CB_CHECK(group_size <= 1 << 20, CB_ERR_INPUT, "-group_size %ld is too large", group_size);
  CB_CALL(groups_create(comm, (int)group_size, &g));
  int st = simulator_create(g->comm, simname, &scfg, &sim);
  if (st == CB_OK) st = compress_create(sim, &ccfg, &c);
  /* errors above are the same on every group (same options) */
  if (st == CB_OK) st = abc_calibrate(g, sim, c, acfg.seed);
  double x_obs[SIMULATOR_MAX_PARAMS] = {0};
  if (st == CB_OK) {
    obs = calloc(sim->n_local + 1, sizeof(double));
    if (!obs) st = CB_ERROR(CB_ERR_MEM, "out of memory for the observed data");
    if (st == CB_OK && g->group == 0) st = obs_load(sim, &ocfg, obs);
    double v = st;
    groups_bcast(g, &v, 1);
    if (st == CB_OK && (int)v != CB_OK)
      st = CB_ERROR((int)v, "the observed data could not be read (see the first rank's message)");
  }
  if (st == CB_OK) st = abc_observed(g, sim, c, obs, x_obs);
  if (st == CB_OK) {
    char line[512] = "";
    for (int i = 0; i < sim->n_params; i++) {
      size_t u = strlen(line);
      snprintf(line + u, sizeof line - u, " %s=%.6g", t->param_names[i], x_obs[i]);
    }
    log_info("abc: %s on %d group(s) of %d rank(s); observed summaries%s", simname, g->n_groups,
             g->group_size, line);
    st = abc_create(g, sim, c, &acfg, x_obs, o, &a);
  }
  struct sigaction sa, old_term, old_usr1, old_int;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = abc_on_signal;
  sigemptyset(&sa.sa_mask);
  abc_stop_flag = 0;
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGUSR1, &sa, &old_usr1);
  sigaction(SIGINT, &sa, &old_int);
  bool done = false, stopped = false;
  while (st == CB_OK && !done && !stopped) st = abc_round(a, &done, &stopped);
  sigaction(SIGTERM, &old_term, NULL);
  sigaction(SIGUSR1, &old_usr1, NULL);
  sigaction(SIGINT, &old_int, NULL);
  if (st == CB_OK && stopped) {
    st = abc_write(a, false);
    if (st == CB_OK)
      log_info("abc: stopped by a signal after %ld simulations; '%s' holds the campaign so far; "
               "continue with -resume",
               abc_n_sims(a), out);
  } else if (st == CB_OK) {
    if (exact_n > 0 && simulator_has_exact(sim) && sim->n_params <= 2)
      st = exact_posterior(a, g, sim, &acfg, obs, (int)exact_n);
    if (st == CB_OK) st = abc_write(a, true);
    if (st == CB_OK && g->is_coordinator) {
      char names[512] = "";
      for (int i = 0; i < sim->n_params; i++) {
        size_t u = strlen(names);
        snprintf(names + u, sizeof names - u, "%s%s", i ? "," : "", t->param_names[i]);
      }
      log_info("abc: %d rounds, %ld simulations (%ld run now) -> %s", abc_rounds(a), abc_n_sims(a),
               abc_n_new_sims(a), out);
      print_population(abc_population_of(a, abc_rounds(a) - 1), sim->n_params, names);
    }
  }
  abc_destroy(&a);
  free(obs);
  compress_destroy(&c);
  simulator_destroy(&sim);
  groups_destroy(&g);
  CB_CALL(st);
  return CB_OK;
}

static int abc_observe(options *o, MPI_Comm comm) {
  char simname[64], out[4096];
  simulator_config scfg;
  obs_config ocfg;
  bool overwrite = false;
  CB_CALL(simulator_options(o, "grf", simname, sizeof simname, &scfg));
  CB_CALL(obs_options(o, &ocfg, false));
  CB_CALL(options_string(o, "-o", "output HDF5 file", "obs.h5", out, sizeof out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &overwrite));
  CB_CALL(options_finish(o));
  CB_CHECK(ocfg.theta_set, CB_ERR_INPUT, "abc observe needs -theta_true");
  CB_CALL(h5io_check_output(comm, out, overwrite));
  simulator *sim = NULL;
  CB_CALL(simulator_create(comm, simname, &scfg, &sim));
  double *d = calloc(sim->n_local + 1, sizeof(double));
  int st = d ? CB_OK : CB_ERROR(CB_ERR_MEM, "out of memory");
  if (st == CB_OK) st = obs_load(sim, &ocfg, d);
  if (st == CB_OK)
    st = simulator_write(sim, ocfg.theta, (uint64_t)ocfg.seed, d, out, ocfg.dataset, overwrite, o);
  if (st == CB_OK) log_info("abc observe: %s at the given parameters -> %s", simname, out);
  free(d);
  simulator_destroy(&sim);
  CB_CALL(st);
  return CB_OK;
}

/* Mean and sd of each parameter under the exact grid posterior. */
static int summary_exact(h5file *h, int np) {
  size_t nc, nr;
  double *lp = NULL, *ax[2] = {NULL, NULL};
  CB_CALL(h5io_read_rows_all(h, "/exact/log_posterior", &nc, &nr, &lp));
  int st = CB_OK;
  for (int k = 0; k < np && st == CB_OK; k++) {
    char name[32];
    size_t c1, n1;
    snprintf(name, sizeof name, "/exact/axis_%d", k);
    st = h5io_read_rows_all(h, name, &c1, &n1, &ax[k]);
  }
  if (st == CB_OK) {
    size_t n = nr, tot = np == 1 ? n : n * n;
    double mx = -INFINITY;
    for (size_t i = 0; i < tot; i++) mx = fmax(mx, lp[i]);
    for (int k = 0; k < np; k++) {
      double s = 0, m = 0, v = 0;
      for (size_t i = 0; i < tot; i++) {
        double w = exp(lp[i] - mx), x = np == 1 ? ax[0][i] : ax[k][k == 0 ? i / n : i % n];
        s += w;
        m += w * x;
        v += w * x * x;
      }
      m /= s;
      log_info("exact     %-10d %12.6g %12.6g   (grid of %zu per axis)", k, m,
               sqrt(fmax(v / s - m * m, 0.0)), n);
    }
  }
  free(lp);
  free(ax[0]);
  free(ax[1]);
  return st;
}

static int abc_summary(options *o, MPI_Comm comm, const char *path) {
  CB_CALL(options_finish(o));
  h5file *h = NULL;
  CB_CALL(h5io_open(comm, path, &h));
  char names[512] = "";
  long np = 0, complete = 0, rounds = 0, nsims = 0;
  size_t nc = 0, nr = 0, wc = 0, wr = 0;
  double *theta = NULL, *w = NULL, *rho = NULL;
  int st = h5io_attr_read_string(h, "/", "param_names", names, sizeof names);
  if (st == CB_OK) st = h5io_attr_read_long(h, "/", "n_params", &np);
  if (st == CB_OK) st = h5io_attr_read_long(h, "/", "complete", &complete);
  if (st == CB_OK) st = h5io_attr_read_long(h, "/", "n_rounds", &rounds);
  if (st == CB_OK) st = h5io_attr_read_long(h, "/", "n_sims", &nsims);
  if (st == CB_OK && rounds == 0) { /* stopped in the first round: nothing to summarise yet */
    log_info("%s: %s, no finished round yet, %ld simulations", path,
             complete ? "complete" : "INCOMPLETE (resume it with abc run -resume)", nsims);
    h5io_close(&h);
    return CB_OK;
  }
  if (st == CB_OK) st = h5io_read_rows_all(h, "/posterior/theta", &nc, &nr, &theta);
  if (st == CB_OK) st = h5io_read_rows_all(h, "/posterior/weights", &wc, &wr, &w);
  if (st == CB_OK) st = h5io_read_rows_all(h, "/posterior/distance", &wc, &wr, &rho);
  if (st == CB_OK && !((long)(nc ? nc : 1) == np && wr == nr))
    st = CB_ERROR(CB_ERR_INPUT, "'%s': /posterior has a wrong shape", path);
  double eps = 0.0;
  if (st == CB_OK) st = h5io_attr_read_double(h, "/posterior/theta", "epsilon", &eps);
  if (st == CB_OK) {
    log_info("%s: %s, %ld rounds, %ld simulations", path,
             complete ? "complete" : "INCOMPLETE (resume it with abc run -resume)", rounds, nsims);
    abc_population p = {
        .n = (long)nr, .theta = theta, .x = NULL, .rho = rho, .w = w, .epsilon = eps};
    print_population(&p, (int)np, names);
    if (h5io_has(h, "/exact/log_posterior")) st = summary_exact(h, (int)np);
  }
  free(theta);
  free(w);
  free(rho);
  h5io_close(&h);
  CB_CALL(st);
  return CB_OK;
}

int cmd_abc(int argc, char **argv, MPI_Comm comm) {
  options *o = NULL;
  CB_CALL(options_create(comm, "abc", "ABC campaigns: abc run | observe | summary FILE", &o));
  int st;
  const char *use = "cerberus abc run -options_file params/abc_grf.opts | abc observe | abc "
                    "summary FILE";
  if (argc == 0 && !options_help_requested(o))
    st = CB_ERROR(CB_ERR_INPUT, "no action given (%s)", use);
  else if (argc == 0 || !strcmp(argv[0], "run"))
    st = argc > 1 ? CB_ERROR(CB_ERR_INPUT, "abc run takes no file argument") : abc_run(o, comm);
  else if (!strcmp(argv[0], "observe"))
    st = abc_observe(o, comm);
  else if (!strcmp(argv[0], "summary"))
    st = argc != 2 ? CB_ERROR(CB_ERR_INPUT, "abc summary takes one campaign file")
                   : abc_summary(o, comm, argv[1]);
  else
    st = CB_ERROR(CB_ERR_INPUT, "unknown action '%s' (%s)", argv[0], use);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
