variable "region" {
  description = "AWS region to deploy the backend in."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "The region must be an AWS region name such as us-east-1."
  }
}

variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "network-mapper"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,39}$", var.name))
    error_message = "The name must be 3-40 characters: lower-case letters, digits and '-', starting with a letter."
  }
}

variable "lambda_architecture" {
  description = "The function's instruction set: x86_64 or arm64 (build the zip with the same LAMBDA_ARCH)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "The lambda_architecture must be x86_64 or arm64."
  }
}

variable "admin_token_sha256" {
  description = "SHA-256 (hex) of the platform admin token, which creates tenants."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.admin_token_sha256))
    error_message = "The admin_token_sha256 must be 64 lower-case hex digits."
  }
}
