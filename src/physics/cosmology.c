/* cosmology: the linear matter power spectrum, its growth, sigma(M) and Sheth-Tormen.
 *
 * MODEL.md section 2 (P(k), D(z)) and section 6 (sigma(M), the Sheth & Tormen 1999 mass
 * function and the peak-background-split Lagrangian bias). Units: k in h/Mpc, P(k) in
 * (Mpc/h)^3, R in Mpc/h, M in M_sun/h.
 *
 * P(k) comes from one of two sources.
 *  - Eisenstein & Hu (1998, ApJ 496, 605) no-wiggle transfer function, their eqs. 26-31:
 *      s        = 44.5 ln(9.83 / (Om h^2)) / sqrt(1 + 10 (Ob h^2)^(3/4))   Mpc      (26)
 *      alpha_G  = 1 - 0.328 ln(431 Om h^2) fb + 0.38 ln(22.3 Om h^2) fb^2, fb = Ob/Om (31)
 *      Gamma    = Om h (alpha_G + (1 - alpha_G) / (1 + (0.43 k s)^4)), k in 1/Mpc  (30)
 *      q        = (k / h Mpc^-1) Theta^2 / Gamma, Theta = T_cmb / 2.7 K           (28)
 *      T0       = L0 / (L0 + C0 q^2), L0 = ln(2e + 1.8 q), C0 = 14.2 + 731/(1 + 62.5 q) (29)
 *    with T_cmb = 2.7255 K (Fixsen 2009). With k in h/Mpc, k s uses k h and q = k Theta^2/Gamma.
 *    P(k) = A k^n_s T0(k)^2 D(z)^2, A set so that sigma(8 Mpc/h) = sigma_8 at z = 0.
 *    D(z) is the flat-LCDM growing mode (Heath 1977), radiation ignored,
 *      D(a) proportional to E(a) int_0^a da' / (a' E(a'))^3,  E^2 = Om a^-3 + (1 - Om),
 *    normalised to D(z = 0) = 1 (GSL adaptive quadrature).
 *  - A text table "k P(k)" (CLASS / CAMB output: extra columns ignored, '#' lines and blank
 *    lines skipped), interpolated linearly in (ln k, ln P) and used as given: the table is
 *    the spectrum at the redshift it was computed for; sigma_8, n_s, Omega_b, h and z are not
 *    applied to it (Omega_m still sets the mean density). Outside the table P(k) is not
 *    defined: cosmology_check_k_range is the place where callers learn it with a clear error.
 *
 * sigma(R)^2 = 1/(2 pi^2) int k^3 P(k) W(kR)^2 dln k, top hat W(x) = 3 (sin x - x cos x)/x^3,
 * integrated in ln k with GSL's adaptive Gauss-Kronrod rule over [k_lo, 400/R], beyond which
 * the window has removed all but ~1e-8 of the variance. For Eisenstein-Hu k_lo = min(1e-6,
 * 1e-4/R) h/Mpc; for a table the integral runs over the table's own k range only (P is not
 * known outside it), so a table that stops at k_max underestimates sigma for R ~< 10/k_max.
 * d ln sigma / d ln M comes from the analytic R-derivative of the same integral (W' in
 * closed form), not from a finite difference. M = 4 pi rho_mean R^3 / 3.
 *
 * At create time ln sigma and d ln sigma / d ln M are tabulated on 1e7.5 .. 1e17.5 M_sun/h
 * (0.08 in ln M) and splined (cubic), so cosmology_sigma_M, cosmology_nu and
 * cosmology_st_dndlnm are cheap on 1e8 .. 1e17 (relative error ~1e-8); outside that range
 * they fall back to direct quadrature.
 *
 * Nothing here speaks MPI. */
#include "cerberus/cosmology.h"

#include "cerberus/status.h"

