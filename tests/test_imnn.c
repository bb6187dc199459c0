/* test_imnn: the IMNN's network, loss and files (include/cerberus/imnn.h) at 1-4 ranks.
 *
 * - the loss for one summary against its closed form (F = dmu^2 / C, the regulariser of
 *   MODEL.md section 9 written out), and its gradient with respect to every summary of a
 *   two-parameter set against central finite differences;
 * - the network's gradient with respect to every weight (identity, band-power and
 *   convolutional front ends; softplus, tanh and relu-free layers so that differences are
 *   smooth) against central finite differences, the convolution's on the distributed field;
 * - the whole chain, loss of a set of field simulations with respect to the weights;
 * - Adam's first step (|step| = lr per coordinate);
 * - a network file written and read back gives the same summaries; one of another input size
 *   is refused with a message naming the file; the band-power scale (ln P or P) is kept, and
 *   a file without it reads as ln P;
 * - linear band powers are exp of the log ones; the square activation and its slope;
 * - the quasi-ML estimate of a linear model of the summaries returns its parameters. */
#include "testing.h"

#include "cerberus/field.h"
#include "cerberus/imnn.h"
#include "cerberus/status.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fill_random(unsigned long seed, double *x, size_t n, double scale, double offset) {
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, seed);
  for (size_t i = 0; i < n; i++) x[i] = offset + scale * gsl_ran_gaussian(r, 1.0);
  gsl_rng_free(r);
}

/* A field from a seed: the same whole n^3 on every rank, each keeps its slab. */
static void field_random(const field *f, unsigned long seed, double amp, double *local) {
  const size_t n3 = (size_t)(f->n * f->n * f->n);
  double *all = malloc(n3 * sizeof(double));
  fill_random(seed, all, n3, amp, 0.0);
  /* a little large-scale structure so that band powers differ across shells */
  for (ptrdiff_t i = 0; i < f->n; i++)
    for (ptrdiff_t j = 0; j < f->n * f->n; j++)
      all[i * f->n * f->n + j] +=
          0.7 * amp * sin(6.283185307179586 * (double)i / (double)f->n + 0.3);
  memcpy(local, all + f->local_0_start * f->n * f->n, sizeof(double) * (size_t)f->n_real_local);
  free(all);
}

static void test_loss_closed_form(void) {
  /* p = 1: F = dmu^2 / C */
  const int ns = 5, nd = 3;
  double xf[5] = {0.3, 1.9, -0.7, 2.385, 0.41}, xp[3] = {1.2, 0.4, 2.0}, xm[3] = {0.9, 0.1, 1.5};
  imnn_stats st = {.p = 1, .theta_fid = {1.0}, .dtheta = {0.2}};
  imnn_reg reg;
  imnn_reg_default(&reg);
  imnn_loss L;
  TEST_STATUS(imnn_stats_compute(&reg, ns, xf, nd, xp, xm, &st, &L, NULL, NULL, NULL), CB_OK,
              "stats p = 1");
  double mu = 0, C = 0, dmu = 0;
  for (int i = 0; i < ns; i++) mu += xf[i] / ns;
  for (int i = 0; i < ns; i++) C += (xf[i] - mu) * (xf[i] - mu) / (ns - 1);
  for (int j = 0; j < nd; j++) dmu += (xp[j] - xm[j]) / (nd * 0.2);
  double F = dmu * dmu / C;
  double L2 = fabs(C - 1) + fabs(1 / C - 1);
  double alpha = -log(0.1 * 9 + 0.01 / 1.1) / 0.1;
  double r = 10 * L2 / (L2 + exp(-alpha * L2));
  TEST_CLOSE(st.F[0], F, 1e-13, "F = dmu^2 / C");
  TEST_CLOSE(L.loss, -log(F) + r * L2, 1e-13, "loss -ln F + r L2");
  TEST_CLOSE(alpha, 0.953101798043249, 1e-12, "alpha of lambda = 10, eps = 0.1");
  double th;
  double x = 1.7;
  imnn_estimate(&st, &x, &th);
  TEST_CLOSE(th, 1.0 + (x - mu) / dmu, 1e-13, "quasi-ML estimate, one parameter");
  /* bad inputs */
  st.dtheta[0] = 0;
  TEST_STATUS(imnn_stats_compute(&reg, ns, xf, nd, xp, xm, &st, &L, NULL, NULL, NULL), CB_ERR_INPUT,
              "zero dtheta");
  st.dtheta[0] = 0.2;
  double same[5] = {1, 1, 1, 1, 1};
  TEST_STATUS(imnn_stats_compute(&reg, ns, same, nd, xp, xm, &st, &L, NULL, NULL, NULL),
              CB_ERR_NUMERIC, "singular covariance");
  status_clear();
}

