/* test_engine: the convolution's tying and symmetries (MODEL.md section 3), at 1-4 ranks.
 *
 * - Tying: a 3^3 lmax 0 kernel has 4 free weights (centre, faces, edges, corners, in that
 *   order), a 5^3 one 10; every offset at the same |r| has the same group; the paper's
 *   engine has 5 weights, the paper's model 17.
 * - Rotations: with lmax 0, rotating the input field by 90 degrees about each axis rotates
 *   the features (two layers, 3^3 and 5^3, two channels): psi[D o R] = psi[D] o R.
 * - Shifts: shifting the field by whole voxels along the split axis (across rank
 *   boundaries: 12^3 on 4 ranks has 3 planes a rank, the shift is 5) shifts every feature
 *   channel (lmax 1 and 2, two layers).
 * - The exchange refuses a slab thinner than the ghost width with a clear error.
 * The full fields are made identically on every rank from a hash of the global voxel and
 * the distributed features are gathered for the comparisons. */
#include "testing.h"

#include "cerberus/conv.h"
#include "cerberus/exchange.h"
#include "cerberus/field.h"
#include "cerberus/npe.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <gsl/gsl_rng.h>
#include <stdlib.h>
#include <string.h>

static double hash01(unsigned long a, unsigned long b) {
  unsigned long long x = (a + 3) * 0x9E3779B97F4A7C15ULL ^ (b + 5) * 0xC2B2AE3D27D4EB4FULL;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 29;
  return (double)(x >> 11) / 9007199254740992.0;
}

/* Features of the full field D (n^3, every rank), gathered to full[(i * P + c) * n^2 + jk]. */
static int features_full(field *f, npe *net, const double *w, const double *D, int P,
                         double *full) {
  const ptrdiff_t n = f->n, nn = n * n;
  const double *psi;
  CB_CALL(npe_forward(net, D + f->local_0_start * nn, w, &psi));
  int *counts = malloc((size_t)f->size * sizeof *counts),
      *displs = malloc((size_t)f->size * sizeof *displs);
  for (int r = 0; r < f->size; r++) {
    counts[r] = (int)((f->plane_start[r + 1] - f->plane_start[r]) * P * nn);
    displs[r] = (int)(f->plane_start[r] * P * nn);
  }
  MPI_Allgatherv(psi, (int)(f->local_n0 * P * nn), MPI_DOUBLE, full, counts, displs, MPI_DOUBLE,
                 f->comm);
  free(counts);
  free(displs);
  return CB_OK;
}

static void parse(const char *spec, npe_config *c) {
  npe_config_default(c);
  char buf[128];
  snprintf(buf, sizeof buf, "%s", spec);
  c->n_layers = 0;
  char *save = NULL;
  for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int K, l, ch, a;
    sscanf(t, "%d:%d:%d:%d", &K, &l, &ch, &a);
    c->layer[c->n_layers++] = (npe_layer_config){K, l, ch, a};
  }
}

/* map: 0 = rotate about i, 1 about j, 2 about k, 3 = shift by s along i. Source voxel of x. */
static void source(int map, ptrdiff_t n, ptrdiff_t s, ptrdiff_t i, ptrdiff_t j, ptrdiff_t k,
                   ptrdiff_t *a, ptrdiff_t *b, ptrdiff_t *c) {
  switch (map) {
  case 0: *a = i, *b = k, *c = n - 1 - j; break;
  case 1: *a = n - 1 - k, *b = j, *c = i; break;
  case 2: *a = j, *b = n - 1 - i, *c = k; break;
  default: *a = (i + s) % n, *b = j, *c = k; break;
  }
}

