/* test_cic: cloud-in-cell with migration against a brute-force serial deposit, mean density,
 * particle and mass conservation under displacements of more than one slab and across the
 * periodic edge, the adjoint against central differences, and non-finite positions; the
 * lattice entry points (displacements in padded rows) against the same particles given as
 * positions. */
#include "cerberus/cic.h"
#include "cerberus/field.h"
#include "cerberus/lpt.h"
#include "cerberus/status.h"
#include "field_gather.h"
#include "testing.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { NG = 16, NPART = 3001 };
static const double L = 97.3;

/* The same global particle set on every rank: positions partly outside [0, L) (wrapped by
 * cic), weights in [0.5, 2.5). Rank r holds the particles g with g % size == r, so almost
 * every particle must migrate. */
static void particle_set(double *pos, double *w) {
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 9137);
  for (int g = 0; g < NPART; g++) {
    for (int d = 0; d < 3; d++) pos[3 * g + d] = (gsl_rng_uniform(r) * 3.0 - 1.0) * L;
    w[g] = 0.5 + 2.0 * gsl_rng_uniform(r);
  }
  gsl_rng_free(r);
}

/* Brute force: W(u - i) = max(0, 1 - |u - i|) per axis, u = x / h - 1/2, over neighbours. */
static void brute_force(const double *pos, const double *w, double *rho) {
  const double h = L / NG, m = (double)NG * NG * NG / NPART;
  memset(rho, 0, sizeof(double) * NG * NG * NG);
  for (int g = 0; g < NPART; g++) {
    double u[3];
    long base[3];
    for (int d = 0; d < 3; d++) {
      u[d] = pos[3 * g + d] / h - 0.5;
      base[d] = (long)floor(u[d]) - 1;
    }
    for (long a = base[0]; a < base[0] + 4; a++)
      for (long b = base[1]; b < base[1] + 4; b++)
        for (long c = base[2]; c < base[2] + 4; c++) {
          double wt = fmax(0, 1 - fabs(u[0] - a)) * fmax(0, 1 - fabs(u[1] - b)) *
                      fmax(0, 1 - fabs(u[2] - c));
          long ia = ((a % NG) + NG) % NG, ib = ((b % NG) + NG) % NG, ic = ((c % NG) + NG) % NG;
          rho[(ia * NG + ib) * NG + ic] += m * (w ? w[g] : 1.0) * wt;
        }
  }
}

static void check_against_truth(MPI_Comm comm, field *f) {
  const int rank = f->rank, size = f->size;
  double *pos = malloc(3 * NPART * sizeof(double)), *w = malloc(NPART * sizeof(double));
  particle_set(pos, w);
  size_t np = 0;
  double *lp = malloc(3 * NPART * sizeof(double)), *lw = malloc(NPART * sizeof(double));
  for (int g = rank; g < NPART; g += size, np++) {
    memcpy(lp + 3 * np, pos + 3 * g, 3 * sizeof(double));
    lw[np] = w[g];
  }
  cic *c = NULL;
  TEST_STATUS(cic_create(f, &c), CB_OK, "cic_create");
  double *rho = field_alloc_real(f);
  const size_t nv = (size_t)NG * NG * NG;
  double *all = rank == 0 ? malloc(nv * sizeof(double)) : NULL;
  double *want = rank == 0 ? malloc(nv * sizeof(double)) : NULL;
  for (int weighted = 0; weighted < 2; weighted++) {
    TEST_STATUS(cic_assign(c, np, lp, weighted ? lw : NULL, rho), CB_OK, "cic_assign");
    TEST_CHECK(cic_n_total(c) == NPART, "n_total %zu, expected %d", cic_n_total(c), NPART);
    const double mean = field_sum(f, rho) / (double)nv;
    if (!weighted) TEST_CLOSE(mean, 1.0, 1e-13, "mean of rho with unit weights");
    field_gather_real(f, 1, rho, all);
    if (rank == 0) {
      brute_force(pos, weighted ? w : NULL, want);
      double err = 0, sw = 0;
      for (size_t i = 0; i < nv; i++) err = fmax(err, fabs(all[i] - want[i]));
      for (int g = 0; g < NPART; g++) sw += w[g];
      TEST_CHECK(err < 1e-12, "weighted %d: rho differs from the brute-force deposit by %.3g",
                 weighted, err);
      if (weighted) TEST_CLOSE(mean * NPART, sw, 1e-12, "weighted mass");
    }
  }
  (void)comm;
  free(all);
  free(want);
  fftw_free(rho);
  cic_destroy(&c);
  TEST_CHECK(c == NULL, "cic_destroy leaves NULL");
  free(pos);
  free(w);
  free(lp);
  free(lw);
}

