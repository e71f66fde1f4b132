#!/usr/bin/env bash
# cargo-lambda (from PyPI, with zig) for running the Lambda locally under `cargo lambda watch`.
#   .ci/lambda.sh install   idempotent; prints the bin dir to put on PATH
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
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
