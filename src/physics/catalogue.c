/* catalogue: halo catalogues in memory, in HDF5 and from plain text
 * (include/cerberus/catalogue.h; MODEL.md sections 5 and 6).
 *
 * A catalogue is a growing array of halos (x, y, z, M) with the three numbers that tie it to
 * a grid: the box side L, the grid n_grid and the mass threshold Mth. Writing gathers every
 * rank's halos in rank order (h5io_write_rows); reading gives every rank the whole table, so
 * every rank checks the same numbers and reaches the same decision on a bad file.
 *
 * The text reader turns the catalogue a user brings from a simulation (Rockstar, AHF,
 * consistent-trees, a CSV of x,y,z,M) into the same layout. Rank 0 reads and checks the file
 * line by line; an error (with the file name and line number) is broadcast, so every rank
 * returns the same message to main. The halos stay on rank 0: the writer gathers by rows, so
 * the file is the same whichever rank holds them. */
#include "cerberus/catalogue.h"

#include "cerberus/status.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int catalogue_create(size_t capacity, double box_size, long n_grid, double mass_threshold,
                     catalogue **out) {
  *out = NULL;
  catalogue *c;
  CB_CALLOC(c, 1);
  c->box_size = box_size;
  c->n_grid = n_grid;
  c->mass_threshold = mass_threshold;
  c->capacity = capacity ? capacity : 16;
  c->position = malloc(3 * c->capacity * sizeof *c->position);
  c->mass = malloc(c->capacity * sizeof *c->mass);
  if (!c->position || !c->mass) {
    catalogue_destroy(&c);
    return CB_ERROR(CB_ERR_MEM, "out of memory for a catalogue of %zu halos", capacity);
  }
  *out = c;
  return CB_OK;
}

void catalogue_destroy(catalogue **pc) {
  if (!pc || !*pc) return;
  free((*pc)->position);
  free((*pc)->mass);
  free(*pc);
  *pc = NULL;
}

static int reserve(catalogue *c, size_t n) {
  if (n <= c->capacity) return CB_OK;
  size_t cap = c->capacity;
  while (cap < n) cap *= 2;
  double *p = realloc(c->position, 3 * cap * sizeof *p);
  CB_CHECK(p != NULL, CB_ERR_MEM, "out of memory for a catalogue of %zu halos", cap);
  c->position = p;
  double *m = realloc(c->mass, cap * sizeof *m);
  CB_CHECK(m != NULL, CB_ERR_MEM, "out of memory for a catalogue of %zu halos", cap);
  c->mass = m;
  c->capacity = cap;
  return CB_OK;
}

int catalogue_append(catalogue *c, double x, double y, double z, double mass) {
  CB_CALL(reserve(c, c->n + 1));
  double *p = c->position + 3 * c->n;
  p[0] = x;
  p[1] = y;
  p[2] = z;
  c->mass[c->n++] = mass;
  return CB_OK;
}

static int check_header(double L, long n_grid, double mth, const char *source) {
  CB_CHECK(isfinite(L) && L > 0, CB_ERR_INPUT, "%s: box_size must be positive and finite (got %g)",
           source, L);
  CB_CHECK(n_grid >= 2, CB_ERR_INPUT, "%s: n_grid must be at least 2 (got %ld)", source, n_grid);
  CB_CHECK(isfinite(mth) && mth > 0, CB_ERR_INPUT,
           "%s: mass_threshold must be positive and finite (got %g)", source, mth);
  return CB_OK;
}

int catalogue_check(const catalogue *c, const char *source) {
  CB_CALL(check_header(c->box_size, c->n_grid, c->mass_threshold, source));
  const double L = c->box_size;
  static const char axis[3] = {'x', 'y', 'z'};
  for (size_t j = 0; j < c->n; j++) {
    for (int a = 0; a < 3; a++) {
      double x = c->position[3 * j + a];
      CB_CHECK(isfinite(x) && x >= 0 && x < L, CB_ERR_INPUT,
               "%s: halo %zu has %c = %.17g outside the box [0, %g)", source, j, axis[a], x, L);
    }
    double m = c->mass[j];
    CB_CHECK(isfinite(m) && m >= c->mass_threshold, CB_ERR_INPUT,
             "%s: halo %zu has mass %.17g, not a finite mass >= mass_threshold %g", source, j, m,
             c->mass_threshold);
  }
  return CB_OK;
}

