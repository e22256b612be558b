#!/usr/bin/env bash
# The one benchmark command: every figure a user asks for, as
# ratios measured in the same run, on a Firestore emulator this script
# starts, against Plaid stand-ins on loopback, each measurement in its own
# process. It prints the machine's description first and a final table last.
# Not run by CI. The default run takes about 15 minutes on a 2-core machine.
#
#   scripts/bench.sh                                   every section, default sizes
#   BENCH_SECTIONS="cleanup pacing" scripts/bench.sh   some sections
#   BENCH_SMALL=2000 BENCH_LARGE=20000 BENCH_OLD=2000 scripts/bench.sh
#
# Sections (BENCH_SECTIONS, in this order by default):
#   cleanup    cleanup at BENCH_SMALL (10,000) and BENCH_LARGE (100,000) tokens
#              against the plain concurrent floor (scripts/bench/floor.go), and
#              against the old algorithm at BENCH_OLD (10,000); peak RSS; per
#              stage timings; the emulator's cost of one page query
#   rates      Plaid pacing (PLAID_ITEM_GET_RPM=600, ~70 s) and one per-client
#              quota shared by BENCH_QUOTA_PROCS (3) processes against
#              per-process pacing, at the same time (they hardly use the CPU)
#   coldstart  process start to first answer of every deployed target, built
#              as Google's Go buildpack builds it (median of 3 starts)
#   load       scripts/loadtest: BENCH_USERS (400) users revoking their
#              items at once while BENCH_ADMINS (50) admins poll analytics
#              every BENCH_ADMIN_INTERVAL (1s), PLAID_ITEM_REMOVE_RPM at
#              Plaid's 2,000/min. As deployed (RevokeItem and TokenAnalytics
#              each in a process of its own, the buildpack's binary) against
#              the floor of a revocation (scripts/bench/floor_revoke.go) in
#              RevokeItem's place, BENCH_LOAD_ROUNDS (3) rounds of each
#              alternating after a warm-up; again with the quota not
#              binding (60,000/min). Then the same for BENCH_USERS new
#              users each linking an Item at once (ExchangePublicToken
#              against scripts/bench/floor_exchange.go), /item/get at
#              Plaid's 5,000/min, then not binding (60,000/min). Last,
#              revocations through scripts/serve keeping the analytics
#              counters itself (local development)
#   analytics  (scripts/bench/analytics.go) another process writes
#              BENCH_ANALYTICS (100,000) tokens while scripts/serve counts
#              them from a Firestore emulator's own trigger deliveries (one
#              at a time), then again with each write's event posted as it
#              commits, 32 at a time: the time until the counters agree
#              against the writes' time; TokenStats fed
#              BENCH_ANALYTICS_DIRECT (20,000) events directly, 32 at a time;
#              analytics vs reading every document, documents read per call,
#              and an exact recount (about 10 minutes)
#
# Results go to a JSON-lines file (kept when BENCH_RESULTS names it);
# `(cd scripts/bench && go run . report FILE)` prints the report again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh

sections=${BENCH_SECTIONS:-cleanup rates coldstart load analytics}
small=${BENCH_SMALL:-10000}
large=${BENCH_LARGE:-100000}
old=${BENCH_OLD:-10000}
latency=20ms

