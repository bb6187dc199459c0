/* cmd_pk: `cerberus pk`, the measured power spectrum of a field in an HDF5 file.
 *
 *   cerberus pk FILE [-dataset delta_linear] [-o OUT] [-overwrite] [-deconvolve_cic]
 *                    [-k_min K -k_max K (-dk D | -n_bins B)]
 *
 * Reads n_grid and box_size from FILE's attributes and the n^3 dataset, measures P(k) in
 * shells (include/cerberus/power.h, MODEL.md section 1) and writes OUT (HDF5: /k the
 * mode-weighted mean |k| of each shell, /pk, /n_modes, /k_lo, /k_hi and, when FILE says what
 * spectrum the field was drawn from, /pk_input at /k) and the same table as text in OUT with
 * ".txt" for ".h5", and prints it. The input spectrum is known when the dataset carries
 * "spectrum" = "white" (P = V, the voxel volume) or "linear" (or, without that attribute, when
 * FILE carries the cosmology attributes of `cerberus ic`): then P(k) is rebuilt from them.
 * Outputs are checked before any work and written under temporary names. Collective. */
#include "cerberus/commands.h"
#include "cerberus/cosmology.h"
#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/ic.h"
#include "cerberus/log.h"
#include "cerberus/options.h"
#include "cerberus/power.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* OUT with ".txt" in place of a final ".h5" (or appended). */
static void text_name(const char *out, char *txt, size_t n) {
  size_t len = strlen(out);
  if (len > 3 && !strcmp(out + len - 3, ".h5"))
    snprintf(txt, n, "%.*s.txt", (int)(len - 3), out);
  else
    snprintf(txt, n, "%s.txt", out);
}

/* The input spectrum at k_mean into pk_in; *have = false when FILE does not say. */
static int input_spectrum(h5file *h, const char *dataset, const field *f, const power *p,
                          double *pk_in, bool *have) {
  *have = false;
  char kind[64] = "";
  if (h5io_attr_exists(h, dataset, "spectrum"))
    CB_CALL(h5io_attr_read_string(h, dataset, "spectrum", kind, sizeof kind));
  if (!strcmp(kind, "white")) {
    double cell = f->L / (double)f->n;
    for (int b = 0; b < p->n_bins; b++) pk_in[b] = cell * cell * cell;
    *have = true;
    return CB_OK;
  }
  if (kind[0] && strcmp(kind, "linear")) return CB_OK;
  if (!h5io_attr_exists(h, "/", "Omega_m")) return CB_OK;
  ic_config cfg;
  CB_CALL(ic_config_read_attrs(h, &cfg));
  cosmology *c = NULL;
  int st = cosmology_create(&cfg.cosmo, cfg.pk_file, &c);
  if (st != CB_OK) { /* e.g. the table has moved: the measurement is still worth writing */
    log_warn("pk: no input spectrum in the output: %s", status_message());
    status_clear();
    return CB_OK;
  }
  for (int b = 0; b < p->n_bins; b++) pk_in[b] = cosmology_pk(c, p->k_mean[b]);
  cosmology_destroy(&c);
  *have = true;
  return CB_OK;
}

/* Copy the attributes a plot wants from the input to the output, when present. */
static int copy_attrs(h5file *in, h5file *out) {
  static const char *reals[] = {"box_size", "redshift", "Omega_m", "Omega_b",
                                "h",        "n_s",      "sigma_8"};
  static const char *longs[] = {"n_grid", "seed"};
  for (size_t i = 0; i < sizeof reals / sizeof *reals; i++)
    if (h5io_attr_exists(in, "/", reals[i])) {
      double v;
      CB_CALL(h5io_attr_read_double(in, "/", reals[i], &v));
      CB_CALL(h5io_attr_write_double(out, "/", reals[i], v));
    }
  for (size_t i = 0; i < sizeof longs / sizeof *longs; i++)
    if (h5io_attr_exists(in, "/", longs[i])) {
      long v;
      CB_CALL(h5io_attr_read_long(in, "/", longs[i], &v));
      CB_CALL(h5io_attr_write_long(out, "/", longs[i], v));
    }
  return CB_OK;
}

