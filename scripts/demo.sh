#!/usr/bin/env bash
# demo.sh: set up, build and run the main job on its embedded default, then show the results.
#
# Run from anywhere on a fresh Debian 12 machine:  ./scripts/demo.sh
#   1. scripts/setup.sh   installs the Debian packages that are missing
#   2. scripts/build.sh   builds build/cerberus
#   3. jobs/main.sh       runs the main job with 2 MPI ranks, outputs in out/
#   4. prints the key numbers and the paths of the pictures (out/*.png)
# Environment: OUT (default out), SLURM_NTASKS (ranks, default 2), as for jobs/main.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "demo: == set-up"
./scripts/setup.sh
echo "demo: == build"
./scripts/build.sh build
echo "demo: == main job"
export OUT=${OUT:-out}
CERBERUS=build/cerberus ./jobs/main.sh

echo "demo: == results"
# Each step of the job writes its key numbers to $OUT/summary.txt.
if [ -f "$OUT/summary.txt" ]; then sed 's/^/demo: /' "$OUT/summary.txt"; fi
shopt -s nullglob
pngs=("$OUT"/*.png)
if [ "${#pngs[@]}" -eq 0 ]; then
  echo "demo: no picture was made" >&2
  exit 1
fi
echo "demo: pictures:"
for p in "${pngs[@]}"; do echo "  $(cd "$(dirname "$p")" && pwd)/$(basename "$p")"; done
