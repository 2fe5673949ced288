#!/usr/bin/env bash
# A renewal storm, scaled out (issue 26 item 3): N devices (default
# 100,000) in a PostgreSQL inventory (a throw-away server started here)
# renew exactly once each through SERVICES `devtls fleet serve` processes
# (default 2) on that one database, behind ONE address: nginx's stream
# proxy (TCP passed through, so mutual TLS reaches the services; the config
# `devtls gateway --print-config` prints is a stream block too). One
# service is SIGKILLed when a third of the devices have renewed, and
# restarted. At the end the inventory and the CRL are checked against what
# the devices hold: every device has exactly one active certificate, the
# new one; none lost, none issued twice; the CRL lists exactly the
# inventory's revoked rows. Prints issuance time, renewals/s, p50/p99
# latency and the share of retried requests; exits 1 when a check fails.
#
# - The devices are issued by one `fleet issue --count N` (keys, certificates,
#   device folders and rows, the path a fleet whose keys devtls makes takes;
#   docs/renewal.md "A renewal storm" says when CSR devices without folders
#   fit better). The load generator (crates/renewal/examples/fleet_storm.rs,
#   examples/storm/mod.rs, the code the CLI test fleet_storm runs too) reads
#   their first pairs from the folders.
# - Each service has its own fleet folder (a copy of the CA: services on
#   several machines); pending keys stay with the service that made them, so
#   a device that lost an answer and reaches the other service is told 409
#   `pending` and retries (counted).
# - The services run `--renew-after 0 --revoke-old` (every certificate is in
#   its window; old ones go to the CRL) and `--proxy 127.0.0.1`: behind a
#   TCP proxy every connection comes from the proxy's address, so the
#   service exempts it from its per-address bounds and the proxy, which sees
#   the devices' addresses, bounds them (nginx limit_conn, here PER_ADDRESS
#   at the front, default CONCURRENCY * 2, as all the bench's devices share
#   127.0.0.1). PROXY= (empty) runs the services without `--proxy`, with
#   their per-address bounds counting the whole fleet as one address
#   (MAX_PER_ADDRESS, default 64, the service's default).
# - Devices retry a failed request up to 10 times after 2, 4, 8... s (at most
#   60) or the 503's Retry-After, plus up to as much again of jitter
#   (renew.py's rule), CONCURRENCY (default 256) at a time.
#
# Usage: bench/fleet_storm.sh   (N=2000 CONCURRENCY=64 SERVICES=3 ... to change)
#        BENCH_NO_BUILD=1 bench/fleet_storm.sh   (use the release build already there)
#        CARGO_TARGET_DIR=... is honoured. Needs PostgreSQL, nginx with the
#        stream module and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${N:-100000}
CONCURRENCY=${CONCURRENCY:-256}
SERVICES=${SERVICES:-2}
PROXY=${PROXY-127.0.0.1}
MAX_PER_ADDRESS=${MAX_PER_ADDRESS:-64}
PER_ADDRESS=${PER_ADDRESS:-$((CONCURRENCY * 2))}
need_tools nginx openssl python3
STREAM_LOAD=$(nginx_stream_module)

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  cargo build --release -q -p devtls -p devtls-renewal --examples --bins
fi
BIN=$RELEASE/devtls
LOAD=$RELEASE/examples/fleet_storm
for f in "$BIN" "$LOAD"; do
  [ -x "$f" ] || { echo "error: $f is missing: build without BENCH_NO_BUILD" >&2; exit 2; }
done
start_postgres
export DEVTLS_FLEET_DB=$URL

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) before; $N devices, $CONCURRENCY concurrent, $SERVICES services"
# The devices, timed: one `fleet issue` into the PostgreSQL inventory.
mkdir -p "$WORK/s1"
(cd "$WORK/s1" && "$BIN" fleet init --name storm >/dev/null)
t0=$(date +%s.%N)
(cd "$WORK/s1" && "$BIN" fleet issue --count "$N" --prefix d- --days 30 --quiet >/dev/null)
ISSUE=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
printf '%-24s %s s (%s devices/s: fleet issue --count, keys, folders and rows)\n' \
  "issuing $N devices" "$ISSUE" "$(awk -v n="$N" -v t="$ISSUE" 'BEGIN { printf "%.0f", n / t }')"
for i in $(seq 2 "$SERVICES"); do
  mkdir -p "$WORK/s$i/fleet"
  cp "$WORK"/s1/fleet/ca.{der,crt,key} "$WORK/s$i/fleet/"
done

# serve I: service I on its port (PORTS[I]), one line per connection in
# $WORK/sI/serve.log, messages in serve.err.
PORTS=()
SERVERS=()
serve() {
  (cd "$WORK/s$1" && exec "$BIN" fleet serve --bind 127.0.0.1 --port "${PORTS[$1]}" --name 127.0.0.1 \
    --renew-after 0 --revoke-old --max-per-address "$MAX_PER_ADDRESS" ${PROXY:+--proxy "$PROXY"} >>"$WORK/s$1/serve.log" 2>>"$WORK/s$1/serve.err") &
  SERVERS[$1]=$!
  PIDS+=("$!")
  wait_port "${PORTS[$1]}"
}
UPSTREAMS=""
for i in $(seq 1 "$SERVICES"); do
  PORTS[$i]=$(free_port)
  serve "$i"
  UPSTREAMS+="server 127.0.0.1:${PORTS[$i]};"
done
FRONT=$(free_port)
start_nginx "$FRONT" "$(nproc)" "stream {
  limit_conn_zone \$binary_remote_addr zone=per_address:10m;
  upstream fleet { $UPSTREAMS }
  server { listen 127.0.0.1:$FRONT backlog=4096; proxy_pass fleet; proxy_connect_timeout 2s;
           limit_conn per_address $PER_ADDRESS; }
}" "$STREAM_LOAD"

# The storm; service 1 is SIGKILLed when a third has renewed, and restarted.
"$LOAD" "$WORK/s1/fleet" "127.0.0.1:$FRONT" 127.0.0.1 "$CONCURRENCY" $((N / 3)) "$WORK/midway" \
  "$BIN" "$PGBIN/psql" >"$WORK/storm.out" &
STORM=$!
PIDS+=("$STORM")
while [ ! -e "$WORK/midway" ] && kill -0 "$STORM" 2>/dev/null; do sleep 0.1; done
if [ -e "$WORK/midway" ]; then
  BEFORE=$(wc -l <"$WORK/s1/serve.log")
  kill -KILL "${SERVERS[1]}"
  wait "${SERVERS[1]}" 2>/dev/null || true
  echo "service 1 SIGKILLed after $BEFORE connections logged; restarting it"
  serve 1
fi
STATUS=0
wait "$STORM" || STATUS=$?
cat "$WORK/storm.out"
# outcomes FILE [FROM_LINE]: the log's outcomes (fifth field) counted.
outcomes() {
  tail -n +"${2:-1}" "$1" | awk '{ n[$5]++ } END { for (k in n) printf "%s %d  ", k, n[k]; print "" }'
}
for i in $(seq 1 "$SERVICES"); do echo "service $i outcomes: $(outcomes "$WORK/s$i/serve.log")"; done
if [ -n "${BEFORE:-}" ]; then
  echo "service 1 after its restart: $(outcomes "$WORK/s1/serve.log" $((BEFORE + 1)))"
fi
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$STATUS"
