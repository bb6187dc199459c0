/* bench: helpers shared by the benchmarks (include/cerberus/bench.h): timing with a barrier
 * and the maximum over ranks, the common options, and the CSV row. */
#include "cerberus/bench.h"

#include "cerberus/field.h"
#include "cerberus/status.h"

#include <stdio.h>

int bench_grid_options(options *o, long def_repeat, long *n_grid, long *repeat) {
  long n_short = 0;
  CB_CALL(options_int(o, "-n_grid", "grid points per side", 64, n_grid));
  /* -N, as the benchmark targets in the issues spell it, is the same option */
  CB_CALL(options_int(o, "-N", "the same as -n_grid (0: use -n_grid)", 0, &n_short));
  if (n_short != 0) *n_grid = n_short;
  CB_CALL(options_int(o, "-repeat", "timed repetitions (after one untimed warm-up)", def_repeat,
                      repeat));
  CB_CHECK(*repeat >= 1, CB_ERR_INPUT, "-repeat must be at least 1 (got %ld)", *repeat);
  CB_CALL(field_plan_options(o));
  return CB_OK;
}

double bench_clock_start(MPI_Comm comm) {
  MPI_Barrier(comm);
  return MPI_Wtime();
}

double bench_clock_stop(MPI_Comm comm, double t0) {
  double dt = MPI_Wtime() - t0, max = 0;
  MPI_Allreduce(&dt, &max, 1, MPI_DOUBLE, MPI_MAX, comm);
  return max;
}

void bench_print_csv(MPI_Comm comm, const char *header, const char *row) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank != 0) return;
  printf("%s\n%s\n", header, row);
  fflush(stdout);
}
