//! The OS keyring store against a real Secret Service, which
//! `./scripts/test.sh` starts (a private session bus and an unlocked
//! gnome-keyring) and announces with `AUTHKEEP_TEST_SECRET_SERVICE=1`. Without
//! that marker, or without an answering service, these tests fail and say how
//! to run them: a skipped test passes silently, CI must never run without the
//! service, and a developer's own keyring is never written to.
//!
//! The keyring's failures are shown in child processes (this test binary run
//! again, one test at a time) whose environment names a bus that is dead or
//! never answers; the environment of this process is never changed.
#![cfg(feature = "keyring")]

use std::ffi::OsString;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authkeep::store::{FileStore, InKeyring, KEYRING_SERVICE, Store, Vault, VaultError};
use authkeep::{
    AccessToken, Client, ClientAuth, ClientSecret, ExpirySource, IdToken, Origin, Record,
    RefreshToken, SessionKey, StoreError, TokenSet,
};

/// Set by `./scripts/test.sh` once the Secret Service it started answers.
const MARKER: &str = "AUTHKEEP_TEST_SECRET_SERVICE";
/// Set in a child process: the test runs its child's part.
const CHILD: &str = "AUTHKEEP_KEYRING_TEST_CHILD";
/// Printed by a child whose part ran to the end.
const CHILD_DONE: &str = "keyring child done";

/// A vault on the Secret Service that `./scripts/test.sh` started, in a
/// namespace of its own, checked to answer. Without that script's marker the
/// test fails at once, saying how to run it: these tests never write into the
/// keyring of the person running them, and a skipped test would pass silently.
fn secret_service() -> Vault {
    if std::env::var_os(MARKER).is_none() {
        panic!(
            "this test needs the Secret Service that ./scripts/test.sh starts (it never touches \
             your own keyring); run ./scripts/test.sh, or this file alone: \
             dbus-run-session -- scripts/with-secret-service.sh cargo test -p authkeep --test keyring"
        );
    }
    let namespace = format!("test-{}-{:016x}", std::process::id(), fastrand::u64(..));
    let vault = Vault::new(&namespace, Duration::from_secs(5));
    if let Err(e) = vault.probe_blocking() {
        panic!(
            "{MARKER} is set, but the Secret Service started for the tests does not answer: {e}"
        );
    }
    vault
}

fn key(name: &str) -> SessionKey {
    SessionKey::new(name).unwrap()
}

fn record(tag: &str) -> Record {
    Record {
        client: Some(Client::new("https://idp.example", "cli").with_secret(
            ClientSecret::new(format!("client-secret-{tag}")),
            ClientAuth::ClientSecretBasic,
        )),
        tokens: Some(TokenSet {
            access_token: AccessToken::new(format!("access-token-{tag}")),
            token_type: "Bearer".into(),
            refresh_token: Some(RefreshToken::new(format!("refresh-token-{tag}"))),
            scope: Some("openid".into()),
            id_token: Some(IdToken::new(format!("id-token-{tag}"))),
            expires_at: None,
            issued_at: None,
            refresh_expires_at: None,
            expiry_source: ExpirySource::Unknown,
            obtained_at: jiff::Timestamp::UNIX_EPOCH,
            origin: Origin::Login,
        }),
        ..Record::default()
    }
}

/// The keyring entry a session's record file names.
fn entry_of(store: &FileStore, key: &SessionKey) -> String {
    let text = std::fs::read_to_string(store.path(key)).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["sealed"]["kind"], "keyring", "{text}");
    value["sealed"]["entry"].as_str().unwrap().to_owned()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// What `secret-tool` (libsecret, not our client) finds for an entry.
fn secret_tool_lookup(vault_namespace: &str, entry: &str) -> Option<String> {
    let output = Command::new("secret-tool")
        .args(["lookup", "service", KEYRING_SERVICE, "username"])
        .arg(format!("{vault_namespace}/{entry}"))
        .output()
        .expect("secret-tool runs (scripts/test.sh installs libsecret-tools)");
    output
        .status
        .success()
        .then(|| String::from_utf8(output.stdout).unwrap())
}

#[tokio::test]
async fn the_vault_keeps_replaces_and_deletes_secrets_in_the_secret_service() {
    let vault = secret_service();
    let name = "round-trip";
    assert_eq!(vault.get(name).await.unwrap(), None);
    let secret = "ünïcödé secret with spaces and a long tail ".repeat(100);
    vault.set(name, &secret).await.unwrap();
    assert_eq!(vault.get(name).await.unwrap().unwrap().as_str(), secret);
    assert_eq!(
        secret_tool_lookup(vault.namespace(), name).as_deref(),
        Some(secret.as_str())
    );
    vault.set(name, "replaced").await.unwrap();
    assert_eq!(vault.get(name).await.unwrap().unwrap().as_str(), "replaced");
    assert!(vault.delete(name).await.unwrap());
    assert!(!vault.delete(name).await.unwrap());
    assert_eq!(vault.get(name).await.unwrap(), None);
    assert_eq!(secret_tool_lookup(vault.namespace(), name), None);
}

