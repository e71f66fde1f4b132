variable "name" {
  description = "Name of the function; prefix of the role, log group, KMS alias and API."
  type        = string
  default     = "txbridge"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,48}$", var.name))
    error_message = "name must be 1-48 characters of letters, digits, '-' or '_'."
  }
}

variable "lambda_zip_path" {
  description = "Path of the Lambda package built by `cargo lambda build --release --arm64 --output-format zip` (target/lambda/txbridge-lambda/bootstrap.zip)."
  type        = string
}

# --- txbridge config (rendered by ../config; the signer is this module's KMS key) ---------------

variable "issuer" {
  description = "iss of issued TxTokens. Null: https://<custom_domain.domain_name> (a custom domain is then required). The Function URL is only known after the first apply, so without a custom domain set it explicitly (see infra/README.md)."
  type        = string
  default     = null

  validation {
    condition     = var.issuer != null || var.custom_domain != null
    error_message = "Set issuer, or a custom_domain whose https URL becomes the issuer."
  }
}

variable "trust_domain" {
  description = "aud of issued TxTokens. Null: the issuer."
  type        = string
  default     = null
}

variable "token_lifetime" {
  description = "Lifetime of issued TxTokens, e.g. \"5m\". Null: txbridge's default."
  type        = string
  default     = null
}

variable "leeway" {
  description = "Clock skew allowed for subject tokens, e.g. \"30s\". Null: txbridge's default."
  type        = string
  default     = null
}

variable "max_subject_token_lifetime" {
  description = "Longest accepted subject-token lifetime (exp - iat), e.g. \"24h\". Null: txbridge's default."
  type        = string
  default     = null
}

variable "key_cache" {
  description = "Optional [key_cache] tuning (ttl, min_refresh_interval, stale_grace); see the config module."
  type = object({
    ttl                  = optional(string)
    min_refresh_interval = optional(string)
    stale_grace          = optional(string)
  })
  default = null
}

variable "clusters" {
  description = "Trusted clusters; see the config module for the fields."
  type = list(object({
    name                         = string
    issuer                       = string
    discovery_url                = optional(string)
    jwks_url                     = optional(string)
    audiences                    = list(string)
    algorithms                   = optional(list(string))
    insecure_allow_http_loopback = optional(bool)
  }))
}

variable "policies" {
  description = "Exchange policies (default deny); see the config module for the fields."
  type = list(object({
    cluster          = string
    namespace        = string
    service_account  = string
    scopes           = list(string)
    tctx_constraints = optional(map(string))
  }))
  default = []
}

# --- signing keys -------------------------------------------------------------------------------

variable "key_generations" {
  description = <<-EOT
    Labels of the KMS signing keys this module manages; one ECC_NIST_P256 key per label. Rotation:
    add a label and make it active (the alias moves to the new key, the old key keeps being published
    in the JWKS); once every token signed by the old key has expired and consumers have refreshed
    their JWKS, remove its label (the key is then scheduled for deletion).
  EOT
  type        = list(string)
  default     = ["1"]

  validation {
    condition     = length(var.key_generations) > 0 && length(distinct(var.key_generations)) == length(var.key_generations)
    error_message = "key_generations must be a non-empty list of unique labels."
  }
}

variable "active_key_generation" {
  description = "The key_generations label that signs. Null: the last label."
  type        = string
  default     = null

  validation {
    condition     = var.active_key_generation == null || contains(var.key_generations, coalesce(var.active_key_generation, "-"))
    error_message = "active_key_generation must be one of key_generations."
  }
}

variable "previous_key_ids" {
  description = "ARNs of further KMS keys (not managed here) whose public keys txbridge still publishes. Their key policies must allow this function's role kms:GetPublicKey."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for k in var.previous_key_ids : can(regex("^arn:aws[a-z-]*:kms:", k))])
    error_message = "previous_key_ids must be KMS key ARNs."
  }
}

variable "kms_deletion_window_in_days" {
  description = "Waiting period before a removed signing key is deleted."
  type        = number
  default     = 30
}

# --- function -----------------------------------------------------------------------------------

variable "rust_log" {
  description = "RUST_LOG for the function (tracing filter). Never raise above info in production."
  type        = string
  default     = "info"
}

variable "timeout" {
  description = "Function timeout in seconds (covers a cold discovery/JWKS fetch and a KMS Sign)."
  type        = number
  default     = 10
}

variable "memory_size" {
  description = "Function memory in MB (CPU scales with it)."
  type        = number
  default     = 256
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions: caps cost and the load txbridge puts on KMS and on cluster issuers. -1: no reservation."
  type        = number
  default     = 50
}

variable "log_retention_days" {
  description = "Retention of the function's log group."
  type        = number
  default     = 365
}

variable "log_format" {
  description = "Lambda log format: \"Text\" or \"JSON\"."
  type        = string
  default     = "Text"
}

# --- optional API Gateway HTTP API and custom domain ----------------------------------------------

variable "create_http_api" {
  description = "Also front the function with an API Gateway HTTP API (needed for a custom domain)."
  type        = bool
  default     = false
}

variable "custom_domain" {
  description = "Custom domain for the HTTP API: the name and a regional ACM certificate ARN covering it. Requires create_http_api. DNS (a CNAME/alias to the output custom_domain_target) is left to the caller."
  type = object({
    domain_name     = string
    certificate_arn = string
  })
  default = null

  validation {
    condition     = var.custom_domain == null || var.create_http_api
    error_message = "custom_domain requires create_http_api = true."
  }
}

variable "http_api_throttling" {
  description = "Stage-wide throttling of the HTTP API."
  type = object({
    burst_limit = number
    rate_limit  = number
  })
  default = { burst_limit = 200, rate_limit = 100 }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
