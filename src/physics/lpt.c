/* lpt: Zel'dovich and second-order Lagrangian displacements, and their exact adjoint.
 *
 * MODEL.md section 2. Input: the linear density delta_L on the slabs (or its half-complex
 * transform). Output: one particle per voxel, x = q + Psi, wrapped into [0, L), three doubles
 * per particle in the local voxel order. Everything happens in Fourier space with the field's
 * plans, in the transposed layout (field_padded_r2c_t: the first local index is ky's, the
 * second kx's; 1/k^2 and the even factors are symmetric in the two):
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
 * and 3 back (+1 c2r); order 2, 10 and 10 (+1 each).
 *
 * The three components of Psi share part of their transforms. A transposed-layout c2r is an
 * inverse 1-D transform along x (every kx is local), an exchange of the first two axes across
 * the ranks, and inverse 2-D transforms over (y, z) (field_padded_c2r_x, _swap, _c2r_yz), and
 * the multipliers i k_y and i k_z commute with the first two stages: so i k_x/k^2 z and 1/k^2 z
 * go through the x stage and the exchange (two of each, not three), i k_y and i k_z are
 * applied in the mixed layout (x, ky, kz), and three (y, z) stages follow. The adjoint runs the
 * same road back (three (y, z) stages, k_y W_y + k_z W_z summed, two exchanges and x stages).
 * At 128^3 this made the forward model with its adjoint 7-8% faster on one rank and on two
 * (bench lpt, against three full transforms each way).
 *
 * Memory traffic, which costs as much as the arithmetic here: the object owns three padded
 * FFT buffers, one per component. Forward, one pass over delta_L(k) writes i k_x/k^2 z and
 * 1/k^2 z into two of them (with 1/N^3 and an optional filter such as sqrt(P/V) folded in),
 * one pass after the exchange makes the y and z components, and one pass writes each
 * particle's x, y, z. Backward, one pass splits g_pos into the three buffers, one pass sums
 * the y and z terms, and one pass the rest (times the filter). */
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
  double *kpow[3];  /* n values each: 1, k (zero on the Nyquist index), k^2 for axes x, y */
  double *kzpow[3]; /* nc values each: the same for the half-complex axis z */
  fftw_complex *dk; /* n_complex_local: the source of order 2, or the caller's r2c */
  double *inv_k2;   /* n_complex_local: 1 / |k|^2, 0 at k = 0 */
  double *w[3];     /* padded transform buffers: one per component of Psi or g_pos */
  double *gz;       /* order 2: the real-space gradient with respect to the source */
  double *phi[6];   /* order 2: phi_xx, phi_yy, phi_zz, phi_xy, phi_xz, phi_yz */
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
  p->inv_k2 = malloc((size_t)(f->n_complex_local > 0 ? f->n_complex_local : 1) * sizeof(double));
  int ok = p->dk && p->inv_k2;
  for (int d = 0; d < 3; d++) {
    p->w[d] = field_alloc_padded(f);
    ok = ok && p->w[d];
  }
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
  fftw_free(p->gz);
  for (int d = 0; d < 3; d++) fftw_free(p->w[d]);
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

/* out (+)= M(k) in for a real separable multiplier M = s fx(k_x) fy(k_y) fz(k_z) / k^2.
 * pw[axis] picks each factor: 0 -> 1, 1 -> k (Nyquist zeroed), 2 -> k^2. in and out may be
 * padded buffers (not the same one). */
static void apply_mult(const lpt *p, const int pw[3], double s, const fftw_complex *in,
                       fftw_complex *out, int acc) {
  const field *f = p->f;
  const ptrdiff_t n = f->n, nc = f->nc;
  const double *zf = p->kzpow[pw[2]];
  for (ptrdiff_t il = 0; il < f->local_n0; il++) { /* transposed: il is ky's index, j kx's */
    const double fy = s * p->kpow[pw[1]][f->local_0_start + il];
    for (ptrdiff_t j = 0; j < n; j++) {
      const double fxy = fy * p->kpow[pw[0]][j];
      const ptrdiff_t row = (il * n + j) * nc;
      const double *restrict ik = p->inv_k2 + row;
      const double *restrict zi = (const double *)(in + row);
      double *restrict zo = (double *)(out + row);
      if (acc) /* one loop per case, so that each vectorises without a branch inside */
        for (ptrdiff_t c = 0; c < nc; c++) {
          const double a = fxy * zf[c] * ik[c];
          zo[2 * c] += a * zi[2 * c];
          zo[2 * c + 1] += a * zi[2 * c + 1];
        }
      else
        for (ptrdiff_t c = 0; c < nc; c++) {
          const double a = fxy * zf[c] * ik[c];
          zo[2 * c] = a * zi[2 * c];
          zo[2 * c + 1] = a * zi[2 * c + 1];
        }
    }
  }
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
  apply_mult(p, pw, s, in, out, acc);
}

