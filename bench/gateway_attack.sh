#!/usr/bin/env bash
# Availability of `devtls gateway` under attack, on loopback only:
#
#   legitimate clients (127.0.0.1): gwload load, new TLS connections with a
#     1 KB exchange each, CONC at once, SECS seconds
#   attacker: IDLE TCP connections that never send a byte from 127.0.0.2
#     (ATTACK_FROM), plus RATE TLS handshakes a second from 127.0.0.3
#     (ATTACK_HS_FROM) that fail (the attacker trusts no root and aborts
#     after the gateway's key exchange and signature) -- gwload attack
#
# Two measures, each a round without the attacker then one with it:
#
# - availability (the goal): legitimate connections due at a steady rate
#   (STEADY per second, default half the calm capacity measured first in
#   this run; a connection's latency counts from when it was due), as
#   bench/fleet_serve_attack.sh does for renewals: the rate served under
#   attack as a ratio of the same rate served calm (goal >= 0.8), p99
#   latency, legitimate failures (goal 0);
# - capacity (information): CONC clients flat out, calm vs attacked. The
#   attacker runs on the same cores, so this ratio also counts the cores the
#   attacker's own process takes from the gateway.
#
# Also printed: the gateway's resident memory before and at its peak under
# attack, and what the attacker saw (idle connections the gateway closed,
# failing handshakes it answered or refused).
#
# Usage: [CARGO_TARGET_DIR=...] bench/gateway_attack.sh [SECONDS] [CONCURRENCY]
# Settings (environment): ROUNDS (3), IDLE (5000), RATE (1000), WORKERS
# (cores), STEADY (legitimate connections/s; default half the calm
# capacity), BENCH_DEVTLS (another devtls binary), BENCH_PROFILE (release).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-5}
CONC=${2:-16}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-5000}
RATE=${RATE:-1000}
WORKERS=${WORKERS:-$(nproc)}

. bench/lib.sh
need_tools openssl cargo python3
# The attacker's idle connections and the gateway's sockets for them (the
# gateway lifts its own soft limit to the hard one).
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((IDLE + 2000)) ] || { echo "error: open-file limit $(ulimit -n) is below IDLE + 2000; lower IDLE or raise the hard limit" >&2; exit 2; }

# BENCH_PROFILE=debug: the debug build (no release build at hand); the
# ratio compares two runs of the same build, the absolute rates do not
# compare with bench/gateway.sh's.
gateway_binaries "${BENCH_PROFILE:-release}"

# --- a root and the gateway's leaf (P-256); then the device (lib.sh) ---
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.pem \
  -days 30 -subj /CN=Attack-Root -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout gw.key -out gw.csr -subj /CN=gw.test 2>/dev/null
printf 'subjectAltName=DNS:gw.test\nextendedKeyUsage=serverAuth\n' >gw.ext
openssl x509 -req -in gw.csr -CA root.pem -CAkey root.key -CAcreateserial -out gw.pem -days 30 -extfile gw.ext 2>/dev/null
cd - >/dev/null
gateway_device

GW_PORT=$(free_port)
"$DEVTLS" gateway --listen "127.0.0.1:$GW_PORT" --cert "$WORK/gw.pem" --key "$WORK/gw.key" \
  --to "127.0.0.1:$ECHO_PORT" --device-ca "$WORK/device/server.der" --device-name openmv \
  --workers "$WORKERS" --quiet >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
wait_port "$GW_PORT"

