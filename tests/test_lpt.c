/* test_lpt: Zel'dovich and 2LPT displacements against closed forms, the same positions on
 * 1-4 ranks, and the adjoint against finite differences and the dot-product identity. */
#include "cerberus/field.h"
#include "cerberus/ic.h"
#include "cerberus/lpt.h"
#include "cerberus/status.h"
#include "field_gather.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>

static const double PI = 3.14159265358979323846;

/* Minimum-image displacement of component d of particle p. */
static double disp(const field *f, const double *pos, ptrdiff_t p, int d) {
  double x = pos[3 * p + d] - lpt_q(f, p, d);
  return x - f->L * round(x / f->L);
}

/* delta = A cos(k1 x + f1) + B cos(k2 z + f2): Psi1 and Psi2 in closed form. With
 * phi_xx = A cos(a), phi_zz = B cos(b), S = AB cos(a) cos(b), lap phi2 = S and
 * Psi2 = -3/7 grad phi2: Psi2_x = -3/7 AB k1 sin(a) cos(b) / (k1^2 + k2^2), Psi2_z likewise. */
static void check_waves(MPI_Comm comm) {
  const ptrdiff_t n = 18;
  const double L = 137.5, A = 0.37, B = -0.61, f1 = 0.43, f2 = 1.91;
  const int m1 = 2, m2 = 5;
  const double k1 = 2 * PI / L * m1, k2 = 2 * PI / L * m2;
  field *f = NULL;
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field_create");
  if (!f) return;
  double *delta = field_alloc_real(f), *pos = malloc(3 * (size_t)f->n_real_local * sizeof(double));
  for (int wave = 0; wave < 2; wave++) { /* 0: one plane wave (B = 0); 1: two crossed waves */
    const double b_amp = wave ? B : 0.0;
    for (ptrdiff_t p = 0; p < f->n_real_local; p++)
      delta[p] = A * cos(k1 * lpt_q(f, p, 0) + f1) + b_amp * cos(k2 * lpt_q(f, p, 2) + f2);
    for (int order = 1; order <= 2; order++) {
      lpt *l = NULL;
      TEST_STATUS(lpt_create(f, order, &l), CB_OK, "lpt_create");
      if (!l) continue;
      TEST_STATUS(lpt_forward(l, delta, pos), CB_OK, "lpt_forward");
      double err = 0, scale = fabs(A) / k1;
      for (ptrdiff_t p = 0; p < f->n_real_local; p++) {
        const double a = k1 * lpt_q(f, p, 0) + f1, b = k2 * lpt_q(f, p, 2) + f2;
        double want[3] = {-A * sin(a) / k1, 0.0, -b_amp * sin(b) / k2};
        if (order == 2) {
          const double c = 3.0 / 7.0 * A * b_amp / (k1 * k1 + k2 * k2);
          want[0] += -c * k1 * sin(a) * cos(b);
          want[2] += -c * k2 * cos(a) * sin(b);
        }
        for (int d = 0; d < 3; d++) err = fmax(err, fabs(disp(f, pos, p, d) - want[d]));
        for (int d = 0; d < 3; d++)
          TEST_CHECK(pos[3 * p + d] >= 0 && pos[3 * p + d] < L, "position outside [0, L)");
      }
      double gerr = 0;
      MPI_Allreduce(&err, &gerr, 1, MPI_DOUBLE, MPI_MAX, comm);
      TEST_CHECK(gerr < 1e-12 * scale, "waves %d, order %d: max error %.3g of %.3g", wave + 1,
                 order, gerr, scale);
      lpt_destroy(&l);
      TEST_CHECK(l == NULL, "lpt_destroy leaves NULL");
    }
  }
  fftw_free(delta);
  free(pos);
  field_destroy(&f);
}

/* A random field, the same on any number of ranks. */
static void noise(const field *f, unsigned long seed, double scale, double *x) {
  ic_white_noise(f, seed, x);
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) x[i] *= scale;
}

