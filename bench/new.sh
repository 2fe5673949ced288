#!/usr/bin/env bash
# Times `devtls new server` against the device guide's four openssl commands
# (ecparam -genkey, req -new -x509 with a SAN, x509 -outform DER, pkey -outform
# DER), N rounds each in fresh temporary folders, in the same run, and prints
# both medians and their ratio.
#
#   bench/new.sh              # 50 rounds each
#   ROUNDS=200 bench/new.sh   # more rounds
#   BENCH_DIR=/var/tmp bench/new.sh   # where the fresh folders go (default: $TMPDIR or /tmp)
#
# Needs: cargo, openssl, hyperfine, python3. Target: devtls at least 20x faster.
#
# Where devtls's time went (perf, strace; 2 shared CPUs, ext4):
# - AWS-LC's CPU-jitter entropy seeding: ~30 ms of CPU in every process, 80%
#   of the run. Off via .cargo/config.toml (AWS_LC_SYS_NO_JITTER_ENTROPY); the
#   DRBG is then seeded from getrandom + RDRAND, like OpenSSL's.
# - fsync of the four files: ~0.3 ms each on an idle disk, tens of ms on a
#   busy one. files::write_all starts every file's writeback
#   (sync_file_range) before the first fsync waits, so the four flushes
#   overlap. An earlier version overlapped them with a thread per file: the
#   four threads cost ~0.6 ms of their own (on tmpfs 2.3 vs 1.7 ms per run,
#   on ext4 2.9 vs 2.5 ms), more than they saved.
# - Of the rest (in-process timings, tmpfs): ~1.1 ms before main (the
#   process floor below plus libgcc_s, libm and AWS-LC's cpuid checks:
#   cpuid traps to the hypervisor here, ~5 us each); ~0.3 ms parsing the
#   command line while clap built every subcommand's arguments (first touch
#   of their code pages; building only the command that runs saved ~50 page
#   faults, ~0.2 ms); ~0.1 ms AWS-LC's first random bytes and key; ~0.1 ms
#   the certificate.
# - Measured 2026-11-25 (2 shared vCPUs): tmpfs 20.8-21.5x, ext4 14.0-14.3x.
#   On this disk the run is ~0.7 ms longer than on tmpfs, where fsync costs
#   nothing: that is the wait for the four fsyncs; the guide's openssl
#   commands do not sync at all.
# - Page faults: ~260 per run (/bin/true: 70), ~5 us each for code (a fault
#   maps 16 pages), ~1.5-2 us for data. ~70 are the dynamic loader writing
#   the PIE's 15.6k relocations; a non-PIE link saves them (~0.1 ms) but
#   gives up address randomisation of the executable: not taken.
# - What is left is process start and scheduling; key generation and signing
#   are well under 1 ms. On a loaded machine the median ratio drops (every
#   sleep on I/O costs a trip through a busy run queue); compare the
#   fastest-run ratio printed too.
set -euo pipefail

ROUNDS="${ROUNDS:-50}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

for tool in openssl hyperfine python3; do
    command -v "$tool" >/dev/null || { echo "bench/new.sh: needs $tool on PATH" >&2; exit 2; }
done

cargo build --release -p devtls --quiet
# Timed as installed: a copy, as `cargo install` or a package leaves it. The
# linker's own output file is slower to start here (~35 more page faults,
# ~0.3 ms: its page-cache pages are smaller than those of a file written by
# copying), which measures how the file was written, not devtls.
mkdir -p "$root/target/bench"
devtls="$root/target/bench/devtls"
cp "$root/target/release/devtls" "$devtls.new" && mv "$devtls.new" "$devtls"

base="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/devtls-bench.XXXXXX")"
trap 'rm -rf "$base"' EXIT
work="$base/round"

# Each timed run starts in an empty folder made by --prepare (not timed).
prepare="rm -rf '$work' && mkdir '$work'"
devtls_cmd="cd '$work' && '$devtls' new server --dns openmv --ip 192.168.1.50 >/dev/null"
openssl_cmd="cd '$work' \
 && openssl ecparam -name prime256v1 -genkey -noout -out server.key \
 && openssl req -new -x509 -key server.key -out server.crt -days 365 -subj /CN=openmv \
      -addext subjectAltName=DNS:openmv,IP:192.168.1.50 2>/dev/null \
 && openssl x509 -in server.crt -outform DER -out server.der \
 && openssl pkey -in server.key -outform DER -out server.key.der"

# Both produce the same four files, checked once before timing (in subshells:
# the commands cd into a folder that --prepare deletes).
(eval "$prepare"; eval "$devtls_cmd")
for f in server.key server.crt server.der server.key.der; do [ -s "$work/$f" ] || { echo "devtls did not write $f" >&2; exit 1; }; done
(eval "$prepare"; eval "$openssl_cmd")
for f in server.key server.crt server.der server.key.der; do [ -s "$work/$f" ] || { echo "openssl did not write $f" >&2; exit 1; }; done

echo "devtls new server vs the guide's four openssl commands, $ROUNDS rounds each ($(openssl version | cut -d' ' -f1-2), folders under $(dirname "$base"))"
hyperfine --style basic --runs "$ROUNDS" --warmup 3 \
    --prepare "$prepare" \
    --command-name devtls "$devtls_cmd" \
    --command-name openssl "$openssl_cmd" \
    --command-name floor "cd '$work' && /bin/true" \
    --export-json "$base/result.json" >/dev/null

python3 - "$base/result.json" <<'PY'
import json, statistics, sys
results = {r["command"]: r["times"] for r in json.load(open(sys.argv[1]))["results"]}
med = {name: statistics.median(times) for name, times in results.items()}
for name in ("devtls", "openssl"):
    print(f"{name:8} median {med[name] * 1000:8.2f} ms  (min {min(results[name]) * 1000:.2f}, max {max(results[name]) * 1000:.2f})")
ratio = med["openssl"] / med["devtls"]
best = min(results["openssl"]) / min(results["devtls"])
print(f"ratio    openssl/devtls median = {ratio:.1f}x (target >= 20x: {'met' if ratio >= 20 else 'NOT met'}); fastest runs: {best:.1f}x")
# What a process costs here before it does anything (a C program doing
# nothing, started the same way): devtls pays it once, openssl four times.
floor = med["floor"]
print(f"floor    median {floor * 1000:8.2f} ms  (/bin/true: the cost of starting a process on this machine)")
print(f"above the floor: devtls {(med['devtls'] - floor) * 1000:.2f} ms, openssl {(med['openssl'] - 4 * floor) * 1000:.2f} ms "
      f"beyond its 4 starts; 20x needs devtls at {med['openssl'] / 20 * 1000:.2f} ms = {med['openssl'] / 20 / max(floor, 1e-9):.1f} floors")
with open("/proc/loadavg") as f:
    print(f"load average during the run: {f.read().split()[0]} (on {__import__('os').cpu_count()} CPUs; a busy machine lowers the median ratio)")
PY
