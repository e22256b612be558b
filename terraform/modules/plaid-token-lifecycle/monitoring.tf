# Log-based metrics, alert policies and a dashboard.
#
# The functions log one JSON object per line with Cloud Logging's keys
# (DESIGN §11); gen2 functions log as resource.type "cloud_run_revision" with
# the function name as service_name. The metrics rely on these entries:
#
#   message "cleanup run finished": once per cleanup run (scheduled or HTTP),
#     after its last invocation, with the whole run's statistics:
#     outcome ("succeeded" | "failed"), invalid_marked, total_checked, and
#     dry_run (true for dry runs, which are left out of the token counts).
#   message "plaid call failed": every failed Plaid call, with
#     plaid_error_class (gone | needs_user | transient | configuration).
#   message "token activity": TokenStats, for each write to plaid_tokens it
#     counted that created, used or removed tokens: created, used, removed,
#     linked, repaired
#     (tokens; "used" = last_used_at moved to a later UTC day). The analytics
#     counters live in Firestore, not in Cloud Monitoring: these lines are
#     how the dashboard sees the same trend.
#   message "analytics institution": WeeklyAnalytics, once per run and
#     institution (the 20 largest, then "(other institutions)"):
#     institution, tokens, trigger ("schedule" for the weekly run).

locals {
  log_filter = format(
    "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(%s)",
    join(" OR ", [for f in local.functions : "\"${f.name}\""]),
  )
  cleanup_finished_filter = "${local.log_filter} AND jsonPayload.message=\"cleanup run finished\""

  # Cloud Monitoring filter for the functions' built-in Cloud Run metrics.
  service_metric_filter = format(
    "resource.type=\"cloud_run_revision\" AND resource.label.service_name=one_of(%s)",
    join(", ", [for f in local.functions : "\"${f.name}\""]),
  )

  notification_channels = concat(var.notification_channels, google_monitoring_notification_channel.email[*].name)

  # PromQL names of the log-based metrics (logging.googleapis.com/user/NAME).
  promql_invalid_marked = "logging_googleapis_com:user_${google_logging_metric.invalid_marked.name}_sum{monitored_resource=\"cloud_run_revision\"}"
  promql_total_checked  = "logging_googleapis_com:user_${google_logging_metric.total_checked.name}_sum{monitored_resource=\"cloud_run_revision\"}"
  promql_token_activity = {
    for k, m in google_logging_metric.token_activity :
    k => "logging_googleapis_com:user_${m.name}_sum{monitored_resource=\"cloud_run_revision\"}"
  }
  promql_institution_tokens = "logging_googleapis_com:user_${google_logging_metric.institution_tokens.name}_sum{monitored_resource=\"cloud_run_revision\"}"

  # The trend TokenStats logs: tokens created, used (on a later day than
  # before) and removed, and the Link flow's Items linked and repaired.
  token_activity = {
    created  = "Tokens created (linked, or written by any writer)"
    used     = "Tokens used (last_used_at moved to a later day)"
    removed  = "Tokens removed (deleted, by cleanup or any writer)"
    linked   = "Items linked (an active token created on the day of its own created_at)"
    repaired = "Items repaired (an active token's error_code cleared: update mode and verify, LOGIN_REPAIRED, a validation)"
  }
}

# --- Log-based metrics -------------------------------------------------------

resource "google_logging_metric" "cleanup_runs" {
  project     = var.project_id
  name        = "${local.metric_prefix}plaid_token_cleanup_runs"
  description = "Finished Plaid token cleanup runs, by outcome (succeeded or failed). The failed ones drive the failed-run alert."
  filter      = local.cleanup_finished_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Plaid token cleanup runs"

    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "succeeded or failed"
    }
  }

  label_extractors = {
    outcome = "EXTRACT(jsonPayload.outcome)"
  }

  depends_on = [google_project_service.api]
}

