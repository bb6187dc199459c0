/* cic: cloud-in-cell assignment of particles to the slab grid, and its exact adjoint.
 *
 * MODEL.md section 2. With cell h = L/N and voxel centres at (i + 1/2) h, a particle at x has
 * u = x/h - 1/2 per axis, lower corner i0 = floor(u), fraction t = u - i0, and gives
 * (1 - t) to voxel i0 and t to voxel i0 + 1 (mod N) on each axis, the product over the three
 * axes (trilinear). Input: np local particles (any positions, any order), optional weights,
 * or the lattice of displaced voxel centres that LPT makes (u = (i, j, k) + Psi/h). Output:
 * rho = m sum_p w_p W(x_p - v) on the local planes, m = N^3 / n_total.
 *
 * Steps: (1) one pass over the caller's particles: those whose lower plane i0 mod N is on
 * this slab are deposited where they are, in the caller's order (LPT particles come in
 * Lagrangian order, so the deposit sweeps the slab and nothing is copied); the others are
 * listed; (2) the listed ones, usually a thin layer at the slab faces, go to the owner of
 * their lower plane (the particles module plans and moves u and the weight) and are
 * deposited there; (3) the deposit into the ghost plane (i0 + 1 one plane past the slab) goes
 * to the next rank's first plane. The adjoint runs the road backwards: fetch the next rank's
 * first plane of g_rho into the ghost, differentiate the trilinear weights (d/dx of (1 - t, t)
 * is (-1/h, 1/h)) at the particles that stayed (written in place) and at the received ones,
 * whose gradients go back along the same plan. CIC is piecewise linear in each coordinate: the
 * gradient is exact inside a cell and one-sided across cell faces, where the density itself
 * has a kink.
 *
 * The deposit works on a grid of its own, laid out so that the cloud of a particle is eight
 * fixed offsets from one index: local_n0 + 1 planes (the last is the ghost) of n + 1 rows of
 * rs = 2 (n/2 + 1) doubles. Row n and column n stand for row 0 and column 0 (the periodic
 * wrap): the deposit adds into them, and a fold moves their sums home afterwards; for the
 * adjoint they are filled with copies. The kernel thus has no wrap and no branch, and the
 * strides are not powers of two, so rows and planes do not all fall on the same cache sets. */
#include "cerberus/cic.h"

#include "cerberus/logevent.h"
#include "cerberus/particles.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The cloud of a particle: the grid index o of its lower corner and the weights of the upper
 * cells per axis (the lower ones are 1 - t). */
typedef struct cloud {
  ptrdiff_t o;
  double tx, ty, tz;
} cloud;

struct cic {
  field *f;
  particles *pe;
  int *plane_owner; /* n: rank owning each global plane */
  size_t *leave;    /* local indices of the particles that leave (lower plane elsewhere) */
  size_t leave_cap;
  int *bucket; /* per leaving particle: its lower plane (the migration bucket), -1 if unplaceable */
  size_t bucket_cap;
  double *pack; /* u (, w) of the leaving particles, then their returned gradients */
  size_t pack_cap;
  double *mig; /* particles received from other ranks (u, and w), width 3 or 4 */
  size_t mig_cap;
  double *grad; /* gradients of the received particles, 3 per particle */
  size_t grad_cap;
  double *grid;     /* (local_n0 + 1) planes of (n + 1) rows of rs: see the top */
  cloud *row;       /* n: the usual clouds of one block of particles, before they are used */
  size_t *row_p;    /* n: their particles */
  ptrdiff_t rs, ps; /* row and plane strides of grid */
  size_t np_last, n_leave, n_recv, n_total;
  int width; /* 3 (unit weights) or 4 */
  int have_last;
  int lattice_last; /* the last assign was of the lattice */
};

