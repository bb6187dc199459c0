/* test_simulator: the simulator table and the built-in simulators (simulator.h) at 1-4 ranks.
 *
 * - gaussian: the same seed gives the same draws, another seed other draws; the sample variance
 *   over 400 simulations of theta = 2.385 within its 4-sigma band; ln L against the formula;
 *   the score against a central finite difference of ln L; F = n / (2 theta^2); NaN data for
 *   theta <= 0;
 * - grf: the same field for a seed on any number of ranks as on one (voxel by voxel); the
 *   measured P(k) averaged over 24 fields against A k^-B within 5 sigma per shell; with B = 0
 *   ln L equals the real-space formula -1/2 (V/A sum d^2 + (N^3 - 1) ln A) (Parseval); the score
 *   against finite differences of ln L; the mean outer product of the score over 300 fields
 *   against the exact Fisher matrix (4 sigma);
 * - lpt: finite, mean ~ 0, the same field on any number of ranks, variance rising with sigma_8,
 *   NaN data for Omega_m <= Omega_b;
 * - the table: an unknown name lists the known ones; a user simulator registered through the
 *   public table runs; a duplicate or incomplete type is refused. */
#include "testing.h"

#include "cerberus/power.h"
#include "cerberus/simulator.h"
#include "cerberus/status.h"
#include "field_gather.h"

#include <stdlib.h>
#include <string.h>

static void test_gaussian(MPI_Comm comm) {
  simulator_config cfg = simulator_config_default();
  simulator *sim = NULL;
  TEST_STATUS(simulator_create(comm, "gaussian", &cfg, &sim), CB_OK, "gaussian");
  if (!sim) return;
  TEST_CHECK(sim->n_data == 10 && sim->n_local == 10 && !sim->is_field && sim->n_params == 1,
             "gaussian shape");
  double x[10], y[10];
  const double th = 2.385;
  TEST_STATUS(simulator_run(sim, &th, 77, x), CB_OK, "run");
  TEST_STATUS(simulator_run(sim, &th, 77, y), CB_OK, "run again");
  TEST_CHECK(memcmp(x, y, sizeof x) == 0, "same seed, same draws");
  TEST_STATUS(simulator_run(sim, &th, 78, y), CB_OK, "run other seed");
  TEST_CHECK(memcmp(x, y, sizeof x) != 0, "another seed, other draws");
  /* every rank drew the same numbers */
  double mx = x[3], mn = x[3];
  MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &mn, 1, MPI_DOUBLE, MPI_MIN, comm);
  TEST_CHECK(mx == mn, "draws differ between ranks");
  /* sample variance over 4000 values: sd of the estimate theta sqrt(2/4000) */
  double s2 = 0.0;
  for (int r = 0; r < 400; r++) {
    simulator_run(sim, &th, 1000 + (uint64_t)r, y);
    for (int i = 0; i < 10; i++) s2 += y[i] * y[i];
  }
  s2 /= 4000.0;
  TEST_CHECK(fabs(s2 - th) < 4.0 * th * sqrt(2.0 / 4000.0), "variance %g vs %g", s2, th);
  double lnL, want = 0.0, S = 0.0;
  for (int i = 0; i < 10; i++) S += x[i] * x[i];
  want = -0.5 * (S / th + 10.0 * log(2.0 * 3.14159265358979323846 * th));
  TEST_STATUS(simulator_loglike(sim, &th, x, &lnL), CB_OK, "loglike");
  TEST_CLOSE(lnL, want, 1e-13, "gaussian ln L");
  double sc, h = 1e-5, lp, lm, tp = th + h, tm = th - h;
  simulator_score(sim, &th, x, &sc);
  simulator_loglike(sim, &tp, x, &lp);
  simulator_loglike(sim, &tm, x, &lm);
  TEST_CLOSE(sc, (lp - lm) / (2 * h), 1e-6, "gaussian score vs finite difference");
  double F;
  simulator_fisher(sim, &th, &F);
  TEST_CLOSE(F, 10.0 / (2 * th * th), 1e-14, "gaussian Fisher");
  double one = 1.0;
  simulator_fisher(sim, &one, &F);
  TEST_CLOSE(F, 5.0, 1e-14, "F = 5 at theta* = 1 (MODEL.md section 9)");
  const double bad = -0.3;
  TEST_STATUS(simulator_run(sim, &bad, 5, y), CB_OK, "negative variance");
  TEST_CHECK(isnan(y[0]) && !simulator_data_finite(sim, y), "negative variance gives NaN data");
  TEST_CHECK(simulator_data_finite(sim, x), "finite data is finite");
  simulator_destroy(&sim);
  TEST_CHECK(sim == NULL, "destroy leaves NULL");
  cfg.n_draws = 0;
  TEST_STATUS(simulator_create(comm, "gaussian", &cfg, &sim), CB_ERR_INPUT, "n = 0");
}

