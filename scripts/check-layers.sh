#!/usr/bin/env bash
# check-layers.sh: includes only look down. Each source in src/<layer>/ and each public header
# include/cerberus/<module>.h (whose layer is that of src/*/<module>.c) may include headers of
# its own layer or of lower ones, never of a higher layer or of a sibling at the same height:
#
#   0 core   1 grid   2 physics   3 engine   4 infer, lfi   5 bench   6 commands
#
# Prints one line per offending include and exits 1; prints "layers: ok" and exits 0 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

rank() {
  case "$1" in
    core) echo 0 ;; grid) echo 1 ;; physics) echo 2 ;; engine) echo 3 ;;
    infer | lfi) echo 4 ;; bench) echo 5 ;; commands) echo 6 ;; *) echo -1 ;;
  esac
}
# layer_of MODULE: the folder of src/*/MODULE.c; headers without a source of their own
# belong to the layer that implements them.
layer_of() {
  local src
  case "$1" in
    commands) echo commands; return ;;
    bench) echo bench; return ;;
  esac
  src=$(ls src/*/"$1".c 2>/dev/null | head -n 1)
  if [ -z "$src" ]; then echo unknown; else basename "$(dirname "$src")"; fi
}

bad=0
check() { # FILE LAYER
  local file=$1 layer=$2 r inc il ir
  r=$(rank "$layer")
  if [ "$r" -lt 0 ]; then
    echo "layers: $file: folder '$layer' is not a known layer (add it to scripts/check-layers.sh)"
    bad=1
    return
  fi
  while read -r inc; do
    il=$(layer_of "$inc")
    ir=$(rank "$il")
    if [ "$ir" -lt 0 ]; then
      echo "layers: $file includes cerberus/$inc.h, which has no source in src/*/ to place it"
      bad=1
    elif [ "$ir" -gt "$r" ] || { [ "$ir" -eq "$r" ] && [ "$il" != "$layer" ]; }; then
      echo "layers: $file ($layer) includes cerberus/$inc.h ($il): includes must look down"
      bad=1
    fi
  done < <(grep -ho '^#include "cerberus/[a-z0-9_]*\.h"' "$file" | sed 's#.*cerberus/##; s#\.h"##')
}

for f in src/*/*.c; do
  check "$f" "$(basename "$(dirname "$f")")"
done
for h in include/cerberus/*.h; do
  m=$(basename "$h" .h)
  check "$h" "$(layer_of "$m")"
done
if [ "$bad" -ne 0 ]; then exit 1; fi
echo "layers: ok"
