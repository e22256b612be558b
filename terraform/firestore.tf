# Firestore: the database (optionally), every composite index a query of the
# code needs, and the TTL policy of the event-deduplication collection.
#
# The indexes mirror lifecycle.CompositeIndexes (lifecycle/indexes.go); a test
# (scripts/tfcheck/main_test.go) fails when one is missing here. Single-field
# queries use Firestore's automatic indexes and need nothing.

# The old service's data already lives in an existing database, so creating
# one is opt-in.
resource "google_firestore_database" "database" {
  count = var.create_firestore_database ? 1 : 0

  name                              = var.firestore_database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON" # `terraform destroy` never deletes token data

  depends_on = [google_project_service.api]
}

# Analytics error_tokens: status == "active" AND error_code > "" (count).
resource "google_firestore_index" "tokens_status_error_code" {
  database   = local.firestore_database
  collection = "plaid_tokens"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "error_code"
    order      = "ASCENDING"
  }

  depends_on = [google_project_service.api]
}

# Latest runs of a kind: kind == K ORDER BY started_at DESC.
resource "google_firestore_index" "runs_kind_started_at" {
  database   = local.firestore_database
  collection = "plaid_token_runs"

  fields {
    field_path = "kind"
    order      = "ASCENDING"
  }

  fields {
    field_path = "started_at"
    order      = "DESCENDING"
  }

  depends_on = [google_project_service.api]
}

# Handled CloudEvent ids only matter while Pub/Sub may redeliver: Firestore
# deletes each one after its expire_at (within about a day of it). The audit
# and run collections have no TTL: they are the record.
resource "google_firestore_field" "events_expire_at" {
  database   = local.firestore_database
  collection = "plaid_token_events"
  field      = "expire_at"

  ttl_config {}

  # No single-field index on a TTL timestamp: nothing queries it, and an
  # index on an ever-increasing value hot-spots writes.
  index_config {}

  depends_on = [google_project_service.api]
}
