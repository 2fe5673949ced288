#!/usr/bin/env bash
# Builds the devtls wheel for this platform into target/wheels/ (maturin,
# release build of the binary) and prints its path. Needs maturin
# (`pip install maturin`); no Python dependencies go into the wheel.
#   scripts/build-wheel.sh [extra maturin build options]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v maturin >/dev/null || {
  echo "maturin is missing: pip install maturin" >&2
  exit 2
}
rm -rf target/wheels
# --release unless the caller names a profile (the install test builds the
# dev profile its dependencies are already compiled in).
profile=(--release)
for arg in "$@"; do [ "$arg" = --profile ] && profile=(); done
maturin build "${profile[@]}" --out target/wheels "$@" >&2
ls "$PWD"/target/wheels/devtls-*.whl