static double loss_of(const imnn_reg *reg, int ns, const double *xf, int nd, const double *xp,
                      const double *xm, imnn_stats st) {
  imnn_loss L;
  if (imnn_stats_compute(reg, ns, xf, nd, xp, xm, &st, &L, NULL, NULL, NULL)) return NAN;
  return L.loss;
}

static void test_loss_gradient(void) {
  const int p = 2, ns = 9, nd = 4;
  double xf[18], xp[16], xm[16], gf[18], gp[16], gm[16];
  fill_random(11, xf, 18, 1.7, 0.3);
  fill_random(12, xm, 16, 1.1, 0.0);
  for (int i = 0; i < 16; i++) xp[i] = xm[i] + 0.4 + 0.3 * sin(1.3 * i);
  imnn_stats st = {.p = p, .theta_fid = {1.0, 0.5}, .dtheta = {0.1, 0.05}};
  imnn_reg reg;
  imnn_reg_default(&reg);
  imnn_loss L;
  TEST_STATUS(imnn_stats_compute(&reg, ns, xf, nd, xp, xm, &st, &L, gf, gp, gm), CB_OK, "stats");
  TEST_CHECK(L.reg > 0.1, "the regulariser is active (%g)", L.reg);
  double *sets[3] = {xf, xp, xm}, *grads[3] = {gf, gp, gm};
  int sizes[3] = {18, 16, 16};
  double worst = 0;
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < sizes[k]; i++) {
      double *x = sets[k], x0 = x[i], h = 1e-5;
      x[i] = x0 + h;
      double lp = loss_of(&reg, ns, xf, nd, xp, xm, st);
      x[i] = x0 - h;
      double lm = loss_of(&reg, ns, xf, nd, xp, xm, st);
      x[i] = x0;
      double fd = (lp - lm) / (2 * h), an = grads[k][i];
      double err = fabs(fd - an) / fmax(1e-3, fabs(an));
      if (err > worst) worst = err;
      TEST_CHECK(err < 1e-6, "loss gradient set %d entry %d: analytic %.10g, FD %.10g", k, i, an,
                 fd);
    }
  if (testing_rank() == 0) printf("loss gradient: worst relative error %.2e\n", worst);
}

/* J(w) = c . f_w(data) through the whole network, and its gradient. */
static double net_J(imnn_net *net, const double *w, const double *data, const double *c, int p) {
  double x[IMNN_MAX_PARAMS];
  if (imnn_net_apply(net, w, data, x)) return NAN;
  double J = 0;
  for (int s = 0; s < p; s++) J += c[s] * x[s];
  return J;
}

static void check_net_gradient(imnn_net *net, const char *what, const double *data,
                               unsigned long seed) {
  const imnn_arch *a = imnn_net_arch(net);
  const size_t nw = imnn_arch_n_weights(a);
  const int p = a->n_params, nf = imnn_arch_n_features(a);
  double *w = malloc(nw * sizeof(double)), *g = calloc(nw, sizeof(double));
  double *feat = malloc((size_t)nf * sizeof(double)), *df = malloc((size_t)nf * sizeof(double));
  imnn_init_weights(a, seed, w);
  for (size_t i = 0; i < nw; i++) w[i] += 0.05 * sin(0.7 * (double)i + 0.2); /* no zero biases */
  double c[IMNN_MAX_PARAMS], x[IMNN_MAX_PARAMS];
  for (int s = 0; s < p; s++) c[s] = 1.3 - 0.9 * s;
  TEST_STATUS(imnn_net_features(net, w, data, feat), CB_OK, what);
  imnn_net_head(net, w, feat, x);
  imnn_net_head_backward(net, w, c, g, df);
  TEST_STATUS(imnn_net_front_backward(net, df, g), CB_OK, what);
  double worst = 0;
  size_t step = nw > 60 ? nw / 60 : 1;
  for (size_t i = 0; i < nw; i += step) {
    double w0 = w[i], h = 1e-5 * fmax(1.0, fabs(w0));
    w[i] = w0 + h;
    double jp = net_J(net, w, data, c, p);
    w[i] = w0 - h;
    double jm = net_J(net, w, data, c, p);
    w[i] = w0;
    double fd = (jp - jm) / (2 * h), err = fabs(fd - g[i]) / fmax(1e-4, fabs(g[i]));
    if (err > worst) worst = err;
    TEST_CHECK(err < 1e-5, "%s: weight %zu: analytic %.10g, FD %.10g", what, i, g[i], fd);
  }
  if (testing_rank() == 0)
    printf("%s: worst relative error %.2e over %zu weights\n", what, worst, (nw + step - 1) / step);
  free(w);
  free(g);
  free(feat);
  free(df);
}

