#!/usr/bin/env bash
# Runs the Windows build of devtls under Wine, as far as Wine can show that
# it works (scripts/test.sh runs this with DEVTLS_CHECK_WINDOWS=1; README,
# "Platforms"). Each step is timed; the first failure stops the script
# with the step's name and output.
#
#   scripts/windows-wine.sh            # build devtls.exe and the Linux devtls, then run
#   BENCH_NO_BUILD=1 scripts/windows-wine.sh   # both already built
#   DEVTLS_LINUX_BIN=path/to/devtls              # the Linux build to check with
#
# Needs: the x86_64-pc-windows-gnu Rust target, mingw-w64 and wine64
# (scripts/test.sh's setup_windows installs them).
#
# What it proves: devtls.exe starts and reports the crate's version; `new
# server` writes a key and certificate that the Linux build's lint and
# OpenSSL accept, and devtls.exe's own lint agrees; a fleet CA, its lock
# (LockFileEx) and a device folder work; pki's unit tests pass compiled for
# Windows; a key is created with the owner-only DACL (Wine turns it into
# Unix mode bits with nothing for others). What it cannot: Wine does not
# keep the DACL itself (reading it back gives Wine's default for every
# file) and runs every access as the Unix user, so that keys are
# unreadable to other accounts is shown on a real Windows only.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
WINE="${WINE:-$(command -v wine64 || echo /usr/lib/wine/wine64)}"
[ -x "$WINE" ] || { echo "missing wine64: install it with \`sudo apt-get install wine64\` (scripts/test.sh with DEVTLS_CHECK_WINDOWS=1 does)"; exit 2; }
command -v x86_64-w64-mingw32-gcc >/dev/null || { echo "missing mingw-w64: install it with \`sudo apt-get install gcc-mingw-w64-x86-64\`"; exit 2; }

step() {
  local name="$1"; shift
  local start out rc
  start=$(date +%s%N)
  set +e
  out=$("$@" 2>&1)
  rc=$?
  set -e
  local ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '== %-58s %4d.%d s  exit %s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) "$rc"
  if [ "$rc" != 0 ]; then
    echo "$out" | tail -40
    echo "FAILED: $name"
    exit 1
  fi
  LAST="$out"
}
expect() {
  # expect WHAT NEEDLE: the last step's output contains NEEDLE.
  case "$LAST" in
    *"$2"*) ;;
    *) echo "$LAST" | tail -20; echo "FAILED: $1 (no \"$2\" in its output)"; exit 1 ;;
  esac
}

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  step "cargo build --target $TARGET -p devtls" cargo build -q --target "$TARGET" -p devtls --bin devtls
  step "cargo build -p devtls (Linux, to check what Windows wrote)" cargo build -q -p devtls --bin devtls
fi
EXE="$TARGET_DIR/$TARGET/debug/devtls.exe"
LINUX="${DEVTLS_LINUX_BIN:-$TARGET_DIR/debug/devtls}"
[ -f "$EXE" ] && [ -x "$LINUX" ] || { echo "missing $EXE or $LINUX: run without BENCH_NO_BUILD=1"; exit 2; }

# A Wine prefix of our own, with the one DLL Wine 8 lacks (see the .c file).
export WINEPREFIX="$PWD/$TARGET_DIR/wine-prefix" WINEDEBUG=-all WINEARCH=win64
SHIM="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$SHIM" ]; then
  step "wineboot (a fresh prefix)" "$WINE" wineboot --init
  step "bcryptprimitives.dll for Wine 8" x86_64-w64-mingw32-gcc -O2 -shared -o "$SHIM" \
    scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -ladvapi32
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exe="$(realpath "$EXE")"
linux="$(realpath "$LINUX")"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

step "devtls.exe --version" "$WINE" "$exe" --version
expect "--version" "devtls $version"

cd "$work"
step "devtls.exe new server --dns localhost" "$WINE" "$exe" new server --dns localhost
for f in server.crt server.der server.key server.key.der; do
  [ -s "$f" ] || { echo "FAILED: devtls.exe new server wrote no $f"; exit 1; }
done
step "openssl: the certificate is for localhost, self-signed" \
  openssl verify -CAfile server.crt -verify_hostname localhost server.crt
step "openssl: the key is the certificate's" \
  bash -c 'diff <(openssl pkey -in server.key -pubout) <(openssl x509 -in server.crt -noout -pubkey)'
step "devtls lint (Linux build) on what devtls.exe wrote" "$linux" lint --host localhost server.der server.key.der
step "devtls.exe lint on the same files" "$WINE" "$exe" lint --host localhost server.der server.key.der
# What Wine does show of the owner-only DACL: it turns the DACL a file is
# created with into Unix mode bits, and a key's leave others nothing (the
# certificate, created without one, is readable by all).
others() { [ $(( 0$(stat -c %a "$1") & 7 )) = "$2" ] || { echo "FAILED: $1 is mode $(stat -c %a "$1") (others: want $2)"; exit 1; }; }
others server.key 0; others server.key.der 0; others server.crt 4
echo "== the keys devtls.exe wrote: no access for others (mode $(stat -c %a server.key)); server.crt $(stat -c %a server.crt)"
step "devtls.exe new server again: refused without --force" \
  bash -c "! \"$WINE\" \"$exe\" new server --dns localhost"

step "devtls.exe fleet init" "$WINE" "$exe" fleet init
step "devtls.exe fleet issue cam-1 cam-2" "$WINE" "$exe" fleet issue cam-1 cam-2
step "openssl: cam-1's certificate chains to the fleet CA" \
  openssl verify -CAfile fleet/ca.crt <(openssl x509 -inform DER -in fleet/devices/cam-1/client.der)
others fleet/ca.key 0; others fleet/devices/cam-1/client.key.der 0; others fleet/devices/cam-1/client.der 4
step "devtls.exe fleet status" "$WINE" "$exe" fleet status
expect "fleet status" "2 certificates"
cd - >/dev/null

# pki's unit tests compiled for Windows, but for the two that read a key's
# DACL back: Wine 8 does not keep a file's DACL, it answers
# D:(A;;FA;;;SY)(A;;FA;;;user) for every file (README, "Platforms").
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$WINE"
step "cargo test -p devtls-pki --lib (under Wine)" \
  cargo test -q --target "$TARGET" -p devtls-pki --lib -- \
  --skip files::tests::keys_are_0600_and_never_overwritten_without_force \
  --skip files::tests::private_files_are_created_owner_only_and_never_over_another
expect "pki unit tests" "test result: ok"
echo "== devtls.exe works under Wine (see the script's header for what Wine cannot show)"
