//! The walking skeleton end to end: import, warm path, refresh inside the window
//! and after expiry, the warm path with the provider stopped, and the record,
//! exit-code and secrecy contracts of the CLI.

use authkeep_devidp::Config;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::harness::{Home, Idp, instant, text};

#[test]
fn import_then_warm_then_refresh_in_window_then_after_expiry() {
    let mut idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    home.login("default", idp.issuer(), &session).ok();
    let first_refresh = text(&session, "refresh_token");

    // Warm: the stored token, no request.
    assert_eq!(home.run(&["token"]).ok(), text(&session, "access_token"));
    assert_eq!(idp.refreshes(), 0);
    // Only the login's check of the issuer.
    assert_eq!(idp.counters().discovery_requests, 1);

    // Inside the window (100 s left of 3600 s): one refresh, rotation saved.
    home.age_record("default", 100, 3600);
    let generation_before = home.record("default")["generation"].as_u64().unwrap();
    let refreshed = home.run(&["token"]).ok();
    assert_ne!(refreshed, text(&session, "access_token"));
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 1);
    let record = home.record("default");
    let second_refresh = text(&record, "refresh_token");
    assert_ne!(
        second_refresh, first_refresh,
        "the rotated refresh token is on disk"
    );
    assert_eq!(text(&record, "access_token"), refreshed);
    assert_eq!(
        record["generation"].as_u64().unwrap(),
        generation_before + 1
    );
    assert!(
        !idp.is_active(&first_refresh),
        "the old refresh token is inactive"
    );
    assert!(idp.is_active(&second_refresh) && idp.is_active(&refreshed));

    // Expired: one more refresh, no fallback needed.
    home.age_record("default", -10, 600);
    let after_expiry = home.run(&["token"]).ok();
    assert_ne!(after_expiry, refreshed);
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 2);
    assert_eq!(idp.refreshes(), 2, "no failed or extra refresh requests");
    assert!(idp.is_active(&after_expiry));

    // Far from expiry with the provider stopped: the stored token, exit 0.
    idp.stop();
    assert_eq!(home.run(&["token"]).ok(), after_expiry);
    let json: serde_json::Value =
        serde_json::from_str(&home.run(&["token", "--json"]).ok()).unwrap();
    assert_eq!(text(&json, "access_token"), after_expiry);
}

#[test]
fn json_output_carries_the_access_token_only() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    home.login("work", idp.issuer(), &session).ok();
    let out = home.run(&["token", "--profile", "work", "--json"]).ok();
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(text(&value, "access_token"), text(&session, "access_token"));
    assert_eq!(text(&value, "token_type"), "Bearer");
    assert_eq!(text(&value, "profile"), "work");
    assert_eq!(value["expired"], false);
    assert!(text(&value, "expires_at").ends_with('Z'));
    let refresh = text(&session, "refresh_token");
    for args in [
        &["token", "--profile", "work", "--json"][..],
        &["status", "--json"],
        &["status"],
        &["token", "-v", "--profile", "work"],
    ] {
        let run = home.run(args);
        assert!(
            !run.stdout().contains(&refresh) && !run.stderr().contains(&refresh),
            "{args:?} leaked the refresh token"
        );
    }
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let idp = Idp::start(Config::default());
    let home = Home::new();
    std::fs::remove_dir(home.path()).unwrap();
    home.login("default", idp.issuer(), &idp.session()).ok();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(home.path()), 0o700);
    assert_eq!(mode(&home.path().join("sessions")), 0o700);
    assert_eq!(mode(&home.record_path("default")), 0o600);
}

