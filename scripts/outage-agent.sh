#!/usr/bin/env bash
# The agent through a provider outage, then a revoked grant, as an operator
# sees it. ACCOUNTS accounts of the development identity provider (access
# tokens living TTL seconds) are kept by one `authkeep agent` on SQLite,
# listening on loopback TCP with an API key and posting state changes to a
# webhook receiver (a small Python server). Then:
#   1. the provider answers every request 503 for MINUTES: sampled every 10 s,
#      no account may be marked as needing a login (they are "failing");
#   2. the provider recovers: every account must be active again, and each that
#      had failed posts "recovered";
#   3. one account's grant is revoked at the provider and a program reports its
#      token rejected (POST /v1/accounts/{id}/rejected): that account, and only
#      it, needs a login: in GET /v1/accounts, on the status page (filtered to
#      needs_login) and in exactly one webhook post, which carries no secret.
# It prints what it saw and exits non-zero when one of these fails. With
# SHOTS=DIR it also saves the status page, whole and filtered, as PNG
# screenshots from Chromium (the HTML as served, rendered from a file).
#
# Usage: scripts/outage-agent.sh [MINUTES] [ACCOUNTS]   (default 5 200)
# Environment: TTL=60, SHOTS=DIR.   Needs curl, jq, python3 (and chromium for SHOTS).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-5}
accounts=${2:-200}
ttl=${TTL:-60}

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
fail() { echo "outage-agent.sh: FAILED: $*" >&2; exit 1; }

