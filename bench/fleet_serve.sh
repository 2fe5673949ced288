#!/usr/bin/env bash
# Benchmark: `devtls fleet serve` renewals per second with many concurrent
# devices (CONCURRENCY threads, default 64), as a fraction of the machine's
# public-key bound measured in the same run.
#
# One renewal = the device's two connections: ask with its current
# certificate (a new key and certificate come back, devtls format), then
# confirm by connecting with the new one (204). Each is a full TLS 1.2
# mutual-TLS handshake (ECDHE-ECDSA, P-256), restricted to the openmv
# profile. The load generator (crates/renewal/examples/renew_load.rs) runs
# on the same machine and takes its share of the cores, so the bound counts
# the public-key operations of both sides (docs/renewal.md, "Renewals per
# second"):
#                      service  devices
#   ECDHE (P-256)         2        2     one per side per handshake
#   ECDSA sign            3        2     ServerKeyExchange x2, the new
#                                        certificate; CertificateVerify x2
#   ECDSA verify          4        4     client cert + CertificateVerify x2;
#                                        server cert + ServerKeyExchange x2
#   P-256 key generation  1        0     the device's new key
# Each operation's rate on all cores comes from
# crates/renewal/examples/renewal_ops.rs (aws-lc-rs, the library rustls and
# rcgen use here), and bound = 1 / sum(count / rate).
#
# The CPU seconds of the service and of the load generator during the run
# are printed as well: with the bound's per-side share they say which side
# spends its time on something other than public-key operations.
#
# The anchor, run after the service in the same script: nginx (OpenSSL)
# with the service's certificate, demanding the devices' certificates from
# the fleet CA, TLS 1.2 and P-256 only, no session reuse, answering the same
# two connections per renewal of the same load generator: the ask from a
# static file holding one pre-made pair, the confirmation (a connection
# with that pair) with 204. That is every handshake and round trip of a
# renewal with no issuance behind it: the rate the TLS stacks, the kernel's
# loopback and the load generator allow on this machine, printed beside the
# service's as a ratio (NO_ANCHOR=1 skips it).
#
# Usage: bench/fleet_serve.sh   (DEVICES=2000 CONCURRENCY=64 DURATION=15 to change)
#        BENCH_NO_BUILD=1 bench/fleet_serve.sh   (use the release binaries already built)
#        CARGO_TARGET_DIR=... is honoured (relative to the repository root).
#        PERF=1: also record the service with perf for the run (perf.data in $PERF_OUT, default .)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DEVICES=${DEVICES:-2000}
CONCURRENCY=${CONCURRENCY:-64}
SECONDS_RUN=${DURATION:-15}

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  cargo build --release -q -p devtls -p devtls-renewal --examples --bins
fi
BIN=$RELEASE/devtls
for f in "$BIN" "$RELEASE/examples/renewal_ops" "$RELEASE/examples/renew_load"; do
  [ -x "$f" ] || { echo "error: $f is missing: build without BENCH_NO_BUILD" >&2; exit 2; }
done

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) before; $DEVICES devices, $CONCURRENCY concurrent, ${SECONDS_RUN}s"
(cd "$WORK" && "$BIN" fleet init --name bench >/dev/null && "$BIN" fleet issue --count "$DEVICES" --prefix d- --days 90 --quiet >/dev/null)

# The public-key bound, on every core, before the service starts.
OPS=$("$RELEASE/examples/renewal_ops" "$(nproc)" 1000)
BOUND=$(awk '$1 == "bound" { print $2 }' <<<"$OPS")

PORT=$(free_port)
(cd "$WORK" && exec "$BIN" fleet serve --bind 127.0.0.1 --port "$PORT" --renew-after 0 >"$WORK/serve.log" 2>&1) &
SERVER=$!
PIDS+=("$SERVER")
wait_port "$PORT"

if [ -n "${PERF:-}" ]; then
  perf record -g -o "${PERF_OUT:-.}/perf.data" -p "$SERVER" -- sleep "$SECONDS_RUN" >/dev/null 2>&1 &
  PIDS+=($!)
fi
SERVER_CPU0=$(cpu_tree "$SERVER")
LOAD_OUT=$WORK/load.out
/usr/bin/time -f "%U %S" -o "$WORK/load.time" \
  "$RELEASE/examples/renew_load" "$WORK/fleet" "$PORT" "$CONCURRENCY" "$SECONDS_RUN" >"$LOAD_OUT"
SERVER_CPU=$(python3 -c "print($(cpu_tree "$SERVER") - $SERVER_CPU0)")
LOAD_CPU=$(awk '{ print $1 + $2 }' "$WORK/load.time")
read -r DONE ELAPSED ERRORS <"$LOAD_OUT"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

RATE=$(awk -v n="$DONE" -v t="$ELAPSED" 'BEGIN { printf "%.0f", n / t }')
FRACTION=$(awk -v a="$RATE" -v b="$BOUND" 'BEGIN { printf "%.2f", a / b }')

