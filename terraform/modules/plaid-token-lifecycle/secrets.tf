# Secrets in Secret Manager, exposed to functions as secret environment
# variables (functions.tf) and readable only by the service accounts of the
# functions that need them (iam.tf, secret-level bindings).
#
# Values: with manage_secret_values = false (the default) Terraform creates
# only the secrets, and an operator adds a version to each between phase 1
# and phase 2 of the first deployment (docs/DEPLOY.md; phases.tf checks it):
#   printf %s "$PLAID_SECRET" | gcloud secrets versions add plaid-secret --data-file=-
# With true the versions come from sensitive variables and are therefore
# stored in Terraform state. Rotation is a new version plus a redeploy (or a
# new instance): the functions read version "latest".

locals {
  # Every secret this module knows, keyed by the name functions.tf uses.
  secrets = {
    plaid_secret = {
      secret_id = "${local.prefix}plaid-secret"
      env       = "PLAID_SECRET"
      variable  = "plaid_secret"
      enabled   = true
    }
    token_encryption_key = {
      secret_id = "${local.prefix}plaid-token-encryption-key"
      env       = "TOKEN_ENCRYPTION_KEY"
      variable  = "token_encryption_key"
      enabled   = true
    }
    token_encryption_key_previous = {
      secret_id = "${local.prefix}plaid-token-encryption-key-previous"
      env       = "TOKEN_ENCRYPTION_KEY_PREVIOUS"
      variable  = "token_encryption_key_previous"
      enabled   = var.enable_previous_encryption_keys
    }
    auth_jwt_secret = {
      secret_id = "${local.prefix}plaid-auth-jwt-secret"
      env       = "AUTH_JWT_SECRET"
      variable  = "auth_jwt_secret"
      enabled   = var.enable_auth_jwt_secret
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
  }
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.enabled_secrets

  project   = var.project_id
  secret_id = each.value.secret_id
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
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
