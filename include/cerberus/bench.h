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
 * src/commands/cmd_bench.c. Columns start with bench,n_grid,ranks so rows from different runs of
 * the same benchmark concatenate into one scaling table. */
#ifndef CERBERUS_BENCH_H
#define CERBERUS_BENCH_H

#include <mpi.h>
#include <stdbool.h>

#include "cerberus/options.h"

/* -n_grid (default 64) and -repeat (default def_repeat, >= 1): the two options every
 * benchmark has. Errors name the option. Collective. */
int bench_grid_options(options *o, long def_repeat, long *n_grid, long *repeat);

/* Start a timing: a barrier, then MPI_Wtime. Collective. */
double bench_clock_start(MPI_Comm comm);
/* Seconds since t0, the maximum over the ranks (the slowest rank sets the pace). Collective. */
double bench_clock_stop(MPI_Comm comm, double t0);

/* CPU seconds (user + system, getrusage) the processes of comm have spent so far, summed over
 * the ranks: on a shared machine the load-independent cost (2 ranks busy for 10 minutes make
 * 1200). Collective. */
double bench_cpu_seconds(MPI_Comm comm);

/* -scaling, for the benchmarks that measure several rank counts in one run: rows for the first
 * 1, 2, 4, ... ranks (sub-communicators) as well as for all of them, the rounds interleaving
 * the rank counts, so that the speed-up between two rows is measured under the same
 * conditions. Collective on o. */
int bench_scaling_option(options *o, bool *scaling);
enum { BENCH_MAX_COUNTS = 32 };
/* The rank counts of a run on comm: 1, 2, 4, ... below its size when scaling, then its size.
 * Returns how many. Not collective. */
int bench_rank_counts(MPI_Comm comm, bool scaling, int counts[BENCH_MAX_COUNTS]);
/* The first count ranks of comm as a new communicator (free it with MPI_Comm_free), and
 * MPI_COMM_NULL on the others. Collective. */
MPI_Comm bench_first_ranks(MPI_Comm comm, int count);
/* A status every rank of comm shares: st if it failed here, else an error if it failed on
 * another rank (whose message that rank holds). The ranks that are not member (of the rank
 * count being timed) wait asleep, so that their cores are idle. Collective. */
int bench_agreed(MPI_Comm comm, int st, bool member);

/* Rank 0 prints header (unless NULL: a further row) and row (each a line, no trailing newline
 * needed). Collective. */
void bench_print_csv(MPI_Comm comm, const char *header, const char *row);

/* The benchmarks. Collective. */
int bench_fft(MPI_Comm comm,
              options *o); /* pairs of r2c + c2r transforms (src/bench/bench_fft.c) */
int bench_lpt(MPI_Comm comm,
              options *o); /* LPT, CIC, forward model + adjoint (src/bench/bench_lpt.c) */
int bench_loglike(MPI_Comm comm, options *o); /* ln L and gradients (src/bench/bench_loglike.c) */
int bench_memory(MPI_Comm comm, options *o);  /* the STREAM triad (src/bench/bench_memory.c) */
int bench_abc(MPI_Comm comm, options *o); /* ABC simulations per second on groups (bench_abc.c) */
int bench_hmc(MPI_Comm comm, options *o); /* the samplers' ESS (src/bench/bench_hmc.c) */
int bench_heldout(MPI_Comm comm, options *o); /* held-out ln L gain (bench_heldout.c) */

#endif
