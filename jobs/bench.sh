#!/usr/bin/env bash
#SBATCH --job-name=cerberus-bench
#SBATCH --ntasks=2
#SBATCH --exclusive
#SBATCH --time=00:30:00
#SBATCH --output=cerberus-bench-%j.log
#
# jobs/bench.sh: strong scaling of Cerberus's benchmarks. Submit it as it is from the clone's
# top directory,
#
#   sbatch jobs/bench.sh                          # 1 and 2 ranks
#   sbatch --ntasks=64 jobs/bench.sh              # 1, 2, 4, ..., 64 ranks
#   sbatch --ntasks=64 --export=ALL,N_GRID=512 jobs/bench.sh
#
# or run it locally with plain bash:
#
#   ./jobs/bench.sh
#   SLURM_NTASKS=4 N_GRID=64 BENCH=lpt ./jobs/bench.sh
#
# For each benchmark in BENCH and each rank count 1, 2, 4, ... up to NTASKS (and NTASKS itself)
# it runs `cerberus bench NAME -n_grid N_GRID -repeat REPEAT` once and collects the CSV rows:
# $OUT/bench_NAME.csv holds the header and one row per rank count. Then
# scripts/plot_bench.py draws the speed-up of each against the rank count beside the ideal
# (and, for lpt, forward + adjoint in units of one FFT) in $OUT/bench_scaling.png, and the
# speed-ups are printed. What the columns mean: `cerberus bench NAME -help` and the comment at
# the top of src/bench_NAME.c. A rank count the grid cannot be split over (fewer planes than
# ranks) is skipped with a message. Files are written under a temporary name and renamed.
#
# Environment (all optional):
#   BENCH         benchmarks to run (default: "fft lpt loglike memory"; memory is the node's
#                 memory bandwidth, the yardstick for the others' speed-ups)
#   N_GRID        grid points per side (default: 128)
#   REPEAT        timed repetitions per run; each benchmark keeps its fastest (default: 10)
#   LPT_ORDER     1 or 2, for bench lpt (default: 1)
#   FFT_PLAN      FFTW planner, -fft_plan: estimate (default), measure or patient; the measured
#                 plans are kept in $OUT/fftw.wisdom and reused by later runs
#   OUT           output directory (default: out)
#   CERBERUS, SLURM_NTASKS, MPIEXEC, PYTHON: as for jobs/main.sh
set -euo pipefail

# To the clone's top (see jobs/launch.sh), and the launcher.
lib="${CERBERUS_ROOT:-${SLURM_SUBMIT_DIR:-$(dirname "${BASH_SOURCE[0]}")/..}}/jobs/launch.sh"
if [ ! -f "$lib" ]; then
  echo "bench.sh: $lib not found: submit from the clone's top, or set CERBERUS_ROOT" >&2
  exit 1
fi
. "$lib"
job_top "${BASH_SOURCE[0]}"

NTASKS=${SLURM_NTASKS:-2}
BENCH=${BENCH:-fft lpt loglike memory}
N_GRID=${N_GRID:-128}
REPEAT=${REPEAT:-10}
LPT_ORDER=${LPT_ORDER:-1}
FFT_PLAN=${FFT_PLAN:-estimate}
OUT=${OUT:-out}
CERBERUS=${CERBERUS:-build/cerberus}
PYTHON=${PYTHON:-/usr/bin/python3}

die() {
  echo "bench.sh: $*" >&2
  exit 1
}
[ -x "$CERBERUS" ] || die "no cerberus program at '$CERBERUS': build it with ./scripts/build.sh" \
  "(or set CERBERUS=/path/to/cerberus)"
[[ "$NTASKS" =~ ^[1-9][0-9]*$ ]] || die "SLURM_NTASKS must be a positive integer (got '$NTASKS')"
[[ "$N_GRID" =~ ^[1-9][0-9]*$ ]] || die "N_GRID must be a positive integer (got '$N_GRID')"
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer (got '$REPEAT')"
case $FFT_PLAN in estimate | measure | patient) ;; *)
  die "FFT_PLAN must be estimate, measure or patient (got '$FFT_PLAN')" ;;
esac
for b in $BENCH; do
  case $b in fft | lpt | loglike | memory) ;; *)
    die "BENCH: unknown benchmark '$b' (fft, lpt, loglike, memory)" ;;
  esac
done
mkdir -p "$OUT"

counts=()
for ((r = 1; r < NTASKS; r *= 2)); do counts+=("$r"); done
counts+=("$NTASKS")

echo "bench.sh: $N_GRID^3, rank counts ${counts[*]}, benchmarks: $BENCH, FFT plans:" \
  "$FFT_PLAN; outputs in $OUT/"
plan=(-fft_plan "$FFT_PLAN")
[ "$FFT_PLAN" = estimate ] || plan+=(-fft_wisdom "$OUT/fftw.wisdom")
csvs=()
for b in $BENCH; do
  extra=("${plan[@]}")
  [ "$b" = lpt ] && extra+=(-lpt_order "$LPT_ORDER")
  final="$OUT/bench_$b.csv"
  tmp="$final.tmp.$$"
  : >"$tmp"
  for r in "${counts[@]}"; do
    if [ "$r" -gt "$N_GRID" ]; then
      echo "bench.sh: $b at $r ranks skipped: a $N_GRID^3 grid has fewer planes than ranks"
      continue
    fi
    launcher "$r"
    echo "bench.sh: ${launch[*]} $CERBERUS bench $b -n_grid $N_GRID -repeat $REPEAT ${extra[*]}"
    if ! rows=$("${launch[@]}" "$CERBERUS" bench "$b" -n_grid "$N_GRID" -repeat "$REPEAT" \
      "${extra[@]}" -quiet); then
      rm -f "$tmp"
      die "bench $b at $r ranks failed"
    fi
    # the header once, then the row
    if [ -s "$tmp" ]; then tail -n 1 <<<"$rows" >>"$tmp"; else printf '%s\n' "$rows" >>"$tmp"; fi
  done
  mv "$tmp" "$final"
  csvs+=("$final")
done

echo "bench.sh: $PYTHON scripts/plot_bench.py $OUT/bench_scaling.png ${csvs[*]}"
"$PYTHON" scripts/plot_bench.py "$OUT/bench_scaling.png" "${csvs[@]}"
