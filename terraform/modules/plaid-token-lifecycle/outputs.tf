output "function_urls" {
  description = "URL of every function, by target name (empty while deploy_functions is false). HTTP functions also accept the full DESIGN §3 path under their URL; the event functions' URLs are only reachable by Eventarc."
  value       = { for name, f in google_cloudfunctions2_function.function : name => f.url }
}

output "function_service_accounts" {
  description = "Runtime service account email of every function, by target name."
  value       = { for name, sa in google_service_account.function : name => sa.email }
}

output "topics" {
  description = "Pub/Sub topic names of the scheduled functions (daily cleanup, weekly analytics)."
  value       = { for key, t in google_pubsub_topic.scheduled : key => t.name }
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job ids, by topic key (empty while deploy_functions is false)."
  value       = { for key, j in google_cloud_scheduler_job.scheduled : key => j.id }
}

output "secret_ids" {
  description = "Secret Manager secret ids, by secret key: add a version to each with gcloud when manage_secret_values is false (docs/DEPLOY.md)."
  value       = { for key, s in google_secret_manager_secret.secret : key => s.secret_id }
}

output "report_bucket" {
  description = "Name of the private bucket WeeklyAnalytics renders the weekly report into (REPORT_BUCKET): reports/weekly/<date>.html and reports/weekly/latest.html."
  value       = google_storage_bucket.reports.name
}

output "image_repository" {
  description = "Artifact Registry repository the functions' images are built into."
  value       = google_artifact_registry_repository.functions.id
}

output "function_environment" {
  description = "What each function starts with, by target name: env (its plain environment variables) and secrets (secret environment variables: the secret id and pinned version of each). No secret value. `deploytool check-config` loads each function's configuration from it as the function will (docs/DEPLOY.md)."
  value = {
    project = var.project_id
    functions = {
      for fn in keys(local.functions) : fn => {
        env     = local.function_env[fn]
        secrets = local.function_secret_env[fn]
      }
    }
  }
}

output "firestore_rules_release" {
  description = "The Firestore rules release and the ruleset it must point at (null with manage_firestore_rules = false): `deploytool release-rules` moves the release there."
  value = var.manage_firestore_rules ? {
    release = "projects/${var.project_id}/releases/${local.firestore_rules_release}"
    ruleset = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore[0].name}"
  } : null
}

output "source_bucket" {
  description = "Name of the bucket holding the source zips."
  value       = google_storage_bucket.source.name
}

output "source_object" {
  description = "gs:// URL of the deployed source zip (null while deploy_functions is false)."
  value       = var.deploy_functions ? "gs://${google_storage_bucket.source.name}/${google_storage_bucket_object.source[0].name}" : null
}

output "firestore_database" {
  description = "Firestore database the functions use (FIRESTORE_DATABASE)."
  value       = local.firestore_database
}

output "firestore_rules" {
  description = "The Firestore security rules this module releases for the database (or, with manage_firestore_rules = false, the part the app team's own release must keep)."
  value       = local.firestore_rules
}

output "dashboard_id" {
  description = "Cloud Monitoring dashboard id."
  value       = google_monitoring_dashboard.lifecycle.id
}

output "names" {
  description = "Every name this instance takes that must be unique in the project, by kind: what name_prefix changes, so two instances can be checked for collisions."
  value = {
    functions        = [for f in local.functions : f.name]
    service_accounts = concat([for f in local.functions : f.name], ["${local.prefix}${local.build_account_id}", "${local.prefix}${local.trigger_account_id}"])
    secrets          = [for s in local.secrets : s.secret_id]
    buckets          = [local.source_bucket_name, local.report_bucket_name]
    repositories     = [google_artifact_registry_repository.functions.repository_id]
    custom_roles     = [google_project_iam_custom_role.report_writer.role_id]
    topics           = [for t in local.topics : t.name]
    scheduler_jobs   = [for t in local.topics : t.name]
    log_metrics      = concat([google_logging_metric.cleanup_runs.name, google_logging_metric.invalid_marked.name, google_logging_metric.total_checked.name, google_logging_metric.plaid_errors.name, google_logging_metric.institution_tokens.name], [for m in google_logging_metric.token_activity : m.name])
    iam_conditions   = ["${local.prefix}plaid-token-lifecycle database", "${local.prefix}weekly reports only"]
  }
}
