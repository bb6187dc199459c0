/* test_chain: the chain file (include/cerberus/chain.h).
 *
 * Three chains of four weights: warm-up and sampling draws appended and flushed in uneven
 * pieces read back exactly (chain, draw and column order; n_steps as int64, diverging as
 * bool); root attributes; reopening at a checkpoint's position drops the draws written after
 * it and the continued file equals one written straight through; a draw buffered but not
 * flushed is not in the file; a missing file and a file that is not a chain file are errors
 * naming it. Runs at 1-4 ranks (rank 0 writes, every rank takes part). */
#include "testing.h"

#include "cerberus/chain.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { K = 3, D = 4, NB = 5, NM = 3 };

static double value(int phase, int c, long t, size_t j) {
  return phase * 1000.0 + c * 100.0 + (double)t + 0.001 * (double)j + 0.2385;
}

static void record(const chain_layout *l, int phase, long t, double *rec) {
  const size_t R = chain_record_size(l), nmf = NB * NM;
  for (int c = 0; c < K; c++) {
    double *r = rec + (size_t)c * R;
    for (size_t j = 0; j < D + nmf; j++) r[j] = value(phase, c, t, j);
    double *s = r + D + nmf;
    for (int k = 0; k < CHAIN_N_STATS; k++) s[k] = value(phase, c, t, 50 + (size_t)k);
    s[CHAIN_N_STEPS] = (double)(3 + c + t % 4);
    s[CHAIN_DIVERGING] = (t % 3 == 1);
  }
}

