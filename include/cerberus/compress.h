/* compress: summaries of a simulation for ABC, mapped to parameter space (MODEL.md 9 and 10).
 *
 * A compressor makes raw summaries s (n_raw numbers) from one simulation's data, collectively
 * on the simulator's communicator (a rank group), then an affine map gives parameter-space
 * summaries x = theta* + M (s - mu) (n_params numbers) with their Fisher matrix F, so that the
 * distance of ABC is rho = sqrt((x - y)^T F (x - y)) in every case:
 *   score      s = the exact score d ln L / d theta at theta* (simulators with an exact
 *              likelihood: gaussian, grf); mu = 0, F = the exact Fisher matrix, M = F^-1
 *              (the quasi-maximum-likelihood estimate; near-sufficient close to theta*);
 *   bandpower  s = the power spectrum (power.h, default shells) of a field simulator;
 *   identity   s = the data themselves (non-field simulators of at most 4096 values);
 *              for these two, mu, C = Cov(s) and dmu/dtheta are calibrated on n_s fiducial
 *              simulations and n_d seed-matched pairs at theta* +- dtheta/2 per parameter,
 *              F = dmu^T C^-1 dmu (C^-1 with the Hartlap factor (n_s - n_raw - 2)/(n_s - 1)),
 *              M = F^-1 dmu^T C^-1 (MOPED, the linear quasi-maximum-likelihood compression);
 *   imnn       s = the summaries of a trained IMNN network file (issue 13), with its mu, C,
 *              dmu, F; refused if the file was trained for another simulator.
 * The calibration's simulations are the caller's (they run on rank groups): compress_calibrate
 * takes their raw summaries. */
#ifndef CERBERUS_COMPRESS_H
#define CERBERUS_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "cerberus/options.h"
#include "cerberus/power.h"
#include "cerberus/simulator.h"

enum compress_kind { COMPRESS_SCORE = 0, COMPRESS_BANDPOWER, COMPRESS_IDENTITY, COMPRESS_IMNN };
#define COMPRESS_CHOICES "score,bandpower,identity,imnn"
#define COMPRESS_MAX_RAW 4096

typedef struct compress_config {
  int kind;                              /* enum compress_kind (-compressor) */
  char network[4096];                    /* imnn: -network FILE */
  bool fiducial_set;                     /* -fiducial given (else the simulator's) */
  int n_fiducial;                        /* values given */
  double fiducial[SIMULATOR_MAX_PARAMS]; /* theta* */
  double dtheta[SIMULATOR_MAX_PARAMS];   /* -compress_dtheta (0: 10% of |theta*|, or 0.1) */
  long n_s, n_d;                         /* -compress_n_s (200), -compress_n_d (100) */
} compress_config;

/* -compressor, -network, -fiducial, -compress_dtheta, -compress_n_s, -compress_n_d.
 * Collective. */
int compress_options(options *o, compress_config *cfg);

typedef struct compressor {
  int kind;
  simulator *sim; /* not owned */
  int n_params, n_raw;
  double theta_fid[SIMULATOR_MAX_PARAMS], dtheta[SIMULATOR_MAX_PARAMS];
  long n_s, n_d;   /* calibration sizes (0 when none is needed) */
  bool calibrated; /* the affine map and F are set */
  double *mu;      /* n_raw */
  double *M;       /* n_params x n_raw, row-major */
  double F[SIMULATOR_MAX_PARAMS * SIMULATOR_MAX_PARAMS];
  /* private */
  power *pw;
  void *net; /* imnn */
} compressor;

/* Errors (CB_ERR_INPUT): a compressor the simulator cannot feed (score without an exact
 * likelihood, bandpower of non-field data, identity of a field or of > COMPRESS_MAX_RAW values,
 * a network trained for another simulator or another data size), calibration sizes too small
 * (n_s <= n_raw + 2, n_d < 2), a zero dtheta. The score compressor is calibrated at once.
 * Collective on sim->comm. */
int compress_create(simulator *sim, const compress_config *cfg, compressor **c);
void compress_destroy(compressor **c); /* Collective; accepts NULL, leaves NULL. */

/* Raw summaries s (n_raw, the same on every rank of the group) of one simulation's data.
 * Collective on sim->comm. */
int compress_raw(compressor *c, const double *data, double *s);

/* The calibration from raw summaries: fid[n_s x n_raw]; plus / minus [(a * n_d + j) x n_raw]
 * at theta*_a +- dtheta_a / 2 with the seed of pair j. CB_ERR_NUMERIC naming the compressor
 * when C or F is singular (summaries that carry no information on a parameter). Not
 * collective (every rank that calls it gets the same map). */
int compress_calibrate(compressor *c, const double *fid, const double *plus, const double *minus);

/* x (n_params) = theta* + M (s - mu). Not collective. */
void compress_apply(const compressor *c, const double *s, double *x);
/* rho = sqrt((x - y)^T F (x - y)). Not collective. */
double compress_distance(const compressor *c, const double *x, const double *y);

#endif
