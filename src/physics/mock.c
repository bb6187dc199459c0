/* mock: Poisson halo catalogues from a mass function per voxel (include/cerberus/mock.h,
 * MODEL.md section 6).
 *
 * The sampler. A truth gives dn/dlnM (M | v) on a fine grid u_b = ln Mth + b h in ln M
 * (b = 0 .. nm - 1, u_{nm-1} = ln Mmax). Between grid points the mass function is taken linear
 * in u, so that the trapezoid rule is its exact integral and the cumulative within a cell,
 * C(t) = h (f0 t + (f1 - f0) t^2 / 2) for u = u_b + t h, is inverted exactly:
 *   t = 2 c / (f0 + sqrt(f0^2 + 2 (f1 - f0) c)),   c = (remaining count) / h,
 * a form without cancellation whatever the signs of f1 - f0. Per voxel v (volume V):
 *   Nbar(v) = V sum_b h (f_b + f_{b+1}) / 2,   N(v) ~ Poisson(Nbar(v)) (no draw if Nbar = 0),
 * masses by inverse transform, positions (i + U, j + U', k + U'') L / n, redrawn in the rare
 * case that rounding puts a halo outside its voxel (floor(x n / L) must give back i, j, k).
 * One GSL Mersenne twister per global plane, seeded by ic_stream_seed(seed, "mockhalo",
 * plane), a stream of its own (not the white noise's): the same halos whatever the ranks.
 *
 * The st-pbs truth. With w(v) = 1 + delta(v) (0 or less: no halo) and e(v) = delta_R(v),
 *   ln n(M_b | v) = ln n_ST(M_b) + ln w(v) + b_b e(v) - ln Z_b,
 *   Z_b = (1 / n^3) sum_v w(v) exp(b_b e(v)).
 * b_b e can be large (b_L reaches ~50 at 1e16 M_sun/h), so Z is accumulated with the shift
 * s_b = max_v b_b e(v) (from the box's max and min of e, reduced), which makes every term at
 * most w(v): ln Z_b = s_b + ln((1 / n^3) sum_v w exp(b_b e - s_b)). Each exponent in the
 * callback is then at most ln n_ST - ln(Z_b e^-s_b): finite for any environment. */
#include "cerberus/mock.h"

#include "cerberus/cic.h"
#include "cerberus/ic.h"
#include "cerberus/status.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mock {
  field *f;
  double mth, mmax, h; /* threshold, top, cell width in ln M */
  size_t nm;           /* grid points */
  double *lnm;         /* nm */
  double *dndlnm;      /* nm: the current voxel's truth */
  double *cum;         /* nm: its cumulative integral (per unit volume) */
  double *mean;        /* nm: box average of the truth */
  double ln_l;         /* the truth's ln L of the last catalogue (reduced) */
  gsl_rng *rng;
};

int mock_create(field *f, double mth, double mmax, double dlnm, mock **out) {
  *out = NULL;
  CB_CHECK(isfinite(mth) && mth > 0, CB_ERR_INPUT,
           "-mass_threshold must be positive and finite (got %g)", mth);
  CB_CHECK(isfinite(mmax) && mmax > mth, CB_ERR_INPUT,
           "-mass_threshold %g must be below the top of the mass grid %g M_sun/h", mth, mmax);
  CB_CHECK(isfinite(dlnm) && dlnm > 0, CB_ERR_INPUT, "mass grid step %g must be positive", dlnm);
  double span = log(mmax) - log(mth);
  double ncell = ceil(span / dlnm);
  CB_CHECK(ncell <= 1e6, CB_ERR_INPUT, "mass grid of %g cells is too fine", ncell);
  mock *m;
  CB_CALLOC(m, 1);
  m->f = f;
  m->mth = mth;
  m->mmax = mmax;
  m->nm = (size_t)ncell + 1;
  m->h = span / ncell;
  m->lnm = malloc(m->nm * sizeof *m->lnm);
  m->dndlnm = malloc(m->nm * sizeof *m->dndlnm);
  m->cum = malloc(m->nm * sizeof *m->cum);
  m->mean = calloc(m->nm, sizeof *m->mean);
  m->rng = gsl_rng_alloc(gsl_rng_mt19937);
  if (!m->lnm || !m->dndlnm || !m->cum || !m->mean || !m->rng) {
    mock_destroy(&m);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the mock's mass grid");
  }
  for (size_t b = 0; b < m->nm; b++) m->lnm[b] = log(mth) + (double)b * m->h;
  m->lnm[m->nm - 1] = log(mmax);
  *out = m;
  return CB_OK;
}

