#!/usr/bin/env bash
# Everything CI runs: formatting, lints, docs, the whole test suite, and the
# library's examples (each against an in-process development identity
# provider). It needs only the pinned Rust toolchain; every service the tests
# use is started by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked -q
cargo test --workspace --all-features --locked
for example in $(ls crates/authkeep/examples | sed -n 's/\.rs$//p'); do
  echo "example $example:"
  cargo run --quiet --locked --all-features -p authkeep --example "$example"
done
