#!/usr/bin/env bash
# `devtls gateway` against nginx's stream proxy (the anchor) doing the same
# two TLS legs, measured in the same run by the same load generator:
#
#   load generator --TLS 1.2/1.3, full chain--> gateway --TLS 1.2, device
#   certificate pinned, device name--> echo server (stands in for the device)
#
# Same certificates (P-256), same key exchange (the load generator offers
# P-256 only), same worker count (WORKERS, default: cores), resumption
# off on the public side (the load generator never offers a session), access
# logs off (devtls: --quiet logs only failures). For 1 KB and 1 MB
# exchanges: new TLS connections per second and MB/s relayed (both
# directions), printed as ratios devtls / nginx (goal >= 1.0). Then the
# resident memory each needs for 1,000 idle connections (after one small
# exchange each), over its own idle baseline.
#
# The load generator is crates/gateway/examples/gwload.rs (tokio + rustls).
# Usage: bench/gateway.sh [SECONDS] [CONCURRENCY]     (needs nginx with the
# stream module: apt-get install nginx libnginx-mod-stream)
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-5}
CONC=${2:-64}
WORKERS=${WORKERS:-$(nproc)}
IDLE=1000

for tool in openssl nginx cargo python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done
STREAM_MOD=$(find /usr/lib/nginx/modules /usr/share/nginx/modules -name ngx_stream_module.so 2>/dev/null | head -1 || true)
nginx -V 2>&1 | grep -q -- '--with-stream=dynamic' && [ -z "$STREAM_MOD" ] && {
  echo "error: nginx's stream module is missing: apt-get install libnginx-mod-stream" >&2; exit 2; }

echo "== building devtls and the load generator (release)"
cargo build --release -q -p devtls
cargo build --release -q -p devtls-gateway --example gwload
DEVTLS=$PWD/target/release/devtls
LOAD=$PWD/target/release/examples/gwload

WORK=$(mktemp -d /tmp/devtls-gwbench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # wait_port PORT: at most 10 s
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "error: nothing listened on 127.0.0.1:$1 within 10 s" >&2
  exit 1
}
# Resident KiB of a process and its children (nginx: master + workers).
rss_tree() {
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# --- certificates: a public-style chain (root, intermediate, leaf) for the
# public side, the device's self-signed certificate for the device side ---
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.pem \
  -days 30 -subj /CN=Bench-Root -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key -out int.csr -subj /CN=Bench-Int 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >int.ext
openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -out int.pem -days 30 -extfile int.ext 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout privkey.pem -out leaf.csr -subj /CN=gw.test 2>/dev/null
printf 'subjectAltName=DNS:gw.test\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >leaf.ext
openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -CAcreateserial -out leaf.pem -days 30 -extfile leaf.ext 2>/dev/null
cat leaf.pem int.pem >fullchain.pem
"$DEVTLS" new server --dns openmv --key p256 --out "$WORK/device" >/dev/null
cd - >/dev/null

# --- the device: an echo server, TLS 1.2 ---
ECHO_PORT=$(free_port)
"$LOAD" echo "$ECHO_PORT" "$WORK/device/server.crt" "$WORK/device/server.key" &
PIDS+=($!)
wait_port "$ECHO_PORT"

# --- nginx: stream proxy, TLS in front, proxy_ssl to the device ---
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<EOF
${STREAM_MOD:+load_module $STREAM_MOD;}
daemon off;
master_process on;
worker_processes $WORKERS;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 8192; }
stream {
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $WORK/fullchain.pem;
    ssl_certificate_key $WORK/privkey.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    proxy_pass 127.0.0.1:$ECHO_PORT;
    proxy_ssl on;
    proxy_ssl_protocols TLSv1.2;
    proxy_ssl_verify on;
    proxy_ssl_trusted_certificate $WORK/device/server.crt;
    proxy_ssl_name openmv;
    proxy_ssl_server_name on;
  }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
wait_port "$NGINX_PORT"

# --- devtls gateway: the same route ---
GW_PORT=$(free_port)
"$DEVTLS" gateway --listen "127.0.0.1:$GW_PORT" --cert "$WORK/fullchain.pem" --key "$WORK/privkey.pem" \
  --to "127.0.0.1:$ECHO_PORT" --device-ca "$WORK/device/server.der" --device-name openmv \
  --workers "$WORKERS" --quiet >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
wait_port "$GW_PORT"

run() { # run PORT SIZE -> JSON line
  "$LOAD" load "$1" "$WORK/root.pem" gw.test "$2" "$CONC" "$SECS"
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

echo "== $WORKERS workers each, $CONC concurrent connections, $SECS s per run, on $(nproc) cores"
printf '%-7s %-14s %-12s %-12s %s\n' size metric devtls nginx ratio
for size in 1024 1048576; do
  label=$([ "$size" = 1024 ] && echo 1KB || echo 1MB)
  # Alternate, anchor first; the second run of each is kept (warm caches).
  run "$NGINX_PORT" "$size" >/dev/null
  n=$(run "$NGINX_PORT" "$size")
  run "$GW_PORT" "$size" >/dev/null
  d=$(run "$GW_PORT" "$size")
  for m in conns_per_s mb_per_s; do
    printf '%-7s %-14s %-12s %-12s %s\n' "$label" "$m" "$(field "$d" "$m")" "$(field "$n" "$m")" \
      "$(ratio "$(field "$d" "$m")" "$(field "$n" "$m")")"
  done
  echo "        failed exchanges: devtls $(field "$d" failed), nginx $(field "$n" failed)"
done
grep -v '^listening' "$WORK/gateway.log" | head -5 || true

# --- memory for 1,000 idle connections, over each one's idle baseline ---
idle_mem() { # idle_mem PORT PID -> KiB over baseline
  local base held
  sleep 1
  base=$(rss_tree "$2")
  "$LOAD" idle "$1" "$WORK/root.pem" gw.test "$IDLE" 4 >"$WORK/idle.out" &
  local lp=$!
  for _ in $(seq 1 100); do grep -q held "$WORK/idle.out" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  held=$(rss_tree "$2")
  wait "$lp"
  echo $((held - base))
}
dn=$(idle_mem "$GW_PORT" "$GW_PID")
nn=$(idle_mem "$NGINX_PORT" "$NGINX_PID")
echo "memory for $IDLE idle connections (over idle baseline): devtls ${dn} KiB, nginx ${nn} KiB (ratio nginx/devtls $(ratio "$nn" "$dn"), >= 1.0: devtls needs less)"
echo "ratios = devtls / nginx (goal: >= 1.00)"
