#!/usr/bin/env bash
# The token file of `authkeep exec`, at length: a child that runs SECONDS
# (default 180) against the development identity provider issuing access tokens
# of ACCESS_TTL (default 60s), reading the token file every second and asking
# the provider (introspection) whether the token it read is active. Prints each
# sample, then how many there were, how many were not active (must be 0), and
# how many refreshes the provider answered (about one per half token lifetime:
# the window is min(5m, lifetime x 0.5)).
# Usage: scripts/exec-soak.sh [SECONDS] [ACCESS_TTL]
# Needs curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-180}
ttl=${2:-60s}
cargo build --locked -p authkeep-cli --bins
bin=$PWD/target/debug
work=$(mktemp -d)
idp=
cleanup() {
  if [ -n "$idp" ]; then kill "$idp" 2>/dev/null || true; wait "$idp" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export AUTHKEEP_HOME=$work/home

"$bin/authkeep-main" devidp --addr 127.0.0.1:0 --access-ttl "$ttl" >"$work/issuer" 2>"$work/devidp.log" &
idp=$!
for _ in $(seq 100); do [ -s "$work/issuer" ] && break; sleep 0.1; done
issuer=$(head -n1 "$work/issuer")
[ -n "$issuer" ] || { echo "the provider did not start:" >&2; cat "$work/devidp.log" >&2; exit 1; }

curl -sf -X POST "$issuer/admin/sessions" -H 'content-type: application/json' -d '{}' |
  "$bin/authkeep" login --issuer "$issuer" --client-id authkeep-demo --from-json - >/dev/null

refreshes() {
  curl -sf "$issuer/admin/counters" | jq '[(.token_requests.refresh_token // {}) | to_entries[].value] | add // 0'
}
before=$(refreshes)

# The child: one sample a second, each checked at the provider as it is read.
child='
i=1
while [ "$i" -le "$SOAK_SECONDS" ]; do
  token=$(cat "$AUTHKEEP_TOKEN_FILE")
  active=$(curl -sf -X POST --data-urlencode "token=$token" "$SOAK_ISSUER/introspect" | jq -r .active)
  echo "sample $i $(date -u +%H:%M:%S) active=$active"
  i=$((i + 1))
  sleep 1
done'
SOAK_SECONDS=$seconds SOAK_ISSUER=$issuer \
  "$bin/authkeep" exec --token-file "$work/token" -- sh -c "$child" | tee "$work/samples"

after=$(refreshes)
samples=$(grep -c '^sample ' "$work/samples" || true)
invalid=$(grep -c -v 'active=true$' "$work/samples" || true)
echo "samples: $samples"
echo "invalid samples: $invalid"
echo "refreshes: $((after - before))"
if [ -e "$work/token" ]; then echo "the token file was left behind" >&2; exit 1; fi
[ "$invalid" -eq 0 ] && [ "$samples" -eq "$seconds" ]
