# The order of a first deployment (docs/DEPLOY.md), enforced at plan time.
#
# A function cannot deploy while one of its secrets has no version, and with
# manage_secret_values = false the versions are added by hand. So a new
# project is deployed in two phases:
#
#   1. deploy_functions = false: everything but the functions, the scheduler
#      jobs and the invoker bindings; the secrets exist without versions.
#   2. after `gcloud secrets versions add` for each enabled secret,
#      deploy_functions = true.
#
# Phase 2 refuses to plan before phase 1 was applied, and before every
# enabled secret has an enabled version; phase 1 refuses to plan where
# functions are deployed (it would delete them). What phase 1 was applied and
# whether functions are deployed is read from the project's IAM policy: it is
# readable on an empty project (Cloud Resource Manager, a prerequisite), where
# reading a secret would fail on the disabled Secret Manager API instead of
# saying what is wrong. Phase 1 grants the build account roles/run.builder
# (iam.tf); only phase 2 grants the trigger account roles/eventarc.eventReceiver.

locals {
  build_member   = "serviceAccount:${local.prefix}${local.build_account_id}@${var.project_id}.iam.gserviceaccount.com"
  trigger_member = "serviceAccount:${local.prefix}${local.trigger_account_id}@${var.project_id}.iam.gserviceaccount.com"

  phase1_applied = contains(flatten([
    for b in try(jsondecode(data.google_project_iam_policy.project.policy_data).bindings, []) : b.members if b.role == "roles/run.builder"
  ]), local.build_member)

  # Secrets whose versions phase 2 checks: added by hand, so not known to
  # this configuration.
  secrets_needing_versions = var.deploy_functions && !var.manage_secret_values ? local.enabled_secrets : {}
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
  }
}

# One read per secret at plan time (metadata only, never the payload): the
# latest version must exist and be enabled. The precondition runs before the
# read, so a project where phase 1 was never applied gets its message instead
# of a Secret Manager error.
data "google_secret_manager_secret_version" "required" {
  for_each = local.secrets_needing_versions

  project           = var.project_id
  secret            = each.value.secret_id
  fetch_secret_data = false

  lifecycle {
    precondition {
      condition     = local.phase1_applied
      error_message = "Phase 1 has not been applied to ${var.project_id} (no roles/run.builder binding for ${local.build_member}): run `terraform apply -var deploy_functions=false` first, add a version to each secret, then apply again (docs/DEPLOY.md)."
    }

    postcondition {
      condition     = self.enabled
      error_message = "The latest version of secret ${each.value.secret_id} (${each.value.env}) is disabled: add an enabled one with `gcloud secrets versions add ${each.value.secret_id} --project=${var.project_id} --data-file=-` (docs/DEPLOY.md)."
    }
  }
}
