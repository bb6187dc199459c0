/* testing: the harness behind tests/testing.h. */
#include "testing.h"

#include "cerberus/log.h"
#include "cerberus/status.h"

#include <petscsys.h>
#include <stdarg.h>
#include <stdlib.h>

static int failures = 0;
static int skipped = 0;
static int rank_ = 0, size_ = 1;
static char skip_reason[512];

int testing_init(int *argc, char ***argv, MPI_Comm *comm) {
  if (PetscInitialize(argc, argv, NULL, NULL) != 0) {
    fprintf(stderr, "cannot initialise PETSc\n");
    exit(1);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  log_init(rank_, true);
  *comm = MPI_COMM_WORLD;
  return 0;
}

int testing_rank(void) {
  return rank_;
}
int testing_size(void) {
  return size_;
}

void testing_skip(const char *why) {
  skipped = 1;
  snprintf(skip_reason, sizeof skip_reason, "%s", why);
}

void testing_fail(const char *file, int line, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "FAIL [rank %d/%d] %s:%d: %s\n", rank_, size_, file, line, msg);
  fflush(stderr);
  failures++;
}

int testing_finish(void) {
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  int code = total ? 1 : (skipped ? 77 : 0);
  if (rank_ == 0) {
    if (code == 77)
      printf("SKIP (%d ranks): %s\n", size_, skip_reason);
    else
      printf("%s (%d ranks, %d failure(s))\n", total ? "FAIL" : "PASS", size_, total);
  }
  PetscFinalize();
  return code;
}
