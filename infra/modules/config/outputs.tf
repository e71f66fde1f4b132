output "toml" {
  description = "The txbridge config document (TOML). Pass it as TXBRIDGE_CONFIG or write it to TXBRIDGE_CONFIG_FILE."
  value       = local.toml
}