#include <errno.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_integration.h>
#include <gsl/gsl_interp.h>
#include <gsl/gsl_math.h>
#include <gsl/gsl_spline.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COSMO_TCMB 2.7255                   /* K, Fixsen (2009) */
#define COSMO_SIGMA_KMAX_X 400.0            /* upper limit of k R in sigma integrals */
#define COSMO_QUAD_LIMIT 4000               /* subintervals of the quadrature workspace */
#define COSMO_SPLINE_LNM_LO (7.5 * M_LN10)  /* tabulated ln M range (padded by half a */
#define COSMO_SPLINE_LNM_HI (17.5 * M_LN10) /* decade beyond 1e8 .. 1e17) */
#define COSMO_SPLINE_NODES 288
#define COSMO_FAST_LNM_LO (8.0 * M_LN10) /* spline used inside 1e8 .. 1e17 only */
#define COSMO_FAST_LNM_HI (17.0 * M_LN10)
#define COSMO_TABLE_MAX_BREAKS 250 /* at most this many table nodes as quadrature breakpoints */

/* Constants of the Eisenstein-Hu no-wiggle fit that do not depend on k. */
typedef struct eh_consts {
  double h, omh, s_mpc, alpha_g, theta2;
} eh_consts;

struct cosmology {
  cosmo_params p;
  bool is_table;
  /* Eisenstein-Hu */
  eh_consts eh;
  double amplitude; /* A of P = A k^n_s T^2 D^2, with D^2 included */
  double growth;    /* D(z) */
  /* table */
  char *file;
  size_t n;
  double *lnk, *lnp;
  gsl_interp *interp;
  double kmin, kmax;
  /* sigma(M) spline */
  double *s_lnm, *s_lnsig, *s_dlns;
  gsl_spline *sp_lnsig, *sp_dlns;
  gsl_integration_workspace *ws; /* used at create time only */
};

cosmo_params cosmo_params_default(void) {
  cosmo_params p = {.Omega_m = 0.3111,
                    .Omega_b = 0.0490,
                    .h = 0.6766,
                    .n_s = 0.9665,
                    .sigma_8 = 0.8102,
                    .redshift = 0.0};
  return p;
}

/* ---------------------------------------------------------------- Eisenstein-Hu */

static eh_consts eh_setup(const cosmo_params *p) {
  eh_consts e;
  double omh2 = p->Omega_m * p->h * p->h, obh2 = p->Omega_b * p->h * p->h;
  double fb = p->Omega_b / p->Omega_m;
  double theta = COSMO_TCMB / 2.7;
  e.h = p->h;
  e.omh = p->Omega_m * p->h;
  e.s_mpc = 44.5 * log(9.83 / omh2) / sqrt(1.0 + 10.0 * pow(obh2, 0.75));
  e.alpha_g = 1.0 - 0.328 * log(431.0 * omh2) * fb + 0.38 * log(22.3 * omh2) * fb * fb;
  e.theta2 = theta * theta;
  return e;
}

static double eh_transfer(const eh_consts *e, double k) {
  double ks = 0.43 * k * e->h * e->s_mpc;
  double ks2 = ks * ks;
  double gamma = e->omh * (e->alpha_g + (1.0 - e->alpha_g) / (1.0 + ks2 * ks2));
  double q = k * e->theta2 / gamma;
  double l0 = log(2.0 * M_E + 1.8 * q);
  double c0 = 14.2 + 731.0 / (1.0 + 62.5 * q);
  return l0 / (l0 + c0 * q * q);
}

double cosmology_transfer_eh(const cosmo_params *p, double k) {
  eh_consts e = eh_setup(p);
  return eh_transfer(&e, k);
}

/* ---------------------------------------------------------------- growth */

static double growth_integrand(double a, void *vp) {
  double om = *(const double *)vp;
  /* 1/(a E)^3 = (Om/a + (1 - Om) a^2)^(-3/2): finite (-> 0) as a -> 0 */
  double x = om / a + (1.0 - om) * a * a;
  return 1.0 / (x * sqrt(x));
}

/* Unnormalised growing mode g(a) = E(a) int_0^a da'/(a'E)^3. */
static double growth_unnormalised(double om, double a, gsl_integration_workspace *ws) {
  gsl_function f = {growth_integrand, &om};
  double res = 0.0, err = 0.0;
  gsl_integration_qag(&f, 0.0, a, 0.0, 1e-12, COSMO_QUAD_LIMIT, GSL_INTEG_GAUSS41, ws, &res, &err);
  return sqrt(om / (a * a * a) + (1.0 - om)) * res;
}

