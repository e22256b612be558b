# Cloud Scheduler jobs publishing to the two topics, in an explicit time zone
# (the old service's scheduler ran in the host's local time). Created with
# the functions (phase 2): a tick before them would be lost.

resource "google_cloud_scheduler_job" "scheduled" {
  for_each = var.deploy_functions ? local.topics : {}

  project     = var.project_id
  name        = each.value.name
  description = each.value.description
  region      = var.region
  schedule    = each.value.schedule
  time_zone   = var.time_zone
  # null (the default) leaves the job's state alone: Optional and Computed
  # in the provider, so a pause made with gcloud is not undone by an apply.
  paused = var.scheduler_paused

  pubsub_target {
    topic_name = google_pubsub_topic.scheduled[each.key].id
    # The payload DESIGN §4 documents for cleanup; analytics ignores it.
    data = base64encode(jsonencode({
      days_threshold = var.stale_days
      dry_run        = false
    }))
  }

  depends_on = [google_project_service.api, google_cloudfunctions2_function.function]
}
