/* test_catalogue: the catalogue layout, round trips and refusals (include/cerberus/catalogue.h).
 *
 * - A text catalogue with a consistent-trees style header ("x(2)") read by names: the halos
 *   above the threshold, in file order, exactly; the one below counted.
 * - Written (rank 0 holds the halos) and read back on every rank: the same numbers, the
 *   attributes box_size, n_grid, mass_threshold.
 * - catalogue_keep_local: every halo on exactly one rank, in that rank's planes.
 * - Refusals: a position equal to L, a mass below the threshold, a missing dataset, a field
 *   of another grid. */
#include "testing.h"

#include "cerberus/catalogue.h"
#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double want[4][4] = {{12.25, 0.5, 131.0, 3.7e12},
                                  {0.0, 99.125, 7.75, 2.9e14},
                                  {137.4999, 64.0, 64.5, 1.04e13},
                                  {45.5, 45.5, 120.0, 3.05e12}};

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  const double L = 137.5, mth = 3e12;
  const long n_grid = 16;
  long pid = (long)getpid();
  MPI_Bcast(&pid, 1, MPI_LONG, 0, comm);
  char txt[256], h5[256], bad[256];
  snprintf(txt, sizeof txt, "test_catalogue_%ld.txt", pid);
  snprintf(h5, sizeof h5, "test_catalogue_%ld.h5", pid);
  snprintf(bad, sizeof bad, "test_catalogue_bad_%ld.h5", pid);
  if (testing_rank() == 0) {
    FILE *fp = fopen(txt, "w");
    fprintf(fp, "# from a test\n#id(0) mvir(1) x(2) y(3) z(4) vmax(5)\n");
    fprintf(fp, "1 %.17g %.17g %.17g %.17g 200\n", want[0][3], want[0][0], want[0][1], want[0][2]);
    fprintf(fp, "2 2.99e12 1 2 3 100\n\n");
    for (int j = 1; j < 4; j++)
      fprintf(fp, "%d, %.17g, %.17g, %.17g, %.17g, 150\n", j + 2, want[j][3], want[j][0],
              want[j][1], want[j][2]);
    fclose(fp);
  }
  MPI_Barrier(comm);

  catalogue *cat = NULL;
  size_t below = 0;
  TEST_STATUS(catalogue_read_text(comm, txt, "x,y,z,mvir", L, n_grid, mth, false, &cat, &below),
              CB_OK, "read text");
  if (!cat) return testing_finish();
  TEST_CHECK(below == 1, "one halo below the threshold, got %zu", below);
  TEST_CHECK(cat->n == (testing_rank() == 0 ? 4u : 0u), "rank holds %zu halos", cat->n);
  if (testing_rank() == 0 && cat->n == 4)
    for (int j = 0; j < 4; j++) {
      for (int a = 0; a < 3; a++)
        TEST_CHECK(cat->position[3 * j + a] == want[j][a], "halo %d axis %d: %.17g", j, a,
                   cat->position[3 * j + a]);
      TEST_CHECK(cat->mass[j] == want[j][3], "halo %d mass %.17g", j, cat->mass[j]);
    }

  /* -wrap: positions wrapped periodically into [0, L) */
  if (testing_rank() == 0) {
    FILE *fp = fopen(bad, "w");
    fprintf(fp, "137.5 -1.25 141.0 4e12\n-275.0 3.5 0.5 5e12\n");
    fclose(fp);
  }
  MPI_Barrier(comm);
  catalogue *wc = NULL;
  TEST_STATUS(catalogue_read_text(comm, bad, NULL, L, n_grid, mth, false, &wc, NULL), CB_ERR_INPUT,
              "x = L refused without wrap");
  TEST_CHECK(strstr(status_message(), "line 1: x = 137.5 is outside the box") != NULL,
             "message '%s'", status_message());
  TEST_STATUS(catalogue_read_text(comm, bad, NULL, L, n_grid, mth, true, &wc, NULL), CB_OK, "wrap");
  if (wc && testing_rank() == 0) {
    const double w[6] = {0.0, L - 1.25, 3.5, 0.0, 3.5, 0.5};
    TEST_CHECK(wc->n == 2, "wrap: %zu halos", wc->n);
    for (int q = 0; q < 6 && wc->n == 2; q++)
      TEST_CLOSE(wc->position[q], w[q], 1e-15, "wrapped position");
  }
  catalogue_destroy(&wc);

  h5file *h = NULL;
  TEST_STATUS(h5io_create(comm, h5, true, &h), CB_OK, "create");
  TEST_STATUS(catalogue_write(h, cat), CB_OK, "write");
  TEST_STATUS(h5io_commit(&h), CB_OK, "commit");
  catalogue_destroy(&cat);

  TEST_STATUS(h5io_open(comm, h5, &h), CB_OK, "open");
  TEST_STATUS(catalogue_read(h, 0, &cat, NULL), CB_OK, "read");
  h5io_close(&h);
  if (cat) {
    TEST_CHECK(cat->n == 4, "read back %zu halos", cat->n);
    TEST_CHECK(cat->box_size == L && cat->n_grid == n_grid && cat->mass_threshold == mth,
               "attributes %g %ld %g", cat->box_size, cat->n_grid, cat->mass_threshold);
    for (size_t j = 0; j < cat->n && j < 4; j++) {
      for (int a = 0; a < 3; a++)
        TEST_CHECK(cat->position[3 * j + a] == want[j][a], "read halo %zu axis %d", j, a);
      TEST_CHECK(cat->mass[j] == want[j][3], "read halo %zu mass", j);
    }
    field *f = NULL;
    TEST_STATUS(field_create(comm, n_grid, L, 1, &f), CB_OK, "field");
    TEST_STATUS(catalogue_keep_local(cat, f), CB_OK, "keep_local");
    long mine = (long)cat->n, total = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_LONG, MPI_SUM, comm);
    TEST_CHECK(total == 4, "keep_local: %ld halos over the ranks", total);
    for (size_t j = 0; j < cat->n; j++) {
      ptrdiff_t i = catalogue_voxel_axis(cat->position[3 * j], L, n_grid);
      TEST_CHECK(i >= f->local_0_start && i < f->local_0_start + f->local_n0,
                 "halo in plane %td kept off its rank", i);
    }
    field *g = NULL;
    TEST_STATUS(field_create(comm, 8, L, 1, &g), CB_OK, "other field");
    TEST_STATUS(catalogue_keep_local(cat, g), CB_ERR_INPUT, "keep_local on another grid");
    field_destroy(&g);
    field_destroy(&f);
  }
  catalogue_destroy(&cat);

  /* refusals when reading */
  const struct {
    double x, m;
    const char *what;
  } cases[] = {{L, 4e12, "position equal to L"},
               {-1e-9, 4e12, "negative position"},
               {10.0, 2.5e12, "mass below threshold"},
               {10.0, NAN, "NaN mass"}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    catalogue *b = NULL;
    TEST_STATUS(catalogue_create(2, L, n_grid, mth, &b), CB_OK, "create");
    if (testing_rank() == 0) {
      catalogue_append(b, 1.0, 2.0, 3.0, 5e12);
      catalogue_append(b, 4.0, cases[c].x, 6.0, cases[c].m);
    }
    TEST_STATUS(h5io_create(comm, bad, true, &h), CB_OK, "create bad");
    TEST_STATUS(catalogue_write(h, b), CB_OK, "write bad");
    TEST_STATUS(h5io_commit(&h), CB_OK, "commit bad");
    catalogue_destroy(&b);
    TEST_STATUS(h5io_open(comm, bad, &h), CB_OK, "open bad");
    TEST_STATUS(catalogue_read(h, 0, &b, NULL), CB_ERR_INPUT, cases[c].what);
    TEST_CHECK(strstr(status_message(), "halo 1") && strstr(status_message(), bad),
               "%s: message '%s' names neither the file nor halo 1", cases[c].what,
               status_message());
    TEST_CHECK(b == NULL, "%s: a catalogue came back", cases[c].what);
    h5io_close(&h);
  }
  /* a file without /halos/mass */
  TEST_STATUS(h5io_create(comm, bad, true, &h), CB_OK, "create partial");
  double rows[3] = {1, 2, 3};
  TEST_STATUS(h5io_write_rows(h, "/halos/position", 3, testing_rank() == 0, rows), CB_OK, "rows");
  TEST_STATUS(h5io_attr_write_double(h, "/", "box_size", L), CB_OK, "attr");
  TEST_STATUS(h5io_attr_write_long(h, "/", "n_grid", n_grid), CB_OK, "attr");
  TEST_STATUS(h5io_attr_write_double(h, "/", "mass_threshold", mth), CB_OK, "attr");
  TEST_STATUS(h5io_commit(&h), CB_OK, "commit partial");
  TEST_STATUS(h5io_open(comm, bad, &h), CB_OK, "open partial");
  catalogue *p = NULL;
  TEST_STATUS(catalogue_read(h, 0, &p, NULL), CB_ERR_INPUT, "missing /halos/mass");
  TEST_CHECK(strstr(status_message(), "/halos/mass") != NULL, "message '%s'", status_message());
  h5io_close(&h);

  MPI_Barrier(comm);
  if (testing_rank() == 0) {
    remove(txt);
    remove(h5);
    remove(bad);
  }
  return testing_finish();
}