static void run_positions(MPI_Comm comm, ptrdiff_t n, double L, int order, double *out_global) {
  field *f = NULL;
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field_create");
  double *delta = field_alloc_real(f), *pos = malloc(3 * (size_t)f->n_real_local * sizeof(double));
  noise(f, 4242, 0.7, delta);
  lpt *l = NULL;
  TEST_STATUS(lpt_create(f, order, &l), CB_OK, "lpt_create");
  TEST_STATUS(lpt_forward(l, delta, pos), CB_OK, "lpt_forward");
  field_gather_real(f, 3, pos, out_global);
  lpt_destroy(&l);
  fftw_free(delta);
  free(pos);
  field_destroy(&f);
}

static void check_ranks(MPI_Comm comm) {
  const ptrdiff_t n = 16;
  const double L = 211.0;
  int rank;
  MPI_Comm_rank(comm, &rank);
  size_t ng = 3 * (size_t)(n * n * n);
  double *all = rank == 0 ? malloc(ng * sizeof(double)) : NULL;
  double *ref = rank == 0 ? malloc(ng * sizeof(double)) : NULL;
  MPI_Comm self = self_comm_on_root(comm);
  for (int order = 1; order <= 2; order++) {
    run_positions(comm, n, L, order, all);
    if (self != MPI_COMM_NULL) run_positions(self, n, L, order, ref);
    if (rank == 0) {
      double err = 0;
      for (size_t i = 0; i < ng; i++) {
        double d = all[i] - ref[i];
        err = fmax(err, fabs(d - L * round(d / L)));
      }
      TEST_CHECK(err < 1e-10, "order %d: positions differ from the one-rank run by %.3g", order,
                 err);
    }
  }
  if (self != MPI_COMM_NULL) MPI_Comm_free(&self);
  free(all);
  free(ref);
}

