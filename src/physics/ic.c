/* ic: white noise and the linear density field delta_L (MODEL.md section 2).
 *
 * White noise. s(x) ~ N(0, 1) per voxel. Plane i (the slowest, distributed axis) is drawn
 * from its own GSL Mersenne twister (gsl_rng_mt19937) whose seed is a splitmix64 hash of
 * (seed, i), with gsl_ran_gaussian_ziggurat in the order (j, k). A rank draws only the planes
 * it owns, so a given seed gives the same field bit for bit whatever the number of ranks.
 * MT19937 takes 32-bit seeds: two planes of one field share a stream with probability about
 * n^2 / 2^33 (2e-7 for n = 64).
 *
 * Linear field. delta_L(k) = sqrt(P(|k|) / V) s(k), delta_L(k = 0) = 0, with V = (L/N)^3 the
 * voxel volume and the forward DFT of MODEL.md section 1, so that the estimator
 * P(k) = V^2 / L^3 |delta_L(k)|^2 has expectation P(k): E |s(k)|^2 = N^3. The amplitude
 * depends on |k|^2 = (2 pi / L)^2 m2 with an integer m2 = a^2 + b^2 + c^2 <= 3 (N/2)^2, so
 * sqrt(P/V) is computed once per distinct m2 (the same table on every rank, which makes
 * every check on it collective) and then looked up for each local half-complex mode.
 * The filter is real and even in k, so s -> delta_L is a symmetric linear map: its adjoint
 * is the same map.
 *
 * The options helpers (ic_cosmo_options, ic_config_read) and the attribute writers live here
 * so that every command that makes or reads a field (ic, pk, mock, loglike) spells the
 * options and attributes the same way. */
#include "cerberus/ic.h"

#include "cerberus/logevent.h"
#include "cerberus/status.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const double ic_pi = 3.14159265358979323846;

/* splitmix64 (Steele, Lea & Flood 2014): a bijective 64-bit mixer. */
static uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

unsigned long ic_stream_seed(unsigned long seed, uint64_t stream, uint64_t index) {
  uint64_t h = splitmix64(splitmix64((uint64_t)seed ^ stream) ^ index);
  unsigned long s = (unsigned long)((h >> 32) ^ (h & 0xffffffffULL));
  return s ? s : 0x5eed5eedUL; /* GSL maps 0 to its default seed */
}

int ic_white_noise(const field *f, unsigned long seed, double *s) {
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  CB_CHECK(r != NULL, CB_ERR_MEM, "out of memory for a random number generator");
  logevent_begin(LOGEVENT_IC_NOISE);
  const ptrdiff_t plane = f->n * f->n;
  for (ptrdiff_t il = 0; il < f->local_n0; il++) {
    gsl_rng_set(r, ic_stream_seed(seed, IC_STREAM_WHITE_NOISE, (uint64_t)(f->local_0_start + il)));
    double *p = s + il * plane;
    for (ptrdiff_t v = 0; v < plane; v++) p[v] = gsl_ran_gaussian_ziggurat(r, 1.0);
  }
  logevent_end(LOGEVENT_IC_NOISE);
  gsl_rng_free(r);
  return CB_OK;
}

struct ic_filter {
  ptrdiff_t n_complex_local;
  double *amp;        /* sqrt(P/V) per local half-complex mode */
  fftw_complex *work; /* s(k), then delta_L(k) */
};

