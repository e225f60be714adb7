#!/usr/bin/env bash
# Everything CI runs: formatting, lints and the whole test suite. It needs only
# the pinned Rust toolchain; every service the tests use is started by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -q
cargo test --workspace --locked
