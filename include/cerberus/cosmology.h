/* cosmology: the linear matter power spectrum, growth, sigma(M), Sheth-Tormen.
 *
 * MODEL.md section 2 (P(k), D(z)) and section 6 (sigma(M), Sheth & Tormen 1999,
 * peak-background-split Lagrangian bias). P(k) is either the Eisenstein & Hu (1998)
 * no-wiggle fit normalised to sigma_8 (top-hat of 8 Mpc/h) at z = 0 and scaled by
 * D(z)^2 of flat LCDM (D(0) = 1), or a two-column text table "k P(k)" (CLASS/CAMB
 * output, '#' comments allowed) interpolated in log-log and used as given (the table is
 * the spectrum at the redshift the user computed it for).
 * Units: k in h/Mpc, P in (Mpc/h)^3, R in Mpc/h, M in M_sun/h.
 * Nothing here speaks MPI: a table is read by every rank that creates the object.
 * Every function here is Not collective. sigma integrals of a table run over the table's
 * own k range. sigma_M, nu, dlnsigma_dlnM and st_dndlnm are splined (cheap, ~1e-8) on
 * 1e8 .. 1e17 M_sun/h and computed by quadrature (slow) outside. */
#ifndef CERBERUS_COSMOLOGY_H
#define CERBERUS_COSMOLOGY_H

#include <stdbool.h>

/* Sheth & Tormen (1999) constants and the spherical-collapse threshold (MODEL.md sec. 6). */
#define COSMO_DELTA_C 1.686
#define COSMO_ST_A 0.3222
#define COSMO_ST_a 0.707
#define COSMO_ST_p 0.3

typedef struct cosmo_params {
  double Omega_m, Omega_b, h, n_s, sigma_8;
  double redshift;
} cosmo_params;

/* Planck-2018-like defaults: 0.3111 0.0490 0.6766 0.9665 0.8102, z = 0. */
cosmo_params cosmo_params_default(void);

typedef struct cosmology cosmology;

/* Build P(k): pk_file NULL or "" for Eisenstein-Hu; otherwise the table (errors name
 * the file and the line: missing, unreadable, fewer than 2 rows, non-positive or
 * non-finite values, k not strictly increasing). Not collective. */
int cosmology_create(const cosmo_params *p, const char *pk_file, cosmology **c);
void cosmology_destroy(cosmology **c); /* accepts NULL, leaves NULL */

/* Error (CB_ERR_INPUT, naming the table and both ranges) if [kmin, kmax] is not inside
 * the range where P(k) is defined. Always succeeds for Eisenstein-Hu. */
int cosmology_check_k_range(const cosmology *c, double kmin, double kmax);

/* Linear P(k) at the redshift; 0 for k <= 0; NaN outside a table's range (check first
 * with cosmology_check_k_range). */
double cosmology_pk(const cosmology *c, double k);
double cosmology_transfer_eh(const cosmo_params *p, double k); /* EH no-wiggle T(k) */
double cosmology_growth(const cosmo_params *p, double z);      /* D(z), D(0) = 1 */
double cosmology_sigma_R(const cosmology *c, double R);        /* top-hat rms, linear */
double cosmology_rho_mean(const cosmo_params *p);              /* M_sun/h per (Mpc/h)^3 */
double cosmology_sigma_M(const cosmology *c, double M);        /* R = (3M/(4 pi rho))^1/3 */
/* Sheth-Tormen dn/dlnM per (Mpc/h)^3 and nu = delta_c/sigma(M); PBS Lagrangian bias. */
double cosmology_st_dndlnm(const cosmology *c, double M);
double cosmology_nu(const cosmology *c, double M);
double cosmology_pbs_bias(double nu);
/* Sheth-Tormen multiplicity nu f(nu) (MODEL.md section 6): integral of f over nu is 1. */
double cosmology_st_nufnu(double nu);
/* d ln sigma / d ln M (negative), from the analytic derivative of the sigma integral. */
double cosmology_dlnsigma_dlnM(const cosmology *c, double M);
const cosmo_params *cosmology_params(const cosmology *c);
bool cosmology_is_table(const cosmology *c);

#endif
