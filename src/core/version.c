/* version: the git-describe string baked in at build time. */
#include "cerberus/version.h"
#include "version.h"
const char *version_string(void) {
  return CERBERUS_VERSION;
}
