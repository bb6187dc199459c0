/* test_cosmology: P(k), D(z), sigma(M), Sheth-Tormen and P(k) tables against truths the
 * test computes itself (MODEL.md sections 2 and 6).
 *
 * - Eisenstein-Hu no-wiggle T(k) against the published formula written out here again,
 *   and T -> 1 as k -> 0; P(k) has the shape k^n_s T^2.
 * - sigma_8 of the normalised spectrum by a plain Simpson rule in ln k (not the module's
 *   quadrature), at a non-default sigma_8; the z > 0 spectrum scaled by D(z)^2.
 * - D(z): exactly 1/(1+z) for Omega_m = 1; for LCDM against a Runge-Kutta solution of the
 *   growth ODE (1e-6) and the Carroll-Press-Turner fit (1%).
 * - sigma(M) spline against direct quadrature, d ln sigma / d ln M against a finite
 *   difference, rho_mean against 3 H0^2 / (8 pi G) from SI constants.
 * - Sheth-Tormen: integral of f(nu) over nu is 1 (and equals its closed form); the mass
 *   integral of dn/dlnM equals the nu integral of f; the PBS bias is -(1/delta_c)
 *   d ln(nu f)/d ln nu and averages to zero over f.
 * - Tables: a table written from Eisenstein-Hu read back (1e-3), exact log-log
 *   interpolation of a power law, range checks, and every bad table provoked. */
#include "testing.h"

#include "cerberus/cosmology.h"
#include "cerberus/status.h"

#include <gsl/gsl_math.h>
#include <gsl/gsl_sf_gamma.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- Eisenstein & Hu (1998) eqs. 26-31 written out again, k in 1/Mpc inside. */
static double eh_nowiggle(double Om, double Ob, double h, double k_hmpc) {
  const double Tcmb = 2.7255;
  double k = k_hmpc * h; /* 1/Mpc */
  double theta = Tcmb / 2.7;
  double omh2 = Om * h * h, obh2 = Ob * h * h, fb = Ob / Om;
  double s = 44.5 * log(9.83 / omh2) / sqrt(1.0 + 10.0 * pow(obh2, 3.0 / 4.0)); /* eq. 26 */
  double alpha = 1.0 - 0.328 * log(431.0 * omh2) * fb + 0.38 * log(22.3 * omh2) * fb * fb;
  double gamma_eff = Om * h * (alpha + (1.0 - alpha) / (1.0 + pow(0.43 * k * s, 4.0))); /* 30 */
  double q = (k / h) * theta * theta / gamma_eff;                                       /* 28 */
  double L0 = log(2.0 * exp(1.0) + 1.8 * q);
  double C0 = 14.2 + 731.0 / (1.0 + 62.5 * q);
  return L0 / (L0 + C0 * q * q); /* eq. 29 */
}

static double tophat_w(double x) {
  if (x < 1e-3) return 1.0 - x * x / 10.0;
  return 3.0 * (sin(x) - x * cos(x)) / (x * x * x);
}

/* sigma(R) by composite Simpson in ln k over [kmin, kmax] with n (even) intervals. */
static double sigma_simpson(const cosmology *c, double R, double kmin, double kmax, int n) {
  double a = log(kmin), b = log(kmax), dx = (b - a) / n, sum = 0.0;
  for (int i = 0; i <= n; i++) {
    double k = exp(a + i * dx), w = tophat_w(k * R);
    double f = k * k * k * cosmology_pk(c, k) * w * w / (2.0 * M_PI * M_PI);
    sum += f * (i == 0 || i == n ? 1.0 : (i % 2 ? 4.0 : 2.0));
  }
  return sqrt(sum * dx / 3.0);
}

