/* test_conv: the convolution's class-sum path against the direct taps (MODEL.md section 3,
 * issue 15), at 1-4 ranks.
 *
 * For 3^3 layers with lmax 0 and 1, one and several channels, on periodic n^3 fields (n = 7
 * and 10: the four-lane loops and their tails, slabs of 1 to 3 planes at 4 ranks), each rank
 * takes its slab of a field made identically everywhere from a hash of the global voxel,
 * fills the ghost planes, and runs conv_forward and conv_backward over the same interior and
 * edge ranges as the engine. The input gradients (ghost planes folded to their owners) and
 * the weight gradients are summed over ranks. All three are compared with
 *  - a reference here: the 27 taps of every offset, weight by conv_group_of, summed directly
 *    over the full field on every rank (the definition, no code shared with conv.c's paths);
 *  - the same layer switched to its direct path (conv_prepare(..., true)), run the same way;
 *  - the class-sum path run on the whole field as one slab (what one rank computes): the
 *    forward must be identical to the bit, the gradients equal to rounding, whatever the rank
 *    count.
 * 5^3 and lmax 2 layers must report the direct path (and still match the reference). */
#include "testing.h"

#include "cerberus/conv.h"
#include "cerberus/status.h"

#include <gsl/gsl_rng.h>
#include <stdlib.h>
#include <string.h>

static double hash01(unsigned long a, unsigned long b) {
  unsigned long long x = (a + 11) * 0x9E3779B97F4A7C15ULL ^ (b + 3) * 0xC2B2AE3D27D4EB4FULL;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 29;
  return (double)(x >> 11) / 9007199254740992.0;
}

static ptrdiff_t wrap(ptrdiff_t i, ptrdiff_t n) {
  return ((i % n) + n) % n;
}

typedef struct {
  int K, lmax, cin, ch, cout, nlm;
} layer;

/* Reference on the full field F[c][n^3] with output gradient G[q][n^3]: out[q][n^3],
 * din[c][n^3] and d/dw (tied, biases last), straight from the definition. */
static void reference(const conv *cv, const layer *L, const double *w, ptrdiff_t n, const double *F,
                      const double *G, double *out, double *din, double *gw) {
  const ptrdiff_t n3 = n * n * n;
  const int g = (L->K - 1) / 2;
  size_t nk = conv_n_weights(cv) - (size_t)L->cout;
  memset(din, 0, (size_t)L->cin * n3 * sizeof *din);
  memset(gw, 0, conv_n_weights(cv) * sizeof *gw);
  for (int q = 0; q < L->cout; q++) {
    for (ptrdiff_t x = 0; x < n3; x++) out[q * n3 + x] = w[nk + q];
    for (ptrdiff_t x = 0; x < n3; x++) gw[nk + q] += G[q * n3 + x];
  }
  size_t off = 0;
  for (int q = 0; q < L->cout; q++) {
    const int t = q % L->nlm;
    for (int c = 0; c < L->cin; c++) {
      const double *wq = w + off;
      double *gq = gw + off;
      off += (size_t)conv_n_groups(cv, t);
      for (int di = -g; di <= g; di++)
        for (int dj = -g; dj <= g; dj++)
          for (int dk = -g; dk <= g; dk++) {
            const int gr = conv_group_of(cv, t, di, dj, dk);
            if (gr < 0) continue;
            for (ptrdiff_t i = 0; i < n; i++)
              for (ptrdiff_t j = 0; j < n; j++)
                for (ptrdiff_t k = 0; k < n; k++) {
                  const ptrdiff_t x = (i * n + j) * n + k,
                                  y = (wrap(i + di, n) * n + wrap(j + dj, n)) * n + wrap(k + dk, n);
                  out[q * n3 + x] += wq[gr] * F[c * n3 + y];
                  din[c * n3 + y] += wq[gr] * G[q * n3 + x];
                  gq[gr] += G[q * n3 + x] * F[c * n3 + y];
                }
          }
    }
  }
}

/* The layer on planes [i0, i0 + nloc) of the full fields, as the engine runs it (interior,
 * then edges; reverse: edges, then interior): out for the slab, din and gw ADDED into full
 * arrays (ghost planes folded periodically). */
