#!/bin/bash
# cli_bench_memory: `cerberus bench memory` from the command line.
#
# On 1 and 2 ranks it prints the CSV header and one row: memory,n_grid,ranks,repeat and
# positive times and bandwidths, the per-rank bandwidth the total over the ranks; -scaling on
# 3 (4) ranks prints a row for each of 1, 2 and 3 (4) ranks. Then each bad input once: an odd
# and a non-positive grid, -repeat 0, a malformed -scaling, a grid that cannot be split. Each
# must exit non-zero with exactly one line from cerberus naming the option; so must a grid too
# large for the node's memory, for bench memory, fft and lpt.
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad

# rows FILE WANT: the header, then one complete row per rank count in WANT, all values positive
rows() {
  awk -F, -v want="$2" '
    NR == 1 { if ($0 != "bench,n_grid,ranks,repeat,triad_s,gbytes_per_s,gbytes_per_s_per_rank") exit 1 }
    NR > 1 { if (NF != 7 || $1 != "memory" || $2 != 32 || $4 != 3) exit 1
             got = got (NR > 2 ? " " : "") $3
             for (i = 5; i <= NF; i++) if (!($i + 0 > 0)) exit 1
             if ($7 < 0.999 * $6 / $3 || $7 > 1.001 * $6 / $3) exit 1 }
    END { if (got != want) exit 1 }' "$1"
}

# ranks, then the rows expected: plain runs on 1 and 2, -scaling on 3 and 4
for spec in "1:1" "2:2" "3:1 2 3" "4:1 2 4"; do
  np=${spec%%:*} want=${spec#*:} opt=()
  [ "$np" -gt 2 ] && opt=(-scaling)
  if ! mpiexec -n "$np" "$EXE" bench memory -n_grid 32 -repeat 3 "${opt[@]}" > out.txt 2> err.txt; then
    echo "FAIL: bench memory ${opt[*]} on $np rank(s): $(cat err.txt)"; fail=1
  elif ! rows out.txt "$want"; then
    echo "FAIL: bench memory ${opt[*]} on $np rank(s) printed: $(cat out.txt)"; fail=1
  else
    echo "ok: bench memory ${opt[*]} on $np rank(s) gives rows for $want: $(tail -1 out.txt)"
  fi
done

# a grid that needs about twice the memory available (but whose first allocation succeeds):
# refused by name before any page is touched, rather than killed by the kernel
avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo 2>/dev/null)
if [ -n "$avail_kb" ]; then
  big=$(awk -v kb="$avail_kb" 'BEGIN { n = int((2 * kb * 1024 / 33) ^ (1 / 3)); print n + n % 2 }')
  for b in memory fft lpt; do
    # without meson's MALLOC_PERTURB_, which would fill (touch) the field's buffer first
    bad "-n_grid $big is too large for bench $b" "" \
      env -u MALLOC_PERTURB_ mpiexec -n 2 "$EXE" bench $b -n_grid "$big" -repeat 1
  done
else
  echo "note: no MemAvailable in /proc/meminfo here: the too-large grid is not checked"
fi
bad "-n_grid" "" mpiexec -n 1 "$EXE" bench memory -n_grid 15
bad "-n_grid" "" mpiexec -n 1 "$EXE" bench memory -n_grid -4
bad "-repeat" "" mpiexec -n 2 "$EXE" bench memory -n_grid 16 -repeat 0
bad "-scaling" "" mpiexec -n 1 "$EXE" bench memory -n_grid 16 -scaling maybe
bad "cannot be split over 3 ranks" "" mpiexec -n 3 "$EXE" bench memory -n_grid 4 -scaling
exit $fail
