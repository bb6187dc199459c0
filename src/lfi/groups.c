/* groups: rank groups and the dynamic scheduler of simulations (MODEL.md section 10).
 *
 * Split. MPI_Comm_split with colour world_rank / g: group r holds world ranks g r .. g r + g - 1,
 * so world rank 0, the coordinator, is the root of group 0. The world communicator is
 * duplicated so that the scheduler's messages never meet a caller's.
 *
 * Protocol (groups_schedule). Messages go between the coordinator and the group roots only;
 * inside a group the root broadcasts each message it receives to its members.
 *  - task message, coordinator -> root of group r (tag TAG_TASK): int64 kind (TASK or STOP),
 *    int64 index, task_len doubles. Up to `depth` of them are outstanding per group; a group
 *    works through them in order (MPI keeps the order of messages between two ranks), so the
 *    coordinator keeps a ring of the tasks in flight per group and each result answers the
 *    oldest.
 *  - result message, root of group r -> coordinator (tag TAG_RESULT): int64 index, int64
 *    status, double time, result_len doubles, and the error message when status != 0.
 * The coordinator loops: take every result that has arrived (MPI_Iprobe) and give it to done();
 * top up the other groups' queues from next(); then, if next() has a task left, run it on its
 * own group (broadcast to its members, work(), done()); otherwise wait for the next result
 * (polling with naps, see nap_wait). When next() says done and nothing is in flight, it sends
 * STOP to every group. Sends are MPI_Isend from buffers kept until they complete: with Open MPI
 * a blocking send of even a small message was measured to wait for the receiver's next MPI call
 * (for a result: the coordinator's next pause between its own simulations), which left the other
 * group idle half the time. The final status is broadcast from the coordinator so that every
 * rank returns the same one. Buffers are made once per schedule; the loop allocates nothing. */
#include "cerberus/groups.h"

#include "cerberus/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { TAG_TASK = 7101, TAG_RESULT = 7102 };
enum { KIND_TASK = 1, KIND_STOP = 2 };
#define GROUPS_MSG_LEN 256

static uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t groups_task_seed(uint64_t campaign_seed, uint64_t key) {
  return splitmix64(splitmix64(campaign_seed) ^ key);
}

int groups_create(MPI_Comm world, int group_size, groups **out) {
  *out = NULL;
  int rank, size;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  CB_CHECK(group_size >= 1, CB_ERR_INPUT, "-group_size must be at least 1 (got %d)", group_size);
  CB_CHECK(size % group_size == 0, CB_ERR_INPUT,
           "-group_size %d does not divide the %d MPI ranks into whole groups", group_size, size);
  groups *g;
  CB_CALLOC(g, 1);
  g->world = g->comm = MPI_COMM_NULL;
  if (MPI_Comm_dup(world, &g->world) != MPI_SUCCESS) {
    groups_destroy(&g);
    return CB_ERROR(CB_ERR_MPI, "MPI_Comm_dup failed");
  }
  g->world_rank = rank;
  g->world_size = size;
  g->group_size = group_size;
  g->n_groups = size / group_size;
  g->group = rank / group_size;
  if (MPI_Comm_split(g->world, g->group, rank, &g->comm) != MPI_SUCCESS) {
    groups_destroy(&g);
    return CB_ERROR(CB_ERR_MPI, "MPI_Comm_split into groups of %d failed", group_size);
  }
  MPI_Comm_rank(g->comm, &g->rank);
  g->is_root = g->rank == 0;
  g->is_coordinator = rank == 0;
  *out = g;
  return CB_OK;
}

void groups_destroy(groups **pg) {
  if (!pg || !*pg) return;
  groups *g = *pg;
  if (g->comm != MPI_COMM_NULL) MPI_Comm_free(&g->comm);
  if (g->world != MPI_COMM_NULL) MPI_Comm_free(&g->world);
  free(g);
  *pg = NULL;
}

/* ---------------------------------------------------------------- the schedule */

typedef struct sched {
  groups *g;
  const groups_scheduler *s;
  int depth;
  size_t task_bytes, result_bytes;
  unsigned char *tbuf, *rbuf; /* one task message, one result message */
  /* messages being sent (MPI_Isend: a blocking send of even a small message can wait until the
   * receiver, busy with a simulation, next calls MPI): the coordinator's ring slots and STOPs,
   * a group root's two result buffers used in turn */
  unsigned char *sbuf;
  size_t sbytes;
  MPI_Request *sreq;
  int n_sreq, next_rs;
  /* coordinator: per group a ring of the tasks in flight */
  int64_t *ring_index; /* [G * depth] */
  double *ring_task;   /* [G * depth * task_len] */
  int *ring_head, *ring_n;
  double *task, *result; /* scratch of task_len, result_len */
  int status;            /* first error (coordinator) */
  char msg[GROUPS_MSG_LEN + 128];
} sched;

