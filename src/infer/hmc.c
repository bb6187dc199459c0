/* hmc: step-wise HMC, HMCLET's quasi-Newton variant and MAMS (include/cerberus/hmc.h,
 * MODEL.md section 8). Work in progress. */
#include "cerberus/hmc.h"

#include "cerberus/status.h"

#include <stdlib.h>
#include <string.h>

struct hmc {
  size_t dim;
};

const char *hmc_algorithm_name(int a) {
  (void)a;
  return "?";
}
const char *hmc_integrator_name(int i) {
  (void)i;
  return "?";
}
const char *hmc_metric_name(int m) {
  (void)m;
  return "?";
}
void hmc_config_default(hmc_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
}
int hmc_config_check(const hmc_config *cfg, size_t dim) {
  (void)cfg;
  (void)dim;
  return CB_ERROR(CB_ERR_INTERNAL, "hmc: not implemented yet");
}
int hmc_create(MPI_Comm comm, size_t dim, const hmc_config *cfg, hmc_target_fn logp, void *ctx,
               const double *q0, hmc **h) {
  (void)comm, (void)dim, (void)cfg, (void)logp, (void)ctx, (void)q0;
  *h = NULL;
  return CB_ERROR(CB_ERR_INTERNAL, "hmc: not implemented yet");
}
void hmc_destroy(hmc **h) {
  if (!h || !*h) return;
  free(*h);
  *h = NULL;
}
