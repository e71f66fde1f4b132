output "endpoint_url" {
  description = "The public base URL (issuer metadata, JWKS and token endpoint live under it): the custom domain, else the HTTP API, else the Function URL."
  value       = local.base_url
}

output "token_endpoint_url" {
  description = "RFC 8693 token endpoint (POST)."
  value       = "${local.base_url}/token"
}

output "jwks_url" {
  description = "JWKS with the active and previous signing public keys; consumers verify TxTokens against it."
  value       = "${local.base_url}/.well-known/jwks.json"
}

output "metadata_url" {
  description = "RFC 8414 authorization server metadata."
  value       = "${local.base_url}/.well-known/oauth-authorization-server"
}

output "issuer" {
  description = "iss of issued TxTokens."
  value       = local.issuer
}

output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.function.function_name
}

output "function_url" {
  description = "The Lambda Function URL (always created): public without the HTTP API; with create_http_api it takes AWS_IAM (SigV4) and clients use endpoint_url instead."
  value       = aws_lambda_function_url.function.function_url
}

output "http_api_endpoint" {
  description = "Default endpoint of the HTTP API (null when not created)."
  value       = var.create_http_api ? aws_apigatewayv2_api.http[0].api_endpoint : null
}

output "custom_domain_target" {
  description = "Where to point the custom domain's DNS (alias or CNAME); null without a custom domain."
  value = var.custom_domain == null ? null : {
    domain_name    = aws_apigatewayv2_domain_name.http[0].domain_name_configuration[0].target_domain_name
    hosted_zone_id = aws_apigatewayv2_domain_name.http[0].domain_name_configuration[0].hosted_zone_id
  }
}

output "kms_key_arn" {
  description = "ARN of the active signing key (signing_mode kms; null otherwise)."
  value       = local.kms_signing ? aws_kms_key.signing[local.active_key].arn : null
}

output "kms_alias_arn" {
  description = "ARN of the alias txbridge signs through (the config's signer key_id; signing_mode kms)."
  value       = local.kms_signing ? aws_kms_alias.signing[0].arn : null
}

output "wrapping_key_arn" {
  description = "ARN of the symmetric key that wraps the signing key (signing_mode kms-wrapped; null otherwise)."
  value       = local.wrapped ? aws_kms_key.wrapping[0].arn : null
}

output "generate_wrapped_key_command" {
  description = "kms-wrapped: the one-time command (aws CLI) whose output is wrapped_key. Run it again to rotate (keep the old public key in previous_public_keys)."
  value       = local.wrapped ? "aws kms generate-data-key-pair-without-plaintext --key-id ${aws_kms_alias.wrapping[0].arn} --key-pair-spec ECC_NIST_P256 --encryption-context txbridge=signing-key --query PrivateKeyCiphertextBlob --output text" : null
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.function.arn
}

output "config_toml" {
  description = "The txbridge config the function runs with (no secrets). Check it with `terraform output -raw config_toml > txbridge.toml && txbridge policy check --config txbridge.toml` (exit 0 valid, 1 invalid, 2 usage)."
  value       = module.config.toml
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard (null unless create_dashboard)."
  value       = var.create_dashboard ? aws_cloudwatch_dashboard.txbridge[0].dashboard_name : null
}

output "error_rate_alarm_arn" {
  description = "ARN of the 5xx-rate alarm (null unless create_dashboard)."
  value       = var.create_dashboard ? aws_cloudwatch_metric_alarm.error_rate[0].arn : null
}

output "latency_alarm_arn" {
  description = "ARN of the p99-latency alarm (null unless create_dashboard)."
  value       = var.create_dashboard ? aws_cloudwatch_metric_alarm.latency_p99[0].arn : null
}
