# The order of a first deployment on an empty project (docs/DEPLOY.md,
# modules/plaid-token-lifecycle/phases.tf): phase 1 without functions, the
# secret versions by hand, phase 2 with them; the wrong order is refused at
# plan time. And what later applies do with secrets: a secret created by the
# plan waits for its version, a version is pinned, a destroyed one refused.
#
# Mocked values are what hashicorp/google 7.45.0 returns: a secret version's
# destroy_time is "" unless the version was destroyed (the data source sets
# it from the API's destroyTime), and the project's policy lists the Pub/Sub
# service agent once Google created it.

mock_provider "google" {
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }

  # After phase 1: the build account's role marks it, and the Pub/Sub
  # service agent exists.
  mock_data "google_project_iam_policy" {
    defaults = {
      policy_data = "{\"bindings\":[{\"role\":\"roles/run.builder\",\"members\":[\"serviceAccount:plaid-functions-build@finwell-lifecycle.iam.gserviceaccount.com\"]},{\"role\":\"roles/pubsub.serviceAgent\",\"members\":[\"serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com\"]}]}"
    }
  }

  # The secrets phase 1 created.
  mock_data "google_secret_manager_secrets" {
    defaults = {
      secrets = [
        { secret_id = "plaid-secret" },
        { secret_id = "plaid-token-encryption-key" },
        { secret_id = "plaid-auth-jwt-secret" },
      ]
    }
  }

  mock_data "google_secret_manager_secret_version" {
    defaults = {
      version      = "1"
      destroy_time = ""
    }
  }
}

variables {
  project_id      = "finwell-lifecycle"
  plaid_client_id = "client-id"
  plaid_env       = "sandbox"
  source_zip_path = "tests/fixtures/source.zip.txt"
}

run "phase_1_creates_everything_but_the_functions" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    deploy_functions = false
    source_zip_path  = ""
  }

  # An empty project.
  override_data {
    target = data.google_project_iam_policy.project
    values = {
      policy_data = "{\"bindings\":[]}"
    }
  }

  assert {
    condition     = length(google_cloudfunctions2_function.function) == 0
    error_message = "phase 1 deploys no function"
  }

  assert {
    condition     = length(google_cloud_scheduler_job.scheduled) == 0 && length(google_cloud_run_service_iam_member.public_invoker) == 0 && length(google_cloud_run_service_iam_member.event_invoker) == 0 && length(google_project_iam_member.event_receiver) == 0
    error_message = "phase 1 creates no scheduler job, invoker binding or event receiver role"
  }

  assert {
    condition     = length(data.google_secret_manager_secrets.existing) == 0 && length(data.google_secret_manager_secret_version.latest) == 0
    error_message = "phase 1 reads no secret: Secret Manager may not even be enabled yet"
  }

  assert {
    condition     = toset(keys(google_secret_manager_secret.secret)) == toset(["plaid_secret", "token_encryption_key", "auth_jwt_secret"])
    error_message = "phase 1 creates the enabled secrets"
  }

  assert {
    condition     = length(google_secret_manager_secret_version.value) == 0
    error_message = "with manage_secret_values = false, Terraform creates no secret version"
  }

  assert {
    condition     = length(google_service_account.function) == 12 && google_project_iam_member.build.role == "roles/run.builder"
    error_message = "phase 1 creates every runtime account and the build account's role (the mark of phase 1)"
  }

  assert {
    condition     = length(google_pubsub_topic.scheduled) == 2 && length(google_firebaserules_release.firestore) == 1
    error_message = "phase 1 creates the topics and releases the Firestore rules"
  }

  assert {
    condition     = length(google_logging_metric.token_activity) == 5 && length(google_monitoring_alert_policy.cleanup_failed) == 0 && length(google_monitoring_alert_policy.invalid_token_rate) == 0 && length(google_monitoring_alert_policy.daily_cleanup_missing) == 0
    error_message = "phase 1 creates the log-based metrics and no alert policy: Cloud Monitoring knows a new metric only minutes later"
  }

  assert {
    condition     = length(google_service_account_iam_member.pubsub_token_creator) == 0
    error_message = "phase 1 grants the Pub/Sub service agent nothing: on a new project it may not exist yet"
  }
}

run "phase_2_before_phase_1_is_refused" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  override_data {
    target = data.google_project_iam_policy.project
    values = {
      policy_data = "{\"bindings\":[]}"
    }
  }

  expect_failures = [
    data.google_project_iam_policy.project,
  ]
}

