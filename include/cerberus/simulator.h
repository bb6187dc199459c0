/* simulator: the simulators of likelihood-free inference, behind one table of function pointers.
 *
 * MODEL.md sections 9 and 10. A simulator maps parameters theta and a 64-bit seed to data:
 * each simulation is fully determined by (theta, seed), whatever the number of ranks of the
 * communicator that runs it. A simulator is a simulator_type (name, description, parameter
 * names, fiducial, and the functions create / run / destroy, plus optional exact
 * log-likelihood, score and Fisher matrix); the built-in ones are registered at first use, and a
 * user adds their own C simulator with simulator_register (a static simulator_type of theirs).
 *
 * Built in:
 *  - gaussian: n draws (-sim_n, 10) of N(0, theta), theta the variance; fiducial 1.
 *    Exact: ln L, score, F = n / (2 theta^2).
 *  - grf: a 3-D Gaussian random field with P(k) = A k^-B (k in h/Mpc), delta(k) = sqrt(P/V) s(k)
 *    from the white noise s of ic.h (keyed by global plane index: the same field on any number
 *    of ranks), on an FFTW-MPI field of -n_grid (32) and -box_size (250) over the communicator;
 *    fiducial (A, B) = (1, 0.5). Exact: ln L = -1/2 sum_k (|d(k)|^2 / (N^3 P/V) + ln P) over
 *    all N^3 - 1 modes k != 0 (no constant), score, F_ab = 1/2 sum_k d_a ln P d_b ln P.
 *  - lpt: the LPT density delta of the forward model (forward.h, order -lpt_order, 1) with
 *    parameters (Omega_m, sigma_8), the rest of the cosmology from the cosmology options;
 *    fiducial from -Omega_m, -sigma_8 (Planck-2018-like defaults). No exact likelihood.
 *
 * Data. Field simulators (is_field) return the local slab of the field (n_local =
 * field->n_real_local values on each rank, n_data = N^3 in all); the others return the n_data
 * values on every rank of the communicator, identical (n_local = n_data).
 * Parameters a simulator cannot take (a variance <= 0, A <= 0, Omega_m <= Omega_b, ...) give
 * data filled with NaN and CB_OK: a failed simulation, which ABC records and replaces. An error
 * status from run is a real error (memory, a broken invariant). */
#ifndef CERBERUS_SIMULATOR_H
#define CERBERUS_SIMULATOR_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/options.h"

#define SIMULATOR_MAX_PARAMS 8
#define SIMULATOR_MAX_TYPES 32

/* Everything a built-in simulator is made from; a user's simulator may read `user`. */
typedef struct simulator_config {
  long n_draws;       /* gaussian: -sim_n (10) */
  long n_grid;        /* grf, lpt: -n_grid (32) */
  double box_size;    /* grf, lpt: -box_size, Mpc/h (250) */
  int lpt_order;      /* lpt: -lpt_order (1) */
  cosmo_params cosmo; /* lpt: the cosmology (Omega_m, sigma_8 are its fiducial) */
  const void *user;   /* for a user's simulator (NULL for the built-in ones) */
} simulator_config;

typedef struct simulator simulator;

typedef struct simulator_type {
  const char *name;        /* unique, as given to -simulator */
  const char *description; /* one line */
  int n_params;            /* 1 .. SIMULATOR_MAX_PARAMS */
  const char *param_names[SIMULATOR_MAX_PARAMS];
  double fiducial[SIMULATOR_MAX_PARAMS]; /* default fiducial (create may change sim->fiducial) */
  /* Set sim->is_field, sim->field (a field.h decomposition over sim->comm, owned by the state;
   * NULL when not a field), sim->n_data, sim->n_local, sim->state. sim->comm, sim->cfg,
   * sim->n_params and sim->fiducial are set before the call. Collective on sim->comm. */
  int (*create)(simulator *sim, const simulator_config *cfg);
  /* data (n_local values) from theta and seed. Collective on sim->comm. */
  int (*run)(simulator *sim, const double *theta, uint64_t seed, double *data);
  /* Free sim->state (and the field); must accept a partly made state. Collective. */
  void (*destroy)(simulator *sim);
  /* Optional (NULL when not known): exact ln L(theta | data), its gradient d ln L / d theta
   * (the score), and the Fisher matrix (n_params^2, row-major). Collective on sim->comm. */
  int (*loglike)(simulator *sim, const double *theta, const double *data, double *lnL);
  int (*score)(simulator *sim, const double *theta, const double *data, double *score);
  int (*fisher)(simulator *sim, const double *theta, double *F);
} simulator_type;

