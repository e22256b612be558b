#!/usr/bin/env bash
# The one test command: starts the Firestore emulator on a free port, runs
# go vet and every Go test (with -race) against it, with the Terraform checks
# alongside, prints the go test summary and stops the emulator, also on
# failure or Ctrl-C. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh

work=$(mktemp -d)
tf_pid=
cleanup() {
  if [[ -n "$tf_pid" ]]; then kill "$tf_pid" 2>/dev/null || true; fi
  stop_firestore_emulator
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The Terraform checks run beside the tests: on a fresh machine they first
# build Terraform 1.5.7 from the Go module proxy (about 5 minutes, once).
echo "==> terraform fmt and schema checks (in the background)"
scripts/tf-checks.sh >"$work/tf.log" 2>&1 &
tf_pid=$!

echo "==> starting the Firestore emulator"
start_firestore_emulator "$work/emulator.log"
echo "    FIRESTORE_EMULATOR_HOST=$FIRESTORE_EMULATOR_HOST (pid $EMULATOR_PID)"

echo "==> go vet ./..."
go vet ./...

echo "==> go test -race -count=1 ./..."
status=0
REQUIRE_FIRESTORE_EMULATOR=1 go test -race -count=1 -timeout 15m -v ./... >"$work/test.log" 2>&1 || status=$?

tf_status=0
wait "$tf_pid" || tf_status=$?
tf_pid=
echo "==> terraform checks"
cat "$work/tf.log"
if (( tf_status != 0 )); then
  echo "terraform checks FAILED" >&2
  status=1
fi

# The summary: package results, and the detail of anything that failed.
grep -E '^(ok|FAIL|panic:|--- FAIL|\?)|^\s+--- FAIL|^\s+[A-Za-z0-9_]+\.go:[0-9]+: ' "$work/test.log" || true
if (( status != 0 )) && ! grep -qE '^(--- FAIL|FAIL)' "$work/test.log"; then
  tail -50 "$work/test.log"
fi
passed=$(grep -cE '^\s*--- PASS' "$work/test.log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$work/test.log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$work/test.log" || true)
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
exit "$status"
