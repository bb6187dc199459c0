/* bench: the benchmarks behind `cerberus bench NAME`, and the helpers they share.
 *
 * A benchmark is a function `int bench_NAME(MPI_Comm comm, options *o)` that reads its own
 * options (-n_grid, -repeat, ...), calls options_finish, times its work with bench_clock_*
 * and prints one CSV row under a header line with bench_print_csv:
 *
 *   bench,n_grid,ranks,repeat,seconds_per_pair,...
 *   fft,64,2,20,0.00123,...
 *
 * To add one: write src/bench_NAME.c, declare it here, and add one line to the table in
 * src/cmd_bench.c. Columns start with bench,n_grid,ranks so rows from different runs of the
 * same benchmark concatenate into one scaling table. */
#ifndef CERBERUS_BENCH_H
#define CERBERUS_BENCH_H

#include <mpi.h>

#include "cerberus/options.h"

/* -n_grid (default 64) and -repeat (default def_repeat, >= 1): the two options every
 * benchmark has. Errors name the option. Collective. */
int bench_grid_options(options *o, long def_repeat, long *n_grid, long *repeat);

/* Start a timing: a barrier, then MPI_Wtime. Collective. */
double bench_clock_start(MPI_Comm comm);
/* Seconds since t0, the maximum over the ranks (the slowest rank sets the pace). Collective. */
double bench_clock_stop(MPI_Comm comm, double t0);

/* Rank 0 prints header and row (each a line, no trailing newline needed). Collective. */
void bench_print_csv(MPI_Comm comm, const char *header, const char *row);

/* The benchmarks. Collective. */
int bench_fft(MPI_Comm comm, options *o); /* pairs of r2c + c2r transforms (src/bench_fft.c) */
int bench_lpt(MPI_Comm comm, options *o); /* LPT, CIC, forward model + adjoint (src/bench_lpt.c) */
int bench_loglike(MPI_Comm comm, options *o); /* ln L and gradients (src/bench_loglike.c) */

#endif