/* Waiting without spinning: Open MPI's blocking calls poll the network at full speed, which on
 * a node with more ranks than free cores takes the core from the rank that has the work. So a
 * waiting rank polls for ~50 us, then naps 20 us between polls (a task's latency grows by at
 * most a nap; the queue of `depth` tasks hides it). */
static void nap_wait(MPI_Request *req) {
  int done = 0;
  double t0 = MPI_Wtime();
  for (MPI_Test(req, &done, MPI_STATUS_IGNORE); !done; MPI_Test(req, &done, MPI_STATUS_IGNORE))
    if (MPI_Wtime() - t0 > 5e-5) nanosleep(&(struct timespec){.tv_nsec = 20000}, NULL);
}

static void nap_probe(MPI_Comm comm, int tag, MPI_Status *ms) {
  int flag = 0;
  double t0 = MPI_Wtime();
  for (MPI_Iprobe(MPI_ANY_SOURCE, tag, comm, &flag, ms); !flag;
       MPI_Iprobe(MPI_ANY_SOURCE, tag, comm, &flag, ms))
    if (MPI_Wtime() - t0 > 5e-5) nanosleep(&(struct timespec){.tv_nsec = 20000}, NULL);
}

/* The task message to the group's members. Collective on g->comm. */
static void group_bcast(sched *c) {
  if (c->g->group_size == 1) return;
  MPI_Request req;
  MPI_Ibcast(c->tbuf, (int)c->task_bytes, MPI_BYTE, 0, c->g->comm, &req);
  nap_wait(&req);
}

/* Send buffer k, once its previous send has completed. */
static unsigned char *send_buffer(sched *c, int k) {
  if (c->sreq[k] != MPI_REQUEST_NULL) nap_wait(&c->sreq[k]);
  return c->sbuf + (size_t)k * c->sbytes;
}

static void pack_task(sched *c, int64_t kind, int64_t index, const double *task) {
  memcpy(c->tbuf, &kind, 8);
  memcpy(c->tbuf + 8, &index, 8);
  if (c->s->task_len) memcpy(c->tbuf + 16, task, c->s->task_len * sizeof(double));
}

/* Run work() collectively on this rank's group; the group's status is the worst of its ranks. */
static int run_work(sched *c, int64_t index, const double *task, double *result, double *time,
                    char *msg) {
  groups *g = c->g;
  double t0 = MPI_Wtime();
  status_clear();
  int st = c->s->work(c->s->ctx, g, index, task, result);
  if (msg) {
    msg[0] = '\0';
    if (st != CB_OK) snprintf(msg, GROUPS_MSG_LEN, "%s", status_message());
  }
  if (g->group_size > 1) {
    int worst = st;
    MPI_Allreduce(&st, &worst, 1, MPI_INT, MPI_MAX, g->comm);
    if (worst != CB_OK && st == CB_OK && msg)
      snprintf(msg, GROUPS_MSG_LEN, "task %lld failed on another rank of group %d",
               (long long)index, g->group);
    st = worst;
  }
  *time = MPI_Wtime() - t0;
  return st;
}

/* Group members (not the coordinator): receive tasks until STOP. */
static int member_loop(sched *c) {
  groups *g = c->g;
  const size_t tl = c->s->task_len, rl = c->s->result_len;
  for (;;) {
    if (g->is_root) {
      MPI_Request req;
      MPI_Irecv(c->tbuf, (int)c->task_bytes, MPI_BYTE, 0, TAG_TASK, g->world, &req);
      nap_wait(&req);
    }
    group_bcast(c);
    int64_t kind, index;
    memcpy(&kind, c->tbuf, 8);
    memcpy(&index, c->tbuf + 8, 8);
    if (kind == KIND_STOP) break;
    if (tl) memcpy(c->task, c->tbuf + 16, tl * sizeof(double));
    double time = 0.0;
    char *msg = (char *)c->rbuf + 24 + rl * sizeof(double);
    int st = run_work(c, index, c->task, c->result, &time, msg);
    if (g->is_root) {
      int64_t st64 = st;
      memcpy(c->rbuf, &index, 8);
      memcpy(c->rbuf + 8, &st64, 8);
      memcpy(c->rbuf + 16, &time, 8);
      if (rl) memcpy(c->rbuf + 24, c->result, rl * sizeof(double));
      int k = c->next_rs;
      c->next_rs = 1 - k;
      unsigned char *b = send_buffer(c, k);
      memcpy(b, c->rbuf, c->result_bytes);
      MPI_Isend(b, (int)c->result_bytes, MPI_BYTE, 0, TAG_RESULT, g->world, &c->sreq[k]);
    }
  }
  return CB_OK;
}