/* Growth: RK4 of D'' + (3/a + E'/E) D' = 1.5 Om / (a^5 E^2) D from a = 1e-3 (D = a). */
static double growth_ode(double Om, double a_end) {
  double OL = 1.0 - Om, a = 1e-3, D = a, Dp = 1.0;
  int n = 200000;
  double h = (a_end - a) / n;
  for (int i = 0; i < n; i++) {
    double ka[4], kd[4], aa = a, d = D, dp = Dp;
    for (int s = 0; s < 4; s++) {
      double E2 = Om / (aa * aa * aa) + OL, dE2 = -3.0 * Om / (aa * aa * aa * aa);
      double acc = -(3.0 / aa + 0.5 * dE2 / E2) * dp + 1.5 * Om / (aa * aa * aa * aa * aa * E2) * d;
      ka[s] = dp;
      kd[s] = acc;
      double f = s < 2 ? 0.5 : 1.0;
      if (s < 3) {
        aa = a + f * h;
        d = D + f * h * ka[s];
        dp = Dp + f * h * kd[s];
      }
    }
    D += h / 6.0 * (ka[0] + 2 * ka[1] + 2 * ka[2] + ka[3]);
    Dp += h / 6.0 * (kd[0] + 2 * kd[1] + 2 * kd[2] + kd[3]);
    a += h;
  }
  return D;
}

static double growth_cpt(double Om, double z) {
  double g0, gz;
  double OL = 1.0 - Om;
  g0 = 2.5 * Om / (pow(Om, 4.0 / 7.0) - OL + (1.0 + Om / 2.0) * (1.0 + OL / 70.0));
  double e2 = Om * pow(1 + z, 3) + OL, omz = Om * pow(1 + z, 3) / e2, olz = OL / e2;
  gz = 2.5 * omz / (pow(omz, 4.0 / 7.0) - olz + (1.0 + omz / 2.0) * (1.0 + olz / 70.0));
  return gz / (g0 * (1.0 + z));
}

static double radius_of(double M, double rho) {
  return cbrt(3.0 * M / (4.0 * M_PI * rho));
}

static void test_eh(void) {
  cosmo_params p = {.Omega_m = 0.2873,
                    .Omega_b = 0.0437,
                    .h = 0.7123,
                    .n_s = 0.9417,
                    .sigma_8 = 0.7734,
                    .redshift = 0.0};
  const double ks[] = {3.7e-4, 0.013, 0.0871, 0.17, 0.53, 1.9, 23.0};
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
    TEST_CLOSE(cosmology_transfer_eh(&p, ks[i]), eh_nowiggle(p.Omega_m, p.Omega_b, p.h, ks[i]),
               1e-12, "EH transfer");
  TEST_CLOSE(cosmology_transfer_eh(&p, 1e-7), 1.0, 1e-5, "EH T(k -> 0) = 1");
  TEST_CHECK(cosmology_transfer_eh(&p, 10.0) < 2e-3, "EH T(10 h/Mpc) = %g not small",
             cosmology_transfer_eh(&p, 10.0));

  cosmology *c = NULL;
  TEST_STATUS(cosmology_create(&p, NULL, &c), CB_OK, "create EH");
  if (!c) return;
  TEST_CHECK(!cosmology_is_table(c), "EH object reports a table");
  /* P = A k^n_s T^2: the ratio is the same at every k */
  double ref = cosmology_pk(c, 0.05) /
               (pow(0.05, p.n_s) * pow(eh_nowiggle(0.2873, 0.0437, 0.7123, 0.05), 2));
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
    double t = eh_nowiggle(p.Omega_m, p.Omega_b, p.h, ks[i]);
    TEST_CLOSE(cosmology_pk(c, ks[i]) / (pow(ks[i], p.n_s) * t * t), ref, 1e-12, "P / (k^n T^2)");
  }
  TEST_CHECK(cosmology_pk(c, 0.0) == 0.0, "P(0) = %g, expected 0", cosmology_pk(c, 0.0));
  /* sigma_8 by an independent Simpson rule in ln k */
  double s8 = sigma_simpson(c, 8.0, 1e-7, 1e3, 400000);
  TEST_CLOSE(s8, p.sigma_8, 1e-4, "sigma_8 (Simpson)");
  TEST_CLOSE(cosmology_sigma_R(c, 8.0), p.sigma_8, 1e-6, "sigma_8 (module)");
  TEST_CLOSE(sigma_simpson(c, 2.31, 1e-7, 1e4, 400000), cosmology_sigma_R(c, 2.31), 1e-5,
             "sigma(2.31 Mpc/h)");
  TEST_STATUS(cosmology_check_k_range(c, 1e-9, 1e9), CB_OK, "EH k range always fine");

  /* z > 0: P scales with D(z)^2 and sigma_8(z) = sigma_8 D(z) */
  cosmo_params pz = p;
  pz.redshift = 1.37;
  cosmology *cz = NULL;
  TEST_STATUS(cosmology_create(&pz, "", &cz), CB_OK, "create EH at z = 1.37");
  if (cz) {
    double D = growth_ode(p.Omega_m, 1.0 / 2.37) / growth_ode(p.Omega_m, 1.0);
    TEST_CLOSE(cosmology_pk(cz, 0.21) / cosmology_pk(c, 0.21), D * D, 1e-6, "P(z)/P(0) = D^2");
    TEST_CLOSE(cosmology_sigma_R(cz, 8.0), p.sigma_8 * D, 1e-6, "sigma_8(z)");
  }
  cosmology_destroy(&cz);
  cosmology_destroy(&c);
  TEST_CHECK(c == NULL, "destroy leaves NULL");
  cosmology_destroy(&c); /* accepts NULL */
}

