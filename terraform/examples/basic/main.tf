# The backend in one region: `make lambda-zip` at the repository's root first, then
# `terraform init && terraform apply` here, with admin_token_sha256 set (see the README,
# "Provision the backend").

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      app = "network-mapper"
    }
  }
}

module "network_mapper" {
  source = "../.."

  name                = var.name
  lambda_zip_path     = "${path.module}/../../../build/lambda.zip"
  lambda_architecture = var.lambda_architecture
  admin_token_sha256  = var.admin_token_sha256
}
