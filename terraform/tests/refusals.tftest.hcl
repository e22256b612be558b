# Settings the functions refuse at start (DESIGN §8, §10) fail at plan time,
# as validations of the module's variables: an unknown time zone, a JWKS
# without issuer and audience or over plain HTTP, no JWT verifier at all,
# secrets shorter than 32 bytes, run budgets the function timeouts would cut,
# a name prefix too long for service account ids.

mock_provider "google" {
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }

  # Phase 1 applied, the Pub/Sub service agent created.
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

run "defaults_plan" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  assert {
    condition     = google_cloud_scheduler_job.scheduled["daily"].time_zone == "Etc/UTC"
    error_message = "the default time zone is Etc/UTC"
  }
}

run "unknown_time_zone" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    time_zone = "Mars/Olympus"
  }

  expect_failures = [var.time_zone]
}

run "known_time_zone" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    time_zone = "America/New_York"
  }

  assert {
    condition     = google_cloud_scheduler_job.scheduled["weekly"].time_zone == "America/New_York"
    error_message = "the scheduler jobs use time_zone"
  }
}

run "jwks_without_issuer_and_audience" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    auth_jwks_url = "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"
  }

  expect_failures = [var.auth_jwks_url]
}

run "jwks_without_audience" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    auth_jwks_url = "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"
    auth_issuer   = "https://securetoken.google.com/finwell"
  }

  expect_failures = [var.auth_jwks_url]
}

run "jwks_over_plain_http" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    auth_jwks_url = "http://keys.example.com/jwks.json"
    auth_issuer   = "https://issuer.example.com"
    auth_audience = "finwell"
  }

  expect_failures = [var.auth_jwks_url]
}

run "jwks_only_is_a_verifier" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    enable_auth_jwt_secret = false
    auth_jwks_url          = "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"
    auth_issuer            = "https://securetoken.google.com/finwell"
    auth_audience          = "finwell"
  }

  assert {
    condition     = !contains(keys(google_secret_manager_secret.secret), "auth_jwt_secret")
    error_message = "without enable_auth_jwt_secret there is no JWT secret"
  }

  assert {
    condition     = google_cloudfunctions2_function.function["RevokeItem"].service_config[0].environment_variables["AUTH_JWKS_URL"] == "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"
    error_message = "the functions that authenticate users get AUTH_JWKS_URL"
  }
}

run "jwks_on_loopback_may_be_http" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    auth_jwks_url = "http://127.0.0.1:8089/jwks.json"
    auth_issuer   = "https://issuer.example.com"
    auth_audience = "finwell"
  }
}

run "no_jwt_verifier" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    enable_auth_jwt_secret = false
  }

  expect_failures = [var.enable_auth_jwt_secret]
}

run "short_auth_jwt_secret" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    manage_secret_values = true
    plaid_secret         = "plaid-secret-value"
    token_encryption_key = "0123456789abcdef0123456789abcdef"
    auth_jwt_secret      = "0123456789abcdef0123456789abcde" # 31 bytes
  }

  expect_failures = [var.auth_jwt_secret]
}

run "short_token_encryption_key" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    manage_secret_values = true
    plaid_secret         = "plaid-secret-value"
    token_encryption_key = "ééééééééééééééé1" # 31 bytes in 16 characters
    auth_jwt_secret      = "fedcba9876543210fedcba9876543210"
  }

  expect_failures = [var.token_encryption_key]
}

run "secret_lengths_count_bytes" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    manage_secret_values = true
    plaid_secret         = "plaid-secret-value"
    token_encryption_key = "éééééééééééééééé" # 32 bytes in 16 characters
    auth_jwt_secret      = "fedcba9876543210fedcba9876543210"
  }
}

run "run_time_budget_at_the_event_timeout" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    run_time_budget = "9m"
  }

  expect_failures = [var.run_time_budget]
}

run "run_time_budget_not_a_duration" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    run_time_budget = "8 minutes"
  }

  expect_failures = [var.run_time_budget]
}

run "run_time_budget_just_below_the_event_timeout" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    run_time_budget = "8m59.5s"
  }

  assert {
    condition     = google_cloudfunctions2_function.function["DailyCleanup"].service_config[0].environment_variables["RUN_TIME_BUDGET"] == "8m59.5s"
    error_message = "RUN_TIME_BUDGET reaches DailyCleanup"
  }
}

run "http_run_time_budget_at_the_http_timeout" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    http_run_time_budget = "1h"
  }

  expect_failures = [var.http_run_time_budget]
}

run "http_run_time_budget_below_the_http_timeout" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    http_run_time_budget = "59m59s"
  }

  assert {
    condition     = google_cloudfunctions2_function.function["TokenCleanup"].service_config[0].environment_variables["HTTP_RUN_TIME_BUDGET"] == "59m59s"
    error_message = "HTTP_RUN_TIME_BUDGET reaches TokenCleanup"
  }
}

run "name_prefix_too_long_for_service_accounts" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    name_prefix = "staging-"
  }

  expect_failures = [var.name_prefix]
}

run "name_prefix_without_trailing_hyphen" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    name_prefix = "stg"
  }

  expect_failures = [var.name_prefix]
}

run "all_users_among_named_invokers" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    user_invoker_members = ["serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com", "allUsers"]
  }

  expect_failures = [var.user_invoker_members]
}

run "no_user_invoker" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    user_invoker_members = []
  }

  expect_failures = [var.user_invoker_members]
}

run "kms_key_in_another_region" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    kms_key_name = "projects/finwell-kms/locations/europe-west1/keyRings/plaid/cryptoKeys/lifecycle"
  }

  expect_failures = [var.kms_key_name]
}

run "secrets_kms_key_not_global" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    secrets_kms_key_name = "projects/finwell-kms/locations/us-central1/keyRings/plaid/cryptoKeys/secrets"
  }

  expect_failures = [var.secrets_kms_key_name]
}

run "reports_kept_less_than_a_week" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    report_retention_days = 6
  }

  expect_failures = [var.report_retention_days]
}

run "report_bucket_name_too_long" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  # 30 characters, the longest project id: with "stg-" the source bucket's
  # name still fits in 63, the report bucket's does not.
  variables {
    project_id       = "finwell-lifecycle-production12"
    name_prefix      = "stg-"
    deploy_functions = false
  }

  expect_failures = [var.report_bucket_name]
}
