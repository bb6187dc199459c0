/* main: the cerberus program. `cerberus CMD [positional args] [-options]`.
 *
 * main splits off the command name and its positional arguments, hands the options to
 * PETSc (so -options_file, PETSC_OPTIONS and -log_view work as HPC users expect), runs the
 * command on MPI_COMM_WORLD (the only place that names it) and turns a failure into one line
 * on stderr, "cerberus CMD: error: <message>", and a non-zero exit code. -traceback adds the
 * file:line frames. -help is taken out before PETSc sees it and answered by the command's
 * own option list. */
#include "cerberus/commands.h"
#include "cerberus/log.h"
#include "cerberus/options.h"
#include "cerberus/status.h"
#include "cerberus/version.h"

#include <petscsys.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One line a command; later issues add theirs. */
const command command_table[] = {
    {"ic", cmd_ic, "white noise and the linear density field delta_L (HDF5)"},
    {"pk", cmd_pk, "the power spectrum P(k) of a field in an HDF5 file"},
    {"bench", cmd_bench, "benchmarks as CSV rows (bench fft -n_grid N)"},
    {"catalogue", cmd_catalogue, "catalogue import: a text halo catalogue into HDF5"},
    {"mock", cmd_mock, "a mock universe: delta from a seed and its halo catalogue"},
    {"weights", cmd_weights, "weights files for an architecture (weights init -o FILE)"},
    {"loglike", cmd_loglike, "ln L of a catalogue given a field and weights, with gradients"},
    {"infer", cmd_infer, "sample the weights' posterior with HMC (chain file, checkpoints)"},
    {"diagnose", cmd_diagnose, "convergence table of a chain file (R-hat, ESS, MCSE)"},
    {"hmf", cmd_hmf, "the mass function of a model in bins of delta, beside a catalogue's"},
    {"imnn", cmd_imnn, "information maximising networks: imnn train, compress, fisher"},
    {"abc", cmd_abc, "ABC campaigns over rank groups: abc run | observe | summary FILE"},
    {NULL, NULL, NULL}};

static void usage(FILE *out) {
  fprintf(out,
          "cerberus %s: Bayesian inference with neural networks in the physics\n\n"
          "Usage: cerberus COMMAND [arguments] [-option value ...]\n\nCommands:\n",
          version_string());
  fprintf(out, "  %-10s %s\n", "help", "list the commands");
  fprintf(out, "  %-10s %s\n", "version", "print the code version");
  for (const command *c = command_table; c->name; c++)
    fprintf(out, "  %-10s %s\n", c->name, c->summary);
  fprintf(out, "\n`cerberus COMMAND -help` lists a command's options. Options may also come from\n"
               "-options_file FILE (PETSc format); -log_view prints PETSc's profile.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "-help") ||
      !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return argc < 2 ? 1 : 0;
  }
  if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
    printf("cerberus %s\n", version_string());
    return 0;
  }
  const command *cmd = NULL;
  for (const command *c = command_table; c->name; c++)
    if (!strcmp(c->name, argv[1])) cmd = c;
  if (!cmd) {
    fprintf(stderr, "cerberus: error: unknown command '%s' (see `cerberus help`)\n", argv[1]);
    return 2;
  }

  /* positional arguments: those after the command, before the first option */
  int npos = 0;
  char **pos = argv + 2;
  while (2 + npos < argc && argv[2 + npos][0] != '-') npos++;
  /* options for PETSc: program name + the rest, without -help */
  char **pargv = calloc((size_t)argc + 1, sizeof *pargv);
  if (!pargv) return 4;
  int pargc = 0;
  bool help = false;
  pargv[pargc++] = argv[0];
  for (int i = 2 + npos; i < argc; i++) {
    if (!strcmp(argv[i], "-help") || !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
      help = true;
    else
      pargv[pargc++] = argv[i];
  }
  pargv[pargc] = NULL;
  char **pargv_init = pargv;
  if (PetscInitialize(&pargc, &pargv_init, NULL, NULL) != 0) {
    fprintf(stderr, "cerberus %s: error: cannot initialise PETSc/MPI\n", cmd->name);
    free(pargv);
    return 6;
  }
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  PetscBool quiet = PETSC_FALSE, traceback = PETSC_FALSE;
  PetscOptionsHasName(NULL, NULL, "-quiet", &quiet);
  PetscOptionsHasName(NULL, NULL, "-traceback", &traceback);
  log_init(rank, quiet == PETSC_TRUE);
  options_set_global(help, pargc, pargv);

  int status = cmd->run(npos, pos, MPI_COMM_WORLD);

  int code = 0;
  if (status == CB_HELP_SHOWN) {
    code = 0;
  } else if (status != CB_OK) {
    /* user-input errors are collective: every rank has the same message; rank 0 speaks */
    if (rank == 0) {
      fprintf(stderr, "cerberus %s: error: %s\n", cmd->name, status_message());
      if (traceback || status == CB_ERR_INTERNAL) fputs(status_traceback(), stderr);
      fflush(stderr);
    }
    code = status < 100 ? status : 1;
  }
  PetscFinalize();
  free(pargv);
  return code;
}
