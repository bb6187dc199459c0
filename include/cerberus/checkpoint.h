/* checkpoint: everything `cerberus infer` needs to continue a run, in one file written
 * atomically, with the previous one kept until the new one is complete.
 *
 * Contents: the options record of the run (compared at -resume), the number of steps done,
 * the draws of each phase in the chain file, the gradient counters, and per chain its
 * position and the sampler's bitwise state (hmc_state_save). Format: the magic
 * "CERBCKPT", a version, the payload's length and its FNV-1a 64-bit checksum, then the
 * payload. Writing: PATH.new is written and flushed to disk, PATH (if any) renamed to
 * PATH.prev, PATH.new renamed to PATH; so at any moment a complete checkpoint exists under
 * PATH or PATH.prev. Reading: PATH, or, when it is missing, truncated or fails its checksum,
 * PATH.prev (the caller is told, to warn). All functions are Not collective (rank 0 calls
 * them; the caller broadcasts). */
#ifndef CERBERUS_CHECKPOINT_H
#define CERBERUS_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { CHECKPOINT_N_COUNTERS = 8 };

typedef struct checkpoint {
  char *options;                        /* the options record, "-name value\n" lines */
  long step;                            /* steps done by every chain (warm-up included) */
  long draws[2];                        /* draws in the chain file: warm-up, sampling */
  long counters[CHECKPOINT_N_COUNTERS]; /* gradient counts and the like, the caller's meaning */
  int n_chains;
  size_t dim;            /* parameters per chain */
  size_t state_size;     /* bytes of one chain's sampler state */
  double *positions;     /* [n_chains][dim] */
  unsigned char *states; /* [n_chains][state_size] */
} checkpoint;

/* Write ck to path as described above. CB_ERR_IO naming the file. */
int checkpoint_write(const char *path, const checkpoint *ck);
/* Read path (or path.prev): *used_previous tells which; *why, if not NULL, receives why the
 * newest was not used. CB_ERR_IO when neither exists ("no checkpoint ... to resume from"),
 * CB_ERR_INPUT when both are damaged. ck is freed with checkpoint_free. */
int checkpoint_read(const char *path, checkpoint *ck, bool *used_previous, char *why, size_t n);
void checkpoint_free(checkpoint *ck);
/* The FNV-1a 64-bit hash of n bytes. */
uint64_t checkpoint_hash(const void *buf, size_t n);

#endif
