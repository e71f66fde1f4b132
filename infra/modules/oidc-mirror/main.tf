# Public HTTPS mirror of Kubernetes ServiceAccount issuer documents, for clusters whose API server
# is not reachable from txbridge (the Worker runtime can only fetch public HTTPS URLs). Only two
# objects per prefix are readable, and only through CloudFront (origin access control); the
# bucket stays private. mirror.sh copies the documents from a cluster.

locals {
  # The exact object keys CloudFront may read; nothing else in the bucket is exposed.
  public_keys = flatten([
    for p in var.prefixes : ["${p}/.well-known/openid-configuration", "${p}/openid/v1/jwks"]
  ])
  # CloudFront policy names allow letters, digits, '-' and '_' only; bucket names may contain dots.
  policy_name = substr(replace(var.bucket_name, ".", "-"), 0, 58)
  base_url    = length(var.aliases) > 0 ? "https://${var.aliases[0]}" : "https://${aws_cloudfront_distribution.mirror.domain_name}"
}

resource "aws_s3_bucket" "mirror" {
  #checkov:skip=CKV_AWS_18:Holds two public documents per cluster; reads are logged at the CloudFront layer if enabled, writes are in CloudTrail.
  #checkov:skip=CKV_AWS_144:Documents are re-created from the cluster by mirror.sh; cross-region replication adds nothing.
  #checkov:skip=CKV2_AWS_62:No consumer of object events.
  #checkov:skip=CKV_AWS_145:Public documents; SSE-S3 keeps CloudFront origin access simple (SSE-KMS would need a key policy for CloudFront).
  bucket = var.bucket_name
  tags   = var.tags
}

resource "aws_s3_bucket_ownership_controls" "mirror" {
  bucket = aws_s3_bucket.mirror.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "mirror" {
  bucket                  = aws_s3_bucket.mirror.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "mirror" {
  bucket = aws_s3_bucket.mirror.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "mirror" {
  bucket = aws_s3_bucket.mirror.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "mirror" {
  bucket = aws_s3_bucket.mirror.id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.mirror]
}

resource "aws_s3_bucket_policy" "mirror" {
  bucket = aws_s3_bucket.mirror.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "CloudFrontReadsTheMirroredDocumentsOnly"
        Effect    = "Allow"
        Principal = { Service = "cloudfront.amazonaws.com" }
        Action    = "s3:GetObject"
        Resource  = [for k in local.public_keys : "${aws_s3_bucket.mirror.arn}/${k}"]
        Condition = {
          StringEquals = { "AWS:SourceArn" = aws_cloudfront_distribution.mirror.arn }
        }
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.mirror.arn, "${aws_s3_bucket.mirror.arn}/*"]
        Condition = {
          Bool = { "aws:SecureTransport" = "false" }
        }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.mirror]
}

resource "aws_cloudfront_origin_access_control" "mirror" {
  name                              = local.policy_name
  description                       = "txbridge OIDC mirror: CloudFront reads the private bucket"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_cache_policy" "mirror" {
  name        = "${local.policy_name}-oidc"
  comment     = "txbridge OIDC mirror: honour the objects' short Cache-Control"
  min_ttl     = 0
  default_ttl = var.default_ttl
  max_ttl     = 3600

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_brotli = true
    enable_accept_encoding_gzip   = true
    cookies_config {
      cookie_behavior = "none"
    }
    headers_config {
      header_behavior = "none"
    }
    query_strings_config {
      query_string_behavior = "none"
    }
  }
}

resource "aws_cloudfront_response_headers_policy" "mirror" {
  #checkov:skip=CKV_AWS_259:HSTS is sent (1 year, subdomains) without "preload": preloading is the apex domain owner's decision, not this module's.
  name    = "${local.policy_name}-oidc"
  comment = "txbridge OIDC mirror security headers"

  security_headers_config {
    content_type_options {
      override = true
    }
    strict_transport_security {
      access_control_max_age_sec = 31536000
      include_subdomains         = true
      override                   = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
    referrer_policy {
      referrer_policy = "no-referrer"
      override        = true
    }
  }
}

resource "aws_cloudfront_distribution" "mirror" {
  #checkov:skip=CKV_AWS_68:Serves two small public JSON documents per cluster, read-only; a WAF would add cost without protecting anything.
  #checkov:skip=CKV2_AWS_47:No WAF (see CKV_AWS_68); the origin is static S3, not a Java application.
  #checkov:skip=CKV_AWS_86:Access logging needs a separate log bucket; the documents are public and read-only.
  #checkov:skip=CKV_AWS_310:Single static origin; a failed read makes txbridge serve its cached keys within the grace period.
  #checkov:skip=CKV_AWS_374:Public issuer metadata must be reachable from wherever txbridge runs.
  #checkov:skip=CKV_AWS_305:There is no root document; only the per-cluster paths exist.
  #checkov:skip=CKV2_AWS_42:A custom certificate is optional (aliases + acm_certificate_arn); the default *.cloudfront.net certificate is valid HTTPS.
  #checkov:skip=CKV_AWS_174:TLSv1.2_2021 is set when a custom certificate is used; the default certificate does not take a minimum protocol version.
  enabled         = true
  is_ipv6_enabled = true
  comment         = "txbridge OIDC mirror"
  price_class     = var.price_class
  aliases         = var.aliases
  http_version    = "http2and3"

  origin {
    origin_id                = "mirror"
    domain_name              = aws_s3_bucket.mirror.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.mirror.id
  }

  default_cache_behavior {
    target_origin_id           = "mirror"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    viewer_protocol_policy     = "https-only"
    compress                   = true
    cache_policy_id            = aws_cloudfront_cache_policy.mirror.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.mirror.id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.acm_certificate_arn == null
    acm_certificate_arn            = var.acm_certificate_arn
    ssl_support_method             = var.acm_certificate_arn == null ? null : "sni-only"
    minimum_protocol_version       = var.acm_certificate_arn == null ? "TLSv1" : "TLSv1.2_2021"
  }

  tags = var.tags
}
