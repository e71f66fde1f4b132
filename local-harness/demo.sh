#!/usr/bin/env bash
# The main job: a real exchange end to end on this machine.
#   1. starts the harness playing two clusters (alpha: RS256, direct; beta: ES256, mirrored),
#   2. runs txbridge under `cargo lambda watch` (the real Lambda emulator) with a config that
#      trusts them and a fresh development signing key,
#   3. exchanges a ServiceAccount token for a TxToken over HTTP, verifies it independently
#      against the published JWKS and prints the decoded claims (not the token, unless
#      DEMO_SHOW_TOKENS=1),
#   4. shows one denied request, and stops everything it started.
# Needs nothing running beforehand; installs cargo-lambda from PyPI if missing. Exits non-zero
# on any failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Tools"
CL_BIN=$(bash .ci/lambda.sh install)
export PATH="$CL_BIN:$PATH"
cargo lambda --version
cargo build -q -p txbridge-harness -p txbridge-lambda
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HARNESS="$TARGET/debug/txbridge-harness"

say "Harness: two simulated clusters"
setsid "$HARNESS" serve --ready-file "$WORK/ready.json" >"$WORK/harness.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/ready.json" ] && break; sleep 0.1; done
[ -s "$WORK/ready.json" ] || { cat "$WORK/harness.log"; die "harness did not start"; }
HBASE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$WORK/ready.json")
grep -v '^ready file' "$WORK/harness.log" | sed 's/^/  /'

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT/lambda-url/txbridge-lambda"
"$HARNESS" config --harness "$HBASE" --issuer "$BASE" --key-out "$WORK/signing-key.pem" >"$WORK/config.toml" 2>/dev/null

say "txbridge under cargo lambda watch on $BASE"
(
  cd functions/lambda
  export TXBRIDGE_CONFIG_FILE="$WORK/config.toml"
  TXBRIDGE_SIGNING_KEY=$(cat "$WORK/signing-key.pem")
  export TXBRIDGE_SIGNING_KEY
  exec setsid cargo lambda watch -A 127.0.0.1 -P "$PORT" --ignore-changes
) >"$WORK/lambda.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do
  curl -sf -m 5 "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -20 "$WORK/lambda.log"; die "cargo lambda watch exited"; }
  sleep 0.5
done
curl -sf "$BASE/healthz" >/dev/null || { tail -20 "$WORK/lambda.log"; die "txbridge did not become ready"; }
echo "  ready; metadata:"
curl -sf "$BASE/.well-known/openid-configuration" | python3 -m json.tool | sed 's/^/  /'

exchange() { # $1 = subject token, rest = extra curl args
  local token=$1; shift
  curl -s -X POST "$BASE/token" -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-urlencode 'grant_type=urn:ietf:params:oauth:grant-type:token-exchange' \
    --data-urlencode "subject_token=$token" \
    --data-urlencode 'subject_token_type=urn:ietf:params:oauth:token-type:jwt' \
    --data-urlencode 'requested_token_type=urn:ietf:params:oauth:token-type:txn_token' "$@"
}

for CLUSTER in alpha beta; do
  say "Exchange: a pod's token from cluster '$CLUSTER' (payments/checkout) for a TxToken"
  SA_TOKEN=$("$HARNESS" token --harness "$HBASE" --cluster "$CLUSTER" -n payments --service-account checkout --audience txbridge)
  RESP=$(exchange "$SA_TOKEN" --data-urlencode 'scope=orders:read' \
    --data-urlencode 'request_details={"order":"42","action":"checkout"}' \
    -H 'X-Txbridge-Workload: payments/checkout-web')
  TXTOKEN=$(printf '%s' "$RESP" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("access_token",""))')
  [ -n "$TXTOKEN" ] || die "exchange failed: $RESP"
  printf '%s' "$RESP" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["access_token"]="<TxToken, %d bytes>" % len(d["access_token"]); print(json.dumps(d, indent=2))' | sed 's/^/  /'
  [ "${DEMO_SHOW_TOKENS:-0}" = 1 ] && echo "  access_token: $TXTOKEN"
  echo "  verified independently against $BASE/.well-known/jwks.json:"
  printf '%s' "$TXTOKEN" | "$HARNESS" verify-txtoken --jwks "$BASE/.well-known/jwks.json" --issuer "$BASE" | sed 's/^/  /'
done

say "Denied: a service account no policy allows (alpha default/web)"
DENIED_TOKEN=$("$HARNESS" token --harness "$HBASE" --cluster alpha -n default --service-account web --audience txbridge)
DENIED=$(exchange "$DENIED_TOKEN" -w '\n%{http_code}')
echo "  HTTP $(printf '%s' "$DENIED" | tail -1): $(printf '%s' "$DENIED" | head -1)"
printf '%s' "$DENIED" | tail -1 | grep -qx 400 || die "expected the denied request to get 400"

say "Function log (one line per exchange; no tokens)"
grep '"token exchange"' "$WORK/lambda.log" | sed 's/^/  /' | cut -c1-400 || true
say "Done: stopping the harness and the function"
