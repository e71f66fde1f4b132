terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.29, < 7.0"
    }
    cloudflare = {
      source  = "cloudflare/cloudflare"
      version = ">= 5.9, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region
}

# Credentials from CLOUDFLARE_API_TOKEN; only used when deploy_cloudflare = true.
provider "cloudflare" {}