run "phase_2_after_phase_1_deploys_every_function" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  assert {
    condition     = toset(keys(data.google_secret_manager_secret_version.latest)) == toset(["plaid_secret", "token_encryption_key", "auth_jwt_secret"])
    error_message = "phase 2 reads the latest version of every enabled secret"
  }

  assert {
    condition     = length(google_cloudfunctions2_function.function) == 12 && length(google_cloud_scheduler_job.scheduled) == 2
    error_message = "phase 2 deploys the twelve functions and both scheduler jobs"
  }

  assert {
    condition = alltrue([
      for s in google_cloudfunctions2_function.function["RevokeItem"].service_config[0].secret_environment_variables : s.version == "1"
    ]) && length(google_cloudfunctions2_function.function["RevokeItem"].service_config[0].secret_environment_variables) == 3
    error_message = "RevokeItem gets its three secrets, each pinned to the version the plan read (not \"latest\")"
  }

  assert {
    condition     = length(google_monitoring_alert_policy.cleanup_failed) == 1 && length(google_monitoring_alert_policy.invalid_token_rate) == 1 && length(google_monitoring_alert_policy.daily_cleanup_missing) == 1
    error_message = "phase 2 creates the alert policies"
  }

  assert {
    condition     = google_service_account_iam_member.pubsub_token_creator[0].member == "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    error_message = "phase 2 lets the Pub/Sub service agent sign pushes for the trigger account"
  }
}

run "phase_2_beside_an_old_scheduler_pauses_the_jobs" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    scheduler_paused = true
  }

  assert {
    condition     = length(google_cloud_scheduler_job.scheduled) == 2 && alltrue([for j in google_cloud_scheduler_job.scheduled : j.paused == true])
    error_message = "scheduler_paused = true creates both jobs paused: the old service's scheduler still runs a cleanup"
  }
}

run "the_schedule_starts_when_the_old_scheduler_is_gone" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    scheduler_paused = false
  }

  assert {
    condition     = alltrue([for j in google_cloud_scheduler_job.scheduled : j.paused == false])
    error_message = "scheduler_paused = false resumes both jobs"
  }
}

run "phase_2_of_a_prefixed_instance_looks_for_its_own_build_account" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  # Production's phase 1 does not count for staging.
  variables {
    name_prefix = "stg-"
  }

  expect_failures = [
    data.google_project_iam_policy.project,
  ]
}

run "phase_1_where_functions_are_deployed_is_refused" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    deploy_functions = false
  }

  override_data {
    target = data.google_project_iam_policy.project
    values = {
      policy_data = "{\"bindings\":[{\"role\":\"roles/run.builder\",\"members\":[\"serviceAccount:plaid-functions-build@finwell-lifecycle.iam.gserviceaccount.com\"]},{\"role\":\"roles/eventarc.eventReceiver\",\"members\":[\"serviceAccount:plaid-event-trigger@finwell-lifecycle.iam.gserviceaccount.com\"]}]}"
    }
  }

  expect_failures = [
    data.google_project_iam_policy.project,
  ]
}

run "phase_2_without_the_pubsub_service_agent_is_refused" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  override_data {
    target = data.google_project_iam_policy.project
    values = {
      policy_data = "{\"bindings\":[{\"role\":\"roles/run.builder\",\"members\":[\"serviceAccount:plaid-functions-build@finwell-lifecycle.iam.gserviceaccount.com\"]}]}"
    }
  }

  expect_failures = [
    google_service_account_iam_member.pubsub_token_creator,
  ]
}

run "a_destroyed_latest_version_is_refused" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  override_data {
    target = data.google_secret_manager_secret_version.latest["token_encryption_key"]
    values = {
      version      = "4"
      destroy_time = "2026-11-30T09:15:00.123456Z"
    }
  }

  expect_failures = [
    data.google_secret_manager_secret_version.latest,
  ]
}

run "a_required_secret_without_a_version_is_refused" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  # plaid-secret was deleted since phase 1: nothing to pin.
  override_data {
    target = data.google_secret_manager_secrets.existing
    values = {
      secrets = [
        { secret_id = "plaid-token-encryption-key" },
        { secret_id = "plaid-auth-jwt-secret" },
      ]
    }
  }

  expect_failures = [
    google_cloudfunctions2_function.function,
    check.secrets_waiting_for_a_version,
  ]
}

