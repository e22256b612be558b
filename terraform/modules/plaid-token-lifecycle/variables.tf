# Inputs. Every variable is typed and described; terraform/terraform.tfvars.example
# shows a complete set. Settings the functions would refuse at start (DESIGN
# §8) fail here, at plan time, instead of as 503s after the deploy.
#
# Variables with a default are nullable = false: a caller that passes null
# (the root configuration does for everything left unset) gets the default.

# --- Project, placement and naming --------------------------------------------

variable "project_id" {
  type        = string
  description = "Google Cloud project id everything is created in. Also passed to the functions as GOOGLE_CLOUD_PROJECT."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6 to 30 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the Pub/Sub Eventarc triggers, the Cloud Scheduler jobs, the source and report buckets and the image repository."
  default     = "us-central1"
  nullable    = false
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every name that must be unique in the project (functions, service accounts, secrets, bucket, topics, scheduler jobs, log metrics; alert and dashboard titles carry it too), so that two instances, e.g. staging and production, share a project. Empty keeps the names of DESIGN §3. Lowercase, ending in a hyphen, e.g. \"stg-\". The two instances also need their own Firestore database (firestore_database): the collection names are fixed."
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^([a-z][a-z0-9-]*-)?$", var.name_prefix))
    error_message = "name_prefix must be empty or lowercase letters, digits and hyphens, starting with a letter and ending with a hyphen, e.g. \"stg-\"."
  }

  validation {
    # Service account ids are at most 30 characters.
    condition     = alltrue([for id in local.service_account_ids : length("${var.name_prefix}${id}") <= 30])
    error_message = "name_prefix is too long: service account ids are at most 30 characters and the longest here is \"${var.name_prefix}plaid-revoke-all-tokens\" (${length("${var.name_prefix}plaid-revoke-all-tokens")}). Use at most 7 characters, e.g. \"stg-\"."
  }

  validation {
    # Bucket names are at most 63 characters.
    condition     = var.source_bucket_name != "" || length("${var.project_id}-${var.name_prefix}plaid-token-lifecycle-source") <= 63
    error_message = "The default source bucket name \"${var.project_id}-${var.name_prefix}plaid-token-lifecycle-source\" is longer than 63 characters: set source_bucket_name, or shorten name_prefix."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels (functions, secrets, buckets, image repository, topics, alert policies, notification channel), beside app = plaid-token-lifecycle and instance = the name prefix."
  default     = {}
  nullable    = false

  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "labels: keys must start with a lowercase letter and hold at most 63 lowercase letters, digits, _ and -; values at most 63 of the same."
  }
}

# --- Deployment phases (docs/DEPLOY.md) ------------------------------------------

variable "deploy_functions" {
  type        = bool
  description = "false only for phase 1 of the first deployment on a new project: APIs, service accounts and their roles, secrets (without versions unless manage_secret_values), buckets, image repository, topics, Firestore fields and rules, log-based metrics and the dashboard, but no functions, scheduler jobs, alert policies or invoker bindings. Add the secret versions, then apply with true (phase 2) at least ten minutes later, once Cloud Monitoring knows the new metrics. Phase 2 checks at plan time that phase 1 was applied, how long ago, and that the secrets the functions need have a version. false on a deployment that has functions is refused: it would delete them."
  default     = true
  nullable    = false
}

# --- Source and runtime --------------------------------------------------------

variable "source_zip_path" {
  type        = string
  description = "Path of the source zip made by scripts/package-source.sh. The bucket object is named by the zip's SHA-256, so a changed zip redeploys every function and an unchanged one deploys nothing. Not needed while deploy_functions is false."
  default     = ""
  nullable    = false

  validation {
    condition     = !var.deploy_functions || var.source_zip_path != ""
    error_message = "source_zip_path is required when deploy_functions is true: build it with scripts/package-source.sh."
  }
}

variable "source_bucket_name" {
  type        = string
  description = "Name of the bucket holding the source zip. Empty: \"<project_id>-<name_prefix>plaid-token-lifecycle-source\"."
  default     = ""
  nullable    = false
}

variable "go_runtime" {
  type        = string
  description = "Cloud Functions Go runtime id (the module is built by Google's Go buildpack). It follows go.mod's go line (go 1.26: go126; scripts/tfcheck checks the default against it). Google deprecates go126 in 2027 (its runtime schedule): raise go.mod, the tests and this together, and every function rolls a new revision (docs/DEPLOY.md, \"Runtime upgrades\"). Security patches of the runtime's base image are applied automatically in between."
  default     = "go126"
  nullable    = false

  validation {
    condition     = can(regex("^go1[0-9]+$", var.go_runtime))
    error_message = "go_runtime must look like go126."
  }
}

