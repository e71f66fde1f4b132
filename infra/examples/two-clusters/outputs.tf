output "token_endpoint_url" {
  value = module.txbridge_aws.token_endpoint_url
}

output "jwks_url" {
  value = module.txbridge_aws.jwks_url
}

output "endpoint_url" {
  description = "Public base URL of the Lambda deployment (the issuer without a custom domain)."
  value       = module.txbridge_aws.endpoint_url
}

output "function_url" {
  value = module.txbridge_aws.function_url
}

output "kms_key_arn" {
  value = module.txbridge_aws.kms_key_arn
}

output "mirror_bucket" {
  description = "--bucket for mirror.sh"
  value       = module.oidc_mirror.bucket
}

output "mirror_base_url" {
  description = "--base-url for mirror.sh"
  value       = module.oidc_mirror.base_url
}

output "worker_token_endpoint_url" {
  value = var.deploy_cloudflare ? module.txbridge_cloudflare[0].token_endpoint_url : null
}

output "worker_jwks_url" {
  value = var.deploy_cloudflare ? module.txbridge_cloudflare[0].jwks_url : null
}

output "config_toml" {
  description = "The config the Lambda runs with: terraform output -raw config_toml > txbridge.toml && txbridge policy check --config txbridge.toml"
  value       = module.txbridge_aws.config_toml
}

output "dashboard_name" {
  value = module.txbridge_aws.dashboard_name
}