int cic_create(field *f, cic **out) {
  *out = NULL;
  cic *c;
  CB_CALLOC(c, 1);
  c->f = f;
  int st = particles_create(f->comm, &c->pe);
  if (st != CB_OK) {
    cic_destroy(&c);
    CB_CALL(st);
  }
  c->rs = field_work_stride(f);
  c->ps = (f->n + 1) * c->rs;
  c->plane_owner = calloc((size_t)f->n, sizeof(int));
  c->grid = fftw_alloc_real((size_t)((f->local_n0 + 1) * c->ps));
  c->row = malloc((size_t)f->n * sizeof *c->row);
  c->row_p = malloc((size_t)f->n * sizeof *c->row_p);
  if (!c->plane_owner || !c->grid || !c->row || !c->row_p) {
    cic_destroy(&c);
    return CB_ERROR(CB_ERR_MEM, "out of memory for the cloud-in-cell buffers of a %td^3 grid",
                    f->n);
  }
  for (ptrdiff_t i = 0; i < f->n; i++) c->plane_owner[i] = field_owner(f, i);
  *out = c;
  return CB_OK;
}

void cic_destroy(cic **pc) {
  if (!pc || !*pc) return;
  cic *c = *pc;
  particles_destroy(&c->pe);
  free(c->plane_owner);
  free(c->leave);
  free(c->bucket);
  free(c->pack);
  free(c->mig);
  free(c->grad);
  fftw_free(c->grid);
  free(c->row);
  free(c->row_p);
  free(c);
  *pc = NULL;
}

size_t cic_n_local(const cic *c) {
  return c->np_last - c->n_leave + c->n_recv;
}
size_t cic_n_total(const cic *c) {
  return c->n_total;
}

static int grow(double **buf, size_t *cap, size_t n) {
  return particles_reserve((void **)buf, cap, n, sizeof(double));
}

/* Grow a list, keeping its contents. */
static int keep_grow(void **buf, size_t *cap, size_t n, size_t sz) {
  if (n <= *cap && *buf) return CB_OK;
  size_t want = n > *cap + *cap / 2 ? n : *cap + *cap / 2;
  if (want < 64) want = 64;
  void *p = realloc(*buf, want * sz);
  CB_CHECK(p != NULL, CB_ERR_MEM, "out of memory for %zu leaving particles", want);
  *buf = p;
  *cap = want;
  return CB_OK;
}

static inline ptrdiff_t mod_n(ptrdiff_t i, ptrdiff_t n) {
  i %= n;
  return i < 0 ? i + n : i;
}

/* Whether a coordinate in grid units can be placed on the grid (finite, not absurdly far). */
static inline int placeable(double u) {
  return fabs(u) < 1e15;
}

/* The usual case of cloud_of_u: x within the slab and y, z in [0, n) (truncation is the
 * floor); false otherwise, with *cl unset. */
static inline int cloud_fast(const cic *c, double ux, double uy, double uz, cloud *cl) {
  const field *f = c->f;
  const double nd = (double)f->n, ul = ux - (double)f->local_0_start;
  if (!(ul >= 0.0 && ul < (double)f->local_n0 && uy >= 0.0 && uy < nd && uz >= 0.0 && uz < nd))
    return 0;
  const ptrdiff_t i = (ptrdiff_t)ul, j = (ptrdiff_t)uy, k = (ptrdiff_t)uz;
  cl->o = i * c->ps + j * c->rs + k;
  cl->tx = ul - (double)i;
  cl->ty = uy - (double)j;
  cl->tz = uz - (double)k;
  return 1;
}

/* The cloud of a placeable u (grid units); its lower plane global: *plane (mod n). True if
 * that plane is local. The usual case first: x within the slab and y, z in [0, n), where
 * truncation is the floor; otherwise floor and the periodic wrap. */
static inline int cloud_of_u(const cic *c, double ux, double uy, double uz, ptrdiff_t *plane,
                             cloud *cl) {
  const field *f = c->f;
  if (cloud_fast(c, ux, uy, uz, cl)) {
    *plane = f->local_0_start + cl->o / c->ps;
    return 1;
  }
  const double fx = floor(ux), fy = floor(uy), fz = floor(uz);
  cl->tx = ux - fx;
  cl->ty = uy - fy;
  cl->tz = uz - fz;
  const ptrdiff_t gi = mod_n((ptrdiff_t)fx, f->n), li = gi - f->local_0_start;
  *plane = gi;
  cl->o = li * c->ps + mod_n((ptrdiff_t)fy, f->n) * c->rs + mod_n((ptrdiff_t)fz, f->n);
  return li >= 0 && li < f->local_n0;
}

/* Mass per particle: N^3 / n_total. */
static double particle_mass(const cic *c) {
  const double n = (double)c->f->n;
  return c->n_total > 0 ? n * n * n / (double)c->n_total : 0.0;
}

