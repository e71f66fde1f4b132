#!/usr/bin/env bash
# cargo-lambda (from PyPI, with zig) for running the Lambda locally under `cargo lambda watch`
# and for building its deployment zips (functions/lambda/build.sh).
#   .ci/lambda.sh install         idempotent; prints the bin dir to put on PATH
#   .ci/lambda.sh install-arm64   idempotent: qemu-user and the aarch64 libc (Debian), to run the
#                                 arm64 build locally; the cross build itself needs Debian's
#                                 rustc-web + rust-web-src (`.ci/worker.sh install`)
set -euo pipefail
TOOLS=${TXBRIDGE_TOOLS:-$HOME/.cache/txbridge}
VENV=$TOOLS/venv-cargo-lambda
VERSION=1.9.2
case "${1:-install}" in
  install)
    if [ ! -x "$VENV/bin/cargo-lambda" ] || ! "$VENV/bin/cargo-lambda" lambda --version 2>/dev/null | grep -q "$VERSION"; then
      mkdir -p "$TOOLS"
      python3 -m venv "$VENV"
      "$VENV/bin/pip" install -q --disable-pip-version-check "cargo-lambda==$VERSION" ziglang >&2
    fi
    echo "$VENV/bin"
    ;;
  install-arm64)
    missing=()
    for p in qemu-user libc6-arm64-cross; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
      as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
      echo "lambda.sh: apt: installing ${missing[*]}" >&2
      as_root apt-get update -qq >/dev/null
      as_root env DEBIAN_FRONTEND=noninteractive nice -n 15 apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    ;;
  *) echo "usage: $0 install|install-arm64" >&2; exit 2 ;;
esac
