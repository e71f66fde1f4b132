#!/usr/bin/env bash
# Offline checks of infra/: what can run without the Terraform registry.
#
#   bash infra/check.sh
#
# 1. terraform fmt -check on all of infra/
# 2. terraform init -backend=false + validate for every root that needs no provider (temp copies;
#    nothing lands in the repo)
# 3. the config render test (infra/tests/check_rendered_config.py via render-config.sh)
# 4. mirror.sh --dry-run against a fake kubectl (infra/tests/mirror-dry-run.sh)
# 5. checkov (pinned, from PyPI, installed once into $TXBRIDGE_TOOLS/venv-checkov), run without
#    network access
# Roots that need providers (aws, cloudflare) are listed as skipped: validating or planning them
# needs `terraform init` with registry access (see infra/README.md). No stub providers here.
set -euo pipefail

CHECKOV_VERSION=3.3.30

infra=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=${TXBRIDGE_TOOLS:-$HOME/.cache/txbridge}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
: >"$work/terraformrc"
export TF_CLI_CONFIG_FILE="$work/terraformrc"

failed=0
ok() { echo "infra: ok    $*"; }
skip() { echo "infra: skip  $*"; }
bad() {
  echo "infra: FAIL  $1" >&2
  [ -f "${2:-}" ] && sed 's/^/    /' "$2" >&2
  failed=1
}

# 1. formatting
if terraform fmt -check -recursive -diff "$infra" >"$work/fmt.log" 2>&1; then
  ok "terraform fmt"
else
  bad "terraform fmt -check -recursive infra/ (run: terraform fmt -recursive infra/)" "$work/fmt.log"
fi

# 2. init + validate where no provider is needed. A root needs a provider when it (or a module it
# calls) declares resources, data sources or providers; module calls are treated as needing them.
needs_provider() { grep -Eqs '^[[:space:]]*(required_providers|provider|resource|data|module)[[:space:]]*("|\{)' "$1"/*.tf; }
provider_roots=()
for dir in "$infra"/modules/*/ "$infra"/examples/*/; do
  dir=${dir%/}
  rel=${dir#"$infra"/}
  ls "$dir"/*.tf >/dev/null 2>&1 || continue
  if needs_provider "$dir"; then
    provider_roots+=("$rel")
    continue
  fi
  copy="$work/validate/$rel"
  mkdir -p "$copy"
  cp -R "$dir"/. "$copy"/
  if TF_DATA_DIR="$copy/.terraform" terraform -chdir="$copy" init -backend=false -no-color >"$work/init.log" 2>&1 &&
    TF_DATA_DIR="$copy/.terraform" terraform -chdir="$copy" validate -no-color >"$work/validate.log" 2>&1; then
    ok "terraform validate infra/$rel"
  else
    cat "$work/init.log" "$work/validate.log" >"$work/tf.log" 2>/dev/null || true
    bad "terraform init/validate infra/$rel" "$work/tf.log"
  fi
done
for rel in "${provider_roots[@]}"; do
  skip "terraform init/validate/plan infra/$rel: needs providers from the Terraform registry, not reachable here"
done

# 3. config render test
if python3 "$infra/tests/check_rendered_config.py" >"$work/render.log" 2>&1; then
  ok "$(tail -n 1 "$work/render.log")"
else
  bad "config render test (infra/tests/check_rendered_config.py)" "$work/render.log"
fi

# 4. mirror.sh dry run
if bash "$infra/tests/mirror-dry-run.sh" >"$work/mirror.log" 2>&1; then
  ok "$(tail -n 1 "$work/mirror.log")"
else
  bad "mirror.sh dry run (infra/tests/mirror-dry-run.sh)" "$work/mirror.log"
fi

# 5. checkov, installed once (pinned) and run without network access
venv="$tools/venv-checkov"
if [ "$("$venv/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  rm -rf "$venv"
  mkdir -p "$tools"
  if ! { nice -n 10 python3 -m venv "$venv" &&
    nice -n 10 "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"; } >"$work/pip.log" 2>&1; then
    bad "installing checkov $CHECKOV_VERSION into $venv" "$work/pip.log"
    exit 1
  fi
fi
# No platform API key; no policy download, no mapping fetch, no update check. Where possible
# (root, Linux) it also runs in an empty network namespace, which proves it stays offline.
offline=()
if unshare -n true 2>/dev/null; then offline=(unshare -n); fi
if (cd "$infra" && BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE BC_API_KEY='' \
  nice -n 10 "${offline[@]}" "$venv/bin/checkov" --directory . --framework terraform secrets \
  --skip-download --quiet --compact) >"$work/checkov.log" 2>&1; then
  ok "checkov $CHECKOV_VERSION ($(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$work/checkov.log" | head -n 1)${offline[*]:+, no network})"
else
  bad "checkov (fix the finding or justify it with #checkov:skip=CKV_...:reason)" "$work/checkov.log"
fi

if [ "$failed" -ne 0 ]; then
  echo "infra: checks failed" >&2
  exit 1
fi
