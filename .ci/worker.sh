#!/usr/bin/env bash
# Toolchain for the txbridge Worker (wasm32 + workerd). Recipe: ../shared/toolchain/WASM.md.
#
#   bash .ci/worker.sh install      # idempotent: Debian rustc-web (+ build-std sources, lld),
#                                   # wasm-bindgen-cli (= Cargo.lock) and worker-build, npm ci
#   bash .ci/worker.sh build        # functions/worker/build.sh: build/index.js + build/index_bg.wasm
#   bash .ci/worker.sh check-wasm   # cargo check of core, signer and verifier for wasm32-unknown-unknown
#   bash .ci/worker.sh clippy-wasm  # clippy -D warnings of the Worker crate for wasm32 (the runtime
#                                   # glue only exists there; native clippy cannot see it)
#   bash .ci/worker.sh tools        # prints the tools root (TXBRIDGE_TOOLS/bin-root)
#
# The Rust tools go to ${TXBRIDGE_TOOLS:-~/.cache/txbridge}/bin-root; node tooling (wrangler,
# workerd, esbuild, Node 22) to functions/worker/node_modules. No rustup targets are used: wasm32
# std is built from Debian's rust-web-src with -Zbuild-std.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORKER="$ROOT/functions/worker"
TOOLS="${TXBRIDGE_TOOLS:-$HOME/.cache/txbridge}/bin-root"
WORKER_BUILD_VERSION="0.8.7"
APT_PACKAGES=(rustc-web cargo-web rust-web-src rust-web-clippy lld-22)

log() { echo "worker.sh: $*" >&2; }

# The wasm-bindgen version the worker crate resolves to; wasm-bindgen-cli must match it exactly.
wasm_bindgen_version() {
  grep -A1 '^name = "wasm-bindgen"$' "$ROOT/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p'
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "apt: installing ${missing[*]} from bookworm-security"
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive nice -n 15 apt-get install -y -qq \
      -t bookworm-security "${APT_PACKAGES[@]}" >/dev/null
  fi
  # Empty on purpose: it only satisfies worker-build's "is the target installed" check.
  [ -d /usr/lib/rustlib/wasm32-unknown-unknown/lib ] ||
    as_root mkdir -p /usr/lib/rustlib/wasm32-unknown-unknown/lib
}

# cargo_install CRATE BINARY VERSION [extra cargo install args]: skips when BINARY --version matches.
cargo_install() {
  local crate="$1" bin="$2" version="$3"
  shift 3
  if [ -x "$TOOLS/bin/$bin" ] && "$TOOLS/bin/$bin" --version 2>/dev/null | grep -qw -- "$version"; then
    return 0
  fi
  log "cargo install $crate $version (takes ~9 min)"
  mkdir -p "$TOOLS"
  local logf="$TOOLS/install-$crate.log"
  if ! nice -n 15 cargo install "$crate" --version "$version" --root "$TOOLS" --force "$@" \
      >"$logf" 2>&1; then
    tail -30 "$logf" >&2
    log "cargo install $crate failed; full log: $logf"
    exit 1
  fi
}

install_npm() {
  local stamp="$WORKER/node_modules/.txbridge-lock.sha256" want
  want="$(sha256sum "$WORKER/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$WORKER/node_modules/.bin/workerd" ]; then
    return 0
  fi
  log "npm ci in functions/worker"
  (cd "$WORKER" && nice -n 15 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" >"$stamp"
}

install() {
  install_apt
  local wbg
  wbg="$(wasm_bindgen_version)"
  [ -n "$wbg" ] || { log "no wasm-bindgen in Cargo.lock"; exit 1; }
  # Not --locked: wasm-bindgen-cli's lock file fails to build with it.
  cargo_install wasm-bindgen-cli wasm-bindgen "$wbg"
  cargo_install worker-build worker-build "$WORKER_BUILD_VERSION" --locked
  install_npm
  log "ok (wasm-bindgen $wbg, worker-build $WORKER_BUILD_VERSION, tools in $TOOLS)"
}

# Debian's cargo/rustc (rustc-web) first; drop what a rustup cargo may have exported.
debian_toolchain() {
  unset RUSTC RUSTDOC RUSTC_WRAPPER RUSTUP_TOOLCHAIN CARGO CARGO_BUILD_TARGET
  export PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1
}

check_wasm() {
  cd "$ROOT"
  debian_toolchain
  cargo check -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown \
    -p txbridge-jose -p txbridge-core -p txbridge-signer "$@"
  # The consumer-side verifier, and its tower middleware (tower-layer/-service are runtime-free).
  cargo check -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown \
    -p txbridge-verifier --features tower "$@"
}

clippy_wasm() {
  cd "$ROOT"
  debian_toolchain
  cargo clippy -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown \
    -p txbridge-worker "$@" -- -D warnings
}

case "${1:-}" in
  install) install ;;
  build) shift; exec bash "$WORKER/build.sh" "$@" ;;
  check-wasm) shift; check_wasm "$@" ;;
  clippy-wasm) shift; clippy_wasm "$@" ;;
  tools) echo "$TOOLS" ;;
  *) echo "usage: $0 install | build | check-wasm | clippy-wasm | tools" >&2; exit 2 ;;
esac
