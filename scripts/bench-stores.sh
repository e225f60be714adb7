#!/usr/bin/env bash
# Times a warm `authkeep token` (a valid token outside the refresh window: no
# network) from each store, next to the floor binary (a release program that
# reads a record with serde_json and prints the token), in rotating rounds:
#   file            the plain file store: served by the small front itself
#   encrypted-file  secrets sealed with a key file: the front hands over to the
#                   full binary, which opens them (XChaCha20-Poly1305)
#   keyring         secrets in the Secret Service: the full binary asks it (D-Bus)
# It runs itself on a private session bus with an unlocked gnome-keyring
# (scripts/with-secret-service.sh), like the test command.
# Usage: scripts/bench-stores.sh [RUNS]   (default 100 per command and round;
#        ROUNDS=4 rounds with rotating order)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${AUTHKEEP_TEST_SECRET_SERVICE:-}" ]; then
  exec dbus-run-session -- scripts/with-secret-service.sh "$0" "$@"
fi
runs=${1:-100}
rounds=${ROUNDS:-4}

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
key="$work/store.key"
"$bin" store keygen -q --out "$key"
login() {
  curl -sf -X POST "$issuer/admin/sessions" -H 'content-type: application/json' -d '{}' \
    | "$bin" login -q -p "$1" --issuer "$issuer" --client-id authkeep-demo --from-json - "${@:2}"
}
login default
login enc --store encrypted-file --key-file "$key"
login kr --store keyring
export AUTHKEEP_KEY_FILE="$key"
for profile in default enc kr; do "$bin" token -p "$profile" >/dev/null; done
kill "$idp_pid"   # the warm path must not need the provider
# The floor reads the plain record (its path comes from AUTHKEEP_HOME).

for round in $(seq "$rounds"); do
  commands=("$floor" "$bin token" "$bin token -p enc" "$bin token -p kr")
  # Rotate the order, so that a drift of the machine lands on every command.
  shift_by=$((round % 4))
  ordered=("${commands[@]:$shift_by}" "${commands[@]:0:$shift_by}")
  hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/round-$round.json" \
    "${ordered[@]}" >/dev/null 2>&1
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def kind(command):
    if command.endswith("warm_floor"):
        return "floor"
    if command.endswith("-p enc"):
        return "encrypted-file"
    if command.endswith("-p kr"):
        return "keyring"
    return "file"
means = {k: [] for k in ("floor", "file", "encrypted-file", "keyring")}
spreads = {k: [] for k in means}
runs = 0
for i in range(1, rounds + 1):
    for r in json.load(open(f"{work}/round-{i}.json"))["results"]:
        means[kind(r["command"])].append(r["mean"])
        spreads[kind(r["command"])].append(r["stddev"])
        runs = len(r["times"])
print(f"rounds: {rounds} x {runs} runs per command, order rotating")
for k, values in means.items():
    ratios = [t / f for t, f in zip(values, means["floor"])]
    print(f"{k:<15} mean {statistics.median(values)*1000:7.3f} ms ± {statistics.median(spreads[k])*1000:.3f} ms"
          f"   {statistics.median(ratios):5.2f}x the floor")
PY