static void test_net_gradients(MPI_Comm comm) {
  /* identity */
  imnn_arch a = {.front = IMNN_FRONT_IDENTITY, .n_input = 6, .n_hidden = 2, .n_params = 2};
  a.width[0] = 7;
  a.act[0] = NPE_SOFTPLUS;
  a.width[1] = 5;
  a.act[1] = NPE_TANH;
  imnn_net *net = NULL;
  TEST_STATUS(imnn_net_create(NULL, &a, &net), CB_OK, "identity net");
  double shift[6] = {0.1, -0.2, 0.3, 0, 0.5, 1.0}, scale[6] = {1.5, 0.7, 2.0, 1, 1.1, 0.9};
  TEST_STATUS(imnn_net_set_scaling(net, shift, scale), CB_OK, "scaling");
  double d[6] = {0.3, -1.2, 2.385, 0.7, -0.4, 1.9};
  check_net_gradient(net, "identity front end", d, 3);
  imnn_net_destroy(&net);
  TEST_CHECK(net == NULL, "destroy leaves NULL");

  /* band powers on a 8^3 field */
  field *f = NULL;
  TEST_STATUS(field_create(comm, 8, 97.3, 1, &f), CB_OK, "field 8^3");
  if (!f) return;
  double *data = field_alloc_real(f);
  field_random(f, 21, 1.3, data);
  a = (imnn_arch){
      .front = IMNN_FRONT_BANDPOWER, .n_input = 8, .box_size = 97.3, .n_hidden = 1, .n_params = 2};
  a.width[0] = 6;
  a.act[0] = NPE_SOFTPLUS;
  TEST_CHECK(imnn_arch_n_features(&a) == 7, "8^3: %d band powers, expected 7 (up to sqrt(3) 4)",
             imnn_arch_n_features(&a));
  TEST_STATUS(imnn_net_create(f, &a, &net), CB_OK, "bandpower net");
  check_net_gradient(net, "bandpower front end", data, 4);
  double flog[7], flin[7];
  TEST_STATUS(imnn_net_features(net, NULL, data, flog), CB_OK, "ln P features");
  imnn_net_destroy(&net);
  a.bp_scale = IMNN_BP_LINEAR; /* P itself: exp of the log features */
  TEST_STATUS(imnn_net_create(f, &a, &net), CB_OK, "linear bandpower net");
  check_net_gradient(net, "linear bandpower front end", data, 4);
  TEST_STATUS(imnn_net_features(net, NULL, data, flin), CB_OK, "P features");
  for (int i = 0; i < 7; i++)
    TEST_CLOSE(flin[i], exp(flog[i]), 1e-12, "band power: P against exp(ln P)");
  imnn_net_destroy(&net);
  a.bp_scale = 2;
  TEST_STATUS(imnn_arch_check(&a), CB_ERR_INPUT, "band-power scale 2 refused");
  status_clear();

  /* convolutions on the distributed field: two layers, a dipole kernel */
  a = (imnn_arch){
      .front = IMNN_FRONT_CONV, .n_input = 8, .box_size = 97.3, .n_hidden = 1, .n_params = 2};
  a.width[0] = 5;
  a.act[0] = NPE_TANH;
  a.conv.n_layers = 2;
  a.conv.linear_input = true;
  a.conv.layer[0] = (npe_layer_config){3, 1, 1, NPE_SOFTPLUS};
  a.conv.layer[1] = (npe_layer_config){3, 0, 2, NPE_TANH};
  TEST_STATUS(imnn_net_create(f, &a, &net), CB_OK, "conv net");
  double s0[3] = {0.2, 0.1, -0.3}, sc[3] = {1.4, 0.8, 2.1}; /* the field's, then 2 features */
  TEST_STATUS(imnn_net_set_scaling(net, s0, sc), CB_OK, "conv scaling");
  check_net_gradient(net, "conv front end", data, 5);
  imnn_net_destroy(&net);
  /* one layer of square channels (quadratic statistics of the field) and a linear head */
  TEST_CLOSE(npe_activate(NPE_SQUARE, -1.7), 2.89, 1e-15, "square(-1.7)");
  TEST_CLOSE(npe_activate_deriv(NPE_SQUARE, -1.7), -3.4, 1e-15, "square'(-1.7)");
  TEST_CHECK(npe_activation_index("square") == NPE_SQUARE &&
                 !strcmp(npe_activation_name(NPE_SQUARE), "square"),
             "the square activation by name");
  a.n_hidden = 0;
  a.conv.n_layers = 1;
  a.conv.layer[0] = (npe_layer_config){3, 0, 3, NPE_SQUARE};
  TEST_STATUS(imnn_net_create(f, &a, &net), CB_OK, "square conv net");
  double s1[4] = {0.2, 0.9, 1.1, 0.7}, sc1[4] = {1.4, 0.8, 2.1, 1.3};
  TEST_STATUS(imnn_net_set_scaling(net, s1, sc1), CB_OK, "square conv scaling");
  check_net_gradient(net, "square conv front end", data, 5);
  imnn_net_destroy(&net);
  fftw_free(data);
  field_destroy(&f);
}

