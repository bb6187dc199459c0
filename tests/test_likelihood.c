/* test_likelihood: exact gradients of ln L (MODEL.md sections 3-5) against finite
 * differences, for many architectures, and the same numbers at any rank count.
 *
 * - For each architecture (3^3 and 5^3 kernels; lmax 0, 1, 2; one and two layers; one and
 *   two channels; G = 1, 2, 3; softplus, relu, tanh, identity; the power law; a mask):
 *   d lnL / d w against central differences for every weight (or a random subset and
 *   random directions when there are many), and d lnL / d delta along random directions
 *   and in single voxels on the first and last planes and on a rank boundary (where the
 *   convolution's contributions travel back to the neighbouring rank).
 * - The same ln L, d lnL / d w and d lnL / d delta computed on a size-1 sub-communicator
 *   (rank 0 alone holds the whole field) agree with the distributed ones to 1e-10.
 * Inputs: a non-symmetric field and catalogue made from a hash of the global indices, so
 * every rank count sees the same data; weights of scale 0.3 from a fixed seed. */
#include "testing.h"

#include "cerberus/field.h"
#include "cerberus/likelihood.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <gsl/gsl_math.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double BOX = 97.3;

static void make_halos(size_t nh, double *pos, double *mass, unsigned long seed) {
  for (size_t h = 0; h < nh; h++) {
    for (int a = 0; a < 3; a++) pos[3 * h + a] = BOX * testing_hash01(seed + 11, 3 * h + a);
    mass[h] = exp(log(1.2e12) + (log(3e14) - log(1.2e12)) * pow(testing_hash01(seed + 12, h), 2.0));
  }
}

static void random_weights(double *w, size_t nw, double scale, unsigned long seed) {
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, seed);
  for (size_t i = 0; i < nw; i++) w[i] = scale * (2 * gsl_rng_uniform(r) - 1);
  gsl_rng_free(r);
}

typedef struct setup {
  const char *name;
  int model;
  const char *layers; /* K:lmax:ch:act,... */
  int G;
  int masked;
  int n;
} setup;

static int parse_layers(const char *spec, npe_config *c) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", spec);
  c->n_layers = 0;
  char *save = NULL;
  for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int K, l, ch;
    char act[32];
    sscanf(t, "%d:%d:%d:%31s", &K, &l, &ch, act);
    int a = 0;
    for (int i = 0; i < 4; i++)
      if (!strcmp(act, npe_activation_name(i))) a = i;
    c->layer[c->n_layers++] = (npe_layer_config){K, l, ch, a};
  }
  return 0;
}

/* Build field, likelihood, data. */
typedef struct ctx {
  field *f;
  likelihood *lk;
  weights_arch arch;
  double *delta, *mask;
  size_t nw;
} ctx;

static int ctx_create(MPI_Comm comm, const setup *s, ctx *c) {
  memset(c, 0, sizeof *c);
  weights_arch_default(&c->arch);
  c->arch.model = s->model;
  parse_layers(s->layers, &c->arch.npe);
  c->arch.mdn.n_gauss = s->G;
  c->arch.mdn.M0 = 3.1e12;
  c->arch.mdn.A0 = 2.3e-3;
  CB_CALL(weights_arch_check(&c->arch));
  c->nw = weights_count(&c->arch);
  int g = s->model == WEIGHTS_NPE ? npe_ghost_width(&c->arch.npe) : 1;
  CB_CALL(field_create(comm, s->n, BOX, g, &c->f));
  CB_CALL(likelihood_create(c->f, &c->arch, &c->lk));
  c->delta = field_alloc_real(c->f);
  testing_wavy_delta(c->f, 0.8, 1.1, 5, c->delta);
  size_t nh = 70;
  double *pos = malloc(3 * nh * sizeof *pos), *mass = malloc(nh * sizeof *mass);
  make_halos(nh, pos, mass, 9);
  CB_CALL(likelihood_set_halos(c->lk, "test catalogue", nh, pos, mass, 2e12));
  free(pos);
  free(mass);
  if (s->masked) {
    c->mask = field_alloc_real(c->f);
    const ptrdiff_t n = c->f->n;
    for (ptrdiff_t v = 0; v < c->f->n_real_local; v++) {
      ptrdiff_t gv = c->f->local_0_start * n * n + v;
      double u = testing_hash01(77, (unsigned long)gv);
      c->mask[v] = u < 0.2 ? 0.0 : (u < 0.4 ? 0.37 : 1.0);
    }
    CB_CALL(likelihood_set_mask(c->lk, c->mask));
  }
  return CB_OK;
}

static void ctx_destroy(ctx *c) {
  likelihood_destroy(&c->lk);
  field_destroy(&c->f);
  if (c->delta) fftw_free(c->delta);
  if (c->mask) fftw_free(c->mask);
}