void mock_destroy(mock **pm) {
  if (!pm || !*pm) return;
  mock *m = *pm;
  free(m->lnm);
  free(m->dndlnm);
  free(m->cum);
  free(m->mean);
  if (m->rng) gsl_rng_free(m->rng);
  free(m);
  *pm = NULL;
}

size_t mock_n_mass(const mock *m) {
  return m->nm;
}
const double *mock_lnm(const mock *m) {
  return m->lnm;
}
const double *mock_mean_dndlnm(const mock *m) {
  return m->mean;
}
double mock_truth_ln_l(const mock *m) {
  return m->ln_l;
}

/* At most this many halos on a rank (640 MB of positions and masses). */
#define MOCK_MAX_HALOS_PER_RANK 20000000

/* The halos' random stream, apart from the white noise's (ic_stream_seed). */
#define MOCK_STREAM_HALOS 0x6d6f636b68616c6fULL /* ASCII "mockhalo" */

/* u = ln M at cumulative value target (0 < target <= cum[nm-1]) of the current voxel; *dens
 * the density drawn from there, dn/dlnM linear in u between the grid points. */
static double invert(const mock *m, double target, double *dens) {
  const double *cum = m->cum, *f = m->dndlnm;
  size_t lo = 0, hi = m->nm - 1; /* cum[lo] <= target <= cum[hi] */
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (cum[mid] < target)
      lo = mid;
    else
      hi = mid;
  }
  double c = (target - cum[lo]) / m->h;
  double f0 = f[lo], f1 = f[lo + 1];
  double disc = f0 * f0 + 2.0 * (f1 - f0) * c;
  double den = f0 + sqrt(disc > 0 ? disc : 0);
  double t = den > 0 ? 2.0 * c / den : 0.0;
  t = t < 0 ? 0 : (t > 1 ? 1 : t);
  *dens = f0 + t * (f1 - f0);
  return m->lnm[lo] + t * m->h;
}

int mock_sample(mock *m, unsigned long seed, mock_dndlnm_fn fn, void *ctx, double *expected,
                catalogue **out) {
  *out = NULL;
  field *f = m->f;
  const ptrdiff_t n = f->n;
  const double L = f->L, cell = L / (double)n, V = cell * cell * cell;
  catalogue *cat;
  CB_CALL(catalogue_create(1024, L, (long)n, m->mth, &cat));
  for (size_t b = 0; b < m->nm; b++) m->mean[b] = 0;
  double ln_l = 0; /* sum_j ln dn/dlnM(M_j | v_j) - sum_v Nbar(v) (MODEL.md section 5) */
  int st = CB_OK;
  for (ptrdiff_t il = 0; il < f->local_n0 && st == CB_OK; il++) {
    const ptrdiff_t i = f->local_0_start + il;
    gsl_rng_set(m->rng, ic_stream_seed(seed, MOCK_STREAM_HALOS, (uint64_t)i));
    for (ptrdiff_t jk = 0; jk < n * n && st == CB_OK; jk++) {
      const ptrdiff_t v = il * n * n + jk, j = jk / n, k = jk % n;
      st = fn(ctx, v, m->nm, m->lnm, m->dndlnm);
      if (st != CB_OK) break;
      double *fv = m->dndlnm, *cum = m->cum;
      cum[0] = 0;
      bool finite = isfinite(fv[0]) && fv[0] >= 0;
      for (size_t b = 0; b + 1 < m->nm; b++) {
        finite = finite && isfinite(fv[b + 1]) && fv[b + 1] >= 0;
        cum[b + 1] = cum[b] + 0.5 * m->h * (fv[b] + fv[b + 1]);
      }
      if (!finite) {
        st = CB_ERROR(CB_ERR_NUMERIC,
                      "the truth's mass function is negative or not finite in voxel (%td,%td,%td)",
                      i, j, k);
        break;
      }
      for (size_t b = 0; b < m->nm; b++) m->mean[b] += fv[b];
      const double total = cum[m->nm - 1], nbar = V * total;
      if (expected) expected[v] = nbar;
      ln_l -= nbar;
      if (!(nbar > 0)) continue;
      if (nbar > MOCK_MAX_HALOS_PER_RANK) {
        st = CB_ERROR(CB_ERR_INPUT,
                      "voxel (%td,%td,%td) expects %.3g halos: the truth is unreasonable here "
                      "(raise -mass_threshold?)",
                      i, j, k, nbar);
        break;
      }
      unsigned int count = gsl_ran_poisson(m->rng, nbar);
      if (cat->n + count > MOCK_MAX_HALOS_PER_RANK) {
        st = CB_ERROR(CB_ERR_INPUT,
                      "more than %.3g halos on one rank (raise -mass_threshold or use more ranks)",
                      (double)MOCK_MAX_HALOS_PER_RANK);
        break;
      }
      for (unsigned int h = 0; h < count && st == CB_OK; h++) {
        double dens;
        double u = invert(m, gsl_rng_uniform_pos(m->rng) * total, &dens);
        ln_l += log(dens);
        double mass = exp(u);
        if (mass < m->mth) mass = m->mth; /* exp(ln Mth) may round below Mth */
        if (mass > m->mmax) mass = m->mmax;
        double x[3];
        const ptrdiff_t idx[3] = {i, j, k};
        for (int a = 0; a < 3; a++) {
          do {
            x[a] = ((double)idx[a] + gsl_rng_uniform(m->rng)) * cell;
          } while (x[a] >= L || catalogue_voxel_axis(x[a], L, n) != idx[a] ||
                   floor(x[a] * (double)n / L) != (double)idx[a]);
        }
        st = catalogue_append(cat, x[0], x[1], x[2], mass);
      }
    }
  }
  /* every rank reaches the reduction; the first failing rank's message is raised on all */
  int first = st == CB_OK ? f->size : f->rank;
  MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, f->comm);
  if (first < f->size) {
    catalogue_destroy(&cat);
    char msg[1024];
    int code = st;
    if (f->rank == first) snprintf(msg, sizeof msg, "%s", status_message());
    MPI_Bcast(&code, 1, MPI_INT, first, f->comm);
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, first, f->comm);
    if (f->rank == first) CB_CALL(st);
    return CB_ERROR(code, "%s", msg);
  }
  MPI_Allreduce(MPI_IN_PLACE, m->mean, (int)m->nm, MPI_DOUBLE, MPI_SUM, f->comm);
  m->ln_l = field_allreduce_sum(f, ln_l);
  const double nvox = (double)n * (double)n * (double)n;
  for (size_t b = 0; b < m->nm; b++) m->mean[b] /= nvox;
  *out = cat;
  return CB_OK;
}