/* One particle per voxel, moved by shift (in units of L) along x plus a small jitter: more
 * than one slab at 2-4 ranks and across the periodic edge. */
static void check_migration(field *f, double shift) {
  const ptrdiff_t nl = f->n_real_local, n = f->n;
  const double h = f->L / (double)n;
  double *pos = malloc(3 * (size_t)nl * sizeof(double));
  for (ptrdiff_t p = 0; p < nl; p++)
    for (int d = 0; d < 3; d++)
      pos[3 * p + d] = lpt_q(f, p, d) + (d == 0 ? shift * f->L : 0.0) +
                       0.3 * h * sin(1.7 * (double)(p + f->local_0_start * n * n) + d);
  cic *c = NULL;
  TEST_STATUS(cic_create(f, &c), CB_OK, "cic_create");
  double *rho = field_alloc_real(f);
  TEST_STATUS(cic_assign(c, (size_t)nl, pos, NULL, rho), CB_OK, "cic_assign");
  /* expected particles here: those whose lower cloud plane is one of ours */
  long mine = 0;
  for (ptrdiff_t g = 0; g < n * n * n; g++) {
    double x = ((double)(g / (n * n)) + 0.5) * h + shift * f->L + 0.3 * h * sin(1.7 * (double)g);
    long i0 = (long)floor(x / h - 0.5);
    i0 = ((i0 % n) + n) % n;
    if (i0 >= f->local_0_start && i0 < f->local_0_start + f->local_n0) mine++;
  }
  TEST_CHECK((long)cic_n_local(c) == mine, "shift %g: rank holds %zu particles, expected %ld",
             shift, cic_n_local(c), mine);
  const double total = field_allreduce_sum(f, (double)cic_n_local(c));
  TEST_CHECK(total == (double)(n * n * n), "shift %g: %g particles after migration, not %td", shift,
             total, n * n * n);
  TEST_CLOSE(field_sum(f, rho), (double)(n * n * n), 1e-13, "total mass after migration");
  fftw_free(rho);
  free(pos);
  cic_destroy(&c);
}

