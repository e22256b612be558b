#!/usr/bin/env bash
# The one run command: a working local system on this machine.
#
# Starts the Firestore emulator and a Cloud Storage emulator (the weekly
# report's bucket), seeds the sample token set, serves every function on
# localhost through scripts/serve (the deployed handlers), uses a local Plaid
# stand-in when PLAID_CLIENT_ID is not set, writes the "local" profile the
# CLI and devkit read, prints what to try, and stops everything it started on
# Ctrl-C. Logs are kept after the stop, in .dev/logs/ (latest: the newest).
#
#   scripts/dev.sh              PORT (default 8080) picks the API port
#
# The first run takes about 3 minutes (Go modules, builds, the emulator's
# first start); later ones about 20 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh

port=${PORT:-8080}
work=$(mktemp -d)
logs=.dev/logs/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$logs"
ln -sfn "$(basename "$logs")" .dev/logs/latest
# Keep the logs of the last 10 runs.
ls -1dt .dev/logs/2* 2>/dev/null | tail -n +11 | xargs -r rm -rf
logs=$(cd "$logs" && pwd)
profile_dir=${XDG_CONFIG_HOME:-$HOME/.config}/manage-tokens
profile=$profile_dir/local.env

pids=()
stop_all() {
  trap - EXIT INT TERM
  echo >&2
  echo "==> stopping" >&2
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Polled, not waited for: a wait interrupted by the signal can leave bash
  # waiting for any child, the emulator included, which stops only below.
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 0.1
  done
  stop_firestore_emulator
  # The profile names this run's ports: gone with them (unless another
  # dev.sh has written its own since).
  if grep -qs "^# dev.sh pid $$\$" "$profile"; then rm -f "$profile"; fi
  rm -rf "$work"
  echo "==> logs kept in ${logs}" >&2
}
trap stop_all EXIT
trap 'exit 130' INT TERM

if curl -s -o /dev/null "http://127.0.0.1:${port}/" 2>/dev/null; then
  echo "port ${port} is in use; run with PORT=<free port> scripts/dev.sh" >&2
  exit 1
fi

echo "==> building (the first run takes about 3 minutes: Go modules, builds, the emulator's first start)" >&2
go build -o "$work/serve" ./scripts/serve
go build -o "$work/fakeplaid" ./scripts/fakeplaid
go build -o "$work/devkit" ./scripts/devkit
go build -o "$work/fake-gcs-server" github.com/fsouza/fake-gcs-server

echo "==> starting the Firestore emulator" >&2
start_firestore_emulator "$logs/firestore-emulator.log"

# Local-only defaults; anything already exported wins.
export GOOGLE_CLOUD_PROJECT=${GOOGLE_CLOUD_PROJECT:-plaid-token-lifecycle-local}
export TOKEN_ENCRYPTION_KEY=${TOKEN_ENCRYPTION_KEY:-local-development-key-not-a-secret}
export AUTH_JWT_SECRET=${AUTH_JWT_SECRET:-local-development-jwt-secret-0123456789}
export ADMIN_USER_IDS=${ADMIN_USER_IDS:-admin-ops}
export LOG_LEVEL=${LOG_LEVEL:-INFO}
export REPORT_BUCKET=${REPORT_BUCKET:-plaid-token-reports-local}

echo "==> starting the Cloud Storage emulator (the weekly report's bucket)" >&2
gcs_port=$(free_port)
export STORAGE_EMULATOR_HOST="127.0.0.1:${gcs_port}"
"$work/fake-gcs-server" -scheme http -host 127.0.0.1 -port "$gcs_port" -backend memory -log-level warn \
  -external-url "http://${STORAGE_EMULATOR_HOST}" -public-host "${STORAGE_EMULATOR_HOST}" >"$logs/storage-emulator.log" 2>&1 &
pids+=($!)
until curl -fs -o /dev/null "http://${STORAGE_EMULATOR_HOST}/storage/v1/b"; do sleep 0.1; done
curl -fsS -o /dev/null -X POST "http://${STORAGE_EMULATOR_HOST}/storage/v1/b?project=${GOOGLE_CLOUD_PROJECT}" \
  -H 'Content-Type: application/json' -d "{\"name\":\"${REPORT_BUCKET}\"}"

