#!/usr/bin/env bash
#SBATCH --job-name=cerberus-main
#SBATCH --ntasks=2
#SBATCH --time=00:30:00
#SBATCH --output=cerberus-main-%j.log
#
# jobs/main.sh: the main Cerberus job. Submit it as it is from the clone's top directory,
#
#   sbatch jobs/main.sh                 # SLURM: ranks from --ntasks, launched with srun
#   sbatch --ntasks=8 jobs/main.sh
#
# or run it locally with plain bash (what ./scripts/demo.sh does):
#
#   ./jobs/main.sh                      # 2 ranks through mpirun
#   SLURM_NTASKS=4 OUT=out4 ./jobs/main.sh
#
# Environment (all optional):
#   CERBERUS      the program (default: build/cerberus under the clone's top)
#   OUT           output directory (default: out)
#   PARAMS        options file for the initial conditions (default: params/default.opts)
#   SLURM_NTASKS  number of MPI ranks (default: 2; SLURM sets it)
#   MPIEXEC       launcher, given "-n NTASKS" (default: srun under SLURM, mpirun otherwise;
#                 e.g. MPIEXEC=mpiexec, or "srun --mpi=pmix" where the site wants it)
#   PYTHON        interpreter for the pictures (default: /usr/bin/python3)
#
# What it runs on its embedded default (a mock universe it makes itself): Gaussian initial
# conditions on a 64^3 grid in a 250 Mpc/h box, their measured power spectrum against the input
# one; a Sheth-Tormen mock halo catalogue with its picture; the power-law baseline's ln L on it;
# and a well-specified check of the neural engine (a mock drawn from the engine itself, ln L at
# the true and at zero weights, and the mass function in bins of density, as a picture). Each step is one function below; STEPS lists them in order.
# To add a step: write step_<name>() and add <name> to STEPS. Outputs of a step are the inputs
# of the next, all in $OUT; every output is written under a temporary name and renamed, so a
# failed step leaves no half-written file, and the job stops at the first failure.
set -euo pipefail

# To the clone's top (see jobs/launch.sh), and the launcher.
lib="${CERBERUS_ROOT:-${SLURM_SUBMIT_DIR:-$(dirname "${BASH_SOURCE[0]}")/..}}/jobs/launch.sh"
if [ ! -f "$lib" ]; then
  echo "main.sh: $lib not found: submit from the clone's top, or set CERBERUS_ROOT" >&2
  exit 1
fi
. "$lib"
job_top "${BASH_SOURCE[0]}"

NTASKS=${SLURM_NTASKS:-2}
OUT=${OUT:-out}
PARAMS=${PARAMS:-params/default.opts}
CERBERUS=${CERBERUS:-build/cerberus}
PYTHON=${PYTHON:-/usr/bin/python3}

if [ ! -x "$CERBERUS" ]; then
  echo "main.sh: no cerberus program at '$CERBERUS': build it with ./scripts/build.sh" \
    "(or set CERBERUS=/path/to/cerberus)" >&2
  exit 1
fi
if [ ! -f "$PARAMS" ]; then
  echo "main.sh: options file '$PARAMS' not found (set PARAMS=FILE)" >&2
  exit 1
fi
mkdir -p "$OUT"

# How to start NTASKS ranks (the launch array): see jobs/launch.sh.
launcher "$NTASKS"

# The key numbers of a step go to $OUT/summary.txt (./scripts/demo.sh prints it): pipe a
# command's output through `summary` to keep it there as well as in the log.
summary() { tee -a "$OUT/summary.txt"; }

# cerberus ARGS...: run one subcommand on all ranks.
cerberus() {
  echo "main.sh: ${launch[*]} $CERBERUS $*" >&2
  "${launch[@]}" "$CERBERUS" "$@"
}

# 1. Initial conditions: white noise and the linear density field.
step_ic() {
  cerberus ic -options_file "$PARAMS" -o "$OUT/ic.h5" -overwrite
}

# 2. The power spectrum of the linear field, against the input one (HDF5 and a text table).
step_pk() {
  cerberus pk "$OUT/ic.h5" -dataset delta_linear -o "$OUT/pk.h5" -overwrite
}

# 3. The picture of P(k).
step_plot_pk() {
  echo "main.sh: $PYTHON scripts/plot_pk.py $OUT/pk.h5 $OUT/pk.png"
  "$PYTHON" scripts/plot_pk.py "$OUT/pk.h5" "$OUT/pk.png" | summary
}

# 4. A mock universe from a truth the engine does not contain (MODEL.md section 6): Sheth-Tormen
#    halos with peak-background-split bias on the smoothed linear field, moved by LPT.
step_mock() {
  cerberus mock -options_file "$PARAMS" -truth st-pbs -o "$OUT/mock.h5" -overwrite | summary
}

# 5. Its picture: a slab of delta with its halos, and the mass function against the truth.
step_plot_mock() {
  echo "main.sh: $PYTHON scripts/plot_mock.py $OUT/mock.h5 $OUT/mock.png"
  "$PYTHON" scripts/plot_mock.py "$OUT/mock.h5" "$OUT/mock.png" | summary
}