double cosmology_growth(const cosmo_params *p, double z) {
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  gsl_integration_workspace *ws = gsl_integration_workspace_alloc(COSMO_QUAD_LIMIT);
  double d = NAN;
  if (ws) {
    double a = 1.0 / (1.0 + z);
    d = growth_unnormalised(p->Omega_m, a, ws) / growth_unnormalised(p->Omega_m, 1.0, ws);
    gsl_integration_workspace_free(ws);
  }
  gsl_set_error_handler(old);
  return d;
}

/* ---------------------------------------------------------------- P(k) */

/* ln P at ln k inside the table (no range check). acc may be NULL. */
static double table_lnp(const cosmology *c, double lnk, gsl_interp_accel *acc) {
  if (lnk <= c->lnk[0]) return c->lnp[0];
  if (lnk >= c->lnk[c->n - 1]) return c->lnp[c->n - 1];
  return gsl_interp_eval(c->interp, c->lnk, c->lnp, lnk, acc);
}

/* P(k) without the range policy of cosmology_pk; acc used for tables (may be NULL). */
static double pk_raw(const cosmology *c, double k, double lnk, gsl_interp_accel *acc) {
  if (c->is_table) return exp(table_lnp(c, lnk, acc));
  double t = eh_transfer(&c->eh, k);
  return c->amplitude * pow(k, c->p.n_s) * t * t;
}

/* Tolerance on the table edges: k computed as 2 pi n / L may miss an edge by rounding. */
static const double table_edge_rtol = 1e-9;

double cosmology_pk(const cosmology *c, double k) {
  if (!(k > 0.0)) return 0.0; /* the k = 0 mode carries no power */
  if (c->is_table) {
    if (k < c->kmin * (1.0 - table_edge_rtol) || k > c->kmax * (1.0 + table_edge_rtol))
      return NAN; /* outside the table: callers check with cosmology_check_k_range */
  }
  return pk_raw(c, k, log(k), NULL);
}

int cosmology_check_k_range(const cosmology *c, double kmin, double kmax) {
  if (!c->is_table) return CB_OK;
  CB_CHECK(kmin > 0.0 && kmin <= kmax, CB_ERR_INTERNAL,
           "cosmology_check_k_range: invalid k range [%g, %g]", kmin, kmax);
  CB_CHECK(kmin >= c->kmin * (1.0 - table_edge_rtol) && kmax <= c->kmax * (1.0 + table_edge_rtol),
           CB_ERR_INPUT,
           "P(k) table '%s' covers k = [%g, %g] h/Mpc but k = [%g, %g] h/Mpc is needed", c->file,
           c->kmin, c->kmax, kmin, kmax);
  return CB_OK;
}

/* ---------------------------------------------------------------- sigma(R) */

/* Top-hat window and its derivative; series below x = 0.1 (error < 1e-14). */
static double tophat(double x) {
  if (x < 0.1) {
    double x2 = x * x;
    return 1.0 + x2 * (-1.0 / 10.0 + x2 * (1.0 / 280.0 + x2 * (-1.0 / 15120.0)));
  }
  return 3.0 * (sin(x) - x * cos(x)) / (x * x * x);
}

static double tophat_deriv(double x) {
  if (x < 0.1) {
    double x2 = x * x;
    return x * (-1.0 / 5.0 + x2 * (1.0 / 70.0 + x2 * (-1.0 / 2520.0 + x2 / 166320.0)));
  }
  double x2 = x * x;
  return 3.0 * ((x2 - 3.0) * sin(x) + 3.0 * x * cos(x)) / (x2 * x2);
}

typedef struct sigma_args {
  const cosmology *c;
  double R;
  int deriv; /* 0: d sigma^2 / d ln k; 1: d (d sigma^2/dR) / d ln k */
  gsl_interp_accel *acc;
} sigma_args;