signer=
control=
if [[ -z "${PLAID_CLIENT_ID:-}" ]]; then
  plaid_port=$(free_port)
  control_port=$(free_port)
  export PLAID_CLIENT_ID=local-client-id PLAID_SECRET=local-secret PLAID_ENV=sandbox
  export PLAID_BASE_URL="http://127.0.0.1:${plaid_port}"
  "$work/fakeplaid" -addr "127.0.0.1:${plaid_port}" -client-id "$PLAID_CLIENT_ID" -secret "$PLAID_SECRET" \
    -sample -sign-addr "127.0.0.1:${control_port}" 2>"$logs/fakeplaid.log" &
  pids+=($!)
  control="http://127.0.0.1:${control_port}"
  signer="${control}/sign"
  until curl -s -o /dev/null "$signer" 2>/dev/null; do sleep 0.1; done
  plaid_label="LOCAL PLAID STAND-IN at ${PLAID_BASE_URL} (not Plaid: no credentials set; it knows the sample tokens)"
else
  plaid_label="Plaid ${PLAID_ENV:-sandbox} with PLAID_CLIENT_ID=${PLAID_CLIENT_ID}"
fi

echo "==> serving every function on http://127.0.0.1:${port}" >&2
PORT=$port "$work/serve" >"$logs/serve.log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)
until curl -s -o /dev/null "http://127.0.0.1:${port}/healthz"; do
  if ! kill -0 "$serve_pid" 2>/dev/null; then cat "$logs/serve.log" >&2; exit 1; fi
  sleep 0.1
done
api="http://127.0.0.1:${port}"

# Seeded once serve listens: TokenStats counts the creations (the trend).
echo "==> seeding the sample tokens" >&2
"$work/devkit" seed

# The local profile: what manage-tokens --profile local and devkit read.
mkdir -p "$profile_dir"
(
  umask 077
  cat >"$profile" <<PROFILE
# The local system of scripts/dev.sh, written at $(date -u +%FT%TZ); removed when it stops.
# dev.sh pid $$
GOOGLE_CLOUD_PROJECT=${GOOGLE_CLOUD_PROJECT}
FIRESTORE_EMULATOR_HOST=${FIRESTORE_EMULATOR_HOST}
STORAGE_EMULATOR_HOST=${STORAGE_EMULATOR_HOST}
REPORT_BUCKET=${REPORT_BUCKET}
TOKEN_ENCRYPTION_KEY=${TOKEN_ENCRYPTION_KEY}
PLAID_CLIENT_ID=${PLAID_CLIENT_ID}
PLAID_SECRET=${PLAID_SECRET}
PLAID_ENV=${PLAID_ENV:-sandbox}
PLAID_BASE_URL=${PLAID_BASE_URL:-}
AUTH_JWT_SECRET=${AUTH_JWT_SECRET}
ADMIN_USER_IDS=${ADMIN_USER_IDS}
PLAID_STANDIN_CONTROL_URL=${control}
API=${api}
PROFILE
)

# A first weekly run, so that the weekly report exists at once. Retried as
# Pub/Sub would: serve's own first repair of the counters may hold the
# repair lease for a moment (409).
weekly_ok=
for _ in $(seq 1 20); do
  if curl -fs -o "$logs/weekly-analytics.json" -X POST "${api}/events/WeeklyAnalytics" -H 'Content-Type: application/json' \
    -H 'ce-specversion: 1.0' -H "ce-id: dev-start-$$" -H 'ce-type: google.cloud.pubsub.topic.v1.messagePublished' \
    -H 'ce-source: //pubsub.googleapis.com/projects/local/topics/plaid-token-weekly-analytics' \
    -d '{"message":{"data":"","messageId":"0"},"subscription":"local"}'; then
    weekly_ok=1
    break
  fi
  sleep 1
done
[[ -n "$weekly_ok" ]] || echo "(the first WeeklyAnalytics run failed: see ${logs}/serve.log)" >&2

admin_jwt=$("$work/devkit" jwt --sub admin-ops)
user_jwt=$("$work/devkit" jwt --sub user-alice)
report_url="http://${STORAGE_EMULATOR_HOST}/storage/v1/b/${REPORT_BUCKET}/o/reports%2Fweekly%2Flatest.html?alt=media"

# What dev.sh prints, one section each: add a section as a function and
# call it in the list at the bottom.

section_system() {
  cat <<INFO

Local system is up.
  API:        ${api}
  Plaid:      ${plaid_label}
  Firestore:  emulator at ${FIRESTORE_EMULATOR_HOST}, project ${GOOGLE_CLOUD_PROJECT}
  Storage:    emulator at ${STORAGE_EMULATOR_HOST}, bucket ${REPORT_BUCKET}
  Profile:    ${profile} (manage-tokens --profile local)
  Logs:       ${logs}/ (kept after the stop; .dev/logs/latest is the newest run)
INFO
}

