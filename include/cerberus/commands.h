/* commands: the subcommands of the cerberus program. Each reads its options, calls the
 * layers below, writes HDF5 and reports. argc/argv hold the positional arguments after the
 * command name (options are in PETSc's database). Collective on comm. */
#ifndef CERBERUS_COMMANDS_H
#define CERBERUS_COMMANDS_H

#include <mpi.h>

typedef int (*command_fn)(int argc, char **argv, MPI_Comm comm);

typedef struct command {
  const char *name;
  command_fn run;
  const char *summary;
} command;

/* The table, terminated by a NULL name (src/commands/main.c). */
extern const command command_table[];

int cmd_catalogue(int argc, char **argv, MPI_Comm comm);
int cmd_mock(int argc, char **argv, MPI_Comm comm);
int cmd_ic(int argc, char **argv, MPI_Comm comm);
int cmd_pk(int argc, char **argv, MPI_Comm comm);
int cmd_bench(int argc, char **argv, MPI_Comm comm);
int cmd_weights(int argc, char **argv, MPI_Comm comm);
int cmd_loglike(int argc, char **argv, MPI_Comm comm);
int cmd_hmf(int argc, char **argv, MPI_Comm comm);
int cmd_imnn(int argc, char **argv, MPI_Comm comm);
int cmd_abc(int argc, char **argv, MPI_Comm comm);
int cmd_infer(int argc, char **argv, MPI_Comm comm);
int cmd_diagnose(int argc, char **argv, MPI_Comm comm);

#endif
