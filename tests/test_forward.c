/* test_forward: the chain s -> delta_L -> LPT -> CIC -> delta: the same delta for a seed on
 * 1-4 ranks (against a one-rank run), delta_L equal to ic_delta_linear's, mean density, and
 * the adjoint dF/ds against central differences along random directions, 1LPT and 2LPT. */
#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/forward.h"
#include "cerberus/ic.h"
#include "cerberus/status.h"
#include "field_gather.h"
#include "testing.h"

#include <math.h>
#include <stdlib.h>

enum { NG = 16 };
static const double L = 250.0;

static void run_delta(MPI_Comm comm, const cosmology *cosmo, int order, double *out_global) {
  field *f = NULL;
  TEST_STATUS(field_create(comm, NG, L, 1, &f), CB_OK, "field_create");
  forward *fw = NULL;
  TEST_STATUS(forward_create(f, cosmo, order, &fw), CB_OK, "forward_create");
  double *s = field_alloc_real(f), *delta = field_alloc_real(f);
  ic_white_noise(f, 2718, s);
  TEST_STATUS(forward_run(fw, s, NULL, delta), CB_OK, "forward_run");
  field_gather_real(f, 1, delta, out_global);
  forward_destroy(&fw);
  fftw_free(s);
  fftw_free(delta);
  field_destroy(&f);
}

static void check_ranks(MPI_Comm comm, const cosmology *cosmo) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  const size_t nv = (size_t)NG * NG * NG;
  double *all = rank == 0 ? malloc(nv * sizeof(double)) : NULL;
  double *ref = rank == 0 ? malloc(nv * sizeof(double)) : NULL;
  MPI_Comm self = self_comm_on_root(comm);
  for (int order = 1; order <= 2; order++) {
    run_delta(comm, cosmo, order, all);
    if (self != MPI_COMM_NULL) run_delta(self, cosmo, order, ref);
    if (rank == 0) {
      double err = 0, var = 0;
      for (size_t i = 0; i < nv; i++) {
        err = fmax(err, fabs(all[i] - ref[i]));
        var += all[i] * all[i] / (double)nv;
      }
      TEST_CHECK(err < 1e-10, "order %d: delta differs from the one-rank run by %.3g", order, err);
      TEST_CHECK(var > 0.01, "order %d: delta is nearly empty (variance %.3g)", order, var);
    }
  }
  if (self != MPI_COMM_NULL) MPI_Comm_free(&self);
  free(all);
  free(ref);
}

static int cell_changes(const field *f, const double *a, const double *b, size_t n3) {
  const double inv_h = (double)f->n / f->L;
  int changed = 0;
  for (size_t i = 0; i < n3; i++)
    if (floor(a[i] * inv_h - 0.5) != floor(b[i] * inv_h - 0.5)) changed = 1;
  int any = 0;
  MPI_Allreduce(&changed, &any, 1, MPI_INT, MPI_MAX, f->comm);
  return any;
}

