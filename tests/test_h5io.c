/* test_h5io: parallel HDF5 files (include/cerberus/h5io.h) at 1-4 ranks.
 *
 * - a field written on w ranks reads back on r other ranks (w = 3, r = 2 in the 4-rank run,
 *   on sub-communicators from MPI_Comm_split; fewer ranks do what they can: w = size,
 *   r = max(1, size - 1)), with its attributes (double, long, string) and a table of rows;
 * - bad inputs give an error naming the file: a corrupt file (garbage bytes), a dataset of the
 *   wrong shape, a missing dataset, a NaN in a field;
 * - outputs: an existing file is refused without overwrite (and left as it was), replaced with
 *   it; a nonexistent directory is refused; an unwritable one too (skipped as root, where
 *   access() says everything is writable); h5io_abort leaves neither the final file nor the
 *   temporary one. */
#include "testing.h"

#include "cerberus/field.h"
#include "cerberus/h5io.h"
#include "cerberus/options.h"
#include "cerberus/status.h"

#include <dirent.h>
#include <hdf5.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static double value(ptrdiff_t i, ptrdiff_t j, ptrdiff_t k) {
  return 1.5 * sin(0.9 * (double)i) + 0.31 * (double)(j * j) - 0.077 * (double)(k * i) + 0.0625;
}

static bool exists(const char *path) {
  return access(path, F_OK) == 0;
}

/* Any "*.tmp.*" left in the directory (rank 0's view). */
static int count_tmp(void) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d));)
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

static bool mentions(const char *path) {
  bool ok = strstr(status_message(), path) != NULL;
  if (!ok)
    testing_fail(__FILE__, __LINE__, "message does not name '%s': '%s'", path, status_message());
  status_clear();
  return ok;
}

static void fill(const field *f, double *x) {
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < f->n; j++)
      for (ptrdiff_t k = 0; k < f->n; k++)
        x[(il * f->n + j) * f->n + k] = value(f->local_0_start + il, j, k);
}

static void write_on(MPI_Comm comm, const char *path, ptrdiff_t n) {
  field *f = NULL;
  h5file *h = NULL;
  TEST_STATUS(field_create(comm, n, 123.25, 1, &f), CB_OK, "field_create (writer)");
  double *x = field_alloc_real(f);
  fill(f, x);
  TEST_STATUS(h5io_create(comm, path, false, &h), CB_OK, "h5io_create");
  TEST_STATUS(h5io_write_grid_attrs(h, f), CB_OK, "grid attributes");
  TEST_STATUS(h5io_attr_write_long(h, "/", "seed", 987654321L), CB_OK, "long attribute");
  TEST_STATUS(h5io_attr_write_string(h, "/", "note", "written on some ranks"), CB_OK, "string");
  TEST_STATUS(h5io_write_field(h, "/fields/a", f, x), CB_OK, "write field");
  TEST_STATUS(h5io_attr_write_double(h, "/fields/a", "scale", -2.375), CB_OK, "dataset attr");
  /* a table: rank r contributes r + 1 rows of 2 columns */
  int rank;
  MPI_Comm_rank(comm, &rank);
  double rows[8];
  for (int r = 0; r <= rank; r++) {
    rows[2 * r] = rank + 0.5;
    rows[2 * r + 1] = r * 3.25;
  }
  TEST_STATUS(h5io_write_rows(h, "/table", 2, (size_t)rank + 1, rows), CB_OK, "write rows");
  TEST_STATUS(h5io_commit(&h), CB_OK, "commit");
  TEST_CHECK(h == NULL, "commit leaves NULL");
  fftw_free(x);
  field_destroy(&f);
}

