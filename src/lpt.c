/* lpt: Zel'dovich and second-order Lagrangian displacements, and their exact adjoint.
 *
 * MODEL.md section 2. Input: the linear density delta_L on the slabs (or its half-complex
 * transform). Output: one particle per voxel, x = q + Psi, wrapped into [0, L), three doubles
 * per particle in the local voxel order. Everything happens in Fourier space with the field's
 * plans:
 *
 *   Psi1(k) = i k / k^2 delta_L(k)                     (3 c2r)
 *   phi_ij(k) = k_i k_j / k^2 delta_L(k)               (6 c2r, order 2 only)
 *   S(x) = sum_{i<j} phi_ii phi_jj - phi_ij^2          (1 r2c)
 *   Psi(k) = i k / k^2 (delta_L(k) + 3/7 S(k))         (3 c2r: Psi1 + Psi2 at once)
 *
 * since Psi2 = D2 grad phi2, lap phi2 = S, D2 = -3/7 (D1 = 1), i.e. div Psi2 = -3/7 S. With
 * this sign the second-order Eulerian density at the centre of a spherical perturbation is
 * delta1 + 17/21 delta1^2, the textbook result; tests/test_lpt.c checks Psi2 against the
 * closed form for two crossed plane waves. Odd factors (i k_a in Psi, k_a k_b with a != b in
 * phi_ab) are zeroed on the Nyquist plane of axis a so that every multiplier is Hermitian and
 * the c2r transforms are exact; even factors k_a^2 keep their Nyquist value, so that
 * phi_xx + phi_yy + phi_zz = delta_L exactly.
 *
 * The adjoint is the exact transpose of these discrete operations: a real-odd multiplier
 * M(k) transposes to conj(M) = -M, a real-even one to itself, so dF/d delta_L =
 * c2r(-sum_d M_d r2c(g_d)) plus, at order 2, the chain through the products of S (g_z in real
 * space, six r2c, one combination). Costs: order 1, 3 FFTs forward (+1 r2c from real input)
 * and 3 back (+1 c2r); order 2, 10 and 10 (+1 each). */
#include "cerberus/lpt.h"

#include "cerberus/logevent.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LPT_D2 (-3.0 / 7.0)
#define LPT_PI 3.14159265358979323846

struct lpt {
  field *f;
  int order;
  double *kpow[3];       /* n values each: 1, k (zero on the Nyquist index), k^2 for axes x, y */
  double *kzpow[3];      /* nc values each: the same for the half-complex axis z */
  fftw_complex *dk, *ck; /* n_complex_local each */
  double *inv_k2;        /* n_complex_local: 1 / |k|^2, 0 at k = 0 */
  double *tmp, *gz;      /* real workspaces */
  double *phi[6];        /* order 2: phi_xx, phi_yy, phi_zz, phi_xy, phi_xz, phi_yz */
};

static const int pair_a[6] = {0, 1, 2, 0, 0, 1};
static const int pair_b[6] = {0, 1, 2, 1, 2, 2};

int lpt_create(field *f, int order, lpt **out) {
  *out = NULL;
  CB_CHECK(order == 1 || order == 2, CB_ERR_INPUT, "-lpt_order must be 1 or 2 (got %d)", order);
  lpt *p;
  CB_CALLOC(p, 1);
  p->f = f;
  p->order = order;
  const ptrdiff_t n = f->n, nc = f->nc;
  for (int w = 0; w < 3; w++) {
    p->kpow[w] = calloc((size_t)n, sizeof(double));
    p->kzpow[w] = calloc((size_t)nc, sizeof(double));
  }
  p->dk = field_alloc_complex(f);
  p->ck = field_alloc_complex(f);
  p->tmp = field_alloc_real(f);
  p->inv_k2 = malloc((size_t)(f->n_complex_local > 0 ? f->n_complex_local : 1) * sizeof(double));
  int ok = p->dk && p->ck && p->tmp && p->inv_k2;
  for (int w = 0; w < 3; w++) ok = ok && p->kpow[w] && p->kzpow[w];
  if (order == 2) {
    p->gz = field_alloc_real(f);
    ok = ok && p->gz;
    for (int i = 0; i < 6; i++) {
      p->phi[i] = field_alloc_real(f);
      ok = ok && p->phi[i];
    }
  }
  if (!ok) {
    lpt_destroy(&p);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the LPT workspaces of a %td^3 grid", n);
  }
  for (ptrdiff_t a = 0; a < n; a++) {
    const double k = field_k_of(f, a);
    p->kpow[0][a] = 1.0;
    p->kpow[1][a] = (field_freq(f, a) == -n / 2) ? 0.0 : k;
    p->kpow[2][a] = k * k;
  }
  for (ptrdiff_t c = 0; c < nc; c++) {
    const double k = 2.0 * LPT_PI / f->L * (double)c;
    p->kzpow[0][c] = 1.0;
    p->kzpow[1][c] = (2 * c == n) ? 0.0 : k;
    p->kzpow[2][c] = k * k;
  }
  for (ptrdiff_t il = 0, m = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t c = 0; c < nc; c++, m++) {
        const double k2 = p->kpow[2][f->local_0_start + il] + p->kpow[2][j] + p->kzpow[2][c];
        p->inv_k2[m] = k2 > 0 ? 1.0 / k2 : 0.0;
      }
  *out = p;
  return CB_OK;
}