static void slab_run(conv *cv, const layer *L, ptrdiff_t n, ptrdiff_t i0, ptrdiff_t nloc,
                     const double *F, const double *G, double *out, double *din, double *gw) {
  const ptrdiff_t nn = n * n, n3 = nn * n;
  const int g = (L->K - 1) / 2;
  const ptrdiff_t nb = nloc + 2 * g;
  double *in = malloc((size_t)(nb * L->cin * nn) * sizeof *in);
  double *dl = calloc((size_t)(nb * L->cin * nn), sizeof *dl);
  double *dout = malloc((size_t)(nloc * L->cout * nn) * sizeof *dout);
  for (ptrdiff_t b = 0; b < nb; b++)
    for (int c = 0; c < L->cin; c++)
      memcpy(in + (b * L->cin + c) * nn, F + c * n3 + wrap(i0 + b - g, n) * nn,
             (size_t)nn * sizeof *in);
  for (ptrdiff_t p = 0; p < nloc; p++)
    for (int q = 0; q < L->cout; q++)
      memcpy(dout + (p * L->cout + q) * nn, G + q * n3 + (i0 + p) * nn, (size_t)nn * sizeof *in);
  ptrdiff_t lo = g < nloc ? g : nloc, hi = nloc - g > lo ? nloc - g : lo;
  conv_forward(cv, n, in, out, lo, hi);
  conv_forward(cv, n, in, out, 0, lo);
  conv_forward(cv, n, in, out, hi, nloc);
  conv_backward(cv, n, in, dout, gw, dl, 0, lo);
  conv_backward(cv, n, in, dout, gw, dl, hi, nloc);
  conv_backward(cv, n, in, dout, gw, dl, lo, hi);
  for (ptrdiff_t b = 0; b < nb; b++)
    for (int c = 0; c < L->cin; c++) {
      double *d = din + c * n3 + wrap(i0 + b - g, n) * nn;
      const double *s = dl + (b * L->cin + c) * nn;
      for (ptrdiff_t v = 0; v < nn; v++) d[v] += s[v];
    }
  free(in);
  free(dl);
  free(dout);
}

static double max_abs(const double *a, size_t m) {
  double s = 0;
  for (size_t i = 0; i < m; i++) s = fmax(s, fabs(a[i]));
  return s;
}
static double max_diff(const double *a, const double *b, size_t m) {
  double s = 0;
  for (size_t i = 0; i < m; i++) s = fmax(s, fabs(a[i] - b[i]));
  return s;
}

static void check(const char *name, const double *got, const double *want, size_t m, double rtol) {
  const double scale = max_abs(want, m), d = max_diff(got, want, m);
  TEST_CHECK(scale > 0 && d <= rtol * scale, "%s: differs by %.3g (scale %.3g, rtol %.1g)", name, d,
             scale, rtol);
}