#[test]
fn exit_codes_tell_login_from_usage() {
    let home = Home::new();
    let none = home.run(&["token", "--profile", "nobody"]);
    assert_eq!(none.code(), 3);
    assert!(
        none.stderr().contains("authkeep login --profile nobody"),
        "{}",
        none.stderr()
    );
    assert_eq!(none.stdout(), "");
    let json = home.run(&["token", "--profile", "nobody", "--json"]);
    let error: serde_json::Value = serde_json::from_str(json.stderr().trim()).unwrap();
    assert_eq!(error["error"], "login_required");
    assert_eq!(home.run(&["token", "--profile", "../etc/passwd"]).code(), 2);
    assert_eq!(home.run(&["token", "--min-valid", "soon"]).code(), 2);
    assert_eq!(home.run(&["token", "--no-such-flag"]).code(), 2);
    assert!(home.run(&["--version"]).ok().starts_with("authkeep "));
}

#[test]
fn expired_token_without_refresh_token_requires_login() {
    let home = Home::new();
    home.write_record("old", &json!({"access_token": "a", "expires_at": instant(Timestamp::now() - SignedDuration::from_secs(5))}));
    let run = home.run(&["token", "--profile", "old"]);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(
        run.stderr().contains("cannot renew itself"),
        "{}",
        run.stderr()
    );
}

#[test]
fn import_without_refresh_token_says_it_cannot_renew_itself() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = json!({"access_token": "opaque", "token_type": "Bearer", "expires_in": 3600});
    let run = home.login("short", idp.issuer(), &session);
    run.ok();
    assert_eq!(
        run.stderr().matches("cannot renew itself").count(),
        1,
        "{}",
        run.stderr()
    );
    assert_eq!(home.run(&["token", "--profile", "short"]).ok(), "opaque");
}

