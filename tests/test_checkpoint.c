/* test_checkpoint: the restart file of `cerberus infer` (include/cerberus/checkpoint.h).
 *
 * A checkpoint written and read back is the same to the last byte (options, counters,
 * positions, sampler states); a second write keeps the first as PATH.prev; a flipped byte
 * (checksum), a truncation, or a missing newest file make the reader fall back on PATH.prev
 * and say why; both damaged is CB_ERR_INPUT, none there CB_ERR_IO naming the file; the
 * FNV-1a hash of "a" is the published 0xaf63dc4c8601ec8c. Serial (rank 0's business). */
#include "testing.h"

#include "cerberus/checkpoint.h"
#include "cerberus/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void make(checkpoint *ck, int K, size_t d, size_t S, double shift) {
  memset(ck, 0, sizeof *ck);
  ck->options = strdup("-chains 3\n-seed 7\n");
  ck->step = 123;
  ck->draws[0] = 100;
  ck->draws[1] = 23;
  for (int i = 0; i < CHECKPOINT_N_COUNTERS; i++) ck->counters[i] = 1000 * i + 7;
  ck->n_chains = K;
  ck->dim = d;
  ck->state_size = S;
  ck->positions = malloc((size_t)K * d * sizeof(double));
  ck->states = malloc((size_t)K * S);
  for (size_t i = 0; i < (size_t)K * d; i++) ck->positions[i] = 2.385 * (double)i - shift;
  for (size_t i = 0; i < (size_t)K * S; i++) ck->states[i] = (unsigned char)(i * 37 + 11);
}

static int equal(const checkpoint *a, const checkpoint *b) {
  return !strcmp(a->options, b->options) && a->step == b->step && a->draws[0] == b->draws[0] &&
         a->draws[1] == b->draws[1] && !memcmp(a->counters, b->counters, sizeof a->counters) &&
         a->n_chains == b->n_chains && a->dim == b->dim && a->state_size == b->state_size &&
         !memcmp(a->positions, b->positions, (size_t)a->n_chains * a->dim * sizeof(double)) &&
         !memcmp(a->states, b->states, (size_t)a->n_chains * a->state_size);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  TEST_CHECK(checkpoint_hash("a", 1) == 0xaf63dc4c8601ec8cULL, "FNV-1a of 'a'");
  char path[256], prev[300];
  snprintf(path, sizeof path, "/tmp/test_checkpoint_%ld.ckpt", (long)getpid());
  snprintf(prev, sizeof prev, "%s.prev", path);
  checkpoint a, b, r;
  make(&a, 3, 17, 501, 0.0);
  make(&b, 3, 17, 501, 1.5);
  b.step = 124;
  bool used_prev = true;
  char why[512];
  TEST_STATUS(checkpoint_read(path, &r, &used_prev, why, sizeof why), CB_ERR_IO, "none there");
  TEST_CHECK(strstr(status_message(), path) != NULL, "message names the file: %s",
             status_message());
  status_clear();
  TEST_STATUS(checkpoint_write(path, &a), CB_OK, "write a");
  TEST_STATUS(checkpoint_read(path, &r, &used_prev, why, sizeof why), CB_OK, "read a");
  TEST_CHECK(!used_prev && equal(&a, &r), "a read back");
  checkpoint_free(&r);
  TEST_STATUS(checkpoint_write(path, &b), CB_OK, "write b");
  TEST_CHECK(access(prev, F_OK) == 0, "the first checkpoint kept as .prev");
  TEST_STATUS(checkpoint_read(path, &r, &used_prev, why, sizeof why), CB_OK, "read b");
  TEST_CHECK(!used_prev && equal(&b, &r), "b read back");
  checkpoint_free(&r);
  /* a flipped byte in the payload: the checksum fails, a is used */
  FILE *f = fopen(path, "r+b");
  fseek(f, 200, SEEK_SET);
  int c = fgetc(f);
  fseek(f, 200, SEEK_SET);
  fputc(c ^ 0x10, f);
  fclose(f);
  TEST_STATUS(checkpoint_read(path, &r, &used_prev, why, sizeof why), CB_OK, "flipped");
  TEST_CHECK(used_prev && equal(&a, &r) && strstr(why, "checksum"), "flipped: fell back (%s)", why);
  checkpoint_free(&r);
  /* truncated */
  TEST_STATUS(checkpoint_write(path, &b), CB_OK, "write b again"); /* .prev: the flipped one */
  TEST_STATUS(checkpoint_write(path, &b), CB_OK, "write b again"); /* .prev is now b */
  TEST_CHECK(truncate(path, 1000) == 0, "truncate");
  TEST_STATUS(checkpoint_read(path, &r, &used_prev, why, sizeof why), CB_OK, "truncated");
  TEST_CHECK(used_prev && equal(&b, &r) && strstr(why, "truncated"), "truncated: fell back (%s)",
             why);
  checkpoint_free(&r);
  /* both damaged */
  TEST_CHECK(truncate(prev, 20) == 0, "truncate prev");
  TEST_STATUS(checkpoint_read(path, &r, &used_prev, why, sizeof why), CB_ERR_INPUT, "both bad");
  status_clear();
  /* newest missing, previous good */
  remove(path);
  TEST_STATUS(checkpoint_write(prev, &a), CB_OK, "write prev directly");
  TEST_STATUS(checkpoint_read(path, &r, &used_prev, why, sizeof why), CB_OK, "newest missing");
  TEST_CHECK(used_prev && equal(&a, &r), "newest missing: the previous one");
  checkpoint_free(&r);
  remove(path);
  remove(prev);
  char pp[400];
  snprintf(pp, sizeof pp, "%s.prev", prev);
  remove(pp);
  checkpoint_free(&a);
  checkpoint_free(&b);
  return testing_finish();
}
