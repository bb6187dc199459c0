/* npe: the neural physical engine, a stack of periodic 3-D convolutions on the slabs
 * (MODEL.md section 3).
 *
 * Input x0(v) = ln(1 + delta(v) + eps); each layer is a multipole-tied convolution (module
 * conv) followed by an activation; the last layer's output channels are the features psi
 * that the head (module mdn) reads. Ghost planes come from the neighbouring ranks through
 * the exchange module, overlapped with the interior of each layer.
 *
 * Layouts: a field with C channels on a rank is stored plane-major, local plane p, channel
 * c, then j, k: index ((p * C + c) * n + j) * n + k. The features psi returned by
 * npe_forward have P = npe_n_features(cfg) channels on the owned planes only, so feature c
 * of local voxel (p, j, k) is psi[((p * P + c) * n + j) * n + k] (stride n * n between the
 * channels of one voxel; see npe_feature_stride).
 *
 * Weights: a flat vector, layer after layer; within a layer, for each output channel q and
 * each input channel c the free (tied) weights of kernel (q, c) in group order (conv
 * module), then one bias per output channel. For the paper's engine (one 3^3 layer,
 * lmax 0, one channel): w_centre w_face w_edge w_corner b_conv.
 *
 * Typical use (e.g. by the mock, with weights from weights_read):
 *   npe *net; npe_create(f, &arch.npe, &net);
 *   const double *psi; npe_forward(net, delta, w, &psi);
 *   for each local voxel: mdn_forward(&arch.mdn, w + npe_n_weights(&arch.npe),
 *                                     psi + voxel_offset, npe_feature_stride(net), &vox);
 *   npe_destroy(&net); */
#ifndef CERBERUS_NPE_H
#define CERBERUS_NPE_H

#include "cerberus/field.h"

#include <stdbool.h>
#include <stddef.h>

#define NPE_MAX_LAYERS 8
#define NPE_MAX_CHANNELS 64

/* square: z^2 (with a global mean after it, a layer of square channels gives quadratic
 * statistics of the field, sum_k |K(k)|^2 |d(k)|^2: e.g. the IMNN's convolutional front end). */
enum npe_activation {
  NPE_SOFTPLUS = 0,
  NPE_RELU = 1,
  NPE_TANH = 2,
  NPE_IDENTITY = 3,
  NPE_SQUARE = 4
};
#define NPE_N_ACTIVATIONS 5
/* For options_choice: the names in enum order. */
#define NPE_ACTIVATION_CHOICES "softplus,relu,tanh,identity,square"
const char *npe_activation_name(int act); /* Not collective. */
/* An activation and its derivative at z (the engine's own, for other layers that offer the same
 * choices, e.g. the IMNN's dense layers). Not collective. */
double npe_activate(int act, double z);
double npe_activate_deriv(int act, double z);
/* The activation of that name (NPE_ACTIVATION_CHOICES), -1 if none. Not collective. */
int npe_activation_index(const char *name);

typedef struct npe_layer_config {
  int kernel;     /* odd kernel size K: 3 or 5 */
  int lmax;       /* 0, 1 or 2: output channels = channels * (lmax + 1)^2 */
  int channels;   /* base output channels (per multipole) */
  int activation; /* enum npe_activation */
} npe_layer_config;

typedef struct npe_config {
  int n_layers;
  npe_layer_config layer[NPE_MAX_LAYERS];
  double eps;        /* x0 = ln(1 + delta + eps), default 1e-3 */
  bool linear_input; /* x0 = delta itself (no log, eps unused): for inputs that are not
                        densities, e.g. a standardised field (the IMNN's convolutional front end) */
} npe_config;

/* The paper's engine: one layer, K = 3, lmax 0, 1 channel, softplus, eps = 1e-3. */
void npe_config_default(npe_config *cfg); /* Not collective. */
/* CB_ERR_INPUT naming the offending value (K not 3/5, lmax not 0..2, ...). Not collective. */
int npe_config_check(const npe_config *cfg);
/* Layers from "K:lmax:channels:activation,..." (e.g. "3:0:1:softplus") into cfg->layer and
 * cfg->n_layers; spec is cut up (strtok). CB_ERR_INPUT naming option for a malformed entry, an
 * unknown activation or too many layers (the values are checked by npe_config_check).
 * Not collective. */
int npe_layers_parse(const char *option, char *spec, npe_config *cfg);
/* Output channels of layer l, input channels of layer l (1 for l = 0). */
int npe_layer_out_channels(const npe_config *cfg, int l);
int npe_layer_in_channels(const npe_config *cfg, int l);
/* Number of features P (output channels of the last layer). */
int npe_n_features(const npe_config *cfg);
/* Number of weights of the engine (kernels and biases of every layer). */
size_t npe_n_weights(const npe_config *cfg);
/* Largest ghost width (K - 1) / 2 over the layers: the minimum planes per rank. The
 * functions on configurations are Not collective. */
int npe_ghost_width(const npe_config *cfg);

typedef struct npe npe;

/* Collective on f->comm. Error (CB_ERR_INPUT) if a rank owns fewer planes than the ghost
 * width (too many ranks for the grid). f must outlive the engine. */
int npe_create(field *f, const npe_config *cfg, npe **net);
void npe_destroy(npe **net); /* Not collective; accepts NULL, leaves NULL. */

/* Forward pass on the owned planes of delta (f->n_real_local values). *psi points to the
 * engine's feature buffer (valid until the next call). Checks 1 + delta + eps > 0 in every
 * voxel, collectively: CB_ERR_INPUT naming the first bad voxel (global indices).
 * Neighbor-wise collective. */
int npe_forward(npe *net, const double *delta, const double *w, const double **psi);
/* Reverse pass after npe_forward with the same weights: given dpsi = d lnL / d psi (owned
 * planes, the psi layout), ADDS d lnL / d w into grad_w (local sums, not reduced; may be
 * NULL) and, if grad_delta is not NULL, SETS d lnL / d delta on the owned planes (ghost
 * contributions are sent back to their owners). Neighbor-wise collective. */
int npe_backward(npe *net, const double *dpsi, double *grad_w, double *grad_delta);

/* Distance between the channels of one voxel in psi (n * n). Accessors: Not collective. */
ptrdiff_t npe_feature_stride(const npe *net);
/* The features of the last npe_forward (the buffer it returned). */
const double *npe_features(const npe *net);
/* x0 = ln(1 + delta + eps) on the owned planes (valid after npe_forward). */
const double *npe_input(const npe *net);
/* Seconds spent waiting on ghost exchanges since creation (forward and reverse). */
double npe_exchange_wait(const npe *net);
/* Bytes held by the engine's buffers on this rank. */
size_t npe_memory(const npe *net);

#endif
