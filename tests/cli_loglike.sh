#!/bin/bash
# cli_loglike: `cerberus weights init` and `cerberus loglike` from the command line:
# a good run (same ln L on 1 and 2 ranks, outputs of the right shape), then every bad input
# of issue 4 provoked once: each must fail with a one-line error naming the input and leave
# no output behind. Inputs are made with h5py (skipped, exit 77, without it).
PY=/usr/bin/python3
$PY -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: python3 with h5py and numpy needed"; exit 77; }
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad
# field 8^3 in a 61.7 Mpc/h box, catalogue of 40 halos; variants for the bad inputs
$PY - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(17)
n, L = 8, 61.7
def field(name, delta, box=L):
    with h5py.File(name, "w") as f:
        f["delta"] = delta
        f.attrs["box_size"] = box; f.attrs["n_grid"] = n
d = np.exp(0.6 * rng.standard_normal((n, n, n))) - 1.0
d -= d.mean()
d = np.maximum(d, -0.95)
field("field.h5", d)
bad = d.copy(); bad[2, 5, 1] = -1.5
field("field_neg.h5", bad)
def cat(name, pos, mass, box=L, n_grid=n):
    with h5py.File(name, "w") as f:
        f["halos/position"] = pos; f["halos/mass"] = mass
        f.attrs["box_size"] = box; f.attrs["n_grid"] = n_grid; f.attrs["mass_threshold"] = 2e12
pos = rng.uniform(0, L, (40, 3)); mass = np.exp(rng.uniform(np.log(2.5e12), np.log(1e14), 40))
cat("cat.h5", pos, mass)
p2 = pos.copy(); p2[7, 1] = L + 3.0; cat("cat_out.h5", p2, mass)
m2 = mass.copy(); m2[4] = -1e12; cat("cat_neg.h5", pos, m2)
m3 = mass.copy(); m3[9] = np.nan; cat("cat_nan.h5", pos, m3)
cat("cat_box.h5", pos * 0.5, mass, box=L / 2)
cat("cat_grid.h5", pos, mass, n_grid=2 * n)  # another grid of the same box: only box_size matters
PYEOF
run "$EXE" weights init -random -seed 5 -scale 0.2 -o w.h5
run "$EXE" weights init -random -seed 5 -o wpl.h5 -model powerlaw
run "$EXE" weights init -random -seed 5 -o w2.h5 -layers 3:1:1:tanh,3:0:1:softplus -n_gauss 3
run "$EXE" loglike -field field.h5 -catalogue cat.h5 -weights w.h5 -o l1.h5
run mpiexec -n 2 "$EXE" loglike -field field.h5 -catalogue cat_grid.h5 -weights w.h5 -o lgrid.h5
run mpiexec -n 2 "$EXE" loglike -field field.h5 -catalogue cat.h5 -weights w.h5 -o l2.h5
run mpiexec -n 3 "$EXE" loglike -field field.h5 -catalogue cat.h5 -weights w2.h5 -o l3.h5
run mpiexec -n 1 "$EXE" loglike -field field.h5 -catalogue cat.h5 -weights w2.h5 -o l4.h5
run mpiexec -n 2 "$EXE" loglike -field field.h5 -catalogue cat.h5 -weights wpl.h5 -model powerlaw -o lpl.h5
$PY - <<'PYEOF' || fail=1
import h5py, numpy as np, sys
ok = True
def cmp(a, b):
    global ok
    with h5py.File(a) as x, h5py.File(b) as y:
        for k in ("loglike", "grad_weights", "grad_delta"):
            u, v = x[k][()], y[k][()]
            if u.shape != v.shape or not np.allclose(u, v, rtol=1e-10, atol=1e-10 * np.abs(u).max()):
                print("FAIL: %s differs between %s and %s" % (k, a, b)); ok = False
        if x["grad_delta"].shape != (8, 8, 8) or x["grad_weights"].shape != (17,) and a == "l1.h5":
            print("FAIL: shapes", x["grad_delta"].shape, x["grad_weights"].shape); ok = False
        if not np.isfinite(x["loglike"][0]): print("FAIL: ln L not finite"); ok = False
