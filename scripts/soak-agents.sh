#!/usr/bin/env bash
# Three agents on one PostgreSQL for MINUTES against the development identity
# provider (refresh token rotation and reuse detection on), one of them killed
# with SIGKILL midway while it refreshes. At the end it checks, from the
# provider's own records (`/admin/counters`, `/admin/grants`) and the store:
#   - every refresh the provider answered was saved exactly once (each account's
#     generation − 1 equals its grant's refreshes), except for accounts whose
#     request was in flight at the kill and whose answer died with the agent;
#   - no account was refreshed twice in one cycle (shortest gap between two of a
#     grant's refreshes ≥ 40% of the token's life, the earliest an account is
#     due, less 3 s: the provider stamps whole seconds, and the schedule counts
#     a token's life from when its refresh was sent, so a slow answer shortens
#     the next gap by its latency; a second refresh in one cycle comes within a
#     round trip of the first) and none so late that its token expired (longest
#     gap < its life);
#   - no invalid_grant and no revoked grant but those lost accounts' (each is
#     then rejected once, as reuse, and needs a login), at most as many as the
#     killed agent had in flight;
#   - every other account is active and its final access token is accepted by
#     the provider (introspection).
# It prints the refreshes per cycle (provider count per access-token lifetime
# vs the accounts due in it) and exits non-zero when an invariant fails.
#
# Usage: scripts/soak-agents.sh [MINUTES] [ACCOUNTS]   (default 10 2000)
# Environment: TTL=60 (access-token life, seconds), CONCURRENCY=16 (per agent),
#              PG_URL=postgres://… (else a server of its own, scripts/with-postgres.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
accounts=${2:-2000}
ttl=${TTL:-60}
concurrency=${CONCURRENCY:-16}
if [ -z "${PG_URL:-}" ] && [ -z "${AUTHKEEP_TEST_POSTGRES_URL:-}" ]; then
  exec scripts/with-postgres.sh "$0" "$@"
fi
pg_url=${PG_URL:-$AUTHKEEP_TEST_POSTGRES_URL}

cargo build --release --locked -q -p authkeep-cli --bins
bin=$PWD/target/release/authkeep-main

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export AUTHKEEP_HOME="$work/home"
export AUTHKEEP_KEY_FILE="$work/store.key"
"$bin" store keygen -q --out "$AUTHKEEP_KEY_FILE"
db="soak_$(date +%s%N)"
psql "$pg_url" -q -c "CREATE DATABASE $db"
export AUTHKEEP_STORE="${pg_url%/*}/$db"

"$bin" devidp --addr 127.0.0.1:0 --access-ttl "${ttl}s" >"$work/issuer" 2>"$work/devidp.log" &
pids+=($!)
for _ in $(seq 200); do [ -s "$work/issuer" ] && break; sleep 0.05; done
issuer=$(head -n1 "$work/issuer")
counters() { curl -sf "$issuer/admin/counters"; }

"$bin" clients add dev --issuer "$issuer" --client-id authkeep-demo >/dev/null
curl -sf -X POST "$issuer/admin/sessions/bulk" -H 'content-type: application/json' \
  -d "{\"count\": $accounts, \"user\": \"user{n}@soak.example\", \"access_ttl_secs\": $ttl}" \
  | jq -c -n 'foreach inputs as $s (-1; . + 1; $s + {id: "user\(.)@soak.example"})' \
  | "$bin" accounts import --client dev - >/dev/null

# Leases and claims a killed agent leaves run out in 10 s: well inside a
# token's life, so its accounts are taken over before they expire.
agents=()
for n in 1 2 3; do
  "$bin" agent --listen "unix:$work/agent$n.sock" --concurrency "$concurrency" \
    --lease-ttl 10s 2>"$work/agent$n.log" &
  agents[n]=$!
  pids+=("${agents[n]}")
done
for n in 1 2 3; do
  for _ in $(seq 400); do [ -S "$work/agent$n.sock" ] && break; sleep 0.05; done
