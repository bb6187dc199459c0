/* conv: local multipole-tied 3-D convolutions, forward and reverse (MODEL.md section 3).
 *
 * Tying. For each multipole type t = (l, m) (t = l^2 + l + m) every kernel offset
 * r = (di, dj, dk) gets a value: |r| for l = 0, and |r| Y_lm(theta, phi) for l >= 1 with
 * the REAL spherical harmonics (theta the polar angle from the k axis, phi = atan2(dj, di);
 * cos(m phi) for m >= 0, sin(|m| phi) for m < 0), rounded to 1e-10. MODEL.md says Re Y_lm,
 * but Re Y_l,-m = (-1)^m Re Y_lm ties exactly like Re Y_lm: m and -m would repeat a kernel
 * and lmax 1 would have no y dipole (tests/test_engine.c checks the three axes). Offsets with equal
 * values share a weight; for l >= 1 offsets of value 0 carry none. This is the public
 * multipole_kernels recipe (Charnock et al.), written with the usual physics convention
 * for the angles (the recipe passes its polar angle to scipy's azimuth argument and uses
 * arctan(y/x); the partition of the kernel is what matters and l = 0 is identical).
 * Groups are numbered in increasing order of their value, so for l = 0: centre, faces,
 * edges, corners (4 for 3^3, 10 for 5^3).
 *
 * Class sums (3^3 kernels, lmax 0 and 1: the engine's layers). A tied kernel applies one
 * weight to the SUM of the input over each tie class, and for 3^3 every class sum is a
 * product of one-axis operators: S_a f = f(x - e_a) + f(x + e_a) and B_a = 1 + S_a. With
 *   U1 = (S_j + S_k) f,  U2 = S_j S_k f                         (within a plane)
 * the l = 0 classes are centre f, faces V1 = S_i f + U1, edges V2 = U2 + S_i U1, corners
 * V3 = S_i U2, and the l = 1 kernels (a weight for the plane d_a = -1 and one for d_a = +1,
 * tests/test_engine.c) the box sums B B f of the two other axes taken at x -/+ e_a:
 * (B_i B_j f)(k -/+ 1), (B_i B_k f)(j -/+ 1), (B_j B_k f)(i -/+ 1), from R = B_j f and
 * Q = B_k f kept with U1, U2. A ring of three planes per input channel (per output channel in
 * reverse) holds U1, U2 (R, Q) (conv_prepare allocates it: 6 or 12 planes of n^2 a channel,
 * max(C_in, C_out) channels); each call sums the planes it reads once, so the engine's three
 * calls a layer (interior, two edges) sum a few planes twice; each input plane is summed
 * once (4 adds a voxel; 6 with R, Q), each output row takes its class sums from the ring
 * (5 adds; 10 more for l = 1) and every output channel reading that input channel uses them:
 * 4 multiply-adds (l = 0) or 2 (l = 1) instead of 27 or 18. Forward, the paper's layer: 9
 * adds and 4 multiply-adds a voxel against 27 multiply-adds.
 * The reverse pass is the same machinery on the output gradient g (zero outside the planes a
 * call covers): the l = 0 classes are symmetric (S_a is its own adjoint), the l = 1 ones swap
 * d_a = -1 and +1. So din_c = sum_q sum_class w M_class(g_q) on the input planes, ghosts
 * included, and the weight gradient, sum_x g(x) class(in)(x), is by the same adjoint
 * sum_y in(y) M_class(g)(y): dot products with the class sums the reverse pass builds anyway
 * (no stored forward sums, no second sweep). The paper's layer: 9 adds, 4 multiply-adds into
 * din and 4 into the dot products a voxel, against 2 x 27. All inner loops run along the
 * contiguous k rows, four lanes at a time, periodic wrap in k through a padded row. Measured
 * by callgrind at 64^3 (bench loglike): 22 instructions a voxel forward and 28 in reverse,
 * against 53 and 119 for the direct taps.
 * The forward result does not depend on how the planes are split between calls or ranks;
 * the reverse's ghost-plane sums do, to rounding (as the direct path's did).
 *
 * Direct taps (5^3 kernels, lmax 2, a layer not prepared for this n; and the reference in
 * tests/test_conv.c's comparison). The tied weights are expanded once per call of
 * conv_set_weights into full K^3 kernels per (q, c). The forward pass loops plane, output
 * channel, row j, then over input channels and (di, dj): the destination row stays in L1
 * while the K taps of the kernel row are added to it in one pass over a source row
 * (row_taps); periodic wrap in k is the first and last g voxels done apart, wrap in j an
 * index. The reverse pass uses the same loops: the K dot products d kernel = sum dout *
 * shifted in of a kernel row in one vectorised pass (row_dots; folded into the tied weights
 * at the end), and din += kernel * dout as the mirrored taps, one pass a kernel row, into the
 * shifted rows, which may be ghost planes (the caller sends those back to their owners).
 * Nothing here knows about MPI. */
#include "cerberus/conv.h"

#include "cerberus/status.h"
#include "cerberus/vmath.h"

#include <gsl/gsl_sf_legendre.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A ring slot of the class-sum path: one plane's values f and its sums U1, U2, R, Q. */
typedef struct {
  const double *f, *a[4];
} slot;

