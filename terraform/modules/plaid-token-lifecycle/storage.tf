# The source bucket and the zip every function is built from.

locals {
  source_bucket_name = var.source_bucket_name != "" ? var.source_bucket_name : "${var.project_id}-${local.prefix}plaid-token-lifecycle-source"
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = local.source_bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # holds nothing but build inputs
  labels                      = local.labels

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_object" "source" {
  count = var.deploy_functions ? 1 : 0

  # Named by content: a new zip is a new object, which changes every
  # function's build source and so redeploys them; the old object is deleted
  # once the functions point at the new one.
  name   = "plaid-token-lifecycle-${filesha256(var.source_zip_path)}.zip"
  bucket = google_storage_bucket.source.name
  source = var.source_zip_path

  lifecycle {
    create_before_destroy = true
  }
}