work=$(mktemp -d)
results=${BENCH_RESULTS:-$work/results.jsonl}
: >"$results"
plaid_pid=
reported=
cleanup() {
  [[ -n "$plaid_pid" ]] && kill "$plaid_pid" 2>/dev/null || true
  stop_firestore_emulator
  # A section that failed must not take the figures of the others with it.
  if [[ -z "$reported" && -s "$results" && -x "$work/bench" ]]; then
    echo >&2
    echo "==> the run stopped early; what it measured:" >&2
    "$work/bench" report "$results" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$SECONDS
step() { printf '==> [%3d s] %s\n' $((SECONDS - started)) "$*" >&2; }

step "building"
for cmd in fakeplaid serve loadtest; do
  go build -o "$work/$cmd" "./scripts/$cmd"
done
# scripts/bench is a module of its own (its go.mod replaces the root
# module by this checkout).
(cd scripts/bench && go build -o "$work/bench" .)
bench() { "$work/bench" "$@"; }
functions_bin() {
  if [[ ! -x "$work/function" ]]; then
    step "building the functions as the buildpack does"
    bench buildpack -out "$work/function"
  fi
}
# Every figure must be loopback only and from this run's own emulator.
unset FIRESTORE_EMULATOR_HOST PUBSUB_EMULATOR_HOST
step "starting the Firestore emulator"
start_firestore_emulator "$work/emulator.log"
# setsid made the gcloud wrapper the leader of the emulator's process group.
export BENCH_EMULATOR_PGID=$EMULATOR_PID

bench machine | tee -a "$results" >&2
export TOKEN_ENCRYPTION_KEY=bench-encryption-key-0123456789abcdef PLAID_CLIENT_ID=bench PLAID_SECRET=bench-secret PLAID_ENV=sandbox
# Pacing is lifted where it is not what is measured: Plaid's 5,000/min would
# bound the cleanup and its floor alike.
export PLAID_ITEM_GET_RPM=10000000 PLAID_ITEM_REMOVE_RPM=10000000

new_project() { export GOOGLE_CLOUD_PROJECT="bench-$1-$RANDOM$RANDOM"; }
# clear_project drops the project's documents, so the emulator holds only
# what the next measurement needs.
clear_project() {
  curl -fsS -X DELETE "http://$FIRESTORE_EMULATOR_HOST/emulator/v1/projects/$GOOGLE_CLOUD_PROJECT/databases/(default)/documents" >/dev/null
}

# start_plaid N: a Plaid stand-in for the benchmark dataset of N tokens.
start_plaid() {
  local port
  port=$(free_port)
  "$work/fakeplaid" -addr "127.0.0.1:$port" -client-id bench -secret bench-secret -latency "$latency" -bench "$1" 2>/dev/null &
  plaid_pid=$!
  export PLAID_BASE_URL="http://127.0.0.1:$port" BENCH_PLAID_PID=$plaid_pid
  until curl -s -o /dev/null "$PLAID_BASE_URL/item/get" -d '{}'; do sleep 0.1; done
}
stop_plaid() {
  kill "$plaid_pid" 2>/dev/null || true
  wait "$plaid_pid" 2>/dev/null || true
  plaid_pid=
  unset BENCH_PLAID_PID
}

# measure_cleanup MODE N [OUT [FLAGS...]]: a fresh project and Plaid
# stand-in, the dataset seeded, one cleanup in its own process.
measure_cleanup() {
  local mode=$1 n=$2 out=${3:-$results}
  shift 3 || shift $#
  new_project "$mode-$n"
  start_plaid "$n"
  bench seed -n "$n"
  if [[ "$mode" == cleanup && "$out" == "$results" ]]; then
    # What one query costs the emulator on this collection (read-only).
    bench paging -n "$n" -page-size 1000 -pages 5 >>"$out"
  fi
  bench cleanup -mode "$mode" -n "$n" "$@" >>"$out"
  stop_plaid
  clear_project
}

bench_cleanup() {
  step "warming the emulator up (its JIT), not measured"
  measure_cleanup cleanup 2000 /dev/null
  measure_cleanup floor 2000 /dev/null
  for n in "$small" "$large"; do
    step "cleanup and its floor at $n tokens"
    measure_cleanup floor "$n"
    measure_cleanup cleanup "$n"
    if [[ "$n" == "$small" ]]; then
      # On the emulator every query scans the collection (85 ms at 10,000
      # documents on 2 cores), and the old algorithm makes one per token:
      # 10,000 tokens take 15 to 20 minutes. By default it runs for
      # BENCH_OLD_BUDGET and its rate stands for the whole run (the
      # collection it scans shrinks as it deletes, so a whole run would be
      # up to ~12% faster); BENCH_OLD_BUDGET=0 runs it to the end.
      step "the old one-at-a-time algorithm at $old tokens (for ${BENCH_OLD_BUDGET:-150s} at most)"
      measure_cleanup sequential "$old" "$results" -budget "${BENCH_OLD_BUDGET:-150s}"
    fi
  done
}

bench_rates() {
  step "Plaid pacing and one shared quota (about 75 s)"
  new_project pacing
  bench pacing -rpm 600 -for 70s -latency "$latency" >>"$results" &
  local pacing=$!
  new_project quota
  bench quota -limit 600 -procs "${BENCH_QUOTA_PROCS:-3}" -for 70s -latency "$latency" >>"$results"
  wait "$pacing"
}

bench_coldstart() {
  functions_bin
  step "cold starts of the deployed targets"
  new_project coldstart
  bench coldstart -starts 3 -bin "$work/function" >>"$results"
  clear_project
}

bench_load() {
  local load_flags=(-loadtest "$work/loadtest" -users "${BENCH_USERS:-400}" -admins "${BENCH_ADMINS:-50}"
    -admin-interval "${BENCH_ADMIN_INTERVAL:-1s}" -latency "$latency" -logs "$work")
  # Deployed, the analytics counters are kept by TokenStats instances of
  # their own, fed by Eventarc: the revocations' instances do not do it,
  # and nothing does here (the counters are backfilled first).
  # At Plaid's 2,000 removals a minute most of the 1,200 revocations go
  # local (the quota spent, no Plaid call), which the floor, without a
  # quota, never does; at 60,000 the quota does not bind and every
  # revocation calls Plaid, as the floor's do: the service's own cost.
  functions_bin
  local rpm
  for rpm in 2000 60000; do
    step "a revocation as deployed against its floor, PLAID_ITEM_REMOVE_RPM=$rpm (${BENCH_LOAD_ROUNDS:-3} rounds of each, after a warm-up)"
    new_project deployed
    bench deployed -endpoint revoke -functions "$work/function" -remove-rpm "$rpm" -rounds "${BENCH_LOAD_ROUNDS:-3}" "${load_flags[@]}" >>"$results"
  done
  # An exchange calls /item/get as the user's call (the fleet's quota, users
  # first) and /institutions/get_by_id and /item/public_token/exchange
  # unpaced; its floor has no quota. At 5,000/min a 2-second window holds
  # 161 calls, fewer than the users at once; at 60,000/min the quota does
  # not bind and the service's own cost shows.
  for rpm in 5000 60000; do
    step "an exchange as deployed against its floor, PLAID_ITEM_GET_RPM=$rpm (${BENCH_LOAD_ROUNDS:-3} rounds of each, after a warm-up)"
    new_project deployed
    bench deployed -endpoint exchange -functions "$work/function" -get-rpm "$rpm" -rounds "${BENCH_LOAD_ROUNDS:-3}" "${load_flags[@]}" >>"$results"
  done
  # scripts/serve keeps the counters in-process by default (a listener on
  # plaid_tokens), on the same emulator. On the emulator a listener is
  # resent the whole collection with every change, so that figure is local
  # development's, not the deployment's.
  step "HTTP under load through scripts/serve (-token-stats=listener)"
  new_project load
  bench load -endpoint revoke -serve "$work/serve" -serve-flags "-token-stats=listener" "${load_flags[@]}" >>"$results"
  clear_project
}

bench_analytics() {
  step "analytics: ${BENCH_ANALYTICS:-100000} tokens written by another process, counted by TokenStats through scripts/serve"
  new_project analytics
  # Its own emulator (the SDK's launcher, delivering its trigger's events
  # to serve), started and stopped by the command; logs in $work.
  bench analytics -serve "$work/serve" -n "${BENCH_ANALYTICS:-100000}" -direct "${BENCH_ANALYTICS_DIRECT:-20000}" \
    -logs "$work" >>"$results"
}

for s in $sections; do
  if ! declare -F "bench_$s" >/dev/null; then
    echo "unknown section $s (known: cleanup rates coldstart load analytics)" >&2
    exit 2
  fi
  "bench_$s"
done
bench machine >>"$results"
step "done"
echo
bench report "$results"
reported=1
