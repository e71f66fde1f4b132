variable "bucket_name" {
  description = "Name of the (private) S3 bucket that holds the mirrored documents."
  type        = string
}

variable "prefixes" {
  description = "One prefix per mirrored cluster (usually the txbridge cluster name). For each, exactly /<prefix>/.well-known/openid-configuration and /<prefix>/openid/v1/jwks become public."
  type        = list(string)

  validation {
    condition     = length(var.prefixes) > 0 && alltrue([for p in var.prefixes : can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", p))])
    error_message = "prefixes must be non-empty names of letters, digits, '.', '_' or '-' (no '/')."
  }

  validation {
    condition     = length(distinct(var.prefixes)) == length(var.prefixes)
    error_message = "prefixes must be unique."
  }
}

variable "aliases" {
  description = "Optional custom hostnames for the distribution (needs acm_certificate_arn, a us-east-1 certificate)."
  type        = list(string)
  default     = []
}

variable "acm_certificate_arn" {
  description = "ACM certificate (us-east-1) for aliases; null: the *.cloudfront.net certificate."
  type        = string
  default     = null

  validation {
    condition     = (var.acm_certificate_arn == null) == (length(var.aliases) == 0)
    error_message = "Set acm_certificate_arn exactly when aliases are given."
  }
}

variable "price_class" {
  description = "CloudFront price class."
  type        = string
  default     = "PriceClass_100"
}

variable "default_ttl" {
  description = "Edge cache TTL in seconds when an object has no Cache-Control (mirror.sh sets one)."
  type        = number
  default     = 300
}

variable "noncurrent_version_expiration_days" {
  description = "Days to keep overwritten versions of the documents (for rollback after a bad mirror run)."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
