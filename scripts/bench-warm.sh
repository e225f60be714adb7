#!/usr/bin/env bash
# Times the warm path of `authkeep token` (a valid token outside the refresh
# window: a file read and a decision, no network) against the floor: a release
# binary that reads the same record with serde_json and prints the token.
# Usage: scripts/bench-warm.sh [RUNS]   (default 100 per command and round;
#        ROUNDS=6 rounds with alternating order)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}

if ! command -v hyperfine >/dev/null; then
  echo "installing hyperfine (Debian package)…" >&2
  (apt-get update -qq && apt-get install -y -qq hyperfine) >/dev/null
fi
cargo build --release --locked -q -p authkeep-cli --bins --example warm_floor
bin=target/release/authkeep
floor=target/release/examples/warm_floor

work=$(mktemp -d)
trap 'kill "$idp_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export AUTHKEEP_HOME="$work/home"
"$bin" devidp --addr 127.0.0.1:0 --access-ttl 1h >"$work/issuer" 2>/dev/null &
idp_pid=$!
for _ in $(seq 100); do [ -s "$work/issuer" ] && break; sleep 0.05; done
issuer=$(head -n1 "$work/issuer")
curl -sf -X POST "$issuer/admin/sessions" -H 'content-type: application/json' -d '{}' \
  | "$bin" login -q --issuer "$issuer" --client-id authkeep-demo --from-json -
"$bin" token >/dev/null
kill "$idp_pid"   # the warm path must not need the provider

# hyperfine runs one command's runs before the other's, so a drift of the machine
# (frequency, neighbours) lands on one side; alternate the order over several
# rounds and report the median of the per-round ratios.
rounds=${ROUNDS:-6}
for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then first="$bin token"; second="$floor"; else first="$floor"; second="$bin token"; fi
  hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/round-$round.json" "$first" "$second" >/dev/null 2>&1
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
token, floor, ratios = [], [], []
for i in range(1, rounds + 1):
    results = json.load(open(f"{work}/round-{i}.json"))["results"]
    medians = {("floor" if r["command"].endswith("warm_floor") else "token"): r["median"] for r in results}
    token.append(medians["token"]); floor.append(medians["floor"])
    ratios.append(medians["token"] / medians["floor"])
print(f"rounds: {rounds} x {len(results) and json.load(open(f'{work}/round-1.json'))['results'][0]['times'].__len__()} runs per command, order alternating")
print(f"warm authkeep token median: {statistics.median(token)*1000:.3f} ms  (rounds: {', '.join(f'{t*1000:.3f}' for t in token)})")
print(f"floor median:               {statistics.median(floor)*1000:.3f} ms  (rounds: {', '.join(f'{t*1000:.3f}' for t in floor)})")
print(f"ratio, median of rounds:    {statistics.median(ratios):.2f}x  (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
PY
