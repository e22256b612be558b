# Deployments made before terraform/ became a module kept every resource at
# the root of the state. These blocks move them into the module instead of
# destroying and recreating them (a recreated secret would lose its versions,
# a recreated service account its identity). Harmless on a new state; they
# can go once every deployment has applied them.
#
# Not moved, on purpose: google_project_iam_member.function (project-wide
# Firestore and logging roles, replaced by database-scoped ones in
# google_project_iam_member.firestore) and the composite indexes
# google_firestore_index.tokens_status_error_code and runs_kind_started_at (no
# query needs them any more): the apply removes them.

moved {
  from = google_project_service.api
  to   = module.plaid_token_lifecycle.google_project_service.api
}

moved {
  from = google_firestore_database.database
  to   = module.plaid_token_lifecycle.google_firestore_database.database
}

moved {
  from = google_cloudfunctions2_function.function
  to   = module.plaid_token_lifecycle.google_cloudfunctions2_function.function
}

moved {
  from = google_secret_manager_secret_iam_member.function
  to   = module.plaid_token_lifecycle.google_secret_manager_secret_iam_member.function
}

moved {
  from = google_pubsub_topic_iam_member.function_publisher
  to   = module.plaid_token_lifecycle.google_pubsub_topic_iam_member.function_publisher
}

moved {
  from = google_service_account.function
  to   = module.plaid_token_lifecycle.google_service_account.function
}

moved {
  from = google_service_account.build
  to   = module.plaid_token_lifecycle.google_service_account.build
}

moved {
  from = google_project_iam_member.build
  to   = module.plaid_token_lifecycle.google_project_iam_member.build
}

moved {
  from = google_service_account.event_trigger
  to   = module.plaid_token_lifecycle.google_service_account.event_trigger
}

moved {
  from = google_cloud_run_service_iam_member.event_invoker
  to   = module.plaid_token_lifecycle.google_cloud_run_service_iam_member.event_invoker
}

moved {
  from = google_service_account_iam_member.pubsub_token_creator
  to   = module.plaid_token_lifecycle.google_service_account_iam_member.pubsub_token_creator
}

moved {
  from = google_cloud_run_service_iam_member.public_invoker
  to   = module.plaid_token_lifecycle.google_cloud_run_service_iam_member.public_invoker
}

moved {
  from = google_cloud_run_service_iam_member.admin_invoker
  to   = module.plaid_token_lifecycle.google_cloud_run_service_iam_member.admin_invoker
}

moved {
  from = google_logging_metric.cleanup_runs
  to   = module.plaid_token_lifecycle.google_logging_metric.cleanup_runs
}

moved {
  from = google_logging_metric.invalid_marked
  to   = module.plaid_token_lifecycle.google_logging_metric.invalid_marked
}

moved {
  from = google_logging_metric.total_checked
  to   = module.plaid_token_lifecycle.google_logging_metric.total_checked
}

moved {
  from = google_logging_metric.plaid_errors
  to   = module.plaid_token_lifecycle.google_logging_metric.plaid_errors
}

moved {
  from = google_monitoring_notification_channel.email
  to   = module.plaid_token_lifecycle.google_monitoring_notification_channel.email
}

moved {
  from = google_monitoring_alert_policy.cleanup_failed
  to   = module.plaid_token_lifecycle.google_monitoring_alert_policy.cleanup_failed
}

moved {
  from = google_monitoring_alert_policy.invalid_token_rate
  to   = module.plaid_token_lifecycle.google_monitoring_alert_policy.invalid_token_rate
}

moved {
  from = google_monitoring_alert_policy.daily_cleanup_missing
  to   = module.plaid_token_lifecycle.google_monitoring_alert_policy.daily_cleanup_missing
}

moved {
  from = google_monitoring_dashboard.lifecycle
  to   = module.plaid_token_lifecycle.google_monitoring_dashboard.lifecycle
}

moved {
  from = google_pubsub_topic.scheduled
  to   = module.plaid_token_lifecycle.google_pubsub_topic.scheduled
}

moved {
  from = google_cloud_scheduler_job.scheduled
  to   = module.plaid_token_lifecycle.google_cloud_scheduler_job.scheduled
}

moved {
  from = google_secret_manager_secret.secret
  to   = module.plaid_token_lifecycle.google_secret_manager_secret.secret
}

moved {
  from = google_secret_manager_secret_version.value
  to   = module.plaid_token_lifecycle.google_secret_manager_secret_version.value
}

moved {
  from = google_storage_bucket.source
  to   = module.plaid_token_lifecycle.google_storage_bucket.source
}

moved {
  from = google_firestore_field.events_expire_at
  to   = module.plaid_token_lifecycle.google_firestore_field.expire_at["events"]
}

moved {
  from = google_storage_bucket_object.source
  to   = module.plaid_token_lifecycle.google_storage_bucket_object.source[0]
}