static double sigma_integrand(double lnk, void *vp) {
  const sigma_args *s = vp;
  double k = exp(lnk);
  double pk = pk_raw(s->c, k, lnk, s->acc);
  double x = k * s->R;
  double w = tophat(x);
  double k3p = k * k * k * pk / (2.0 * M_PI * M_PI);
  if (s->deriv == 0) return k3p * w * w;
  return k3p * 2.0 * w * tophat_deriv(x) * k;
}

/* sigma^2(R) (deriv 0) or d sigma^2 / dR (deriv 1). Returns a GSL status. */
static int sigma2_integral(const cosmology *c, double R, int deriv, gsl_integration_workspace *ws,
                           double *out) {
  gsl_interp_accel acc = {0, 0, 0};
  sigma_args args = {c, R, deriv, &acc};
  gsl_function f = {sigma_integrand, &args};
  double khi = COSMO_SIGMA_KMAX_X / R, klo;
  double res = 0.0, err = 0.0;
  int st;
  *out = 0.0;
  if (!c->is_table) {
    klo = fmin(1e-6, 1e-4 / R);
    st = gsl_integration_qag(&f, log(klo), log(khi), 0.0, 1e-10, COSMO_QUAD_LIMIT,
                             GSL_INTEG_GAUSS41, ws, &res, &err);
  } else {
    /* Break the range at the table nodes (kinks of the log-log interpolation), thinned to
     * at most COSMO_TABLE_MAX_BREAKS points for very long tables. */
    double lo = c->lnk[0], hi = fmin(c->lnk[c->n - 1], log(khi));
    if (!(hi > lo)) return GSL_SUCCESS;
    size_t stride = c->n / COSMO_TABLE_MAX_BREAKS + 1, nb = 0;
    double *pts = malloc((c->n + 2) * sizeof *pts);
    if (!pts) return GSL_ENOMEM;
    pts[nb++] = lo;
    for (size_t i = stride; i < c->n; i += stride)
      if (c->lnk[i] > lo && c->lnk[i] < hi) pts[nb++] = c->lnk[i];
    pts[nb++] = hi;
    st = gsl_integration_qagp(&f, pts, nb, 0.0, 1e-10, COSMO_QUAD_LIMIT, ws, &res, &err);
    free(pts);
  }
  *out = res;
  /* Round-off limited results are as accurate as this integrand allows: accept them. */
  return st == GSL_EROUND ? GSL_SUCCESS : st;
}

static double radius_of_mass(const cosmology *c, double M) {
  return cbrt(3.0 * M / (4.0 * M_PI * cosmology_rho_mean(&c->p)));
}

/* ln sigma(R) and d ln sigma / d ln M (deriv may be NULL) by direct quadrature. */
static int sigma_direct(const cosmology *c, double R, gsl_integration_workspace *ws, double *lnsig,
                        double *dlns) {
  double s2 = 0.0, ds2 = 0.0;
  int st = sigma2_integral(c, R, 0, ws, &s2);
  if (st == GSL_SUCCESS && dlns) st = sigma2_integral(c, R, 1, ws, &ds2);
  *lnsig = 0.5 * log(s2);
  if (dlns) *dlns = R * ds2 / (6.0 * s2); /* (1/3) d ln sigma / d ln R */
  return st;
}

/* Direct evaluation for the public functions (not at create): its own workspace. */
static void sigma_direct_public(const cosmology *c, double R, double *lnsig, double *dlns) {
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  gsl_integration_workspace *ws = gsl_integration_workspace_alloc(COSMO_QUAD_LIMIT);
  *lnsig = NAN;
  if (dlns) *dlns = NAN;
  if (ws) {
    if (sigma_direct(c, R, ws, lnsig, dlns) != GSL_SUCCESS) {
      *lnsig = NAN;
      if (dlns) *dlns = NAN;
    }
    gsl_integration_workspace_free(ws);
  }
  gsl_set_error_handler(old);
}

double cosmology_sigma_R(const cosmology *c, double R) {
  double lns;
  sigma_direct_public(c, R, &lns, NULL);
  return exp(lns);
}

double cosmology_rho_mean(const cosmo_params *p) {
  /* Critical density 3 H0^2 / (8 pi G) with H0 = 100 h km/s/Mpc and
   * G = 4.30091727e-9 Mpc (km/s)^2 / M_sun: 2.77536627e11 h^2 M_sun / Mpc^3, i.e.
   * 2.77536627e11 (M_sun/h) / (Mpc/h)^3. */
  return 2.77536627e11 * p->Omega_m;
}