static void run_case(MPI_Comm comm, int K, int lmax, int cin, int ch, ptrdiff_t n, bool want_sums) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int nlm = (lmax + 1) * (lmax + 1);
  layer L = {K, lmax, cin, ch, ch * nlm, nlm};
  char name[96];
  snprintf(name, sizeof name, "%d^3 lmax %d, %d -> %d channels, n %td", K, lmax, cin, L.cout, n);
  conv *cv = NULL, *cd = NULL;
  TEST_STATUS(conv_create(K, lmax, cin, ch, &cv), CB_OK, name);
  TEST_STATUS(conv_create(K, lmax, cin, ch, &cd), CB_OK, name);
  if (!cv || !cd) return;
  TEST_STATUS(conv_prepare(cv, n, false), CB_OK, name);
  TEST_STATUS(conv_prepare(cd, n, true), CB_OK, name);
  TEST_CHECK(conv_class_sums(cv, n) == want_sums && !conv_class_sums(cd, n) &&
                 !conv_class_sums(cv, n + 1),
             "%s: class sums %d, expected %d", name, conv_class_sums(cv, n), want_sums);
  TEST_CHECK((conv_memory(cv) >= (size_t)(6 * n * n) * sizeof(double)) == want_sums &&
                 conv_memory(cd) == 0,
             "%s: workspace %zu and %zu bytes", name, conv_memory(cv), conv_memory(cd));
  const ptrdiff_t nn = n * n, n3 = nn * n;
  const size_t nw = conv_n_weights(cv);
  double *w = malloc(nw * sizeof *w);
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 1234u + (unsigned)(K * 100 + lmax * 10 + cin));
  for (size_t i = 0; i < nw; i++) w[i] = 1.7 * gsl_rng_uniform(r) - 0.6;
  gsl_rng_free(r);
  conv_set_weights(cv, w);
  conv_set_weights(cd, w);
  double *F = malloc((size_t)(cin * n3) * sizeof *F),
         *G = malloc((size_t)(L.cout * n3) * sizeof *G);
  for (ptrdiff_t x = 0; x < cin * n3; x++) F[x] = 2.385 * hash01((unsigned long)x, 1) - 0.9;
  for (ptrdiff_t x = 0; x < L.cout * n3; x++) G[x] = 1.3 * hash01((unsigned long)x, 2) - 0.4;
  double *ro = malloc((size_t)(L.cout * n3) * sizeof *ro),
         *rd = malloc((size_t)(cin * n3) * sizeof *rd), *rg = malloc(nw * sizeof *rg);
  reference(cv, &L, w, n, F, G, ro, rd, rg);
  /* this rank's slab: planes split as evenly as the field does (the first ones get one more) */
  const ptrdiff_t i0 = rank * (n / size) + (rank < n % size ? rank : n % size),
                  nloc = n / size + (rank < n % size ? 1 : 0);
  double *out0 = NULL;
  for (int path = 0; path < 3; path++) { /* class sums, direct, class sums on one slab */
    conv *c = path == 1 ? cd : cv;
    const ptrdiff_t a0 = path == 2 ? 0 : i0, m = path == 2 ? n : nloc;
    double *out = calloc((size_t)(L.cout * n3), sizeof *out),
           *din = calloc((size_t)(cin * n3), sizeof *din), *gw = calloc(nw, sizeof *gw),
           *sl = malloc((size_t)(m * L.cout * nn + 1) * sizeof *sl);
    if (m > 0) slab_run(c, &L, n, a0, m, F, G, sl, din, gw);
    for (ptrdiff_t p = 0; p < m; p++)
      for (int q = 0; q < L.cout; q++)
        memcpy(out + q * n3 + (a0 + p) * nn, sl + (p * L.cout + q) * nn, (size_t)nn * sizeof *out);
    if (path < 2) {
      MPI_Allreduce(MPI_IN_PLACE, out, (int)(L.cout * n3), MPI_DOUBLE, MPI_SUM, comm);
      MPI_Allreduce(MPI_IN_PLACE, din, (int)(cin * n3), MPI_DOUBLE, MPI_SUM, comm);
      MPI_Allreduce(MPI_IN_PLACE, gw, (int)nw, MPI_DOUBLE, MPI_SUM, comm);
    }
    static const char *pn[3] = {"class sums", "direct", "class sums, one slab"};
    char what[192];
    snprintf(what, sizeof what, "%s, %s: forward", name, pn[path]);
    check(what, out, ro, (size_t)(L.cout * n3), 1e-13);
    snprintf(what, sizeof what, "%s, %s: input gradient", name, pn[path]);
    check(what, din, rd, (size_t)(cin * n3), 1e-13);
    snprintf(what, sizeof what, "%s, %s: weight gradient", name, pn[path]);
    check(what, gw, rg, nw, 1e-13);
    if (path == 0) {
      out0 = out;
      out = NULL;
    } else if (path == 2) { /* the distributed class-sum forward equals the one-slab one exactly */
      long bad = 0;
      for (ptrdiff_t x = 0; x < L.cout * n3; x++) bad += out0[x] != out[x];
      TEST_CHECK(bad == 0, "%s: forward on %d ranks differs from one slab in %ld values", name,
                 size, bad);
    }
    free(out);
    free(din);
    free(gw);
    free(sl);
  }
  free(out0);
  free(w);
  free(F);
  free(G);
  free(ro);
  free(rd);
  free(rg);
  conv_destroy(&cv);
  conv_destroy(&cd);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  for (int ni = 0; ni < 2; ni++) {
    const ptrdiff_t n = ni == 0 ? 7 : 10;
    run_case(comm, 3, 0, 1, 1, n, true); /* the paper's engine */
    run_case(comm, 3, 0, 2, 3, n, true);
    run_case(comm, 3, 1, 1, 1, n, true);
    run_case(comm, 3, 1, 3, 2, n, true);
  }
  run_case(comm, 5, 0, 2, 1, 10, false); /* no class sums: the direct path */
  run_case(comm, 3, 2, 1, 1, 7, false);
  /* a layer left unprepared, or prepared for another side, takes the direct path */
  conv *cv = NULL;
  TEST_STATUS(conv_create(3, 0, 1, 1, &cv), CB_OK, "conv 3^3");
  if (cv) TEST_CHECK(!conv_class_sums(cv, 8), "an unprepared layer claims class sums");
  conv_destroy(&cv);
  return testing_finish();
}
