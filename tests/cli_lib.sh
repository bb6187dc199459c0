# cli_lib.sh: the set-up and helpers shared by the command-line tests (cli_*.sh).
# Sourced, not run: `. "$(dirname "$0")/cli_lib.sh"` (meson runs each script as
# `bash /abs/path/tests/cli_x.sh`, so $0 names the script's own directory).
#
# On sourcing: requires CERBERUS_EXE (the binary, set by meson's test_env) and sets EXE to it;
# lets Open MPI run as root and oversubscribe the cores; makes a temporary directory T, removed
# on exit, and cd's into it; sets fail=0. The helpers set fail=1 on any failed check, and the
# script ends with `exit $fail`.
set -u
EXE=${CERBERUS_EXE:?CERBERUS_EXE not set}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# one machine: shared memory, no UCX probing, no daemon for a singleton (tests/meson.build)
export OMPI_MCA_pml=ob1 OMPI_MCA_osc=^ucx OMPI_MCA_ess_singleton_isolated=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fail=0

# Which stderr lines `bad` counts: exactly one must match. The default, '^cerberus', counts the
# lines from cerberus only (mpiexec may add its own banner about the non-zero exit). A script
# whose bad runs must print one line and nothing else (no launcher, or commands that are not
# cerberus, e.g. the plot scripts) sets BAD_LINE='.' (every non-empty line counts).
BAD_LINE='^cerberus'

# run COMMAND...: the command must succeed. Its stdout is left in out.txt, stderr in err.txt.
run() {
  if ! "$@" > out.txt 2> err.txt; then echo "FAIL: '$*' failed: $(cat err.txt)"; fail=1; fi
}

# bad WANT OUT COMMAND...: a bad input. Checks that COMMAND
#   1. exits non-zero;
#   2. prints WANT (a fixed substring, not a pattern) on stderr;
#   3. prints exactly one stderr line matching $BAD_LINE (one line starting with 'cerberus');
#   4. leaves no file whose name starts with OUT (the output, or a temporary OUT.tmp.*) unless
#      OUT is "" (no output check: when the output exists before and is compared afterwards,
#      or the command writes no file).
# Prints "ok: <the error line>" when the command failed, so the log shows every message.
# Under the sanitizers (ASAN_OPTIONS set by scripts/test.sh) a bad run keeps AddressSanitizer's
# and UBSan's checks but not LeakSanitizer's scan at exit: the scan and its symbolisation cost
# about a second a process, there are some 130 bad runs, and a process that stops on an error
# frees its memory by exiting. Every good run and every unit test keeps the leak check.
bad() {
  local want="$1" out="$2" pre=(); shift 2
  [ -n "${ASAN_OPTIONS:-}" ] && pre=(env "ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0")
  if "${pre[@]}" "$@" > out.txt 2> err.txt; then echo "FAIL: '$*' succeeded"; fail=1; return; fi
  if ! grep -q -F -- "$want" err.txt; then
    echo "FAIL: '$*': expected '$want' in: $(cat err.txt)"; fail=1
  fi
  if [ "$(grep -c -- "$BAD_LINE" err.txt)" -ne 1 ]; then
    echo "FAIL: '$*': not exactly one line: $(cat err.txt)"; fail=1
  fi
  if [ -n "$out" ] && ls "$out"* > /dev/null 2>&1; then
    echo "FAIL: '$*' left output $out"; fail=1
  fi
  echo "ok: $(grep -- "$BAD_LINE" err.txt)"
}