static void test_growth(void) {
  cosmo_params p = cosmo_params_default();
  p.Omega_m = 1.0;
  p.Omega_b = 0.05;
  const double zs[] = {0.0, 0.37, 1.0, 2.7, 9.1};
  for (size_t i = 0; i < 5; i++)
    TEST_CLOSE(cosmology_growth(&p, zs[i]), 1.0 / (1.0 + zs[i]), 1e-9, "D(z), Omega_m = 1");
  cosmo_params q = cosmo_params_default();
  double Dode1 = growth_ode(q.Omega_m, 1.0);
  for (size_t i = 0; i < 5; i++) {
    double z = zs[i], D = cosmology_growth(&q, z);
    TEST_CLOSE(D, growth_ode(q.Omega_m, 1.0 / (1.0 + z)) / Dode1, 1e-6, "D(z) vs ODE");
    TEST_CLOSE(D, growth_cpt(q.Omega_m, z), 1e-2, "D(z) vs Carroll-Press-Turner");
  }
  q.Omega_m = 0.2219;
  TEST_CLOSE(cosmology_growth(&q, 0.83), growth_ode(0.2219, 1.0 / 1.83) / growth_ode(0.2219, 1.0),
             1e-6, "D(z), Omega_m = 0.2219");
}

static void test_sigma_mass(void) {
  cosmo_params p = cosmo_params_default();
  p.sigma_8 = 0.8341;
  cosmology *c = NULL;
  TEST_STATUS(cosmology_create(&p, NULL, &c), CB_OK, "create");
  if (!c) return;
  /* rho_mean = Omega_m 3 H0^2 / (8 pi G), H0 = 100 km/s/Mpc, in M_sun/h per (Mpc/h)^3 */
  const double G = 6.67430e-11, Mpc = 3.0856775814913673e22, Msun = 1.98841e30;
  double H0 = 1e5 / Mpc, rhoc = 3.0 * H0 * H0 / (8.0 * M_PI * G) * Mpc * Mpc * Mpc / Msun;
  TEST_CLOSE(cosmology_rho_mean(&p), p.Omega_m * rhoc, 1e-4, "rho_mean");
  double rho = cosmology_rho_mean(&p);
  const double Ms[] = {3.1e7, 1.3e8, 7.7e9, 2.2e12, 4.5e13, 8.8e14, 9.6e16, 2.9e17};
  for (size_t i = 0; i < 8; i++) {
    double M = Ms[i], R = radius_of(M, rho);
    TEST_CLOSE(cosmology_sigma_M(c, M), cosmology_sigma_R(c, R), 1e-7, "sigma(M) vs sigma(R)");
    TEST_CLOSE(cosmology_nu(c, M), COSMO_DELTA_C / cosmology_sigma_R(c, R), 1e-7, "nu(M)");
    double e = 1e-3; /* central difference in ln M, error ~ e^2 */
    double fd =
        (log(cosmology_sigma_R(c, R * exp(e / 3))) - log(cosmology_sigma_R(c, R * exp(-e / 3)))) /
        (2 * e);
    TEST_CLOSE(cosmology_dlnsigma_dlnM(c, M), fd, 1e-5, "d ln sigma / d ln M");
    TEST_CHECK(cosmology_dlnsigma_dlnM(c, M) < 0, "sigma must fall with mass");
    /* dn/dlnM = rho/M nu f(nu) |d ln sigma / d ln M| */
    double nu = COSMO_DELTA_C / cosmology_sigma_R(c, R);
    TEST_CLOSE(cosmology_st_dndlnm(c, M), rho / M * cosmology_st_nufnu(nu) * fabs(fd), 1e-5,
               "dn/dlnM");
  }
  /* the mass integral of (M/rho) dn/dlnM equals the nu integral of f(nu) */
  double a = log(1.7e9), b = log(6.1e15), sum = 0.0;
  int n = 20000;
  for (int i = 0; i <= n; i++) {
    double M = exp(a + (b - a) * i / n);
    sum += M / rho * cosmology_st_dndlnm(c, M) * (i == 0 || i == n ? 1 : (i % 2 ? 4 : 2));
  }
  double lhs = sum * (b - a) / n / 3.0;
  double nu1 = cosmology_nu(c, exp(a)), nu2 = cosmology_nu(c, exp(b));
  sum = 0.0;
  for (int i = 0; i <= n; i++) {
    double nu = nu1 + (nu2 - nu1) * i / n;
    sum += cosmology_st_nufnu(nu) / nu * (i == 0 || i == n ? 1 : (i % 2 ? 4 : 2));
  }
  double rhs = sum * (nu2 - nu1) / n / 3.0;
  TEST_CLOSE(lhs, rhs, 1e-6, "mass integral of dn/dlnM vs nu integral of f");
  cosmology_destroy(&c);
}

