/* likelihood: ln L of a halo catalogue given a density field, and its exact gradients
 * (MODEL.md section 5).
 *
 *   ln L(w) = sum_j ln dn/dlnM (M_j | v_j) - sum_v m(v) Nbar(v)
 *
 * Halos: every rank receives the whole catalogue (identical arrays, so every check is
 * collective by construction), checks it, and keeps the halos of its own planes as
 * (local voxel, ln M). Evaluation: the engine (npe) gives the features psi on the owned
 * planes, or for the power law x0 = ln(1 + delta + eps) and psi = nothing; one pass over the
 * voxels, a row at a time (mdn_row), evaluates the head, -m(v) Nbar(v) and the log-density
 * terms of the halos in the row (kept sorted by voxel for this), and feeds d lnL / d psi and
 * the head's weight gradient in the same visit. The sums and the -inf
 * flags are reduced; if the value is finite, the engine's reverse pass gives the kernel
 * gradients and d lnL / d delta, and the weight gradient is reduced to every rank.
 * A value that is not finite (overflowed count, halo of zero density, non-finite features)
 * becomes -inf with a counted reason, and the gradients are zeroed; never NaN.
 * Power law: ln dn/dlnM = beta x0 + ln n0(M) and Nbar = e^(beta x0) Nbar0, the head at
 * psi = 0 carrying the constant mixture; beta's gradient and d/dx0 come from the same sums. */
#include "cerberus/likelihood.h"
#include "cerberus/catalogue.h"

#include "cerberus/h5io.h"
#include "cerberus/log.h"
#include "cerberus/mdn.h"
#include "cerberus/npe.h"
#include "cerberus/status.h"

#include <gsl/gsl_errno.h>
#include <math.h>
#include <petsclog.h>
#include <stdlib.h>
#include <string.h>

struct likelihood {
  field *f;
  weights_arch arch;
  npe *net;
  size_t nw, nw_engine;
  size_t nh;    /* local halos */
  size_t *hvox; /* in increasing order of the voxel (rows visit them in turn) */
  double *hlnm;
  double *hld; /* ln dn/dlnM of each halo, from the head's row pass */
  long n_used, n_below;
  double mth;
  double *mask;             /* owned planes or NULL */
  double *dpsi;             /* owned planes x P */
  double *x0;               /* power law: owned planes */
  double *gx0;              /* power law: d lnL / d x0 */
  double *gw;               /* local weight gradient */
  double *ext, *nb, *rowws; /* one row: ln factors, counts, the head's workspace */
  int reason;
  long counts[LK_N_REASONS];
  size_t bytes;
};

static const char *reason_names[] = {"finite", "halo density underflow", "expected count overflow",
                                     "non-finite features or head outputs"};
const char *likelihood_reason_name(int r) {
  return (r >= 0 && r < LK_N_REASONS) ? reason_names[r] : "?";
}

static PetscLogEvent ev_mdn = 0, ev_like = 0;

