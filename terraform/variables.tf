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
  description = "Region of the functions, the Pub/Sub Eventarc triggers, the Cloud Scheduler jobs, the source and report buckets and the image repository."
  default     = null
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every name that must be unique in the project (functions, service accounts, secrets, bucket, topics, scheduler jobs, log metrics; alert and dashboard titles carry it too), so that two instances, e.g. staging and production, share a project. Empty keeps the names of DESIGN §3. Lowercase, ending in a hyphen, e.g. \"stg-\". The two instances also need their own Firestore database (firestore_database): the collection names are fixed."
  default     = null
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels (functions, secrets, buckets, image repository, topics, alert policies, notification channel), beside app = plaid-token-lifecycle and instance = the name prefix."
  default     = null
}

variable "deploy_functions" {
  type        = bool
  description = "false only for phase 1 of the first deployment on a new project: APIs, service accounts and their roles, secrets (without versions unless manage_secret_values), buckets, image repository, topics, Firestore fields and rules, log-based metrics and the dashboard, but no functions, scheduler jobs, alert policies or invoker bindings. Add the secret versions, then apply with true (phase 2) at least ten minutes later, once Cloud Monitoring knows the new metrics. Phase 2 checks at plan time that phase 1 was applied, how long ago, and that the secrets the functions need have a version. false on a deployment that has functions is refused: it would delete them."
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
  description = "Cloud Functions Go runtime id (the module is built by Google's Go buildpack). It follows go.mod's go line (go 1.26: go126; scripts/tfcheck checks the default against it). Google deprecates go126 in 2027 (its runtime schedule): raise go.mod, the tests and this together, and every function rolls a new revision (docs/DEPLOY.md, \"Runtime upgrades\"). Security patches of the runtime's base image are applied automatically in between."
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
  description = "Plaid environment (PLAID_ENV): sandbox or production. No default: a deployment names the environment its tokens belong to, and cleanup never touches another environment's tokens (DESIGN §7 rule 0)."
}

variable "plaid_products" {
  type        = list(string)
  description = "Plaid products the app's Link tokens ask for (PLAID_PRODUCTS), e.g. [\"transactions\"]. Given to CreateLinkToken."
  default     = null
}

variable "plaid_country_codes" {
  type        = list(string)
  description = "Countries of the institutions Link offers (PLAID_COUNTRY_CODES), e.g. [\"US\", \"CA\"]. Given to CreateLinkToken and ExchangePublicToken (institution lookups)."
  default     = null
}

variable "plaid_client_name" {
  type        = string
  description = "The app's name as Link shows it (PLAID_CLIENT_NAME), at most 30 characters. Empty: the code's default."
  default     = null
}

variable "plaid_language" {
  type        = string
  description = "Link's language (PLAID_LANGUAGE), e.g. en. Empty: the code's default."
  default     = null
}

variable "plaid_redirect_uri" {
  type        = string
  description = "The app's OAuth redirect URI registered with Plaid (PLAID_REDIRECT_URI), https in production. Empty: no OAuth redirect."
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
  description = "Create the AUTH_JWT_SECRET secret (HS256 user JWTs, as the old service issued) and give it to the user and admin HTTP functions. false when only auth_jwks_url is used. Turned on beside auth_jwks_url, the functions get it on the apply after its version is added; without auth_jwks_url they cannot start without it, and the plan refuses to deploy before it has a version."
  default     = null
}

variable "manage_secret_values" {
  type        = bool
  description = "false (the default, recommended): Terraform creates the secrets without versions and an operator adds them with gcloud between phase 1 and phase 2 (docs/DEPLOY.md), so no secret passes through Terraform, its plan files or its state. true: the versions come from the sensitive variables below and are stored in the state (encrypted at rest in the GCS backend, but readable by anyone who can read the state, pull-request builds included); a first deployment still takes the two phases."
  default     = null
}

variable "enable_previous_encryption_keys" {
  type        = bool
  description = "Create the TOKEN_ENCRYPTION_KEY_PREVIOUS secret (comma-separated older keys that still decrypt) during a key rotation, and give it to the functions that decrypt tokens once it has a version (the apply after `gcloud secrets versions add`; docs/DEPLOY.md, \"Rotate the encryption key\")."
  default     = null
}

