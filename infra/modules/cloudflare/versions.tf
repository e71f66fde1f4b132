terraform {
  required_version = ">= 1.9"

  required_providers {
    cloudflare = {
      source = "cloudflare/cloudflare"
      # 5.9 adds `modules` with content_file to cloudflare_worker_version.
      version = ">= 5.9, < 6.0"
    }
  }
}
