//! The stores as a user chooses them: `--store encrypted-file` with a key file,
//! `--store keyring` against the real Secret Service the test command starts,
//! `store keygen`, `store rekey` and `store migrate` (also killed at random
//! instants), and `status` saying where each session's secrets live.

use std::path::{Path, PathBuf};
use std::time::Duration;

use authkeep_devidp::Config;
use serde_json::Value;

use crate::harness::{Home, Idp, signal, text};

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

/// Asserts that no file under `dir` holds any of `secrets`.
fn assert_nowhere(dir: &Path, secrets: &[&str]) {
    let files = files_under(dir);
    assert!(!files.is_empty());
    for (path, bytes) in files {
        let content = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            assert!(
                !content.contains(secret),
                "a secret is in {} in plain text",
                path.display()
            );
        }
    }
}

/// Imports a fresh session of `idp` as `profile` with extra `args`.
fn import(home: &Home, idp: &Idp, profile: &str, args: &[&str]) -> Value {
    let session = idp.session();
    let file = home.input(&format!("{profile}.json"), &session.to_string());
    let mut all = vec![
        "login",
        "-p",
        profile,
        "--issuer",
        idp.issuer(),
        "--client-id",
        authkeep_devidp::DEFAULT_CLIENT_ID,
        "--from-json",
        &file,
    ];
    all.extend_from_slice(args);
    home.run(&all).ok();
    session
}

fn keygen(home: &Home, name: &str) -> String {
    let path = home.path().join(name);
    let path = path.to_str().unwrap().to_owned();
    home.run(&["store", "keygen", "--out", &path]).ok();
    path
}

fn secrets_of(home: &Home, profile: &str) -> String {
    let status = home.status_of(profile);
    status["secrets"].as_str().unwrap_or("-").to_owned()
}

#[test]
fn the_encrypted_store_keeps_no_token_in_plain_text_and_refuses_a_wrong_key() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let key = keygen(&home, "store.key");
    let mode = std::fs::metadata(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }
    let session = import(
        &home,
        &idp,
        "enc",
        &["--store", "encrypted-file", "--key-file", &key],
    );
    let (access, refresh) = (
        text(&session, "access_token"),
        text(&session, "refresh_token"),
    );
    assert_nowhere(&home.path().join("sessions"), &[&access, &refresh]);
    // Later commands find the key in the environment.
    let run = home
        .command(&["token", "-p", "enc"])
        .env("AUTHKEEP_KEY_FILE", &key)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), access);
    let status = home
        .command(&["status", "-p", "enc", "--json"])
        .env("AUTHKEEP_KEY_FILE", &key)
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["profiles"][0]["secrets"], "encrypted-file",
        "{status}"
    );

    // Another key: a clear error, and the file is left as it was.
    let other = keygen(&home, "other.key");
    let before = std::fs::read(home.record_path("enc")).unwrap();
    let run = home.run(&["token", "-p", "enc", "--key-file", &other]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains("cannot open the secrets"),
        "{}",
        run.stderr()
    );
    assert!(run.stdout().is_empty());
    assert_eq!(std::fs::read(home.record_path("enc")).unwrap(), before);
    // keygen never overwrites a key file.
    let run = home.run(&["store", "keygen", "--out", &key]);
    assert_ne!(run.code(), 0, "{}", run.stderr());
}

#[test]
fn migrate_moves_every_session_and_back_and_rekey_reseals_them() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let key = keygen(&home, "store.key");
    let sessions: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|p| import(&home, &idp, p, &[]))
        .collect();
    assert_eq!(secrets_of(&home, "a"), "file");
    home.run(&[
        "store",
        "migrate",
        "--to",
        "encrypted-file",
        "--key-file",
        &key,
    ])
    .ok();
    for (profile, session) in ["a", "b", "c"].iter().zip(&sessions) {
        let run = home.run(&["token", "-p", profile, "--key-file", &key]);
        assert_eq!(run.ok(), text(session, "access_token"));
    }
    let tokens: Vec<String> = sessions.iter().map(|s| text(s, "refresh_token")).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    assert_nowhere(&home.path().join("sessions"), &tokens);

    let new_key = keygen(&home, "new.key");
    let run = home.run(&[
        "store",
        "rekey",
        "--key-file",
        &key,
        "--new-key-file",
        &new_key,
    ]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("re-encrypted 3"), "{}", run.stderr());
    let run = home.run(&["token", "-p", "b", "--key-file", &new_key]);
    assert_eq!(run.ok(), text(&sessions[1], "access_token"));
    assert_ne!(
        home.run(&["token", "-p", "b", "--key-file", &key]).code(),
        0
    );

    home.run(&["store", "migrate", "--to", "file", "--key-file", &new_key])
        .ok();
    assert_eq!(secrets_of(&home, "c"), "file");
    assert_eq!(
        home.run(&["token", "-p", "c"]).ok(),
        text(&sessions[2], "access_token")
    );
}

