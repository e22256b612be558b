# Two instances of the module in one project (staging beside production)
# plan without a name in common, and the root configuration plans as a whole.

mock_provider "google" {
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }

  # Phase 1 applied, the Pub/Sub service agent created.
  mock_data "google_project_iam_policy" {
    defaults = {
      policy_data = "{\"bindings\":[{\"role\":\"roles/run.builder\",\"members\":[\"serviceAccount:plaid-functions-build@finwell-lifecycle.iam.gserviceaccount.com\",\"serviceAccount:stg-plaid-functions-build@finwell-lifecycle.iam.gserviceaccount.com\"]},{\"role\":\"roles/pubsub.serviceAgent\",\"members\":[\"serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com\"]}]}"
    }
  }

  mock_data "google_secret_manager_secrets" {
    defaults = {
      secrets = [
        { secret_id = "plaid-secret" },
        { secret_id = "plaid-token-encryption-key" },
        { secret_id = "plaid-auth-jwt-secret" },
        { secret_id = "stg-plaid-secret" },
        { secret_id = "stg-plaid-token-encryption-key" },
        { secret_id = "stg-plaid-auth-jwt-secret" },
      ]
    }
  }

  # A live version: the API sets no destroyTime.
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

run "two_instances_share_no_name" {
  command = plan

  module {
    source = "./tests/fixtures/two-instances"
  }

  assert {
    condition = alltrue([
      for kind, names in output.production_names : length(setintersection(toset(names), toset(output.staging_names[kind]))) == 0
    ])
    error_message = "staging and production share a project-unique name"
  }

  assert {
    condition     = contains(output.production_names.topics, "plaid-token-daily-cleanup") && contains(output.staging_names.topics, "stg-plaid-token-daily-cleanup")
    error_message = "the default prefix keeps DESIGN §3's topic names; stg- prefixes them"
  }

  assert {
    condition     = alltrue([for id in output.staging_names.service_accounts : length(id) <= 30])
    error_message = "every prefixed service account id fits in 30 characters"
  }
}

run "root_configuration_plans" {
  command = plan

  assert {
    condition     = toset(output.names.functions) == toset(["plaid-token-cleanup", "plaid-revoke-all-tokens", "plaid-token-analytics", "plaid-revoke-item", "plaid-webhook", "plaid-daily-cleanup", "plaid-weekly-analytics", "plaid-token-stats", "plaid-link-token", "plaid-exchange-token", "plaid-list-items", "plaid-verify-item"])
    error_message = "the root configuration deploys the module's twelve functions under their DESIGN §3 names"
  }

  assert {
    condition     = output.topics == { daily = "plaid-token-daily-cleanup", weekly = "plaid-token-weekly-analytics" }
    error_message = "the root passes the module's outputs through"
  }
}
