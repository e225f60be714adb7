//! `authkeep exec`: the token in the child's environment, the child's exit code
//! passed on, 126/127 for a command that cannot start, signals passed on, and
//! the token file: private, removed at exit however the child ended, and kept
//! fresh for the child's whole life (each sample of it active at the provider,
//! about one refresh per token lifetime's second half).
//!
//! Tokens are compared, never printed: failure messages carry stderr only.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use authkeep_devidp::Config;

use crate::harness::{Home, Idp, Run, signal, text};

const PROFILE: &str = "default";

/// A home with a session at a provider issuing access tokens for `ttl`.
fn session(ttl: Duration) -> (Idp, Home) {
    let idp = Idp::start(Config {
        access_ttl: ttl,
        ..Config::default()
    });
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    (idp, home)
}

fn token(home: &Home) -> String {
    text(&home.record(PROFILE), "access_token")
}

/// `authkeep exec ARGS -- sh -c SCRIPT`.
fn exec_sh(home: &Home, args: &[&str], script: &str) -> Run {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "sh", "-c", script]);
    home.run(&all)
}

#[test]
fn the_command_gets_the_token_and_its_exit_code_is_passed_on() {
    let (_idp, home) = session(Duration::from_secs(300));
    let stored = token(&home);
    let run = exec_sh(&home, &[], r#"printf %s "$AUTHKEEP_ACCESS_TOKEN"; exit 7"#);
    assert_eq!(run.code(), 7, "{}", run.stderr());
    assert_eq!(run.stdout(), stored);
    assert!(run.stderr().is_empty(), "{}", run.stderr());
    let run = exec_sh(
        &home,
        &["--env", "MY_TOKEN", "-p", PROFILE],
        r#"printf '%s %s' "$MY_TOKEN" "${AUTHKEEP_ACCESS_TOKEN-unset}""#,
    );
    assert_eq!(run.ok(), format!("{stored} unset"));
    // Killed by a signal: 128 + its number.
    let run = exec_sh(&home, &[], "kill -KILL $$");
    assert_eq!(run.code(), 137, "{}", run.stderr());
    // Without `--` as well.
    let run = home.run(&["exec", "true"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
}

#[test]
fn a_command_that_cannot_start_or_a_token_that_cannot_be_had_is_said() {
    let (_idp, home) = session(Duration::from_secs(300));
    let run = home.run(&["exec", "--", "/nonexistent/authkeep-test-command", "x"]);
    assert_eq!(run.code(), 127, "{}", run.stderr());
    assert!(
        run.stderr().contains("command not found"),
        "{}",
        run.stderr()
    );
    let script = home.input("not-executable.sh", "exit 0\n");
    let run = home.run(&["exec", "--", &script]);
    assert_eq!(run.code(), 126, "{}", run.stderr());
    assert!(run.stderr().contains("not executable"), "{}", run.stderr());
    // A token file next to the command that did not start is removed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let run = home.run(&[
        "exec",
        "--token-file",
        file.to_str().unwrap(),
        "--",
        "/nonexistent/authkeep-test-command",
    ]);
    assert_eq!(run.code(), 127, "{}", run.stderr());
    assert!(!file.exists());
    // Usage errors, before anything runs.
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for args in [
        &["--env", "1BAD"][..],
        &["--env", "A-B"],
        &["--env", "AUTHKEEP_TOKEN_FILE", "--token-file", "t"],
    ] {
        let run = exec_sh(&home, args, &touch);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
    }
    // No session: exit 3, and the command never runs.
    let run = exec_sh(&home, &["--profile", "nobody"], &touch);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(run.stderr().contains("authkeep login --profile nobody"));
    // A token file that cannot be written: said, and the command never runs.
    let run = exec_sh(
        &home,
        &["--token-file", "/nonexistent/authkeep-dir/token"],
        &touch,
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("cannot write the token file"),
        "{}",
        run.stderr()
    );
    assert!(!marker.exists());
}

/// Starts `authkeep exec ARGS -- sh -c SCRIPT` with stdout piped, and waits
/// for its first line.
fn start_and_wait_for_line(home: &Home, args: &[&str], script: &str) -> (Child, String) {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "sh", "-c", script]);
    let mut child = home
        .command(&all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim_end().to_owned())
}

