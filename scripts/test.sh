#!/usr/bin/env bash
# Everything CI runs: formatting, lints, docs, the whole test suite, and the
# library's examples (each against an in-process development identity
# provider). It needs the pinned Rust toolchain, and Node.js 20 with npm for
# the conformance provider; every service the tests use is started by the tests,
# except the Secret Service of the keyring tests, which is started here.
set -euo pipefail
cd "$(dirname "$0")/.."

# The keyring tests talk to a real Secret Service: gnome-keyring, unlocked, on a
# private session bus (scripts/with-secret-service.sh). Install what that takes,
# and the browser below, where missing (CI runs as root on a fresh Debian machine).
missing=()
command -v dbus-run-session >/dev/null || missing+=(dbus)
command -v gnome-keyring-daemon >/dev/null || missing+=(gnome-keyring)
command -v secret-tool >/dev/null || missing+=(libsecret-tools)
# The agent's status page is checked in a real headless browser: Debian's
# Chromium (a test framework cannot download a browser here).
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the keyring and status page tests need: ${missing[*]}; install them (as root)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The conformance tests run a certified OpenID Provider (oidc-provider on
# Node.js). Install its packages exactly as locked, unless this lock file's
# packages are already installed (a copy of the lock marks them: npm ci takes
# several seconds even when nothing changed).
conformance=conformance/oidc-provider
if ! cmp -s "$conformance/package-lock.json" "$conformance/node_modules/.installed-lock.json"; then
  npm ci --prefix "$conformance" --no-audit --no-fund --loglevel=error
  cp "$conformance/package-lock.json" "$conformance/node_modules/.installed-lock.json"
fi

# The status page's browser check drives that Chromium with playwright-core.
page=crates/authkeep-agent/tests/page
if ! cmp -s "$page/package-lock.json" "$page/node_modules/.installed-lock.json"; then
  npm ci --prefix "$page" --no-audit --no-fund --loglevel=error
  cp "$page/package-lock.json" "$page/node_modules/.installed-lock.json"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked -q
# Tests and examples run on a private session bus with the keyring started
# there, and with a PostgreSQL server of their own for the database stores
# (scripts/with-postgres.sh); all end with them.
dbus-run-session -- scripts/with-secret-service.sh scripts/with-postgres.sh bash -euo pipefail -c '
  cargo test --workspace --all-features --locked
  for example in $(ls crates/authkeep/examples | sed -n "s/\.rs$//p"); do
    echo "example $example:"
    cargo run --quiet --locked --all-features -p authkeep --example "$example"
  done
'

# The Node.js package, installed as a user installs it: `npm install` of the
# package directory from a scratch project builds its native module with cargo
# (one release build of the binding's own workspace and profile). Then its
# TypeScript declarations are checked on the examples, and its tests run in
# Node's test runner against the development provider of the debug build above.
node_pkg=bindings/node
if ! cmp -s "$node_pkg/package-lock.json" "$node_pkg/node_modules/.installed-lock.json"; then
  npm ci --prefix "$node_pkg" --ignore-scripts --no-audit --no-fund --loglevel=error
  cp "$node_pkg/package-lock.json" "$node_pkg/node_modules/.installed-lock.json"
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo '{"name": "scratch", "private": true}' > "$scratch/package.json"
npm install --prefix "$scratch" --no-audit --no-fund --loglevel=error "$PWD/$node_pkg"
node -e 'const { Keeper } = require(process.argv[1]); if (typeof Keeper.open !== "function") process.exit(1)' "$scratch/node_modules/authkeep"
(cd "$node_pkg" && npx --no-install tsc --noEmit -p tsconfig.json)
AUTHKEEP_BIN="$PWD/target/debug/authkeep-main" npm test --prefix "$node_pkg"
