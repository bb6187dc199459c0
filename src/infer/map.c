/* map: the best of several MAP optimisations of the weights' posterior by PETSc TAO
 * (include/cerberus/map.h; MODEL.md section 8). Each start draws N(0, init_scale^2) values
 * from a GSL generator seeded with cfg->seed (so the starts are the same on every rank), runs
 * TAOBLMVM (or what -tao_type sets) on -ln p, and the start with the highest ln p wins. The
 * callback turns a non-finite ln p or a failed evaluation into a huge objective with a zero
 * gradient (the line search backs off); a failure is passed up after the solve. */
#include "cerberus/map.h"

#include "cerberus/log.h"
#include "cerberus/status.h"

#include <gsl/gsl_eigen.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <petsctao.h>
#include <stdlib.h>
#include <string.h>

void map_config_default(map_config *c) {
  c->n_starts = 4;
  c->max_iterations = 200;
  c->init_scale = 0.1;
  c->seed = 1;
}

typedef struct map_ctx {
  posterior *post;
  size_t dim;
  int st;
} map_ctx;

static PetscErrorCode map_objective(Tao tao, Vec x, PetscReal *f, Vec g, void *vctx) {
  (void)tao;
  map_ctx *c = vctx;
  const PetscScalar *xa;
  PetscScalar *ga;
  PetscCall(VecGetArrayRead(x, &xa));
  PetscCall(VecGetArray(g, &ga));
  double lp = 0;
  if (!c->st) c->st = posterior_evaluate(c->post, xa, &lp, ga, NULL);
  if (c->st || !isfinite(lp)) {
    *f = 1e300; /* outside the support: the line search backs off */
    for (size_t i = 0; i < c->dim; i++) ga[i] = 0;
  } else {
    *f = -lp;
    for (size_t i = 0; i < c->dim; i++) ga[i] = -ga[i];
  }
  PetscCall(VecRestoreArray(g, &ga));
  PetscCall(VecRestoreArrayRead(x, &xa));
  return 0;
}

int map_find(posterior *post, const map_config *cfg, double *best, double *best_lp_out,
             long *n_eval) {
  const size_t d = posterior_dim(post);
  gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
  CB_CHECK(rng, CB_ERR_MEM, "out of memory for the RNG");
  gsl_rng_set(rng, cfg->seed);
  double best_lp = -INFINITY;
  long ev0 = posterior_n_evaluations(post);
  int st = CB_OK;
  Vec x = NULL;
  Tao tao = NULL;
  map_ctx ctx = {post, d, CB_OK};
  if (VecCreateSeq(PETSC_COMM_SELF, (PetscInt)d, &x) || TaoCreate(PETSC_COMM_SELF, &tao) ||
      TaoSetType(tao, TAOBLMVM) || TaoSetSolution(tao, x) ||
      TaoSetObjectiveAndGradient(tao, NULL, map_objective, &ctx) ||
      TaoSetMaximumIterations(tao, (PetscInt)cfg->max_iterations) ||
      TaoSetMaximumFunctionEvaluations(tao, (PetscInt)(5 * cfg->max_iterations + 20)) ||
      TaoSetTolerances(tao, 1e-8, 1e-10, 0) || TaoSetFromOptions(tao))
    st = CB_ERROR(CB_ERR_INTERNAL, "cannot set up PETSc TAO for the MAP starts");
  for (long s = 0; !st && s < cfg->n_starts; s++) {
    PetscScalar *xa;
    VecGetArray(x, &xa);
    for (size_t i = 0; i < d; i++) xa[i] = gsl_ran_gaussian(rng, cfg->init_scale);
    VecRestoreArray(x, &xa);
    if (TaoSolve(tao)) st = CB_ERROR(CB_ERR_NUMERIC, "PETSc TAO failed on MAP start %ld", s);
    if (!st) st = ctx.st;
    if (st) break;
    const PetscScalar *xs;
    VecGetArrayRead(x, &xs);
    double lp = 0;
    st = posterior_evaluate(post, xs, &lp, NULL, NULL);
    PetscInt its = 0;
    TaoGetIterationNumber(tao, &its);
    TaoConvergedReason why;
    TaoGetConvergedReason(tao, &why);
    log_info("map: start %ld: ln p = %.6f after %ld iterations (%s)", s, lp, (long)its,
             TaoConvergedReasons[why]);
    if (!st && lp > best_lp) {
      best_lp = lp;
      memcpy(best, xs, d * sizeof *best);
    }
    VecRestoreArrayRead(x, &xs);
  }
  TaoDestroy(&tao);
  VecDestroy(&x);
  gsl_rng_free(rng);
  CB_CALL(st);
  CB_CHECK(isfinite(best_lp), CB_ERR_NUMERIC,
           "no MAP start reached a finite ln p (try -init_scale smaller, or -start file)");
  *best_lp_out = best_lp;
  *n_eval = posterior_n_evaluations(post) - ev0;
  log_info("map: best ln p = %.6f (%ld evaluations)", best_lp, *n_eval);
  return CB_OK;
}

