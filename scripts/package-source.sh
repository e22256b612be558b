#!/usr/bin/env bash
# package-source.sh [out.zip] zips what Cloud Functions builds: the module
# root's go.mod, go.sum and non-test .go files, and the non-test .go files of
# functions/, lifecycle/ and internal/. Tests, testdata/, terraform/,
# scripts/ and .git never go in. Prints the zip's path on stdout.
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

# Deployable files, relative to the module root, in byte order.
files=()
while IFS= read -r f; do
  files+=("$f")
done < <(
  {
    printf '%s\n' go.mod go.sum
    find . -maxdepth 1 -type f -name '*.go' ! -name '*_test.go'
    for dir in functions lifecycle internal; do
      [[ -d "$dir" ]] || continue
      find "$dir" \( -name testdata -o -name '.*' ! -name . \) -prune -o \
        -type f -name '*.go' ! -name '*_test.go' -print
    done
  } | sed 's|^\./||' | LC_ALL=C sort -u
)

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
