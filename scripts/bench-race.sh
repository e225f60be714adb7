#!/usr/bin/env bash
# Times N `authkeep token` processes released at the same instant on one session
# whose token is inside its refresh window, from the release to the last exit,
# over several trials, and checks that each trial made exactly one refresh
# request and that every process printed a token.
# Usage: scripts/bench-race.sh [N] [TRIALS]   (default 32 processes, 11 trials)
# Needs curl and python3, as scripts/bench-warm.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-32}
trials=${2:-11}

cargo build --release --locked -q -p authkeep-cli --bins
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/authkeep

work=$(mktemp -d)
idp_pid=
cleanup() {
  if [ -n "$idp_pid" ]; then kill "$idp_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export AUTHKEEP_HOME="$work/home"
"$bin" devidp --addr 127.0.0.1:0 >"$work/issuer" 2>/dev/null &
idp_pid=$!
for _ in $(seq 100); do [ -s "$work/issuer" ] && break; sleep 0.05; done
issuer=$(head -n1 "$work/issuer")
curl -sf -X POST "$issuer/admin/sessions" -H 'content-type: application/json' -d '{}' \
  | "$bin" login -q --issuer "$issuer" --client-id authkeep-demo --from-json -
record="$AUTHKEEP_HOME/sessions/default.json"

refreshes() {
  curl -sf "$issuer/admin/counters" | python3 -c \
    'import json, sys; print(sum(json.load(sys.stdin)["token_requests"].get("refresh_token", {}).values()))'
}

# 100 s left of an hour: inside the default 5 min refresh window.
into_window() {
  python3 - "$record" <<'PY'
import json, sys, time
path = sys.argv[1]
record = json.load(open(path))
now = int(time.time())
stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
record["expires_at"] = stamp(now + 100)
record["issued_at"] = stamp(now + 100 - 3600)
json.dump(record, open(path, "w"), indent=2)
PY
}

# Every process waits on one FIFO, which this script holds open read-write so
# that opening it never blocks; one write of N newlines releases them all.
fifo="$work/release"
mkfifo "$fifo"
exec 3<>"$fifo"

times=()
counts=()
for trial in $(seq "$trials"); do
  into_window
  before=$(refreshes)
  : >"$work/ready"
  pids=()
  for i in $(seq "$n"); do
    sh -c 'printf r >>"$1"; read _; exec "$0" token -q </dev/null >"$2"' \
      "$bin" "$work/ready" "$work/out.$i" <"$fifo" &
    pids+=($!)
  done
  while [ "$(stat -c %s "$work/ready")" -lt "$n" ]; do sleep 0.01; done
  start=$(date +%s%N)
  printf "%${n}s" "" | tr ' ' '\n' >&3
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
  end=$(date +%s%N)
  count=$(( $(refreshes) - before ))
  empty=0
  for i in $(seq "$n"); do [ -s "$work/out.$i" ] || empty=$((empty + 1)); done
  ms=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.1f", ns / 1e6 }')
  echo "trial $trial: ${ms} ms, refresh requests: $count, failed: $failed" >&2
  if [ "$count" -ne 1 ] || [ "$failed" -ne 0 ] || [ "$empty" -ne 0 ]; then
    echo "trial $trial broke the contract: $count refresh requests, $failed failed, $empty without a token" >&2
    exit 1
  fi
  times+=("$ms")
  counts+=("$count")
done

sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "N=$n trials=$trials release-to-last-exit median: ${median} ms" \
  "(min $(echo "$sorted" | head -n1) ms, max $(echo "$sorted" | tail -n1) ms);" \
  "refresh requests per trial: ${counts[*]}"
