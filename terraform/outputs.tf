output "function_urls" {
  description = "URL of every function, by target name. HTTP functions also accept the full DESIGN §3 path under their URL; the event functions' URLs are only reachable by Eventarc."
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
  description = "Cloud Scheduler job ids, by topic key."
  value       = { for key, j in google_cloud_scheduler_job.scheduled : key => j.id }
}

output "secret_ids" {
  description = "Secret Manager secret ids, by secret key; add versions here when manage_secret_values is false."
  value       = { for key, s in google_secret_manager_secret.secret : key => s.secret_id }
}

output "source_object" {
  description = "gs:// URL of the deployed source zip."
  value       = "gs://${google_storage_bucket.source.name}/${google_storage_bucket_object.source.name}"
}

output "firestore_database" {
  description = "Firestore database the functions use (FIRESTORE_DATABASE)."
  value       = local.firestore_database
}

output "dashboard_id" {
  description = "Cloud Monitoring dashboard id."
  value       = google_monitoring_dashboard.lifecycle.id
}
