#!/bin/bash
# cli_imnn: `cerberus imnn fisher | train | compress` from the command line (MODEL.md section 9).
#  - the exact Fisher matrices: gaussian F = n / (2 theta^2) = 5 at n = 10; grf at 16^3
#    F_AA = (N^3 - 1) / 2 and F_BB = 1/2 sum (ln k)^2 recomputed here over every mode;
#  - gaussian, n = 10: at least 97% of F = 5 reached on validation (fixed seeds);
#  - grf at 16^3 with the band-power front end: at least 90% of the exact det F, and the
#    quasi-ML estimates of test simulations at the fiducial unbiased within their error;
#  - the same training history on 1 rank and on 2 rank groups (within 1e-8), for the gaussian
#    (with batches and renewed simulations)
#    and for the convolutional front end on an 8^3 grf (groups of 1 and of 2 ranks);
#  - square convolution channels with the MOPED start of the linear head: exact information
#    (scripts/imnn_exact_fraction.py) above 0.85 and equal to the validation estimate;
#  - compress: summaries and estimates of a data file, equal to the network's own;
#  - simulate: the same grf on 1 and 2 ranks, its amplitude against the truth, and compress of
#    the file equal to the network applied in numpy;
#  - bad inputs one by one: -n_d larger than -n_s, a zero -dtheta, an unknown simulator (the
#    line lists the known ones), a network file of another input size.
PY=/usr/bin/python3
$PY -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: python3 with h5py and numpy needed"; exit 77; }
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad

# exact Fisher matrices
run "$EXE" imnn fisher -simulator gaussian
grep -q "^det F = 5$" out.txt || { echo "FAIL: gaussian det F: $(cat out.txt)"; fail=1; }
run "$EXE" imnn fisher -simulator grf -n_grid 16 -box_size 250
$PY - <<'PYEOF' || fail=1
import numpy as np, sys
n, L = 16, 250.0
a = np.fft.fftfreq(n, 1.0 / n) * 2 * np.pi / L
k = np.sqrt(a[:, None, None] ** 2 + a[None, :, None] ** 2 + a[None, None, :] ** 2).ravel()[1:]
F = 0.5 * np.array([[k.size, -np.log(k).sum()], [-np.log(k).sum(), (np.log(k) ** 2).sum()]])
lines = open("out.txt").read().split("\n")
got = np.array([[float(v) for v in lines[1].split()], [float(v) for v in lines[2].split()]])
if not np.allclose(got, F, rtol=1e-9):
    print("FAIL: grf exact F", got, "expected", F); sys.exit(1)
PYEOF

# gaussian: the fraction of F = 5 reached on validation (a short run: see the note below)
G="-simulator gaussian -hidden 40:softplus -n_s 16000 -n_d 8000 -n_val 10000 -n_d_val 5000 -epochs 120 -patience 120 -learning_rate 0.015 -n_batches 8 -seed 3 -n_test 40"
# Under the sanitizers (ASAN_OPTIONS set) a short run of the same code paths makes g1.h5 for
# the checks below, and the 0.97 check (statistics, no code of its own) is left to the -Werror
# build: the long run costs a minute and a half there.
[ -n "${ASAN_OPTIONS:-}" ] && G="$G -n_s 2000 -n_d 1000 -n_val 1000 -n_d_val 500 -epochs 4"
run "$EXE" imnn train $G -o g1.h5
cat out.txt
# With 4000 training simulations the weights over-fit (20 units: training det F 4.94 against 4.51
# on validation after 200 epochs): 16000 fiducial and 8000 pairs close that gap; 20 softplus
# units level off at 0.968 (they act as |u.x| hinges), 40 reach 0.979 in 120 epochs (0.982 with
# -init_seed 2). The validation estimate (10000 + 2 x 5000) has about 2% of noise: with -seed 7
# the same training gives 0.951.
[ -n "${ASAN_OPTIONS:-}" ] || $PY - <<'PYEOF' || fail=1
import re, sys
m = re.search(r"fraction of the exact det F reached on validation: ([0-9.]+)", open("out.txt").read())
if not m or float(m.group(1)) < 0.97:
    print("FAIL: gaussian reached", m.group(1) if m else "?", "of F = 5 (want >= 0.97)"); sys.exit(1)
