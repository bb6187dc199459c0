/* cmd_hmf: `cerberus hmf`, the mass function of a model in bins of density beside a
 * catalogue's (MODEL.md sections 4-5: the plot the talk shows as "fits data").
 *
 *   cerberus hmf -field FILE -weights FILE -catalogue FILE -o OUT.h5 [-overwrite]
 *                [-n_delta_bins 5] [-n_mass_bins 10] [-mass_max 1e15] [-mass_threshold M]
 *
 * The voxels are binned in ln(1 + delta + eps) (equal widths between the field's extremes);
 * the masses in ln M from Mth to -mass_max. In each (density, mass) bin the model's
 * expected number of halos is summed exactly over the bin's voxels,
 *   V sum_i alpha_i / 2 [erfc((ln M_lo - mu_i) / (sqrt 2 sigma_i)) - erfc((ln M_hi - ...))]
 * (times (1 + delta + eps)^beta for the power law), beside the catalogue's count there.
 * Both are also given as dn/dlnM per unit volume (divided by n_voxels V d ln M), the data
 * with its Poisson error. OUT holds /hmf (one row a bin: delta_lo delta_hi n_voxels M_lo
 * M_hi n_model n_data dndlnm_model dndlnm_data dndlnm_err); the same table is printed.
 * Draw it with: /usr/bin/python3 scripts/plot_hmf.py OUT.h5 OUT.png. Collective. */
#include "cerberus/commands.h"
#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/likelihood.h"
#include "cerberus/log.h"
#include "cerberus/mdn.h"
#include "cerberus/npe.h"
#include "cerberus/options.h"
#include "cerberus/status.h"
#include "cerberus/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NCOL = 10 };

