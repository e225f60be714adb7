//! The engine's promises at the command line: a rotation that cannot be saved
//! (a real full filesystem) is exit 1 and prints no token; SIGINT and SIGTERM
//! wait for a refresh's result to be saved; a closed or failing stdout is not
//! success; `--json` errors are JSON, usage errors included; `status` and
//! `login` say what is true; unmet demands are warned about; the issuer's clock
//! skew changes decisions.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use authkeep_devidp::{Config, FaultKind, Faults, SessionRequest};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::harness::{Home, Idp, instant, signal, text};

const PROFILE: &str = "default";

/// A small tmpfs mounted over a directory, unmounted when dropped. Filling it
/// gives a real "no space left on device".
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path) -> Self {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount(8) runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root, as in CI (docs/DESIGN.md §9)"
        );
        Self(dir.to_owned())
    }

    /// Writes zeros until the filesystem is full.
    fn fill(&self) {
        let output = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=4096"])
            .arg(format!("of={}", self.0.join("filler").display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("No space left"), "{stderr}");
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = std::process::Command::new("umount").arg(&self.0).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "umount {}",
            self.0.display()
        );
    }
}

#[test]
fn a_rotation_that_cannot_be_saved_on_a_full_disk_is_exit_1_and_prints_no_token() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let disk = Tmpfs::mount(home.path());
    let session = idp.session();
    home.login(PROFILE, idp.issuer(), &session).ok();
    home.age_record(PROFILE, 100, 3600);
    let before = std::fs::read(home.record_path(PROFILE)).unwrap();
    disk.fill();

    let run = home.run(&["token"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert_eq!(run.stdout(), "", "no token is printed");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    let record = home.record_path(PROFILE).display().to_string();
    assert!(line.contains(&record), "names the file: {line}");
    assert!(
        line.contains("No space left on device"),
        "names the OS error: {line}"
    );
    assert!(
        line.contains("may need a new login"),
        "says what it means: {line}"
    );
    assert!(!line.contains(&text(&session, "refresh_token")));
    assert_eq!(std::fs::read(home.record_path(PROFILE)).unwrap(), before);
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 1, "rotated");

    // With room again, the old refresh token has been used up: exit 3, one
    // line, as the error warned.
    disk.free();
    let run = home.run(&["token"]);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert_eq!(run.stderr_lines().len(), 1, "{}", run.stderr());
}

/// Starts `authkeep` and returns it once a line on its stderr contains `said`,
/// with what it writes on stderr from then on.
fn started_until(
    home: &Home,
    args: &[&str],
    said: &str,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = home
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = String::new();
    while !lines.lines().any(|line| line.contains(said)) {
        assert!(stderr.read_line(&mut lines).unwrap() > 0, "{lines}");
    }
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        rest
    });
    (child, rest)
}

#[test]
fn sigint_and_sigterm_during_a_refresh_wait_until_its_result_is_saved() {
    use std::os::unix::process::ExitStatusExt as _;
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    // The provider takes 1.5 s to answer, so the signal lands mid-request.
    idp.set_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    for (name, code) in [("INT", 130), ("TERM", 143)] {
        home.age_record(PROFILE, 100, 3600);
        let old = text(&home.record(PROFILE), "refresh_token");
        // Its next step after saying so is the request.
        let (child, rest) = started_until(&home, &["token", "-v"], ": refreshing: ");
        signal(child.id(), name);
        let output = child.wait_with_output().unwrap();
        let said = rest.join().unwrap();
        assert_eq!(output.status.signal(), None, "not killed by SIG{name}");
        assert_eq!(output.status.code(), Some(code), "SIG{name}: {said}");
        assert!(
            said.contains(&format!(
                "stopped by SIG{name} once the refresh under way had finished and its outcome was saved"
            )),
            "the signal landed while the request was out: {said}"
        );
        assert!(output.stdout.is_empty(), "stopped: no token printed");
        let new = text(&home.record(PROFILE), "refresh_token");
        assert_ne!(new, old, "SIG{name}: the rotated refresh token was saved");
        assert!(idp.is_active(&new));
        assert!(home.temp_files(PROFILE).is_empty());
    }
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 2);

    // A request that hangs still ends at its time-out, and then the signal.
    idp.fail_with(FaultKind::Hang);
    home.age_record(PROFILE, 100, 3600);
    let (child, rest) = started_until(&home, &["token", "-v", "--timeout", "1s"], ": refreshing: ");
    signal(child.id(), "TERM");
    let output = child.wait_with_output().unwrap();
    let said = rest.join().unwrap();
    assert_eq!(output.status.code(), Some(143), "{said}");
    assert!(said.contains("refresh failed (transient)"), "{said}");
    assert!(
        said.contains("once the refresh under way had finished"),
        "{said}"
    );
    assert!(
        home.record(PROFILE)["health"]["last_error"].is_object(),
        "the failure was recorded"
    );
}

