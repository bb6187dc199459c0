/* testing: a tiny harness for the C tests (tests/test_<module>.c).
 *
 * testing_init starts PETSc/MPI and gives the world communicator; TEST_CHECK records a
 * failure with its message (rank-tagged) and goes on; testing_finish reduces the failure
 * count over ranks, prints "PASS"/"FAIL" on rank 0 and returns the exit code (0, 1, or 77
 * after testing_skip). */
#ifndef CERBERUS_TESTING_H
#define CERBERUS_TESTING_H

#include <math.h>
#include <mpi.h>
#include <stdio.h>

int testing_init(int *argc, char ***argv, MPI_Comm *comm);
int testing_finish(void);
/* Mark the whole test as skipped (exit 77) with a reason. */
void testing_skip(const char *why);
void testing_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int testing_rank(void);
int testing_size(void);

/* A deterministic uniform in [0, 1) from two integers (a splitmix-style hash). */
double testing_hash01(unsigned long a, unsigned long b);
/* delta on the owned planes of f (a field.h field, passed as void to keep this header light):
 * exp(g) - 1 with g = wave sin(2 pi (i + 0.3) / n) cos(2 pi (2 j + 0.7 k) / n)
 * + noise (testing_hash01(seed, voxel) - 0.45): lognormal-like, min > -1. */
void testing_wavy_delta(const void *f, double wave, double noise, unsigned long seed,
                        double *delta);

#define TEST_CHECK(cond, ...)                                                                      \
  do {                                                                                             \
    if (!(cond)) testing_fail(__FILE__, __LINE__, __VA_ARGS__);                                    \
  } while (0)

/* |a - b| <= rtol * max(|a|, |b|) (or both tiny below 1e-300). */
#define TEST_CLOSE(a, b, rtol, name)                                                               \
  do {                                                                                             \
    double ta_ = (a), tb_ = (b);                                                                   \
    double tm_ = fmax(fabs(ta_), fabs(tb_));                                                       \
    if (!(fabs(ta_ - tb_) <= (rtol)*tm_ || tm_ < 1e-300))                                          \
      testing_fail(__FILE__, __LINE__, "%s: %.15g vs %.15g (rel %.3g > %.3g)", (name), ta_, tb_,   \
                   tm_ > 0 ? fabs(ta_ - tb_) / tm_ : 0.0, (double)(rtol));                         \
  } while (0)

/* Expect a status code: CB_OK or a specific error. */
#define TEST_STATUS(expr, want, name)                                                              \
  do {                                                                                             \
    int ts_ = (expr);                                                                              \
    if (ts_ != (want))                                                                             \
      testing_fail(__FILE__, __LINE__, "%s: status %d, expected %d (%s)", (name), ts_, (want),     \
                   status_message());                                                              \
  } while (0)

#endif
