/* vmath: exp, log, erfc and softplus over arrays, four values at a time through glibc's
 * libmvec (its AVX2 variants _ZGVdN4v_*, a few ulp) when the build found it and the CPU
 * has AVX2, one at a time through libm otherwise (engine layer; used by the engine and the
 * MDN head, MODEL.md sections 3-4). Both paths compute the same formulas; they differ only in
 * the last few ulp of the transcendental functions. Not collective.
 *
 * The 4-lane helpers below (vmath4_*) are for kernels that a module compiles twice, once with
 * __attribute__((target("avx2"))) calling the *_avx2 variants and once plainly calling the
 * *_c ones (see mdn.c). */
#ifndef CERBERUS_VMATH_H
#define CERBERUS_VMATH_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* y[i] = exp(x[i]), log(x[i]), erfc(x[i]) for i < n (y may be x). */
void vmath_exp(ptrdiff_t n, const double *x, double *y);
void vmath_log(ptrdiff_t n, const double *x, double *y);
void vmath_erfc(ptrdiff_t n, const double *x, double *y);
/* sp[i] = softplus(z[i]) = ln(1 + e^z) without overflow or loss of precision (one exp and
 * one log: log1p(t) = log(1 + t) t / ((1 + t) - 1), Goldberg's correction), and, if sig is
 * not NULL, sig[i] = sigmoid(z[i]) from the same exp. sp may be z. */
void vmath_softplus(ptrdiff_t n, const double *z, double *sp, double *sig);

/* Whether the four-lane path is in use (libmvec found at build time, AVX2 at run time, not
 * switched off). */
bool vmath_vector(void);
/* Switch the four-lane path off (on = false) or back on where available; returns the previous
 * state. For tests and benchmarks comparing the two paths; not thread-safe. */
bool vmath_set_vector(bool on);

/* softplus and sigmoid of one value given t = exp(-|z|) (shared by every path). */
static inline double vmath_softplus_t(double z, double t, double lg, double *sig) {
  double u = 1.0 + t, r = 1.0 / u;
  if (sig) *sig = z >= 0 ? r : t * r;
  return (z > 0 ? z : 0.0) + (u == 1.0 ? t : lg * t / (u - 1.0));
}

/* Four values: y[0..3] = f(x[0..3]). */
static inline __attribute__((always_inline)) void vmath4_exp_c(const double *x, double *y) {
  for (int i = 0; i < 4; i++) y[i] = exp(x[i]);
}
static inline __attribute__((always_inline)) void vmath4_log_c(const double *x, double *y) {
  for (int i = 0; i < 4; i++) y[i] = log(x[i]);
}
static inline __attribute__((always_inline)) void vmath4_erfc_c(const double *x, double *y) {
  for (int i = 0; i < 4; i++) y[i] = erfc(x[i]);
}

#ifdef CERBERUS_HAVE_MVEC
#include <immintrin.h>
__attribute__((target("avx2"))) __m256d _ZGVdN4v_exp(__m256d);
__attribute__((target("avx2"))) __m256d _ZGVdN4v_log(__m256d);
__attribute__((target("avx2"))) __m256d _ZGVdN4v_erfc(__m256d);
#define VMATH_AVX2 __attribute__((target("avx2")))
static inline __attribute__((always_inline)) VMATH_AVX2 void vmath4_exp_avx2(const double *x,
                                                                             double *y) {
  _mm256_storeu_pd(y, _ZGVdN4v_exp(_mm256_loadu_pd(x)));
}
static inline __attribute__((always_inline)) VMATH_AVX2 void vmath4_log_avx2(const double *x,
                                                                             double *y) {
  _mm256_storeu_pd(y, _ZGVdN4v_log(_mm256_loadu_pd(x)));
}
static inline __attribute__((always_inline)) VMATH_AVX2 void vmath4_erfc_avx2(const double *x,
                                                                              double *y) {
  _mm256_storeu_pd(y, _ZGVdN4v_erfc(_mm256_loadu_pd(x)));
}
#endif

/* Four doubles in GCC's vector types, for kernels compiled twice (the v4 values only pass
 * between the always-inline helpers below, so the ABI note GCC gives for 32-byte vectors in a
 * function compiled without AVX does not apply: it is switched off for the including file). */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef double v4 __attribute__((vector_size(32)));
typedef long long m4 __attribute__((vector_size(32)));
typedef void (*lane_fn)(const double *, double *);
#define VMATH_INLINE static inline __attribute__((always_inline))

VMATH_INLINE v4 ld4(const double *p) {
  v4 v;
  memcpy(&v, p, sizeof v);
  return v;
}
VMATH_INLINE void st4(double *p, v4 v) {
  memcpy(p, &v, sizeof v);
}
VMATH_INLINE v4 bc4(double x) {
  return (v4){x, x, x, x};
}
VMATH_INLINE v4 sel4(m4 m, v4 a, v4 b) {
  return (v4)(((m4)a & m) | ((m4)b & ~m));
}
VMATH_INLINE v4 and4(m4 m, v4 a) {
  return (v4)((m4)a & m);
}
VMATH_INLINE v4 lane(lane_fn f, v4 x) {
  double a[4], b[4];
  memcpy(a, &x, sizeof a);
  f(a, b);
  v4 y;
  memcpy(&y, b, sizeof y);
  return y;
}
VMATH_INLINE double hsum4(v4 a) {
  return (a[0] + a[1]) + (a[2] + a[3]);
}

/* softplus(z) and sigmoid(z) from t = e^-|z| and ln(1 + t) (vmath_softplus_t's formula). */
VMATH_INLINE v4 softplus4(v4 z, v4 *sig, lane_fn vexp, lane_fn vlog) {
  const v4 zero = bc4(0.0), one = bc4(1.0);
  v4 t = lane(vexp, (v4)((m4)z | (m4)bc4(-0.0))); /* -|z| */
  v4 u = one + t, lg = lane(vlog, u);
  const v4 r = one / u;
  *sig = sel4(z >= zero, r, t * r);
  return sel4(z > zero, z, zero) + sel4(u == one, t, lg * t / (u - one));
}

#endif
