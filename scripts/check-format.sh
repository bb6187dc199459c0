#!/usr/bin/env bash
# check-format.sh: check that the tracked C sources follow .clang-format.
#
# Runs `clang-format --dry-run --Werror` on every tracked src/*.c, include/**/*.h and tests/*.c,
# prints the files that differ (with clang-format's first complaints) and exits 1 if any does.
# Fix a file with: clang-format -i FILE
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang-format >/dev/null 2>&1; then
  echo "check-format: clang-format not found (install Debian package clang-format," \
    "or run ./scripts/setup.sh)" >&2
  exit 1
fi

mapfile -t files < <(git ls-files -- 'src/*.c' 'include/*.h' 'tests/*.c')
if [ "${#files[@]}" -eq 0 ]; then
  echo "check-format: no tracked C files found" >&2
  exit 1
fi

bad=()
for f in "${files[@]}"; do
  [ -f "$f" ] || continue # deleted in the work tree but still in the index
  if ! out=$(clang-format --dry-run --Werror "$f" 2>&1); then
    bad+=("$f")
    echo "check-format: $f is not formatted; clang-format says:"
    printf '%s\n' "$out" | head -n 12 | sed 's/^/    /'
  fi
done

if [ "${#bad[@]}" -gt 0 ]; then
  echo "check-format: ${#bad[@]} of ${#files[@]} files need formatting:"
  printf '  %s\n' "${bad[@]}"
  echo "check-format: fix with: clang-format -i ${bad[*]}"
  exit 1
fi
echo "check-format: ${#files[@]} files formatted"