int mock_smooth_gaussian(field *f, const double *in, double R, double *out) {
  CB_CHECK(isfinite(R) && R >= 0, CB_ERR_INPUT,
           "-smoothing_radius must be zero or positive (got %g)", R);
  if (R == 0) {
    if (out != in) memcpy(out, in, (size_t)f->n_real_local * sizeof *out);
    return CB_OK;
  }
  fftw_complex *k = field_alloc_complex(f);
  CB_CHECK(k != NULL, CB_ERR_MEM, "out of memory smoothing a %td^3 field", f->n);
  field_r2c(f, in, k);
  const ptrdiff_t n = f->n, nc = f->nc;
  for (ptrdiff_t il = 0; il < f->local_n0; il++) {
    double ka = field_k_of(f, f->local_0_start + il);
    for (ptrdiff_t j = 0; j < n; j++) {
      double kb = field_k_of(f, j);
      for (ptrdiff_t c = 0; c < nc; c++) {
        double kc = field_k_of(f, c);
        double k2 = ka * ka + kb * kb + kc * kc;
        k[(il * n + j) * nc + c] *= exp(-0.5 * k2 * R * R);
      }
    }
  }
  field_c2r(f, k, out);
  fftw_free(k);
  return CB_OK;
}

int mock_environment(field *f, const double *delta_L, double R, size_t np, const double *pos,
                     double *env) {
  CB_CHECK(np == (size_t)f->n_real_local, CB_ERR_INTERNAL,
           "mock_environment: %zu particles for %td local voxels", np, f->n_real_local);
  double *w = field_alloc_real(f), *ones = field_alloc_real(f);
  cic *c = NULL;
  int st = w && ones ? CB_OK : CB_ERROR(CB_ERR_MEM, "out of memory for the environment");
  if (st == CB_OK) st = mock_smooth_gaussian(f, delta_L, R, w);
  if (st == CB_OK) st = cic_create(f, &c);
  if (st == CB_OK) st = cic_assign(c, np, pos, w, env);
  if (st == CB_OK) st = cic_assign(c, np, pos, NULL, ones);
  if (st == CB_OK)
    for (ptrdiff_t v = 0; v < f->n_real_local; v++) env[v] = ones[v] > 0 ? env[v] / ones[v] : 0.0;
  cic_destroy(&c);
  fftw_free(w);
  fftw_free(ones);
  CB_CALL(st);
  return CB_OK;
}

