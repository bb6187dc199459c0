/* cmd_imnn: `cerberus imnn train | compress | fisher | simulate`, information maximising neural
 * networks (MODEL.md section 9).
 *
 *   cerberus imnn train -simulator grf -front bandpower -n_s 1000 -n_d 500 -o NET [-overwrite]
 *       trains a network (src/lfi/imnn_train.c) on simulations spread over rank groups of
 *       -group_size ranks and writes NET: the network, its fiducial statistics (/F, /C, /mu,
 *       /dmu_dtheta of the validation set at the best weights), /history (epoch, loss, ln det F,
 *       det F train, det F validation, regulariser, L2), /F_exact where the simulator knows it,
 *       /test_theta and /test_estimate (quasi-ML estimates of -n_test simulations). Prints the
 *       fraction of the exact det F reached on validation where it is known.
 *   cerberus imnn compress -network NET -data FILE [-dataset NAME] [-o OUT]
 *       summaries, quasi-ML estimates theta* + F^-1 dmu C^-1 (x - mu) and Fisher error bars
 *       sqrt(diag F^-1) of the data: a vector (or a table of rows, one simulation each) for the
 *       identity front end, an n^3 field (/delta by default, with box_size) for the others.
 *   cerberus imnn fisher -simulator gaussian|grf [-theta a,b]
 *       the exact Fisher matrix of the simulator at theta (default its fiducial).
 *   cerberus imnn simulate -simulator grf -theta 1,0.5 -seed 5 [-n_grid 32] -o FILE
 *       one simulation at theta (default the fiducial) and seed, written as `compress -data`
 *       reads it (simulator_write): /delta (a field, with box_size and n_grid) or /data (a
 *       vector), /theta_true, the options and the code version.
 * Collective. */
#include "cerberus/commands.h"
#include "cerberus/groups.h"
#include "cerberus/h5io.h"
#include "cerberus/imnn.h"
#include "cerberus/imnn_train.h"
#include "cerberus/log.h"
#include "cerberus/options.h"
#include "cerberus/simulator.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* det of a small symmetric positive-definite matrix through its ln det (imnn_stats). */
static double det_small(int p, const double *A) {
  if (p == 1) return A[0];
  if (p == 2) return A[0] * A[3] - A[1] * A[2];
  double M[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS], det = 1;
  memcpy(M, A, sizeof(double) * (size_t)(p * p));
  for (int k = 0; k < p; k++) { /* Gaussian elimination without pivoting (SPD) */
    det *= M[k * p + k];
    for (int i = k + 1; i < p; i++) {
      double f = M[i * p + k] / M[k * p + k];
      for (int j = k; j < p; j++) M[i * p + j] -= f * M[k * p + j];
    }
  }
  return det;
}

/* -theta_fid and -dtheta for a simulator of p parameters (defaults: its fiducial, 10% of it). */
static int point_options(options *o, const simulator_type *t, imnn_stats *st) {
  int n = 0;
  bool set = false;
  double v[IMNN_MAX_PARAMS];
  const int p = t->n_params;
  st->p = p;
  CB_CALL(options_real_array(o, "-theta_fid", "fiducial parameters (default: the simulator's)", v,
                             &n, IMNN_MAX_PARAMS, &set));
  CB_CHECK(!set || n == p, CB_ERR_INPUT, "-theta_fid: %d values given, simulator '%s' has %d", n,
           t->name, p);
  for (int a = 0; a < p; a++) st->theta_fid[a] = set ? v[a] : t->fiducial[a];
  CB_CALL(options_real_array(o, "-dtheta", "finite-difference steps (default: 10% of theta_fid)", v,
                             &n, IMNN_MAX_PARAMS, &set));
  CB_CHECK(!set || n == p, CB_ERR_INPUT, "-dtheta: %d values given, simulator '%s' has %d", n,
           t->name, p);
  for (int a = 0; a < p; a++) {
    st->dtheta[a] = set ? v[a] : 0.1 * (st->theta_fid[a] != 0 ? fabs(st->theta_fid[a]) : 1.0);
    CB_CHECK(st->dtheta[a] != 0 && isfinite(st->dtheta[a]), CB_ERR_INPUT,
             "-dtheta: the step of parameter %d (%s) is %g; it must be non-zero", a,
             t->param_names[a], st->dtheta[a]);
  }
  return CB_OK;
}