struct simulator {
  const simulator_type *type;
  MPI_Comm comm; /* the group's communicator (not duplicated: the caller's) */
  simulator_config cfg;
  int n_params;
  double fiducial[SIMULATOR_MAX_PARAMS];
  bool is_field;  /* data is a distributed field on `field` */
  field *field;   /* the field decomposition, NULL for non-field data */
  size_t n_data;  /* values of one simulation, in all */
  size_t n_local; /* values on this rank */
  void *state;    /* the type's own */
};

/* Defaults of every field above (n 10, N 32, L 250, order 1, Planck-2018-like cosmology). */
simulator_config simulator_config_default(void);

/* -simulator NAME (default def) into name, and the options of that simulator into cfg:
 * gaussian -sim_n; grf -n_grid -box_size; lpt -n_grid -box_size -lpt_order and the cosmology
 * options (ic.h). An unknown name is an error listing the names. Collective. */
int simulator_options(options *o, const char *def, char *name, size_t name_size,
                      simulator_config *cfg);

/* Add a user's simulator type to the table (the pointer is kept: give a static object).
 * CB_ERR_INPUT for a duplicate name, a missing create/run/destroy, n_params outside
 * 1..SIMULATOR_MAX_PARAMS, or a full table. Not collective (call it on every rank). */
int simulator_register(const simulator_type *t);
/* The type of that name; CB_ERR_INPUT "unknown simulator 'x' (known: gaussian, grf, ...)". */
int simulator_lookup(const char *name, const simulator_type **t);
/* "gaussian, grf, lpt, ..." into buf. Not collective. */
void simulator_names(char *buf, size_t n);

/* Make a simulator of the named type on comm. Collective on comm. */
int simulator_create(MPI_Comm comm, const char *name, const simulator_config *cfg, simulator **sim);
void simulator_destroy(simulator **sim); /* Collective; accepts NULL, leaves NULL. */

/* One simulation: data (n_local values on this rank) from theta (n_params) and seed.
 * Collective on sim->comm. */
int simulator_run(simulator *sim, const double *theta, uint64_t seed, double *data);

/* Exact ln L, score and Fisher matrix where the type knows them; CB_ERR_INPUT naming the
 * simulator otherwise (simulator_has_exact tells beforehand). Collective on sim->comm. */
bool simulator_has_exact(const simulator *sim);
int simulator_loglike(simulator *sim, const double *theta, const double *data, double *lnL);
int simulator_score(simulator *sim, const double *theta, const double *data, double *score);
int simulator_fisher(simulator *sim, const double *theta, double *F);

/* True when every local value is finite, on every rank of sim->comm. Collective. */
bool simulator_data_finite(simulator *sim, const double *data);

/* Write one simulation's data (n_local values on each rank, as simulator_run gives them at
 * theta and seed) to path, temporary name + rename: a field as the n^3 dataset `dataset` with
 * the box_size and n_grid attributes (h5io_read_field_file reads it), a vector as a 1-D
 * dataset; /theta_true (the parameters), the attributes simulator and seed, and the options
 * and code version of o (may be NULL). Collective on sim->comm. */
int simulator_write(simulator *sim, const double *theta, uint64_t seed, const double *data,
                    const char *path, const char *dataset, bool overwrite, const options *o);

#endif