resource "google_logging_metric" "invalid_marked" {
  project     = var.project_id
  name        = "${local.metric_prefix}plaid_token_invalid_marked"
  description = "Tokens a cleanup run found invalid at Plaid and marked expired (statistics.invalid_marked), one value per run. Dry runs are left out."
  filter      = "${local.cleanup_finished_filter} AND NOT jsonPayload.dry_run=true"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "Plaid tokens marked invalid per cleanup run"
  }

  value_extractor = "EXTRACT(jsonPayload.invalid_marked)"

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_logging_metric" "total_checked" {
  project     = var.project_id
  name        = "${local.metric_prefix}plaid_token_total_checked"
  description = "Tokens a cleanup run examined (statistics.total_checked), one value per run: the denominator of the invalid-token rate. Dry runs are left out."
  filter      = "${local.cleanup_finished_filter} AND NOT jsonPayload.dry_run=true"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "Plaid tokens checked per cleanup run"
  }

  value_extractor = "EXTRACT(jsonPayload.total_checked)"

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_logging_metric" "plaid_errors" {
  project     = var.project_id
  name        = "${local.metric_prefix}plaid_token_plaid_errors"
  description = "Failed Plaid calls by error class: gone (token dead), needs_user, transient (rate limit, 5xx, timeout), configuration (keys, institution)."
  filter      = "${local.log_filter} AND jsonPayload.message=\"plaid call failed\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Plaid errors"

    labels {
      key         = "error_class"
      value_type  = "STRING"
      description = "gone, needs_user, transient or configuration"
    }
  }

  label_extractors = {
    error_class = "EXTRACT(jsonPayload.plaid_error_class)"
  }

  depends_on = [google_project_service.api]
}

resource "google_logging_metric" "token_activity" {
  for_each = local.token_activity

  project     = var.project_id
  name        = "${local.metric_prefix}plaid_token_${each.key}"
  description = "${each.value}: the ${each.key} field of TokenStats' \"token activity\" entries, the same trend the analytics counters keep per day."
  filter      = "${local.log_filter} AND jsonPayload.message=\"token activity\" AND jsonPayload.${each.key}>0"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = each.value
  }

  value_extractor = "EXTRACT(jsonPayload.${each.key})"

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 16
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_logging_metric" "institution_tokens" {
  project     = var.project_id
  name        = "${local.metric_prefix}plaid_token_institution_tokens"
  description = "Tokens per institution, from the weekly recount (WeeklyAnalytics' \"analytics institution\" entries: the 20 largest institutions and the rest together)."
  filter      = "${local.log_filter} AND jsonPayload.message=\"analytics institution\" AND jsonPayload.trigger=\"schedule\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "Plaid tokens per institution (weekly)"

    labels {
      key         = "institution"
      value_type  = "STRING"
      description = "institution_name (Unknown when missing)"
    }
  }

  value_extractor = "EXTRACT(jsonPayload.tokens)"
  label_extractors = {
    institution = "EXTRACT(jsonPayload.institution)"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.api]
}

# --- Alerts ------------------------------------------------------------------

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email != "" ? 1 : 0

  project      = var.project_id
  display_name = "${local.title_prefix}plaid-token-lifecycle alerts"
  type         = "email"
  user_labels  = local.labels
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.api]
}

# The alert policies come with the functions (phase 2): they name the
# log-based metrics above, which Cloud Monitoring knows only about ten
# minutes after they were created (phases.tf).

resource "google_monitoring_alert_policy" "cleanup_failed" {
  count = var.deploy_functions ? 1 : 0

  project               = var.project_id
  display_name          = "${local.title_prefix}Plaid token cleanup run failed"
  user_labels           = local.labels
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "A cleanup run finished with outcome failed"

    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.cleanup_runs.name}\" AND metric.label.outcome=\"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  lifecycle {
    # Refused at plan time rather than failed halfway through the apply.
    # Unknown (skipped) while the secrets are planned too: a single apply
    # on an empty project is not the documented order.
    precondition {
      condition     = timecmp(plantimestamp(), local.metrics_usable_at) >= 0
      error_message = "Phase 1 created the log-based metrics at ${local.metrics_created_at}; alert policies can name them from ${local.metrics_usable_at} (Cloud Monitoring answers \"Cannot find metric(s)\" until then). Plan phase 2 again after that."
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Plaid token cleanup run failed"
    content   = <<-EOT
      A Plaid token cleanup run ended with `outcome: failed`. Tokens that should have been removed
      may still be billed by Plaid until the next successful run.

      Logs: `jsonPayload.message="cleanup run finished" AND jsonPayload.outcome="failed"`, then the
      ERROR entries of the same function around it. The run record is in the `plaid_token_runs`
      collection. Re-run with `go run ./scripts/manage-tokens cleanup --days 90 --dry-run` first.
    EOT
  }
}

