#!/usr/bin/env bash
# Prints a copy-paste walk-through of an Item's life on the local system
# (scripts/dev.sh): the app asks for a Link token, the user links a bank
# (the local Plaid stand-in mints the public token Link would hand over),
# the app exchanges it, lists the user's Items, the bank breaks the login,
# the user repairs it in Link's update mode, and the app verifies it.
#
#   scripts/dev-walkthrough.sh [API USER_JWT PLAID_BASE_URL PLAID_CONTROL_URL]
#
# Each argument may come from the environment instead, under the same name:
#   API                 the local API, e.g. http://127.0.0.1:8080
#   USER_JWT            a user's access token (scripts/devkit jwt -sub user-alice)
#   PLAID_BASE_URL      the local Plaid stand-in (scripts/fakeplaid)
#   PLAID_CONTROL_URL   its local controls (fakeplaid -sign-addr), where it plays the user and the bank
#   PLAID_CLIENT_ID, PLAID_SECRET   the stand-in's credentials (local values, not secrets)
#
# Every line it prints is a shell comment or a command, so the whole output
# also runs as a script (its test does that).
set -euo pipefail

api=${1:-${API:-}}
user_jwt=${2:-${USER_JWT:-}}
plaid=${3:-${PLAID_BASE_URL:-}}
control=${4:-${PLAID_CONTROL_URL:-}}
client_id=${PLAID_CLIENT_ID:-local-client-id}
secret=${PLAID_SECRET:-local-secret}

if [[ -z "$api" || -z "$user_jwt" ]]; then
  echo "usage: scripts/dev-walkthrough.sh API USER_JWT [PLAID_BASE_URL PLAID_CONTROL_URL] (or the same names in the environment)" >&2
  exit 2
fi
if [[ -z "$plaid" || -z "$control" ]]; then
  # Real Plaid: Link runs in the browser, and its credentials must not be
  # printed into a copy-paste block.
  cat <<INFO

  # An Item's life needs Plaid Link in a browser with real Plaid credentials; the
  # copy-paste walk-through runs against the local Plaid stand-in only.
INFO
  exit 0
fi

# The value of a JSON string field of the answer on stdin (curl's compact JSON).
field='sed -E '"'"'s/.*"FIELD":"([^"]*)".*/\1/'"'"

cat <<INFO

  # An Item's life, as the app drives it (the local Plaid stand-in plays the user in Link and the bank):
  export API=${api}
  export USER_JWT=${user_jwt}
  export PLAID=${plaid} PLAID_CONTROL=${control}

  # 1. The app asks for a Link token; the browser would open Link with it
  curl -s -X POST -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/link/token" -d '{}'

  # 2. The user links a bank in Link, which hands the app a public token (the sandbox mints one)
  PUBLIC_TOKEN=\$(curl -s -X POST "\$PLAID/sandbox/public_token/create" -H 'Content-Type: application/json' \\
    -d '{"client_id":"${client_id}","secret":"${secret}","institution_id":"ins_109508","initial_products":["transactions"]}' | ${field//FIELD/public_token})
  echo "\$PUBLIC_TOKEN"

  # 3. The app exchanges it with Link's account metadata: 201 with the Item, never its token
  ITEM=\$(curl -s -X POST -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/items" \\
    -d '{"public_token":"'"\$PUBLIC_TOKEN"'","accounts":[{"mask":"0000","name":"Plaid Checking","subtype":"checking"}]}')
  echo "\$ITEM"; ITEM_ID=\$(echo "\$ITEM" | ${field//FIELD/item_id})

  # The same public token again: 400, a public token is exchanged once
  curl -s -X POST -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/items" -d '{"public_token":"'"\$PUBLIC_TOKEN"'"}'

  # 4. The user's Items
  curl -s -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/items"

  # 5. The bank asks the user to log in again; verifying the Item finds it: needs_repair true
  curl -s -X POST "\$PLAID_CONTROL/items/\$ITEM_ID/reset_login"
  curl -s -X POST -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/items/\$ITEM_ID/verify"

  # 6. Repair: a Link token in update mode for that Item, the user logs in again in Link, the app verifies
  LINK_TOKEN=\$(curl -s -X POST -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/link/token" \\
    -d '{"item_id":"'"\$ITEM_ID"'"}' | ${field//FIELD/link_token})
  curl -s -X POST "\$PLAID_CONTROL/link/complete" -d '{"link_token":"'"\$LINK_TOKEN"'"}'
  curl -s -X POST -H "Authorization: Bearer \$USER_JWT" "\$API/api/v1/plaid/items/\$ITEM_ID/verify"
INFO
