variable "issuer" {
  description = "iss of issued TxTokens and the issuer in txbridge's metadata (an https URL, no trailing slash)."
  type        = string

  validation {
    condition = (
      can(regex("^https://([A-Za-z0-9._-]+|\\[[0-9A-Fa-f:.]+\\])(:[0-9]+)?(/[^?#]*[^/?#])?$", var.issuer)) &&
      can(regex("^[!-~]+$", var.issuer)) && !can(regex("(?i)^https://([^/]*\\.)?xn--", var.issuer))
    )
    error_message = "issuer must be a printable-ASCII https URL without query, fragment or trailing slash; its host a DNS name (letters, digits, '.', '-', '_', no xn-- label) or IP literal."
  }
}

variable "trust_domain" {
  description = "aud of issued TxTokens and the expected `audience` request parameter. Defaults to the issuer."
  type        = string
  default     = null

  validation {
    condition     = var.trust_domain == null || try(length(trimspace(var.trust_domain)) > 0, false)
    error_message = "trust_domain must not be empty."
  }
}

variable "token_lifetime" {
  description = "Lifetime of issued TxTokens (humantime, e.g. \"5m\"). Omitted from the TOML when null (txbridge default: 5m)."
  type        = string
  default     = null

  validation {
    condition     = var.token_lifetime == null || can(regex("^([0-9]+(ms|s|m|h|d) ?)+$", coalesce(var.token_lifetime, "0s")))
    error_message = "token_lifetime must be a duration such as \"5m\", \"90s\" or \"1h 30m\"."
  }
}

variable "leeway" {
  description = "Clock skew allowed when checking subject tokens (e.g. \"30s\"). Omitted when null."
  type        = string
  default     = null

  validation {
    condition     = var.leeway == null || can(regex("^([0-9]+(ms|s|m|h|d) ?)+$", coalesce(var.leeway, "0s")))
    error_message = "leeway must be a duration such as \"30s\"."
  }
}

variable "max_subject_token_lifetime" {
  description = "Reject subject tokens whose exp - iat is longer than this (e.g. \"24h\"). Omitted when null."
  type        = string
  default     = null

  validation {
    condition     = var.max_subject_token_lifetime == null || can(regex("^([0-9]+(ms|s|m|h|d) ?)+$", coalesce(var.max_subject_token_lifetime, "0s")))
    error_message = "max_subject_token_lifetime must be a duration such as \"24h\"."
  }
}

