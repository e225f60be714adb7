#!/usr/bin/env bash
# Times the warm path of `authkeep token` (a valid token outside the refresh
# window: a file read and a decision, no network) against the floor: a release
# binary that reads the same record with serde_json and prints the token. Two
# forms of the command, in the same rounds: `authkeep token` with no config.toml,
# and `authkeep token --profile work` with a typical config.toml of three
# profiles present (each run's --prepare puts the file in place or removes it).
# Usage: scripts/bench-warm.sh [RUNS]   (default 100 per command and round;
#        ROUNDS=6 rounds with rotating order)
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
cp "$AUTHKEEP_HOME/sessions/default.json" "$AUTHKEEP_HOME/sessions/work.json"
kill "$idp_pid"   # the warm path must not need the provider
cat >"$work/config.toml" <<TOML
# A typical configuration: three profiles, settings at both levels.
default_profile = "personal"
refresh_threshold = "5m"
lock_timeout = "20s"

[profiles.work]
issuer = "$issuer"
client_id = "authkeep-demo"
client_secret_env = "WORK_CLIENT_SECRET"
scopes = ["openid", "offline_access", "api.read"]
authorization_params = { prompt = "consent" }
login = "browser"
refresh_threshold = "10m"

[profiles.personal]
issuer = "https://accounts.example.com"
client_id = "personal-cli"
login = "device"

[profiles.ci]
issuer = "https://login.example.org/tenant"
client_id = "ci-robot"
client_secret_file = "/run/secrets/ci"
client_auth = "post"
login = "client-credentials"
refresh_fraction = 0.25
TOML
config="$AUTHKEEP_HOME/config.toml"
"$bin" token --profile work >/dev/null
cp "$work/config.toml" "$config"
"$bin" token --profile work >/dev/null
[ "$("$bin" token --profile work)" = "$("$bin" token --profile default)" ] || { echo "not the same session" >&2; exit 1; }
rm "$config"

# hyperfine runs one command's runs before the next one's, so a drift of the
# machine (frequency, neighbours) lands on one side; rotate the order over several
# rounds and report the median of the per-round ratios.
rounds=${ROUNDS:-6}
plain=("$bin token" "rm -f $config")
configured=("$bin token --profile work" "cp $work/config.toml $config")
floored=("$floor" "true")
for round in $(seq "$rounds"); do
  case $((round % 3)) in
    1) order=(plain configured floored) ;;
    2) order=(configured floored plain) ;;
    0) order=(floored plain configured) ;;
  esac
  args=()
  for name in "${order[@]}"; do
    declare -n entry=$name
    args+=(--prepare "${entry[1]}" "${entry[0]}")
    unset -n entry
  done
  hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/round-$round.json" "${args[@]}" >/dev/null 2>&1
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
kinds = {"floor": [], "token": [], "config": []}
spreads = {k: [] for k in kinds}
def kind(command):
    if command.endswith("warm_floor"):
        return "floor"
    return "config" if "--profile" in command else "token"
runs = 0
for i in range(1, rounds + 1):
    for r in json.load(open(f"{work}/round-{i}.json"))["results"]:
        kinds[kind(r["command"])].append(r["mean"])
        spreads[kind(r["command"])].append(r["stddev"])
        runs = len(r["times"])
print(f"rounds: {rounds} x {runs} runs per command, order rotating")
labels = {"token": "authkeep token, no config.toml", "config": "authkeep token --profile work, 3-profile config.toml", "floor": "floor (serde_json read + print)"}
for k in ("token", "config", "floor"):
    means = kinds[k]
    print(f"{labels[k]:<52} mean {statistics.median(means)*1000:.3f} ms ± {statistics.median(spreads[k])*1000:.3f} ms  (round means: {', '.join(f'{t*1000:.3f}' for t in means)})")
for k in ("token", "config"):
    ratios = [t / f for t, f in zip(kinds[k], kinds["floor"])]
    print(f"ratio {k:<6} / floor, median of rounds: {statistics.median(ratios):.2f}x  (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
PY
