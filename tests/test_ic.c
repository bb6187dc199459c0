/* test_ic: white noise and the linear field delta_L (MODEL.md section 2) at 1-4 ranks.
 *
 * - the same seed gives the same s and delta_L on any number of ranks: the world run,
 *   gathered, against the same computed by rank 0 alone (s bit for bit, delta_L to 1e-12);
 *   another seed gives another field; the noise has mean 0 and variance 1 within 4.5 sigma;
 * - the filter against truth: delta_L(k) = sqrt(P(|k|) / V) s(k) on every local mode with
 *   P(k) from cosmology_pk at the |k| the test computes, delta_L(0) = 0; with a power-law
 *   table (exact under log-log interpolation) against the formula itself;
 * - the adjoint: <M a, b> = <a, M^T b> for random a, b;
 * - the measured P(k) of delta_L against the input: per shell b the estimator's mean is
 *   E_b = sum_modes P / n_b and its variance 2 sum_modes P^2 / n_b^2 (hermitian pairs: n_b
 *   counts k and -k, whose |f|^2 are equal; self-conjugate modes are real and chi2(1)), so
 *   chi2 = sum_b (P_b - E_b)^2 / var_b is tested against the central 99.9% of chi2(n_bins)
 *   at a fixed seed on a 32^3 grid;
 * - a table that does not cover the grid's k range is refused naming the file. */
#include "testing.h"

#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/ic.h"
#include "cerberus/power.h"
#include "cerberus/status.h"

#include <complex.h>
#include <gsl/gsl_cdf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double L_box = 211.0;

/* Rank 0 gets the n^3 field in global order. */
static void gather(const field *f, const double *local, double *all) {
  int *counts = calloc((size_t)f->size, sizeof(int)),
      *displs = calloc((size_t)f->size, sizeof(int));
  for (int r = 0; r < f->size; r++) {
    counts[r] = (int)((f->plane_start[r + 1] - f->plane_start[r]) * f->n * f->n);
    displs[r] = (int)(f->plane_start[r] * f->n * f->n);
  }
  MPI_Gatherv(local, (int)f->n_real_local, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, 0, f->comm);
  free(counts);
  free(displs);
}

/* s and delta_L for (n, seed) on comm; caller frees. */
static void make_fields(MPI_Comm comm, ptrdiff_t n, unsigned long seed, const cosmology *c,
                        field **f, double **s, double **d) {
  ic_filter *flt = NULL;
  TEST_STATUS(field_create(comm, n, L_box, 1, f), CB_OK, "field_create");
  *s = field_alloc_real(*f);
  *d = field_alloc_real(*f);
  TEST_STATUS(ic_white_noise(*f, seed, *s), CB_OK, "ic_white_noise");
  TEST_STATUS(ic_filter_create(*f, c, &flt), CB_OK, "ic_filter_create");
  TEST_STATUS(ic_delta_linear(*f, flt, *s, *d), CB_OK, "ic_delta_linear");
  ic_filter_destroy(&flt);
  TEST_CHECK(flt == NULL, "ic_filter_destroy leaves NULL");
}

