/* test_exchange: ghost planes and their reverse, at 1-4 ranks (MODEL.md section 3).
 *
 * Each owned plane p of global index i holds values f(i, x) = 1000 i + x + 0.25 (x the
 * position in the plane), so every ghost plane can be checked against the global plane it
 * must hold (periodic: below plane 0 is plane n - 1). The reverse exchange is checked the
 * same way: ghost plane values 7.5 i + x are sent back, and each owned edge plane must
 * have received exactly the sum of what its neighbours hold for it (one neighbour per side;
 * on one or two ranks the same rank or the same neighbour on both sides). Ghost widths 1
 * and 2, uneven slabs (n = 10 and 12), and interior computation between begin and end
 * (the buffer's interior is written while messages travel). */
#include "testing.h"

#include "cerberus/exchange.h"
#include "cerberus/field.h"
#include "cerberus/status.h"

#include <stdlib.h>
#include <string.h>

static void run(MPI_Comm comm, ptrdiff_t n, int g) {
  field *f = NULL;
  if (field_create(comm, n, 10.0, g, &f) != CB_OK) {
    status_clear();
    return; /* too many ranks for this grid: covered by the thin-slab check */
  }
  const size_t ps = 37; /* doubles per plane, not n*n: the exchange does not care */
  const ptrdiff_t nloc = f->local_n0, i0 = f->local_0_start;
  exchange *ex = NULL;
  TEST_STATUS(exchange_create(comm, nloc, ps, g, &ex), CB_OK, "exchange_create");
  double *buf = calloc((size_t)(nloc + 2 * g) * ps, sizeof *buf);
  for (ptrdiff_t p = 0; p < nloc; p++)
    for (size_t x = 0; x < ps; x++)
      buf[(size_t)(p + g) * ps + x] = 1000.0 * (double)(i0 + p) + x + 0.25;
  TEST_STATUS(exchange_begin(ex, buf), CB_OK, "begin");
  /* interior work while the messages travel: touch planes that are neither sent nor received */
  for (ptrdiff_t p = g; p < nloc - g; p++)
    for (size_t x = 0; x < ps; x++) buf[(size_t)(p + g) * ps + x] += 0.0;
  TEST_STATUS(exchange_end(ex), CB_OK, "end");
  int bad = 0;
  for (ptrdiff_t b = 0; b < nloc + 2 * g; b++) {
    ptrdiff_t i = ((i0 + b - g) % n + n) % n;
    for (size_t x = 0; x < ps; x++)
      if (buf[(size_t)b * ps + x] != 1000.0 * (double)i + x + 0.25) bad++;
  }
  TEST_CHECK(bad == 0, "n=%td g=%d: %d ghost values wrong", n, g, bad);
  /* reverse: ghosts hold 7.5 i + x for their global plane i; owned planes start at 0 */
  memset(buf, 0, (size_t)(nloc + 2 * g) * ps * sizeof *buf);
  for (ptrdiff_t b = 0; b < nloc + 2 * g; b++) {
    if (b >= g && b < nloc + g) continue;
    ptrdiff_t i = ((i0 + b - g) % n + n) % n;
    for (size_t x = 0; x < ps; x++) buf[(size_t)b * ps + x] = 7.5 * (double)i + x;
  }
  TEST_STATUS(exchange_reverse_begin(ex, buf), CB_OK, "reverse begin");
  TEST_STATUS(exchange_reverse_end(ex), CB_OK, "reverse end");
  bad = 0;
  for (ptrdiff_t p = 0; p < nloc; p++) {
    ptrdiff_t i = i0 + p;
    /* how many ghost copies of plane i exist on the neighbours: one from below if i is among
     * my first g planes, one from above if among my last g (both when the slab is thin) */
    int copies = (p < g) + (p >= nloc - g);
    for (size_t x = 0; x < ps; x++) {
      double want = copies * (7.5 * (double)i + x);
      if (buf[(size_t)(p + g) * ps + x] != want) bad++;
    }
  }
  TEST_CHECK(bad == 0, "n=%td g=%d: %d reverse values wrong", n, g, bad);
  free(buf);
  exchange_destroy(&ex);
  field_destroy(&f);
}

int main(int argc, char **argv) {
  MPI_Comm comm;
  testing_init(&argc, &argv, &comm);
  run(comm, 10, 1);
  run(comm, 12, 2);
  run(comm, 8, 2);
  run(comm, 16, 1);
  return testing_finish();
}
