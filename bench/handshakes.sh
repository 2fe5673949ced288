#!/usr/bin/env bash
# Full TLS handshakes per second: `devtls serve` against nginx (the anchor),
# measured in the same run by the same load generator on loopback.
#
# Both servers present the same P-256 certificate made by `devtls new`, run
# one worker per core, and have session resumption off (nginx:
# ssl_session_cache off, ssl_session_tickets off; `openssl s_time -new` never
# offers a session anyway). The client is pinned to the P-256 group (the
# device's) through an OpenSSL config, so both servers do the same ECDHE and
# ECDSA work. Each measurement is `openssl s_time -new` for SECONDS seconds;
# ROUNDS rounds alternate the servers and the medians are compared.
#
# Usage: bench/handshakes.sh [SECONDS] [ROUNDS]      (needs root for nginx)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-4}
ROUNDS=${2:-3}
CORES=$(nproc)

. bench/lib.sh
need_tools openssl nginx cargo python3

echo "== building devtls (release, in $TARGET_DIR)"
cargo build --release -q -p devtls
# Copied at once: other checkouts may share the release folder.
cp "$RELEASE/devtls" "$WORK/devtls"
DEVTLS=$WORK/devtls

"$DEVTLS" new server --dns localhost --ip 127.0.0.1 --key p256 --out "$WORK" >/dev/null

# The load generator's TLS settings: the device's group only.
cat >"$WORK/client.cnf" <<'EOF'
openssl_conf = init
[init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = sys
[sys]
Groups = P-256
EOF

# --- nginx, in a private prefix, as the anchor ---
NGINX_PORT=$(free_port)
start_nginx "$NGINX_PORT" "$CORES" "http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $WORK/server.crt;
    ssl_certificate_key $WORK/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    location / { return 200 \"hello\\n\"; }
  }
}"

# --- devtls serve, one worker per core like nginx ---
# The modern profile: TLS 1.2 and 1.3 (the default openmv profile is 1.2 only).
start_devtls() { # start_devtls PORT
  "$DEVTLS" serve --cert "$WORK/server.der" --key "$WORK/server.key.der" \
    --bind 127.0.0.1 --port "$1" --profile modern >"$WORK/devtls.log" 2>&1 &
  PIDS+=($!)
  wait_port "$1"
}
DEVTLS_PORT=$(free_port)
start_devtls "$DEVTLS_PORT"

# Full handshakes per second: s_time's count over the wall time we measure.
measure() { # measure PORT VERSION
  local start end out count
  start=$(date +%s.%N)
  out=$(OPENSSL_CONF=$WORK/client.cnf openssl s_time -connect "127.0.0.1:$1" -new \
    "-$2" -time "$SECONDS_PER_RUN" 2>&1) || { echo "error: s_time failed: $out" >&2; exit 1; }
  end=$(date +%s.%N)
  count=$(printf '%s\n' "$out" | sed -n 's/^\([0-9]\+\) connections in [0-9.]\+s;.*/\1/p' | head -1)
  [ -n "$count" ] && [ "$count" -gt 0 ] || { echo "error: no handshakes completed: $out" >&2; exit 1; }
  awk -v c="$count" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f\n", c / (e - s) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# What each server negotiates, so the comparison is like for like.
negotiated() { # negotiated PORT VERSION
  OPENSSL_CONF=$WORK/client.cnf openssl s_client -connect "127.0.0.1:$1" "-$2" \
    -CAfile "$WORK/server.crt" -verify_return_error </dev/null 2>/dev/null \
    | awk '/^New, / { v = $2; c = $NF } /^(Server|Peer) Temp Key:/ { k = $5; sub(",", "", k) }
           END { printf "%s %s %s\n", v, c, k }'
}

echo "== $CORES cores; ${SECONDS_PER_RUN}s per run, $ROUNDS rounds, median handshakes/s"
printf '%-8s %-8s %-12s %-12s %-7s %s\n' version "" devtls nginx ratio negotiated
for version in tls1_2 tls1_3; do
  d_runs=()
  n_runs=()
  for _ in $(seq 1 "$ROUNDS"); do
    d_runs+=("$(measure "$DEVTLS_PORT" "$version")")
    n_runs+=("$(measure "$NGINX_PORT" "$version")")
  done
  d=$(printf '%s\n' "${d_runs[@]}" | median)
  n=$(printf '%s\n' "${n_runs[@]}" | median)
  ratio=$(awk -v d="$d" -v n="$n" 'BEGIN { printf "%.2f", d / n }')
  printf '%-8s %-8s %-12s %-12s %-7s devtls: %s; nginx: %s\n' "$version" "" "$d/s" "$n/s" \
    "$ratio" "$(negotiated "$DEVTLS_PORT" "$version")" "$(negotiated "$NGINX_PORT" "$version")"
  echo "         runs: devtls ${d_runs[*]}; nginx ${n_runs[*]}"
done
echo "ratio = devtls / nginx handshakes per second (target: >= 1.00)"
