#!/usr/bin/env bash
# Benchmark: a fleet of N devices (default 1,000,000) in a PostgreSQL
# inventory, in a throw-away server started here: how long `fleet status`
# and `fleet list --expiring 7d --limit 100` take (target < 1 s each), how
# long `fleet crl` takes with REVOKED revocations (default 100,000; target a
# few seconds), and the inventory's size per device.
#
# How the million rows are made: `fleet issue` makes SAMPLE real devices
# (keys, certificates, folders, rows) and the other N - SAMPLE rows are
# copied from the shape of those with generate_series: same columns, same
# key type and role, a serial of the same length, not_after spread over the
# certificates' lifetime. The inventory holds no certificate DER (certs has
# the SHA-256 of it), so the rows are what `fleet issue` writes, without the
# device folders a million folders would cost (4 million inodes). Making
# the certificates is what bench/fleet.sh measures (devices/s on
# PostgreSQL); at that rate, N devices take N / rate seconds. Which fleets
# need no folders: docs/renewal.md ("A million devices").
#
# Revocations: REVOKED active rows are marked revoked with the statement
# `fleet revoke` runs (status, revoked_at, reason), in one UPDATE.
#
# Usage: bench/fleet_million.sh   (N=1000000 REVOKED=100000 SAMPLE=100 to change)
#        BENCH_NO_BUILD=1 bench/fleet_million.sh   (use the release build already there)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${N:-1000000}
REVOKED=${REVOKED:-100000}
SAMPLE=${SAMPLE:-100}
DAYS=90

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  cargo build --release -q -p devtls --bins
fi
BIN=$RELEASE/devtls
[ -x "$BIN" ] || { echo "error: $BIN is missing: build without BENCH_NO_BUILD" >&2; exit 2; }
start_postgres
sql() { "$PGBIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$URL" -c "$1"; }
export DEVTLS_FLEET_DB=$URL

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $N devices, $REVOKED revoked"
cd "$WORK"
"$BIN" fleet init --name million >/dev/null
"$BIN" fleet issue --count "$SAMPLE" --prefix real- --days "$DAYS" --quiet >/dev/null

# The other rows, shaped like the real ones.
t0=$(date +%s.%N)
sql "INSERT INTO certs (device, serial, sha256, key_type, role, dns, ips, not_before, not_after,
                        status, issued_at, from_csr)
     SELECT 'd-' || g,
            '7f' || lpad(to_hex(g), length(r.serial) - 2, '0'),
            encode(sha256(int8send(g)), 'hex'),
            r.key_type, r.role, r.dns, r.ips,
            r.not_before - (g::bigint * $DAYS * 86400 / $N),
            r.not_after - (g::bigint * $DAYS * 86400 / $N),
            'active', r.issued_at, r.from_csr
     FROM generate_series(1, $N - $SAMPLE) AS g,
          (SELECT * FROM certs WHERE device = 'real-1') AS r;
     ANALYZE certs;"
FILL=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
ROWS=$(sql "SELECT count(*) FROM certs")

# seconds COMMAND...: wall-clock seconds of one run (output discarded).
seconds() {
  local a b
  a=$(date +%s.%N)
  "$@" >/dev/null
  b=$(date +%s.%N)
  awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b - a }'
}
# Each timed twice: the first run may read from disk, the second from cache.
STATUS1=$(seconds "$BIN" fleet status)
STATUS2=$(seconds "$BIN" fleet status)
LIST1=$(seconds "$BIN" fleet list --expiring 7d --limit 100)
LIST2=$(seconds "$BIN" fleet list --expiring 7d --limit 100)
LISTED=$("$BIN" fleet list --expiring 7d --limit 100 --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "?")

sql "UPDATE certs SET status = 'revoked', revoked_at = extract(epoch from now())::bigint,
            reason = 'unspecified'
     WHERE id IN (SELECT id FROM certs WHERE status = 'active' ORDER BY id LIMIT $REVOKED)"
CRL1=$(seconds "$BIN" fleet crl --out "$WORK/fleet.crl")
CRL_ENTRIES=$(openssl crl -inform der -in "$WORK/fleet.crl" -noout -text | grep -c "Serial Number:" || true)
CRL_BYTES=$(stat -c %s "$WORK/fleet.crl")

TABLE=$(sql "SELECT pg_total_relation_size('certs')")
DB=$(sql "SELECT pg_database_size('fleet')")

printf '%-48s %10s\n' "inventory rows" "$ROWS"
printf '%-48s %10s s\n' "filling the synthetic rows (one INSERT)" "$FILL"
printf '%-48s %10s s   (again: %s s)\n' "fleet status" "$STATUS1" "$STATUS2"
printf '%-48s %10s s   (again: %s s; %s rows)\n' "fleet list --expiring 7d --limit 100" "$LIST1" "$LIST2" "$LISTED"
printf '%-48s %10s s   (%s entries, %s bytes)\n' "fleet crl with $REVOKED revoked" "$CRL1" "$CRL_ENTRIES" "$CRL_BYTES"
awk -v t="$TABLE" -v d="$DB" -v n="$ROWS" 'BEGIN {
  printf "%-48s %10.0f bytes   (certs and its indexes: %.0f MB)\n", "inventory size per device", t / n, t / 1048576
  printf "%-48s %10.0f bytes   (whole database: %.0f MB)\n", "database size per device", d / n, d / 1048576
}'
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
