/* imnn: information maximising neural networks (MODEL.md section 9): the network, the loss
 * with its gradient, the Fisher statistics, Adam, and network files.
 *
 * A network maps one simulation's data d to p summaries x = f_w(d) (p = number of
 * parameters): a front end turns d into n_feat features, which are standardised with a
 * saved shift and scale, then dense layers (any widths and activations; the last layer,
 * p wide, is linear) give x. Front ends:
 *   identity   d is a vector of n_input numbers (the same on every rank of the group): the
 *              features are d itself;
 *   bandpower  d is an n^3 field on the group's field object: the features are the power
 *              spectrum P_b (power.h) in shells k_f wide centred on k_f, 2 k_f, ... up to
 *              the corner of the Fourier cube (sqrt(3) k_Ny: every mode counted), as ln P_b
 *              (bandpower_scale log) or P_b itself (linear);
 *   conv       d is an n^3 field: it is standardised (one shift and scale for the field),
 *              passed through the engine's multipole convolutions (npe.h, linear input) and
 *              averaged over the whole field per channel (global average pooling, reduced
 *              over the group's ranks): the features are those averages.
 * The identity and bandpower front ends do not depend on the weights (their features can be
 * computed once per simulation and reused, imnn_net_features); conv does. The conv front end
 * standardises the field (one shift and scale) and its pooled features (fixed at the start of
 * training, from the initial weights).
 *
 * Weights: one flat vector, the convolution weights (npe order) then each dense layer's
 * matrix (out x in, row-major) followed by its biases.
 *
 * Statistics over a set of simulations (imnn_stats_compute): n_s fiducial summaries
 * x_i, i < n_s, and for each parameter a n_d seed-matched pairs x+_{a,j}, x-_{a,j} at
 * theta*_a +- dtheta_a / 2: mu = mean x_i, C = sample covariance (1 / (n_s - 1)),
 * dmu[a][s] = mean_j (x+ - x-)_s / dtheta_a, F = dmu C^-1 dmu^T, and the loss
 * -ln det F + r(L2) L2 of section 9 with its gradient with respect to every summary.
 *
 * A network file (HDF5) holds the architecture (attributes), /weights, /shift and /scale,
 * the fiducial statistics (/theta_fid, /dtheta, /mu, /C, /dmu, /F) and the provenance;
 * imnn_model_read refuses a file whose input size differs from the data's, naming it. */
#ifndef CERBERUS_IMNN_H
#define CERBERUS_IMNN_H

#include "cerberus/field.h"
#include "cerberus/npe.h"
#include "cerberus/options.h"

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

#define IMNN_MAX_DENSE 8
#define IMNN_MAX_WIDTH 1024
#define IMNN_MAX_PARAMS 8

enum imnn_front { IMNN_FRONT_IDENTITY = 0, IMNN_FRONT_BANDPOWER = 1, IMNN_FRONT_CONV = 2 };
#define IMNN_FRONT_CHOICES "identity,bandpower,conv"
const char *imnn_front_name(int front); /* Not collective. */
/* Band powers enter the network as ln P_b or as P_b. */
enum imnn_bp_scale { IMNN_BP_LOG = 0, IMNN_BP_LINEAR = 1 };
#define IMNN_BP_SCALE_CHOICES "log,linear"
const char *imnn_bp_scale_name(int scale); /* Not collective. */

typedef struct imnn_arch {
  int front;       /* enum imnn_front */
  long n_input;    /* identity: length of the data vector; bandpower, conv: grid side n */
  double box_size; /* bandpower: box side L (Mpc/h) */
  int bp_scale;    /* bandpower: enum imnn_bp_scale */
  npe_config conv; /* conv: the convolution layers (linear_input is set) */
  int n_hidden;    /* hidden dense layers */
  int width[IMNN_MAX_DENSE];
  int act[IMNN_MAX_DENSE]; /* enum npe_activation */
  int n_params;            /* summaries = parameters */
} imnn_arch;