#[tokio::test]
async fn sessions_sealed_in_the_keyring_leave_no_secret_in_any_file() {
    let vault = secret_service();
    let namespace = vault.namespace().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("sessions"))
        .with_sealer(Arc::new(InKeyring::new(vault.clone())));
    let sessions = [(key("alice"), record("alice")), (key("bob"), record("bob"))];
    for (k, r) in &sessions {
        let guard = store.try_lock(k).await.unwrap().unwrap();
        store.write(&guard, None, r).await.unwrap();
        store
            .set_issuer_skew("https://idp.example", Some(90))
            .await
            .unwrap();
    }

    let files = files_under(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for tag in ["alice", "bob"] {
            for secret in ["client-secret", "access-token", "refresh-token", "id-token"] {
                let secret = format!("{secret}-{tag}");
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} in {}",
                    file.display()
                );
            }
        }
    }

    for (k, r) in &sessions {
        assert_eq!(&store.load(k).await.unwrap().unwrap().record, r);
        // libsecret's own client finds the entry the record names.
        let entry = entry_of(&store, k);
        let kept = secret_tool_lookup(&namespace, &entry).expect("secret-tool finds the entry");
        assert!(kept.contains(&format!("refresh-token-{k}")), "{k}");
        let guard = store.try_lock(k).await.unwrap().unwrap();
        store.remove(&guard, 1).await.unwrap();
        assert_eq!(secret_tool_lookup(&namespace, &entry), None);
    }
}

#[tokio::test]
async fn rotations_leave_no_orphan_entry() {
    let vault = secret_service();
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).with_sealer(Arc::new(InKeyring::new(vault.clone())));
    let k = key("rotating");
    let guard = store.try_lock(&k).await.unwrap().unwrap();
    let mut generation = None;
    let mut entries = Vec::new();
    for n in 0..8 {
        let r = record(&format!("rotation-{n}"));
        generation = Some(store.write(&guard, generation, &r).await.unwrap());
        entries.push(entry_of(&store, &k));
        assert_eq!(store.load(&k).await.unwrap().unwrap().record, r);
    }
    let (current, old) = entries.split_last().unwrap();
    for entry in old {
        assert_eq!(vault.get(entry).await.unwrap(), None, "{entry} left behind");
    }
    assert!(vault.get(current).await.unwrap().is_some());
    store.remove(&guard, generation.unwrap()).await.unwrap();
    assert_eq!(vault.get(current).await.unwrap(), None);
}

/// Runs this test binary again for the test `name` alone, with `env` added,
/// and returns what it printed on stderr; fails when the child failed or did not
/// run the test.
fn child(name: &str, env: &[(&str, OsString)]) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && stderr.contains(CHILD_DONE),
        "child {name} failed:\n{stdout}\n{stderr}"
    );
    stderr.into_owned()
}

/// A store whose record was written in plain text, and a store on the same
/// directory sealing into `vault`: a sealed write that cannot reach the
/// keyring must fail and leave the record as it was.
async fn a_failed_sealed_write_changes_nothing(vault: Vault) -> StoreError {
    let dir = tempfile::tempdir().unwrap();
    let plain = FileStore::new(dir.path());
    let k = key("kept");
    let guard = plain.try_lock(&k).await.unwrap().unwrap();
    plain.write(&guard, None, &record("before")).await.unwrap();
    let before = std::fs::read(plain.path(&k)).unwrap();
    drop(guard);

    let sealed = FileStore::new(dir.path()).with_sealer(Arc::new(InKeyring::new(vault)));
    let guard = sealed.try_lock(&k).await.unwrap().unwrap();
    let error = sealed
        .write(&guard, Some(1), &record("after"))
        .await
        .unwrap_err();
    assert_eq!(std::fs::read(plain.path(&k)).unwrap(), before);
    assert!(!plain.journal_path(&k).exists());
    assert_eq!(
        sealed.load(&k).await.unwrap().unwrap().record,
        record("before")
    );
    error
}