static int pk_write_h5(h5file *h, h5file *in, const options *o, const char *input,
                       const char *dataset, bool deconvolve, const power *p, const double *pk_in,
                       bool have_in) {
  size_t nb = (size_t)p->n_bins;
  CB_CALL(h5io_write_provenance(h, o));
  CB_CALL(copy_attrs(in, h));
  CB_CALL(h5io_attr_write_string(h, "/", "input", input));
  CB_CALL(h5io_attr_write_string(h, "/", "dataset", dataset));
  CB_CALL(h5io_attr_write_long(h, "/", "deconvolve_cic", deconvolve ? 1 : 0));
  CB_CALL(h5io_write_array(h, "/k", 1, &nb, p->k_mean));
  CB_CALL(h5io_write_array(h, "/pk", 1, &nb, p->pk));
  CB_CALL(h5io_write_array(h, "/n_modes", 1, &nb, p->n_modes));
  CB_CALL(h5io_write_array(h, "/k_lo", 1, &nb, p->k_lo));
  CB_CALL(h5io_write_array(h, "/k_hi", 1, &nb, p->k_hi));
  if (have_in) CB_CALL(h5io_write_array(h, "/pk_input", 1, &nb, pk_in));
  return CB_OK;
}

/* The table as text (rank 0), to stream. */
static void pk_print(FILE *to, const char *input, const char *dataset, const power *p,
                     const double *pk_in, bool have_in) {
  fprintf(to, "# P(k) of '%s' dataset '%s'; k in h/Mpc, P in (Mpc/h)^3\n", input, dataset);
  fprintf(to, "# %12s %12s %12s %14s %10s%s\n", "k", "k_lo", "k_hi", "pk", "n_modes",
          have_in ? "       pk_input" : "");
  for (int b = 0; b < p->n_bins; b++) {
    fprintf(to, "  %12.6g %12.6g %12.6g %14.7g %10.0f", p->k_mean[b], p->k_lo[b], p->k_hi[b],
            p->pk[b], p->n_modes[b]);
    if (have_in) fprintf(to, " %14.7g", pk_in[b]);
    fputc('\n', to);
  }
}

typedef struct pk_args {
  char out[4096], txt[4200], dataset[256];
  bool overwrite, deconvolve;
  power_config pc;
} pk_args;