#[test]
fn sigterm_while_waiting_for_another_process_ends_at_once() {
    use std::os::unix::process::ExitStatusExt as _;
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    home.age_record(PROFILE, 100, 3600);
    let _held = home.hold_lock(PROFILE);
    let (mut child, _) = started_until(
        &home,
        &["token", "-v", "--lock-timeout", "60s"],
        "waiting for it",
    );
    let sent = Instant::now();
    signal(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert_eq!((status.signal(), status.code()), (None, Some(143)));
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(idp.refreshes(), 0);
}

/// Runs `authkeep` with stdout connected to a pipe whose reader has gone. The
/// reader is closed before the process starts: closed after, a fast process
/// could write into the pipe's buffer first.
fn run_with_closed_stdout(home: &Home, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = home
        .command(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_token_that_could_not_be_written_to_stdout_is_not_success() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    let dev_full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    // The front's warm path, the full binary (-v), and after a refresh.
    for args in [&["token"][..], &["token", "-q", "--min-valid", "1m"]] {
        let (code, stderr) = run_with_closed_stdout(&home, args);
        assert_eq!((code, stderr.as_str()), (1, ""), "{args:?}: quietly");
        let output = home.command(args).stdout(dev_full()).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            stderr.contains("cannot write to standard output") && stderr.contains("No space"),
            "{args:?}: {stderr}"
        );
    }
    home.age_record(PROFILE, 100, 3600);
    let output = home
        .command(&["token", "--json"])
        .stdout(dev_full())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["error"], "unexpected", "{error}");
    assert_eq!(idp.refreshes(), 1, "the refresh itself was made and saved");
}

