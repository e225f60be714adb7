//! The session store's permissions: created private (directories 0700, files
//! 0600), and a store that other users may read refused with exit 2 and the
//! `chmod` that fixes it, by the front and the full binary alike, unless
//! `--insecure-permissions`, `AUTHKEEP_INSECURE_PERMISSIONS=1` or
//! `insecure_permissions = true` allows it. Modes are checked by reading them,
//! never by expecting EACCES: CI runs as root.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use authkeep_devidp::Config;

use crate::harness::{Home, Idp, Run, text};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A home with a fresh session (an hour left: served without network) and its
/// access token.
fn logged_in(idp: &Idp) -> (Home, String) {
    let home = Home::new();
    home.login("default", idp.issuer(), &idp.session()).ok();
    let token = text(&home.record("default"), "access_token");
    (home, token)
}

/// `authkeep-main` itself, with the environment `Home::command` gives the front.
fn full(home: &Home, args: &[&str]) -> Run {
    let front = home.command(args);
    let mut direct = std::process::Command::new(env!("CARGO_BIN_EXE_authkeep-main"));
    direct.args(args).stdin(std::process::Stdio::null());
    for (name, value) in front.get_envs() {
        match value {
            Some(value) => direct.env(name, value),
            None => direct.env_remove(name),
        };
    }
    Run(direct.output().unwrap())
}

fn assert_refused(run: &Run, path: &Path, found: &str, fix: &str) {
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stdout().is_empty(), "{}", run.stdout());
    let stderr = run.stderr();
    let shown = path.display().to_string();
    for needle in [
        shown.as_str(),
        &format!("(mode {found})"),
        &format!("fix it with `{fix} {shown}`"),
        "--insecure-permissions (AUTHKEEP_INSECURE_PERMISSIONS=1)",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn new_session_files_are_0600_in_0700_directories() {
    let idp = Idp::start(Config::default());
    let (home, _) = logged_in(&idp);
    home.run(&["token", "--force-refresh"]).ok();
    let sessions = home.path().join("sessions");
    assert_eq!(mode(&sessions), 0o700);
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&sessions).unwrap() {
        let path = entry.unwrap().path();
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{}", path.display());
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    seen.sort();
    assert!(
        seen.contains(&"default.json".to_owned()) && seen.contains(&"default.lock".to_owned()),
        "{seen:?}"
    );
    assert_eq!(mode(&home.path().join("config.toml")), 0o600);
}

#[test]
fn a_0644_record_in_a_0755_directory_is_refused_by_both_binaries_and_status_says_why() {
    let idp = Idp::start(Config::default());
    let (home, token) = logged_in(&idp);
    let sessions = home.path().join("sessions");
    let record = home.record_path("default");
    set_mode(&record, 0o644);
    set_mode(&sessions, 0o755);

    // The directory first; the front hands over and the full binary reports.
    assert_refused(&home.run(&["token"]), &sessions, "0755", "chmod 700");
    assert_refused(&full(&home, &["token"]), &sessions, "0755", "chmod 700");
    let json = home.run(&["token", "--json"]);
    assert_eq!(json.code(), 2);
    let error: serde_json::Value = serde_json::from_str(&json.stderr()).unwrap();
    assert_eq!(error["error"], "insecure_permissions");

    set_mode(&sessions, 0o700);
    assert_refused(&home.run(&["token"]), &record, "0644", "chmod 600");
    assert_refused(&full(&home, &["token"]), &record, "0644", "chmod 600");
    assert_refused(
        &home.run(&["request", "http://127.0.0.1:9/"]),
        &record,
        "0644",
        "chmod 600",
    );

    let status = home.run(&["status"]);
    assert_eq!(status.code(), 2, "{}", status.stderr());
    let line = status.stdout();
    assert!(
        line.starts_with("default: unreadable: session file ")
            && line.contains("(mode 0644)")
            && line.contains("chmod 600"),
        "{line}"
    );
    let row = home.status_of("default");
    assert_eq!(row["state"], "unreadable");
    assert!(
        text(&row, "error").contains(&format!("chmod 600 {}", record.display())),
        "{row}"
    );
    for output in [status.stdout(), status.stderr(), row.to_string()] {
        assert!(!output.contains(&token), "no token in {output}");
    }
    // Nothing was changed: the user decides.
    assert_eq!((mode(&record), mode(&sessions)), (0o644, 0o700));
    assert_eq!(idp.refreshes(), 0);
}

#[test]
fn the_flag_the_variable_and_the_file_each_allow_a_store_others_may_read() {
    let idp = Idp::start(Config::default());
    let (home, token) = logged_in(&idp);
    let sessions = home.path().join("sessions");
    let record = home.record_path("default");
    set_mode(&record, 0o644);
    set_mode(&sessions, 0o755);

    assert_eq!(home.run(&["token", "--insecure-permissions"]).ok(), token);
    let mut command = home.command(&["token"]);
    command.env("AUTHKEEP_INSECURE_PERMISSIONS", "1");
    assert_eq!(Run(command.output().unwrap()).ok(), token, "the front");
    let mut command = home.command(&["status", "--json"]);
    command.env("AUTHKEEP_INSECURE_PERMISSIONS", "1");
    let status = Run(command.output().unwrap()).ok();
    assert!(status.contains("\"state\":\"valid\""), "{status}");

    // A value that is neither yes nor no is a usage error naming the variable.
    let mut command = home.command(&["token"]);
    command.env("AUTHKEEP_INSECURE_PERMISSIONS", "perhaps");
    let run = Run(command.output().unwrap());
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr().contains("AUTHKEEP_INSECURE_PERMISSIONS"),
        "{}",
        run.stderr()
    );
    // "0" is no.
    let mut command = home.command(&["token"]);
    command.env("AUTHKEEP_INSECURE_PERMISSIONS", "0");
    assert_eq!(Run(command.output().unwrap()).code(), 2);

    let config = home.path().join("config.toml");
    let profile = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("insecure_permissions = true\n{profile}")).unwrap();
    assert_eq!(home.run(&["token"]).ok(), token, "the front");
    assert_eq!(full(&home, &["token"]).ok(), token, "the full binary");
    home.run(&["token", "--force-refresh"]).ok();
    assert_eq!(idp.refreshes(), 1);
    // Allowed, the directory is left as it is; the record is rewritten private.
    assert_eq!((mode(&sessions), mode(&record)), (0o755, 0o600));
}
