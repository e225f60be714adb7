//! `authkeep doctor` against the development identity provider: a healthy
//! setup passes, and each broken part (a loose store, a wrong issuer, a clock
//! ten minutes off, a broken config.toml, a provider that never answers) fails
//! with its fix. Also `authkeep completions` and `authkeep man`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use authkeep_devidp::{Config, FaultKind, Faults};
use jiff::SignedDuration;
use serde_json::Value;

use crate::harness::{Home, Idp, Run, text};

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A home logged in to `idp` as the default profile.
fn logged_in(idp: &Idp) -> Home {
    let home = Home::new();
    home.login("default", idp.issuer(), &idp.session()).ok();
    home
}

/// The lines of `doctor`'s report whose check is `check`.
fn lines(run: &Run, check: &str) -> Vec<String> {
    run.stdout()
        .lines()
        .filter(|line| {
            line.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{check}: ")))
        })
        .map(str::to_owned)
        .collect()
}

/// Asserts that no secret of the session in `home` appears in `run`'s output.
fn no_secrets(run: &Run, home: &Home) {
    let record = home.record("default");
    for field in ["access_token", "refresh_token", "id_token"] {
        if let Some(secret) = record[field].as_str() {
            assert!(!run.stdout().contains(secret), "{field} in stdout");
            assert!(!run.stderr().contains(secret), "{field} in stderr");
        }
    }
}

#[test]
fn a_healthy_setup_passes_with_every_check_explained() {
    let idp = Idp::start(Config::default());
    let home = logged_in(&idp);
    let run = home.run(&["doctor"]);
    let report = run.ok();
    for check in [
        "config",
        "binaries",
        "store",
        "session",
        "discovery",
        "issuer",
        "clock",
    ] {
        let found = lines(&run, check);
        assert!(!found.is_empty(), "no {check} line in\n{report}");
        for line in found {
            assert!(line.starts_with("ok    "), "{line}\n{report}");
        }
    }
    assert!(report.contains(&format!("issuer: profile default (config.toml): the provider's metadata names \"{}\", as configured", idp.issuer())), "{report}");
    assert!(run.stderr().is_empty(), "{}", run.stderr());
    no_secrets(&run, &home);

    let run = home.run(&["doctor", "--json", "--profile", "default"]);
    let report: Value = serde_json::from_str(&run.ok()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.len() >= 7, "{report}");
    for check in checks {
        let object = check.as_object().unwrap();
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, ["check", "detail", "fix", "status"], "{check}");
        assert_eq!(check["status"], "ok", "{check}");
        assert_eq!(check["fix"], Value::Null, "{check}");
    }
    no_secrets(&run, &home);
}

