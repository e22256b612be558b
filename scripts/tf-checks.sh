#!/usr/bin/env bash
# tf-checks.sh checks terraform/ without cloud access or a provider download:
#   1. `terraform fmt -check -recursive -diff` (Terraform 1.5.7 from
#      scripts/ensure-terraform.sh, built once into a cache if needed);
#   2. scripts/tfcheck (a Go module of its own, so that hcl and cty stay out
#      of the functions' go.mod): its tests, then every resource, data source,
#      attribute and block against the hashicorp/google 7.45.0 schema kept in
#      scripts/tfcheck/schema/ (extra arguments are passed to it).
# Both run; the exit status is non-zero when either fails.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1

# A TF_CLI_CONFIG_FILE naming a missing file only makes Terraform warn.
if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -e "$TF_CLI_CONFIG_FILE" ]]; then
  unset TF_CLI_CONFIG_FILE
fi

status=0

if tf="$(scripts/ensure-terraform.sh)"; then
  if "$tf" fmt -check -recursive -diff terraform/; then
    echo "tf-checks: terraform fmt: ok"
  else
    echo "tf-checks: terraform fmt: files above need formatting (run: $tf fmt -recursive terraform/)" >&2
    status=1
  fi
else
  echo "tf-checks: no Terraform 1.5.7 binary, fmt not checked" >&2
  status=1
fi

if ! (cd scripts/tfcheck && go test -count=1 ./... && go run . "$@"); then
  status=1
fi

exit "$status"