size_t catalogue_count(const catalogue *c, MPI_Comm comm) {
  unsigned long long mine = c->n, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm);
  return (size_t)all;
}

int catalogue_write(h5file *h, const catalogue *c) {
  CB_CALL(h5io_write_rows(h, "/halos/position", 3, c->n, c->position));
  CB_CALL(h5io_write_rows(h, "/halos/mass", 0, c->n, c->mass));
  CB_CALL(h5io_attr_write_double(h, "/", "box_size", c->box_size));
  CB_CALL(h5io_attr_write_long(h, "/", "n_grid", c->n_grid));
  CB_CALL(h5io_attr_write_double(h, "/", "mass_threshold", c->mass_threshold));
  return CB_OK;
}

int catalogue_read(h5file *h, double mth, catalogue **out, size_t *n_below) {
  *out = NULL;
  if (n_below) *n_below = 0;
  const char *path = h5io_path(h);
  double L, file_mth = mth;
  long n_grid;
  CB_CALL(h5io_attr_read_double(h, "/", "box_size", &L));
  CB_CALL(h5io_attr_read_long(h, "/", "n_grid", &n_grid));
  if (!(mth > 0) || h5io_attr_exists(h, "/", "mass_threshold"))
    CB_CALL(h5io_attr_read_double(h, "/", "mass_threshold", &file_mth));
  if (!(mth > 0)) mth = file_mth;
  CB_CALL(check_header(L, n_grid, file_mth, path));
  CB_CALL(check_header(L, n_grid, mth, path));
  size_t pc, pn, mc, mn;
  double *pos = NULL, *mass = NULL;
  CB_CALL(h5io_read_rows_all(h, "/halos/position", &pc, &pn, &pos));
  int st = h5io_read_rows_all(h, "/halos/mass", &mc, &mn, &mass);
  if (st != CB_OK) {
    free(pos);
    CB_CALL(st);
  }
  if (pc != 3 || !(mc == 0 || mc == 1) || pn != mn) {
    free(pos);
    free(mass);
    return CB_ERROR(CB_ERR_INPUT,
                    "'%s': /halos/position must be n x 3 and /halos/mass n values (got %zu x %zu "
                    "and %zu x %zu)",
                    path, pn, pc, mn, mc ? mc : 1);
  }
  catalogue *c;
  CB_CALLOC(c, 1);
  c->position = pos;
  c->mass = mass;
  c->n = c->capacity = pn;
  c->box_size = L;
  c->n_grid = n_grid;
  c->mass_threshold = file_mth < mth ? file_mth : mth;
  char source[4200];
  snprintf(source, sizeof source, "'%s'", path);
  st = catalogue_check(c, source);
  if (st != CB_OK) {
    catalogue_destroy(&c);
    CB_CALL(st);
  }
  /* Drop the halos below a threshold higher than the file's, counting them. */
  size_t kept = 0;
  for (size_t j = 0; j < c->n; j++) {
    if (c->mass[j] < mth) continue;
    memmove(c->position + 3 * kept, c->position + 3 * j, 3 * sizeof(double));
    c->mass[kept++] = c->mass[j];
  }
  if (n_below) *n_below = c->n - kept;
  c->n = kept;
  c->mass_threshold = mth;
  *out = c;
  return CB_OK;
}

int catalogue_keep_local(catalogue *c, const field *f) {
  CB_CHECK(f->n == c->n_grid && fabs(f->L - c->box_size) <= 1e-12 * c->box_size, CB_ERR_INPUT,
           "the catalogue's grid (%ld voxels, box %g Mpc/h) differs from the field's (%td, %g)",
           c->n_grid, c->box_size, f->n, f->L);
  size_t kept = 0;
  const ptrdiff_t i0 = f->local_0_start, i1 = f->local_0_start + f->local_n0;
  for (size_t j = 0; j < c->n; j++) {
    ptrdiff_t i = catalogue_voxel_axis(c->position[3 * j], c->box_size, f->n);
    if (i < i0 || i >= i1) continue;
    memmove(c->position + 3 * kept, c->position + 3 * j, 3 * sizeof(double));
    c->mass[kept++] = c->mass[j];
  }
  c->n = kept;
  return CB_OK;
}

/* ---------------------------------------------------------------- plain text */

#define MAX_TOKENS 4096

