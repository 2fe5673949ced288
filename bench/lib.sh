# Shared by the bench scripts (source it after `cd` to the repository root):
# a scratch folder cleaned up on exit with every process started, free
# ports, waiting for a listener, resident memory and CPU time, the release build's
# folder, and nginx (the anchor) started from a config body.
#
# Release binaries go to ${CARGO_TARGET_DIR:-target}/release.

TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$PWD/$TARGET_DIR ;; esac
RELEASE=$TARGET_DIR/release

WORK=$(mktemp -d "/tmp/devtls-bench.XXXXXX")
PIDS=()
bench_cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap bench_cleanup EXIT

need_tools() { # need_tools TOOL...: exit 2 naming the first missing one
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
  done
}

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

# CPU seconds (user + system) a process and its children have used so far
# (nginx: master + workers; a multi-threaded process counts all threads).
cpu_tree() {
  local pid ticks=0 t
  for pid in $1 $(pgrep -P "$1" || true); do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    ticks=$((ticks + t))
  done
  python3 -c "print($ticks / $(getconf CLK_TCK))"
}

# nginx's stream module (a separate package on Debian): the load_module
# line it needs, or nothing when it is built in; exit 2 when it is missing.
nginx_stream_module() {
  local mod
  mod=$(find /usr/lib/nginx/modules /usr/share/nginx/modules -name ngx_stream_module.so 2>/dev/null | head -1 || true)
  if nginx -V 2>&1 | grep -q -- '--with-stream=dynamic' && [ -z "$mod" ]; then
    echo "error: nginx's stream module is missing: apt-get install libnginx-mod-stream" >&2
    exit 2
  fi
  [ -n "$mod" ] && echo "load_module $mod;"
  return 0
}

# start_nginx PORT WORKERS BODY [PRELUDE]: nginx in a private prefix under
# $WORK/nginx with WORKERS worker processes and BODY (an http { } or
# stream { } block) after the common settings; PRELUDE goes first (e.g. a
# load_module line). Sets NGINX_PID and waits until PORT listens.
start_nginx() {
  local port=$1 workers=$2 body=$3 prelude=${4:-}
  mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
  cat >"$WORK/nginx/nginx.conf" <<CONF
$prelude
daemon off;
master_process on;
worker_processes $workers;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 8192; }
$body
CONF
  nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_port "$port"
}

# gateway_binaries [PROFILE]: builds devtls and the gateway's load generator
# (release unless PROFILE=debug) in one cargo command (the feature set of
# `cargo build -p devtls` alone differs, and the dependencies would build
# twice), copies them to $WORK/bin at once (other checkouts may share the
# target folder) and sets DEVTLS and LOAD. BENCH_DEVTLS=PATH: measure
# another devtls binary (e.g. an earlier build) instead.
gateway_binaries() {
  local build=${1:-release}
  echo "== building devtls and the load generator ($build, in $TARGET_DIR)"
  if [ "$build" = release ]; then
    cargo build --release -q -p devtls -p devtls-gateway --bins --example gwload
  else
    cargo build -q -p devtls -p devtls-gateway --bins --example gwload
  fi
  mkdir -p "$WORK/bin"
  cp "$TARGET_DIR/$build/devtls" "$TARGET_DIR/$build/examples/gwload" "$WORK/bin/"
  DEVTLS=$WORK/bin/devtls
  if [ -n "${BENCH_DEVTLS:-}" ]; then cp "$BENCH_DEVTLS" "$DEVTLS"; fi
  LOAD=$WORK/bin/gwload
}

# gateway_device: the device's self-signed certificate ($WORK/device, made
# with $DEVTLS) and an echo server standing in for the device ($LOAD echo:
# TLS 1.2; it picks the device leg's suite, DEVICE_SUITE, default
# ECDHE-ECDSA AES-128-GCM); sets ECHO_PORT.
gateway_device() {
  "$DEVTLS" new server --dns openmv --key p256 --out "$WORK/device" >/dev/null
  ECHO_PORT=$(free_port)
  "$LOAD" echo "$ECHO_PORT" "$WORK/device/server.crt" "$WORK/device/server.key" >"$WORK/echo.log" &
  PIDS+=($!)
  wait_port "$ECHO_PORT"
}

# start_postgres: a throw-away PostgreSQL server in $WORK/pg (as the
# postgres user when root; it refuses to run as root) on a free loopback
# port with one database, `fleet`; sets PGBIN and URL, and stops the server
# (immediate) on exit. Extra server settings: PG_OPTS (e.g. "-c fsync=off").
start_postgres() {
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$PGBIN/initdb" ] || { echo "error: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 2; }
  local port
  port=$(free_port)
  mkdir -p "$WORK/pg" && chmod 777 "$WORK" "$WORK/pg"
  as_pg "$PGBIN/initdb" -A trust -U postgres --no-sync -D "$WORK/pg/data" >/dev/null
  as_pg "$PGBIN/pg_ctl" -w -l "$WORK/pg/log" -D "$WORK/pg/data" \
    -o "-p $port -k $WORK/pg -c listen_addresses=127.0.0.1 ${PG_OPTS:-}" start >/dev/null
  trap 'pg_stop; bench_cleanup' EXIT
  as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U postgres fleet
  URL="postgres://postgres@127.0.0.1:$port/fleet?sslmode=disable"
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true; }
