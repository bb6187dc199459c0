/* groups: rank groups and a dynamic scheduler of tasks over them (MODEL.md section 10).
 *
 * The world communicator is split into G = size / g groups of g consecutive ranks; a task (one
 * simulation, say) runs collectively on one group's communicator, and a field simulation is
 * itself distributed over its group. World rank 0 is the coordinator: it is also the root of
 * group 0 and works on tasks of its own between serving the others.
 *
 * Dynamic scheduling (groups_schedule). The coordinator asks the caller's next() for tasks and
 * sends them to the group roots, keeping up to `depth` (4) tasks queued at each group, so that
 * a group that finishes a task finds the next one already in its inbox while the coordinator is
 * busy with a task of its own; results travel back as point-to-point messages and go to the
 * caller's done() on the coordinator as they arrive (in arrival order; a task is known by the
 * int64 index next() gave it). next() may answer "no task now" (more may come once results are
 * in: the population Monte Carlo's rounds) or "done" (finish the tasks in flight, then stop).
 * No group idles while next() has work, and the coordinator's own cost is next() + done() and
 * two small messages per task. A failed work() (an error status, not a NaN result), next() or
 * done() stops the hand-out; the tasks in flight finish and every rank returns the error.
 *
 * groups_map runs tasks 0 .. n-1 with this scheduler and gathers their results on the
 * coordinator in task order. groups_static_gather is the simple alternative: group r takes
 * indices r, r + G, r + 2G, ... and the rows are summed to every rank.
 * Seeds: groups_task_seed(campaign seed, task key) is a 64-bit hash (splitmix64), so a task's
 * random numbers depend on its key only, never on the group that ran it.
 * This module and grid/ are the only ones in lfi that call MPI directly. */
#ifndef CERBERUS_GROUPS_H
#define CERBERUS_GROUPS_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct groups {
  MPI_Comm world; /* a duplicate of the communicator split (owned) */
  MPI_Comm comm;  /* this rank's group (owned) */
  int world_rank, world_size;
  int group_size;      /* g */
  int n_groups;        /* G = world_size / g */
  int group;           /* this rank's group, world ranks g * group .. g * group + g - 1 */
  int rank;            /* rank within the group */
  bool is_root;        /* rank 0 of its group */
  bool is_coordinator; /* world rank 0 (root of group 0) */
} groups;

/* Split world into groups of group_size ranks. CB_ERR_INPUT naming -group_size if it is < 1 or
 * does not divide the number of ranks. Collective on world. */
int groups_create(MPI_Comm world, int group_size, groups **g);
void groups_destroy(groups **g); /* Collective; accepts NULL, leaves NULL. */

/* The 64-bit seed of task `key` of a campaign: splitmix64(splitmix64(seed) ^ key), so that
 * nested keys (round, particle, attempt) chain: groups_task_seed(groups_task_seed(s, r), i).
 * Not collective. */
uint64_t groups_task_seed(uint64_t campaign_seed, uint64_t key);

/* What the scheduler knows of a finished task. */
typedef struct groups_meta {
  int64_t index; /* as given by next() (groups_map: the task number) */
  int group;     /* the group that ran it */
  double time;   /* wall time of work(), s (the group root's) */
} groups_meta;

enum groups_next { GROUPS_TASK = 1, GROUPS_WAIT = 0, GROUPS_DONE = -1 };

typedef struct groups_scheduler {
  size_t task_len;   /* doubles describing a task (0 allowed) */
  size_t result_len; /* doubles of a result */
  int depth;         /* tasks queued at a group (0: 4) */
  /* Coordinator only. Set *what to GROUPS_TASK (and fill *index, task[task_len]),
   * GROUPS_WAIT (nothing now; asked again when a result is in) or GROUPS_DONE. Return CB_OK or
   * an error. */
  int (*next)(void *ctx, int *what, int64_t *index, double *task);
  /* Coordinator only: a finished task with its result. */
  int (*done)(void *ctx, const double *task, const double *result, const groups_meta *meta);
  /* Every rank of a group, collectively on g->comm: result[result_len] (significant on the
   * group's root) from the task. An error status stops the schedule. */
  int (*work)(void *ctx, const groups *g, int64_t index, const double *task, double *result);
  void *ctx; /* passed to the three */
} groups_scheduler;

typedef struct groups_stats {
  long n_tasks;      /* tasks done (all groups) */
  long n_own;        /* of which by the coordinator's group */
  double wall;       /* s, on the coordinator */
  double coord_time; /* s spent by the coordinator in next(), done() and messages */
} groups_stats;

/* Run the schedule to its end (see above). stats may be NULL; filled on the coordinator.
 * Collective on g->world. */
int groups_schedule(groups *g, const groups_scheduler *s, groups_stats *stats);

/* Tasks 0 .. n_tasks-1: work(ctx, g, i, NULL, result) on some group; results[i * result_len ..]
 * and meta[i] (may be NULL) on the coordinator in task order (the other ranks' arrays are not
 * touched and may be NULL). Collective on g->world. */
int groups_map(groups *g, long n_tasks, size_t result_len,
               int (*work)(void *ctx, const groups *g, int64_t index, const double *task,
                           double *result),
               void *ctx, double *results, groups_meta *meta);

/* Static split: group r takes tasks r, r + G, ...; after filling their rows of results
 * (n_tasks x result_len, rows of other groups zero or anything), the group roots' rows are
 * gathered to every rank of the world (other ranks' rows are ignored). Collective on g->world. */
static inline bool groups_static_owns(const groups *g, long task) {
  return task % g->n_groups == g->group;
}
int groups_static_gather(groups *g, long n_tasks, size_t result_len, double *results);

/* n doubles from the coordinator to every rank of the world. Collective on g->world. */
int groups_bcast(groups *g, double *buf, size_t n);
/* Sum / max of n doubles over the world, in place, on every rank. Collective on g->world. */
int groups_allreduce_sum(groups *g, double *buf, size_t n);
int groups_allreduce_max(groups *g, double *buf, size_t n);

#endif
