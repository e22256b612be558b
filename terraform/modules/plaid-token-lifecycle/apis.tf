# APIs the deployment needs. disable_on_destroy = false: destroying this stack
# must not switch off APIs other workloads in the project may use.

locals {
  apis = toset([
    "artifactregistry.googleapis.com", # gen2 builds push images to gcf-artifacts
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
    "storage.googleapis.com", # source bucket
  ])
}

resource "google_project_service" "api" {
  for_each = local.apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
