# Secrets in Secret Manager, exposed to functions as secret environment
# variables (functions.tf) and readable only by the service accounts of the
# functions that need them (iam.tf, secret-level bindings).
#
# Values: with manage_secret_values = false (the default) Terraform creates
# only the secrets, and an operator adds each version with gcloud (docs/
# DEPLOY.md). With true the versions come from sensitive variables and are
# therefore stored in Terraform state.
#
# Versions: each function is given the version the plan read, not
# "latest". A new version (a rotation) shows in the next plan as a change of
# that number and rolls a new revision of every function that reads the
# secret, in place: no `-replace`, no window without the function. A secret
# is given to the functions only once it has a version: a secret this plan
# creates (a switch just turned on: previous keys, the legacy key, the JWT
# secret beside a JWKS) is created now and given after `gcloud secrets
# versions add` and another apply; a check says which are waiting. The
# secrets the functions cannot start without are required: the plan refuses
# to deploy without their versions (functions.tf).

locals {
  # Every secret this module knows, keyed by the name functions.tf uses.
  secrets = {
    plaid_secret = {
      secret_id = "${local.prefix}plaid-secret"
      env       = "PLAID_SECRET"
      variable  = "plaid_secret"
      enabled   = true
      required  = true
    }
    token_encryption_key = {
      secret_id = "${local.prefix}plaid-token-encryption-key"
      env       = "TOKEN_ENCRYPTION_KEY"
      variable  = "token_encryption_key"
      enabled   = true
      required  = true
    }
    token_encryption_key_previous = {
      secret_id = "${local.prefix}plaid-token-encryption-key-previous"
      env       = "TOKEN_ENCRYPTION_KEY_PREVIOUS"
      variable  = "token_encryption_key_previous"
      enabled   = var.enable_previous_encryption_keys
      required  = false
    }
    auth_jwt_secret = {
      secret_id = "${local.prefix}plaid-auth-jwt-secret"
      env       = "AUTH_JWT_SECRET"
      variable  = "auth_jwt_secret"
      enabled   = var.enable_auth_jwt_secret
      required  = var.auth_jwks_url == "" # the only JWT verifier
    }
    legacy_token_encryption_key = {
      secret_id = "${local.prefix}plaid-legacy-token-encryption-key"
      env       = "LEGACY_TOKEN_ENCRYPTION_KEY"
      variable  = "legacy_token_encryption_key"
      enabled   = var.enable_legacy_token_key
      required  = false # RevokeAllTokens starts without it; only legacy documents need it
    }
  }

  enabled_secrets = { for k, s in local.secrets : k => s if s.enabled }

  # Kept apart from local.secrets so that no for_each value is derived from a
  # sensitive variable.
  secret_values = {
    plaid_secret                  = var.plaid_secret
    token_encryption_key          = var.token_encryption_key
    token_encryption_key_previous = var.token_encryption_key_previous
    auth_jwt_secret               = var.auth_jwt_secret
    legacy_token_encryption_key   = var.legacy_token_encryption_key
  }

  # Versions are read (phases.tf) when the functions are deployed and the
  # versions are added by hand; the secrets to read are those that already
  # exist, since a plan cannot read one it is about to create.
  read_secret_versions = var.deploy_functions && !var.manage_secret_values
  existing_secret_ids  = toset(flatten([for d in data.google_secret_manager_secrets.existing : [for s in d.secrets : s.secret_id]]))
  secrets_to_read      = local.read_secret_versions ? { for k, s in local.enabled_secrets : k => s if contains(local.existing_secret_ids, s.secret_id) } : {}

  # The version each function is given, by secret key; a secret missing
  # here is not given to any function yet.
  secret_versions = !var.deploy_functions ? {} : var.manage_secret_values ? {
    for k, v in google_secret_manager_secret_version.value : k => v.version
    } : {
    for k, d in data.google_secret_manager_secret_version.latest : k => d.version
  }
  waiting_secrets = [for k, s in local.enabled_secrets : s.secret_id if var.deploy_functions && !contains(keys(local.secret_versions), k)]
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.enabled_secrets

  project   = var.project_id
  secret_id = each.value.secret_id
  labels    = local.labels

  replication {
    auto {
      dynamic "customer_managed_encryption" {
        for_each = var.secrets_kms_key_name != "" ? [var.secrets_kms_key_name] : []

        content {
          kms_key_name = customer_managed_encryption.value
        }
      }
    }
  }

  depends_on = [google_project_service.api, google_kms_crypto_key_iam_member.secrets]
}

resource "google_secret_manager_secret_version" "value" {
  for_each = var.manage_secret_values ? local.enabled_secrets : {}

  secret      = google_secret_manager_secret.secret[each.key].id
  secret_data = local.secret_values[each.key]

  lifecycle {
    precondition {
      condition     = length(local.secret_values[each.key]) > 0
      error_message = "manage_secret_values is true but ${each.value.variable} (${each.value.env}) is empty: set it (TF_VAR_${each.value.variable}), or set manage_secret_values = false and add the version with gcloud (docs/DEPLOY.md)."
    }
  }
}

# A warning, not an error: the functions deploy without these, and get them
# on the apply after their versions are added.
check "secrets_waiting_for_a_version" {
  assert {
    condition     = length(local.waiting_secrets) == 0
    error_message = "Not given to the functions yet, for want of a version: ${join(", ", local.waiting_secrets)}. Add one to each (gcloud secrets versions add SECRET --project=${var.project_id} --data-file=-, docs/DEPLOY.md), then apply again."
  }
}
