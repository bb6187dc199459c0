/* test_groups: rank groups and the dynamic scheduler (include/cerberus/groups.h) at 1-4 ranks.
 *
 * - every group size that divides the ranks: the groups hold the right world ranks, a map of
 *   53 tasks returns each task's result (computed collectively over the group) in task order,
 *   every task once, and with more than one group every group works (tasks of ~2 ms);
 * - a dynamic schedule whose next() hands out tasks in waves, each released only when the
 *   previous wave's results are in (the shape of population Monte Carlo rounds), with tasks
 *   carrying a payload;
 * - a failing task stops the schedule and every rank returns its error and message;
 * - the static split and its gather; seeds depend on the key only;
 * - bad group sizes (0, one that does not divide the ranks). */
#include "testing.h"

#include "cerberus/groups.h"
#include "cerberus/status.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void nap(double seconds) {
  struct timespec ts = {0, (long)(seconds * 1e9)};
  nanosleep(&ts, NULL);
}

/* result = (index * 2.385 + sum over the group of (rank + 1), group) */
static int square_work(void *ctx, const groups *g, int64_t index, const double *task,
                       double *result) {
  (void)task;
  double nap_s = ctx ? *(const double *)ctx : 0.0;
  double one = g->rank + 1.0, sum = 0.0;
  MPI_Allreduce(&one, &sum, 1, MPI_DOUBLE, MPI_SUM, g->comm);
  if (nap_s > 0) nap(nap_s);
  result[0] = (double)index * 2.385 + sum;
  result[1] = g->group;
  return CB_OK;
}

static void test_map(MPI_Comm comm, int gs) {
  int size = testing_size();
  groups *g = NULL;
  TEST_STATUS(groups_create(comm, gs, &g), CB_OK, "groups_create");
  if (!g) return;
  TEST_CHECK(g->n_groups == size / gs && g->group == testing_rank() / gs &&
                 g->rank == testing_rank() % gs,
             "group layout g=%d: %d groups, group %d, rank %d", gs, g->n_groups, g->group, g->rank);
  TEST_CHECK(g->is_coordinator == (testing_rank() == 0), "coordinator is world rank 0");
  const long n = 53;
  double *res = calloc((size_t)n * 2, sizeof(double));
  groups_meta *meta = calloc((size_t)n, sizeof *meta);
  double nap_s = 0.002;
  TEST_STATUS(groups_map(g, n, 2, square_work, &nap_s, res, meta), CB_OK, "groups_map");
  if (g->is_coordinator) {
    int *per_group = calloc((size_t)g->n_groups, sizeof(int));
    double gsum = gs * (gs + 1) / 2.0;
    for (long i = 0; i < n; i++) {
      TEST_CLOSE(res[2 * i], (double)i * 2.385 + gsum, 1e-15, "map result in task order");
      TEST_CHECK(meta[i].index == i, "meta %ld has index %lld", i, (long long)meta[i].index);
      TEST_CHECK(meta[i].group == (int)res[2 * i + 1], "meta group %d vs %g", meta[i].group,
                 res[2 * i + 1]);
      TEST_CHECK(meta[i].time >= 0.0015, "task %ld took %g s (it sleeps 2 ms)", i, meta[i].time);
      if (meta[i].group >= 0 && meta[i].group < g->n_groups) per_group[meta[i].group]++;
    }
    for (int r = 0; r < g->n_groups; r++)
      TEST_CHECK(per_group[r] >= 5, "g=%d: group %d ran %d of %ld tasks", gs, r, per_group[r], n);
    free(per_group);
  }
  free(res);
  free(meta);
  groups_destroy(&g);
  TEST_CHECK(g == NULL, "groups_destroy leaves NULL");
}

/* waves of tasks: wave w has 3 + w tasks, released when every result of wave w - 1 is in */
typedef struct waves {
  int wave, issued, returned, n_waves;
  double sum;
  long n_done;
} waves;

static int waves_next(void *vc, int *what, int64_t *index, double *task) {
  waves *w = vc;
  int size = 3 + w->wave;
  if (w->issued == size) {
    if (w->returned < size) {
      *what = GROUPS_WAIT;
      return CB_OK;
    }
    w->wave++;
    w->issued = w->returned = 0;
    if (w->wave == w->n_waves) {
      *what = GROUPS_DONE;
      return CB_OK;
    }
  }
  *what = GROUPS_TASK;
  *index = w->wave * 1000 + w->issued++;
  task[0] = (double)*index + 0.25;
  task[1] = -1.5;
  return CB_OK;
}

static int waves_done(void *vc, const double *task, const double *result, const groups_meta *m) {
  waves *w = vc;
  CB_CHECK(m->index / 1000 == w->wave, CB_ERR_INTERNAL, "result of wave %lld during wave %d",
           (long long)(m->index / 1000), w->wave);
  CB_CHECK(result[0] == task[0] * task[1], CB_ERR_INTERNAL, "wrong result");
  w->returned++;
  w->sum += result[0];
  w->n_done++;
  return CB_OK;
}