done
began=$SECONDS
end=$(( minutes * 60 ))
echo "soak: $accounts accounts, tokens living ${ttl}s, 3 agents for ${minutes} min; agent 2 is killed at $(( end / 2 ))s"

# The provider's successful refreshes, once a second.
: >"$work/series"
in_flight_at_kill=""
while (( SECONDS - began < end )); do
  sleep 1
  ok=$(counters | jq '.token_requests.refresh_token.ok // 0')
  echo "$(( SECONDS - began )) $ok" >>"$work/series"
  if [ -z "$in_flight_at_kill" ] && (( SECONDS - began >= end / 2 )); then
    flying=$(curl -sf --unix-socket "$work/agent2.sock" http://agent/metrics \
      | awk '$1 == "authkeep_refreshes_in_flight" { print $2 }')
    if (( ${flying:-0} > 0 )); then
      kill -KILL "${agents[2]}"
      wait "${agents[2]}" 2>/dev/null || true
      in_flight_at_kill=$flying
      echo "soak: killed agent 2 at $(( SECONDS - began ))s with $flying refreshes in flight"
    fi
  fi
done
if [ -z "$in_flight_at_kill" ]; then
  echo "soak: agent 2 never had a refresh in flight after the midpoint: nothing was killed" >&2
  exit 1
fi

# Stop the survivors between refreshes: no account is left mid-flight.
for n in 1 3; do kill -TERM "${agents[n]}"; done
for n in 1 3; do wait "${agents[n]}" || { echo "soak: agent $n exited with $?" >&2; exit 1; }; done

counters >"$work/counters.json"
curl -sf "$issuer/admin/grants" >"$work/grants.jsonl"
"$bin" accounts list --json >"$work/accounts.jsonl"

# The final access tokens, from a fresh agent's API without a refresh (they
# are all inside their life), then introspected at the provider.
"$bin" agent --listen "unix:$work/check.sock" 2>"$work/check.log" &
check=$!
pids+=("$check")
for _ in $(seq 400); do [ -S "$work/check.sock" ] && break; sleep 0.05; done
jq -r 'select(.state == "active") | .id' "$work/accounts.jsonl" >"$work/active"
python3 - "$work/check.sock" "$issuer" "$work/active" >"$work/introspected" <<'EOF'
import http.client, json, socket, sys, urllib.parse
class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("agent")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
agent = Unix(sys.argv[1])
idp = http.client.HTTPConnection(urllib.parse.urlsplit(sys.argv[2]).netloc)
for id in open(sys.argv[3]).read().split():
    agent.request("GET", "/v1/accounts/" + urllib.parse.quote(id, safe="@") + "/token")
    answer = agent.getresponse()
    body = json.loads(answer.read())
    if answer.status != 200:
        print(json.dumps({"id": id, "active": False, "why": body.get("error", {}).get("class")}))
        continue
    form = urllib.parse.urlencode({"token": body["access_token"]})
    idp.request("POST", "/introspect", form, {"content-type": "application/x-www-form-urlencoded"})
    claims = json.loads(idp.getresponse().read())
    print(json.dumps({"id": id, "active": claims.get("active") is True and claims.get("sub") == id}))
EOF
kill -TERM "$check"
wait "$check" || true

python3 - "$work" "$accounts" "$ttl" "$in_flight_at_kill" <<'EOF'
import json, sys
work, n, ttl, flying = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lines = lambda name: [json.loads(l) for l in open(f"{work}/{name}") if l.strip()]
counters = json.load(open(f"{work}/counters.json"))
grants = {g["user"]: g for g in lines("grants.jsonl")}
accounts = {a["id"]: a for a in lines("accounts.jsonl")}
introspected = {i["id"]: i["active"] for i in lines("introspected")}
refresh = counters["token_requests"].get("refresh_token", {})
ok, invalid = refresh.get("ok", 0), refresh.get("invalid_grant", 0)
others = {k: v for k, v in refresh.items() if k not in ("ok", "invalid_grant")}
failures = []
def check(cond, what):
    if not cond:
        failures.append(what)