/* A padded buffer's complex values, and 1/N^3 (field_padded_c2r leaves it out). */
static fftw_complex *as_k(double *buf) {
  return (fftw_complex *)buf;
}
static double c2r_scale(const field *f) {
  return 1.0 / ((double)f->n * (double)f->n * (double)f->n);
}

/* The forward's first pass, in one pass over z_k: W_0 = s i kn_x a z_k and W_1 = s a z_k, with
 * a = filter / k^2 (filter, real, per mode, may be NULL for 1), into the first two padded
 * buffers (transposed layout). W_1 becomes W_1 and W_2 after the x stage (disp_yz). */
static void disp_x(const lpt *p, const fftw_complex *z_k, const double *filter, double s) {
  const field *f = p->f;
  const ptrdiff_t n = f->n, nc = f->nc;
  for (ptrdiff_t il = 0; il < f->local_n0; il++) /* transposed: il is ky's index, j kx's */
    for (ptrdiff_t j = 0; j < n; j++) {
      const double kx = p->kpow[1][j];
      const ptrdiff_t row = (il * n + j) * nc;
      const double *restrict ik = p->inv_k2 + row;
      const double *restrict fl = filter ? filter + row : NULL;
      const double *restrict z = (const double *)(z_k + row);
      double *restrict w0 = p->w[0] + 2 * row, *restrict w1 = p->w[1] + 2 * row;
      for (ptrdiff_t c = 0; c < nc; c++) {
        const double a = s * (fl ? ik[c] * fl[c] : ik[c]); /* i a z = (-a z_i, a z_r) */
        const double zr = a * z[2 * c], zi = a * z[2 * c + 1];
        w0[2 * c] = -kx * zi;
        w0[2 * c + 1] = kx * zr;
        w1[2 * c] = zr;
        w1[2 * c + 1] = zi;
      }
    }
}

/* After the x stage and the exchange (the mixed layout: il is x's index, j ky's): W_2 = i kn_z
 * W_1 and W_1 = i kn_y W_1, in one pass. */
static void disp_yz(const lpt *p) {
  const field *f = p->f;
  const ptrdiff_t n = f->n, nc = f->nc;
  const double *kz = p->kzpow[1];
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++) {
      const double ky = p->kpow[1][j];
      double *restrict w1 = p->w[1] + 2 * (il * n + j) * nc;
      double *restrict w2 = p->w[2] + 2 * (il * n + j) * nc;
      for (ptrdiff_t c = 0; c < nc; c++) {
        const double zr = w1[2 * c], zi = w1[2 * c + 1];
        w2[2 * c] = -kz[c] * zi;
        w2[2 * c + 1] = kz[c] * zr;
        w1[2 * c] = -ky * zi;
        w1[2 * c + 1] = ky * zr;
      }
    }
}

/* Psi_d = c2r(s i kn_d a z_k) for d = 0, 1, 2 into the three padded buffers, through the stages
 * of the transposed c2r (field_padded_c2r_x): i kn_x is applied before the x stage, i kn_y
 * and i kn_z after it, so that the three components take two x stages and two exchanges. */
static int displacements(lpt *p, const fftw_complex *z_k, const double *filter, double s) {
  field *f = p->f;
  disp_x(p, z_k, filter, s);
  for (int d = 0; d < 2; d++) {
    CB_CALL(field_padded_c2r_x(f, p->w[d]));
    CB_CALL(field_padded_swap(f, p->w[d]));
  }
  disp_yz(p);
  for (int d = 0; d < 3; d++) CB_CALL(field_padded_c2r_yz(f, p->w[d]));
  return CB_OK;
}

/* Positions from the displacements in the three buffers: one pass that writes each
 * particle's x, y, z together, wrapped. */
static void positions_of(const lpt *p, double *pos) {
  const field *f = p->f;
  const ptrdiff_t n = f->n, stride = field_work_stride(f);
  const double h = f->L / (double)n, L = f->L;
  for (ptrdiff_t il = 0, r = 0; il < f->local_n0; il++) {
    const double qx = ((double)(f->local_0_start + il) + 0.5) * h;
    for (ptrdiff_t j = 0; j < n; j++, r++) {
      const double qy = ((double)j + 0.5) * h;
      const double *px = p->w[0] + r * stride, *py = p->w[1] + r * stride;
      const double *pz = p->w[2] + r * stride;
      double *out = pos + 3 * r * n;
      for (ptrdiff_t k = 0; k < n; k++) {
        out[3 * k] = wrap(qx + px[k], L);
        out[3 * k + 1] = wrap(qy + py[k], L);
        out[3 * k + 2] = wrap(((double)k + 0.5) * h + pz[k], L);
      }
    }
  }
}