static int waves_work(void *vc, const groups *g, int64_t index, const double *task,
                      double *result) {
  (void)vc;
  (void)g;
  (void)index;
  result[0] = task[0] * task[1];
  return CB_OK;
}

static void test_waves(MPI_Comm comm, int gs) {
  groups *g = NULL;
  TEST_STATUS(groups_create(comm, gs, &g), CB_OK, "groups_create");
  if (!g) return;
  waves w = {.n_waves = 6};
  groups_scheduler s = {.task_len = 2,
                        .result_len = 1,
                        .next = waves_next,
                        .done = waves_done,
                        .work = waves_work,
                        .ctx = &w};
  groups_stats st;
  TEST_STATUS(groups_schedule(g, &s, &st), CB_OK, "waves");
  if (g->is_coordinator) {
    double want = 0.0;
    long n = 0;
    for (int v = 0; v < 6; v++)
      for (int i = 0; i < 3 + v; i++, n++) want += (v * 1000 + i + 0.25) * -1.5;
    TEST_CHECK(w.n_done == n && st.n_tasks == n, "%ld (%ld) tasks done, %ld expected", w.n_done,
               st.n_tasks, n);
    TEST_CLOSE(w.sum, want, 1e-14, "sum of the waves' results");
  }
  groups_destroy(&g);
}

static int failing_work(void *vc, const groups *g, int64_t index, const double *task,
                        double *result) {
  (void)vc;
  (void)task;
  (void)g;
  CB_CHECK(index != 5, CB_ERR_NUMERIC, "task five refuses (value 2.385)");
  result[0] = 1.0;
  return CB_OK;
}

static void test_failure(MPI_Comm comm, int gs) {
  groups *g = NULL;
  TEST_STATUS(groups_create(comm, gs, &g), CB_OK, "groups_create");
  if (!g) return;
  double res[40];
  int st = groups_map(g, 20, 1, failing_work, NULL, res, NULL);
  TEST_CHECK(st == CB_ERR_NUMERIC && strstr(status_message(), "task 5") &&
                 strstr(status_message(), "task five refuses"),
             "a failing task: status %d '%s'", st, status_message());
  groups_destroy(&g);
}

static void test_static(MPI_Comm comm) {
  int size = testing_size();
  for (int gs = 1; gs <= size; gs++) {
    if (size % gs) continue;
    groups *g = NULL;
    TEST_STATUS(groups_create(comm, gs, &g), CB_OK, "groups_create");
    if (!g) continue;
    const long n = 11;
    double res[33];
    for (long i = 0; i < n; i++)
      for (int c = 0; c < 3; c++) res[3 * i + c] = groups_static_owns(g, i) ? i * 10.0 + c : 99.0;
    TEST_STATUS(groups_static_gather(g, n, 3, res), CB_OK, "static gather");
    for (long i = 0; i < n; i++)
      for (int c = 0; c < 3; c++)
        TEST_CHECK(res[3 * i + c] == i * 10.0 + c, "static row %ld col %d: %g", i, c,
                   res[3 * i + c]);
    double b[2] = {g->is_coordinator ? 2.385 : 0.0, g->is_coordinator ? -7.0 : 0.0};
    TEST_STATUS(groups_bcast(g, b, 2), CB_OK, "bcast");
    TEST_CHECK(b[0] == 2.385 && b[1] == -7.0, "bcast gave %g %g", b[0], b[1]);
    double m[1] = {(double)g->world_rank};
    TEST_STATUS(groups_allreduce_max(g, m, 1), CB_OK, "max");
    TEST_CHECK(m[0] == size - 1, "max rank %g", m[0]);
    groups_destroy(&g);
  }
}

static void test_bad(MPI_Comm comm) {
  groups *g = NULL;
  int st = groups_create(comm, 0, &g);
  TEST_CHECK(st == CB_ERR_INPUT && g == NULL && strstr(status_message(), "-group_size"),
             "group size 0: %d '%s'", st, status_message());
  int size = testing_size();
  int bad = size + 1; /* never divides */
  if (size == 4) bad = 3;
  st = groups_create(comm, bad, &g);
  TEST_CHECK(st == CB_ERR_INPUT && g == NULL && strstr(status_message(), "does not divide"),
             "group size %d of %d ranks: %d '%s'", bad, size, st, status_message());
}

static void test_seeds(void) {
  uint64_t a = groups_task_seed(42, 7), b = groups_task_seed(42, 7), c = groups_task_seed(42, 8),
           d = groups_task_seed(43, 7);
  TEST_CHECK(a == b && a != c && a != d && c != d, "seeds %llx %llx %llx %llx",
             (unsigned long long)a, (unsigned long long)b, (unsigned long long)c,
             (unsigned long long)d);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  if (testing_init(&argc, &argv, &comm)) return 1;
  int size = testing_size();
  for (int gs = 1; gs <= size; gs++) {
    if (size % gs) continue;
    test_map(comm, gs);
    test_waves(comm, gs);
    test_failure(comm, gs);
  }
  test_static(comm);
  test_bad(comm);
  test_seeds();
  return testing_finish();
}
