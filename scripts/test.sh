#!/usr/bin/env bash
# Everything CI runs: formatting, lints, docs, the whole test suite, and the
# library's examples (each against an in-process development identity
# provider). It needs the pinned Rust toolchain, and Node.js 20 with npm for
# the conformance provider; every service the tests use is started by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# The conformance tests run a certified OpenID Provider (oidc-provider on
# Node.js). Install its packages exactly as locked, unless this lock file's
# packages are already installed (a copy of the lock marks them: npm ci takes
# several seconds even when nothing changed).
conformance=conformance/oidc-provider
if ! cmp -s "$conformance/package-lock.json" "$conformance/node_modules/.installed-lock.json"; then
  npm ci --prefix "$conformance" --no-audit --no-fund --loglevel=error
  cp "$conformance/package-lock.json" "$conformance/node_modules/.installed-lock.json"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked -q
cargo test --workspace --all-features --locked
for example in $(ls crates/authkeep/examples | sed -n 's/\.rs$//p'); do
  echo "example $example:"
  cargo run --quiet --locked --all-features -p authkeep --example "$example"
done
