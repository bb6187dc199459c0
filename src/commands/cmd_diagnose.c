/* cmd_diagnose: `cerberus diagnose CHAIN.h5`, the convergence table of a chain file
 * (MODEL.md section 8; the table is the summary module's).
 *
 *   cerberus diagnose CHAIN.h5 [-warmup]
 *
 * For the log posterior, the mass function n(M | delta) in the chain file's density bins at
 * its masses (the identifiable quantities), then every weight: mean, sd, 5% and 95%
 * quantiles, MCSE of the mean, bulk and tail ESS and rank-normalised split R-hat, with '*'
 * beside an R-hat above 1.01. A running job's file can be read: only the draws complete in
 * every chain are used. -warmup reads the warm-up draws instead. Rank 0 reads and prints.
 * Collective. */
#include "cerberus/chain.h"
#include "cerberus/commands.h"
#include "cerberus/log.h"
#include "cerberus/options.h"
#include "cerberus/status.h"
#include "cerberus/summary.h"

#include <stdio.h>

static int diagnose_run(options *o, MPI_Comm comm, const char *path) {
  bool warm = false;
  CB_CALL(options_bool(o, "-warmup", "diagnose the warm-up draws instead", false, &warm));
  CB_CALL(options_finish(o));
  int rank;
  MPI_Comm_rank(comm, &rank);
  int st = CB_OK;
  if (rank == 0) {
    chain_data d;
    st = chain_read(path, warm ? CHAIN_WARMUP : CHAIN_SAMPLING, &d);
    if (!st) {
      log_info("diagnose: %s: %d chains, %ld draws, %zu weights", path, d.n_chains, d.n_draws,
               d.dim);
      st = summary_print(stdout, &d, NULL);
      if (st) { /* keep the message, name the file */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", status_message());
        st = CB_ERROR(st, "%s: %s", path, msg);
      }
      chain_data_free(&d);
    }
  }
  MPI_Bcast(&st, 1, MPI_INT, 0, comm);
  if (st && rank != 0) return CB_ERROR(st, "diagnose failed on rank 0");
  CB_CALL(st);
  return CB_OK;
}

int cmd_diagnose(int argc, char **argv, MPI_Comm comm) {
  options *o = NULL;
  CB_CALL(options_create(comm, "diagnose", "convergence diagnostics of a chain file", &o));
  int st =
      argc == 1 ? diagnose_run(o, comm, argv[0])
      : argc == 0
          ? (options_help_requested(o) ? diagnose_run(o, comm, "")
                                       : CB_ERROR(CB_ERR_INPUT, "no chain file given (cerberus "
                                                                "diagnose CHAIN.h5)"))
          : CB_ERROR(CB_ERR_INPUT, "diagnose takes one chain file (got %d arguments)", argc);
  options_destroy(&o);
  CB_CALL(st);
  return CB_OK;
}
