# The repository the functions' images are built into, instead of the
# project's shared gcf-artifacts: it can be encrypted with kms_key_name, and
# its cleanup policy keeps it from growing by an image per function and
# deploy forever.

resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = "${local.prefix}plaid-token-lifecycle"
  description   = "Images of the plaid-token-lifecycle functions, built by Cloud Build from the source zip."
  format        = "DOCKER"
  labels        = local.labels
  kms_key_name  = var.kms_key_name != "" ? var.kms_key_name : null

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "delete-after-30-days"
    action = "DELETE"

    condition {
      older_than = "2592000s"
    }
  }

  # KEEP wins over DELETE: the newest images of each function stay, so the
  # running revision and the ones a rollback would go back to keep theirs.
  cleanup_policies {
    id     = "keep-most-recent"
    action = "KEEP"

    most_recent_versions {
      keep_count = var.function_image_versions_kept
    }
  }

  depends_on = [google_project_service.api, google_kms_crypto_key_iam_member.regional]
}
