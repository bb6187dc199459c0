/* summary: the diagnostics table of a chain file's draws (MODEL.md section 8), printed by
 * `cerberus diagnose` and at the end of `cerberus infer`.
 *
 * One row per quantity: the log posterior lp, the binned mass function n(M | delta) of each
 * density bin and mass (the identifiable quantities convergence is judged on), then every
 * weight (reported beside them; the weights themselves are not identifiable). Columns: mean,
 * sd, 5% and 95% quantiles, MCSE of the mean, bulk and tail ESS, rank-normalised split R-hat,
 * and a flag '*' when R-hat exceeds 1.01 (or cannot be computed). A closing line counts the
 * flagged rows of each kind. Not collective (the caller prints on one rank). */
#ifndef CERBERUS_SUMMARY_H
#define CERBERUS_SUMMARY_H

#include "cerberus/chain.h"

#include <stdio.h>

typedef struct summary_counts {
  int n_rows, n_flagged;                      /* all rows */
  int n_identifiable, n_identifiable_flagged; /* lp and the mass function */
  double max_rhat_identifiable, max_rhat_weights;
} summary_counts;

/* Print the table of d to out; counts (may be NULL) receives the tallies. CB_ERR_INPUT when
 * there are fewer than 4 draws. */
int summary_print(FILE *out, const chain_data *d, summary_counts *counts);

#endif
