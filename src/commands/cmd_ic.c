/* cmd_ic: `cerberus ic`, white noise and the linear density field (MODEL.md section 2).
 *
 *   cerberus ic [-n_grid 64 -box_size 250 -seed 1 -redshift 0 -Omega_m 0.3111 ...
 *                -pk_file FILE] -o ic.h5 [-overwrite]
 *
 * Writes /white_noise (s, N(0,1) per voxel) and /delta_linear (delta_L) as n^3 datasets, with
 * the attributes box_size, n_grid, seed, redshift, the cosmology (Omega_m, Omega_b, h, n_s,
 * sigma_8, pk_file) and the provenance (command, options, code version). Each dataset carries
 * "spectrum": "white" (P = V) or "linear" (the input P(k)), which `cerberus pk` uses to
 * overlay the input spectrum. The output is checked before any work and written under a
 * temporary name: a refused input leaves no file. Collective. */
#include "cerberus/commands.h"
#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/ic.h"
#include "cerberus/log.h"
#include "cerberus/options.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdlib.h>

/* Write the two fields and every attribute; the caller commits or aborts. */
static int ic_write(h5file *h, const options *o, const ic_config *cfg, const field *f,
                    const double *s, const double *delta) {
  CB_CALL(h5io_write_provenance(h, o));
  CB_CALL(ic_config_write_attrs(h, cfg));
  CB_CALL(h5io_write_field(h, "/white_noise", f, s));
  CB_CALL(h5io_attr_write_string(h, "/white_noise", "spectrum", "white"));
  CB_CALL(h5io_write_field(h, "/delta_linear", f, delta));
  CB_CALL(h5io_attr_write_string(h, "/delta_linear", "spectrum", "linear"));
  return CB_OK;
}

static int ic_run(options *o, MPI_Comm comm) {
  ic_config cfg;
  char out[4096];
  bool overwrite = false;
  CB_CALL(ic_config_read(o, &cfg));
  CB_CALL(options_string(o, "-o", "output HDF5 file", "ic.h5", out, sizeof out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &overwrite));
  CB_CALL(options_finish(o));
  CB_CALL(h5io_check_output(comm, out, overwrite)); /* before any work */

  double t0 = MPI_Wtime();
  field *f = NULL;
  cosmology *c = NULL;
  ic_filter *flt = NULL;
  double *s = NULL, *delta = NULL;
  h5file *h = NULL;
  int st = field_create(comm, cfg.n_grid, cfg.box_size, 1, &f);
  if (st == CB_OK) st = cosmology_create(&cfg.cosmo, cfg.pk_file, &c);
  if (st == CB_OK) st = ic_filter_create(f, c, &flt);
  if (st == CB_OK) {
    s = field_alloc_real(f);
    delta = field_alloc_real(f);
    if (!s || !delta) st = CB_ERROR(CB_ERR_MEM, "out of memory for a %ld^3 field", cfg.n_grid);
  }
  if (st == CB_OK) st = ic_white_noise(f, cfg.seed, s);
  if (st == CB_OK) st = ic_delta_linear(f, flt, s, delta);
  if (st == CB_OK) {
    double sum = 0, sum2 = 0;
    for (ptrdiff_t i = 0; i < f->n_real_local; i++) {
      sum += delta[i];
      sum2 += delta[i] * delta[i];
    }
    double n3 = (double)f->n * (double)f->n * (double)f->n;
    sum = field_allreduce_sum(f, sum) / n3;
    sum2 = field_allreduce_sum(f, sum2) / n3;
    log_info("ic: %ld^3 grid, L = %g Mpc/h, seed %lu, z = %g, P(k) from %s: rms delta_L = %.4f "
             "(%.2f s on %d rank%s)",
             cfg.n_grid, cfg.box_size, cfg.seed, cfg.cosmo.redshift,
             cfg.pk_file[0] ? cfg.pk_file : "Eisenstein-Hu", sqrt(sum2 - sum * sum),
             MPI_Wtime() - t0, f->size, f->size > 1 ? "s" : "");
  }
  if (st == CB_OK) st = h5io_create(comm, out, overwrite, &h);
  if (st == CB_OK) st = ic_write(h, o, &cfg, f, s, delta);
  if (st == CB_OK) st = h5io_commit(&h);
  h5io_abort(&h);
  fftw_free(s);
  fftw_free(delta);
  ic_filter_destroy(&flt);
  cosmology_destroy(&c);
  field_destroy(&f);
  CB_CALL(st);
  log_info("wrote '%s' (/white_noise, /delta_linear)", out);
  return CB_OK;
}

int cmd_ic(int argc, char **argv, MPI_Comm comm) {
  options *o = NULL;
  CB_CHECK(argc == 0, CB_ERR_INPUT, "unexpected argument '%s' (options start with '-')", argv[0]);
  CB_CALL(options_create(comm, "ic", "white noise and the linear density field delta_L", &o));
  int st = ic_run(o, comm);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
