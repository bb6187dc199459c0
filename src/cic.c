/* cic: cloud-in-cell assignment of particles to the slab grid, and its exact adjoint.
 *
 * MODEL.md section 2. With cell h = L/N and voxel centres at (i + 1/2) h, a particle at x has
 * u = x/h - 1/2 per axis, lower corner i0 = floor(u), fraction t = u - i0, and gives
 * (1 - t) to voxel i0 and t to voxel i0 + 1 (mod N) on each axis, the product over the three
 * axes (trilinear). Input: np local particles (any positions, any order), optional weights.
 * Output: rho = m sum_p w_p W(x_p - v) on the local planes, m = N^3 / n_total.
 *
 * Steps: (1) one pass over the caller's particles: those whose lower plane i0 mod N is on
 * this slab are deposited where they are, in the caller's order (LPT particles come in
 * Lagrangian order, so the deposit sweeps the slab and nothing is copied); the others are
 * listed; (2) the listed ones, usually a thin layer at the slab faces, go to the owner of
 * their lower plane (the particles module plans and moves x, y, z and the weight) and are
 * deposited there; (3) the deposit into the ghost plane (i0 + 1 one plane past the slab) goes
 * to the next rank's first plane. The adjoint runs the road backwards: fetch the next rank's
 * first plane of g_rho into the ghost, differentiate the trilinear weights (d/dx of (1 - t, t)
 * is (-1/h, 1/h)) at the particles that stayed (written in place) and at the received ones,
 * whose gradients go back along the same plan. CIC is piecewise linear in each coordinate: the
 * gradient is exact inside a cell and one-sided across cell
 * faces, where the density itself has a kink. */
#include "cerberus/cic.h"