static void read_on(MPI_Comm comm, const char *path, ptrdiff_t n, int wsize) {
  field *f = NULL;
  h5file *h = NULL;
  TEST_STATUS(field_create(comm, n, 123.25, 1, &f), CB_OK, "field_create (reader)");
  double *x = field_alloc_real(f);
  TEST_STATUS(h5io_open(comm, path, &h), CB_OK, "h5io_open");
  if (!h) return;
  double L = 0, scale = 0;
  long ng = 0, seed = 0;
  char note[64] = "";
  TEST_STATUS(h5io_attr_read_double(h, "/", "box_size", &L), CB_OK, "read box_size");
  TEST_STATUS(h5io_attr_read_long(h, "/", "n_grid", &ng), CB_OK, "read n_grid");
  TEST_STATUS(h5io_attr_read_long(h, "/", "seed", &seed), CB_OK, "read seed");
  TEST_STATUS(h5io_attr_read_string(h, "/", "note", note, sizeof note), CB_OK, "read note");
  TEST_STATUS(h5io_attr_read_double(h, "/fields/a", "scale", &scale), CB_OK, "read scale");
  TEST_CHECK(L == 123.25 && ng == n && seed == 987654321L && scale == -2.375,
             "attributes: L %g n %ld seed %ld scale %g", L, ng, seed, scale);
  TEST_CHECK(!strcmp(note, "written on some ranks"), "string attribute '%s'", note);
  TEST_CHECK(!h5io_attr_exists(h, "/", "nothing"), "absent attribute reported present");
  TEST_CHECK(h5io_attr_read_double(h, "/", "nothing", &L) == CB_ERR_INPUT && mentions(path),
             "missing attribute");
  TEST_STATUS(h5io_read_field(h, "/fields/a", f, x), CB_OK, "read field");
  double err = 0;
  for (ptrdiff_t il = 0; il < f->local_n0; il++)
    for (ptrdiff_t j = 0; j < n; j++)
      for (ptrdiff_t k = 0; k < n; k++)
        err = fmax(err, fabs(x[(il * n + j) * n + k] - value(f->local_0_start + il, j, k)));
  TEST_CHECK(err == 0, "field read on %d ranks differs from the one written on %d by %g", f->size,
             wsize, err);
  size_t nc = 0, nr = 0;
  double *rows = NULL;
  TEST_STATUS(h5io_read_rows_all(h, "/table", &nc, &nr, &rows), CB_OK, "read rows");
  size_t want = (size_t)wsize * (size_t)(wsize + 1) / 2;
  TEST_CHECK(nc == 2 && nr == want, "table %zu x %zu, expected %zu x 2", nr, nc, want);
  if (rows && nc == 2 && nr == want) {
    size_t at = 0;
    for (int r = 0; r < wsize; r++)
      for (int q = 0; q <= r; q++, at++)
        TEST_CHECK(rows[2 * at] == r + 0.5 && rows[2 * at + 1] == q * 3.25, "table row %zu", at);
  }
  free(rows);
  /* a missing dataset and one of the wrong shape */
  TEST_CHECK(h5io_read_field(h, "/fields/b", f, x) == CB_ERR_INPUT && mentions(path),
             "missing dataset");
  TEST_CHECK(h5io_read_field(h, "/table", f, x) == CB_ERR_INPUT && mentions(path),
             "2-D table read as a field");
  h5io_close(&h);
  TEST_CHECK(h == NULL, "close leaves NULL");
  /* the same file read with a field of another size */
  field *g = NULL;
  TEST_STATUS(field_create(comm, n + 2, 123.25, 1, &g), CB_OK, "field_create n + 2");
  double *y = field_alloc_real(g);
  TEST_STATUS(h5io_open(comm, path, &h), CB_OK, "reopen");
  TEST_CHECK(h5io_read_field(h, "/fields/a", g, y) == CB_ERR_INPUT && mentions(path),
             "wrong-shaped dataset");
  h5io_close(&h);
  fftw_free(y);
  field_destroy(&g);
  fftw_free(x);
  field_destroy(&f);
}

