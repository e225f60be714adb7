#!/usr/bin/env bash
# The Node.js package's race figures: 2 and 8 separate Node processes started
# at one instant from one expired session, TRIALS times each (default 5): the
# refresh requests the development provider saw, the processes that got a token
# it accepts, and whether the session survived. Then token() on a warm token from
# JavaScript (median, p99) beside the same call from Rust.
# Usage: scripts/bench-node-race.sh [TRIALS]
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-5}

cargo build --locked -q -p authkeep-cli --bin authkeep-main
if ! ls bindings/node/authkeep.*.node >/dev/null 2>&1; then
  npm ci --prefix bindings/node --ignore-scripts --no-audit --no-fund --loglevel=error
  node bindings/node/scripts/install.js
fi
export AUTHKEEP_BIN=$PWD/target/debug/authkeep-main
node bindings/node/bench/race.js "$trials"
node bindings/node/bench/token-latency.js
cargo run --release --locked -q -p authkeep --example warm_token
