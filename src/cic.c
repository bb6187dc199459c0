/* cic: cloud-in-cell assignment of particles to the slab grid, and its exact adjoint.
 *
 * MODEL.md section 2. With cell h = L/N and voxel centres at (i + 1/2) h, a particle at x has
 * u = x/h - 1/2 per axis, lower corner i0 = floor(u), fraction t = u - i0, and gives
 * (1 - t) to voxel i0 and t to voxel i0 + 1 (mod N) on each axis, the product over the three
 * axes (trilinear). Input: np local particles (any positions, any order), optional weights.
 * Output: rho = m sum_p w_p W(x_p - v) on the local planes, m = N^3 / n_total.
 *
 * Steps: (1) destination of each particle = owner of plane i0 mod N (particles module plans
 * and moves x, y, z and the weight); (2) deposit into the local planes plus one ghost plane
 * (i0 + 1 may be one plane past the slab); (3) the ghost goes to the next rank's first plane.
 * The adjoint runs the road backwards: fetch the next rank's first plane of g_rho into the
 * ghost, differentiate the trilinear weights (d/dx of (1 - t, t) is (-1/h, 1/h)) at the
 * migrated particles, and send the gradients back along the same plan. CIC is piecewise
 * linear in each coordinate: the gradient is exact inside a cell and one-sided across cell
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
  int *dest;        /* per local particle: its lower plane (the migration bucket) */
  size_t dest_cap;
  double *pack; /* x, y, z, w per particle when weighted */
  size_t pack_cap;
  double *mig; /* migrated particles, width 3 or 4 */
  size_t mig_cap;
  double *grad; /* gradients of the migrated particles, 3 per particle */
  size_t grad_cap;
  double *ghost; /* the plane after the slab (the next rank's first) */
  size_t np_last, n_recv, n_total;
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
  if (!c->plane_owner || !c->ghost) {
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
  free(c->dest);
  free(c->pack);
  free(c->mig);
  free(c->grad);
  fftw_free(c->ghost);
  free(c);
  *pc = NULL;
}