static int train_run(options *o, MPI_Comm comm) {
  char name[64], out[4096];
  simulator_config scfg;
  imnn_arch arch;
  memset(&arch, 0, sizeof arch);
  imnn_train_config cfg = {0};
  imnn_reg_default(&cfg.reg);
  long n_s, n_d, n_val, n_d_val, n_test, epochs, patience, renew, gsize, seed, init_seed;
  bool overwrite = false;
  imnn_stats point = {0};
  CB_CALL(simulator_options(o, "gaussian", name, sizeof name, &scfg));
  const simulator_type *type = NULL;
  CB_CALL(simulator_lookup(name, &type));
  CB_CALL(point_options(o, type, &point));
  CB_CALL(imnn_arch_from_options(o, &arch));
  CB_CALL(options_int(o, "-n_s", "fiducial training simulations", 1000, &n_s));
  CB_CALL(options_int(o, "-n_d", "seed-matched derivative pairs per parameter", 500, &n_d));
  CB_CALL(options_int(o, "-n_val", "fiducial validation simulations (0: n_s)", 0, &n_val));
  CB_CALL(options_int(o, "-n_d_val", "validation pairs per parameter (0: n_d n_val / n_s)", 0,
                      &n_d_val));
  CB_CALL(options_int(o, "-n_test", "test simulations for the estimates", 100, &n_test));
  CB_CALL(options_int(o, "-epochs", "largest number of epochs", 500, &epochs));
  CB_CALL(options_int(o, "-patience", "epochs without a better validation det F", 50, &patience));
  CB_CALL(options_int(o, "-renew_every", "new training simulations every so many epochs (0: never)",
                      0, &renew));
  CB_CALL(options_real(o, "-learning_rate", "Adam's learning rate", 1e-3, &cfg.lr));
  long nbatch = 1;
  CB_CALL(options_int(o, "-n_batches", "Adam steps an epoch (the training set in batches)", 1,
                      &nbatch));
  cfg.n_batches = (int)nbatch;
  CB_CALL(options_int(o, "-group_size", "ranks per simulation group", 1, &gsize));
  CB_CALL(options_int(o, "-seed", "campaign seed of the simulations", 1, &seed));
  CB_CHECK(seed >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", seed);
  CB_CALL(options_int(o, "-init_seed", "seed of the initial weights", 1, &init_seed));
  CB_CALL(options_string(o, "-o", "output network file (HDF5)", NULL, out, sizeof out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &overwrite));
  CB_CALL(options_finish(o));
  CB_CHECK(out[0], CB_ERR_INPUT, "no output given (-o FILE)");
  CB_CHECK(n_s >= 2 && n_s <= 10000000, CB_ERR_INPUT, "-n_s must be 2 to 1e7 (got %ld)", n_s);
  CB_CHECK(n_d >= 1 && n_d <= n_s, CB_ERR_INPUT,
           "-n_d %ld must be 1 to -n_s %ld (each pair takes the seed of a fiducial simulation)",
           n_d, n_s);
  cfg.n_s = (int)n_s;
  cfg.n_d = (int)n_d;
  cfg.n_val = (int)(n_val > 0 ? n_val : n_s);
  cfg.n_d_val = (int)(n_d_val > 0 ? n_d_val : (n_d * cfg.n_val + n_s - 1) / n_s); /* as n_d/n_s */
  cfg.n_test = (int)(n_test > 0 ? n_test : 0);
  cfg.max_epochs = (int)epochs;
  cfg.patience = (int)patience;
  cfg.renew_every = (int)renew;
  cfg.seed = (uint64_t)seed;
  cfg.init_seed = (unsigned long)init_seed;
  CB_CALL(h5io_check_output(comm, out, overwrite));

  groups *g = NULL;
  simulator *sim = NULL;
  imnn_model *m = NULL;
  imnn_train_result res = {0};
  double Fex[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  bool have_exact = false;
  CB_CALL(groups_create(comm, (int)gsize, &g));
  int st = simulator_create(g->comm, name, &scfg, &sim);
  if (!st) {
    arch.n_params = sim->n_params;
    arch.n_input = sim->is_field ? (long)scfg.n_grid : (long)sim->n_data;
    arch.box_size = sim->is_field ? scfg.box_size : 0;
    st = imnn_model_alloc(&arch, &m);
  }
  if (!st) {
    char d[512];
    imnn_arch_describe(&arch, d, sizeof d);
    log_info("imnn train: %s on %d group(s) of %ld rank(s); network %s", name, g->n_groups, gsize,
             d);
    m->stats = point;
    snprintf(m->simulator, sizeof m->simulator, "%s", name);
    st = imnn_train(g, sim, m, &cfg, &res);
  }
  const int p = arch.n_params;
  if (!st && simulator_has_exact(sim)) {
    st = simulator_fisher(sim, point.theta_fid, Fex);
    have_exact = !st;
  }
  if (!st) {
    double detv = exp(m->stats.ln_det_F);
    log_info("imnn train: best epoch %d of %d, validation det F %.6g; %ld simulations in %.1f s "
             "(%.1f /s)",
             res.best_epoch, res.n_epochs, detv, res.n_sims, res.wall, res.n_sims / res.wall);
    for (int a = 0; a < p; a++) { /* steps far beyond the error bar are exploited by the fit */
      double sig = 1.0 / sqrt(have_exact ? Fex[a * p + a] : m->stats.F[a * p + a]);
      if (point.dtheta[a] > sig)
        log_warn("imnn train: -dtheta of parameter %d (%s) is %.3g, %.1f times its conditional "
                 "error bar %.3g: finite differences that large can be gamed by the network "
                 "(det F above the truth); take a step below the error bar",
                 a, type->param_names[a], point.dtheta[a], point.dtheta[a] / sig, sig);
    }
    if (have_exact) {
      double dex = det_small(p, Fex);
      if (g->world_rank == 0)
        printf("fraction of the exact det F reached on validation: %.4f (det F %.6g of %.6g)\n",
               detv / dex, detv, dex);
    }
    imnn_extra ex[4];
    int nex = 0;
    ex[nex++] = (imnn_extra){"/history", 2, {(size_t)res.n_epochs, IMNN_HISTORY_COLS}, res.history};
    if (have_exact) ex[nex++] = (imnn_extra){"/F_exact", 2, {(size_t)p, (size_t)p}, Fex};
    if (cfg.n_test > 0) {
      ex[nex++] = (imnn_extra){"/test_theta", 2, {(size_t)cfg.n_test, (size_t)p}, res.test_theta};
      ex[nex++] = (imnn_extra){"/test_estimate", 2, {(size_t)cfg.n_test, (size_t)p}, res.test_est};
    }
    st = imnn_model_write(comm, out, overwrite, m, o, ex, nex);
  }
  if (!st) log_info("imnn train: wrote %s", out);
  imnn_train_result_free(&res);
  imnn_model_destroy(&m);
  simulator_destroy(&sim);
  groups_destroy(&g);
  CB_CALL(st);
  return CB_OK;
}

static void print_estimate(const imnn_model *m, int row, const double *x, const double *th) {
  const int p = m->stats.p;
  printf("%d summaries", row);
  for (int s = 0; s < p; s++) printf(" %.10g", x[s]);
  printf("  estimate");
  for (int a = 0; a < p; a++) printf(" %.10g +- %.4g", th[a], sqrt(m->stats.Finv[a * p + a]));
  printf("\n");
}

static int compress_run(options *o, MPI_Comm comm) {
  char npath[4096], dpath[4096], dset[256], out[4096];
  bool overwrite = false, have_out = false, have_dset = false;
  CB_CALL(
      options_string(o, "-network", "network file (imnn train)", NULL, npath, sizeof npath, NULL));
  CB_CALL(options_string(o, "-data", "data file (HDF5)", NULL, dpath, sizeof dpath, NULL));
  CB_CALL(options_string(o, "-dataset", "dataset (default /data for vectors, /delta for fields)",
                         NULL, dset, sizeof dset, &have_dset));
  CB_CALL(
      options_string(o, "-o", "output file (HDF5), optional", NULL, out, sizeof out, &have_out));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &overwrite));
  CB_CALL(options_finish(o));
  CB_CHECK(npath[0], CB_ERR_INPUT, "no network given (-network FILE)");
  CB_CHECK(dpath[0], CB_ERR_INPUT, "no data given (-data FILE)");
  if (have_out) CB_CALL(h5io_check_output(comm, out, overwrite));
  imnn_model *m = NULL;
  CB_CALL(imnn_model_read(comm, npath, 0, &m));
  const imnn_arch *a = &m->arch;
  const int p = a->n_params;
  imnn_net *net = NULL;
  field *f = NULL;
  double *data = NULL, *x = NULL, *th = NULL;
  size_t nrows = 1;
  int st = CB_OK;
  if (a->front == IMNN_FRONT_IDENTITY) {
    h5file *h = NULL;
    size_t nc = 0;
    st = h5io_open(comm, dpath, &h);
    if (!st) st = h5io_read_rows_all(h, have_dset ? dset : "/data", &nc, &nrows, &data);
    h5io_close(&h);
    if (!st) { /* a vector, or rows of vectors */
      long len = nc ? (long)nc : (long)nrows;
      if (!nc) nrows = 1;
      st = imnn_model_check_input(m, npath, len);
    }
    if (!st) st = imnn_net_create(NULL, a, &net);
  } else {
    st = h5io_read_field_file(comm, dpath, have_dset ? dset : "/delta",
                              a->front == IMNN_FRONT_CONV ? npe_ghost_width(&a->conv) : 1, &f,
                              &data);
    if (!st) st = imnn_model_check_input(m, npath, (long)f->n);
    if (!st && fabs(f->L - a->box_size) > 1e-9 * a->box_size)
      st = CB_ERROR(CB_ERR_INPUT, "network '%s' was trained in a box of %g Mpc/h but '%s' is %g",
                    npath, a->box_size, dpath, f->L);
    if (!st) st = imnn_net_create(f, a, &net);
  }
  if (!st) st = imnn_net_set_scaling(net, m->shift, m->scale);
  if (!st) {
    x = calloc(nrows * (size_t)p, sizeof(double));
    th = calloc(nrows * (size_t)p, sizeof(double));
    if (!x || !th) st = CB_ERROR(CB_ERR_MEM, "out of memory for the summaries");
  }
  const size_t stride = a->front == IMNN_FRONT_IDENTITY ? (size_t)a->n_input : 0;
  for (size_t r = 0; !st && r < nrows; r++) {
    st = imnn_net_apply(net, m->w, data + r * stride, x + r * p);
    if (!st) imnn_estimate(&m->stats, x + r * p, th + r * p);
  }
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (!st && rank == 0)
    for (size_t r = 0; r < nrows; r++) print_estimate(m, (int)r, x + r * p, th + r * p);
  if (!st && have_out) {
    h5file *h = NULL;
    double sig[IMNN_MAX_PARAMS];
    for (int b = 0; b < p; b++) sig[b] = sqrt(m->stats.Finv[b * p + b]);
    size_t dims[2] = {nrows, (size_t)p}, pp = (size_t)p;
    st = h5io_create(comm, out, overwrite, &h);
    if (!st) st = h5io_write_provenance(h, o);
    if (!st) st = h5io_write_array(h, "/summaries", 2, dims, x);
    if (!st) st = h5io_write_array(h, "/theta", 2, dims, th);
    if (!st) st = h5io_write_array(h, "/sigma", 1, &pp, sig);
    if (!st)
      st = h5io_commit(&h);
    else
      h5io_abort(&h);
  }
  imnn_net_destroy(&net);
  if (f) {
    fftw_free(data);
    field_destroy(&f);
  } else {
    free(data);
  }
  free(x);
  free(th);
  imnn_model_destroy(&m);
  CB_CALL(st);
  return CB_OK;
}

