# Example input for the config module; infra/tests/render-config.sh renders it.
issuer                     = "https://tts.example.com"
trust_domain               = "https://tts.example.com"
token_lifetime             = "5m"
leeway                     = "30s"
max_subject_token_lifetime = "24h"

# Two clusters whose workload_id templates are identical and lack ${cluster} give a namespace and
# service account the same req_wl in both (namespace sameness across a fleet). That is refused
# unless it is meant:
# shared_workload_ids = true

signer = {
  kind   = "kms"
  key_id = "arn:aws:kms:eu-west-1:111122223333:alias/txbridge"
  previous_key_ids = [
    "arn:aws:kms:eu-west-1:111122223333:key/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
  ]
}

key_cache = {
  ttl         = "5m"
  stale_grace = "1h"
}

clusters = [
  {
    # EKS publishes its discovery document and JWKS publicly under the issuer.
    name       = "prod-eu"
    issuer     = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    audiences  = ["txbridge"]
    algorithms = ["RS256"]
  },
  {
    # Self-managed cluster: the issuer is not publicly reachable, its documents are mirrored
    # (modules/oidc-mirror); the issuer itself is kept as the tokens' `iss`.
    name          = "onprem-1"
    issuer        = "https://kubernetes.default.svc.cluster.local"
    discovery_url = "https://d111111abcdef8.cloudfront.net/onprem-1/.well-known/openid-configuration"
    audiences     = ["txbridge"]
    # req_wl in the SPIFFE shape kontxt clients send ("$$" keeps HCL from interpolating).
    workload_id = "spiffe://example.com/ns/$${namespace}/sa/$${service_account}"
  },
]

policies = [
  {
    # Named in logs, metrics and `txbridge policy explain` (default: policies[N]).
    id              = "checkout-orders"
    cluster         = "prod-eu"
    namespace       = "payments"
    service_account = "checkout"
    scopes          = ["orders:read", "orders:write"]
    # Names these subjects may claim in X-Txbridge-Workload besides their own workload id.
    workloads = ["checkout-web", "checkout-worker-*"]
    # CEL, compiled by txbridge at config load: only the checkout pods, not other pods of the SA.
    condition = "subject.claims[\"kubernetes.io\"].pod.name.startsWith(\"checkout-\")"
  },
  {
    cluster         = "*"
    namespace       = "team-*"
    service_account = "*"
    scopes          = ["catalog:read"]
  },
  {
    id              = "batch:reporting"
    cluster         = "onprem-1"
    namespace       = "batch"
    service_account = "reporting"
    scopes          = ["orders:read", "reports:write"]
    # request_details.namespace must be the caller's own namespace ("$$" keeps HCL from interpolating).
    tctx_constraints = {
      namespace = "$${namespace}"
    }
  },
]