static void test_grf_ranks(MPI_Comm comm, const char *name, const double *theta) {
  simulator_config cfg = simulator_config_default();
  cfg.n_grid = 12;
  cfg.box_size = 173.0;
  simulator *sim = NULL, *one = NULL;
  TEST_STATUS(simulator_create(comm, name, &cfg, &sim), CB_OK, name);
  if (!sim) return;
  double *d = field_alloc_real(sim->field);
  TEST_STATUS(simulator_run(sim, theta, 0x5eedULL, d), CB_OK, "run");
  TEST_CHECK(simulator_data_finite(sim, d), "%s data finite", name);
  double *all = testing_rank() == 0 ? calloc(sim->n_data, sizeof(double)) : NULL;
  field_gather_real(sim->field, 1, d, all);
  MPI_Comm self = self_comm_on_root(comm);
  if (self != MPI_COMM_NULL) {
    TEST_STATUS(simulator_create(self, name, &cfg, &one), CB_OK, "one rank");
    double *r = field_alloc_real(one->field);
    TEST_STATUS(simulator_run(one, theta, 0x5eedULL, r), CB_OK, "run on one rank");
    double maxd = 0.0, maxv = 0.0;
    for (size_t v = 0; v < sim->n_data; v++) {
      maxd = fmax(maxd, fabs(r[v] - all[v]));
      maxv = fmax(maxv, fabs(r[v]));
    }
    TEST_CHECK(maxd <= 1e-13 * maxv, "%s: %d ranks vs 1: max diff %g (max %g)", name,
               testing_size(), maxd, maxv);
    fftw_free(r);
    simulator_destroy(&one);
    MPI_Comm_free(&self);
  }
  free(all);
  fftw_free(d);
  simulator_destroy(&sim);
}