void lpt_destroy(lpt **pp) {
  if (!pp || !*pp) return;
  lpt *p = *pp;
  for (int w = 0; w < 3; w++) {
    free(p->kpow[w]);
    free(p->kzpow[w]);
  }
  free(p->inv_k2);
  fftw_free(p->dk);
  fftw_free(p->ck);
  fftw_free(p->tmp);
  fftw_free(p->gz);
  for (int i = 0; i < 6; i++) fftw_free(p->phi[i]);
  free(p);
  *pp = NULL;
}

int lpt_order(const lpt *p) {
  return p->order;
}

double lpt_q(const field *f, ptrdiff_t p, int d) {
  const ptrdiff_t n = f->n;
  ptrdiff_t idx;
  if (d == 0)
    idx = f->local_0_start + p / (n * n);
  else if (d == 1)
    idx = (p / n) % n;
  else
    idx = p % n;
  return ((double)idx + 0.5) * f->L / (double)n;
}

static inline double wrap(double x, double L) {
  if (x < 0) /* the usual cases first: a displacement of less than a box */
    x += L;
  else if (x >= L)
    x -= L;
  if (x >= 0 && x < L) return x;
  double y = x - L * floor(x / L); /* far away (or NaN, which stays NaN for cic to report) */
  return (y >= L || y < 0) ? 0.0 : y;
}

/* out (+)= M(k) in for a separable multiplier M = s fx(k_x) fy(k_y) fz(k_z) / k^2, times i
 * when imag. pw[axis] picks each factor: 0 -> 1, 1 -> k (Nyquist zeroed), 2 -> k^2. */
static void apply_mult(const lpt *p, const int pw[3], double s, int imag, const fftw_complex *in,
                       fftw_complex *out, int acc) {
  const field *f = p->f;
  const ptrdiff_t n = f->n, nc = f->nc;
  const double *zf = p->kzpow[pw[2]];
  for (ptrdiff_t il = 0; il < f->local_n0; il++) {
    const double fx = s * p->kpow[pw[0]][f->local_0_start + il];
    for (ptrdiff_t j = 0; j < n; j++) {
      const double fxy = fx * p->kpow[pw[1]][j];
      const ptrdiff_t row = (il * n + j) * nc;
      const double *ik = p->inv_k2 + row;
      const fftw_complex *zi = in + row;
      fftw_complex *zo = out + row;
      for (ptrdiff_t c = 0; c < nc; c++) {
        const double a = fxy * zf[c] * ik[c];
        const fftw_complex v = imag ? CMPLX(-a * cimag(zi[c]), a * creal(zi[c])) : a * zi[c];
        zo[c] = acc ? zo[c] + v : v;
      }
    }
  }
}

/* out (+)= M_d in, M_d = i kn_d / k^2 (sign +1) or its conjugate, the transpose (sign -1). */
static void apply_grad(const lpt *p, int d, double sign, const fftw_complex *in, fftw_complex *out,
                       int acc) {
  int pw[3] = {0, 0, 0};
  pw[d] = 1;
  apply_mult(p, pw, sign, 1, in, out, acc);
}

/* out (+)= s m_ab in, m_ab = k_a k_b / k^2 (Nyquist-zeroed when a != b). */
static void apply_hess(const lpt *p, int pair, double s, const fftw_complex *in, fftw_complex *out,
                       int acc) {
  int pw[3] = {0, 0, 0};
  const int a = pair_a[pair], b = pair_b[pair];
  if (a == b)
    pw[a] = 2;
  else
    pw[a] = pw[b] = 1;
  apply_mult(p, pw, s, 0, in, out, acc);
}