/* Software prefetch of the four rows (the cells k0 and k0 + 1 share a line but at its end)
 * that a queued cloud CIC_AHEAD places further on in its block will touch: consecutive
 * particles reach cells of other rows (their displacements differ), so without it much of a
 * pass waits on the first load of each row (measured on LPT particles at 128^3 on one rank:
 * 24 to 48 ahead equally good, 6, 12 and 96 worse). A hint only. */
enum { CIC_AHEAD = 32 };
#if defined(__GNUC__)
#define CIC_PREFETCH(addr, rw) __builtin_prefetch((addr), (rw), 3)
#else
#define CIC_PREFETCH(addr, rw) ((void)(addr))
#endif
static inline void prefetch_at(const cic *c, ptrdiff_t o, int rw) {
  const double *g = c->grid + o;
  if (rw) {
    CIC_PREFETCH(g, 1);
    CIC_PREFETCH(g + c->rs, 1);
    CIC_PREFETCH(g + c->ps, 1);
    CIC_PREFETCH(g + c->ps + c->rs, 1);
  } else {
    CIC_PREFETCH(g, 0);
    CIC_PREFETCH(g + c->rs, 0);
    CIC_PREFETCH(g + c->ps, 0);
    CIC_PREFETCH(g + c->ps + c->rs, 0);
  }
}

static inline void deposit_one(const cic *c, const cloud *cl, double mw) {
  double *restrict p0 = c->grid + cl->o, *restrict p1 = p0 + c->ps;
  const ptrdiff_t rs = c->rs;
  const double ax = mw * (1.0 - cl->tx), bx = mw * cl->tx;
  const double uy = 1.0 - cl->ty, uz = 1.0 - cl->tz;
  const double a0 = ax * uy, a1 = ax * cl->ty, b0 = bx * uy, b1 = bx * cl->ty;
  p0[0] += a0 * uz;
  p0[1] += a0 * cl->tz;
  p0[rs] += a1 * uz;
  p0[rs + 1] += a1 * cl->tz;
  p1[0] += b0 * uz;
  p1[1] += b0 * cl->tz;
  p1[rs] += b1 * uz;
  p1[rs + 1] += b1 * cl->tz;
}

/* dW/du . g summed over the cloud, times s: the gradient of sum_v g(v) W(u - v) (times s).
 * Interpolate along z first, then y: the derivative along an axis is the difference of the
 * two faces (times 1/h, folded into s), weighted by the other two axes' linear weights. */
static inline void gradient_one(const cic *c, const cloud *cl, double s, double out[3]) {
  const double *p0 = c->grid + cl->o, *p1 = p0 + c->ps;
  const ptrdiff_t rs = c->rs;
  const double uz = 1.0 - cl->tz, uy = 1.0 - cl->ty, ux = 1.0 - cl->tx;
  const double g000 = p0[0], g001 = p0[1], g010 = p0[rs], g011 = p0[rs + 1];
  const double g100 = p1[0], g101 = p1[1], g110 = p1[rs], g111 = p1[rs + 1];
  const double z00 = uz * g000 + cl->tz * g001, z01 = uz * g010 + cl->tz * g011;
  const double z10 = uz * g100 + cl->tz * g101, z11 = uz * g110 + cl->tz * g111;
  const double d00 = g001 - g000, d01 = g011 - g010, d10 = g101 - g100, d11 = g111 - g110;
  const double y0 = uy * z00 + cl->ty * z01, y1 = uy * z10 + cl->ty * z11;
  out[0] = s * (y1 - y0);
  out[1] = s * (ux * (z01 - z00) + cl->tx * (z11 - z10));
  out[2] = s * (ux * (uy * d00 + cl->ty * d01) + cl->tx * (uy * d10 + cl->ty * d11));
}

/* The deposit's row n and column n (the wrap) added into row 0 and column 0, in every plane
 * including the ghost. */
static void grid_fold(cic *c) {
  const ptrdiff_t n = c->f->n, rs = c->rs;
  for (ptrdiff_t i = 0; i <= c->f->local_n0; i++) {
    double *pl = c->grid + i * c->ps;
    for (ptrdiff_t k = 0; k <= n; k++) pl[k] += pl[n * rs + k];
    for (ptrdiff_t j = 0; j < n; j++) pl[j * rs] += pl[j * rs + n];
  }
}