# --- Firestore -----------------------------------------------------------------

variable "firestore_database" {
  type        = string
  description = "Firestore database id the service uses (FIRESTORE_DATABASE). The old service used a named database; \"(default)\" is the project's default one. Each instance (name_prefix) needs its own."
  default     = "(default)"
  nullable    = false
}

variable "create_firestore_database" {
  type        = bool
  description = "Create the Firestore database. Leave false when it already exists (the old service's data lives there); the composite indexes, TTL policies and security rules are created either way."
  default     = false
  nullable    = false
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database (e.g. nam5, eur3, us-central1): where it is created when create_firestore_database is true, and the region of TokenStats' Eventarc Firestore trigger, which must be the database's own location (gcloud firestore databases describe --database=<id> --format='value(locationId)')."
  default     = "nam5"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]+[0-9]$", var.firestore_location))
    error_message = "firestore_location must be a Firestore location id such as nam5, eur3 or us-central1."
  }
}

variable "manage_firestore_rules" {
  type        = bool
  description = "Release the Firestore security rules of firestore.rules.tftpl for the database (one ruleset per database): client SDKs get nothing of this service's collections, and only what firestore_app_rules grants elsewhere. false when the app team releases the database's rules itself; its rules must then keep this service's collections closed (docs/DEPLOY.md)."
  default     = true
  nullable    = false
}

variable "firestore_app_rules" {
  type        = string
  description = "Firestore rules of the app's own collections, inserted inside `match /databases/{database}/documents { ... }` beside this service's. Empty: client SDKs get nothing in the database. Rules OR together, so a wildcard match here must exclude this service's collections with the isPlaidTokenCollection(name) function the ruleset defines (docs/DEPLOY.md)."
  default     = ""
  nullable    = false
}

# --- Service configuration (DESIGN §8) -------------------------------------------

variable "plaid_client_id" {
  type        = string
  description = "Plaid client id (PLAID_CLIENT_ID). Not a secret; the Plaid secret is."

  validation {
    condition     = trimspace(var.plaid_client_id) != ""
    error_message = "plaid_client_id must be set: every function that calls Plaid refuses to start without PLAID_CLIENT_ID."
  }
}

variable "plaid_env" {
  type        = string
  description = "Plaid environment (PLAID_ENV): sandbox or production. No default: a deployment names the environment its tokens belong to, and cleanup never touches another environment's tokens (DESIGN §7 rule 0)."

  validation {
    condition     = contains(["sandbox", "production"], var.plaid_env)
    error_message = "plaid_env must be sandbox or production."
  }
}

variable "plaid_products" {
  type        = list(string)
  description = "Plaid products the app's Link tokens ask for (PLAID_PRODUCTS), e.g. [\"transactions\"]. Given to CreateLinkToken."
  default     = ["transactions"]
  nullable    = false
}

variable "plaid_country_codes" {
  type        = list(string)
  description = "Countries of the institutions Link offers (PLAID_COUNTRY_CODES), e.g. [\"US\", \"CA\"]. Given to CreateLinkToken and ExchangePublicToken (institution lookups)."
  default     = ["US"]
  nullable    = false
}

variable "plaid_client_name" {
  type        = string
  description = "The app's name as Link shows it (PLAID_CLIENT_NAME), at most 30 characters. Empty: the code's default."
  default     = ""
  nullable    = false
}

variable "plaid_language" {
  type        = string
  description = "Link's language (PLAID_LANGUAGE), e.g. en. Empty: the code's default."
  default     = ""
  nullable    = false
}

variable "plaid_redirect_uri" {
  type        = string
  description = "The app's OAuth redirect URI registered with Plaid (PLAID_REDIRECT_URI), https in production. Empty: no OAuth redirect."
  default     = ""
  nullable    = false
}

variable "admin_user_ids" {
  type        = list(string)
  description = "User ids (JWT sub) allowed to run system-wide operations (ADMIN_USER_IDS)."
  default     = []
  nullable    = false
}

variable "stale_days" {
  type        = number
  description = "Days without use after which an active token is stale and removed (STALE_DAYS); also the days_threshold the daily Cloud Scheduler job sends."
  default     = 90
  nullable    = false

  validation {
    condition     = var.stale_days >= 1 && var.stale_days <= 3650 && floor(var.stale_days) == var.stale_days
    error_message = "stale_days must be an integer from 1 to 3650."
  }
}