resource "google_monitoring_alert_policy" "invalid_token_rate" {
  count = var.deploy_functions ? 1 : 0

  project               = var.project_id
  display_name          = "${local.title_prefix}Plaid invalid-token rate high"
  user_labels           = local.labels
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Tokens marked invalid / tokens checked over one day above ${var.invalid_token_rate_threshold}"

    condition_prometheus_query_language {
      query = join("\n", [
        "(sum(increase(${local.promql_invalid_marked}[1d])) / sum(increase(${local.promql_total_checked}[1d]))) > ${var.invalid_token_rate_threshold}",
        "and",
        "sum(increase(${local.promql_total_checked}[1d])) >= ${var.invalid_token_rate_min_checked}",
      ])
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Many Plaid tokens found invalid"
    content   = <<-EOT
      More than ${var.invalid_token_rate_threshold * 100}% of the tokens checked in the last day were
      marked invalid (ITEM_NOT_FOUND, INVALID_ACCESS_TOKEN, USER_PERMISSION_REVOKED). A wave like
      this is rarely users: check PLAID_ENV and PLAID_CLIENT_ID against the tokens' environment,
      Plaid's status page, and the "Plaid errors by class" chart on the dashboard.
    EOT
  }
}

resource "google_monitoring_alert_policy" "daily_cleanup_missing" {
  count = var.deploy_functions ? 1 : 0

  project               = var.project_id
  display_name          = "${local.title_prefix}Plaid daily token cleanup did not run"
  user_labels           = local.labels
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "No daily cleanup run finished in 26 hours"

    condition_prometheus_query_language {
      query               = "absent_over_time(logging_googleapis_com:user_${google_logging_metric.cleanup_runs.name}{monitored_resource=\"cloud_run_revision\",service_name=\"${local.functions.DailyCleanup.name}\"}[26h])"
      duration            = "0s"
      evaluation_interval = "600s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Plaid daily token cleanup did not run"
    content   = <<-EOT
      No scheduled cleanup finished in the last 26 hours (schedule `0 2 * * *`, ${var.time_zone}).
      Also open right after the first deployment, until the first nightly run. Check the Cloud
      Scheduler job `${local.topics.daily.name}`, the Eventarc trigger of `${local.functions.DailyCleanup.name}`
      and its logs (a run that keeps hitting RUN_TIME_BUDGET continues through the same topic).
    EOT
  }
}

# --- Dashboard ---------------------------------------------------------------

