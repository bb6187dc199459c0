/* testing: the harness behind tests/testing.h. */
#include "testing.h"

#include "cerberus/field.h"
#include "cerberus/log.h"
#include "cerberus/status.h"

#include <gsl/gsl_math.h>
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

double testing_hash01(unsigned long a, unsigned long b) {
  unsigned long long x = (a + 1) * 0x9E3779B97F4A7C15ULL ^ (b + 7) * 0xC2B2AE3D27D4EB4FULL;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return (double)(x >> 11) / 9007199254740992.0;
}

void testing_wavy_delta(const void *fv, double wave, double noise, unsigned long seed,
                        double *delta) {
  const field *f = fv;
  const ptrdiff_t n = f->n;
  for (ptrdiff_t p = 0; p < f->local_n0; p++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t k = 0; k < n; k++) {
        ptrdiff_t i = f->local_0_start + p;
        double g = wave * sin(2 * M_PI * (i + 0.3) / n) * cos(2 * M_PI * (2 * j + 0.7 * k) / n) +
                   noise * (testing_hash01(seed, (unsigned long)((i * n + j) * n + k)) - 0.45);
        delta[(p * n + j) * n + k] = exp(g) - 1.0;
      }
}
