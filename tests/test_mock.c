/* test_mock: the halo sampler and the st-pbs truth against exact answers (MODEL.md section 6).
 *
 * 1. A synthetic truth dn/dlnM = A(v) (M/Mth)^-0.9 exp(-M/M*), A(v) varying over the box and 0
 *    in every voxel with (i + 2j + 3k) % 7 == 3:
 *    - expected counts against V A(v) times the exact integral (incomplete gamma function);
 *    - no halo in a voxel with zero expected count; every halo in its voxel, on its rank;
 *    - the total count within Poisson tolerance (4 sigma) of the exact integral over the box;
 *    - the masses against the exact mass distribution (Kolmogorov-Smirnov, p > 1e-3);
 *    - the same catalogue, as a set, as rank 0 alone on a sub-communicator.
 * 2. A mass function linear in ln M on a grid of only two cells: the inverse transform within
 *    a cell must follow the linear density (KS against the exact quadratic CDF), and the
 *    expected count is exact.
 * 3. Gaussian smoothing of a plane wave: exp(-k^2 R^2 / 2) times the wave.
 * 4. The st-pbs truth on a made-up delta and environment (1 + delta = 0 in some voxels, an
 *    environment large enough to overflow exp without the shift): the box average of
 *    n(M | v) equals n_ST(M) at every mass (that is what Z(M) is for), empty voxels get no halo.
 * 5. The whole chain (white noise, 2LPT, CIC, environment, st-pbs) on a 32^3 grid: count and
 *    mass distribution against Sheth-Tormen integrated over the box, and the same catalogue
 *    as rank 0 alone. */
#include "testing.h"

#include "cerberus/catalogue.h"
#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/forward.h"
#include "cerberus/ic.h"
#include "cerberus/mock.h"
#include "cerberus/status.h"

#include <gsl/gsl_integration.h>
#include <gsl/gsl_sf_gamma.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PI 3.14159265358979323846

/* ------------------------------------------------------------ helpers */

/* Every halo of every rank on rank 0, as rows (x, y, z, M), sorted. *n on rank 0 only. */
static double *gather_sorted(const catalogue *cat, MPI_Comm comm, size_t *n_out);

static int cmp_rows(const void *a, const void *b) {
  const double *x = a, *y = b;
  for (int c = 0; c < 4; c++)
    if (x[c] != y[c]) return x[c] < y[c] ? -1 : 1;
  return 0;
}

static double *gather_sorted(const catalogue *cat, MPI_Comm comm, size_t *n_out) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double *mine = malloc((4 * cat->n + 1) * sizeof *mine);
  for (size_t j = 0; j < cat->n; j++) {
    memcpy(mine + 4 * j, cat->position + 3 * j, 3 * sizeof(double));
    mine[4 * j + 3] = cat->mass[j];
  }
  int cnt = (int)(4 * cat->n);
  int *counts = calloc((size_t)size, sizeof *counts),
      *displs = calloc((size_t)size, sizeof *displs);
  MPI_Gather(&cnt, 1, MPI_INT, counts, 1, MPI_INT, 0, comm);
  int total = 0;
  for (int r = 0; r < size; r++) {
    displs[r] = total;
    total += counts[r];
  }
  double *all = rank == 0 ? malloc(((size_t)total + 1) * sizeof *all) : NULL;
  MPI_Gatherv(mine, cnt, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, 0, comm);
  free(mine);
  free(counts);
  free(displs);
  *n_out = (size_t)total / 4;
  if (rank == 0) qsort(all, *n_out, 4 * sizeof(double), cmp_rows);
  return all;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : (x > y);
}

/* Kolmogorov distribution: P(K > lambda) = 2 sum_k (-1)^(k-1) exp(-2 k^2 lambda^2). */
static double kolmogorov_q(double lambda) {
  if (lambda < 0.2) return 1.0;
  double q = 0, sign = 1;
  for (int k = 1; k <= 100; k++) {
    double term = exp(-2.0 * k * k * lambda * lambda);
    q += sign * term;
    sign = -sign;
    if (term < 1e-16) break;
  }
  q *= 2;
  return q < 0 ? 0 : (q > 1 ? 1 : q);
}

