output "bucket" {
  description = "Bucket that mirror.sh uploads to (--bucket)."
  value       = aws_s3_bucket.mirror.id
}

output "base_url" {
  description = "Public base URL of the mirror (--base-url for mirror.sh)."
  value       = local.base_url
}

output "distribution_id" {
  description = "CloudFront distribution id (for invalidations after an urgent key rotation)."
  value       = aws_cloudfront_distribution.mirror.id
}

output "discovery_urls" {
  description = "Per prefix: the discovery_url to put in txbridge's [[clusters]] entry."
  value       = { for p in var.prefixes : p => "${local.base_url}/${p}/.well-known/openid-configuration" }
}

output "jwks_urls" {
  description = "Per prefix: the mirrored JWKS URL (what the rewritten jwks_uri points to)."
  value       = { for p in var.prefixes : p => "${local.base_url}/${p}/openid/v1/jwks" }
}