/* ln sigma(M) and d ln sigma / d ln M: spline inside 1e8..1e17, quadrature outside. */
static void sigma_of_mass(const cosmology *c, double M, double *lnsig, double *dlns) {
  double lnm = log(M);
  if (lnm >= COSMO_FAST_LNM_LO && lnm <= COSMO_FAST_LNM_HI) {
    *lnsig = gsl_spline_eval(c->sp_lnsig, lnm, NULL);
    if (dlns) *dlns = gsl_spline_eval(c->sp_dlns, lnm, NULL);
    return;
  }
  sigma_direct_public(c, radius_of_mass(c, M), lnsig, dlns);
}

double cosmology_sigma_M(const cosmology *c, double M) {
  double lns;
  sigma_of_mass(c, M, &lns, NULL);
  return exp(lns);
}

double cosmology_dlnsigma_dlnM(const cosmology *c, double M) {
  double lns, d;
  sigma_of_mass(c, M, &lns, &d);
  return d;
}

/* ---------------------------------------------------------------- Sheth-Tormen */

double cosmology_st_nufnu(double nu) {
  double anu2 = COSMO_ST_a * nu * nu;
  return COSMO_ST_A * sqrt(2.0 * anu2 / M_PI) * (1.0 + pow(anu2, -COSMO_ST_p)) * exp(-0.5 * anu2);
}

double cosmology_nu(const cosmology *c, double M) {
  double lns;
  sigma_of_mass(c, M, &lns, NULL);
  return COSMO_DELTA_C * exp(-lns);
}

double cosmology_st_dndlnm(const cosmology *c, double M) {
  double lns, dlns;
  sigma_of_mass(c, M, &lns, &dlns);
  double nu = COSMO_DELTA_C * exp(-lns);
  /* |d ln nu / d ln M| = |d ln sigma / d ln M| */
  return cosmology_rho_mean(&c->p) / M * cosmology_st_nufnu(nu) * fabs(dlns);
}

double cosmology_pbs_bias(double nu) {
  double anu2 = COSMO_ST_a * nu * nu;
  return (anu2 - 1.0) / COSMO_DELTA_C +
         2.0 * COSMO_ST_p / (COSMO_DELTA_C * (1.0 + pow(anu2, COSMO_ST_p)));
}

const cosmo_params *cosmology_params(const cosmology *c) {
  return &c->p;
}
bool cosmology_is_table(const cosmology *c) {
  return c->is_table;
}

/* ---------------------------------------------------------------- table reading */

/* Parse one number token at *s; on success advance *s past it and return true. */
static bool parse_number(char **s, double *v) {
  char *p = *s, *end;
  while (*p == ' ' || *p == '\t') p++;
  errno = 0;
  *v = strtod(p, &end);
  if (end == p) return false;
  if (*end != '\0' && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end != ',')
    return false;
  *s = end;
  return true;
}

