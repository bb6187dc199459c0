/* test_vmath: the four-lane path (libmvec, AVX2) and the plain path (libm) give the same
 * numbers within a few ulp, from the array functions up to ln L and its gradients, and ln L is
 * the same at any rank count on both paths (MODEL.md sections 3-5).
 *
 * - vmath_exp, _log, _erfc, _softplus on values across their ranges (with the tails: softplus
 *   of -800 and 800, erfc up to 27) against libm one by one, on both paths: 4 ulp (2e-15 at
 *   most relative to the value, softplus's sigmoid too).
 * - mdn_row on a row of 11 voxels (two blocks of four and a tail of three) with G = 3, P = 2,
 *   a skipped voxel (ln_extra = -inf), a voxel outside the direct formula's range
 *   (ln_extra = -610: the per-voxel path) and 9 halos in 6 voxels, against the per-voxel
 *   functions (mdn_forward, mdn_nbar, mdn_ln_dndlnm, mdn_backward) voxel by voxel: counts,
 *   ln dn/dlnM, d/dw and d/dpsi to 1e-12, on both paths; and the two paths against each other.
 * - mdn_dndlnm_row (the posterior's mass function) on 11 voxels at 3 masses, G = 3, P = 2, with
 *   a voxel whose alpha underflows (the per-voxel path), against exp(mdn_ln_dndlnm) voxel by
 *   voxel to 1e-12 relative, on both paths.
 * - ln L with both gradients for the paper's engine on a 10^3 grid (rows of 10: two blocks
 *   and a tail) with a mask, on both paths and on rank 0 alone: all four agree to 1e-12 (value,
 *   d lnL / dw, d lnL / d delta relative to their largest entry).
 * Without AVX2 or libmvec the two paths are the same code; the test says so and still runs. */
#include "testing.h"

#include "cerberus/field.h"
#include "cerberus/likelihood.h"
#include "cerberus/mdn.h"
#include "cerberus/status.h"
#include "cerberus/vmath.h"
#include "cerberus/weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double hash01(unsigned long a, unsigned long b) {
  unsigned long long x = (a + 1) * 0x9E3779B97F4A7C15ULL ^ (b + 7) * 0xC2B2AE3D27D4EB4FULL;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  return (double)(x >> 11) / 9007199254740992.0;
}

/* |a - b| <= tol max(|a|, |b|, floor), else a failure naming what and i. */
static int close_to(const char *what, size_t i, double a, double b, double tol, double floor) {
  double m = fmax(fmax(fabs(a), fabs(b)), floor);
  if (fabs(a - b) <= tol * m || (isinf(a) && a == b)) return 1;
  testing_fail(__FILE__, __LINE__, "%s[%zu]: %.17g vs %.17g (rel %.3g > %.3g)", what, i, a, b,
               fabs(a - b) / m, tol);
  return 0;
}

static void test_arrays(int vec) {
  enum { M = 403 }; /* not a multiple of 4: the tail too */
  double x[M], y[M], s[M], sig[M];
  const char *path = vec ? "vector" : "plain";
  char what[64];
  for (int f = 0; f < 4; f++) {
    for (int i = 0; i < M; i++) {
      double u = (double)i / (M - 1);
      x[i] = f == 0   ? -700 + 1400 * u
             : f == 1 ? exp(-690 + 1380 * u)
             : f == 2 ? -6 + 33 * u
                      : -800 + 1600 * u;
      if (f == 3 && i % 3 == 1) x[i] = -3.7 + 7.4 * u; /* and many near 0 */
    }
    if (f == 0) vmath_exp(M, x, y);
    if (f == 1) vmath_log(M, x, y);
    if (f == 2) vmath_erfc(M, x, y);
    if (f == 3) vmath_softplus(M, x, y, sig);
    for (int i = 0; i < M; i++) {
      if (f == 3) {
        s[i] = x[i] > 30 ? x[i] + exp(-x[i]) : log1p(exp(x[i]));
        snprintf(what, sizeof what, "%s sigmoid(%g)", path, x[i]);
        double sg = x[i] >= 0 ? 1.0 / (1.0 + exp(-x[i])) : exp(x[i]) / (1.0 + exp(x[i]));
        if (!close_to(what, (size_t)i, sig[i], sg, 2e-15, 1e-300)) break;
      } else {
        s[i] = f == 0 ? exp(x[i]) : f == 1 ? log(x[i]) : erfc(x[i]);
      }
      snprintf(what, sizeof what, "%s %s(%g)", path,
               f == 0   ? "exp"
               : f == 1 ? "log"
               : f == 2 ? "erfc"
                        : "softplus",
               x[i]);
      if (!close_to(what, (size_t)i, y[i], s[i], 2e-15, 1e-300)) break;
    }
  }
}

