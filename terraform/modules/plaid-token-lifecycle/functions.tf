# The eight functions (DESIGN §3), all built from the one source zip; the
# entry point is the target name each registers in function.go.
#
# One map drives everything per function: the function itself, its service
# account and roles (iam.tf), its secrets, its trigger and who may invoke it.
#
#   trigger  "http"; "pubsub" (topic: a key of local.topics); or "firestore"
#            (every write to plaid_tokens in the one database).
#   access   "public": allUsers may invoke; the function authenticates the
#                      caller itself (user JWT, or Plaid's webhook signature).
#            "admin":  only var.admin_invoker_members may invoke, and the
#                      function still requires an admin JWT.
#            "event":  only the Eventarc trigger service account may invoke.
#   secrets  keys of local.secrets (secrets.tf) the function receives as
#            secret env vars; disabled secrets are skipped. They match
#            functions.TargetNeeds (plaid_secret iff Plaid, token_encryption_key
#            iff Vault, auth_jwt_secret iff Auth): scripts/tfcheck tests it.
#   firestore_role  granted on the one database only (iam.tf).
#   publishes_to    keys of local.topics the function publishes to.
#   timeout  event-driven functions stop at 540 s (hence RUN_TIME_BUDGET and
#            continuations); HTTP functions may run 3600 s.

