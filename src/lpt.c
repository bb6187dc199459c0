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
  double *k_full, *k_nyq;   /* n values: wave number of index a; zero on the Nyquist index */
  double *kz_full, *kz_nyq; /* nc values for the half-complex axis */
  fftw_complex *dk, *ck;    /* n_complex_local each */
  double *tmp, *gz;         /* real workspaces */
  double *phi[6];           /* order 2: phi_xx, phi_yy, phi_zz, phi_xy, phi_xz, phi_yz */
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
  p->k_full = calloc((size_t)n, sizeof(double));
  p->k_nyq = calloc((size_t)n, sizeof(double));
  p->kz_full = calloc((size_t)nc, sizeof(double));
  p->kz_nyq = calloc((size_t)nc, sizeof(double));
  p->dk = field_alloc_complex(f);
  p->ck = field_alloc_complex(f);
  p->tmp = field_alloc_real(f);
  int ok = p->k_full && p->k_nyq && p->kz_full && p->kz_nyq && p->dk && p->ck && p->tmp;
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
    p->k_full[a] = field_k_of(f, a);
    p->k_nyq[a] = (field_freq(f, a) == -n / 2) ? 0.0 : p->k_full[a];
  }
  for (ptrdiff_t c = 0; c < nc; c++) {
    p->kz_full[c] = 2.0 * LPT_PI / f->L * (double)c;
    p->kz_nyq[c] = (2 * c == n) ? 0.0 : p->kz_full[c];
  }
  *out = p;
  return CB_OK;
}

void lpt_destroy(lpt **pp) {
  if (!pp || !*pp) return;
  lpt *p = *pp;
  free(p->k_full);
  free(p->k_nyq);
  free(p->kz_full);
  free(p->kz_nyq);
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
  double y = x - L * floor(x / L);
  return (y >= L || y < 0) ? 0.0 : y;
}

/* out = M(k) in, M = i kn_d / k^2 (sign +1) or its conjugate (sign -1), accumulate if acc. */
static void apply_grad(const lpt *p, int d, double sign, const fftw_complex *in, fftw_complex *out,
                       int acc) {
  const field *f = p->f;
  const ptrdiff_t n = f->n, nc = f->nc;
  for (ptrdiff_t il = 0; il < f->local_n0; il++) {
    const double kx = p->k_full[f->local_0_start + il], kxn = p->k_nyq[f->local_0_start + il];
    for (ptrdiff_t j = 0; j < n; j++) {
      const double ky = p->k_full[j], kyn = p->k_nyq[j];
      const ptrdiff_t row = (il * n + j) * nc;
      for (ptrdiff_t c = 0; c < nc; c++) {
        const double kz = p->kz_full[c];
        const double k2 = kx * kx + ky * ky + kz * kz;
        const double kd = d == 0 ? kxn : (d == 1 ? kyn : p->kz_nyq[c]);
        const double a = k2 > 0 ? sign * kd / k2 : 0.0;
        const fftw_complex z = in[row + c];
        const fftw_complex v = CMPLX(-a * cimag(z), a * creal(z)); /* i a z */
        out[row + c] = acc ? out[row + c] + v : v;
      }
    }
  }
}

/* out (+)= s * m_ab(k) in, m_ab = k_a k_b / k^2 (Nyquist-zeroed when a != b). */
static void apply_hess(const lpt *p, int pair, double s, const fftw_complex *in, fftw_complex *out,
                       int acc) {
  const field *f = p->f;
  const ptrdiff_t n = f->n, nc = f->nc;
  const int a = pair_a[pair], b = pair_b[pair];
  for (ptrdiff_t il = 0; il < f->local_n0; il++) {
    const ptrdiff_t ig = f->local_0_start + il;
    for (ptrdiff_t j = 0; j < n; j++) {
      const ptrdiff_t row = (il * n + j) * nc;
      for (ptrdiff_t c = 0; c < nc; c++) {
        const double kf[3] = {p->k_full[ig], p->k_full[j], p->kz_full[c]};
        const double kn[3] = {p->k_nyq[ig], p->k_nyq[j], p->kz_nyq[c]};
        const double k2 = kf[0] * kf[0] + kf[1] * kf[1] + kf[2] * kf[2];
        const double m = k2 > 0 ? (a == b ? kf[a] * kf[a] : kn[a] * kn[b]) / k2 * s : 0.0;
        const fftw_complex v = m * in[row + c];
        out[row + c] = acc ? out[row + c] + v : v;
      }
    }
  }
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
      for (ptrdiff_t j = 0; j < n; j++)
        for (ptrdiff_t k = 0; k < n; k++, q++) {
          const ptrdiff_t idx = d == 0 ? f->local_0_start + il : (d == 1 ? j : k);
          pos[3 * q + d] = wrap(((double)idx + 0.5) * h + p->tmp[q], L);
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
