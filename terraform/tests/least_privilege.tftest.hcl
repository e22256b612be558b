# Least privilege (DESIGN §10) and the functions' configuration: Firestore
# roles bound to the one database, TokenAnalytics read-only, publishers per
# topic, secrets per function, TokenStats' Firestore trigger, the security
# rules that keep client SDKs out.

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
  project_id         = "finwell-lifecycle"
  plaid_client_id    = "client-id"
  plaid_env          = "production"
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
    ]) && length(google_project_iam_member.firestore) == 12
    error_message = "every function's Firestore role is bound to projects/finwell-lifecycle/databases/plaid only"
  }

  assert {
    condition     = google_project_iam_member.firestore["TokenAnalytics"].role == "roles/datastore.viewer" && google_project_iam_member.firestore["ListItems"].role == "roles/datastore.viewer"
    error_message = "TokenAnalytics and ListItems only read"
  }

  assert {
    condition     = toset([for fn, m in google_project_iam_member.firestore : m.role if !contains(["TokenAnalytics", "ListItems"], fn)]) == toset(["roles/datastore.user"])
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
      "CreateLinkToken plaid_secret", "CreateLinkToken token_encryption_key", "CreateLinkToken auth_jwt_secret",
      "ExchangePublicToken plaid_secret", "ExchangePublicToken token_encryption_key", "ExchangePublicToken auth_jwt_secret",
      "VerifyItem plaid_secret", "VerifyItem token_encryption_key", "VerifyItem auth_jwt_secret",
      "ListItems auth_jwt_secret",
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
    condition     = toset(keys(google_cloud_run_service_iam_member.public_invoker)) == toset(["RevokeAllTokens", "RevokeItem", "CreateLinkToken", "ExchangePublicToken", "ListItems", "VerifyItem", "PlaidWebhook"])
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

run "legacy_key_goes_to_revoke_all_tokens_only" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    enable_legacy_token_key = true
  }

  override_data {
    target = data.google_secret_manager_secrets.existing
    values = {
      secrets = [
        { secret_id = "plaid-secret" },
        { secret_id = "plaid-token-encryption-key" },
        { secret_id = "plaid-auth-jwt-secret" },
        { secret_id = "plaid-legacy-token-encryption-key" },
      ]
    }
  }

  assert {
    condition     = google_secret_manager_secret.secret["legacy_token_encryption_key"].secret_id == "plaid-legacy-token-encryption-key"
    error_message = "the switch creates plaid-legacy-token-encryption-key"
  }

  assert {
    condition     = [for k in keys(google_secret_manager_secret_iam_member.function) : k if endswith(k, " legacy_token_encryption_key")] == ["RevokeAllTokens legacy_token_encryption_key"]
    error_message = "only RevokeAllTokens may read the legacy key"
  }

  assert {
    condition = toset([
      for fn, f in google_cloudfunctions2_function.function : fn if contains([for s in f.service_config[0].secret_environment_variables : s.key], "LEGACY_TOKEN_ENCRYPTION_KEY")
    ]) == toset(["RevokeAllTokens"])
    error_message = "LEGACY_TOKEN_ENCRYPTION_KEY reaches RevokeAllTokens only"
  }
}

run "no_legacy_key_by_default" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  assert {
    condition     = !contains(keys(google_secret_manager_secret.secret), "legacy_token_encryption_key")
    error_message = "without legacy documents there is no legacy key secret"
  }
}

# Where the organization refuses allUsers (domain-restricted sharing).
run "named_principals_invoke_the_user_functions" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    user_invoker_members = ["serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"]
    plaid_webhook_public = false
  }

  assert {
    condition     = length(google_cloud_run_service_iam_member.public_invoker) == 0
    error_message = "no function is public: allUsers appears in no binding"
  }

  assert {
    condition = {
      for k, b in google_cloud_run_service_iam_member.user_invoker : k => b.member
      } == {
      "RevokeAllTokens serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"     = "serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"
      "RevokeItem serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"          = "serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"
      "CreateLinkToken serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"     = "serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"
      "ExchangePublicToken serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com" = "serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"
      "ListItems serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"           = "serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"
      "VerifyItem serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"          = "serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"
    }
    error_message = "the app backend, and only it, invokes the user-facing functions"
  }

  assert {
    condition     = google_cloudfunctions2_function.function["RevokeItem"].service_config[0].ingress_settings == "ALLOW_ALL"
    error_message = "the backend reaches the function over its URL"
  }
}

run "the_webhook_stays_public_when_users_are_named" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    user_invoker_members = ["serviceAccount:app-backend@finwell-app.iam.gserviceaccount.com"]
  }

  assert {
    condition     = keys(google_cloud_run_service_iam_member.public_invoker) == ["PlaidWebhook"] && google_cloud_run_service_iam_member.public_invoker["PlaidWebhook"].member == "allUsers"
    error_message = "Plaid presents no Google identity: PlaidWebhook alone stays public"
  }
}

