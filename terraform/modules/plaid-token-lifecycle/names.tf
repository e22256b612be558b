# Names and labels. Every name that must be unique in a project carries
# var.name_prefix, so two instances of this module (staging and production,
# say) can share one; with the default "" the names are those of DESIGN §3.

locals {
  prefix = var.name_prefix

  # Log-based metric names, PromQL and custom role ids use them:
  # underscores, not hyphens, so that logging.googleapis.com/user/<name>
  # maps to the same PromQL name and role ids stay valid.
  metric_prefix = replace(var.name_prefix, "-", "_")

  # Titles of alert policies, notification channel and dashboard.
  title_prefix = var.name_prefix == "" ? "" : "[${trimsuffix(var.name_prefix, "-")}] "

  labels = merge(
    {
      app      = "plaid-token-lifecycle"
      instance = var.name_prefix == "" ? "default" : trimsuffix(var.name_prefix, "-")
    },
    var.labels,
  )

  # Names without the prefix. They depend on no variable, so that the
  # validation of name_prefix can read them: service account ids are at
  # most 30 characters with the prefix. The runtime identities are named
  # like their functions (functions.tf, iam.tf).
  function_base_names = { for fn, f in local.function_catalog : fn => f.base_name }
  build_account_id    = "plaid-functions-build"
  trigger_account_id  = "plaid-event-trigger"
  service_account_ids = concat(values(local.function_base_names), [local.build_account_id, local.trigger_account_id])
}
