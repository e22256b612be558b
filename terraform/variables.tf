# Inputs. Every variable is typed and described; terraform.tfvars.example
# shows a complete set.

# --- Project and placement ---------------------------------------------------

variable "project_id" {
  type        = string
  description = "Google Cloud project id everything is created in. Also passed to the functions as GOOGLE_CLOUD_PROJECT."
}

variable "region" {
  type        = string
  description = "Region of the functions, their Eventarc triggers, the Cloud Scheduler jobs and the source bucket."
  default     = "us-central1"
}

# --- Source and runtime ------------------------------------------------------

variable "source_zip_path" {
  type        = string
  description = "Path of the source zip made by scripts/package-source.sh. The bucket object is named by the zip's SHA-256, so a changed zip redeploys every function and an unchanged one deploys nothing."
}

variable "source_bucket_name" {
  type        = string
  description = "Name of the bucket holding the source zip. Empty: \"<project_id>-plaid-token-lifecycle-source\"."
  default     = ""
}

variable "go_runtime" {
  type        = string
  description = "Cloud Functions Go runtime id (the module is built by Google's Go buildpack). go.mod needs Go 1.26: the Cloud client libraries require it."
  default     = "go126"

  validation {
    condition     = can(regex("^go1[0-9]+$", var.go_runtime))
    error_message = "go_runtime must look like go126."
  }
}

# --- Firestore ---------------------------------------------------------------

variable "firestore_database" {
  type        = string
  description = "Firestore database id the service uses (FIRESTORE_DATABASE). The old service used a named database; \"(default)\" is the project's default one."
  default     = "(default)"
}

variable "create_firestore_database" {
  type        = bool
  description = "Create the Firestore database. Leave false when it already exists (the old service's data lives there); the composite indexes and TTL policy are created either way."
  default     = false
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database, used only when create_firestore_database is true (e.g. nam5, eur3, us-central1)."
  default     = "nam5"
}

# --- Service configuration (DESIGN §8) ---------------------------------------

variable "plaid_client_id" {
  type        = string
  description = "Plaid client id (PLAID_CLIENT_ID). Not a secret; the Plaid secret is."
}

variable "plaid_env" {
  type        = string
  description = "Plaid environment (PLAID_ENV): sandbox or production."
  default     = "sandbox"

  validation {
    condition     = contains(["sandbox", "production"], var.plaid_env)
    error_message = "plaid_env must be sandbox or production."
  }
}

variable "admin_user_ids" {
  type        = list(string)
  description = "User ids (JWT sub) allowed to run system-wide operations (ADMIN_USER_IDS)."
  default     = []
}

variable "stale_days" {
  type        = number
  description = "Days without use after which an active token is stale and removed (STALE_DAYS); also the days_threshold the daily Cloud Scheduler job sends."
  default     = 90

  validation {
    condition     = var.stale_days >= 1 && var.stale_days <= 3650 && floor(var.stale_days) == var.stale_days
    error_message = "stale_days must be an integer from 1 to 3650."
  }
}

variable "plaid_item_get_rpm" {
  type        = number
  description = "Most /item/get calls a minute (PLAID_ITEM_GET_RPM). Plaid's production limit is 5000 per client."
  default     = 5000

  validation {
    condition     = var.plaid_item_get_rpm >= 1 && floor(var.plaid_item_get_rpm) == var.plaid_item_get_rpm
    error_message = "plaid_item_get_rpm must be a positive integer."
  }
}

variable "plaid_item_remove_rpm" {
  type        = number
  description = "Most /item/remove calls a minute (PLAID_ITEM_REMOVE_RPM). Plaid's production limit is 2000 per client."
  default     = 2000

  validation {
    condition     = var.plaid_item_remove_rpm >= 1 && floor(var.plaid_item_remove_rpm) == var.plaid_item_remove_rpm
    error_message = "plaid_item_remove_rpm must be a positive integer."
  }
}

variable "run_time_budget" {
  type        = string
  description = "Go duration after which a scheduled cleanup checkpoints and continues in a new invocation (RUN_TIME_BUDGET). Must stay below the 540 s limit of event-driven functions."
  default     = "8m"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.run_time_budget))
    error_message = "run_time_budget must be a Go duration such as 8m or 7m30s."
  }
}

variable "log_level" {
  type        = string
  description = "Log level (LOG_LEVEL): DEBUG, INFO, WARN or ERROR."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARN", "ERROR"], upper(var.log_level))
    error_message = "log_level must be DEBUG, INFO, WARN or ERROR."
  }
}

variable "token_encryption_salt" {
  type        = string
  description = "TOKEN_ENCRYPTION_SALT. Empty: not set, the code's default (plaid-token-lifecycle/v1) applies. Changing it makes every stored token undecryptable."
  default     = ""
}

