provider "google" {
  project = var.project_id
  region  = var.region

  # Bill API quota to the project itself. With a person's gcloud credentials
  # (the first deployment, docs/DEPLOY.md) the Firebase Rules API refuses
  # calls that name no quota project, and the provider names one only with
  # user_project_override (X-Goog-User-Project: billing_project). It also
  # means every API the provider calls is enabled in the project (apis.tf
  # enables them) and the caller may use it (serviceusage.services.use:
  # Owner, roles/serviceusage.serviceUsageAdmin or ...Consumer).
  user_project_override = true
  billing_project       = var.project_id

  # The module adds app and instance labels, and var.labels, itself.
  default_labels = {
    managed-by = "terraform"
  }
}
