#!/usr/bin/env bash
# The agent at scale: ACCOUNTS accounts of the development identity provider
# whose access tokens come due staggered over the run (about RATE a second),
# refreshed by one `authkeep agent`, on SQLite and/or PostgreSQL; then the
# token API under load for warm tokens over the agent's unix socket.
#
# Usage: scripts/bench-agent.sh [ACCOUNTS] [sqlite|postgres|both]
#        (default 100000 both)
# Environment:
#   RATE=3000         accounts due per second, nominal (the schedule's per-account
#                     jitter spreads them: the table prints the due rate measured)
#   CONCURRENCY=64    the agent's --concurrency
#   LOAD_SECONDS=10   token API load, seconds;  CONNECTIONS=32 its connections
#   PG_URL=postgres://…  an empty database to use; without it the script runs
#                     under scripts/with-postgres.sh (a server of its own)
#   KEEP=1            keep the work directory (logs, metrics) and say where
#
# For each backend it prints one block: the due rate, refreshes per second
# (mean over the run, and the best one-second rate), the schedule lag p50/p99
# (from the agent's histogram, interpolated within buckets), the scheduler's
# claims, the agent's
# resident memory (peak sampled, and VmHWM), CPU seconds of the agent and the
# provider, and the token API's requests per second and latency p50/p99.
set -euo pipefail
cd "$(dirname "$0")/.."

accounts=${1:-100000}
backends=${2:-both}
rate=${RATE:-3000}
concurrency=${CONCURRENCY:-64}
load_seconds=${LOAD_SECONDS:-10}
connections=${CONNECTIONS:-32}
case "$backends" in
  sqlite) list=(sqlite) ;;
  postgres) list=(postgres) ;;
  both) list=(sqlite postgres) ;;
  *) echo "bench-agent.sh: the backend is sqlite, postgres or both, not $backends" >&2; exit 2 ;;
esac
if [[ " ${list[*]} " == *" postgres "* ]] && [ -z "${PG_URL:-}" ] && [ -z "${AUTHKEEP_TEST_POSTGRES_URL:-}" ]; then
  exec scripts/with-postgres.sh "$0" "$@"
fi
pg_url=${PG_URL:-${AUTHKEEP_TEST_POSTGRES_URL:-}}

cargo build --release --locked -q -p authkeep-cli --bins
cargo build --release --locked -q -p authkeep-agent --example token_load
bin=$PWD/target/release/authkeep-main
load=$PWD/target/release/examples/token_load

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then
    echo "bench-agent.sh: the work directory is kept: $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
export AUTHKEEP_HOME="$work/home"
export AUTHKEEP_KEY_FILE="$work/store.key"
"$bin" store keygen -q --out "$AUTHKEEP_KEY_FILE"

# Access tokens a refresh hands out live an hour: each account is refreshed
# once during the run.
"$bin" devidp --addr 127.0.0.1:0 --access-ttl 1h >"$work/issuer" 2>"$work/devidp.log" &
idp_pid=$!
pids+=("$idp_pid")
for _ in $(seq 200); do [ -s "$work/issuer" ] && break; sleep 0.05; done
issuer=$(head -n1 "$work/issuer")

