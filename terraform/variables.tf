# The module's inputs (modules/plaid-token-lifecycle/variables.tf), the same
# names, types and descriptions; its defaults and validations apply, since a
# null here means "the module's default" (its variables are nullable = false).
# scripts/tfcheck tests that this file and main.tf follow the module.

variable "project_id" {
  type        = string
  description = "Google Cloud project id everything is created in. Also passed to the functions as GOOGLE_CLOUD_PROJECT."
}

variable "region" {
  type        = string
  description = "Region of the functions, the Pub/Sub Eventarc triggers, the Cloud Scheduler jobs and the source bucket."
  default     = null
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every name that must be unique in the project (functions, service accounts, secrets, bucket, topics, scheduler jobs, log metrics; alert and dashboard titles carry it too), so that two instances, e.g. staging and production, share a project. Empty keeps the names of DESIGN §3. Lowercase, ending in a hyphen, e.g. \"stg-\". The two instances also need their own Firestore database (firestore_database): the collection names are fixed."
  default     = null
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels (functions, secrets, bucket, topics, alert policies, notification channel), beside app = plaid-token-lifecycle and instance = the name prefix."
  default     = null
}

variable "deploy_functions" {
  type        = bool
  description = "false only for phase 1 of the first deployment on a new project: APIs, service accounts and their roles, secrets (without versions), bucket, topics, Firestore indexes and rules, metrics and alerts, but no functions, scheduler jobs or invoker bindings. Add the secret versions, then apply with true (phase 2), which checks at plan time that phase 1 was applied and that every enabled secret has a version. false on a deployment that has functions is refused: it would delete them."
  default     = null
}

variable "source_zip_path" {
  type        = string
  description = "Path of the source zip made by scripts/package-source.sh. The bucket object is named by the zip's SHA-256, so a changed zip redeploys every function and an unchanged one deploys nothing. Not needed while deploy_functions is false."
  default     = null
}

variable "source_bucket_name" {
  type        = string
  description = "Name of the bucket holding the source zip. Empty: \"<project_id>-<name_prefix>plaid-token-lifecycle-source\"."
  default     = null
}

variable "go_runtime" {
  type        = string
  description = "Cloud Functions Go runtime id (the module is built by Google's Go buildpack). go.mod needs Go 1.26: the Cloud client libraries require it."
  default     = null
}

variable "firestore_database" {
  type        = string
  description = "Firestore database id the service uses (FIRESTORE_DATABASE). The old service used a named database; \"(default)\" is the project's default one. Each instance (name_prefix) needs its own."
  default     = null
}

variable "create_firestore_database" {
  type        = bool
  description = "Create the Firestore database. Leave false when it already exists (the old service's data lives there); the composite indexes, TTL policies and security rules are created either way."
  default     = null
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database (e.g. nam5, eur3, us-central1): where it is created when create_firestore_database is true, and the region of TokenStats' Eventarc Firestore trigger, which must be the database's own location (gcloud firestore databases describe --database=<id> --format='value(locationId)')."
  default     = null
}

variable "manage_firestore_rules" {
  type        = bool
  description = "Release the Firestore security rules of firestore.rules.tftpl for the database (one ruleset per database): client SDKs get nothing of this service's collections, and only what firestore_app_rules grants elsewhere. false when the app team releases the database's rules itself; its rules must then keep this service's collections closed (docs/DEPLOY.md)."
  default     = null
}

variable "firestore_app_rules" {
  type        = string
  description = "Firestore rules of the app's own collections, inserted inside `match /databases/{database}/documents { ... }` beside this service's. Empty: client SDKs get nothing in the database. Rules OR together, so a wildcard match here must exclude this service's collections with the isPlaidTokenCollection(name) function the ruleset defines (docs/DEPLOY.md)."
  default     = null
}

variable "plaid_client_id" {
  type        = string
  description = "Plaid client id (PLAID_CLIENT_ID). Not a secret; the Plaid secret is."
}

variable "plaid_env" {
  type        = string
  description = "Plaid environment (PLAID_ENV): sandbox or production."
  default     = null
}

variable "admin_user_ids" {
  type        = list(string)
  description = "User ids (JWT sub) allowed to run system-wide operations (ADMIN_USER_IDS)."
  default     = null
}

variable "stale_days" {
  type        = number
  description = "Days without use after which an active token is stale and removed (STALE_DAYS); also the days_threshold the daily Cloud Scheduler job sends."
  default     = null
}

variable "plaid_item_get_rpm" {
  type        = number
  description = "Most /item/get calls a minute (PLAID_ITEM_GET_RPM). Plaid's production limit is 5000 per client."
  default     = null
}

variable "plaid_item_remove_rpm" {
  type        = number
  description = "Most /item/remove calls a minute (PLAID_ITEM_REMOVE_RPM). Plaid's production limit is 2000 per client."
  default     = null
}

variable "run_time_budget" {
  type        = string
  description = "Go duration after which a scheduled cleanup checkpoints and continues in a new invocation (RUN_TIME_BUDGET). Must stay below the 540 s limit of event-driven functions."
  default     = null
}

