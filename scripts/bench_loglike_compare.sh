#!/usr/bin/env bash
# bench_loglike_compare.sh BASE NEW [ROUNDS] [OUT.csv]: interleaved rounds of
# `cerberus bench loglike -N 64 -repeat 10` on 1 and 2 ranks for two cerberus binaries (a base
# and a new build), and of scripts/bench_loglike_torch.py on 1 and 2 threads when PyTorch is
# installed; then the median [range] of each (issue 15's before-and-after benchmark).
#   git archive a9eba34 | tar -x -C /tmp/base && (cd /tmp/base && ./scripts/build.sh build)
#   scripts/bench_loglike_compare.sh /tmp/base/build/cerberus build/cerberus 3
# Interleaving puts both builds under the same load; on a shared machine give several rounds.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BASE_CERBERUS NEW_CERBERUS [ROUNDS] [OUT.csv]" >&2; exit 2; }
base=$1 new=$2 rounds=${3:-3} out=${4:-bench_loglike_compare.csv}
for exe in "$base" "$new"; do
  [ -x "$exe" ] || { echo "bench_loglike_compare: '$exe' is not an executable" >&2; exit 2; }
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench_loglike_compare: ROUNDS '$rounds' is not a positive integer" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
torch=0
$PY -c "import torch" 2> /dev/null && torch=1
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
: > "$tmp"
for r in $(seq 1 "$rounds"); do
  for np in 1 2; do
    for which in base new; do
      exe=$base
      [ $which = new ] && exe=$new
      line=$(mpiexec -n $np "$exe" bench loglike -N 64 -repeat 10 | tail -1)
      echo "$which,$r,$line" >> "$tmp"
    done
    if [ $torch = 1 ]; then
      line=$($PY "$here/bench_loglike_torch.py" -N 64 -repeat 5 -threads $np | tail -1)
      echo "torch,$r,$line" >> "$tmp"
    fi
  done
done
mv "$tmp" "$out"
trap - EXIT
$PY - "$out" <<'PYEOF'
import sys, statistics as st
rows = {}
for l in open(sys.argv[1]):
    f = l.strip().split(",")
    which, d = f[0], f[2:]
    # cerberus: bench,n_grid,ranks,repeat,fwd_s,fwd_grad_s,...; torch: torch,n_grid,threads,repeat,fwd_s,fwd_grad_s,...
    rows.setdefault((which, int(d[2])), []).append((float(d[4]), float(d[5])))
print("%-6s %5s  %-22s %-22s %s" % ("build", "ranks", "forward ms", "fwd + both grads ms", "grad/fwd"))
for (which, np), v in sorted(rows.items()):
    def s(i):
        x = [a[i] * 1e3 for a in v]
        return "%.1f [%.1f-%.1f]" % (st.median(x), min(x), max(x))
    print("%-6s %5d  %-22s %-22s %.2f" % (which, np, s(0), s(1), st.median([a[1] / a[0] for a in v])))
PYEOF
echo "bench_loglike_compare: rows in $out"