/* z_k (times filter): the potential source (delta_L, or delta_L + 3/7 S). The three
 * components of Psi are multiplied straight into the three padded buffers (with 1/N^3) and
 * transformed there; positions are written unless pos is NULL. */
static int positions_from(lpt *p, const fftw_complex *z_k, const double *filter, double *pos) {
  field *f = p->f;
  CB_CALL(displacements(p, z_k, filter, c2r_scale(f)));
  if (pos) positions_of(p, pos);
  return CB_OK;
}

static int forward_k(lpt *p, const fftw_complex *in_k, const double *filter, double *pos) {
  field *f = p->f;
  if (p->order == 1) return positions_from(p, in_k, filter, pos);
  /* order 2 reads delta_L(k) seven times: filter it once */
  const fftw_complex *delta_k = in_k;
  if (filter) {
    for (ptrdiff_t m = 0; m < f->n_complex_local; m++) p->dk[m] = filter[m] * in_k[m];
    delta_k = p->dk;
  }
  double *w = p->w[0];
  for (int pr = 0; pr < 6; pr++) {
    apply_hess(p, pr, c2r_scale(f), delta_k, as_k(w), 0);
    CB_CALL(field_padded_c2r_t(f, w));
    field_padded_store(f, w, 1.0, p->phi[pr]);
  }
  double *const *ph = p->phi;
  const ptrdiff_t n = f->n, stride = field_work_stride(f);
  for (ptrdiff_t r = 0, q = 0; r < f->local_n0 * n; r++)
    for (ptrdiff_t k = 0; k < n; k++, q++)
      w[r * stride + k] = ph[0][q] * ph[1][q] + ph[0][q] * ph[2][q] + ph[1][q] * ph[2][q] -
                          ph[3][q] * ph[3][q] - ph[4][q] * ph[4][q] - ph[5][q] * ph[5][q];
  CB_CALL(field_padded_r2c_t(f, w));
  /* z = delta_L - D2 S: Psi = i k/k^2 z gives Psi1 + D2 grad phi2 (grad phi2 = -i k/k^2 S) */
  const fftw_complex *sk = as_k(w);
  for (ptrdiff_t m = 0; m < f->n_complex_local; m++) p->dk[m] = delta_k[m] - LPT_D2 * sk[m];
  return positions_from(p, p->dk, NULL, pos);
}

int lpt_forward_k(lpt *p, const fftw_complex *delta_k, const double *filter, double *pos) {
  logevent_begin(LOGEVENT_LPT);
  int st = forward_k(p, delta_k, filter, pos);
  logevent_end(LOGEVENT_LPT);
  CB_CALL(st);
  return CB_OK;
}

int lpt_displace_k(lpt *p, const fftw_complex *in_k, const double *filter) {
  CB_CALL(lpt_forward_k(p, in_k, filter, NULL));
  return CB_OK;
}

double *const *lpt_displacements(lpt *p, ptrdiff_t *stride) {
  if (stride) *stride = field_work_stride(p->f);
  return p->w;
}

void lpt_positions(const lpt *p, double *pos) {
  positions_of(p, pos);
}

int lpt_forward(lpt *p, const double *delta_L, double *pos) {
  CB_CALL(field_r2c_t(p->f, delta_L, p->dk));
  CB_CALL(lpt_forward_k(p, p->dk, NULL, pos)); /* order 2 overwrites dk in place: fine */
  return CB_OK;
}

/* The transpose of displacements: g_k = filter sum_d conj(M_d) W_d(k) with M_d = i kn_d / k^2,
 * i.e. -i (kn_x W_0 + kn_y W_1 + kn_z W_2) / k^2 (times filter, when not NULL), from the three
 * real buffers W_d, through the stages of the transposed r2c in reverse: the (y, z) stage of
 * all three, kn_y W_1 + kn_z W_2 summed in the mixed layout into W_1, then the exchange and the
 * x stage of W_0 and W_1 only, and one pass for the rest. */