/* CB_ERR_INPUT naming the bad value. Not collective. */
int imnn_arch_check(const imnn_arch *a);
/* Features entering the dense layers. Not collective. */
int imnn_arch_n_features(const imnn_arch *a);
/* Weights of the architecture. Not collective. */
size_t imnn_arch_n_weights(const imnn_arch *a);
/* Standardisation constants: n_feat (identity, bandpower) or 1 + n_feat (conv: the field's, then
 * the pooled features'). */
int imnn_arch_n_scale(const imnn_arch *a);
/* "bandpower (16^3, 14 bins) -> 32 softplus -> 32 softplus -> 2, 1632 weights". */
void imnn_arch_describe(const imnn_arch *a, char *buf, size_t n);
/* -front, -bandpower_scale, -hidden W:act,W:act,..., -conv_layers K:lmax:channels:act,... (and the
 * caller sets n_input, box_size, n_params). Collective (options are). */
int imnn_arch_from_options(options *o, imnn_arch *a);

/* Fiducial statistics of the summaries and the point they describe. dmu[a * p + s] is
 * d mu_s / d theta_a; F, C, Cinv are p x p row-major. */
typedef struct imnn_stats {
  int p;
  double theta_fid[IMNN_MAX_PARAMS], dtheta[IMNN_MAX_PARAMS];
  double mu[IMNN_MAX_PARAMS];
  double C[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS], Cinv[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  double dmu[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  double F[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS], Finv[IMNN_MAX_PARAMS * IMNN_MAX_PARAMS];
  double ln_det_F;
} imnn_stats;

/* The loss's parts: loss = -ln det F + reg, reg = r(L2) L2. */
typedef struct imnn_loss {
  double loss, ln_det_F, L2, r, reg;
} imnn_loss;

/* The regulariser's constants (MODEL.md section 9: lambda = 10, eps = 0.1). */
typedef struct imnn_reg {
  double lambda, eps;
} imnn_reg;
void imnn_reg_default(imnn_reg *r); /* Not collective. */

/* From the summaries of n_s fiducial simulations (x_fid[i * p + s]) and of n_d pairs per
 * parameter (x_plus[(a * n_d + j) * p + s], x_minus alike), with st->p, st->theta_fid and
 * st->dtheta set: mu, C, Cinv, dmu, F, Finv, ln det F into st, the loss into *L. With g_fid
 * (n_s p), g_plus and g_minus (p n_d p values) not NULL, SETS d loss / d x there.
 * CB_ERR_NUMERIC (no crash) when C or F is singular or not finite, CB_ERR_INPUT for n_s < 2,
 * n_d < 1 or a zero dtheta. Not collective. */
int imnn_stats_compute(const imnn_reg *reg, int n_s, const double *x_fid, int n_d,
                       const double *x_plus, const double *x_minus, imnn_stats *st, imnn_loss *L,
                       double *g_fid, double *g_plus, double *g_minus);

/* Quasi-maximum-likelihood estimate theta = theta* + F^-1 dmu C^-1 (x - mu); its Fisher
 * error bars are sqrt(diag F^-1). Not collective. */
void imnn_estimate(const imnn_stats *st, const double *x, double *theta);
/* The distance of ABC (MODEL.md section 10) between two summaries x and y, measured on their
 * quasi-ML estimates t: rho = sqrt((t(x) - t(y))^T F (t(x) - t(y))). Not collective. */
double imnn_fisher_distance(const imnn_stats *st, const double *x, const double *y);

/* A network file's contents: architecture, weights, standardisation, statistics, and the
 * simulator it was trained on (name, for the record). */
typedef struct imnn_model {
  imnn_arch arch;
  double *w;             /* imnn_arch_n_weights */
  double *shift, *scale; /* imnn_arch_n_scale each */
  imnn_stats stats;
  char simulator[64];
} imnn_model;

/* Allocate w, shift (0) and scale (1) for a checked architecture. Not collective. */
int imnn_model_alloc(const imnn_arch *a, imnn_model **m);
void imnn_model_destroy(imnn_model **m); /* accepts NULL, leaves NULL */
/* A further dataset for a network file (training history, exact Fisher matrix, tests). */
typedef struct imnn_extra {
  const char *name;
  int ndim; /* 1 or 2 */
  size_t dims[2];
  const double *data;
} imnn_extra;
/* Write (temporary name + rename) with provenance from o (may be NULL) and n_extra further
 * datasets. Collective on comm. */
int imnn_model_write(MPI_Comm comm, const char *path, bool overwrite, const imnn_model *m,
                     const options *o, const imnn_extra *extra, int n_extra);
/* Read a network file; errors name it. With n_input > 0, refuse a network whose input size
 * differs ("network 'F' takes inputs of size 16 but the data have size 32"). Collective. */
int imnn_model_read(MPI_Comm comm, const char *path, long n_input, imnn_model **m);
/* The same refusal for a model already read (path names its file). Not collective. */
int imnn_model_check_input(const imnn_model *m, const char *path, long n_input);

/* A network's workspace for one simulation at a time. f: the group's field (bandpower and
 * conv; its n must be arch->n_input), NULL for identity. Collective on f->comm. */
typedef struct imnn_net imnn_net;
int imnn_net_create(field *f, const imnn_arch *a, imnn_net **net);
void imnn_net_destroy(imnn_net **net); /* accepts NULL, leaves NULL */
/* Set the standardisation (imnn_arch_n_scale values each; scale > 0). Not collective. */
int imnn_net_set_scaling(imnn_net *net, const double *shift, const double *scale);
const imnn_arch *imnn_net_arch(const imnn_net *net);

/* Front end: feat (n_feat values, unstandardised, the same on every rank of the group) from
 * data (identity: n_input values; field fronts: the local slab). conv uses w and keeps its
 * activations for imnn_net_front_backward. For the conv front end the field is standardised
 * first (shift/scale). Collective on the group. */
int imnn_net_features(imnn_net *net, const double *w, const double *data, double *feat);
/* Dense part: x (p values) from feat; keeps the activations for imnn_net_head_backward.
 * Not collective. */
void imnn_net_head(imnn_net *net, const double *w, const double *feat, double *x);
/* Reverse of the dense part: ADDS d/dw of (dx . x) into grad_w (its dense part) and, if
 * dfeat is not NULL, SETS d/dfeat there. Not collective. */
void imnn_net_head_backward(imnn_net *net, const double *w, const double *dx, double *grad_w,
                            double *dfeat);
/* Reverse of the conv front end after imnn_net_features on the same data and weights: ADDS
 * d/dw of (dfeat . feat) into grad_w (its conv part), summed over the group's ranks (every
 * rank gets the same). A no-op for the other front ends. Collective on the group. */
int imnn_net_front_backward(imnn_net *net, const double *dfeat, double *grad_w);
/* Whole network: x = f_w(data). Collective on the group. */
int imnn_net_apply(imnn_net *net, const double *w, const double *data, double *x);

/* Adam on a flat vector: step t = 1, 2, ... with learning rate lr (beta1 0.9, beta2 0.999,
 * eps 1e-8). Not collective. */
typedef struct imnn_adam imnn_adam;
int imnn_adam_create(size_t n, double lr, imnn_adam **ad);
void imnn_adam_destroy(imnn_adam **ad);
/* w -= Adam step for the gradient g (of a quantity to be minimised). */
void imnn_adam_step(imnn_adam *ad, double *w, const double *g);

/* Glorot-uniform dense weights (zero biases) and small conv weights from a GSL generator
 * seeded with seed. Not collective. */
void imnn_init_weights(const imnn_arch *a, unsigned long seed, double *w);

#endif