static void check_data(const chain_data *d, int phase, long n, const char *what) {
  TEST_CHECK(d->n_chains == K && d->dim == D && d->n_draws == n && d->n_bins == NB &&
                 d->n_masses == NM,
             "%s: shape %d x %ld x %zu (bins %d x %d), expected %d x %ld x %d", what, d->n_chains,
             d->n_draws, d->dim, d->n_bins, d->n_masses, K, n, D);
  if (d->n_draws != n || d->n_chains != K) return;
  int bad = 0;
  for (int c = 0; c < K; c++)
    for (long t = 0; t < n; t++) {
      size_t o = (size_t)c * (size_t)n + (size_t)t;
      for (size_t j = 0; j < D; j++) bad += d->weights[o * D + j] != value(phase, c, t, j);
      for (size_t j = 0; j < NB * NM; j++)
        bad += d->mass_function[o * NB * NM + j] != value(phase, c, t, D + j);
      const double *s = d->stats + o * CHAIN_N_STATS;
      bad += s[CHAIN_LP] != value(phase, c, t, 50);
      bad += s[CHAIN_WALL_TIME] != value(phase, c, t, 50 + CHAIN_WALL_TIME);
      bad += s[CHAIN_N_STEPS] != (double)(3 + c + t % 4);
      bad += s[CHAIN_DIVERGING] != (t % 3 == 1);
    }
  TEST_CHECK(bad == 0, "%s: %d values differ", what, bad);
  TEST_CHECK(!strcmp(d->names[2], "w_edge"), "%s: name %s", what, d->names[2]);
  TEST_CHECK(d->masses[1] == 2e13 && d->bin_edges[5] == 4.5, "%s: coordinates", what);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  char names[D][64] = {"w_centre", "w_face", "w_edge", "b_conv"};
  double edges[NB + 1] = {-0.9, -0.5, 0, 1, 2, 4.5}, masses[NM] = {3e12, 2e13, 2e14};
  chain_layout l = {K, D, names, NB, NM, edges, masses};
  const size_t R = chain_record_size(&l);
  TEST_CHECK(R == D + NB * NM + CHAIN_N_STATS, "record size %zu", R);
  double *rec = calloc(K * R, sizeof *rec);
  char path[256], path2[256];
  unsigned long tag = 0;
  if (testing_rank() == 0) tag = (unsigned long)getpid();
  MPI_Bcast(&tag, 1, MPI_UNSIGNED_LONG, 0, comm);
  snprintf(path, sizeof path, "/tmp/test_chain_%lu_%d.h5", tag, testing_size());
  snprintf(path2, sizeof path2, "/tmp/test_chain_%lu_%d_b.h5", tag, testing_size());

  /* straight: 7 warm-up draws, 11 samples, flushed at uneven points */
  chain_file *cf = NULL;
  TEST_STATUS(chain_create(comm, path, true, &l, &cf), CB_OK, "create");
  for (long t = 0; t < 7; t++) {
    record(&l, 0, t, rec);
    chain_append(cf, CHAIN_WARMUP, rec);
    if (t == 2) TEST_STATUS(chain_flush(cf), CB_OK, "flush");
  }
  for (long t = 0; t < 11; t++) {
    record(&l, 1, t, rec);
    chain_append(cf, CHAIN_SAMPLING, rec);
    if (t == 4) chain_flush(cf);
  }
  TEST_CHECK(chain_draws(cf, CHAIN_SAMPLING) == 11, "draws %ld", chain_draws(cf, CHAIN_SAMPLING));
  chain_set_attr_long(cf, "grad_evals_sampling", 12345);
  chain_set_attr_string(cf, "options", "-chains 3\n");
  double mm[D] = {1.5, 2.5, 3.5, 4.5};
  chain_set_attr_doubles(cf, "mass_matrix", D, mm);
  TEST_STATUS(chain_close(&cf), CB_OK, "close");
  TEST_CHECK(cf == NULL, "close leaves NULL");
  chain_data d;
  TEST_STATUS(chain_read(path, CHAIN_WARMUP, &d), CB_OK, "read warmup");
  check_data(&d, 0, 7, "warmup");
  chain_data_free(&d);
  TEST_STATUS(chain_read(path, CHAIN_SAMPLING, &d), CB_OK, "read sampling");
  check_data(&d, 1, 11, "sampling");
  chain_data_free(&d);
  char opt[64];
  chain_read_attr_string(path, "options", opt, sizeof opt);
  TEST_CHECK(!strcmp(opt, "-chains 3\n"), "options attribute '%s'", opt);
  MPI_Barrier(comm);

  /* interrupted: 7 warm-up, 6 samples written, 3 more written after the "checkpoint" at 4;
   * reopened at (7, 4) and continued: equal to the straight file */
  TEST_STATUS(chain_create(comm, path2, true, &l, &cf), CB_OK, "create 2");
  for (long t = 0; t < 7; t++) {
    record(&l, 0, t, rec);
    chain_append(cf, CHAIN_WARMUP, rec);
  }
  for (long t = 0; t < 7; t++) {
    record(&l, 1, t, rec);
    if (t >= 5) rec[0] = -99; /* garbage after the checkpoint */
    chain_append(cf, CHAIN_SAMPLING, rec);
  }
  chain_close(&cf);
  TEST_STATUS(chain_read(path2, CHAIN_SAMPLING, &d), CB_OK, "read partial");
  TEST_CHECK(d.n_draws == 7, "partial: %ld draws", d.n_draws);
  chain_data_free(&d);
  MPI_Barrier(comm); /* every rank has read before rank 0 writes again */
  TEST_STATUS(chain_reopen(comm, path2, &l, 7, 4, &cf), CB_OK, "reopen");
  TEST_CHECK(chain_draws(cf, CHAIN_SAMPLING) == 4, "reopened at %ld",
             chain_draws(cf, CHAIN_SAMPLING));
  for (long t = 4; t < 11; t++) {
    record(&l, 1, t, rec);
    chain_append(cf, CHAIN_SAMPLING, rec);
  }
  chain_close(&cf);
  TEST_STATUS(chain_read(path2, CHAIN_SAMPLING, &d), CB_OK, "read continued");
  check_data(&d, 1, 11, "continued");
  chain_data_free(&d);
  MPI_Barrier(comm); /* every rank has read before rank 0 writes again */
  /* another layout refused */
  chain_layout l2 = l;
  l2.n_chains = 2;
  TEST_STATUS(chain_reopen(comm, path2, &l2, 7, 4, &cf), CB_ERR_INPUT, "reopen other layout");
  status_clear();

  /* errors */
  TEST_STATUS(chain_read("/nonexistent/x.h5", CHAIN_SAMPLING, &d), CB_ERR_IO, "missing file");
  TEST_CHECK(strstr(status_message(), "/nonexistent/x.h5") != NULL, "message names the file");
  status_clear();
  TEST_STATUS(chain_create(comm, path, false, &l, &cf), CB_ERR_IO, "existing output");
  status_clear();
  MPI_Barrier(comm);
  if (testing_rank() == 0) {
    remove(path);
    remove(path2);
  }
  free(rec);
  return testing_finish();
}
