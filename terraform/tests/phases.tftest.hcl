# The order of a first deployment on an empty project (docs/DEPLOY.md,
# modules/plaid-token-lifecycle/phases.tf): phase 1 without functions, the
# secret versions by hand, phase 2 with them; the wrong order is refused at
# plan time.

mock_provider "google" {
  # An empty project: no bindings yet.
  mock_data "google_project_iam_policy" {
    defaults = {
      policy_data = "{\"bindings\":[]}"
    }
  }

  mock_data "google_secret_manager_secret_version" {
    defaults = {
      enabled = true
    }
  }
}

variables {
  project_id      = "finwell-lifecycle"
  plaid_client_id = "client-id"
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

  assert {
    condition     = length(google_cloudfunctions2_function.function) == 0
    error_message = "phase 1 deploys no function"
  }

  assert {
    condition     = length(google_cloud_scheduler_job.scheduled) == 0 && length(google_cloud_run_service_iam_member.public_invoker) == 0 && length(google_cloud_run_service_iam_member.event_invoker) == 0 && length(google_project_iam_member.event_receiver) == 0
    error_message = "phase 1 creates no scheduler job, invoker binding or event receiver role"
  }

  assert {
    condition     = length(data.google_secret_manager_secret_version.required) == 0
    error_message = "phase 1 reads no secret version"
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
    condition     = length(google_service_account.function) == 8 && google_project_iam_member.build.role == "roles/run.builder"
    error_message = "phase 1 creates every runtime account and the build account's role (the mark of phase 1)"
  }

  assert {
    condition     = length(google_pubsub_topic.scheduled) == 2 && length(google_firebaserules_release.firestore) == 1
    error_message = "phase 1 creates the topics and releases the Firestore rules"
  }
}

run "phase_2_before_phase_1_is_refused" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  expect_failures = [
    data.google_secret_manager_secret_version.required,
  ]
}

run "phase_2_with_a_disabled_secret_version_is_refused" {
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

  override_data {
    target = data.google_secret_manager_secret_version.required
    values = {
      enabled = false
    }
  }

  expect_failures = [
    data.google_secret_manager_secret_version.required,
  ]
}

run "phase_2_after_phase_1_deploys_every_function" {
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

  assert {
    condition     = toset(keys(data.google_secret_manager_secret_version.required)) == toset(["plaid_secret", "token_encryption_key", "auth_jwt_secret"])
    error_message = "phase 2 checks a version of every enabled secret"
  }

  assert {
    condition     = length(google_cloudfunctions2_function.function) == 8 && length(google_cloud_scheduler_job.scheduled) == 2
    error_message = "phase 2 deploys the eight functions and both scheduler jobs"
  }
}

run "phase_2_of_a_prefixed_instance_looks_for_its_own_build_account" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    name_prefix = "stg-"
  }

  # Production's phase 1 does not count for staging.
  override_data {
    target = data.google_project_iam_policy.project
    values = {
      policy_data = "{\"bindings\":[{\"role\":\"roles/run.builder\",\"members\":[\"serviceAccount:plaid-functions-build@finwell-lifecycle.iam.gserviceaccount.com\"]}]}"
    }
  }

  expect_failures = [
    data.google_secret_manager_secret_version.required,
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

run "managed_secret_values_need_no_phases" {
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
    condition     = length(data.google_secret_manager_secret_version.required) == 0 && length(google_secret_manager_secret_version.value) == 3
    error_message = "with manage_secret_values = true the versions come from Terraform and nothing is read"
  }

  assert {
    condition     = length(google_cloudfunctions2_function.function) == 8
    error_message = "one apply deploys every function"
  }
}