cpu_seconds() { # utime + stime of a process, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

metric() { # the value of one metrics line (0 when absent)
  awk -v name="$1" '$1 == name { v = $2 } END { print v + 0 }' "$2"
}

# p-quantile of the schedule lag histogram, interpolated within its bucket.
lag_quantile() {
  awk -v q="$1" '
    /^authkeep_schedule_lag_seconds_bucket/ {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      n++; bound[n] = (le == "+Inf") ? -1 : le; count[n] = $2
    }
    END {
      total = count[n]; if (total == 0) { print "n/a"; exit }
      want = q * total; lo = 0; below = 0
      for (i = 1; i <= n; i++) {
        if (count[i] >= want) {
          if (bound[i] < 0) { printf "> %ss\n", lo; exit }
          in_bucket = count[i] - below
          at = (in_bucket > 0) ? lo + (bound[i] - lo) * (want - below) / in_bucket : bound[i]
          printf "%.3fs\n", at; exit
        }
        lo = bound[i]; below = count[i]
      }
    }' "$2"
}

run() {
  local backend=$1 dir="$work/$1" store
  mkdir -p "$dir"
  case "$backend" in
    sqlite) store="sqlite:$dir/accounts.db" ;;
    postgres)
      local db="bench_$(date +%s%N)"
      psql "$pg_url" -q -c "CREATE DATABASE $db"
      store="${pg_url%/*}/$db"
      ;;
  esac
  export AUTHKEEP_STORE=$store
  "$bin" clients add dev --issuer "$issuer" --client-id authkeep-demo >/dev/null

  # Fresh grants; account i's token lives 2·(start + i/rate) seconds from the
  # import, so it is due between 0.8 and 1 times (start + i/rate) from then
  # (half its life, less the schedule's jitter of up to a fifth of that).
  local created=$SECONDS
  curl -sf -X POST "$issuer/admin/sessions/bulk" -H 'content-type: application/json' \
    -d "{\"count\": $accounts}" >"$dir/sessions.jsonl"
  local start=$(( accounts / 5000 + 20 ))
  jq -c -n --argjson start "$start" --argjson rate "$rate" \
    'foreach inputs as $s (-1; . + 1;
       $s + {id: "user\(.)@bench.example", expires_in: (2 * ($start + . / $rate) | floor)})' \
    <"$dir/sessions.jsonl" >"$dir/import.jsonl"
  rm "$dir/sessions.jsonl"
  jq -r .id <"$dir/import.jsonl" >"$dir/ids"
  local imported=$SECONDS
  "$bin" accounts import --client dev "$dir/import.jsonl" >/dev/null
  rm "$dir/import.jsonl"
  local import_secs=$(( SECONDS - imported ))
  local setup_secs=$(( imported - created ))

  # The due instants as the store computed them, by second: the demand this run makes.
  "$bin" accounts list --json | jq -r '.due_at // empty' | cut -c1-19 | sort >"$dir/due"
  local due_rate
  due_rate=$(uniq -c "$dir/due" | awk '{ print $1 }' | sort -n \
    | awk '{ n[NR] = $1 } END { printf "%d/s median second, %d/s busiest, over %d seconds\n", n[int((NR + 1) / 2)], n[NR], NR }')

  local socket="$dir/agent.sock"
  "$bin" agent --listen "unix:$socket" --concurrency "$concurrency" 2>"$dir/agent.log" &
  local agent=$!
  pids+=("$agent")
  for _ in $(seq 400); do [ -S "$socket" ] && break; sleep 0.05; done
  local idp_cpu0 began=$SECONDS
  idp_cpu0=$(cpu_seconds "$idp_pid")

  # Sample once a second until every account was refreshed (or the run is
  # clearly stuck): successes and resident memory.
  local done=0 rss_max=0 best=0 prev=0 first="" last="" now rss
  local deadline=$(( start + accounts / rate + 300 ))
  while (( SECONDS - began < deadline )); do
    sleep 1
    curl -sf --unix-socket "$socket" http://agent/metrics >"$dir/metrics" || continue
    done=$(awk '/^authkeep_refreshes_total\{outcome="success"/ { s += $2 } END { print s + 0 }' "$dir/metrics")
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$agent/status")
    (( rss > rss_max )) && rss_max=$rss
    now=$(date +%s.%N)
    if (( done > prev )); then
      [ -z "$first" ] && first=$now
      last=$now
      (( done - prev > best )) && best=$(( done - prev ))
    fi
    prev=$done
    (( done >= accounts )) && break
  done
  local hwm agent_cpu idp_cpu failures
  hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$agent/status")
  agent_cpu=$(cpu_seconds "$agent")
  idp_cpu=$(awk -v a="$(cpu_seconds "$idp_pid")" -v b="$idp_cpu0" 'BEGIN { printf "%.1f", a - b }')
  failures=$(awk '/^authkeep_refreshes_total\{outcome="failure"/ { s += $2 } END { print s + 0 }' "$dir/metrics")
  local mean
  mean=$(awk -v n="$done" -v a="$first" -v b="$last" 'BEGIN { d = b - a; if (d < 1) d = 1; printf "%.0f", n / d }')

  local tokens
  tokens=$("$load" --socket "$socket" --ids "$dir/ids" --connections "$connections" --seconds "$load_seconds")
  local rss_after
  rss_after=$(awk '/^VmRSS/ { print $2 }' "/proc/$agent/status")
  kill -TERM "$agent"
  wait "$agent" || echo "bench-agent.sh: the agent exited with $?" >&2

  printf '\n%s, %s accounts (import %ss after %ss creating grants; concurrency %s)\n' \
    "$backend" "$accounts" "$import_secs" "$setup_secs" "$concurrency"
  printf '  %-28s %s\n' \
    "due" "$due_rate" \
    "refreshed" "$done of $accounts ($failures failed)" \
    "refreshes/s" "$mean mean (first to last), $best best second" \
    "schedule lag" "p50 $(lag_quantile 0.5 "$dir/metrics"), p99 $(lag_quantile 0.99 "$dir/metrics")" \
    "claims" "$(metric authkeep_scheduler_claims_total "$dir/metrics")" \
    "agent RSS" "$(( rss_max / 1024 )) MB peak sampled, VmHWM $(( hwm / 1024 )) MB, $(( rss_after / 1024 )) MB after the token load" \
    "CPU seconds" "agent $agent_cpu, provider $idp_cpu" \
    "token API (warm)" "$(jq -r '"\(.per_second) req/s, p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, \(.errors) errors, \(.connections // "'"$connections"'") connections"' <<<"$tokens")"
  if (( done < accounts )); then
    echo "bench-agent.sh: only $done of $accounts accounts were refreshed; see $dir/agent.log" >&2
    tail -n 5 "$dir/agent.log" >&2
    return 1
  fi
}

for backend in "${list[@]}"; do
  run "$backend"
done