#[test]
fn a_record_or_directory_others_may_read_fails_with_the_chmod() {
    let idp = Idp::start(Config::default());
    let home = logged_in(&idp);
    let record = home.record_path("default");
    set_mode(&record, 0o644);
    let run = home.run(&["doctor"]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let shown = record.display();
    assert_eq!(
        lines(&run, "store"),
        [format!(
            "fail  store: session file {shown} is accessible by group or others (mode 0644) (fix: chmod 600 {shown})"
        )]
    );
    assert!(
        run.stderr().starts_with("authkeep: error: "),
        "{}",
        run.stderr()
    );
    // Reading changes nothing.
    assert_eq!(
        std::fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o644
    );

    set_mode(&record, 0o600);
    let dir = record.parent().unwrap();
    set_mode(dir, 0o755);
    let run = home.run(&["doctor", "--json"]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let report: Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(report["ok"], false);
    let store: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "store")
        .collect();
    assert_eq!(store.len(), 1, "{report}");
    assert_eq!(store[0]["status"], "fail");
    assert_eq!(
        store[0]["detail"],
        format!(
            "session directory {} is accessible by group or others (mode 0755)",
            dir.display()
        )
    );
    assert_eq!(store[0]["fix"], format!("chmod 700 {}", dir.display()));
    // The error goes to stderr as JSON too.
    let error: Value = serde_json::from_str(run.stderr().trim()).unwrap();
    assert!(
        text(&error, "message").ends_with("checks failed"),
        "{error}"
    );
    assert_eq!(text(&error, "error"), "checks_failed", "{error}");
}

#[test]
fn an_issuer_other_than_the_metadatas_fails_naming_the_right_one() {
    let idp = Idp::start(Config::default());
    let home = logged_in(&idp);
    let config = home.path().join("config.toml");
    let written = std::fs::read_to_string(&config).unwrap();
    let right = format!("issuer = \"{}\"", idp.issuer());
    assert!(written.contains(&right), "{written}");
    // The commonest slip: a trailing slash the provider's issuer does not have.
    let wrong = format!("{}/", idp.issuer());
    std::fs::write(
        &config,
        written.replace(&right, &format!("issuer = \"{wrong}\"")),
    )
    .unwrap();
    let run = home.run(&["doctor"]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let issuer = lines(&run, "issuer");
    assert_eq!(
        issuer[0],
        format!(
            "fail  issuer: profile default (config.toml) names the issuer \"{wrong}\", but the provider's metadata names \"{0}\"; issuers must match exactly (fix: set issuer = \"{0}\" in [profiles.default] of {1})",
            idp.issuer(),
            config.display()
        )
    );
    // The session itself was logged in at the right issuer.
    assert!(
        issuer[1].starts_with("ok    issuer: profile default (its session)"),
        "{issuer:?}"
    );
    // The provider did answer.
    for line in lines(&run, "discovery") {
        assert!(line.starts_with("ok    "), "{line}");
    }
}

#[test]
fn a_clock_ten_minutes_off_the_providers_fails_saying_which_way() {
    let idp = Idp::start(Config {
        date_offset: SignedDuration::from_mins(10),
        ..Config::default()
    });
    let home = logged_in(&idp);
    let run = home.run(&["doctor"]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let clock = lines(&run, "clock");
    assert_eq!(clock.len(), 1, "{}", run.stdout());
    let shown = format!("behind {}'s (its Date header said ", idp.issuer());
    assert!(
        ["9m59s ", "10m ", "10m1s "]
            .iter()
            .any(|by| clock[0].starts_with(&format!("fail  clock: the local clock is {by}{shown}"))),
        "{}",
        clock[0]
    );
    assert!(
        clock[0].contains("(fix: set the system clock right"),
        "{}",
        clock[0]
    );
    // Everything else is healthy.
    let report = run.stdout();
    let failed = report.lines().filter(|l| l.starts_with("fail")).count();
    assert_eq!(failed, 1, "{report}");
}

#[test]
fn a_broken_config_file_fails_with_its_place() {
    let home = Home::new();
    std::fs::write(
        home.path().join("config.toml"),
        "timeout = \"5s\"\nisuer = 1\n",
    )
    .unwrap();
    let run = home.run(&["doctor"]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let config = lines(&run, "config");
    let place = format!(
        "{}:2:1: unknown key \"isuer\"",
        home.path().join("config.toml").display()
    );
    assert!(
        config[0].starts_with(&format!("fail  config: {place}")),
        "{config:?}"
    );
    assert!(config[0].contains("(fix: correct "), "{config:?}");
}

#[test]
fn a_provider_that_never_answers_fails_within_the_timeout() {
    let idp = Idp::start(Config::default());
    let home = logged_in(&idp);
    idp.set_faults(Faults {
        kind: Some(FaultKind::Hang),
        include_discovery: true,
        ..Faults::default()
    });
    let started = Instant::now();
    let run = home.run(&["doctor", "--timeout", "1s"]);
    let took = started.elapsed();
    assert_eq!(run.code(), 1, "{}", run.stdout());
    assert!(took < Duration::from_secs(10), "{took:?}");
    let discovery = lines(&run, "discovery");
    assert!(
        discovery[0].starts_with("fail  discovery: profile default (config.toml): cannot reach ")
            && discovery[0].contains(": no answer within 1s (fix: check the issuer URL"),
        "{discovery:?}"
    );
}

#[test]
fn completion_scripts_name_the_subcommands() {
    let home = Home::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = home.run(&["completions", shell]).ok();
        for subcommand in ["login", "token", "status", "doctor", "completions", "man"] {
            assert!(script.contains(subcommand), "{shell}: {subcommand}");
        }
    }
    let script = home.input("authkeep.bash", &home.run(&["completions", "bash"]).ok());
    let checked = std::process::Command::new("bash")
        .args(["-n", &script])
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(home.run(&["completions", "tcsh"]).code(), 2);
}

#[test]
fn man_prints_a_page_and_writes_one_per_command() {
    let home = Home::new();
    let page = home.run(&["man"]).ok();
    assert!(page.contains("\n.TH authkeep 1 "), "{page}");
    for subcommand in ["login", "doctor", "completions"] {
        assert!(page.contains(subcommand), "{subcommand}");
    }
    let dir = tempfile::tempdir().unwrap();
    let listed = home
        .run(&["man", "--dir", dir.path().to_str().unwrap()])
        .ok();
    let written: Vec<&str> = listed.lines().collect();
    assert_eq!(
        written[0],
        dir.path().join("authkeep.1").display().to_string()
    );
    for name in [
        "authkeep-doctor.1",
        "authkeep-store-keygen.1",
        "authkeep-token.1",
    ] {
        let path = dir.path().join(name);
        assert!(
            written.contains(&path.display().to_string().as_str()),
            "{listed}"
        );
        let page = std::fs::read_to_string(&path).unwrap();
        assert!(page.contains(".TH authkeep-"), "{name}: {page}");
    }
    let missing = dir.path().join("nowhere");
    let run = home.run(&["man", "--dir", missing.to_str().unwrap()]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr().contains("cannot write"), "{}", run.stderr());
}
