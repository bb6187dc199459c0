/* cmd_weights: `cerberus weights init`, a weights file for an architecture.
 *
 *   cerberus weights init [-random -seed S -scale 0.3] -o FILE [-overwrite]
 *                         [-model npe|powerlaw] [-layers 3:0:1:softplus,...] [-n_gauss 2]
 *                         [-eps 1e-3 -A0 1e-3 -M0 2e12 -S0 1 -sigma_min 0.05]
 *
 * Writes /weights (zeros, or Gaussian values of standard deviation -scale from a GSL
 * mt19937 stream seeded with -seed: the same file on any rank count) with the attributes
 * that describe the architecture (include/cerberus/weights.h); the paper's 17-weight
 * configuration unless options say otherwise. Zero weights put the head at its offsets
 * (MODEL.md section 4). Collective. */
#include "cerberus/commands.h"
#include "cerberus/h5io.h"
#include "cerberus/log.h"
#include "cerberus/options.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int weights_init(options *o, MPI_Comm comm) {
  weights_arch a;
  bool random = false, overwrite = false;
  long seed = 1;
  double scale = 0.3;
  char out[4096];
  CB_CALL(weights_arch_from_options(o, &a));
  CB_CALL(options_bool(o, "-random", "random weights instead of zeros", false, &random));
  CB_CALL(options_int(o, "-seed", "seed of the random weights", 1, &seed));
  CB_CHECK(seed >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", seed);
  CB_CALL(options_real(o, "-scale", "standard deviation of the random weights", 0.3, &scale));
  CB_CALL(options_string(o, "-o", "output weights file (HDF5)", NULL, out, sizeof out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &overwrite));
  CB_CALL(options_finish(o));
  CB_CHECK(isfinite(scale) && scale > 0, CB_ERR_INPUT, "-scale must be positive (got %g)", scale);
  CB_CHECK(seed >= 0, CB_ERR_INPUT, "-seed must be non-negative (got %ld)", seed);
  CB_CALL(h5io_check_output(comm, out, overwrite));
  size_t nw = weights_count(&a);
  double *w;
  CB_CALLOC(w, nw);
  if (random) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, (unsigned long)seed);
    for (size_t i = 0; i < nw; i++) w[i] = gsl_ran_gaussian(r, scale);
    gsl_rng_free(r);
  }
  int st = weights_write(comm, out, overwrite, &a, w, o);
  free(w);
  CB_CALL(st);
  char desc[1024];
  weights_arch_describe(&a, desc, sizeof desc);
  log_info("weights: %s (%s) -> %s", desc, random ? "random" : "zeros", out);
  return CB_OK;
}

int cmd_weights(int argc, char **argv, MPI_Comm comm) {
  options *o = NULL;
  CB_CALL(options_create(comm, "weights", "weights files: weights init -o FILE", &o));
  int st;
  if (argc == 0 && !options_help_requested(o))
    st = CB_ERROR(CB_ERR_INPUT, "no action given (cerberus weights init -o FILE)");
  else if (argc > 1)
    st = CB_ERROR(CB_ERR_INPUT, "one action expected (init), got %d", argc);
  else if (argc == 1 && strcmp(argv[0], "init"))
    st = CB_ERROR(CB_ERR_INPUT, "unknown action '%s' (cerberus weights init -o FILE)", argv[0]);
  else
    st = weights_init(o, comm);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
