#!/usr/bin/env bash
# Copies a cluster's ServiceAccount issuer documents to the oidc-mirror bucket, so that txbridge
# can fetch them over public HTTPS.
#
#   mirror.sh --prefix NAME --base-url URL (--bucket BUCKET | --dry-run [--out DIR]) [--context CTX]
#
#   --prefix    the cluster's prefix in the mirror (one of the module's `prefixes`, usually the
#               txbridge cluster name)
#   --base-url  the module's `base_url` output (e.g. https://d111111abcdef8.cloudfront.net)
#   --bucket    the module's `bucket` output
#   --context   kubectl context of the cluster (default: the current context)
#   --dry-run   write the documents under --out (default ./oidc-mirror-out) instead of uploading
#
# Only `jwks_uri` in the discovery document is rewritten, to point at the mirrored JWKS; `issuer`
# stays as the cluster serves it, because it must equal the `iss` of the cluster's tokens. The
# discovery URL to put in txbridge's `discovery_url` is printed on stdout; progress goes to stderr.
# Run it again after the cluster rotates its signing keys (the objects are cached for 5 minutes).
set -euo pipefail

usage() {
  sed -n '2,18s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

prefix="" base_url="" bucket="" context="" dry_run=0 out="./oidc-mirror-out"
while [ $# -gt 0 ]; do
  case "$1" in
  --prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
  --base-url) base_url=${2:?--base-url needs a value}; shift 2 ;;
  --bucket) bucket=${2:?--bucket needs a value}; shift 2 ;;
  --context) context=${2:?--context needs a value}; shift 2 ;;
  --out) out=${2:?--out needs a value}; shift 2 ;;
  --dry-run) dry_run=1; shift ;;
  -h | --help) usage ;;
  *) echo "mirror.sh: unknown argument: $1" >&2; usage ;;
  esac
done

[ -n "$prefix" ] && [ -n "$base_url" ] || usage
if ! [[ "$prefix" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]]; then
  echo "mirror.sh: --prefix must be letters, digits, '.', '_' or '-' (no '/')" >&2
  exit 2
fi
case "$base_url" in
https://*) base_url=${base_url%/} ;;
*) echo "mirror.sh: --base-url must be an https URL" >&2; exit 2 ;;
esac
if [ "$dry_run" -eq 0 ] && [ -z "$bucket" ]; then
  echo "mirror.sh: --bucket is required unless --dry-run is given" >&2
  exit 2
fi

discovery_key="$prefix/.well-known/openid-configuration"
jwks_key="$prefix/openid/v1/jwks"
discovery_url="$base_url/$discovery_key"
jwks_url="$base_url/$jwks_key"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

kubectl_args=()
[ -n "$context" ] && kubectl_args+=(--context "$context")
kubectl "${kubectl_args[@]}" get --raw /.well-known/openid-configuration >"$work/discovery.orig"
kubectl "${kubectl_args[@]}" get --raw /openid/v1/jwks >"$work/jwks"

# Check both documents, and rewrite jwks_uri only (key order and every other member kept).
python3 - "$work/discovery.orig" "$work/jwks" "$jwks_url" "$work/discovery" <<'PY'
import json, sys

src, jwks_path, jwks_url, dst = sys.argv[1:5]
try:
    with open(src) as f:
        doc = json.load(f)
    with open(jwks_path) as f:
        jwks = json.load(f)
except ValueError as e:
    sys.exit(f"mirror.sh: the cluster did not return JSON: {e}")
if not isinstance(doc, dict) or not isinstance(doc.get("issuer"), str) or "jwks_uri" not in doc:
    sys.exit("mirror.sh: the discovery document has no issuer or jwks_uri")
keys = jwks.get("keys") if isinstance(jwks, dict) else None
if not isinstance(keys, list) or not keys:
    sys.exit("mirror.sh: the JWKS has no keys")
for k in keys:
    if any(m in k for m in ("d", "p", "q", "dp", "dq", "qi", "k")):
        sys.exit("mirror.sh: the JWKS contains private key material; refusing to publish it")
doc["jwks_uri"] = jwks_url
with open(dst, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
    f.write("\n")
print(f"mirror.sh: issuer {doc['issuer']}, {len(keys)} key(s)", file=sys.stderr)
PY

if [ "$dry_run" -eq 1 ]; then
  mkdir -p "$out/$prefix/.well-known" "$out/$prefix/openid/v1"
  cp "$work/discovery" "$out/$discovery_key"
  cp "$work/jwks" "$out/$jwks_key"
  echo "mirror.sh: dry run, wrote $out/$discovery_key and $out/$jwks_key" >&2
else
  for pair in "discovery:$discovery_key" "jwks:$jwks_key"; do
    aws s3 cp "$work/${pair%%:*}" "s3://$bucket/${pair#*:}" --only-show-errors \
      --content-type application/json --cache-control "public, max-age=300"
  done
  echo "mirror.sh: uploaded to s3://$bucket/$prefix/" >&2
fi

echo "mirror.sh: set this cluster's discovery_url in txbridge's config to:" >&2
echo "$discovery_url"