static void test_rank_independence(MPI_Comm comm, const cosmology *c) {
  const ptrdiff_t n = 24;
  const unsigned long seed = 20231;
  field *f;
  double *s, *d;
  make_fields(comm, n, seed, c, &f, &s, &d);
  size_t n3 = (size_t)(n * n * n);
  double *s_all = NULL, *d_all = NULL;
  if (f->rank == 0) {
    s_all = malloc(n3 * sizeof(double));
    d_all = malloc(n3 * sizeof(double));
  }
  gather(f, s, s_all);
  gather(f, d, d_all);
  /* noise statistics and another seed */
  double sum = 0, sum2 = 0;
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) {
    sum += s[i];
    sum2 += s[i] * s[i];
  }
  double mean = field_allreduce_sum(f, sum) / (double)n3;
  double var = field_allreduce_sum(f, sum2) / (double)n3 - mean * mean;
  TEST_CHECK(fabs(mean) < 4.5 / sqrt((double)n3), "white noise mean %g", mean);
  TEST_CHECK(fabs(var - 1) < 4.5 * sqrt(2.0 / (double)n3), "white noise variance %g", var);
  double *s2 = field_alloc_real(f);
  ic_white_noise(f, seed + 1, s2);
  double same = 0;
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) same += s2[i] == s[i];
  same = field_allreduce_sum(f, same);
  TEST_CHECK(same < 10, "seeds %lu and %lu share %g values", seed, seed + 1, same);
  /* planes are not copies of each other */
  if (f->local_n0 >= 2) TEST_CHECK(s[0] != s[n * n], "planes 0 and 1 start alike");
  fftw_free(s2);

  /* the reference: rank 0 alone */
  MPI_Comm self;
  MPI_Comm_split(comm, f->rank == 0 ? 0 : MPI_UNDEFINED, 0, &self);
  if (self != MPI_COMM_NULL) {
    field *g;
    double *s1, *d1;
    make_fields(self, n, seed, c, &g, &s1, &d1);
    double ds = 0, dd = 0, rms = 0;
    for (size_t i = 0; i < n3; i++) {
      ds = fmax(ds, fabs(s1[i] - s_all[i]));
      dd = fmax(dd, fabs(d1[i] - d_all[i]));
      rms += d1[i] * d1[i];
    }
    rms = sqrt(rms / (double)n3);
    TEST_CHECK(ds == 0, "white noise on %d ranks differs from 1 rank by %g", f->size, ds);
    TEST_CHECK(dd < 1e-12, "delta_L on %d ranks differs from 1 rank by %g (rms %g)", f->size, dd,
               rms);
    TEST_CHECK(rms > 0.1, "delta_L rms %g: the field is empty", rms);
    printf("same seed on %d ranks vs 1: max |ds| = %g, max |d delta_L| = %g (rms %.3f)\n", f->size,
           ds, dd, rms);
    fftw_free(s1);
    fftw_free(d1);
    field_destroy(&g);
    MPI_Comm_free(&self);
  }
  free(s_all);
  free(d_all);
  fftw_free(s);
  fftw_free(d);
  field_destroy(&f);
}

/* delta_L(k) / s(k) = sqrt(P(|k|)/V) with P from pk(k). */
static void check_filter(field *f, const ic_filter *flt, double (*pk)(const void *, double),
                         const void *ctx, unsigned long seed, const char *what) {
  const ptrdiff_t n = f->n, nc = f->nc;
  double *s = field_alloc_real(f), *d = field_alloc_real(f);
  fftw_complex *sk = field_alloc_complex(f), *dk = field_alloc_complex(f);
  ic_white_noise(f, seed, s);
  TEST_STATUS(ic_delta_linear(f, flt, s, d), CB_OK, "ic_delta_linear");
  field_r2c(f, s, sk);
  field_r2c(f, d, dk);
  const double V = pow(f->L / (double)n, 3);
  const double *amp = ic_filter_amplitude(flt);
  double err = 0, err_amp = 0;
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t c = 0; c < nc; c++) {
        ptrdiff_t m = (il * n + j) * nc + c;
        double ka = field_k_of(f, f->local_0_start + il), kb = field_k_of(f, j),
               kc = 2 * 3.14159265358979323846 / f->L * (double)c;
        double k = sqrt(ka * ka + kb * kb + kc * kc);
        double a = k > 0 ? sqrt(pk(ctx, k) / V) : 0;
        double scale = fmax(a * cabs(sk[m]), 1e-300);
        err = fmax(err, cabs(dk[m] - a * sk[m]) / (k > 0 ? scale : 1.0));
        err_amp = fmax(err_amp, fabs(amp[m] - a) / (k > 0 ? a : 1.0));
      }
  MPI_Allreduce(MPI_IN_PLACE, &err, 1, MPI_DOUBLE, MPI_MAX, f->comm);
  MPI_Allreduce(MPI_IN_PLACE, &err_amp, 1, MPI_DOUBLE, MPI_MAX, f->comm);
  TEST_CHECK(err < 1e-9, "%s: delta_L(k) vs sqrt(P/V) s(k): relative error %g", what, err);
  TEST_CHECK(err_amp < 1e-12, "%s: filter amplitude relative error %g", what, err_amp);
  fftw_free(s);
  fftw_free(d);
  fftw_free(sk);
  fftw_free(dk);
}