size_t cic_n_local(const cic *c) {
  return c->n_recv;
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

/* Lower corner (mod n) and fraction t along one axis of a placeable position. */
static inline ptrdiff_t corner(double x, double inv_h, ptrdiff_t n, double *t) {
  const double u = x * inv_h - 0.5;
  ptrdiff_t i;
  if (u > -1.0 && u < (double)n) /* the usual case: truncating u + 1 > 0 is the floor */
    i = (ptrdiff_t)(u + 1.0) - 1;
  else
    i = (ptrdiff_t)floor(u);
  *t = u - (double)i;
  return mod_n(i, n);
}

/* Plan and move the particles to the ranks owning their lower corner plane. */
static int migrate(cic *c, size_t np, const double *pos, const double *weights) {
  field *f = c->f;
  const double inv_h = (double)f->n / f->L;
  CB_CALL(particles_reserve((void **)&c->dest, &c->dest_cap, np, sizeof(int)));
  for (size_t p = 0; p < np; p++) {
    const double *x = pos + 3 * p;
    double t;
    const int ok = placeable(x[0], inv_h) && placeable(x[1], inv_h) && placeable(x[2], inv_h);
    c->dest[p] = ok ? (int)corner(x[0], inv_h, f->n, &t) : -1; /* the lower plane */
  }
  c->have_last = 0;
  /* by plane: to the owner, arriving in plane order (the deposit then sweeps the slab) */
  CB_CALL(particles_plan_buckets(c->pe, np, c->dest, (int)f->n, c->plane_owner, &c->n_recv,
                                 &c->n_total));
  c->np_last = np;
  c->width = weights ? 4 : 3;
  CB_CALL(grow(&c->mig, &c->mig_cap, c->n_recv * (size_t)c->width));
  if (weights) {
    CB_CALL(grow(&c->pack, &c->pack_cap, 4 * np));
    for (size_t p = 0; p < np; p++) {
      c->pack[4 * p] = pos[3 * p];
      c->pack[4 * p + 1] = pos[3 * p + 1];
      c->pack[4 * p + 2] = pos[3 * p + 2];
      c->pack[4 * p + 3] = weights[p];
    }
    CB_CALL(particles_forward(c->pe, 4, c->pack, c->mig));
  } else {
    CB_CALL(particles_forward(c->pe, 3, pos, c->mig));
  }
  c->have_last = 1;
  return CB_OK;
}

/* The cloud of a migrated particle: local lower plane li (the upper one may be the ghost),
 * rows js, columns ks and the linear weights per axis. */
typedef struct cloud {
  ptrdiff_t li, js[2], ks[2];
  double wx[2], wy[2], wz[2];
} cloud;

/* The cloud of a migrated particle; false if its lower plane is not local (a bug). */
static inline int cloud_of(const field *f, double inv_h, const double *x, cloud *cl) {
  const ptrdiff_t n = f->n;
  double tx, ty, tz;
  cl->li = corner(x[0], inv_h, n, &tx) - f->local_0_start;
  const ptrdiff_t j0 = corner(x[1], inv_h, n, &ty), k0 = corner(x[2], inv_h, n, &tz);
  cl->js[0] = j0;
  cl->js[1] = j0 + 1 == n ? 0 : j0 + 1;
  cl->ks[0] = k0;
  cl->ks[1] = k0 + 1 == n ? 0 : k0 + 1;
  cl->wx[0] = 1 - tx;
  cl->wx[1] = tx;
  cl->wy[0] = 1 - ty;
  cl->wy[1] = ty;
  cl->wz[0] = 1 - tz;
  cl->wz[1] = tz;
  return cl->li >= 0 && cl->li < f->local_n0;
}

/* Mass per particle: N^3 / n_total. */
static double particle_mass(const cic *c) {
  const double n = (double)c->f->n;
  return c->n_total > 0 ? n * n * n / (double)c->n_total : 0.0;
}

static int deposit(cic *c, double *rho) {
  field *f = c->f;
  const ptrdiff_t n = f->n, nn = n * n, nl = f->local_n0;
  const double m = particle_mass(c), inv_h = (double)n / f->L;
  double *ghost = c->ghost;
  memset(rho, 0, (size_t)f->n_real_local * sizeof(double));
  memset(ghost, 0, (size_t)nn * sizeof(double));
  const int w = c->width;
  size_t lost = 0;
  for (size_t r = 0; r < c->n_recv; r++) {
    const double *x = c->mig + (size_t)w * r;
    cloud cl;
    if (!cloud_of(f, inv_h, x, &cl)) {
      lost++;
      continue;
    }
    const double mw = w == 4 ? m * x[3] : m;
    for (int a = 0; a < 2; a++) {
      double *plane = cl.li + a < nl ? rho + (cl.li + a) * nn : ghost;
      for (int b = 0; b < 2; b++) {
        double *row = plane + cl.js[b] * n;
        const double wab = mw * cl.wx[a] * cl.wy[b];
        row[cl.ks[0]] += wab * cl.wz[0];
        row[cl.ks[1]] += wab * cl.wz[1];
      }
    }
  }
  CB_CALL(particles_ghost_add(c->pe, (size_t)nn, ghost, rho));
  CB_CHECK(lost == 0, CB_ERR_INTERNAL, "%zu migrated particle(s) are not on their owner", lost);
  return CB_OK;
}

int cic_assign(cic *c, size_t np, const double *pos, const double *weights, double *rho) {
  int st = migrate(c, np, pos, weights);
  CB_CALL(st);
  logevent_begin(LOGEVENT_CIC);
  st = deposit(c, rho);
  logevent_end(LOGEVENT_CIC);
  CB_CALL(st);
  return CB_OK;
}

static int gradient(cic *c, const double *g_rho, double *g_pos) {
  field *f = c->f;
  const ptrdiff_t n = f->n, nn = n * n, nl = f->local_n0;
  const double inv_h = (double)n / f->L, m = particle_mass(c);
  double *ghost = c->ghost;
  CB_CALL(particles_ghost_fetch(c->pe, (size_t)nn, g_rho, ghost));
  CB_CALL(grow(&c->grad, &c->grad_cap, 3 * c->n_recv));
  const int w = c->width;
  size_t lost = 0;
  for (size_t r = 0; r < c->n_recv; r++) {
    const double *x = c->mig + (size_t)w * r;
    cloud cl;
    if (!cloud_of(f, inv_h, x, &cl)) {
      lost++;
      continue;
    }
    /* interpolate along z first, then y: the derivative along an axis is the difference of
     * the two faces (times 1/h), weighted by the other two axes' linear weights */
    double zi[2][2], zd[2][2];
    for (int a = 0; a < 2; a++) {
      const double *plane = cl.li + a < nl ? g_rho + (cl.li + a) * nn : ghost;
      for (int b = 0; b < 2; b++) {
        const double *row = plane + cl.js[b] * n;
        const double g0 = row[cl.ks[0]], g1 = row[cl.ks[1]];
        zi[a][b] = cl.wz[0] * g0 + cl.wz[1] * g1;
        zd[a][b] = g1 - g0;
      }
    }
    const double y0 = cl.wy[0] * zi[0][0] + cl.wy[1] * zi[0][1];
    const double y1 = cl.wy[0] * zi[1][0] + cl.wy[1] * zi[1][1];
    const double s = (w == 4 ? m * x[3] : m) * inv_h;
    c->grad[3 * r] = s * (y1 - y0);
    c->grad[3 * r + 1] = s * (cl.wx[0] * (zi[0][1] - zi[0][0]) + cl.wx[1] * (zi[1][1] - zi[1][0]));
    c->grad[3 * r + 2] = s * (cl.wx[0] * (cl.wy[0] * zd[0][0] + cl.wy[1] * zd[0][1]) +
                              cl.wx[1] * (cl.wy[0] * zd[1][0] + cl.wy[1] * zd[1][1]));
  }
  CB_CALL(particles_reverse(c->pe, 3, c->grad, g_pos));
  CB_CHECK(lost == 0, CB_ERR_INTERNAL, "%zu migrated particle(s) are not on their owner", lost);
  return CB_OK;
}

int cic_adjoint_last(cic *c, const double *g_rho, double *g_pos) {
  CB_CHECK(c->have_last, CB_ERR_INTERNAL, "cic_adjoint_last before a successful cic_assign");
  logevent_begin(LOGEVENT_CIC_ADJOINT);
  int st = gradient(c, g_rho, g_pos);
  logevent_end(LOGEVENT_CIC_ADJOINT);
  CB_CALL(st);
  return CB_OK;
}

int cic_adjoint(cic *c, size_t np, const double *pos, const double *weights, const double *g_rho,
                double *g_pos) {
  CB_CALL(migrate(c, np, pos, weights));
  CB_CALL(cic_adjoint_last(c, g_rho, g_pos));
  return CB_OK;
}
