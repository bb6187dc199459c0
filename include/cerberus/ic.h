/* ic: white noise and the linear density field (MODEL.md section 2).
 *
 * White noise s(x) ~ N(0, 1) per voxel, drawn plane by plane from a GSL generator seeded by
 * a hash of (seed, global plane index): the same field for a given seed whatever the number
 * of ranks. The linear field is delta_L(k) = sqrt(P(k) / V) s(k), delta_L(k = 0) = 0, done
 * with the field's r2c / c2r; the filter amplitude sqrt(P(|k|)/V) is tabulated once per
 * local mode. The map s -> delta_L is linear and self-adjoint (a real, even filter), and
 * ic_delta_linear_adjoint applies its transpose for the gradient chain. */
#ifndef CERBERUS_IC_H
#define CERBERUS_IC_H

#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/options.h"

#include <stddef.h>
#include <stdint.h>

/* The 32-bit MT19937 seed of item index (a plane, a simulation, ...) of random stream
 * `stream` for a user's seed: splitmix64(splitmix64(seed ^ stream) ^ index), folded to 32
 * bits, never 0. The white noise is stream IC_STREAM_WHITE_NOISE with index = global plane;
 * other modules pick their own stream constant (e.g. ASCII "mockhalo") so their draws are
 * independent of the noise yet reproducible on any number of ranks. Not collective. */
#define IC_STREAM_WHITE_NOISE 0ULL
unsigned long ic_stream_seed(unsigned long seed, uint64_t stream, uint64_t index);

/* Fill the local planes of s. Not collective. */
int ic_white_noise(const field *f, unsigned long seed, double *s);

typedef struct ic_filter ic_filter;
/* Tabulate sqrt(P(k)/V) on the local modes; checks the grid's k range against a P(k)
 * table (error naming the file). Collective. */
int ic_filter_create(field *f, const cosmology *c, ic_filter **flt);
void ic_filter_destroy(ic_filter **flt);
/* sqrt(P/V) per local half-complex mode (n_complex_local values; 0 at k = 0). */
const double *ic_filter_amplitude(const ic_filter *flt);

/* delta_L from s. Collective. s and delta_L may alias. */
int ic_delta_linear(field *f, const ic_filter *flt, const double *s, double *delta_L);
/* g_s = (d delta_L / d s)^T g_delta. Collective. May alias. */
int ic_delta_linear_adjoint(field *f, const ic_filter *flt, const double *g_delta, double *g_s);

/* ---- options and provenance shared by the commands that make a field (ic, mock, loglike) */

/* Everything that defines an initial-conditions field. */
typedef struct ic_config {
  long n_grid;        /* -n_grid (64) */
  double box_size;    /* -box_size, Mpc/h (250) */
  unsigned long seed; /* -seed (1) */
  cosmo_params cosmo; /* -redshift -Omega_m -Omega_b -h -n_s -sigma_8 (Planck-2018-like) */
  char pk_file[4096]; /* -pk_file ("" = Eisenstein-Hu) */
} ic_config;

/* The cosmology options alone: -redshift -Omega_m -Omega_b -h -n_s -sigma_8 -pk_file, with
 * cosmo_params_default() as defaults; pk_file gets "" when not given. Values are checked by
 * cosmology_create. Collective (the options database is the same on every rank). */
int ic_cosmo_options(options *o, cosmo_params *p, char *pk_file, size_t pk_file_size);
/* -n_grid -box_size -seed and the cosmology options. Errors for a negative seed; the grid
 * itself is checked by field_create. Collective. */
int ic_config_read(options *o, ic_config *cfg);
/* Attributes on "/" describing the field: box_size, n_grid, seed, redshift, Omega_m, Omega_b,
 * h, n_s, sigma_8, pk_file ("" for Eisenstein-Hu). Collective over the file's communicator. */
int ic_config_write_attrs(h5file *h, const ic_config *cfg);
/* Read back what ic_config_write_attrs wrote: CB_ERR_INPUT naming the file if an attribute
 * is missing. Collective. */
int ic_config_read_attrs(h5file *h, ic_config *cfg);

#endif
