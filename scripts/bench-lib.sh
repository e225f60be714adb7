#!/usr/bin/env bash
# The library's benchmarks (divan, crates/authkeep/benches/): the cached token's
# hot read at 1 and 2 threads against an RwLock<Arc<Token>> read and clone, and
# a refresh through the keeper (file store with fsync, memory store) against the
# development identity provider's own time for the same refresh request; and the
# middleware's work per request on a warm token.
# Prints divan's tables, then a summary of medians.
# Usage: scripts/bench-lib.sh [DIVAN ARGS…]   (e.g. a filter: cached_get)
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo bench --locked -p authkeep --features middleware --bench cached_read --bench refresh --bench middleware -- --color never "$@" | tee "$out"

python3 - "$out" <<'PY'
import re, sys

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}

def nanos(text):
    parts = text.split()
    if len(parts) != 2 or parts[1] not in UNITS:
        return None
    try:
        return float(parts[0]) * UNITS[parts[1]]
    except ValueError:
        return None

# Rows look like "│  ├─ t=1   35.55 ns │ 13.96 µs │ 37.84 ns │ 78.19 ns │ 1000 │ 1000000":
# fastest, slowest, median, mean, samples, iterations.
medians, parent = {}, None
for line in open(sys.argv[1], encoding="utf-8"):
    # The tree's own "│" comes first on nested rows: strip it before splitting.
    row = re.sub(r"^[\s├╰─│]+", "", line.rstrip("\n"))
    cells = [c.strip() for c in row.split("│")]
    match = re.match(r"^(\S+)\s*(.*)$", cells[0])
    if not match:
        continue
    name, fastest = match.groups()
    if len(cells) < 4 or not fastest:
        parent = name  # a group line (its threads follow)
        continue
    median = nanos(cells[2])
    if median is None:
        continue  # the header
    key = f"{parent} {name}" if name.startswith("t=") else name
    medians[key] = median

def show(key, unit="ns"):
    value = medians.get(key)
    if value is None:
        return "n/a"
    return f"{value:.1f} ns" if unit == "ns" else f"{value / 1e3:.0f} µs"

print()
print("summary (medians)")
for threads in ("t=1", "t=2"):
    print(f"  {threads}: cached get() {show(f'cached_get {threads}')}, "
          f"with() {show(f'cached_with {threads}')}, reader get() {show(f'cached_reader {threads}')}, "
          f"token() hot {show(f'token_hot {threads}')}; "
          f"RwLock<Arc<Token>> read + clone {show(f'rwlock_read_clone {threads}')}")
provider = medians.get("provider_only")
for keeper, what in (("keeper_file_store", "file store, fsync"), ("keeper_memory_store", "memory store")):
    value = medians.get(keeper)
    if value is None or provider is None:
        continue
    print(f"  refresh through the keeper ({what}): {show(keeper, 'µs')}; the provider alone "
          f"{show('provider_only', 'µs')}; overhead {(value - provider) / 1e3:.0f} µs")
for store in ("memory", "file"):
    print(f"  middleware's own work per request (warm token, {store} store): "
          f"{show(f'authorize_{store}_store', 'µs')}")
plain, bearer = medians.get("request_without_middleware"), medians.get("request_with_middleware")
if plain is not None and bearer is not None:
    print(f"  a loopback request: {plain / 1e3:.0f} µs without the middleware, "
          f"{bearer / 1e3:.0f} µs with it")
PY