/* Split line in place into tokens separated by blanks or commas. */
static int tokenize(char *line, char **tok) {
  int n = 0;
  char *p = line;
  while (*p) {
    while (*p && (isspace((unsigned char)*p) || *p == ',')) *p++ = '\0';
    if (!*p) break;
    if (n < MAX_TOKENS) tok[n++] = p;
    while (*p && !isspace((unsigned char)*p) && *p != ',') p++;
  }
  return n;
}

/* A header name matches a wanted one exactly, or up to a "(N)" suffix. */
static bool name_matches(const char *tok, const char *want) {
  size_t n = strlen(want);
  if (strncmp(tok, want, n)) return false;
  return tok[n] == '\0' || tok[n] == '(';
}

typedef struct text_spec {
  bool by_name;
  int col[4];        /* 0-based column of x, y, z, M (once known) */
  char name[4][128]; /* names when by_name */
} text_spec;

static int parse_columns(const char *spec, text_spec *s) {
  static const int def[4] = {0, 1, 2, 3};
  memcpy(s->col, def, sizeof def);
  s->by_name = false;
  if (!spec || !spec[0]) return CB_OK;
  char copy[1024];
  snprintf(copy, sizeof copy, "%s", spec);
  char *tok[MAX_TOKENS];
  int n = tokenize(copy, tok);
  CB_CHECK(n == 4, CB_ERR_INPUT,
           "-columns '%s' must name 4 columns: x, y, z and mass (numbers from 1, or header names)",
           spec);
  int numbers = 0;
  for (int i = 0; i < 4; i++) {
    char *end;
    long v = strtol(tok[i], &end, 10);
    if (*end == '\0') {
      CB_CHECK(v >= 1 && v <= MAX_TOKENS, CB_ERR_INPUT,
               "-columns '%s': column number %s is not in 1..%d", spec, tok[i], MAX_TOKENS);
      s->col[i] = (int)v - 1;
      numbers++;
    }
    snprintf(s->name[i], sizeof s->name[i], "%s", tok[i]);
  }
  CB_CHECK(numbers == 0 || numbers == 4, CB_ERR_INPUT,
           "-columns '%s': give 4 column numbers or 4 header names, not a mixture", spec);
  s->by_name = numbers == 0;
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < i; k++)
      CB_CHECK(strcmp(s->name[i], s->name[k]), CB_ERR_INPUT,
               "-columns '%s': column '%s' is named twice", spec, s->name[i]);
  return CB_OK;
}

/* Find the four names among a header line's tokens; true when all are there. */
static bool header_match(char **tok, int ntok, text_spec *s) {
  int col[4];
  for (int i = 0; i < 4; i++) {
    col[i] = -1;
    for (int t = 0; t < ntok && col[i] < 0; t++)
      if (name_matches(tok[t], s->name[i])) col[i] = t;
    if (col[i] < 0) return false;
  }
  memcpy(s->col, col, sizeof col);
  return true;
}