static void test_sheth_tormen(void) {
  /* nu f(nu) written out again */
  const double A = 0.3222, aa = 0.707, p = 0.3, dc = 1.686;
  const double nus[] = {0.013, 0.41, 1.0, 1.73, 3.9};
  for (size_t i = 0; i < 5; i++) {
    double nu = nus[i], x = aa * nu * nu;
    TEST_CLOSE(cosmology_st_nufnu(nu), A * sqrt(2 * x / M_PI) * (1 + pow(x, -p)) * exp(-x / 2),
               1e-13, "nu f(nu)");
    /* PBS bias is -(1/delta_c) d ln(nu f) / d ln nu */
    double e = 1e-4;
    double d =
        (log(cosmology_st_nufnu(nu * exp(e))) - log(cosmology_st_nufnu(nu * exp(-e)))) / (2 * e);
    TEST_CLOSE(cosmology_pbs_bias(nu), -d / dc, 1e-6, "PBS bias");
    TEST_CLOSE(cosmology_pbs_bias(nu), (x - 1) / dc + 2 * p / (dc * (1 + pow(x, p))), 1e-13,
               "PBS bias formula");
  }
  /* integral of f(nu) dnu over (0, inf): substitute nu = u^(5/2) (f ~ nu^-0.6 at 0),
   * midpoint rule in u up to nu = 40 */
  int n = 400000;
  double umax = pow(40.0, 0.4), du = umax / n, sf = 0.0, sb = 0.0;
  for (int i = 0; i < n; i++) {
    double u = (i + 0.5) * du, nu = pow(u, 2.5), jac = 2.5 * pow(u, 1.5);
    double f = cosmology_st_nufnu(nu) / nu;
    sf += f * jac * du;
    sb += cosmology_pbs_bias(nu) * f * jac * du;
  }
  double exact = A * (1.0 + pow(2.0, -p) * gsl_sf_gamma(0.5 - p) / sqrt(M_PI));
  TEST_CLOSE(sf, exact, 1e-5, "integral of f vs closed form");
  TEST_CLOSE(sf, 1.0, 1e-3, "integral of f(nu) dnu = 1");
  TEST_CHECK(fabs(sb) < 1e-4, "integral of b_L f dnu = %g, expected 0", sb);
}

/* ---- tables */

static char tmpdir[256];

static const char *write_file(const char *name, const char *text) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  if (!f) return NULL;
  fputs(text, f);
  fclose(f);
  return path;
}