variable "shared_workload_ids" {
  description = <<-EOT
    Top-level `shared_workload_ids`. Two clusters whose workload_id templates are identical and lack
    "$${cluster}" render the same req_wl for the same namespace and service account: a subject of
    either cluster is then the same workload (namespace sameness across a fleet). txbridge refuses
    such a config, naming both clusters, unless shared_workload_ids = true says it is meant; this
    module applies the same rule at plan time. Only explicit templates can collide: the default
    "$${cluster}:$${namespace}:$${service_account}" contains "$${cluster}". Null: the key is omitted
    (txbridge's default, false).
  EOT
  type        = bool
  default     = null
}

variable "signer" {
  description = <<-EOT
    Signing key reference. kind = "local": the key comes from TXBRIDGE_SIGNING_KEY (never from this config).
    kind = "kms": key_id is a KMS key ARN, key id or alias (ARN) of an ECC_NIST_P256 SIGN_VERIFY key;
    previous_key_ids are KMS keys whose public keys are still published during a rotation.
    kind = "kms-wrapped": wrapped_key is the base64 PrivateKeyCiphertextBlob of a P-256 key pair made by
    KMS GenerateDataKeyPairWithoutPlaintext (encryption context txbridge=signing-key); ciphertext only.
    previous_public_keys are public P-256 JWKs (maps of string members) still published during a rotation.
  EOT
  type = object({
    kind                 = string
    key_id               = optional(string)
    wrapped_key          = optional(string)
    previous_key_ids     = optional(list(string), [])
    previous_public_keys = optional(list(map(string)), [])
  })
  default = { kind = "local" }

  validation {
    condition     = contains(["local", "kms", "kms-wrapped"], var.signer.kind)
    error_message = "signer.kind must be \"local\", \"kms\" or \"kms-wrapped\"."
  }

  validation {
    condition     = var.signer.kind != "kms" || try(length(trimspace(var.signer.key_id)) > 0, false)
    error_message = "signer.key_id is required when signer.kind = \"kms\"."
  }

  validation {
    condition     = var.signer.kind == "kms" || (var.signer.key_id == null && length(var.signer.previous_key_ids) == 0)
    error_message = "signer.key_id and signer.previous_key_ids apply to kind = \"kms\" only."
  }

  validation {
    condition     = var.signer.kind != "kms-wrapped" || can(regex("^[A-Za-z0-9+/]+={0,2}$", var.signer.wrapped_key))
    error_message = "signer.wrapped_key (base64) is required when signer.kind = \"kms-wrapped\"."
  }

  validation {
    condition     = var.signer.kind == "kms-wrapped" || var.signer.wrapped_key == null
    error_message = "signer.wrapped_key applies to kind = \"kms-wrapped\" only."
  }

  validation {
    condition     = alltrue([for id in var.signer.previous_key_ids : length(trimspace(id)) > 0])
    error_message = "signer.previous_key_ids must not contain empty strings."
  }

  # Only public keys belong here: reject any private JWK member (EC/OKP "d", RSA CRT parameters, "k").
  validation {
    condition = alltrue([
      for jwk in var.signer.previous_public_keys :
      lookup(jwk, "kty", "") == "EC" && lookup(jwk, "crv", "") == "P-256" &&
      length(setintersection(keys(jwk), ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])) == 0
    ])
    error_message = "signer.previous_public_keys must be public P-256 JWKs (kty EC, crv P-256) without private members."
  }
}