/* F = sum_v c(v) rho(v): central differences along u, steps far from any cell face. */
static void check_adjoint(field *f) {
  const ptrdiff_t nl = f->n_real_local, n = f->n;
  const double h = f->L / (double)n;
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 77 + (unsigned long)f->rank);
  const size_t np = (size_t)(nl / 2 + 3 * f->rank); /* uneven counts per rank */
  double *pos = malloc(3 * np * sizeof(double)), *u = malloc(3 * np * sizeof(double));
  double *w = malloc(np * sizeof(double)), *gp = malloc(3 * np * sizeof(double));
  double *gp2 = malloc(3 * np * sizeof(double)), *tmp = malloc(3 * np * sizeof(double));
  for (size_t p = 0; p < np; p++) {
    for (int d = 0; d < 3; d++) { /* a cell centre-offset in [0.1, 0.9] of a cell, anywhere */
      const double cell = floor(gsl_rng_uniform(r) * (double)n);
      pos[3 * p + d] = (cell + 0.5 + 0.1 + 0.8 * gsl_rng_uniform(r)) * h;
      u[3 * p + d] = gsl_rng_uniform(r) - 0.5;
    }
    w[p] = 0.4 + gsl_rng_uniform(r);
  }
  double *cv = field_alloc_real(f), *rho = field_alloc_real(f);
  for (ptrdiff_t i = 0; i < nl; i++) cv[i] = gsl_rng_uniform(r) - 0.3;
  cic *c = NULL;
  TEST_STATUS(cic_create(f, &c), CB_OK, "cic_create");
  for (int weighted = 0; weighted < 2; weighted++) {
    const double *wt = weighted ? w : NULL;
    const double eps = 1e-4 * h; /* |u| <= 0.5: moves < 1e-4 cell, faces >= 0.1 cell away */
    double F[2];
    for (int side = 0; side < 2; side++) {
      for (size_t i = 0; i < 3 * np; i++) tmp[i] = pos[i] + (side ? -eps : eps) * u[i];
      TEST_STATUS(cic_assign(c, np, tmp, wt, rho), CB_OK, "cic_assign");
      double s = 0;
      for (ptrdiff_t i = 0; i < nl; i++) s += cv[i] * rho[i];
      F[side] = field_allreduce_sum(f, s);
    }
    const double fd = (F[0] - F[1]) / (2 * eps);
    TEST_STATUS(cic_adjoint(c, np, pos, wt, cv, gp), CB_OK, "cic_adjoint");
    double s = 0;
    for (size_t i = 0; i < 3 * np; i++) s += gp[i] * u[i];
    const double an = field_allreduce_sum(f, s);
    TEST_CLOSE(an, fd, 1e-7,
               weighted ? "weighted CIC adjoint vs finite differences"
                        : "CIC adjoint vs finite differences");
    TEST_STATUS(cic_assign(c, np, pos, wt, rho), CB_OK, "cic_assign");
    TEST_STATUS(cic_adjoint_last(c, np, pos, wt, cv, gp2), CB_OK, "cic_adjoint_last");
    double e = 0;
    for (size_t i = 0; i < 3 * np; i++) e = fmax(e, fabs(gp[i] - gp2[i]));
    TEST_CHECK(e == 0, "cic_adjoint_last differs from cic_adjoint by %.3g", e);
  }
  /* a non-finite position on one rank: every rank gets CB_ERR_NUMERIC */
  if (f->rank == f->size - 1) pos[1] = NAN;
  TEST_STATUS(cic_assign(c, np, pos, NULL, rho), CB_ERR_NUMERIC, "cic_assign with a NaN");
  TEST_STATUS(cic_adjoint_last(c, np, pos, NULL, cv, gp), CB_ERR_INTERNAL,
              "cic_adjoint_last after a failure");
  status_clear();
  cic_destroy(&c);
  fftw_free(cv);
  fftw_free(rho);
  free(pos);
  free(u);
  free(w);
  free(gp);
  free(gp2);
  free(tmp);
  gsl_rng_free(r);
}

/* cic_assign_lattice / cic_adjoint_lattice against cic_assign / cic_adjoint_last of the
 * same particles as positions: displacements of shift L along x, 0.7 L along y, and up to
 * 3 cells of jitter on every axis (migration over more than one slab, across every periodic
 * edge), read from rows of field_work_stride values. */
