#!/bin/bash
# cli_infer: `cerberus infer`, `cerberus diagnose` and scripts/plot_chain.py from the command
# line (issue 12), on an 8^3 mock (the field and catalogue in one file) with few draws:
#  - a run of 2 chains: the chain file opens with Debian's python3-xarray (engine netcdf4) with
#    dimensions (chain, draw, weight) in /posterior, (chain, draw) in /sample_stats, the
#    warm-up in /warmup, the gradient counts and options as root attributes; diagnose prints
#    the table; plot_chain.py draws it;
#  - a running job's chain file read by cerberus diagnose;
#  - kill and resume: stopped by SIGTERM (sent by the program itself after round 23, and sent
#    from outside at an arbitrary moment), then -resume: the chain file equals the straight
#    run's bit for bit (wall_time apart), on 1 rank and on 2 ranks (2 rank groups, 3 chains);
#    stopped on 1 rank and resumed on 2, the run completes;
#  - pooled adaptation (-pool_adaptation): 3 chains on 1 rank and on 2 rank groups give the same
#    chain file bit for bit, so does a kill inside the warm-up and -resume; the chains end with
#    one inverse mass matrix (and without pooling with three);
#  - a truncated newest checkpoint: the previous one is used, with a warning, and the result is
#    still the straight run's;
#  - MAP starts, -start file, a two-channel monotone engine on 2 ranks; bench hmc's rows (ESS
#    per 1000 gradients of the whole run and of the sampling phase);
#  - bad inputs one by one: field and catalogue of different boxes, -chains 0, -resume with no
#    checkpoint, a weights file of another architecture, an option differing at -resume,
#    -start file without -weights, a diagnose of a missing file, -n_steps, -target_accept,
#    -step_size and -seed out of range (infer and bench hmc).
PY=/usr/bin/python3
$PY -c "import h5py, numpy, xarray, netCDF4" 2>/dev/null ||
  { echo "SKIP: python3 with h5py, numpy, xarray and netCDF4 needed"; exit 77; }
SRC=${CERBERUS_SRC:?CERBERUS_SRC not set}
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad

run "$EXE" mock -n_grid 8 -box_size 80 -seed 4 -o mock.h5
$PY - <<'PYEOF'
import h5py
with h5py.File("mock.h5") as f, h5py.File("cat_box.h5", "w") as g:
    g["halos/position"] = f["halos/position"][()] * 0.5
    g["halos/mass"] = f["halos/mass"][()]
    g.attrs["box_size"] = 40.0; g.attrs["n_grid"] = 8; g.attrs["mass_threshold"] = 2e12
PYEOF
O="-field mock.h5 -catalogue mock.h5 -start prior -warmup 15 -samples 25 -quiet"

# ---- a good run, read by xarray
run "$EXE" infer $O -chains 2 -o c.h5
grep -q "^lp " out.txt || { echo "FAIL: no diagnostics table at the end of infer: $(cat out.txt)"; fail=1; }
run "$EXE" diagnose c.h5
grep -q "^lp " out.txt && grep -q "^w_centre" out.txt && grep -q "^n(1.5e+13M|" out.txt ||
  grep -q "^n(" out.txt || { echo "FAIL: diagnose table: $(cat out.txt)"; fail=1; }
run $PY "$SRC/scripts/plot_chain.py" c.h5 c.png mock.h5 mock.h5
[ -s c.png ] || { echo "FAIL: plot_chain.py wrote no picture"; fail=1; }

# ---- kill and resume, bitwise
PAIRS="" # chain files that must be equal (wall_time apart), compared at the end
same() { PAIRS="$PAIRS $1:$2"; }
run "$EXE" infer $O -chains 2 -o s.h5
run "$EXE" infer $O -chains 2 -o k.h5 -signal_at 23
grep -q "SIGTERM: stopped after round 23" err.txt || { echo "FAIL: no stop message: $(cat err.txt)"; fail=1; }
[ -f k.h5.ckpt ] || { echo "FAIL: no checkpoint"; fail=1; }
run "$EXE" infer $O -chains 2 -o k.h5 -resume
same s.h5 k.h5
# 2 ranks, 3 chains on 2 groups
run mpiexec -n 2 "$EXE" infer $O -chains 3 -o s2.h5
run mpiexec -n 2 "$EXE" infer $O -chains 3 -o k2.h5 -signal_at 9
run mpiexec -n 2 "$EXE" infer $O -chains 3 -o k2.h5 -resume
same s2.h5 k2.h5
# pooled adaptation: 3 chains on 1 rank equal 3 chains on 2 rank groups (2 + 1) bit for bit,
# and a kill inside the warm-up, then -resume, equals the straight run (left out under the
# sanitizers: test_hmc runs the pooling code there)
P="-field mock.h5 -catalogue mock.h5 -start prior -warmup 40 -samples 10 -chains 3 -pool_adaptation -quiet"
if [ -z "${ASAN_OPTIONS:-}" ]; then
  run "$EXE" infer $P -o p1.h5
  run mpiexec -n 2 "$EXE" infer $P -o p2.h5
  same p1.h5 p2.h5
  run mpiexec -n 2 "$EXE" infer $P -o pk.h5 -signal_at 20
  run mpiexec -n 2 "$EXE" infer $P -o pk.h5 -resume
  same p1.h5 pk.h5
  run "$EXE" infer $P -o pa.h5 -pool_adaptation false