variable "http_run_time_budget" {
  type        = string
  description = "Go duration after which a synchronous TokenCleanup run answers 202 and hands the rest of the run to DailyCleanup through the cleanup topic (HTTP_RUN_TIME_BUDGET). Must stay below TokenCleanup's 3600 s timeout."
  default     = null
}

variable "validation_interval" {
  type        = string
  description = "Go duration (VALIDATION_INTERVAL): an active token validated at Plaid within it is not validated again by cleanup (DESIGN §12). The default keeps the old service's daily validation; large fleets raise it."
  default     = null
}

variable "log_level" {
  type        = string
  description = "Log level (LOG_LEVEL): DEBUG, INFO, WARN or ERROR."
  default     = null
}

variable "token_encryption_salt" {
  type        = string
  description = "TOKEN_ENCRYPTION_SALT. Empty: not set, the code's default (plaid-token-lifecycle/v1) applies. Changing it makes every stored token undecryptable."
  default     = null
}

variable "auth_jwks_url" {
  type        = string
  description = "AUTH_JWKS_URL for RS256/ES256 user JWTs (e.g. Firebase Auth). Empty: not set. When set, auth_issuer and auth_audience are needed too, and it must be https."
  default     = null
}

variable "auth_issuer" {
  type        = string
  description = "AUTH_ISSUER: the iss claim user JWTs must carry when auth_jwks_url is set. Empty: not set."
  default     = null
}

variable "auth_audience" {
  type        = string
  description = "AUTH_AUDIENCE: the aud claim user JWTs must carry when auth_jwks_url is set. Empty: not set."
  default     = null
}

variable "enable_auth_jwt_secret" {
  type        = bool
  description = "Create the AUTH_JWT_SECRET secret (HS256 user JWTs, as the old service issued) and give it to the user and admin HTTP functions. false when only auth_jwks_url is used."
  default     = null
}

variable "manage_secret_values" {
  type        = bool
  description = "false (the default, recommended): Terraform creates the secrets without versions and an operator adds them with gcloud between phase 1 and phase 2 (docs/DEPLOY.md), so no secret passes through Terraform, its plan files or its state. true: the versions come from the sensitive variables below and are stored in the state (encrypted at rest in the GCS backend, but readable by anyone who can read the state); a first deployment then needs no phases."
  default     = null
}

variable "enable_previous_encryption_keys" {
  type        = bool
  description = "Create the TOKEN_ENCRYPTION_KEY_PREVIOUS secret (comma-separated older keys that still decrypt) during a key rotation, and give it to the functions that decrypt tokens."
  default     = null
}

variable "plaid_secret" {
  type        = string
  description = "Plaid API secret (PLAID_SECRET). Used only when manage_secret_values is true."
  default     = null
  sensitive   = true
}

variable "token_encryption_key" {
  type        = string
  description = "Password the token encryption key is derived from (TOKEN_ENCRYPTION_KEY), at least 32 bytes. Used only when manage_secret_values is true."
  default     = null
  sensitive   = true
}

variable "token_encryption_key_previous" {
  type        = string
  description = "Comma-separated previous encryption passwords (TOKEN_ENCRYPTION_KEY_PREVIOUS). Used only when manage_secret_values and enable_previous_encryption_keys are true."
  default     = null
  sensitive   = true
}

variable "auth_jwt_secret" {
  type        = string
  description = "HS256 secret for user JWTs (AUTH_JWT_SECRET), at least 32 bytes. Used only when manage_secret_values and enable_auth_jwt_secret are true."
  default     = null
  sensitive   = true
}

variable "admin_invoker_members" {
  type        = list(string)
  description = "IAM members allowed to call the admin functions (TokenCleanup, TokenAnalytics) at all, e.g. [\"group:plaid-ops@example.com\"]. The caller must still present an admin JWT; these functions are never public."
  default     = null
}

variable "time_zone" {
  type        = string
  description = "IANA time zone of the Cloud Scheduler jobs (the old service ran in the host's local time; this is explicit), e.g. Etc/UTC or America/New_York. Checked against time_zones.txt, generated from Go's tz database."
  default     = null
}

variable "notification_channels" {
  type        = list(string)
  description = "Existing Cloud Monitoring notification channel ids (projects/<p>/notificationChannels/<id>) the alert policies notify."
  default     = null
}

variable "alert_email" {
  type        = string
  description = "Email address to create a notification channel for, in addition to notification_channels. Empty: none."
  default     = null
}

variable "invalid_token_rate_threshold" {
  type        = number
  description = "Alert when invalid_marked / total_checked over the last day exceeds this fraction: a sudden wave of invalid tokens usually means a Plaid-side or configuration change, not users."
  default     = null
}

variable "invalid_token_rate_min_checked" {
  type        = number
  description = "The invalid-token rate alert only fires when at least this many tokens were checked in the day, so a handful of tokens cannot page anyone."
  default     = null
}
