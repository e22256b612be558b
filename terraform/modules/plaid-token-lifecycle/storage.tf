# The source bucket and the zip every function is built from, and the
# private bucket of the weekly report.

locals {
  source_bucket_name = var.source_bucket_name != "" ? var.source_bucket_name : "${var.project_id}-${local.prefix}plaid-token-lifecycle-source"
  report_bucket_name = var.report_bucket_name != "" ? var.report_bucket_name : "${var.project_id}-${local.prefix}plaid-token-lifecycle-reports"

  # WeeklyAnalytics writes reports/weekly/<date>.html and rewrites
  # reports/weekly/latest.html, nothing else.
  report_prefix = "reports/weekly/"
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = local.source_bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # holds nothing but build inputs
  labels                      = local.labels

  dynamic "encryption" {
    for_each = var.kms_key_name != "" ? [var.kms_key_name] : []

    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.api, google_kms_crypto_key_iam_member.regional]
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

# The weekly reports: token counts, institutions and user activity, no
# token and no secret, but nothing the public should read either. A
# lifecycle rule, not a retention policy: a retention policy would forbid
# rewriting latest.html.
resource "google_storage_bucket" "reports" {
  project                     = var.project_id
  name                        = local.report_bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels

  lifecycle_rule {
    condition {
      age = var.report_retention_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name != "" ? [var.kms_key_name] : []

    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.api, google_kms_crypto_key_iam_member.regional]
}

# Writing a new object needs storage.objects.create; rewriting one that
# exists (latest.html) also storage.objects.delete. roles/storage.objectCreator
# cannot rewrite and roles/storage.objectUser can also read, list and
# update: this role is exactly the two, and the binding below holds only
# under reports/weekly/.
resource "google_project_iam_custom_role" "report_writer" {
  project     = var.project_id
  role_id     = "${local.metric_prefix}plaidTokenReportWriter"
  title       = "${local.title_prefix}Plaid token report writer"
  description = "Creates and rewrites the weekly report objects of plaid-token-lifecycle (WeeklyAnalytics)."
  permissions = ["storage.objects.create", "storage.objects.delete"]

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_iam_member" "report_writer" {
  bucket = google_storage_bucket.reports.name
  role   = google_project_iam_custom_role.report_writer.id
  member = google_service_account.function["WeeklyAnalytics"].member

  condition {
    title       = "${local.prefix}weekly reports only"
    description = "Objects under ${local.report_prefix} of the report bucket."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.report_bucket_name}/objects/${local.report_prefix}\")"
  }
}