locals {
  dashboard_tiles = [
    {
      title = "Cleanup runs by outcome"
      widget = {
        xyChart = {
          dataSets = [{
            plotType = "STACKED_BAR"
            timeSeriesQuery = {
              timeSeriesFilter = {
                filter = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.cleanup_runs.name}\""
                aggregation = {
                  alignmentPeriod    = "3600s"
                  perSeriesAligner   = "ALIGN_SUM"
                  crossSeriesReducer = "REDUCE_SUM"
                  groupByFields      = ["metric.label.\"outcome\""]
                }
              }
            }
          }]
        }
      }
    },
    {
      title = "Tokens checked and marked invalid (per hour)"
      widget = {
        xyChart = {
          dataSets = [
            {
              plotType        = "LINE"
              legendTemplate  = "checked"
              timeSeriesQuery = { prometheusQuery = "sum(increase(${local.promql_total_checked}[1h]))" }
            },
            {
              plotType        = "LINE"
              legendTemplate  = "marked invalid"
              timeSeriesQuery = { prometheusQuery = "sum(increase(${local.promql_invalid_marked}[1h]))" }
            },
          ]
        }
      }
    },
    {
      title = "Tokens created, used and removed; Items linked and repaired (per day)"
      widget = {
        xyChart = {
          dataSets = [
            for k in keys(local.token_activity) : {
              plotType        = "LINE"
              legendTemplate  = k
              timeSeriesQuery = { prometheusQuery = "sum(increase(${local.promql_token_activity[k]}[1d]))" }
            }
          ]
        }
      }
    },
    {
      title = "Tokens by institution (weekly recount)"
      widget = {
        xyChart = {
          dataSets = [{
            plotType        = "STACKED_BAR"
            legendTemplate  = "{{institution}}"
            timeSeriesQuery = { prometheusQuery = "sum by (institution) (increase(${local.promql_institution_tokens}[7d]))" }
          }]
        }
      }
    },
    {
      title = "Plaid errors by class"
      widget = {
        xyChart = {
          dataSets = [{
            plotType = "STACKED_BAR"
            timeSeriesQuery = {
              timeSeriesFilter = {
                filter = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.plaid_errors.name}\""
                aggregation = {
                  alignmentPeriod    = "3600s"
                  perSeriesAligner   = "ALIGN_SUM"
                  crossSeriesReducer = "REDUCE_SUM"
                  groupByFields      = ["metric.label.\"error_class\""]
                }
              }
            }
          }]
        }
      }
    },
    {
      title = "Requests by function and response class"
      widget = {
        xyChart = {
          dataSets = [{
            plotType = "LINE"
            timeSeriesQuery = {
              timeSeriesFilter = {
                filter = "${local.service_metric_filter} AND metric.type=\"run.googleapis.com/request_count\""
                aggregation = {
                  alignmentPeriod    = "300s"
                  perSeriesAligner   = "ALIGN_RATE"
                  crossSeriesReducer = "REDUCE_SUM"
                  groupByFields      = ["resource.label.\"service_name\"", "metric.label.\"response_code_class\""]
                }
              }
            }
          }]
        }
      }
    },
    {
      title = "Request latency p95 by function"
      widget = {
        xyChart = {
          dataSets = [{
            plotType = "LINE"
            timeSeriesQuery = {
              timeSeriesFilter = {
                filter = "${local.service_metric_filter} AND metric.type=\"run.googleapis.com/request_latencies\""
                aggregation = {
                  alignmentPeriod    = "300s"
                  perSeriesAligner   = "ALIGN_DELTA"
                  crossSeriesReducer = "REDUCE_PERCENTILE_95"
                  groupByFields      = ["resource.label.\"service_name\""]
                }
              }
            }
          }]
        }
      }
    },
  ]

  # The failed-run alert exists from phase 2 on.
  alert_tiles = [
    for a in google_monitoring_alert_policy.cleanup_failed : {
      title  = "Alert: cleanup run failed"
      widget = { alertChart = { name = a.name } }
    }
  ]
}

resource "google_monitoring_dashboard" "lifecycle" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "${local.title_prefix}Plaid token lifecycle"
    mosaicLayout = {
      columns = 48
      tiles = concat(
        [
          for i, t in concat(local.dashboard_tiles, local.alert_tiles) : {
            xPos   = (i % 2) * 24
            yPos   = floor(i / 2) * 16
            width  = 24
            height = 16
            widget = merge({ title = t.title }, t.widget)
          }
        ],
        [{
          xPos   = 0
          yPos   = ceil(length(concat(local.dashboard_tiles, local.alert_tiles)) / 2) * 16
          width  = 48
          height = 16
          widget = {
            title = "Warnings and errors"
            logsPanel = {
              filter        = "${local.log_filter} AND severity>=WARNING"
              resourceNames = ["projects/${var.project_id}"]
            }
          }
        }],
      )
    }
  })

  depends_on = [google_project_service.api]
}
