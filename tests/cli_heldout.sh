#!/bin/bash
# cli_heldout: `cerberus mock -halo_seed` and its truth_ln_l attribute, and `cerberus bench
# heldout` (the held-out ln L gain of issue 12) on a 12^3 engine-truth mock, cheaply:
#  - two halo seeds of one universe give the same /delta and different halos;
#  - truth_ln_l, the truth's own ln L of its catalogue (linear in ln M between the sampler's
#    grid points), agrees with `cerberus loglike` at the true weights (the exact mixture) to
#    the mass grid's interpolation error, and is the same on 1 and 2 ranks;
#  - bench heldout: a header and one row per model; the power law's gain is 0; ln L_B of each
#    fit (-o_prefix) equals `cerberus loglike` of B at the written weights; the truth columns
#    are the files' attributes; the same rows on 2 ranks;
#  - bad inputs: a held-out mock of another universe, no -heldout, a bad model, -map_starts 0,
#    -halo_seed -1.
PY=/usr/bin/python3
$PY -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: python3 with h5py and numpy needed"; exit 77; }
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad
G=(-n_grid 12 -box_size 60 -truth npe -weights tw.h5)
run "$EXE" weights init -random -seed 3 -scale 0.2 -o tw.h5
run "$EXE" mock "${G[@]}" -seed 4 -o a.h5
run "$EXE" mock "${G[@]}" -seed 4 -halo_seed 9 -o b.h5
run mpiexec -n 2 "$EXE" mock "${G[@]}" -seed 4 -halo_seed 9 -o b2.h5
run "$EXE" mock "${G[@]}" -seed 5 -o other.h5
run "$EXE" loglike -field b.h5 -catalogue b.h5 -weights tw.h5 -o lb.h5
ll=$(grep '^ln L = ' out.txt | sed 's/ln L = //')
$PY - "$ll" <<'PYEOF' || fail=1
import h5py, numpy as np, sys
ll = float(sys.argv[1])
with h5py.File("a.h5") as a, h5py.File("b.h5") as b, h5py.File("b2.h5") as b2:
    ok = np.array_equal(a["delta"][()], b["delta"][()])
    na, nb = len(a["halos/mass"]), len(b["halos/mass"])
    ok &= na > 50 and nb > 50 and not (na == nb and np.array_equal(a["halos/mass"][()], b["halos/mass"][()]))
    print(("ok" if ok else "FAIL") + ": same delta, other halos (%d, %d)" % (na, nb))
    t, t2 = b.attrs["truth_ln_l"], b2.attrs["truth_ln_l"]
    good = abs(t - ll) < 2e-5 * nb and abs(t - t2) < 1e-9 * abs(t) and b.attrs["halo_seed"] == 9
    print(("ok" if good else "FAIL") + ": truth_ln_l %.6f (2 ranks %.6f), loglike at the truth %.6f"
          % (t, t2, ll))
sys.exit(0 if ok and good else 1)
PYEOF

H=(bench heldout -field a.h5 -catalogue a.h5 -heldout b.h5 -map_starts 1 -map_iterations 25)
run "$EXE" "${H[@]}" -models powerlaw/3:0:1:softplus -o_prefix fit
grep -E "^(bench|heldout)," out.txt > rows1.txt
for i in 0 1; do
  run "$EXE" loglike -field b.h5 -catalogue b.h5 -weights fit$i.h5 -o l$i.h5
  grep '^ln L = ' out.txt | sed 's/ln L = //' > ll$i.txt
done
run mpiexec -n 2 "$EXE" "${H[@]}" -models powerlaw/3:0:1:softplus
grep -E "^(bench|heldout)," out.txt > rows2.txt
$PY - <<'PYEOF' || fail=1
import csv, h5py, sys
rows = list(csv.DictReader(open("rows1.txt")))
rows2 = list(csv.DictReader(open("rows2.txt")))
ok = [r["model"] for r in rows] == ["powerlaw", "3:0:1:softplus"] and len(rows2) == 2
ok &= [r["n_weights"] for r in rows] == ["7", "17"]
with h5py.File("a.h5") as a, h5py.File("b.h5") as b:
    ta, tb, nb = a.attrs["truth_ln_l"], b.attrs["truth_ln_l"], len(b["halos/mass"])
for i, r in enumerate(rows):
    ll = float(open("ll%d.txt" % i).read())
    good = abs(float(r["lnl_b"]) - ll) < 1e-3 and int(r["halos_b"]) == nb
    good &= abs(float(r["lnl_a_truth"]) - ta) < 1e-3 and abs(float(r["lnl_b_truth"]) - tb) < 1e-3
    gain = (float(r["lnl_b"]) - float(rows[0]["lnl_b"])) / (tb - float(rows[0]["lnl_b"]))
    good &= abs(float(r["gain"]) - gain) < 1e-3 and (i > 0 or float(r["gain"]) == 0)
    good &= abs(float(r["lnl_b"]) - float(rows2[i]["lnl_b"])) < 1e-6 * abs(ll)
    print(("ok" if good else "FAIL") + ": %s: ln L_B %s (loglike %.4f, 2 ranks %s), gain %s"
          % (r["model"], r["lnl_b"], ll, rows2[i]["lnl_b"], r["gain"]))
    ok &= good
sys.exit(0 if ok else 1)
PYEOF

bad "its /delta differs from the field's" "" "$EXE" "${H[@]}" -heldout other.h5
bad "-heldout: the held-out catalogue B is required" "" "$EXE" bench heldout -field a.h5 -catalogue a.h5
bad "-models" "" "$EXE" "${H[@]}" -models powerlaw/3:0:1:nosuch
bad "-map_starts must be at least 1 (got 0)" "" "$EXE" "${H[@]}" -map_starts 0
bad "-halo_seed must be zero or positive (got -1)" bad.h5 "$EXE" mock "${G[@]}" -halo_seed -1 -o bad.h5
exit $fail