enum { NR = 11, P = 2, G = 3, NH = 9 };

typedef struct row_out {
  double nb[NR], hld[NH], gw[3 * G * (P + 1)], dpsi[P * NR], sum;
} row_out;

static void row_inputs(mdn_config *c, double *w, double *psi, double *ext, size_t *hk, double *hu) {
  mdn_config_default(c);
  c->n_gauss = G;
  c->n_features = P;
  c->M0 = 3.1e12;
  c->A0 = 2.3e-3;
  for (size_t i = 0; i < mdn_n_weights(c); i++) w[i] = 0.6 * (2 * hash01(21, i) - 1);
  for (int k = 0; k < P * NR; k++) psi[k] = 2.385 * hash01(22, (unsigned long)k) - 0.4;
  for (int k = 0; k < NR; k++) ext[k] = 0.7 * (hash01(23, (unsigned long)k) - 0.5);
  ext[2] = -INFINITY; /* skipped */
  ext[5] = -610;      /* outside the direct formula's range: the per-voxel path */
  const size_t vox[NH] = {0, 0, 2, 3, 5, 7, 7, 7, 9};
  for (int h = 0; h < NH; h++) {
    hk[h] = 1000 + vox[h];
    hu[h] = log(2e12) + 4.1 * hash01(24, (unsigned long)h);
  }
}

static void row_run(int vec, row_out *o) {
  mdn_config c;
  double w[3 * G * (P + 1)], psi[P * NR], ext[NR], hu[NH];
  size_t hk[NH];
  row_inputs(&c, w, psi, ext, hk, hu);
  double *ws = malloc(mdn_row_workspace(&c, NR) * sizeof *ws);
  memset(o, 0, sizeof *o);
  bool was = vmath_set_vector(vec);
  o->sum = mdn_row(&c, w, psi, NR, NR, log(0.77), log(2e12), ext, -1.0, NH, hk, 1000, hu, o->hld,
                   o->gw, o->dpsi, o->nb, ws);
  vmath_set_vector(was);
  free(ws);
}

/* The same numbers voxel by voxel through the per-voxel functions. */
static void row_reference(row_out *o) {
  mdn_config c;
  double w[3 * G * (P + 1)], psi[P * NR], ext[NR], hu[NH];
  size_t hk[NH];
  row_inputs(&c, w, psi, ext, hk, hu);
  memset(o, 0, sizeof *o);
  for (int k = 0; k < NR; k++) {
    mdn_voxel v;
    mdn_adjoint adj;
    memset(&adj, 0, sizeof adj);
    if (ext[k] == -INFINITY) continue;
    mdn_forward(&c, w, psi + k, NR, &v);
    o->nb[k] = mdn_nbar(&c, &v, log(0.77), log(2e12), ext[k], -1.0, &adj);
    o->sum += o->nb[k];
    for (int h = 0; h < NH; h++)
      if (hk[h] - 1000 == (size_t)k) {
        mdn_adjoint ah;
        memset(&ah, 0, sizeof ah);
        o->hld[h] = mdn_ln_dndlnm(&c, &v, hu[h], 1.0, &ah);
        for (int i = 0; i < G; i++) {
          adj.y_alpha[i] += ah.y_alpha[i];
          adj.mu[i] += ah.mu[i];
          adj.sigma[i] += ah.sigma[i];
        }
      }
    mdn_backward(&c, w, psi + k, NR, &v, &adj, o->gw, o->dpsi + k, NR);
  }
}