#[test]
fn signals_are_passed_on_to_the_command() {
    let (_idp, home) = session(Duration::from_secs(300));
    for (name, code) in [
        ("TERM", 42),
        ("INT", 43),
        ("HUP", 44),
        ("QUIT", 45),
        ("USR1", 46),
        ("USR2", 47),
    ] {
        let script = format!("trap 'exit {code}' {name}; echo ready; while :; do sleep 0.05; done");
        let (child, ready) = start_and_wait_for_line(&home, &[], &script);
        assert_eq!(ready, "ready");
        signal(child.id(), name);
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // A command the signal kills: 128 + 15, and its token file is removed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let (child, path) = start_and_wait_for_line(
        &home,
        &["--token-file", file.to_str().unwrap()],
        r#"echo "$AUTHKEEP_TOKEN_FILE"; exec sleep 30"#,
    );
    assert_eq!(path, file.to_str().unwrap());
    assert!(file.exists());
    signal(child.id(), "TERM");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143));
    assert!(!file.exists(), "removed at exit");
}

#[test]
fn the_token_file_is_private_and_removed_at_exit() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_idp, home) = session(Duration::from_secs(300));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let (mut child, _) = start_and_wait_for_line(
        &home,
        &["--token-file", file.to_str().unwrap()],
        "echo ready; read _; exit 0",
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token(&home));
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(!file.exists());
    // A relative path is exported absolute.
    let mut command = home.command(&[
        "exec",
        "--token-file",
        "rel-token",
        "--",
        "sh",
        "-c",
        r#"printf %s "$AUTHKEEP_TOKEN_FILE""#,
    ]);
    command.current_dir(dir.path());
    let run = Run(command.output().unwrap());
    assert_eq!(run.ok(), dir.path().join("rel-token").to_str().unwrap());
    assert!(!dir.path().join("rel-token").exists());
}

#[test]
fn a_token_file_that_cannot_be_kept_or_removed_is_said() {
    let (idp, home) = session(Duration::from_secs(6));
    let dir = tempfile::tempdir().unwrap();
    let holder = dir.path().join("holder");
    std::fs::create_dir(&holder).unwrap();
    let file = holder.join("token");
    // The command takes the file's directory away: the refresh that follows
    // cannot update it (a warning), and nothing is left to remove.
    let before = idp.refreshes();
    let run = exec_sh(
        &home,
        &["--token-file", file.to_str().unwrap()],
        r#"rm -r "$(dirname "$AUTHKEEP_TOKEN_FILE")"; sleep 5"#,
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(idp.refreshes() > before, "a refresh was due");
    assert!(
        run.stderr().contains("cannot update the token file"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("remove"), "{}", run.stderr());
    // The command puts a directory where the file was: it cannot be removed.
    let file = dir.path().join("token");
    let run = exec_sh(
        &home,
        &["--token-file", file.to_str().unwrap()],
        r#"rm "$AUTHKEEP_TOKEN_FILE"; mkdir "$AUTHKEEP_TOKEN_FILE"; touch "$AUTHKEEP_TOKEN_FILE/x"; exit 5"#,
    );
    assert_eq!(run.code(), 5, "{}", run.stderr());
    assert!(
        run.stderr().contains("cannot remove the token file"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_token_file_stays_fresh_for_the_commands_whole_life() {
    // Six-second tokens: the window is min(5m, 3 s), so a refresh about every
    // three seconds. A child of about 20 s samples the file every half second;
    // each sample is checked at the provider as it arrives.
    let (idp, home) = session(Duration::from_secs(6));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let before = idp.refreshes();
    let started = Instant::now();
    let mut child = home
        .command(&[
            "exec",
            "--token-file",
            file.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            r#"i=0; while [ $i -lt 40 ]; do cat "$AUTHKEEP_TOKEN_FILE"; echo; i=$((i+1)); sleep 0.5; done"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut samples, mut invalid) = (0, 0);
    let mut distinct = std::collections::HashSet::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let sample = line.unwrap();
        samples += 1;
        if !idp.is_active(&sample) {
            invalid += 1;
        }
        distinct.insert(sample);
    }
    let output = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let refreshes = idp.refreshes() - before;
    assert_eq!(samples, 40);
    assert_eq!(invalid, 0, "every sample was active when read");
    // One refresh per 3-second cycle, give or take the edges.
    let cycles = elapsed.as_secs_f64() / 3.0;
    assert!(
        (refreshes as f64 - cycles).abs() <= 2.5,
        "{refreshes} refreshes in {elapsed:?}"
    );
    assert!(distinct.len() >= 5, "{} tokens", distinct.len());
    // Each refresh reached the file (the last may come after the last sample).
    assert!(
        (distinct.len() as u64).abs_diff(refreshes + 1) <= 1,
        "{} tokens, {refreshes} refreshes",
        distinct.len()
    );
    assert!(!file.exists());
}
