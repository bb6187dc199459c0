/* vmath: exp, log, erfc and softplus over arrays (MODEL.md sections 3-4 use them), four at a
 * time with glibc's libmvec where the CPU has AVX2, through libm otherwise; see vmath.h.
 * The vector loop takes the first n - n % 4 values, libm the rest, so which path a value
 * takes depends on its position in the array only. The softplus uses one exp and one log
 * per value, as the scalar helpers of the head do. */
#include "cerberus/vmath.h"

static int use_vec = -1; /* -1: not yet decided */

static bool cpu_vec(void) {
#ifdef CERBERUS_HAVE_MVEC
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

bool vmath_vector(void) {
  if (use_vec < 0) use_vec = cpu_vec() ? 1 : 0;
  return use_vec == 1;
}

bool vmath_set_vector(bool on) {
  bool was = vmath_vector();
  use_vec = on && cpu_vec() ? 1 : 0;
  return was;
}

#ifdef CERBERUS_HAVE_MVEC
VMATH_AVX2 static void map_avx2(int f, ptrdiff_t n4, const double *x, double *y) {
  for (ptrdiff_t i = 0; i < n4; i += 4) {
    __m256d a = _mm256_loadu_pd(x + i);
    __m256d r = f == 0 ? _ZGVdN4v_exp(a) : f == 1 ? _ZGVdN4v_log(a) : _ZGVdN4v_erfc(a);
    _mm256_storeu_pd(y + i, r);
  }
}
#endif

static void map(int f, ptrdiff_t n, const double *x, double *y) {
  ptrdiff_t done = 0;
#ifdef CERBERUS_HAVE_MVEC
  if (vmath_vector()) {
    done = n - n % 4;
    map_avx2(f, done, x, y);
  }
#endif
  for (ptrdiff_t i = done; i < n; i++) y[i] = f == 0 ? exp(x[i]) : f == 1 ? log(x[i]) : erfc(x[i]);
}

void vmath_exp(ptrdiff_t n, const double *x, double *y) {
  map(0, n, x, y);
}
void vmath_log(ptrdiff_t n, const double *x, double *y) {
  map(1, n, x, y);
}
void vmath_erfc(ptrdiff_t n, const double *x, double *y) {
  map(2, n, x, y);
}

/* Four at a time in vector types (one body, compiled plainly and for AVX2), the rest one by one. */
VMATH_INLINE void softplus_body(ptrdiff_t n4, const double *z, double *sp, double *sig,
                                lane_fn vexp, lane_fn vlog) {
  for (ptrdiff_t k = 0; k < n4; k += 4) {
    v4 s;
    const v4 y = softplus4(ld4(z + k), &s, vexp, vlog);
    st4(sp + k, y);
    if (sig) st4(sig + k, s);
  }
}
static void softplus_c(ptrdiff_t n4, const double *z, double *sp, double *sig) {
  softplus_body(n4, z, sp, sig, vmath4_exp_c, vmath4_log_c);
}
#ifdef CERBERUS_HAVE_MVEC
VMATH_AVX2 static void softplus_avx2(ptrdiff_t n4, const double *z, double *sp, double *sig) {
  softplus_body(n4, z, sp, sig, vmath4_exp_avx2, vmath4_log_avx2);
}
#endif

void vmath_softplus(ptrdiff_t n, const double *z, double *sp, double *sig) {
  const ptrdiff_t n4 = n - n % 4;
#ifdef CERBERUS_HAVE_MVEC
  if (vmath_vector())
    softplus_avx2(n4, z, sp, sig);
  else
#endif
    softplus_c(n4, z, sp, sig);
  for (ptrdiff_t k = n4; k < n; k++) {
    const double zk = z[k], t = exp(-fabs(zk));
    sp[k] = vmath_softplus_t(zk, t, log(1.0 + t), sig ? &sig[k] : NULL);
  }
}