static void record_error(sched *c, int st, const char *msg) {
  if (c->status != CB_OK) return;
  c->status = st;
  snprintf(c->msg, sizeof c->msg, "%s", msg && msg[0] ? msg : status_message());
}

/* Coordinator: one result message from group r has arrived (probed); take it. */
static void take_result(sched *c, int r, groups_stats *stats) {
  const size_t tl = c->s->task_len, rl = c->s->result_len;
  const int world_root = r * c->g->group_size;
  MPI_Recv(c->rbuf, (int)c->result_bytes, MPI_BYTE, world_root, TAG_RESULT, c->g->world,
           MPI_STATUS_IGNORE);
  int64_t index, st64;
  double time;
  memcpy(&index, c->rbuf, 8);
  memcpy(&st64, c->rbuf + 8, 8);
  memcpy(&time, c->rbuf + 16, 8);
  if (rl) memcpy(c->result, c->rbuf + 24, rl * sizeof(double));
  int slot = r * c->depth + c->ring_head[r];
  if (c->ring_n[r] == 0 || c->ring_index[slot] != index) {
    record_error(c, CB_ERR_INTERNAL, "groups: a result that answers no task in flight");
    return;
  }
  const double *task = c->ring_task + (size_t)slot * tl;
  c->ring_head[r] = (c->ring_head[r] + 1) % c->depth;
  c->ring_n[r]--;
  if (st64 != CB_OK) {
    char buf[GROUPS_MSG_LEN + 64];
    snprintf(buf, sizeof buf, "group %d, task %lld: %s", r, (long long)index,
             (const char *)c->rbuf + 24 + rl * sizeof(double));
    record_error(c, (int)st64, buf);
    return;
  }
  if (c->status != CB_OK) return; /* draining after an error: results are dropped */
  groups_meta meta = {.index = index, .group = r, .time = time};
  if (stats) stats->n_tasks++;
  status_clear();
  int st = c->s->done(c->s->ctx, task, c->result, &meta);
  if (st != CB_OK) record_error(c, st, NULL);
}

