# The order of a first deployment (docs/DEPLOY.md), enforced at plan time.
#
# A function cannot deploy while one of its secrets has no version, and an
# alert policy cannot name a log-based metric until about ten minutes after
# the metric was created. So a new project is deployed in two phases:
#
#   1. deploy_functions = false: everything but the functions, the scheduler
#      jobs, the alert policies and the invoker bindings; the secrets exist,
#      without versions unless manage_secret_values.
#   2. after `gcloud secrets versions add` for each enabled secret, and at
#      least ten minutes after phase 1: deploy_functions = true.
#
# Phase 2 refuses to plan before phase 1 was applied, phase 1 refuses to
# plan where functions are deployed (it would delete them). Both are read
# from the project's IAM policy: it is readable on an empty project (Cloud
# Resource Manager, a prerequisite), where reading a secret would fail on
# the disabled Secret Manager API instead of saying what is wrong. Phase 1
# grants the build account roles/run.builder (iam.tf); only phase 2 grants
# the trigger account roles/eventarc.eventReceiver.

locals {
  build_member   = "serviceAccount:${local.prefix}${local.build_account_id}@${var.project_id}.iam.gserviceaccount.com"
  trigger_member = "serviceAccount:${local.prefix}${local.trigger_account_id}@${var.project_id}.iam.gserviceaccount.com"

  # The Pub/Sub service agent signs the pushes of the scheduled functions'
  # triggers. Google creates it some time after the API is enabled, and
  # grants it roles/pubsub.serviceAgent when it does.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  policy_bindings = try(jsondecode(data.google_project_iam_policy.project.policy_data).bindings, [])
  pubsub_agent_exists = contains(flatten([
    for b in local.policy_bindings : b.members if b.role == "roles/pubsub.serviceAgent"
  ]), local.pubsub_agent)

  # Log-based metrics take up to ten minutes to be usable in an alert
  # policy's filter (Cloud Monitoring answers "Cannot find metric(s)"
  # meanwhile). Phase 1 creates them together with the secrets, so the
  # secrets' creation time tells how old the metrics are.
  metrics_created_at = google_secret_manager_secret.secret["plaid_secret"].create_time
  metrics_usable_at  = timeadd(local.metrics_created_at, "10m")
}

data "google_project_iam_policy" "project" {
  project = var.project_id

  lifecycle {
    postcondition {
      condition = var.deploy_functions || !contains(flatten([
        for b in try(jsondecode(self.policy_data).bindings, []) : b.members if b.role == "roles/eventarc.eventReceiver"
      ]), local.trigger_member)
      error_message = "deploy_functions = false, but the functions of this instance (name_prefix \"${local.prefix}\") are deployed in ${var.project_id}: planning phase 1 again would delete them. Keep deploy_functions = true."
    }

    postcondition {
      condition = !var.deploy_functions || contains(flatten([
        for b in try(jsondecode(self.policy_data).bindings, []) : b.members if b.role == "roles/run.builder"
      ]), local.build_member)
      error_message = "Phase 1 has not been applied to ${var.project_id} (no roles/run.builder binding for ${local.build_member}): run `terraform apply -var deploy_functions=false` first, add a version to each secret, then apply again (docs/DEPLOY.md)."
    }
  }
}

# The secrets that exist (metadata only), so that the plan reads versions
# only of those: a secret this plan creates has none yet. Read after the
# project's policy, whose postconditions say first what is wrong.
data "google_secret_manager_secrets" "existing" {
  count = local.read_secret_versions ? 1 : 0

  project = var.project_id

  depends_on = [data.google_project_iam_policy.project]
}

# The latest version of each existing secret: its number (pinned in the
# functions) and, never its payload. Secret Manager's "latest" is the newest
# version whatever its state, and this data source reports any version as
# enabled (hashicorp/google 7.45.0 sets enabled = true unconditionally), so
# a disabled latest version is not seen here: `deploytool check-config`
# catches it before the apply (docs/DEPLOY.md). A destroyed one is: the
# API reports its destroyTime. A secret without any version fails here with
# the provider's "not found or has no versions".
data "google_secret_manager_secret_version" "latest" {
  for_each = local.secrets_to_read

  project           = var.project_id
  secret            = each.value.secret_id
  fetch_secret_data = false

  lifecycle {
    postcondition {
      condition     = self.destroy_time == null || self.destroy_time == ""
      error_message = "The latest version of secret ${each.value.secret_id} (${each.value.env}), version ${self.version}, was destroyed: add a new one with `gcloud secrets versions add ${each.value.secret_id} --project=${var.project_id} --data-file=-` (docs/DEPLOY.md)."
    }
  }
}
