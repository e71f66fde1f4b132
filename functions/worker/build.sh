#!/usr/bin/env bash
# Builds the txbridge Worker into build/ (index.js + index_bg.wasm) and prints the wasm size.
# Needs the toolchain from `bash .ci/worker.sh install` (Debian rustc-web with -Zbuild-std,
# worker-build, wasm-bindgen-cli, node tooling); recipe in ../shared/toolchain/WASM.md.
#
#   bash build.sh                         # profile release-wasm (root Cargo.toml) into build/
#   TXBRIDGE_WASM_OPT_LEVEL=s bash build.sh   # override the profile's opt-level (size experiments)
#   TXBRIDGE_WORKER_FEATURES=test-panic TXBRIDGE_WORKER_OUT=build-test bash build.sh
#                                         # a test build with cargo features, elsewhere
# The entry module is entry.mjs (copied next to worker-build's index.js): it answers anything
# that escapes the Rust handler with the contract's 503 JSON body.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TOOLS="${TXBRIDGE_TOOLS:-$HOME/.cache/txbridge}/bin-root"
PROFILE="${TXBRIDGE_WASM_PROFILE:-release-wasm}"

for tool in "$TOOLS/bin/worker-build" "$TOOLS/bin/wasm-bindgen" "$HERE/node_modules/.bin/esbuild" \
    /usr/bin/cargo /usr/bin/rust-lld; do
  [ -x "$tool" ] || { echo "build.sh: $tool missing: run 'bash .ci/worker.sh install'" >&2; exit 1; }
done

# One build at a time: concurrent test processes share build/ and the target dir.
mkdir -p "$ROOT/target"
exec 9>"$ROOT/target/.txbridge-worker-build.lock"
flock 9

cd "$HERE"
# Debian's cargo/rustc first (worker-build runs plain `cargo`); drop what a calling rustup cargo
# (e.g. `cargo test`) exported so it cannot pull its own toolchain back in.
unset RUSTC RUSTDOC RUSTC_WRAPPER RUSTUP_TOOLCHAIN CARGO CARGO_BUILD_TARGET
export PATH="/usr/bin:$HERE/node_modules/.bin:$PATH"
export RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort
export WASM_BINDGEN_BIN="$TOOLS/bin/wasm-bindgen" ESBUILD_BIN="$HERE/node_modules/.bin/esbuild"
export CARGO_TARGET_DIR="$ROOT/target"
if [ -n "${TXBRIDGE_WASM_OPT_LEVEL:-}" ]; then
  profile_env="$(echo "$PROFILE" | tr 'a-z-' 'A-Z_')"
  export "CARGO_PROFILE_${profile_env}_OPT_LEVEL=$TXBRIDGE_WASM_OPT_LEVEL"
fi

OUT="${TXBRIDGE_WORKER_OUT:-$HERE/build}"
extra=()
[ -z "${TXBRIDGE_WORKER_FEATURES:-}" ] || extra=(-- --features "$TXBRIDGE_WORKER_FEATURES")
"$TOOLS/bin/worker-build" --profile "$PROFILE" --out-dir "$OUT" "${extra[@]}"
cp "$HERE/entry.mjs" "$OUT/entry.mjs"

wasm="$OUT/index_bg.wasm"
[ -f "$wasm" ] || { echo "build.sh: $wasm was not produced" >&2; exit 1; }
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "build.sh: $wasm: $raw bytes ($((raw / 1024)) KiB), gzip -9: $gz bytes ($((gz / 1024)) KiB)" >&2