/* KS p-value of n sorted values x against the CDF cdf(x, ctx). */
static double ks_pvalue(const double *x, size_t n, double (*cdf)(double, void *), void *ctx,
                        double *D_out) {
  double D = 0;
  for (size_t i = 0; i < n; i++) {
    double F = cdf(x[i], ctx);
    double d1 = fabs(F - (double)i / (double)n), d2 = fabs((double)(i + 1) / (double)n - F);
    D = fmax(D, fmax(d1, d2));
  }
  double sn = sqrt((double)n);
  *D_out = D;
  return kolmogorov_q((sn + 0.12 + 0.11 / sn) * D);
}

/* Masses of every rank on rank 0, sorted (n on rank 0). */
static double *gather_masses(const catalogue *cat, MPI_Comm comm, size_t *n) {
  double *rows = gather_sorted(cat, comm, n);
  if (!rows) return NULL;
  double *m = malloc((*n + 1) * sizeof *m);
  for (size_t j = 0; j < *n; j++) m[j] = rows[4 * j + 3];
  free(rows);
  qsort(m, *n, sizeof *m, cmp_double);
  return m;
}

static void compare_sets(const catalogue *cat, MPI_Comm comm, const catalogue *solo,
                         const char *what) {
  size_t n_all = 0, n_solo = 0;
  double *all = gather_sorted(cat, comm, &n_all);
  if (testing_rank() == 0 && !solo) testing_fail(__FILE__, __LINE__, "%s: no solo run", what);
  if (testing_rank() == 0 && solo) {
    double *one = gather_sorted(solo, MPI_COMM_SELF, &n_solo);
    TEST_CHECK(n_all == n_solo, "%s: %zu halos on %d ranks, %zu on rank 0 alone", what, n_all,
               testing_size(), n_solo);
    double worst = 0;
    for (size_t j = 0; j < n_all && j < n_solo; j++)
      for (int c = 0; c < 4; c++) {
        double a = all[4 * j + c], b = one[4 * j + c];
        worst = fmax(worst, fabs(a - b) / fmax(fabs(a), fabs(b)));
      }
    TEST_CHECK(worst <= 1e-10, "%s: catalogues differ from rank 0 alone (rel %.3g)", what, worst);
    free(one);
  }
  free(all);
}

/* ------------------------------------------------------------ 1. synthetic truth */

typedef struct synth {
  const field *f;
  double A0, slope, mstar, mth;
} synth;

static double synth_amp(const synth *s, ptrdiff_t i, ptrdiff_t j, ptrdiff_t k) {
  const double n = (double)s->f->n;
  if ((i + 2 * j + 3 * k) % 7 == 3) return 0;
  return s->A0 * (1.0 + 0.6 * sin(2 * PI * (i + 0.3) / n) * cos(2 * PI * (2 * j + 0.1) / n) +
                  0.25 * sin(2 * PI * 3 * k / n + 1.1));
}

static int synth_fn(void *ctx, ptrdiff_t v, size_t nm, const double *lnm, double *out) {
  const synth *s = ctx;
  const ptrdiff_t n = s->f->n;
  double A = synth_amp(s, s->f->local_0_start + v / (n * n), (v / n) % n, v % n);
  for (size_t b = 0; b < nm; b++) {
    double M = exp(lnm[b]);
    out[b] = A * pow(M / s->mth, -s->slope) * exp(-M / s->mstar);
  }
  return CB_OK;
}

/* integral of (M/Mth)^-a exp(-M/M*) dlnM from Mth to M = Mth^a M*^-a [G(-a, Mth/M*) - G(-a, M/M*)]
 */
static double synth_integral(const synth *s, double M) {
  double a = s->slope;
  return pow(s->mth / s->mstar, a) *
         (gsl_sf_gamma_inc(-a, s->mth / s->mstar) - gsl_sf_gamma_inc(-a, M / s->mstar));
}

static double synth_cdf(double M, void *ctx) {
  const synth *s = ctx;
  return synth_integral(s, M) / synth_integral(s, MOCK_MASS_MAX);
}