static int pk_options(options *o, const char *input, pk_args *a) {
  char def_out[4096];
  size_t len = strlen(input);
  if (len > 3 && !strcmp(input + len - 3, ".h5"))
    snprintf(def_out, sizeof def_out, "%.*s_pk.h5", (int)(len - 3), input);
  else
    snprintf(def_out, sizeof def_out, "%s_pk.h5", input);
  long n_bins = 0;
  bool dk_set;
  memset(&a->pc, 0, sizeof a->pc);
  CB_CALL(options_string(o, "-dataset", "the n^3 field to measure", "delta_linear", a->dataset,
                         sizeof a->dataset, NULL));
  CB_CALL(options_string(o, "-o", "output HDF5 file (the text table goes beside it, .txt)", def_out,
                         a->out, sizeof a->out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace existing outputs", false, &a->overwrite));
  CB_CALL(
      options_bool(o, "-deconvolve_cic", "divide by the CIC window W(k)^2", false, &a->deconvolve));
  CB_CALL(options_real(o, "-k_min", "lower edge of the first bin, h/Mpc (0: half a bin width)", 0.0,
                       &a->pc.k_min));
  CB_CALL(options_real(o, "-k_max", "upper edge of the last bin, h/Mpc (0: Nyquist + k_f/2)", 0.0,
                       &a->pc.k_max));
  CB_CALL(options_real(o, "-dk", "bin width, h/Mpc (0: the fundamental 2 pi / L)", 0.0, &a->pc.dk));
  CB_CALL(
      options_int(o, "-n_bins", "number of equal bins (instead of -dk; 0: use -dk)", 0, &n_bins));
  CB_CALL(field_plan_options(o));
  CB_CALL(options_finish(o));
  dk_set = a->pc.dk != 0;
  CB_CHECK(!(dk_set && n_bins != 0), CB_ERR_INPUT, "give -dk or -n_bins, not both");
  CB_CHECK(n_bins >= 0 && n_bins <= 1000000, CB_ERR_INPUT,
           "-n_bins must be in [0, 1000000] (got %ld)", n_bins);
  a->pc.n_bins = (int)n_bins;
  a->pc.deconvolve_cic = a->deconvolve;
  text_name(a->out, a->txt, sizeof a->txt);
  return CB_OK;
}

static int pk_run(options *o, const char *input, MPI_Comm comm) {
  pk_args a;
  CB_CALL(pk_options(o, input, &a));
  CB_CALL(h5io_check_output(comm, a.out, a.overwrite)); /* before any work */
  CB_CALL(h5io_check_output(comm, a.txt, a.overwrite));
  int rank;
  MPI_Comm_rank(comm, &rank);

  h5file *in = NULL;
  CB_CALL(h5io_open(comm, input, &in));
  long n = 0;
  double L = 0;
  field *f = NULL;
  power *p = NULL;
  double *x = NULL, *pk_in = NULL;
  h5file *h = NULL;
  bool have_in = false;
  char tmp_txt[4300] = "";
  int st = h5io_attr_read_long(in, "/", "n_grid", &n);
  if (st == CB_OK) st = h5io_attr_read_double(in, "/", "box_size", &L);
  if (st == CB_OK && !(n >= 2 && n % 2 == 0 && n <= 65536 && L > 0))
    st = CB_ERROR(CB_ERR_INPUT,
                  "'%s': attributes n_grid = %ld, box_size = %g do not describe a grid", input, n,
                  L);
  if (st == CB_OK) st = field_create(comm, n, L, 1, &f);
  if (st == CB_OK && !(x = field_alloc_real(f)))
    st = CB_ERROR(CB_ERR_MEM, "out of memory for a %ld^3 field", n);
  if (st == CB_OK) st = h5io_read_field(in, a.dataset, f, x);
  if (st == CB_OK) st = power_create(f, &a.pc, &p);
  if (st == CB_OK) st = power_measure(p, x);
  if (st == CB_OK && !(pk_in = calloc((size_t)p->n_bins, sizeof *pk_in)))
    st = CB_ERROR(CB_ERR_MEM, "out of memory");
  if (st == CB_OK) st = input_spectrum(in, a.dataset, f, p, pk_in, &have_in);
  if (st == CB_OK) {
    int empty = 0;
    for (int b = 0; b < p->n_bins; b++) empty += p->n_modes[b] == 0;
    if (empty) log_warn("pk: %d of %d bins hold no mode (P = 0 there)", empty, p->n_bins);
  }
  /* the text table under a temporary name first, renamed after the HDF5 file commits */
  if (st == CB_OK) {
    int ok = 1;
    if (rank == 0) {
      snprintf(tmp_txt, sizeof tmp_txt, "%s.tmp.%ld", a.txt, (long)getpid());
      FILE *t = fopen(tmp_txt, "w");
      if (t) {
        pk_print(t, input, a.dataset, p, pk_in, have_in);
        ok = fclose(t) == 0;
      } else {
        ok = 0;
      }
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
    if (!ok) st = CB_ERROR(CB_ERR_IO, "cannot write '%s'", a.txt);
  }
  if (st == CB_OK) st = h5io_create(comm, a.out, a.overwrite, &h);
  if (st == CB_OK) st = pk_write_h5(h, in, o, input, a.dataset, a.deconvolve, p, pk_in, have_in);
  if (st == CB_OK) st = h5io_commit(&h);
  if (st == CB_OK) {
    int ok = rank == 0 ? rename(tmp_txt, a.txt) == 0 : 1;
    MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
    if (!ok) st = CB_ERROR(CB_ERR_IO, "cannot rename the temporary table to '%s'", a.txt);
  }
  if (st == CB_OK && rank == 0) {
    pk_print(stdout, input, a.dataset, p, pk_in, have_in);
    fflush(stdout);
  }
  if (rank == 0 && tmp_txt[0]) unlink(tmp_txt); /* gone already when renamed */
  h5io_abort(&h);
  h5io_close(&in);
  free(pk_in);
  fftw_free(x);
  power_destroy(&p);
  field_destroy(&f);
  CB_CALL(st);
  log_info("wrote '%s' and '%s'", a.out, a.txt);
  return CB_OK;
}

int cmd_pk(int argc, char **argv, MPI_Comm comm) {
  options *o = NULL;
  CB_CALL(options_create(comm, "pk", "the power spectrum P(k) of a field in an HDF5 file", &o));
  int st;
  if (argc == 0 && options_help_requested(o))
    st = pk_options(o, "FILE", &(pk_args){0});
  else if (argc == 0)
    st = CB_ERROR(CB_ERR_INPUT, "no input file given (cerberus pk FILE -dataset NAME)");
  else if (argc > 1)
    st = CB_ERROR(CB_ERR_INPUT, "one input file expected, got %d: '%s' '%s' ...", argc, argv[0],
                  argv[1]);
  else
    st = pk_run(o, argv[0], comm);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
