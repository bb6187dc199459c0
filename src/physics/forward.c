/* forward: white noise to the evolved density and back (MODEL.md section 2).
 *
 *   s --r2c--> s(k) --x sqrt(P/V)--> delta_L(k) --LPT--> x_p --CIC--> rho,  delta = rho - 1
 *
 * The linear field is computed with the ic module's filter amplitude (ic_filter_amplitude),
 * the same numbers ic_delta_linear multiplies, but kept in Fourier space: s(k) stays in the
 * field's work buffer and lpt_displace_k applies the filter as it reads it. This saves the
 * c2r / r2c pair a real-space delta_L would cost (delta_L is only transformed back when the
 * caller asks for it) and a pass over memory. The adjoint is the same road backwards:
 * cic_adjoint_lattice (only the gradients of particles that migrated travel back),
 * lpt_adjoint_disp_k with the same real, even filter (G with g_s = c2r(G)) written straight into
 * the work buffer, one c2r.
 * No array of positions is made: the cloud-in-cell deposit reads the displacements in LPT's
 * three FFT buffers (cic_assign_lattice, starting from -1 so that it returns delta = rho - 1
 * itself), and its adjoint writes dF/dPsi back into them, where LPT's adjoint transforms
 * them. This saves writing and reading 3 doubles per particle each way. Positions are made
 * only when a caller asks for them (forward_positions).
 * Fourier space is in FFTW's transposed layout (field_padded_r2c_t): the chain never looks
 * at the modes' order, so each transform skips its last global transpose; the filter is a
 * function of |k|, whose array is the same in both layouts.
 * Since delta = rho - 1, dF/drho = dF/ddelta. FFTs per forward + adjoint: 1LPT 4 + 4,
 * 2LPT 11 + 11 (one more if delta_L is requested). */
#include "cerberus/forward.h"

#include "cerberus/cic.h"
#include "cerberus/ic.h"
#include "cerberus/lpt.h"
#include "cerberus/status.h"

#include <stdlib.h>
#include <string.h>

struct forward {
  field *f;
  ic_filter *flt;
  lpt *lpt;
  cic *cic;
  fftw_complex *sk; /* delta_L(k), when delta_L is requested */
  double *pos;      /* 3 * n_real_local, made by forward_positions */
  int psi_valid;    /* LPT's buffers hold the last successful run's Psi (no adjoint since) */
  int pos_valid;    /* pos holds the last run's positions */
};

int forward_create(field *f, const cosmology *c, int lpt_order, forward **out) {
  *out = NULL;
  forward *fw;
  CB_CALLOC(fw, 1);
  fw->f = f;
  int st = ic_filter_create(f, c, &fw->flt);
  if (st == CB_OK) st = lpt_create(f, lpt_order, &fw->lpt);
  if (st == CB_OK) st = cic_create(f, &fw->cic);
  if (st != CB_OK) {
    forward_destroy(&fw);
    CB_CALL(st);
  }
  fw->sk = field_alloc_complex(f);
  if (!fw->sk) {
    forward_destroy(&fw);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the forward model of a %td^3 grid", f->n);
  }
  *out = fw;
  return CB_OK;
}

void forward_destroy(forward **pfw) {
  if (!pfw || !*pfw) return;
  forward *fw = *pfw;
  ic_filter_destroy(&fw->flt);
  lpt_destroy(&fw->lpt);
  cic_destroy(&fw->cic);
  fftw_free(fw->sk);
  free(fw->pos);
  free(fw);
  *pfw = NULL;
}

int forward_run(forward *fw, const double *s, double *delta_L, double *delta) {
  field *f = fw->f;
  const double *amp = ic_filter_amplitude(fw->flt);
  double *w = field_work(f);
  fw->psi_valid = fw->pos_valid = 0;
  /* r2c(s) in the work buffer; LPT applies the filter as it reads it */
  field_padded_load(f, s, w);
  CB_CALL(field_padded_r2c_t(f, w));
  CB_CALL(lpt_displace_k(fw->lpt, (const fftw_complex *)w, amp));
  if (delta_L) {
    const fftw_complex *wk = (const fftw_complex *)w;
    for (ptrdiff_t m = 0; m < f->n_complex_local; m++) fw->sk[m] = amp[m] * wk[m];
    CB_CALL(field_c2r_t(f, fw->sk, delta_L));
  }
  ptrdiff_t stride;
  double *const *psi = lpt_displacements(fw->lpt, &stride);
  CB_CALL(cic_assign_lattice(fw->cic, psi, stride, -1.0, delta));
  fw->psi_valid = 1;
  return CB_OK;
}

int forward_adjoint(forward *fw, const double *g_delta, double *g_s) {
  field *f = fw->f;
  const double *amp = ic_filter_amplitude(fw->flt);
  const double n = (double)f->n;
  CB_CHECK(fw->psi_valid, CB_ERR_INTERNAL,
           "forward_adjoint without a successful forward_run since the last forward_adjoint");
  ptrdiff_t stride;
  double *const *psi = lpt_displacements(fw->lpt, &stride);
  fw->psi_valid = 0; /* from here the buffers hold dF/dPsi, then LPT's transforms */
  CB_CALL(cic_adjoint_lattice(fw->cic, psi, stride, g_delta));
  /* G times the filter straight into the work buffer, c2r, and 1/N^3 on the way out */
  double *w = field_work(f);
  CB_CALL(lpt_adjoint_disp_k(fw->lpt, amp, (fftw_complex *)w));
  CB_CALL(field_padded_c2r_t(f, w));
  field_padded_store(f, w, 1.0 / (n * n * n), g_s);
  return CB_OK;
}

const double *forward_positions(forward *fw, size_t *np) {
  const size_t n = (size_t)fw->f->n_real_local;
  if (np) *np = n;
  if (!fw->pos_valid) {
    if (!fw->psi_valid) return NULL;
    if (!fw->pos) fw->pos = malloc(3 * (n ? n : 1) * sizeof(double));
    if (!fw->pos) return NULL;
    lpt_positions(fw->lpt, fw->pos);
    fw->pos_valid = 1;
  }
  return fw->pos;
}
