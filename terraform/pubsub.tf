# Topics of the two scheduled functions (names fixed by DESIGN §3). Cloud
# Scheduler publishes to them (scheduler.tf); Eventarc delivers each message to
# its function (functions.tf). DailyCleanup also publishes its own
# continuation message to the daily topic when a run reaches RUN_TIME_BUDGET.

locals {
  topics = {
    daily = {
      name        = "plaid-token-daily-cleanup"
      schedule    = "0 2 * * *"
      description = "Daily Plaid token cleanup: removes expired, revoked and stale tokens (at Plaid first) and marks invalid ones."
    }
    weekly = {
      name        = "plaid-token-weekly-analytics"
      schedule    = "0 1 * * 0"
      description = "Weekly Plaid token analytics snapshot."
    }
  }
}

resource "google_pubsub_topic" "scheduled" {
  for_each = local.topics

  name = each.value.name

  # An undelivered message is worth keeping a day at most: the next schedule
  # tick starts a fresh run anyway.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.api]
}
