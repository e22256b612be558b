#!/usr/bin/env bash
# tf-checks.sh checks terraform/ (the root configuration, the module in
# terraform/modules/plaid-token-lifecycle, the tests):
#   1. `terraform fmt -check -recursive -diff` (Terraform from
#      scripts/ensure-terraform.sh);
#   2. the tests of scripts/tfcheck (a Go module of its own, so that hcl and
#      cty stay out of the functions' go.mod): what Terraform cannot check
#      itself, because it compares Terraform with the Go code or with files
#      Terraform does not read (secrets per function against
#      functions.TargetNeeds, the root variables against the module, the
#      module README's tables, terraform.tfvars.example, the runtime against
#      go.mod, Cloud Build's apply guard), and the module's Firestore
#      security rules loaded into the Firestore emulator
#      ($FIRESTORE_EMULATOR_HOST, or one they start);
#   3. `terraform init -backend=false` and `terraform validate` of the module
#      and of the root configuration, then `terraform test` (terraform/tests/,
#      mock provider, no credentials) and the tests of
#      terraform.tfvars.example (terraform/tests/example/), only where the
#      hashicorp/google provider of terraform/versions.tf is already on this
#      machine: in $TF_PLUGIN_CACHE_DIR, the CLI configuration's
#      plugin_cache_dir or filesystem_mirror paths, or an implied local mirror
#      directory (~/.terraform.d/plugins, ..., where the project's machines
#      install it). They run in a copy of terraform/ without the committed
#      lock file, whose registry hashes a locally built provider cannot
#      match: the checkout's lock file is never rewritten. A banner says WITH
#      or WITHOUT the real provider; without it these are not run (Cloud
#      Build runs them, with the registry's provider).
# All run; the exit status is non-zero when any fails.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1

# A TF_CLI_CONFIG_FILE naming a missing file only makes Terraform warn.
if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -e "$TF_CLI_CONFIG_FILE" ]]; then
  unset TF_CLI_CONFIG_FILE
fi

status=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- 1. fmt ------------------------------------------------------------------

tf=""
if tf="$(scripts/ensure-terraform.sh --fmt-only)"; then
  if "$tf" fmt -check -recursive -diff terraform/; then
    echo "tf-checks: terraform fmt: ok"
  else
    echo "tf-checks: terraform fmt: files above need formatting (run: $tf fmt -recursive terraform/)" >&2
    status=1
  fi
else
  echo "tf-checks: no Terraform binary, fmt not checked" >&2
  tf=""
  status=1
fi

# --- 2. what Terraform cannot check ---------------------------------------------

if ! (cd scripts/tfcheck && go test -count=1 ./...); then
  status=1
fi

# --- 3. validate and test, where the provider is here -----------------------------

# provider_dir prints a directory laid out as a provider mirror
# (registry.terraform.io/hashicorp/google/VERSION/PLATFORM/) that holds the
# provider, or nothing.
provider_dir() {
  local version=$1 platform=$2 config candidates=() d
  config="${TF_CLI_CONFIG_FILE:-$HOME/.terraformrc}"
  [[ -n "${TF_PLUGIN_CACHE_DIR:-}" ]] && candidates+=("$TF_PLUGIN_CACHE_DIR")
  if [[ -f "$config" ]]; then
    while IFS= read -r d; do candidates+=("$d"); done < <(
      sed -n -e 's/^ *plugin_cache_dir *= *"\(.*\)".*/\1/p' -e 's/^ *path *= *"\(.*\)".*/\1/p' "$config")
  fi
  candidates+=("$HOME/.terraform.d/plugins" "${XDG_DATA_HOME:-$HOME/.local/share}/terraform/plugins"
    /usr/local/share/terraform/plugins /usr/share/terraform/plugins)
  for d in "${candidates[@]}"; do
    d="${d/#\~/$HOME}"
    if [[ -d "$d/registry.terraform.io/hashicorp/google/$version/$platform" ]]; then
      echo "$d"
      return
    fi
  done
}