section_api() {
  cat <<INFO

== The API (copy-paste into bash) ==

  export API=${api}
  export ADMIN_JWT=${admin_jwt}
  export USER_JWT=${user_jwt}
  # (valid 24 hours; a new one: go run ./scripts/devkit jwt --sub user-alice)

  # Token health (admin); ?history=4 adds the last weekly snapshots
  curl -s -H "Authorization: Bearer \$ADMIN_JWT" "\$API/api/v1/plaid/tokens/analytics"

  # Cleanup, dry run first (admin): 15 checked, 3 expired, 2 stale, 1 invalid, 1 revoked, 6 cleaned
  curl -s -X DELETE -H "Authorization: Bearer \$ADMIN_JWT" "\$API/api/v1/plaid/tokens/cleanup?days_threshold=90&dry_run=true"
  curl -s -X DELETE -H "Authorization: Bearer \$ADMIN_JWT" "\$API/api/v1/plaid/tokens/cleanup?days_threshold=90&dry_run=false"

  # A user revokes one of their items, then all of them (user-alice)
  curl -s -X DELETE -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/items/item-alice-chase"
  curl -s -X DELETE -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/tokens/revoke-all"

  # Someone else's item answers 404, like a missing one
  curl -s -X DELETE -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/items/item-bob-chase"
INFO
}

section_scheduled() {
  cat <<INFO

== The scheduled functions (delivered as Eventarc does; each answers a JSON summary of what it did) ==

  curl -s -X POST "\$API/events/DailyCleanup" -H 'Content-Type: application/json' \\
    -H 'ce-specversion: 1.0' -H "ce-id: daily-\$RANDOM" -H 'ce-type: google.cloud.pubsub.topic.v1.messagePublished' \\
    -H 'ce-source: //pubsub.googleapis.com/projects/local/topics/plaid-token-daily-cleanup' \\
    -d '{"message":{"data":"'\$(printf '{"days_threshold":90,"dry_run":true}' | base64 -w0)'","messageId":"1"},"subscription":"local"}'
  curl -s -X POST "\$API/events/WeeklyAnalytics" -H 'Content-Type: application/json' \\
    -H 'ce-specversion: 1.0' -H "ce-id: weekly-\$RANDOM" -H 'ce-type: google.cloud.pubsub.topic.v1.messagePublished' \\
    -H 'ce-source: //pubsub.googleapis.com/projects/local/topics/plaid-token-weekly-analytics' \\
    -d '{"message":{"data":"","messageId":"2"},"subscription":"local"}'
INFO
}

section_webhook() {
  [[ -n "$signer" ]] || return 0
  cat <<INFO

== A Plaid webhook, signed by the stand-in's key (an unsigned one answers 401) ==

  BODY='{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"item-bob-chase","environment":"sandbox"}'
  SIG=\$(curl -s -X POST --data-binary "\$BODY" ${signer})
  curl -s -X POST "\$API/api/v1/plaid/webhook" -H "Plaid-Verification: \$SIG" -H 'Content-Type: application/json' --data-binary "\$BODY"
INFO
}

section_link() {
  [[ -n "$signer" ]] || return 0
  cat <<INFO

== An Item's life: Link token, exchange, the user's Items, repair, verify ==
INFO
  API="$api" USER_JWT="$user_jwt" PLAID_CONTROL_URL="$control" scripts/dev-walkthrough.sh
}

section_cli() {
  cat <<INFO

== The operators' CLI on this system (the profile names it; from any directory of the repository) ==

  go run ./scripts/manage-tokens analytics --profile local
  go run ./scripts/manage-tokens cleanup --dry-run --profile local
  go run ./scripts/manage-tokens runs --profile local
  export MANAGE_TOKENS_PROFILE=local      # then --profile can go

  # The sample data as new (statuses, removals at the stand-in):
  go run ./scripts/devkit seed --reset
INFO
}

section_report() {
  cat <<INFO

== The weekly report ==

  Open in a browser (WeeklyAnalytics wrote it at start; the WeeklyAnalytics line above writes it again):
    ${report_url}
  Or render it now, to a file:
    go run ./scripts/manage-tokens report --profile local --out /tmp/weekly-report.html
INFO
}

section_footer() {
  cat <<INFO

Press Ctrl-C to stop everything (logs stay in ${logs}/).
INFO
}

for section in section_system section_api section_link section_scheduled section_webhook section_cli section_report section_footer; do
  "$section"
done
wait "$serve_pid"