#include "cerberus/logevent.h"
#include "cerberus/particles.h"
#include "cerberus/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cic {
  field *f;
  particles *pe;
  int *plane_owner; /* n: rank owning each global plane */
  size_t *leave;    /* local indices of the particles that leave (lower plane elsewhere) */
  size_t leave_cap;
  int *bucket; /* per leaving particle: its lower plane (the migration bucket), -1 if unplaceable */
  size_t bucket_cap;
  double *pack; /* x, y, z (, w) of the leaving particles, then their returned gradients */
  size_t pack_cap;
  double *mig; /* particles received from other ranks, width 3 or 4 */
  size_t mig_cap;
  double *grad; /* gradients of the received particles, 3 per particle */
  size_t grad_cap;
  double *ghost;  /* the plane after the slab (the next rank's first) */
  double **plane; /* local_n0 + 1: the planes of the array being deposited or read, then ghost */
  size_t np_last, n_leave, n_recv, n_total;
  int width; /* 3 (unit weights) or 4 */
  int have_last;
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
  c->plane_owner = calloc((size_t)f->n, sizeof(int));
  c->ghost = fftw_alloc_real((size_t)(f->n * f->n));
  c->plane = calloc((size_t)f->local_n0 + 1, sizeof(double *));
  if (!c->plane_owner || !c->ghost || !c->plane) {
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
  free(c->plane);
  fftw_free(c->ghost);
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

static inline ptrdiff_t mod_n(ptrdiff_t i, ptrdiff_t n) {
  if (i < 0) i += n; /* the usual case: positions in [0, L) give i in [-1, n) */
  if (i >= n) i -= n;
  if (i < 0 || i >= n) { /* anywhere else */
    i %= n;
    if (i < 0) i += n;
  }
  return i;
}

/* Whether a position can be placed on the grid (finite, not absurdly far). */
static inline int placeable(double x, double inv_h) {
  return fabs(x * inv_h) < 1e15;
}

/* Lower corner (mod n) and fraction t along one axis of any placeable position. */
static inline ptrdiff_t corner(double x, double inv_h, ptrdiff_t n, double *t) {
  const double u = x * inv_h - 0.5;
  const ptrdiff_t i = (ptrdiff_t)floor(u);
  *t = u - (double)i;
  return mod_n(i, n);
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

/* The cloud of a particle: its two planes (local, or the ghost after the last), the offsets
 * of its two rows and two columns in a plane, and the weights of the upper cells per axis
 * (the lower ones are 1 - t). */
typedef struct cloud {
  ptrdiff_t li, r0, r1, k0, k1;
  double tx, ty, tz;
} cloud;

/* From global lower corners in [-1, n - 1] (or [0, n) for j0, k0 after a general corner). */
static inline int cloud_set(const field *f, ptrdiff_t i0, ptrdiff_t j0, ptrdiff_t k0, double tx,
                            double ty, double tz, cloud *cl) {
  const ptrdiff_t n = f->n;
  if (i0 < 0) i0 += n;
  if (j0 < 0) j0 += n;
  if (k0 < 0) k0 += n;
  cl->li = i0 - f->local_0_start;
  cl->r0 = j0 * n;
  cl->r1 = j0 + 1 == n ? 0 : (j0 + 1) * n;
  cl->k0 = k0;
  cl->k1 = k0 + 1 == n ? 0 : k0 + 1;
  cl->tx = tx;
  cl->ty = ty;
  cl->tz = tz;
  return cl->li >= 0 && cl->li < f->local_n0;
}

/* The cloud of a placeable x; true if its lower plane is local. The usual case first: u =
 * x/h - 1/2 in (-1, n) on every axis (every wrapped position), where truncating u + 1 > 0 is
 * the floor. */
static inline int cloud_of(const field *f, const double *x, double inv_h, cloud *cl) {
  const double nd = (double)f->n;
  const double ux = x[0] * inv_h - 0.5, uy = x[1] * inv_h - 0.5, uz = x[2] * inv_h - 0.5;
  if (ux > -1.0 && ux < nd && uy > -1.0 && uy < nd && uz > -1.0 && uz < nd) {
    const int ix = (int)(ux + 1.0) - 1, iy = (int)(uy + 1.0) - 1, iz = (int)(uz + 1.0) - 1;
    return cloud_set(f, ix, iy, iz, ux - ix, uy - iy, uz - iz, cl);
  }
  double tx, ty, tz;
  const ptrdiff_t i0 = corner(x[0], inv_h, f->n, &tx), j0 = corner(x[1], inv_h, f->n, &ty);
  const ptrdiff_t k0 = corner(x[2], inv_h, f->n, &tz);
  return cloud_set(f, i0, j0, k0, tx, ty, tz, cl);
}

/* Mass per particle: N^3 / n_total. */
static double particle_mass(const cic *c) {
  const double n = (double)c->f->n;
  return c->n_total > 0 ? n * n * n / (double)c->n_total : 0.0;
}

/* Software prefetch of the four rows (the cells k0 and k0 + 1 share a line but at its end)
 * that the cloud of a particle AHEAD places further on will touch: consecutive particles
 * reach cells of other rows (their displacements differ), so without it most of a pass
 * waits on the first load of each row. A hint only: out-of-slab or unusual positions skip it. */
enum { CIC_AHEAD = 12 };
#if defined(__GNUC__)
#define CIC_PREFETCH(addr, rw) __builtin_prefetch((addr), (rw), 3)
#else
#define CIC_PREFETCH(addr, rw) ((void)(addr))
#endif
static inline void prefetch_cloud(const field *f, double *const *plane, const double *x,
                                  double inv_h, int rw) {
  const double nd = (double)f->n;
  const double ux = x[0] * inv_h - 0.5, uy = x[1] * inv_h - 0.5, uz = x[2] * inv_h - 0.5;
  if (!(ux > -1.0 && ux < nd && uy > -1.0 && uy < nd && uz > -1.0 && uz < nd)) return;
  cloud cl;
  if (!cloud_set(f, (int)(ux + 1.0) - 1, (int)(uy + 1.0) - 1, (int)(uz + 1.0) - 1, 0, 0, 0, &cl))
    return;
  const double *p0 = plane[cl.li], *p1 = plane[cl.li + 1];
  if (rw) {
    CIC_PREFETCH(p0 + cl.r0 + cl.k0, 1);
    CIC_PREFETCH(p0 + cl.r1 + cl.k0, 1);
    CIC_PREFETCH(p1 + cl.r0 + cl.k0, 1);
    CIC_PREFETCH(p1 + cl.r1 + cl.k0, 1);
  } else {
    CIC_PREFETCH(p0 + cl.r0 + cl.k0, 0);
    CIC_PREFETCH(p0 + cl.r1 + cl.k0, 0);
    CIC_PREFETCH(p1 + cl.r0 + cl.k0, 0);
    CIC_PREFETCH(p1 + cl.r1 + cl.k0, 0);
  }
}

static inline void deposit_one(double *const *plane, const cloud *cl, double mw) {
  double *p0 = plane[cl->li], *p1 = plane[cl->li + 1];
  const double ax = mw * (1.0 - cl->tx), bx = mw * cl->tx;
  const double uy = 1.0 - cl->ty, uz = 1.0 - cl->tz;
  const double a0 = ax * uy, a1 = ax * cl->ty, b0 = bx * uy, b1 = bx * cl->ty;
  p0[cl->r0 + cl->k0] += a0 * uz;
  p0[cl->r0 + cl->k1] += a0 * cl->tz;
  p0[cl->r1 + cl->k0] += a1 * uz;
  p0[cl->r1 + cl->k1] += a1 * cl->tz;
  p1[cl->r0 + cl->k0] += b0 * uz;
  p1[cl->r0 + cl->k1] += b0 * cl->tz;
  p1[cl->r1 + cl->k0] += b1 * uz;
  p1[cl->r1 + cl->k1] += b1 * cl->tz;
}

/* dW/dx . g summed over the cloud, times s: the gradient of sum_v g(v) W(x - v) (times s).
 * Interpolate along z first, then y: the derivative along an axis is the difference of the
 * two faces (times 1/h, folded into s), weighted by the other two axes' linear weights. */
static inline void gradient_one(double *const *plane, const cloud *cl, double s, double *out) {
  const double *p0 = plane[cl->li], *p1 = plane[cl->li + 1];
  const double uz = 1.0 - cl->tz, uy = 1.0 - cl->ty, ux = 1.0 - cl->tx;
  const double g000 = p0[cl->r0 + cl->k0], g001 = p0[cl->r0 + cl->k1];
  const double g010 = p0[cl->r1 + cl->k0], g011 = p0[cl->r1 + cl->k1];
  const double g100 = p1[cl->r0 + cl->k0], g101 = p1[cl->r0 + cl->k1];
  const double g110 = p1[cl->r1 + cl->k0], g111 = p1[cl->r1 + cl->k1];
  const double z00 = uz * g000 + cl->tz * g001, z01 = uz * g010 + cl->tz * g011;
  const double z10 = uz * g100 + cl->tz * g101, z11 = uz * g110 + cl->tz * g111;
  const double d00 = g001 - g000, d01 = g011 - g010, d10 = g101 - g100, d11 = g111 - g110;
  const double y0 = uy * z00 + cl->ty * z01, y1 = uy * z10 + cl->ty * z11;
  out[0] = s * (y1 - y0);
  out[1] = s * (ux * (z01 - z00) + cl->tx * (z11 - z10));
  out[2] = s * (ux * (uy * d00 + cl->ty * d01) + cl->tx * (uy * d10 + cl->ty * d11));
}

/* Point the plane table at the local planes of a and then the ghost. */
static void set_planes(cic *c, const double *a) {
  const ptrdiff_t nn = c->f->n * c->f->n;
  for (ptrdiff_t i = 0; i < c->f->local_n0; i++) c->plane[i] = (double *)a + i * nn;
  c->plane[c->f->local_n0] = c->ghost;
}

/* One pass over the caller's particles: those whose lower plane is local are deposited
 * into the plane table (when deposit is set, with mass m w_p) where they are, in the caller's
 * order (for LPT particles, Lagrangian order: a sweep of the slab); the others are listed to
 * leave. */
static int scan_local(cic *c, size_t np, const double *pos, const double *weights, double m,
                      int deposit) {
  field *f = c->f;
  const double inv_h = (double)f->n / f->L;
  size_t nleave = 0;
  for (size_t p = 0; p < np; p++) {
    const double *x = pos + 3 * p;
    if (deposit && p + CIC_AHEAD < np) prefetch_cloud(f, c->plane, x + 3 * CIC_AHEAD, inv_h, 1);
    const int ok = placeable(x[0], inv_h) && placeable(x[1], inv_h) && placeable(x[2], inv_h);
    cloud cl = {.li = -1};
    if (ok && cloud_of(f, x, inv_h, &cl)) {
      if (deposit) deposit_one(c->plane, &cl, weights ? m * weights[p] : m);
      continue;
    }
    if (nleave == c->leave_cap) {
      CB_CALL(keep_grow((void **)&c->leave, &c->leave_cap, nleave + 1, sizeof(size_t)));
      CB_CALL(keep_grow((void **)&c->bucket, &c->bucket_cap, c->leave_cap, sizeof(int)));
    }
    c->leave[nleave] = p;
    c->bucket[nleave++] = ok ? (int)(cl.li + f->local_0_start) : -1; /* lower plane */
  }
  c->n_leave = nleave;
  return CB_OK;
}

/* Move the leaving particles to the ranks owning their lower corner plane, whatever the
 * distance, arriving grouped by plane. */
static int migrate(cic *c, const double *pos, const double *weights) {
  field *f = c->f;
  const size_t nleave = c->n_leave;
  size_t n_total = 0;
  CB_CALL(particles_plan_buckets(c->pe, nleave, c->bucket, (int)f->n, c->plane_owner, &c->n_recv,
                                 &n_total));
  c->width = weights ? 4 : 3;
  const size_t w = (size_t)c->width;
  CB_CALL(grow(&c->mig, &c->mig_cap, c->n_recv * w));
  CB_CALL(grow(&c->pack, &c->pack_cap, (nleave > 0 ? nleave : 1) * w));
  for (size_t l = 0; l < nleave; l++) {
    const size_t p = c->leave[l];
    for (size_t d = 0; d < 3; d++) c->pack[w * l + d] = pos[3 * p + d];
    if (weights) c->pack[w * l + 3] = weights[p];
  }
  CB_CALL(particles_forward(c->pe, c->width, c->pack, c->mig));
  return CB_OK;
}

/* The particles' total count over ranks (the mass unit) and the scan; then the migration. */
static int plan(cic *c, size_t np, const double *pos, const double *weights, double *rho) {
  field *f = c->f;
  c->have_last = 0;
  c->n_total = (size_t)field_allreduce_sum(f, (double)np);
  const double m = particle_mass(c);
  if (rho) {
    memset(rho, 0, (size_t)f->n_real_local * sizeof(double));
    memset(c->ghost, 0, (size_t)(f->n * f->n) * sizeof(double));
    set_planes(c, rho);
  }
  int st = scan_local(c, np, pos, weights, m, rho != NULL);
  /* collective from here: a rank that failed to list its leavers still takes part */
  if (st != CB_OK) c->n_leave = 0;
  CB_CALL(migrate(c, pos, weights));
  CB_CALL(st);
  c->np_last = np;
  c->have_last = 1;
  return CB_OK;
}

static int deposit_received(cic *c, double *rho) {
  field *f = c->f;
  const double m = particle_mass(c), inv_h = (double)f->n / f->L;
  const size_t w = (size_t)c->width;
  size_t lost = 0;
  for (size_t r = 0; r < c->n_recv; r++) {
    const double *x = c->mig + w * r;
    cloud cl;
    if (!cloud_of(f, x, inv_h, &cl)) {
      lost++;
      continue;
    }
    deposit_one(c->plane, &cl, w == 4 ? m * x[3] : m);
  }
  CB_CALL(particles_ghost_add(c->pe, (size_t)(f->n * f->n), c->ghost, rho));
  CB_CHECK(lost == 0, CB_ERR_INTERNAL, "%zu migrated particle(s) are not on their owner", lost);
  return CB_OK;
}

int cic_assign(cic *c, size_t np, const double *pos, const double *weights, double *rho) {
  logevent_begin(LOGEVENT_CIC);
  int st = plan(c, np, pos, weights, rho);
  if (st == CB_OK) st = deposit_received(c, rho);
  logevent_end(LOGEVENT_CIC);
  CB_CALL(st);
  return CB_OK;
}

static int gradient(cic *c, size_t np, const double *pos, const double *weights,
                    const double *g_rho, double *g_pos) {
  field *f = c->f;
  const double inv_h = (double)f->n / f->L, m = particle_mass(c);
  CB_CALL(particles_ghost_fetch(c->pe, (size_t)(f->n * f->n), g_rho, c->ghost));
  CB_CALL(grow(&c->grad, &c->grad_cap, 3 * (c->n_recv > 0 ? c->n_recv : 1)));
  set_planes(c, g_rho); /* read only */
  /* the particles that stayed, in place (the leavers' entries are written below) */
  for (size_t p = 0; p < np; p++) {
    cloud cl;
    if (p + CIC_AHEAD < np) prefetch_cloud(f, c->plane, pos + 3 * (p + CIC_AHEAD), inv_h, 0);
    if (cloud_of(f, pos + 3 * p, inv_h, &cl))
      gradient_one(c->plane, &cl, (weights ? m * weights[p] : m) * inv_h, g_pos + 3 * p);
  }
  const size_t w = (size_t)c->width;
  size_t lost = 0;
  for (size_t r = 0; r < c->n_recv; r++) {
    const double *x = c->mig + w * r;
    cloud cl;
    if (!cloud_of(f, x, inv_h, &cl)) {
      lost++;
      continue;
    }
    gradient_one(c->plane, &cl, (w == 4 ? m * x[3] : m) * inv_h, c->grad + 3 * r);
  }
  /* back along the plan to the leavers, then into their places */
  CB_CALL(grow(&c->pack, &c->pack_cap, 3 * (c->n_leave > 0 ? c->n_leave : 1)));
  CB_CALL(particles_reverse(c->pe, 3, c->grad, c->pack));
  for (size_t l = 0; l < c->n_leave; l++)
    for (size_t d = 0; d < 3; d++) g_pos[3 * c->leave[l] + d] = c->pack[3 * l + d];
  CB_CHECK(lost == 0, CB_ERR_INTERNAL, "%zu migrated particle(s) are not on their owner", lost);
  return CB_OK;
}

int cic_adjoint_last(cic *c, size_t np, const double *pos, const double *weights,
                     const double *g_rho, double *g_pos) {
  CB_CHECK(c->have_last, CB_ERR_INTERNAL, "cic_adjoint_last before a successful cic_assign");
  CB_CHECK(np == c->np_last && (weights != NULL) == (c->width == 4), CB_ERR_INTERNAL,
           "cic_adjoint_last with other particles than the last cic_assign");
  logevent_begin(LOGEVENT_CIC_ADJOINT);
  int st = gradient(c, np, pos, weights, g_rho, g_pos);
  logevent_end(LOGEVENT_CIC_ADJOINT);
  CB_CALL(st);
  return CB_OK;
}

int cic_adjoint(cic *c, size_t np, const double *pos, const double *weights, const double *g_rho,
                double *g_pos) {
  CB_CALL(plan(c, np, pos, weights, NULL));
  CB_CALL(cic_adjoint_last(c, np, pos, weights, g_rho, g_pos));
  return CB_OK;
}
