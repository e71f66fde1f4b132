# Provider-less on purpose: `terraform init -backend=false && terraform apply` works offline, so the
# rendered TOML can be fed to txbridge's own config parser in tests (infra/tests/render-config.sh).
terraform {
  required_version = ">= 1.9"
}