int likelihood_create(field *f, const weights_arch *arch, likelihood **out) {
  *out = NULL;
  weights_arch a = *arch;
  CB_CALL(weights_arch_check(&a));
  gsl_set_error_handler_off();
  if (!ev_mdn) {
    PetscLogEventRegister("mdn_head", PETSC_OBJECT_CLASSID, &ev_mdn);
    PetscLogEventRegister("likelihood", PETSC_OBJECT_CLASSID, &ev_like);
  }
  likelihood *lk;
  CB_CALLOC(lk, 1);
  lk->f = f;
  lk->arch = a;
  lk->nw = weights_count(&a);
  lk->mth = 2e12;
  int st = CB_OK;
  const size_t nv = (size_t)f->n_real_local;
  if (a.model == WEIGHTS_NPE) {
    if ((st = npe_create(f, &a.npe, &lk->net))) goto fail;
    lk->nw_engine = npe_n_weights(&a.npe);
    lk->bytes += npe_memory(lk->net);
  } else {
    lk->nw_engine = 1;
  }
  size_t P = (size_t)a.mdn.n_features;
  lk->dpsi = calloc((P ? P : 1) * nv + 1, sizeof(double));
  lk->x0 = calloc(nv + 1, sizeof(double));
  lk->gx0 = calloc(nv + 1, sizeof(double));
  lk->gw = calloc(lk->nw + 1, sizeof(double));
  lk->ext = calloc((size_t)f->n, sizeof(double));
  lk->nb = calloc((size_t)f->n, sizeof(double));
  lk->rowws = calloc(mdn_row_workspace(&a.mdn, f->n), sizeof(double));
  lk->bytes += ((P ? P : 1) * nv + 3 * nv) * sizeof(double);
  if (!lk->dpsi || !lk->x0 || !lk->gx0 || !lk->gw || !lk->ext || !lk->nb || !lk->rowws) {
    st = CB_ERROR(CB_ERR_MEM, "out of memory for the likelihood's work arrays");
    goto fail;
  }
  *out = lk;
  return CB_OK;
fail:
  likelihood_destroy(&lk);
  return st;
}

void likelihood_destroy(likelihood **plk) {
  if (!plk || !*plk) return;
  likelihood *lk = *plk;
  npe_destroy(&lk->net);
  free(lk->hvox);
  free(lk->hlnm);
  free(lk->hld);
  free(lk->mask);
  free(lk->dpsi);
  free(lk->x0);
  free(lk->gx0);
  free(lk->gw);
  free(lk->ext);
  free(lk->nb);
  free(lk->rowws);
  free(lk);
  *plk = NULL;
}

static void count_used(likelihood *lk) {
  long used = 0;
  for (size_t h = 0; h < lk->nh; h++)
    if (!lk->mask || lk->mask[lk->hvox[h]] != 0) used++;
  MPI_Allreduce(&used, &lk->n_used, 1, MPI_LONG, MPI_SUM, lk->f->comm);
}

typedef struct halo_key {
  size_t v, i;
  double u;
} halo_key;

static int cmp_halo(const void *a, const void *b) {
  const halo_key *x = a, *y = b;
  if (x->v != y->v) return x->v < y->v ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

/* Halos in increasing order of their voxel (catalogue order within one), and their values. */
static int sort_halos(likelihood *lk) {
  const size_t nh = lk->nh;
  halo_key *key = malloc((nh ? nh : 1) * sizeof *key);
  lk->hld = calloc(nh ? nh : 1, sizeof *lk->hld);
  if (!key || !lk->hld) {
    free(key);
    return CB_ERROR(CB_ERR_MEM, "out of memory for %zu halos", nh);
  }
  for (size_t h = 0; h < nh; h++) key[h] = (halo_key){lk->hvox[h], h, lk->hlnm[h]};
  qsort(key, nh, sizeof *key, cmp_halo);
  for (size_t h = 0; h < nh; h++) lk->hvox[h] = key[h].v, lk->hlnm[h] = key[h].u;
  free(key);
  return CB_OK;
}

int likelihood_set_halos(likelihood *lk, const char *what, size_t n, const double *pos,
                         const double *mass, double mth) {
  const field *f = lk->f;
  const double L = f->L;
  const ptrdiff_t N = f->n;
  CB_CHECK(isfinite(mth) && mth > 0, CB_ERR_INPUT, "-mass_threshold must be positive (got %g)",
           mth);
  for (size_t h = 0; h < n; h++) {
    const double *x = pos + 3 * h;
    for (int a = 0; a < 3; a++)
      CB_CHECK(isfinite(x[a]) && x[a] >= 0 && x[a] <= L, CB_ERR_INPUT,
               "%s: halo %zu at (%g, %g, %g) is outside the box [0, %g] Mpc/h", what, h, x[0], x[1],
               x[2], L);
    CB_CHECK(isfinite(mass[h]) && mass[h] > 0, CB_ERR_INPUT,
             "%s: halo %zu has mass %g (must be positive and finite)", what, h, mass[h]);
  }
  free(lk->hvox);
  free(lk->hlnm);
  free(lk->hld);
  lk->hvox = NULL;
  lk->hlnm = NULL;
  lk->hld = NULL;
  lk->nh = 0;
  size_t mine = 0;
  long below = 0;
  ptrdiff_t i0 = f->local_0_start, i1 = i0 + f->local_n0;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      CB_CALLOC(lk->hvox, mine);
      CB_CALLOC(lk->hlnm, mine);
    }
    mine = 0;
    below = 0;
    for (size_t h = 0; h < n; h++) {
      if (mass[h] < mth) {
        below++;
        continue;
      }
      ptrdiff_t v[3];
      for (int a = 0; a < 3; a++) v[a] = ((ptrdiff_t)floor(pos[3 * h + a] * (double)N / L)) % N;
      if (v[0] < i0 || v[0] >= i1) continue;
      if (pass == 1) {
        lk->hvox[mine] = (size_t)(((v[0] - i0) * N + v[1]) * N + v[2]);
        lk->hlnm[mine] = log(mass[h]);
      }
      mine++;
    }
  }
  lk->nh = mine;
  CB_CALL(sort_halos(lk));
  lk->n_below = below;
  lk->mth = mth;
  count_used(lk);
  return CB_OK;
}