run "weekly_report_bucket" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    report_retention_days = 120
  }

  assert {
    condition     = google_storage_bucket.reports.name == "finwell-lifecycle-plaid-token-lifecycle-reports" && google_storage_bucket.reports.public_access_prevention == "enforced" && google_storage_bucket.reports.uniform_bucket_level_access
    error_message = "the report bucket is private: uniform access, public access prevention"
  }

  assert {
    condition     = [for r in google_storage_bucket.reports.lifecycle_rule : [one(r.condition).age, one(r.action).type]] == [[120, "Delete"]] && length(google_storage_bucket.reports.retention_policy) == 0
    error_message = "reports are deleted after report_retention_days, and no retention policy forbids rewriting latest.html"
  }

  assert {
    condition = toset([
      for fn, f in google_cloudfunctions2_function.function : fn if contains(keys(f.service_config[0].environment_variables), "REPORT_BUCKET")
    ]) == toset(["WeeklyAnalytics"]) && google_cloudfunctions2_function.function["WeeklyAnalytics"].service_config[0].environment_variables["REPORT_BUCKET"] == "finwell-lifecycle-plaid-token-lifecycle-reports"
    error_message = "REPORT_BUCKET reaches WeeklyAnalytics only"
  }

  assert {
    condition     = toset(google_project_iam_custom_role.report_writer.permissions) == toset(["storage.objects.create", "storage.objects.delete"])
    error_message = "the report writer creates objects and may rewrite them (delete), nothing more: no read, no list"
  }

  assert {
    condition     = google_storage_bucket_iam_member.report_writer.bucket == "finwell-lifecycle-plaid-token-lifecycle-reports" && google_storage_bucket_iam_member.report_writer.condition[0].expression == "resource.name.startsWith(\"projects/_/buckets/finwell-lifecycle-plaid-token-lifecycle-reports/objects/reports/weekly/\")"
    error_message = "the role is granted on the report bucket, under reports/weekly/ only"
  }

  assert {
    condition     = length(google_storage_bucket.reports.encryption) == 0 && length(google_storage_bucket.source.encryption) == 0
    error_message = "Google-managed encryption unless kms_key_name is set"
  }
}

run "customer_managed_encryption_keys" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    kms_key_name         = "projects/finwell-kms/locations/us-central1/keyRings/plaid/cryptoKeys/lifecycle"
    secrets_kms_key_name = "projects/finwell-kms/locations/global/keyRings/plaid/cryptoKeys/secrets"
  }

  assert {
    condition = alltrue([
      for b in [google_storage_bucket.source, google_storage_bucket.reports] : b.encryption[0].default_kms_key_name == "projects/finwell-kms/locations/us-central1/keyRings/plaid/cryptoKeys/lifecycle"
    ])
    error_message = "both buckets are encrypted with kms_key_name"
  }

  assert {
    condition     = alltrue([for t in google_pubsub_topic.scheduled : t.kms_key_name == "projects/finwell-kms/locations/us-central1/keyRings/plaid/cryptoKeys/lifecycle"])
    error_message = "both topics are encrypted with kms_key_name"
  }

  assert {
    condition     = google_artifact_registry_repository.functions.kms_key_name == "projects/finwell-kms/locations/us-central1/keyRings/plaid/cryptoKeys/lifecycle" && alltrue([for f in google_cloudfunctions2_function.function : f.kms_key_name == "projects/finwell-kms/locations/us-central1/keyRings/plaid/cryptoKeys/lifecycle"])
    error_message = "the image repository and every function use kms_key_name"
  }

  assert {
    condition     = alltrue([for s in google_secret_manager_secret.secret : s.replication[0].auto[0].customer_managed_encryption[0].kms_key_name == "projects/finwell-kms/locations/global/keyRings/plaid/cryptoKeys/secrets"])
    error_message = "every secret is encrypted with secrets_kms_key_name"
  }

  assert {
    # The Cloud Storage agent is looked up at apply time (the lookup
    # creates it, after the APIs are enabled).
    condition = {
      for k, g in google_kms_crypto_key_iam_member.regional : k => g.member if k != "buckets"
      } == {
      topics    = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
      images    = "serviceAccount:service-123456789012@gcp-sa-artifactregistry.iam.gserviceaccount.com"
      functions = "serviceAccount:service-123456789012@gcf-admin-robot.iam.gserviceaccount.com"
      revisions = "serviceAccount:service-123456789012@serverless-robot-prod.iam.gserviceaccount.com"
    } && contains(keys(google_kms_crypto_key_iam_member.regional), "buckets")
    error_message = "the service agents of Cloud Storage, Pub/Sub, Artifact Registry, Cloud Functions and Cloud Run may use the regional key"
  }

  assert {
    condition     = google_kms_crypto_key_iam_member.secrets[0].member == "serviceAccount:service-123456789012@gcp-sa-secretmanager.iam.gserviceaccount.com" && google_kms_crypto_key_iam_member.secrets[0].role == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    error_message = "Secret Manager's service agent may use the global key"
  }

  assert {
    condition     = contains(keys(google_project_service.api), "cloudkms.googleapis.com")
    error_message = "Cloud KMS is enabled: every API the provider calls bills the project's quota"
  }
}

