# The functions (DESIGN §3), all built from the one source zip; the entry
# point is the target name each registers in function.go.
#
# One map drives everything per function: the function itself, its service
# account and roles (iam.tf), its secrets, its trigger and who may invoke it.
# A new function is one entry; a user-facing one is one line:
#
#   VerifyItem = merge(local.function_profiles.user, { base_name = "plaid-verify-item", secrets = [...], description = "..." })
#
#   base_name  name of the function and of its service account, before
#              name_prefix; at most 23 characters (service account ids are
#              at most 30 with a 7-character prefix).
#   trigger    "http"; "pubsub" (topic: a key of local.topics); or
#              "firestore" (every write to plaid_tokens in the one database).
#   access     "user":    end users of the app; var.user_invoker_members may
#                         invoke it (allUsers by default) and the function
#                         checks the user's JWT.
#              "webhook": Plaid; allUsers while var.plaid_webhook_public, and
#                         the function checks Plaid's signature.
#              "admin":   only var.admin_invoker_members may invoke, and the
#                         function still requires an admin JWT.
#              "event":   only the Eventarc trigger service account may invoke.
#   secrets    keys of local.secrets (secrets.tf) the function receives as
#              secret env vars; disabled secrets are skipped. They match
#              functions.TargetNeeds (plaid_secret iff Plaid,
#              token_encryption_key and its previous keys iff Vault,
#              auth_jwt_secret iff Auth, legacy_token_encryption_key iff
#              Legacy): scripts/tfcheck tests it, so each entry writes its
#              list as a literal.
#   firestore_role  granted on the one database only (iam.tf).
#   publishes_to    keys of local.topics the function publishes to.
#   timeout    event-driven functions stop at 540 s (hence RUN_TIME_BUDGET
#              and continuations); HTTP functions may run 3600 s.
#
# Nothing here may read a variable: name_prefix's validation reads the base
# names.

