# terraform.tfvars.example as an operator copies it, on an empty project:
# run with `terraform test -test-directory=tests/example
# -var-file=terraform.tfvars.example` (scripts/tf-checks.sh, cloudbuild.yaml).
# Every variable of the file must exist, and both phases must plan.

mock_provider "google" {
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }

  mock_data "google_project_iam_policy" {
    defaults = {
      policy_data = "{\"bindings\":[{\"role\":\"roles/run.builder\",\"members\":[\"serviceAccount:plaid-functions-build@my-project.iam.gserviceaccount.com\"]},{\"role\":\"roles/pubsub.serviceAgent\",\"members\":[\"serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com\"]}]}"
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

# A file standing in for the zip of scripts/package-source.sh.
variables {
  source_zip_path = "tests/fixtures/source.zip.txt"
}

run "phase_1_on_an_empty_project" {
  command = plan

  variables {
    deploy_functions = false
  }

  override_data {
    target = module.plaid_token_lifecycle.data.google_project_iam_policy.project
    values = {
      policy_data = "{\"bindings\":[]}"
    }
  }

  assert {
    condition     = output.firestore_database == "(default)" && output.secret_ids == { plaid_secret = "plaid-secret", token_encryption_key = "plaid-token-encryption-key", auth_jwt_secret = "plaid-auth-jwt-secret" }
    error_message = "phase 1 of the example plans on an empty project, for the (default) database, with the three secrets"
  }
}

run "phase_2" {
  command = plan

  assert {
    condition     = alltrue([for fn, f in output.function_environment.functions : f.env["PLAID_ENV"] == "sandbox" if fn != "TokenStats"])
    error_message = "phase 2 of the example deploys the functions in the example's Plaid environment"
  }
}