variable "clusters" {
  description = <<-EOT
    Trusted Kubernetes clusters. name: 1-63 lowercase letters, digits, '-', '_' or '.' (it appears in
    `sub`, `tctx` and metrics). issuer must equal the `iss` of the cluster's ServiceAccount tokens.
    discovery_url (optional) points at a public copy of the cluster's discovery document (e.g. from the
    oidc-mirror module); jwks_url (optional) overrides the JWKS location. algorithms defaults to
    txbridge's default (RS256 and ES256) when null. insecure_allow_http_loopback is for tests and
    development only. workload_id (optional) renders the req_wl of the cluster's subjects from
    "$${cluster}", "$${namespace}" and "$${service_account}" (write "$$" in HCL); txbridge's default is
    "$${cluster}:$${namespace}:$${service_account}".
  EOT
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
    condition     = length(var.clusters) > 0
    error_message = "At least one cluster must be trusted."
  }

  # The binary's rule (txbridge_core config): the name appears in `sub` and `tctx` as
  # <cluster>:<namespace>:<service account>, so no ':', and in metrics as the cluster dimension.
  validation {
    condition     = alltrue([for c in var.clusters : can(regex("^[a-z0-9._-]{1,63}$", c.name))])
    error_message = "clusters[${try([for i, c in var.clusters : i if !can(regex("^[a-z0-9._-]{1,63}$", c.name))][0], 0)}].name must be 1-63 lowercase letters, digits, '-', '_' or '.'"
  }

  validation {
    condition     = length(distinct([for c in var.clusters : c.name])) == length(var.clusters)
    error_message = "Cluster names must be unique."
  }

  validation {
    condition = alltrue(flatten([
      for c in var.clusters : [
        for u in compact([c.issuer, c.discovery_url, c.jwks_url]) :
        can(regex("^[!-~]+$", u)) && !can(regex("(?i)^https?://([^/?#]*\\.)?xn--", u)) && (
          can(regex("^https://([A-Za-z0-9._-]+|\\[[0-9A-Fa-f:.]+\\])(:[0-9]+)?([/?]|$)", u)) ||
          (coalesce(c.insecure_allow_http_loopback, false) && can(regex("^http://(127\\.0\\.0\\.1|\\[::1\\])(:[0-9]+)?(/|$)", u)))
        )
      ]
    ]))
    error_message = "Cluster issuer, discovery_url and jwks_url must be printable-ASCII https URLs (http only on loopback with insecure_allow_http_loopback = true), their host a DNS name (letters, digits, '.', '-', '_', no xn-- label) or IP literal."
  }

  validation {
    condition     = alltrue([for c in var.clusters : length(c.audiences) > 0 && alltrue([for a in c.audiences : length(trimspace(a)) > 0])])
    error_message = "Each cluster needs at least one non-empty audience."
  }

  # An explicit allow-list of asymmetric algorithms: never "none", never HMAC.
  validation {
    condition = alltrue([
      for c in var.clusters : c.algorithms == null || (
        length(coalesce(c.algorithms, [])) > 0 &&
        length(setsubtract(coalesce(c.algorithms, []), ["RS256", "ES256"])) == 0
      )
    ])
    error_message = "algorithms must be a non-empty subset of [\"RS256\", \"ES256\"]."
  }

  # Printable ASCII without spaces or commas (a comma separates a replaced token's req_wl chain);
  # "$" only in the three known placeholders.
  validation {
    condition = alltrue([
      for c in var.clusters : c.workload_id == null || (
        length(coalesce(c.workload_id, "x")) <= 256 &&
        can(regex("^(?:[!-#%-+\\x2d-~]|\\$\\{(?:cluster|namespace|service_account)\\})+$", c.workload_id))
      )
    ])
    error_message = "workload_id must be printable ASCII without spaces or commas (at most 256), with only the placeholders $${cluster}, $${namespace} and $${service_account}."
  }

  # The binary's collision rule: identical templates without $${cluster} give two clusters' subjects
  # the same req_wl, an error unless shared_workload_ids = true. A null workload_id is the default
  # template, which contains $${cluster}.
  validation {
    condition = coalesce(var.shared_workload_ids, false) || length(flatten([
      for i, a in var.clusters : [
        for j, b in var.clusters : j if j > i &&
        coalesce(a.workload_id, "$${cluster}") == coalesce(b.workload_id, "$${cluster}") &&
        !strcontains(coalesce(a.workload_id, "$${cluster}"), "$${cluster}")
      ]
    ])) == 0
    error_message = "${join("; ", flatten([
      for i, a in var.clusters : [
        for j, b in var.clusters : "clusters ${a.name} and ${b.name} render the same workload id (identical workload_id templates without $${cluster})" if j > i &&
        coalesce(a.workload_id, "$${cluster}") == coalesce(b.workload_id, "$${cluster}") &&
        !strcontains(coalesce(a.workload_id, "$${cluster}"), "$${cluster}")
      ]
    ]))}: put $${cluster} in the templates, or set shared_workload_ids = true if their subjects are meant to be the same workloads."
  }
}

