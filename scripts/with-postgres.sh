#!/usr/bin/env bash
# Runs a command with a PostgreSQL server of its own: a new cluster in a
# temporary directory, listening on 127.0.0.1 at a free port, fsync off (test
# data only; PG_FSYNC=on for benchmarks that must pay for durability), with an
# empty database; AUTHKEEP_TEST_POSTGRES_URL names it.
# The server is stopped and its directory removed however the command ends.
#
#   scripts/with-postgres.sh cargo test -p authkeep-db --all-features
#
# The server binaries come from /usr/lib/postgresql/15/bin (or $PG_BIN).
# initdb refuses to run as root: as root, the cluster belongs to the
# `postgres` user and its programs run as that user.
set -euo pipefail

bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$bin/initdb" ] || [ ! -x "$bin/pg_ctl" ]; then
  echo "with-postgres.sh: no PostgreSQL server binaries in $bin (set PG_BIN)" >&2
  exit 2
fi

dir=$(mktemp -d)
as=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
  as=(runuser -u postgres --)
fi
started=0
cleanup() {
  if [ "$started" -eq 1 ]; then
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2
  exit 1
}

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    echo $((20000 + RANDOM % 40000))
  fi
}

# A port found free may be taken before the server binds it: try a few.
for _ in 1 2 3 4 5; do
  port=$(free_port)
  if "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=${PG_FSYNC:-off} -c max_connections=300" \
    start >/dev/null; then
    started=1
    break
  fi
done
if [ "$started" -ne 1 ]; then
  echo "with-postgres.sh: the server did not start:" >&2
  cat "$dir/server.log" >&2
  exit 1
fi

"${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres authkeep_test
export AUTHKEEP_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/authkeep_test"
"$@"