/* The local planes out of the grid, plus offset. */
static void grid_store(const cic *c, double offset, double *rho) {
  const field *f = c->f;
  const ptrdiff_t n = f->n;
  for (ptrdiff_t i = 0; i < f->local_n0; i++)
    for (ptrdiff_t j = 0; j < n; j++) {
      const double *src = c->grid + i * c->ps + j * c->rs;
      double *dst = rho + (i * n + j) * n;
      for (ptrdiff_t k = 0; k < n; k++) dst[k] = src[k] + offset;
    }
}

/* A local field into the grid's local planes, with the copies of row 0 and column 0 in row
 * n and column n. */
static void grid_load(cic *c, const double *a) {
  const field *f = c->f;
  const ptrdiff_t n = f->n, rs = c->rs;
  for (ptrdiff_t i = 0; i < f->local_n0; i++) {
    double *pl = c->grid + i * c->ps;
    for (ptrdiff_t j = 0; j < n; j++) {
      memcpy(pl + j * rs, a + (i * n + j) * n, (size_t)n * sizeof(double));
      pl[j * rs + n] = pl[j * rs];
    }
    memcpy(pl + n * rs, pl, (size_t)(n + 1) * sizeof(double));
  }
}

/* The particles of a call: the caller's positions (pos, 3 per particle, and weights or NULL),
 * or the lattice of displaced voxel centres (disp: three arrays of local_n0 * n rows of n
 * displacements, stride apart; unit weights). */
typedef struct source {
  size_t np;
  const double *pos, *weights;
  double *const *disp;
  ptrdiff_t stride;
} source;

/* Row r = il n + j and column k of lattice particle p. */
static inline void lattice_rk(const field *f, size_t p, ptrdiff_t *r, ptrdiff_t *k) {
  *r = (ptrdiff_t)p / f->n;
  *k = (ptrdiff_t)p % f->n;
}

/* u of particle p of a source. */
static inline void source_u(const cic *c, const source *s, size_t p, double u[3]) {
  const field *f = c->f;
  const double inv_h = (double)f->n / f->L;
  if (!s->disp) {
    for (int d = 0; d < 3; d++) u[d] = s->pos[3 * p + d] * inv_h - 0.5;
    return;
  }
  ptrdiff_t r, k;
  lattice_rk(f, p, &r, &k);
  const ptrdiff_t e = r * s->stride + k;
  u[0] = (double)(f->local_0_start + r / f->n) + s->disp[0][e] * inv_h;
  u[1] = (double)(r % f->n) + s->disp[1][e] * inv_h;
  u[2] = (double)k + s->disp[2][e] * inv_h;
}

/* Particles go in blocks of n (the grid side): a lattice row, or n consecutive positions. */
static inline ptrdiff_t n_blocks(const cic *c, const source *s) {
  const ptrdiff_t n = c->f->n;
  return s->disp ? c->f->local_n0 * n : ((ptrdiff_t)s->np + n - 1) / n;
}

/* Where the gradient of particle p (of block b, first particle p0) goes. */
static inline void store_gradient(const source *s, ptrdiff_t b, size_t p0, size_t p,
                                  const double g[3], double *g_pos) {
  if (s->disp) {
    const ptrdiff_t e = b * s->stride + (ptrdiff_t)(p - p0);
    for (int d = 0; d < 3; d++) s->disp[d][e] = g[d];
  } else {
    for (int d = 0; d < 3; d++) g_pos[3 * p + d] = g[d];
  }
}

static inline double mass_of(const source *s, size_t p, double m) {
  return s->weights ? m * s->weights[p] : m;
}

enum { SCAN_LIST, SCAN_DEPOSIT, SCAN_GRADIENT };

/* One particle of a block: the usual case is queued in c->row (and its index in c->row_p),
 * the others are dealt with at once. SCAN_GRADIENT: a local one's gradient is stored (the
 * grid holds g_rho), a leaver's comes back later. Otherwise a local one is deposited
 * (SCAN_DEPOSIT) or not (SCAN_LIST), and a leaver is listed. */