static void check_lattice(field *f, double shift) {
  const ptrdiff_t nl = f->n_real_local, n = f->n, rs = field_work_stride(f);
  const double h = f->L / (double)n;
  double *disp[3], *pos = malloc(3 * (size_t)nl * sizeof(double));
  double *gp = malloc(3 * (size_t)nl * sizeof(double));
  for (int d = 0; d < 3; d++) disp[d] = field_alloc_padded(f);
  for (ptrdiff_t p = 0; p < nl; p++) {
    const ptrdiff_t e = (p / n) * rs + p % n, g = p + f->local_0_start * n * n;
    for (int d = 0; d < 3; d++) {
      const double big = d == 0 ? shift * f->L : d == 1 ? 0.7 * f->L : 0.0;
      disp[d][e] = big + 3.0 * h * sin(0.37 * (double)g + 1.9 * d) * cos(0.011 * (double)g);
      pos[3 * p + d] = lpt_q(f, p, d) + disp[d][e];
    }
  }
  cic *c = NULL;
  TEST_STATUS(cic_create(f, &c), CB_OK, "cic_create");
  double *rho = field_alloc_real(f), *delta = field_alloc_real(f), *cv = field_alloc_real(f);
  for (ptrdiff_t i = 0; i < nl; i++) cv[i] = sin(0.9 * (double)(i + f->local_0_start * n * n));
  TEST_STATUS(cic_assign(c, (size_t)nl, pos, NULL, rho), CB_OK, "cic_assign");
  const size_t held = cic_n_local(c);
  TEST_STATUS(cic_adjoint_last(c, (size_t)nl, pos, NULL, cv, gp), CB_OK, "cic_adjoint_last");
  TEST_STATUS(cic_adjoint_lattice(c, disp, rs, cv), CB_ERR_INTERNAL,
              "cic_adjoint_lattice after an assign of positions");
  status_clear();
  TEST_STATUS(cic_assign_lattice(c, disp, rs, -1.0, delta), CB_OK, "cic_assign_lattice");
  TEST_CHECK(cic_n_local(c) == held, "shift %g: the lattice leaves %zu particles here, not %zu",
             shift, cic_n_local(c), held);
  double e = 0;
  for (ptrdiff_t i = 0; i < nl; i++) e = fmax(e, fabs(delta[i] - (rho[i] - 1.0)));
  e = field_allreduce_sum(f, e); /* the sum over ranks bounds every rank's error */
  TEST_CHECK(e < 1e-12, "shift %g: the lattice deposit differs from positions by %.3g", shift, e);
  TEST_CHECK(fabs(field_sum(f, delta)) < 1e-9, "the lattice's delta sums to %.3g, not 0",
             field_sum(f, delta));
  TEST_STATUS(cic_adjoint_last(c, (size_t)nl, pos, NULL, cv, gp), CB_ERR_INTERNAL,
              "cic_adjoint_last after a lattice assign");
  status_clear();
  TEST_STATUS(cic_adjoint_lattice(c, disp, rs, cv), CB_OK, "cic_adjoint_lattice");
  double gmax = 0;
  e = 0;
  for (ptrdiff_t p = 0; p < nl; p++)
    for (int d = 0; d < 3; d++) {
      const double a = disp[d][(p / n) * rs + p % n], b = gp[3 * p + d];
      e = fmax(e, fabs(a - b));
      gmax = fmax(gmax, fabs(b));
    }
  TEST_CHECK(e <= 1e-12 * gmax, "shift %g: the lattice adjoint differs by %.3g (max %.3g)", shift,
             e, gmax);
  /* a NaN displacement on the last rank: CB_ERR_NUMERIC everywhere, and no adjoint after */
  if (f->rank == f->size - 1) disp[2][rs + 1] = NAN;
  TEST_STATUS(cic_assign_lattice(c, disp, rs, 0.0, delta), CB_ERR_NUMERIC,
              "cic_assign_lattice with a NaN");
  TEST_STATUS(cic_adjoint_lattice(c, disp, rs, cv), CB_ERR_INTERNAL,
              "cic_adjoint_lattice after a failure");
  status_clear();
  for (int d = 0; d < 3; d++) fftw_free(disp[d]);
  fftw_free(rho);
  fftw_free(delta);
  fftw_free(cv);
  free(pos);
  free(gp);
  cic_destroy(&c);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  field *f = NULL;
  TEST_STATUS(field_create(comm, NG, L, 1, &f), CB_OK, "field_create");
  if (f) {
    check_against_truth(comm, f);
    check_migration(f, 0.6);
    check_migration(f, -1.35);
    check_adjoint(f);
    check_lattice(f, 0.6);
    check_lattice(f, -1.35);
  }
  field_destroy(&f);
  return testing_finish();
}
