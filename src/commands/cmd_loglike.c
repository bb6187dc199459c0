/* cmd_loglike: `cerberus loglike`, ln L of a catalogue given a field and weights, with its
 * gradients (MODEL.md section 5).
 *
 *   cerberus loglike -field FILE -catalogue FILE -weights FILE [-model npe|powerlaw]
 *                    [-mass_threshold M] [-mask FILE] -o OUT [-overwrite]
 *
 * The field file holds /delta (n^3) with root attributes box_size and n_grid; the catalogue
 * /halos/position (n x 3) and /halos/mass with box_size (and mass_threshold, the default
 * threshold); the weights file its architecture (include/cerberus/weights.h); -model, when
 * given, must agree with it. A mask file holds /mask (n^3, values in [0, 1]). Prints ln L
 * and writes OUT: /loglike (one value), /grad_weights (d lnL / d w), /grad_delta (n^3), with
 * attributes n_halos, mass_threshold, reason (why ln L is -inf, "finite" otherwise) and the
 * grid and provenance attributes. Any rank count gives the same numbers. Collective. */
#include "cerberus/commands.h"
#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/likelihood.h"
#include "cerberus/log.h"
#include "cerberus/options.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int read_mask(field *f, const char *path, double **mask) {
  h5file *h = NULL;
  CB_CALL(h5io_open(f->comm, path, &h));
  *mask = field_alloc_real(f);
  int st = *mask ? h5io_read_field(h, "/mask", f, *mask)
                 : CB_ERROR(CB_ERR_MEM, "out of memory for the mask");
  h5io_close(&h);
  CB_CALL(st);
  return CB_OK;
}

static int loglike_run(options *o, MPI_Comm comm) {
  char fpath[4096], cpath[4096], wpath[4096], mpath[4096], out[4096];
  bool overwrite = false, have_mask = false, have_model = false;
  double mth = 0;
  int model = 0;
  CB_CALL(
      options_string(o, "-field", "density field file (/delta)", NULL, fpath, sizeof fpath, NULL));
  CB_CALL(options_string(o, "-catalogue", "halo catalogue file (/halos)", NULL, cpath, sizeof cpath,
                         NULL));
  CB_CALL(options_string(o, "-weights", "weights file", NULL, wpath, sizeof wpath, NULL));
  char mname[32];
  CB_CALL(options_string(o, "-model", "npe or powerlaw (must match the weights file)", NULL, mname,
                         sizeof mname, &have_model));
  CB_CALL(options_real(o, "-mass_threshold", "Mth in M_sun/h (default: the catalogue's)", 0, &mth));
  CB_CALL(options_string(o, "-mask", "optional mask file (/mask)", NULL, mpath, sizeof mpath,
                         &have_mask));
  CB_CALL(options_string(o, "-o", "output file (HDF5)", NULL, out, sizeof out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &overwrite));
  CB_CALL(options_finish(o));
  CB_CHECK(fpath[0], CB_ERR_INPUT, "no field given (-field FILE)");
  CB_CHECK(cpath[0], CB_ERR_INPUT, "no catalogue given (-catalogue FILE)");
  CB_CHECK(wpath[0], CB_ERR_INPUT, "no weights given (-weights FILE)");
  if (have_model) {
    if (!strcmp(mname, "npe"))
      model = WEIGHTS_NPE;
    else if (!strcmp(mname, "powerlaw"))
      model = WEIGHTS_POWERLAW;
    else
      return CB_ERROR(CB_ERR_INPUT, "-model must be npe or powerlaw (got '%s')", mname);
  }
  CB_CHECK(mth >= 0 && isfinite(mth), CB_ERR_INPUT, "-mass_threshold must be positive (got %g)",
           mth);
  CB_CALL(h5io_check_output(comm, out, overwrite));

  weights_arch a;
  double *w = NULL, *delta = NULL, *mask = NULL, *gw = NULL, *gd = NULL;
  field *f = NULL;
  likelihood *lk = NULL;
  h5file *h = NULL;
  int st = weights_read(comm, wpath, &a, &w);
  if (!st && have_model && model != a.model)
    st = CB_ERROR(CB_ERR_INPUT, "weights '%s' are for the %s model, but -model %s was given", wpath,
                  a.model == WEIGHTS_NPE ? "npe" : "powerlaw", mname);
  int ghost = a.model == WEIGHTS_NPE ? npe_ghost_width(&a.npe) : 1;
  if (!st) st = h5io_read_field_file(comm, fpath, "/delta", ghost, &f, &delta);
  if (!st) st = likelihood_create(f, &a, &lk);
  if (!st) st = likelihood_read_catalogue(lk, cpath, mth);
  if (!st && have_mask) st = read_mask(f, mpath, &mask);
  if (!st && have_mask) st = likelihood_set_mask(lk, mask);
  size_t nw = weights_count(&a);
  if (!st) {
    gw = calloc(nw, sizeof *gw);
    gd = field_alloc_real(f);
    if (!gw || !gd) st = CB_ERROR(CB_ERR_MEM, "out of memory for the gradients");
  }
  double lnL = 0;
  if (!st) st = likelihood_evaluate(lk, delta, w, &lnL, gw, gd);
  if (!st) {
    log_info("loglike: %ld halos above Mth = %g (%ld below ignored), %zu weights",
             likelihood_n_halos(lk), likelihood_mth(lk), likelihood_n_below(lk), nw);
    if (f->rank == 0) printf("ln L = %.15g\n", lnL);
    if (likelihood_reason(lk) != LK_FINITE)
      log_warn("ln L is -inf: %s", likelihood_reason_name(likelihood_reason(lk)));
    st = h5io_create(comm, out, overwrite, &h);
  }
  if (!st) {
    size_t one = 1;
    st = h5io_write_provenance(h, o);
    if (!st) st = h5io_write_grid_attrs(h, f);
    if (!st) st = h5io_write_array(h, "/loglike", 1, &one, &lnL);
    if (!st) st = h5io_write_array(h, "/grad_weights", 1, &nw, gw);
    if (!st) st = h5io_write_field(h, "/grad_delta", f, gd);
    if (!st) st = h5io_attr_write_long(h, "/", "n_halos", likelihood_n_halos(lk));
    if (!st) st = h5io_attr_write_double(h, "/", "mass_threshold", likelihood_mth(lk));
    if (!st)
      st = h5io_attr_write_string(h, "/", "reason", likelihood_reason_name(likelihood_reason(lk)));
    if (!st)
      st = h5io_attr_write_string(h, "/", "model", a.model == WEIGHTS_NPE ? "npe" : "powerlaw");
    if (!st)
      st = h5io_commit(&h);
    else
      h5io_abort(&h);
  }
  if (!st) log_info("loglike: wrote %s", out);
  likelihood_destroy(&lk);
  if (delta) fftw_free(delta);
  if (mask) fftw_free(mask);
  if (gd) fftw_free(gd);
  free(gw);
  free(w);
  field_destroy(&f);
  CB_CALL(st);
  return CB_OK;
}

int cmd_loglike(int argc, char **argv, MPI_Comm comm) {
  options *o = NULL;
  CB_CALL(options_create(comm, "loglike", "ln L of a catalogue given a field and weights", &o));
  int st = argc == 0 ? loglike_run(o, comm)
                     : CB_ERROR(CB_ERR_INPUT,
                                "unexpected argument '%s' (loglike takes options only)", argv[0]);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
