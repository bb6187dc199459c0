/* bench_abc: `cerberus bench abc [-n_grid 32] [-n_sims 400] [-repeat 3] [-group_size 1]`, the
 * simulation rate of an ABC campaign on rank groups (MODEL.md section 10).
 *
 * The work timed is a rejection round of -n_sims grf simulations (P(k) = A k^-B on an n_grid^3
 * field, A and B drawn from a uniform prior), each compressed to the exact score at the
 * fiducial, its distance measured and journalled, with the campaign file written at the end:
 * everything a campaign does per simulation. It runs on one group (the first group_size ranks;
 * the others wait asleep) and on all the groups of the run, the two interleaved round by round;
 * the fastest of -repeat rounds is kept. One CSV row per layout: the simulations per second and
 * the parallel efficiency rate(G groups) / (G rate(1 group)); beside them the CPU seconds
 * summed over the ranks and the efficiency in simulations per CPU second, which on a shared
 * machine (other jobs on the cores) shows the cost of the parallel scheme itself (messages,
 * waiting, speculative simulations) apart from the cores' availability. Files go to $TMPDIR
 * (or /tmp) and are removed. Collective. */
#include "cerberus/abc.h"
#include "cerberus/bench.h"
#include "cerberus/compress.h"
#include "cerberus/groups.h"
#include "cerberus/simulator.h"
#include "cerberus/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct abc_bench {
  MPI_Comm comm; /* the ranks of this layout; MPI_COMM_NULL on the others */
  bool in;
  groups *g;
  simulator *sim;
  compressor *c;
  double x_obs[SIMULATOR_MAX_PARAMS];
  abc_config cfg;
  double best;     /* s, the fastest round */
  double best_cpu; /* CPU s summed over the ranks, the least of the rounds */
} abc_bench;

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int setup(abc_bench *b, long n_grid, long n_sims, int group_size, int tag) {
  simulator_config sc = simulator_config_default();
  sc.n_grid = n_grid;
  CB_CALL(groups_create(b->comm, group_size, &b->g));
  CB_CALL(simulator_create(b->g->comm, "grf", &sc, &b->sim));
  compress_config cc = {.kind = COMPRESS_SCORE};
  CB_CALL(compress_create(b->sim, &cc, &b->c));
  double *obs = calloc(b->sim->n_local + 1, sizeof(double));
  CB_CHECK(obs != NULL, CB_ERR_MEM, "out of memory");
  int st = b->g->group == 0 ? simulator_run(b->sim, b->sim->fiducial, 7, obs) : CB_OK;
  if (st == CB_OK) st = abc_observed(b->g, b->sim, b->c, obs, b->x_obs);
  free(obs);
  CB_CALL(st);
  const char *tmp = getenv("TMPDIR");
  abc_config *a = &b->cfg;
  memset(a, 0, sizeof *a);
  a->method = ABC_REJECTION;
  a->n_particles = 2;
  a->n_initial = n_sims;
  a->percentile = 75;
  a->seed = 1;
  a->prior = (abc_prior){.kind = ABC_PRIOR_UNIFORM, .n = 2, .a = {0.5, 0.0}, .b = {1.5, 1.0}};
  a->checkpoint_interval = 1e9;
  a->progress_interval = 1e9;
  a->overwrite = true;
  snprintf(a->path, sizeof a->path, "%s/cerberus_bench_abc_%ld_%d.h5", tmp && tmp[0] ? tmp : "/tmp",
           (long)getpid(), tag);
  a->quiet = true;
  b->best = b->best_cpu = 1e300;
  return CB_OK;
}