static int table_parse(cosmology *c, FILE *f, char **line, size_t *cap) {
  const char *file = c->file;
  size_t alloc = 0;
  long lineno = 0;
  ssize_t len;
  errno = 0;
  while ((len = getline(line, cap, f)) >= 0) {
    lineno++;
    char *s = *line;
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r')) s[--len] = '\0';
    char *p = s;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '\0' || *p == '#') continue;
    double k, pk;
    char *q = p;
    CB_CHECK(parse_number(&q, &k) && parse_number(&q, &pk), CB_ERR_INPUT,
             "P(k) table '%s' line %ld: expected two numbers 'k P(k)', got '%.60s'", file, lineno,
             p);
    CB_CHECK(isfinite(k) && k > 0.0, CB_ERR_INPUT,
             "P(k) table '%s' line %ld: k = %g must be positive and finite", file, lineno, k);
    CB_CHECK(isfinite(pk) && pk > 0.0, CB_ERR_INPUT,
             "P(k) table '%s' line %ld: P(k) = %g must be positive and finite", file, lineno, pk);
    double lnk = log(k);
    CB_CHECK(c->n == 0 || lnk > c->lnk[c->n - 1], CB_ERR_INPUT,
             "P(k) table '%s' line %ld: k = %g is not larger than the previous k = %g (k must "
             "be strictly increasing)",
             file, lineno, k, c->n ? exp(c->lnk[c->n - 1]) : 0.0);
    if (c->n == alloc) {
      size_t na = alloc ? 2 * alloc : 256;
      double *a = realloc(c->lnk, na * sizeof *a);
      CB_CHECK(a != NULL, CB_ERR_MEM, "out of memory reading P(k) table '%s'", file);
      c->lnk = a;
      a = realloc(c->lnp, na * sizeof *a);
      CB_CHECK(a != NULL, CB_ERR_MEM, "out of memory reading P(k) table '%s'", file);
      c->lnp = a;
      alloc = na;
    }
    c->lnk[c->n] = lnk;
    c->lnp[c->n] = log(pk);
    c->n++;
  }
  CB_CHECK(!ferror(f), CB_ERR_IO, "cannot read P(k) table '%s': %s", file,
           strerror(errno ? errno : EIO));
  CB_CHECK(c->n >= 2, CB_ERR_INPUT,
           "P(k) table '%s' has %zu data row%s: at least 2 rows 'k P(k)' are needed", file, c->n,
           c->n == 1 ? "" : "s");
  return CB_OK;
}

