#!/usr/bin/env bash
# Renders txbridge's TOML config with the provider-less Terraform module infra/modules/config and
# prints it on stdout. Runs offline: the module needs no provider.
#
#   bash infra/tests/render-config.sh [VARS_FILE]    # default: infra/modules/config/example.tfvars
#
# Everything Terraform writes (.terraform, state, plugin cache) stays in a temp dir.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
module="$here/../modules/config"
vars=$(realpath "${1:-$module/example.tfvars}")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$module"/*.tf "$module"/*.tftpl "$work/"
# Keep the suffix: Terraform reads *.tfvars.json as JSON.
case "$vars" in
*.json) input=input.tfvars.json ;;
*) input=input.tfvars ;;
esac
cp "$vars" "$work/$input"

export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
export TF_DATA_DIR="$work/.terraform"
# An empty CLI config: no credentials, no mirrors, nothing to download.
: >"$work/terraformrc"
export TF_CLI_CONFIG_FILE="$work/terraformrc"

log="$work/terraform.log"
if ! {
  terraform -chdir="$work" init -backend=false -no-color &&
    terraform -chdir="$work" apply -auto-approve -no-color -var-file="$input" -state="$work/terraform.tfstate"
} >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
terraform -chdir="$work" output -no-color -state="$work/terraform.tfstate" -raw toml
