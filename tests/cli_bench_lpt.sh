#!/bin/bash
# cli_bench_lpt: `cerberus bench lpt` from the command line.
#
# A small run on 1 and 2 ranks prints the CSV header and one row with every column, positive
# times and memory, for 1LPT and 2LPT; -scaling on 3 (4) ranks prints a row for each of 1, 2 and
# 3 (4) ranks. Then each bad input once: -lpt_order outside {1, 2}, an odd and a non-positive
# grid, -repeat 0, a malformed value. Each must exit non-zero with exactly one line from
# cerberus naming the option.
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad

for np in 1 2; do
  for order in 1 2; do
    if ! mpiexec -n $np "$EXE" bench lpt -n_grid 24 -repeat 2 -lpt_order $order > out.txt 2> err.txt; then
      echo "FAIL: bench lpt on $np rank(s), order $order: $(cat err.txt)"; fail=1; continue
    fi
    # header + one row, same number of fields, row starts lpt,24,np,2,order and all numbers > 0
    if ! awk -F, -v np=$np -v order=$order '
        NR == 1 { nh = NF; if ($1 != "bench" || $NF != "net_bytes_per_voxel") exit 1 }
        NR == 2 { if (NF != nh || $1 != "lpt" || $2 != 24 || $3 != np || $4 != 2 || $5 != order) exit 1
                  for (i = 6; i <= NF; i++) if (!($i + 0 > 0)) exit 1 }
        END { if (NR != 2) exit 1 }' out.txt; then
      echo "FAIL: bench lpt on $np rank(s), order $order printed: $(cat out.txt)"; fail=1
    else
      echo "ok: $(tail -1 out.txt)"
    fi
  done
done

# -scaling: rows for 1, 2, 3 ranks from one run on 3, and for 1, 2, 4 from one on 4, each
# complete and positive
for np in 3 4; do
  want="1 2 $np"
  if ! mpiexec -n $np "$EXE" bench lpt -n_grid 24 -repeat 1 -scaling > out.txt 2> err.txt; then
    echo "FAIL: bench lpt -scaling on $np ranks: $(cat err.txt)"; fail=1
  elif ! awk -F, -v want="$want" '
        NR == 1 { nh = NF; if ($1 != "bench" || $NF != "net_bytes_per_voxel") exit 1 }
        NR > 1 { if (NF != nh || $1 != "lpt") exit 1; got = got (NR > 2 ? " " : "") $3
                 for (i = 6; i <= NF; i++) if (!($i + 0 > 0)) exit 1 }
        END { if (got != want) exit 1 }' out.txt; then
    echo "FAIL: bench lpt -scaling on $np ranks printed: $(cat out.txt)"; fail=1
  else
    echo "ok: -scaling on $np ranks gives rows for $want ranks"
  fi
done

# -N, as the issue spells the benchmark, is the grid size too
if ! mpiexec -n 1 "$EXE" bench lpt -N 16 -repeat 1 > out.txt 2> err.txt || \
   ! awk -F, 'NR == 2 && $2 == 16 { ok = 1 } END { exit !ok }' out.txt; then
  echo "FAIL: bench lpt -N 16: $(cat out.txt err.txt)"; fail=1
else
  echo "ok: -N 16 gives n_grid 16"
fi

# bench writes no file: no output to check ("")
bad "-lpt_order" "" mpiexec -n 2 "$EXE" bench lpt -n_grid 16 -lpt_order 3
bad "-lpt_order" "" mpiexec -n 1 "$EXE" bench lpt -n_grid 16 -lpt_order 0
bad "-n_grid" "" mpiexec -n 1 "$EXE" bench lpt -n_grid 15
bad "-n_grid" "" mpiexec -n 1 "$EXE" bench lpt -n_grid -4
bad "-repeat" "" mpiexec -n 1 "$EXE" bench lpt -n_grid 16 -repeat 0
bad "-lpt_order" "" mpiexec -n 1 "$EXE" bench lpt -n_grid 16 -lpt_order two
bad "cannot be split over 3 ranks" "" mpiexec -n 3 "$EXE" bench lpt -n_grid 4 -scaling
exit $fail