variable "plaid_item_get_rpm" {
  type        = number
  description = "Most /item/get calls a minute (PLAID_ITEM_GET_RPM). Plaid's production limit is 5000 per client."
  default     = 5000
  nullable    = false

  validation {
    condition     = var.plaid_item_get_rpm >= 1 && floor(var.plaid_item_get_rpm) == var.plaid_item_get_rpm
    error_message = "plaid_item_get_rpm must be a positive integer."
  }
}

variable "plaid_item_remove_rpm" {
  type        = number
  description = "Most /item/remove calls a minute (PLAID_ITEM_REMOVE_RPM). Plaid's production limit is 2000 per client."
  default     = 2000
  nullable    = false

  validation {
    condition     = var.plaid_item_remove_rpm >= 1 && floor(var.plaid_item_remove_rpm) == var.plaid_item_remove_rpm
    error_message = "plaid_item_remove_rpm must be a positive integer."
  }
}

variable "run_time_budget" {
  type        = string
  description = "Go duration after which a scheduled cleanup checkpoints and continues in a new invocation (RUN_TIME_BUDGET). Must stay below the 540 s limit of event-driven functions."
  default     = "8m"
  nullable    = false

  validation {
    condition     = can(regex(local.go_duration_pattern, var.run_time_budget))
    error_message = "run_time_budget must be a Go duration such as 8m or 7m30s."
  }

  validation {
    condition     = try(sum([for p in regexall(local.go_duration_part, var.run_time_budget) : tonumber(p[0]) * local.duration_unit_seconds[p[1]]]) < local.event_timeout_seconds, true)
    error_message = "run_time_budget must be below ${local.event_timeout_seconds}s, the timeout of event-driven functions (DailyCleanup): the run must checkpoint before Cloud Functions ends it."
  }
}

variable "http_run_time_budget" {
  type        = string
  description = "Go duration after which a synchronous TokenCleanup run answers 202 and hands the rest of the run to DailyCleanup through the cleanup topic (HTTP_RUN_TIME_BUDGET). Must stay below TokenCleanup's 3600 s timeout."
  default     = "50m"
  nullable    = false

  validation {
    condition     = can(regex(local.go_duration_pattern, var.http_run_time_budget))
    error_message = "http_run_time_budget must be a Go duration such as 50m."
  }

  validation {
    condition     = try(sum([for p in regexall(local.go_duration_part, var.http_run_time_budget) : tonumber(p[0]) * local.duration_unit_seconds[p[1]]]) < local.http_timeout_seconds, true)
    error_message = "http_run_time_budget must be below ${local.http_timeout_seconds}s, TokenCleanup's timeout: the run must hand over before Cloud Functions ends the request."
  }
}

variable "validation_interval" {
  type        = string
  description = "Go duration (VALIDATION_INTERVAL): an active token validated at Plaid within it is not validated again by cleanup (DESIGN §12). The default keeps the old service's daily validation; large fleets raise it."
  default     = "20h"
  nullable    = false

  validation {
    condition     = can(regex(local.go_duration_pattern, var.validation_interval))
    error_message = "validation_interval must be a Go duration such as 20h."
  }
}

variable "log_level" {
  type        = string
  description = "Log level (LOG_LEVEL): DEBUG, INFO, WARN or ERROR."
  default     = "INFO"
  nullable    = false

  validation {
    condition     = contains(["DEBUG", "INFO", "WARN", "ERROR"], upper(var.log_level))
    error_message = "log_level must be DEBUG, INFO, WARN or ERROR."
  }
}

variable "token_encryption_salt" {
  type        = string
  description = "TOKEN_ENCRYPTION_SALT. Empty: not set, the code's default (plaid-token-lifecycle/v1) applies. Changing it makes every stored token undecryptable."
  default     = ""
  nullable    = false
}

# --- User authentication ---------------------------------------------------------