static void test_synthetic(MPI_Comm comm) {
  const ptrdiff_t n = 32;
  const double L = 213.7;
  field *f = NULL;
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field_create");
  if (!f) return;
  synth s = {.f = f, .A0 = 2.9e-3, .slope = 0.9, .mstar = 3.1e14, .mth = 3.3e12};
  mock *m = NULL;
  TEST_STATUS(mock_create(f, s.mth, MOCK_MASS_MAX, MOCK_DLNM, &m), CB_OK, "mock_create");
  double *expected = field_alloc_real(f);
  catalogue *cat = NULL;
  TEST_STATUS(mock_sample(m, 20261127, synth_fn, &s, expected, &cat), CB_OK, "mock_sample");
  if (!cat) return;
  const double cell = L / (double)n, V = cell * cell * cell;
  const double integ = synth_integral(&s, MOCK_MASS_MAX);

  /* expected counts against the exact integral, zeros exactly zero */
  double worst = 0, mu = 0, mu_exact = 0;
  long zero_nonzero = 0;
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    double A = synth_amp(&s, f->local_0_start + v / (n * n), (v / n) % n, v % n);
    double want = V * A * integ;
    if (A == 0) {
      if (expected[v] != 0) zero_nonzero++;
    } else {
      worst = fmax(worst, fabs(expected[v] - want) / want);
    }
    mu += expected[v];
    mu_exact += want;
  }
  TEST_CHECK(zero_nonzero == 0, "%ld voxels with zero truth have a non-zero expected count",
             zero_nonzero);
  TEST_CHECK(worst < 2e-4, "expected count vs exact integral: worst relative error %.3g", worst);
  mu = field_allreduce_sum(f, mu);
  mu_exact = field_allreduce_sum(f, mu_exact);

  /* each halo in a local voxel with non-zero expectation, in the mass range */
  long misplaced = 0, in_zero = 0, bad_mass = 0;
  for (size_t j = 0; j < cat->n; j++) {
    ptrdiff_t idx[3];
    for (int a = 0; a < 3; a++) {
      double x = cat->position[3 * j + a];
      idx[a] = (ptrdiff_t)floor(x * (double)n / L);
      if (!(x >= 0 && x < L)) misplaced++;
    }
    ptrdiff_t il = idx[0] - f->local_0_start;
    if (il < 0 || il >= f->local_n0) {
      misplaced++;
      continue;
    }
    if (expected[(il * n + idx[1]) * n + idx[2]] <= 0) in_zero++;
    if (!(cat->mass[j] >= s.mth && cat->mass[j] <= MOCK_MASS_MAX)) bad_mass++;
  }
  TEST_CHECK(misplaced == 0, "%ld halos outside the box or off their rank's planes", misplaced);
  TEST_CHECK(in_zero == 0, "%ld halos in voxels whose expected count is zero", in_zero);
  TEST_CHECK(bad_mass == 0, "%ld halos with mass outside [Mth, 1e16]", bad_mass);
  TEST_STATUS(catalogue_check(cat, "mock"), CB_OK, "catalogue_check");

  double N = (double)catalogue_count(cat, comm);
  TEST_CLOSE(mu, mu_exact, 2e-4, "total expected count vs exact integral");
  TEST_CHECK(fabs(N - mu_exact) < 4 * sqrt(mu_exact), "count %.0f vs expected %.1f: beyond 4 sigma",
             N, mu_exact);
  TEST_CHECK(N > 1e4, "too few halos for the test (%.0f)", N);

  /* mass distribution */
  size_t nh = 0;
  double *masses = gather_masses(cat, comm, &nh);
  if (testing_rank() == 0) {
    double D, p = ks_pvalue(masses, nh, synth_cdf, &s, &D);
    TEST_CHECK(p > 1e-3, "KS test of %zu masses: D = %.4g, p = %.3g", nh, D, p);
    printf("synthetic: %zu halos, expected %.1f, KS D = %.4g p = %.3g\n", nh, mu_exact, D, p);
  }
  free(masses);

  /* the box average of the truth */
  const double *lnm = mock_lnm(m), *mean = mock_mean_dndlnm(m);
  double amean = mu_exact / (V * integ) / ((double)n * n * n);
  double wm = 0;
  for (size_t b = 0; b < mock_n_mass(m); b += 37) {
    double M = exp(lnm[b]), want = amean * pow(M / s.mth, -s.slope) * exp(-M / s.mstar);
    wm = fmax(wm, fabs(mean[b] - want) / want);
  }
  TEST_CHECK(wm < 1e-10, "mock_mean_dndlnm vs the average truth: rel %.3g", wm);

  /* rank 0 alone */
  MPI_Comm solo;
  MPI_Comm_split(comm, testing_rank() == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
  catalogue *one = NULL;
  if (testing_rank() == 0) {
    field *f1 = NULL;
    mock *m1 = NULL;
    TEST_STATUS(field_create(solo, n, L, 1, &f1), CB_OK, "solo field");
    synth s1 = s;
    s1.f = f1;
    TEST_STATUS(mock_create(f1, s.mth, MOCK_MASS_MAX, MOCK_DLNM, &m1), CB_OK, "solo mock");
    TEST_STATUS(mock_sample(m1, 20261127, synth_fn, &s1, NULL, &one), CB_OK, "solo sample");
    mock_destroy(&m1);
    field_destroy(&f1);
    MPI_Comm_free(&solo);
  }
  compare_sets(cat, comm, one, "synthetic");
  catalogue_destroy(&one);

  /* another seed gives another catalogue */
  catalogue *other = NULL;
  TEST_STATUS(mock_sample(m, 20261128, synth_fn, &s, NULL, &other), CB_OK, "mock_sample seed 2");
  if (other) {
    size_t n1, n2;
    double *a = gather_sorted(cat, comm, &n1), *b = gather_sorted(other, comm, &n2);
    if (testing_rank() == 0)
      TEST_CHECK(n1 != n2 || memcmp(a, b, 4 * n1 * sizeof(double)),
                 "seeds 20261127 and 20261128 give the same catalogue");
    free(a);
    free(b);
  }
  catalogue_destroy(&other);
  catalogue_destroy(&cat);
  fftw_free(expected);
  mock_destroy(&m);
  field_destroy(&f);
}