cmp("l1.h5", "l2.h5"); cmp("l3.h5", "l4.h5"); cmp("l1.h5", "lgrid.h5")
with h5py.File("lpl.h5") as f:
    if f["grad_weights"].shape != (7,) or not np.isfinite(f["loglike"][0]): print("FAIL: power law"); ok = False
sys.exit(0 if ok else 1)
PYEOF
grep -q "ln L = " out.txt || { echo "FAIL: no 'ln L =' printed"; fail=1; }
# hmf: the table's data counts are the catalogue's halos in [Mth, mass_max); the plot is drawn
run mpiexec -n 2 "$EXE" hmf -field field.h5 -catalogue cat.h5 -weights w.h5 -n_delta_bins 3 -n_mass_bins 4 -mass_max 5e13 -o hmf.h5
$PY - <<'PYEOF' || fail=1
import h5py, numpy as np, sys
with h5py.File("hmf.h5") as f, h5py.File("cat.h5") as c:
    t = f["hmf"][()]; m = c["halos/mass"][()]
want = np.sum((m >= 2e12) & (m < 5e13))
if t.shape != (12, 10) or t[:, 6].sum() != want or not np.all(t[:, 5] > 0):
    print("FAIL: hmf table", t.shape, t[:, 6].sum(), want); sys.exit(1)
if abs(t[::4, 2].sum() - 512) > 0: print("FAIL: hmf voxel counts", t[::4, 2]); sys.exit(1)
PYEOF
if [ -n "${CERBERUS_SRC:-}" ] && $PY -c "import matplotlib" 2>/dev/null; then
  run $PY "$CERBERUS_SRC/scripts/plot_hmf.py" hmf.h5 hmf.png
  [ -s hmf.png ] || { echo "FAIL: no hmf.png"; fail=1; }
fi
# bad inputs, one by one
bad "outside the box" o.h5 "$EXE" loglike -field field.h5 -catalogue cat_out.h5 -weights w.h5 -o o.h5
bad "halo 4 has mass -1000000000000" o.h5 mpiexec -n 2 "$EXE" loglike -field field.h5 -catalogue cat_neg.h5 -weights w.h5 -o o.h5
bad "has mass nan" o.h5 "$EXE" loglike -field field.h5 -catalogue cat_nan.h5 -weights w.h5 -o o.h5
bad "box_size 30.85" o.h5 mpiexec -n 2 "$EXE" loglike -field field.h5 -catalogue cat_box.h5 -weights w.h5 -o o.h5
bad "voxel (2,5,1)" o.h5 mpiexec -n 3 "$EXE" loglike -field field_neg.h5 -catalogue cat.h5 -weights w.h5 -o o.h5
bad "for the npe model, but -model powerlaw" o.h5 "$EXE" loglike -field field.h5 -catalogue cat.h5 -weights w.h5 -model powerlaw -o o.h5
$PY -c "
import h5py, numpy as np
with h5py.File('w.h5') as f, h5py.File('wlen.h5', 'w') as g:
    for k, v in f.attrs.items(): g.attrs[k] = v
    g['weights'] = np.append(f['weights'][()], 0.5)
with h5py.File('w.h5') as f, h5py.File('warch.h5', 'w') as g:
    for k, v in f.attrs.items(): g.attrs[k] = v
    g.attrs['layer0_activation'] = np.bytes_('sigmoid')
    g['weights'] = f['weights'][()]
"
bad "has 18 values but the architecture it describes needs 17" o.h5 "$EXE" loglike -field field.h5 -catalogue cat.h5 -weights wlen.h5 -o o.h5
bad "unknown activation 'sigmoid'" o.h5 mpiexec -n 2 "$EXE" loglike -field field.h5 -catalogue cat.h5 -weights warch.h5 -o o.h5
bad "exists" l1.h5.x "$EXE" loglike -field field.h5 -catalogue cat.h5 -weights w.h5 -o l1.h5
bad "unknown activation 'gelu'" o.h5 "$EXE" weights init -layers 3:0:1:gelu -o o.h5
bad "kernel size must be 3 or 5" o.h5 "$EXE" weights init -layers 4:0:1:relu -o o.h5
bad "unknown action" o.h5 "$EXE" weights frobnicate -o o.h5
[ $fail -eq 0 ] && echo PASS || echo FAIL
exit $fail