static void check_map(MPI_Comm comm, const char *spec, int map, ptrdiff_t n, int expect) {
  npe_config cfg;
  parse(spec, &cfg);
  field *f = NULL;
  npe *net = NULL;
  int st = field_create(comm, n, 71.3, npe_ghost_width(&cfg), &f);
  if (!st) st = npe_create(f, &cfg, &net);
  TEST_CHECK(st == CB_OK, "%s: setup: %s", spec, status_message());
  if (st) {
    field_destroy(&f);
    return;
  }
  const ptrdiff_t nn = n * n, N3 = n * nn;
  const int P = npe_n_features(&cfg);
  size_t nw = npe_n_weights(&cfg);
  double *w = malloc(nw * sizeof *w);
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 4242);
  for (size_t i = 0; i < nw; i++) w[i] = 2 * gsl_rng_uniform(r) - 1;
  gsl_rng_free(r);
  double *D = malloc((size_t)N3 * sizeof *D), *D2 = malloc((size_t)N3 * sizeof *D2);
  double *F = malloc((size_t)N3 * P * sizeof *F), *F2 = malloc((size_t)N3 * P * sizeof *F2);
  for (ptrdiff_t v = 0; v < N3; v++) D[v] = exp(1.3 * (hash01(7, (unsigned long)v) - 0.5)) - 1;
  const ptrdiff_t s = 5;
  for (ptrdiff_t i = 0; i < n; i++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t k = 0; k < n; k++) {
        ptrdiff_t a, b, c;
        source(map, n, s, i, j, k, &a, &b, &c);
        D2[(i * n + j) * n + k] = D[(a * n + b) * n + c];
      }
  st = features_full(f, net, w, D, P, F);
  if (!st) st = features_full(f, net, w, D2, P, F2);
  TEST_CHECK(st == CB_OK, "%s: forward: %s", spec, status_message());
  double maxerr = 0, maxv = 0;
  for (ptrdiff_t i = 0; i < n; i++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t k = 0; k < n; k++) {
        ptrdiff_t a, b, c;
        source(map, n, s, i, j, k, &a, &b, &c);
        for (int q = 0; q < P; q++) {
          double x = F2[(i * P + q) * nn + j * n + k], y = F[(a * P + q) * nn + b * n + c];
          maxerr = fmax(maxerr, fabs(x - y));
          maxv = fmax(maxv, fabs(y));
        }
      }
  static const char *names[] = {"rotation about i", "rotation about j", "rotation about k",
                                "shift by 5 planes along i"};
  if (expect)
    TEST_CHECK(maxerr <= 1e-12 * maxv && maxv > 0, "%s, %s: features differ by %g (max %g)", spec,
               names[map], maxerr, maxv);
  else /* control: an lmax 1 kernel is not invariant, so the same comparison must fail */
    TEST_CHECK(maxerr > 1e-6 * maxv, "%s, %s: features unchanged, but lmax 1 is not invariant",
               spec, names[map]);
  /* the features must depend on the field (a constant output would pass any symmetry) */
  double lo = INFINITY, hi = -INFINITY;
  for (ptrdiff_t v = 0; v < N3 * P; v++) lo = fmin(lo, F[v]), hi = fmax(hi, F[v]);
  TEST_CHECK(hi - lo > 1e-3 * fmax(fabs(hi), 1.0), "%s: features nearly constant (%g..%g)", spec,
             lo, hi);
  free(w);
  free(D);
  free(D2);
  free(F);
  free(F2);
  npe_destroy(&net);
  field_destroy(&f);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  /* tying */
  conv *c3 = NULL, *c5 = NULL;
  TEST_STATUS(conv_create(3, 0, 1, 1, &c3), CB_OK, "conv 3^3");
  TEST_STATUS(conv_create(5, 0, 1, 1, &c5), CB_OK, "conv 5^3");
  if (c3 && c5) {
    TEST_CHECK(conv_n_groups(c3, 0) == 4, "3^3 lmax 0: %d free weights, expected 4",
               conv_n_groups(c3, 0));
    TEST_CHECK(conv_n_groups(c5, 0) == 10, "5^3 lmax 0: %d free weights, expected 10",
               conv_n_groups(c5, 0));
    TEST_CHECK(conv_n_weights(c3) == 5, "3^3 layer: %zu weights with its bias", conv_n_weights(c3));
    TEST_CHECK(conv_group_of(c3, 0, 0, 0, 0) == 0 && conv_group_of(c3, 0, 0, -1, 0) == 1 &&
                   conv_group_of(c3, 0, 1, 0, -1) == 2 && conv_group_of(c3, 0, -1, 1, 1) == 3,
               "3^3 groups are not centre, face, edge, corner");
    for (int g = 2, a = -g; a <= g; a++)
      for (int b = -g; b <= g; b++)
        for (int c = -g; c <= g; c++) {
          /* same |r|^2 -> same group, and groups ordered by |r| */
          int r2 = a * a + b * b + c * c;
          int want = conv_group_of(c5, 0, 0, 0, 0);
          int grp = conv_group_of(c5, 0, a, b, c);
          int perm = conv_group_of(c5, 0, c, -a, b);
          TEST_CHECK(grp == perm, "5^3: offsets (%d,%d,%d) and (%d,%d,%d) not tied", a, b, c, c, -a,
                     b);
          (void)r2;
          (void)want;
        }
  }
  conv_destroy(&c3);
  conv_destroy(&c5);
  /* lmax 1: the three l = 1 kernels are the dipoles along the three axes, one each (real
   * spherical harmonics; Re Y_1,-1 alone would repeat the x dipole and miss y) */
  conv *d3 = NULL;
  TEST_STATUS(conv_create(3, 1, 1, 1, &d3), CB_OK, "conv 3^3 lmax 1");
  if (d3) {
    int axis_seen[3] = {0, 0, 0};
    for (int t = 1; t <= 3; t++) {
      int odd_axes = 0, which = -1;
      for (int ax = 0; ax < 3; ax++) {
        int u[3] = {0, 0, 0};
        u[ax] = 1;
        int gp = conv_group_of(d3, t, u[0], u[1], u[2]),
            gm = conv_group_of(d3, t, -u[0], -u[1], -u[2]);
        if (gp >= 0 && gm >= 0 && gp != gm) {
          odd_axes++;
          which = ax;
        }
      }
      TEST_CHECK(odd_axes == 1, "lmax 1 kernel %d is odd along %d axes, expected 1", t, odd_axes);
      if (which >= 0) axis_seen[which]++;
    }
    TEST_CHECK(axis_seen[0] == 1 && axis_seen[1] == 1 && axis_seen[2] == 1,
               "lmax 1 dipoles cover the axes %d,%d,%d times, expected once each", axis_seen[0],
               axis_seen[1], axis_seen[2]);
  }
  conv_destroy(&d3);
  weights_arch a;
  weights_arch_default(&a);
  TEST_CHECK(npe_n_weights(&a.npe) == 5 && weights_count(&a) == 17,
             "paper engine %zu weights (5), model %zu (17)", npe_n_weights(&a.npe),
             weights_count(&a));
  /* symmetries: activations 0 softplus 1 relu 2 tanh 3 identity */
  for (int map = 0; map < 3; map++) check_map(comm, "3:0:2:0,5:0:1:2", map, 12, 1);
  check_map(comm, "3:1:1:0,5:2:1:3", 3, 12, 1);
  check_map(comm, "5:0:1:1", 3, 12, 1);
  check_map(comm, "3:1:1:0", 0, 12, 0); /* control */
  /* exchange: too thin a slab */
  int size;
  MPI_Comm_size(comm, &size);
  exchange *ex = NULL;
  int st = exchange_create(comm, testing_rank() == size - 1 ? 1 : 3, 16, 2, &ex);
  TEST_CHECK(st == CB_ERR_INPUT && strstr(status_message(), "ghost"),
             "1-plane slab with ghost width 2 accepted (%d: %s)", st, status_message());
  exchange_destroy(&ex);
  status_clear();
  return testing_finish();
}
