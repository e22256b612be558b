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

# Releasing new rules must leave no moment without a release. The provider
# cannot move a release (hashicorp/google 7.45.0: ruleset_name forces a
# replacement, which deletes the release and creates it again, and with
# create_before_destroy the create fails because the release exists).
# Firebase's API can, in place (UpdateRelease). So Terraform creates each
# new ruleset and the release's first version, and `deploytool
# release-rules`, run after every apply (docs/DEPLOY.md, cloudbuild.yaml),
# moves the release to the current ruleset (output firestore_rules_release)
# when it points elsewhere.
resource "google_firebaserules_ruleset" "firestore" {
  count = var.manage_firestore_rules ? 1 : 0

  project = var.project_id

  # A released ruleset cannot be deleted, and the previous one is released
  # until the release moves: Terraform forgets it instead, and it stays as
  # the rollback target. (Firebase keeps up to 2500 rulesets a project.)
  deletion_policy = "ABANDON"

  source {
    files {
      name    = "firestore.rules"
      content = local.firestore_rules
    }
  }

  lifecycle {
    create_before_destroy = true
  }

  depends_on = [google_project_service.api]
}

resource "google_firebaserules_release" "firestore" {
  count = var.manage_firestore_rules ? 1 : 0

  project      = var.project_id
  name         = local.firestore_rules_release
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore[0].name}"

  lifecycle {
    # Moved by `deploytool release-rules`, never replaced by Terraform.
    ignore_changes = [ruleset_name]
  }

  depends_on = [google_firestore_database.database]
}
