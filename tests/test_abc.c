/* test_abc: ABC campaigns (include/cerberus/abc.h) at 1-4 ranks.
 *
 * - gaussian, n = 10, exact score summaries, population Monte Carlo on 1 and 2 groups: posterior
 * mean within 0.1 sd and sd within 10% of the exact posterior (the conjugate theta^(-n/2) exp(-S /
 * (2 theta)) on the prior box, by quadrature here);
 * - grf at 16^3 (one rank only, for time): the posterior of (A, B) against the exact-likelihood
 *   posterior on a 61 x 61 grid: means within 0.2 sd, sds within 20%;
 * - the same campaign (grf 8^3, band powers calibrated on the groups, 3 PMC rounds) on one
 *   rank and on every group layout of the ranks (1 group of 2, 2 of 1, 3 of 1, 2 of 2, ...):
 *   the same particles and weights within 1e-10;
 * - stop-and-resume (a simulator that raises the stop flag after 2500 simulations, in a PMC round,
 * as SIGTERM does): the resumed campaign equals the straight one bit for bit, and re-runs none of
 * the journalled simulations;
 * - a user simulator registered through the public table that returns NaN for theta > 3:
 *   failures recorded in the campaign file, the campaign completes, and the posterior matches
 *   the exact one truncated to theta <= 3;
 * - bad inputs: a prior with lower above upper, a Gaussian prior with sd 0, a wrong count, the
 *   score compressor for a simulator without a likelihood, a resume with other settings. */
#include "testing.h"

#include "cerberus/abc.h"
#include "cerberus/compress.h"
#include "cerberus/groups.h"
#include "cerberus/h5io.h"
#include "cerberus/simulator.h"
#include "cerberus/status.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

typedef struct camp {
  const char *sim;
  simulator_config scfg;
  compress_config ccfg;
  abc_config acfg;
  double theta_obs[2];
  uint64_t obs_seed;
  int group_size;
} camp;

typedef struct result {
  long n;
  double theta[4096], w[2048];
  long n_sims, n_new;
  int rounds;
  bool stopped;
} result;

static void camp_init(camp *c, const char *sim, const char *file) {
  memset(c, 0, sizeof *c);
  c->sim = sim;
  c->scfg = simulator_config_default();
  c->ccfg.kind = COMPRESS_SCORE;
  c->ccfg.n_s = 200;
  c->ccfg.n_d = 100;
  c->acfg.method = ABC_PMC;
  c->acfg.n_particles = 500;
  c->acfg.n_initial = 2000;
  c->acfg.percentile = 75;
  c->acfg.criterion = 0.05;
  c->acfg.max_rounds = 30;
  c->acfg.seed = 2385;
  c->acfg.checkpoint_interval = 1e9;
  c->acfg.progress_interval = 1e9;
  c->acfg.overwrite = true;
  c->group_size = 1;
  snprintf(c->acfg.path, sizeof c->acfg.path, "%s/%s", tmpdir, file);
}

static volatile sig_atomic_t stop_flag = 0;

/* Run a campaign on comm; the final population on comm's rank 0 in *r. */
static int run(MPI_Comm comm, camp *c, result *r) {
  memset(r, 0, sizeof *r);
  groups *g = NULL;
  simulator *sim = NULL;
  compressor *cp = NULL;
  abc *a = NULL;
  double *obs = NULL;
  c->acfg.stop = &stop_flag;
  CB_CALL(groups_create(comm, c->group_size, &g));
  int st = simulator_create(g->comm, c->sim, &c->scfg, &sim);
  if (st == CB_OK) st = compress_create(sim, &c->ccfg, &cp);
  if (st == CB_OK) st = abc_calibrate(g, sim, cp, c->acfg.seed);
  double x_obs[SIMULATOR_MAX_PARAMS];
  if (st == CB_OK) {
    obs = calloc(sim->n_local + 1, sizeof(double));
    if (g->group == 0) st = simulator_run(sim, c->theta_obs, c->obs_seed, obs);
  }
  if (st == CB_OK) st = abc_observed(g, sim, cp, obs, x_obs);
  if (st == CB_OK) st = abc_create(g, sim, cp, &c->acfg, x_obs, NULL, &a);
  bool done = false, stopped = false;
  while (st == CB_OK && !done && !stopped) st = abc_round(a, &done, &stopped);
  if (st == CB_OK) st = abc_write(a, done);
  if (st == CB_OK && g->is_coordinator) {
    const abc_population *p = abc_population_of(a, abc_rounds(a) - 1);
    r->rounds = abc_rounds(a);
    r->n_sims = abc_n_sims(a);
    r->n_new = abc_n_new_sims(a);
    r->stopped = stopped;
    if (p && p->n * sim->n_params <= 4096) {
      r->n = p->n;
      memcpy(r->theta, p->theta, (size_t)(p->n * sim->n_params) * sizeof(double));
      memcpy(r->w, p->w, (size_t)p->n * sizeof(double));
    }
  }
  abc_destroy(&a);
  free(obs);
  compress_destroy(&cp);
  simulator_destroy(&sim);
  groups_destroy(&g);
  return st;
}