fi
# stopped on 1 rank, resumed on 2 (other rank groups): it goes on to the end (checked below)
run "$EXE" infer $O -chains 2 -o r.h5 -signal_at 17
run mpiexec -n 2 "$EXE" infer $O -chains 2 -o r.h5 -resume
# SIGTERM from outside at an arbitrary moment (round k, somewhere after 10), -resume until
# round k + 25 (-signal_at may differ at a resume), against a straight run stopped there too
# (the run is long enough that the signal always lands inside it, however fast the machine)
# (left out under the sanitizers, ASAN_OPTIONS set: the same code as the self-sent SIGTERM, at
# several times the cost)
L="-field mock.h5 -catalogue mock.h5 -start prior -warmup 20 -samples 100000 -chains 2 -progress_every 5"
if [ -z "${ASAN_OPTIONS:-}" ]; then
  "$EXE" infer $L -o x.h5 > x.log 2>&1 &
  pid=$!
  for i in $(seq 400); do grep -q "step 10/" x.log && break; sleep 0.05; done
  # the running job's file is readable (its first 10 warm-up draws at least), and reading it
  # does not stop the job
  "$EXE" diagnose x.h5 -warmup > xd.txt 2>&1 && grep -q "^lp " xd.txt ||
    { echo "FAIL: the running job's chain file cannot be read: $(cat xd.txt)"; fail=1; }
  kill -TERM $pid
  wait $pid || { echo "FAIL: the run stopped by SIGTERM exited non-zero: $(cat x.log)"; fail=1; }
  k=$(sed -n 's/.*SIGTERM: stopped after round \([0-9]*\).*/\1/p' x.log)
  if [ -n "$k" ]; then
    echo "ok: stopped from outside after round $k"
    run "$EXE" infer $L -o x.h5 -resume -quiet -signal_at $((k + 25))
    run "$EXE" infer $L -o xs.h5 -quiet -signal_at $((k + 25))
    same xs.h5 x.h5
  else
    echo "FAIL: the run was not stopped by SIGTERM: $(tail -3 x.log)"; fail=1
  fi
fi
# a truncated newest checkpoint: the previous one is used (checkpoints at every round)
run "$EXE" infer $O -chains 2 -o t.h5 -signal_at 30 -checkpoint_interval 1e-9
[ -f t.h5.ckpt.prev ] || { echo "FAIL: no previous checkpoint kept"; fail=1; }
head -c 100 t.h5.ckpt > t.tmp && mv t.tmp t.h5.ckpt
run "$EXE" infer $O -chains 2 -o t.h5 -resume
grep -q "truncated" err.txt && grep -q "previous checkpoint" err.txt ||
  { echo "FAIL: no warning about the truncated checkpoint: $(cat err.txt)"; fail=1; }
same s.h5 t.h5

# ---- other starts and architectures
run "$EXE" infer -field mock.h5 -catalogue mock.h5 -warmup 5 -samples 5 -chains 1 -map_starts 2 \
  -map_iterations 15 -o m.h5 -quiet
run "$EXE" infer -field mock.h5 -catalogue mock.h5 -warmup 5 -samples 5 -chains 1 -map_starts 1 \
  -map_iterations 15 -engine_monotone -standardise_features -laplace_metric -metric dense \
  -o lap.h5 -quiet
run "$EXE" infer -field mock.h5 -catalogue mock.h5 -warmup 5 -samples 5 -chains 1 -map_starts 1 \
  -map_iterations 15 -engine_monotone -standardise_features -relative_bias -o rb.h5 -quiet
run "$EXE" weights init -random -seed 3 -scale 0.1 -o w.h5
run "$EXE" infer -field mock.h5 -catalogue mock.h5 -warmup 5 -samples 5 -chains 1 -start file \
  -weights w.h5 -o f.h5 -quiet
run "$EXE" weights init -random -seed 3 -scale 0.1 -layers 3:0:2:softplus -o w2.h5
run mpiexec -n 2 "$EXE" infer -field mock.h5 -catalogue mock.h5 -warmup 5 -samples 5 -chains 1 \
  -layers 3:0:2:softplus -engine_monotone -start prior -o mc.h5 -quiet