variable "policies" {
  description = <<-EOT
    Who may get which scopes (default deny). cluster is a cluster name or "*"; namespace and
    service_account are exact names or globs (e.g. "team-*"); scopes is the ceiling of grantable scopes.
    tctx_constraints (optional) maps request_details keys to required values; a value may be the
    subject's own "$${cluster}", "$${namespace}" or "$${service_account}" (write "$$" in HCL).
    workloads (optional) lists names (globs, "*" wildcard) the matching subjects may claim as their
    req_wl in X-Txbridge-Workload, besides their own workload id.
    id (optional) names the policy in logs, metrics (the `policy` dimension) and `txbridge policy
    explain`: 1-64 of A-Z a-z 0-9 . _ : -, unique among the policies (default: policies[N]).
    condition (optional) is a CEL expression (at most 4096 bytes) that must also be true for the
    policy to apply, over `subject` (cluster, namespace, service_account, sub, claims) and `request`
    (scope, request_details, request_context, workload, replacement, actor); e.g.
    'subject.claims["kubernetes.io"].pod.name.startsWith("checkout-")'. txbridge compiles it at
    config load (check it before apply with `txbridge policy check`, see infra/README.md); an
    evaluation error at run time counts as false. Write "$${" as "$$${" in HCL.
  EOT
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

  validation {
    condition     = alltrue([for p in var.policies : p.cluster == "*" || contains([for c in var.clusters : c.name], p.cluster)])
    error_message = "Each policy's cluster must be \"*\" or the name of a configured cluster."
  }

  validation {
    condition     = alltrue([for p in var.policies : length(trimspace(p.namespace)) > 0 && length(trimspace(p.service_account)) > 0])
    error_message = "Policy namespace and service_account must not be empty."
  }

  # Scopes travel space-separated in requests and tokens.
  validation {
    condition     = alltrue(flatten([for p in var.policies : [for s in p.scopes : can(regex("^[!#-\\[\\]-~]+$", s))]]))
    error_message = "Scopes must be non-empty and consist of printable ASCII without spaces, '\"' or '\\\\' (RFC 6749 scope-token)."
  }

  validation {
    condition = alltrue(flatten([
      for p in var.policies : [for k, v in coalesce(p.tctx_constraints, {}) : length(k) > 0 && length(v) > 0]
    ]))
    error_message = "tctx_constraints keys and values must not be empty."
  }

  validation {
    condition = alltrue(flatten([
      for p in var.policies : [for w in p.workloads : length(w) <= 256 && can(regex("^[!-+\\x2d-~]+$", w))]
    ]))
    error_message = "workloads entries must be printable ASCII without spaces or commas, at most 256 characters."
  }

  validation {
    condition     = alltrue([for p in var.policies : p.id == null || can(regex("^[A-Za-z0-9._:-]{1,64}$", p.id))])
    error_message = "Policy ids must be 1-64 characters of letters, digits, '.', '_', ':' or '-'."
  }

  validation {
    condition     = length(distinct(compact([for p in var.policies : p.id]))) == length(compact([for p in var.policies : p.id]))
    error_message = "Policy ids must be unique (duplicated: ${join(", ", distinct([for id in compact([for p in var.policies : p.id]) : id if length([for p in var.policies : p if p.id == id]) > 1]))})."
  }

  # 4096 bytes of UTF-8, as txbridge counts them (length() counts characters): base64 gives 4
  # characters per 3 bytes, less one byte per '=' of padding.
  validation {
    condition = alltrue([
      for p in var.policies : try(
        length(trimspace(p.condition)) > 0 &&
        length(base64encode(p.condition)) / 4 * 3 - length(regex("=*$", base64encode(p.condition))) <= 4096,
        p.condition == null,
      )
    ])
    error_message = "A policy condition must be a non-empty CEL expression of at most 4096 bytes."
  }
}

variable "key_cache" {
  description = "Optional [key_cache] tuning of the per-cluster discovery/JWKS cache (durations); null fields keep txbridge's defaults."
  type = object({
    ttl                  = optional(string)
    min_refresh_interval = optional(string)
    stale_grace          = optional(string)
  })
  default = null

  validation {
    condition = var.key_cache == null || alltrue([
      for d in compact([try(var.key_cache.ttl, null), try(var.key_cache.min_refresh_interval, null), try(var.key_cache.stale_grace, null)]) :
      can(regex("^([0-9]+(ms|s|m|h|d) ?)+$", d))
    ])
    error_message = "key_cache durations must look like \"5m\", \"10s\" or \"1h\"."
  }
}