static void expect_bad(const char *name, const char *text, int code, const char *line_tag) {
  const char *path = text ? write_file(name, text) : NULL;
  char missing[512];
  if (!text) {
    snprintf(missing, sizeof missing, "%s/%s", tmpdir, name);
    path = missing;
  }
  cosmo_params p = cosmo_params_default();
  cosmology *c = (cosmology *)&p; /* must be reset to NULL on error */
  status_clear();
  int st = cosmology_create(&p, path, &c);
  TEST_CHECK(st == code, "%s: status %d, expected %d (%s)", name, st, code, status_message());
  TEST_CHECK(c == NULL, "%s: object not NULL after an error", name);
  TEST_CHECK(strstr(status_message(), path) != NULL, "%s: message does not name the file: %s", name,
             status_message());
  if (line_tag)
    TEST_CHECK(strstr(status_message(), line_tag) != NULL, "%s: message lacks '%s': %s", name,
               line_tag, status_message());
  TEST_CHECK(strchr(status_message(), '\n') == NULL, "%s: message is not one line", name);
  if (st == CB_OK) cosmology_destroy(&c);
}

static void test_tables(void) {
  cosmo_params p = cosmo_params_default();
  p.sigma_8 = 0.7911;
  cosmology *eh = NULL;
  TEST_STATUS(cosmology_create(&p, NULL, &eh), CB_OK, "create EH");
  if (!eh) return;
  /* a CLASS-like table from EH: header, blank line, a third column, CRLF line ends */
  char path[512];
  snprintf(path, sizeof path, "%s/eh_pk.dat", tmpdir);
  FILE *f = fopen(path, "w");
  TEST_CHECK(f != NULL, "cannot write %s", path);
  if (!f) return;
  fprintf(f, "# k [h/Mpc]  P [(Mpc/h)^3]  extra\n\n");
  int n = 600;
  double kmin = 1.3e-5, kmax = 870.0;
  for (int i = 0; i < n; i++) {
    double k = kmin * pow(kmax / kmin, (double)i / (n - 1));
    fprintf(f, "  %.17g\t%.17g 42.0%s\n", k, cosmology_pk(eh, k), i % 2 ? "\r" : "");
  }
  fclose(f);
  cosmology *t = NULL;
  TEST_STATUS(cosmology_create(&p, path, &t), CB_OK, "read the EH table");
  if (t) {
    TEST_CHECK(cosmology_is_table(t), "table object says it is not a table");
    for (int i = 0; i < n - 1; i += 37) {
      double k = kmin * pow(kmax / kmin, (i + 0.5) / (n - 1)); /* between two rows */
      TEST_CLOSE(cosmology_pk(t, k), cosmology_pk(eh, k), 1e-3, "table P(k) between rows");
    }
    TEST_CLOSE(cosmology_pk(t, kmin), cosmology_pk(eh, kmin), 1e-12, "table P at its first row");
    TEST_CLOSE(cosmology_sigma_R(t, 8.0), p.sigma_8, 1e-4, "sigma_8 of the table");
    TEST_CLOSE(cosmology_sigma_M(t, 2.4e12), cosmology_sigma_M(eh, 2.4e12), 1e-4,
               "sigma(M) of the table");
    TEST_CLOSE(cosmology_st_dndlnm(t, 2.4e12), cosmology_st_dndlnm(eh, 2.4e12), 1e-3,
               "dn/dlnM of the table");
    TEST_STATUS(cosmology_check_k_range(t, 2 * M_PI / 250.0, sqrt(3.0) * M_PI * 64 / 250.0), CB_OK,
                "k range inside the table");
    TEST_STATUS(cosmology_check_k_range(t, kmin, kmax), CB_OK, "k range = the table's");
    status_clear();
    TEST_STATUS(cosmology_check_k_range(t, 1e-6, 0.5), CB_ERR_INPUT, "k below the table");
    TEST_CHECK(strstr(status_message(), path) && strstr(status_message(), "1e-06") &&
                   strstr(status_message(), "1.3e-05") && strstr(status_message(), "870"),
               "range message must name the file and both ranges: %s", status_message());
    TEST_STATUS(cosmology_check_k_range(t, 0.1, 2000.0), CB_ERR_INPUT, "k above the table");
    TEST_CHECK(isnan(cosmology_pk(t, 1e3)), "P outside the table must be NaN");
    cosmology_destroy(&t);
  }
  cosmology_destroy(&eh);

  /* exact log-log interpolation: a power law P = 1234.5 k^-1.7 on a coarse grid */
  f = fopen(path, "w");
  if (f) {
    for (int i = 0; i < 9; i++) {
      double k = 0.01 * pow(3.0, i);
      fprintf(f, "%.17g %.17g\n", k, 1234.5 * pow(k, -1.7));
    }
    fclose(f);
    TEST_STATUS(cosmology_create(&p, path, &t), CB_OK, "power-law table");
    if (t) {
      const double ks[] = {0.0137, 0.2, 4.44, 65.0};
      for (int i = 0; i < 4; i++)
        TEST_CLOSE(cosmology_pk(t, ks[i]), 1234.5 * pow(ks[i], -1.7), 1e-12, "log-log interp");
      cosmology_destroy(&t);
    }
  }

  /* every bad table */
  expect_bad("missing.dat", NULL, CB_ERR_IO, NULL);
  expect_bad(".", NULL, CB_ERR_IO, NULL); /* a directory */
  expect_bad("decreasing.dat", "0.01 100\n0.02 200\n# c\n0.015 300\n", CB_ERR_INPUT, "line 4");
  expect_bad("repeated.dat", "0.01 100\n0.02 200\n0.02 300\n", CB_ERR_INPUT, "line 3");
  expect_bad("text.dat", "# k P\n0.01 100\nk P(k)\n0.03 5\n", CB_ERR_INPUT, "line 3");
  expect_bad("onecol.dat", "0.01 100\n0.02\n", CB_ERR_INPUT, "line 2");
  expect_bad("garbage.dat", "0.01 100\n0.02 2x00\n", CB_ERR_INPUT, "line 2");
  expect_bad("negative.dat", "0.01 100\n0.02 -3\n0.03 5\n", CB_ERR_INPUT, "line 2");
  expect_bad("zero_k.dat", "0 100\n0.02 3\n0.03 5\n", CB_ERR_INPUT, "line 1");
  expect_bad("nan.dat", "0.01 100\n0.02 nan\n0.03 5\n", CB_ERR_INPUT, "line 2");
  expect_bad("inf.dat", "0.01 100\n0.02 3\ninf 5\n", CB_ERR_INPUT, "line 3");
  expect_bad("one_row.dat", "# only one\n0.01 100\n\n", CB_ERR_INPUT, "1 data row");
  expect_bad("empty.dat", "", CB_ERR_INPUT, "0 data rows");
}

