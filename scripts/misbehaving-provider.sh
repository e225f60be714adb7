#!/usr/bin/env bash
# Runs `authkeep token` from outside, as a user would, against a provider that
# misbehaves (the development identity provider with faults injected through its
# admin API), and prints each scenario's exact stderr and exit code:
#   1. it echoes the refresh token, client secret and Authorization header, with
#      terminal escape sequences, in `error` and `error_description`;
#   2. it answers 429 with Retry-After while the access token has expired;
#   3. it answers a refresh with an access token that has already expired;
#   4. its discovery document names a token endpoint of 70,000 bytes;
#   5. the state directory is on a full filesystem (a 512 KiB tmpfs; needs root).
# Usage: scripts/misbehaving-provider.sh        Needs curl and python3.
set -uo pipefail
cd "$(dirname "$0")/.."

cargo build --locked -q -p authkeep-cli --bins || exit 1
bin=${CARGO_TARGET_DIR:-$PWD/target}/debug/authkeep

work=$(mktemp -d)
idp_pid=
mounted=
cleanup() {
  if [ -n "$idp_pid" ]; then kill "$idp_pid" 2>/dev/null; fi
  if [ -n "$mounted" ]; then umount "$mounted"; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" devidp --addr 127.0.0.1:0 >"$work/issuer" 2>/dev/null &
idp_pid=$!
for _ in $(seq 100); do [ -s "$work/issuer" ] && break; sleep 0.05; done
issuer=$(head -n1 "$work/issuer")

faults() { curl -sf -X POST "$issuer/admin/faults" -H "content-type: application/json" -d "$1" >/dev/null || { echo "the provider refused the fault plan $1" >&2; exit 1; }; }
no_faults() { curl -sf -X DELETE "$issuer/admin/faults" >/dev/null; }

# A new home with a fresh session whose token has `$1` seconds of an hour left.
session() {
  export AUTHKEEP_HOME="$work/$2"
  curl -sf -X POST "$issuer/admin/sessions" -H 'content-type: application/json' -d '{}' \
    | "$bin" login -q --issuer "$issuer" --client-id authkeep-demo --from-json -
  age "$1"
}

age() {
  python3 - "$AUTHKEEP_HOME/sessions/default.json" "$1" <<'PY'
import json, sys, time
path, left = sys.argv[1], int(sys.argv[2])
record = json.load(open(path))
now = int(time.time())
stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
record["expires_at"] = stamp(now + left)
record["issued_at"] = stamp(now + left - 3600)
json.dump(record, open(path, "w"), indent=2)
PY
}

# Runs a command and shows its exit code, stderr, and stdout: its length for
# `token` (never the token itself), its text for anything else.
show() {
  echo "\$ authkeep $*"
  "$bin" "$@" >"$work/out" 2>"$work/err"
  code=$?
  if [ "$1" = token ]; then
    echo "  exit $code; stdout: $(wc -c <"$work/out") bytes"
  else
    echo "  exit $code"
    sed 's/^/  stdout: /' "$work/out" | cat -v
  fi
  sed 's/^/  stderr: /' "$work/err" | cat -v
}

echo "== 1. a provider that echoes secrets and escape sequences (token inside its window)"
session 100 echo
faults '{"kind":{"kind":"echo_secrets","status":400}}'
show token
show status
no_faults

echo
echo "== 2. 429 with Retry-After: 120 while the access token has expired"
session -10 retry
faults '{"kind":{"kind":"status","status":429,"retry_after":"120"}}'
show token
show token
show token --force-refresh
no_faults

echo
echo "== 3. a refresh answered with an access token that has already expired"
session 100 expired
faults '{"kind":{"kind":"expired_access_token"}}'
show token
no_faults

echo
echo "== 4. a discovery document naming a 70,000-byte token endpoint"
session -10 huge
faults '{"kind":{"kind":"huge_metadata","bytes":70000}}'
show token
no_faults

echo
echo "== 5. the state directory on a full filesystem"
if [ "$(id -u)" != 0 ]; then
  echo "  (skipped: mounting a tmpfs needs root)"
  exit 0
fi
mkdir -p "$work/full"
mount -t tmpfs -o size=512k,mode=0700 tmpfs "$work/full" && mounted="$work/full"
session 100 full
dd if=/dev/zero of="$work/full/filler" bs=4096 2>/dev/null
show token
rm "$work/full/filler"
echo "  (space freed)"
show token