#[test]
fn json_errors_are_json_usage_errors_included() {
    let home = Home::new();
    for args in [
        &["token", "--json", "--bogus"][..],
        &["token", "--json", "--min-valid", "soon"],
        &["token", "--json", "--min-valid", "876601h"],
        &["status", "--json", "--no-such-flag"],
        &["token", "--json", "--refresh-fraction", "2"],
    ] {
        let run = home.run(args);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        assert_eq!(run.stdout(), "");
        let error: Value = serde_json::from_str(run.stderr().trim())
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", run.stderr()));
        assert_eq!(error["error"], "usage", "{args:?}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    // Without --json a usage error is clap's usual text.
    let run = home.run(&["token", "--min-valid", "876601h"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("at most 876600h (100 years)"),
        "{}",
        run.stderr()
    );
    // Help is help, even with --json.
    let run = home.run(&["token", "--json", "--help"]);
    assert_eq!(run.code(), 0);
    assert!(run.stdout().contains("Usage"));
}

#[test]
fn durations_up_to_a_hundred_years_are_taken_beyond_that_exit_2() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    for ok in [
        &["token", "--refresh-threshold", "876600h"][..],
        &["token", "--min-valid", "876600h"],
        &["token", "--lock-timeout", "876600h", "--timeout", "876600h"],
    ] {
        let run = home.run(ok);
        assert_eq!(run.code(), 0, "{ok:?}: {}", run.stderr());
    }
    std::fs::write(
        home.path().join("config.toml"),
        "refresh_threshold = \"99999999h\"\n",
    )
    .unwrap();
    let run = home.run(&["token"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("100 years"), "{}", run.stderr());
}

#[test]
fn status_lists_every_profile_whatever_authkeep_profile_says() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login("one", idp.issuer(), &idp.session()).ok();
    home.login("two", idp.issuer(), &idp.session()).ok();
    let output = home
        .command(&["status", "--json"])
        .env("AUTHKEEP_PROFILE", "one")
        .output()
        .unwrap();
    let run = crate::harness::Run(output);
    let all: Value = serde_json::from_str(&run.ok()).unwrap();
    let names: Vec<_> = all["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["profile"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn status_of_a_session_whose_refresh_token_expired_says_log_in() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    let mut record = home.record(PROFILE);
    let past = Timestamp::now() - SignedDuration::from_secs(60);
    record["expires_at"] = instant(past);
    record["refresh_expires_at"] = instant(past);
    home.write_record(PROFILE, &record);

    let status = home.status_of(PROFILE);
    assert_eq!(status["state"], "login_required", "{status}");
    assert_eq!(status["needs_login"], true);
    assert_eq!(status["can_renew"], false);
    let run = home.run(&["status", "--profile", PROFILE]);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(run.stdout().contains("log in again"), "{}", run.stdout());
    let run = home.run(&["token"]);
    assert_eq!(run.code(), 3, "as token says");
    assert_eq!(idp.refreshes(), 0, "no doomed attempt");
}

#[test]
fn login_with_only_a_refresh_token_says_exactly_that() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    let only_refresh = serde_json::json!({ "refresh_token": text(&session, "refresh_token") });
    let run = home.login(PROFILE, idp.issuer(), &only_refresh);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let said = run.stderr();
    assert!(said.contains("no access token yet"), "{said}");
    assert!(!said.contains("valid until"), "{said}");
    let token = home.run(&["token"]).ok();
    assert!(idp.is_active(&token), "the first token call gets one");
}

#[test]
fn unmet_demands_are_warned_about() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    // A session that cannot renew itself, with 20 minutes left.
    let session = idp.session();
    let bare = serde_json::json!({
        "access_token": text(&session, "access_token"),
        "expires_in": 1200,
    });
    home.login(PROFILE, idp.issuer(), &bare).ok();
    let run = home.run(&["token", "--min-valid", "30m"]);
    assert_eq!(run.code(), 0);
    assert!(
        run.stderr()
            .contains("does not stay valid as long as asked"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("cannot renew itself"),
        "{}",
        run.stderr()
    );
    let run = home.run(&["token", "--force-refresh"]);
    assert_eq!(run.code(), 0);
    assert!(
        run.stderr()
            .contains("a refresh was forced, but the session cannot renew itself"),
        "{}",
        run.stderr()
    );
    assert_eq!(idp.refreshes(), 0);

    // A session whose provider issues 10-minute tokens, asked for 30.
    let short = idp.get().create_session(&SessionRequest {
        access_ttl_secs: Some(600),
        ..SessionRequest::default()
    });
    home.login(PROFILE, idp.issuer(), &short).ok();
    let run = home.run(&["token", "--min-valid", "30m"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(idp.refreshes(), 1, "it tried");
    assert!(run.stderr().contains("--min-valid"), "{}", run.stderr());
}

#[test]
fn a_jwt_expiry_moves_once_the_issuers_clock_skew_is_learned() {
    use authkeep::{Demand, FileStore, Keeper, ManualClock, SessionKey};
    let idp = Idp::start(Config::default());
    let home = Home::new();
    // A session whose expiry comes from its JWT alone: nine minutes of life.
    let mut short = idp.get().create_session(&SessionRequest {
        access_ttl_secs: Some(540),
        ..SessionRequest::default()
    });
    short.as_object_mut().unwrap().remove("expires_in");
    home.login("short", idp.issuer(), &short).ok();
    let run = home.run(&["token", "--profile", "short", "-v"]);
    assert_eq!(
        run.ok(),
        text(&short, "access_token"),
        "9 minutes: outside its window"
    );

    // Another session of the issuer is refreshed by a process whose clock is
    // five minutes behind the provider's `Date`.
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    let keeper = Keeper::builder(FileStore::new(home.path().join("sessions")))
        .clock(std::sync::Arc::new(ManualClock::new(
            Timestamp::now() - SignedDuration::from_mins(5),
        )))
        .build();
    let forced = Demand::new().force();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SessionKey::new(PROFILE).unwrap();
    assert!(
        runtime
            .block_on(keeper.token(&key, forced))
            .unwrap()
            .refreshed
    );
    assert_eq!(idp.refreshes(), 1);

    // The short session's JWT expiry is now read as the provider's clock minus
    // the skew; by our (correct) clock that leaves 4 minutes: inside the window.
    let run = home.run(&["token", "--profile", "short", "-v"]);
    let token = run.ok();
    assert_ne!(token, text(&short, "access_token"), "{}", run.stderr());
    assert_eq!(idp.refreshes(), 2);
    let status = home.status_of("short");
    assert_eq!(status["state"], "valid");
}

#[test]
fn a_misbehaving_provider_is_shown_in_one_safe_line() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    home.login(PROFILE, idp.issuer(), &session).ok();
    let refresh = text(&session, "refresh_token");
    // What a user sees, step by step: the snapshot records it.
    let mut transcript = String::new();
    let mut record = |what: &str, run: &crate::harness::Run| {
        let stdout = if run.stdout().is_empty() {
            "nothing"
        } else {
            "a token"
        };
        transcript.push_str(&format!(
            "$ {what}\nexit {}; stdout: {stdout}\n{}\n",
            run.code(),
            run.stderr()
        ));
    };

    // It echoes the refresh token, with escape sequences, into error texts.
    home.age_record(PROFILE, 100, 3600);
    idp.fail_with(FaultKind::EchoSecrets { status: 400 });
    let run = home.run(&["token"]);
    record(
        "authkeep token  # echoes secrets, token inside its window",
        &run,
    );
    assert_eq!(run.code(), 0, "the stored token is still valid");
    let shown = run.stderr()
        + &home.run(&["status"]).stdout()
        + &serde_json::to_string(&home.record(PROFILE)["health"]).unwrap();
    assert!(!shown.contains(&refresh), "{shown}");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(shown.contains("[redacted]"), "{shown}");

    // It answers 429 with Retry-After while the token has expired.
    home.age_record(PROFILE, -10, 3600);
    idp.fail_with(FaultKind::Status {
        status: 429,
        retry_after: Some("120".into()),
        body: None,
    });
    let before = idp.counters().token_requests_for("refresh_token");
    let first = home.run(&["token"]);
    record(
        "authkeep token  # 429 Retry-After: 120, token expired",
        &first,
    );
    assert_eq!(first.code(), 4, "{}", first.stderr());
    let second = home.run(&["token"]);
    record(
        "authkeep token  # again, before the provider's instant",
        &second,
    );
    assert_eq!(second.code(), 4);
    assert!(
        second
            .stderr()
            .contains("asked not to be contacted again before"),
        "{}",
        second.stderr()
    );
    assert_eq!(
        idp.counters().token_requests_for("refresh_token"),
        before + 1
    );

    // It answers a refresh with an access token that has already expired.
    idp.fail_with(FaultKind::ExpiredAccessToken);
    let run = home.run(&["token", "--force-refresh"]);
    record(
        "authkeep token --force-refresh  # answered with an expired access token",
        &run,
    );
    assert_eq!(run.code(), 4, "{}", run.stderr());
    assert_eq!(run.stdout(), "");
    assert!(
        run.stderr().contains("had already expired"),
        "{}",
        run.stderr()
    );
    let saved = text(&home.record(PROFILE), "refresh_token");
    assert!(idp.is_active(&saved), "its rotated refresh token was saved");

    // Its discovery document names a token endpoint too long for any request.
    let other = Home::new();
    other.login(PROFILE, idp.issuer(), &idp.session()).ok();
    other.forget_discovery();
    other.age_record(PROFILE, -10, 3600);
    idp.fail_with(FaultKind::HugeMetadata { bytes: 70_000 });
    let run = other.run(&["token"]);
    record(
        "authkeep token  # discovery names a 70,000-byte token endpoint",
        &run,
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().len() < 1000, "{}", run.stderr());
    assert_eq!(run.stderr_lines().len(), 1);
    crate::faults::stable().bind(|| insta::assert_snapshot!("misbehaving_provider", transcript));
}
