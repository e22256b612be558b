# Least privilege (DESIGN §10) and the functions' configuration: Firestore
# roles bound to the one database, TokenAnalytics read-only, publishers per
# topic, secrets per function, TokenStats' Firestore trigger, the security
# rules that keep client SDKs out.

mock_provider "google" {
  mock_data "google_project_iam_policy" {
    defaults = {
      policy_data = "{\"bindings\":[{\"role\":\"roles/run.builder\",\"members\":[\"serviceAccount:plaid-functions-build@finwell-lifecycle.iam.gserviceaccount.com\"]}]}"
    }
  }

  mock_data "google_secret_manager_secret_version" {
    defaults = {
      enabled = true
    }
  }
}

variables {
  project_id         = "finwell-lifecycle"
  plaid_client_id    = "client-id"
  source_zip_path    = "tests/fixtures/source.zip.txt"
  firestore_database = "plaid"
  firestore_location = "nam5"
}

run "firestore_roles_on_the_one_database" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  assert {
    condition = alltrue([
      for fn, m in google_project_iam_member.firestore :
      m.condition[0].expression == "resource.name == \"projects/finwell-lifecycle/databases/plaid\""
    ]) && length(google_project_iam_member.firestore) == 8
    error_message = "every function's Firestore role is bound to projects/finwell-lifecycle/databases/plaid only"
  }

  assert {
    condition     = google_project_iam_member.firestore["TokenAnalytics"].role == "roles/datastore.viewer"
    error_message = "TokenAnalytics only reads"
  }

  assert {
    condition     = toset([for fn, m in google_project_iam_member.firestore : m.role if fn != "TokenAnalytics"]) == toset(["roles/datastore.user"])
    error_message = "the other functions get roles/datastore.user, and nothing else at project level"
  }

  assert {
    condition     = toset(keys(google_pubsub_topic_iam_member.function_publisher)) == toset(["TokenCleanup daily", "DailyCleanup daily", "TokenAnalytics weekly"])
    error_message = "TokenCleanup and DailyCleanup publish to the daily topic, TokenAnalytics to the weekly one, nobody else anywhere"
  }

  assert {
    condition = toset(keys(google_secret_manager_secret_iam_member.function)) == toset([
      "TokenCleanup plaid_secret", "TokenCleanup token_encryption_key", "TokenCleanup auth_jwt_secret",
      "RevokeAllTokens plaid_secret", "RevokeAllTokens token_encryption_key", "RevokeAllTokens auth_jwt_secret",
      "RevokeItem plaid_secret", "RevokeItem token_encryption_key", "RevokeItem auth_jwt_secret",
      "TokenAnalytics auth_jwt_secret",
      "PlaidWebhook plaid_secret",
      "DailyCleanup plaid_secret", "DailyCleanup token_encryption_key",
    ])
    error_message = "each function reads only the secrets it needs (TokenStats and WeeklyAnalytics none)"
  }

  assert {
    condition     = google_project_iam_member.event_receiver[0].role == "roles/eventarc.eventReceiver" && toset(keys(google_cloud_run_service_iam_member.event_invoker)) == toset(["DailyCleanup", "WeeklyAnalytics", "TokenStats"])
    error_message = "the trigger account receives events and invokes the three event functions"
  }

  assert {
    condition     = toset(keys(google_cloud_run_service_iam_member.public_invoker)) == toset(["RevokeAllTokens", "RevokeItem", "PlaidWebhook"])
    error_message = "only the JWT- or signature-guarded functions are public"
  }
}

run "token_stats_firestore_trigger" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  assert {
    condition     = google_cloudfunctions2_function.function["TokenStats"].event_trigger[0].event_type == "google.cloud.firestore.document.v1.written"
    error_message = "TokenStats takes every write to a document"
  }

  assert {
    condition     = google_cloudfunctions2_function.function["TokenStats"].event_trigger[0].trigger_region == "nam5"
    error_message = "the Firestore trigger lives in the database's location"
  }

  assert {
    condition     = tomap({ for f in google_cloudfunctions2_function.function["TokenStats"].event_trigger[0].event_filters : f.attribute => f.value }) == tomap({ database = "plaid", document = "plaid_tokens/{item_id}" })
    error_message = "the trigger filters on the one database and plaid_tokens/{item_id}"
  }

  assert {
    condition     = [for f in google_cloudfunctions2_function.function["TokenStats"].event_trigger[0].event_filters : f.operator if f.attribute == "document"] == ["match-path-pattern"]
    error_message = "the document filter is a path pattern"
  }

  assert {
    condition     = google_cloudfunctions2_function.function["TokenStats"].event_trigger[0].retry_policy == "RETRY_POLICY_RETRY"
    error_message = "TokenStats' events are retried"
  }

  assert {
    condition     = google_cloudfunctions2_function.function["TokenStats"].service_config[0].environment_variables == tomap({ GOOGLE_CLOUD_PROJECT = "finwell-lifecycle", FIRESTORE_DATABASE = "plaid" })
    error_message = "TokenStats gets GOOGLE_CLOUD_PROJECT and FIRESTORE_DATABASE only"
  }

  assert {
    condition     = length(google_cloudfunctions2_function.function["TokenStats"].service_config[0].secret_environment_variables) == 0
    error_message = "TokenStats gets no secret"
  }
}