static void test_round_trip(MPI_Comm comm, int rank, int size) {
  const ptrdiff_t n = 10;
  char path[512];
  snprintf(path, sizeof path, "%s/round_trip.h5", dir);
  int w = size < 3 ? size : 3, r = size == 1 ? 1 : (size - 1 < 2 ? size - 1 : 2);
  MPI_Comm wc, rc;
  MPI_Comm_split(comm, rank < w ? 0 : MPI_UNDEFINED, rank, &wc);
  MPI_Comm_split(comm, rank < r ? 0 : MPI_UNDEFINED, rank, &rc);
  if (wc != MPI_COMM_NULL) write_on(wc, path, n);
  MPI_Barrier(comm);
  if (rc != MPI_COMM_NULL) read_on(rc, path, n, w);
  MPI_Barrier(comm);
  if (wc != MPI_COMM_NULL) MPI_Comm_free(&wc);
  if (rc != MPI_COMM_NULL) MPI_Comm_free(&rc);
  if (rank == 0) printf("round trip: written on %d rank(s), read on %d\n", w, r);
}

static void test_bad_inputs(MPI_Comm comm, int rank) {
  char corrupt[512], nan_file[512], missing[512];
  snprintf(corrupt, sizeof corrupt, "%s/corrupt.h5", dir);
  snprintf(nan_file, sizeof nan_file, "%s/nan.h5", dir);
  snprintf(missing, sizeof missing, "%s/missing.h5", dir);
  if (rank == 0) {
    FILE *fp = fopen(corrupt, "wb");
    for (int i = 0; i < 4000; i++) fputc((i * 37 + 11) % 251, fp);
    fclose(fp);
  }
  MPI_Barrier(comm);
  h5file *h = NULL;
  TEST_CHECK(h5io_open(comm, corrupt, &h) == CB_ERR_INPUT && mentions(corrupt), "corrupt file");
  TEST_CHECK(h == NULL, "failed open leaves NULL");
  TEST_CHECK(h5io_open(comm, missing, &h) == CB_ERR_IO && mentions(missing), "missing file");

  field *f = NULL;
  TEST_STATUS(field_create(comm, 8, 50.0, 1, &f), CB_OK, "field 8^3");
  double *x = field_alloc_real(f);
  fill(f, x);
  ptrdiff_t ni = 5, nj = 2, nk = 6; /* a NaN at voxel (5, 2, 6) */
  if (ni >= f->local_0_start && ni < f->local_0_start + f->local_n0)
    x[((ni - f->local_0_start) * 8 + nj) * 8 + nk] = NAN;
  TEST_STATUS(h5io_create(comm, nan_file, false, &h), CB_OK, "create nan file");
  TEST_STATUS(h5io_write_field(h, "/x", f, x), CB_OK, "write NaN field");
  TEST_STATUS(h5io_commit(&h), CB_OK, "commit NaN field");
  TEST_STATUS(h5io_open(comm, nan_file, &h), CB_OK, "open NaN file");
  TEST_CHECK(h5io_read_field(h, "/x", f, x) == CB_ERR_INPUT &&
                 strstr(status_message(), "(5,2,6)") && mentions(nan_file),
             "NaN in a field: '%s'", status_message());
  h5io_close(&h);
  fftw_free(x);
  field_destroy(&f);
}

