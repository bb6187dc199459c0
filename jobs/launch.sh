# jobs/launch.sh: where the job scripts run and how they start MPI ranks. Sourced by
# jobs/main.sh and jobs/bench.sh (from $CERBERUS_ROOT, else from the directory a SLURM job was
# submitted from, else beside the script); not a job of its own.
#
# job_top SCRIPT sets TOP to the clone's top and cd's there: $CERBERUS_ROOT if set; inside a
# SLURM job the directory it was submitted from (SLURM runs a copy of the script from its spool
# directory); otherwise the directory above SCRIPT.
job_top() {
  if [ -n "${SLURM_JOB_ID:-}" ] && [ -n "${SLURM_SUBMIT_DIR:-}" ]; then
    TOP=${CERBERUS_ROOT:-$SLURM_SUBMIT_DIR}
  else
    TOP=${CERBERUS_ROOT:-$(cd "$(dirname "$1")/.." && pwd)}
  fi
  cd "$TOP"
}
#
# launcher N sets the array `launch` to the command that starts N ranks: $MPIEXEC if given
# (it may hold arguments: "srun --mpi=pmix"), srun inside a SLURM allocation, mpirun
# otherwise. With mpirun or mpiexec (Open MPI on a workstation, CI, containers) it allows more
# ranks than cores and running as root, and turns off the cross-memory attach that containers
# often forbid between local ranks (unless the environment already chose).
launcher() {
  local n=$1
  if [ -z "${MPIEXEC:-}" ] && [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then
    launch=(srun -n "$n")
    return
  fi
  read -r -a launch <<<"${MPIEXEC:-mpirun}"
  launch+=(-n "$n")
  if [ "$(basename "${launch[0]}")" = mpirun ] || [ "$(basename "${launch[0]}")" = mpiexec ]; then
    launch+=(--oversubscribe)
    if [ "$(id -u)" -eq 0 ]; then
      export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
    export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
  fi
}