static int read_text_rank0(const char *path, const char *columns, double L, double mth, bool wrap,
                           catalogue *cat, size_t *n_below) {
  text_spec spec;
  CB_CALL(parse_columns(columns, &spec));
  FILE *fp = fopen(path, "r");
  CB_CHECK(fp != NULL, CB_ERR_IO, "catalogue '%s': cannot open (%s)", path, strerror(errno));
  static const char *what[4] = {"x", "y", "z", "mass"};
  char *line = NULL, **tok = NULL;
  size_t cap = 0;
  long lineno = 0;
  bool have_header = !spec.by_name;
  int st = CB_OK;
  tok = malloc(MAX_TOKENS * sizeof *tok);
  if (!tok) st = CB_ERROR(CB_ERR_MEM, "out of memory reading '%s'", path);
  int maxcol = 0;
  for (int i = 0; i < 4; i++) maxcol = spec.col[i] > maxcol ? spec.col[i] : maxcol;
  while (st == CB_OK && getline(&line, &cap, fp) >= 0) {
    lineno++;
    char *p = line;
    while (isspace((unsigned char)*p)) p++;
    bool comment = *p == '#';
    if (comment) p++;
    int ntok = tokenize(p, tok);
    if (ntok == 0) continue;
    if (!have_header) {
      if (header_match(tok, ntok, &spec)) {
        have_header = true;
        maxcol = 0;
        for (int i = 0; i < 4; i++) maxcol = spec.col[i] > maxcol ? spec.col[i] : maxcol;
        continue;
      }
      if (comment) continue;
      st = CB_ERROR(CB_ERR_INPUT,
                    "catalogue '%s' line %ld: data before a header line naming the columns "
                    "%s,%s,%s,%s (or give column numbers to -columns)",
                    path, lineno, spec.name[0], spec.name[1], spec.name[2], spec.name[3]);
      break;
    }
    if (comment) continue;
    if (ntok <= maxcol) {
      st = CB_ERROR(CB_ERR_INPUT, "catalogue '%s' line %ld: %d column(s), need at least %d", path,
                    lineno, ntok, maxcol + 1);
      break;
    }
    double v[4];
    for (int i = 0; i < 4 && st == CB_OK; i++) {
      const char *t = tok[spec.col[i]];
      char *end;
      errno = 0;
      v[i] = strtod(t, &end);
      if (*end != '\0' || end == t)
        st = CB_ERROR(CB_ERR_INPUT, "catalogue '%s' line %ld: %s (column %d) '%s' is not a number",
                      path, lineno, what[i], spec.col[i] + 1, t);
      else if (!isfinite(v[i]))
        st = CB_ERROR(CB_ERR_INPUT, "catalogue '%s' line %ld: %s (column %d) '%s' is not finite",
                      path, lineno, what[i], spec.col[i] + 1, t);
    }
    if (st != CB_OK) break;
    for (int i = 0; i < 3 && wrap; i++) {
      v[i] = fmod(v[i], L);
      if (v[i] < 0) v[i] += L;
      if (v[i] >= L) v[i] = 0; /* -tiny + L rounds to L */
    }
    for (int i = 0; i < 3 && st == CB_OK; i++)
      if (!(v[i] >= 0 && v[i] < L))
        st = CB_ERROR(CB_ERR_INPUT,
                      "catalogue '%s' line %ld: %s = %.17g is outside the box [0, %g) (check "
                      "-box_size, or -wrap)",
                      path, lineno, what[i], v[i], L);
    if (st == CB_OK && !(v[3] > 0))
      st = CB_ERROR(CB_ERR_INPUT, "catalogue '%s' line %ld: mass %.17g is not positive", path,
                    lineno, v[3]);
    if (st != CB_OK) break;
    if (v[3] < mth) {
      (*n_below)++;
      continue;
    }
    st = catalogue_append(cat, v[0], v[1], v[2], v[3]);
  }
  if (st == CB_OK && ferror(fp))
    st = CB_ERROR(CB_ERR_IO, "catalogue '%s': read error after line %ld", path, lineno);
  if (st == CB_OK && !have_header)
    st = CB_ERROR(CB_ERR_INPUT, "catalogue '%s': no header line names the columns %s,%s,%s,%s",
                  path, spec.name[0], spec.name[1], spec.name[2], spec.name[3]);
  if (st == CB_OK && cat->n == 0)
    st = CB_ERROR(CB_ERR_INPUT, "catalogue '%s': no halo with mass >= %g (-mass_threshold)%s", path,
                  mth, *n_below ? "" : " (the file holds no halo at all)");
  free(tok);
  free(line);
  fclose(fp);
  return st;
}

int catalogue_read_text(MPI_Comm comm, const char *path, const char *columns, double box_size,
                        long n_grid, double mass_threshold, bool wrap, catalogue **out,
                        size_t *n_below) {
  *out = NULL;
  int rank;
  MPI_Comm_rank(comm, &rank);
  catalogue *cat = NULL;
  size_t below = 0;
  int st = check_header(box_size, n_grid, mass_threshold, "catalogue import");
  if (st == CB_OK) st = catalogue_create(0, box_size, n_grid, mass_threshold, &cat);
  /* every rank checked the same numbers; only rank 0 reads the file */
  if (st == CB_OK && rank == 0)
    st = read_text_rank0(path, columns, box_size, mass_threshold, wrap, cat, &below);
  int code = st;
  MPI_Bcast(&code, 1, MPI_INT, 0, comm);
  if (code != CB_OK) {
    catalogue_destroy(&cat);
    char msg[1024];
    if (rank == 0) snprintf(msg, sizeof msg, "%s", status_message());
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, 0, comm);
    if (rank != 0 || st == CB_OK) return CB_ERROR(code, "%s", msg);
    CB_CALL(st);
  }
  unsigned long long b = below;
  MPI_Bcast(&b, 1, MPI_UNSIGNED_LONG_LONG, 0, comm);
  if (n_below) *n_below = (size_t)b;
  *out = cat;
  return CB_OK;
}
