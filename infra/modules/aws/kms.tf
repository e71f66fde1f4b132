# Signing keys: ECC_NIST_P256 / SIGN_VERIFY, one per key generation. The alias points at the active
# key and is what txbridge's config names (`[signer] key_id`); the other generations are listed in
# `previous_key_ids`, so their public keys stay in the JWKS during a rotation.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  active_key   = coalesce(var.active_key_generation, var.key_generations[length(var.key_generations) - 1])

  # Key administration for the account (through IAM), deliberately without kms:Sign and
  # kms:CreateGrant: only the function's role can sign, so no other principal in the account can
  # mint TxTokens without first changing the key policy (kms:PutKeyPolicy, kept so the key cannot
  # become unmanageable; that change is visible in CloudTrail).
  key_admin_actions = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:Describe*",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:Get*",
    "kms:List*",
    "kms:PutKeyPolicy",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
    "kms:Verify",
  ]
}

resource "aws_kms_key" "signing" {
  for_each = toset(var.key_generations)

  description              = "${var.name} TxToken signing key (generation ${each.key})"
  key_usage                = "SIGN_VERIFY"
  customer_master_key_spec = "ECC_NIST_P256"
  deletion_window_in_days  = var.kms_deletion_window_in_days
  # Automatic rotation does not exist for asymmetric keys: rotate by adding a key generation.
  enable_key_rotation = false

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountKeyAdministration"
        Effect    = "Allow"
        Principal = { AWS = local.account_root }
        Action    = local.key_admin_actions
        Resource  = "*"
      },
      {
        Sid       = "TxbridgeFunction"
        Effect    = "Allow"
        Principal = { AWS = aws_iam_role.function.arn }
        # Only the active generation signs; previous ones are only published.
        Action   = each.key == local.active_key ? ["kms:Sign", "kms:GetPublicKey"] : ["kms:GetPublicKey"]
        Resource = "*"
      },
    ]
  })

  tags = var.tags
}

resource "aws_kms_alias" "signing" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.signing[local.active_key].key_id
}
