#!/usr/bin/env bash
# Runs modules/oidc-mirror/mirror.sh --dry-run against a fake kubectl (written to a temp dir and
# put first on PATH) and checks the output: only jwks_uri rewritten, issuer kept, JWKS copied
# byte for byte, discovery URL printed; and that a JWKS with private key material is refused.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mirror="$here/../modules/oidc-mirror/mirror.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

discovery='{"issuer":"https://kubernetes.default.svc.cluster.local","jwks_uri":"https://10.0.0.1:6443/openid/v1/jwks","response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"]}'
jwks='{"keys":[{"use":"sig","kty":"RSA","kid":"k1","alg":"RS256","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB"}]}'
printf '%s' "$discovery" >"$work/discovery.json"
printf '%s' "$jwks" >"$work/jwks.json"
cat >"$work/bin/kubectl" <<SHIM
#!/usr/bin/env bash
echo "\$*" >>"$work/kubectl.log"
case "\$*" in
*"get --raw /.well-known/openid-configuration") cat "$work/discovery.json" ;;
*"get --raw /openid/v1/jwks") cat "\${FAKE_JWKS_FILE:-$work/jwks.json}" ;;
*) echo "fake kubectl: unexpected \$*" >&2; exit 1 ;;
esac
SHIM
chmod +x "$work/bin/kubectl"
export PATH="$work/bin:$PATH"

fail() { echo "mirror dry-run: $*" >&2; exit 1; }

url=$(bash "$mirror" --prefix onprem-1 --base-url https://mirror.example.com/ --context ctx-a --dry-run --out "$work/out" 2>"$work/stderr") ||
  fail "mirror.sh failed: $(cat "$work/stderr")"
[ "$url" = "https://mirror.example.com/onprem-1/.well-known/openid-configuration" ] || fail "printed URL: $url"
grep -qx -- "--context ctx-a get --raw /.well-known/openid-configuration" "$work/kubectl.log" || fail "kubectl not called with --context"

python3 - "$work/out/onprem-1/.well-known/openid-configuration" "$discovery" <<'PY' || fail "discovery document not rewritten as expected"
import json, sys
got = json.load(open(sys.argv[1]))
want = json.loads(sys.argv[2])
want["jwks_uri"] = "https://mirror.example.com/onprem-1/openid/v1/jwks"
assert got == want, got
assert list(got) == list(want), "member order changed"
PY
[ "$(cat "$work/out/onprem-1/openid/v1/jwks")" = "$jwks" ] || fail "JWKS not copied verbatim"

printf '%s' '{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"private"}]}' >"$work/private.json"
if FAKE_JWKS_FILE="$work/private.json" \
  bash "$mirror" --prefix p --base-url https://mirror.example.com --dry-run --out "$work/out2" >/dev/null 2>&1; then
  fail "a JWKS with a private key was accepted"
fi
[ ! -e "$work/out2" ] || fail "files written for a refused JWKS"

echo "mirror.sh dry run: OK"
