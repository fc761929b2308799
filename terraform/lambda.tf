# The function: the zip `make lambda-zip` builds (cloud_functions/packaging.py), its handler
# cloud_functions.handlers.handler, and the settings that handler reads from its environment
# (cloud_functions.handlers.CloudSettings.from_environ): the store, the admin token's hash, the
# body limit. CLOUD_DYNAMODB_ENDPOINT (DynamoDB Local, for tests) is left unset: boto3's default.

resource "aws_lambda_function" "api" {
  #checkov:skip=CKV_AWS_116:API Gateway invokes the function synchronously and gets every error as the response; a dead-letter queue receives only failed asynchronous invocations, and there are none.
  #checkov:skip=CKV_AWS_117:The function reaches only DynamoDB, CloudWatch and X-Ray through their public AWS endpoints; a VPC would add NAT or endpoints and protect nothing here.
  #checkov:skip=CKV_AWS_272:Code signing needs the zip signed by an AWS Signer job from S3; this module deploys the local zip `make lambda-zip` builds, whose integrity source_code_hash pins.
  function_name                  = var.name
  description                    = "network-mapper cloud: the HTTP API and the web console"
  role                           = aws_iam_role.function.arn
  runtime                        = "python3.11"
  handler                        = "cloud_functions.handlers.handler"
  filename                       = var.lambda_zip_path
  source_code_hash               = filebase64sha256(var.lambda_zip_path)
  architectures                  = [var.lambda_architecture]
  memory_size                    = var.lambda_memory_mb
  timeout                        = var.lambda_timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = aws_kms_key.this.arn

  environment {
    variables = {
      CLOUD_STORE           = "dynamodb:${aws_dynamodb_table.store.name}"
      NM_ADMIN_TOKEN_SHA256 = var.admin_token_sha256
      NM_MAX_BODY_BYTES     = tostring(var.max_body_bytes)
    }
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    # The handler's logger (Powertools) writes JSON lines itself.
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.function.name
  }

  tags = var.tags

  # The role's policy must exist before the first invocation can log or read the table.
  depends_on = [aws_iam_role_policy.function]
}