struct conv {
  int K, g, K3, lmax, n_lm, c_in, channels, c_out;
  int *group;    /* [n_lm][K3]: group index or -1 */
  int *n_groups; /* [n_lm] */
  size_t *woff;  /* [c_out * c_in]: offset of kernel (q, c) in the weight vector */
  size_t n_kern; /* kernel weights (biases follow) */
  double *kern;  /* [c_out][c_in][K3] expanded */
  double *bias;  /* [c_out] */
  double *gkern; /* workspace: expanded kernel gradient */
  /* The class-sum path (3^3, lmax <= 1; see "Class sums" above). */
  bool sep_ok;    /* the tie tables have the separable structure */
  int axis[4];    /* l = 1 type t: the axis its kernel is odd along (0 = i, 1 = j, 2 = k) */
  int sgrp[4][4]; /* group of class s of type t (l = 0: centre, faces, edges, corners;
                     l = 1: the offsets at -1, +1 along the axis) */
  double *wsep;   /* [c_out][c_in][4] the tied weights by class */
  double *gacc;   /* [c_out][c_in][4] weight-gradient sums by class */
  ptrdiff_t ws_n; /* slab side the workspace is for, 0: direct path */
  int na;         /* plane arrays a ring slot holds: U1, U2 (+ R, Q for lmax 1) */
  double *ws;     /* [max(c_in, c_out)][3][na][n^2] ring of plane sums */
  double *zero;   /* [n^2] zeros */
  double *tpl;    /* [n^2] S_k of one plane */
  double *rows;   /* [9][n + 2] row scratch */
  slot *slots;    /* [max(c_in, c_out)][3] */
};

static double tie_value(int l, int m, int di, int dj, int dk) {
  double r = sqrt((double)(di * di + dj * dj + dk * dk));
  if (l == 0) return r;
  if (r == 0) return 0;
  double ct = dk / r;
  double phi = atan2((double)dj, (double)di);
  int am = abs(m);
  /* Real spherical harmonics: cos(m phi) for m >= 0, sin(|m| phi) for m < 0. MODEL.md
   * section 3 says Re Y_lm, but Re Y_l,-m = (-1)^m Re Y_lm ties exactly as Re Y_lm does, so
   * m and -m would give the same kernel twice and no y-dipole; the sine completes the basis. */
  double y = gsl_sf_legendre_sphPlm(l, am, ct) * (m >= 0 ? cos(am * phi) : sin(am * phi));
  return r * y;
}

/* Whether the tie tables of a 3^3, lmax <= 1 layer are what the class-sum path assumes: for
 * l = 0 one group per number of non-zero offset components (centre, faces, edges, corners),
 * for each l = 1 kernel an axis a with the groups G- on the plane d_a = -1, G+ != G- on
 * d_a = +1 and no weight on d_a = 0. Fills axis and sgrp. */