PYEOF
# the same history on 1 rank and on 2 rank groups
H="-simulator gaussian -hidden 8:softplus,4:tanh -n_s 300 -n_d 200 -n_val 300 -epochs 12 -patience 12 -learning_rate 0.02 -n_batches 3 -renew_every 5 -seed 4 -n_test 10"
run "$EXE" imnn train $H -o h1.h5
run mpiexec -n 2 "$EXE" imnn train $H -group_size 1 -o h2.h5
$PY - <<'PYEOF' || fail=1
import h5py, numpy as np, sys
with h5py.File("h1.h5") as a, h5py.File("h2.h5") as b:
    ha, hb = a["history"][()], b["history"][()]
    if ha.shape != hb.shape or not np.allclose(ha, hb, rtol=1e-8, atol=0):
        print("FAIL: gaussian history differs on 2 groups", np.max(np.abs(ha - hb))); sys.exit(1)
    if not np.allclose(a["weights"][()], b["weights"][()], rtol=1e-8, atol=1e-12):
        print("FAIL: gaussian weights differ on 2 groups"); sys.exit(1)
    if not np.allclose(a["test_estimate"][()], b["test_estimate"][()], rtol=1e-8):
        print("FAIL: test estimates differ on 2 groups"); sys.exit(1)
PYEOF

# grf 16^3, band powers: 90% of the exact det F; unbiased estimates at the fiducial
R="-simulator grf -n_grid 16 -box_size 250 -front bandpower -bandpower_scale linear -hidden none -n_s 3000 -n_d 500 -n_val 3000 -dtheta 0.01,0.01 -epochs 150 -patience 30 -learning_rate 0.001 -n_batches 2 -seed 5 -n_test 60"
run mpiexec -n 2 "$EXE" imnn train $R -group_size 1 -o r.h5
cat out.txt
$PY - <<'PYEOF' || fail=1
import h5py, numpy as np, re, sys
m = re.search(r"fraction of the exact det F reached on validation: ([0-9.]+)", open("out.txt").read())
if not m or float(m.group(1)) < 0.90:
    print("FAIL: grf band powers reached", m.group(1) if m else "?", "(want >= 0.90)"); sys.exit(1)
with h5py.File("r.h5") as f:
    t, e, F = f["test_theta"][()], f["test_estimate"][()], f["F"][()]
sig = np.sqrt(np.diag(np.linalg.inv(F)))
bias = (e - t).mean(axis=0)
z = bias / (sig / np.sqrt(t.shape[0]))
print("grf test estimates: bias", bias, "in units of the error of the mean", z)
if np.any(np.abs(z) > 3.5):
    print("FAIL: grf quasi-ML estimates biased"); sys.exit(1)
PYEOF
# the exact information of that network (scripts/imnn_exact_fraction.py) against its validation
# estimate (3000 + 2 x 2 x 500 simulations: ln det F has a noise of about 2 / sqrt(3000) = 3.7%)
# check_exact FILE WHAT TOL: the exact information of FILE's network
# (scripts/imnn_exact_fraction.py) is above 0.85 and at most its features' ceiling, and the
# validation estimate is within TOL of it
check_exact() {
  run $PY "$CERBERUS_SRC/scripts/imnn_exact_fraction.py" "$1"
  $PY - "$2" "$3" <<'PYEOF' || fail=1
import re, sys
what, tol = sys.argv[1], float(sys.argv[2])
t = open("out.txt").read()
m = re.search(r"exact fraction ([0-9.]+), features' ceiling ([0-9.]+), validation estimate ([0-9.]+)", t)
if not m:
    print("FAIL: imnn_exact_fraction.py printed", t); sys.exit(1)
ex, ceil, val = map(float, m.groups())
if not (0.85 < ex <= ceil < 1.0) or abs(val / ex - 1) > tol:
    print("FAIL:", what, "exact fraction", ex, "ceiling", ceil, "validation", val); sys.exit(1)
print(what, "exact fraction", ex, "ceiling", ceil, "validation", val)
PYEOF
}
[ -n "${CERBERUS_SRC:-}" ] && check_exact r.h5 "grf network:" 0.11