static double pk_cosmology(const void *c, double k) {
  return cosmology_pk(c, k);
}
static double pk_power_law(const void *unused, double k) {
  (void)unused;
  return 1.7e4 * pow(k / 0.1, -1.3);
}

static void test_filter(MPI_Comm comm, const cosmology *c, int rank) {
  field *f = NULL;
  ic_filter *flt = NULL;
  TEST_STATUS(field_create(comm, 16, L_box, 1, &f), CB_OK, "field 16^3");
  TEST_STATUS(ic_filter_create(f, c, &flt), CB_OK, "filter (Eisenstein-Hu)");
  check_filter(f, flt, pk_cosmology, c, 77, "Eisenstein-Hu");
  ic_filter_destroy(&flt);

  /* a power-law table: rank 0 writes it, every rank reads it */
  char table[64], short_table[80];
  snprintf(table, sizeof table, "/tmp/cerberus_test_ic_%d.txt", (int)getpid());
  MPI_Bcast(table, sizeof table, MPI_CHAR, 0, comm);
  snprintf(short_table, sizeof short_table, "%s.short", table);
  if (rank == 0) {
    FILE *t = fopen(table, "w"), *u = fopen(short_table, "w");
    fprintf(t, "# k [h/Mpc]  P(k) [(Mpc/h)^3], a power law\n");
    for (int i = 0; i < 120; i++) {
      double k = 1e-3 * pow(10.0, 4.0 * i / 119.0);
      fprintf(t, "%.17g %.17g\n", k, pk_power_law(NULL, k));
      if (k < 0.3) fprintf(u, "%.17g %.17g\n", k, pk_power_law(NULL, k));
    }
    fclose(t);
    fclose(u);
  }
  MPI_Barrier(comm);
  cosmo_params p = cosmo_params_default();
  cosmology *ct = NULL;
  TEST_STATUS(cosmology_create(&p, table, &ct), CB_OK, "table cosmology");
  if (ct) {
    TEST_STATUS(ic_filter_create(f, ct, &flt), CB_OK, "filter (table)");
    if (flt) check_filter(f, flt, pk_power_law, NULL, 78, "power-law table");
    ic_filter_destroy(&flt);
    cosmology_destroy(&ct);
  }
  /* the 16^3 grid in 211 Mpc/h needs k up to sqrt(3) * 8 * 2 pi / 211 = 0.41 h/Mpc */
  TEST_STATUS(cosmology_create(&p, short_table, &ct), CB_OK, "short table");
  if (ct) {
    int st = ic_filter_create(f, ct, &flt);
    TEST_CHECK(st == CB_ERR_INPUT && strstr(status_message(), short_table),
               "a table short of the grid's k: status %d '%s'", st, status_message());
    TEST_CHECK(flt == NULL, "refused filter is NULL");
    status_clear();
    cosmology_destroy(&ct);
  }
  MPI_Barrier(comm);
  if (rank == 0) {
    unlink(table);
    unlink(short_table);
  }
  field_destroy(&f);
}

static void test_adjoint(MPI_Comm comm, const cosmology *c) {
  field *f = NULL;
  ic_filter *flt = NULL;
  TEST_STATUS(field_create(comm, 12, L_box, 1, &f), CB_OK, "field 12^3");
  TEST_STATUS(ic_filter_create(f, c, &flt), CB_OK, "filter");
  double *a = field_alloc_real(f), *b = field_alloc_real(f), *ma = field_alloc_real(f),
         *mtb = field_alloc_real(f);
  ic_white_noise(f, 5, a);
  ic_white_noise(f, 6, b);
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) b[i] = b[i] * b[i] - 0.3 * b[i]; /* not even */
  ic_delta_linear(f, flt, a, ma);
  TEST_STATUS(ic_delta_linear_adjoint(f, flt, b, mtb), CB_OK, "adjoint");
  double lhs = 0, rhs = 0;
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) {
    lhs += ma[i] * b[i];
    rhs += a[i] * mtb[i];
  }
  lhs = field_allreduce_sum(f, lhs);
  rhs = field_allreduce_sum(f, rhs);
  TEST_CLOSE(lhs, rhs, 1e-12, "<M a, b> vs <a, M^T b>");
  /* in place */
  memcpy(mtb, a, (size_t)f->n_real_local * sizeof(double));
  ic_delta_linear(f, flt, mtb, mtb);
  double diff = 0;
  for (ptrdiff_t i = 0; i < f->n_real_local; i++) diff = fmax(diff, fabs(mtb[i] - ma[i]));
  TEST_CHECK(diff == 0, "in-place delta_L differs by %g", diff);
  fftw_free(a);
  fftw_free(b);
  fftw_free(ma);
  fftw_free(mtb);
  ic_filter_destroy(&flt);
  field_destroy(&f);
}

