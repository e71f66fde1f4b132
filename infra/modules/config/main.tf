# Renders txbridge's TOML config (the contract in ARCHITECTURE.md, "Config") from typed variables.
#
# Strings go through jsonencode(): a JSON string literal is a valid TOML basic string (same quoting,
# `\"`, `\\`, `\n`, `\uXXXX` escapes), and a JSON array of strings is a valid TOML array.
# Optional keys are left out when null so that txbridge's own defaults apply.
locals {
  toml = templatefile("${path.module}/config.toml.tftpl", {
    issuer                     = var.issuer
    trust_domain               = coalesce(var.trust_domain, var.issuer)
    token_lifetime             = var.token_lifetime
    leeway                     = var.leeway
    max_subject_token_lifetime = var.max_subject_token_lifetime
    shared_workload_ids        = var.shared_workload_ids
    signer                     = var.signer
    key_cache                  = var.key_cache == null ? {} : { for k, v in var.key_cache : k => v if v != null }
    clusters                   = var.clusters
    policies                   = var.policies
  })
}
