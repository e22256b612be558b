#!/usr/bin/env bash
# package-source.sh [out.zip] zips what Cloud Functions builds: go.mod,
# go.sum, and the files of the module's own packages that the root package
# (function.go, the deployed entry points) builds from, as
# `go list -deps` lists them for linux/amd64: non-test .go files (and cgo and
# embedded files, if any). Test support under internal/ (fakes, emulator
# helpers, samples), tests, testdata/, terraform/, scripts/ and .git never go
# in. Prints the zip's path on stdout.
#
# The zip is deterministic (sorted entries, fixed timestamps and modes), so
# its SHA-256 changes only when the source does: terraform/storage.tf names
# the bucket object by that hash, and an unchanged zip redeploys nothing.
#
# Default output: ${TMPDIR:-/tmp}/plaid-token-lifecycle-source.zip.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${TMPDIR:-/tmp}/plaid-token-lifecycle-source.zip}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

cd "$root"
for f in go.mod go.sum; do
  [[ -f "$f" ]] || { echo "package-source: $root/$f is missing" >&2; exit 1; }
done

# Deployable files, relative to the module root, in byte order. The
# packages are those of the main module that the root package depends on,
# for the platform Cloud Functions builds on.
listed="$(GOOS=linux GOARCH=amd64 CGO_ENABLED=0 GOFLAGS=-mod=readonly go list -deps \
  -f '{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .CgoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}' .)" || { echo "package-source: go list -deps . failed" >&2; exit 1; }
files=()
while IFS= read -r f; do
  [[ -n "$f" ]] && files+=("$f")
done < <(
  {
    printf '%s\n' go.mod go.sum
    printf '%s\n' "$listed" | sed "s|^$root/||"
  } | LC_ALL=C sort -u
)
for f in "${files[@]}"; do
  if [[ "$f" == /* || ! -f "$f" ]]; then
    echo "package-source: $f is not a file of the module at $root" >&2
    exit 1
  fi
done
if [[ ! " ${files[*]} " =~ \ function\.go\  ]]; then
  echo "package-source: the root package (function.go) is not in the list: is go.mod's module at $root?" >&2
  exit 1
fi

rm -f "$out"
if command -v zip >/dev/null; then
  # Copy into a staging directory with fixed mtimes so that zip records the
  # same timestamps everywhere; -X drops uid/gid and other extra fields.
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  for f in "${files[@]}"; do
    mkdir -p "$stage/$(dirname "$f")"
    cp "$f" "$stage/$f"
    chmod 0644 "$stage/$f"
    TZ=UTC touch -t 198001010000 "$stage/$f"
  done
  (cd "$stage" && TZ=UTC zip -q -X -D -9 "$out" "${files[@]}")
else
  python3 - "$out" "${files[@]}" <<'PY'
import sys, zipfile
out, files = sys.argv[1], sys.argv[2:]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for name in files:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(name, "rb") as f:
            z.writestr(info, f.read(), compresslevel=9)
PY
fi

echo "package-source: ${#files[@]} files, sha256 $(sha256sum "$out" | cut -d' ' -f1)" >&2
echo "$out"