int map_laplace(posterior *post, const double *theta, double var_max, double *cov, long *n_eval) {
  const size_t d = posterior_dim(post);
  CB_CHECK(var_max > 0 && isfinite(var_max), CB_ERR_INPUT,
           "the Laplace covariance needs a positive largest variance (got %g)", var_max);
  long ev0 = posterior_n_evaluations(post);
  double *x = malloc(d * sizeof *x), *gp = malloc(d * sizeof *gp), *gm = malloc(d * sizeof *gm);
  gsl_matrix *H = gsl_matrix_alloc(d, d), *V = gsl_matrix_alloc(d, d);
  gsl_vector *lam = gsl_vector_alloc(d);
  gsl_eigen_symmv_workspace *ws = gsl_eigen_symmv_alloc(d);
  int st = x && gp && gm && H && V && lam && ws ? CB_OK : CB_ERROR(CB_ERR_MEM, "out of memory");
  if (!st) memcpy(x, theta, d * sizeof *x);
  for (size_t i = 0; i < d && !st; i++) {
    const double h = 1e-4 * fmax(1.0, fabs(theta[i]));
    double lp = 0, lm = 0;
    x[i] = theta[i] + h;
    st = posterior_evaluate(post, x, &lp, gp, NULL);
    x[i] = theta[i] - h;
    if (!st) st = posterior_evaluate(post, x, &lm, gm, NULL);
    x[i] = theta[i];
    if (!st && !(isfinite(lp) && isfinite(lm)))
      st = CB_ERROR(CB_ERR_NUMERIC, "the Laplace approximation: ln p is not finite near the MAP");
    for (size_t j = 0; j < d && !st; j++) gsl_matrix_set(H, i, j, -(gp[j] - gm[j]) / (2 * h));
  }
  if (!st) {
    for (size_t i = 0; i < d; i++)
      for (size_t j = 0; j < i; j++) {
        double a = 0.5 * (gsl_matrix_get(H, i, j) + gsl_matrix_get(H, j, i));
        gsl_matrix_set(H, i, j, a);
        gsl_matrix_set(H, j, i, a);
      }
    if (gsl_eigen_symmv(H, lam, V, ws))
      st = CB_ERROR(CB_ERR_NUMERIC, "the Laplace approximation: no eigenvalues of the Hessian");
  }
  for (size_t i = 0; i < d && !st; i++)
    for (size_t j = 0; j < d; j++) {
      double s = 0;
      for (size_t k = 0; k < d; k++)
        s += gsl_matrix_get(V, i, k) * gsl_matrix_get(V, j, k) /
             fmax(fabs(gsl_vector_get(lam, k)), 1.0 / var_max);
      cov[i * d + j] = s;
    }
  free(x);
  free(gp);
  free(gm);
  if (H) gsl_matrix_free(H);
  if (V) gsl_matrix_free(V);
  if (lam) gsl_vector_free(lam);
  if (ws) gsl_eigen_symmv_free(ws);
  *n_eval = posterior_n_evaluations(post) - ev0;
  return st;
}
