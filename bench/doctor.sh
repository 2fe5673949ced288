#!/usr/bin/env bash
# Benchmark: `devtls doctor` against a loopback TLS server (openssl s_server,
# P-256 self-signed leaf pinned as the anchor, so the device would connect),
# beside `openssl s_client -tls1_2` making a full handshake with the same
# server in the same run. Target: doctor under 50 ms. Printed as the mean
# wall time of each and their ratio (doctor / s_client).
#
# doctor sends the device's ClientHello, reads the server's first flight,
# checks the key exchange signature and the chain as the device does, and
# says goodbye; s_client completes the handshake. Both start a process per
# run, which hyperfine includes.
#
# Measured on 2 shared vCPUs under load 9-15 (2026-11-29, RUNS=50): doctor
# 5.4 ms (± 4.1), openssl s_client 87.7 ms (± 28.2), ratio 0.06.
#
# Usage: bench/doctor.sh            (RUNS=50 to change; BIN=path to use another devtls)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-50}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p devtls
  BIN=$PWD/target/release/devtls
fi
command -v hyperfine >/dev/null || { echo "hyperfine missing: apt-get install hyperfine" >&2; exit 2; }
command -v openssl >/dev/null || { echo "openssl missing: apt-get install openssl" >&2; exit 2; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/devtls-doctor-bench.XXXXXX")
cleanup() { [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
cd "$TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout leaf.key -out leaf.pem 2>/dev/null
openssl x509 -in leaf.pem -outform DER -out leaf.der
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
openssl s_server -accept "127.0.0.1:$PORT" -cert leaf.pem -key leaf.key -quiet -naccept 100000 \
  >/dev/null 2>&1 &
SERVER=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
# The verdict must be "connects" for the timing to mean anything.
"$BIN" doctor "127.0.0.1:$PORT" --ca leaf.der --hostname localhost >/dev/null

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine -N --warmup 5 --runs "$RUNS" --export-json times.json \
  -n doctor "$BIN doctor 127.0.0.1:$PORT --ca leaf.der --hostname localhost" \
  -n "openssl s_client" "openssl s_client -connect 127.0.0.1:$PORT -tls1_2 -servername localhost -quiet -no_ign_eof" \
  >/dev/null
python3 - <<'EOF'
import json
r = {x["command"]: x for x in json.load(open("times.json"))["results"]}
d, o = r["doctor"]["mean"], r["openssl s_client"]["mean"]
print(f"devtls doctor      {d*1000:7.1f} ms (± {r['doctor']['stddev']*1000:.1f})   target < 50 ms: {'met' if d < 0.05 else 'NOT met'}")
print(f"openssl s_client   {o*1000:7.1f} ms (± {r['openssl s_client']['stddev']*1000:.1f})")
print(f"ratio doctor / s_client: {d/o:.2f}")
EOF