static void test_measured_pk(MPI_Comm comm, const cosmology *c) {
  const ptrdiff_t n = 32;
  field *f;
  double *s, *d;
  make_fields(comm, n, 424242, c, &f, &s, &d);
  power *p = NULL;
  power_config cfg = {0};
  TEST_STATUS(power_create(f, &cfg, &p), CB_OK, "power_create");
  TEST_STATUS(power_measure(p, d), CB_OK, "power_measure");
  /* the expected shell means and variances, from the modes the test enumerates itself */
  int nb = p->n_bins;
  double *e = calloc((size_t)nb, sizeof(double)), *v = calloc((size_t)nb, sizeof(double)),
         *cnt = calloc((size_t)nb, sizeof(double));
  const double kf = 2 * 3.14159265358979323846 / f->L;
  for (ptrdiff_t il = 0; il < f->local_n0; il++) /* full modes: (a, b, c) all in [-n/2, n/2) */
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t q = 0; q < n; q++) {
        double k = kf * sqrt((double)(field_freq(f, f->local_0_start + il) *
                                          field_freq(f, f->local_0_start + il) +
                                      field_freq(f, j) * field_freq(f, j) +
                                      field_freq(f, q) * field_freq(f, q)));
        for (int b = 0; b < nb; b++)
          if (k > 0 && k >= p->k_lo[b] && k < p->k_hi[b]) {
            double pk = cosmology_pk(c, k);
            e[b] += pk;
            v[b] += pk * pk;
            cnt[b] += 1;
          }
      }
  MPI_Allreduce(MPI_IN_PLACE, e, nb, MPI_DOUBLE, MPI_SUM, comm);
  MPI_Allreduce(MPI_IN_PLACE, v, nb, MPI_DOUBLE, MPI_SUM, comm);
  MPI_Allreduce(MPI_IN_PLACE, cnt, nb, MPI_DOUBLE, MPI_SUM, comm);
  double chi2 = 0;
  int used = 0;
  for (int b = 0; b < nb; b++) {
    TEST_CHECK(cnt[b] == p->n_modes[b], "shell %d: %g modes, the test counts %g", b, p->n_modes[b],
               cnt[b]);
    if (cnt[b] == 0) continue;
    double mean = e[b] / cnt[b], var = 2 * v[b] / (cnt[b] * cnt[b]);
    chi2 += (p->pk[b] - mean) * (p->pk[b] - mean) / var;
    used++;
  }
  double lo = gsl_cdf_chisq_Pinv(0.0005, used), hi = gsl_cdf_chisq_Pinv(0.9995, used);
  TEST_CHECK(chi2 > lo && chi2 < hi, "P(k) vs input: chi2 %g for %d shells outside [%g, %g]", chi2,
             used, lo, hi);
  if (f->rank == 0)
    printf("measured P(k) vs input, %td^3: chi2 = %.2f for %d shells (99.9%%: [%.2f, %.2f])\n", n,
           chi2, used, lo, hi);
  free(e);
  free(v);
  free(cnt);
  power_destroy(&p);
  fftw_free(s);
  fftw_free(d);
  field_destroy(&f);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  cosmo_params cp = cosmo_params_default();
  cp.redshift = 0.35; /* not the default */
  cosmology *c = NULL;
  TEST_STATUS(cosmology_create(&cp, NULL, &c), CB_OK, "cosmology (Eisenstein-Hu)");
  if (c) {
    test_rank_independence(comm, c);
    test_filter(comm, c, testing_rank());
    test_adjoint(comm, c);
    test_measured_pk(comm, c);
  }
  cosmology_destroy(&c);
  return testing_finish();
}
