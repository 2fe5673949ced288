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
# Same cipher suites on each leg for both: the load generator offers one
# (PUBLIC_SUITE, default TLS13_AES_128_GCM_SHA256) and the echo server picks
# the device leg's (DEVICE_SUITE, default
# TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); both are printed per run. The
# crypto bound (one core's AES-128-GCM rate x cores / 4 passes per relayed
# byte) says how far from the physical limit both are. SYSCALLS=1 adds a
# strace -c run of each (system calls per MB relayed).
#
# The load generator is crates/gateway/examples/gwload.rs (tokio + rustls).
# Usage: [CARGO_TARGET_DIR=...] bench/gateway.sh [SECONDS] [CONCURRENCY]
# (needs nginx with the stream module: apt-get install nginx libnginx-mod-stream)
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-5}
CONC=${2:-64}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-$(nproc)}
IDLE=1000

. bench/lib.sh
need_tools openssl nginx cargo python3
STREAM_LOAD=$(nginx_stream_module)

echo "== building devtls and the load generator (release, in $TARGET_DIR)"
# One command: the same feature set as `cargo build -p devtls` alone would
# pick otherwise differs, and the dependencies would build twice.
cargo build --release -q -p devtls -p devtls-gateway --bins --example gwload
# Copied at once: other checkouts may share the release folder.
mkdir -p "$WORK/bin"
cp "$RELEASE/devtls" "$RELEASE/examples/gwload" "$WORK/bin/"
DEVTLS=$WORK/bin/devtls
LOAD=$WORK/bin/gwload

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

# --- the device: an echo server, TLS 1.2; it picks the device leg's suite
# (DEVICE_SUITE, default ECDHE-ECDSA AES-128-GCM) for both proxies alike ---
ECHO_PORT=$(free_port)
"$LOAD" echo "$ECHO_PORT" "$WORK/device/server.crt" "$WORK/device/server.key" >"$WORK/echo.log" &
PIDS+=($!)
wait_port "$ECHO_PORT"

