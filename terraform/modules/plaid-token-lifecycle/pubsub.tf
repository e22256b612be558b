# Topics of the two scheduled functions (names fixed by DESIGN §3, behind
# name_prefix). Cloud Scheduler publishes to them (scheduler.tf); Eventarc
# delivers each message to its function (functions.tf). DailyCleanup
# publishes its own continuations to the daily topic, and TokenCleanup hands
# a long run over to it; TokenAnalytics publishes `?exact=true` repair
# requests to the weekly topic.

locals {
  topics = {
    daily = {
      name        = "${local.prefix}plaid-token-daily-cleanup"
      schedule    = "0 2 * * *"
      description = "Daily Plaid token cleanup: removes expired, revoked and stale tokens (at Plaid first) and marks invalid ones."
    }
    weekly = {
      name        = "${local.prefix}plaid-token-weekly-analytics"
      schedule    = "0 1 * * 0"
      description = "Weekly Plaid token analytics: recounts every token and repairs the counters."
    }
  }
}

resource "google_pubsub_topic" "scheduled" {
  for_each = local.topics

  project = var.project_id
  name    = each.value.name
  labels  = local.labels

  # An undelivered message is worth keeping a day at most: the next schedule
  # tick starts a fresh run anyway.
  message_retention_duration = "86400s"

  kms_key_name = var.kms_key_name != "" ? var.kms_key_name : null

  depends_on = [google_project_service.api, google_kms_crypto_key_iam_member.regional]
}