variable "auth_jwks_url" {
  type        = string
  description = "AUTH_JWKS_URL for RS256/ES256 user JWTs (e.g. Firebase Auth). Empty: not set. When set, auth_issuer and auth_audience are needed too, and it must be https."
  default     = ""
  nullable    = false

  validation {
    condition     = var.auth_jwks_url == "" || (trimspace(var.auth_issuer) != "" && trimspace(var.auth_audience) != "")
    error_message = "auth_jwks_url is set, so auth_issuer and auth_audience must be set too: without them any token signed by that JWKS (any Firebase project, say) would be accepted, and the functions refuse to start."
  }

  validation {
    # https, except a loopback host, as the functions require (DESIGN §8).
    condition     = var.auth_jwks_url == "" || startswith(var.auth_jwks_url, "https://") || can(regex("^http://(localhost|127\\.[0-9]+\\.[0-9]+\\.[0-9]+|\\[::1\\])(:[0-9]+)?(/|$)", var.auth_jwks_url))
    error_message = "auth_jwks_url must be an https:// URL (http:// only for a loopback host): keys fetched over plain HTTP could be swapped in transit."
  }
}

variable "auth_issuer" {
  type        = string
  description = "AUTH_ISSUER: the iss claim user JWTs must carry when auth_jwks_url is set. Empty: not set."
  default     = ""
  nullable    = false
}

variable "auth_audience" {
  type        = string
  description = "AUTH_AUDIENCE: the aud claim user JWTs must carry when auth_jwks_url is set. Empty: not set."
  default     = ""
  nullable    = false
}

variable "enable_auth_jwt_secret" {
  type        = bool
  description = "Create the AUTH_JWT_SECRET secret (HS256 user JWTs, as the old service issued) and give it to the user and admin HTTP functions. false when only auth_jwks_url is used. Turned on beside auth_jwks_url, the functions get it on the apply after its version is added; without auth_jwks_url they cannot start without it, and the plan refuses to deploy before it has a version."
  default     = true
  nullable    = false

  validation {
    condition     = var.enable_auth_jwt_secret || var.auth_jwks_url != ""
    error_message = "No JWT verifier: with enable_auth_jwt_secret = false, auth_jwks_url (with auth_issuer and auth_audience) must be set, or TokenCleanup, RevokeAllTokens, TokenAnalytics and RevokeItem refuse to start and answer 503 to every request."
  }
}

# --- Secrets ---------------------------------------------------------------------

variable "manage_secret_values" {
  type        = bool
  description = "false (the default, recommended): Terraform creates the secrets without versions and an operator adds them with gcloud between phase 1 and phase 2 (docs/DEPLOY.md), so no secret passes through Terraform, its plan files or its state. true: the versions come from the sensitive variables below and are stored in the state (encrypted at rest in the GCS backend, but readable by anyone who can read the state, pull-request builds included); a first deployment still takes the two phases."
  default     = false
  nullable    = false
}

variable "enable_previous_encryption_keys" {
  type        = bool
  description = "Create the TOKEN_ENCRYPTION_KEY_PREVIOUS secret (comma-separated older keys that still decrypt) during a key rotation, and give it to the functions that decrypt tokens once it has a version (the apply after `gcloud secrets versions add`; docs/DEPLOY.md, \"Rotate the encryption key\")."
  default     = false
  nullable    = false
}

variable "enable_legacy_token_key" {
  type        = bool
  description = "Create the LEGACY_TOKEN_ENCRYPTION_KEY secret (the old service's Fernet password) and give it to RevokeAllTokens only, which migrates a caller's legacy document before revoking it. true while the old service's documents remain; false once `manage-tokens migrate-legacy` reports nothing left to migrate (docs/DEPLOY.md)."
  default     = false
  nullable    = false
}

variable "plaid_secret" {
  type        = string
  description = "Plaid API secret (PLAID_SECRET). Used only when manage_secret_values is true."
  default     = ""
  nullable    = false
  sensitive   = true
}

variable "token_encryption_key" {
  type        = string
  description = "Password the token encryption key is derived from (TOKEN_ENCRYPTION_KEY), at least 32 bytes. Used only when manage_secret_values is true."
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    # Bytes, as the functions count them: base64 without padding has
    # ceil(4n/3) characters, which is at least 43 exactly when n >= 32.
    condition     = var.token_encryption_key == "" || length(replace(base64encode(var.token_encryption_key), "=", "")) >= 43
    error_message = "token_encryption_key must be at least 32 bytes: the functions refuse a shorter TOKEN_ENCRYPTION_KEY."
  }
}

variable "token_encryption_key_previous" {
  type        = string
  description = "Comma-separated previous encryption passwords (TOKEN_ENCRYPTION_KEY_PREVIOUS). Used only when manage_secret_values and enable_previous_encryption_keys are true."
  default     = ""
  nullable    = false
  sensitive   = true
}

