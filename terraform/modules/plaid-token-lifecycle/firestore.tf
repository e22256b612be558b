# Firestore: the database (optionally), the composite indexes the code's
# queries need, and the TTL policies of the collections that only matter for
# a while. The security rules are in firestore_rules.tf.
#
# No composite index (google_firestore_index): every query of the service
# filters or orders on one field (user_id ==, document id order, started_at,
# taken_at and fetched_at order) and uses Firestore's automatic single-field
# indexes; analytics reads TokenStats' counters. A query on two fields needs
# one declared here: the emulator the tests run on would not notice it
# missing.

# The old service's data already lives in an existing database, so creating
# one is opt-in.
resource "google_firestore_database" "database" {
  count = var.create_firestore_database ? 1 : 0

  project                           = var.project_id
  name                              = var.firestore_database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON" # `terraform destroy` never deletes token data

  depends_on = [google_project_service.api]
}

# Documents that only matter for a while (an event that may be redelivered,
# a quota window): Firestore deletes each one after its expire_at (within
# about a day of it). The audit
# and run collections have no TTL: they are the record.
locals {
  ttl_fields = {
    # Handled CloudEvent ids of the scheduled functions.
    events = "plaid_token_events"
    # Handled Firestore event ids of TokenStats (applied-once record, §12).
    stats_events = "plaid_token_stats_events"
    # The fleet's Plaid call counters, one per endpoint and 2-second window
    # (lifecycle.SharedPacer): worthless an hour later.
    quota = "plaid_token_quota"
  }
}

resource "google_firestore_field" "expire_at" {
  for_each = local.ttl_fields

  project    = var.project_id
  database   = local.firestore_database
  collection = each.value
  field      = "expire_at"

  ttl_config {}

  # No single-field index on a TTL timestamp: nothing queries it, and an
  # index on an ever-increasing value hot-spots writes.
  index_config {}

  depends_on = [google_project_service.api]
}

# The analytics counters (DESIGN §12) are read by document id, never
# queried, so their maps get no single-field indexes. Indexed, every key of
# every map (a day of activity, an institution) would cost index entries on
# each shard, which may hold no more than 40,000, and every increment would
# rewrite them. The names are lifecycle's Counter* groups.
resource "google_firestore_field" "stats_counters" {
  for_each = toset(["tokens", "status", "institutions", "environments", "activity", "created", "used", "removed"])

  project    = var.project_id
  database   = local.firestore_database
  collection = "plaid_token_stats"
  field      = each.value

  index_config {}

  depends_on = [google_project_service.api]
}

# An applied change's delta is one JSON string nothing queries.
resource "google_firestore_field" "stats_event_delta" {
  project    = var.project_id
  database   = local.firestore_database
  collection = "plaid_token_stats_events"
  field      = "delta"

  index_config {}

  depends_on = [google_project_service.api]
}