variable "auth_jwks_url" {
  type        = string
  description = "AUTH_JWKS_URL for RS256/ES256 user JWTs (e.g. Firebase Auth). Empty: not set. When set, auth_issuer and auth_audience are needed too."
  default     = ""
}

variable "auth_issuer" {
  type        = string
  description = "AUTH_ISSUER: the iss claim user JWTs must carry when auth_jwks_url is set. Empty: not set."
  default     = ""
}

variable "auth_audience" {
  type        = string
  description = "AUTH_AUDIENCE: the aud claim user JWTs must carry when auth_jwks_url is set. Empty: not set."
  default     = ""
}

# --- Secrets -----------------------------------------------------------------

variable "manage_secret_values" {
  type        = bool
  description = "Create the secret versions from the sensitive variables below. They then land in Terraform state (encrypted at rest in the GCS backend, but readable by anyone who can read the state). Set false to add versions out of band instead (gcloud secrets versions add <secret> --data-file=-) before the first apply; the functions read version \"latest\"."
  default     = true
}

variable "enable_auth_jwt_secret" {
  type        = bool
  description = "Create the AUTH_JWT_SECRET secret (HS256 user JWTs, as the old service issued) and give it to the user and admin HTTP functions. False when only auth_jwks_url is used."
  default     = true
}

variable "enable_previous_encryption_keys" {
  type        = bool
  description = "Create the TOKEN_ENCRYPTION_KEY_PREVIOUS secret (comma-separated older keys that still decrypt) during a key rotation, and give it to the functions that decrypt tokens."
  default     = false
}

variable "plaid_secret" {
  type        = string
  description = "Plaid API secret (PLAID_SECRET). Used only when manage_secret_values is true."
  default     = ""
  sensitive   = true
}

variable "token_encryption_key" {
  type        = string
  description = "Password the token encryption key is derived from (TOKEN_ENCRYPTION_KEY). Used only when manage_secret_values is true."
  default     = ""
  sensitive   = true
}

variable "token_encryption_key_previous" {
  type        = string
  description = "Comma-separated previous encryption passwords (TOKEN_ENCRYPTION_KEY_PREVIOUS). Used only when manage_secret_values and enable_previous_encryption_keys are true."
  default     = ""
  sensitive   = true
}

variable "auth_jwt_secret" {
  type        = string
  description = "HS256 secret for user JWTs (AUTH_JWT_SECRET), at least 32 bytes. Used only when manage_secret_values and enable_auth_jwt_secret are true."
  default     = ""
  sensitive   = true

  validation {
    condition     = var.auth_jwt_secret == "" || length(var.auth_jwt_secret) >= 32
    error_message = "auth_jwt_secret must be at least 32 bytes: shorter HS256 secrets can be brute-forced."
  }
}

# --- Access ------------------------------------------------------------------

variable "admin_invoker_members" {
  type        = list(string)
  description = "IAM members allowed to call the admin functions (TokenCleanup, TokenAnalytics) at all, e.g. [\"group:plaid-ops@example.com\"]. The caller must still present an admin JWT; these functions are never public."
  default     = []

  validation {
    condition     = alltrue([for m in var.admin_invoker_members : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):", m))])
    error_message = "admin_invoker_members must be IAM members such as group:ops@example.com, and never allUsers or allAuthenticatedUsers."
  }
}

# --- Scheduling --------------------------------------------------------------

variable "time_zone" {
  type        = string
  description = "IANA time zone of the Cloud Scheduler jobs (the old service ran in the host's local time; this is explicit)."
  default     = "Etc/UTC"
}

# --- Monitoring --------------------------------------------------------------

variable "notification_channels" {
  type        = list(string)
  description = "Existing Cloud Monitoring notification channel ids (projects/<p>/notificationChannels/<id>) the alert policies notify."
  default     = []
}

variable "alert_email" {
  type        = string
  description = "Email address to create a notification channel for, in addition to notification_channels. Empty: none."
  default     = ""
}

variable "invalid_token_rate_threshold" {
  type        = number
  description = "Alert when invalid_marked / total_checked over the last day exceeds this fraction: a sudden wave of invalid tokens usually means a Plaid-side or configuration change, not users."
  default     = 0.1

  validation {
    condition     = var.invalid_token_rate_threshold > 0 && var.invalid_token_rate_threshold <= 1
    error_message = "invalid_token_rate_threshold must be a fraction in (0, 1]."
  }
}

variable "invalid_token_rate_min_checked" {
  type        = number
  description = "The invalid-token rate alert only fires when at least this many tokens were checked in the day, so a handful of tokens cannot page anyone."
  default     = 50
}