#[tokio::test]
async fn without_a_session_bus_the_keyring_is_unavailable_at_once() {
    if std::env::var_os(CHILD).is_some() {
        let vault = Vault::new("no-bus", Duration::from_secs(5));
        let started = Instant::now();
        let error = vault.probe().await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(error, VaultError::Unavailable(_)), "{error:?}");
        assert!(took < Duration::from_millis(500), "probe took {took:?}");
        let error = vault.get_blocking("x").unwrap_err();
        assert!(matches!(error, VaultError::Unavailable(_)), "{error:?}");
        let error = a_failed_sealed_write_changes_nothing(vault).await;
        assert!(
            matches!(&error, StoreError::NotSealed { detail, .. } if detail.contains("no OS keyring is available")),
            "{error:?}"
        );
        eprintln!("{CHILD_DONE}: probe answered Unavailable in {took:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A socket whose listener is gone (connection refused), and no socket.
    let dead = dir.path().join("dead-bus");
    drop(UnixListener::bind(&dead).unwrap());
    for bus in [dead, dir.path().join("no-bus")] {
        let mut address = OsString::from("unix:path=");
        address.push(&bus);
        let printed = child(
            "without_a_session_bus_the_keyring_is_unavailable_at_once",
            &[("DBUS_SESSION_BUS_ADDRESS", address)],
        );
        assert!(printed.contains("Unavailable"), "{printed}");
        eprintln!("{}", printed.lines().last().unwrap_or_default());
    }
}

#[tokio::test]
async fn a_keyring_that_does_not_answer_times_out_within_the_timeout() {
    let timeout = Duration::from_millis(300);
    if std::env::var_os(CHILD).is_some() {
        let vault = Vault::new("silent", timeout);
        let started = Instant::now();
        assert_eq!(vault.probe().await, Err(VaultError::TimedOut(timeout)));
        let took = started.elapsed();
        assert!(took >= timeout && took < timeout * 4, "probe took {took:?}");
        assert_eq!(vault.get("x").await, Err(VaultError::TimedOut(timeout)));
        assert_eq!(
            vault.set_blocking("x", "secret"),
            Err(VaultError::TimedOut(timeout))
        );
        let error = a_failed_sealed_write_changes_nothing(vault).await;
        assert!(
            matches!(&error, StoreError::NotSealed { detail, .. } if detail.contains("did not answer")),
            "{error:?}"
        );
        eprintln!("{CHILD_DONE}: probe timed out after {took:?}");
        return;
    }
    // A bus that accepts connections and never says a word; the child's
    // calls hang on it until they are abandoned, and its exit is not delayed.
    let dir = tempfile::tempdir().unwrap();
    let bus = dir.path().join("silent-bus");
    let _listener = UnixListener::bind(&bus).unwrap();
    let mut address = OsString::from("unix:path=");
    address.push(&bus);
    let started = Instant::now();
    let printed = child(
        "a_keyring_that_does_not_answer_times_out_within_the_timeout",
        &[("DBUS_SESSION_BUS_ADDRESS", address)],
    );
    assert!(printed.contains("timed out"), "{printed}");
    eprintln!("{}", printed.lines().last().unwrap_or_default());
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_locked_keyring_is_reported_locked_and_prompts_nobody_forever() {
    if std::env::var_os(CHILD).is_some() {
        // In a Secret Service of its own (see below): lock its login collection.
        let locked = Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ])
            .output()
            .unwrap();
        assert!(locked.status.success(), "{locked:?}");
        let vault = Vault::new("locked", Duration::from_secs(5));
        assert!(
            matches!(vault.probe().await, Err(VaultError::Locked(_))),
            "the probe asks without prompting"
        );
        // Storing asks to unlock; with no one to answer the prompt it fails
        // (or, were the prompt to wait, times out), and the record stays.
        let error = a_failed_sealed_write_changes_nothing(vault).await;
        assert!(
            matches!(&error, StoreError::NotSealed { detail, .. }
                if detail.contains("locked") || detail.contains("did not answer")),
            "{error:?}"
        );
        eprintln!("{CHILD_DONE}: locked, and the write failed: {error}");
        return;
    }
    // Locking the keyring the other tests share would fail them: the child
    // gets a private bus and keyring of its own, set up as scripts/test.sh does.
    drop(secret_service());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/with-secret-service.sh");
    let output = Command::new("dbus-run-session")
        .arg("--")
        .arg(script)
        .arg(std::env::current_exe().unwrap())
        .args([
            "a_locked_keyring_is_reported_locked_and_prompts_nobody_forever",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.contains(CHILD_DONE),
        "child failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    eprintln!(
        "{}",
        stderr
            .lines()
            .rfind(|l| l.contains(CHILD_DONE))
            .unwrap_or_default()
    );
}