run "image_repository_cleanup" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  # The id the provider gives a repository.
  override_resource {
    target          = google_artifact_registry_repository.functions
    override_during = plan
    values = {
      id = "projects/finwell-lifecycle/locations/us-central1/repositories/plaid-token-lifecycle"
    }
  }

  assert {
    condition     = alltrue([for f in google_cloudfunctions2_function.function : f.build_config[0].docker_repository == "projects/finwell-lifecycle/locations/us-central1/repositories/plaid-token-lifecycle"])
    error_message = "every function builds into the module's repository"
  }

  assert {
    condition = {
      for p in google_artifact_registry_repository.functions.cleanup_policies : p.id => p.action
    } == { "delete-after-30-days" = "DELETE", "keep-most-recent" = "KEEP" } && [for p in google_artifact_registry_repository.functions.cleanup_policies : p.most_recent_versions[0].keep_count if p.action == "KEEP"] == [5] && !google_artifact_registry_repository.functions.cleanup_policy_dry_run
    error_message = "images older than 30 days are deleted, the 5 most recent of each function kept"
  }

  assert {
    condition     = alltrue([for f in google_cloudfunctions2_function.function : length(f.build_config[0].automatic_update_policy) == 1])
    error_message = "the runtime's base image takes security patches without a redeploy"
  }

  assert {
    condition     = alltrue([for f in google_cloudfunctions2_function.function : length(f.service_config[0].direct_vpc_network_interface) == 0])
    error_message = "no VPC egress unless asked"
  }
}

run "vpc_egress" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    vpc_egress = {
      network     = "egress"
      subnetwork  = "egress-us-central1"
      all_traffic = true
    }
  }

  assert {
    condition = alltrue([
      for f in google_cloudfunctions2_function.function :
      f.service_config[0].direct_vpc_egress == "VPC_EGRESS_ALL_TRAFFIC" && f.service_config[0].direct_vpc_network_interface[0].network == "egress" && f.service_config[0].direct_vpc_network_interface[0].subnetwork == "egress-us-central1"
    ])
    error_message = "every function sends all its traffic through the named subnetwork"
  }
}

# What `deploytool check-config` checks is what the functions are given.
run "function_environment_output" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  assert {
    condition = alltrue([
      for fn, f in google_cloudfunctions2_function.function :
      jsonencode(output.function_environment.functions[fn].env) == jsonencode(f.service_config[0].environment_variables) &&
      jsonencode(output.function_environment.functions[fn].secrets) == jsonencode({ for s in f.service_config[0].secret_environment_variables : s.key => { secret = s.secret, version = s.version } })
    ]) && output.function_environment.project == "finwell-lifecycle"
    error_message = "function_environment lists exactly each function's environment and secrets"
  }
}

run "link_environment" {
  command = plan

  module {
    source = "./modules/plaid-token-lifecycle"
  }

  variables {
    plaid_products      = ["transactions", "auth"]
    plaid_country_codes = ["US", "CA"]
    plaid_client_name   = "Finwell"
  }

  assert {
    condition     = google_cloudfunctions2_function.function["CreateLinkToken"].service_config[0].environment_variables["PLAID_PRODUCTS"] == "transactions,auth" && google_cloudfunctions2_function.function["CreateLinkToken"].service_config[0].environment_variables["PLAID_WEBHOOK_URL"] == "https://us-central1-finwell-lifecycle.cloudfunctions.net/plaid-webhook" && google_cloudfunctions2_function.function["CreateLinkToken"].service_config[0].environment_variables["PLAID_CLIENT_NAME"] == "Finwell"
    error_message = "CreateLinkToken gets the Link settings and PlaidWebhook's URL"
  }

  assert {
    condition = toset([
      for fn, f in google_cloudfunctions2_function.function : fn if contains(keys(f.service_config[0].environment_variables), "PLAID_COUNTRY_CODES")
    ]) == toset(["CreateLinkToken", "ExchangePublicToken"]) && !contains(keys(google_cloudfunctions2_function.function["CreateLinkToken"].service_config[0].environment_variables), "PLAID_REDIRECT_URI")
    error_message = "PLAID_COUNTRY_CODES reaches the functions that ask Plaid about institutions; an empty redirect URI is left unset"
  }
}