/* ------------------------------------------------------------ 2. inversion within a cell */

typedef struct linear {
  const field *f;
  double u0, a, b; /* f(u) = A(v) (a + b (u - u0)) */
} linear;

static int linear_fn(void *ctx, ptrdiff_t v, size_t nm, const double *lnm, double *out) {
  const linear *s = ctx;
  double A = 0.012 * (0.4 + 0.3 * (double)((s->f->local_0_start * s->f->n * s->f->n + v) % 5));
  for (size_t b = 0; b < nm; b++) out[b] = A * (s->a + s->b * (lnm[b] - s->u0));
  return CB_OK;
}

static double linear_cdf(double M, void *ctx) {
  const linear *s = ctx;
  double t = log(M) - s->u0;
  return (s->a * t + 0.5 * s->b * t * t) / (s->a * 2 + 0.5 * s->b * 4);
}

static void test_cell_inversion(MPI_Comm comm) {
  const ptrdiff_t n = 16;
  const double L = 97.3, mth = 1.7e12;
  field *f = NULL;
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field_create");
  if (!f) return;
  linear s = {.f = f, .u0 = log(mth), .a = 0.1, .b = 2.3};
  mock *m = NULL;
  TEST_STATUS(mock_create(f, mth, mth * exp(2.0), 1.0, &m), CB_OK, "mock_create (2 cells)");
  TEST_CHECK(m && mock_n_mass(m) == 3, "2 cells need 3 grid points");
  double *expected = field_alloc_real(f);
  catalogue *cat = NULL;
  TEST_STATUS(mock_sample(m, 77, linear_fn, &s, expected, &cat), CB_OK, "mock_sample");
  const double V = pow(L / (double)n, 3);
  double worst = 0;
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    double A = 0.012 * (0.4 + 0.3 * (double)((f->local_0_start * n * n + v) % 5));
    double want = V * A * (s.a * 2 + 0.5 * s.b * 4);
    worst = fmax(worst, fabs(expected[v] - want) / want);
  }
  TEST_CHECK(worst < 1e-12, "linear truth: expected count off by %.3g", worst);
  size_t nh = 0;
  double *masses = gather_masses(cat, comm, &nh);
  if (testing_rank() == 0) {
    double D, p = ks_pvalue(masses, nh, linear_cdf, &s, &D);
    TEST_CHECK(p > 1e-3, "within-cell inversion: KS of %zu masses D = %.4g p = %.3g", nh, D, p);
    TEST_CHECK(nh > 5000, "too few halos (%zu)", nh);
    printf("linear in ln M, 2 cells: %zu halos, KS D = %.4g p = %.3g\n", nh, D, p);
  }
  free(masses);
  catalogue_destroy(&cat);
  fftw_free(expected);
  mock_destroy(&m);
  field_destroy(&f);
}

