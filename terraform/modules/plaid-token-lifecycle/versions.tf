# Requirements of the module. No provider or backend block: the caller
# configures the google provider (terraform/providers.tf in this repository)
# and keeps the state, so the module can be instantiated more than once, with
# count, for_each or depends_on.
terraform {
  # 1.9: validations that read other variables and locals; 1.11: what
  # terraform/tests/ and Cloud Build run.
  required_version = ">= 1.11.0"

  required_providers {
    # Only hashicorp/google (no time_sleep, no null_resource: the order of a
    # first deployment is the two phases of phases.tf). No archive provider
    # either: the source zip is built by scripts/package-source.sh and passed
    # in as a path.
    google = {
      source  = "hashicorp/google"
      version = ">= 7.45.0, < 8.0.0"
    }
  }
}
