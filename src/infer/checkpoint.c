/* checkpoint: the restart file of `cerberus infer` (include/cerberus/checkpoint.h).
 *
 * The payload is a flat sequence of little records in a fixed order (native byte order: a
 * checkpoint is read on the machine family that wrote it): lengths as uint64, counters as
 * int64, positions as doubles, the sampler states as raw bytes. The header carries the
 * payload's length and FNV-1a hash, so that a truncated or damaged file is recognised before
 * any of it is used. The write goes through PATH.new, fsync, and two renames, so the newest
 * complete checkpoint survives a kill at any point (a kill between the renames leaves
 * PATH.prev, which the reader falls back on). */
#include "cerberus/checkpoint.h"

#include "cerberus/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char MAGIC[8] = {'C', 'E', 'R', 'B', 'C', 'K', 'P', 'T'};
enum { VERSION = 1, HEADER = 8 + 8 + 8 + 8 };

uint64_t checkpoint_hash(const void *buf, size_t n) {
  const unsigned char *p = buf;
  uint64_t h = 14695981039346656037ULL; /* the 64-bit offset basis */
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

void checkpoint_free(checkpoint *ck) {
  free(ck->options);
  free(ck->positions);
  free(ck->states);
  memset(ck, 0, sizeof *ck);
}

typedef struct wbuf {
  unsigned char *p;
  size_t n, cap;
  int bad;
} wbuf;

static void put(wbuf *b, const void *x, size_t n) {
  if (b->bad) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n) cap *= 2;
    unsigned char *q = realloc(b->p, cap);
    if (!q) {
      b->bad = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, x, n);
  b->n += n;
}
static void put_u64(wbuf *b, uint64_t v) {
  put(b, &v, sizeof v);
}
static void put_i64(wbuf *b, int64_t v) {
  put(b, &v, sizeof v);
}

