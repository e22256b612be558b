# APIs the deployment needs. disable_on_destroy = false: destroying this stack
# must not switch off APIs other workloads in the project may use.

locals {
  apis = toset([
    "artifactregistry.googleapis.com", # the functions' image repository (artifacts.tf)
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com", # project IAM bindings, data.google_project
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",      # Pub/Sub and Firestore triggers
    "firebaserules.googleapis.com", # Firestore security rules (firestore_rules.tf)
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com", # gen2 functions are Cloud Run services
    "secretmanager.googleapis.com",
    "storage.googleapis.com", # source and report buckets
  ])

  # Key grants call Cloud KMS, and with user_project_override (terraform/
  # providers.tf) every API the provider calls must be enabled here.
  kms_apis = var.kms_key_name != "" || var.secrets_kms_key_name != "" ? toset(["cloudkms.googleapis.com"]) : toset([])
}

resource "google_project_service" "api" {
  for_each = setunion(local.apis, local.kms_apis)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
