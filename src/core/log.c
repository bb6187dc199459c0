/* log: rank- and time-stamped messages (include/cerberus/log.h). */
#define _POSIX_C_SOURCE 200809L
#include "cerberus/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int log_rank_id = 0;
static bool log_quiet = false;
static struct timespec log_t0;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void log_init(int rank, bool quiet) {
  log_rank_id = rank;
  log_quiet = quiet;
  clock_gettime(CLOCK_MONOTONIC, &log_t0);
}

double log_elapsed(void) {
  return now() - ((double)log_t0.tv_sec + 1e-9 * (double)log_t0.tv_nsec);
}

static void vlog(FILE *out, bool tag_rank, const char *fmt, va_list ap) {
  char line[2048];
  vsnprintf(line, sizeof line, fmt, ap);
  if (tag_rank)
    fprintf(out, "[%9.3f s r%d] %s\n", log_elapsed(), log_rank_id, line);
  else
    fprintf(out, "[%9.3f s] %s\n", log_elapsed(), line);
  fflush(out);
}

void log_info(const char *fmt, ...) {
  if (log_rank_id != 0 || log_quiet) return;
  va_list ap;
  va_start(ap, fmt);
  vlog(stdout, false, fmt, ap);
  va_end(ap);
}

void log_rank(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(stdout, true, fmt, ap);
  va_end(ap);
}

void log_warn(const char *fmt, ...) {
  if (log_rank_id != 0) return;
  va_list ap;
  va_start(ap, fmt);
  char line[2048];
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "cerberus: warning: %s\n", line);
  fflush(stderr);
}