static int hmf_run(options *o, MPI_Comm comm) {
  char fpath[4096], cpath[4096], wpath[4096], out[4096];
  bool overwrite = false;
  long nd = 5, nm = 10;
  double mmax = 1e15, mth = 0;
  CB_CALL(
      options_string(o, "-field", "density field file (/delta)", NULL, fpath, sizeof fpath, NULL));
  CB_CALL(options_string(o, "-weights", "weights file", NULL, wpath, sizeof wpath, NULL));
  CB_CALL(options_string(o, "-catalogue", "halo catalogue file (/halos)", NULL, cpath, sizeof cpath,
                         NULL));
  CB_CALL(options_int(o, "-n_delta_bins", "bins in ln(1 + delta + eps)", 5, &nd));
  CB_CALL(options_int(o, "-n_mass_bins", "bins in ln M from Mth to -mass_max", 10, &nm));
  CB_CALL(options_real(o, "-mass_max", "upper mass of the last bin, M_sun/h", 1e15, &mmax));
  CB_CALL(options_real(o, "-mass_threshold", "Mth in M_sun/h (default: the catalogue's)", 0, &mth));
  CB_CALL(options_string(o, "-o", "output table (HDF5)", NULL, out, sizeof out, NULL));
  CB_CALL(options_bool(o, "-overwrite", "replace an existing output", false, &overwrite));
  CB_CALL(options_finish(o));
  CB_CHECK(fpath[0] && wpath[0] && cpath[0], CB_ERR_INPUT,
           "hmf needs -field FILE -weights FILE -catalogue FILE");
  CB_CHECK(nd >= 1 && nd <= 100, CB_ERR_INPUT, "-n_delta_bins must be 1 to 100 (got %ld)", nd);
  CB_CHECK(nm >= 1 && nm <= 200, CB_ERR_INPUT, "-n_mass_bins must be 1 to 200 (got %ld)", nm);
  CB_CALL(h5io_check_output(comm, out, overwrite));

  weights_arch a;
  double *w = NULL, *delta = NULL, *tab = NULL, *nmod = NULL, *ndat = NULL, *nvox = NULL;
  field *f = NULL;
  npe *net = NULL;
  likelihood *lk = NULL;
  int st = weights_read(comm, wpath, &a, &w);
  const bool pl = !st && a.model == WEIGHTS_POWERLAW;
  if (!st)
    st = h5io_read_field_file(comm, fpath, "/delta", pl ? 1 : npe_ghost_width(&a.npe), &f, &delta);
  if (!st) st = likelihood_create(f, &a, &lk);
  if (!st) st = likelihood_read_catalogue(lk, cpath, mth);
  if (!st) {
    mth = likelihood_mth(lk);
    if (!(mmax > mth)) st = CB_ERROR(CB_ERR_INPUT, "-mass_max %g must exceed Mth %g", mmax, mth);
  }
  const double *psi = NULL;
  if (!st && !pl) st = npe_create(f, &a.npe, &net);
  if (!st && !pl) st = npe_forward(net, delta, w, &psi);
  size_t nb = (size_t)(nd * nm);
  if (!st) {
    nmod = calloc(nb, sizeof *nmod);
    ndat = calloc(nb, sizeof *ndat);
    nvox = calloc((size_t)nd, sizeof *nvox);
    tab = calloc(nb * NCOL, sizeof *tab);
    if (!nmod || !ndat || !nvox || !tab) st = CB_ERROR(CB_ERR_MEM, "out of memory for the table");
  }
  if (st) goto done;
  {
    const ptrdiff_t nn = f->n * f->n;
    const size_t nv = (size_t)f->n_real_local;
    const double eps = a.npe.eps, V = pow(f->L / (double)f->n, 3);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t v = 0; v < nv; v++) {
      double x = log(1 + delta[v] + eps);
      lo = fmin(lo, x);
      hi = fmax(hi, x);
    }
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_DOUBLE, MPI_MIN, comm);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_DOUBLE, MPI_MAX, comm);
    hi += 1e-9 * (hi - lo) + 1e-12;
    const double dx = (hi - lo) / (double)nd, ulo = log(mth), du = (log(mmax) - ulo) / (double)nm;
    const double *head = pl ? w + 1 : w + npe_n_weights(&a.npe);
    const int P = a.mdn.n_features;
    int *bin = malloc((nv ? nv : 1) * sizeof *bin);
    if (!bin) {
      st = CB_ERROR(CB_ERR_MEM, "out of memory");
      goto done;
    }
    for (ptrdiff_t p = 0; p < f->local_n0; p++)
      for (ptrdiff_t jk = 0; jk < nn; jk++) {
        size_t v = (size_t)(p * nn + jk);
        double x = log(1 + delta[v] + eps);
        int b = (int)floor((x - lo) / dx);
        if (b >= nd) b = (int)nd - 1;
        bin[v] = b;
        nvox[b] += 1;
        mdn_voxel vox;
        mdn_forward(&a.mdn, head, P ? psi + (size_t)p * P * nn + jk : NULL, nn, &vox);
        double fac = V * (pl ? exp(w[0] * x) : 1.0);
        for (long k = 0; k < nm; k++) {
          double u0 = ulo + (double)k * du, u1 = u0 + du, s = 0;
          for (int i = 0; i < a.mdn.n_gauss; i++) {
            double r2s = sqrt(2.0) * vox.sigma[i];
            s += 0.5 * exp(vox.ln_alpha[i]) *
                 (erfc((u0 - vox.mu[i]) / r2s) - erfc((u1 - vox.mu[i]) / r2s));
          }
          nmod[(size_t)b * nm + k] += fac * s;
        }
      }
    const size_t *hv;
    const double *hl;
    size_t nh = likelihood_local_halos(lk, &hv, &hl);
    for (size_t h = 0; h < nh; h++) {
      long k = (long)floor((hl[h] - ulo) / du);
      if (k < 0 || k >= nm) continue;
      ndat[(size_t)bin[hv[h]] * nm + k] += 1;
    }
    free(bin);
    MPI_Allreduce(MPI_IN_PLACE, nmod, (int)nb, MPI_DOUBLE, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, ndat, (int)nb, MPI_DOUBLE, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, nvox, (int)nd, MPI_DOUBLE, MPI_SUM, comm);
    if (f->rank == 0)
      printf("# %-9s %-9s %8s %-10s %-10s %12s %8s %13s %13s %13s\n", "delta_lo", "delta_hi",
             "n_voxels", "M_lo", "M_hi", "n_model", "n_data", "dndlnM_model", "dndlnM_data",
             "dndlnM_err");
    for (long b = 0; b < nd; b++)
      for (long k = 0; k < nm; k++) {
        double *row = tab + ((size_t)b * nm + k) * NCOL;
        double vol = nvox[b] * V * du;
        size_t i = (size_t)b * nm + k;
        row[0] = exp(lo + b * dx) - 1 - eps;
        row[1] = exp(lo + (b + 1) * dx) - 1 - eps;
        row[2] = nvox[b];
        row[3] = exp(ulo + k * du);
        row[4] = exp(ulo + (k + 1) * du);
        row[5] = nmod[i];
        row[6] = ndat[i];
        row[7] = vol > 0 ? nmod[i] / vol : 0;
        row[8] = vol > 0 ? ndat[i] / vol : 0;
        row[9] = vol > 0 ? sqrt(ndat[i]) / vol : 0;
        if (f->rank == 0)
          printf("%-11.4g %-9.4g %8.0f %-10.4g %-10.4g %12.4f %8.0f %13.5g %13.5g %13.5g\n", row[0],
                 row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9]);
      }
    fflush(stdout);
    h5file *h = NULL;
    size_t dims[2] = {nb, NCOL};
    st = h5io_create(comm, out, overwrite, &h);
    if (!st) {
      st = h5io_write_provenance(h, o);
      if (!st) st = h5io_write_grid_attrs(h, f);
      if (!st) st = h5io_write_array(h, "/hmf", 2, dims, tab);
      if (!st)
        st = h5io_attr_write_string(h, "/hmf", "columns",
                                    "delta_lo delta_hi n_voxels M_lo M_hi n_model n_data "
                                    "dndlnm_model dndlnm_data dndlnm_err");
      if (!st) st = h5io_attr_write_long(h, "/", "n_delta_bins", nd);
      if (!st) st = h5io_attr_write_long(h, "/", "n_mass_bins", nm);
      if (!st) st = h5io_attr_write_double(h, "/", "mass_threshold", mth);
      if (!st) st = h5io_attr_write_string(h, "/", "model", pl ? "powerlaw" : "npe");
      if (!st)
        st = h5io_commit(&h);
      else
        h5io_abort(&h);
    }
    if (!st)
      log_info(
          "hmf: %ld halos, table in %s (plot: /usr/bin/python3 scripts/plot_hmf.py %s OUT.png)",
          likelihood_n_halos(lk), out, out);
  }
done:
  npe_destroy(&net);
  likelihood_destroy(&lk);
  if (delta) fftw_free(delta);
  free(w);
  free(tab);
  free(nmod);
  free(ndat);
  free(nvox);
  field_destroy(&f);
  CB_CALL(st);
  return CB_OK;
}

int cmd_hmf(int argc, char **argv, MPI_Comm comm) {
  options *o = NULL;
  CB_CALL(options_create(comm, "hmf", "the mass function of a model in bins of delta", &o));
  int st = argc == 0 ? hmf_run(o, comm)
                     : CB_ERROR(CB_ERR_INPUT, "unexpected argument '%s' (hmf takes options only)",
                                argv[0]);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
