# txbridge as a Cloudflare Worker. The Worker is txbridge's entry module (entry.mjs: answers
# anything escaping the Rust handler with the contract's 503), worker-build's JavaScript module and
# a WebAssembly module, so it is uploaded as a cloudflare_worker_version with three modules and
# deployed with cloudflare_workers_deployment; cloudflare_workers_script takes a single content file.

locals {
  # workers.dev by default only when the Worker has no hostname of its own.
  workers_dev     = var.workers_dev != null ? var.workers_dev : length(var.custom_domains) == 0 && length(var.routes) == 0
  workers_dev_url = local.workers_dev && var.workers_dev_subdomain != null ? "https://${var.name}.${var.workers_dev_subdomain}.workers.dev" : null
  custom_url      = length(var.custom_domains) > 0 ? "https://${var.custom_domains[0].hostname}" : null
  issuer          = coalesce(var.issuer, local.custom_url, local.workers_dev_url)
  base_url        = coalesce(local.custom_url, local.workers_dev_url, var.issuer)

  # Every binding object has the same attributes (null where unused), so the list has one type.
  signing_key_binding = var.signing_key != null ? {
    type    = "secret_text"
    name    = "TXBRIDGE_SIGNING_KEY"
    text    = var.signing_key
    dataset = null
    } : {
    # Managed out of band (wrangler secret put): carried over from the latest version.
    type    = "inherit"
    name    = "TXBRIDGE_SIGNING_KEY"
    text    = null
    dataset = null
  }

  # txbridge writes one Analytics Engine data point per exchange when TXBRIDGE_METRICS is bound
  # (ARCHITECTURE.md, "Metrics"); see var.analytics_dataset for the layout.
  metrics_bindings = var.analytics_dataset == null ? [] : [{
    type    = "analytics_engine"
    name    = "TXBRIDGE_METRICS"
    text    = null
    dataset = var.analytics_dataset
  }]
}

module "config" {
  source = "../config"

  issuer                     = local.issuer
  trust_domain               = var.trust_domain
  token_lifetime             = var.token_lifetime
  leeway                     = var.leeway
  max_subject_token_lifetime = var.max_subject_token_lifetime
  shared_workload_ids        = var.shared_workload_ids
  signer = {
    kind                 = "local"
    previous_public_keys = var.previous_public_keys
  }
  key_cache = var.key_cache
  clusters  = var.clusters
  policies  = var.policies
}

resource "cloudflare_worker" "txbridge" {
  account_id = var.account_id
  name       = var.name

  subdomain = {
    enabled          = local.workers_dev
    previews_enabled = false
  }

  observability = {
    enabled = true
  }
}

resource "cloudflare_worker_version" "txbridge" {
  account_id          = var.account_id
  worker_id           = cloudflare_worker.txbridge.id
  compatibility_date  = var.compatibility_date
  compatibility_flags = var.compatibility_flags
  main_module         = "entry.mjs"

  # Names as entry.mjs and index.js import them.
  modules = [
    {
      name         = "entry.mjs"
      content_type = "application/javascript+module"
      content_file = var.entry_module_path
    },
    {
      name         = "index.js"
      content_type = "application/javascript+module"
      content_file = var.main_module_path
    },
    {
      name         = "index_bg.wasm"
      content_type = "application/wasm"
      content_file = var.wasm_module_path
    },
  ]

  bindings = concat(
    [
      {
        # Public configuration: trusted clusters and policies, never a secret.
        type    = "plain_text"
        name    = "TXBRIDGE_CONFIG"
        text    = module.config.toml
        dataset = null
      },
      local.signing_key_binding,
    ],
    local.metrics_bindings,
  )
}

resource "cloudflare_workers_deployment" "txbridge" {
  account_id  = var.account_id
  script_name = cloudflare_worker.txbridge.name
  strategy    = "percentage"

  versions = [{
    percentage = 100
    version_id = cloudflare_worker_version.txbridge.id
  }]
}

resource "cloudflare_workers_route" "txbridge" {
  for_each = { for r in var.routes : r.pattern => r }

  zone_id = each.value.zone_id
  pattern = each.value.pattern
  script  = cloudflare_worker.txbridge.name

  depends_on = [cloudflare_workers_deployment.txbridge]
}

resource "cloudflare_workers_custom_domain" "txbridge" {
  for_each = { for d in var.custom_domains : d.hostname => d }

  account_id = var.account_id
  zone_id    = each.value.zone_id
  hostname   = each.value.hostname
  service    = cloudflare_worker.txbridge.name

  depends_on = [cloudflare_workers_deployment.txbridge]
}
