variable "name" {
  description = "Prefix of every resource's name (the function, API, table, role, key alias, log groups)."
  type        = string
  default     = "network-mapper"

  validation {
    # DynamoDB table names need 3+ characters; the longest derived name must stay under 64.
    condition     = can(regex("^[a-z][a-z0-9-]{2,39}$", var.name))
    error_message = "The name must be 3-40 characters: lower-case letters, digits and '-', starting with a letter."
  }
}

variable "lambda_zip_path" {
  description = "Path of the function's zip, as `make lambda-zip` builds it (build/lambda.zip)."
  type        = string

  validation {
    condition     = can(regex("\\.zip$", var.lambda_zip_path))
    error_message = "The lambda_zip_path must name a .zip file (make lambda-zip builds build/lambda.zip)."
  }
}

variable "lambda_architecture" {
  description = "The function's instruction set; build the zip for the same one (make lambda-zip LAMBDA_ARCH=...)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "The lambda_architecture must be x86_64 or arm64."
  }
}

variable "lambda_memory_mb" {
  description = "Memory of the function, in MB (CPU is allotted in proportion)."
  type        = number
  default     = 512

  validation {
    condition     = var.lambda_memory_mb >= 128 && var.lambda_memory_mb <= 10240 && floor(var.lambda_memory_mb) == var.lambda_memory_mb
    error_message = "The lambda_memory_mb must be a whole number from 128 to 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Timeout of one invocation, in seconds (API Gateway HTTP APIs wait at most 30)."
  type        = number
  default     = 29

  validation {
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 30 && floor(var.lambda_timeout_seconds) == var.lambda_timeout_seconds
    error_message = "The lambda_timeout_seconds must be a whole number from 1 to 30."
  }
}

variable "reserved_concurrency" {
  description = "Concurrent executions reserved for (and the most allowed to) the function; the account must keep 100 unreserved."
  type        = number
  default     = 25

  validation {
    condition     = var.reserved_concurrency >= 1 && floor(var.reserved_concurrency) == var.reserved_concurrency
    error_message = "The reserved_concurrency must be a whole number of at least 1."
  }
}

variable "admin_token_sha256" {
  description = "SHA-256 (hex) of the platform admin token, which creates tenants (NM_ADMIN_TOKEN_SHA256); the token itself never reaches AWS."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.admin_token_sha256))
    error_message = "The admin_token_sha256 must be 64 lower-case hex digits: the SHA-256 of the admin token."
  }
}

variable "max_body_bytes" {
  description = "Largest request body the function accepts, in bytes (NM_MAX_BODY_BYTES; Lambda's synchronous payload limit is 6 MB)."
  type        = number
  default     = 6291456

  validation {
    condition     = var.max_body_bytes >= 1024 && var.max_body_bytes <= 6291456 && floor(var.max_body_bytes) == var.max_body_bytes
    error_message = "The max_body_bytes must be a whole number from 1024 to 6291456."
  }
}

variable "throttling_rate_limit" {
  description = "Steady-state requests per second the API stage admits (across all clients)."
  type        = number
  default     = 50

  validation {
    condition     = var.throttling_rate_limit > 0
    error_message = "The throttling_rate_limit must be positive."
  }
}

variable "throttling_burst_limit" {
  description = "Requests the API stage admits in a burst above the rate limit."
  type        = number
  default     = 100

  validation {
    condition     = var.throttling_burst_limit >= 1 && floor(var.throttling_burst_limit) == var.throttling_burst_limit
    error_message = "The throttling_burst_limit must be a whole number of at least 1."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the function's and the API's logs (one of CloudWatch's allowed values)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "The log_retention_days must be one of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "table_deletion_protection" {
  description = "Whether DynamoDB refuses to delete the table (every tenant's graph and tokens) until this is turned off."
  type        = bool
  default     = true
}

variable "kms_key_deletion_window_days" {
  description = "Days a deleted KMS key waits before it is gone (and with it whatever it encrypted)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_days >= 7 && var.kms_key_deletion_window_days <= 30
    error_message = "The kms_key_deletion_window_days must be from 7 to 30."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}