/* F = sum_v c(v) delta(v), dF/d delta = c. */
static void check_adjoint(MPI_Comm comm, const cosmology *cosmo) {
  field *f = NULL;
  TEST_STATUS(field_create(comm, NG, L, 1, &f), CB_OK, "field_create");
  const ptrdiff_t nl = f->n_real_local;
  double *s = field_alloc_real(f), *v = field_alloc_real(f), *cv = field_alloc_real(f);
  double *t = field_alloc_real(f), *delta = field_alloc_real(f), *dl = field_alloc_real(f);
  double *dl2 = field_alloc_real(f), *g = field_alloc_real(f);
  double *pa = malloc(3 * (size_t)nl * sizeof(double)),
         *pb = malloc(3 * (size_t)nl * sizeof(double));
  ic_white_noise(f, 31, s);
  ic_white_noise(f, 32, cv);
  for (ptrdiff_t i = 0; i < nl; i++) cv[i] = 0.7 * cv[i] + 0.2;
  ic_filter *flt = NULL;
  TEST_STATUS(ic_filter_create(f, cosmo, &flt), CB_OK, "ic_filter_create");
  for (int order = 1; order <= 2; order++) {
    forward *fw = NULL;
    TEST_STATUS(forward_create(f, cosmo, order, &fw), CB_OK, "forward_create");
    if (!fw) continue;
    /* delta_L as ic makes it; mean density 1 */
    TEST_STATUS(forward_run(fw, s, dl, delta), CB_OK, "forward_run");
    TEST_STATUS(ic_delta_linear(f, flt, s, dl2), CB_OK, "ic_delta_linear");
    double e = 0, m = 0;
    for (ptrdiff_t i = 0; i < nl; i++) {
      e = fmax(e, fabs(dl[i] - dl2[i]));
      m = fmax(m, fabs(dl2[i]));
    }
    TEST_CHECK(e <= 1e-13 * m, "delta_L differs from ic_delta_linear by %.3g (max %.3g)", e, m);
    TEST_CHECK(fabs(field_sum(f, delta)) < 1e-10, "mean of delta is %.3g, not 0",
               field_sum(f, delta) / (NG * NG * NG));
    TEST_STATUS(forward_adjoint(fw, cv, g), CB_OK, "forward_adjoint");
    for (int dir = 0; dir < 3; dir++) {
      ic_white_noise(f, 100 + (unsigned long)dir, v);
      double an = 0;
      for (ptrdiff_t i = 0; i < nl; i++) an += g[i] * v[i];
      an = field_allreduce_sum(f, an);
      /* step: small enough that no particle changes cell (CIC is piecewise trilinear) */
      double eps = 1e-4, fd = 0;
      int crossed = 1;
      for (int attempt = 0; attempt < 6 && crossed; attempt++, eps /= 8) {
        double F[2];
        for (int side = 0; side < 2; side++) {
          for (ptrdiff_t i = 0; i < nl; i++) t[i] = s[i] + (side ? -eps : eps) * v[i];
          TEST_STATUS(forward_run(fw, t, NULL, delta), CB_OK, "forward_run");
          double sum = 0;
          for (ptrdiff_t i = 0; i < nl; i++) sum += cv[i] * delta[i];
          F[side] = field_allreduce_sum(f, sum);
          size_t np;
          const double *x = forward_positions(fw, &np);
          for (size_t i = 0; i < 3 * np; i++) (side ? pb : pa)[i] = x[i];
        }
        fd = (F[0] - F[1]) / (2 * eps);
        crossed = cell_changes(f, pa, pb, 3 * (size_t)nl);
      }
      TEST_CHECK(!crossed, "a particle changes cell at every step tried");
      char name[64];
      snprintf(name, sizeof name, "%dLPT adjoint vs finite differences, direction %d", order, dir);
      TEST_CLOSE(an, fd, 1e-6, name);
      if (f->rank == 0)
        printf("%s: adjoint %.12g, central difference %.12g (step %.2g), rel. error %.2e\n", name,
               an, fd, eps * 8, fabs(an - fd) / fabs(fd));
    }
    /* the adjoint is linear in g_delta and independent of the runs in between */
    TEST_STATUS(forward_run(fw, s, NULL, delta), CB_OK, "forward_run");
    for (ptrdiff_t i = 0; i < nl; i++) t[i] = 2.5 * cv[i];
    TEST_STATUS(forward_adjoint(fw, t, t), CB_OK, "forward_adjoint (aliased)");
    e = 0;
    m = 0;
    for (ptrdiff_t i = 0; i < nl; i++) {
      e = fmax(e, fabs(t[i] - 2.5 * g[i]));
      m = fmax(m, fabs(g[i]));
    }
    TEST_CHECK(e <= 1e-12 * 2.5 * m, "adjoint not reproducible/linear: %.3g", e);
    /* one adjoint per run: it works in the run's displacements, and positions made from
     * them are only to be had before it */
    TEST_STATUS(forward_adjoint(fw, cv, g), CB_ERR_INTERNAL, "a second forward_adjoint");
    status_clear();
    TEST_CHECK(forward_positions(fw, NULL) == NULL, "positions after the adjoint consumed them");
    TEST_STATUS(forward_run(fw, s, NULL, delta), CB_OK, "forward_run");
    const double *x1 = forward_positions(fw, NULL);
    TEST_CHECK(x1 != NULL, "forward_positions after a run");
    TEST_STATUS(forward_adjoint(fw, cv, t), CB_OK, "forward_adjoint after forward_positions");
    TEST_CHECK(forward_positions(fw, NULL) == x1, "positions made before the adjoint are kept");
    forward_destroy(&fw);
    TEST_CHECK(fw == NULL, "forward_destroy leaves NULL");
  }
  forward *bad = NULL;
  TEST_STATUS(forward_create(f, cosmo, 0, &bad), CB_ERR_INPUT, "forward_create lpt order 0");
  TEST_CHECK(bad == NULL, "failed forward_create leaves NULL");
  status_clear();
  ic_filter_destroy(&flt);
  fftw_free(s);
  fftw_free(v);
  fftw_free(cv);
  fftw_free(t);
  fftw_free(delta);
  fftw_free(dl);
  fftw_free(dl2);
  fftw_free(g);
  free(pa);
  free(pb);
  field_destroy(&f);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  cosmo_params p = cosmo_params_default();
  cosmology *cosmo = NULL;
  TEST_STATUS(cosmology_create(&p, NULL, &cosmo), CB_OK, "cosmology_create");
  if (cosmo) {
    check_ranks(comm, cosmo);
    check_adjoint(comm, cosmo);
  }
  cosmology_destroy(&cosmo);
  return testing_finish();
}