int ic_filter_create(field *f, const cosmology *c, ic_filter **out) {
  *out = NULL;
  const ptrdiff_t n = f->n, nc = f->nc, h = n / 2;
  const double kf = 2.0 * ic_pi / f->L, cell = f->L / (double)n, V = cell * cell * cell;
  /* the largest |k| on the grid is the corner (N/2, N/2, N/2); the smallest non-zero is kf */
  CB_CALL(cosmology_check_k_range(c, kf, kf * sqrt(3.0) * (double)h));
  ic_filter *flt;
  CB_CALLOC(flt, 1);
  flt->n_complex_local = f->n_complex_local;
  const size_t m2max = 3 * (size_t)h * (size_t)h;
  double *tab = calloc(m2max + 1, sizeof *tab);
  flt->amp = calloc((size_t)(f->n_complex_local > 0 ? f->n_complex_local : 1), sizeof *flt->amp);
  flt->work = field_alloc_complex(f);
  if (!tab || !flt->amp || !flt->work) {
    free(tab);
    ic_filter_destroy(&flt);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the %td^3 linear-field filter", n);
  }
  logevent_begin(LOGEVENT_IC_FILTER);
  /* every rank tabulates every m2: the checks below are the same on every rank */
  size_t bad = 0;
  double bad_p = 0.0;
  tab[0] = 0.0; /* delta_L(k = 0) = 0 */
  for (size_t m2 = 1; m2 <= m2max && !bad; m2++) {
    double p = cosmology_pk(c, kf * sqrt((double)m2));
    if (!(isfinite(p) && p >= 0.0)) {
      bad = m2;
      bad_p = p;
    }
    tab[m2] = sqrt(p / V);
  }
  if (bad) {
    logevent_end(LOGEVENT_IC_FILTER);
    free(tab);
    ic_filter_destroy(&flt);
    return CB_ERROR(CB_ERR_NUMERIC, "P(k = %g h/Mpc) = %g is not a finite non-negative number",
                    kf * sqrt((double)bad), bad_p);
  }
  for (ptrdiff_t il = 0; il < f->local_n0; il++) {
    ptrdiff_t a = field_freq(f, f->local_0_start + il);
    for (ptrdiff_t j = 0; j < n; j++) {
      ptrdiff_t b = field_freq(f, j);
      double *row = flt->amp + (il * n + j) * nc;
      for (ptrdiff_t cc = 0; cc < nc; cc++) row[cc] = tab[a * a + b * b + cc * cc];
    }
  }
  logevent_end(LOGEVENT_IC_FILTER);
  free(tab);
  *out = flt;
  return CB_OK;
}

void ic_filter_destroy(ic_filter **pflt) {
  if (!pflt || !*pflt) return;
  free((*pflt)->amp);
  fftw_free((*pflt)->work);
  free(*pflt);
  *pflt = NULL;
}

const double *ic_filter_amplitude(const ic_filter *flt) {
  return flt->amp;
}

int ic_delta_linear(field *f, const ic_filter *flt, const double *s, double *delta_L) {
  CB_CHECK(flt->n_complex_local == f->n_complex_local, CB_ERR_INTERNAL,
           "ic_delta_linear: the filter was made for another field");
  logevent_begin(LOGEVENT_IC_DELTA);
  CB_CALL(field_r2c(f, s, flt->work)); /* reads all of s before delta_L is written */
  for (ptrdiff_t m = 0; m < flt->n_complex_local; m++) flt->work[m] *= flt->amp[m];
  CB_CALL(field_c2r(f, flt->work, delta_L));
  logevent_end(LOGEVENT_IC_DELTA);
  return CB_OK;
}

int ic_delta_linear_adjoint(field *f, const ic_filter *flt, const double *g_delta, double *g_s) {
  /* delta_L = F^-1 diag(A) F s with A real and A(-k) = A(k): the matrix is real and
   * symmetric, so its transpose is itself. */
  return ic_delta_linear(f, flt, g_delta, g_s);
}

/* ---------------------------------------------------------------- options and attributes */

