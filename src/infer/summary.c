/* summary: the diagnostics table of a chain file (include/cerberus/summary.h).
 *
 * For each quantity the draws are gathered chain-major (x[c * n_draws + t]) and handed to
 * diagnose_summary (rank-normalised split R-hat, bulk and tail ESS, MCSE; Vehtari et al.
 * 2021). The rows come in the order lp, mass function (bin by bin, mass by mass), weights. */
#include "cerberus/summary.h"

#include "cerberus/diagnose.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void row(FILE *out, const char *name, const diagnose_stats *s) {
  fprintf(out, "%-26s %12.5g %11.4g %12.5g %12.5g %10.3g %8.0f %8.0f %7.4f %s\n", name, s->mean,
          s->sd, s->q05, s->q95, s->mcse_mean, s->ess_bulk, s->ess_tail, s->rhat,
          diagnose_flag(s) ? "*" : "");
}

int summary_print(FILE *out, const chain_data *d, summary_counts *counts) {
  const size_t K = (size_t)d->n_chains, T = (size_t)d->n_draws;
  CB_CHECK(T >= 4, CB_ERR_INPUT, "only %zu complete draws in each chain: at least 4 are needed", T);
  const size_t nmf = (size_t)d->n_bins * (size_t)d->n_masses;
  double *x = malloc(K * T * sizeof *x);
  CB_CHECK(x, CB_ERR_MEM, "out of memory for the diagnostics");
  summary_counts c = {0, 0, 0, 0, 0, 0};
  fprintf(out, "# %zu chains x %zu draws; '*': R-hat > 1.01\n", K, T);
  fprintf(out, "%-26s %12s %11s %12s %12s %10s %8s %8s %7s\n", "quantity", "mean", "sd", "5%",
          "95%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat");
  int st = CB_OK;
  const size_t nq = 1 + nmf + d->dim;
  for (size_t q = 0; q < nq && !st; q++) {
    char name[96];
    for (size_t k = 0; k < K; k++)
      for (size_t t = 0; t < T; t++) {
        size_t o = k * T + t;
        x[o] = q == 0     ? d->stats[o * CHAIN_N_STATS + CHAIN_LP]
               : q <= nmf ? d->mass_function[o * nmf + (q - 1)]
                          : d->weights[o * d->dim + (q - 1 - nmf)];
      }
    if (q == 0) {
      snprintf(name, sizeof name, "lp");
    } else if (q <= nmf) {
      int b = (int)((q - 1) / (size_t)d->n_masses), m = (int)((q - 1) % (size_t)d->n_masses);
      snprintf(name, sizeof name, "n(%.2gM|d=%.2g..%.2g)", d->masses[m], d->bin_edges[b],
               d->bin_edges[b + 1]);
    } else {
      snprintf(name, sizeof name, "%s", d->names[q - 1 - nmf]);
    }
    diagnose_stats s;
    st = diagnose_summary(name, K, T, x, &s);
    if (st == CB_ERR_INPUT) { /* a non-finite draw (an empty bin): a row of NaN, flagged */
      status_clear();
      st = CB_OK;
      s = (diagnose_stats){NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    }
    if (st) break;
    if (q == 1 + nmf) fprintf(out, "# weights (not identifiable; for reference)\n");
    row(out, name, &s);
    bool flag = diagnose_flag(&s);
    c.n_rows++;
    c.n_flagged += flag;
    if (q <= nmf) {
      c.n_identifiable++;
      c.n_identifiable_flagged += flag;
      if (!(s.rhat <= c.max_rhat_identifiable)) c.max_rhat_identifiable = s.rhat;
    } else if (!(s.rhat <= c.max_rhat_weights)) {
      c.max_rhat_weights = s.rhat;
    }
  }
  free(x);
  CB_CALL(st);
  fprintf(out,
          "# R-hat > 1.01: %d of %d identifiable quantities (lp, mass function; largest R-hat "
          "%.4f), %d of %zu weights (largest %.4f)\n",
          c.n_identifiable_flagged, c.n_identifiable, c.max_rhat_identifiable,
          c.n_flagged - c.n_identifiable_flagged, d->dim, c.max_rhat_weights);
  fflush(out);
  if (counts) *counts = c;
  return CB_OK;
}