legit() { "$LOAD" load "$GW_PORT" "$WORK/root.pem" gw.test 1024 "$CONC" "$SECS"; }
# steady: connections due at $STEADY/s; workers enough that the load
# generator is never what falls behind.
steady() { LOAD_RATE=$STEADY "$LOAD" load "$GW_PORT" "$WORK/root.pem" gw.test 1024 $((CONC * 4)) "$SECS"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
median() { python3 -c 'import sys; v=sorted(float(x) for x in sys.argv[1:]); print(v[len(v)//2])' "$@"; }

# peak_rss FILE: the gateway's largest resident KiB, sampled every 100 ms
# until killed, written to FILE.
peak_rss() {
  local peak=0 now
  while true; do
    now=$(rss_tree "$GW_PID")
    [ "$now" -gt "$peak" ] && peak=$now && echo "$peak" >"$1"
    sleep 0.1
  done
}

echo "== $WORKERS gateway workers, $CONC legitimate connections at once, $SECS s per run, $ROUNDS rounds, on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== attacker: $IDLE idle connections from ${ATTACK_FROM:-127.0.0.2} + $RATE failing handshakes/s from ${ATTACK_HS_FROM:-127.0.0.3}"
legit >/dev/null # warm-up
BASE_RSS=$(rss_tree "$GW_PID")
failed=0; peak=0

# rounds KIND: ROUNDS rounds of KIND (legit or steady), calm then attacked;
# sets calm_out and hit_out (one JSON line per round each).
rounds() {
  local kind=$1 r c a ap pp p
  calm_out=(); hit_out=()
  for r in $(seq 1 "$ROUNDS"); do
    c=$($kind)
    calm_out+=("$c")
    failed=$((failed + $(field "$c" failed)))
    "$LOAD" attack "$GW_PORT" gw.test "$IDLE" "$RATE" "$((SECS + 4))" >"$WORK/attack.$kind.$r" &
    ap=$!
    peak_rss "$WORK/peak.$kind.$r" &
    pp=$!
    sleep 2 # the idle connections are open, the handshakes running
    a=$($kind)
    hit_out+=("$a")
    failed=$((failed + $(field "$a" failed)))
    wait "$ap"
    kill "$pp" 2>/dev/null || true
    wait "$pp" 2>/dev/null || true
    p=$(cat "$WORK/peak.$kind.$r" 2>/dev/null || echo 0)
    [ "$p" -gt "$peak" ] && peak=$p
    echo "$kind round $r: calm $(field "$c" conns_per_s) conns/s p99 $(field "$c" p99_ms) ms, attacked $(field "$a" conns_per_s) conns/s p99 $(field "$a" p99_ms) ms (failed $(field "$c" failed) + $(field "$a" failed)); attacker: $(cat "$WORK/attack.$kind.$r"); gateway peak $p KiB"
    sleep 3 # let the attacker's leftovers time out
  done
}
medians() { # medians FIELD JSON...: the median of FIELD over the lines
  local f=$1; shift
  median $(for j in "$@"; do field "$j" "$f"; done)
}

echo "== capacity: $CONC clients flat out"
rounds legit
CAP_C=$(medians conns_per_s "${calm_out[@]}")
CAP_H=$(medians conns_per_s "${hit_out[@]}")
STEADY=${STEADY:-$(python3 -c "print(int($CAP_C / 2))")}
echo "== availability: legitimate connections due at a steady $STEADY/s"
rounds steady
C=$(medians conns_per_s "${calm_out[@]}")
H=$(medians conns_per_s "${hit_out[@]}")
CP99=$(medians p99_ms "${calm_out[@]}")
HP99=$(medians p99_ms "${hit_out[@]}")
echo "legitimate conns/s at a steady $STEADY/s: calm $C (p99 $CP99 ms), attacked $H (p99 $HP99 ms), ratio $(python3 -c "print(f'{$H/$C:.2f}')") (goal >= 0.80); legitimate failures: $failed (goal 0)"
echo "capacity, $CONC clients flat out: calm $CAP_C, attacked $CAP_H, ratio $(python3 -c "print(f'{$CAP_H/$CAP_C:.2f}')") (the attacker's process shares the $(nproc) cores)"
echo "gateway resident memory: $BASE_RSS KiB before, peak $peak KiB under attack"
echo "gateway log: $(grep -c 'already in progress' "$WORK/gateway.log" || true) connections refused at admission; $(grep -c 'client failed' "$WORK/gateway.log" || true) client failures logged in all"