/* The whole chain: loss of n_s + 2 n_d field simulations with respect to the weights, with the
 * gradient assembled as the trainer does (dL/dx per simulation, then the network's reverse). */
static double chain_loss(imnn_net *net, const double *w, double **sims, int ns, int nd,
                         double *xall, imnn_stats *st, double *gw) {
  const int p = 2;
  double feat[64];
  for (int i = 0; i < ns + 2 * nd; i++) {
    if (imnn_net_apply(net, w, sims[i], xall + i * p)) return NAN;
  }
  imnn_reg reg;
  imnn_reg_default(&reg);
  imnn_loss L;
  double g[64];
  /* one parameter's pairs for parameter 0 and 1 alike: nd pairs split as (a = 0: first half) */
  int ndp = nd / 2;
  if (imnn_stats_compute(&reg, ns, xall, ndp, xall + ns * p, xall + (ns + nd) * p, st, &L,
                         gw ? g : NULL, gw ? g + ns * p : NULL, gw ? g + (ns + nd) * p : NULL))
    return NAN;
  if (gw) {
    double df[64];
    for (int i = 0; i < ns + 2 * nd; i++) {
      if (imnn_net_features(net, w, sims[i], feat)) return NAN;
      double x[IMNN_MAX_PARAMS];
      imnn_net_head(net, w, feat, x);
      imnn_net_head_backward(net, w, g + i * p, gw, df);
      if (imnn_net_front_backward(net, df, gw)) return NAN;
    }
  }
  return L.loss;
}

static void test_chain_gradient(MPI_Comm comm) {
  field *f = NULL;
  TEST_STATUS(field_create(comm, 8, 61.7, 1, &f), CB_OK, "field 8^3");
  if (!f) return;
  imnn_arch a = {
      .front = IMNN_FRONT_CONV, .n_input = 8, .box_size = 61.7, .n_hidden = 1, .n_params = 2};
  a.width[0] = 4;
  a.act[0] = NPE_SOFTPLUS;
  a.conv.n_layers = 1;
  a.conv.linear_input = true;
  a.conv.layer[0] = (npe_layer_config){3, 0, 3, NPE_SOFTPLUS};
  imnn_net *net = NULL;
  TEST_STATUS(imnn_net_create(f, &a, &net), CB_OK, "conv net");
  const int ns = 6, nd = 4; /* 2 pairs per parameter */
  double *sims[14];
  for (int i = 0; i < ns + 2 * nd; i++) {
    sims[i] = field_alloc_real(f);
    /* derivative pairs: the same seed, amplitudes apart */
    int seed = i < ns ? 100 + i : 200 + (i - ns) % nd;
    double amp = i < ns ? 1.0 : (i < ns + nd ? 1.1 : 0.9);
    field_random(f, (unsigned long)seed, amp, sims[i]);
  }
  const size_t nw = imnn_arch_n_weights(&a);
  double *w = malloc(nw * sizeof(double)), *g = calloc(nw, sizeof(double));
  imnn_init_weights(&a, 9, w);
  for (size_t i = nw - 10; i < nw; i++) w[i] *= 40; /* summaries that vary: C of order 1 */
  double xall[64];
  imnn_stats st = {.p = 2, .theta_fid = {1, 1}, .dtheta = {0.2, 0.3}};
  double L0 = chain_loss(net, w, sims, ns, nd, xall, &st, g);
  TEST_CHECK(isfinite(L0), "chain loss finite (%g): %s", L0, status_message());
  if (testing_rank() == 0) printf("chain: loss %g, C = %g %g %g\n", L0, st.C[0], st.C[1], st.C[3]);
  double worst = 0, gmax = 0;
  for (size_t i = 0; i < nw; i++) gmax = fmax(gmax, fabs(g[i]));
  for (size_t i = 0; i < nw; i += 2) {
    double w0 = w[i], h = 1e-5;
    w[i] = w0 + h;
    double lp = chain_loss(net, w, sims, ns, nd, xall, &st, NULL);
    w[i] = w0 - h;
    double lm = chain_loss(net, w, sims, ns, nd, xall, &st, NULL);
    w[i] = w0;
    /* relative error, with the rounding of the loss differences (|L| 1e-13 / h) as a floor */
    double fd = (lp - lm) / (2 * h),
           err = fabs(fd - g[i]) / fmax(fmax(1e-4 * gmax, 1e-9 * fabs(L0) / h), fabs(g[i]));
    if (err > worst) worst = err;
    TEST_CHECK(err < 1e-5, "chain: weight %zu: analytic %.10g, FD %.10g", i, g[i], fd);
  }
  if (testing_rank() == 0)
    printf("loss through the network: worst relative error %.2e (largest gradient %.3g)\n", worst,
           gmax);
  for (int i = 0; i < ns + 2 * nd; i++) fftw_free(sims[i]);
  free(w);
  free(g);
  imnn_net_destroy(&net);
  field_destroy(&f);
}