export AUTHKEEP_HOME="$work/home"
export AUTHKEEP_KEY_FILE="$work/store.key"
export AUTHKEEP_STORE="sqlite:$work/accounts.db"
"$bin" store keygen -q --out "$AUTHKEEP_KEY_FILE"
(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$work/api.key")
key=$(cat "$work/api.key")

"$bin" devidp --addr 127.0.0.1:0 --access-ttl "${ttl}s" >"$work/issuer" 2>"$work/devidp.log" &
pids+=($!)
for _ in $(seq 200); do [ -s "$work/issuer" ] && break; sleep 0.05; done
issuer=$(head -n1 "$work/issuer")

# The webhook receiver: one JSON body per line.
cat >"$work/hook.py" <<'EOF'
import http.server, sys
out = open(sys.argv[1], "a", buffering=1)
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        out.write(body.decode() + "\n")
        self.send_response(204); self.end_headers()
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
python3 "$work/hook.py" "$work/posts.jsonl" >"$work/hook.port" &
pids+=($!)
for _ in $(seq 200); do [ -s "$work/hook.port" ] && break; sleep 0.05; done
hook="http://127.0.0.1:$(head -n1 "$work/hook.port")/"

"$bin" clients add dev --issuer "$issuer" --client-id authkeep-demo >/dev/null
curl -sf -X POST "$issuer/admin/sessions/bulk" -H 'content-type: application/json' \
  -d "{\"count\": $accounts}" \
  | jq -c -n --argjson ttl "$ttl" \
    'foreach inputs as $s (0; . + 1; $s + {id: "user\(.)@outage.example", expires_in: $ttl})' \
  | "$bin" accounts import --client dev - >/dev/null

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"$bin" agent --listen "127.0.0.1:$port" --api-key-file "$work/api.key" --webhook "$hook" \
  2>"$work/agent.log" &
agent=$!
pids+=("$agent")
api() { curl -sf -H "Authorization: Bearer $key" "$base$1"; }
for _ in $(seq 200); do api /healthz >/dev/null 2>&1 && break; sleep 0.05; done

# state → count, from the API.
states() { api /v1/accounts | jq -c '[.accounts[].state] | group_by(.) | map({(.[0]): length}) | add'; }
count() { api /v1/accounts | jq --arg s "$1" '[.accounts[] | select(.state == $s)] | length'; }

echo "outage: $accounts accounts, tokens living ${ttl}s, the provider down for $minutes min"
until [ "$(api /v1/accounts | jq '[.accounts[] | select(.generation < 2)] | length')" = 0 ]; do sleep 1; done
echo "every account refreshed once: $(states)"

curl -sf -X POST "$issuer/admin/faults" -H 'content-type: application/json' \
  -d '{"kind": {"kind": "status", "status": 503}}' >/dev/null
down=$SECONDS
most_failing=0
while (( SECONDS - down < minutes * 60 )); do
  sleep 10
  needs=$(count needs_login)
  failing=$(count failing)
  (( failing > most_failing )) && most_failing=$failing
  printf '  %4ds down: %s\n' $(( SECONDS - down )) "$(states)"
  [ "$needs" = 0 ] || fail "$needs accounts marked as needing a login during the outage"
done
curl -sf -X DELETE "$issuer/admin/faults" >/dev/null
up=$SECONDS
until [ "$(count active)" = "$accounts" ]; do
  (( SECONDS - up < 300 )) || fail "not every account recovered within 5 minutes: $(states)"
  sleep 1
done
echo "recovered: every account active $(( SECONDS - up ))s after the provider came back; at most $most_failing were failing"
[ "$most_failing" -gt 0 ] || fail "the outage never made an account fail (was the provider down?)"
sleep 2
recovered=$(jq -s '[.[] | select(.state == "recovered")] | length' "$work/posts.jsonl")
echo "webhook: $recovered recovered posts"
[ "$recovered" -ge "$most_failing" ] || fail "fewer recovered posts ($recovered) than accounts that failed ($most_failing)"

victim="user7@outage.example"
token=$(api "/v1/accounts/$victim/token" | jq -r .access_token)
revoked=$(curl -sf -X POST "$issuer/admin/revoke" -H 'content-type: application/json' \
  -d "{\"token\": \"$token\"}" | jq -r .revoked)
[ "$revoked" = true ] || fail "the provider did not revoke the grant"
status=$(curl -s -o "$work/rejected.json" -w '%{http_code}' -H "Authorization: Bearer $key" \
  -H 'content-type: application/json' -X POST "$base/v1/accounts/$victim/rejected" \
  -d "{\"access_token\": \"$token\"}")
echo "revoked $victim's grant; the rejected call answered $status $(jq -c '.error | {class, code}' "$work/rejected.json")"
[ "$status $(jq -r '.error.code' "$work/rejected.json")" = "409 invalid_grant" ] \
  || fail "the rejected call should answer 409 with the code invalid_grant"
sleep 2
needs=$(api /v1/accounts | jq -c '[.accounts[] | select(.state == "needs_login") | .id]')
echo "needs a login (GET /v1/accounts): $needs; all: $(states)"
echo "its health: $(api "/v1/accounts/$victim" | jq -c '{state, needs_login, last_error}')"
[ "$needs" = "[\"$victim\"]" ] || fail "expected only $victim to need a login"
[ "$(api "/v1/accounts/$victim" | jq -r .last_error.code)" = invalid_grant ] \
  || fail "$victim's last error does not carry the provider's code"
api "/?state=needs_login" >"$work/needs.html"
grep -q "data-account=\"$victim\" data-state=\"needs_login\"" "$work/needs.html" \
  || fail "the status page does not show $victim as needing a login"
rows=$(grep -o 'data-state="needs_login"' "$work/needs.html" | wc -l)
echo "status page, filtered to needs_login: $rows row(s), $victim among them"
[ "$rows" = 1 ] || fail "the filtered page shows $rows accounts"
posted=$(jq -s -c '[.[] | select(.state == "needs_login")]' "$work/posts.jsonl")
echo "webhook needs_login posts: $posted"
[ "$(jq length <<<"$posted")" = 1 ] && [ "$(jq -r '.[0].account' <<<"$posted")" = "$victim" ] \
  || fail "expected one needs_login post, for $victim"
grep -q "$token" "$work/posts.jsonl" "$work/needs.html" "$work/agent.log" \
  && fail "an access token left the agent in a post, the page or its log"

if [ -n "${SHOTS:-}" ]; then
  mkdir -p "$SHOTS"
  api "/" >"$work/page.html"
  for page in page needs; do
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
      --disable-component-update --disable-sync --no-first-run \
      --user-data-dir="$work/chromium" --window-size=1280,900 \
      --screenshot="$SHOTS/status-$page.png" "file://$work/$page.html" >/dev/null 2>&1
  done
  echo "screenshots: $SHOTS/status-page.png, $SHOTS/status-needs.png"
fi
kill -TERM "$agent"
wait "$agent" || fail "the agent exited with $?"
echo "outage: every check held"