static void row_compare(const char *what, const row_out *a, const row_out *b, double tol) {
  char s[96];
  double gmax = 0, dmax = 0, nmax = 0;
  for (int i = 0; i < 3 * G * (P + 1); i++) gmax = fmax(gmax, fabs(b->gw[i]));
  for (int i = 0; i < P * NR; i++) dmax = fmax(dmax, fabs(b->dpsi[i]));
  for (int k = 0; k < NR; k++)
    if (k != 5) nmax = fmax(nmax, fabs(b->nb[k]));
  snprintf(s, sizeof s, "%s: sum", what);
  close_to(s, 0, a->sum, b->sum, tol, 0);
  snprintf(s, sizeof s, "%s: nb", what);
  for (int k = 0; k < NR; k++)
    if (!close_to(s, (size_t)k, a->nb[k], b->nb[k], tol, 0)) break;
  snprintf(s, sizeof s, "%s: ln dn/dlnM", what);
  for (int h = 0; h < NH; h++)
    if (!close_to(s, (size_t)h, a->hld[h], b->hld[h], tol, 0)) break;
  /* the gradients: relative to the largest entry */
  snprintf(s, sizeof s, "%s: grad_w", what);
  for (int i = 0; i < 3 * G * (P + 1); i++)
    if (!close_to(s, (size_t)i, a->gw[i], b->gw[i], tol, 1e-14 * gmax)) break;
  snprintf(s, sizeof s, "%s: dpsi", what);
  for (int i = 0; i < P * NR; i++)
    if (!close_to(s, (size_t)i, a->dpsi[i], b->dpsi[i], tol, 1e-14 * dmax)) break;
  TEST_CHECK(nmax > 1e-3 && a->nb[5] > 0, "%s: the row's counts look degenerate", what);
}

static void test_row(void) {
  row_out ref, plain, vector;
  row_reference(&ref);
  row_run(0, &plain);
  row_run(1, &vector);
  row_compare("row, plain path vs per voxel", &plain, &ref, 1e-12);
  row_compare("row, vector path vs per voxel", &vector, &ref, 1e-12);
  row_compare("row, vector vs plain path", &vector, &plain, 1e-13);
  TEST_CHECK(plain.nb[2] == 0 && plain.hld[2] == 0, "the skipped voxel has a count or a halo term");
}

/* ln L, d lnL / dw, d lnL / d delta (gathered to every rank) for the paper's engine at 10^3. */
static int loglike(MPI_Comm comm, int vec, double *L, double *gw, double *gd_all) {
  enum { N = 10 };
  weights_arch a;
  weights_arch_default(&a);
  a.mdn.M0 = 3.1e12;
  field *f = NULL;
  likelihood *lk = NULL;
  CB_CALL(field_create(comm, N, 53.9, npe_ghost_width(&a.npe), &f));
  int st = likelihood_create(f, &a, &lk);
  const ptrdiff_t nn = N * N, nv = f->n_real_local;
  double *delta = field_alloc_real(f), *gd = field_alloc_real(f), *mask = field_alloc_real(f);
  const size_t nw = weights_count(&a), nh = 60;
  double *w = malloc(nw * sizeof *w), pos[3 * 60], mass[60];
  for (ptrdiff_t v = 0; v < nv; v++) {
    unsigned long gv = (unsigned long)(f->local_0_start * nn + v);
    delta[v] = exp(1.3 * (hash01(31, gv) - 0.45)) - 1;
    double u = hash01(32, gv);
    mask[v] = u < 0.15 ? 0.0 : u < 0.3 ? 0.41 : 1.0;
  }
  for (size_t h = 0; h < nh; h++) {
    for (int x = 0; x < 3; x++) pos[3 * h + x] = 53.9 * hash01(33, 3 * h + (size_t)x);
    mass[h] = 2e12 * exp(3.3 * hash01(34, h));
  }
  for (size_t i = 0; i < nw; i++) w[i] = 0.4 * (2 * hash01(35, i) - 1);
  if (!st) st = likelihood_set_halos(lk, "test", nh, pos, mass, 2e12);
  if (!st) st = likelihood_set_mask(lk, mask);
  bool was = vmath_set_vector(vec);
  if (!st) st = likelihood_evaluate(lk, delta, w, L, gw, gd);
  vmath_set_vector(was);
  if (!st) {
    int *cnt = malloc((size_t)f->size * sizeof *cnt), *dsp = malloc((size_t)f->size * sizeof *dsp);
    for (int r = 0; r < f->size; r++) {
      cnt[r] = (int)((f->plane_start[r + 1] - f->plane_start[r]) * nn);
      dsp[r] = (int)(f->plane_start[r] * nn);
    }
    MPI_Allgatherv(gd, (int)nv, MPI_DOUBLE, gd_all, cnt, dsp, MPI_DOUBLE, comm);
    free(cnt);
    free(dsp);
  }
  free(w);
  fftw_free(delta);
  fftw_free(gd);
  fftw_free(mask);
  likelihood_destroy(&lk);
  field_destroy(&f);
  return st;
}