static inline int scan_one(cic *c, const source *s, ptrdiff_t b, size_t p0, size_t p, double ux,
                           double uy, double uz, double m, int mode, ptrdiff_t *nq, size_t *nleave,
                           double *g_pos) {
  if (cloud_fast(c, ux, uy, uz, &c->row[*nq])) {
    c->row_p[(*nq)++] = p;
    return CB_OK;
  }
  const int ok = placeable(ux) && placeable(uy) && placeable(uz);
  cloud cl;
  ptrdiff_t plane = -1;
  if (ok && cloud_of_u(c, ux, uy, uz, &plane, &cl)) {
    if (mode == SCAN_DEPOSIT) deposit_one(c, &cl, mass_of(s, p, m));
    if (mode == SCAN_GRADIENT) {
      double g[3];
      gradient_one(c, &cl, mass_of(s, p, m) * (double)c->f->n / c->f->L, g);
      store_gradient(s, b, p0, p, g, g_pos);
    }
    return CB_OK;
  }
  if (mode == SCAN_GRADIENT) return CB_OK;
  const size_t l = *nleave;
  if (l == c->leave_cap) {
    CB_CALL(keep_grow((void **)&c->leave, &c->leave_cap, l + 1, sizeof(size_t)));
    CB_CALL(keep_grow((void **)&c->bucket, &c->bucket_cap, c->leave_cap, sizeof(int)));
  }
  c->leave[l] = p;
  c->bucket[l] = ok ? (int)plane : -1; /* lower plane */
  *nleave = l + 1;
  return CB_OK;
}

/* Block b: first every particle's cloud (the usual ones queued, the others dealt with by
 * scan_one), then the queued deposits or gradients, whose addresses are then all known in
 * advance, so that the loads of many clouds are in flight at once (with a prefetch ahead). */
static int scan_block(cic *c, const source *s, ptrdiff_t b, double m, int mode, size_t *nleave,
                      double *g_pos) {
  const field *f = c->f;
  const double inv_h = (double)f->n / f->L;
  const ptrdiff_t n = f->n;
  const size_t p0 = (size_t)(b * n);
  ptrdiff_t nq = 0;
  if (s->disp) {
    const ptrdiff_t gi = f->local_0_start + b / n, j = b % n;
    const double *px = s->disp[0] + b * s->stride, *py = s->disp[1] + b * s->stride;
    const double *pz = s->disp[2] + b * s->stride;
    for (ptrdiff_t k = 0; k < n; k++)
      CB_CALL(scan_one(c, s, b, p0, p0 + (size_t)k, (double)gi + px[k] * inv_h,
                       (double)j + py[k] * inv_h, (double)k + pz[k] * inv_h, m, mode, &nq, nleave,
                       g_pos));
  } else {
    const size_t p1 = p0 + (size_t)n < s->np ? p0 + (size_t)n : s->np;
    for (size_t p = p0; p < p1; p++) {
      const double *x = s->pos + 3 * p;
      CB_CALL(scan_one(c, s, b, p0, p, x[0] * inv_h - 0.5, x[1] * inv_h - 0.5, x[2] * inv_h - 0.5,
                       m, mode, &nq, nleave, g_pos));
    }
  }
  if (mode == SCAN_DEPOSIT)
    for (ptrdiff_t q = 0; q < nq; q++) {
      if (q + CIC_AHEAD < nq) prefetch_at(c, c->row[q + CIC_AHEAD].o, 1);
      deposit_one(c, &c->row[q], mass_of(s, c->row_p[q], m));
    }
  if (mode == SCAN_GRADIENT)
    for (ptrdiff_t q = 0; q < nq; q++) {
      double g[3];
      if (q + CIC_AHEAD < nq) prefetch_at(c, c->row[q + CIC_AHEAD].o, 0);
      gradient_one(c, &c->row[q], mass_of(s, c->row_p[q], m) * inv_h, g);
      store_gradient(s, b, p0, c->row_p[q], g, g_pos);
    }
  return CB_OK;
}

/* One pass over the caller's particles, block by block: those whose lower plane is local
 * are deposited (when deposit is set, with mass m w_p) where they are, in the caller's order
 * (for LPT particles, Lagrangian order: a sweep of the slab); the others are listed to
 * leave. */