lost = sorted(id for id, a in accounts.items() if a["state"] != "active")
print(f"provider: {ok} refreshes, {invalid} invalid_grant, {counters['grants_revoked']} grants revoked, other outcomes {others or 'none'}")
print(f"in flight at the kill: {flying}; lost with it (reused after, now needing a login): {len(lost)} {lost}")
check(len(accounts) == n, f"{len(accounts)} accounts in the store, not {n}")
check(len(lost) <= flying, f"{len(lost)} accounts lost, more than the {flying} in flight")
check(invalid == len(lost), f"{invalid} invalid_grant for {len(lost)} lost accounts")
check(counters["grants_revoked"] == len(lost), f"{counters['grants_revoked']} grants revoked for {len(lost)} lost accounts")
check(not others, f"other refresh outcomes: {others}")
check(sum(g["refreshes"] for g in grants.values()) == ok, "the grants' refreshes do not add up to the counter")
saved = 0
for id, a in accounts.items():
    g = grants.get(id)
    if g is None:
        failures.append(f"{id}: no grant at the provider"); continue
    if id in lost:
        # Its last refresh answered, never saved: the store's removal of the
        # rejected session made the generation that refresh would have.
        check(a["needs_login"] and g["revoked"], f"{id}: lost but not needing a login / revoked")
        check(g["refreshes"] == a["generation"] - 1, f"{id}: lost account: {g['refreshes']} refreshes, generation {a['generation']}")
        continue
    saved += a["generation"] - 1
    check(g["refreshes"] == a["generation"] - 1, f"{id}: {g['refreshes']} refreshes at the provider, {a['generation'] - 1} saved")
    check(not g["revoked"], f"{id}: grant revoked")
    check(g["min_gap_secs"] is None or g["min_gap_secs"] >= int(0.4 * ttl) - 3, f"{id}: refreshed twice in a cycle (gap {g['min_gap_secs']}s)")
    check(g["max_gap_secs"] is None or g["max_gap_secs"] < ttl, f"{id}: a gap of {g['max_gap_secs']}s: its token expired first")
    check(introspected.get(id) is True, f"{id}: its final token is not accepted")
cycles = [g["refreshes"] for id, g in grants.items() if id not in lost]
gaps = [g["min_gap_secs"] for g in grants.values() if g["min_gap_secs"] is not None]
maxgaps = [g["max_gap_secs"] for g in grants.values() if g["max_gap_secs"] is not None]
print(f"refreshes per account: {min(cycles)}..{max(cycles)} (saved {saved}); gap between refreshes {min(gaps)}..{max(maxgaps)} s (token life {ttl} s)")
short = [g for g in gaps if g < int(0.4 * ttl) - 1]
print(f"gaps under 40% of the life less a second (a slow answer before them): {len(short)} accounts{f', shortest {min(short)} s' if short else ''}")
series = [tuple(map(int, l.split())) for l in open(f"{work}/series")]
# An account is due every 40% to 50% of its token's life (the schedule's
# jitter is fixed per account): in one life, 2 to 2.5 refreshes each.
print(f"refreshes per token life ({ttl} s) at the provider, vs 2 to 2.5 per active account:")
prev_t, prev_c = series[0]
for t, c in series:
    if t - prev_t >= ttl:
        active = n - len(lost) if t > series[-1][0] // 2 else n
        print(f"  {prev_t:4}-{t:4} s: {c - prev_c:7} refreshes, {2 * active}..{int(2.5 * active)} expected")
        prev_t, prev_c = t, c
introspected_ok = sum(1 for v in introspected.values() if v)
print(f"final tokens accepted by introspection: {introspected_ok} of {n - len(lost)}")
if failures:
    print(f"FAILED: {len(failures)} invariant(s)", file=sys.stderr)
    for f in failures[:20]:
        print("  " + f, file=sys.stderr)
    sys.exit(1)
print("soak: every invariant held")
EOF
