/* cmd_bench: `cerberus bench NAME [-n_grid N] [-repeat R] ...`, one CSV row of timings.
 *
 * NAME picks a benchmark from the table below (include/cerberus/bench.h); each reads its own
 * options and prints a header line and one row at the current number of ranks, so a scaling
 * study is a loop over `mpiexec -n P cerberus bench NAME`. Collective. */
#include "cerberus/bench.h"
#include "cerberus/commands.h"
#include "cerberus/options.h"
#include "cerberus/status.h"

#include <stdio.h>
#include <string.h>

typedef struct bench_entry {
  const char *name;
  int (*run)(MPI_Comm comm, options *o);
  const char *summary;
} bench_entry;

/* One line a benchmark. */
static const bench_entry bench_table[] = {
    {"loglike", bench_loglike, "ln L, ln L + exact gradients, ghost exchange vs PETSc DMDA"},
    {"fft", bench_fft, "pairs of r2c + c2r transforms of an n_grid^3 field"},
    {"lpt", bench_lpt, "LPT, CIC and the forward model with its adjoint, in FFTs"},
    {"hmc", bench_hmc, "ESS per gradient and per second of each sampler on the weights' posterior"},
    {"heldout", bench_heldout, "held-out ln L gain of the engine over the power law (two mocks)"},
    {"memory", bench_memory, "the STREAM triad over arrays of the grid's size: memory bandwidth"},
    {"abc", bench_abc, "ABC: grf simulations per second on 1 group and on all the groups"},
    {NULL, NULL, NULL}};

static void bench_list(char *buf, size_t n) {
  buf[0] = '\0';
  for (const bench_entry *b = bench_table; b->name; b++) {
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "%s%s", len ? ", " : "", b->name);
  }
}

int cmd_bench(int argc, char **argv, MPI_Comm comm) {
  char list[512], title[64], summary[512];
  bench_list(list, sizeof list);
  const bench_entry *b = NULL;
  if (argc >= 1)
    for (const bench_entry *e = bench_table; e->name; e++)
      if (!strcmp(e->name, argv[0])) b = e;
  snprintf(title, sizeof title, "bench %s", b ? b->name : "NAME");
  snprintf(summary, sizeof summary, "%s (benchmarks: %s)", b ? b->summary : "timings as CSV", list);
  options *o = NULL;
  CB_CALL(options_create(comm, title, summary, &o));
  int st;
  if (!b && options_help_requested(o))
    st = options_finish(o);
  else if (argc == 0)
    st = CB_ERROR(CB_ERR_INPUT, "no benchmark named (cerberus bench NAME; NAME one of %s)", list);
  else if (!b)
    st = CB_ERROR(CB_ERR_INPUT, "unknown benchmark '%s' (one of %s)", argv[0], list);
  else if (argc > 1)
    st = CB_ERROR(CB_ERR_INPUT, "unexpected argument '%s' after 'bench %s'", argv[1], b->name);
  else
    st = b->run(comm, o);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
