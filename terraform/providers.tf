provider "google" {
  project = var.project_id
  region  = var.region

  # The module adds app and instance labels, and var.labels, itself.
  default_labels = {
    managed-by = "terraform"
  }
}
