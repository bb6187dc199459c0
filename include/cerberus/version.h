/* version: the code version (git describe at build time), stored in every output file. */
#ifndef CERBERUS_VERSION_API_H
#define CERBERUS_VERSION_API_H
const char *version_string(void);
#endif