static void test_grf(MPI_Comm comm) {
  simulator_config cfg = simulator_config_default();
  cfg.n_grid = 12;
  cfg.box_size = 173.0;
  simulator *sim = NULL;
  TEST_STATUS(simulator_create(comm, "grf", &cfg, &sim), CB_OK, "grf");
  if (!sim) return;
  field *f = sim->field;
  TEST_CHECK(sim->is_field && f && sim->n_data == 1728 && sim->n_local == (size_t)f->n_real_local,
             "grf shape");
  const double theta[2] = {2.385, 0.7}, nn = 12.0, V = pow(173.0 / 12.0, 3);
  double *d = field_alloc_real(f);
  /* P(k) against A k^-B, over 24 fields: shell mean has variance 2 P^2 / (24 n_modes) */
  power_config pc = {0};
  power *p = NULL;
  TEST_STATUS(power_create(f, &pc, &p), CB_OK, "power");
  double *acc = calloc((size_t)p->n_bins, sizeof(double));
  for (int r = 0; r < 24; r++) {
    simulator_run(sim, theta, 300 + (uint64_t)r, d);
    power_measure(p, d);
    for (int b = 0; b < p->n_bins; b++) acc[b] += p->pk[b] / 24.0;
  }
  for (int b = 0; b < p->n_bins; b++) {
    /* expected: the mode average of A k^-B over the shell; with k_mean the bias is tiny beside
     * the 5-sigma band except in the first shell, where the modes sit at k_f and sqrt(2) k_f */
    double want = theta[0] * pow(p->k_mean[b], -theta[1]);
    double sd = want * sqrt(2.0 / (24.0 * p->n_modes[b]));
    TEST_CHECK(fabs(acc[b] - want) < 5.0 * sd + 0.02 * want, "shell %d: P %g vs %g (sd %g)", b,
               acc[b], want, sd);
  }
  free(acc);
  power_destroy(&p);
  /* B = 0: Parseval */
  const double white[2] = {1.9, 0.0};
  simulator_run(sim, white, 11, d);
  double s2 = 0.0, lnL;
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) s2 += d[v] * d[v];
  s2 = field_allreduce_sum(f, s2);
  TEST_STATUS(simulator_loglike(sim, white, d, &lnL), CB_OK, "loglike");
  TEST_CLOSE(lnL, -0.5 * (V / white[0] * s2 + (nn * nn * nn - 1) * log(white[0])), 1e-11,
             "grf ln L with B = 0 against Parseval");
  /* score against finite differences */
  simulator_run(sim, theta, 12, d);
  double sc[2];
  simulator_score(sim, theta, d, sc);
  for (int a = 0; a < 2; a++) {
    double tp[2] = {theta[0], theta[1]}, tm[2] = {theta[0], theta[1]}, lp, lm, h = 1e-5;
    tp[a] += h;
    tm[a] -= h;
    simulator_loglike(sim, tp, d, &lp);
    simulator_loglike(sim, tm, d, &lm);
    TEST_CHECK(fabs(sc[a] - (lp - lm) / (2 * h)) < 1e-5 * (fabs(sc[a]) + 10.0),
               "grf score %d: %g vs fd %g", a, sc[a], (lp - lm) / (2 * h));
  }
  /* E[score score^T] = F (rank-independent statistics: at 1 and 2 ranks only, for time) */
  double F[4], M[4] = {0};
  simulator_fisher(sim, theta, F);
  const int ns = testing_size() <= 2 ? 300 : 0;
  for (int r = 0; r < ns; r++) {
    simulator_run(sim, theta, 5000 + (uint64_t)r, d);
    simulator_score(sim, theta, d, sc);
    for (int a = 0; a < 2; a++)
      for (int b = 0; b < 2; b++) M[2 * a + b] += sc[a] * sc[b] / ns;
  }
  for (int a = 0; a < 2 && ns > 0; a++)
    for (int b = 0; b < 2; b++) {
      /* var of s_a s_b for Gaussian scores: F_aa F_bb + F_ab^2 */
      double sd = sqrt((F[3 * a] * F[3 * b] + F[2 * a + b] * F[2 * a + b]) / ns);
      TEST_CHECK(fabs(M[2 * a + b] - F[2 * a + b]) < 4.0 * sd, "E[s s^T]_%d%d = %g vs F %g (sd %g)",
                 a, b, M[2 * a + b], F[2 * a + b], sd);
    }
  TEST_CLOSE(F[0], (nn * nn * nn - 1) / (2 * theta[0] * theta[0]), 1e-13, "F_AA");
  const double bad[2] = {-1.0, 0.5};
  simulator_run(sim, bad, 3, d);
  TEST_CHECK(!simulator_data_finite(sim, d), "A < 0 gives NaN data");
  fftw_free(d);
  simulator_destroy(&sim);
}

