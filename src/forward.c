/* forward: white noise to the evolved density and back (MODEL.md section 2).
 *
 *   s --r2c--> s(k) --x sqrt(P/V)--> delta_L(k) --LPT--> x_p --CIC--> rho,  delta = rho - 1
 *
 * The linear field is computed with the ic module's filter amplitude (ic_filter_amplitude),
 * the same numbers ic_delta_linear multiplies, but kept in Fourier space: s(k) stays in the
 * field's work buffer and lpt_forward_k applies the filter as it reads it. This saves the
 * c2r / r2c pair a real-space delta_L would cost (delta_L is only transformed back when the
 * caller asks for it) and a pass over memory. The adjoint is the same road backwards:
 * cic_adjoint_last (only the gradients of particles that migrated travel back),
 * lpt_adjoint_k with the same real, even filter (G with g_s = c2r(G)) written straight into
 * the work buffer, one c2r.
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
  fftw_complex *sk; /* s(k), then delta_L(k); in the adjoint, G */
  double *pos;      /* 3 * n_real_local */
  double *g_pos;    /* 3 * n_real_local */
  int have_run;
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
  const size_t np = (size_t)f->n_real_local;
  fw->sk = field_alloc_complex(f);
  fw->pos = malloc(3 * (np ? np : 1) * sizeof(double));
  fw->g_pos = malloc(3 * (np ? np : 1) * sizeof(double));
  if (!fw->sk || !fw->pos || !fw->g_pos) {
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
  free(fw->g_pos);
  free(fw);
  *pfw = NULL;
}

int forward_run(forward *fw, const double *s, double *delta_L, double *delta) {
  field *f = fw->f;
  const double *amp = ic_filter_amplitude(fw->flt);
  double *w = field_work(f);
  fw->have_run = 0;
  /* r2c(s) in the work buffer; LPT applies the filter as it reads it */
  field_padded_load(f, s, w);
  CB_CALL(field_padded_r2c(f, w));
  CB_CALL(lpt_forward_k(fw->lpt, (const fftw_complex *)w, amp, fw->pos));
  if (delta_L) {
    const fftw_complex *wk = (const fftw_complex *)w;
    for (ptrdiff_t m = 0; m < f->n_complex_local; m++) fw->sk[m] = amp[m] * wk[m];
    CB_CALL(field_c2r(f, fw->sk, delta_L));
  }
  CB_CALL(cic_assign(fw->cic, (size_t)f->n_real_local, fw->pos, NULL, delta));
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) delta[i] -= 1.0;
  fw->have_run = 1;
  return CB_OK;
}

int forward_adjoint(forward *fw, const double *g_delta, double *g_s) {
  CB_CHECK(fw->have_run, CB_ERR_INTERNAL, "forward_adjoint before a successful forward_run");
  field *f = fw->f;
  const double *amp = ic_filter_amplitude(fw->flt);
  const double n = (double)f->n;
  CB_CALL(cic_adjoint_last(fw->cic, (size_t)f->n_real_local, fw->pos, NULL, g_delta, fw->g_pos));
  /* G times the filter straight into the work buffer, c2r, and 1/N^3 on the way out */
  double *w = field_work(f);
  CB_CALL(lpt_adjoint_k(fw->lpt, fw->g_pos, amp, (fftw_complex *)w));
  CB_CALL(field_padded_c2r(f, w));
  field_padded_store(f, w, 1.0 / (n * n * n), g_s);
  return CB_OK;
}

const double *forward_positions(const forward *fw, size_t *np) {
  if (np) *np = (size_t)fw->f->n_real_local;
  return fw->pos;
}