int ic_cosmo_options(options *o, cosmo_params *p, char *pk_file, size_t pk_file_size) {
  cosmo_params d = cosmo_params_default();
  CB_CALL(options_real(o, "-redshift", "redshift z of the linear field (Eisenstein-Hu: D(z)^2)",
                       d.redshift, &p->redshift));
  CB_CALL(options_real(o, "-Omega_m", "matter density parameter", d.Omega_m, &p->Omega_m));
  CB_CALL(options_real(o, "-Omega_b", "baryon density parameter", d.Omega_b, &p->Omega_b));
  CB_CALL(options_real(o, "-h", "Hubble parameter H0 / (100 km/s/Mpc)", d.h, &p->h));
  CB_CALL(options_real(o, "-n_s", "primordial spectral index", d.n_s, &p->n_s));
  CB_CALL(options_real(o, "-sigma_8", "rms linear overdensity in 8 Mpc/h top hats at z = 0",
                       d.sigma_8, &p->sigma_8));
  CB_CALL(options_string(o, "-pk_file",
                         "text table 'k P(k)' (h/Mpc, (Mpc/h)^3) used as given instead of "
                         "Eisenstein-Hu",
                         NULL, pk_file, pk_file_size, NULL));
  return CB_OK;
}

int ic_config_read(options *o, ic_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  long seed = 0;
  CB_CALL(options_int(o, "-n_grid", "grid points per side (even)", 64, &cfg->n_grid));
  CB_CALL(options_real(o, "-box_size", "side of the periodic box, Mpc/h", 250.0, &cfg->box_size));
  CB_CALL(options_int(o, "-seed", "seed of the white noise (>= 0)", 1, &seed));
  CB_CHECK(seed >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", seed);
  cfg->seed = (unsigned long)seed;
  CB_CALL(ic_cosmo_options(o, &cfg->cosmo, cfg->pk_file, sizeof cfg->pk_file));
  CB_CALL(field_plan_options(o));
  return CB_OK;
}

int ic_config_write_attrs(h5file *h, const ic_config *cfg) {
  CB_CALL(h5io_attr_write_double(h, "/", "box_size", cfg->box_size));
  CB_CALL(h5io_attr_write_long(h, "/", "n_grid", cfg->n_grid));
  CB_CALL(h5io_attr_write_long(h, "/", "seed", (long)cfg->seed));
  CB_CALL(h5io_attr_write_double(h, "/", "redshift", cfg->cosmo.redshift));
  CB_CALL(h5io_attr_write_double(h, "/", "Omega_m", cfg->cosmo.Omega_m));
  CB_CALL(h5io_attr_write_double(h, "/", "Omega_b", cfg->cosmo.Omega_b));
  CB_CALL(h5io_attr_write_double(h, "/", "h", cfg->cosmo.h));
  CB_CALL(h5io_attr_write_double(h, "/", "n_s", cfg->cosmo.n_s));
  CB_CALL(h5io_attr_write_double(h, "/", "sigma_8", cfg->cosmo.sigma_8));
  CB_CALL(h5io_attr_write_string(h, "/", "pk_file", cfg->pk_file));
  return CB_OK;
}

int ic_config_read_attrs(h5file *h, ic_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  long seed = 0;
  CB_CALL(h5io_attr_read_double(h, "/", "box_size", &cfg->box_size));
  CB_CALL(h5io_attr_read_long(h, "/", "n_grid", &cfg->n_grid));
  CB_CALL(h5io_attr_read_long(h, "/", "seed", &seed));
  cfg->seed = (unsigned long)seed;
  CB_CALL(h5io_attr_read_double(h, "/", "redshift", &cfg->cosmo.redshift));
  CB_CALL(h5io_attr_read_double(h, "/", "Omega_m", &cfg->cosmo.Omega_m));
  CB_CALL(h5io_attr_read_double(h, "/", "Omega_b", &cfg->cosmo.Omega_b));
  CB_CALL(h5io_attr_read_double(h, "/", "h", &cfg->cosmo.h));
  CB_CALL(h5io_attr_read_double(h, "/", "n_s", &cfg->cosmo.n_s));
  CB_CALL(h5io_attr_read_double(h, "/", "sigma_8", &cfg->cosmo.sigma_8));
  CB_CALL(h5io_attr_read_string(h, "/", "pk_file", cfg->pk_file, sizeof cfg->pk_file));
  return CB_OK;
}