variable "enable_legacy_token_key" {
  type        = bool
  description = "Create the LEGACY_TOKEN_ENCRYPTION_KEY secret (the old service's Fernet password) and give it to RevokeAllTokens only, which migrates a caller's legacy document before revoking it. true while the old service's documents remain; false once `manage-tokens migrate-legacy` reports nothing left to migrate (docs/DEPLOY.md)."
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

variable "legacy_token_encryption_key" {
  type        = string
  description = "The old service's Fernet password (LEGACY_TOKEN_ENCRYPTION_KEY). Used only when manage_secret_values and enable_legacy_token_key are true."
  default     = null
  sensitive   = true
}

variable "admin_invoker_members" {
  type        = list(string)
  description = "IAM members allowed to call the admin functions (TokenCleanup, TokenAnalytics) at all, e.g. [\"group:plaid-ops@example.com\"]. The caller must still present an admin JWT; these functions are never public."
  default     = null
}

variable "user_invoker_members" {
  type        = list(string)
  description = "Who may invoke the user-facing functions (RevokeAllTokens, RevokeItem, CreateLinkToken, ExchangePublicToken, ListItems, VerifyItem) at the IAM layer. [\"allUsers\"] (the default): anyone, and the function checks the user's JWT. Where the organization refuses allUsers (domain-restricted sharing, iam.allowedPolicyMemberDomains), the named principals that call them instead, e.g. [\"serviceAccount:app-backend@my-project.iam.gserviceaccount.com\"]: they send their Google identity token in X-Serverless-Authorization and the user's JWT in Authorization, which still decides (docs/DEPLOY.md)."
  default     = null
}

variable "plaid_webhook_public" {
  type        = bool
  description = "Let allUsers invoke PlaidWebhook: Plaid cannot present a Google identity, and the function verifies Plaid's signature on every request. false where the organization refuses allUsers: then turn Cloud Run's invoker check off for that one service instead (docs/DEPLOY.md), or Plaid's webhooks never arrive."
  default     = null
}

variable "time_zone" {
  type        = string
  description = "IANA time zone of the Cloud Scheduler jobs (the old service ran in the host's local time; this is explicit), e.g. Etc/UTC or America/New_York. Checked against time_zones.txt, generated from Go's tz database."
  default     = null
}

variable "scheduler_paused" {
  type        = bool
  description = "Pause (true) or resume (false) the Cloud Scheduler jobs; null leaves them as they are, a pause made with gcloud included. true deploys the functions beside an old service whose own scheduler still runs a cleanup (never two cleanups, docs/MIGRATING.md); false then starts the schedule."
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

variable "report_bucket_name" {
  type        = string
  description = "Name of the private bucket WeeklyAnalytics renders the weekly HTML report into (REPORT_BUCKET: reports/weekly/<date>.html and reports/weekly/latest.html). Empty: \"<project_id>-<name_prefix>plaid-token-lifecycle-reports\"."
  default     = null
}

variable "report_retention_days" {
  type        = number
  description = "Days a weekly report is kept in the report bucket before it is deleted (a lifecycle rule). reports/weekly/latest.html is rewritten every week, so it never ages out."
  default     = null
}

variable "kms_key_name" {
  type        = string
  description = "Customer-managed Cloud KMS key (projects/<p>/locations/<region>/keyRings/<r>/cryptoKeys/<k>, in var.region) for the source and report buckets, the topics, the functions' image repository and the functions. Empty: Google-managed encryption. The module grants the key to the service agents that use it; create the agents first (docs/DEPLOY.md, \"Customer-managed encryption keys\")."
  default     = null
}

variable "secrets_kms_key_name" {
  type        = string
  description = "Customer-managed Cloud KMS key for the Secret Manager secrets (automatically replicated, so a key in location global: projects/<p>/locations/global/keyRings/<r>/cryptoKeys/<k>). Empty: Google-managed encryption."
  default     = null
}

variable "vpc_egress" {
  type = object({
    network     = optional(string, "")
    subnetwork  = optional(string, "")
    all_traffic = optional(bool, false)
  })
  description = "Direct VPC egress for every function, for organizations whose policies require it. network (and optionally subnetwork) of this project; all_traffic = true sends every request, Plaid's included, through the VPC (which then needs Cloud NAT to reach Plaid), false only private ranges. Empty network: no VPC."
  default     = null
}

variable "function_image_versions_kept" {
  type        = number
  description = "The functions' images live in a repository of their own (with kms_key_name, encrypted by it). Its cleanup policy deletes images older than 30 days but keeps this many most recent ones per function, so a rollback to a recent revision still finds its image."
  default     = null
}
