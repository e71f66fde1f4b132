output "token_endpoint_url" {
  description = "RFC 8693 token endpoint (POST)."
  value       = "${local.base_url}/token"
}

output "jwks_url" {
  description = "JWKS with the active and previous signing public keys."
  value       = "${local.base_url}/.well-known/jwks.json"
}

output "issuer" {
  description = "iss of issued TxTokens."
  value       = local.issuer
}

output "worker_name" {
  description = "Name of the Worker."
  value       = cloudflare_worker.txbridge.name
}

output "version_id" {
  description = "The deployed Worker version."
  value       = cloudflare_worker_version.txbridge.id
}

output "config_toml" {
  description = "The txbridge config bound as TXBRIDGE_CONFIG (no secrets). Check it with `terraform output -raw config_toml > txbridge.toml && txbridge policy check --config txbridge.toml` (exit 0 valid, 1 invalid, 2 usage)."
  value       = module.config.toml
}

output "workers_dev_enabled" {
  description = "Whether the Worker is served on workers.dev (workers_dev, or by default: no custom domain and no route)."
  value       = local.workers_dev
}
