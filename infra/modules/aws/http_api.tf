# Optional API Gateway HTTP API in front of the function, with an optional custom domain.
# Every route goes to the function, which answers 404/405 itself; authentication is the subject
# token. With the API, it is the one public entry: the Function URL takes AWS_IAM (main.tf), so
# nothing bypasses the stage throttling below.

resource "aws_apigatewayv2_api" "http" {
  count = var.create_http_api ? 1 : 0

  name          = var.name
  protocol_type = "HTTP"
  # With a custom domain, clients use it; the default execute-api endpoint is switched off.
  disable_execute_api_endpoint = var.custom_domain != null
  tags                         = var.tags
}

resource "aws_apigatewayv2_integration" "http" {
  count = var.create_http_api ? 1 : 0

  api_id                 = aws_apigatewayv2_api.http[0].id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.function.invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "http" {
  #checkov:skip=CKV_AWS_309:The token exchange authenticates by the subject token (RFC 8693); metadata and JWKS are public.
  count = var.create_http_api ? 1 : 0

  api_id    = aws_apigatewayv2_api.http[0].id
  route_key = "$default"
  target    = "integrations/${aws_apigatewayv2_integration.http[0].id}"
}

resource "aws_cloudwatch_log_group" "http_api" {
  #checkov:skip=CKV_AWS_158:Access logs hold request metadata only (no bodies, no tokens); CloudWatch's default encryption at rest applies.
  count = var.create_http_api ? 1 : 0

  name              = "/aws/apigateway/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_apigatewayv2_stage" "http" {
  count = var.create_http_api ? 1 : 0

  api_id      = aws_apigatewayv2_api.http[0].id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = var.http_api_throttling.burst_limit
    throttling_rate_limit  = var.http_api_throttling.rate_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.http_api[0].arn
    format = jsonencode({
      requestId      = "$context.requestId"
      ip             = "$context.identity.sourceIp"
      requestTime    = "$context.requestTime"
      httpMethod     = "$context.httpMethod"
      path           = "$context.path"
      status         = "$context.status"
      responseLength = "$context.responseLength"
      latency        = "$context.integrationLatency"
    })
  }

  tags = var.tags
}

resource "aws_lambda_permission" "http_api" {
  count = var.create_http_api ? 1 : 0

  statement_id  = "TxbridgeHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http[0].execution_arn}/*/*"
}

resource "aws_apigatewayv2_domain_name" "http" {
  count = var.custom_domain != null ? 1 : 0

  domain_name = var.custom_domain.domain_name

  domain_name_configuration {
    certificate_arn = var.custom_domain.certificate_arn
    endpoint_type   = "REGIONAL"
    security_policy = "TLS_1_2"
  }

  tags = var.tags
}

resource "aws_apigatewayv2_api_mapping" "http" {
  count = var.custom_domain != null ? 1 : 0

  api_id      = aws_apigatewayv2_api.http[0].id
  domain_name = aws_apigatewayv2_domain_name.http[0].id
  stage       = aws_apigatewayv2_stage.http[0].id
}