# 6. The classical baseline on that mock: ln L of the power-law bias at its zero weights, and
#    the exact gradients with respect to the weights and to delta in every voxel.
step_loglike_powerlaw() {
  cerberus weights init -model powerlaw -o "$OUT/powerlaw_weights.h5" -overwrite
  cerberus loglike -field "$OUT/mock.h5" -catalogue "$OUT/mock.h5" \
    -weights "$OUT/powerlaw_weights.h5" -o "$OUT/loglike_powerlaw.h5" -overwrite | summary
}

# 7. A well-specified check of the neural engine (MODEL.md sections 3-5): halos drawn from the
#    engine itself with known weights; ln L at those weights must beat ln L at zero weights, and
#    the model's mass function in bins of density must follow the catalogue's.
step_engine_truth() {
  cerberus weights init -random -seed 3 -scale 0.2 -o "$OUT/truth_weights.h5" -overwrite
  cerberus weights init -o "$OUT/zero_weights.h5" -overwrite
  cerberus mock -options_file "$PARAMS" -truth npe -weights "$OUT/truth_weights.h5" \
    -o "$OUT/mock_npe.h5" -overwrite
  for w in truth zero; do
    echo "ln L of the engine-truth mock at the $w weights:" | summary
    cerberus loglike -field "$OUT/mock_npe.h5" -catalogue "$OUT/mock_npe.h5" \
      -weights "$OUT/${w}_weights.h5" -o "$OUT/loglike_npe_$w.h5" -overwrite | summary
  done
  cerberus hmf -field "$OUT/mock_npe.h5" -catalogue "$OUT/mock_npe.h5" \
    -weights "$OUT/truth_weights.h5" -o "$OUT/hmf_npe.h5" -overwrite
  echo "main.sh: $PYTHON scripts/plot_hmf.py $OUT/hmf_npe.h5 $OUT/hmf_npe.png"
  "$PYTHON" scripts/plot_hmf.py "$OUT/hmf_npe.h5" "$OUT/hmf_npe.png" | summary
}

# 8. Head 1, neural bias inference: HMC on the engine's weights given the engine-truth mock
#    (params/infer.opts, shortened: INFER_CHAINS x (INFER_WARMUP + INFER_SAMPLES), quasi-Newton
#    metric, MAP starts by PETSc TAO); the diagnostics table (R-hat, ESS of lp, of the binned
#    mass function and of the weights) and the picture of the chains and the posterior mass
#    function against the catalogue.
step_infer() {
  cerberus infer -options_file params/infer.opts -field "$OUT/mock_npe.h5" \
    -catalogue "$OUT/mock_npe.h5" -engine_monotone false -chains "${INFER_CHAINS:-2}" \
    -warmup "${INFER_WARMUP:-100}" -samples "${INFER_SAMPLES:-100}" -metric bfgs \
    -truth_weights "$OUT/truth_weights.h5" -progress_every 25 -o "$OUT/chain.h5" -overwrite |
    summary
  echo "main.sh: $PYTHON scripts/plot_chain.py $OUT/chain.h5 $OUT/chain.png"
  "$PYTHON" scripts/plot_chain.py "$OUT/chain.h5" "$OUT/chain.png" "$OUT/mock_npe.h5" \
    "$OUT/mock_npe.h5" | summary
}

# 9. Head 2, the IMNN: a network trained on Gaussian random fields (16^3, band powers) to
#    compress a field to two numbers, with the fraction of the exact Fisher information it
#    reaches, and the picture of its training and of its estimates against the truth.
step_imnn() {
  # (the opts file's 40000 + 50000 simulations are for 32^3; 16^3 has fewer band powers, and a
  # quarter of them keeps the demo short)
  cerberus imnn train -options_file params/imnn_grf.opts -n_grid 16 -n_s 10000 -n_val 10000 \
    -o "$OUT/imnn_grf.h5" -overwrite | grep -E "fraction|best epoch" | summary
  echo "main.sh: $PYTHON scripts/plot_imnn.py $OUT/imnn_grf.h5 $OUT/imnn.png"
  "$PYTHON" scripts/plot_imnn.py "$OUT/imnn_grf.h5" "$OUT/imnn.png" | summary
}

# 10. Head 3, likelihood-free inference: a population Monte Carlo ABC campaign on the same
#     random fields over rank groups (params/abc_grf.opts), its posterior against the exact one.
step_abc() {
  cerberus abc run -options_file params/abc_grf.opts -n_grid 16 -o "$OUT/abc.h5" -overwrite \
    >/dev/null
  cerberus abc summary "$OUT/abc.h5" | summary
  echo "main.sh: $PYTHON scripts/plot_abc.py $OUT/abc.h5 $OUT/abc.png"
  "$PYTHON" scripts/plot_abc.py "$OUT/abc.h5" "$OUT/abc.png" | summary
}

STEPS=(ic pk plot_pk mock plot_mock loglike_powerlaw engine_truth infer imnn abc)

echo "main.sh: $NTASKS ranks, outputs in $OUT/, steps: ${STEPS[*]}"
start=$SECONDS
: >"$OUT/summary.txt"
for step in "${STEPS[@]}"; do
  echo "main.sh: == step $step"
  t0=$SECONDS
  "step_$step"
  echo "main.sh: step $step done in $((SECONDS - t0)) s"
done
echo "main.sh: all steps done in $((SECONDS - start)) s; outputs:"
ls -l "$OUT"
