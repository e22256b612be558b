# Secrets in Secret Manager, exposed to functions as secret environment
# variables (functions.tf) and readable only by the service accounts of the
# functions that need them (iam.tf, secret-level bindings).
#
# Values: with manage_secret_values = true the versions come from sensitive
# variables and are therefore stored in Terraform state. With false, Terraform
# creates only the secrets and an operator adds versions out of band:
#   printf %s "$PLAID_SECRET" | gcloud secrets versions add plaid-secret --data-file=-
# before the first apply (a function cannot deploy while its secret has no
# version). Rotation is a new version plus a redeploy (or a new instance):
# the functions read version "latest".

locals {
  # Every secret this stack knows, keyed by the name functions.tf uses.
  secrets = {
    plaid_secret = {
      secret_id = "plaid-secret"
      env       = "PLAID_SECRET"
      enabled   = true
    }
    token_encryption_key = {
      secret_id = "plaid-token-encryption-key"
      env       = "TOKEN_ENCRYPTION_KEY"
      enabled   = true
    }
    token_encryption_key_previous = {
      secret_id = "plaid-token-encryption-key-previous"
      env       = "TOKEN_ENCRYPTION_KEY_PREVIOUS"
      enabled   = var.enable_previous_encryption_keys
    }
    auth_jwt_secret = {
      secret_id = "plaid-auth-jwt-secret"
      env       = "AUTH_JWT_SECRET"
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

  secret_id = each.value.secret_id

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
      error_message = "manage_secret_values is true but the variable for ${each.value.env} is empty: set it, or set manage_secret_values = false and add the version out of band."
    }
  }
}
