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
 * Evaluation. The tied weights are expanded once per call of conv_set_weights into full
 * K^3 kernels per (q, c). The forward pass loops plane, output channel, row j, then over
 * input channels and (di, dj): the destination row stays in L1 while the K taps of the
 * kernel row are added to it in one pass over a source row (row_taps); periodic wrap in k
 * is the first and last g voxels done apart, wrap in j an index. The reverse pass uses the
 * same loops: the K dot products d kernel = sum dout * shifted in of a kernel row in one
 * vectorised pass (row_dots; folded into the tied weights at the end), and din += kernel *
 * dout as the mirrored taps, one pass a kernel row, into the shifted rows, which may be
 * ghost planes (the caller sends those back to their owners). The tied weights are not
 * summed over their tie classes first: for one channel that saves no arithmetic over the
 * fused K-tap passes (27 adds and 4 multiplies against 27 multiply-adds a voxel) and costs
 * extra sweeps. Nothing here knows about MPI. */
#include "cerberus/conv.h"

#include "cerberus/status.h"
#include "cerberus/vmath.h"

#include <gsl/gsl_sf_legendre.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct conv {
  int K, g, K3, lmax, n_lm, c_in, channels, c_out;
  int *group;    /* [n_lm][K3]: group index or -1 */
  int *n_groups; /* [n_lm] */
  size_t *woff;  /* [c_out * c_in]: offset of kernel (q, c) in the weight vector */
  size_t n_kern; /* kernel weights (biases follow) */
  double *kern;  /* [c_out][c_in][K3] expanded */
  double *bias;  /* [c_out] */
  double *gkern; /* workspace: expanded kernel gradient */
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

CONV_CLONES void conv_forward(const conv *cv, ptrdiff_t n, const double *in, double *out,
                              ptrdiff_t p0, ptrdiff_t p1) {
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
