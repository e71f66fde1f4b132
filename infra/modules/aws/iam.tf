# The function's role: signing_mode "kms": kms:Sign on the active signing key, kms:GetPublicKey on
# the published keys; "kms-wrapped": kms:Decrypt on the wrapping key with txbridge's encryption
# context only (no kms:Sign at all). And writing to its own log group. Nothing else.

resource "aws_iam_role" "function" {
  name = "${var.name}-function"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id }
      }
    }]
  })

  tags = var.tags
}

resource "aws_iam_role_policy" "function" {
  name = "${var.name}-function"
  role = aws_iam_role.function.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      local.kms_signing ? [
        {
          Sid      = "Sign"
          Effect   = "Allow"
          Action   = ["kms:Sign"]
          Resource = [aws_kms_key.signing[local.active_key].arn]
        },
        {
          Sid      = "PublishPublicKeys"
          Effect   = "Allow"
          Action   = ["kms:GetPublicKey"]
          Resource = concat([for k in aws_kms_key.signing : k.arn], var.previous_key_ids)
        },
      ] : [],
      local.wrapped ? [
        {
          Sid      = "DecryptWrappedSigningKey"
          Effect   = "Allow"
          Action   = ["kms:Decrypt"]
          Resource = [aws_kms_key.wrapping[0].arn]
          Condition = {
            StringEquals = { for k, v in local.wrapped_key_context : "kms:EncryptionContext:${k}" => v }
          }
        },
      ] : [],
      [
        {
          Sid      = "Logs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = ["${aws_cloudwatch_log_group.function.arn}:*"]
        },
      ],
    )
  })
}
