#!/usr/bin/env bash
# setup.sh: install the Debian 12 packages Cerberus needs that are missing.
#
# Idempotent: checks each package with dpkg-query and installs only the missing ones (and runs
# `apt-get update` only then), printing their names; prints "all packages present" otherwise.
# Works as root without sudo; as another user it uses sudo if there is one.
# Non-interactive (DEBIAN_FRONTEND=noninteractive), so it runs in CI and in scripts.
set -euo pipefail

packages=(
  # compilers and build tools
  gcc libc6-dev pkg-config meson ninja-build
  # libraries: MPI, FFTW3 with its MPI part, parallel HDF5, PETSc, GSL
  libopenmpi-dev openmpi-bin libfftw3-dev libfftw3-mpi-dev libhdf5-openmpi-dev petsc-dev
  libgsl-dev
  # pictures (scripts/plot_pk.py, run by /usr/bin/python3)
  python3 python3-h5py python3-numpy python3-matplotlib
  # chain files read as ArviZ would (xarray over netCDF-4), by tests and scripts
  python3-xarray python3-netcdf4
  # the NumPy + mpi4py reference of the ABC benchmark (scripts/abc_numpy_mpi4py.py)
  python3-mpi4py
  # format check, version string (git describe), HTTPS for git
  clang-format git ca-certificates
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [ "$status" != "install ok installed" ]; then missing+=("$p"); fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

echo "setup: installing ${#missing[@]} missing Debian packages: ${missing[*]}"

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "setup: not root and no sudo: as root, run" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  --no-install-recommends "${missing[@]}"
echo "setup: installed ${missing[*]}"