static void test_outputs(MPI_Comm comm, int rank) {
  char out[512], nodir[512], ro_dir[300], ro[512];
  snprintf(out, sizeof out, "%s/out.h5", dir);
  snprintf(nodir, sizeof nodir, "%s/no/such/dir/out.h5", dir);
  h5file *h = NULL;
  /* abort: no final file, no temporary */
  TEST_STATUS(h5io_create(comm, out, false, &h), CB_OK, "create");
  TEST_STATUS(h5io_attr_write_double(h, "/", "x", 4.5), CB_OK, "attr before abort");
  if (rank == 0) TEST_CHECK(count_tmp() == 1, "no temporary file while writing");
  if (rank == 0) TEST_CHECK(!exists(out), "the final name exists before commit");
  h5io_abort(&h);
  TEST_CHECK(h == NULL, "abort leaves NULL");
  h5io_abort(&h); /* accepts NULL */
  if (rank == 0) TEST_CHECK(!exists(out) && count_tmp() == 0, "abort left a file behind");
  /* write, then refuse to overwrite, then overwrite */
  TEST_STATUS(h5io_create(comm, out, false, &h), CB_OK, "create");
  TEST_STATUS(h5io_attr_write_double(h, "/", "x", 4.5), CB_OK, "attr");
  TEST_STATUS(h5io_commit(&h), CB_OK, "commit");
  struct stat before, after;
  if (rank == 0) stat(out, &before);
  TEST_CHECK(h5io_check_output(comm, out, false) == CB_ERR_IO && mentions(out),
             "existing output accepted without overwrite");
  TEST_CHECK(h5io_create(comm, out, false, &h) == CB_ERR_IO && mentions(out) && h == NULL,
             "existing output created without overwrite");
  if (rank == 0) {
    stat(out, &after);
    TEST_CHECK(before.st_size == after.st_size && before.st_mtime == after.st_mtime &&
                   before.st_ino == after.st_ino,
               "a refused output was touched");
  }
  TEST_STATUS(h5io_create(comm, out, true, &h), CB_OK, "create with overwrite");
  TEST_STATUS(h5io_attr_write_double(h, "/", "x", 7.25), CB_OK, "attr 2");
  TEST_STATUS(h5io_commit(&h), CB_OK, "commit 2");
  double x = 0;
  TEST_STATUS(h5io_open(comm, out, &h), CB_OK, "open replaced");
  TEST_STATUS(h5io_attr_read_double(h, "/", "x", &x), CB_OK, "read replaced");
  TEST_CHECK(x == 7.25, "replaced file holds %g", x);
  h5io_close(&h);
  /* directories */
  TEST_CHECK(h5io_check_output(comm, nodir, false) == CB_ERR_IO && mentions(nodir),
             "nonexistent directory");
  TEST_CHECK(h5io_create(comm, nodir, false, &h) == CB_ERR_IO && mentions(nodir),
             "created in a nonexistent directory");
  TEST_CHECK(h5io_check_output(comm, "", false) == CB_ERR_INPUT, "empty output name");
  status_clear();
  snprintf(ro_dir, sizeof ro_dir, "%s/readonly", dir);
  snprintf(ro, sizeof ro, "%s/out.h5", ro_dir);
  if (rank == 0) mkdir(ro_dir, 0500);
  MPI_Barrier(comm);
  if (geteuid() == 0) {
    if (rank == 0)
      printf("skipped the unwritable-directory check: running as root, every directory is "
             "writable\n");
  } else {
    TEST_CHECK(h5io_check_output(comm, ro, false) == CB_ERR_IO && mentions(ro),
               "unwritable directory");
  }
  MPI_Barrier(comm);
  if (rank == 0) rmdir(ro_dir);
}

/* String attributes as h5py writes them by default (variable length, UTF-8) must read. */
static void test_h5py_strings(MPI_Comm comm, int rank) {
  char path[400];
  snprintf(path, sizeof path, "%s/vlstr.h5", dir);
  if (rank == 0) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(file, "label", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char *v = "h\xc3\xa9llo";
    H5Awrite(a, t, &v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Fclose(file);
  }
  MPI_Barrier(comm);
  h5file *h = NULL;
  char buf[64] = "";
  TEST_STATUS(h5io_open(comm, path, &h), CB_OK, "open a file with a UTF-8 string attribute");
  if (h) {
    TEST_STATUS(h5io_attr_read_string(h, "/", "label", buf, sizeof buf), CB_OK,
                "read a variable-length UTF-8 string attribute");
    TEST_CHECK(!strcmp(buf, "h\xc3\xa9llo"), "UTF-8 attribute read as '%s'", buf);
  }
  h5io_close(&h);
}

static void cleanup(int rank) {
  if (rank != 0) return;
  DIR *d = opendir(dir);
  if (!d) return;
  char p[600];
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  int rank = testing_rank(), size = testing_size();
  if (rank == 0) {
    snprintf(dir, sizeof dir, "/tmp/cerberus_test_h5io_XXXXXX");
    if (!mkdtemp(dir)) dir[0] = '\0';
  }
  MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, comm);
  if (!dir[0]) {
    testing_skip("cannot make a temporary directory in /tmp");
    return testing_finish();
  }
  test_round_trip(comm, rank, size);
  test_bad_inputs(comm, rank);
  test_outputs(comm, rank);
  test_h5py_strings(comm, rank);
  MPI_Barrier(comm);
  cleanup(rank);
  return testing_finish();
}