# Key rotation (docs/DEPLOY.md): turning on the previous keys creates their
# secret, which this plan cannot read yet. The functions keep running
# without it; a check says it waits for a version.
run "a_secret_this_plan_creates_waits_for_its_version" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    enable_previous_encryption_keys = true
  }

  assert {
    condition     = contains(keys(google_secret_manager_secret.secret), "token_encryption_key_previous") && !contains(keys(data.google_secret_manager_secret_version.latest), "token_encryption_key_previous")
    error_message = "the previous-keys secret is created and its versions are not read"
  }

  assert {
    condition     = !contains([for s in google_cloudfunctions2_function.function["DailyCleanup"].service_config[0].secret_environment_variables : s.key], "TOKEN_ENCRYPTION_KEY_PREVIOUS")
    error_message = "no function is given a secret without a version"
  }

  assert {
    condition     = contains(keys(google_secret_manager_secret_iam_member.function), "DailyCleanup token_encryption_key_previous")
    error_message = "the functions may read it already, so the next apply only adds it"
  }

  expect_failures = [
    check.secrets_waiting_for_a_version,
  ]
}

run "once_it_has_a_version_the_secret_is_given" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    enable_previous_encryption_keys = true
  }

  override_data {
    target = data.google_secret_manager_secrets.existing
    values = {
      secrets = [
        { secret_id = "plaid-secret" },
        { secret_id = "plaid-token-encryption-key" },
        { secret_id = "plaid-token-encryption-key-previous" },
        { secret_id = "plaid-auth-jwt-secret" },
      ]
    }
  }

  # The rotation: a new version of the key, the old one moved to the
  # previous keys.
  override_data {
    target = data.google_secret_manager_secret_version.latest["token_encryption_key"]
    values = {
      version      = "2"
      destroy_time = ""
    }
  }

  assert {
    condition = {
      for s in google_cloudfunctions2_function.function["DailyCleanup"].service_config[0].secret_environment_variables : s.key => s.version
    } == { PLAID_SECRET = "1", TOKEN_ENCRYPTION_KEY = "2", TOKEN_ENCRYPTION_KEY_PREVIOUS = "1" }
    error_message = "DailyCleanup gets the new key's version and the previous keys, each pinned"
  }
}

# The JWT secret beside a JWKS, turned on later: the functions still have a
# verifier meanwhile, so it may wait for its version.
run "the_jwt_secret_beside_a_jwks_may_wait" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    auth_jwks_url = "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"
    auth_issuer   = "https://securetoken.google.com/finwell"
    auth_audience = "finwell"
  }

  override_data {
    target = data.google_secret_manager_secrets.existing
    values = {
      secrets = [
        { secret_id = "plaid-secret" },
        { secret_id = "plaid-token-encryption-key" },
      ]
    }
  }

  assert {
    condition     = length(google_cloudfunctions2_function.function) == 12 && !contains([for s in google_cloudfunctions2_function.function["RevokeItem"].service_config[0].secret_environment_variables : s.key], "AUTH_JWT_SECRET")
    error_message = "the functions deploy with the JWKS alone until the JWT secret has a version"
  }

  expect_failures = [
    check.secrets_waiting_for_a_version,
  ]
}

# The JWT secret is the only verifier: without its version the functions
# that authenticate users would answer 503.
run "the_only_jwt_verifier_cannot_wait" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  override_data {
    target = data.google_secret_manager_secrets.existing
    values = {
      secrets = [
        { secret_id = "plaid-secret" },
        { secret_id = "plaid-token-encryption-key" },
      ]
    }
  }

  expect_failures = [
    google_cloudfunctions2_function.function,
    check.secrets_waiting_for_a_version,
  ]
}

run "managed_secret_values_take_the_same_two_phases" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    manage_secret_values = true
    plaid_secret         = "plaid-secret-value"
    token_encryption_key = "0123456789abcdef0123456789abcdef"
    auth_jwt_secret      = "fedcba9876543210fedcba9876543210"
  }

  override_data {
    target = data.google_project_iam_policy.project
    values = {
      policy_data = "{\"bindings\":[]}"
    }
  }

  expect_failures = [
    data.google_project_iam_policy.project,
  ]
}

run "managed_secret_values_after_phase_1" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    manage_secret_values = true
    plaid_secret         = "plaid-secret-value"
    token_encryption_key = "0123456789abcdef0123456789abcdef"
    auth_jwt_secret      = "fedcba9876543210fedcba9876543210"
  }

  assert {
    condition     = length(data.google_secret_manager_secrets.existing) == 0 && length(data.google_secret_manager_secret_version.latest) == 0 && length(google_secret_manager_secret_version.value) == 3
    error_message = "with manage_secret_values = true the versions come from Terraform and nothing is read"
  }

  assert {
    condition     = length(google_cloudfunctions2_function.function) == 12
    error_message = "every function deploys"
  }
}