run "environment" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  assert {
    condition = alltrue([
      for fn, f in google_cloudfunctions2_function.function :
      f.service_config[0].environment_variables["VALIDATION_INTERVAL"] == "20h" if fn != "TokenStats"
    ])
    error_message = "VALIDATION_INTERVAL (default 20h) reaches every function but TokenStats"
  }

  assert {
    condition = toset([
      for fn, f in google_cloudfunctions2_function.function : fn if contains(keys(f.service_config[0].environment_variables), "CLEANUP_TOPIC")
    ]) == toset(["TokenCleanup", "DailyCleanup"]) && google_cloudfunctions2_function.function["TokenCleanup"].service_config[0].environment_variables["CLEANUP_TOPIC"] == "plaid-token-daily-cleanup"
    error_message = "CLEANUP_TOPIC names the daily topic for TokenCleanup and DailyCleanup"
  }

  assert {
    condition = toset([
      for fn, f in google_cloudfunctions2_function.function : fn if contains(keys(f.service_config[0].environment_variables), "ANALYTICS_TOPIC")
    ]) == toset(["TokenAnalytics"]) && google_cloudfunctions2_function.function["TokenAnalytics"].service_config[0].environment_variables["ANALYTICS_TOPIC"] == "plaid-token-weekly-analytics"
    error_message = "ANALYTICS_TOPIC names the weekly topic for TokenAnalytics"
  }

  assert {
    condition = toset([
      for fn, f in google_cloudfunctions2_function.function : fn if contains(keys(f.service_config[0].environment_variables), "HTTP_RUN_TIME_BUDGET")
    ]) == toset(["TokenCleanup"]) && google_cloudfunctions2_function.function["TokenCleanup"].service_config[0].environment_variables["HTTP_RUN_TIME_BUDGET"] == "50m"
    error_message = "HTTP_RUN_TIME_BUDGET (default 50m) reaches TokenCleanup only"
  }
}

run "firestore_indexes_ttl_and_rules" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  assert {
    condition     = toset([for f in google_firestore_field.expire_at : "${f.collection}.${f.field}"]) == toset(["plaid_token_events.expire_at", "plaid_token_stats_events.expire_at", "plaid_token_quota.expire_at"])
    error_message = "TTL policies on plaid_token_events.expire_at, plaid_token_stats_events.expire_at and plaid_token_quota.expire_at"
  }

  assert {
    condition     = google_firebaserules_release.firestore[0].name == "cloud.firestore/plaid"
    error_message = "the rules are released for the one (named) database"
  }

  assert {
    condition     = strcontains(google_firebaserules_ruleset.firestore[0].source[0].files[0].content, "name == 'plaid_tokens' || name.matches('plaid_token_.*')") && !strcontains(google_firebaserules_ruleset.firestore[0].source[0].files[0].content, "if true")
    error_message = "the ruleset names this service's collections and grants nothing"
  }
}

run "default_database_rules_release" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    firestore_database  = "(default)"
    firestore_app_rules = <<-EOT
      match /users/{userId} {
        allow read, write: if request.auth != null && request.auth.uid == userId;
      }
    EOT
  }

  assert {
    condition     = google_firebaserules_release.firestore[0].name == "cloud.firestore"
    error_message = "the default database's rules release is cloud.firestore"
  }

  assert {
    condition     = strcontains(google_firebaserules_ruleset.firestore[0].source[0].files[0].content, "match /users/{userId} {")
    error_message = "the app's rules are released in the same ruleset"
  }
}

run "app_team_releases_the_rules" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    manage_firestore_rules = false
  }

  assert {
    condition     = length(google_firebaserules_release.firestore) == 0 && length(google_firebaserules_ruleset.firestore) == 0
    error_message = "with manage_firestore_rules = false nothing is released"
  }
}