/* ------------------------------------------------------------ st-pbs */

struct mock_stpbs {
  size_t nm;
  const double *delta, *env;
  double *ln_nst, *bias, *ln_z; /* nm each */
};

void mock_stpbs_destroy(mock_stpbs **pt) {
  if (!pt || !*pt) return;
  free((*pt)->ln_nst);
  free((*pt)->bias);
  free((*pt)->ln_z);
  free(*pt);
  *pt = NULL;
}

const double *mock_stpbs_ln_z(const mock_stpbs *t) {
  return t->ln_z;
}

int mock_stpbs_create(const mock *m, const cosmology *c, const double *delta, const double *env,
                      mock_stpbs **out) {
  *out = NULL;
  const field *f = m->f;
  mock_stpbs *t;
  CB_CALLOC(t, 1);
  t->nm = m->nm;
  t->delta = delta;
  t->env = env;
  t->ln_nst = malloc(m->nm * sizeof *t->ln_nst);
  t->bias = malloc(m->nm * sizeof *t->bias);
  t->ln_z = calloc(m->nm, sizeof *t->ln_z);
  if (!t->ln_nst || !t->bias || !t->ln_z) {
    mock_stpbs_destroy(&t);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the st-pbs truth");
  }
  int bad = 0;
  for (size_t b = 0; b < m->nm; b++) {
    double M = exp(m->lnm[b]);
    double nst = cosmology_st_dndlnm(c, M);
    t->ln_nst[b] = log(nst);
    t->bias[b] = cosmology_pbs_bias(cosmology_nu(c, M));
    if (!(nst >= 0) || !isfinite(t->bias[b]) || isnan(t->ln_nst[b])) bad = 1;
  }
  /* the environment's range over the voxels that can hold halos, for the shift */
  double range[2] = {-HUGE_VAL, -HUGE_VAL}; /* max e, max -e */
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    if (!(1.0 + delta[v] > 0)) continue;
    if (!isfinite(env[v]) || !isfinite(delta[v])) bad = 1;
    range[0] = fmax(range[0], env[v]);
    range[1] = fmax(range[1], -env[v]);
  }
  MPI_Allreduce(MPI_IN_PLACE, range, 2, MPI_DOUBLE, MPI_MAX, f->comm);
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, f->comm);
  if (bad || !isfinite(range[0]) || !isfinite(range[1])) {
    mock_stpbs_destroy(&t);
    return CB_ERROR(CB_ERR_NUMERIC, "st-pbs truth: the mass function, delta or the environment "
                                    "is not finite (or the box has no matter)");
  }
  double *shift = m->cum; /* the sampler's scratch, free until mock_sample */
  double *zsum = m->dndlnm;
  for (size_t b = 0; b < m->nm; b++) {
    shift[b] = t->bias[b] >= 0 ? t->bias[b] * range[0] : -t->bias[b] * range[1];
    zsum[b] = 0;
  }
  for (ptrdiff_t v = 0; v < f->n_real_local; v++) {
    double w = 1.0 + delta[v];
    if (!(w > 0)) continue;
    for (size_t b = 0; b < m->nm; b++) zsum[b] += w * exp(t->bias[b] * env[v] - shift[b]);
  }
  MPI_Allreduce(MPI_IN_PLACE, zsum, (int)m->nm, MPI_DOUBLE, MPI_SUM, f->comm);
  const double nvox = (double)f->n * (double)f->n * (double)f->n;
  for (size_t b = 0; b < m->nm; b++) t->ln_z[b] = shift[b] + log(zsum[b] / nvox);
  *out = t;
  return CB_OK;
}

int mock_stpbs_dndlnm(void *ctx, ptrdiff_t v, size_t nm, const double *lnm, double *dndlnm) {
  (void)lnm;
  const mock_stpbs *t = ctx;
  CB_CHECK(nm == t->nm, CB_ERR_INTERNAL, "st-pbs truth made for %zu masses, asked for %zu", t->nm,
           nm);
  double w = 1.0 + t->delta[v];
  if (!(w > 0)) {
    memset(dndlnm, 0, nm * sizeof *dndlnm);
    return CB_OK;
  }
  const double lnw = log(w), e = t->env[v];
  for (size_t b = 0; b < nm; b++) dndlnm[b] = exp(t->ln_nst[b] + lnw + t->bias[b] * e - t->ln_z[b]);
  return CB_OK;
}