# --- nginx: stream proxy, TLS in front, proxy_ssl to the device ---
NGINX_PORT=$(free_port)
start_nginx "$NGINX_PORT" "$WORKERS" "stream {
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
}" "$STREAM_LOAD"

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
# The run (JSON line) with the median MB/s of those given.
median_run() {
  python3 -c 'import json,sys; r=sorted(sys.argv[1:], key=lambda l: json.loads(l)["mb_per_s"]); print(r[len(r)//2])' "$@"
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

device_leg() { tail -1 "$WORK/echo.log" | sed 's/^device leg: //'; }

# syscalls PID PORT: one 1 MB run against PORT with strace counting the
# system calls of PID (threads and children) meanwhile; prints the calls
# per MB relayed.
syscalls() {
  local pids=() p
  for p in $1 $(pgrep -P "$1" || true); do pids+=(-p "$p"); done
  strace -f -c -o "$WORK/strace.out" "${pids[@]}" 2>/dev/null &
  local sp=$!
  sleep 0.5
  run "$2" 1048576 >"$WORK/last_run"
  kill -INT "$sp" 2>/dev/null || true
  wait "$sp" 2>/dev/null || true
  python3 - "$WORK/strace.out" "$(cat "$WORK/last_run")" <<'PY'
import json, sys
run = json.loads(sys.argv[2])
mb = run["done"] * 2 or 1
calls = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and f[3].isdigit() and f[-1].isidentifier() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
total = sum(calls.values())
print(f"{total / mb:.0f} calls per MB relayed ({run['mb_per_s']} MB/s under strace): "
      + ", ".join(f"{k} {v / mb:.0f}" for k, v in top))
PY
}

echo "== $WORKERS workers each, $CONC concurrent connections, $SECS s per run, median of $ROUNDS, on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-7s %-14s %-12s %-12s %s\n' size metric devtls nginx ratio
for size in ${SIZES:-1024 1048576}; do
  label=$([ "$size" = 1024 ] && echo 1KB || echo 1MB)
  # Warm-up runs, then ROUNDS rounds alternating anchor and devtls; the
  # medians are compared (other work on the machine varies from run to run).
  run "$NGINX_PORT" "$size" >/dev/null
  run "$GW_PORT" "$size" >/dev/null
  n_runs=()
  d_runs=()
  for _ in $(seq 1 "$ROUNDS"); do
    n_runs+=("$(run "$NGINX_PORT" "$size")")
    n_dev=$(device_leg)
    d_runs+=("$(run "$GW_PORT" "$size")")
    d_dev=$(device_leg)
  done
  n=$(median_run "${n_runs[@]}")
  d=$(median_run "${d_runs[@]}")
  for m in conns_per_s mb_per_s; do
    printf '%-7s %-14s %-12s %-12s %s\n' "$label" "$m" "$(field "$d" "$m")" "$(field "$n" "$m")" \
      "$(ratio "$(field "$d" "$m")" "$(field "$n" "$m")")"
  done
  echo "        runs (MB/s): devtls $(for r in "${d_runs[@]}"; do printf '%s ' "$(field "$r" mb_per_s)"; done); nginx $(for r in "${n_runs[@]}"; do printf '%s ' "$(field "$r" mb_per_s)"; done)"
  echo "        failed exchanges: devtls $(field "$d" failed), nginx $(field "$n" failed)"
  echo "        public leg: devtls $(field "$d" public_leg), nginx $(field "$n" public_leg)"
  echo "        device leg: devtls $d_dev, nginx $n_dev"
  if [ "$size" = 1048576 ]; then D_MB=$(field "$d" mb_per_s); N_MB=$(field "$n" mb_per_s); fi
done
grep -v '^listening' "$WORK/gateway.log" | head -5 || true

# --- how far both are from the crypto bound: one core's AES-128-GCM rate
# (seal + open, 16 KiB records) x cores / 4 passes per relayed byte (the
# proxy decrypts and encrypts it, the load generator and the echo server
# each do one more on the same cores) ---
CRYPTO=$("$LOAD" crypto 1)
AES=$(field "$CRYPTO" aws_lc_rs | python3 -c "import ast,sys; print(ast.literal_eval(sys.stdin.read())['aes128gcm'])")
echo "AEAD on one core, MB/s (aws-lc-rs is rustls's provider here; ring for comparison): $CRYPTO"
BOUND=$(python3 -c "print(round($AES * $(nproc) / 4))")
echo "1 MB exchanges: crypto bound $BOUND MB/s relayed; devtls at $(ratio "${D_MB:-0}" "$BOUND"), nginx at $(ratio "${N_MB:-0}" "$BOUND") of it"

if [ "${SYSCALLS:-0}" = 1 ] && command -v strace >/dev/null; then
  echo "== system calls during one 1 MB run (strace -c; slows both, counts only)"
  echo "devtls: $(syscalls "$GW_PID" "$GW_PORT")"
  echo "nginx:  $(syscalls "$NGINX_PID" "$NGINX_PORT")"
fi

# PROFILE=1: where each proxy's CPU time goes during one 1 MB run (perf's
# cpu-clock sampling works without hardware counters), top entries by
# shared object and symbol.
profile() { # profile PID PORT
  local pids
  pids=$(echo "$1" $(pgrep -P "$1" || true) | tr ' ' ,)
  perf record -q -e cpu-clock -F 999 -g -o "$WORK/perf.data" -p "$pids" 2>/dev/null &
  local pp=$!
  sleep 0.5
  run "$2" 1048576 >/dev/null
  kill -INT "$pp" 2>/dev/null || true
  wait "$pp" 2>/dev/null || true
  perf report -q -i "$WORK/perf.data" --no-children --sort dso,sym --percent-limit 1.5 --stdio -g none 2>/dev/null \
    | grep -v '^$' | head -25
}
if [ "${PROFILE:-0}" = 1 ] && command -v perf >/dev/null; then
  echo "== CPU profile of devtls during one 1 MB run"
  profile "$GW_PID" "$GW_PORT"
  echo "== CPU profile of nginx (master and workers) during one 1 MB run"
  profile "$NGINX_PID" "$NGINX_PORT"
fi

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