CPUBOUND=$(awk '$1 == "cpubound" { print $2 }' <<<"$OPS")
awk '$1 == "op" { printf "%-44s %10s/s   (%s service + %s devices per renewal; %s us CPU each)\n", $2, $3, $4, $5, $6 }' <<<"$OPS"
printf '%-44s %10s/s   (if the cores were idle: %s/s)\n' "public-key bound (renewals, both sides)" "$BOUND" "$CPUBOUND"
printf '%-44s %10s/s   (%s renewals in %ss, %s errors)\n' "fleet serve renewals (ask + confirm)" "$RATE" "$DONE" "$ELAPSED" "$ERRORS"
printf '%-44s %10s\n' "fraction of the bound" "$FRACTION"
SIDE_S=$(awk '$1 == "side" && $2 == "service" { print $3 }' <<<"$OPS")
SIDE_D=$(awk '$1 == "side" && $2 == "devices" { print $3 }' <<<"$OPS")
# The service's public-key operations nginx does not do: the new key and its certificate.
KEYGEN_SIGN=$(awk '$1 == "op" && $2 == "p256-keygen" { k = $6 } $1 == "op" && $2 == "ecdsa-p256-sign" { g = $6 } END { print k + g }' <<<"$OPS")
awk -v s="$SERVER_CPU" -v l="$LOAD_CPU" -v n="$DONE" -v t="$ELAPSED" -v bs="$SIDE_S" -v bd="$SIDE_D" 'BEGIN {
  n = n > 0 ? n : 1
  printf "%-44s %10.0f us   (public-key part %s us; %.1f CPU s in %.1f s)\n", "service CPU per renewal", 1e6 * s / n, bs, s, t
  printf "%-44s %10.0f us   (public-key part %s us; %.1f CPU s)\n", "load generator CPU per renewal", 1e6 * l / n, bd, l
}'
echo "machine load after: $LOAD_AFTER"
(cd "$WORK" && "$BIN" fleet status | sed -n '/Renewal service/,$p')

[ -n "${NO_ANCHOR:-}" ] && exit 0
need_tools nginx openssl
kill "$SERVER" && wait "$SERVER" 2>/dev/null || true
# The one pair every device is handed (its folder moved out of devices/,
# so no device asks with it), in the devtls format, and its serial.
(cd "$WORK" && "$BIN" fleet issue anchor-pair --days 90 --quiet >/dev/null)
mv "$WORK/fleet/devices/anchor-pair" "$WORK/anchor-pair"
"$RELEASE/examples/renew_load" pair "$WORK/anchor-pair" "$WORK/pair.bin"
chmod o+x "$WORK" && chmod o+r "$WORK/pair.bin" # nginx's workers read it as another user (a throw-away pair)
SERIAL=$(openssl x509 -inform der -in "$WORK/anchor-pair/client.der" -noout -serial | cut -d= -f2)
openssl x509 -inform der -in "$WORK/fleet/service/server.der" -out "$WORK/anchor-server.pem"
openssl pkey -inform der -in "$WORK/fleet/service/server.key.der" -out "$WORK/anchor-server.key"
openssl x509 -inform der -in "$WORK/fleet/ca.der" -out "$WORK/anchor-ca.pem"
ANCHOR_PORT=$(free_port)
start_nginx "$ANCHOR_PORT" "$(nproc)" "http {
  access_log off;
  keepalive_timeout 0;
  server {
    listen 127.0.0.1:$ANCHOR_PORT ssl;
    ssl_certificate $WORK/anchor-server.pem;
    ssl_certificate_key $WORK/anchor-server.key;
    ssl_client_certificate $WORK/anchor-ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.2;
    ssl_ecdh_curve prime256v1;
    ssl_session_cache off;
    ssl_session_tickets off;
    location = /.well-known/est/serverkeygen {
      if (\$ssl_client_serial = $SERIAL) { return 204; }
      default_type application/x-devtls-renew;
      alias $WORK/pair.bin;
    }
  }
}"
if [ -n "${PERF:-}" ]; then
  perf record -g -o "${PERF_OUT:-.}/perf-anchor.data" -p "$(pgrep -d, -P "$NGINX_PID")" -- sleep "$SECONDS_RUN" >/dev/null 2>&1 &
  PIDS+=($!)
fi
NGINX_CPU0=$(cpu_tree "$NGINX_PID")
/usr/bin/time -f "%U %S" -o "$WORK/anchor.time" \
  "$RELEASE/examples/renew_load" "$WORK/fleet" "$ANCHOR_PORT" "$CONCURRENCY" "$SECONDS_RUN" anchor >"$WORK/anchor.out"
NGINX_CPU=$(python3 -c "print($(cpu_tree "$NGINX_PID") - $NGINX_CPU0)")
A_LOAD_CPU=$(awk '{ print $1 + $2 }' "$WORK/anchor.time")
read -r A_DONE A_ELAPSED A_ERRORS <"$WORK/anchor.out"
A_RATE=$(awk -v n="$A_DONE" -v t="$A_ELAPSED" 'BEGIN { printf "%.0f", n / t }')
printf '%-44s %10s/s   (%s in %ss, %s errors)\n' "anchor: nginx, same connections, no issuance" "$A_RATE" "$A_DONE" "$A_ELAPSED" "$A_ERRORS"
awk -v s="$NGINX_CPU" -v l="$A_LOAD_CPU" -v n="$A_DONE" -v bs="$SIDE_S" -v bd="$SIDE_D" -v ks="$KEYGEN_SIGN" 'BEGIN {
  n = n > 0 ? n : 1
  printf "%-44s %10.0f us   (public-key part %.0f us: no key generation or certificate signature)\n", "nginx CPU per renewal", 1e6 * s / n, bs - ks
  printf "%-44s %10.0f us   (public-key part %s us)\n", "load generator CPU per renewal (anchor)", 1e6 * l / n, bd
}'
printf '%-44s %10s\n' "anchor's fraction of the bound" "$(awk -v a="$A_RATE" -v b="$BOUND" 'BEGIN { printf "%.2f", a / b }')"
printf '%-44s %10s\n' "fleet serve / anchor" "$(awk -v a="$RATE" -v b="$A_RATE" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 1) }')"