static int disp_transpose(lpt *p, const double *filter, fftw_complex *g_k) {
  field *f = p->f;
  const ptrdiff_t n = f->n, nc = f->nc;
  for (int d = 0; d < 3; d++) CB_CALL(field_padded_r2c_yz(f, p->w[d]));
  const double *kz = p->kzpow[1];
  for (ptrdiff_t il = 0; il < f->local_n0; il++) /* mixed: il is x's index, j ky's */
    for (ptrdiff_t j = 0; j < n; j++) {
      const double ky = p->kpow[1][j];
      double *restrict w1 = p->w[1] + 2 * (il * n + j) * nc;
      const double *restrict w2 = p->w[2] + 2 * (il * n + j) * nc;
      for (ptrdiff_t c = 0; c < nc; c++) {
        w1[2 * c] = ky * w1[2 * c] + kz[c] * w2[2 * c];
        w1[2 * c + 1] = ky * w1[2 * c + 1] + kz[c] * w2[2 * c + 1];
      }
    }
  for (int d = 0; d < 2; d++) {
    CB_CALL(field_padded_swap(f, p->w[d]));
    CB_CALL(field_padded_r2c_x(f, p->w[d]));
  }
  for (ptrdiff_t il = 0; il < f->local_n0; il++) /* transposed: il is ky's index, j kx's */
    for (ptrdiff_t j = 0; j < n; j++) {
      const double kx = p->kpow[1][j];
      const ptrdiff_t row = (il * n + j) * nc;
      const double *restrict ik = p->inv_k2 + row;
      const double *restrict w0 = p->w[0] + 2 * row, *restrict w1 = p->w[1] + 2 * row;
      const double *restrict fl = filter ? filter + row : NULL;
      double *restrict g = (double *)(g_k + row);
      for (ptrdiff_t c = 0; c < nc; c++) {
        const double sr = kx * w0[2 * c] + w1[2 * c], si = kx * w0[2 * c + 1] + w1[2 * c + 1];
        const double a = fl ? ik[c] * fl[c] : ik[c];
        g[2 * c] = a * si;
        g[2 * c + 1] = -a * sr;
      }
    }
  return CB_OK;
}

static int adjoint_k(lpt *p, const double *g_pos, const double *filter, fftw_complex *g_k) {
  field *f = p->f;
  const ptrdiff_t n = f->n, stride = field_work_stride(f);
  /* the three components of g_pos into the three padded buffers, in one pass (unless the
   * caller wrote them there) */
  for (ptrdiff_t r = 0; g_pos && r < f->local_n0 * n; r++) {
    const double *in = g_pos + 3 * r * n;
    double *wx = p->w[0] + r * stride, *wy = p->w[1] + r * stride, *wz = p->w[2] + r * stride;
    for (ptrdiff_t k = 0; k < n; k++) {
      wx[k] = in[3 * k];
      wy[k] = in[3 * k + 1];
      wz[k] = in[3 * k + 2];
    }
  }
  if (p->order == 1) {
    CB_CALL(disp_transpose(p, filter, g_k));
    return CB_OK;
  }
  CB_CALL(disp_transpose(p, NULL, g_k));
  /* g_k now holds G_z, the gradient with respect to z = delta_L - D2 S */
  double *w = p->w[0];
  fftw_complex *wk = as_k(w);
  for (ptrdiff_t m = 0; m < f->n_complex_local; m++) wk[m] = c2r_scale(f) * g_k[m];
  CB_CALL(field_padded_c2r_t(f, w));
  field_padded_store(f, w, 1.0, p->gz);
  double *const *ph = p->phi;
  const double s = -LPT_D2;
  for (int pr = 0; pr < 6; pr++) {
    for (ptrdiff_t r = 0, q = 0; r < f->local_n0 * n; r++)
      for (ptrdiff_t k = 0; k < n; k++, q++) {
        double c;
        switch (pr) {
        case 0: c = ph[1][q] + ph[2][q]; break;
        case 1: c = ph[0][q] + ph[2][q]; break;
        case 2: c = ph[0][q] + ph[1][q]; break;
        default: c = -2.0 * ph[pr][q]; break;
        }
        w[r * stride + k] = p->gz[q] * c;
      }
    CB_CALL(field_padded_r2c_t(f, w));
    apply_hess(p, pr, s, wk, g_k, 1); /* m_ab is real and even: its own transpose */
  }
  if (filter)
    for (ptrdiff_t m = 0; m < f->n_complex_local; m++) g_k[m] *= filter[m];
  return CB_OK;
}

int lpt_adjoint_k(lpt *p, const double *g_pos, const double *filter, fftw_complex *g_k) {
  logevent_begin(LOGEVENT_LPT_ADJOINT);
  int st = adjoint_k(p, g_pos, filter, g_k);
  logevent_end(LOGEVENT_LPT_ADJOINT);
  CB_CALL(st);
  return CB_OK;
}

int lpt_adjoint_disp_k(lpt *p, const double *filter, fftw_complex *g_k) {
  CB_CALL(lpt_adjoint_k(p, NULL, filter, g_k));
  return CB_OK;
}

int lpt_adjoint(lpt *p, const double *g_pos, double *g_delta_L) {
  CB_CALL(lpt_adjoint_k(p, g_pos, NULL, p->dk));
  CB_CALL(field_c2r_t(p->f, p->dk, g_delta_L));
  return CB_OK;
}
