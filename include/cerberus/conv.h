/* conv: local multipole-tied 3-D convolution kernels (MODEL.md section 3). No MPI.
 *
 * A layer maps C_in channels to C_out = channels * (lmax + 1)^2 channels with a K^3 kernel
 * (K odd, ghost width g = (K - 1) / 2), periodic in j and k, ghost planes in i. Output
 * channel q = o * n_lm + t, t indexing (l, m) as (0,0), (1,-1), (1,0), (1,1), (2,-2), ...
 * Kernel (q, c) has the tying of its (l, m): offsets r = (di, dj, dk) (x, y, z) share one
 * weight when they have the same |r| (l = 0) or the same |r| Re Y_lm(theta, phi) rounded to
 * 1e-10 (l >= 1; theta = polar angle from the k axis, phi = atan2(dj, di); offsets where
 * the value is 0 carry no weight), groups in increasing order of that value. So a 3^3,
 * lmax 0 kernel has 4 free weights (centre, faces, edges, corners), a 5^3 one 10.
 * Free weights of a layer: for q, for c, the groups of (q, c); then C_out biases.
 *
 * Arrays are plane-major: ((b * C + c) * n + j) * n + k, where for inputs b counts from the
 * first ghost plane (owned plane p at b = p + g) and for outputs b = p. Not collective. */
#ifndef CERBERUS_CONV_H
#define CERBERUS_CONV_H

#include <stdbool.h>
#include <stddef.h>

typedef struct conv conv;

/* Tying tables for one layer. CB_ERR_INPUT for K not 3 or 5, lmax outside 0..2. */
int conv_create(int kernel, int lmax, int c_in, int channels, conv **cv);
void conv_destroy(conv **cv);

int conv_ghost(const conv *cv);
int conv_c_in(const conv *cv);
int conv_c_out(const conv *cv);
/* Free weights of one (l, m) kernel: type t in [0, (lmax + 1)^2). */
int conv_n_groups(const conv *cv, int t);
/* Group index of offset (di, dj, dk) in [-g, g]^3 for type t, -1 if it carries no weight. */
int conv_group_of(const conv *cv, int t, int di, int dj, int dk);
/* Weights of the layer: kernel weights and biases. */
size_t conv_n_weights(const conv *cv);

/* Expand the tied weights w (conv_n_weights values) into full kernels (internal). */
void conv_set_weights(conv *cv, const double *w);

/* Choose the evaluation for slabs of side n: the class sums (3^3 kernels with lmax 0 or 1; a
 * workspace of about 3 (lmax 0) or 6 (lmax 1) planes of n^2 a channel, max(C_in, C_out)
 * channels) unless direct is true, or the direct K^3 taps (the only path for 5^3 and lmax 2,
 * and the one used before any conv_prepare or for another n). The two agree to rounding.
 * CB_ERR_MEM if the workspace cannot be had (the layer then stays direct). */
int conv_prepare(conv *cv, ptrdiff_t n, bool direct);
/* Bytes of the class sums' workspace (0 on the direct path). */
size_t conv_memory(const conv *cv);
/* Whether conv_forward / conv_backward use the class sums for side n. */
bool conv_class_sums(const conv *cv, ptrdiff_t n);

/* out[p] = bias + sum kernel * in, for owned output planes p in [p0, p1) of an n x n slab.
 * in: buffer with ghosts as above. Uses the layer's workspace. */
void conv_forward(conv *cv, ptrdiff_t n, const double *in, double *out, ptrdiff_t p0, ptrdiff_t p1);
/* Reverse pass for output planes [p0, p1) (uses the conv's workspace): ADDS d/dw (tied, biases
 * last) into grad_w and, if din is not NULL, ADDS into din (same layout as in, ghosts included:
 * contributions to ghost planes are for the neighbours). dout has the out layout. */
void conv_backward(conv *cv, ptrdiff_t n, const double *in, const double *dout, double *grad_w,
                   double *din, ptrdiff_t p0, ptrdiff_t p1);

#endif
