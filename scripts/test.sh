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

# --- Python for clients/python ------------------------------------------------
# go test ./clients/python runs the Python reference implementation against
# the Go vault with Debian's /usr/bin/python3 and its python3-cryptography
# (the oldest cryptography the package supports). A fresh machine of this
# image may lack them: install them, or stop here saying why.
if ! /usr/bin/python3 -E -s -c 'import cryptography' 2>/dev/null; then
  echo "==> installing python3-cryptography (clients/python's tests need it)"
  sudo=
  if (( EUID != 0 )); then sudo="sudo -n"; fi
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends python3-cryptography >/dev/null; } ||
    ! /usr/bin/python3 -E -s -c 'import cryptography'; then
    echo "scripts/test.sh: /usr/bin/python3 cannot import cryptography, and installing python3-cryptography failed;" >&2
    echo "  run: apt-get update && apt-get install -y python3-cryptography" >&2
    exit 1
  fi
fi
# ------------------------------------------------------------------------------

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

# Chromium (Debian's package): the weekly report's test opens it in a real
# headless browser. Installed when missing; a machine that cannot install it
# fails here, loudly, rather than skip that test.
if ! command -v chromium >/dev/null && [[ -z "${CHROMIUM:-}" ]]; then
  echo "==> installing Chromium (apt-get; the weekly report's browser test needs it)"
  sudo=
  if (( EUID != 0 )); then sudo=sudo; fi
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >"$work/apt.log" 2>&1; }; then
    cat "$work/apt.log" >&2 || true
    echo "FAILED to install Chromium (apt-get install -y chromium); install it, or set CHROMIUM to a Chromium binary" >&2
    exit 1
  fi
fi
# What tests keep for a person to look at (the weekly report and its
# screenshot): printed at the end.
if [[ -z "${TEST_ARTIFACTS_DIR:-}" ]]; then
  export TEST_ARTIFACTS_DIR=$PWD/test-artifacts
  rm -rf "$TEST_ARTIFACTS_DIR" # this run's only
fi
mkdir -p "$TEST_ARTIFACTS_DIR"

echo "==> starting the Firestore and Pub/Sub emulators"
launch_firestore_emulator "$work/firestore.log"
launch_pubsub_emulator "$work/pubsub.log"
wait_emulator Firestore "$FIRESTORE_EMULATOR_HOST" "$EMULATOR_PID" "$work/firestore.log"
wait_emulator Pub/Sub "$PUBSUB_EMULATOR_HOST" "$PUBSUB_EMULATOR_PID" "$work/pubsub.log"
echo "    FIRESTORE_EMULATOR_HOST=$FIRESTORE_EMULATOR_HOST PUBSUB_EMULATOR_HOST=$PUBSUB_EMULATOR_HOST"

# The Terraform checks run beside the tests (Terraform from PATH; see
# scripts/ensure-terraform.sh), their rules test on the same emulator.
echo "==> terraform fmt, consistency and rules checks (in the background)"
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
for artifact in "$TEST_ARTIFACTS_DIR"/*; do
  [[ -e "$artifact" ]] && echo "artifact: $artifact"
done
# Which Terraform checks ran: loud, last, so that nobody takes one for the other.
if grep -q 'WITH the real provider' "$work/tf.log"; then
  echo "terraform: WITH the real hashicorp/google provider: validate (module, root) and terraform test ran"
else
  echo "terraform: WITHOUT the real hashicorp/google provider: validate and terraform test NOT run (see above)"
fi
exit "$status"
