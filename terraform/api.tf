# The HTTP API: exactly the routes the function answers, each to the function (payload v2.0).
# The stage is "$default" because the function reads the request's rawPath as the route (public
# paths, the console's files): a named stage would prefix every rawPath with its name.

locals {
  # The OpenAPI routes of cloud_functions.handlers.app, GET /openapi.json (the document itself,
  # outside it), and the console's page and files (cloud_functions.handlers.console: GET and HEAD
  # of / and /console/...). tests/unit/terraform checks this list against the app.
  api_routes = [
    "GET /",
    "HEAD /",
    "GET /console/{proxy+}",
    "HEAD /console/{proxy+}",
    "GET /openapi.json",
    "GET /healthz",
    "GET /graph",
    "GET /v1/graph",
    "POST /v1/ingest",
    "POST /v1/metrics",
    "POST /v1/snapshots",
    "POST /v1/coverage",
    "GET /v1/session",
    "POST /v1/tenants",
    "POST /v1/tenants/{tenantId}/check",
    "GET /v1/tenants/{tenantId}/clusters",
    "POST /v1/tenants/{tenantId}/clusters",
    "GET /v1/tenants/{tenantId}/coverage",
    "GET /v1/tenants/{tenantId}/diff",
    "GET /v1/tenants/{tenantId}/export",
    "GET /v1/tenants/{tenantId}/graph",
    "GET /v1/tenants/{tenantId}/graph/summary",
    "GET /v1/tenants/{tenantId}/snapshots",
    "GET /v1/tenants/{tenantId}/snapshots/{name}",
    "GET /v1/tenants/{tenantId}/tokens",
    "POST /v1/tenants/{tenantId}/tokens",
    "DELETE /v1/tenants/{tenantId}/tokens/{tokenId}",
  ]
}

resource "aws_apigatewayv2_api" "http" {
  name          = var.name
  description   = "network-mapper cloud: uploads from clusters, graphs, exports and the web console"
  protocol_type = "HTTP"
  tags          = var.tags
}

resource "aws_apigatewayv2_integration" "function" {
  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.api.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_route" "app" {
  #checkov:skip=CKV_AWS_309:The function authenticates every request itself (bearer tokens, stored hashed, per tenant and role: cloud_functions/auth.py); /healthz, /openapi.json and the console's files are public by design.
  for_each           = toset(local.api_routes)
  api_id             = aws_apigatewayv2_api.http.id
  route_key          = each.value
  authorization_type = "NONE"
  target             = "integrations/${aws_apigatewayv2_integration.function.id}"
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.http.id
  name        = "$default"
  auto_deploy = true
  tags        = var.tags

  default_route_settings {
    throttling_rate_limit    = var.throttling_rate_limit
    throttling_burst_limit   = var.throttling_burst_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api.arn
    # No headers: the Authorization header carries tokens.
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      sourceIp           = "$context.identity.sourceIp"
      httpMethod         = "$context.httpMethod"
      routeKey           = "$context.routeKey"
      path               = "$context.path"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      integrationStatus  = "$context.integrationStatus"
      integrationLatency = "$context.integrationLatency"
      errorMessage       = "$context.error.message"
    })
  }
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowInvokeFromHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.api.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_stage.default.execution_arn}/*"
}
