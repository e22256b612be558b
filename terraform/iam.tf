# Identities and access. Least privilege: one runtime service account per
# function with only what that function uses, secrets readable per secret,
# publishing per topic, invoking per function.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  function_project_roles = merge([
    for fn, f in local.functions : {
      for role in f.project_roles : "${fn} ${role}" => { function = fn, role = role }
    }
  ]...)

  # Every (function, secret) pair a function reads, enabled secrets only.
  function_secrets = merge([
    for fn, f in local.functions : {
      for s in f.secrets : "${fn} ${s}" => { function = fn, secret = s }
      if contains(keys(local.enabled_secrets), s)
    }
  ]...)

  function_topic_publishers = merge([
    for fn, f in local.functions : {
      for t in f.publishes_to : "${fn} ${t}" => { function = fn, topic = t }
    }
  ]...)

  public_functions = { for fn, f in local.functions : fn => f if f.access == "public" }
  event_functions  = { for fn, f in local.functions : fn => f if f.access == "event" }

  admin_invokers = {
    for pair in setproduct([for fn, f in local.functions : fn if f.access == "admin"], var.admin_invoker_members) :
    "${pair[0]} ${pair[1]}" => { function = pair[0], member = pair[1] }
  }
}

# --- Runtime identities ------------------------------------------------------

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = each.value.name
  display_name = "${each.key} function"
  description  = "Runtime identity of the ${each.key} Cloud Function (plaid-token-lifecycle)."

  depends_on = [google_project_service.api]
}

# roles/datastore.user for Firestore (every function reads or writes
# tokens, runs or snapshots); roles/logging.logWriter for structured logs.
resource "google_project_iam_member" "function" {
  for_each = local.function_project_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.function[each.value.function].member
}

resource "google_secret_manager_secret_iam_member" "function" {
  for_each = local.function_secrets

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}

# DailyCleanup publishes its continuation to its own topic, and to no other.
resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = local.function_topic_publishers

  topic  = google_pubsub_topic.scheduled[each.value.topic].id
  role   = "roles/pubsub.publisher"
  member = google_service_account.function[each.value.function].member
}

# --- Build identity ----------------------------------------------------------

# Cloud Build runs the Go buildpack as this account instead of the project's
# default compute or Cloud Build account, which new projects no longer grant
# enough (or which an organization policy may disable).
resource "google_service_account" "build" {
  account_id   = "plaid-functions-build"
  display_name = "plaid-token-lifecycle function builds"
  description  = "Cloud Build identity that builds the plaid-token-lifecycle functions."

  depends_on = [google_project_service.api]
}

resource "google_project_iam_member" "build" {
  project = var.project_id
  role    = "roles/run.builder"
  member  = google_service_account.build.member
}

# --- Event delivery ----------------------------------------------------------

# Eventarc pushes Pub/Sub messages to the event functions as this account.
resource "google_service_account" "event_trigger" {
  account_id   = "plaid-event-trigger"
  display_name = "plaid-token-lifecycle Eventarc triggers"
  description  = "Identity Eventarc uses to invoke DailyCleanup and WeeklyAnalytics."

  depends_on = [google_project_service.api]
}

resource "google_cloud_run_service_iam_member" "event_invoker" {
  for_each = local.event_functions

  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.event_trigger.member
}

# Pub/Sub signs its authenticated pushes with a token for the trigger account.
# Projects created after April 2021 grant this implicitly; older ones (the old
# service's project among them, probably) need it.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.event_trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  depends_on = [google_project_service.api]
}

# --- Invokers ----------------------------------------------------------------

# User-facing functions are public at the IAM layer: callers are end users
# with a JWT (checked by the function) or Plaid (signature checked).
resource "google_cloud_run_service_iam_member" "public_invoker" {
  for_each = local.public_functions

  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Admin functions: only the listed members reach them at all, and the
# function still requires an admin JWT. Callers send the Google identity
# token in X-Serverless-Authorization (Cloud Run checks it there and passes
# Authorization through untouched) and the app JWT in Authorization:
#   curl -X DELETE "$URL/api/v1/plaid/tokens/cleanup?days_threshold=90&dry_run=true" \
#     -H "X-Serverless-Authorization: Bearer $(gcloud auth print-identity-token)" \
#     -H "Authorization: Bearer $ADMIN_JWT"
resource "google_cloud_run_service_iam_member" "admin_invoker" {
  for_each = local.admin_invokers

  location = var.region
  service  = google_cloudfunctions2_function.function[each.value.function].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value.member
}
