variable "region" {
  description = "AWS region of the Lambda, KMS key and the EKS cluster."
  type        = string
  default     = "eu-west-1"
}

variable "issuer" {
  description = "iss of TxTokens from the Lambda deployment. Without a custom domain: the endpoint_url output of a first apply, no trailing slash (see infra/README.md)."
  type        = string
}

variable "lambda_zip_path" {
  description = "The Lambda package, built for lambda_architecture: `bash functions/lambda/build.sh arm64` writes target/lambda/txbridge-lambda/bootstrap.zip (`bash functions/lambda/build.sh x86_64` for x86_64)."
  type        = string
  default     = "../../../target/lambda/txbridge-lambda/bootstrap.zip"
}

variable "lambda_architecture" {
  description = "\"arm64\" (default, about 20% cheaper per GB-second) or \"x86_64\"; must match the zip's build."
  type        = string
  default     = "arm64"
}

variable "eks_oidc_id" {
  description = "The id at the end of the EKS cluster's OIDC issuer URL (aws eks describe-cluster --query cluster.identity.oidc.issuer)."
  type        = string
}

variable "onprem_issuer" {
  description = "The self-managed cluster's --service-account-issuer (the `iss` of its tokens), kept as is; its documents are served by the mirror."
  type        = string
}

variable "workload_id" {
  description = <<-EOT
    req_wl template of both clusters' subjects, e.g. "spiffe://example.com/ns/$${namespace}/sa/$${service_account}"
    (write "$$" in HCL). Null: txbridge's default "$${cluster}:$${namespace}:$${service_account}".
    One template without $${cluster} for both clusters makes payments/checkout the same workload in
    either cluster: that needs shared_workload_ids = true.
  EOT
  type        = string
  default     = null
}

variable "shared_workload_ids" {
  description = "Set true when both clusters share a workload_id template without $${cluster} (namespace sameness); otherwise such a config is refused at plan time."
  type        = bool
  default     = null
}

variable "mirror_bucket_name" {
  description = "Globally unique name of the oidc-mirror bucket."
  type        = string
}

variable "create_dashboard" {
  description = "CloudWatch dashboard and the 5xx-rate and p99-latency alarms for the Lambda (modules/aws)."
  type        = bool
  default     = false
}

variable "alarm_actions" {
  description = "SNS topic ARNs the alarms notify (create_dashboard only)."
  type        = list(string)
  default     = []
}

variable "deploy_cloudflare" {
  description = "Also deploy txbridge as a Cloudflare Worker (with its own in-binary key and issuer)."
  type        = bool
  default     = false
}

variable "cloudflare_account_id" {
  description = "Cloudflare account id (deploy_cloudflare only)."
  type        = string
  default     = null
}

variable "cloudflare_workers_dev_subdomain" {
  description = "The account's workers.dev subdomain; the Worker's issuer becomes https://txbridge.<this>.workers.dev."
  type        = string
  default     = null
}

variable "cloudflare_signing_key" {
  description = "P-256 private key (PEM PKCS#8) for the Worker; null: set it with `wrangler secret put TXBRIDGE_SIGNING_KEY`."
  type        = string
  default     = null
  sensitive   = true
}

variable "cloudflare_analytics_dataset" {
  description = "Workers Analytics Engine dataset the Worker writes one data point per exchange to (binding TXBRIDGE_METRICS); null: none."
  type        = string
  default     = null
}

variable "worker_build_dir" {
  description = "worker-build output directory (index.js, index_bg.wasm)."
  type        = string
  default     = "../../../functions/worker/build"
}
