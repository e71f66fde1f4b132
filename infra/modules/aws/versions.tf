terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.29 adds aws_lambda_permission.invoked_via_function_url (function URLs need both
      # lambda:InvokeFunctionUrl and lambda:InvokeFunction).
      version = ">= 6.29, < 7.0"
    }
  }
}