static void stats(const result *r, int np, int p, double *m, double *sd) {
  abc_population pop = {.n = r->n, .theta = (double *)r->theta, .w = (double *)r->w};
  abc_population_stats(&pop, np, p, m, sd, 0, NULL, NULL);
}

/* Exact posterior of the gaussian problem on [lo, hi]: theta^(-n/2) exp(-S / (2 theta)). */
static void gauss_exact(double S, int n, double lo, double hi, double *m, double *sd) {
  const int K = 200001;
  double s = 0, s1 = 0, s2 = 0, mx = -INFINITY;
  for (int i = 0; i < K; i++) {
    double t = lo + (hi - lo) * i / (K - 1);
    mx = fmax(mx, -0.5 * n * log(t) - S / (2 * t));
  }
  for (int i = 0; i < K; i++) {
    double t = lo + (hi - lo) * i / (K - 1), w = exp(-0.5 * n * log(t) - S / (2 * t) - mx);
    if (i == 0 || i == K - 1) w *= 0.5;
    s += w;
    s1 += w * t;
    s2 += w * t * t;
  }
  *m = s1 / s;
  *sd = sqrt(s2 / s - *m * *m);
}

static double gauss_S(const camp *c) {
  simulator *s = NULL;
  double d[64], S = 0.0;
  simulator_create(MPI_COMM_SELF, "gaussian", &c->scfg, &s);
  simulator_run(s, c->theta_obs, c->obs_seed, d);
  for (size_t i = 0; i < s->n_data; i++) S += d[i] * d[i];
  simulator_destroy(&s);
  return S;
}

static void test_gaussian(MPI_Comm comm) {
  camp c;
  camp_init(&c, "gaussian", "gauss.h5");
  c.acfg.n_particles = 1000;
  c.acfg.n_initial = 4000;
  c.acfg.prior = (abc_prior){.kind = ABC_PRIOR_UNIFORM, .n = 1, .a = {0.1}, .b = {5.0}};
  c.theta_obs[0] = 1.7;
  c.obs_seed = 3;
  result *r = calloc(1, sizeof *r);
  TEST_STATUS(run(comm, &c, r), CB_OK, "gaussian campaign");
  if (testing_rank() == 0) {
    double m, sd, em, esd;
    stats(r, 1, 0, &m, &sd);
    gauss_exact(gauss_S(&c), 10, 0.1, 5.0, &em, &esd);
    TEST_CHECK(fabs(m - em) < 0.1 * esd, "gaussian mean %g vs exact %g (sd %g)", m, em, esd);
    TEST_CHECK(fabs(sd / esd - 1) < 0.1, "gaussian sd %g vs exact %g", sd, esd);
    TEST_CHECK(r->rounds >= 3, "%d rounds", r->rounds);
  }
  free(r);
}

