# The function's role: the DynamoDB actions the store calls (on the table, and Query on its
# indexes), writing its own log group, X-Ray segments, and the key through DynamoDB and Lambda.
# tests/unit/terraform derives the DynamoDB actions from cloud_functions/store/*.py and compares.

locals {
  # Every call of cloud_functions/store/dynamodb*.py at run time; TransactWriteItems is authorized
  # per item (Put, Delete, ConditionCheck); UpdateTable adds the indexes to a table made before them
  # (a migration of dynamomigrations.py: a table made here has them, so it never runs here).
  store_table_actions = [
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
    "dynamodb:UpdateTable",
  ]
  # Pages by workload read the indexes (dynamopages.py): Query only.
  store_index_actions = ["dynamodb:Query"]
}

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "LambdaRunsTheFunction"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "function" {
  name               = "${var.name}-function"
  description        = "The ${var.name} cloud function: its table, its logs, its key"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "function" {
  statement {
    sid       = "StoreTable"
    actions   = local.store_table_actions
    resources = [aws_dynamodb_table.store.arn]
  }

  statement {
    sid     = "StoreIndexes"
    actions = local.store_index_actions
    resources = [
      "${aws_dynamodb_table.store.arn}/index/by_client",
      "${aws_dynamodb_table.store.arn}/index/by_server",
    ]
  }

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function.arn}:*"]
  }

  statement {
    sid = "Tracing"
    # X-Ray's PutTraceSegments and PutTelemetryRecords take no resource: "*" is the only one.
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  statement {
    sid       = "KeyThroughDynamoDBAndLambda"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${local.region}.amazonaws.com", "lambda.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "function" {
  name   = "least-privilege"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.function.json
}
