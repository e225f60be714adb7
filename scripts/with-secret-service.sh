#!/usr/bin/env bash
# Runs a command with a real Secret Service: an unlocked gnome-keyring whose
# keyrings live in a temporary directory, on the session bus this script runs
# in. Run it inside a private bus, which ends the keyring with it:
#
#   dbus-run-session -- scripts/with-secret-service.sh cargo test -p authkeep --test keyring
#
# It checks that the default ("login") collection exists and is unlocked and
# that libsecret's secret-tool can store, read and clear an item, then runs the
# command with AUTHKEEP_TEST_SECRET_SERVICE=1, which tells the keyring tests
# that a missing service is a failure of this set-up.
set -euo pipefail

if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  echo "with-secret-service.sh: no session bus; run it under dbus-run-session" >&2
  exit 2
fi

# A keyring of its own: an existing login keyring may have another password.
keyrings=$(mktemp -d)
trap 'rm -rf "$keyrings"' EXIT
# The daemon creates the login keyring with this password and unlocks it; it
# leaves when the session bus does.
printf 'authkeep-tests' | XDG_DATA_HOME="$keyrings" \
  gnome-keyring-daemon --unlock --components=secrets >/dev/null
# The daemon forks before it owns its bus name; a client that asked now would
# have the bus start a second daemon, one that knows nothing of this keyring.
owned() {
  dbus-send --session --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets | grep -q true
}
for _ in $(seq 100); do owned && break; sleep 0.05; done
if ! owned; then
  echo "with-secret-service.sh: gnome-keyring-daemon did not take the Secret Service's name" >&2
  exit 1
fi

check="authkeep-secret-service-check-$$"
printf 'it works' | secret-tool store --label="$check" service "$check" username check
if [ "$(secret-tool lookup service "$check" username check)" != "it works" ]; then
  echo "with-secret-service.sh: secret-tool cannot read back what it stored" >&2
  exit 1
fi
secret-tool clear service "$check" username check
if [ ! -f "$keyrings/keyrings/login.keyring" ]; then
  echo "with-secret-service.sh: the unlocked login keyring is not the one in use" >&2
  exit 1
fi
locked=$(dbus-send --session --print-reply=literal --dest=org.freedesktop.secrets \
  /org/freedesktop/secrets/aliases/default org.freedesktop.DBus.Properties.Get \
  string:org.freedesktop.Secret.Collection string:Locked)
case "$locked" in
  *false*) ;;
  *) echo "with-secret-service.sh: the default collection is locked ($locked)" >&2; exit 1 ;;
esac

export AUTHKEEP_TEST_SECRET_SERVICE=1
"$@"
