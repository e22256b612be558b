# Terraform, provider and state backend.
#
# State lives in GCS. The backend block is deliberately empty: the bucket and
# prefix are given at init time (cloudbuild.yaml passes
# -backend-config=bucket=$_TF_STATE_BUCKET). A local `terraform init` therefore
# needs either the same -backend-config flags or -backend=false (enough for
# fmt and validate).
terraform {
  required_version = ">= 1.5.7"

  required_providers {
    # Only hashicorp/google: it is the one provider whose schema this project
    # checks against (scripts/tfcheck). No archive provider either: the source
    # zip is built by scripts/package-source.sh and passed in as a path.
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }

  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app        = "plaid-token-lifecycle"
    managed-by = "terraform"
  }
}
