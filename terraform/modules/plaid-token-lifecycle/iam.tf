# Identities and access. Least privilege (DESIGN §10): one runtime service
# account per function with only what that function uses; Firestore roles
# bound to the one database by an IAM condition; secrets readable per secret,
# publishing per topic, invoking per function.
#
# The accounts and their roles are created in phase 1 (docs/DEPLOY.md); the
# invoker bindings, which need the functions, and the trigger account's
# eventarc.eventReceiver role come with the functions in phase 2.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
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

  event_functions = { for fn, f in local.deployed_functions : fn => f if f.access == "event" }

  # allUsers may invoke the user-facing functions unless
  # user_invoker_members names principals, and PlaidWebhook while
  # plaid_webhook_public.
  users_public = join(",", var.user_invoker_members) == "allUsers"
  public_functions = {
    for fn, f in local.deployed_functions : fn => f
    if(f.access == "user" && local.users_public) || (f.access == "webhook" && var.plaid_webhook_public)
  }
  user_invokers = local.users_public ? {} : {
    for pair in setproduct([for fn, f in local.deployed_functions : fn if f.access == "user"], var.user_invoker_members) :
    "${pair[0]} ${pair[1]}" => { function = pair[0], member = pair[1] }
  }

  admin_invokers = {
    for pair in setproduct([for fn, f in local.deployed_functions : fn if f.access == "admin"], var.admin_invoker_members) :
    "${pair[0]} ${pair[1]}" => { function = pair[0], member = pair[1] }
  }

  # IAM condition naming the one database (the resource name Firestore
  # checks data access against).
  firestore_database_resource = "projects/${var.project_id}/databases/${local.firestore_database}"
}

# --- Runtime identities ------------------------------------------------------

resource "google_service_account" "function" {
  for_each = local.functions

  project      = var.project_id
  account_id   = each.value.name
  display_name = "${local.title_prefix}${each.key} function"
  description  = "Runtime identity of the ${each.key} Cloud Function (plaid-token-lifecycle${local.prefix == "" ? "" : ", ${trimsuffix(local.prefix, "-")}"})."

  depends_on = [google_project_service.api]
}

# Firestore on the service's database and no other: datastore.user to read
# and write (tokens, runs, locks, audit, counters), datastore.viewer for
# TokenAnalytics, which only reads. Nothing else at project level: gen2
# functions' stdout reaches Cloud Logging without a role.
resource "google_project_iam_member" "firestore" {
  for_each = local.functions

  project = var.project_id
  role    = each.value.firestore_role
  member  = google_service_account.function[each.key].member

  condition {
    title       = "${local.prefix}plaid-token-lifecycle database"
    description = "Only the Firestore database ${local.firestore_database} of plaid-token-lifecycle."
    expression  = "resource.name == \"${local.firestore_database_resource}\""
  }
}

resource "google_secret_manager_secret_iam_member" "function" {
  for_each = local.function_secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}

# TokenCleanup and DailyCleanup publish (continuations, hand-overs) to the
# daily topic, TokenAnalytics its repair requests to the weekly one; each to
# that topic only.
resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = local.function_topic_publishers

  project = var.project_id
  topic   = google_pubsub_topic.scheduled[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.function[each.value.function].member
}

# --- Build identity ----------------------------------------------------------

# Cloud Build runs the Go buildpack as this account instead of the project's
# default compute or Cloud Build account, which new projects no longer grant
# enough (or which an organization policy may disable).
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${local.prefix}${local.build_account_id}"
  display_name = "${local.title_prefix}plaid-token-lifecycle function builds"
  description  = "Cloud Build identity that builds the plaid-token-lifecycle functions."

  depends_on = [google_project_service.api]
}

# Also the mark of phase 1 (phases.tf).
resource "google_project_iam_member" "build" {
  project = var.project_id
  role    = "roles/run.builder"
  member  = google_service_account.build.member
}

# --- Event delivery ----------------------------------------------------------

# Eventarc pushes Pub/Sub messages and Firestore events to the event
# functions as this account.
resource "google_service_account" "event_trigger" {
  project      = var.project_id
  account_id   = "${local.prefix}${local.trigger_account_id}"
  display_name = "${local.title_prefix}plaid-token-lifecycle Eventarc triggers"
  description  = "Identity Eventarc uses to invoke DailyCleanup, WeeklyAnalytics and TokenStats."

  depends_on = [google_project_service.api]
}

# Triggers on Google sources other than a Pub/Sub topic (the Firestore one
# of TokenStats) need their account to be an event receiver. Project-wide:
# the role has no narrower resource. Also the mark of deployed functions
# (phases.tf).
resource "google_project_iam_member" "event_receiver" {
  count = var.deploy_functions ? 1 : 0

  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.event_trigger.member
}

resource "google_cloud_run_service_iam_member" "event_invoker" {
  for_each = local.event_functions

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.event_trigger.member
}

# Pub/Sub signs its authenticated pushes with a token for the trigger account.
# Projects created after April 2021 grant this implicitly; older ones (the old
# service's project among them, probably) need it. Granted in phase 2, with
# the triggers that use it: on a new project the Pub/Sub service agent
# appears some time after the API is enabled, and a grant to an account that
# does not exist yet fails the apply. docs/DEPLOY.md creates the agent
# (`gcloud beta services identity create`) before phase 1.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  count = var.deploy_functions ? 1 : 0

  service_account_id = google_service_account.event_trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent

  lifecycle {
    precondition {
      condition     = local.pubsub_agent_exists
      error_message = "The Pub/Sub service agent ${trimprefix(local.pubsub_agent, "serviceAccount:")} is not in ${var.project_id}'s IAM policy (role roles/pubsub.serviceAgent) yet: create it with `gcloud beta services identity create --service=pubsub.googleapis.com --project=${var.project_id}` and plan again (docs/DEPLOY.md, section 1)."
    }
  }

  depends_on = [google_project_service.api]
}

# --- Invokers ----------------------------------------------------------------

# Public at the IAM layer: the user-facing functions (unless
# user_invoker_members names principals), whose callers are end users with a
# JWT the function checks, and PlaidWebhook, whose caller is Plaid with a
# signature the function checks.
resource "google_cloud_run_service_iam_member" "public_invoker" {
  for_each = local.public_functions

  project  = var.project_id
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

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.function[each.value.function].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value.member
}

# Where the organization refuses allUsers: only the named principals (the
# app backend's service account) reach the user-facing functions. They send
# their Google identity token in X-Serverless-Authorization, which Cloud Run
# checks, and the user's JWT in Authorization, which the function checks.
resource "google_cloud_run_service_iam_member" "user_invoker" {
  for_each = local.user_invokers

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.function[each.value.function].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value.member
}
