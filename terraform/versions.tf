# The root configuration: Terraform and provider versions, and the state
# backend. The deployment itself is the module in modules/plaid-token-lifecycle
# (main.tf calls it).
#
# State lives in GCS. The backend block is deliberately empty: the bucket and
# prefix are given at init time (docs/DEPLOY.md; cloudbuild.yaml passes
# -backend-config=bucket=$_TF_STATE_BUCKET). `terraform init -backend=false`
# is enough for fmt, validate and test.
terraform {
  required_version = ">= 1.11.0"

  required_providers {
    # Exactly the version whose hashes .terraform.lock.hcl pins, which
    # terraform validate and terraform test run against. To upgrade: change
    # it here and run `terraform providers lock -platform=linux_amd64
    # -platform=linux_arm64 -platform=darwin_amd64 -platform=darwin_arm64`
    # (docs/DEPLOY.md, "Upgrade the provider").
    google = {
      source  = "hashicorp/google"
      version = "7.45.0"
    }
  }

  backend "gcs" {}
}
