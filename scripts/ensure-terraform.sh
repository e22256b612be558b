#!/usr/bin/env bash
# ensure-terraform.sh prints the path of a Terraform 1.5.7 binary.
#
# In order: $TERRAFORM if it is 1.5.7, `terraform` on PATH if it is 1.5.7,
# then a binary cached outside the repo, built once from source with
# `go install` (about 5 minutes on 2 cores) when the cache is empty. The
# provider cannot be downloaded everywhere this runs, so only provider-free
# commands (fmt) are used with it; see scripts/tf-checks.sh.
#
# Progress goes to stderr; stdout is only the path.
set -euo pipefail

readonly version="1.5.7"
readonly cache="${XDG_CACHE_HOME:-$HOME/.cache}/plaid-lifecycle/terraform-${version}"
readonly cached="$cache/terraform"

is_wanted_version() {
  [[ -x "$1" ]] || return 1
  # `version -json` is stable across platforms; a missing CLI config file
  # only warns on stderr.
  "$1" version -json 2>/dev/null | grep -q "\"terraform_version\": *\"${version}\""
}

if [[ -n "${TERRAFORM:-}" ]] && is_wanted_version "$TERRAFORM"; then
  echo "$TERRAFORM"
  exit 0
fi
if on_path="$(command -v terraform 2>/dev/null)" && is_wanted_version "$on_path"; then
  echo "$on_path"
  exit 0
fi
if is_wanted_version "$cached"; then
  echo "$cached"
  exit 0
fi

command -v go >/dev/null || { echo "ensure-terraform: Terraform ${version} not found and go is not installed to build it" >&2; exit 1; }
mkdir -p "$cache"

# One build at a time: a second caller waits for the first and reuses it.
exec 9>"$cache/.lock"
if command -v flock >/dev/null; then
  flock 9
  if is_wanted_version "$cached"; then
    echo "$cached"
    exit 0
  fi
fi

echo "ensure-terraform: building Terraform ${version} into $cache (once; about 5 minutes)..." >&2
# `go install pkg@version` builds outside any module; GOFLAGS such as
# -mod=vendor from the caller's environment would break it.
(cd "$cache" && GOFLAGS="" GOBIN="$cache" go install "github.com/hashicorp/terraform@v${version}") >&2

if ! is_wanted_version "$cached"; then
  echo "ensure-terraform: built $cached but it does not report version ${version}" >&2
  exit 1
fi
echo "ensure-terraform: done" >&2
echo "$cached"