# simulate: a grf 16^3 at (2, 0.8), the same field on 1 and 2 ranks, its amplitude against the
# truth, and `compress -data` of the file against the network applied in numpy (band powers of
# power.h, standardisation, linear head)
run "$EXE" imnn simulate -simulator grf -n_grid 16 -box_size 250 -theta 2,0.8 -seed 5 -o s1.h5
run mpiexec -n 2 "$EXE" imnn simulate -simulator grf -n_grid 16 -box_size 250 -theta 2,0.8 -seed 5 -o s2.h5
run "$EXE" imnn compress -network r.h5 -data s1.h5 -o cs.h5
$PY - <<'PYEOF' || fail=1
import h5py, numpy as np, sys
with h5py.File("s1.h5") as a, h5py.File("s2.h5") as b:
    d = a["delta"][()]
    if not np.array_equal(d, b["delta"][()]) or list(a["theta_true"][()]) != [2, 0.8]:
        print("FAIL: simulate differs on 2 ranks or lost theta"); sys.exit(1)
    n, L = int(a.attrs["n_grid"]), float(a.attrs["box_size"])
m = np.fft.fftfreq(n, 1.0 / n)
r = np.sqrt(m[:, None, None] ** 2 + m[None, :, None] ** 2 + m[None, None, :] ** 2)
P = (L / n) ** 6 / L ** 3 * np.abs(np.fft.fftn(d)) ** 2
k = 2 * np.pi / L * r
Ahat = np.mean((P * k ** 0.8)[r > 0])  # E = A, relative sd sqrt(2 / (n^3 - 1))
if abs(Ahat - 2) > 4 * 2 * np.sqrt(2.0 / (n ** 3 - 1)):
    print("FAIL: simulated amplitude", Ahat, "for A = 2"); sys.exit(1)
with h5py.File("r.h5") as g, h5py.File("cs.h5") as c:
    sh = np.rint(r).astype(int)
    nf = g["shift"].shape[0]
    Pb = np.array([P[sh == s].mean() for s in range(1, nf + 1)])
    scale = g.attrs.get("bandpower_scale", b"log")
    feat = Pb if scale in (b"linear", "linear") else np.log(Pb)
    a0 = (feat - g["shift"][()]) / g["scale"][()]
    w, p = g["weights"][()], 2
    x = w[: p * nf].reshape(p, nf) @ a0 + w[p * nf : p * nf + p]
    if not np.allclose(c["summaries"][()][0], x, rtol=1e-9, atol=1e-9):
        print("FAIL: compress of the simulated file", c["summaries"][()], "numpy", x); sys.exit(1)
print("simulate: A estimate", Ahat, "summaries", x)
PYEOF

# convolutional front end, 8^3: the same history on 1 group of 2 ranks and on 2 groups of 1
C="-simulator grf -n_grid 8 -box_size 100 -front conv -conv_layers 3:0:2:softplus -hidden 4:softplus -n_s 24 -n_d 12 -n_val 24 -epochs 4 -patience 4 -learning_rate 0.01 -seed 9 -n_test 0"
run mpiexec -n 2 "$EXE" imnn train $C -group_size 2 -o c1.h5
run mpiexec -n 2 "$EXE" imnn train $C -group_size 1 -o c2.h5
$PY - <<'PYEOF' || fail=1
import h5py, numpy as np, sys
with h5py.File("c1.h5") as a, h5py.File("c2.h5") as b:
    ha, hb = a["history"][()], b["history"][()]
    if ha.shape != hb.shape or not np.allclose(ha, hb, rtol=1e-8, atol=0):
        print("FAIL: conv history differs between 1 and 2 groups", ha - hb); sys.exit(1)
PYEOF

