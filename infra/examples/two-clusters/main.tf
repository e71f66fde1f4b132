# txbridge trusting two clusters:
#   - "prod-eks": an EKS cluster, whose issuer publishes discovery and JWKS publicly;
#   - "onprem-1": a self-managed cluster whose API server is private; its issuer documents are
#     copied to a public mirror (modules/oidc-mirror + mirror.sh) and txbridge reads them there.
# Deployed on AWS Lambda (KMS-signed), and optionally as a Cloudflare Worker too.

locals {
  clusters = [
    {
      name        = "prod-eks"
      issuer      = "https://oidc.eks.${var.region}.amazonaws.com/id/${var.eks_oidc_id}"
      audiences   = ["txbridge"]
      workload_id = var.workload_id
    },
    {
      name          = "onprem-1"
      issuer        = var.onprem_issuer
      discovery_url = module.oidc_mirror.discovery_urls["onprem-1"]
      audiences     = ["txbridge"]
      workload_id   = var.workload_id
    },
  ]

  policies = [
    {
      cluster         = "prod-eks"
      namespace       = "payments"
      service_account = "checkout"
      scopes          = ["orders:read", "orders:write"]
    },
    {
      cluster         = "onprem-1"
      namespace       = "batch"
      service_account = "reporting"
      scopes          = ["orders:read"]
    },
  ]
}

module "oidc_mirror" {
  source = "../../modules/oidc-mirror"

  bucket_name = var.mirror_bucket_name
  prefixes    = ["onprem-1"]
}

module "txbridge_aws" {
  source = "../../modules/aws"

  issuer              = var.issuer
  lambda_zip_path     = var.lambda_zip_path
  architecture        = var.lambda_architecture
  token_lifetime      = "5m"
  leeway              = "30s"
  shared_workload_ids = var.shared_workload_ids
  clusters            = local.clusters
  policies            = local.policies

  create_dashboard = var.create_dashboard
  alarm_actions    = var.alarm_actions
}

module "txbridge_cloudflare" {
  source = "../../modules/cloudflare"
  count  = var.deploy_cloudflare ? 1 : 0

  account_id            = var.cloudflare_account_id
  workers_dev_subdomain = var.cloudflare_workers_dev_subdomain
  entry_module_path     = "${var.worker_build_dir}/entry.mjs"
  main_module_path      = "${var.worker_build_dir}/index.js"
  wasm_module_path      = "${var.worker_build_dir}/index_bg.wasm"
  signing_key           = var.cloudflare_signing_key
  analytics_dataset     = var.cloudflare_analytics_dataset
  token_lifetime        = "5m"
  shared_workload_ids   = var.shared_workload_ids
  clusters              = local.clusters
  policies              = local.policies
}