/* z_k: the potential source (delta_L, or delta_L + 3/7 S); writes positions. */
static int positions_from(lpt *p, const fftw_complex *z_k, double *pos) {
  field *f = p->f;
  const ptrdiff_t n = f->n;
  const double h = f->L / (double)n, L = f->L;
  for (int d = 0; d < 3; d++) {
    apply_grad(p, d, 1.0, z_k, p->ck, 0);
    CB_CALL(field_c2r(f, p->ck, p->tmp));
    ptrdiff_t q = 0;
    for (ptrdiff_t il = 0; il < f->local_n0; il++)
      for (ptrdiff_t j = 0; j < n; j++) {
        const double qx = ((double)(d == 0 ? f->local_0_start + il : j) + 0.5) * h;
        double *out = pos + 3 * q + d;
        const double *psi = p->tmp + q;
        if (d < 2)
          for (ptrdiff_t k = 0; k < n; k++) out[3 * k] = wrap(qx + psi[k], L);
        else
          for (ptrdiff_t k = 0; k < n; k++) out[3 * k] = wrap(((double)k + 0.5) * h + psi[k], L);
        q += n;
      }
  }
  return CB_OK;
}

static int forward_k(lpt *p, const fftw_complex *delta_k, double *pos) {
  field *f = p->f;
  if (p->order == 1) return positions_from(p, delta_k, pos);
  for (int pr = 0; pr < 6; pr++) {
    apply_hess(p, pr, 1.0, delta_k, p->ck, 0);
    CB_CALL(field_c2r(f, p->ck, p->phi[pr]));
  }
  double *const *ph = p->phi;
  for (ptrdiff_t q = 0; q < f->n_real_local; q++)
    p->tmp[q] = ph[0][q] * ph[1][q] + ph[0][q] * ph[2][q] + ph[1][q] * ph[2][q] -
                ph[3][q] * ph[3][q] - ph[4][q] * ph[4][q] - ph[5][q] * ph[5][q];
  CB_CALL(field_r2c(f, p->tmp, p->ck));
  /* z = delta_L - D2 S: Psi = i k/k^2 z gives Psi1 + D2 grad phi2 (grad phi2 = -i k/k^2 S) */
  for (ptrdiff_t m = 0; m < f->n_complex_local; m++) p->dk[m] = delta_k[m] - LPT_D2 * p->ck[m];
  return positions_from(p, p->dk, pos);
}

int lpt_forward_k(lpt *p, const fftw_complex *delta_k, double *pos) {
  logevent_begin(LOGEVENT_LPT);
  int st = forward_k(p, delta_k, pos);
  logevent_end(LOGEVENT_LPT);
  CB_CALL(st);
  return CB_OK;
}

int lpt_forward(lpt *p, const double *delta_L, double *pos) {
  CB_CALL(field_r2c(p->f, delta_L, p->dk));
  CB_CALL(lpt_forward_k(p, p->dk, pos)); /* order 2 overwrites dk in place: fine */
  return CB_OK;
}

static int adjoint_k(lpt *p, const double *g_pos, fftw_complex *g_k) {
  field *f = p->f;
  const ptrdiff_t nl = f->n_real_local;
  for (int d = 0; d < 3; d++) {
    for (ptrdiff_t q = 0; q < nl; q++) p->tmp[q] = g_pos[3 * q + d];
    CB_CALL(field_r2c(f, p->tmp, p->ck));
    apply_grad(p, d, -1.0, p->ck, g_k, d > 0); /* transpose of i k/k^2 is its conjugate */
  }
  if (p->order == 1) return CB_OK;
  /* g_k now holds G_z, the gradient with respect to z = delta_L - D2 S */
  CB_CALL(field_c2r(f, g_k, p->gz));
  double *const *ph = p->phi;
  const double s = -LPT_D2;
  for (int pr = 0; pr < 6; pr++) {
    for (ptrdiff_t q = 0; q < nl; q++) {
      double c;
      switch (pr) {
      case 0: c = ph[1][q] + ph[2][q]; break;
      case 1: c = ph[0][q] + ph[2][q]; break;
      case 2: c = ph[0][q] + ph[1][q]; break;
      default: c = -2.0 * ph[pr][q]; break;
      }
      p->tmp[q] = p->gz[q] * c;
    }
    CB_CALL(field_r2c(f, p->tmp, p->ck));
    apply_hess(p, pr, s, p->ck, g_k, 1); /* m_ab is real and even: its own transpose */
  }
  return CB_OK;
}

int lpt_adjoint_k(lpt *p, const double *g_pos, fftw_complex *g_k) {
  logevent_begin(LOGEVENT_LPT_ADJOINT);
  int st = adjoint_k(p, g_pos, g_k);
  logevent_end(LOGEVENT_LPT_ADJOINT);
  CB_CALL(st);
  return CB_OK;
}

int lpt_adjoint(lpt *p, const double *g_pos, double *g_delta_L) {
  CB_CALL(lpt_adjoint_k(p, g_pos, p->dk));
  CB_CALL(field_c2r(p->f, p->dk, g_delta_L));
  return CB_OK;
}
