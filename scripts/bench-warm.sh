#!/usr/bin/env bash
# Times the warm path of `authkeep token` (a valid token outside the refresh
# window: a file read and a decision, no network) against the floor: a release
# binary that reads the same record with serde_json and prints the token.
# Usage: scripts/bench-warm.sh [RUNS]   (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}

if ! command -v hyperfine >/dev/null; then
  echo "installing hyperfine (Debian package)…" >&2
  (apt-get update -qq && apt-get install -y -qq hyperfine) >/dev/null
fi
cargo build --release --locked -q -p authkeep-cli --bin authkeep --example warm_floor
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

hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/warm.json" \
  -n "authkeep token (warm)" "$bin token" \
  -n "floor (serde_json read + print)" "$floor" >&2
python3 - "$work/warm.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
token, floor = results[0]["median"], results[1]["median"]
print(f"warm authkeep token median: {token*1000:.3f} ms")
print(f"floor median:               {floor*1000:.3f} ms")
print(f"ratio:                      {token/floor:.2f}x")
PY
