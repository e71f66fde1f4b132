variable "account_id" {
  description = "Cloudflare account id."
  type        = string
}

variable "name" {
  description = "Worker name (also its workers.dev hostname label)."
  type        = string
  default     = "txbridge"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.name))
    error_message = "name must be lowercase letters, digits and '-'."
  }
}

variable "entry_module_path" {
  description = "txbridge's entry module, copied into the build by functions/worker/build.sh (functions/worker/build/entry.mjs)."
  type        = string
}

variable "main_module_path" {
  description = "The Worker's JavaScript module from worker-build (functions/worker/build/index.js)."
  type        = string
}

variable "wasm_module_path" {
  description = "The Worker's WebAssembly module from `worker-build --release` (functions/worker/build/index_bg.wasm)."
  type        = string
}

variable "compatibility_date" {
  description = "Workers runtime compatibility date; keep it equal to wrangler.toml's."
  type        = string
  default     = "2025-09-01"

  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", var.compatibility_date))
    error_message = "compatibility_date must be YYYY-MM-DD."
  }
}

variable "compatibility_flags" {
  description = "Workers runtime compatibility flags; keep them equal to wrangler.toml's."
  type        = list(string)
  default     = []
}

variable "signing_key" {
  description = <<-EOT
    The in-binary signing key (P-256, PEM PKCS#8 or JWK), bound as the secret TXBRIDGE_SIGNING_KEY.
    It is stored in Terraform state: keep state encrypted and access-controlled. Null: the secret is
    managed out of band (`wrangler secret put TXBRIDGE_SIGNING_KEY`) and inherited by every new version.
  EOT
  type        = string
  default     = null
  sensitive   = true
}

variable "workers_dev" {
  description = <<-EOT
    Serve the Worker on <name>.<account subdomain>.workers.dev. Null (default): only when no custom
    domain and no route is configured, so a Worker with a hostname of its own is not also reachable
    on workers.dev, outside that zone's WAF and rate-limiting rules. An explicit true or false wins.
  EOT
  type        = bool
  default     = null
}

variable "workers_dev_subdomain" {
  description = "The account's workers.dev subdomain (the part before .workers.dev); only used to build URLs."
  type        = string
  default     = null
}

variable "routes" {
  description = "Zone routes to the Worker, e.g. { zone_id = \"...\", pattern = \"tts.example.com/*\" }."
  type = list(object({
    zone_id = string
    pattern = string
  }))
  default = []
}

variable "custom_domains" {
  description = "Custom domains served by the Worker (Cloudflare creates DNS records and certificates)."
  type = list(object({
    zone_id  = string
    hostname = string
  }))
  default = []
}

variable "analytics_dataset" {
  description = <<-EOT
    Workers Analytics Engine dataset for txbridge's metrics. Set: the Worker gets the binding
    TXBRIDGE_METRICS to it (the dataset is created on the first write) and writes one data point per
    exchange: blobs [outcome, error, cluster, kind, policy] (outcome issued | rejected | error, error
    the OAuth code or "", kind exchange | replacement, policy the policy id or ""), doubles [count
    (1), latency_seconds], index the cluster. Null: no binding; the metrics are still in the
    Worker's JSON log lines.
  EOT
  type        = string
  default     = null

  validation {
    condition     = var.analytics_dataset == null || can(regex("^[A-Za-z0-9_-]+$", var.analytics_dataset))
    error_message = "analytics_dataset must be a dataset name of letters, digits, '_' or '-' (underscores keep SQL queries simple)."
  }
}

# --- txbridge config (rendered by ../config with signer kind = "local") -------------------------

variable "issuer" {
  description = "iss of issued TxTokens. Null: https://<first custom domain>, else the workers.dev URL (needs workers_dev_subdomain)."
  type        = string
  default     = null

  validation {
    condition = var.issuer != null || length(var.custom_domains) > 0 || (
      var.workers_dev_subdomain != null &&
      (var.workers_dev != null ? var.workers_dev : length(var.routes) == 0)
    )
    error_message = "Set issuer, a custom domain, or workers_dev_subdomain with workers.dev enabled (routes alone do not give an issuer: set it)."
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
  description = "Clock skew allowed for subject tokens. Null: txbridge's default."
  type        = string
  default     = null
}

variable "max_subject_token_lifetime" {
  description = "Longest accepted subject-token lifetime. Null: txbridge's default."
  type        = string
  default     = null
}

variable "previous_public_keys" {
  description = "Public JWKs of previous signing keys, still published during a rotation."
  type        = list(map(string))
  default     = []
}

variable "shared_workload_ids" {
  description = "true: clusters with identical workload_id templates without $${cluster} share workload ids (namespace sameness); otherwise such a config is refused. Null: omitted (false). See the config module."
  type        = bool
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
  description = "Trusted clusters; see the config module. From a Worker, discovery/JWKS URLs must be public HTTPS (use oidc-mirror for private clusters)."
  type = list(object({
    name                         = string
    issuer                       = string
    discovery_url                = optional(string)
    jwks_url                     = optional(string)
    audiences                    = list(string)
    algorithms                   = optional(list(string))
    workload_id                  = optional(string)
    insecure_allow_http_loopback = optional(bool)
  }))

  validation {
    condition     = alltrue([for c in var.clusters : !coalesce(c.insecure_allow_http_loopback, false)])
    error_message = "insecure_allow_http_loopback is a test setting; a deployed Worker can only fetch public HTTPS URLs."
  }
}

variable "policies" {
  description = "Exchange policies (default deny); see the config module."
  type = list(object({
    cluster          = string
    namespace        = string
    service_account  = string
    scopes           = list(string)
    tctx_constraints = optional(map(string))
    workloads        = optional(list(string), [])
    id               = optional(string)
    condition        = optional(string)
  }))
  default = []
}