static int coordinator_loop(sched *c, groups_stats *stats) {
  groups *g = c->g;
  const size_t tl = c->s->task_len;
  const int G = g->n_groups;
  int in_flight = 0;
  bool finished = false; /* next() said done, or an error stopped the hand-out */
  double t_start = MPI_Wtime(), t_work = 0.0, t_wait = 0.0;
  for (;;) {
    /* 1. every result that has arrived */
    for (;;) {
      int flag = 0;
      MPI_Status ms;
      if (in_flight == 0) break;
      MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, g->world, &flag, &ms);
      if (!flag) break;
      take_result(c, ms.MPI_SOURCE / g->group_size, stats);
      in_flight--;
    }
    if (c->status != CB_OK) finished = true;
    /* 2. top up the other groups' queues */
    int what = GROUPS_TASK;
    for (int r = 1; r < G && !finished && what == GROUPS_TASK; r++) {
      while (c->ring_n[r] < c->depth) {
        int64_t index = 0;
        status_clear();
        int st = c->s->next(c->s->ctx, &what, &index, c->task);
        if (st != CB_OK) {
          record_error(c, st, NULL);
          finished = true;
          break;
        }
        if (what == GROUPS_DONE) finished = true;
        if (what != GROUPS_TASK) break;
        int slot = r * c->depth + (c->ring_head[r] + c->ring_n[r]) % c->depth;
        c->ring_index[slot] = index;
        if (tl) memcpy(c->ring_task + (size_t)slot * tl, c->task, tl * sizeof(double));
        c->ring_n[r]++;
        in_flight++;
        pack_task(c, KIND_TASK, index, c->task);
        unsigned char *b = send_buffer(c, slot);
        memcpy(b, c->tbuf, c->task_bytes);
        MPI_Isend(b, (int)c->task_bytes, MPI_BYTE, r * g->group_size, TAG_TASK, g->world,
                  &c->sreq[slot]);
      }
    }
    /* 3. a task for the coordinator's own group */
    if (!finished && what == GROUPS_TASK) {
      int64_t index = 0;
      status_clear();
      int st = c->s->next(c->s->ctx, &what, &index, c->task);
      if (st != CB_OK) {
        record_error(c, st, NULL);
        finished = true;
      } else if (what == GROUPS_DONE) {
        finished = true;
      } else if (what == GROUPS_TASK) {
        pack_task(c, KIND_TASK, index, c->task);
        group_bcast(c);
        double time = 0.0;
        char msg[GROUPS_MSG_LEN];
        double t0 = MPI_Wtime();
        st = run_work(c, index, c->task, c->result, &time, msg);
        t_work += MPI_Wtime() - t0;
        if (st != CB_OK) {
          char buf[GROUPS_MSG_LEN + 64];
          snprintf(buf, sizeof buf, "group 0, task %lld: %s", (long long)index, msg);
          record_error(c, st, buf);
          finished = true;
        } else {
          groups_meta meta = {.index = index, .group = 0, .time = time};
          if (stats) {
            stats->n_tasks++;
            stats->n_own++;
          }
          status_clear();
          st = c->s->done(c->s->ctx, c->task, c->result, &meta);
          if (st != CB_OK) {
            record_error(c, st, NULL);
            finished = true;
          }
        }
        continue;
      }
    }
    /* 4. nothing to run here: wait for a result, or end */
    if (in_flight == 0) {
      if (finished) break;
      record_error(c, CB_ERR_INTERNAL,
                   "groups: the schedule has no task to hand out and none in flight");
      finished = true;
      break;
    }
    double t0 = MPI_Wtime();
    MPI_Status ms;
    nap_probe(g->world, TAG_RESULT, &ms);
    t_wait += MPI_Wtime() - t0;
  }
  for (int r = 1; r < G; r++) {
    pack_task(c, KIND_STOP, -1, c->task);
    unsigned char *b = send_buffer(c, G * c->depth + r);
    memcpy(b, c->tbuf, c->task_bytes);
    MPI_Isend(b, (int)c->task_bytes, MPI_BYTE, r * g->group_size, TAG_TASK, g->world,
              &c->sreq[G * c->depth + r]);
  }
  pack_task(c, KIND_STOP, -1, c->task);
  group_bcast(c);
  if (stats) {
    stats->wall = MPI_Wtime() - t_start;
    stats->coord_time = stats->wall - t_work - t_wait;
  }
  return CB_OK;
}

static void sched_free(sched *c) {
  free(c->tbuf);
  free(c->rbuf);
  free(c->sbuf);
  free(c->sreq);
  free(c->ring_index);
  free(c->ring_task);
  free(c->ring_head);
  free(c->ring_n);
  free(c->task);
  free(c->result);
}

int groups_schedule(groups *g, const groups_scheduler *s, groups_stats *stats) {
  sched c = {.g = g, .s = s, .depth = s->depth > 0 ? s->depth : 4, .status = CB_OK};
  if (stats) *stats = (groups_stats){0};
  const int G = g->n_groups;
  c.task_bytes = 16 + s->task_len * sizeof(double);
  c.result_bytes = 24 + s->result_len * sizeof(double) + GROUPS_MSG_LEN;
  c.tbuf = calloc(c.task_bytes, 1);
  c.rbuf = calloc(c.result_bytes, 1);
  c.sbytes = c.task_bytes > c.result_bytes ? c.task_bytes : c.result_bytes;
  c.n_sreq = G * c.depth + G > 2 ? G * c.depth + G : 2;
  c.sbuf = calloc((size_t)c.n_sreq, c.sbytes);
  c.sreq = malloc((size_t)c.n_sreq * sizeof *c.sreq);
  if (c.sreq)
    for (int k = 0; k < c.n_sreq; k++) c.sreq[k] = MPI_REQUEST_NULL;
  c.ring_index = calloc((size_t)(G * c.depth), sizeof *c.ring_index);
  c.ring_task = calloc((size_t)(G * c.depth) * (s->task_len ? s->task_len : 1), sizeof(double));
  c.ring_head = calloc((size_t)G, sizeof(int));
  c.ring_n = calloc((size_t)G, sizeof(int));
  c.task = calloc(s->task_len ? s->task_len : 1, sizeof(double));
  c.result = calloc(s->result_len ? s->result_len : 1, sizeof(double));
  int ok = c.tbuf && c.rbuf && c.sbuf && c.sreq && c.ring_index && c.ring_task && c.ring_head &&
           c.ring_n && c.task && c.result;
  int all_ok = ok;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, g->world);
  if (!all_ok) {
    sched_free(&c);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the scheduler's buffers");
  }
  if (g->is_coordinator)
    coordinator_loop(&c, stats);
  else
    member_loop(&c);
  for (int k = 0; k < c.n_sreq; k++) /* every send has been received by now */
    if (c.sreq[k] != MPI_REQUEST_NULL) nap_wait(&c.sreq[k]);
  /* every rank returns the coordinator's verdict */
  int st = c.status;
  MPI_Bcast(&st, 1, MPI_INT, 0, g->world);
  MPI_Bcast(c.msg, (int)sizeof c.msg, MPI_CHAR, 0, g->world);
  sched_free(&c);
  if (st != CB_OK) return CB_ERROR(st, "%s", c.msg);
  return CB_OK;
}