static void test_bad_params(void) {
  struct {
    const char *name;
    cosmo_params p;
  } bad[] = {
      {"Omega_m", {-0.3, 0.05, 0.7, 0.96, 0.8, 0.0}},
      {"Omega_m", {NAN, 0.05, 0.7, 0.96, 0.8, 0.0}},
      {"Omega_b", {0.3, 0.31, 0.7, 0.96, 0.8, 0.0}},
      {"-h ", {0.3, 0.05, 0.0, 0.96, 0.8, 0.0}},
      {"sigma_8", {0.3, 0.05, 0.7, 0.96, -0.8, 0.0}},
      {"redshift", {0.3, 0.05, 0.7, 0.96, 0.8, -2.0}},
      {"n_s", {0.3, 0.05, 0.7, INFINITY, 0.8, 0.0}},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cosmology *c = NULL;
    status_clear();
    TEST_STATUS(cosmology_create(&bad[i].p, NULL, &c), CB_ERR_INPUT, bad[i].name);
    TEST_CHECK(strstr(status_message(), bad[i].name) != NULL, "message lacks '%s': %s", bad[i].name,
               status_message());
    TEST_CHECK(c == NULL, "object not NULL after an error");
  }
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  snprintf(tmpdir, sizeof tmpdir, "/tmp/test_cosmology_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    testing_skip("cannot create a temporary directory");
    return testing_finish();
  }
  test_eh();
  test_growth();
  test_sigma_mass();
  test_sheth_tormen();
  test_tables();
  test_bad_params();
  /* remove the temporary files */
  const char *files[] = {"eh_pk.dat",  "decreasing.dat", "repeated.dat", "text.dat",
                         "onecol.dat", "garbage.dat",    "negative.dat", "zero_k.dat",
                         "nan.dat",    "inf.dat",        "one_row.dat",  "empty.dat"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
    unlink(path);
  }
  rmdir(tmpdir);
  return testing_finish();
}