variable "auth_jwt_secret" {
  type        = string
  description = "HS256 secret for user JWTs (AUTH_JWT_SECRET), at least 32 bytes. Used only when manage_secret_values and enable_auth_jwt_secret are true."
  default     = ""
  nullable    = false
  sensitive   = true

  validation {
    # Bytes, as for token_encryption_key.
    condition     = var.auth_jwt_secret == "" || length(replace(base64encode(var.auth_jwt_secret), "=", "")) >= 43
    error_message = "auth_jwt_secret must be at least 32 bytes: shorter HS256 secrets can be brute-forced, and the functions refuse them."
  }
}

variable "legacy_token_encryption_key" {
  type        = string
  description = "The old service's Fernet password (LEGACY_TOKEN_ENCRYPTION_KEY). Used only when manage_secret_values and enable_legacy_token_key are true."
  default     = ""
  nullable    = false
  sensitive   = true
}

# --- Access ----------------------------------------------------------------------

variable "admin_invoker_members" {
  type        = list(string)
  description = "IAM members allowed to call the admin functions (TokenCleanup, TokenAnalytics) at all, e.g. [\"group:plaid-ops@example.com\"]. The caller must still present an admin JWT; these functions are never public."
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for m in var.admin_invoker_members : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):", m))])
    error_message = "admin_invoker_members must be IAM members such as group:ops@example.com, and never allUsers or allAuthenticatedUsers."
  }
}

variable "user_invoker_members" {
  type        = list(string)
  description = "Who may invoke the user-facing functions (RevokeAllTokens, RevokeItem, CreateLinkToken, ExchangePublicToken, ListItems, VerifyItem) at the IAM layer. [\"allUsers\"] (the default): anyone, and the function checks the user's JWT. Where the organization refuses allUsers (domain-restricted sharing, iam.allowedPolicyMemberDomains), the named principals that call them instead, e.g. [\"serviceAccount:app-backend@my-project.iam.gserviceaccount.com\"]: they send their Google identity token in X-Serverless-Authorization and the user's JWT in Authorization, which still decides (docs/DEPLOY.md)."
  default     = ["allUsers"]
  nullable    = false

  validation {
    condition     = length(var.user_invoker_members) > 0
    error_message = "user_invoker_members must name at least one member: [\"allUsers\"], or the principals that call the user-facing functions."
  }

  validation {
    condition = join(",", var.user_invoker_members) == "allUsers" || alltrue([
      for m in var.user_invoker_members : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):", m))
    ])
    error_message = "user_invoker_members must be exactly [\"allUsers\"], or IAM members such as serviceAccount:app-backend@my-project.iam.gserviceaccount.com (never allUsers or allAuthenticatedUsers among others)."
  }
}

variable "plaid_webhook_public" {
  type        = bool
  description = "Let allUsers invoke PlaidWebhook: Plaid cannot present a Google identity, and the function verifies Plaid's signature on every request. false where the organization refuses allUsers: then turn Cloud Run's invoker check off for that one service instead (docs/DEPLOY.md), or Plaid's webhooks never arrive."
  default     = true
  nullable    = false
}

# --- Scheduling ------------------------------------------------------------------

variable "time_zone" {
  type        = string
  description = "IANA time zone of the Cloud Scheduler jobs (the old service ran in the host's local time; this is explicit), e.g. Etc/UTC or America/New_York. Checked against time_zones.txt, generated from Go's tz database."
  default     = "Etc/UTC"
  nullable    = false

  validation {
    condition     = contains(local.iana_time_zones, var.time_zone)
    error_message = "time_zone must be an IANA time zone name such as Etc/UTC, America/New_York or Europe/Berlin (see time_zones.txt in the module); Cloud Scheduler refuses others."
  }
}

variable "scheduler_paused" {
  type        = bool
  description = "Pause (true) or resume (false) the Cloud Scheduler jobs; null leaves them as they are, a pause made with gcloud included. true deploys the functions beside an old service whose own scheduler still runs a cleanup (never two cleanups, docs/MIGRATING.md); false then starts the schedule."
  default     = null
}

# --- Monitoring ------------------------------------------------------------------

variable "notification_channels" {
  type        = list(string)
  description = "Existing Cloud Monitoring notification channel ids (projects/<p>/notificationChannels/<id>) the alert policies notify."
  default     = []
  nullable    = false
}

variable "alert_email" {
  type        = string
  description = "Email address to create a notification channel for, in addition to notification_channels. Empty: none."
  default     = ""
  nullable    = false
}