int likelihood_read_catalogue(likelihood *lk, const char *path, double mth) {
  h5file *h = NULL;
  catalogue *cat = NULL;
  size_t below = 0;
  CB_CALL(h5io_open(lk->f->comm, path, &h));
  int st = catalogue_read(h, mth, &cat, &below);
  h5io_close(&h);
  CB_CALL(st);
  /* Only the box matters: a catalogue made on another grid of the same box is fine. */
  if (fabs(cat->box_size - lk->f->L) > 1e-10 * lk->f->L)
    st = CB_ERROR(CB_ERR_INPUT, "catalogue '%s' has box_size %g Mpc/h but the field has %g", path,
                  cat->box_size, lk->f->L);
  else
    st = likelihood_set_halos(lk, path, cat->n, cat->position, cat->mass, cat->mass_threshold);
  if (!st) lk->n_below += (long)below;
  catalogue_destroy(&cat);
  CB_CALL(st);
  return CB_OK;
}

int likelihood_set_mask(likelihood *lk, const double *mask) {
  const size_t nv = (size_t)lk->f->n_real_local;
  if (!mask) {
    free(lk->mask);
    lk->mask = NULL;
  } else {
    int bad = 0;
    for (size_t v = 0; v < nv; v++)
      if (!(mask[v] >= 0 && mask[v] <= 1)) bad = 1;
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, lk->f->comm);
    CB_CHECK(!bad, CB_ERR_INPUT, "mask values must lie in [0, 1]");
    if (!lk->mask) CB_CALLOC(lk->mask, nv);
    memcpy(lk->mask, mask, nv * sizeof *mask);
  }
  count_used(lk);
  return CB_OK;
}

static int evaluate(likelihood *lk, const double *delta, const double *w, double *lnL,
                    double *grad_w, double *grad_delta, bool forwarded);

int likelihood_evaluate(likelihood *lk, const double *delta, const double *w, double *lnL,
                        double *grad_w, double *grad_delta) {
  return evaluate(lk, delta, w, lnL, grad_w, grad_delta, false);
}

int likelihood_evaluate_forwarded(likelihood *lk, const double *delta, const double *w, double *lnL,
                                  double *grad_w, double *grad_delta) {
  return evaluate(lk, delta, w, lnL, grad_w, grad_delta, lk->net != NULL);
}