/* F = sum_p c_p . Psi_p (minimum image): dF/dpos = c. Central differences along v. */
static void check_adjoint(MPI_Comm comm) {
  const ptrdiff_t n = 16;
  const double L = 180.0;
  field *f = NULL;
  TEST_STATUS(field_create(comm, n, L, 1, &f), CB_OK, "field_create");
  const ptrdiff_t nl = f->n_real_local;
  double *delta = field_alloc_real(f), *v = field_alloc_real(f), *tmp = field_alloc_real(f);
  double *g = field_alloc_real(f), *g2 = field_alloc_real(f);
  double *c = malloc(3 * (size_t)nl * sizeof(double)),
         *pos = malloc(3 * (size_t)nl * sizeof(double));
  noise(f, 11, 0.8, delta);
  noise(f, 12, 1.0, v);
  for (int d = 0; d < 3; d++) {
    noise(f, 20 + (unsigned long)d, 1.0, tmp);
    for (ptrdiff_t p = 0; p < nl; p++) c[3 * p + d] = tmp[p] + 0.3 * d;
  }
  for (int order = 1; order <= 2; order++) {
    lpt *l = NULL;
    TEST_STATUS(lpt_create(f, order, &l), CB_OK, "lpt_create");
    const double eps = 1e-3;
    double F[2];
    for (int side = 0; side < 2; side++) {
      for (ptrdiff_t p = 0; p < nl; p++) tmp[p] = delta[p] + (side ? -eps : eps) * v[p];
      TEST_STATUS(lpt_forward(l, tmp, pos), CB_OK, "lpt_forward");
      double s = 0;
      for (ptrdiff_t p = 0; p < nl; p++)
        for (int d = 0; d < 3; d++) s += c[3 * p + d] * disp(f, pos, p, d);
      F[side] = field_allreduce_sum(f, s);
    }
    const double fd = (F[0] - F[1]) / (2 * eps);
    TEST_STATUS(lpt_forward(l, delta, pos), CB_OK, "lpt_forward");
    TEST_STATUS(lpt_adjoint(l, c, g), CB_OK, "lpt_adjoint");
    double s = 0;
    for (ptrdiff_t p = 0; p < nl; p++) s += g[p] * v[p];
    const double an = field_allreduce_sum(f, s);
    TEST_CLOSE(an, fd, 1e-8,
               order == 1 ? "1LPT adjoint vs finite differences"
                          : "2LPT adjoint vs finite differences");
    /* lpt_adjoint_k + c2r gives the same */
    fftw_complex *gk = field_alloc_complex(f);
    TEST_STATUS(lpt_adjoint_k(l, c, NULL, gk), CB_OK, "lpt_adjoint_k");
    field_c2r_t(f, gk, g2);
    double e = 0;
    for (ptrdiff_t p = 0; p < nl; p++) e = fmax(e, fabs(g2[p] - g[p]));
    TEST_CHECK(e < 1e-12 * (1 + fabs(an)), "lpt_adjoint_k differs from lpt_adjoint by %.3g", e);
    /* a filter on the way: lpt_forward_k(in, filter) = lpt_forward_k(filter * in), and
     * lpt_adjoint_k(filter) = filter * lpt_adjoint_k (a filter that is not 1, nor even flat) */
    fftw_complex *dk = field_alloc_complex(f), *fk = field_alloc_complex(f);
    fftw_complex *gf = field_alloc_complex(f);
    double *flt =
        malloc((size_t)(f->n_complex_local > 0 ? f->n_complex_local : 1) * sizeof(double));
    double *pos2 = malloc(3 * (size_t)nl * sizeof(double));
    for (ptrdiff_t m = 0; m < f->n_complex_local; m++)
      flt[m] = 0.37 + 1.9 * sin(0.013 * (double)(m + f->local_0_start * n * f->nc)) *
                          sin(0.013 * (double)(m + f->local_0_start * n * f->nc));
    field_r2c_t(f, delta, dk);
    for (ptrdiff_t m = 0; m < f->n_complex_local; m++) fk[m] = flt[m] * dk[m];
    TEST_STATUS(lpt_forward_k(l, fk, NULL, pos), CB_OK, "lpt_forward_k");
    TEST_STATUS(lpt_forward_k(l, dk, flt, pos2), CB_OK, "lpt_forward_k with a filter");
    e = 0;
    for (ptrdiff_t i = 0; i < 3 * nl; i++) e = fmax(e, fabs(pos2[i] - pos[i]));
    TEST_CHECK(e < 1e-11 * L, "order %d: lpt_forward_k with a filter differs by %.3g", order, e);
    TEST_STATUS(lpt_adjoint_k(l, c, NULL, gk), CB_OK, "lpt_adjoint_k");
    TEST_STATUS(lpt_adjoint_k(l, c, flt, gf), CB_OK, "lpt_adjoint_k with a filter");
    double gmax = 0;
    e = 0;
    for (ptrdiff_t m = 0; m < f->n_complex_local; m++) {
      e = fmax(e, cabs(gf[m] - flt[m] * gk[m]));
      gmax = fmax(gmax, cabs(gk[m]));
    }
    TEST_CHECK(e <= 1e-13 * gmax, "order %d: lpt_adjoint_k with a filter differs by %.3g", order,
               e);
    free(flt);
    free(pos2);
    fftw_free(dk);
    fftw_free(fk);
    fftw_free(gf);
    fftw_free(gk);
    lpt_destroy(&l);
  }
  lpt *bad = NULL;
  TEST_STATUS(lpt_create(f, 3, &bad), CB_ERR_INPUT, "lpt_create order 3");
  TEST_CHECK(bad == NULL, "failed lpt_create leaves NULL");
  lpt_destroy(&bad);
  fftw_free(delta);
  fftw_free(v);
  fftw_free(tmp);
  fftw_free(g);
  fftw_free(g2);
  free(c);
  free(pos);
  field_destroy(&f);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  check_waves(comm);
  check_ranks(comm);
  check_adjoint(comm);
  return testing_finish();
}