#[test]
fn corrupt_and_newer_records_are_errors_and_left_untouched() {
    let home = Home::new();
    let corrupt = br#"{"access_token": "tok-secret", "refresh"#;
    home.write_session_file(&home.record_path("bad"), corrupt);
    let run = home.run(&["token", "--profile", "bad"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("bad.json") && run.stderr().contains("corrupt"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("tok-secret"));
    assert_eq!(std::fs::read(home.record_path("bad")).unwrap(), corrupt);

    let newer = json!({"version": 7, "access_token": "a"});
    home.write_record("next", &newer);
    let before = std::fs::read(home.record_path("next")).unwrap();
    let run = home.run(&["token", "--profile", "next"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("format version 7"),
        "{}",
        run.stderr()
    );
    let import = home.path().join("i.json");
    std::fs::write(&import, r#"{"access_token":"x"}"#).unwrap();
    let login = home.run(&[
        "login",
        "--profile",
        "next",
        "--issuer",
        "https://idp.example",
        "--client-id",
        "c",
        "--from-json",
        import.to_str().unwrap(),
    ]);
    assert_eq!(login.code(), 1, "{}", login.stderr());
    assert_eq!(
        std::fs::read(home.record_path("next")).unwrap(),
        before,
        "never overwritten"
    );

    // logout moves an unreadable record aside instead of deleting it.
    home.run(&["logout", "--profile", "bad"]).ok();
    assert!(!home.record_path("bad").exists());
    let aside: Vec<_> = std::fs::read_dir(home.path().join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bad.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
}

#[test]
fn legacy_records_are_read_and_upgraded_on_the_next_write() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    // No version, no expiry, a placeholder refresh token: served as it is.
    home.write_record("legacy", &json!({"access_token": "legacy-at", "refresh_token": "auto-login", "expires_at": "garbage"}));
    assert_eq!(
        home.run(&["token", "--profile", "legacy"]).ok(),
        "legacy-at"
    );
    assert_eq!(idp.refreshes(), 0);

    // No version, no expiry, a real refresh token: refreshed (expiry unknown), upgraded.
    let session = idp.session();
    home.write_record(
        "legacy2",
        &json!({
            "issuer": idp.issuer(), "client_id": authkeep_devidp::DEFAULT_CLIENT_ID,
            "access_token": "opaque-legacy", "refresh_token": text(&session, "refresh_token"),
        }),
    );
    let token = home.run(&["token", "--profile", "legacy2"]).ok();
    assert_ne!(token, "opaque-legacy");
    assert_eq!(idp.refreshes(), 1);
    let record = home.record("legacy2");
    assert_eq!(record["version"], 1);
    assert!(
        record["expires_at"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .is_ok()
    );
}

#[test]
fn logout_deletes_the_session() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login("default", idp.issuer(), &idp.session()).ok();
    home.run(&["logout"]).ok();
    assert!(!home.record_path("default").exists());
    assert_eq!(home.run(&["token"]).code(), 3);
    assert_eq!(home.run(&["status", "--profile", "default"]).code(), 3);
}

#[test]
fn refresh_threshold_flag_and_environment_and_config_file() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login("default", idp.issuer(), &idp.session()).ok();
    // 300 s lifetime, fraction 1 and a 10 m threshold: the window is the whole lifetime.
    home.run(&[
        "token",
        "--refresh-threshold",
        "10m",
        "--refresh-fraction",
        "1",
    ])
    .ok();
    assert_eq!(idp.refreshes(), 1);
    let mut command = home.command(&["token", "--refresh-fraction", "1"]);
    command.env("AUTHKEEP_REFRESH_THRESHOLD", "10m");
    assert!(command.output().unwrap().status.success());
    assert_eq!(idp.refreshes(), 2);
    std::fs::write(
        home.path().join("config.toml"),
        "refresh_threshold = \"10m\"\nrefresh_fraction = 1.0\n",
    )
    .unwrap();
    home.run(&["token"]).ok();
    assert_eq!(idp.refreshes(), 3);
    // A flag beats the file.
    home.run(&["token", "--refresh-threshold", "1s"]).ok();
    assert_eq!(idp.refreshes(), 3);
    std::fs::write(
        home.path().join("config.toml"),
        "refresh_treshold = \"10m\"\n",
    )
    .unwrap();
    let run = home.run(&["token"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("config.toml"), "{}", run.stderr());
}

#[test]
fn status_shows_every_profile_without_secrets() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login("a", idp.issuer(), &idp.session()).ok();
    home.login(
        "b",
        idp.issuer(),
        &json!({"access_token": "x", "expires_in": 60}),
    )
    .ok();
    let status: serde_json::Value =
        serde_json::from_str(&home.run(&["status", "--json"]).ok()).unwrap();
    let profiles = status["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    assert_eq!(profiles[0]["profile"], "a");
    assert_eq!(profiles[0]["can_renew"], true);
    assert_eq!(profiles[1]["can_renew"], false);
    assert_eq!(profiles[0]["issuer"], idp.issuer());
    let human = home.run(&["status"]).ok();
    assert!(
        human.contains("a: valid")
            && human.contains("b: valid; ")
            && human.contains("cannot renew itself"),
        "{human}"
    );
}

#[test]
fn confidential_clients_refresh_with_basic_or_post_and_never_show_the_secret() {
    use authkeep_devidp::{ClientConfig, SessionRequest};
    let secret = "s3cret-client-value";
    let idp = Idp::start(Config {
        clients: vec![ClientConfig::new("svc", secret)],
        ..Config::default()
    });
    let home = Home::new();
    let secret_file = home.input("secret.txt", &format!("{secret}\n"));
    for (profile, method) in [("basic", "basic"), ("post", "post")] {
        let session = idp.get().create_session(&SessionRequest {
            client_id: "svc".into(),
            ..SessionRequest::default()
        });
        let import = home.input(&format!("{profile}.json"), &session.to_string());
        home.run(&[
            "login",
            "--profile",
            profile,
            "--issuer",
            idp.issuer(),
            "--client-id",
            "svc",
            "--client-secret-file",
            &secret_file,
            "--client-auth",
            method,
            "--from-json",
            &import,
        ])
        .ok();
        home.age_record(profile, 100, 3600);
        let before = idp.counters().outcome("refresh_token", "ok");
        let run = home.run(&["token", "-v", "--profile", profile]);
        let token = run.ok();
        assert_eq!(
            idp.counters().outcome("refresh_token", "ok"),
            before + 1,
            "{method}"
        );
        assert!(idp.is_active(&token));
        assert!(!run.stderr().contains(secret) && !run.stdout().contains(secret));
        let status = home.run(&["status", "--json", "--profile", profile]);
        assert!(!status.stdout().contains(secret));
    }
    // A wrong secret is a misconfiguration: the still-valid token is served with a warning.
    let wrong = home.input("wrong.txt", "not-the-secret");
    let session = idp.get().create_session(&SessionRequest {
        client_id: "svc".into(),
        ..SessionRequest::default()
    });
    let import = home.input("wrong.json", &session.to_string());
    home.run(&[
        "login",
        "--profile",
        "wrong",
        "--issuer",
        idp.issuer(),
        "--client-id",
        "svc",
        "--client-secret-file",
        &wrong,
        "--from-json",
        &import,
    ])
    .ok();
    home.age_record("wrong", 100, 3600);
    let run = home.run(&["token", "--profile", "wrong"]);
    assert_eq!(run.ok(), text(&session, "access_token"));
    assert!(run.stderr().contains("invalid_client"), "{}", run.stderr());
    assert!(!run.stderr().contains("not-the-secret"));
}

#[test]
fn explicit_token_endpoint_skips_discovery_and_plain_http_is_refused_off_loopback() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let import = home.input("s.json", &idp.session().to_string());
    let endpoint = format!("{}/token", idp.issuer());
    home.run(&[
        "login",
        "--issuer",
        "https://no-discovery.example",
        "--client-id",
        authkeep_devidp::DEFAULT_CLIENT_ID,
        "--token-endpoint",
        &endpoint,
        "--from-json",
        &import,
    ])
    .ok();
    home.age_record("default", 100, 3600);
    let token = home.run(&["token"]).ok();
    assert!(idp.is_active(&token));
    assert_eq!(idp.counters().discovery_requests, 0);
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 1);

    for issuer in ["http://idp.example", "http://localhost.evil.example"] {
        let run = home.run(&[
            "login",
            "--profile",
            "x",
            "--issuer",
            issuer,
            "--client-id",
            "c",
            "--from-json",
            &import,
        ]);
        assert_eq!(run.code(), 2, "{issuer}: {}", run.stderr());
        assert!(run.stderr().contains("plain http"), "{}", run.stderr());
    }
    assert!(!home.record_path("x").exists());
}

#[test]
fn the_warm_path_is_served_by_the_front_alone() {
    // A copy of the front binary without `authkeep-main` beside it: the warm path
    // needs nothing else; any other command line says what is missing.
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    home.login("default", idp.issuer(), &session).ok();
    let lonely = tempfile::tempdir().unwrap();
    let front = lonely.path().join("authkeep");
    std::fs::copy(env!("CARGO_BIN_EXE_authkeep"), &front).unwrap();
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(&front);
        command.args(args).env("AUTHKEEP_HOME", home.path());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AUTHKEEP_") && name != "AUTHKEEP_HOME" {
                command.env_remove(name);
            }
        }
        crate::harness::Run(command.output().unwrap())
    };
    assert_eq!(run(&["token"]).ok(), text(&session, "access_token"));
    let json: serde_json::Value =
        serde_json::from_str(&run(&["token", "--json", "-q"]).ok()).unwrap();
    assert_eq!(text(&json, "access_token"), text(&session, "access_token"));
    home.age_record("default", 100, 3600);
    let due = run(&["token"]);
    assert_eq!(due.code(), 1);
    assert!(
        due.stderr().contains("authkeep-main is missing"),
        "{}",
        due.stderr()
    );
    assert_eq!(idp.refreshes(), 0);
}
