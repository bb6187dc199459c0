/* status: the error record behind CB_CALL / CB_CHECK (see include/cerberus/status.h).
 *
 * One message and a bounded traceback per process. The message is the sentence a user
 * sees; the traceback (file:line per frame) is printed by main only on request
 * (-traceback) or for internal errors. */
#include "cerberus/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char message[1024];
static char traceback[4096];

static void trace_append(const char *file, int line, const char *func) {
  size_t used = strlen(traceback);
  if (used + 1 >= sizeof traceback) return;
  snprintf(traceback + used, sizeof traceback - used, "  at %s:%d (%s)\n", file, line, func);
}

int status_error(int code, const char *file, int line, const char *func, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  traceback[0] = '\0';
  trace_append(file, line, func);
  return code;
}

void status_trace(const char *file, int line, const char *func) {
  trace_append(file, line, func);
}

const char *status_message(void) {
  return message;
}
const char *status_traceback(void) {
  return traceback;
}

void status_clear(void) {
  message[0] = '\0';
  traceback[0] = '\0';
}

const char *status_name(int code) {
  switch (code) {
  case CB_OK: return "ok";
  case CB_ERR_INPUT: return "input";
  case CB_ERR_IO: return "io";
  case CB_ERR_MEM: return "memory";
  case CB_ERR_NUMERIC: return "numeric";
  case CB_ERR_MPI: return "mpi";
  case CB_ERR_INTERNAL: return "internal";
  case CB_HELP_SHOWN: return "help";
  default: return "unknown";
  }
}