static bool sep_check(conv *cv) {
  if (cv->K != 3 || cv->lmax > 1) return false;
  for (int s = 0; s < 4; s++) cv->sgrp[0][s] = -2;
  for (int a = 0; a < 27; a++) {
    const int d[3] = {a / 9 - 1, (a / 3) % 3 - 1, a % 3 - 1};
    const int cnt = (d[0] != 0) + (d[1] != 0) + (d[2] != 0), gr = cv->group[a];
    if (cv->sgrp[0][cnt] == -2) cv->sgrp[0][cnt] = gr;
    if (gr < 0 || cv->sgrp[0][cnt] != gr) return false;
  }
  for (int s = 0; s < 4; s++)
    for (int u = 0; u < s; u++)
      if (cv->sgrp[0][s] == cv->sgrp[0][u]) return false;
  for (int t = 1; t < cv->n_lm; t++) {
    const int *gr = cv->group + (size_t)t * 27;
    cv->axis[t] = -1;
    for (int ax = 0; ax < 3 && cv->axis[t] < 0; ax++) {
      const int stride = ax == 0 ? 9 : ax == 1 ? 3 : 1;
      const int gm = gr[13 - stride], gp = gr[13 + stride];
      bool ok = gm >= 0 && gp >= 0 && gm != gp;
      for (int a = 0; a < 27 && ok; a++) {
        const int d = (ax == 0 ? a / 9 : ax == 1 ? (a / 3) % 3 : a % 3) - 1;
        ok = gr[a] == (d < 0 ? gm : d > 0 ? gp : -1);
      }
      if (ok) {
        cv->axis[t] = ax;
        cv->sgrp[t][0] = gm;
        cv->sgrp[t][1] = gp;
      }
    }
    if (cv->axis[t] < 0) return false;
  }
  return true;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int conv_create(int kernel, int lmax, int c_in, int channels, conv **out) {
  *out = NULL;
  CB_CHECK(kernel == 3 || kernel == 5, CB_ERR_INPUT, "kernel size must be 3 or 5 (got %d)", kernel);
  CB_CHECK(lmax >= 0 && lmax <= 2, CB_ERR_INPUT, "lmax must be 0, 1 or 2 (got %d)", lmax);
  CB_CHECK(c_in >= 1 && channels >= 1, CB_ERR_INPUT, "channels must be positive (got %d, %d)", c_in,
           channels);
  conv *cv;
  CB_CALLOC(cv, 1);
  cv->K = kernel;
  cv->g = (kernel - 1) / 2;
  cv->K3 = kernel * kernel * kernel;
  cv->lmax = lmax;
  cv->n_lm = (lmax + 1) * (lmax + 1);
  cv->c_in = c_in;
  cv->channels = channels;
  cv->c_out = channels * cv->n_lm;
  int st = CB_OK;
  cv->group = malloc((size_t)cv->n_lm * cv->K3 * sizeof *cv->group);
  cv->n_groups = calloc((size_t)cv->n_lm, sizeof *cv->n_groups);
  cv->woff = calloc((size_t)cv->c_out * c_in, sizeof *cv->woff);
  cv->kern = calloc((size_t)cv->c_out * c_in * cv->K3, sizeof *cv->kern);
  cv->gkern = calloc((size_t)cv->c_out * c_in * cv->K3, sizeof *cv->gkern);
  cv->bias = calloc((size_t)cv->c_out, sizeof *cv->bias);
  double *vals = malloc((size_t)cv->K3 * sizeof *vals),
         *uniq = malloc((size_t)cv->K3 * sizeof *uniq);
  if (!cv->group || !cv->n_groups || !cv->woff || !cv->kern || !cv->gkern || !cv->bias || !vals ||
      !uniq) {
    st = CB_ERROR(CB_ERR_MEM, "out of memory for a convolution layer");
    goto fail;
  }
  const int g = cv->g, K = kernel;
  for (int l = 0; l <= lmax; l++)
    for (int m = -l; m <= l; m++) {
      int t = l * l + l + m;
      for (int di = -g; di <= g; di++)
        for (int dj = -g; dj <= g; dj++)
          for (int dk = -g; dk <= g; dk++) {
            double v = tie_value(l, m, di, dj, dk);
            vals[((di + g) * K + (dj + g)) * K + (dk + g)] = round(v * 1e10) * 1e-10;
          }
      int nu = 0;
      for (int a = 0; a < cv->K3; a++)
        if (l == 0 || vals[a] != 0) uniq[nu++] = vals[a];
      qsort(uniq, (size_t)nu, sizeof *uniq, cmp_double);
      int ng = 0;
      for (int a = 0; a < nu; a++)
        if (ng == 0 || uniq[a] != uniq[ng - 1]) uniq[ng++] = uniq[a];
      cv->n_groups[t] = ng;
      for (int a = 0; a < cv->K3; a++) {
        int *gr = &cv->group[(size_t)t * cv->K3 + a];
        *gr = -1;
        if (l > 0 && vals[a] == 0) continue;
        for (int b = 0; b < ng; b++)
          if (uniq[b] == vals[a]) *gr = b;
      }
    }
  size_t off = 0;
  for (int q = 0; q < cv->c_out; q++)
    for (int c = 0; c < c_in; c++) {
      cv->woff[(size_t)q * c_in + c] = off;
      off += (size_t)cv->n_groups[q % cv->n_lm];
    }
  cv->n_kern = off;
  free(vals);
  free(uniq);
  if (sep_check(cv)) {
    cv->wsep = calloc((size_t)cv->c_out * c_in * 4, sizeof *cv->wsep);
    cv->gacc = calloc((size_t)cv->c_out * c_in * 4, sizeof *cv->gacc);
    if (!cv->wsep || !cv->gacc) {
      st = CB_ERROR(CB_ERR_MEM, "out of memory for a convolution layer");
      conv_destroy(&cv);
      return st;
    }
    cv->sep_ok = true;
  }
  *out = cv;
  return CB_OK;
fail:
  free(vals);
  free(uniq);
  conv_destroy(&cv);
  return st;
}

void conv_destroy(conv **pcv) {
  if (!pcv || !*pcv) return;
  conv *cv = *pcv;
  free(cv->group);
  free(cv->n_groups);
  free(cv->woff);
  free(cv->kern);
  free(cv->gkern);
  free(cv->bias);
  free(cv->wsep);
  free(cv->gacc);
  free(cv->ws);
  free(cv->zero);
  free(cv->tpl);
  free(cv->rows);
  free(cv->slots);
  free(cv);
  *pcv = NULL;
}

int conv_ghost(const conv *cv) {
  return cv->g;
}
int conv_c_in(const conv *cv) {
  return cv->c_in;
}
int conv_c_out(const conv *cv) {
  return cv->c_out;
}
int conv_n_groups(const conv *cv, int t) {
  return (t >= 0 && t < cv->n_lm) ? cv->n_groups[t] : 0;
}
int conv_group_of(const conv *cv, int t, int di, int dj, int dk) {
  int g = cv->g, K = cv->K;
  if (t < 0 || t >= cv->n_lm || abs(di) > g || abs(dj) > g || abs(dk) > g) return -1;
  return cv->group[(size_t)t * cv->K3 + ((di + g) * K + (dj + g)) * K + (dk + g)];
}
size_t conv_n_weights(const conv *cv) {
  return cv->n_kern + (size_t)cv->c_out;
}

void conv_set_weights(conv *cv, const double *w) {
  for (int q = 0; q < cv->c_out; q++) {
    const int *gr = cv->group + (size_t)(q % cv->n_lm) * cv->K3;
    for (int c = 0; c < cv->c_in; c++) {
      const double *wq = w + cv->woff[(size_t)q * cv->c_in + c];
      double *kq = cv->kern + ((size_t)q * cv->c_in + c) * cv->K3;
      for (int a = 0; a < cv->K3; a++) kq[a] = gr[a] >= 0 ? wq[gr[a]] : 0.0;
    }
    cv->bias[q] = w[cv->n_kern + q];
  }
  if (!cv->wsep) return;
  for (int q = 0; q < cv->c_out; q++) {
    const int t = q % cv->n_lm, ns = t == 0 ? 4 : 2;
    for (int c = 0; c < cv->c_in; c++) {
      const double *wq = w + cv->woff[(size_t)q * cv->c_in + c];
      for (int s = 0; s < ns; s++)
        cv->wsep[((size_t)q * cv->c_in + c) * 4 + s] = wq[cv->sgrp[t][s]];
    }
  }
}

int conv_prepare(conv *cv, ptrdiff_t n, bool direct) {
  free(cv->ws);
  free(cv->zero);
  free(cv->tpl);
  free(cv->rows);
  free(cv->slots);
  cv->ws = cv->zero = cv->tpl = cv->rows = NULL;
  cv->slots = NULL;
  cv->ws_n = 0;
  if (direct || !cv->sep_ok || n < 1) return CB_OK;
  const size_t nn = (size_t)n * (size_t)n,
               nch = (size_t)(cv->c_in > cv->c_out ? cv->c_in : cv->c_out);
  cv->na = cv->lmax >= 1 ? 4 : 2;
  cv->ws = malloc(nch * 3 * (size_t)cv->na * nn * sizeof *cv->ws);
  cv->zero = calloc(nn, sizeof *cv->zero);
  cv->tpl = malloc(nn * sizeof *cv->tpl);
  cv->rows = malloc(9 * ((size_t)n + 2) * sizeof *cv->rows);
  cv->slots = malloc(nch * 3 * sizeof *cv->slots);
  if (!cv->ws || !cv->zero || !cv->tpl || !cv->rows || !cv->slots) {
    conv_prepare(cv, n, true);
    return CB_ERROR(CB_ERR_MEM, "out of memory for a convolution layer's workspace (side %td)", n);
  }
  cv->ws_n = n;
  return CB_OK;
}

size_t conv_memory(const conv *cv) {
  if (!cv->ws_n) return 0;
  const size_t nn = (size_t)cv->ws_n * (size_t)cv->ws_n,
               nch = (size_t)(cv->c_in > cv->c_out ? cv->c_in : cv->c_out);
  return (nch * 3 * (size_t)cv->na * nn + 2 * nn + 9 * ((size_t)cv->ws_n + 2)) * sizeof(double) +
         nch * 3 * sizeof(slot);
}

bool conv_class_sums(const conv *cv, ptrdiff_t n) {
  return cv->ws_n > 0 && cv->ws_n == n;
}

/* The two passes are compiled for AVX2 and plain x86-64, the better chosen at load time. */
#if defined(__x86_64__) && defined(__GNUC__)
#define CONV_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CONV_CLONES
#endif

/* dst[k] += sum_{|d| <= g} t[d + g] src[(k + d) mod n]: the K taps of one kernel row in one
 * pass (t[d + g] = w for d at -d mirrors, as the reverse pass's scatter needs). */
static inline void row_taps(ptrdiff_t n, int g, const double *t, const double *restrict src,
                            double *restrict dst) {
  if (n <= 2 * g) {
    for (ptrdiff_t k = 0; k < n; k++)
      for (int d = -g; d <= g; d++) dst[k] += t[d + g] * src[((k + d) % n + n) % n];
    return;
  }
  for (ptrdiff_t k = 0; k < g; k++)
    for (int d = -g; d <= g; d++) dst[k] += t[d + g] * src[(k + d + n) % n];
  if (g == 1) {
    const double t0 = t[0], t1 = t[1], t2 = t[2];
    for (ptrdiff_t k = 1; k < n - 1; k++) dst[k] += t0 * src[k - 1] + t1 * src[k] + t2 * src[k + 1];
  } else {
    const double t0 = t[0], t1 = t[1], t2 = t[2], t3 = t[3], t4 = t[4];
    for (ptrdiff_t k = 2; k < n - 2; k++)
      dst[k] += t0 * src[k - 2] + t1 * src[k - 1] + t2 * src[k] + t3 * src[k + 1] + t4 * src[k + 2];
  }
  for (ptrdiff_t k = n - g; k < n; k++)
    for (int d = -g; d <= g; d++) dst[k] += t[d + g] * src[(k + d) % n];
}

/* acc[d + g] += sum_k a[k] src[(k + d) mod n] for every |d| <= g in one pass, four partial
 * sums a tap (vectorised; the order is fixed by the row alone). */
static inline void row_dots(ptrdiff_t n, int g, const double *restrict a,
                            const double *restrict src, double *acc) {
  double s[5][4] = {{0}};
  ptrdiff_t k = 0;
  if (g == 1 && n > 6) { /* the three taps of a 3^3 kernel row in registers */
    for (int d = -1; d <= 1; d++) acc[d + 1] += a[0] * src[(d + n) % n];
    v4 s0 = bc4(0.0), s1 = s0, s2 = s0;
    const ptrdiff_t k4 = 1 + (n - 2) / 4 * 4;
    for (k = 1; k < k4; k += 4) {
      const v4 a4 = ld4(a + k);
      s0 += a4 * ld4(src + k - 1);
      s1 += a4 * ld4(src + k);
      s2 += a4 * ld4(src + k + 1);
    }
    acc[0] += hsum4(s0);
    acc[1] += hsum4(s1);
    acc[2] += hsum4(s2);
  } else if (n > 2 * g + 4) {
    for (; k < g; k++)
      for (int d = -g; d <= g; d++) acc[d + g] += a[k] * src[(k + d + n) % n];
    const ptrdiff_t k4 = g + (n - 2 * g) / 4 * 4;
    for (; k < k4; k += 4)
      for (int d = -g; d <= g; d++)
        for (int l = 0; l < 4; l++) s[d + g][l] += a[k + l] * src[k + l + d];
  }
  for (; k < n; k++)
    for (int d = -g; d <= g; d++) acc[d + g] += a[k] * src[((k + d) % n + n) % n];
  for (int d = -g; d <= g; d++)
    acc[d + g] += (s[d + g][0] + s[d + g][1]) + (s[d + g][2] + s[d + g][3]);
}

/* The class-sum path. */

VMATH_INLINE void row_add2(ptrdiff_t n, const double *a, const double *b, double *restrict d) {
  ptrdiff_t k = 0;
  for (; k + 4 <= n; k += 4) st4(d + k, ld4(a + k) + ld4(b + k));
  for (; k < n; k++) d[k] = a[k] + b[k];
}
VMATH_INLINE void row_add3(ptrdiff_t n, const double *a, const double *b, const double *c,
                           double *restrict d) {
  ptrdiff_t k = 0;
  for (; k + 4 <= n; k += 4) st4(d + k, (ld4(a + k) + ld4(b + k)) + ld4(c + k));
  for (; k < n; k++) d[k] = (a[k] + b[k]) + c[k];
}
/* d[k] += sum_s w[s] a_s[k], s < 2 or 4. */
VMATH_INLINE void row_acc2(ptrdiff_t n, double *restrict d, double w0, const double *a0, double w1,
                           const double *a1) {
  const v4 v0 = bc4(w0), v1 = bc4(w1);
  ptrdiff_t k = 0;
  for (; k + 4 <= n; k += 4) st4(d + k, ld4(d + k) + (v0 * ld4(a0 + k) + v1 * ld4(a1 + k)));
  for (; k < n; k++) d[k] += w0 * a0[k] + w1 * a1[k];
}
VMATH_INLINE void row_acc4(ptrdiff_t n, double *restrict d, const double *w, const double *a0,
                           const double *a1, const double *a2, const double *a3) {
  const v4 v0 = bc4(w[0]), v1 = bc4(w[1]), v2 = bc4(w[2]), v3 = bc4(w[3]);
  ptrdiff_t k = 0;
  for (; k + 4 <= n; k += 4)
    st4(d + k, ld4(d + k) +
                   ((v0 * ld4(a0 + k) + v1 * ld4(a1 + k)) + (v2 * ld4(a2 + k) + v3 * ld4(a3 + k))));
  for (; k < n; k++) d[k] += (w[0] * a0[k] + w[1] * a1[k]) + (w[2] * a2[k] + w[3] * a3[k]);
}
/* acc[s] += sum_k f[k] a_s[k] for s < m (m = 2 or 4), four partial sums a class. */
VMATH_INLINE void row_dot(ptrdiff_t n, int m, const double *f, const double *const *a,
                          double *acc) {
  v4 s0 = bc4(0.0), s1 = s0, s2 = s0, s3 = s0;
  ptrdiff_t k = 0;
  if (m == 4) {
    for (; k + 4 <= n; k += 4) {
      const v4 f4 = ld4(f + k);
      s0 += f4 * ld4(a[0] + k);
      s1 += f4 * ld4(a[1] + k);
      s2 += f4 * ld4(a[2] + k);
      s3 += f4 * ld4(a[3] + k);
    }
  } else {
    for (; k + 4 <= n; k += 4) {
      const v4 f4 = ld4(f + k);
      s0 += f4 * ld4(a[0] + k);
      s1 += f4 * ld4(a[1] + k);
    }
  }
  double t[4] = {hsum4(s0), hsum4(s1), hsum4(s2), hsum4(s3)};
  for (; k < n; k++)
    for (int s = 0; s < m; s++) t[s] += f[k] * a[s][k];
  for (int s = 0; s < m; s++) acc[s] += t[s];
}

/* One plane's sums for the ring: U1 = (S_j + S_k) f, U2 = S_j S_k f and, with l = 1,
 * R = B_j f = f + S_j f and Q = B_k f = f + S_k f (S_a f: the two neighbours along a, periodic;
 * B_a = 1 + S_a). tpl and pad are scratch. */
VMATH_INLINE void sep_plane(ptrdiff_t n, bool l1, const double *f, double *restrict tpl,
                            double *restrict pad, double *const *u) {
  for (ptrdiff_t j = 0; j < n; j++) {
    const double *fr = f + j * n;
    pad[0] = fr[n - 1];
    memcpy(pad + 1, fr, (size_t)n * sizeof *pad);
    pad[n + 1] = fr[0];
    row_add2(n, pad, pad + 2, tpl + j * n);
  }
  for (ptrdiff_t j = 0; j < n; j++) {
    const ptrdiff_t jm = (j + n - 1) % n, jp = (j + 1) % n, o = j * n;
    const double *fm = f + jm * n, *fp = f + jp * n, *f0 = f + o;
    const double *t0 = tpl + o, *tm = tpl + jm * n, *tp = tpl + jp * n;
    double *restrict u1 = u[0] + o, *restrict u2 = u[1] + o;
    ptrdiff_t k = 0;
    if (l1) {
      double *restrict r = u[2] + o, *restrict q = u[3] + o;
      for (; k + 4 <= n; k += 4) {
        const v4 sj = ld4(fm + k) + ld4(fp + k), t4 = ld4(t0 + k), f4 = ld4(f0 + k);
        st4(u1 + k, t4 + sj);
        st4(u2 + k, ld4(tm + k) + ld4(tp + k));
        st4(r + k, f4 + sj);
        st4(q + k, f4 + t4);
      }
      for (; k < n; k++) {
        const double sj = fm[k] + fp[k];
        u1[k] = t0[k] + sj;
        u2[k] = tm[k] + tp[k];
        r[k] = f0[k] + sj;
        q[k] = f0[k] + t0[k];
      }
    } else {
      for (; k + 4 <= n; k += 4) {
        st4(u1 + k, ld4(t0 + k) + (ld4(fm + k) + ld4(fp + k)));
        st4(u2 + k, ld4(tm + k) + ld4(tp + k));
      }
      for (; k < n; k++) {
        u1[k] = t0[k] + (fm[k] + fp[k]);
        u2[k] = tm[k] + tp[k];
      }
    }
  }
}

/* The class sums of row j of the middle plane from the ring slots of planes p - 1, p, p + 1,
 * into the row scratch r (stride n + 2): l = 0 the faces, edges and corners
 * V1 = S_i f + U1, V2 = U2 + S_i U1, V3 = S_i U2 (the centre is f itself); l = 1 the sums
 * over the plane d_a = -1 and d_a = +1 of each axis a: cls[a][0], cls[a][1]. */
VMATH_INLINE void sep_rows(ptrdiff_t n, ptrdiff_t j, bool l1, const slot *sm, const slot *s0,
                           const slot *sp, double *r, const double *cls[3][2]) {
  const ptrdiff_t o = j * n, w = n + 2;
  double *v1 = r, *v2 = r + w, *v3 = r + 2 * w;
  ptrdiff_t k = 0;
  for (; k + 4 <= n; k += 4) {
    const ptrdiff_t x = o + k;
    st4(v1 + k, ld4(s0->a[0] + x) + (ld4(sm->f + x) + ld4(sp->f + x)));
    st4(v2 + k, ld4(s0->a[1] + x) + (ld4(sm->a[0] + x) + ld4(sp->a[0] + x)));
    st4(v3 + k, ld4(sm->a[1] + x) + ld4(sp->a[1] + x));
  }
  for (; k < n; k++) {
    const ptrdiff_t x = o + k;
    v1[k] = s0->a[0][x] + (sm->f[x] + sp->f[x]);
    v2[k] = s0->a[1][x] + (sm->a[0][x] + sp->a[0][x]);
    v3[k] = sm->a[1][x] + sp->a[1][x];
  }
  if (!l1) return;
  double *wp = r + 3 * w, *ym = r + 4 * w, *yp = r + 5 * w, *zm = r + 6 * w, *zp = r + 7 * w;
  const ptrdiff_t om = (j + n - 1) % n * n, op = (j + 1) % n * n;
  row_add3(n, sm->a[2] + o, s0->a[2] + o, sp->a[2] + o, wp + 1); /* B_i B_j f */
  wp[0] = wp[n];
  wp[n + 1] = wp[1];
  row_add3(n, sm->a[3] + om, s0->a[3] + om, sp->a[3] + om, ym); /* B_i B_k f, row j - 1 */
  row_add3(n, sm->a[3] + op, s0->a[3] + op, sp->a[3] + op, yp);
  row_add3(n, sm->f + o, sm->a[0] + o, sm->a[1] + o, zm); /* B_j B_k f, plane p - 1 */
  row_add3(n, sp->f + o, sp->a[0] + o, sp->a[1] + o, zp);
  cls[0][0] = zm;
  cls[0][1] = zp;
  cls[1][0] = ym;
  cls[1][1] = yp;
  cls[2][0] = wp;
  cls[2][1] = wp + 2;
}

static inline int mod3(ptrdiff_t b) {
  return (int)(((b % 3) + 3) % 3);
}

/* Ring slot of channel ch for plane b: its sums are computed from the plane f, or all zero
 * when f is NULL (planes outside the range a reverse call covers). */
VMATH_INLINE slot *sep_fill(conv *cv, slot *slots, int ch, ptrdiff_t b, const double *f) {
  const ptrdiff_t n = cv->ws_n;
  const size_t nn = (size_t)n * (size_t)n;
  slot *s = &slots[ch * 3 + mod3(b)];
  if (!f) {
    s->f = cv->zero;
    for (int a = 0; a < 4; a++) s->a[a] = cv->zero;
    return s;
  }
  double *u[4] = {NULL, NULL, NULL, NULL};
  for (int a = 0; a < cv->na; a++) u[a] = cv->ws + (((size_t)ch * 3 + mod3(b)) * cv->na + a) * nn;
  sep_plane(n, cv->lmax >= 1, f, cv->tpl, cv->rows + 8 * (n + 2), u);
  s->f = f;
  for (int a = 0; a < 4; a++) s->a[a] = u[a];
  return s;
}

VMATH_INLINE void sep_forward(conv *cv, ptrdiff_t n, const double *in, double *out, ptrdiff_t p0,
                              ptrdiff_t p1) {
  const int C = cv->c_in, Q = cv->c_out;
  const bool l1 = cv->lmax >= 1;
  const size_t nn = (size_t)n * (size_t)n;
  slot *slots = cv->slots;
  for (ptrdiff_t b = p0 - 1; b < p0 + 1; b++)
    for (int c = 0; c < C; c++) sep_fill(cv, slots, c, b, in + ((size_t)(b + 1) * C + c) * nn);
  for (ptrdiff_t p = p0; p < p1; p++) {
    for (int c = 0; c < C; c++) sep_fill(cv, slots, c, p + 1, in + ((size_t)(p + 2) * C + c) * nn);
    for (ptrdiff_t j = 0; j < n; j++) {
      for (int q = 0; q < Q; q++) {
        double *dst = out + ((size_t)p * Q + q) * nn + j * n;
        for (ptrdiff_t k = 0; k < n; k++) dst[k] = cv->bias[q];
      }
      for (int c = 0; c < C; c++) {
        const slot *sm = &slots[c * 3 + mod3(p - 1)], *s0 = &slots[c * 3 + mod3(p)],
                   *sp = &slots[c * 3 + mod3(p + 1)];
        const double *cls[3][2];
        sep_rows(n, j, l1, sm, s0, sp, cv->rows, cls);
        const double *f0 = s0->f + j * n, *r = cv->rows;
        for (int q = 0; q < Q; q++) {
          const int t = q % cv->n_lm;
          const double *w = cv->wsep + ((size_t)q * C + c) * 4;
          double *dst = out + ((size_t)p * Q + q) * nn + j * n;
          if (t == 0)
            row_acc4(n, dst, w, f0, r, r + (n + 2), r + 2 * (n + 2));
          else
            row_acc2(n, dst, w[0], cls[cv->axis[t]][0], w[1], cls[cv->axis[t]][1]);
        }
      }
    }
  }
}

/* The reverse pass as the class sums of the output gradient g (zero outside [p0, p1)) on the
 * input planes p0 - 1 .. p1: the l = 0 classes are symmetric (the adjoint of S_a is S_a),
 * the l = 1 planes swap (the adjoint of the sum over d_a = -1 is the sum over d_a = +1). So
 * din_c += sum_class w_class M_class(g) and, by the same adjoint, d/dw_class =
 * sum_x g(x) class(in)(x) = sum_y in(y) M_class(g)(y) (y over the ghost planes too). */
VMATH_INLINE void sep_backward(conv *cv, ptrdiff_t n, const double *in, const double *dout,
                               double *grad_w, double *din, ptrdiff_t p0, ptrdiff_t p1) {
  const int C = cv->c_in, Q = cv->c_out;
  const bool l1 = cv->lmax >= 1;
  const size_t nn = (size_t)n * (size_t)n;
  slot *slots = cv->slots;
#define GPLANE(b) ((b) >= p0 && (b) < p1 ? dout + ((size_t)(b)*Q + q) * nn : NULL)
  for (ptrdiff_t b = p0 - 2; b < p0; b++)
    for (int q = 0; q < Q; q++) sep_fill(cv, slots, q, b, GPLANE(b));
  if (grad_w) memset(cv->gacc, 0, (size_t)Q * C * 4 * sizeof *cv->gacc);
  for (ptrdiff_t y = p0 - 1; y <= p1; y++) {
    for (int q = 0; q < Q; q++) sep_fill(cv, slots, q, y + 1, GPLANE(y + 1));
    for (ptrdiff_t j = 0; j < n; j++)
      for (int q = 0; q < Q; q++) {
        const int t = q % cv->n_lm;
        const slot *sm = &slots[q * 3 + mod3(y - 1)], *s0 = &slots[q * 3 + mod3(y)],
                   *sp = &slots[q * 3 + mod3(y + 1)];
        const double *cls[3][2];
        sep_rows(n, j, l1, sm, s0, sp, cv->rows, cls);
        const double *r = cv->rows, *g0 = s0->f + j * n;
        if (grad_w && y >= p0 && y < p1) {
          double bs = 0;
          for (ptrdiff_t k = 0; k < n; k++) bs += g0[k];
          grad_w[cv->n_kern + q] += bs;
        }
        const double *m[4];
        if (t == 0) {
          m[0] = g0;
          m[1] = r;
          m[2] = r + (n + 2);
          m[3] = r + 2 * (n + 2);
        } else {
          m[0] = cls[cv->axis[t]][1];
          m[1] = cls[cv->axis[t]][0];
        }
        for (int c = 0; c < C; c++) {
          const size_t off = ((size_t)(y + 1) * C + c) * nn + j * n;
          const double *w = cv->wsep + ((size_t)q * C + c) * 4;
          if (din) {
            if (t == 0)
              row_acc4(n, din + off, w, m[0], m[1], m[2], m[3]);
            else
              row_acc2(n, din + off, w[0], m[0], w[1], m[1]);
          }
          if (grad_w) row_dot(n, t == 0 ? 4 : 2, in + off, m, cv->gacc + ((size_t)q * C + c) * 4);
        }
      }
  }
#undef GPLANE
  if (!grad_w) return;
  for (int q = 0; q < Q; q++) {
    const int t = q % cv->n_lm, ns = t == 0 ? 4 : 2;
    for (int c = 0; c < C; c++)
      for (int s = 0; s < ns; s++)
        grad_w[cv->woff[(size_t)q * C + c] + cv->sgrp[t][s]] +=
            cv->gacc[((size_t)q * C + c) * 4 + s];
  }
}

CONV_CLONES void conv_forward(conv *cv, ptrdiff_t n, const double *in, double *out, ptrdiff_t p0,
                              ptrdiff_t p1) {
  if (conv_class_sums(cv, n)) {
    if (p1 > p0) sep_forward(cv, n, in, out, p0, p1);
    return;
  }
  const int g = cv->g, K = cv->K, C = cv->c_in;
  const ptrdiff_t nn = n * n;
  for (ptrdiff_t p = p0; p < p1; p++)
    for (int q = 0; q < cv->c_out; q++) {
      double *osheet = out + ((size_t)p * cv->c_out + q) * nn;
      for (ptrdiff_t j = 0; j < n; j++) {
        double *dst = osheet + j * n;
        for (ptrdiff_t k = 0; k < n; k++) dst[k] = cv->bias[q];
        for (int c = 0; c < C; c++) {
          const double *kq = cv->kern + ((size_t)q * C + c) * cv->K3;
          for (int di = -g; di <= g; di++) {
            const double *isheet = in + ((size_t)(p + g + di) * C + c) * nn;
            for (int dj = -g; dj <= g; dj++) {
              const double *kr = kq + ((di + g) * K + (dj + g)) * K;
              bool any = false;
              for (int d = 0; d < K; d++) any |= kr[d] != 0.0;
              if (any) row_taps(n, g, kr, isheet + ((j + dj + n) % n) * n, dst);
            }
          }
        }
      }
    }
}

CONV_CLONES void conv_backward(conv *cv, ptrdiff_t n, const double *in, const double *dout,
                               double *grad_w, double *din, ptrdiff_t p0, ptrdiff_t p1) {
  if (conv_class_sums(cv, n)) {
    if (p1 > p0) sep_backward(cv, n, in, dout, grad_w, din, p0, p1);
    return;
  }
  const int g = cv->g, K = cv->K, C = cv->c_in;
  const ptrdiff_t nn = n * n;
  memset(cv->gkern, 0, (size_t)cv->c_out * C * cv->K3 * sizeof *cv->gkern);
  for (ptrdiff_t p = p0; p < p1; p++)
    for (int q = 0; q < cv->c_out; q++) {
      const double *dsheet = dout + ((size_t)p * cv->c_out + q) * nn;
      double bsum = 0;
      for (ptrdiff_t j = 0; j < n; j++) {
        const double *a = dsheet + j * n;
        for (ptrdiff_t k = 0; k < n; k++) bsum += a[k];
        for (int c = 0; c < C; c++) {
          const double *kq = cv->kern + ((size_t)q * C + c) * cv->K3;
          double *gq = cv->gkern + ((size_t)q * C + c) * cv->K3;
          for (int di = -g; di <= g; di++) {
            size_t soff = ((size_t)(p + g + di) * C + c) * nn;
            for (int dj = -g; dj <= g; dj++) {
              ptrdiff_t jj = (j + dj + n) % n;
              int base = ((di + g) * K + (dj + g)) * K;
              if (grad_w) row_dots(n, g, a, in + soff + jj * n, gq + base);
              if (!din) continue;
              double t[5];
              bool any = false;
              for (int d = 0; d < K; d++) any |= (t[d] = kq[base + K - 1 - d]) != 0.0;
              if (any) row_taps(n, g, t, a, din + soff + jj * n);
            }
          }
        }
      }
      if (grad_w) grad_w[cv->n_kern + q] += bsum;
    }
  if (!grad_w) return;
  for (int q = 0; q < cv->c_out; q++) {
    const int *gr = cv->group + (size_t)(q % cv->n_lm) * cv->K3;
    for (int c = 0; c < C; c++) {
      double *wq = grad_w + cv->woff[(size_t)q * C + c];
      const double *gq = cv->gkern + ((size_t)q * C + c) * cv->K3;
      for (int a = 0; a < cv->K3; a++)
        if (gr[a] >= 0) wq[gr[a]] += gq[a];
    }
  }
}
