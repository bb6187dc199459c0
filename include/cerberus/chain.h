/* chain: the chain file, HDF5 laid out as ArviZ's InferenceData in NetCDF-4 form, so that
 * xarray.open_dataset(FILE, group="posterior") and arviz.from_netcdf read it as it is.
 *
 * Groups (each holds its own dimension scales chain, draw and the others it uses; draw is
 * unlimited and chunked):
 *   /posterior     weights (chain, draw, weight), the weights (not the monotone engine's
 *                  sampled t_c: its centre weights are softplus(t_c)); the coordinate
 *                  `weight` holds their names (weights_name); mass_function (chain, draw,
 *                  density_bin, mass), dn/dlnM in (Mpc/h)^-3 averaged over the voxels of each
 *                  density bin (coordinates: the bins' centres in delta, attribute
 *                  delta_edges, and the masses in M_sun/h);
 *   /sample_stats  lp, log_likelihood, acceptance_rate, step_size, n_steps (int64), energy,
 *                  energy_error, diverging (int8 read as bool), wall_time (seconds the
 *                  sample took), each (chain, draw);
 *   /warmup        all of the above during warm-up, in one group.
 * Root attributes: what the caller sets (options, code version, gradient counts, mass
 * matrix...). Dimension scales follow netCDF-4: a coordinate's dataset is the scale, with
 * the _Netcdf4Dimid attribute; variables carry the scales attached, dimension by dimension.
 *
 * Writing: rank 0 of the communicator holds the file; the others only take part in the
 * calls. Records are buffered and written by chain_flush, which opens the file, extends the
 * draw dimension, writes and closes it again, so that between flushes the file is complete
 * and readable by another process. A record of one chain at one step is CHAIN_RECORD(d)
 * doubles: the d weights, the POSTERIOR mass-function values (n_bins x n_masses), then the
 * statistics in enum chain_stat order.
 * Collective unless said otherwise. */
#ifndef CERBERUS_CHAIN_H
#define CERBERUS_CHAIN_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

enum chain_stat {
  CHAIN_LP = 0,
  CHAIN_LOG_LIKELIHOOD,
  CHAIN_ACCEPTANCE_RATE,
  CHAIN_STEP_SIZE,
  CHAIN_N_STEPS,
  CHAIN_ENERGY,
  CHAIN_ENERGY_ERROR,
  CHAIN_DIVERGING,
  CHAIN_WALL_TIME,
  CHAIN_N_STATS
};
/* "lp", "log_likelihood", ... Not collective. */
const char *chain_stat_name(int s);

enum chain_phase { CHAIN_WARMUP = 0, CHAIN_SAMPLING = 1 };

typedef struct chain_layout {
  int n_chains;
  size_t dim;              /* weights per draw */
  char (*names)[64];       /* [dim] weight names */
  int n_bins;              /* density bins of the mass function */
  int n_masses;            /* masses of the mass function */
  const double *bin_edges; /* [n_bins + 1], delta */
  const double *masses;    /* [n_masses], M_sun/h */
} chain_layout;

/* Doubles in one record. Not collective. */
size_t chain_record_size(const chain_layout *l);

typedef struct chain_file chain_file;

/* Create the file with its layout (no draws), written under a temporary name and renamed;
 * an existing path is refused without overwrite. Collective. */
int chain_create(MPI_Comm comm, const char *path, bool overwrite, const chain_layout *l,
                 chain_file **cf);
/* Reopen an existing chain file to continue it, keeping n_warmup warm-up draws and n_samples
 * sampling draws of each chain and dropping any beyond (written after the checkpoint that is
 * being resumed). The layout must match (error naming the file). Collective. */
int chain_reopen(MPI_Comm comm, const char *path, const chain_layout *l, long n_warmup,
                 long n_samples, chain_file **cf);
/* Sync and close; accepts NULL, leaves NULL. Collective. */
int chain_close(chain_file **cf);

/* One step of every chain: rec holds n_chains records (only rank 0's copy is used), the draw
 * is the next one of the phase. Buffered. Collective (cheap: nothing is communicated). */
int chain_append(chain_file *cf, int phase, const double *rec);
/* Write the buffered draws (and the root attributes set since). When the file is busy (a
 * reader holds its lock) for about a second, the draws stay buffered for the next write, with
 * a warning: a reader never stops a run. Collective. */
int chain_flush(chain_file *cf);
/* The same, but the draws must be written (before a checkpoint, at the close): about ten
 * seconds of retries, then CB_ERR_IO. Collective. */
int chain_sync(chain_file *cf);
/* Draws written or buffered in a phase. Not collective. */
long chain_draws(const chain_file *cf, int phase);

/* Root attributes, written at the next flush (rank 0's values). Collective. */
int chain_set_attr_string(chain_file *cf, const char *name, const char *value);
int chain_set_attr_long(chain_file *cf, const char *name, long value);
/* An array attribute of n doubles (e.g. a mass matrix, flattened: give its shape in a
 * companion attribute). Collective. */
int chain_set_attr_doubles(chain_file *cf, const char *name, size_t n, const double *v);

/* Reading (for cerberus diagnose): every rank reads the whole file. */
typedef struct chain_data {
  int n_chains;
  long n_draws; /* draws of the phase read */
  size_t dim;
  char (*names)[64]; /* [dim] */
  int n_bins, n_masses;
  double *bin_edges;     /* [n_bins + 1] */
  double *masses;        /* [n_masses] */
  double *weights;       /* [chain][draw][dim] */
  double *mass_function; /* [chain][draw][n_bins * n_masses] */
  double *stats;         /* [chain][draw][CHAIN_N_STATS] */
} chain_data;

/* Read one phase. A draw not yet written (NaN lp) ends the chains there: n_draws is the
 * smallest count of complete draws over the chains. Errors name the file. Not collective. */
int chain_read(const char *path, int phase, chain_data *d);
void chain_data_free(chain_data *d); /* Not collective. */
/* A root attribute of a chain file: string (empty if absent). Not collective. */
int chain_read_attr_string(const char *path, const char *name, char *buf, size_t n);

#endif