/* ------------------------------------------------------------ 3. smoothing */

static void test_smoothing(MPI_Comm comm) {
  const ptrdiff_t n = 24;
  const double L = 150.0, R = 7.3;
  field *f = NULL;
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field_create");
  if (!f) return;
  double *x = field_alloc_real(f), *y = field_alloc_real(f);
  const double ka = 2 * PI / L * 1, kb = 2 * PI / L * 2, kc = 2 * PI / L * -3;
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    double q[3] = {(double)(f->local_0_start + v / (n * n)), (double)((v / n) % n),
                   (double)(v % n)};
    for (int a = 0; a < 3; a++) q[a] = (q[a] + 0.5) * L / (double)n;
    x[v] = 0.37 + 1.9 * cos(ka * q[0] + kb * q[1] + kc * q[2] + 0.4);
  }
  TEST_STATUS(mock_smooth_gaussian(f, x, R, y), CB_OK, "smooth");
  double k2 = ka * ka + kb * kb + kc * kc, g = exp(-0.5 * k2 * R * R), worst = 0;
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    double want = 0.37 + g * (x[v] - 0.37);
    worst = fmax(worst, fabs(y[v] - want));
  }
  worst = fmax(worst, 0);
  double all;
  MPI_Allreduce(&worst, &all, 1, MPI_DOUBLE, MPI_MAX, comm);
  TEST_CHECK(all < 1e-12, "Gaussian smoothing of a plane wave: error %.3g", all);
  TEST_STATUS(mock_smooth_gaussian(f, x, -1.0, y), CB_ERR_INPUT, "negative radius refused");
  fftw_free(x);
  fftw_free(y);
  field_destroy(&f);
}

/* ------------------------------------------------------------ 4. st-pbs normalisation */

static void test_stpbs_normalisation(MPI_Comm comm, const cosmology *c) {
  const ptrdiff_t n = 16;
  const double L = 120.0;
  field *f = NULL;
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field_create");
  if (!f) return;
  double *delta = field_alloc_real(f), *env = field_alloc_real(f), *expected = field_alloc_real(f);
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    ptrdiff_t g = f->local_0_start * n * n + v;
    double i = (double)(g / (n * n)), j = (double)((g / n) % n), k = (double)(g % n);
    delta[v] = (g % 11 == 4) ? -1.0 : 0.8 * sin(0.7 * i + 0.3 * j) * cos(0.45 * k - 0.2) + 0.1;
    /* an environment up to 30: exp(b_L e) overflows for b_L > 24 without the shift */
    env[v] = (g == 1234) ? 30.0 : 0.9 * cos(0.5 * i - 0.35 * k) * sin(0.6 * j + 0.1);
  }
  mock *m = NULL;
  mock_stpbs *t = NULL;
  TEST_STATUS(mock_create(f, 2e12, MOCK_MASS_MAX, MOCK_DLNM, &m), CB_OK, "mock_create");
  TEST_STATUS(mock_stpbs_create(m, c, delta, env, &t), CB_OK, "mock_stpbs_create");
  catalogue *cat = NULL;
  if (t) TEST_STATUS(mock_sample(m, 5, mock_stpbs_dndlnm, t, expected, &cat), CB_OK, "sample");
  if (cat) {
    const double *lnm = mock_lnm(m), *mean = mock_mean_dndlnm(m), *lnz = mock_stpbs_ln_z(t);
    double worst = 0;
    bool finite = true;
    for (size_t b = 0; b < mock_n_mass(m); b++) {
      double want = cosmology_st_dndlnm(c, exp(lnm[b]));
      worst = fmax(worst, fabs(mean[b] - want) / want);
      finite = finite && isfinite(lnz[b]);
    }
    TEST_CHECK(worst < 1e-10, "box average of the st-pbs truth vs n_ST: rel %.3g", worst);
    TEST_CHECK(finite, "ln Z(M) not finite");
    long bad = 0, nonfinite = 0;
    for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
      if (delta[v] <= -1.0 && expected[v] != 0) bad++;
      if (!isfinite(expected[v])) nonfinite++;
    }
    for (size_t j = 0; j < cat->n; j++) {
      ptrdiff_t i0 = catalogue_voxel_axis(cat->position[3 * j], L, n) - f->local_0_start;
      ptrdiff_t j0 = catalogue_voxel_axis(cat->position[3 * j + 1], L, n);
      ptrdiff_t k0 = catalogue_voxel_axis(cat->position[3 * j + 2], L, n);
      if (delta[(i0 * n + j0) * n + k0] <= -1.0) bad++;
    }
    TEST_CHECK(bad == 0, "%ld empty voxels with halos or an expected count", bad);
    TEST_CHECK(nonfinite == 0, "%ld non-finite expected counts", nonfinite);
  }
  catalogue_destroy(&cat);
  mock_stpbs_destroy(&t);
  mock_destroy(&m);
  fftw_free(delta);
  fftw_free(env);
  fftw_free(expected);
  field_destroy(&f);
}

