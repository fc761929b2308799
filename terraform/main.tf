# The network-mapper cloud backend: one Lambda function (cloud_functions.handlers.handler) behind
# an API Gateway HTTP API, its store in one DynamoDB table, and one KMS key for the table, the
# function's environment and the log groups. Every name derives from var.name.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition

  function_log_group = "/aws/lambda/${var.name}"
  api_log_group      = "/aws/apigateway/${var.name}"
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: the store's table, the function's environment and the log groups"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_days
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "key" {
  # A key policy's resource is always "*": the key it is attached to.
  #checkov:skip=CKV_AWS_109:A key policy's "*" is the key itself; the account root statement is what lets IAM policies (the function's role) grant use of it.
  #checkov:skip=CKV_AWS_111:A key policy's "*" is the key itself, and only the account and CloudWatch Logs (for our two log groups) are principals.
  #checkov:skip=CKV_AWS_356:A key policy's "*" is the key itself; no other resource can be named in it.
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptOurLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${local.function_log_group}",
        "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${local.api_log_group}",
      ]
    }
  }
}

resource "aws_cloudwatch_log_group" "function" {
  name              = local.function_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "api" {
  name              = local.api_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}
