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
# Each round measures the legitimate rate without the attacker, then with
# it; printed: both medians, their ratio (goal >= 0.8), legitimate
# failures (goal 0), the gateway's resident memory before and at its peak
# under attack, and what the attacker saw (idle connections the gateway
# closed, failing handshakes it answered or refused).
#
# Usage: [CARGO_TARGET_DIR=...] bench/gateway_attack.sh [SECONDS] [CONCURRENCY]
# Settings (environment): ROUNDS (3), IDLE (5000), RATE (1000), WORKERS
# (cores), BENCH_DEVTLS (another devtls binary), BENCH_PROFILE (release).
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
calm=(); hit=(); failed=0; peak=0
for r in $(seq 1 "$ROUNDS"); do
  c=$(legit)
  calm+=("$(field "$c" conns_per_s)")
  failed=$((failed + $(field "$c" failed)))
  "$LOAD" attack "$GW_PORT" gw.test "$IDLE" "$RATE" "$((SECS + 4))" >"$WORK/attack.$r" &
  ap=$!
  peak_rss "$WORK/peak.$r" &
  pp=$!
  sleep 2 # the idle connections are open, the handshakes running
  a=$(legit)
  hit+=("$(field "$a" conns_per_s)")
  failed=$((failed + $(field "$a" failed)))
  wait "$ap"
  kill "$pp" 2>/dev/null || true
  wait "$pp" 2>/dev/null || true
  p=$(cat "$WORK/peak.$r" 2>/dev/null || echo 0)
  [ "$p" -gt "$peak" ] && peak=$p
  echo "round $r: calm $(field "$c" conns_per_s) conns/s, attacked $(field "$a" conns_per_s) conns/s (failed $(field "$c" failed) + $(field "$a" failed)); attacker: $(cat "$WORK/attack.$r"); gateway peak $p KiB"
  sleep 3 # let the attacker's leftovers time out
done
C=$(median "${calm[@]}")
H=$(median "${hit[@]}")
echo "legitimate conns/s: calm $C, attacked $H, ratio $(python3 -c "print(f'{$H/$C:.2f}')") (goal >= 0.80); legitimate failures: $failed (goal 0)"
echo "gateway resident memory: $BASE_RSS KiB before, peak $peak KiB under attack"
echo "gateway log: $(grep -c 'already in progress' "$WORK/gateway.log" || true) connections refused at admission; $(grep -c 'client failed' "$WORK/gateway.log" || true) client failures logged in all"
