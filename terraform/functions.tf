# The seven functions (DESIGN §3), all built from the one source zip; the
# entry point is the target name each registers in function.go.
#
# One map drives everything per function: the function itself, its service
# account and roles (iam.tf), its secrets, its trigger and who may invoke it.
#
#   access  "public": allUsers may invoke; the function authenticates the
#                     caller itself (user JWT, or Plaid's webhook signature).
#           "admin":  only var.admin_invoker_members may invoke, and the
#                     function still requires an admin JWT.
#           "event":  only the Eventarc trigger service account may invoke.
#   secrets keys of local.secrets (secrets.tf) the function receives as
#           secret env vars; disabled secrets are skipped. A function whose
#           list names auth_jwt_secret authenticates users, so it also gets
#           the AUTH_JWKS_URL / AUTH_ISSUER / AUTH_AUDIENCE variables.
#   timeout event-driven functions stop at 540 s (hence RUN_TIME_BUDGET and
#           continuations); HTTP functions may run 3600 s.

locals {
  # Functions that call Plaid get PLAID_SECRET; functions that decrypt
  # access tokens get the encryption key (and previous keys while rotating);
  # functions behind a user or admin JWT get AUTH_JWT_SECRET.
  functions = {
    TokenCleanup = {
      name          = "plaid-token-cleanup"
      description   = "DELETE /api/v1/plaid/tokens/cleanup: system-wide token cleanup on demand (admin)."
      trigger       = "http"
      topic         = null
      access        = "admin"
      memory        = "512Mi"
      timeout       = 3600 # synchronous cleanup of the whole collection at Plaid's rate limits
      max_instances = 2    # one cleanup at a time anyway (Firestore lease); a second gets 409
      secrets       = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"]
      project_roles = ["roles/datastore.user", "roles/logging.logWriter"]
      publishes_to  = []
      env           = {}
    }
    RevokeAllTokens = {
      name          = "plaid-revoke-all-tokens"
      description   = "DELETE /api/v1/plaid/tokens/revoke-all: revokes the caller's own tokens (user JWT)."
      trigger       = "http"
      topic         = null
      access        = "public"
      memory        = "256Mi"
      timeout       = 300
      max_instances = 20
      secrets       = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"]
      project_roles = ["roles/datastore.user", "roles/logging.logWriter"]
      publishes_to  = []
      env           = {}
    }
    TokenAnalytics = {
      name          = "plaid-token-analytics"
      description   = "GET /api/v1/plaid/tokens/analytics: token health report (admin)."
      trigger       = "http"
      topic         = null
      access        = "admin"
      memory        = "512Mi"
      timeout       = 600
      max_instances = 2
      secrets       = ["auth_jwt_secret"]
      project_roles = ["roles/datastore.user", "roles/logging.logWriter"]
      publishes_to  = []
      env           = {}
    }
    RevokeItem = {
      name          = "plaid-revoke-item"
      description   = "DELETE /api/v1/plaid/items/{item_id}: revokes one of the caller's items (user JWT)."
      trigger       = "http"
      topic         = null
      access        = "public"
      memory        = "256Mi"
      timeout       = 60
      max_instances = 20
      secrets       = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"]
      project_roles = ["roles/datastore.user", "roles/logging.logWriter"]
      publishes_to  = []
      env           = {}
    }
    PlaidWebhook = {
      name          = "plaid-webhook"
      description   = "POST /api/v1/plaid/webhook: Plaid ITEM webhooks, verified by Plaid's signature (no user JWT)."
      trigger       = "http"
      topic         = null
      access        = "public"
      memory        = "256Mi"
      timeout       = 60
      max_instances = 20
      secrets       = ["plaid_secret"] # /webhook_verification_key/get; never decrypts tokens
      project_roles = ["roles/datastore.user", "roles/logging.logWriter"]
      publishes_to  = []
      env           = {}
    }
    DailyCleanup = {
      name          = "plaid-daily-cleanup"
      description   = "Scheduled cleanup (topic plaid-token-daily-cleanup, 0 2 * * *); continues itself through the same topic."
      trigger       = "event"
      topic         = "daily"
      access        = "event"
      memory        = "512Mi"
      timeout       = 540 # the event-driven maximum; RUN_TIME_BUDGET (8m) checkpoints before it
      max_instances = 3   # a continuation may arrive while the previous invocation is still returning
      secrets       = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous"]
      project_roles = ["roles/datastore.user", "roles/logging.logWriter"]
      publishes_to  = ["daily"] # its own continuation message
      env           = { CLEANUP_TOPIC = local.topics.daily.name }
    }
    WeeklyAnalytics = {
      name          = "plaid-weekly-analytics"
      description   = "Scheduled analytics snapshot (topic plaid-token-weekly-analytics, 0 1 * * 0)."
      trigger       = "event"
      topic         = "weekly"
      access        = "event"
      memory        = "512Mi"
      timeout       = 540
      max_instances = 1
      secrets       = []
      project_roles = ["roles/datastore.user", "roles/logging.logWriter"]
      publishes_to  = []
      env           = {}
    }
  }

  firestore_database = var.create_firestore_database ? google_firestore_database.database[0].name : var.firestore_database

  # DESIGN §8 configuration every function receives. Optional values are
  # left unset rather than set empty, so the code's defaults apply.
  common_env = merge(
    {
      GOOGLE_CLOUD_PROJECT  = var.project_id
      FIRESTORE_DATABASE    = local.firestore_database
      PLAID_CLIENT_ID       = var.plaid_client_id
      PLAID_ENV             = var.plaid_env
      ADMIN_USER_IDS        = join(",", var.admin_user_ids)
      STALE_DAYS            = tostring(var.stale_days)
      PLAID_ITEM_GET_RPM    = tostring(var.plaid_item_get_rpm)
      PLAID_ITEM_REMOVE_RPM = tostring(var.plaid_item_remove_rpm)
      RUN_TIME_BUDGET       = var.run_time_budget
      LOG_LEVEL             = upper(var.log_level)
    },
    { for k, v in { TOKEN_ENCRYPTION_SALT = var.token_encryption_salt } : k => v if v != "" },
  )

  # Only for functions that authenticate users.
  auth_env = { for k, v in {
    AUTH_JWKS_URL = var.auth_jwks_url
    AUTH_ISSUER   = var.auth_issuer
    AUTH_AUDIENCE = var.auth_audience
  } : k => v if v != "" }
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.functions

  name        = each.value.name
  location    = var.region
  description = each.value.description

  build_config {
    runtime         = var.go_runtime
    entry_point     = each.key
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
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
    ingress_settings = each.value.trigger == "event" ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL"

    environment_variables = merge(
      local.common_env,
      each.value.env,
      { for k, v in local.auth_env : k => v if contains(each.value.secrets, "auth_jwt_secret") },
    )

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
    for_each = each.value.trigger == "event" ? [each.value.topic] : []

    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = google_pubsub_topic.scheduled[event_trigger.value].id
      retry_policy          = "RETRY_POLICY_RETRY" # handlers return an error only for faults worth a retry
      service_account_email = google_service_account.event_trigger.email
    }
  }

  # A function cannot deploy before its runtime identity can read its
  # secrets, nor build before the build service account has its role.
  depends_on = [
    google_project_service.api,
    google_project_iam_member.build,
    google_project_iam_member.function,
    google_secret_manager_secret_iam_member.function,
    google_secret_manager_secret_version.value,
    google_service_account_iam_member.pubsub_token_creator,
  ]
}
