#!/bin/bash
# cli_infer_truth: issue 12's end-to-end check, in the suite. jobs/infer_truth.sh as a user runs
# it: a 32^3 mock drawn from the engine itself (random true weights, -truth npe), `cerberus
# infer` on 2 ranks (4 chains, quasi-Newton metric, standardised features, fixed seeds), and the
# posterior binned mass function, five density bins at three masses, must hold the truth (the
# mass function at the true weights) in its 95% band: 15 of 15. The job exits 1 when a value
# falls outside. Then the chain file's log_likelihood must be ln L at the drawn weights
# (`cerberus loglike`), which checks that lp minus the prior and the Jacobian of the sampled
# parametrisation is the likelihood. Normal build only (about a minute).
PY=/usr/bin/python3
$PY -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: python3 with h5py and numpy needed"; exit 77; }
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad
JOB="$(cd "$(dirname "$0")/.." && pwd)/jobs/infer_truth.sh"
if ! SLURM_NTASKS=2 OUT="$T/it" CERBERUS="$EXE" MPIEXEC=mpiexec "$JOB" > job.txt 2>&1; then
  echo "FAIL: jobs/infer_truth.sh:"
  cat job.txt
  fail=1
fi
grep '^OUT\|^ok\|infer_truth:' job.txt
grep -q '^infer_truth: 15 of 15 binned mass-function values hold the truth' job.txt ||
  { echo "FAIL: not 15 of 15 in band"; fail=1; }
# ln L at the last draw of chain 2, written as a weights file
$PY - it/chain.h5 it/truth.h5 w.h5 <<'PYEOF' || fail=1
import sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as f:
    w = f["posterior/weights"][2, -1, :]
    ll = f["sample_stats/log_likelihood"][2, -1]
with h5py.File(sys.argv[2]) as t, h5py.File(sys.argv[3], "w") as o:
    for k, v in t.attrs.items():
        o.attrs[k] = v
    for k in t:
        t.copy(k, o)
    o["weights"][...] = w
open("ll.txt", "w").write("%.12f\n" % ll)
PYEOF
run mpiexec -n 2 "$EXE" loglike -field it/mock.h5 -catalogue it/mock.h5 -weights w.h5 -o ll.h5
got=$(grep '^ln L = ' out.txt | sed 's/ln L = //')
$PY -c "
import sys
a, b = float('$got'), float(open('ll.txt').read())
ok = abs(a - b) <= 1e-7 * abs(a)
print('%s: chain log_likelihood %.6f, loglike %.6f' % ('ok' if ok else 'FAIL', b, a))
sys.exit(0 if ok else 1)" || fail=1
exit $fail
