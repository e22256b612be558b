# One instance of the deployment. A second one in the same project (staging
# beside production) is a second root with its own state prefix, name_prefix
# and Firestore database (docs/DEPLOY.md).
module "plaid_token_lifecycle" {
  source = "./modules/plaid-token-lifecycle"

  project_id  = var.project_id
  region      = var.region
  name_prefix = var.name_prefix
  labels      = var.labels

  deploy_functions   = var.deploy_functions
  source_zip_path    = var.source_zip_path
  source_bucket_name = var.source_bucket_name
  go_runtime         = var.go_runtime

  firestore_database        = var.firestore_database
  create_firestore_database = var.create_firestore_database
  firestore_location        = var.firestore_location
  manage_firestore_rules    = var.manage_firestore_rules
  firestore_app_rules       = var.firestore_app_rules

  plaid_client_id       = var.plaid_client_id
  plaid_env             = var.plaid_env
  plaid_products        = var.plaid_products
  plaid_country_codes   = var.plaid_country_codes
  plaid_client_name     = var.plaid_client_name
  plaid_language        = var.plaid_language
  plaid_redirect_uri    = var.plaid_redirect_uri
  admin_user_ids        = var.admin_user_ids
  stale_days            = var.stale_days
  plaid_item_get_rpm    = var.plaid_item_get_rpm
  plaid_item_remove_rpm = var.plaid_item_remove_rpm
  run_time_budget       = var.run_time_budget
  http_run_time_budget  = var.http_run_time_budget
  validation_interval   = var.validation_interval
  log_level             = var.log_level
  token_encryption_salt = var.token_encryption_salt

  auth_jwks_url          = var.auth_jwks_url
  auth_issuer            = var.auth_issuer
  auth_audience          = var.auth_audience
  enable_auth_jwt_secret = var.enable_auth_jwt_secret

  manage_secret_values            = var.manage_secret_values
  enable_previous_encryption_keys = var.enable_previous_encryption_keys
  enable_legacy_token_key         = var.enable_legacy_token_key
  plaid_secret                    = var.plaid_secret
  token_encryption_key            = var.token_encryption_key
  token_encryption_key_previous   = var.token_encryption_key_previous
  auth_jwt_secret                 = var.auth_jwt_secret
  legacy_token_encryption_key     = var.legacy_token_encryption_key

  admin_invoker_members = var.admin_invoker_members
  user_invoker_members  = var.user_invoker_members
  plaid_webhook_public  = var.plaid_webhook_public
  time_zone             = var.time_zone
  scheduler_paused      = var.scheduler_paused

  notification_channels          = var.notification_channels
  alert_email                    = var.alert_email
  invalid_token_rate_threshold   = var.invalid_token_rate_threshold
  invalid_token_rate_min_checked = var.invalid_token_rate_min_checked

  report_bucket_name    = var.report_bucket_name
  report_retention_days = var.report_retention_days

  kms_key_name                 = var.kms_key_name
  secrets_kms_key_name         = var.secrets_kms_key_name
  vpc_egress                   = var.vpc_egress
  function_image_versions_kept = var.function_image_versions_kept
}
