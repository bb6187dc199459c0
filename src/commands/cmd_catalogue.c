/* cmd_catalogue: `cerberus catalogue import`, a user's halo catalogue into Cerberus' layout.
 *
 *   cerberus catalogue import -i halos.txt -box_size 250 -o halos.h5 [-columns X,Y,Z,Mvir]
 *
 * Reads a plain-text catalogue (x y z M per line, or the columns -columns names, by number
 * from 1 or by header name) and writes /halos/position, /halos/mass with the attributes
 * box_size, n_grid and mass_threshold (include/cerberus/catalogue.h), so that halos from the
 * user's own simulation go where a mock's would. Halos below -mass_threshold are left out
 * (and counted); positions outside [0, box_size) (unless -wrap), non-positive or non-finite
 * masses and malformed lines are refused with the file and the line. The output is checked before
 * the file is read and written under a temporary name, so a refusal leaves no file. Collective. */
#include "cerberus/catalogue.h"
#include "cerberus/commands.h"
#include "cerberus/h5io.h"
#include "cerberus/log.h"
#include "cerberus/options.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int import_run(options *o, MPI_Comm comm) {
  char in[4096], out[4096], columns[1024];
  bool in_set = false, overwrite = false, wrap = false;
  long n_grid;
  double L, mth;
  CB_CALL(options_string(o, "-i", "plain-text catalogue to import", NULL, in, sizeof in, &in_set));
  CB_CALL(options_string(o, "-columns",
                         "columns of x,y,z,mass: numbers from 1 (1,2,3,4) or header names "
                         "(X,Y,Z,Mvir)",
                         "1,2,3,4", columns, sizeof columns, NULL));
  CB_CALL(options_real(o, "-box_size", "side L of the periodic box [Mpc/h]; positions in [0, L)",
                       250.0, &L));
  CB_CALL(options_int(o, "-n_grid", "voxels per side of the grid the catalogue will be used on", 64,
                      &n_grid));
  CB_CALL(options_real(o, "-mass_threshold",
                       "Mth [M_sun/h]: halos below it are left out (MODEL.md section 5)", 2e12,
                       &mth));
  CB_CALL(options_bool(o, "-wrap",
                       "wrap positions periodically into [0, box_size) instead of refusing those "
                       "outside",
                       false, &wrap));
  CB_CALL(options_string(o, "-o", "output HDF5 file", "catalogue.h5", out, sizeof out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &overwrite));
  CB_CALL(options_finish(o));

  CB_CHECK(in_set, CB_ERR_INPUT, "no catalogue given (use -i FILE)");
  CB_CHECK(isfinite(L) && L > 0, CB_ERR_INPUT, "-box_size must be positive and finite (got %g)", L);
  CB_CHECK(n_grid >= 2 && n_grid % 2 == 0, CB_ERR_INPUT,
           "-n_grid must be even and at least 2 (got %ld)", n_grid);
  CB_CHECK(mth > 0, CB_ERR_INPUT, "-mass_threshold must be positive (got %g)", mth);
  CB_CALL(h5io_check_output(comm, out, overwrite));

  catalogue *cat = NULL;
  size_t below = 0;
  CB_CALL(catalogue_read_text(comm, in, columns, L, n_grid, mth, wrap, &cat, &below));
  size_t n = catalogue_count(cat, comm);
  log_info("catalogue '%s': %zu halos with M >= %g M_sun/h (%zu below it left out)", in, n, mth,
           below);

  h5file *h = NULL;
  int st = h5io_create(comm, out, overwrite, &h);
  if (st == CB_OK) st = h5io_write_provenance(h, o);
  if (st == CB_OK) st = h5io_attr_write_string(h, "/", "source", in);
  if (st == CB_OK) st = h5io_attr_write_long(h, "/", "n_below_threshold", (long)below);
  if (st == CB_OK) st = catalogue_write(h, cat);
  if (st == CB_OK) st = h5io_commit(&h);
  h5io_abort(&h);
  catalogue_destroy(&cat);
  CB_CALL(st);
  log_info("wrote '%s'", out);
  return CB_OK;
}

int cmd_catalogue(int argc, char **argv, MPI_Comm comm) {
  const char *sub = argc >= 1 ? argv[0] : "";
  options *o = NULL;
  char name[64];
  snprintf(name, sizeof name, "catalogue %s", argc >= 1 ? sub : "import");
  CB_CALL(options_create(
      comm, name, "convert a plain-text halo catalogue (x y z M) into Cerberus' HDF5 layout", &o));
  int st;
  if (argc == 0 && options_help_requested(o))
    st = import_run(o, comm); /* `cerberus catalogue -help` shows import's options */
  else if (argc == 0)
    st = CB_ERROR(CB_ERR_INPUT, "'cerberus catalogue' needs a subcommand: import");
  else if (strcmp(sub, "import"))
    st = CB_ERROR(CB_ERR_INPUT, "unknown subcommand 'catalogue %s' (known: import)", sub);
  else if (argc > 1)
    st = CB_ERROR(CB_ERR_INPUT, "'catalogue import' takes no argument '%s' (use -i FILE)", argv[1]);
  else
    st = import_run(o, comm);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
