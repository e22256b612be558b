# A first deployment applied in its documented order, then a change of the
# Firestore rules: what each apply leaves for the next plan to see.
#
# Phase 1 creates the log-based metrics, which Cloud Monitoring lets an
# alert policy name only about ten minutes later; phase 2 creates the
# alert policies and is refused before then. The secrets' create_time (set
# by the API, RFC 3339) dates phase 1.

mock_provider "google" {
  # Applied, a mock's computed values must pass the provider's validation
  # (an IAM member is "serviceAccount:<email>").
  mock_resource "google_service_account" {
    defaults = {
      email  = "mock-account@finwell-lifecycle.iam.gserviceaccount.com"
      member = "serviceAccount:mock-account@finwell-lifecycle.iam.gserviceaccount.com"
      name   = "projects/finwell-lifecycle/serviceAccounts/mock-account@finwell-lifecycle.iam.gserviceaccount.com"
    }
  }

  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }

  mock_data "google_project_iam_policy" {
    defaults = {
      policy_data = "{\"bindings\":[{\"role\":\"roles/run.builder\",\"members\":[\"serviceAccount:plaid-functions-build@finwell-lifecycle.iam.gserviceaccount.com\"]},{\"role\":\"roles/pubsub.serviceAgent\",\"members\":[\"serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com\"]}]}"
    }
  }

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
  plaid_env       = "production"
  source_zip_path = "tests/fixtures/source.zip.txt"
}

run "phase_1_just_applied" {
  command   = apply
  state_key = "fast_operator"

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    deploy_functions = false
  }

  override_data {
    target = data.google_project_iam_policy.project
    values = {
      policy_data = "{\"bindings\":[]}"
    }
  }

  # Created a minute ago, as far as the next plan can tell: a date ahead
  # of any clock this test runs on stands for "less than ten minutes".
  override_resource {
    target = google_secret_manager_secret.secret
    values = {
      create_time = "2999-01-01T00:00:00.123456Z"
    }
  }
}

run "phase_2_right_after_phase_1_is_refused" {
  command   = plan
  state_key = "fast_operator"

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  expect_failures = [
    google_monitoring_alert_policy.cleanup_failed,
  ]
}

run "phase_1_applied_ten_minutes_ago" {
  command = apply

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    deploy_functions = false
  }

  override_data {
    target = data.google_project_iam_policy.project
    values = {
      policy_data = "{\"bindings\":[]}"
    }
  }

  override_resource {
    target = google_secret_manager_secret.secret
    values = {
      create_time = "2026-01-01T00:00:00.123456Z"
    }
  }
}

run "phase_2" {
  command = apply

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  assert {
    condition     = length(google_cloudfunctions2_function.function) == 12 && length(google_monitoring_alert_policy.cleanup_failed) == 1
    error_message = "phase 2 deploys the functions and the alert policies"
  }
}

# Terraform creates the new ruleset and leaves the release where it is:
# replacing the release would delete it first (a moment without rules), and
# `deploytool release-rules` moves it in place instead.
run "new_rules_leave_the_release_to_deploytool" {
  command = apply

  # A ruleset is immutable: hashicorp/google replaces it when its source
  # changes (a mock provider plans no replacement of its own).
  plan_options {
    replace = [google_firebaserules_ruleset.firestore[0]]
  }

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    firestore_app_rules = <<-EOT
      match /users/{userId} {
        allow read, write: if request.auth != null && request.auth.uid == userId;
      }
    EOT
  }

  assert {
    condition     = output.firestore_rules_release.ruleset != run.phase_2.firestore_rules_release.ruleset
    error_message = "the new rules are a new ruleset"
  }

  assert {
    condition     = google_firebaserules_release.firestore[0].ruleset_name == run.phase_2.firestore_rules_release.ruleset
    error_message = "the release still points at the ruleset it was created with: Terraform never replaces it"
  }

  assert {
    condition     = output.firestore_rules_release.release == "projects/finwell-lifecycle/releases/cloud.firestore"
    error_message = "the output names the release deploytool moves"
  }
}
