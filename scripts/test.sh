#!/usr/bin/env bash
# The one test command. Starts the Firestore and Pub/Sub emulators on free
# ports, runs go vet and every Go test with -race against them (storage,
# handlers, the built binaries end to end, the fault-injection suite, every
# fuzz target's seed corpus), with the Terraform checks alongside; prints
# the go test summary and the fault-injection summary line, and stops the
# emulators, also on failure or Ctrl-C. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh

work=$(mktemp -d)
tf_pid=
cleanup() {
  if [[ -n "$tf_pid" ]]; then kill "$tf_pid" 2>/dev/null || true; fi
  stop_firestore_emulator
  stop_pubsub_emulator
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> starting the Firestore and Pub/Sub emulators"
launch_firestore_emulator "$work/firestore.log"
launch_pubsub_emulator "$work/pubsub.log"
wait_emulator Firestore "$FIRESTORE_EMULATOR_HOST" "$EMULATOR_PID" "$work/firestore.log"
wait_emulator Pub/Sub "$PUBSUB_EMULATOR_HOST" "$PUBSUB_EMULATOR_PID" "$work/pubsub.log"
echo "    FIRESTORE_EMULATOR_HOST=$FIRESTORE_EMULATOR_HOST PUBSUB_EMULATOR_HOST=$PUBSUB_EMULATOR_HOST"

# The Terraform checks run beside the tests (Terraform from PATH; see
# scripts/ensure-terraform.sh), their rules test on the same emulator.
echo "==> terraform fmt, schema and rules checks (in the background)"
REQUIRE_FIRESTORE_EMULATOR=1 scripts/tf-checks.sh >"$work/tf.log" 2>&1 &
tf_pid=$!

echo "==> go vet ./..."
go vet ./...
# scripts/bench is a module of its own, which ./... does not reach: vetting
# it builds it, so a change to lifecycle that breaks the measurements fails
# here rather than at the next benchmark.
echo "==> go vet (scripts/bench)"
(cd scripts/bench && go vet ./...)

echo "==> go test -race -count=1 ./..."
status=0
REQUIRE_FIRESTORE_EMULATOR=1 go test -race -count=1 -timeout 20m -v ./... >"$work/test.log" 2>&1 || status=$?

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
grep -E '^fault-injection: ' "$work/test.log" || { echo "fault-injection: no summary line (suite not run?)" >&2; status=1; }
passed=$(grep -cE '^\s*--- PASS' "$work/test.log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$work/test.log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$work/test.log" || true)
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
# Which Terraform checks ran: loud, last, so that nobody takes one for the other.
if grep -q 'WITH the real provider' "$work/tf.log"; then
  echo "terraform: WITH the real hashicorp/google provider: validate (module, root) and terraform test ran"
else
  echo "terraform: WITHOUT the real hashicorp/google provider: validate and terraform test NOT run (see above)"
fi
exit "$status"