variable "invalid_token_rate_threshold" {
  type        = number
  description = "Alert when invalid_marked / total_checked over the last day exceeds this fraction: a sudden wave of invalid tokens usually means a Plaid-side or configuration change, not users."
  default     = 0.1
  nullable    = false

  validation {
    condition     = var.invalid_token_rate_threshold > 0 && var.invalid_token_rate_threshold <= 1
    error_message = "invalid_token_rate_threshold must be a fraction in (0, 1]."
  }
}

variable "invalid_token_rate_min_checked" {
  type        = number
  description = "The invalid-token rate alert only fires when at least this many tokens were checked in the day, so a handful of tokens cannot page anyone."
  default     = 50
  nullable    = false
}

# --- Reports -----------------------------------------------------------------------

variable "report_bucket_name" {
  type        = string
  description = "Name of the private bucket WeeklyAnalytics renders the weekly HTML report into (REPORT_BUCKET: reports/weekly/<date>.html and reports/weekly/latest.html). Empty: \"<project_id>-<name_prefix>plaid-token-lifecycle-reports\"."
  default     = ""
  nullable    = false

  validation {
    condition     = var.report_bucket_name != "" || length("${var.project_id}-${var.name_prefix}plaid-token-lifecycle-reports") <= 63
    error_message = "The default report bucket name \"${var.project_id}-${var.name_prefix}plaid-token-lifecycle-reports\" is longer than 63 characters: set report_bucket_name, or shorten name_prefix."
  }
}

variable "report_retention_days" {
  type        = number
  description = "Days a weekly report is kept in the report bucket before it is deleted (a lifecycle rule). reports/weekly/latest.html is rewritten every week, so it never ages out."
  default     = 400
  nullable    = false

  validation {
    condition     = var.report_retention_days >= 7 && floor(var.report_retention_days) == var.report_retention_days
    error_message = "report_retention_days must be a whole number of days, at least 7 (a week's report must outlive the next one)."
  }
}

# --- Encryption, network and images ----------------------------------------------

variable "kms_key_name" {
  type        = string
  description = "Customer-managed Cloud KMS key (projects/<p>/locations/<region>/keyRings/<r>/cryptoKeys/<k>, in var.region) for the source and report buckets, the topics, the functions' image repository and the functions. Empty: Google-managed encryption. The module grants the key to the service agents that use it; create the agents first (docs/DEPLOY.md, \"Customer-managed encryption keys\")."
  default     = ""
  nullable    = false

  validation {
    condition     = var.kms_key_name == "" || can(regex("^projects/[^/]+/locations/${var.region}/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be a Cloud KMS key in ${var.region} (projects/<p>/locations/${var.region}/keyRings/<r>/cryptoKeys/<k>): buckets, the image repository and the functions need a key in their own region."
  }
}

variable "secrets_kms_key_name" {
  type        = string
  description = "Customer-managed Cloud KMS key for the Secret Manager secrets (automatically replicated, so a key in location global: projects/<p>/locations/global/keyRings/<r>/cryptoKeys/<k>). Empty: Google-managed encryption."
  default     = ""
  nullable    = false

  validation {
    condition     = var.secrets_kms_key_name == "" || can(regex("^projects/[^/]+/locations/global/keyRings/[^/]+/cryptoKeys/[^/]+$", var.secrets_kms_key_name))
    error_message = "secrets_kms_key_name must be a Cloud KMS key in location global: secrets with automatic replication are encrypted with a global key."
  }
}

variable "vpc_egress" {
  type = object({
    network     = optional(string, "")
    subnetwork  = optional(string, "")
    all_traffic = optional(bool, false)
  })
  description = "Direct VPC egress for every function, for organizations whose policies require it. network (and optionally subnetwork) of this project; all_traffic = true sends every request, Plaid's included, through the VPC (which then needs Cloud NAT to reach Plaid), false only private ranges. Empty network: no VPC."
  default     = {}
  nullable    = false
}

variable "function_image_versions_kept" {
  type        = number
  description = "The functions' images live in a repository of their own (with kms_key_name, encrypted by it). Its cleanup policy deletes images older than 30 days but keeps this many most recent ones per function, so a rollback to a recent revision still finds its image."
  default     = 5
  nullable    = false

  validation {
    condition     = var.function_image_versions_kept >= 2 && floor(var.function_image_versions_kept) == var.function_image_versions_kept
    error_message = "function_image_versions_kept must be a whole number, at least 2 (the running image and the one before it)."
  }
}
