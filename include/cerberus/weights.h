/* weights: the architecture of a model and its weights files (HDF5).
 *
 * A weights file holds /weights, a flat vector, and root attributes that describe the
 * architecture completely: model ("npe" or "powerlaw"), n_layers, and per layer l the
 * attributes layer<l>_kernel, layer<l>_lmax, layer<l>_channels, layer<l>_activation
 * (name), then eps, n_gauss, A0, M0, S0, sigma_min, n_weights. The vector is the engine's
 * weights (npe.h) followed by the head's (mdn.h); for the power law it is
 * beta, b_alpha_1..G, b_mu_1..G, b_sigma_1..G (the head with psi = 0, whose a, m, s do not
 * exist). The paper's configuration has 17 numbers:
 *   w_centre w_face w_edge w_corner b_conv a_1 a_2 b_alpha_1 b_alpha_2 m_1 m_2 b_mu_1 b_mu_2
 *   s_1 s_2 b_sigma_1 b_sigma_2. */
#ifndef CERBERUS_WEIGHTS_H
#define CERBERUS_WEIGHTS_H

#include "cerberus/h5io.h"
#include "cerberus/mdn.h"
#include "cerberus/npe.h"
#include "cerberus/options.h"

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

enum weights_model { WEIGHTS_NPE = 0, WEIGHTS_POWERLAW = 1 };
#define WEIGHTS_MODEL_CHOICES "npe,powerlaw"

typedef struct weights_arch {
  int model;      /* enum weights_model */
  npe_config npe; /* used by WEIGHTS_NPE; its eps is also the power law's */
  mdn_config mdn; /* n_features = npe_n_features (npe) or 0 (power law) */
} weights_arch;

/* The paper's configuration (npe, 17 weights). Not collective. */
void weights_arch_default(weights_arch *a);
/* Checks and sets a->mdn.n_features. Not collective. */
int weights_arch_check(weights_arch *a);
/* Number of weights of the architecture. Not collective. */
size_t weights_count(const weights_arch *a);
/* "npe: 1 layer(s) [3^3 lmax0 x1 softplus] ..., 17 weights". Not collective. */
void weights_arch_describe(const weights_arch *a, char *buf, size_t n);

/* Architecture options: -model, -layers K:lmax:channels:activation,... (e.g. "3:0:1:softplus"),
 * -eps, -n_gauss, -A0, -M0, -S0, -sigma_min. Collective (options are). */
int weights_arch_from_options(options *o, weights_arch *a);

/* Write /weights and the architecture attributes (plus provenance from o, may be NULL).
 * Collective. */
int weights_write(MPI_Comm comm, const char *path, bool overwrite, const weights_arch *a,
                  const double *w, const options *o);
/* Read a weights file: architecture and a malloc'ed vector (every rank). Errors name the
 * file: missing attribute, unknown activation, wrong vector length. Collective. */
int weights_read(MPI_Comm comm, const char *path, weights_arch *a, double **w);
/* Same, but also refuse (CB_ERR_INPUT naming the file) an architecture different from want. */
int weights_read_expect(MPI_Comm comm, const char *path, const weights_arch *want, double **w);
/* An engine's layers as root attributes: the count count_name, then per layer l
 * <prefix><l>_kernel, _lmax, _channels, _activation (name); the read checks the count and the
 * activation names, naming the file. Collective (h5io). */
int weights_write_layers(h5file *h, const char *count_name, const char *prefix,
                         const npe_config *c);
int weights_read_layers(h5file *h, const char *count_name, const char *prefix, npe_config *c);
/* Same architecture? Not collective. */
bool weights_arch_equal(const weights_arch *a, const weights_arch *b);

/* The name of weight i (< weights_count) in buf: for the paper's configuration the 17 names
 * above (w_centre ... b_sigma_2); with several layers or channels the engine's names carry
 * the layer and the (output.input) channels (w0_1.0_centre, b0_1), a 5^3 kernel's groups are
 * r0..r9 (by distance), an l >= 1 kernel's Y<l><m>_g<group>; a head weight on feature p of
 * several is a_<i>_<p>. The power law's: beta, b_alpha_i, b_mu_i, b_sigma_i.
 * CB_ERR_INPUT for i out of range. Not collective. */
int weights_name(const weights_arch *a, size_t i, char *buf, size_t n);
/* Index of the centre weight of output channel q (l = 0 kernels only: q < channels of the
 * first layer, input channel 0) of the first layer; -1 for the power law or no such channel.
 * Not collective. */
long weights_centre_index(const weights_arch *a, int q);

#endif