static void test_grf(MPI_Comm comm) {
  camp c;
  camp_init(&c, "grf", "grf16.h5");
  c.scfg.n_grid = 16;
  c.acfg.n_particles = 400;
  c.acfg.n_initial = 1200;
  c.acfg.prior = (abc_prior){.kind = ABC_PRIOR_UNIFORM, .n = 2, .a = {0.6, 0.1}, .b = {1.6, 0.9}};
  c.theta_obs[0] = 1.05;
  c.theta_obs[1] = 0.45;
  c.obs_seed = 3;
  result *r = calloc(1, sizeof *r);
  TEST_STATUS(run(comm, &c, r), CB_OK, "grf campaign");
  /* the exact posterior on a grid over the prior box */
  simulator *s = NULL;
  simulator_create(comm, "grf", &c.scfg, &s);
  double *d = field_alloc_real(s->field);
  simulator_run(s, c.theta_obs, c.obs_seed, d);
  const int K = 61;
  double axes[2 * 61], *lp = calloc(K * K, sizeof(double));
  for (int i = 0; i < K; i++) {
    axes[i] = 0.6 + 1.0 * i / (K - 1);
    axes[K + i] = 0.1 + 0.8 * i / (K - 1);
  }
  TEST_STATUS(abc_exact_grid(s, &c.acfg.prior, d, K, axes, lp), CB_OK, "exact grid");
  if (testing_rank() == 0) {
    double mx = -INFINITY, S = 0, m[2] = {0}, v[2] = {0};
    for (int i = 0; i < K * K; i++) mx = fmax(mx, lp[i]);
    for (int i = 0; i < K * K; i++) {
      double w = exp(lp[i] - mx), t[2] = {axes[i / K], axes[K + i % K]};
      S += w;
      for (int p = 0; p < 2; p++) {
        m[p] += w * t[p];
        v[p] += w * t[p] * t[p];
      }
    }
    for (int p = 0; p < 2; p++) {
      double em = m[p] / S, esd = sqrt(v[p] / S - em * em), am, asd;
      stats(r, 2, p, &am, &asd);
      TEST_CHECK(fabs(am - em) < 0.2 * esd, "grf parameter %d: mean %g vs exact %g (sd %g)", p, am,
                 em, esd);
      TEST_CHECK(fabs(asd / esd - 1) < 0.2, "grf parameter %d: sd %g vs exact %g", p, asd, esd);
    }
  }
  free(lp);
  fftw_free(d);
  simulator_destroy(&s);
  free(r);
}

static void camp_layout(camp *c, const char *file) {
  camp_init(c, "grf", file);
  c->scfg.n_grid = 8;
  c->ccfg.kind = COMPRESS_BANDPOWER;
  c->ccfg.n_s = 40;
  c->ccfg.n_d = 10;
  c->acfg.n_particles = 100;
  c->acfg.n_initial = 300;
  c->acfg.max_rounds = 3;
  c->acfg.criterion = 0.0;
  c->acfg.prior = (abc_prior){.kind = ABC_PRIOR_GAUSSIAN, .n = 2, .a = {1.0, 0.5}, .b = {0.3, 0.2}};
  c->theta_obs[0] = 1.2;
  c->theta_obs[1] = 0.6;
  c->obs_seed = 11;
}

static void test_layouts(MPI_Comm comm) {
  result *ref = calloc(1, sizeof *ref), *r = calloc(1, sizeof *r);
  camp c;
  int size = testing_size();
  if (testing_rank() == 0) {
    camp_layout(&c, "layout_ref.h5");
    TEST_STATUS(run(MPI_COMM_SELF, &c, ref), CB_OK, "reference on one rank");
    TEST_CHECK(ref->rounds == 4 && ref->n == 100, "reference: %d rounds, %ld particles",
               ref->rounds, ref->n);
  }
  for (int gs = 1; gs <= size; gs++) {
    if (size % gs) continue;
    camp_layout(&c, "layout.h5");
    c.group_size = gs;
    TEST_STATUS(run(comm, &c, r), CB_OK, "layout");
    if (testing_rank() == 0) {
      double md = 0.0;
      for (long i = 0; i < 2 * ref->n; i++) md = fmax(md, fabs(r->theta[i] - ref->theta[i]));
      for (long i = 0; i < ref->n; i++) md = fmax(md, fabs(r->w[i] - ref->w[i]));
      TEST_CHECK(r->n == ref->n && md <= 1e-10,
                 "%d group(s) of %d: population differs from one rank's by %g", size / gs, gs, md);
    }
  }
  free(ref);
  free(r);
}

/* ---- user simulators through the public table */

static long stop_after = 0, n_runs = 0;
static double nan_above = INFINITY;

