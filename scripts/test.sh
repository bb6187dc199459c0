#!/usr/bin/env bash
# test.sh: set up, build and run every test; what CI runs (.ci/run).
#
#   1. scripts/setup.sh                 the Debian packages that are missing
#   2. build/       -Dwerror=true       meson test (every suite), errors printed
#   3. scripts/check-format.sh          clang-format on the tracked C sources
#   4. scripts/check-layers.sh          includes only look down (src/ layers)
#   5. build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer: every unit test and the
#                   command-line scripts that reach code no unit test does (those that do not
#                   carry the suite 'no-asan' in tests/meson.build), with leak reports of the MPI
#                   runtime suppressed by tests/sanitizer/lsan.supp and
#                   tests/sanitizer/no_dlclose.c preloaded
#
# Each part's time is printed at the end (budget: the whole under 15 minutes on 2 cores).
# Runs every stage even after a failure, then closes with one line
#   total: N passed, N failed, N skipped
# summing both builds' meson tests and the format check (a build that fails counts as one
# failure), and exits non-zero if anything failed.
# Environment: NINJA_JOBS (default 2); MESON_TEST_ARGS, extra arguments to `meson test`
# (e.g. "--suite mpi"); SKIP_ASAN=1 leaves out stage 4 (for a quick local run, not for CI).
set -uo pipefail
cd "$(dirname "$0")/.."
TOP=$(pwd)

passed=0
failed=0
skipped=0
t_start=$SECONDS

# count_tests BUILDDIR RC: add the results in BUILDDIR/meson-logs/testlog.json to the totals;
# RC is meson test's exit code (a failure that no test result shows counts as one failure).
count_tests() {
  local log="$1/meson-logs/testlog.json" counts p f s
  if [ ! -f "$log" ]; then
    if [ "$2" -ne 0 ]; then
      echo "test: $1: meson test failed (exit $2) without running tests"
      failed=$((failed + 1))
    else
      echo "test: $1: no tests defined"
    fi
    return
  fi
  counts=$(/usr/bin/python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line).get("result", "")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:  # FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, INTERRUPT
        f += 1
print(p, f, s)
PY
  ) || counts="0 1 0"
  read -r p f s <<<"$counts"
  if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  echo "test: $1: $p passed, $f failed, $s skipped"
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
}

# run_suite BUILDDIR [MESON TEST ARGS...]: build is done; run meson test there and count.
run_suite() {
  local rc=0 dir=$1
  shift
  rm -f "$dir/meson-logs/testlog.json"
  # shellcheck disable=SC2086
  meson test -C "$dir" --print-errorlogs "$@" ${MESON_TEST_ARGS:-} || rc=$?
  count_tests "$dir" "$rc"
}

# part NAME: close the previous part's clock and start NAME's; times go to the summary.
times=""
part_name=""
part_start=$SECONDS
part() {
  if [ -n "$part_name" ]; then
    times="$times$(printf '  %-34s %5d s' "$part_name" $((SECONDS - part_start)))"$'\n'
  fi
  part_name=$1
  part_start=$SECONDS
}

part "set-up"
echo "test: == set-up"
if ! ./scripts/setup.sh; then
  echo "test: set-up failed"
  echo "total: 0 passed, 1 failed, 0 skipped"
  exit 1
fi

part "build/ (-Dwerror=true) and tests"
echo "test: == build/ (-Dwerror=true) and its tests"
if ./scripts/build.sh build -Dwerror=true; then
  run_suite build
else
  echo "test: build/ failed to build"
  failed=$((failed + 1))
fi
echo "test: elapsed $((SECONDS - t_start)) s"

part "format and layer checks"
echo "test: == format check"
if ./scripts/check-format.sh; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi
echo "test: == layer check (includes only look down)"
if ./scripts/check-layers.sh; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

if [ "${SKIP_ASAN:-0}" = 1 ]; then
  echo "test: == build-asan/ skipped (SKIP_ASAN=1)"
else
  part "build-asan/ and its tests"
  echo "test: == build-asan/ (address,undefined sanitizers) and its tests"
  # Open MPI's own leaks are suppressed in tests/sanitizer/lsan.supp (see the comments there).
  # fast_unwind_on_malloc=0: the MPI libraries have no frame pointers; the full stacks are
  # what lets the suppressions match; 20 frames reach them (the default 30 costs a third more
  # time, 10 is too few). no_dlclose.so keeps Open MPI's plugins mapped until exit
  # (tests/sanitizer/no_dlclose.c says why); verify_asan_link_order=0 lets it be preloaded.
  export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=20:verify_asan_link_order=0:print_summary=1"
  export LSAN_OPTIONS="suppressions=$TOP/tests/sanitizer/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:print_summary=1"
  if ./scripts/build.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false &&
    cc -shared -fPIC -O2 -o build-asan/no_dlclose.so tests/sanitizer/no_dlclose.c; then
    LD_PRELOAD="$TOP/build-asan/no_dlclose.so${LD_PRELOAD:+:$LD_PRELOAD}" run_suite build-asan --no-suite no-asan
  else
    echo "test: build-asan/ failed to build"
    failed=$((failed + 1))
  fi
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
fi

part ""
echo "test: time of each part:"
printf '%s' "$times"
echo "test: done in $((SECONDS - t_start)) s"
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