locals {
  functions = {
    TokenCleanup = {
      name           = "${local.prefix}${local.function_base_names.TokenCleanup}"
      description    = "DELETE /api/v1/plaid/tokens/cleanup: system-wide token cleanup on demand (admin)."
      trigger        = "http"
      topic          = null
      access         = "admin"
      memory         = "512Mi"
      timeout        = local.http_timeout_seconds # a run reaching HTTP_RUN_TIME_BUDGET goes on through DailyCleanup
      max_instances  = 2                          # one cleanup at a time anyway (Firestore lease); a second gets 409
      secrets        = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"]
      firestore_role = "roles/datastore.user"
      publishes_to   = ["daily"] # hands long and async runs over to DailyCleanup
    }
    RevokeAllTokens = {
      name           = "${local.prefix}${local.function_base_names.RevokeAllTokens}"
      description    = "DELETE /api/v1/plaid/tokens/revoke-all: revokes the caller's own tokens (user JWT)."
      trigger        = "http"
      topic          = null
      access         = "public"
      memory         = "256Mi"
      timeout        = 300
      max_instances  = 20
      secrets        = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"]
      firestore_role = "roles/datastore.user"
      publishes_to   = []
    }
    TokenAnalytics = {
      name           = "${local.prefix}${local.function_base_names.TokenAnalytics}"
      description    = "GET /api/v1/plaid/tokens/analytics: token health report from the counters (admin)."
      trigger        = "http"
      topic          = null
      access         = "admin"
      memory         = "512Mi"
      timeout        = 600
      max_instances  = 2
      secrets        = ["auth_jwt_secret"]
      firestore_role = "roles/datastore.viewer" # reads; a ?exact=true repair runs in WeeklyAnalytics
      publishes_to   = ["weekly"]               # the ?exact=true repair request
    }
    RevokeItem = {
      name           = "${local.prefix}${local.function_base_names.RevokeItem}"
      description    = "DELETE /api/v1/plaid/items/{item_id}: revokes one of the caller's items (user JWT)."
      trigger        = "http"
      topic          = null
      access         = "public"
      memory         = "256Mi"
      timeout        = 60
      max_instances  = 20
      secrets        = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"]
      firestore_role = "roles/datastore.user"
      publishes_to   = []
    }
    PlaidWebhook = {
      name           = "${local.prefix}${local.function_base_names.PlaidWebhook}"
      description    = "POST /api/v1/plaid/webhook: Plaid ITEM webhooks, verified by Plaid's signature (no user JWT)."
      trigger        = "http"
      topic          = null
      access         = "public"
      memory         = "256Mi"
      timeout        = 60
      max_instances  = 20
      secrets        = ["plaid_secret"] # /webhook_verification_key/get; never decrypts tokens
      firestore_role = "roles/datastore.user"
      publishes_to   = []
    }
    DailyCleanup = {
      name           = "${local.prefix}${local.function_base_names.DailyCleanup}"
      description    = "Scheduled cleanup (topic ${local.topics.daily.name}, ${local.topics.daily.schedule}); continues itself through the same topic."
      trigger        = "pubsub"
      topic          = "daily"
      access         = "event"
      memory         = "512Mi"
      timeout        = local.event_timeout_seconds # RUN_TIME_BUDGET (8m) checkpoints before it
      max_instances  = 3                           # a continuation may arrive while the previous invocation is still returning
      secrets        = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous"]
      firestore_role = "roles/datastore.user"
      publishes_to   = ["daily"] # its own continuation message
    }
    WeeklyAnalytics = {
      name           = "${local.prefix}${local.function_base_names.WeeklyAnalytics}"
      description    = "Scheduled recount (topic ${local.topics.weekly.name}, ${local.topics.weekly.schedule}): repairs the analytics counters and records the drift."
      trigger        = "pubsub"
      topic          = "weekly"
      access         = "event"
      memory         = "512Mi"
      timeout        = local.event_timeout_seconds
      max_instances  = 1
      secrets        = []
      firestore_role = "roles/datastore.user" # writes the repaired counters and snapshots
      publishes_to   = []
    }
    TokenStats = {
      name           = "${local.prefix}${local.function_base_names.TokenStats}"
      description    = "Keeps the analytics counters from every write to plaid_tokens, by any writer (Eventarc Firestore trigger)."
      trigger        = "firestore"
      topic          = null
      access         = "event"
      memory         = "256Mi"
      timeout        = 60 # one transaction per event
      max_instances  = 20 # counters are sharded; a cleanup run writes in bursts
      secrets        = []
      firestore_role = "roles/datastore.user"
      publishes_to   = []
    }
  }

  deployed_functions = var.deploy_functions ? local.functions : {}

  firestore_database = var.create_firestore_database ? google_firestore_database.database[0].name : var.firestore_database
  firestore_location = var.create_firestore_database ? google_firestore_database.database[0].location_id : var.firestore_location

  # Which functions receive a variable.
  all_targets     = keys(local.functions)
  service_targets = [for fn in keys(local.functions) : fn if fn != "TokenStats"] # TokenStats needs only the database
  auth_targets    = [for fn, f in local.functions : fn if contains(f.secrets, "auth_jwt_secret")]

  # Every plain environment variable (DESIGN §8), one line each: its value
  # (null: left unset, so the code's default applies) and the functions that
  # receive it. Secrets come from local.secrets instead.
  env = {
    GOOGLE_CLOUD_PROJECT  = { value = var.project_id, to = local.all_targets }
    FIRESTORE_DATABASE    = { value = local.firestore_database, to = local.all_targets }
    PLAID_CLIENT_ID       = { value = var.plaid_client_id, to = local.service_targets }
    PLAID_ENV             = { value = var.plaid_env, to = local.service_targets }
    ADMIN_USER_IDS        = { value = join(",", var.admin_user_ids), to = local.service_targets }
    STALE_DAYS            = { value = tostring(var.stale_days), to = local.service_targets }
    PLAID_ITEM_GET_RPM    = { value = tostring(var.plaid_item_get_rpm), to = local.service_targets }
    PLAID_ITEM_REMOVE_RPM = { value = tostring(var.plaid_item_remove_rpm), to = local.service_targets }
    RUN_TIME_BUDGET       = { value = var.run_time_budget, to = local.service_targets }
    VALIDATION_INTERVAL   = { value = var.validation_interval, to = local.service_targets }
    LOG_LEVEL             = { value = upper(var.log_level), to = local.service_targets }
    TOKEN_ENCRYPTION_SALT = { value = var.token_encryption_salt != "" ? var.token_encryption_salt : null, to = local.service_targets }
    AUTH_JWKS_URL         = { value = var.auth_jwks_url != "" ? var.auth_jwks_url : null, to = local.auth_targets }
    AUTH_ISSUER           = { value = var.auth_issuer != "" ? var.auth_issuer : null, to = local.auth_targets }
    AUTH_AUDIENCE         = { value = var.auth_audience != "" ? var.auth_audience : null, to = local.auth_targets }
    HTTP_RUN_TIME_BUDGET  = { value = var.http_run_time_budget, to = ["TokenCleanup"] }
    CLEANUP_TOPIC         = { value = local.topics.daily.name, to = ["TokenCleanup", "DailyCleanup"] }
    ANALYTICS_TOPIC       = { value = local.topics.weekly.name, to = ["TokenAnalytics"] }
  }

  function_env = {
    for fn in keys(local.functions) : fn => {
      for name, e in local.env : name => e.value if e.value != null && contains(e.to, fn)
    }
  }
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.deployed_functions

  project     = var.project_id
  name        = each.value.name
  location    = var.region
  description = each.value.description
  labels      = local.labels

  build_config {
    runtime         = var.go_runtime
    entry_point     = each.key
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source[0].name
      }
    }
  }

  service_config {
    available_memory               = each.value.memory
    timeout_seconds                = each.value.timeout
    max_instance_count             = each.value.max_instances
    service_account_email          = google_service_account.function[each.key].email
    all_traffic_on_latest_revision = true
    # Event functions only take Eventarc's pushes; HTTP functions are reached
    # from the internet and authorize callers by IAM (admin) or by JWT /
    # Plaid signature (public).
    ingress_settings      = each.value.access == "event" ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL"
    environment_variables = local.function_env[each.key]

    dynamic "secret_environment_variables" {
      for_each = [for s in each.value.secrets : s if contains(keys(local.enabled_secrets), s)]

      content {
        key        = local.secrets[secret_environment_variables.value].env
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.trigger == "pubsub" ? [each.value.topic] : []

    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = google_pubsub_topic.scheduled[event_trigger.value].id
      retry_policy          = "RETRY_POLICY_RETRY" # handlers return an error only for faults worth a retry
      service_account_email = google_service_account.event_trigger.email
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.trigger == "firestore" ? [local.firestore_database] : []

    content {
      # A Firestore trigger lives where the database does (nam5, eur3, ...).
      trigger_region        = local.firestore_location
      event_type            = "google.cloud.firestore.document.v1.written"
      retry_policy          = "RETRY_POLICY_RETRY" # the event id makes a redelivery a no-op (DESIGN §12)
      service_account_email = google_service_account.event_trigger.email

      event_filters {
        attribute = "database"
        value     = event_trigger.value
      }

      event_filters {
        attribute = "document"
        value     = "plaid_tokens/{item_id}"
        operator  = "match-path-pattern"
      }
    }
  }

  # A function cannot deploy before its runtime identity can read its
  # secrets, nor build before the build service account has its role, nor
  # take Firestore events before its trigger account may receive them.
  depends_on = [
    google_project_service.api,
    google_project_iam_member.build,
    google_project_iam_member.firestore,
    google_project_iam_member.event_receiver,
    google_secret_manager_secret_iam_member.function,
    google_secret_manager_secret_version.value,
    google_service_account_iam_member.pubsub_token_creator,
    data.google_secret_manager_secret_version.required,
  ]
}