static int write_all(int fd, const void *buf, size_t n) {
  const unsigned char *p = buf;
  while (n) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

int checkpoint_write(const char *path, const checkpoint *ck) {
  wbuf b = {0};
  size_t ol = ck->options ? strlen(ck->options) : 0;
  put_u64(&b, ol);
  put(&b, ck->options ? ck->options : "", ol);
  put_i64(&b, ck->step);
  put_i64(&b, ck->draws[0]);
  put_i64(&b, ck->draws[1]);
  for (int i = 0; i < CHECKPOINT_N_COUNTERS; i++) put_i64(&b, ck->counters[i]);
  put_u64(&b, (uint64_t)ck->n_chains);
  put_u64(&b, ck->dim);
  put_u64(&b, ck->state_size);
  put(&b, ck->positions, (size_t)ck->n_chains * ck->dim * sizeof(double));
  put(&b, ck->states, (size_t)ck->n_chains * ck->state_size);
  if (b.bad) {
    free(b.p);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the checkpoint");
  }
  unsigned char head[HEADER];
  uint64_t ver = VERSION, len = b.n, hash = checkpoint_hash(b.p, b.n);
  memcpy(head, MAGIC, 8);
  memcpy(head + 8, &ver, 8);
  memcpy(head + 16, &len, 8);
  memcpy(head + 24, &hash, 8);
  char tmp[4200], prev[4200];
  snprintf(tmp, sizeof tmp, "%s.new", path);
  snprintf(prev, sizeof prev, "%s.prev", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int bad = fd < 0;
  if (!bad) bad = write_all(fd, head, HEADER) || write_all(fd, b.p, b.n) || fsync(fd);
  if (fd >= 0 && close(fd)) bad = 1;
  free(b.p);
  if (bad) {
    remove(tmp);
    return CB_ERROR(CB_ERR_IO, "cannot write the checkpoint '%s': %s", tmp, strerror(errno));
  }
  if (access(path, F_OK) == 0 && rename(path, prev) != 0)
    return CB_ERROR(CB_ERR_IO, "cannot rename the checkpoint '%s' to '%s'", path, prev);
  if (rename(tmp, path) != 0)
    return CB_ERROR(CB_ERR_IO, "cannot rename the checkpoint '%s' to '%s'", tmp, path);
  return CB_OK;
}

typedef struct rbuf {
  const unsigned char *p;
  size_t n, at;
  int bad;
} rbuf;

static void get(rbuf *r, void *x, size_t n) {
  if (r->bad || r->n - r->at < n) {
    r->bad = 1;
    memset(x, 0, n);
    return;
  }
  memcpy(x, r->p + r->at, n);
  r->at += n;
}
static uint64_t get_u64(rbuf *r) {
  uint64_t v;
  get(r, &v, sizeof v);
  return v;
}
static int64_t get_i64(rbuf *r) {
  int64_t v;
  get(r, &v, sizeof v);
  return v;
}

/* 0: read; 1: missing; 2: damaged (why filled). */
static int read_one(const char *path, checkpoint *ck, char *why, size_t nwhy) {
  memset(ck, 0, sizeof *ck);
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(why, nwhy, "'%s' does not exist", path);
    return 1;
  }
  unsigned char head[HEADER];
  unsigned char *pay = NULL;
  uint64_t ver = 0, len = 0, hash = 0;
  int res = 0;
  if (fread(head, 1, HEADER, f) != HEADER || memcmp(head, MAGIC, 8)) {
    snprintf(why, nwhy, "'%s' is not a checkpoint (bad header)", path);
    res = 2;
  } else {
    memcpy(&ver, head + 8, 8);
    memcpy(&len, head + 16, 8);
    memcpy(&hash, head + 24, 8);
    if (ver != VERSION) {
      snprintf(why, nwhy, "'%s' has format version %llu, not %d", path, (unsigned long long)ver,
               VERSION);
      res = 2;
    } else if (len > ((uint64_t)1 << 40) || !(pay = malloc(len ? len : 1))) {
      snprintf(why, nwhy, "'%s': payload length %llu unreadable", path, (unsigned long long)len);
      res = 2;
    } else if (fread(pay, 1, len, f) != len) {
      snprintf(why, nwhy, "'%s' is truncated", path);
      res = 2;
    } else if (checkpoint_hash(pay, len) != hash) {
      snprintf(why, nwhy, "'%s' fails its checksum (damaged)", path);
      res = 2;
    }
  }
  fclose(f);
  if (res) {
    free(pay);
    return res;
  }
  rbuf r = {pay, len, 0, 0};
  uint64_t ol = get_u64(&r);
  if (ol > len) r.bad = 1;
  ck->options = calloc(r.bad ? 1 : ol + 1, 1);
  if (ck->options && !r.bad) get(&r, ck->options, ol);
  ck->step = get_i64(&r);
  ck->draws[0] = get_i64(&r);
  ck->draws[1] = get_i64(&r);
  for (int i = 0; i < CHECKPOINT_N_COUNTERS; i++) ck->counters[i] = get_i64(&r);
  ck->n_chains = (int)get_u64(&r);
  ck->dim = get_u64(&r);
  ck->state_size = get_u64(&r);
  size_t np = (size_t)ck->n_chains * ck->dim, ns = (size_t)ck->n_chains * ck->state_size;
  if (!r.bad && (np * sizeof(double) > len || ns > len)) r.bad = 1;
  if (!r.bad) {
    ck->positions = malloc((np ? np : 1) * sizeof(double));
    ck->states = malloc(ns ? ns : 1);
    if (!ck->positions || !ck->states) r.bad = 1;
  }
  if (!r.bad) get(&r, ck->positions, np * sizeof(double));
  if (!r.bad) get(&r, ck->states, ns);
  free(pay);
  if (r.bad || r.at != len || !ck->options) {
    snprintf(why, nwhy, "'%s' has an inconsistent payload", path);
    checkpoint_free(ck);
    return 2;
  }
  return 0;
}

int checkpoint_read(const char *path, checkpoint *ck, bool *used_previous, char *why, size_t n) {
  char w1[4400] = "", w2[4400] = "", prev[4200];
  *used_previous = false;
  int r1 = read_one(path, ck, w1, sizeof w1);
  if (why) snprintf(why, n, "%s", w1);
  if (r1 == 0) return CB_OK;
  snprintf(prev, sizeof prev, "%s.prev", path);
  int r2 = read_one(prev, ck, w2, sizeof w2);
  if (r2 == 0) {
    *used_previous = true;
    return CB_OK;
  }
  if (r1 == 1 && r2 == 1) return CB_ERROR(CB_ERR_IO, "no checkpoint '%s' to resume from", path);
  return CB_ERROR(CB_ERR_INPUT, "no usable checkpoint: %s; %s", w1, w2);
}
