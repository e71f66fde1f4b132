#!/usr/bin/env bash
# LocalStack (KMS only, no Docker) for the txbridge KMS signer tests.
#
#   bash .ci/localstack.sh install      # idempotent: venv with the pinned localstack-core
#   bash .ci/localstack.sh start PORT   # background on 127.0.0.1:PORT, waits until ready
#   bash .ci/localstack.sh stop  PORT   # stops the one started by `start PORT`
#   bash .ci/localstack.sh python       # prints the venv's python (TXBRIDGE_LOCALSTACK_PYTHON)
#
# The signer tests (signer/tests/kms.rs) start their own LocalStack from this venv, or use
# TXBRIDGE_TEST_KMS_ENDPOINT when it is set. Tools live under ${TXBRIDGE_TOOLS:-~/.cache/txbridge}.
set -euo pipefail

LOCALSTACK_VERSION="2026.3.0"
PYTHON_VERSION="3.13.0"
TOOLS="${TXBRIDGE_TOOLS:-$HOME/.cache/txbridge}"
VENV="$TOOLS/venv-localstack"
PY="${TXBRIDGE_LOCALSTACK_PYTHON:-$VENV/bin/python}"

log() { echo "localstack.sh: $*" >&2; }

installed() {
  [ -x "$PY" ] && "$PY" - "$LOCALSTACK_VERSION" <<'EOF' >/dev/null 2>&1
import sys, importlib.metadata as m
sys.exit(0 if m.version("localstack-core") == sys.argv[1] else 1)
EOF
}

find_python313() {
  if command -v pyenv >/dev/null 2>&1 && PYENV_VERSION="$PYTHON_VERSION" python3 -c \
      'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' 2>/dev/null; then
    echo "env PYENV_VERSION=$PYTHON_VERSION python3"
  elif command -v python3.13 >/dev/null 2>&1; then
    echo "python3.13"
  else
    return 1
  fi
}

install() {
  if installed; then
    log "localstack-core $LOCALSTACK_VERSION already in $VENV"
    return 0
  fi
  local py
  if ! py="$(find_python313)"; then
    log "need Python 3.13 (pyenv $PYTHON_VERSION or python3.13 on PATH)"
    exit 1
  fi
  mkdir -p "$TOOLS"
  [ -x "$VENV/bin/python" ] || $py -m venv "$VENV"
  log "installing localstack-core $LOCALSTACK_VERSION into $VENV"
  nice -n 10 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "localstack-core[runtime]==$LOCALSTACK_VERSION" 'cbor2<6' 'pyopenssl<25'
  installed || { log "install did not leave localstack-core $LOCALSTACK_VERSION"; exit 1; }
  log "ok"
}

start() {
  local port="${1:?usage: localstack.sh start PORT}"
  installed || { log "not installed: run 'bash .ci/localstack.sh install'"; exit 1; }
  local state="$TOOLS/localstack-$port"
  mkdir -p "$state/volume"
  DISABLE_EVENTS=1 GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="127.0.0.1:$port" SERVICES=kms \
    DNS_ADDRESS=0 LOCALSTACK_VOLUME_DIR="$state/volume" \
    setsid "$PY" -m localstack.runtime.main >"$state/log" 2>&1 </dev/null &
  echo $! >"$state/pid"
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/_localstack/health" 2>/dev/null | grep -Eq '"kms": "(available|running)"'; then
      log "ready on http://127.0.0.1:$port (pid $(cat "$state/pid"), log $state/log)"
      return 0
    fi
    kill -0 "$(cat "$state/pid")" 2>/dev/null || { log "exited; see $state/log"; exit 1; }
    sleep 0.5
  done
  log "not ready after 60 s; see $state/log"
  exit 1
}

stop() {
  local port="${1:?usage: localstack.sh stop PORT}"
  local pidfile="$TOOLS/localstack-$port/pid"
  [ -f "$pidfile" ] || { log "nothing started on $port"; return 0; }
  local pid
  pid="$(cat "$pidfile")"
  # setsid made it a process-group leader: stop the whole group (hypercorn workers included).
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
  log "stopped $pid"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  python) echo "$PY" ;;
  *) echo "usage: $0 install | start PORT | stop PORT | python" >&2; exit 2 ;;
esac
