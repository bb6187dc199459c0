/* diagnose: R-hat, ESS, MCSE (include/cerberus/diagnose.h). Work in progress. */
#include "cerberus/diagnose.h"
