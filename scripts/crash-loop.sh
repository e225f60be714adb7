#!/usr/bin/env bash
# The crash loop of the test suite, longer and on an optimised build: refreshes
# interrupted by SIGKILL, SIGTERM and SIGINT at random instants, CYCLES of each
# (default 200), with what each signal did printed at the end:
#   saved_by_journal     SIGKILL landed between the provider's rotation and the
#                        durable write, and the journal kept the session
#   lost                 sessions the next call found dead (for SIGKILL: kills
#                        after the provider committed and before its answer
#                        reached the journal; for SIGINT/SIGTERM: must be 0)
#   deferred             SIGINT/SIGTERM waited for a refresh's result to be saved
# Usage: scripts/crash-loop.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
AUTHKEEP_CRASH_CYCLES=${1:-200} cargo test --release --locked -p authkeep-cli --test cli \
  refreshes_interrupted_at_random_instants -- --nocapture 2>&1 | grep -E "crash loop|test result|panicked"