static int fisher_run(options *o, MPI_Comm comm) {
  char name[64];
  simulator_config scfg;
  CB_CALL(simulator_options(o, "gaussian", name, sizeof name, &scfg));
  const simulator_type *type = NULL;
  CB_CALL(simulator_lookup(name, &type));
  double th[IMNN_MAX_PARAMS];
  int n = 0;
  bool set = false;
  CB_CALL(options_real_array(o, "-theta", "parameters (default: the simulator's fiducial)", th, &n,
                             IMNN_MAX_PARAMS, &set));
  CB_CALL(options_finish(o));
  const int p = type->n_params;
  CB_CHECK(!set || n == p, CB_ERR_INPUT, "-theta: %d values given, simulator '%s' has %d", n, name,
           p);
  if (!set)
    for (int a = 0; a < p; a++) th[a] = type->fiducial[a];
  simulator *sim = NULL;
  CB_CALL(simulator_create(comm, name, &scfg, &sim));
  double F[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  int st = simulator_has_exact(sim)
               ? simulator_fisher(sim, th, F)
               : CB_ERROR(CB_ERR_INPUT, "simulator '%s' has no exact Fisher matrix", name);
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (!st && rank == 0) {
    printf("exact Fisher matrix of '%s' at theta =", name);
    for (int a = 0; a < p; a++) printf(" %g", th[a]);
    printf("\n");
    for (int a = 0; a < p; a++) {
      for (int b = 0; b < p; b++) printf(" %.10g", F[a * p + b]);
      printf("\n");
    }
    printf("det F = %.10g\n", det_small(p, F));
  }
  simulator_destroy(&sim);
  CB_CALL(st);
  return CB_OK;
}

static int simulate_run(options *o, MPI_Comm comm) {
  char name[64], out[4096], dset[256];
  simulator_config scfg;
  bool overwrite = false, set = false, have_dset = false;
  long seed = 1;
  double th[IMNN_MAX_PARAMS];
  int n = 0;
  CB_CALL(simulator_options(o, "grf", name, sizeof name, &scfg));
  const simulator_type *type = NULL;
  CB_CALL(simulator_lookup(name, &type));
  CB_CALL(options_real_array(o, "-theta", "parameters (default: the simulator's fiducial)", th, &n,
                             IMNN_MAX_PARAMS, &set));
  CB_CALL(options_int(o, "-seed", "seed of the simulation", 1, &seed));
  CB_CHECK(seed >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", seed);
  CB_CALL(options_string(o, "-dataset", "dataset (default /delta for fields, /data for vectors)",
                         NULL, dset, sizeof dset, &have_dset));
  CB_CALL(options_string(o, "-o", "output file (HDF5)", NULL, out, sizeof out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &overwrite));
  CB_CALL(options_finish(o));
  const int p = type->n_params;
  CB_CHECK(out[0], CB_ERR_INPUT, "no output given (-o FILE)");
  CB_CHECK(!set || n == p, CB_ERR_INPUT, "-theta: %d values given, simulator '%s' has %d", n, name,
           p);
  CB_CHECK(seed >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", seed);
  for (int a = 0; a < p; a++) {
    if (!set) th[a] = type->fiducial[a];
    CB_CHECK(isfinite(th[a]), CB_ERR_INPUT, "-theta: parameter %d (%s) is %g", a,
             type->param_names[a], th[a]);
  }
  CB_CALL(h5io_check_output(comm, out, overwrite));
  simulator *sim = NULL;
  CB_CALL(simulator_create(comm, name, &scfg, &sim));
  if (!have_dset) snprintf(dset, sizeof dset, "%s", sim->is_field ? "/delta" : "/data");
  double *d = calloc(sim->n_local + 1, sizeof(double));
  int st = d ? simulator_run(sim, th, (uint64_t)seed, d)
             : CB_ERROR(CB_ERR_MEM, "out of memory for a simulation");
  if (!st && !simulator_data_finite(sim, d))
    st = CB_ERROR(CB_ERR_INPUT,
                  "-theta: simulator '%s' gives data that are not finite there (parameters "
                  "outside its range?)",
                  name);
  if (!st) st = simulator_write(sim, th, (uint64_t)seed, d, out, dset, overwrite, o);
  if (!st) log_info("imnn simulate: %s, seed %ld -> %s:%s", name, seed, out, dset);
  free(d);
  simulator_destroy(&sim);
  CB_CALL(st);
  return CB_OK;
}

int cmd_imnn(int argc, char **argv, MPI_Comm comm) {
  const char *sub = argc > 0 ? argv[0] : "";
  int (*run)(options *, MPI_Comm) = NULL;
  const char *summary = "";
  if (!strcmp(sub, "train")) {
    run = train_run;
    summary = "train an information maximising neural network on simulations";
  } else if (!strcmp(sub, "compress")) {
    run = compress_run;
    summary = "summaries, quasi-ML estimates and Fisher error bars of data";
  } else if (!strcmp(sub, "fisher")) {
    run = fisher_run;
    summary = "the exact Fisher matrix of the gaussian and grf simulators";
  } else if (!strcmp(sub, "simulate")) {
    run = simulate_run;
    summary = "one simulation at given parameters and seed, written to a file";
  }
  CB_CHECK(run && argc == 1, CB_ERR_INPUT,
           "imnn needs one of train, compress, fisher, simulate (got '%s'%s)", sub,
           argc > 1 ? " and more" : "");
  char cmdname[64];
  snprintf(cmdname, sizeof cmdname, "imnn %s", sub);
  options *o = NULL;
  CB_CALL(options_create(comm, cmdname, summary, &o));
  int st = run(o, comm);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