locals {
  function_profiles = {
    # The caller's own items, behind the user's JWT.
    user = {
      trigger        = "http"
      topic          = null
      access         = "user"
      memory         = "256Mi"
      timeout        = 60
      max_instances  = 20
      firestore_role = "roles/datastore.user"
      publishes_to   = []
    }
  }

  function_catalog = {
    TokenCleanup = {
      base_name      = "plaid-token-cleanup"
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
    RevokeAllTokens = merge(local.function_profiles.user, {
      base_name   = "plaid-revoke-all-tokens"
      description = "DELETE /api/v1/plaid/tokens/revoke-all: revokes the caller's own tokens (user JWT), migrating a legacy document of theirs first."
      timeout     = 300
      secrets     = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret", "legacy_token_encryption_key"]
    })
    TokenAnalytics = {
      base_name      = "plaid-token-analytics"
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
    RevokeItem          = merge(local.function_profiles.user, { base_name = "plaid-revoke-item", secrets = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"], description = "DELETE /api/v1/plaid/items/{item_id}: revokes one of the caller's items (user JWT)." })
    CreateLinkToken     = merge(local.function_profiles.user, { base_name = "plaid-link-token", secrets = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"], description = "POST /api/v1/plaid/link/token: a Link token for a new Item, or update mode for one of the caller's (user JWT)." })
    ExchangePublicToken = merge(local.function_profiles.user, { base_name = "plaid-exchange-token", secrets = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"], description = "POST /api/v1/plaid/items: Link's public_token becomes the caller's stored, encrypted token (user JWT)." })
    ListItems           = merge(local.function_profiles.user, { base_name = "plaid-list-items", secrets = ["auth_jwt_secret"], firestore_role = "roles/datastore.viewer", description = "GET /api/v1/plaid/items: the caller's own Items, never a token (user JWT)." })
    VerifyItem          = merge(local.function_profiles.user, { base_name = "plaid-verify-item", secrets = ["plaid_secret", "token_encryption_key", "token_encryption_key_previous", "auth_jwt_secret"], description = "POST /api/v1/plaid/items/{item_id}/verify: the caller's Item checked at Plaid now (user JWT)." })
    PlaidWebhook = {
      base_name      = "plaid-webhook"
      description    = "POST /api/v1/plaid/webhook: Plaid ITEM webhooks, verified by Plaid's signature (no user JWT)."
      trigger        = "http"
      topic          = null
      access         = "webhook"
      memory         = "256Mi"
      timeout        = 60
      max_instances  = 20
      secrets        = ["plaid_secret"] # /webhook_verification_key/get; never decrypts tokens
      firestore_role = "roles/datastore.user"
      publishes_to   = []
    }
    DailyCleanup = {
      base_name      = "plaid-daily-cleanup"
      description    = "Scheduled cleanup (daily topic, 0 2 * * * in time_zone); continues itself through the same topic."
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
      base_name      = "plaid-weekly-analytics"
      description    = "Scheduled recount (weekly topic, 0 1 * * 0 in time_zone): repairs the analytics counters, records the drift and renders the weekly report into the report bucket."
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
      base_name      = "plaid-token-stats"
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

  functions          = { for fn, f in local.function_catalog : fn => merge(f, { name = "${local.prefix}${f.base_name}" }) }
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
    REPORT_BUCKET         = { value = local.report_bucket_name, to = ["WeeklyAnalytics"] }
    PLAID_PRODUCTS        = { value = join(",", var.plaid_products), to = ["CreateLinkToken"] }
    PLAID_COUNTRY_CODES   = { value = join(",", var.plaid_country_codes), to = ["CreateLinkToken", "ExchangePublicToken"] }
    PLAID_CLIENT_NAME     = { value = var.plaid_client_name != "" ? var.plaid_client_name : null, to = ["CreateLinkToken"] }
    PLAID_LANGUAGE        = { value = var.plaid_language != "" ? var.plaid_language : null, to = ["CreateLinkToken"] }
    PLAID_REDIRECT_URI    = { value = var.plaid_redirect_uri != "" ? var.plaid_redirect_uri : null, to = ["CreateLinkToken"] }
    # PlaidWebhook's cloudfunctions.net URL: known before the function
    # exists, and no reference from one function of the map to another.
    PLAID_WEBHOOK_URL = { value = "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.functions.PlaidWebhook.name}", to = ["CreateLinkToken"] }
  }

  function_env = {
    for fn in keys(local.functions) : fn => {
      for name, e in local.env : name => e.value if e.value != null && contains(e.to, fn)
    }
  }

  # The secrets each function is given: enabled, and with a version to pin
  # (secrets.tf).
  function_secret_env = {
    for fn, f in local.functions : fn => {
      for s in f.secrets : local.secrets[s].env => {
        secret  = local.secrets[s].secret_id
        version = local.secret_versions[s]
      } if contains(keys(local.secret_versions), s)
    }
  }

  vpc_egress = var.vpc_egress.network != ""
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.deployed_functions

  project      = var.project_id
  name         = each.value.name
  location     = var.region
  description  = each.value.description
  labels       = local.labels
  kms_key_name = var.kms_key_name != "" ? var.kms_key_name : null

  build_config {
    runtime           = var.go_runtime
    entry_point       = each.key
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source[0].name
      }
    }

    # The runtime's base image takes security patches without a redeploy;
    # a new Go release is a go_runtime change (docs/DEPLOY.md).
    automatic_update_policy {}
  }

  service_config {
    available_memory               = each.value.memory
    timeout_seconds                = each.value.timeout
    max_instance_count             = each.value.max_instances
    service_account_email          = google_service_account.function[each.key].email
    all_traffic_on_latest_revision = true
    # Event functions only take Eventarc's pushes; HTTP functions are reached
    # from the internet and authorize callers by IAM (admin, and user where
    # user_invoker_members names principals) and by JWT or Plaid signature.
    ingress_settings      = each.value.access == "event" ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL"
    environment_variables = local.function_env[each.key]

    direct_vpc_egress = local.vpc_egress ? (var.vpc_egress.all_traffic ? "VPC_EGRESS_ALL_TRAFFIC" : "VPC_EGRESS_PRIVATE_RANGES_ONLY") : null

    dynamic "direct_vpc_network_interface" {
      for_each = local.vpc_egress ? [var.vpc_egress] : []

      content {
        network    = direct_vpc_network_interface.value.network
        subnetwork = direct_vpc_network_interface.value.subnetwork != "" ? direct_vpc_network_interface.value.subnetwork : null
      }
    }

    # Pinned to the version the plan read (secrets.tf): a new version shows
    # in the plan and rolls a new revision in place, with no downtime.
    dynamic "secret_environment_variables" {
      for_each = local.function_secret_env[each.key]

      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
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

  lifecycle {
    # A function refuses to start without the secrets it needs: every one
    # must have a version before the function is deployed (phases.tf).
    precondition {
      condition     = length([for s in each.value.secrets : s if local.secrets[s].required && !contains(keys(local.secret_versions), s)]) == 0
      error_message = "${each.key} cannot start without ${join(", ", [for s in each.value.secrets : local.secrets[s].env if local.secrets[s].required && !contains(keys(local.secret_versions), s)])}: add a version to ${join(", ", [for s in each.value.secrets : local.secrets[s].secret_id if local.secrets[s].required && !contains(keys(local.secret_versions), s)])} (docs/DEPLOY.md, section 4), then plan again."
    }
  }

  # A function cannot deploy before its runtime identity can read its
  # secrets, nor build before the build service account has its role, nor
  # take Firestore events before its trigger account may receive them, nor
  # use a customer-managed key before the service agents may.
  depends_on = [
    google_project_service.api,
    google_project_iam_member.build,
    google_project_iam_member.firestore,
    google_project_iam_member.event_receiver,
    google_secret_manager_secret_iam_member.function,
    google_secret_manager_secret_version.value,
    google_service_account_iam_member.pubsub_token_creator,
    google_storage_bucket_iam_member.report_writer,
    google_kms_crypto_key_iam_member.regional,
  ]
}