static double lnl(ctx *c, const double *delta, const double *w) {
  double v = NAN;
  int st = likelihood_evaluate(c->lk, delta, w, &v, NULL, NULL);
  TEST_CHECK(st == CB_OK, "evaluate failed: %s", status_message());
  return v;
}

static void check_fd(const char *name, double an, double fd, double scale, double h) {
  double err = fabs(an - fd), tol = 2e-6 * fmax(fabs(an), fabs(fd)) + 1e-13 * scale / h;
  if (!(err <= tol))
    testing_fail(__FILE__, __LINE__,
                 "%s: analytic %.12g vs finite difference %.12g (err %.3g > %.3g)", name, an, fd,
                 err, tol);
}

static void run_setup(MPI_Comm comm, const setup *s) {
  ctx c;
  int st = ctx_create(comm, s, &c);
  TEST_CHECK(st == CB_OK, "%s: setup failed: %s", s->name, status_message());
  if (st) {
    ctx_destroy(&c);
    return;
  }
  const size_t nw = c.nw, nv = (size_t)c.f->n_real_local;
  double *w = malloc(nw * sizeof *w), *gw = malloc(nw * sizeof *gw), *wp = malloc(nw * sizeof *wp);
  double *gd = field_alloc_real(c.f), *dp = field_alloc_real(c.f);
  random_weights(w, nw, 0.3, 1234 + nw);
  double L0 = NAN;
  st = likelihood_evaluate(c.lk, c.delta, w, &L0, gw, gd);
  TEST_CHECK(st == CB_OK && isfinite(L0), "%s: ln L = %g (%s)", s->name, L0, status_message());
  const double scale = 1.0 + fabs(L0);
  /* relu has kinks: a step that crosses one spoils the difference, so smaller steps there */
  const int kinks = strstr(s->layers, "relu") && s->model == WEIGHTS_NPE;
  const double hw = kinks ? 1e-7 : 1e-5, hd = kinks ? 1e-8 : 1e-6;
  char label[256];
  /* weights: each one (up to 40) or a random subset */
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 99);
  size_t nchk = nw <= 40 ? nw : 25;
  for (size_t t = 0; t < nchk; t++) {
    size_t i = nw <= 40 ? t : gsl_rng_uniform_int(r, nw);
    double h = hw;
    memcpy(wp, w, nw * sizeof *w);
    wp[i] = w[i] + h;
    double Lp = lnl(&c, c.delta, wp);
    wp[i] = w[i] - h;
    double Lm = lnl(&c, c.delta, wp);
    snprintf(label, sizeof label, "%s: d lnL / d w[%zu]", s->name, i);
    check_fd(label, gw[i], (Lp - Lm) / (2 * h), scale, h);
  }
  /* weights: two random directions */
  for (int d = 0; d < 2; d++) {
    double *dir = malloc(nw * sizeof *dir), an = 0, h = hw;
    for (size_t i = 0; i < nw; i++) an += gw[i] * (dir[i] = 2 * gsl_rng_uniform(r) - 1);
    for (size_t i = 0; i < nw; i++) wp[i] = w[i] + h * dir[i];
    double Lp = lnl(&c, c.delta, wp);
    for (size_t i = 0; i < nw; i++) wp[i] = w[i] - h * dir[i];
    double Lm = lnl(&c, c.delta, wp);
    snprintf(label, sizeof label, "%s: weights direction %d", s->name, d);
    check_fd(label, an, (Lp - Lm) / (2 * h), scale, h);
    free(dir);
  }
  /* delta: random directions (same on every rank count: hash of the global voxel) */
  const ptrdiff_t n = c.f->n, nn = n * n;
  for (int d = 0; d < 2; d++) {
    double an = 0, h = hd;
    double *dir = field_alloc_real(c.f);
    for (size_t v = 0; v < nv; v++) {
      dir[v] =
          2 * testing_hash01(300 + d, (unsigned long)(c.f->local_0_start * nn + (ptrdiff_t)v)) - 1;
      an += gd[v] * dir[v];
    }
    an = field_allreduce_sum(c.f, an);
    for (size_t v = 0; v < nv; v++) dp[v] = c.delta[v] + h * dir[v];
    double Lp = lnl(&c, dp, w);
    for (size_t v = 0; v < nv; v++) dp[v] = c.delta[v] - h * dir[v];
    double Lm = lnl(&c, dp, w);
    snprintf(label, sizeof label, "%s: delta direction %d", s->name, d);
    check_fd(label, an, (Lp - Lm) / (2 * h), scale, h);
    fftw_free(dir);
  }
  /* delta: single voxels on planes 0, n-1 and the first rank boundary */
  ptrdiff_t planes[4] = {0, n - 1, c.f->plane_start[c.f->size > 1 ? 1 : 0],
                         c.f->plane_start[c.f->size > 1 ? 1 : 0] - 1};
  for (int t = 0; t < 4; t++) {
    ptrdiff_t i = (planes[t] + n) % n, j = (3 * t + 1) % n, k = (5 * t + 2) % n;
    int own = i >= c.f->local_0_start && i < c.f->local_0_start + c.f->local_n0;
    size_t v = own ? (size_t)(((i - c.f->local_0_start) * n + j) * n + k) : 0;
    double an = own ? gd[v] : 0, h = hd;
    an = field_allreduce_sum(c.f, an);
    memcpy(dp, c.delta, nv * sizeof *dp);
    if (own) dp[v] += h;
    double Lp = lnl(&c, dp, w);
    if (own) dp[v] -= 2 * h;
    double Lm = lnl(&c, dp, w);
    snprintf(label, sizeof label, "%s: d lnL / d delta(%td,%td,%td)", s->name, i, j, k);
    check_fd(label, an, (Lp - Lm) / (2 * h), scale, h);
  }
  gsl_rng_free(r);

  /* the same numbers on rank 0 alone */
  int rank;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm solo;
  MPI_Comm_split(comm, rank == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
  double ref[2] = {0, 0};
  double *gw1 = calloc(nw, sizeof *gw1);
  double *gd1 = calloc((size_t)(n * nn), sizeof *gd1);
  if (rank == 0) {
    ctx c1;
    st = ctx_create(solo, s, &c1);
    TEST_CHECK(st == CB_OK, "%s: solo setup failed: %s", s->name, status_message());
    if (!st) {
      st = likelihood_evaluate(c1.lk, c1.delta, w, &ref[0], gw1, gd1);
      TEST_CHECK(st == CB_OK, "%s: solo evaluate: %s", s->name, status_message());
    }
    ctx_destroy(&c1);
    MPI_Comm_free(&solo);
  }
  MPI_Bcast(ref, 1, MPI_DOUBLE, 0, comm);
  MPI_Bcast(gw1, (int)nw, MPI_DOUBLE, 0, comm);
  MPI_Bcast(gd1, (int)(n * nn), MPI_DOUBLE, 0, comm);
  snprintf(label, sizeof label, "%s: ln L vs one rank", s->name);
  TEST_CLOSE(L0, ref[0], 1e-10, label);
  double gmax = 0, dmax = 0;
  for (size_t i = 0; i < nw; i++) gmax = fmax(gmax, fabs(gw1[i]));
  for (size_t i = 0; i < nw; i++) {
    if (!(fabs(gw[i] - gw1[i]) <= 1e-10 * gmax)) {
      testing_fail(__FILE__, __LINE__, "%s: grad_w[%zu] %.15g vs one rank %.15g", s->name, i, gw[i],
                   gw1[i]);
      break;
    }
  }
  for (ptrdiff_t v = 0; v < n * nn; v++) dmax = fmax(dmax, fabs(gd1[v]));
  for (size_t v = 0; v < nv; v++) {
    double ref1 = gd1[c.f->local_0_start * nn + (ptrdiff_t)v];
    if (!(fabs(gd[v] - ref1) <= 1e-10 * dmax)) {
      testing_fail(__FILE__, __LINE__, "%s: grad_delta[%zu] %.15g vs one rank %.15g", s->name, v,
                   gd[v], ref1);
      break;
    }
  }
  free(gw1);
  free(gd1);
  free(w);
  free(gw);
  free(wp);
  fftw_free(gd);
  fftw_free(dp);
  ctx_destroy(&c);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  const setup setups[] = {
      {"paper 3^3 lmax0 softplus G2", WEIGHTS_NPE, "3:0:1:softplus", 2, 0, 8},
      {"5^3 lmax0 tanh G1", WEIGHTS_NPE, "5:0:1:tanh", 1, 0, 8},
      {"3^3 lmax1 relu G3", WEIGHTS_NPE, "3:1:1:relu", 3, 0, 8},
      {"3^3 lmax2 identity G2", WEIGHTS_NPE, "3:2:1:identity", 2, 0, 8},
      {"5^3 lmax1 softplus G2", WEIGHTS_NPE, "5:1:1:softplus", 2, 0, 8},
      {"two channels identity G3", WEIGHTS_NPE, "3:0:2:identity", 3, 0, 8},
      {"two layers 3^3 x2 / 5^3 lmax1 tanh", WEIGHTS_NPE, "3:0:2:softplus,5:1:1:tanh", 2, 0, 8},
      {"two layers relu / softplus, mask", WEIGHTS_NPE, "3:1:1:relu,3:0:1:softplus", 2, 1, 12},
      {"power law G2", WEIGHTS_POWERLAW, "3:0:1:softplus", 2, 0, 8},
      {"power law G1, mask", WEIGHTS_POWERLAW, "3:0:1:softplus", 1, 1, 8},
  };
  for (size_t i = 0; i < sizeof setups / sizeof *setups; i++) run_setup(comm, &setups[i]);
  return testing_finish();
}
