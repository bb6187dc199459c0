/* bench: helpers shared by the benchmarks (include/cerberus/bench.h): timing with a barrier
 * and the maximum over ranks, the common options, and the CSV row. */
#include "cerberus/bench.h"

#include "cerberus/field.h"
#include "cerberus/status.h"

#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

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

int bench_scaling_option(options *o, bool *scaling) {
  *scaling = false;
  CB_CALL(options_bool(o, "-scaling",
                       "also on the first 1, 2, 4, ... ranks (sub-communicators), interleaved "
                       "with the full run: one row per rank count, under the same conditions",
                       false, scaling));
  return CB_OK;
}

int bench_rank_counts(MPI_Comm comm, bool scaling, int counts[BENCH_MAX_COUNTS]) {
  int size, nb = 0;
  MPI_Comm_size(comm, &size);
  if (scaling)
    for (int r = 1; r < size && nb < BENCH_MAX_COUNTS - 1; r *= 2) counts[nb++] = r;
  counts[nb++] = size;
  return nb;
}

MPI_Comm bench_first_ranks(MPI_Comm comm, int count) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm sub = MPI_COMM_NULL;
  MPI_Comm_split(comm, rank < count ? 0 : MPI_UNDEFINED, rank, &sub);
  return sub;
}

/* The ranks outside a -scaling count (not member) wait asleep, testing every BENCH_NAP_NS,
 * while the others are timed: a rank that polled instead would keep its core busy, which on
 * some machines slows the timed ranks (measured on the 2-core development VM: a single rank's
 * memory bandwidth 10-15% lower beside a busy core than beside an idle one), so that the
 * smaller counts would look slower than in a run of their own. The members poll, as MPI does,
 * so that their cores do not go idle between the timed operations. */
enum { BENCH_NAP_NS = 200000 };

int bench_agreed(MPI_Comm comm, int st, bool member) {
  int bad = st != CB_OK, done = 0;
  MPI_Request req;
  MPI_Iallreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm, &req);
  for (MPI_Test(&req, &done, MPI_STATUS_IGNORE); !done; MPI_Test(&req, &done, MPI_STATUS_IGNORE))
    if (!member) nanosleep(&(struct timespec){.tv_nsec = BENCH_NAP_NS}, NULL);
  CB_CALL(st);
  CB_CHECK(!bad, CB_ERR_INTERNAL, "the benchmark failed on another rank");
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

double bench_cpu_seconds(MPI_Comm comm) {
  struct rusage ru;
  double t = 0, sum = 0;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    t = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
        (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
  MPI_Allreduce(&t, &sum, 1, MPI_DOUBLE, MPI_SUM, comm);
  return sum;
}

void bench_print_csv(MPI_Comm comm, const char *header, const char *row) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank != 0) return;
  if (header) printf("%s\n", header);
  printf("%s\n", row);
  fflush(stdout);
}
