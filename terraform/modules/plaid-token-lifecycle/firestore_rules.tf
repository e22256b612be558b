# Firestore security rules: client SDKs (the app's mobile and web clients)
# never reach this service's collections. Only its service accounts do, with
# server SDKs, which IAM governs and rules do not.
#
# Rules are one ruleset per database, and their allows OR together: a rule
# here cannot take away what another rule of the same ruleset grants. So the
# app's own rules, if the app's clients use this database, are released in
# the same ruleset (var.firestore_app_rules, inside the same `match`), and a
# wildcard match of theirs must exclude this service's collections with
# isPlaidTokenCollection(). With manage_firestore_rules = false the app team
# releases the database's rules itself and must keep the same guard
# (docs/DEPLOY.md explains the trade-off).

locals {
  firestore_rules = templatefile("${path.module}/firestore.rules.tftpl", {
    app_rules = var.firestore_app_rules
  })

  # The release of the rules of one database: "cloud.firestore" is the
  # default database's, "cloud.firestore/<id>" a named one's.
  firestore_rules_release = local.firestore_database == "(default)" ? "cloud.firestore" : "cloud.firestore/${local.firestore_database}"
}

resource "google_firebaserules_ruleset" "firestore" {
  count = var.manage_firestore_rules ? 1 : 0

  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = local.firestore_rules
    }
  }

  lifecycle {
    # A ruleset is immutable and a released one cannot be deleted: release
    # the new one before the old one goes.
    create_before_destroy = true
  }

  depends_on = [google_project_service.api]
}

resource "google_firebaserules_release" "firestore" {
  count = var.manage_firestore_rules ? 1 : 0

  project      = var.project_id
  name         = local.firestore_rules_release
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore[0].name}"

  depends_on = [google_firestore_database.database]
}