static int scan_local(cic *c, const source *s, double m, int deposit) {
  size_t nleave = 0;
  for (ptrdiff_t b = 0; b < n_blocks(c, s); b++)
    CB_CALL(scan_block(c, s, b, m, deposit ? SCAN_DEPOSIT : SCAN_LIST, &nleave, NULL));
  c->n_leave = nleave;
  return CB_OK;
}

/* Move the leaving particles (their u, and weight) to the ranks owning their lower corner
 * plane, whatever the distance, arriving grouped by plane. */
static int migrate(cic *c, const source *s) {
  field *f = c->f;
  const size_t nleave = c->n_leave;
  size_t n_total = 0;
  CB_CALL(particles_plan_buckets(c->pe, nleave, c->bucket, (int)f->n, c->plane_owner, &c->n_recv,
                                 &n_total));
  c->width = s->weights ? 4 : 3;
  const size_t w = (size_t)c->width;
  CB_CALL(grow(&c->mig, &c->mig_cap, c->n_recv * w));
  CB_CALL(grow(&c->pack, &c->pack_cap, (nleave > 0 ? nleave : 1) * w));
  for (size_t l = 0; l < nleave; l++) {
    const size_t p = c->leave[l];
    source_u(c, s, p, c->pack + w * l);
    if (s->weights) c->pack[w * l + 3] = s->weights[p];
  }
  CB_CALL(particles_forward(c->pe, c->width, c->pack, c->mig));
  return CB_OK;
}

/* The particles' total count over ranks (the mass unit) and the scan (depositing into the
 * zeroed grid when deposit is set); then the migration. */
static int plan(cic *c, const source *s, int deposit) {
  field *f = c->f;
  c->have_last = 0;
  c->n_total = (size_t)field_allreduce_sum(f, (double)s->np);
  const double m = particle_mass(c);
  if (deposit) memset(c->grid, 0, (size_t)((f->local_n0 + 1) * c->ps) * sizeof(double));
  int st = scan_local(c, s, m, deposit);
  /* collective from here: a rank that failed to list its leavers still takes part */
  if (st != CB_OK) c->n_leave = 0;
  CB_CALL(migrate(c, s));
  CB_CALL(st);
  c->np_last = s->np;
  c->lattice_last = s->disp != NULL;
  c->have_last = 1;
  return CB_OK;
}

/* The received particles' deposit, the fold, the ghost plane to the next rank, and rho. */
static int deposit_received(cic *c, double offset, double *rho) {
  field *f = c->f;
  const double m = particle_mass(c);
  const size_t w = (size_t)c->width;
  size_t lost = 0;
  for (size_t r = 0; r < c->n_recv; r++) {
    const double *u = c->mig + w * r;
    cloud cl;
    ptrdiff_t plane;
    if (!cloud_of_u(c, u[0], u[1], u[2], &plane, &cl)) {
      lost++;
      continue;
    }
    deposit_one(c, &cl, w == 4 ? m * u[3] : m);
  }
  grid_fold(c);
  CB_CALL(
      particles_ghost_add(c->pe, (size_t)(f->n * c->rs), c->grid + f->local_n0 * c->ps, c->grid));
  CB_CHECK(lost == 0, CB_ERR_INTERNAL, "%zu migrated particle(s) are not on their owner", lost);
  grid_store(c, offset, rho);
  return CB_OK;
}

static int assign(cic *c, const source *s, double offset, double *rho) {
  logevent_begin(LOGEVENT_CIC);
  int st = plan(c, s, 1);
  if (st == CB_OK) st = deposit_received(c, offset, rho);
  logevent_end(LOGEVENT_CIC);
  CB_CALL(st);
  return CB_OK;
}

int cic_assign(cic *c, size_t np, const double *pos, const double *weights, double *rho) {
  const source s = {.np = np, .pos = pos, .weights = weights};
  CB_CALL(assign(c, &s, 0.0, rho));
  return CB_OK;
}

int cic_assign_lattice(cic *c, double *const disp[3], ptrdiff_t stride, double offset,
                       double *rho) {
  const source s = {.np = (size_t)c->f->n_real_local, .disp = disp, .stride = stride};
  CB_CALL(assign(c, &s, offset, rho));
  return CB_OK;
}

/* The gradient of the particles that stayed, written in place (for the lattice, over the
 * displacements: dF/dPsi = dF/dx); the leavers' entries are left alone. */