static void test_loglike(MPI_Comm comm) {
  enum { NV = 10 * 10 * 10, NW = 17 };
  double L[4], gw[4][NW], gd[4][NV];
  int rank;
  MPI_Comm_rank(comm, &rank);
  for (int vec = 0; vec < 2; vec++)
    TEST_CHECK(loglike(comm, vec, &L[vec], gw[vec], gd[vec]) == CB_OK, "ln L (%s path): %s",
               vec ? "vector" : "plain", status_message());
  MPI_Comm solo;
  MPI_Comm_split(comm, rank == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
  if (rank == 0) {
    for (int vec = 0; vec < 2; vec++)
      TEST_CHECK(loglike(solo, vec, &L[2 + vec], gw[2 + vec], gd[2 + vec]) == CB_OK,
                 "ln L on rank 0 alone: %s", status_message());
    MPI_Comm_free(&solo);
  }
  MPI_Bcast(L + 2, 2, MPI_DOUBLE, 0, comm);
  MPI_Bcast(gw[2], 2 * NW, MPI_DOUBLE, 0, comm);
  MPI_Bcast(gd[2], 2 * NV, MPI_DOUBLE, 0, comm);
  static const char *name[4] = {"plain", "vector", "plain, one rank", "vector, one rank"};
  double gmax = 0, dmax = 0;
  for (int i = 0; i < NW; i++) gmax = fmax(gmax, fabs(gw[0][i]));
  for (int v = 0; v < NV; v++) dmax = fmax(dmax, fabs(gd[0][v]));
  TEST_CHECK(isfinite(L[0]) && gmax > 0 && dmax > 0, "ln L %g: nothing to compare", L[0]);
  char s[96];
  for (int c = 1; c < 4; c++) {
    snprintf(s, sizeof s, "ln L %s vs plain", name[c]);
    close_to(s, 0, L[c], L[0], 1e-12, 0);
    snprintf(s, sizeof s, "d lnL / dw %s vs plain", name[c]);
    for (int i = 0; i < NW; i++)
      if (!close_to(s, (size_t)i, gw[c][i], gw[0][i], 1e-12, gmax)) break;
    snprintf(s, sizeof s, "d lnL / d delta %s vs plain", name[c]);
    for (int v = 0; v < NV; v++)
      if (!close_to(s, (size_t)v, gd[c][v], gd[0][v], 1e-12, dmax)) break;
  }
}

/* mdn_dndlnm_row against exp(mdn_ln_dndlnm) voxel by voxel, on both paths. */
static void test_dndlnm_row(void) {
  mdn_config c;
  double w[3 * G * (P + 1)], psi[P * NR], ext[NR], hu[NH];
  size_t hk[NH];
  row_inputs(&c, w, psi, ext, hk, hu);
  w[1] = 100;         /* a_1 of feature 1: Gaussian 1's alpha is e^-800 in voxel 4 alone, */
  psi[NR + 4] = -8.0; /* which takes the per-voxel path (the other lanes stay vectorised) */
  const double u[3] = {log(2.5e12), log(3e13), log(4e14)};
  double got[NR * 3], want[NR * 3];
  for (int k = 0; k < NR; k++) {
    mdn_voxel v;
    mdn_forward(&c, w, psi + k, NR, &v);
    for (int m = 0; m < 3; m++) want[k * 3 + m] = exp(mdn_ln_dndlnm(&c, &v, u[m], 0, NULL));
  }
  for (int vec = 0; vec < 2; vec++) {
    bool was = vmath_set_vector(vec);
    mdn_dndlnm_row(&c, w, psi, NR, NR, 3, u, got);
    vmath_set_vector(was);
    for (int k = 0; k < NR * 3; k++)
      TEST_CHECK(fabs(got[k] - want[k]) <= 1e-12 * fabs(want[k]) && want[k] > 0,
                 "dndlnm_row (%s path) voxel %d mass %d: %.17g, want %.17g",
                 vec ? "vector" : "plain", k / 3, k % 3, got[k], want[k]);
  }
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  vmath_set_vector(true);
  if (!vmath_vector() && testing_rank() == 0)
    printf("test_vmath: no AVX2 or no libmvec here: both paths are the plain one\n");
  test_arrays(0);
  test_arrays(1);
  test_row();
  test_dndlnm_row();
  test_loglike(comm);
  return testing_finish();
}
