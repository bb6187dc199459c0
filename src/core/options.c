/* options: typed access to PETSc's options database for one command
 * (include/cerberus/options.h).
 *
 * Values are read as strings with PetscOptionsGetString and parsed here, so that a
 * malformed value gives our one-line message instead of PETSc's error banner. Every
 * option asked is appended to a help text (printed on -help) and to a record of the
 * values actually used, which every output file carries as its "options" attribute.
 * At options_finish, options nobody asked for are reported: an error when they were
 * typed on the command line (a typo must not silently run with a default), a warning
 * when they come from an options file shared between several commands. */
#include "cerberus/options.h"

#include "cerberus/log.h"
#include "cerberus/status.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <petscsys.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct options {
  MPI_Comm comm;
  char command[64];
  char summary[256];
  char *help;   /* growing text */
  char *record; /* growing text */
  size_t help_len, help_cap, record_len, record_cap;
};

/* Set by main: -help seen, and the options typed on the command line. */
static bool help_flag = false;
static int cli_argc = 0;
static char **cli_argv = NULL;

void options_set_global(bool help, int argc, char **argv) {
  help_flag = help;
  cli_argc = argc;
  cli_argv = argv;
}

static int text_append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int text_append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
  if (*len + (size_t)n + 1 > *cap) {
    size_t cap2 = (*cap ? *cap * 2 : 1024) + (size_t)n;
    char *b = realloc(*buf, cap2);
    CB_CHECK(b != NULL, CB_ERR_MEM, "out of memory recording options");
    *buf = b;
    *cap = cap2;
  }
  memcpy(*buf + *len, line, (size_t)n + 1);
  *len += (size_t)n;
  return CB_OK;
}

int options_create(MPI_Comm comm, const char *command, const char *summary, options **o) {
  options *p;
  CB_CALLOC(p, 1);
  p->comm = comm;
  snprintf(p->command, sizeof p->command, "%s", command);
  snprintf(p->summary, sizeof p->summary, "%s", summary ? summary : "");
  *o = p;
  CB_CALL(text_append(&p->record, &p->record_len, &p->record_cap, "%s", ""));
  CB_CALL(text_append(&p->help, &p->help_len, &p->help_cap, "%s", ""));
  return CB_OK;
}

void options_destroy(options **o) {
  if (!o || !*o) return;
  free((*o)->help);
  free((*o)->record);
  free(*o);
  *o = NULL;
}

bool options_help_requested(const options *o) {
  (void)o;
  return help_flag;
}

const char *options_record(const options *o) {
  return o->record;
}
const char *options_command(const options *o) {
  return o->command;
}

/* Look an option up as a raw string. *present: given at all; value "" for a bare flag. */
static int raw_get(const char *name, char *buf, size_t n, bool *present) {
  PetscBool set = PETSC_FALSE;
  buf[0] = '\0';
  PetscErrorCode ierr = PetscOptionsGetString(NULL, NULL, name, buf, n, &set);
  CB_CHECK(ierr == 0, CB_ERR_INPUT, "option %s: cannot read its value", name);
  *present = set == PETSC_TRUE;
  return CB_OK;
}

static int add_help(options *o, const char *name, const char *type, const char *def,
                    const char *help) {
  char head[128];
  snprintf(head, sizeof head, "%s <%s>", name, def);
  return text_append(&o->help, &o->help_len, &o->help_cap, "  %-34s %s (%s)\n", head, help, type);
}

static int add_record(options *o, const char *name, const char *value) {
  return text_append(&o->record, &o->record_len, &o->record_cap, "%s %s\n", name, value);
}

int options_int(options *o, const char *name, const char *help, long def, long *value) {
  char buf[256], defs[64];
  bool present = false;
  snprintf(defs, sizeof defs, "%ld", def);
  CB_CALL(add_help(o, name, "integer", defs, help));
  CB_CALL(raw_get(name, buf, sizeof buf, &present));
  *value = def;
  if (present) {
    CB_CHECK(buf[0] != '\0', CB_ERR_INPUT, "option %s needs an integer value", name);
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (*end != '\0') { /* accept 1e3 and 128.0 when they are whole numbers */
      double d = strtod(buf, &end);
      CB_CHECK(*end == '\0' && isfinite(d) && d == floor(d) && fabs(d) < 9e18, CB_ERR_INPUT,
               "option %s: '%s' is not an integer", name, buf);
      v = (long)d;
    }
    CB_CHECK(errno == 0, CB_ERR_INPUT, "option %s: '%s' is out of range", name, buf);
    *value = v;
  }
  snprintf(buf, sizeof buf, "%ld", *value);
  return add_record(o, name, buf);
}

int options_real(options *o, const char *name, const char *help, double def, double *value) {
  char buf[256], defs[64];
  bool present = false;
  snprintf(defs, sizeof defs, "%g", def);
  CB_CALL(add_help(o, name, "real", defs, help));
  CB_CALL(raw_get(name, buf, sizeof buf, &present));
  *value = def;
  if (present) {
    CB_CHECK(buf[0] != '\0', CB_ERR_INPUT, "option %s needs a real value", name);
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    CB_CHECK(*end == '\0' && end != buf, CB_ERR_INPUT, "option %s: '%s' is not a number", name,
             buf);
    CB_CHECK(isfinite(v) && errno != ERANGE, CB_ERR_INPUT, "option %s: '%s' is not finite", name,
             buf);
    *value = v;
  }
  snprintf(buf, sizeof buf, "%.17g", *value);
  return add_record(o, name, buf);
}