required="$(sed -n 's/^ *required_version *= *">= *\([0-9][0-9.]*\)".*/\1/p' terraform/versions.tf | head -1)"
provider_version="$(sed -n '/google = {/,/}/s/^ *version *= *"\([0-9.]*\)".*/\1/p' terraform/versions.tf | head -1)"
tf_version=""
[[ -n "$tf" ]] && tf_version="$("$tf" version -json 2>/dev/null | sed -n 's/.*"terraform_version": *"\([0-9.]*\)".*/\1/p' | head -1)"
platform=""
[[ -n "$tf" ]] && platform="$("$tf" version -json 2>/dev/null | sed -n 's/.*"platform": *"\([a-z0-9_]*\)".*/\1/p' | head -1)"

banner() {
  echo "tf-checks: ************************************************************************"
  local line
  for line in "$@"; do echo "tf-checks: $line"; done
  echo "tf-checks: ************************************************************************"
}

if [[ -z "$tf_version" ]] || [[ "$(printf '%s\n%s\n' "$required" "$tf_version" | sort -V | head -1)" != "$required" ]]; then
  banner "WITHOUT the real provider: terraform validate and terraform test were NOT run." \
    "They need Terraform >= ${required}; found ${tf_version:-none}. Cloud Build runs them."
elif ! mirror="$(provider_dir "$provider_version" "$platform")" || [[ -z "$mirror" ]]; then
  banner "WITHOUT the real provider: terraform validate and terraform test were NOT run." \
    "hashicorp/google ${provider_version} (${platform}) is in no plugin cache or local mirror here" \
    "and cannot be downloaded. Cloud Build runs them with the registry's provider."
else
  banner "WITH the real provider: hashicorp/google ${provider_version} from $mirror"
  # The provider from that directory and nowhere else.
  cat >"$work/terraformrc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/hashicorp/google"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/google"]
  }
}
EOF
  # A plugin cache is read as a mirror here, so it must not also be the cache.
  unset TF_PLUGIN_CACHE_DIR
  export TF_CLI_CONFIG_FILE="$work/terraformrc" TF_IN_AUTOMATION=1

  # A provider built locally cannot match the registry's hashes that the
  # committed .terraform.lock.hcl holds for Cloud Build, so these checks run
  # in a copy of terraform/ without the lock file (nor local state, data
  # directories or tfvars): the checkout is never touched.
  copy="$work/terraform"
  mkdir -p "$copy"
  tar -C terraform --exclude=./.terraform --exclude='./.terraform-*' --exclude=./.terraform.lock.hcl \
    --exclude='./*.tfvars' --exclude='./*.tfstate*' -cf - . | tar -C "$copy" -xf -

  # check_dir NAME DIR: terraform init (no backend) and validate in DIR.
  check_dir() {
    local name=$1 dir=$2
    export TF_DATA_DIR="$work/data-$name"
    if ! "$tf" -chdir="$dir" init -backend=false -input=false -no-color >"$work/init-$name.log" 2>&1; then
      cat "$work/init-$name.log" >&2
      echo "tf-checks: terraform init ($name) FAILED" >&2
      return 1
    fi
    if ! "$tf" -chdir="$dir" validate -no-color; then
      echo "tf-checks: terraform validate ($name) FAILED" >&2
      return 1
    fi
    echo "tf-checks: terraform validate ($name): ok"
  }
  tf_ok=true
  check_dir module "$copy/modules/plaid-token-lifecycle" || tf_ok=false
  if check_dir root "$copy"; then
    # terraform test: every file of terraform/tests, against the root
    # configuration and the module (mock_provider "google" keeps the real
    # provider's schema and validation, with no credentials).
    if "$tf" -chdir="$copy" test -no-color >"$work/test.log" 2>&1; then
      echo "tf-checks: terraform test: $(grep -E '^Success!' "$work/test.log")"
    else
      grep -vE '\.\.\. pass$' "$work/test.log" >&2
      echo "tf-checks: terraform test FAILED" >&2
      tf_ok=false
    fi
    # terraform.tfvars.example as an operator copies it.
    if "$tf" -chdir="$copy" test -no-color -test-directory=tests/example -var-file=terraform.tfvars.example >"$work/example.log" 2>&1; then
      echo "tf-checks: terraform test (terraform.tfvars.example): $(grep -E '^Success!' "$work/example.log")"
    else
      grep -vE '\.\.\. pass$' "$work/example.log" >&2
      echo "tf-checks: terraform test (terraform.tfvars.example) FAILED" >&2
      tf_ok=false
    fi
  else
    tf_ok=false
  fi
  $tf_ok || status=1
fi

exit "$status"