/* ------------------------------------------------------------ 5. the whole chain */

typedef struct chain_out {
  catalogue *cat;
  double mu;   /* sum of expected counts */
  double *lnm; /* grid, for the CDF */
  size_t nm;
} chain_out;

static int run_chain(MPI_Comm comm, const cosmology *c, ptrdiff_t n, double L, chain_out *o) {
  field *f = NULL;
  forward *fw = NULL;
  mock *m = NULL;
  mock_stpbs *t = NULL;
  CB_CALL(field_create(comm, n, L, 1, &f));
  double *s = field_alloc_real(f), *dl = field_alloc_real(f), *delta = field_alloc_real(f),
         *env = field_alloc_real(f), *expected = field_alloc_real(f);
  CB_CALL(ic_white_noise(f, 8128, s));
  CB_CALL(forward_create(f, c, 2, &fw));
  CB_CALL(forward_run(fw, s, dl, delta));
  size_t np;
  const double *pos = forward_positions(fw, &np);
  CB_CALL(mock_environment(f, dl, 2.0 * L / (double)n, np, pos, env));
  CB_CALL(mock_create(f, 2e12, MOCK_MASS_MAX, MOCK_DLNM, &m));
  CB_CALL(mock_stpbs_create(m, c, delta, env, &t));
  CB_CALL(mock_sample(m, 424242, mock_stpbs_dndlnm, t, expected, &o->cat));
  o->mu = field_sum(f, expected);
  mock_stpbs_destroy(&t);
  mock_destroy(&m);
  forward_destroy(&fw);
  fftw_free(s);
  fftw_free(dl);
  fftw_free(delta);
  fftw_free(env);
  fftw_free(expected);
  field_destroy(&f);
  return CB_OK;
}

typedef struct st_ctx {
  const cosmology *c;
  gsl_integration_workspace *ws;
  double total;
} st_ctx;

static double st_integrand(double u, void *p) {
  return cosmology_st_dndlnm(p, exp(u));
}

static double st_integral(st_ctx *s, double M) {
  gsl_function F = {st_integrand, (void *)s->c};
  double r, err;
  gsl_integration_qag(&F, log(2e12), log(M), 0, 1e-10, 1000, GSL_INTEG_GAUSS41, s->ws, &r, &err);
  return r;
}

static double st_cdf(double M, void *ctx) {
  st_ctx *s = ctx;
  return st_integral(s, M) / s->total;
}