static int evaluate(likelihood *lk, const double *delta, const double *w, double *lnL,
                    double *grad_w, double *grad_delta, bool forwarded) {
  field *f = lk->f;
  const mdn_config *mc = &lk->arch.mdn;
  const ptrdiff_t n = f->n, nn = n * n;
  const size_t nv = (size_t)f->n_real_local;
  const bool grad = grad_w || grad_delta;
  const bool pl = lk->arch.model == WEIGHTS_POWERLAW;
  const int P = mc->n_features;
  const double ln_V = 3.0 * log(f->L / (double)n), u_th = log(lk->mth);
  const double *psi = NULL;
  const double *wh = w + lk->nw_engine;
  const double beta = pl ? w[0] : 0.0;
  const ptrdiff_t stride = nn;

  (void)PetscLogEventBegin(ev_like, 0, 0, 0, 0);
  if (!pl && forwarded) {
    psi = npe_features(lk->net);
  } else if (!pl) {
    CB_CALL(npe_forward(lk->net, delta, w, &psi));
  } else {
    const double eps = lk->arch.npe.eps;
    long bad = -1;
    for (size_t v = 0; v < nv; v++) {
      double y = 1.0 + delta[v] + eps;
      if (!(y > 0) || !isfinite(y)) {
        if (bad < 0) bad = (long)(f->local_0_start * nn + (ptrdiff_t)v);
        lk->x0[v] = 0;
      } else {
        lk->x0[v] = log(y);
      }
    }
    long first = bad < 0 ? (long)9e18 : bad;
    MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_LONG, MPI_MIN, f->comm);
    if (first != (long)9e18) {
      (void)PetscLogEventEnd(ev_like, 0, 0, 0, 0);
      return CB_ERROR(CB_ERR_INPUT,
                      "density field: 1 + delta + eps must be positive, but it is not at voxel "
                      "(%ld,%ld,%ld) (eps = %g)",
                      first / (long)nn, (first / (long)n) % (long)n, first % (long)n, eps);
    }
  }
  if (grad) {
    memset(lk->gw, 0, lk->nw * sizeof(double));
    if (P > 0) memset(lk->dpsi, 0, (size_t)P * nv * sizeof(double));
    if (pl) memset(lk->gx0, 0, nv * sizeof(double));
  }
  double *gwh = lk->gw + lk->nw_engine;
  double sum_halo = 0, sum_nbar = 0;
  int flag_nf = 0, flag_hd = 0;
  (void)PetscLogEventBegin(ev_mdn, 0, 0, 0, 0);
  /* voxels: - m(v) Nbar(v) and the halos' ln dn/dlnM, a row of n voxels at a time */
  size_t h = 0;
  for (ptrdiff_t p = 0; p < f->local_n0; p++)
    for (ptrdiff_t j = 0; j < n; j++) {
      const size_t v0 = (size_t)((p * n + j) * n);
      const double *ext = NULL;
      if (lk->mask || pl) {
        for (ptrdiff_t k = 0; k < n; k++) {
          double mv = lk->mask ? lk->mask[v0 + k] : 1.0;
          lk->ext[k] = mv == 0 ? -INFINITY
                               : (mv != 1.0 ? log(mv) : 0.0) + (pl ? beta * lk->x0[v0 + k] : 0.0);
        }
        ext = lk->ext;
      }
      size_t h1 = h;
      while (h1 < lk->nh && lk->hvox[h1] < v0 + (size_t)n) h1++;
      const ptrdiff_t off = (ptrdiff_t)p * P * nn + j * n;
      sum_nbar += mdn_row(mc, wh, P ? psi + off : NULL, stride, n, ln_V, u_th, ext, -1.0, h1 - h,
                          lk->hvox + h, v0, lk->hlnm + h, lk->hld + h, grad ? gwh : NULL,
                          grad && P ? lk->dpsi + off : NULL, lk->nb, lk->rowws);
      h = h1;
      for (ptrdiff_t k = 0; k < n; k++) {
        double nb = lk->nb[k];
        if (isnan(nb)) flag_nf = 1;
        if (grad && pl) {
          lk->gw[0] -= nb * lk->x0[v0 + k];
          lk->gx0[v0 + k] -= nb * beta;
        }
      }
    }
  /* halos: sum_j ln dn/dlnM (the values from the rows; those of masked voxels left out) */
  for (size_t h = 0; h < lk->nh; h++) {
    size_t v = lk->hvox[h];
    if (lk->mask && lk->mask[v] == 0) continue;
    double ld = lk->hld[h];
    if (isnan(ld))
      flag_nf = 1;
    else if (ld == -INFINITY)
      flag_hd = 1;
    sum_halo += ld + (pl ? beta * lk->x0[v] : 0.0);
    if (grad && isfinite(ld) && pl) {
      lk->gw[0] += lk->x0[v];
      lk->gx0[v] += beta;
    }
  }
  (void)PetscLogEventEnd(ev_mdn, 0, 0, 0, 0);
  double red[5] = {sum_halo, sum_nbar, flag_nf, flag_hd, 0};
  if (!isfinite(sum_halo) && !flag_hd) red[2] = 1;
  if (isinf(sum_nbar)) red[4] = 1;
  MPI_Allreduce(MPI_IN_PLACE, red, 5, MPI_DOUBLE, MPI_SUM, f->comm);
  int reason = LK_FINITE;
  if (red[2] > 0)
    reason = LK_NONFINITE;
  else if (red[4] > 0)
    reason = LK_NBAR_OVERFLOW;
  else if (red[3] > 0)
    reason = LK_HALO_DENSITY;
  double value = red[0] - red[1];
  if (reason == LK_FINITE && !isfinite(value))
    reason = isinf(red[1]) ? LK_NBAR_OVERFLOW : LK_NONFINITE;
  if (reason == LK_FINITE && grad) {
    if (!pl) {
      CB_CALL(npe_backward(lk->net, lk->dpsi, lk->gw, grad_delta));
    } else if (grad_delta) {
      for (size_t v = 0; v < nv; v++) grad_delta[v] = lk->gx0[v] * exp(-lk->x0[v]);
    }
    int bad = 0;
    for (size_t i = 0; i < lk->nw; i++)
      if (!isfinite(lk->gw[i])) bad = 1;
    if (grad_delta)
      for (size_t v = 0; v < nv; v++)
        if (!isfinite(grad_delta[v])) bad = 1;
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, f->comm);
    if (bad)
      reason = LK_NONFINITE;
    else if (grad_w)
      MPI_Allreduce(lk->gw, grad_w, (int)lk->nw, MPI_DOUBLE, MPI_SUM, f->comm);
  }
  if (reason != LK_FINITE) {
    value = -INFINITY;
    if (grad_w) memset(grad_w, 0, lk->nw * sizeof(double));
    if (grad_delta) memset(grad_delta, 0, nv * sizeof(double));
  }
  lk->reason = reason;
  lk->counts[reason]++;
  *lnL = value;
  (void)PetscLogEventEnd(ev_like, 0, 0, 0, 0);
  return CB_OK;
}

int likelihood_reason(const likelihood *lk) {
  return lk->reason;
}
long likelihood_reason_count(const likelihood *lk, int r) {
  return (r >= 0 && r < LK_N_REASONS) ? lk->counts[r] : 0;
}
long likelihood_n_halos(const likelihood *lk) {
  return lk->n_used;
}
long likelihood_n_below(const likelihood *lk) {
  return lk->n_below;
}
double likelihood_mth(const likelihood *lk) {
  return lk->mth;
}
size_t likelihood_local_halos(const likelihood *lk, const size_t **voxel, const double **lnm) {
  *voxel = lk->hvox;
  *lnm = lk->hlnm;
  return lk->nh;
}
npe *likelihood_engine(const likelihood *lk) {
  return lk->net;
}
size_t likelihood_memory(const likelihood *lk) {
  return lk->bytes + lk->nh * (sizeof(size_t) + 2 * sizeof(double));
}
