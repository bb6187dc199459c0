/* options: typed command options from PETSc's options database, with help and a record.
 *
 * A command opens an options context, asks for each option it uses (with a default and a
 * one-line help), then finishes. Values come from PETSc's database, so -options_file,
 * environment PETSC_OPTIONS and the command line all work. At options_finish:
 *  - with -help, the command's options (name, default, help) are printed and CB_HELP_SHOWN
 *    is returned (main exits 0);
 *  - an option in the database that no one asked for and that PETSc does not own
 *    (a typo such as -n_gird) is an error naming it;
 *  - the record of every value used (defaults included) is available for output files.
 * Malformed values ("-n_grid abc") are errors naming the option. Collective on comm
 * (every rank reads the same database). */
#ifndef CERBERUS_OPTIONS_H
#define CERBERUS_OPTIONS_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct options options;

/* command: "ic", "pk", ...; summary: one line for -help. Collective. */
int options_create(MPI_Comm comm, const char *command, const char *summary, options **o);
void options_destroy(options **o);

int options_int(options *o, const char *name, const char *help, long def, long *value);
int options_real(options *o, const char *name, const char *help, double def, double *value);
/* A flag: present (or "-x true") gives true. */
int options_bool(options *o, const char *name, const char *help, bool def, bool *value);
/* String into buf (size n); def may be NULL (then "" and *set tells). set may be NULL. */
int options_string(options *o, const char *name, const char *help, const char *def, char *buf,
                   size_t n, bool *set);
/* One of a comma-separated list of choices, e.g. "softplus,relu,tanh,identity";
 * *index is its position. Unknown value: error listing the choices. */
int options_choice(options *o, const char *name, const char *help, const char *choices,
                   const char *def, int *index);
/* Comma-separated list of reals, at most nmax values (PETSc's -x 1,2,3 syntax). */
int options_real_array(options *o, const char *name, const char *help, double *values, int *n,
                       int nmax, bool *set);

/* Help, unknown options: see above. Collective. */
int options_finish(options *o);

/* "-n_grid 64\n-box_size 250\n..." for every option asked (values used). */
const char *options_record(const options *o);
const char *options_command(const options *o);

/* For main only: -help was given (main strips it before PETSc sees it) and the command
 * line, to tell typed options from options-file ones. Not collective. */
void options_set_global(bool help, int argc, char **argv);

/* Whether the user asked for -help (for commands that must skip work before finishing). */
bool options_help_requested(const options *o);

#endif