static int wrap_create(simulator *sim, const simulator_config *cfg) {
  simulator *inner = NULL;
  CB_CALL(simulator_create(sim->comm, "gaussian", cfg, &inner));
  sim->state = inner;
  sim->n_data = sim->n_local = inner->n_data;
  return CB_OK;
}
static int wrap_run(simulator *sim, const double *theta, uint64_t seed, double *data) {
  if (stop_after > 0 && ++n_runs == stop_after) stop_flag = 1;
  if (theta[0] > nan_above) {
    for (size_t i = 0; i < sim->n_data; i++) data[i] = NAN;
    return CB_OK;
  }
  return simulator_run(sim->state, theta, seed, data);
}
static void wrap_destroy(simulator *sim) {
  simulator *inner = sim->state;
  simulator_destroy(&inner);
  sim->state = NULL;
}
static int wrap_loglike(simulator *sim, const double *t, const double *d, double *l) {
  return simulator_loglike(sim->state, t, d, l);
}
static int wrap_score(simulator *sim, const double *t, const double *d, double *s) {
  return simulator_score(sim->state, t, d, s);
}
static int wrap_fisher(simulator *sim, const double *t, double *F) {
  return simulator_fisher(sim->state, t, F);
}
static const simulator_type wrap_type = {.name = "gauss_wrap",
                                         .description = "gaussian, NaN above a threshold",
                                         .n_params = 1,
                                         .param_names = {"theta"},
                                         .fiducial = {1.0},
                                         .create = wrap_create,
                                         .run = wrap_run,
                                         .destroy = wrap_destroy,
                                         .loglike = wrap_loglike,
                                         .score = wrap_score,
                                         .fisher = wrap_fisher};

static void camp_wrap(camp *c, const char *file) {
  camp_init(c, "gauss_wrap", file);
  c->acfg.n_particles = 600;
  c->acfg.n_initial = 2000;
  c->acfg.prior = (abc_prior){.kind = ABC_PRIOR_UNIFORM, .n = 1, .a = {0.1}, .b = {5.0}};
  c->theta_obs[0] = 2.385;
  c->obs_seed = 5;
}

static void test_nan(MPI_Comm comm) {
  camp c;
  camp_wrap(&c, "nan.h5");
  nan_above = 3.0;
  c.acfg.criterion = 0.08;
  result *r = calloc(1, sizeof *r);
  TEST_STATUS(run(comm, &c, r), CB_OK, "campaign with NaN simulations");
  nan_above = INFINITY;
  /* count the failures in the campaign file */
  h5file *h = NULL;
  double *status = NULL;
  size_t nc, nr;
  if (testing_rank() == 0) {
    TEST_STATUS(h5io_open(MPI_COMM_SELF, c.acfg.path, &h), CB_OK, "open nan.h5");
    if (h) TEST_STATUS(h5io_read_rows_all(h, "/sims/status", &nc, &nr, &status), CB_OK, "status");
    long failed = 0;
    for (size_t i = 0; status && i < nr; i++) failed += status[i] == -1.0;
    TEST_CHECK(failed > 100 && (long)nr == r->n_sims, "%ld failed of %zu recorded (%ld)", failed,
               nr, r->n_sims);
    free(status);
    h5io_close(&h);
    double m, sd, em, esd;
    stats(r, 1, 0, &m, &sd);
    gauss_exact(gauss_S(&c), 10, 0.1, 3.0, &em, &esd);
    TEST_CHECK(fabs(m - em) < 0.1 * esd, "NaN campaign: mean %g vs exact %g (sd %g)", m, em, esd);
    TEST_CHECK(fabs(sd / esd - 1) < 0.1, "NaN campaign: sd %g vs exact %g", sd, esd);
    for (long i = 0; i < r->n; i++)
      TEST_CHECK(r->theta[i] <= 3.0, "a particle at %g, where the simulator fails", r->theta[i]);
  }
  free(r);
}