/* ---------------------------------------------------------------- map */

typedef struct map_ctx {
  long n, next;
  size_t rl;
  int (*work)(void *, const groups *, int64_t, const double *, double *);
  void *ctx;
  double *results;
  groups_meta *meta;
} map_ctx;

static int map_next(void *vc, int *what, int64_t *index, double *task) {
  (void)task;
  map_ctx *m = vc;
  if (m->next >= m->n) {
    *what = GROUPS_DONE;
    return CB_OK;
  }
  *what = GROUPS_TASK;
  *index = m->next++;
  return CB_OK;
}

static int map_done(void *vc, const double *task, const double *result, const groups_meta *meta) {
  (void)task;
  map_ctx *m = vc;
  if (m->results && m->rl)
    memcpy(m->results + (size_t)meta->index * m->rl, result, m->rl * sizeof(double));
  if (m->meta) m->meta[meta->index] = *meta;
  return CB_OK;
}

static int map_work(void *vc, const groups *g, int64_t index, const double *task, double *result) {
  (void)task;
  map_ctx *m = vc;
  return m->work(m->ctx, g, index, NULL, result);
}

int groups_map(groups *g, long n_tasks, size_t result_len,
               int (*work)(void *ctx, const groups *g, int64_t index, const double *task,
                           double *result),
               void *ctx, double *results, groups_meta *meta) {
  CB_CHECK(n_tasks >= 0, CB_ERR_INTERNAL, "groups_map: %ld tasks", n_tasks);
  map_ctx m = {
      .n = n_tasks, .rl = result_len, .work = work, .ctx = ctx, .results = results, .meta = meta};
  groups_scheduler s = {.task_len = 0,
                        .result_len = result_len,
                        .next = map_next,
                        .done = map_done,
                        .work = map_work,
                        .ctx = &m};
  CB_CALL(groups_schedule(g, &s, NULL));
  return CB_OK;
}

/* ---------------------------------------------------------------- collectives */

int groups_static_gather(groups *g, long n_tasks, size_t result_len, double *results) {
  size_t total = (size_t)n_tasks * result_len;
  if (total == 0) return CB_OK;
  for (long i = 0; i < n_tasks; i++)
    if (!g->is_root || !groups_static_owns(g, i))
      memset(results + (size_t)i * result_len, 0, result_len * sizeof(double));
  /* the rows are disjoint: a sum over the world puts each on every rank */
  CB_CALL(groups_allreduce_sum(g, results, total));
  return CB_OK;
}

int groups_bcast(groups *g, double *buf, size_t n) {
  const size_t chunk = (size_t)1 << 28;
  for (size_t off = 0; off < n; off += chunk) {
    size_t m = n - off < chunk ? n - off : chunk;
    CB_CHECK(MPI_Bcast(buf + off, (int)m, MPI_DOUBLE, 0, g->world) == MPI_SUCCESS, CB_ERR_MPI,
             "MPI_Bcast failed");
  }
  return CB_OK;
}

static int allreduce(groups *g, double *buf, size_t n, MPI_Op op) {
  const size_t chunk = (size_t)1 << 28;
  for (size_t off = 0; off < n; off += chunk) {
    size_t m = n - off < chunk ? n - off : chunk;
    CB_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)m, MPI_DOUBLE, op, g->world) ==
                 MPI_SUCCESS,
             CB_ERR_MPI, "MPI_Allreduce failed");
  }
  return CB_OK;
}

int groups_allreduce_sum(groups *g, double *buf, size_t n) {
  return allreduce(g, buf, n, MPI_SUM);
}

int groups_allreduce_max(groups *g, double *buf, size_t n) {
  return allreduce(g, buf, n, MPI_MAX);
}
