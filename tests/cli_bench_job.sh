#!/bin/bash
# cli_bench_job: jobs/bench.sh and scripts/plot_bench.py, the strong-scaling job.
#
# The job on a small grid at 3 ranks must write one CSV per benchmark with the header and a row
# for 1, 2 and 3 ranks (in that order), and the picture, and no FFTW wisdom file unless FFT_PLAN
# asks for measured plans; its bad settings (an unknown benchmark, a rank count that is not a
# number, an unknown FFT_PLAN) must each stop it with one line and leave no CSV. plot_bench.py
# must refuse a missing file, a file without rows and a non-numeric time with one line naming
# the file, and leave no picture.
. "$(dirname "$0")/cli_lib.sh" # EXE, Open MPI as root, cd to a temporary dir, run, bad
SRC=${CERBERUS_SRC:?CERBERUS_SRC not set}
PY=/usr/bin/python3
if ! $PY -c 'import numpy, matplotlib' 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 lacks numpy or matplotlib (./scripts/setup.sh installs them)"
  exit 77
fi
job() { env CERBERUS="$EXE" CERBERUS_ROOT="$SRC" "$@" bash "$SRC/jobs/bench.sh"; }

run job OUT="$T/o" SLURM_NTASKS=3 N_GRID=12 REPEAT=1
for b in fft lpt loglike memory; do
  if ! awk -F, -v b=$b 'NR == 1 { if ($1 != "bench") exit 1 }
                        NR > 1 { if ($1 != b || $3 != NR - 1) exit 1 }
                        END { if (NR != 4) exit 1 }' "o/bench_$b.csv" 2>/dev/null; then
    echo "FAIL: o/bench_$b.csv is not a header and rows for 1, 2, 3 ranks: $(cat "o/bench_$b.csv")"
    fail=1
  else
    echo "ok: bench_$b.csv has rows for 1, 2, 3 ranks"
  fi
done
[ -s o/bench_scaling.png ] || { echo "FAIL: no o/bench_scaling.png"; fail=1; }
grep -q "plot_bench: lpt at 3 ranks: forward + adjoint" out.txt ||
  { echo "FAIL: the job did not print the lpt ratios: $(cat out.txt)"; fail=1; }
ls o/*.tmp.* > /dev/null 2>&1 && { echo "FAIL: temporary files left in o/"; fail=1; }
[ -e o/fftw.wisdom ] && { echo "FAIL: FFT_PLAN=estimate wrote o/fftw.wisdom"; fail=1; }
# measured plans: the wisdom is kept beside the CSV
run job OUT="$T/m" SLURM_NTASKS=2 N_GRID=12 REPEAT=1 BENCH=lpt FFT_PLAN=measure
[ -s m/fftw.wisdom ] && [ "$(wc -l < m/bench_lpt.csv)" -eq 3 ] ||
  { echo "FAIL: FFT_PLAN=measure: no m/fftw.wisdom or not 2 rows: $(ls m)"; fail=1; }

BAD_LINE='.'
bad "bench.sh: BENCH: unknown benchmark 'fftw'" b1/ job OUT="$T/b1" BENCH=fftw
bad "bench.sh: SLURM_NTASKS must be a positive integer (got 'two')" b2/ \
  job OUT="$T/b2" SLURM_NTASKS=two
bad "bench.sh: FFT_PLAN must be estimate, measure or patient (got 'fast')" b3/ \
  job OUT="$T/b3" FFT_PLAN=fast

printf 'bench,n_grid,ranks\n' > empty.csv
awk -F, -v OFS=, 'NR == 3 { $10 = "abc" } { print }' o/bench_lpt.csv > nan.csv # chain_fwd_adj_s
bad "plot_bench: benchmark file 'nosuch.csv' not found" p1.png \
  $PY "$SRC/scripts/plot_bench.py" p1.png nosuch.csv
bad "plot_bench: benchmark file 'empty.csv' has no rows under its header" p2.png \
  $PY "$SRC/scripts/plot_bench.py" p2.png empty.csv
bad "plot_bench: benchmark file 'nan.csv' line 3: column chain_fwd_adj_s is 'abc'" p3.png \
  $PY "$SRC/scripts/plot_bench.py" p3.png nan.csv
exit $fail
