#!/usr/bin/env bash
# Availability of `devtls fleet serve` under attack, on loopback.
#
# Legitimate devices renew (ask + confirm, two full TLS 1.2 handshakes with
# client certificates) at a steady RATE per second for DURATION seconds,
# from 127.0.0.1: once with nothing else running, then, against the same
# service, while an attacker (crates/renewal/examples/serve_attack.rs)
# holds 5,000 connections that send nothing (from 50 loopback addresses,
# reopened when closed), opens up to 1,000 TLS handshakes a second without a
# client certificate (refused by TLS, or closed at accept once the address's
# failure budget is spent: `fleet status` below counts refused-tls and
# refused-failing) and has one enrolled device ask for renewals
# on 8 connections without pause. Everything runs on this machine: the
# attacker takes its share of the cores.
#
# Prints: legitimate renewals/s under attack as a ratio of the unattacked
# rate (goal >= 0.8), p50/p99 latency of a renewal counted from when it was
# due, legitimate failures (goal 0), the service's peak resident memory.
#
# Release builds in ${CARGO_TARGET_DIR:-target}/release (bench/lib.sh);
# PROFILE=debug uses the debug build instead (its dependencies, the TLS
# crypto and SQLite, are optimised too: see Cargo.toml's profile.dev).
# Usage: bench/fleet_serve_attack.sh   (RATE=20 DURATION=20 DEVICES=1200 PROFILE=debug to change)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-20}
DURATION=${DURATION:-20}
DEVICES=${DEVICES:-1200}

. bench/lib.sh
need_tools cargo python3

PROFILE=${PROFILE:-release}
echo "== building devtls and the attack ($PROFILE, in $TARGET_DIR)"
if [ "$PROFILE" = release ]; then
  cargo build --release -q --workspace --bins --example serve_attack
else
  RELEASE=$TARGET_DIR/debug
  cargo build -q --workspace --bins --example serve_attack
fi
# Copied at once: other checkouts may share the release folder.
cp "$RELEASE/devtls" "$WORK/devtls"
cp "$RELEASE/examples/serve_attack" "$WORK/serve_attack"
# 5,000 held connections need that many descriptors in the attacker.
ulimit -n "$(ulimit -Hn)"

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $DEVICES devices, $RATE renewals/s for ${DURATION}s"
(cd "$WORK" && ./devtls fleet init --name bench >/dev/null &&
  ./devtls fleet issue --count "$DEVICES" --prefix d- --days 90 --quiet >/dev/null)

PORT=$(free_port)
(cd "$WORK" && exec ./devtls fleet serve --bind 127.0.0.1 --port "$PORT" --renew-after 0 >"$WORK/serve.log" 2>&1) &
SERVER=$!
PIDS+=("$SERVER")
wait_port "$PORT"

# serve_attack renews the fleet's devices from the last; the first is the
# hammering device. Each phase uses devices the other did not.
read -r OK0 FAIL0 T0 P50_0 P99_0 _ _ < <("$WORK/serve_attack" "$WORK/fleet" "$PORT" "$DURATION" "$RATE")
# The phase renewed OK0 devices: their folders still hold the old
# certificates, now superseded, so they are moved away.
for d in $(ls "$WORK/fleet/devices" | LC_ALL=C sort | tail -n "$((OK0 + FAIL0))"); do
  mv "$WORK/fleet/devices/$d" "$WORK/used-$d"
done
read -r OK1 FAIL1 T1 P50_1 P99_1 REFUSED HAMMERED < <("$WORK/serve_attack" "$WORK/fleet" "$PORT" "$DURATION" "$RATE" attack)
PEAK=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER/status")

RATE0=$(awk -v n="$OK0" -v t="$T0" 'BEGIN { printf "%.2f", n / t }')
RATE1=$(awk -v n="$OK1" -v t="$T1" 'BEGIN { printf "%.2f", n / t }')
RATIO=$(awk -v a="$RATE1" -v b="$RATE0" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
printf '%-48s %10s   (%s renewals in %ss, p50 %s ms, p99 %s ms, %s failed)\n' \
  "unattacked legitimate renewals/s" "$RATE0" "$OK0" "$T0" "$P50_0" "$P99_0" "$FAIL0"
printf '%-48s %10s   (%s renewals in %ss, p50 %s ms, p99 %s ms, %s failed)\n' \
  "legitimate renewals/s under attack" "$RATE1" "$OK1" "$T1" "$P50_1" "$P99_1" "$FAIL1"
printf '%-48s %10s   (goal >= 0.8)\n' "ratio under attack / unattacked" "$RATIO"
printf '%-48s %10s\n' "legitimate failures under attack (goal 0)" "$FAIL1"
printf '%-48s %10s\n' "attack: failing handshakes tried" "$REFUSED"
printf '%-48s %10s\n' "attack: answers to the hammering device" "$HAMMERED"
printf '%-48s %10s\n' "fleet serve peak resident memory (KiB)" "$PEAK"
(cd "$WORK" && ./devtls fleet status | sed -n '/Renewal service/,$p')
