#!/usr/bin/env bash
# `cargo check` of every target of the workspace for macOS, from Linux
# (README, "Platforms"). The C build scripts (aws-lc-sys, libsqlite3-sys)
# need a C compiler for the Apple target; without the Apple SDK, gcc refuses,
# so zig (PyPI's ziglang, which carries macOS's libc headers) compiles them.
# Type-checks only: linking a macOS binary needs the SDK's frameworks.
#
#   scripts/macos-check.sh                       # aarch64-apple-darwin
#   scripts/macos-check.sh x86_64-apple-darwin
#
# Installs ziglang into target/zig-venv and the Rust target if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${1:-aarch64-apple-darwin}"
case "$TARGET" in
  aarch64-apple-darwin) ZIG_TARGET=aarch64-macos ;;
  x86_64-apple-darwin) ZIG_TARGET=x86_64-macos ;;
  *) echo "unknown target $TARGET: aarch64-apple-darwin or x86_64-apple-darwin"; exit 2 ;;
esac
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
venv="$PWD/$TARGET_DIR/zig-venv"
if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
  echo "== pip install ziglang (into $venv)"
  python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check ziglang
fi
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

# cc-rs passes Apple flags zig does not take (-arch, -isysroot, the minimum
# macOS version, clang's --target=x86_64-apple-macosx): drop them, zig gets
# the target from its own -target.
tools="$PWD/$TARGET_DIR/zig-$TARGET"
mkdir -p "$tools/sdk"
cat > "$tools/cc" <<EOF
#!/usr/bin/env bash
args=(); skip=0
for a in "\$@"; do
  if [ \$skip = 1 ]; then skip=0; continue; fi
  case "\$a" in
    -arch|-isysroot) skip=1 ;;
    -mmacosx-version-min=*|--target=*) ;;
    *) args+=("\$a") ;;
  esac
done
exec "$venv/bin/python3" -m ziglang cc -target $ZIG_TARGET "\${args[@]}"
EOF
cat > "$tools/ar" <<EOF
#!/usr/bin/env bash
exec "$venv/bin/python3" -m ziglang ar "\$@"
EOF
chmod +x "$tools/cc" "$tools/ar"

var=${TARGET//-/_}
export "CC_$var=$tools/cc" "AR_$var=$tools/ar"
# cc-rs asks xcrun for the SDK unless SDKROOT is set; zig needs none.
export SDKROOT="$tools/sdk"
export ZIG_GLOBAL_CACHE_DIR="$tools/cache" ZIG_LOCAL_CACHE_DIR="$tools/cache"
echo "== cargo check --workspace --all-targets --target $TARGET (C compiled by zig cc -target $ZIG_TARGET)"
cargo check --workspace --all-targets --target "$TARGET"