/// Runs the command `round` gives, 50 times, each killed (SIGKILL) after a
/// delay spread over `within`, and checks after each that every profile still
/// loads with one of `key_files`. Returns how many rounds were cut short.
fn killed_at_random(
    home: &Home,
    command: impl Fn(u64) -> Vec<String>,
    key_files: &[&str],
    within: Duration,
) -> usize {
    let mut interrupted = 0;
    for round in 0..50 {
        let args = command(round);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = home
            .command(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let micros = u64::try_from(within.as_micros()).unwrap();
        std::thread::sleep(Duration::from_micros(spread(round) % micros));
        signal(child.id(), "KILL");
        if !child.wait().unwrap().success() {
            interrupted += 1;
        }
        for profile in ["a", "b", "c"] {
            let loads = key_files.iter().any(|key| {
                home.command(&["status", "-p", profile, "--key-file", key])
                    .output()
                    .unwrap()
                    .status
                    .success()
            });
            assert!(
                loads,
                "round {round} ({args:?}): profile {profile} no longer loads"
            );
        }
    }
    interrupted
}

/// A deterministic spread of delays over the rounds.
fn spread(round: u64) -> u64 {
    round.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

#[test]
fn migrate_and_rekey_killed_at_random_instants_lose_no_session() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let key = keygen(&home, "one.key");
    let other = keygen(&home, "two.key");
    for profile in ["a", "b", "c"] {
        import(&home, &idp, profile, &[]);
    }
    let within = Duration::from_millis(30);
    // Back and forth, so that every round has sessions to move.
    let migrate = |round: u64| {
        let to = if round.is_multiple_of(2) {
            "encrypted-file"
        } else {
            "file"
        };
        ["store", "migrate", "--to", to, "--key-file", &key]
            .map(str::to_owned)
            .to_vec()
    };
    let cut = killed_at_random(&home, migrate, &[&key], within);
    eprintln!("store migrate: 50 rounds killed at random instants, {cut} before they finished");
    assert!(
        cut > 0,
        "no migration was cut short: the kill always came too late"
    );
    home.run(&[
        "store",
        "migrate",
        "--to",
        "encrypted-file",
        "--key-file",
        &key,
    ])
    .ok();
    let rekey = |round: u64| {
        let (from, to) = if round.is_multiple_of(2) {
            (&key, &other)
        } else {
            (&other, &key)
        };
        ["store", "rekey", "--key-file", from, "--new-key-file", to]
            .map(str::to_owned)
            .to_vec()
    };
    let cut = killed_at_random(&home, rekey, &[&key, &other], within);
    eprintln!("store rekey: 50 rounds killed at random instants, {cut} before they finished");
    assert!(
        cut > 0,
        "no rekey was cut short: the kill always came too late"
    );
}

/// The keyring tests need the Secret Service that `./scripts/test.sh` starts
/// (and marks with `AUTHKEEP_TEST_SECRET_SERVICE=1`); without it they fail
/// with the command to run, rather than pass having tested nothing.
fn require_secret_service() {
    assert!(
        std::env::var_os("AUTHKEEP_TEST_SECRET_SERVICE").is_some(),
        "the keyring tests need a Secret Service: run ./scripts/test.sh"
    );
}

#[test]
fn the_keyring_store_keeps_the_secrets_in_the_secret_service() {
    require_secret_service();
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = import(&home, &idp, "kr", &["--store", "keyring"]);
    let (access, refresh) = (
        text(&session, "access_token"),
        text(&session, "refresh_token"),
    );
    assert_nowhere(home.path(), &[&access, &refresh]);
    assert_eq!(secrets_of(&home, "kr"), "keyring");
    assert!(
        std::fs::read_to_string(home.path().join("config.toml"))
            .unwrap()
            .contains("store = \"keyring\"")
    );
    // The profile remembers its store: no flag needed.
    assert_eq!(home.run(&["token", "-p", "kr"]).ok(), access);
    // A refresh rotates the secrets in the keyring, never onto the disk.
    let refreshed = home.run(&["token", "-p", "kr", "--force-refresh"]).ok();
    assert_ne!(refreshed, access);
    assert_nowhere(home.path(), &[&refreshed]);
    // Back to plain files, and the keyring entry goes with the move.
    home.run(&["store", "migrate", "--to", "file", "-p", "kr"])
        .ok();
    assert_eq!(secrets_of(&home, "kr"), "file");
    assert_eq!(home.run(&["token", "-p", "kr"]).ok(), refreshed);
}

#[test]
fn the_encrypted_store_can_keep_its_key_in_the_keyring_and_rekey_there() {
    require_secret_service();
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let run = home.run(&["store", "keygen"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stderr().contains("in the OS keyring"),
        "{}",
        run.stderr()
    );
    assert_ne!(
        home.run(&["store", "keygen"]).code(),
        0,
        "one key at a time"
    );
    let session = import(&home, &idp, "enc", &["--store", "encrypted-file"]);
    let access = text(&session, "access_token");
    assert_nowhere(home.path(), &[&access]);
    assert_eq!(secrets_of(&home, "enc"), "encrypted-file");
    let run = home.run(&["store", "rekey"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("re-encrypted 1"), "{}", run.stderr());
    assert_eq!(home.run(&["token", "-p", "enc"]).ok(), access);
}

#[test]
fn without_a_keyring_service_the_keyring_store_fails_fast_unless_falling_back_is_allowed() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    let file = home.input("s.json", &session.to_string());
    let login = |extra: &[&str]| {
        let mut args = vec![
            "login",
            "-p",
            "kr",
            "--store",
            "keyring",
            "--issuer",
            idp.issuer(),
            "--client-id",
            "c",
            "--from-json",
            &file,
        ];
        args.extend_from_slice(extra);
        let started = std::time::Instant::now();
        let output = home
            .command(&args)
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/authkeep-test-bus",
            )
            .output()
            .unwrap();
        (output, started.elapsed())
    };
    let (output, took) = login(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no OS keyring is available"), "{stderr}");
    assert!(stderr.contains("--insecure-keyring-fallback"), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!home.record_path("kr").exists());

    let (output, _) = login(&["--insecure-keyring-fallback"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("plain files"),
        "{stderr}"
    );
    let record = home.record("kr");
    assert_eq!(record["access_token"], session["access_token"]);
    // The variable says the same with 1.
    let output = home
        .command(&[
            "login",
            "-p",
            "kr2",
            "--store",
            "keyring",
            "--issuer",
            idp.issuer(),
            "--client-id",
            "c",
            "--from-json",
            &file,
        ])
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/authkeep-test-bus",
        )
        .env("AUTHKEEP_INSECURE_KEYRING_FALLBACK", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("plain files"), "{stderr}");
}

#[test]
fn the_front_opens_an_encrypted_record_with_a_key_file_and_hands_other_sealing_over() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let key = keygen(&home, "store.key");
    let session = import(
        &home,
        &idp,
        "enc",
        &["--store", "encrypted-file", "--key-file", &key],
    );
    // The front alone, with no full binary beside it to hand over to.
    let alone = tempfile::tempdir().unwrap();
    let front = alone.path().join("authkeep");
    std::fs::copy(env!("CARGO_BIN_EXE_authkeep"), &front).unwrap();
    let run_front = |env: &[(&str, &str)]| {
        let template = home.command(&["token", "-p", "enc"]);
        let mut command = std::process::Command::new(&front);
        command.args(["token", "-p", "enc"]);
        for (name, value) in template.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command.envs(env.iter().copied()).output().unwrap()
    };
    let served = run_front(&[("AUTHKEEP_KEY_FILE", &key)]);
    assert!(
        served.status.success(),
        "{}",
        String::from_utf8_lossy(&served.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&served.stdout).trim(),
        text(&session, "access_token")
    );
    // Without the key it cannot open the record: the full binary's to report.
    let handed = run_front(&[]);
    assert!(String::from_utf8_lossy(&handed.stderr).contains("authkeep-main is missing"));
}
