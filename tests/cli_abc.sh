#!/bin/bash
# cli_abc: `cerberus abc observe | run | summary` and scripts/plot_abc.py from the command line:
# a campaign from an observed-data file equals the one from the same simulation given as
# -theta_true; params/abc_grf.opts runs (shrunk) on 2 groups and its picture is drawn; a
# campaign stopped by SIGTERM (mpiexec, 2 groups) and one killed with SIGKILL (a torn journal)
# both resume (on 1 group) to the same posterior as a straight run; then every bad input of
# issue 14 provoked once; `bench abc` and scripts/abc_numpy_mpi4py.py run on a tiny grid. h5py makes the fake network file (skipped, exit 77, without it).
PY=/usr/bin/python3
$PY -c "import h5py, numpy, matplotlib" 2>/dev/null || { echo "SKIP: python3 with h5py, numpy, matplotlib needed"; exit 77; }
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad
SRC=${CERBERUS_SRC:?CERBERUS_SRC not set}

# posterior lines of `abc summary` without the clock
posterior() { "$EXE" abc summary "$1" 2>&1 | cut -c15- | grep -A3 '^posterior'; }

# 1. observed data from a file = from -theta_true
G="-simulator gaussian -prior_lower 0.1 -prior_upper 5 -n_particles 300 -n_initial 1000 -criterion 0.1"
run "$EXE" abc observe -simulator gaussian -theta_true 1.7 -obs_seed 3 -o obs_g.h5
run "$EXE" abc run $G -obs_file obs_g.h5 -o g_file.h5
run "$EXE" abc run $G -theta_true 1.7 -obs_seed 3 -o g_sim.h5
pf=$(posterior g_file.h5)
ps=$(posterior g_sim.h5)
if [ "$pf" != "$ps" ] || [ -z "$ps" ]; then
  echo "FAIL: the campaign from obs_g.h5 differs from the one at -theta_true"; fail=1
fi
run "$EXE" abc summary g_file.h5
grep -q "complete, " out.txt || { echo "FAIL: summary does not say complete: $(cat out.txt)"; fail=1; }
grep -q "^.*exact " out.txt || { echo "FAIL: no exact posterior in the summary"; fail=1; }
[ -e g_file.h5.journal ] && { echo "FAIL: the journal of a finished campaign is left"; fail=1; }
# rejection alone, with a fixed epsilon: one round, every kept distance below it
run "$EXE" abc run $G -theta_true 1.7 -obs_seed 3 -method rejection -epsilon 0.5 -o rej.h5
$PY - <<'PYEOF' || fail=1
import h5py, numpy as np, sys
with h5py.File("rej.h5") as f:
    d = np.array(f["posterior/distance"]); n = int(f.attrs["n_rounds"])
    allrho = np.array(f["sims/distance"])
if n != 1 or len(d) < 2 or d.max() >= 0.5 or len(d) != np.sum(allrho < 0.5):
    print("FAIL: rejection with epsilon 0.5:", n, len(d), d.max(), np.sum(allrho < 0.5)); sys.exit(1)
PYEOF

# 2. the options file, shrunk, on 2 groups, and its picture
run mpiexec -n 2 "$EXE" abc run -options_file "$SRC/params/abc_grf.opts" -n_grid 8 -n_initial 300 \
  -n_particles 100 -max_rounds 2 -o grf.h5
run $PY "$SRC/scripts/plot_abc.py" grf.h5 grf.png
[ -s grf.png ] || { echo "FAIL: no picture"; fail=1; }

# 3. stop and resume: SIGTERM to 2 groups, SIGKILL to one process; both resumed on 1 group
A="abc run -simulator grf -n_grid 16 -prior_lower 0.6,0.1 -prior_upper 1.6,0.9 -theta_true 1.05,0.45
   -obs_seed 3 -n_particles 200 -n_initial 20000 -criterion 0.1 -exact_grid 0 -quiet"
run "$EXE" $A -o straight.h5
journal_records() { echo $(( ($(stat -c %s "$1" 2> /dev/null || echo 4104) - 4104) / 184 )); }
wait_for() { # wait until the journal $1 holds $2 records (at most 30 s; polled often: on an
  # idle machine the 20000 draws of round 0 take about 2 s, and the signal must land inside)
  for _ in $(seq 1500); do [ "$(journal_records "$1")" -ge "$2" ] && return 0; sleep 0.02; done
  return 1
}
mpiexec -n 2 "$EXE" $A -o term.h5 > term.log 2>&1 &
pid=$!
wait_for term.h5.journal 1 || { echo "FAIL: the campaign did not start"; fail=1; }
kill -TERM $pid
wait $pid
[ -e term.h5 ] && [ -e term.h5.journal ] || { echo "FAIL: no file or journal after SIGTERM"; fail=1; }
run "$EXE" abc summary term.h5
grep -q INCOMPLETE out.txt || { echo "FAIL: the stopped campaign is not marked incomplete"; fail=1; }
"$EXE" $A -o kill.h5 > kill.log 2>&1 &
pid=$!
wait_for kill.h5.journal 1 || { echo "FAIL: the campaign did not start"; fail=1; }
kill -KILL $pid
wait $pid 2> /dev/null
pstraight=$(posterior straight.h5)
for f in term kill; do
  run "$EXE" $A -o $f.h5 -resume
  pr=$(posterior $f.h5)
  if [ "$pr" != "$pstraight" ] || [ -z "$pr" ]; then
    echo "FAIL: resumed after $f: $pr vs straight $pstraight"; fail=1
  fi
  ls $f.h5.* > /dev/null 2>&1 && { echo "FAIL: $f: leftovers $(ls $f.h5.*)"; fail=1; }