static void test_adam(void) {
  imnn_adam *ad = NULL;
  TEST_STATUS(imnn_adam_create(3, 0.01, &ad), CB_OK, "adam");
  double w[3] = {1, 2, 3}, g[3] = {2.385, -0.5, 1e-3};
  imnn_adam_step(ad, w, g);
  TEST_CLOSE(w[0], 1 - 0.01, 1e-6, "first Adam step, positive gradient");
  TEST_CLOSE(w[1], 2 + 0.01, 1e-6, "first Adam step, negative gradient");
  TEST_CLOSE(w[2], 3 - 0.01 * 1e-3 / (1e-3 + 1e-8), 1e-6, "first Adam step, small gradient");
  imnn_adam_destroy(&ad);
  TEST_CHECK(ad == NULL, "adam destroy leaves NULL");
}

static void test_files(MPI_Comm comm) {
  imnn_arch a = {.front = IMNN_FRONT_IDENTITY, .n_input = 4, .n_hidden = 1, .n_params = 2};
  a.width[0] = 3;
  a.act[0] = NPE_TANH;
  imnn_model *m = NULL;
  TEST_STATUS(imnn_model_alloc(&a, &m), CB_OK, "model");
  if (!m) return;
  imnn_init_weights(&a, 7, m->w);
  for (int i = 0; i < 4; i++) {
    m->shift[i] = 0.1 * i;
    m->scale[i] = 1 + 0.2 * i;
  }
  imnn_stats *s = &m->stats;
  s->theta_fid[0] = 1;
  s->theta_fid[1] = 0.5;
  s->dtheta[0] = 0.1;
  s->dtheta[1] = 0.05;
  double C[4] = {1.2, 0.3, 0.3, 0.8}, D[4] = {2.0, 0.5, -0.4, 1.5};
  memcpy(s->C, C, sizeof C);
  memcpy(s->dmu, D, sizeof D);
  /* F = D C^-1 D^T */
  double det = 1.2 * 0.8 - 0.09, Ci[4] = {0.8 / det, -0.3 / det, -0.3 / det, 1.2 / det};
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++) {
      double v = 0;
      for (int k = 0; k < 2; k++)
        for (int l = 0; l < 2; l++) v += D[i * 2 + k] * Ci[k * 2 + l] * D[j * 2 + l];
      s->F[i * 2 + j] = v;
    }
  s->mu[0] = 0.3;
  s->mu[1] = -0.2;
  strcpy(m->simulator, "gaussian");
  char path[256];
  snprintf(path, sizeof path, "test_imnn_%d.h5", (int)getpid());
  int pid = (int)getpid();
  MPI_Bcast(&pid, 1, MPI_INT, 0, comm);
  snprintf(path, sizeof path, "test_imnn_%d.h5", pid);
  TEST_STATUS(imnn_model_write(comm, path, true, m, NULL, NULL, 0), CB_OK, "write network");
  imnn_model *r = NULL;
  TEST_STATUS(imnn_model_read(comm, path, 4, &r), CB_OK, "read network");
  if (r) {
    imnn_net *n1 = NULL, *n2 = NULL;
    imnn_net_create(NULL, &m->arch, &n1);
    imnn_net_create(NULL, &r->arch, &n2);
    imnn_net_set_scaling(n1, m->shift, m->scale);
    imnn_net_set_scaling(n2, r->shift, r->scale);
    double d[4] = {0.3, -1.1, 2.385, 0.6}, x1[2], x2[2], t1[2], t2[2];
    imnn_net_apply(n1, m->w, d, x1);
    imnn_net_apply(n2, r->w, d, x2);
    TEST_CHECK(x1[0] == x2[0] && x1[1] == x2[1], "summaries after a round trip");
    /* the estimate inverts a linear model: x = mu + D^T (theta - theta*) */
    double th[2] = {1.37, 0.29}, x[2];
    for (int k = 0; k < 2; k++)
      x[k] = r->stats.mu[k] + D[0 * 2 + k] * (th[0] - 1) + D[1 * 2 + k] * (th[1] - 0.5);
    imnn_estimate(&r->stats, x, t1);
    TEST_CLOSE(t1[0], th[0], 1e-12, "quasi-ML estimate of a linear model, theta_0");
    TEST_CLOSE(t1[1], th[1], 1e-12, "quasi-ML estimate of a linear model, theta_1");
    imnn_estimate(&r->stats, r->stats.mu, t2);
    double rho = imnn_fisher_distance(&r->stats, x, r->stats.mu), q = 0;
    double dt[2] = {t1[0] - t2[0], t1[1] - t2[1]};
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) q += dt[i] * s->F[i * 2 + j] * dt[j];
    TEST_CLOSE(rho, sqrt(q), 1e-12, "Fisher distance");
    TEST_CHECK(!strcmp(r->simulator, "gaussian"), "simulator name '%s'", r->simulator);
    imnn_net_destroy(&n1);
    imnn_net_destroy(&n2);
  }
  imnn_model_destroy(&r);
  /* another input size */
  TEST_STATUS(imnn_model_read(comm, path, 10, &r), CB_ERR_INPUT, "network of another size");
  TEST_CHECK(strstr(status_message(), path) != NULL, "the message names the file: %s",
             status_message());
  TEST_CHECK(r == NULL, "no model after a refusal");
  status_clear();
  MPI_Barrier(comm);
  if (testing_rank() == 0) remove(path);
  const imnn_stats saved = m->stats;
  imnn_model_destroy(&m);

  /* the band-power scale is kept in the file; a file without it (written before the choice
   * existed) reads as ln P */
  imnn_arch b = {.front = IMNN_FRONT_BANDPOWER,
                 .n_input = 8,
                 .box_size = 97.3,
                 .bp_scale = IMNN_BP_LINEAR,
                 .n_params = 2};
  TEST_STATUS(imnn_model_alloc(&b, &m), CB_OK, "bandpower model");
  if (!m) return;
  m->stats = saved; /* the statistics of the identity network */
  TEST_STATUS(imnn_model_write(comm, path, true, m, NULL, NULL, 0), CB_OK, "write bandpower");
  TEST_STATUS(imnn_model_read(comm, path, 8, &r), CB_OK, "read bandpower");
  TEST_CHECK(r && r->arch.bp_scale == IMNN_BP_LINEAR, "linear scale read back");
  imnn_model_destroy(&r);
  MPI_Barrier(comm);
  if (testing_rank() == 0) { /* strip the attribute as an old file lacks it */
    hid_t h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    TEST_CHECK(h >= 0 && H5Adelete(h, "bandpower_scale") >= 0, "delete the attribute");
    H5Fclose(h);
  }
  MPI_Barrier(comm);
  TEST_STATUS(imnn_model_read(comm, path, 8, &r), CB_OK, "read an old bandpower file");
  TEST_CHECK(r && r->arch.bp_scale == IMNN_BP_LOG, "no attribute: ln P");
  imnn_model_destroy(&r);
  imnn_model_destroy(&m);
  MPI_Barrier(comm);
  if (testing_rank() == 0) remove(path);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  if (testing_init(&argc, &argv, &comm)) return 1;
  test_loss_closed_form();
  test_loss_gradient();
  test_net_gradients(comm);
  test_chain_gradient(comm);
  test_adam();
  test_files(comm);
  return testing_finish();
}