static void test_resume(void) {
  camp c;
  result *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
  camp_wrap(&c, "straight.h5");
  TEST_STATUS(run(MPI_COMM_SELF, &c, a), CB_OK, "straight");
  camp_wrap(&c, "resumed.h5");
  stop_after = 2500; /* in the first PMC round (round 0 has 2000) */
  n_runs = 0;
  TEST_STATUS(run(MPI_COMM_SELF, &c, b), CB_OK, "stopped");
  stop_after = 0;
  stop_flag = 0;
  TEST_CHECK(b->stopped && b->n_sims >= 2499 && b->n_sims < 2520, "stopped after %ld sims (%d)",
             b->n_sims, b->stopped);
  long first = b->n_sims;
  char journal[4200];
  snprintf(journal, sizeof journal, "%s.journal", c.acfg.path);
  TEST_CHECK(access(journal, F_OK) == 0, "the journal is kept after a stop");
  c.acfg.resume = true;
  TEST_STATUS(run(MPI_COMM_SELF, &c, b), CB_OK, "resumed");
  TEST_CHECK(!b->stopped && b->n == a->n && b->rounds == a->rounds &&
                 memcmp(a->theta, b->theta, sizeof a->theta) == 0 &&
                 memcmp(a->w, b->w, sizeof a->w) == 0,
             "resumed campaign differs from the straight one (%ld vs %ld particles)", b->n, a->n);
  TEST_CHECK(b->n_new == b->n_sims - first, "resume ran %ld new of %ld (journal had %ld)", b->n_new,
             b->n_sims, first);
  TEST_CHECK(access(journal, F_OK) != 0, "the journal is removed when the campaign completes");
  /* resume with other settings, and with nothing to resume */
  c.acfg.seed = 99;
  TEST_STATUS(run(MPI_COMM_SELF, &c, b), CB_ERR_IO, "nothing to resume");
  c.acfg.resume = false;
  stop_after = 50;
  n_runs = 0;
  run(MPI_COMM_SELF, &c, b);
  stop_after = 0;
  stop_flag = 0;
  c.acfg.resume = true;
  c.acfg.seed = 100;
  int st = run(MPI_COMM_SELF, &c, b);
  TEST_CHECK(st == CB_ERR_INPUT && strstr(status_message(), "other settings"),
             "resume with another seed: %d '%s'", st, status_message());
  free(a);
  free(b);
}

static void test_bad(MPI_Comm comm) {
  abc_prior p = {.kind = ABC_PRIOR_UNIFORM, .n = 2, .a = {0.5, 1.0}, .b = {2.0, 0.7}};
  int st = abc_prior_check(&p, 2);
  TEST_CHECK(st == CB_ERR_INPUT && strstr(status_message(), "-prior_lower 1 is not below"),
             "lower above upper: %d '%s'", st, status_message());
  p.b[1] = 1.5;
  TEST_STATUS(abc_prior_check(&p, 2), CB_OK, "good prior");
  TEST_STATUS(abc_prior_check(&p, 1), CB_ERR_INPUT, "prior of 2 values for 1 parameter");
  p = (abc_prior){.kind = ABC_PRIOR_GAUSSIAN, .n = 1, .a = {1.0}, .b = {0.0}};
  TEST_STATUS(abc_prior_check(&p, 1), CB_ERR_INPUT, "Gaussian prior with sd 0");
  simulator_config sc = simulator_config_default();
  sc.n_grid = 8;
  simulator *s = NULL;
  compressor *c = NULL;
  simulator_create(comm, "lpt", &sc, &s);
  compress_config cc = {.kind = COMPRESS_SCORE};
  st = compress_create(s, &cc, &c);
  TEST_CHECK(st == CB_ERR_INPUT && c == NULL && strstr(status_message(), "exact likelihood"),
             "score of lpt: %d '%s'", st, status_message());
  cc.kind = COMPRESS_IDENTITY;
  TEST_STATUS(compress_create(s, &cc, &c), CB_ERR_INPUT, "identity of a field");
  simulator_destroy(&s);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  if (testing_init(&argc, &argv, &comm)) return 1;
  if (testing_rank() == 0) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cb_test_abc_XXXXXX");
    if (!mkdtemp(tmpdir)) tmpdir[0] = '\0';
  }
  MPI_Bcast(tmpdir, sizeof tmpdir, MPI_CHAR, 0, comm);
  if (!tmpdir[0]) {
    testing_skip("cannot make a temporary directory");
    return testing_finish();
  }
  simulator_register(&wrap_type);
  test_bad(comm);
  test_layouts(comm);
  /* the populations do not depend on the layout (test_layouts): the statistics are checked at
   * one rank and at two groups of one, for time */
  if (testing_size() <= 2) {
    test_gaussian(comm);
    test_nan(comm);
  }
  if (testing_size() == 1) {
    test_grf(comm);
    test_resume();
  }
  MPI_Barrier(comm);
  if (testing_rank() == 0) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  }
  return testing_finish();
}