done

# 4. an IMNN network (issue 13) as the compressor: a small band-power network trained on grf 16^3,
# then a campaign whose posterior means land within 0.3 sd of the exact ones
run "$EXE" imnn train -simulator grf -n_grid 16 -front bandpower -hidden 16:softplus -n_s 400 \
  -n_d 200 -n_val 400 -n_d_val 200 -dtheta 0.02,0.02 -epochs 60 -patience 20 -learning_rate 0.01 \
  -seed 3 -n_test 10 -o net16.h5
run "$EXE" $A -compressor imnn -network net16.h5 -exact_grid 41 -o imnn.h5
"$EXE" abc summary imnn.h5 > sum.txt 2>&1
$PY - <<'PYEOF' || fail=1
import sys
rows = [l.split("]", 1)[-1].split() for l in open("sum.txt")]  # without the clock
abc = {r[0]: (float(r[1]), float(r[2])) for r in rows if len(r) > 2 and r[0] in ("A", "B")}
ex = [(float(r[2]), float(r[3])) for r in rows if len(r) > 3 and r[0] == "exact"]
if len(abc) != 2 or len(ex) != 2:
    print("FAIL: imnn campaign summary:", open("sum.txt").read()); sys.exit(1)
for (m, s), (em, es) in zip((abc["A"], abc["B"]), ex):
    if abs(m - em) > 0.3 * es or abs(s / es - 1) > 0.3:
        print(f"FAIL: imnn campaign: {m} +- {s} vs exact {em} +- {es}"); sys.exit(1)
PYEOF

# 5. the benchmark and the NumPy yardstick run (tiny)
run mpiexec -n 2 "$EXE" bench abc -n_grid 8 -n_sims 20 -repeat 1
[ "$(grep -c '^abc,8,' out.txt)" -eq 2 ] || { echo "FAIL: bench abc rows: $(cat out.txt)"; fail=1; }
run $PY "$SRC/scripts/abc_numpy_mpi4py.py" -n_grid 8 -n_sims 10 -repeat 1
grep -q '^abc_numpy,8,1,10,' out.txt || { echo "FAIL: abc_numpy_mpi4py.py: $(cat out.txt)"; fail=1; }

# 6. bad inputs, one by one
$PY - <<'PYEOF'
import h5py
with h5py.File("net_gauss.h5", "w") as f:
    f.attrs["model"] = "imnn"; f.attrs["simulator"] = "gaussian"
with h5py.File("obs_vec.h5", "w") as f:
    f["data"] = [1.0, 2.0, 3.0]
PYEOF
run "$EXE" abc observe -simulator grf -n_grid 8 -theta_true 1,0.5 -o obs_grf8.h5
bad "-prior_lower 2 is not below -prior_upper 1" bad1.h5 \
  "$EXE" abc run $G -prior_lower 2 -prior_upper 1 -theta_true 1.2 -o bad1.h5
bad "-group_size 3 does not divide the 2 MPI ranks" bad2.h5 \
  mpiexec -n 2 "$EXE" abc run $G -theta_true 1.2 -group_size 3 -o bad2.h5
bad "has shape 8x8x8, expected 16^3" bad3.h5 \
  "$EXE" abc run -simulator grf -n_grid 16 -prior_lower 0.5,0 -prior_upper 2,1 -obs_file obs_grf8.h5 -o bad3.h5
bad "3 x 1 values, simulator 'gaussian' makes a vector of 10" bad4.h5 \
  "$EXE" abc run $G -obs_file obs_vec.h5 -o bad4.h5
bad "was trained for simulator 'gaussian', not for 'grf'" bad5.h5 \
  "$EXE" abc run -simulator grf -n_grid 8 -prior_lower 0.5,0 -prior_upper 2,1 -theta_true 1,0.5 \
  -compressor imnn -network net_gauss.h5 -o bad5.h5
bad "unknown simulator 'grff' (known: gaussian, grf, lpt)" bad6.h5 \
  "$EXE" abc run -simulator grff -prior_lower 0.5 -prior_upper 2 -theta_true 1 -o bad6.h5
bad "give the observed data as -obs_file FILE or as -theta_true" bad7.h5 \
  "$EXE" abc run $G -o bad7.h5
bad "-resume: no journal 'straight.h5.journal'" "" \
  "$EXE" $A -o straight.h5 -resume
bad "-compressor score needs a simulator with an exact likelihood" bad8.h5 \
  "$EXE" abc run -simulator lpt -n_grid 8 -prior_lower 0.2,0.6 -prior_upper 0.4,1 -theta_true 0.3,0.8 -o bad8.h5
bad "-epsilon 1e-09: 0 of the 1000 prior draws fall below it" "" \
  "$EXE" abc run $G -theta_true 1.7 -method rejection -epsilon 1e-9 -o bad9.h5
exit $fail
