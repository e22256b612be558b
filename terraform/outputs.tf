# The module's outputs, passed through.

output "function_urls" {
  description = "URL of every function, by target name."
  value       = module.plaid_token_lifecycle.function_urls
}

output "function_service_accounts" {
  description = "Runtime service account email of every function, by target name."
  value       = module.plaid_token_lifecycle.function_service_accounts
}

output "topics" {
  description = "Pub/Sub topic names of the scheduled functions."
  value       = module.plaid_token_lifecycle.topics
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job ids, by topic key."
  value       = module.plaid_token_lifecycle.scheduler_jobs
}

output "secret_ids" {
  description = "Secret Manager secret ids, by secret key: add a version to each between phase 1 and phase 2 (docs/DEPLOY.md)."
  value       = module.plaid_token_lifecycle.secret_ids
}

output "report_bucket" {
  description = "Name of the private bucket WeeklyAnalytics renders the weekly report into (REPORT_BUCKET)."
  value       = module.plaid_token_lifecycle.report_bucket
}

output "image_repository" {
  description = "Artifact Registry repository the functions' images are built into."
  value       = module.plaid_token_lifecycle.image_repository
}

output "function_environment" {
  description = "What each function starts with (plain environment, secret ids and pinned versions; no secret value): the input of `deploytool check-config`."
  value       = module.plaid_token_lifecycle.function_environment
}

output "firestore_rules_release" {
  description = "The Firestore rules release and the ruleset it must point at: the input of `deploytool release-rules`."
  value       = module.plaid_token_lifecycle.firestore_rules_release
}

output "source_bucket" {
  description = "Name of the bucket holding the source zips."
  value       = module.plaid_token_lifecycle.source_bucket
}

output "source_object" {
  description = "gs:// URL of the deployed source zip."
  value       = module.plaid_token_lifecycle.source_object
}

output "firestore_database" {
  description = "Firestore database the functions use."
  value       = module.plaid_token_lifecycle.firestore_database
}

output "firestore_rules" {
  description = "The Firestore security rules released for the database."
  value       = module.plaid_token_lifecycle.firestore_rules
}

output "dashboard_id" {
  description = "Cloud Monitoring dashboard id."
  value       = module.plaid_token_lifecycle.dashboard_id
}

output "names" {
  description = "Every project-unique name of this instance, by kind."
  value       = module.plaid_token_lifecycle.names
}