static int table_read(cosmology *c, const char *file) {
  c->file = strdup(file);
  CB_CHECK(c->file != NULL, CB_ERR_MEM, "out of memory");
  FILE *f = fopen(file, "r");
  CB_CHECK(f != NULL, CB_ERR_IO, "cannot open P(k) table '%s': %s", file, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  int st = table_parse(c, f, &line, &cap);
  free(line);
  fclose(f);
  CB_CALL(st);
  c->kmin = exp(c->lnk[0]);
  c->kmax = exp(c->lnk[c->n - 1]);
  c->interp = gsl_interp_alloc(gsl_interp_linear, c->n);
  CB_CHECK(c->interp != NULL, CB_ERR_MEM, "out of memory interpolating P(k) table '%s'", file);
  CB_CHECK(gsl_interp_init(c->interp, c->lnk, c->lnp, c->n) == GSL_SUCCESS, CB_ERR_INTERNAL,
           "cannot interpolate P(k) table '%s'", file);
  return CB_OK;
}

/* ---------------------------------------------------------------- create / destroy */

static int params_check(const cosmo_params *p) {
  CB_CHECK(isfinite(p->Omega_m) && p->Omega_m > 0.0 && p->Omega_m <= 1.0, CB_ERR_INPUT,
           "-Omega_m must be in (0, 1] (got %g)", p->Omega_m);
  CB_CHECK(isfinite(p->Omega_b) && p->Omega_b >= 0.0 && p->Omega_b < p->Omega_m, CB_ERR_INPUT,
           "-Omega_b must be in [0, Omega_m = %g) (got %g)", p->Omega_m, p->Omega_b);
  CB_CHECK(isfinite(p->h) && p->h > 0.0, CB_ERR_INPUT, "-h must be positive (got %g)", p->h);
  CB_CHECK(isfinite(p->n_s), CB_ERR_INPUT, "-n_s must be finite (got %g)", p->n_s);
  CB_CHECK(isfinite(p->sigma_8) && p->sigma_8 > 0.0, CB_ERR_INPUT,
           "-sigma_8 must be positive (got %g)", p->sigma_8);
  CB_CHECK(isfinite(p->redshift) && p->redshift >= 0.0, CB_ERR_INPUT,
           "-redshift must be non-negative (got %g)", p->redshift);
  return CB_OK;
}

/* Normalise Eisenstein-Hu to sigma_8 and apply D(z)^2. */
static int eh_normalise(cosmology *c) {
  double s2 = 0.0;
  c->eh = eh_setup(&c->p);
  c->amplitude = 1.0;
  int st = sigma2_integral(c, 8.0, 0, c->ws, &s2);
  CB_CHECK(st == GSL_SUCCESS && s2 > 0.0 && isfinite(s2), CB_ERR_NUMERIC,
           "cannot normalise P(k) to sigma_8: quadrature failed (%s)", gsl_strerror(st));
  c->growth = growth_unnormalised(c->p.Omega_m, 1.0 / (1.0 + c->p.redshift), c->ws) /
              growth_unnormalised(c->p.Omega_m, 1.0, c->ws);
  CB_CHECK(isfinite(c->growth) && c->growth > 0.0, CB_ERR_NUMERIC,
           "growth factor D(z = %g) is not finite", c->p.redshift);
  c->amplitude = c->p.sigma_8 * c->p.sigma_8 / s2 * c->growth * c->growth;
  return CB_OK;
}

static int sigma_table_build(cosmology *c) {
  size_t n = COSMO_SPLINE_NODES;
  CB_CALLOC(c->s_lnm, n);
  CB_CALLOC(c->s_lnsig, n);
  CB_CALLOC(c->s_dlns, n);
  for (size_t i = 0; i < n; i++) {
    double lnm = COSMO_SPLINE_LNM_LO +
                 (COSMO_SPLINE_LNM_HI - COSMO_SPLINE_LNM_LO) * (double)i / (double)(n - 1);
    int st = sigma_direct(c, radius_of_mass(c, exp(lnm)), c->ws, &c->s_lnsig[i], &c->s_dlns[i]);
    CB_CHECK(st == GSL_SUCCESS && isfinite(c->s_lnsig[i]) && isfinite(c->s_dlns[i]), CB_ERR_NUMERIC,
             "sigma(M = %.3g M_sun/h) failed (%s)%s%s", exp(lnm), gsl_strerror(st),
             c->is_table ? " with P(k) table " : "", c->is_table ? c->file : "");
    c->s_lnm[i] = lnm;
  }
  c->sp_lnsig = gsl_spline_alloc(gsl_interp_cspline, n);
  c->sp_dlns = gsl_spline_alloc(gsl_interp_cspline, n);
  CB_CHECK(c->sp_lnsig && c->sp_dlns, CB_ERR_MEM, "out of memory for the sigma(M) spline");
  gsl_spline_init(c->sp_lnsig, c->s_lnm, c->s_lnsig, n);
  gsl_spline_init(c->sp_dlns, c->s_lnm, c->s_dlns, n);
  return CB_OK;
}

static int cosmology_build(cosmology *c, const char *pk_file) {
  c->ws = gsl_integration_workspace_alloc(COSMO_QUAD_LIMIT);
  CB_CHECK(c->ws != NULL, CB_ERR_MEM, "out of memory for the quadrature workspace");
  if (c->is_table)
    CB_CALL(table_read(c, pk_file));
  else
    CB_CALL(eh_normalise(c));
  CB_CALL(sigma_table_build(c));
  gsl_integration_workspace_free(c->ws);
  c->ws = NULL;
  return CB_OK;
}

int cosmology_create(const cosmo_params *p, const char *pk_file, cosmology **out) {
  *out = NULL;
  CB_CALL(params_check(p));
  cosmology *c;
  CB_CALLOC(c, 1);
  c->p = *p;
  c->is_table = pk_file && pk_file[0] != '\0';
  c->growth = 1.0;
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  int st = cosmology_build(c, pk_file);
  gsl_set_error_handler(old);
  if (st != CB_OK) {
    cosmology_destroy(&c);
    CB_CALL(st);
  }
  *out = c;
  return CB_OK;
}

void cosmology_destroy(cosmology **cp) {
  if (!cp || !*cp) return;
  cosmology *c = *cp;
  if (c->interp) gsl_interp_free(c->interp);
  if (c->sp_lnsig) gsl_spline_free(c->sp_lnsig);
  if (c->sp_dlns) gsl_spline_free(c->sp_dlns);
  if (c->ws) gsl_integration_workspace_free(c->ws);
  free(c->file);
  free(c->lnk);
  free(c->lnp);
  free(c->s_lnm);
  free(c->s_lnsig);
  free(c->s_dlns);
  free(c);
  *cp = NULL;
}
