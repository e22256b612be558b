#!/usr/bin/env bash
# The one run command: a working local system on this machine.
#
# Starts the Firestore emulator, seeds the sample token set, serves every
# function on localhost through scripts/serve (the deployed handlers), uses a
# local Plaid stand-in when PLAID_CLIENT_ID is not set, prints an admin and a
# user JWT and a curl line for every endpoint, and stops everything it started
# on Ctrl-C.
#
#   scripts/dev.sh              PORT (default 8080) picks the API port
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh

port=${PORT:-8080}
work=$(mktemp -d)
pids=()
stop_all() {
  trap - EXIT INT TERM
  echo >&2
  echo "==> stopping" >&2
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_firestore_emulator
  rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

if curl -s -o /dev/null "http://127.0.0.1:${port}/" 2>/dev/null; then
  echo "port ${port} is in use; run with PORT=<free port> scripts/dev.sh" >&2
  exit 1
fi

echo "==> building" >&2
go build -o "$work/serve" ./scripts/serve
go build -o "$work/fakeplaid" ./scripts/fakeplaid
go build -o "$work/devkit" ./scripts/devkit

echo "==> starting the Firestore emulator" >&2
start_firestore_emulator "$work/emulator.log"

# Local-only defaults; anything already exported wins.
export GOOGLE_CLOUD_PROJECT=${GOOGLE_CLOUD_PROJECT:-plaid-token-lifecycle-local}
export TOKEN_ENCRYPTION_KEY=${TOKEN_ENCRYPTION_KEY:-local-development-key-not-a-secret}
export AUTH_JWT_SECRET=${AUTH_JWT_SECRET:-local-development-jwt-secret-0123456789}
export ADMIN_USER_IDS=${ADMIN_USER_IDS:-admin-ops}
export LOG_LEVEL=${LOG_LEVEL:-INFO}

signer=
if [[ -z "${PLAID_CLIENT_ID:-}" ]]; then
  plaid_port=$(free_port)
  sign_port=$(free_port)
  export PLAID_CLIENT_ID=local-client-id PLAID_SECRET=local-secret PLAID_ENV=sandbox
  export PLAID_BASE_URL="http://127.0.0.1:${plaid_port}"
  "$work/fakeplaid" -addr "127.0.0.1:${plaid_port}" -client-id "$PLAID_CLIENT_ID" -secret "$PLAID_SECRET" \
    -sample -sign-addr "127.0.0.1:${sign_port}" 2>"$work/fakeplaid.log" &
  pids+=($!)
  signer="http://127.0.0.1:${sign_port}/sign"
  until curl -s -o /dev/null "$signer" 2>/dev/null; do sleep 0.1; done
  plaid_label="LOCAL PLAID STAND-IN at ${PLAID_BASE_URL} (not Plaid: no credentials set; it knows the sample tokens)"
else
  plaid_label="Plaid ${PLAID_ENV:-sandbox} with PLAID_CLIENT_ID=${PLAID_CLIENT_ID}"
fi

echo "==> seeding the sample tokens" >&2
"$work/devkit" seed

echo "==> serving every function on http://127.0.0.1:${port}" >&2
PORT=$port "$work/serve" >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)
until curl -s -o /dev/null "http://127.0.0.1:${port}/healthz"; do
  if ! kill -0 "$serve_pid" 2>/dev/null; then cat "$work/serve.log" >&2; exit 1; fi
  sleep 0.1
done

admin_jwt=$("$work/devkit" jwt -sub admin-ops)
user_jwt=$("$work/devkit" jwt -sub user-alice)
api="http://127.0.0.1:${port}"

cat <<INFO

Local system is up.
  API:        ${api}
  Plaid:      ${plaid_label}
  Firestore:  emulator at ${FIRESTORE_EMULATOR_HOST}, project ${GOOGLE_CLOUD_PROJECT}
  Logs:       ${work}/serve.log

Copy-paste (bash):

  export API=${api}
  export ADMIN_JWT=${admin_jwt}
  export USER_JWT=${user_jwt}

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

  # Scheduled functions, delivered as Eventarc does (binary CloudEvent, Pub/Sub message)
  curl -s -X POST "\$API/events/DailyCleanup" -H 'Content-Type: application/json' \\
    -H 'ce-specversion: 1.0' -H "ce-id: daily-\$RANDOM" -H 'ce-type: google.cloud.pubsub.topic.v1.messagePublished' \\
    -H 'ce-source: //pubsub.googleapis.com/projects/local/topics/plaid-token-daily-cleanup' \\
    -d '{"message":{"data":"'\$(printf '{"days_threshold":90,"dry_run":true}' | base64 -w0)'","messageId":"1"},"subscription":"local"}' -w '%{http_code}\n'
  curl -s -X POST "\$API/events/WeeklyAnalytics" -H 'Content-Type: application/json' \\
    -H 'ce-specversion: 1.0' -H "ce-id: weekly-\$RANDOM" -H 'ce-type: google.cloud.pubsub.topic.v1.messagePublished' \\
    -H 'ce-source: //pubsub.googleapis.com/projects/local/topics/plaid-token-weekly-analytics' \\
    -d '{"message":{"data":"","messageId":"2"},"subscription":"local"}' -w '%{http_code}\n'
INFO
if [[ -n "$signer" ]]; then
cat <<INFO

  # A Plaid webhook, signed by the stand-in's key (an unsigned one answers 401)
  BODY='{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"item-bob-chase","environment":"sandbox"}'
  SIG=\$(curl -s -X POST --data-binary "\$BODY" ${signer})
  curl -s -X POST "\$API/api/v1/plaid/webhook" -H "Plaid-Verification: \$SIG" -H 'Content-Type: application/json' --data-binary "\$BODY"
INFO
fi
cat <<INFO

  # The operators' CLI against the same local system (same env vars):
  #   FIRESTORE_EMULATOR_HOST=${FIRESTORE_EMULATOR_HOST} GOOGLE_CLOUD_PROJECT=${GOOGLE_CLOUD_PROJECT} \\
  #   TOKEN_ENCRYPTION_KEY=${TOKEN_ENCRYPTION_KEY} PLAID_CLIENT_ID=${PLAID_CLIENT_ID} PLAID_SECRET=${PLAID_SECRET} \\
  #   PLAID_BASE_URL=${PLAID_BASE_URL:-} go run ./scripts/manage-tokens analytics

Press Ctrl-C to stop everything.
INFO
wait "$serve_pid"
