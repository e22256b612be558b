# Customer-managed encryption keys (optional). kms_key_name, a key in
# var.region, encrypts the source and report buckets, the topics, the image
# repository and the functions; secrets_kms_key_name, a global key, the
# secrets. Each Google service encrypts with its own service agent, which
# needs the key before the resource using it is created: the grants below
# come first (depends_on in each resource).
#
# The Cloud Storage agent is looked up (the lookup creates it); the others
# appear when their API is first used, so docs/DEPLOY.md creates them with
# `gcloud beta services identity create` before phase 1.

data "google_storage_project_service_account" "gcs" {
  count = var.kms_key_name != "" ? 1 : 0

  project = var.project_id

  depends_on = [google_project_service.api]
}

locals {
  project_number = data.google_project.this.number

  # The service agents that use kms_key_name, by what they encrypt.
  regional_key_users = var.kms_key_name == "" ? {} : {
    buckets   = data.google_storage_project_service_account.gcs[0].member
    topics    = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    images    = "serviceAccount:service-${local.project_number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    functions = "serviceAccount:service-${local.project_number}@gcf-admin-robot.iam.gserviceaccount.com"
    revisions = "serviceAccount:service-${local.project_number}@serverless-robot-prod.iam.gserviceaccount.com"
  }
}

resource "google_kms_crypto_key_iam_member" "regional" {
  for_each = local.regional_key_users

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value

  depends_on = [google_project_service.api]
}

resource "google_kms_crypto_key_iam_member" "secrets" {
  count = var.secrets_kms_key_name != "" ? 1 : 0

  crypto_key_id = var.secrets_kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${local.project_number}@gcp-sa-secretmanager.iam.gserviceaccount.com"

  depends_on = [google_project_service.api]
}
