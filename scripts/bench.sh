#!/usr/bin/env bash
# Cleanup benchmark: the concurrent cleanup against the one-document-at-a-time
# baseline of the same rules, in one run, on the Firestore emulator with a
# Plaid stand-in answering in 20 ms; and the concurrent cleanup's peak RSS at
# two sizes. Loopback only.
#
#   scripts/bench.sh [SMALL] [LARGE]     defaults: 2000 8000
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh
small=${1:-2000}
large=${2:-8000}
latency=20ms

work=$(mktemp -d)
plaid_pid=
cleanup() {
  [[ -n "$plaid_pid" ]] && kill "$plaid_pid" 2>/dev/null || true
  stop_firestore_emulator
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$work/bench" ./scripts/bench
go build -o "$work/fakeplaid" ./scripts/fakeplaid
start_firestore_emulator "$work/emulator.log"

export TOKEN_ENCRYPTION_KEY=bench-encryption-key PLAID_CLIENT_ID=bench PLAID_SECRET=bench-secret
# Pacing is not what is measured: production's 5,000/min would bound both.
export PLAID_ITEM_GET_RPM=10000000 PLAID_ITEM_REMOVE_RPM=10000000

# measure MODE N [OUT]: a fresh project and a fresh Plaid stand-in, seed, run.
measure() {
  local mode=$1 n=$2 out=${3:-$work/results.jsonl} port
  port=$(free_port)
  "$work/fakeplaid" -addr "127.0.0.1:$port" -client-id bench -secret bench-secret -latency "$latency" -bench "$n" 2>/dev/null &
  plaid_pid=$!
  export PLAID_BASE_URL="http://127.0.0.1:$port" GOOGLE_CLOUD_PROJECT="bench-$mode-$n-$RANDOM"
  until curl -s -o /dev/null "$PLAID_BASE_URL/item/get" -d '{}'; do sleep 0.1; done
  "$work/bench" seed -n "$n"
  "$work/bench" run -mode "$mode" -n "$n" | tee -a "$out" >&2
  kill "$plaid_pid"; wait "$plaid_pid" 2>/dev/null || true; plaid_pid=
}

echo "==> cleanup benchmark: $small and $large tokens, Plaid latency $latency" >&2
# The emulator is a JVM: warm it up so that no measurement pays for its JIT.
measure concurrent 1000 /dev/null
measure sequential "$small"
measure concurrent "$small"
measure concurrent "$large"

python3 - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
seq = next(r for r in rows if r["mode"] == "sequential")
conc = [r for r in rows if r["mode"] == "concurrent"]
print()
print(f"{'mode':<11} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'peak RSS MiB':>13} {'vs baseline':>12}")
for r in [seq] + conc:
    speed = r["n"] / r["seconds"]
    ratio = speed / (seq["n"] / seq["seconds"])
    print(f"{r['mode']:<11} {r['n']:>7} {r['seconds']:>8.2f} {speed:>9.0f} {r['peak_rss_kib']/1024:>13.1f} {ratio:>11.1f}x")
same = [r for r in conc if r["n"] == seq["n"]][0]
print()
print(f"speedup at {seq['n']} tokens (same dataset, same run): {seq['seconds']/same['seconds']:.1f}x")
a, b = conc[0], conc[-1]
print(f"peak RSS {b['n']} vs {a['n']} tokens: {b['peak_rss_kib']/a['peak_rss_kib']:.2f}x for {b['n']/a['n']:.0f}x the tokens")
for r in rows:
    st = r["statistics"]
    assert st["total_checked"] == r["n"], r
PY