static void test_lpt(MPI_Comm comm) {
  simulator_config cfg = simulator_config_default();
  cfg.n_grid = 12;
  cfg.box_size = 173.0;
  simulator *sim = NULL;
  TEST_STATUS(simulator_create(comm, "lpt", &cfg, &sim), CB_OK, "lpt");
  if (!sim) return;
  TEST_CHECK(sim->n_params == 2 && sim->fiducial[0] == cfg.cosmo.Omega_m &&
                 sim->fiducial[1] == cfg.cosmo.sigma_8,
             "lpt fiducial");
  TEST_CHECK(!simulator_has_exact(sim), "lpt has no exact likelihood");
  double F[4];
  TEST_STATUS(simulator_fisher(sim, sim->fiducial, F), CB_ERR_INPUT, "lpt Fisher refused");
  double *d = field_alloc_real(sim->field);
  double var[2];
  const double s8[2] = {0.6, 0.9};
  for (int i = 0; i < 2; i++) {
    double th[2] = {0.3, s8[i]};
    TEST_STATUS(simulator_run(sim, th, 9, d), CB_OK, "lpt run");
    double m = field_sum(sim->field, d) / 1728.0, v = 0.0;
    for (ptrdiff_t x = 0; x < sim->field->n_real_local; x++) v += d[x] * d[x];
    var[i] = field_allreduce_sum(sim->field, v) / 1728.0;
    TEST_CHECK(fabs(m) < 1e-10, "lpt mean delta %g", m);
  }
  TEST_CHECK(var[1] > 1.5 * var[0], "variance %g at sigma_8 0.9 vs %g at 0.6", var[1], var[0]);
  const double bad[2] = {0.01, 0.8};
  simulator_run(sim, bad, 9, d);
  TEST_CHECK(!simulator_data_finite(sim, d), "Omega_m below Omega_b gives NaN data");
  fftw_free(d);
  simulator_destroy(&sim);
}

/* A user simulator: data = theta[0] + theta[1] * seed-dependent number, 3 values. */
static int user_create(simulator *sim, const simulator_config *cfg) {
  (void)cfg;
  sim->n_data = sim->n_local = 3;
  return CB_OK;
}
static int user_run(simulator *sim, const double *theta, uint64_t seed, double *data) {
  (void)sim;
  for (int i = 0; i < 3; i++) data[i] = theta[0] + theta[1] * (double)((seed + i) % 7);
  return CB_OK;
}
static void user_destroy(simulator *sim) {
  (void)sim;
}
static const simulator_type user_type = {.name = "user_line",
                                         .description = "a line",
                                         .n_params = 2,
                                         .param_names = {"a", "b"},
                                         .fiducial = {0.5, 2.0},
                                         .create = user_create,
                                         .run = user_run,
                                         .destroy = user_destroy};

static void test_table(MPI_Comm comm) {
  const simulator_type *t = NULL;
  int st = simulator_lookup("gausian", &t);
  TEST_CHECK(st == CB_ERR_INPUT && t == NULL && strstr(status_message(), "'gausian'") &&
                 strstr(status_message(), "gaussian, grf, lpt"),
             "unknown name: %d '%s'", st, status_message());
  TEST_STATUS(simulator_register(&user_type), CB_OK, "register");
  TEST_STATUS(simulator_register(&user_type), CB_ERR_INPUT, "register twice");
  simulator_type broken = user_type;
  broken.name = "broken";
  broken.run = NULL;
  TEST_STATUS(simulator_register(&broken), CB_ERR_INPUT, "register without run");
  simulator_config cfg = simulator_config_default();
  simulator *sim = NULL;
  TEST_STATUS(simulator_create(comm, "user_line", &cfg, &sim), CB_OK, "user simulator");
  if (sim) {
    double th[2] = {0.5, 2.0}, d[3];
    TEST_STATUS(simulator_run(sim, th, 12, d), CB_OK, "user run");
    TEST_CHECK(d[0] == 0.5 + 2.0 * 5 && d[2] == 0.5, "user data %g %g", d[0], d[2]);
    TEST_STATUS(simulator_loglike(sim, th, d, th), CB_ERR_INPUT, "user has no ln L");
  }
  simulator_destroy(&sim);
  char names[256];
  simulator_names(names, sizeof names);
  TEST_CHECK(strstr(names, "user_line") != NULL, "names: %s", names);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  if (testing_init(&argc, &argv, &comm)) return 1;
  test_gaussian(comm);
  test_grf(comm);
  const double tg[2] = {2.385, 0.7}, tl[2] = {0.3, 0.85};
  test_grf_ranks(comm, "grf", tg);
  test_grf_ranks(comm, "lpt", tl);
  test_lpt(comm);
  test_table(comm);
  return testing_finish();
}
