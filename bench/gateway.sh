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
# Settings (environment): ROUNDS, WORKERS, SIZES ("1024 1048576"),
# DEVICE_RESUME=0 (a device that keeps no sessions), BENCH_DEVTLS (another
# devtls binary), SYSCALLS=1, PROFILE=1 (PROFILE_SIZE).
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

gateway_binaries release

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
cd - >/dev/null

# --- the device: an echo server, TLS 1.2; it picks the device leg's suite
# (DEVICE_SUITE, default ECDHE-ECDSA AES-128-GCM) for both proxies alike ---
gateway_device

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

# run PORT SIZE -> the load generator's JSON line, with "proxy_cpu_ms":
# the CPU milliseconds the proxy behind PORT used per 1,000 exchanges
# (load-independent, unlike the rates) and "load_cpu": the share of the
# machine the load generator itself used (near 1.0 would mean the
# generator, not the proxy, is the bound).
run() {
  local pid c0 c1 out
  pid=$([ "$1" = "$GW_PORT" ] && echo "$GW_PID" || echo "$NGINX_PID")
  c0=$(cpu_tree "$pid")
  out=$("$LOAD" load "$1" "$WORK/root.pem" gw.test "$2" "$CONC" "$SECS")
  c1=$(cpu_tree "$pid")
  python3 - "$out" "$c0" "$c1" "$SECS" "$(nproc)" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
c0, c1, secs, cores = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
r["proxy_cpu_ms"] = round((c1 - c0) * 1e6 / max(r["done"], 1), 1)
r["load_cpu"] = round(r["cpu_s"] / (secs * cores), 2)
print(json.dumps(r))
PY
}
# The run (JSON line) with the median MB/s of those given.
median_run() {
  python3 -c 'import json,sys; r=sorted(sys.argv[1:], key=lambda l: json.loads(l)["mb_per_s"]); print(r[len(r)//2])' "$@"
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

# The echo server's last line: "device leg: SUITE full F resumed R" (its
# handshakes so far, printed within 100 ms of a change).
device_line() { sleep 0.3; tail -1 "$WORK/echo.log"; }
# device_leg BEFORE AFTER: the suite and the full/resumed device-leg
# handshakes between two such lines.
device_leg() {
  python3 - "$1" "$2" <<'PY'
import sys
def parse(l):
    f = l.split()
    return (f[2] if len(f) > 6 else "?"), int(f[-3]) if len(f) > 4 else 0, int(f[-1]) if len(f) > 4 else 0
_, f0, r0 = parse(sys.argv[1]); suite, f1, r1 = parse(sys.argv[2])
print(f"{suite}, {f1 - f0} full + {r1 - r0} resumed handshakes")
PY
}

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
echo "== public leg: no resumption (the load generator never offers a session); device leg: $([ "${DEVICE_RESUME:-1}" = 0 ] && echo "the device keeps no sessions (DEVICE_RESUME=0): full handshakes" || echo "the device resumes sessions (DEVICE_RESUME=0 for one that does not); both proxies reuse them by default")"
printf '%-7s %-14s %-12s %-12s %s\n' size metric devtls nginx ratio
# proxy_cpu_ms: the proxy's CPU ms per 1,000 exchanges; its ratio is
# nginx / devtls, so >= 1.0 means devtls needs less CPU.
for size in ${SIZES:-1024 1048576}; do
  label=$([ "$size" = 1024 ] && echo 1KB || echo 1MB)
  # Warm-up runs, then ROUNDS rounds alternating anchor and devtls; the
  # medians are compared (other work on the machine varies from run to run).
  run "$NGINX_PORT" "$size" >/dev/null
  run "$GW_PORT" "$size" >/dev/null
  n_runs=()
  d_runs=()
  n_load=()
  d_load=()
  for _ in $(seq 1 "$ROUNDS"); do
    before=$(device_line)
    n_runs+=("$(run "$NGINX_PORT" "$size")")
    n_load+=("$(cut -d' ' -f1 /proc/loadavg)")
    after=$(device_line)
    n_dev=$(device_leg "$before" "$after")
    d_runs+=("$(run "$GW_PORT" "$size")")
    d_load+=("$(cut -d' ' -f1 /proc/loadavg)")
    d_dev=$(device_leg "$after" "$(device_line)")
  done
  n=$(median_run "${n_runs[@]}")
  d=$(median_run "${d_runs[@]}")
  for m in conns_per_s mb_per_s; do
    printf '%-7s %-14s %-12s %-12s %s\n' "$label" "$m" "$(field "$d" "$m")" "$(field "$n" "$m")" \
      "$(ratio "$(field "$d" "$m")" "$(field "$n" "$m")")"
  done
  m=proxy_cpu_ms
  printf '%-7s %-14s %-12s %-12s %s\n' "$label" "$m" "$(field "$d" "$m")" "$(field "$n" "$m")" \
    "$(ratio "$(field "$n" "$m")" "$(field "$d" "$m")")"
  echo "        runs (conns/s, MB/s @ 1-min load average after the run): devtls $(for i in "${!d_runs[@]}"; do printf '%s/%s@%s ' "$(field "${d_runs[$i]}" conns_per_s)" "$(field "${d_runs[$i]}" mb_per_s)" "${d_load[$i]}"; done); nginx $(for i in "${!n_runs[@]}"; do printf '%s/%s@%s ' "$(field "${n_runs[$i]}" conns_per_s)" "$(field "${n_runs[$i]}" mb_per_s)" "${n_load[$i]}"; done)"
  echo "        failed exchanges: devtls $(field "$d" failed), nginx $(field "$n" failed); load generator's share of the $(nproc) cores: $(field "$d" load_cpu) (devtls run), $(field "$n" load_cpu) (nginx run)"
  echo "        public leg: devtls $(field "$d" public_leg), nginx $(field "$n" public_leg)"
  echo "        device leg (last round): devtls $d_dev; nginx $n_dev"
  if [ "$size" = 1048576 ]; then D_MB=$(field "$d" mb_per_s); N_MB=$(field "$n" mb_per_s); fi
  if [ "$size" = 1024 ]; then D_KB=$(field "$d" conns_per_s); N_KB=$(field "$n" conns_per_s); fi
done
grep -v '^listening' "$WORK/gateway.log" | head -5 || true

# --- how far both are from the crypto bound: one core's AES-128-GCM rate
# (seal + open, 16 KiB records) x cores / 4 passes per relayed byte (the
# proxy decrypts and encrypts it, the load generator and the echo server
# each do one more on the same cores) ---
CRYPTO=$("$LOAD" crypto 1)
# --- and the handshake bound: every P-256 operation one relayed connection
# costs on these cores (load generator, proxy and device share them), from
# one core's rates with aws-lc-rs (rustls's provider; nginx's OpenSSL uses
# the same nistz256 assembly). Per connection: the load generator 1 ECDHE
# + 3 verifies (leaf, intermediate, CertificateVerify); the proxy's public
# leg 1 ECDHE + 1 sign; with a full device-leg handshake the proxy 1 ECDHE
# + 1 verify (ServerKeyExchange; the pinned certificate's own signature is
# not counted) and the device 1 ECDHE + 1 sign; a resumed device leg costs
# no public-key operation.
HS=$(python3 - "$CRYPTO" "${DEVICE_RESUME:-1}" "$(nproc)" <<'PY'
import json, sys
p = json.loads(sys.argv[1])["p256"]
full = sys.argv[2] == "0"
ecdhe, sign, verify = (3, 2, 4) if full else (2, 1, 3)
per_conn = ecdhe / p["ecdhe"] + sign / p["sign"] + verify / p["verify"]
print(f"{int(sys.argv[3]) / per_conn:.0f} {ecdhe} {sign} {verify}")
PY
)
read -r HS_BOUND HS_E HS_S HS_V <<<"$HS"
echo "P-256 on one core, ops/s (aws-lc-rs): $(field "$CRYPTO" p256)"
[ -n "${D_KB:-}" ] && echo "1 KB exchanges: handshake bound $HS_BOUND conns/s ($HS_E ECDHE + $HS_S signs + $HS_V verifies per connection, device leg $([ "${DEVICE_RESUME:-1}" = 0 ] && echo full || echo resumed), on $(nproc) cores); devtls at $(ratio "${D_KB:-0}" "$HS_BOUND"), nginx at $(ratio "${N_KB:-0}" "$HS_BOUND") of it"
AES=$(field "$CRYPTO" aws_lc_rs | python3 -c "import ast,sys; print(ast.literal_eval(sys.stdin.read())['aes128gcm'])")
echo "AEAD on one core, MB/s (aws-lc-rs, rustls's provider here): $CRYPTO"
BOUND=$(python3 -c "print(round($AES * $(nproc) / 4))")
[ -n "${D_MB:-}" ] && echo "1 MB exchanges: crypto bound $BOUND MB/s relayed; devtls at $(ratio "$D_MB" "$BOUND"), nginx at $(ratio "$N_MB" "$BOUND") of it"

if [ "${SYSCALLS:-0}" = 1 ] && command -v strace >/dev/null; then
  echo "== system calls during one 1 MB run (strace -c; slows both, counts only)"
  echo "devtls: $(syscalls "$GW_PID" "$GW_PORT")"
  echo "nginx:  $(syscalls "$NGINX_PID" "$NGINX_PORT")"
fi

# PROFILE=1: where each proxy's CPU time goes during one run of
# PROFILE_SIZE bytes (default 1 MB; 1024 profiles the handshake path) --
# perf's cpu-clock sampling works without hardware counters -- top entries
# by shared object and symbol.
profile() { # profile PID PORT
  local pids
  pids=$(echo "$1" $(pgrep -P "$1" || true) | tr ' ' ,)
  perf record -q -e cpu-clock -F 999 -g -o "$WORK/perf.data" -p "$pids" 2>/dev/null &
  local pp=$!
  sleep 0.5
  run "$2" "${PROFILE_SIZE:-1048576}" >/dev/null
  kill -INT "$pp" 2>/dev/null || true
  wait "$pp" 2>/dev/null || true
  perf report -q -i "$WORK/perf.data" --no-children --sort dso,sym --percent-limit ${PROFILE_LIMIT:-1.5} --stdio -g none 2>/dev/null \
    | grep -v '^$' | head -${PROFILE_LINES:-25}
}
if [ "${PROFILE:-0}" = 1 ] && command -v perf >/dev/null; then
  echo "== CPU profile of devtls during one ${PROFILE_SIZE:-1048576}-byte run"
  profile "$GW_PID" "$GW_PORT"
  echo "== CPU profile of nginx (master and workers) during one ${PROFILE_SIZE:-1048576}-byte run"
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
