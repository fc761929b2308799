terraform {
  # 1.0 reads every construct used here (validation blocks, sensitive variables, for_each).
  required_version = ">= 1.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.31 added aws_lambda_function.logging_config; 6.x may rename arguments used here.
      version = ">= 5.31, < 6.0"
    }
  }
}