# convolutional front end of square channels (quadratic statistics of the field, 8^3) with the
# linear head's MOPED start at the initial convolution weights: its exact information (the
# span of 10 channels of 3^3 isotropic kernels allows 0.985 here; 400 training simulations
# lose some) and the validation estimate (1000 + 2 x 2 x 300 simulations, noise ~6%) agree
Q="-simulator grf -n_grid 8 -box_size 100 -dtheta 0.02,0.02 -front conv -conv_layers 3:0:10:square -hidden none -n_s 400 -n_d 200 -n_val 1000 -n_d_val 300 -epochs 1 -patience 1 -learning_rate 1e-6 -n_test 0 -seed 3"
# (under the sanitizers a short run of the same code paths, without the statistical check)
[ -n "${ASAN_OPTIONS:-}" ] && Q="$Q -n_s 40 -n_d 20 -n_val 40 -n_d_val 20"
run mpiexec -n 2 "$EXE" imnn train $Q -o q.h5
grep -q "simulated fields kept in memory" out.txt || { echo "FAIL: no line on the kept fields"; fail=1; }
[ -n "${CERBERUS_SRC:-}" ] && [ -z "${ASAN_OPTIONS:-}" ] && check_exact q.h5 "square conv network:" 0.2

# compress: a data vector and a table of two rows
$PY - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(4)
with h5py.File("d.h5", "w") as f:
    f["data"] = rng.normal(0, np.sqrt(1.3), 10)
with h5py.File("d2.h5", "w") as f:
    f["data"] = rng.normal(0, 1.0, (2, 10))
with h5py.File("d12.h5", "w") as f:
    f["data"] = rng.normal(0, 1.0, 12)
PYEOF
run "$EXE" imnn compress -network g1.h5 -data d2.h5 -o c.h5
$PY - <<'PYEOF' || fail=1
import h5py, numpy as np, sys
with h5py.File("c.h5") as c, h5py.File("g1.h5") as g:
    x, th = c["summaries"][()], c["theta"][()]
    mu, C, D, F = g["mu"][()], g["C"][()], g["dmu_dtheta"][()], g["F"][()]
    want = g["theta_fid"][()] + (np.linalg.solve(F, D @ np.linalg.solve(C, (x - mu).T))).T
    if x.shape != (2, 1) or not np.allclose(th, want, rtol=1e-10):
        print("FAIL: compress estimates", th, want); sys.exit(1)
PYEOF
grep -q "estimate" out.txt || { echo "FAIL: compress printed no estimate"; fail=1; }
if [ -n "${CERBERUS_SRC:-}" ] && $PY -c "import matplotlib" 2>/dev/null; then
  run $PY "$CERBERUS_SRC/scripts/plot_imnn.py" r.h5 r.png
  [ -s r.png ] || { echo "FAIL: no r.png"; fail=1; }
fi

# bad inputs, one by one
T="-simulator gaussian -n_s 10 -n_d 5 -epochs 2"
bad "-n_d 11 must be 1 to -n_s 10" o.h5 "$EXE" imnn train $T -n_d 11 -o o.h5
bad "it must be non-zero" o.h5 "$EXE" imnn train $T -dtheta 0 -o o.h5
bad "unknown simulator 'gausian' (known: gaussian, grf, lpt" o.h5 "$EXE" imnn train -simulator gausian -o o.h5
bad "network 'g1.h5' takes inputs of size 10 but the data have size 12" o.h5 "$EXE" imnn compress -network g1.h5 -data d12.h5 -o o.h5
bad "-theta: 1 values given, simulator 'grf' has 2" o.h5 "$EXE" imnn simulate -simulator grf -theta 1 -o o.h5
bad "'nan' is not a finite number" o.h5 "$EXE" imnn simulate -simulator grf -theta nan,0.5 -o o.h5
bad "gives data that are not finite there" o.h5 "$EXE" imnn simulate -simulator grf -n_grid 8 -theta -1,0.5 -o o.h5
bad "imnn needs one of train, compress, fisher, simulate" "" "$EXE" imnn fit
exit $fail
