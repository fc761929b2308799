# The store's one table, as cloud_functions/store/dynamotable.py create_table makes it and
# cloud_functions/store/dynamoitems.py documents it: PK/SK strings, the two keys-only indexes by
# workload (by_client, by_server), on-demand billing, and the expires_at TTL that ends batch
# markers and telemetry. tests/unit/terraform checks these against the code.

resource "aws_dynamodb_table" "store" {
  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "PK"
  range_key                   = "SK"
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = "PK"
    type = "S"
  }

  attribute {
    name = "SK"
    type = "S"
  }

  attribute {
    name = "client_group"
    type = "S"
  }

  attribute {
    name = "server_group"
    type = "S"
  }

  global_secondary_index {
    name            = "by_client"
    hash_key        = "PK"
    range_key       = "client_group"
    projection_type = "KEYS_ONLY"
  }

  global_secondary_index {
    name            = "by_server"
    hash_key        = "PK"
    range_key       = "server_group"
    projection_type = "KEYS_ONLY"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  tags = var.tags
}
