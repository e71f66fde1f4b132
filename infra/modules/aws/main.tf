# txbridge on AWS Lambda (provided.al2023, arm64 by default), reachable through a public Function URL, or
# through an API Gateway HTTP API (optionally with a custom domain) with the Function URL behind
# AWS_IAM. Signs with a KMS key, or with a KMS-wrapped key decrypted once per cold start
# (signing_mode; see kms.tf).

locals {
  # The Function URL is public only when it is the entry point; see aws_lambda_function_url.
  public_function_url = !var.create_http_api

  custom_domain_url = var.custom_domain == null ? null : "https://${var.custom_domain.domain_name}"
  issuer            = coalesce(var.issuer, local.custom_domain_url)

  # Public base URL: the custom domain, else the HTTP API, else the Function URL.
  base_url = trimsuffix(coalesce(
    local.custom_domain_url,
    var.create_http_api ? aws_apigatewayv2_api.http[0].api_endpoint : null,
    aws_lambda_function_url.function.function_url,
  ), "/")

  other_key_arns = [for g, k in aws_kms_key.signing : k.arn if g != local.active_key]

  signer = local.wrapped ? {
    kind                 = "kms-wrapped"
    key_id               = null
    wrapped_key          = var.wrapped_key
    previous_key_ids     = []
    previous_public_keys = var.previous_public_keys
    } : {
    kind                 = "kms"
    key_id               = aws_kms_alias.signing[0].arn
    wrapped_key          = null
    previous_key_ids     = concat(local.other_key_arns, var.previous_key_ids)
    previous_public_keys = var.previous_public_keys
  }
}

module "config" {
  source = "../config"

  issuer                     = local.issuer
  trust_domain               = var.trust_domain
  token_lifetime             = var.token_lifetime
  leeway                     = var.leeway
  max_subject_token_lifetime = var.max_subject_token_lifetime
  shared_workload_ids        = var.shared_workload_ids
  signer                     = local.signer
  key_cache                  = var.key_cache
  clusters                   = var.clusters
  policies                   = var.policies
}

resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_158:txbridge never logs tokens or keys (fingerprints and txn ids only); CloudWatch's default encryption at rest applies.
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_lambda_function" "function" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously over HTTP only; a dead-letter queue applies to asynchronous invocations.
  #checkov:skip=CKV_AWS_117:Needs the public internet (cluster discovery/JWKS, KMS); a VPC would only add a NAT gateway in front of the same traffic.
  #checkov:skip=CKV_AWS_173:The environment holds no secret (the config is public metadata; the signing key stays in KMS, or is KMS ciphertext that only this role can decrypt); default Lambda encryption applies.
  #checkov:skip=CKV_AWS_272:The package is built by the deployer from source (cargo lambda); code signing is left to organisations that run a signing profile.
  #checkov:skip=CKV_AWS_50:No X-Ray instrumentation in the binary; tracing would add cost without spans.
  function_name = var.name
  description   = "txbridge: Kubernetes ServiceAccount token in (RFC 8693), Transaction Token out"
  role          = aws_iam_role.function.arn

  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]

  timeout                        = var.timeout
  memory_size                    = var.memory_size
  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = {
      TXBRIDGE_CONFIG = module.config.toml
      RUST_LOG        = var.rust_log
      # lambda_http leaves an API Gateway stage out of the request path (txbridge routes on it).
      AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH = "true"
    }
  }

  logging_config {
    log_format = var.log_format
    log_group  = aws_cloudwatch_log_group.function.name
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = !local.wrapped || var.wrapped_key != null
      error_message = "signing_mode = \"kms-wrapped\" needs wrapped_key: apply the wrapping key first (-target=...aws_kms_key.wrapping), run the generate_wrapped_key_command output, then set wrapped_key (infra/README.md)."
    }
    precondition {
      # Lambda caps all environment variables together at 4 KB.
      condition     = length(module.config.toml) + length(var.rust_log) < 3950
      error_message = "The rendered txbridge config is too large for a Lambda environment variable (4 KB in total); trim clusters/policies."
    }
  }

  depends_on = [aws_iam_role_policy.function]
}

# Without the HTTP API the Function URL is the public entry (authorization_type NONE): the token
# exchange authenticates every request by its subject token (a ServiceAccount JWT verified against
# the cluster's keys), and the discovery/JWKS documents are public by nature; IAM auth would force
# SigV4 on every client. With the HTTP API (create_http_api) the API is the one public entry and
# the URL takes AWS_IAM: both share the function's reserved concurrency, so a public URL beside the
# API would let anyone bypass the API's throttling and exhaust it.
resource "aws_lambda_function_url" "function" {
  #checkov:skip=CKV_AWS_258:Public only without the HTTP API (else AWS_IAM): callers authenticate with their ServiceAccount token, which txbridge verifies.
  function_name      = aws_lambda_function.function.function_name
  authorization_type = local.public_function_url ? "NONE" : "AWS_IAM"
}

# A public Function URL needs both statements (InvokeFunctionUrl, and InvokeFunction restricted to
# calls through the URL). With AWS_IAM there are none: only principals of this account whose IAM
# policies allow it may call the URL, with SigV4.
resource "aws_lambda_permission" "function_url" {
  #checkov:skip=CKV_AWS_301:Public Function URL by design when there is no HTTP API (see aws_lambda_function_url.function).
  count = local.public_function_url ? 1 : 0

  statement_id           = "TxbridgePublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.function.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "function_url_invoke" {
  #checkov:skip=CKV_AWS_301:Limited to invocations through the public Function URL (invoked_via_function_url), which exists only without the HTTP API.
  count = local.public_function_url ? 1 : 0

  statement_id             = "TxbridgeInvokeViaFunctionUrl"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.function.function_name
  principal                = "*"
  invoked_via_function_url = true
}

# The permissions were single resources before they became conditional.
moved {
  from = aws_lambda_permission.function_url
  to   = aws_lambda_permission.function_url[0]
}

moved {
  from = aws_lambda_permission.function_url_invoke
  to   = aws_lambda_permission.function_url_invoke[0]
}