# ---- the chain files read by xarray, and the equal pairs
$PY - "$PAIRS" <<'PYEOF' || fail=1
import sys, xarray as xr, h5py, numpy as np
ok = True
p = xr.open_dataset("c.h5", group="posterior", engine="netcdf4")
s = xr.open_dataset("c.h5", group="sample_stats", engine="netcdf4")
w = xr.open_dataset("c.h5", group="warmup", engine="netcdf4")
def check(c, msg):
    global ok
    if not c: print("FAIL:", msg); ok = False
check(p["weights"].dims == ("chain", "draw", "weight"), "weights dims %s" % (p["weights"].dims,))
check(p["weights"].shape == (2, 25, 17), "weights shape %s" % (p["weights"].shape,))
check(list(p["weight"].values[:2]) == ["w_centre", "w_face"], "weight names %s" % p["weight"].values[:3])
check(p["mass_function"].dims == ("chain", "draw", "density_bin", "mass"), "mass_function dims")
check(p["mass_function"].shape == (2, 25, 5, 3), "mass_function shape")
for k in ("lp", "log_likelihood", "acceptance_rate", "step_size", "n_steps", "energy",
          "energy_error", "diverging", "wall_time"):
    check(k in s and s[k].dims == ("chain", "draw") and s[k].shape == (2, 25), "sample_stats " + k)
    check(k in w and w[k].shape == (2, 15), "warmup " + k)
check(s["diverging"].dtype == bool, "diverging is %s" % s["diverging"].dtype)
check(np.all(np.isfinite(s["lp"].values)), "lp finite")
# ln L = lp + |w|^2 / 200 (no monotone engine here: theta = w)
lnl = s["lp"].values + 0.5 * (p["weights"].values ** 2).sum(axis=2) / 100.0
check(np.allclose(lnl, s["log_likelihood"].values, rtol=1e-12), "log_likelihood = lp - prior")
with h5py.File("c.h5") as f:
    for a in ("grad_evals_warmup", "grad_evals_sampling", "grad_evals_map", "options",
              "code_version", "inverse_mass_matrix"):
        check(a in f.attrs, "root attribute " + a)
    check(f.attrs["grad_evals_sampling"] >= s["n_steps"].values.sum(), "gradient count")
    check(f.attrs["inverse_mass_matrix"].shape == (34,), "inverse mass matrix (2 x 17 diagonal)")
with h5py.File("lap.h5") as f:  # the Laplace start: a dense metric, 17 x 17 (one chain)
    check(f.attrs["inverse_mass_matrix"].shape == (289,), "Laplace start: inverse mass matrix %s"
          % (f.attrs["inverse_mass_matrix"].shape,))
    check(f.attrs["grad_evals_map"] >= 2 * 17, "Laplace start: 2 x 17 gradients counted")
    check(bool(np.isfinite(f["sample_stats/lp"][()]).all()), "Laplace start: lp finite")
p = xr.open_dataset("mc.h5", group="posterior")
names = list(p["weight"].values)
ok2 = p["weights"].shape == (1, 5, 28) and "w0_1.0_centre" in names
c = [names.index("w0_0.0_centre"), names.index("w0_1.0_centre")]
ok2 = ok2 and bool(np.all(p["weights"].values[:, :, c] > 0))  # monotone: softplus(t_c) > 0
check(ok2, "two-channel monotone run %s %s" % (p["weights"].shape, names[:6]))
# pooled: one inverse mass matrix for the 3 chains; adapting alone, they differ
import os
for fn, shared in (("p1.h5", True), ("pa.h5", False)):
    if os.environ.get("ASAN_OPTIONS"):
        break
    with h5py.File(fn) as f:
        m = f.attrs["inverse_mass_matrix"].reshape(3, 17)
        eq = bool((m == m[0]).all())
        check(eq == shared, "%s: the chains' metrics %s" % (fn, "differ" if shared else "agree"))
r = xr.open_dataset("r.h5", group="sample_stats")
check(r["lp"].shape == (2, 25) and bool(np.isfinite(r["lp"].values).all()),
      "resumed on another rank count: %s" % (r["lp"].shape,))
# the chain files that must be equal bit for bit (wall_time apart)
for pair in sys.argv[1].split():
    A, B = pair.split(":")
    a, b = h5py.File(A), h5py.File(B)
    diff = [g + "/" + k for g in ("posterior", "sample_stats", "warmup") for k in a[g]
            if k not in ("wall_time", "weight") and (a[g][k].shape != b[g][k].shape or
                                                    a[g][k][()].tobytes() != b[g][k][()].tobytes())]
    check(not diff, "%s and %s differ in %s" % (A, B, diff))