static void gradient_local(cic *c, const source *s, double m, double *g_pos) {
  for (ptrdiff_t b = 0; b < n_blocks(c, s); b++)
    (void)scan_block(c, s, b, m, SCAN_GRADIENT, NULL, g_pos); /* cannot fail: no list */
}

static int gradient(cic *c, const source *s, const double *g_rho, double *g_pos) {
  field *f = c->f;
  const double inv_h = (double)f->n / f->L, m = particle_mass(c);
  grid_load(c, g_rho);
  CB_CALL(particles_ghost_fetch(c->pe, (size_t)c->ps, c->grid, c->grid + f->local_n0 * c->ps));
  CB_CALL(grow(&c->grad, &c->grad_cap, 3 * (c->n_recv > 0 ? c->n_recv : 1)));
  gradient_local(c, s, m, g_pos);
  const size_t w = (size_t)c->width;
  size_t lost = 0;
  for (size_t r = 0; r < c->n_recv; r++) {
    const double *u = c->mig + w * r;
    cloud cl;
    ptrdiff_t plane;
    if (!cloud_of_u(c, u[0], u[1], u[2], &plane, &cl)) {
      lost++;
      continue;
    }
    gradient_one(c, &cl, (w == 4 ? m * u[3] : m) * inv_h, c->grad + 3 * r);
  }
  /* back along the plan to the leavers, then into their places */
  CB_CALL(grow(&c->pack, &c->pack_cap, 3 * (c->n_leave > 0 ? c->n_leave : 1)));
  CB_CALL(particles_reverse(c->pe, 3, c->grad, c->pack));
  for (size_t l = 0; l < c->n_leave; l++) {
    const double *g = c->pack + 3 * l;
    if (!s->disp) {
      for (int d = 0; d < 3; d++) g_pos[3 * c->leave[l] + d] = g[d];
      continue;
    }
    ptrdiff_t row, k;
    lattice_rk(f, c->leave[l], &row, &k);
    for (int d = 0; d < 3; d++) s->disp[d][row * s->stride + k] = g[d];
  }
  CB_CHECK(lost == 0, CB_ERR_INTERNAL, "%zu migrated particle(s) are not on their owner", lost);
  return CB_OK;
}

/* The last cic_assign (or cic_assign_lattice, as lattice says) must be of these particles. */
static int check_last(const cic *c, size_t np, int lattice, int weighted) {
  CB_CHECK(c->have_last, CB_ERR_INTERNAL, "the cloud-in-cell adjoint before a successful assign");
  CB_CHECK(np == c->np_last && lattice == c->lattice_last && weighted == (c->width == 4),
           CB_ERR_INTERNAL, "the cloud-in-cell adjoint with other particles than the last assign");
  return CB_OK;
}

static int adjoint(cic *c, const source *s, const double *g_rho, double *g_pos) {
  logevent_begin(LOGEVENT_CIC_ADJOINT);
  int st = gradient(c, s, g_rho, g_pos);
  logevent_end(LOGEVENT_CIC_ADJOINT);
  CB_CALL(st);
  return CB_OK;
}

int cic_adjoint_last(cic *c, size_t np, const double *pos, const double *weights,
                     const double *g_rho, double *g_pos) {
  CB_CALL(check_last(c, np, 0, weights != NULL));
  const source s = {.np = np, .pos = pos, .weights = weights};
  CB_CALL(adjoint(c, &s, g_rho, g_pos));
  return CB_OK;
}

int cic_adjoint_lattice(cic *c, double *const disp[3], ptrdiff_t stride, const double *g_rho) {
  const source s = {.np = (size_t)c->f->n_real_local, .disp = disp, .stride = stride};
  CB_CALL(check_last(c, s.np, 1, 0));
  CB_CALL(adjoint(c, &s, g_rho, NULL));
  return CB_OK;
}

int cic_adjoint(cic *c, size_t np, const double *pos, const double *weights, const double *g_rho,
                double *g_pos) {
  const source s = {.np = np, .pos = pos, .weights = weights};
  CB_CALL(plan(c, &s, 0));
  CB_CALL(cic_adjoint_last(c, np, pos, weights, g_rho, g_pos));
  return CB_OK;
}
