output "toml" {
  description = <<-EOT
    The txbridge config document (TOML). Pass it as TXBRIDGE_CONFIG or write it to
    TXBRIDGE_CONFIG_FILE. Terraform checks its shape; txbridge's own parser has the last word (CEL,
    templates, URLs). Check it in CI before `terraform apply`: with this module as the root (no
    resources, no provider: applying it only evaluates the template, as infra/tests/render-config.sh
    does) `terraform output -raw toml > txbridge.toml && txbridge policy check --config txbridge.toml`
    (exit 0 valid, 1 invalid, 2 usage; each error with its key path and line, never a value). The aws
    and cloudflare modules expose the same document as `config_toml` (see infra/README.md).
  EOT
  value       = local.toml
}
