#!/usr/bin/env bash
# Benchmark: `devtls fleet serve` renewals per second with many concurrent
# devices (CONCURRENCY threads, default 64), beside the raw crypto bound for
# one P-256 key generation and one ECDSA signature per renewal
# (crates/fleet/examples/raw_crypto.rs), measured in the same run.
#
# One renewal = the device's two connections: ask with its current
# certificate (a new key and certificate come back, devtls format), then
# confirm by connecting with the new one (204). Each is a full TLS 1.2
# handshake with client certificates, restricted to the openmv profile.
# The load generator (crates/renewal/examples/renew_load.rs) runs on the
# same machine and takes its share of the cores: what is printed is the
# rate of the whole system, service plus devices.
#
# Usage: bench/fleet_serve.sh   (DEVICES=2000 CONCURRENCY=64 DURATION=15 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-2000}
CONCURRENCY=${CONCURRENCY:-64}
SECONDS_RUN=${DURATION:-15}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -q -p devtls -p devtls-fleet -p devtls-renewal --examples --bins
BIN=$TARGET/release/devtls
TMP=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/devtls-serve-bench.XXXXXX")
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $DEVICES devices, $CONCURRENCY concurrent"
(cd "$TMP" && "$BIN" fleet init --name bench >/dev/null && "$BIN" fleet issue --count "$DEVICES" --prefix d- --days 90 --quiet >/dev/null)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$TMP" && exec "$BIN" fleet serve --bind 127.0.0.1 --port "$PORT" --renew-after 0 >"$TMP/serve.log" 2>&1) &
SERVER=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done

# Raw crypto bound: keygen + signature per renewal, on every core.
RAW=$("$TARGET"/release/examples/raw_crypto 20000 "$(nproc)")

read -r DONE ELAPSED ERRORS < <("$TARGET"/release/examples/renew_load "$TMP/fleet" "$PORT" "$CONCURRENCY" "$SECONDS_RUN")
RATE=$(awk -v n="$DONE" -v t="$ELAPSED" 'BEGIN { printf "%.0f", n / t }')
RATIO=$(awk -v a="$RATE" -v b="$RAW" 'BEGIN { printf "%.1f%%", 100 * a / b }')

printf '%-44s %10s\n' "raw crypto bound (keygen + signature)/s" "$RAW"
printf '%-44s %10s   (%s renewals in %ss, %s errors)\n' "fleet serve renewals/s (ask + confirm)" "$RATE" "$DONE" "$ELAPSED" "$ERRORS"
printf '%-44s %10s\n' "ratio to the raw bound" "$RATIO"
(cd "$TMP" && "$BIN" fleet status | sed -n '/Renewal service/,$p')