sys.exit(0 if ok else 1)
PYEOF

# ---- cerberus bench hmc: one CSV row per variant with finite ESS figures
run "$EXE" bench hmc -field mock.h5 -catalogue mock.h5 -chains 2 -warmup 10 -samples 20 \
  -variants diag,mams -rhat_every 20 -quiet
$PY - <<'PYEOF' || fail=1
import csv, math, sys
rows = list(csv.DictReader(open("out.txt")))
ok = [r["variant"] for r in rows] == ["diag", "mams"] and all(
    int(r["grads"]) > 0 and math.isfinite(float(r["ess_lp"])) and float(r["ess_mf_min"]) > 0
    and float(r["cpu_seconds"]) > 0 and float(r["map_seconds"]) > 0 and int(r["samples"]) == 20
    and (int(r["draws_to_rhat"]) == -1 or int(r["draws_to_rhat"]) == 20)
    and (float(r["seconds_to_rhat"]) == -1) == (int(r["grads_to_rhat"]) == -1)
    and float(r["rhat_lp"]) > 0.9 and float(r["rhat_weights_max"]) > 0.9
    and 0 < int(r["sampling_grads"]) < int(r["grads"])
    and abs(float(r["ess_lp_per_1000_sampling_grads"])
            - 1000 * float(r["ess_lp"]) / int(r["sampling_grads"]))
        <= 1000 * 0.05 / int(r["sampling_grads"]) + 1e-3 for r in rows)  # ess_lp has 1 decimal
if not ok: print("FAIL: bench hmc rows:", rows); sys.exit(1)
PYEOF

# ---- bad inputs, one by one
bad "box_size" bx.h5 "$EXE" infer -field mock.h5 -catalogue cat_box.h5 -o bx.h5
bad "-chains must be" b0.h5 "$EXE" infer $O -chains 0 -o b0.h5
bad "no checkpoint" "" "$EXE" infer $O -chains 2 -o nock.h5 -resume
bad "are for" ba.h5 "$EXE" infer $O -chains 1 -weights w2.h5 -o ba.h5
bad "option -seed differs" "" "$EXE" infer $O -chains 2 -o k.h5 -resume -seed 9
bad "-start file needs -weights" bs.h5 "$EXE" infer $O -start file -o bs.h5
bad "-laplace_metric needs -start map" bl.h5 "$EXE" infer $O -laplace_metric -o bl.h5
bad "no-such.h5" "" "$EXE" diagnose no-such.h5
bad "-mams_mean_steps_max: 0 not in" "" "$EXE" bench hmc -field mock.h5 -catalogue mock.h5 -mams_mean_steps_max 0
bad "-n_steps: 99999999999 not in [1, 1024]" "" "$EXE" bench hmc -field mock.h5 -catalogue mock.h5 -n_steps 99999999999
bad "-n_steps: 0 not in [1, 1024]" bn.h5 "$EXE" infer $O -chains 1 -n_steps 0 -o bn.h5
bad "-target_accept: 1.2 not in (0, 1)" bt.h5 "$EXE" infer $O -chains 1 -target_accept 1.2 -o bt.h5
bad "-target_accept: 0 not in (0, 1)" "" "$EXE" bench hmc -field mock.h5 -catalogue mock.h5 -target_accept 0
bad "-step_size must be positive (got 0)" be.h5 "$EXE" infer $O -chains 1 -step_size 0 -o be.h5
bad "-seed must be non-negative (got -1)" bsd.h5 "$EXE" infer $O -chains 1 -seed -1 -o bsd.h5
bad "-seed must be non-negative (got -2)" "" "$EXE" bench hmc -field mock.h5 -catalogue mock.h5 -seed -2
bad "-rhat_every must be at least 1 (got 0)" "" "$EXE" bench hmc -field mock.h5 -catalogue mock.h5 -rhat_every 0
bad "-laplace_metric needs a MAP start" "" "$EXE" bench hmc -field mock.h5 -catalogue mock.h5 -laplace_metric -map_starts 0
bad "-relative_bias needs -engine_monotone" br.h5 "$EXE" infer $O -relative_bias -o br.h5
bad "-relative_bias needs -engine_monotone" "" "$EXE" bench hmc -field mock.h5 -catalogue mock.h5 -relative_bias -engine_monotone
bad "-prior_sigma must be positive (got 0)" "" "$EXE" bench hmc -field mock.h5 -catalogue mock.h5 -prior_sigma 0
bad "-prior_sigma must be positive (got -2)" bp.h5 "$EXE" infer $O -prior_sigma -2 -o bp.h5
exit $fail