static int time_round(abc_bench *b) {
  abc *a = NULL;
  double t0 = bench_clock_start(b->comm), c0 = cpu_now();
  CB_CALL(abc_create(b->g, b->sim, b->c, &b->cfg, b->x_obs, NULL, &a));
  bool done = false, stopped = false;
  int st = abc_round(a, &done, &stopped);
  abc_destroy(&a);
  CB_CALL(st);
  double t = bench_clock_stop(b->comm, t0), cpu = cpu_now() - c0;
  MPI_Allreduce(MPI_IN_PLACE, &cpu, 1, MPI_DOUBLE, MPI_SUM, b->comm);
  if (t < b->best) b->best = t;
  if (cpu < b->best_cpu) b->best_cpu = cpu;
  if (b->g->is_coordinator) {
    char j[4200];
    snprintf(j, sizeof j, "%s.journal", b->cfg.path);
    unlink(j);
  }
  return CB_OK;
}

static void teardown(abc_bench *b) {
  if (b->g && b->g->is_coordinator) unlink(b->cfg.path);
  compress_destroy(&b->c);
  simulator_destroy(&b->sim);
  groups_destroy(&b->g);
  if (b->comm != MPI_COMM_NULL) MPI_Comm_free(&b->comm);
}

int bench_abc(MPI_Comm comm, options *o) {
  long n, repeat, n_sims, gs;
  CB_CALL(options_int(o, "-n_grid", "grid points per side of the grf simulations", 32, &n));
  CB_CALL(options_int(o, "-repeat", "rounds timed (the fastest is kept)", 3, &repeat));
  CB_CHECK(repeat >= 1, CB_ERR_INPUT, "-repeat must be at least 1 (got %ld)", repeat);
  CB_CALL(options_int(o, "-n_sims", "simulations in a timed round", 400, &n_sims));
  CB_CALL(options_int(o, "-group_size", "ranks per group", 1, &gs));
  CB_CALL(options_finish(o));
  CB_CHECK(n_sims >= 2, CB_ERR_INPUT, "-n_sims must be at least 2 (got %ld)", n_sims);
  int size, rank;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  CB_CHECK(gs >= 1 && size % gs == 0, CB_ERR_INPUT,
           "-group_size %ld does not divide the %d MPI ranks into whole groups", gs, size);
  const int nb = size / gs > 1 ? 2 : 1; /* one group, and all the groups */
  const int counts[2] = {(int)gs, size};
  abc_bench b[2];
  for (int i = 0; i < nb; i++) b[i] = (abc_bench){.comm = MPI_COMM_NULL};
  int st = CB_OK;
  for (int i = nb - 1; i >= 0 && st == CB_OK; i--) {
    b[i].comm = bench_first_ranks(comm, counts[i]);
    b[i].in = b[i].comm != MPI_COMM_NULL;
    st = bench_agreed(comm, b[i].in ? setup(&b[i], n, n_sims, (int)gs, i) : CB_OK, b[i].in);
  }
  for (long r = 0; r < repeat && st == CB_OK; r++)
    for (int i = 0; i < nb && st == CB_OK; i++)
      st = bench_agreed(comm, b[i].in ? time_round(&b[i]) : CB_OK, b[i].in);
  if (st == CB_OK && rank == 0) {
    printf("bench,n_grid,ranks,groups,group_size,repeat,n_sims,seconds,sims_per_s,"
           "parallel_efficiency,cpu_seconds,sims_per_cpu_s,cpu_efficiency\n");
    double rate1 = (double)n_sims / b[0].best, crate1 = (double)n_sims / b[0].best_cpu;
    for (int i = 0; i < nb; i++) {
      int groups = counts[i] / (int)gs;
      double rate = (double)n_sims / b[i].best, crate = (double)n_sims / b[i].best_cpu;
      printf("abc,%ld,%d,%d,%ld,%ld,%ld,%.6g,%.6g,%.4f,%.6g,%.6g,%.4f\n", n, counts[i], groups, gs,
             repeat, n_sims, b[i].best, rate, rate / (groups * rate1), b[i].best_cpu, crate,
             crate / crate1);
    }
    fflush(stdout);
  }
  for (int i = 0; i < nb; i++) teardown(&b[i]);
  CB_CALL(st);
  return CB_OK;
}
