#!/usr/bin/env bash
# build.sh [BUILDDIR] [MESON ARGS...]: configure (or reconfigure) and build Cerberus.
#
#   ./scripts/build.sh                       # build/ with the defaults (debugoptimized)
#   ./scripts/build.sh build -Dwerror=true   # as CI does
#   ./scripts/build.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false
#
# A new BUILDDIR is set up with `meson setup`; an existing one is reconfigured with the given
# arguments (`meson configure`, or `meson setup --reconfigure` when the options need it).
# Then ninja builds it; NINJA_JOBS sets ninja's -j (default: 2).
set -euo pipefail
cd "$(dirname "$0")/.."

builddir=${1:-build}
shift || true

if [ -f "$builddir/meson-private/coredata.dat" ]; then
  # Configured before: apply new options (or finish an interrupted setup) in place.
  if [ "$#" -gt 0 ] || [ ! -f "$builddir/build.ninja" ]; then
    meson setup --reconfigure "$builddir" "$@"
  fi
else
  meson setup "$builddir" "$@"
fi
ninja -C "$builddir" -j "${NINJA_JOBS:-2}"
