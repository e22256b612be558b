#!/usr/bin/env bash
# ensure-terraform.sh [--fmt-only] prints the path of a Terraform binary at
# least as new as the required_version of terraform/versions.tf.
#
# In order: $TERRAFORM, then `terraform` on PATH, then a binary an earlier run
# built into a cache outside the repository; the first whose version is at
# least the required one wins. The project's machines and Cloud Build have
# Terraform (Cloud Build copies it from the hashicorp/terraform image), so
# nothing is built there.
#
# Last resort, with --fmt-only only: build Terraform 1.5.7 from the Go
# module proxy into the cache (once; about 5 minutes on 2 cores). It is the
# newest release `go install` can build (later ones carry replace directives
# in their go.mod), older than required_version, so it serves
# `terraform fmt` only; scripts/tf-checks.sh runs validate and test only with
# a binary that meets required_version.
#
# Progress goes to stderr; stdout is only the path. Exit 1 when no binary
# fits.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly fallback="1.5.7"
readonly cache="${XDG_CACHE_HOME:-$HOME/.cache}/plaid-lifecycle/terraform-${fallback}"

fmt_only=false
case "${1:-}" in
  --fmt-only) fmt_only=true ;;
  "") ;;
  *) echo "usage: $0 [--fmt-only]" >&2; exit 2 ;;
esac

# required_version = ">= X.Y.Z" in the root configuration.
required="$(sed -n 's/^ *required_version *= *">= *\([0-9][0-9.]*\)".*/\1/p' "$root/terraform/versions.tf" | head -1)"
if [[ -z "$required" ]]; then
  echo "ensure-terraform: no required_version = \">= X.Y.Z\" in terraform/versions.tf" >&2
  exit 1
fi

# version_of BINARY prints its version (e.g. 1.11.4), or nothing. A missing
# CLI config file only makes Terraform warn on stderr.
version_of() {
  [[ -x "$1" ]] || return 0
  "$1" version -json 2>/dev/null | sed -n 's/.*"terraform_version": *"\([0-9.]*\)".*/\1/p' | head -1
}

# at_least A B: version A >= version B.
at_least() {
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" == "$2" ]]
}

candidates=()
[[ -n "${TERRAFORM:-}" ]] && candidates+=("$TERRAFORM")
if on_path="$(command -v terraform 2>/dev/null)"; then
  candidates+=("$on_path")
fi
candidates+=("$cache/terraform")

for tf in "${candidates[@]}"; do
  v="$(version_of "$tf")"
  if [[ -n "$v" ]] && at_least "$v" "$required"; then
    echo "$tf"
    exit 0
  fi
done

if ! $fmt_only; then
  echo "ensure-terraform: no Terraform >= ${required} (terraform/versions.tf) in \$TERRAFORM or on PATH; install it, or set TERRAFORM" >&2
  exit 1
fi

if [[ "$(version_of "$cache/terraform")" == "$fallback" ]]; then
  echo "$cache/terraform"
  exit 0
fi

command -v go >/dev/null || { echo "ensure-terraform: no Terraform installed and no go to build one" >&2; exit 1; }
mkdir -p "$cache"

# One build at a time: a second caller waits for the first and reuses it.
exec 9>"$cache/.lock"
if command -v flock >/dev/null; then
  flock 9
  if [[ "$(version_of "$cache/terraform")" == "$fallback" ]]; then
    echo "$cache/terraform"
    exit 0
  fi
fi

echo "ensure-terraform: no Terraform >= ${required} installed; building ${fallback} into $cache for fmt only (once; about 5 minutes)..." >&2
# `go install pkg@version` builds outside any module; GOFLAGS such as
# -mod=vendor from the caller's environment would break it.
(cd "$cache" && GOFLAGS="" GOBIN="$cache" go install "github.com/hashicorp/terraform@v${fallback}") >&2

if [[ "$(version_of "$cache/terraform")" != "$fallback" ]]; then
  echo "ensure-terraform: built $cache/terraform but it does not report version ${fallback}" >&2
  exit 1
fi
echo "ensure-terraform: done" >&2
echo "$cache/terraform"