static void test_chain(MPI_Comm comm, const cosmology *c) {
  const ptrdiff_t n = 32;
  const double L = 250.0;
  chain_out o = {0};
  int st = run_chain(comm, c, n, L, &o);
  TEST_STATUS(st, CB_OK, "the chain");
  if (st != CB_OK) return;
  st_ctx sc = {.c = c, .ws = gsl_integration_workspace_alloc(1000)};
  sc.total = st_integral(&sc, MOCK_MASS_MAX);
  double mu_exact = sc.total * L * L * L;
  double N = (double)catalogue_count(o.cat, comm);
  /* the trapezoid rule on the 0.02 grid, against adaptive quadrature of n_ST */
  TEST_CLOSE(o.mu, mu_exact, 1e-4, "sum of expected counts vs L^3 integral of n_ST");
  TEST_CHECK(fabs(N - mu_exact) < 4 * sqrt(mu_exact), "st-pbs count %.0f vs %.1f: beyond 4 sigma",
             N, mu_exact);
  size_t nh;
  double *masses = gather_masses(o.cat, comm, &nh);
  if (testing_rank() == 0) {
    double D, p = ks_pvalue(masses, nh, st_cdf, &sc, &D);
    TEST_CHECK(p > 1e-3, "st-pbs masses vs Sheth-Tormen: KS D = %.4g p = %.3g (%zu halos)", D, p,
               nh);
    printf("st-pbs chain 32^3: %zu halos, expected %.1f, KS D = %.4g p = %.3g\n", nh, mu_exact, D,
           p);
  }
  free(masses);
  gsl_integration_workspace_free(sc.ws);

  MPI_Comm solo;
  MPI_Comm_split(comm, testing_rank() == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
  chain_out one = {0};
  if (testing_rank() == 0) {
    TEST_STATUS(run_chain(solo, c, n, L, &one), CB_OK, "the chain on rank 0 alone");
    MPI_Comm_free(&solo);
  }
  compare_sets(o.cat, comm, one.cat, "st-pbs chain");
  catalogue_destroy(&one.cat);
  catalogue_destroy(&o.cat);
}

/* ------------------------------------------------------------ 6. errors, raised on every rank */

typedef struct bad_truth {
  const field *f;
  double value; /* in the last plane's voxel (n-1, 3, 5) */
} bad_truth;

static int bad_fn(void *ctx, ptrdiff_t v, size_t nm, const double *lnm, double *out) {
  const bad_truth *t = ctx;
  const ptrdiff_t n = t->f->n;
  bool target = t->f->local_0_start + v / (n * n) == n - 1 && (v / n) % n == 3 && v % n == 5;
  for (size_t b = 0; b < nm; b++) out[b] = target ? t->value : 1e-4 * exp(-(lnm[b] - lnm[0]));
  return CB_OK;
}

static void test_errors(MPI_Comm comm) {
  field *f = NULL;
  TEST_STATUS(field_create(comm, 8, 50.0, 1, &f), CB_OK, "field_create");
  if (!f) return;
  mock *m = NULL;
  TEST_STATUS(mock_create(f, -1.0, 1e16, 0.02, &m), CB_ERR_INPUT, "negative threshold");
  TEST_STATUS(mock_create(f, 2e16, 1e16, 0.02, &m), CB_ERR_INPUT, "threshold above the top");
  TEST_STATUS(mock_create(f, 2e12, 1e16, 0.0, &m), CB_ERR_INPUT, "zero step");
  TEST_STATUS(mock_create(f, 2e12, 1e16, 0.02, &m), CB_OK, "mock_create");
  const struct {
    double value;
    int code;
    const char *msg;
  } cases[] = {{NAN, CB_ERR_NUMERIC, "voxel (7,3,5)"},
               {-2.0, CB_ERR_NUMERIC, "voxel (7,3,5)"},
               {1e9, CB_ERR_INPUT, "voxel (7,3,5) expects"}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0] && m; c++) {
    bad_truth t = {.f = f, .value = cases[c].value};
    catalogue *cat = NULL;
    TEST_STATUS(mock_sample(m, 3, bad_fn, &t, NULL, &cat), cases[c].code, cases[c].msg);
    TEST_CHECK(strstr(status_message(), cases[c].msg) != NULL, "message '%s' lacks '%s'",
               status_message(), cases[c].msg);
    TEST_CHECK(cat == NULL, "a catalogue came back after an error");
    catalogue_destroy(&cat);
  }
  mock_destroy(&m);
  field_destroy(&f);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  test_synthetic(comm);
  test_cell_inversion(comm);
  test_smoothing(comm);
  test_errors(comm);
  cosmology *c = NULL;
  cosmo_params p = cosmo_params_default();
  TEST_STATUS(cosmology_create(&p, NULL, &c), CB_OK, "cosmology_create");
  if (c) {
    test_stpbs_normalisation(comm, c);
    test_chain(comm, c);
  }
  cosmology_destroy(&c);
  return testing_finish();
}