int options_bool(options *o, const char *name, const char *help, bool def, bool *value) {
  char buf[64];
  bool present = false;
  CB_CALL(add_help(o, name, "flag", def ? "true" : "false", help));
  CB_CALL(raw_get(name, buf, sizeof buf, &present));
  *value = def;
  if (present) {
    for (char *c = buf; *c; c++) *c = (char)tolower((unsigned char)*c);
    if (buf[0] == '\0' || !strcmp(buf, "1") || !strcmp(buf, "true") || !strcmp(buf, "yes"))
      *value = true;
    else if (!strcmp(buf, "0") || !strcmp(buf, "false") || !strcmp(buf, "no"))
      *value = false;
    else
      return CB_ERROR(CB_ERR_INPUT, "option %s: '%s' is not true or false", name, buf);
  }
  return add_record(o, name, *value ? "true" : "false");
}

int options_string(options *o, const char *name, const char *help, const char *def, char *buf,
                   size_t n, bool *set) {
  bool present = false;
  CB_CALL(add_help(o, name, "string", def ? def : "", help));
  CB_CALL(raw_get(name, buf, n, &present));
  if (set) *set = present;
  if (present) {
    CB_CHECK(buf[0] != '\0', CB_ERR_INPUT, "option %s needs a value", name);
    CB_CHECK(strlen(buf) + 1 < n, CB_ERR_INPUT, "option %s: value longer than %zu characters", name,
             n - 2);
  } else {
    snprintf(buf, n, "%s", def ? def : "");
  }
  return add_record(o, name, buf);
}

int options_choice(options *o, const char *name, const char *help, const char *choices,
                   const char *def, int *index) {
  char buf[128], list[512];
  bool present = false;
  char desc[640];
  snprintf(desc, sizeof desc, "%s: one of %s", help, choices);
  CB_CALL(add_help(o, name, "choice", def, desc));
  CB_CALL(raw_get(name, buf, sizeof buf, &present));
  if (!present) snprintf(buf, sizeof buf, "%s", def);
  CB_CHECK(buf[0] != '\0', CB_ERR_INPUT, "option %s needs one of: %s", name, choices);
  snprintf(list, sizeof list, "%s", choices);
  int i = 0;
  for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save), i++) {
    if (!strcmp(tok, buf)) {
      *index = i;
      return add_record(o, name, buf);
    }
  }
  return CB_ERROR(CB_ERR_INPUT, "option %s: '%s' is not one of %s", name, buf, choices);
}

int options_real_array(options *o, const char *name, const char *help, double *values, int *n,
                       int nmax, bool *set) {
  char buf[4096];
  bool present = false;
  CB_CALL(add_help(o, name, "reals a,b,...", "none", help));
  CB_CALL(raw_get(name, buf, sizeof buf, &present));
  if (set) *set = present;
  *n = 0;
  if (!present) return add_record(o, name, "");
  CB_CHECK(buf[0] != '\0', CB_ERR_INPUT, "option %s needs a comma-separated list of numbers", name);
  char copy[4096];
  snprintf(copy, sizeof copy, "%s", buf);
  for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    CB_CHECK(*n < nmax, CB_ERR_INPUT, "option %s: more than %d values", name, nmax);
    char *end;
    double v = strtod(tok, &end);
    CB_CHECK(*end == '\0' && end != tok && isfinite(v), CB_ERR_INPUT,
             "option %s: '%s' is not a finite number", name, tok);
    values[(*n)++] = v;
  }
  return add_record(o, name, buf);
}

/* Options PETSc or main own; never reported as unknown. */
static bool owned_elsewhere(const char *name) {
  static const char *prefixes[] = {"log",          "malloc",
                                   "info",         "on_error",
                                   "options_",     "tao_",
                                   "da_",          "vec_",
                                   "mat_",         "ksp_",
                                   "pc_",          "snes_",
                                   "viewer",       "no_signal_handler",
                                   "fp_trap",      "petsc",
                                   "skip_petscrc", "traceback",
                                   "quiet",        "check_pointer",
                                   "mpi_",         "memory_view",
                                   "history",      "objects_dump",
                                   "device_",      "use_gpu",
                                   "sys_",         "citations"};
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
    if (!strncmp(name, prefixes[i], strlen(prefixes[i]))) return true;
  return false;
}

static bool on_command_line(const char *name) {
  for (int i = 0; i < cli_argc; i++)
    if (cli_argv[i][0] == '-' && !strcmp(cli_argv[i] + 1, name)) return true;
  return false;
}

int options_finish(options *o) {
  int rank;
  MPI_Comm_rank(o->comm, &rank);
  if (help_flag) {
    if (rank == 0) {
      printf("Usage: cerberus %s [options]\n  %s\n\nOptions (value given, <default>):\n%s",
             o->command, o->summary, o->help);
      printf("\nCommon options:\n"
             "  -options_file FILE                 read options from FILE (PETSc format)\n"
             "  -log_view                          PETSc's profile of logged events at the end\n"
             "  -quiet                             no progress messages\n"
             "  -traceback                         print the file:line traceback of an error\n");
      fflush(stdout);
    }
    return CB_HELP_SHOWN;
  }
  PetscInt nleft = 0;
  char **names = NULL, **values = NULL;
  PetscErrorCode ierr = PetscOptionsLeftGet(NULL, &nleft, &names, &values);
  CB_CHECK(ierr == 0, CB_ERR_INTERNAL, "cannot list unused options");
  int status = CB_OK;
  for (PetscInt i = 0; i < nleft; i++) {
    if (owned_elsewhere(names[i])) continue;
    if (on_command_line(names[i])) {
      status =
          CB_ERROR(CB_ERR_INPUT, "unknown option -%s for 'cerberus %s' (see cerberus %s -help)",
                   names[i], o->command, o->command);
      break;
    }
    log_warn("option -%s (from an options file) is not used by 'cerberus %s'", names[i],
             o->command);
  }
  PetscOptionsLeftRestore(NULL, &nleft, &names, &values);
  return status;
}
