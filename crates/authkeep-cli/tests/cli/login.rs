//! `authkeep login` with every method, `token` without a session, and `logout`
//! revoking, as real processes against the development identity provider. The
//! test plays the person: it reads what `authkeep` prints on stderr and approves
//! through the provider's pages over HTTP.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use authkeep_devidp::{ClientConfig, Config, SessionRequest};
use serde_json::Value;

use crate::harness::{Home, Idp, signal, wait_until};
use crate::oidc::fields_of;

/// Generous bound for a step that takes milliseconds.
const BOUND: Duration = Duration::from_secs(30);

/// A provider whose device codes may be polled every second.
pub fn quick_idp() -> Idp {
    Idp::start(Config {
        device_interval: Duration::from_secs(1),
        clients: vec![ClientConfig::new("svc", "svc-secret")],
        ..Config::default()
    })
}

/// A running `authkeep` whose stderr lines arrive on a channel.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    pub fn start(home: &Home, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = home.command(args);
        command.stderr(Stdio::piped()).stdout(Stdio::piped());
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn line_with(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no stderr line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// Waits for the process; returns its exit code, stdout and all of stderr.
    pub fn finish(mut self) -> (i32, String, String) {
        let status = self.child.wait().unwrap();
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut stdout).unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), stdout, self.seen.join("\n"))
    }
}

/// The word after `marker` in `line`.
pub fn word_after<'a>(line: &'a str, marker: &str) -> &'a str {
    let at = line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in {line:?}"));
    line[at + marker.len()..].split_whitespace().next().unwrap()
}

/// What a person does with a device login's code on the development provider:
/// opens the verification page and presses Approve.
fn approve_device(issuer: &str, user_code: &str) {
    let http = reqwest::blocking::Client::new();
    let page = http
        .get(format!("{issuer}/device?user_code={user_code}"))
        .send()
        .unwrap();
    assert!(page.status().is_success());
    let body = page.text().unwrap();
    let mut fields = fields_of(&body);
    fields.push(("action".to_owned(), "approve".to_owned()));
    let approved = http
        .post(format!("{issuer}/device"))
        .form(&fields)
        .send()
        .unwrap();
    assert!(
        approved.status().is_success(),
        "{}",
        approved.text().unwrap()
    );
}

/// What a browser does with an authorization URL on the development provider:
/// shows the consent page, presses Approve, and follows the redirect to the
/// loopback listener. Returns the listener's page.
fn approve_in_browser(authorization_url: &str) -> (u16, String) {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(authorization_url).send().unwrap();
    assert!(
        page.status().is_success(),
        "consent page: {}",
        page.status()
    );
    let action = page.url().clone();
    let mut fields = fields_of(&page.text().unwrap());
    fields.push(("action".to_owned(), "approve".to_owned()));
    let mut action = action;
    action.set_query(None);
    let redirect = http.post(action).form(&fields).send().unwrap();
    assert_eq!(redirect.status().as_u16(), 302);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    let landed = http.get(&location).send().unwrap();
    (landed.status().as_u16(), landed.text().unwrap())
}

/// The URL the recording browser was given, once it is written whole (the
/// file exists before its line is in it).
pub fn opened_url(file: &std::path::Path) -> String {
    wait_until("the browser to be opened", BOUND, || {
        std::fs::read_to_string(file).is_ok_and(|text| text.ends_with('\n'))
    });
    std::fs::read_to_string(file).unwrap().trim().to_owned()
}

/// A `BROWSER` that writes the URL it is given into `file`.
pub fn recording_browser(home: &Home, file: &std::path::Path) -> String {
    let script = home.input(
        "browser.sh",
        &format!("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n", file.display()),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

/// `authkeep login --client-credentials` for the provider's confidential
/// client `svc`, its secret in an environment variable.
fn service_login(idp: &Idp, home: &Home, profile: &str, extra: &[&str]) {
    let mut args = vec![
        "login",
        "--client-credentials",
        "-p",
        profile,
        "--issuer",
        idp.issuer(),
        "--client-id",
        "svc",
        "--client-secret-env",
        "SVC_SECRET",
    ];
    args.extend_from_slice(extra);
    let run = home
        .command(&args)
        .env("SVC_SECRET", "svc-secret")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// `authkeep login --with-token` with `token` on stdin; returns the exit
/// status's success and stderr.
pub fn login_with_token(home: &Home, args: &[&str], token: &str) -> (bool, String) {
    let mut child = home
        .command(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn config(home: &Home) -> String {
    std::fs::read_to_string(home.path().join("config.toml")).unwrap_or_default()
}

/// The stored tokens of a profile, for checking with the provider.
pub fn stored(home: &Home, profile: &str) -> (String, Option<String>) {
    let record = home.record(profile);
    let text = |field: &str| record[field].as_str().map(str::to_owned);
    (text("access_token").unwrap(), text("refresh_token"))
}

fn device_login(idp: &Idp, home: &Home, profile: &str) -> (i32, String, String) {
    let mut login = Running::start(
        home,
        &[
            "login",
            "--device",
            "-p",
            profile,
            "--issuer",
            idp.issuer(),
            "--client-id",
            authkeep_devidp::DEFAULT_CLIENT_ID,
            "--scope",
            "openid",
            "--scope",
            "offline_access",
        ],
        &[],
    );
    let line = login.line_with("enter the code");
    let user_code = word_after(&line, "enter the code ").to_owned();
    approve_device(idp.issuer(), &user_code);
    login.finish()
}

#[test]
fn a_device_login_shows_the_code_stores_the_session_and_keeps_the_profile() {
    let idp = quick_idp();
    let home = Home::new();
    let (code, stdout, stderr) = device_login(&idp, &home, "dev");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let issuer = idp.issuer();
    assert!(
        stderr.contains(&format!("open {issuer}/device and enter the code ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("or open {issuer}/device?user_code=")),
        "{stderr}"
    );
    assert!(stderr.contains("session stored for"), "{stderr}");
    let (access, refresh) = stored(&home, "dev");
    assert!(!stderr.contains(&access), "no token on stderr");
    assert!(idp.is_active(&access) && idp.is_active(&refresh.unwrap()));
    let config = config(&home);
    assert!(
        config.contains("[profiles.dev]") && config.contains("login = \"device\""),
        "{config}"
    );
    assert!(
        config.contains(&format!("issuer = \"{issuer}\"")),
        "{config}"
    );
    // Later commands need only the profile.
    assert_eq!(home.run(&["token", "-p", "dev"]).ok(), access);
    assert_eq!(idp.counters().device_authorization_requests, 1);
}

#[test]
fn a_browser_login_opens_the_browser_checks_the_redirect_and_shows_a_page() {
    let idp = quick_idp();
    let home = Home::new();
    let urls = home.path().join("urls.txt");
    let browser = recording_browser(&home, &urls);
    let login = Running::start(
        &home,
        &[
            "login",
            "--browser",
            "-p",
            "web",
            "--issuer",
            idp.issuer(),
            "--client-id",
            authkeep_devidp::DEFAULT_CLIENT_ID,
            "--scope",
            "openid",
            "--scope",
            "offline_access",
        ],
        &[("BROWSER", &browser)],
    );
    let url = opened_url(&urls);
    assert!(
        url.starts_with(&format!("{}/authorize?", idp.issuer())),
        "{url}"
    );
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let (status, page) = approve_in_browser(&url);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("signed in"), "{page}");
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("opened your browser"), "{stderr}");
    assert!(stderr.contains(&url), "the URL is shown too: {stderr}");
    let (access, refresh) = stored(&home, "web");
    assert!(idp.is_active(&access) && idp.is_active(&refresh.unwrap()));
    assert!(config(&home).contains("login = \"browser\""));
}

#[test]
fn a_browser_login_prints_the_url_when_no_browser_opens_and_honours_a_registered_redirect() {
    let idp = quick_idp();
    let home = Home::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redirect = format!("http://127.0.0.1:{port}/cb");
    let mut login = Running::start(
        &home,
        &[
            "login",
            "--browser",
            "--no-browser",
            "-p",
            "web",
            "--issuer",
            idp.issuer(),
            "--client-id",
            authkeep_devidp::DEFAULT_CLIENT_ID,
            "--redirect-uri",
            &redirect,
        ],
        &[],
    );
    login.line_with("open this URL");
    let url = login.line_with("/authorize?");
    let url = url.trim_start_matches("authkeep: ").trim().to_owned();
    assert!(
        url.contains(&format!(
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Fcb"
        )),
        "{url}"
    );
    let (status, _) = approve_in_browser(&url);
    assert_eq!(status, 200);
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(config(&home).contains(&format!("redirect_uri = \"{redirect}\"")));

    // The registered port taken by another program: a clear error, nothing stored.
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let run = home.run(&[
        "login",
        "--browser",
        "--no-browser",
        "-p",
        "other",
        "--issuer",
        idp.issuer(),
        "--client-id",
        "c",
        "--redirect-uri",
        &redirect,
    ]);
    drop(taken);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("in use"), "{}", run.stderr());
    assert!(!home.record_path("other").exists());
}

#[test]
fn two_device_logins_of_one_profile_ask_once() {
    let idp = quick_idp();
    let home = Home::new();
    let args = [
        "login",
        "--device",
        "-p",
        "dev",
        "--issuer",
        idp.issuer(),
        "--client-id",
        authkeep_devidp::DEFAULT_CLIENT_ID,
        "--scope",
        "openid offline_access",
    ];
    let mut first = Running::start(&home, &args, &[]);
    let line = first.line_with("enter the code");
    let second = Running::start(&home, &args, &[]);
    // The second waits for the first's lock: it has not asked the provider.
    wait_until("the second login to wait", BOUND, || {
        home.lock_is_held("dev")
    });
    approve_device(idp.issuer(), word_after(&line, "enter the code "));
    let (one, _, first_err) = first.finish();
    let (two, _, second_err) = second.finish();
    assert_eq!((one, two), (0, 0), "{first_err}\n{second_err}");
    assert!(!second_err.contains("enter the code"), "{second_err}");
    assert!(
        second_err.contains("another login of this profile finished first"),
        "{second_err}"
    );
    assert_eq!(idp.counters().device_authorization_requests, 1);
}

#[test]
fn a_device_login_stopped_with_ctrl_c_leaves_nothing_behind() {
    let idp = quick_idp();
    let home = Home::new();
    let mut login = Running::start(
        &home,
        &[
            "login",
            "--device",
            "-p",
            "dev",
            "--issuer",
            idp.issuer(),
            "--client-id",
            "c",
        ],
        &[],
    );
    login.line_with("enter the code");
    signal(login.child.id(), "INT");
    let (code, _, stderr) = login.finish();
    assert_eq!(code, 130, "{stderr}");
    assert!(!home.record_path("dev").exists());
    assert!(home.temp_files("dev").is_empty());
    assert!(
        !config(&home).contains("[profiles.dev]"),
        "no profile from a login that did not happen"
    );
    assert!(!home.lock_is_held("dev"));
}

#[test]
fn client_credentials_log_in_and_renew_by_repeating_the_grant() {
    let idp = quick_idp();
    let home = Home::new();
    service_login(&idp, &home, "svc", &["--scope", "api"]);
    let config = config(&home);
    assert!(
        config.contains("client_secret_env = \"SVC_SECRET\""),
        "{config}"
    );
    assert!(
        !config.contains("svc-secret"),
        "the secret is never kept in the profile"
    );
    let first = home.run(&["token", "-p", "svc"]).ok();
    assert_eq!(idp.counters().token_requests_for("client_credentials"), 1);
    // A forced refresh right after a grant shares that grant; a minute later it repeats it.
    home.age_obtained("svc", 60);
    let renewed = home.run(&["token", "-p", "svc", "--force-refresh"]).ok();
    assert_ne!(first, renewed);
    assert_eq!(idp.counters().token_requests_for("client_credentials"), 2);
    let status = home.status_of("svc");
    assert_eq!(status["can_renew"], Value::Bool(true), "{status}");
}

#[test]
fn a_bare_token_from_stdin_takes_its_expiry_from_the_jwt_and_cannot_renew() {
    let idp = quick_idp();
    let home = Home::new();
    let response = idp.get().create_session(&SessionRequest::default());
    let access = response["access_token"].as_str().unwrap().to_owned();
    let (ok, stderr) = login_with_token(
        &home,
        &[
            "login",
            "--with-token",
            "-p",
            "bare",
            "--issuer",
            idp.issuer(),
        ],
        &access,
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("cannot renew itself"), "{stderr}");
    assert!(
        stderr.contains("valid until"),
        "expiry from the JWT: {stderr}"
    );
    assert!(!stderr.contains(&access));
    assert_eq!(home.run(&["token", "-p", "bare"]).ok(), access);
}

#[test]
fn token_never_starts_a_login_without_a_terminal() {
    let home = Home::new();
    for args in [
        &["token", "-p", "nobody"][..],
        &["token", "-p", "nobody", "--login"],
    ] {
        let run = home.run(args);
        assert_eq!(run.code(), 3, "{}", run.stderr());
        assert!(
            run.stderr().contains("authkeep login --profile nobody"),
            "{}",
            run.stderr()
        );
    }
}

#[test]
fn logout_revokes_the_refresh_token_then_deletes_the_session() {
    let idp = quick_idp();
    let home = Home::new();
    assert_eq!(device_login(&idp, &home, "dev").0, 0);
    let (access, refresh) = stored(&home, "dev");
    let refresh = refresh.unwrap();
    let run = home.run(&["logout", "-p", "dev"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("revoked"), "{}", run.stderr());
    assert!(!idp.is_active(&refresh) && !idp.is_active(&access));
    assert!(!home.record_path("dev").exists());
    assert!(
        config(&home).contains("[profiles.dev]"),
        "logout keeps the profile"
    );

    // --no-revoke: deleted here, still alive at the provider.
    assert_eq!(device_login(&idp, &home, "dev").0, 0);
    let (_, refresh) = stored(&home, "dev");
    let run = home.run(&["logout", "-p", "dev", "--no-revoke"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(idp.is_active(&refresh.unwrap()));
    assert!(!home.record_path("dev").exists());
}

#[test]
fn logout_deletes_locally_when_the_provider_cannot_be_reached() {
    let mut idp = quick_idp();
    let home = Home::new();
    assert_eq!(device_login(&idp, &home, "dev").0, 0);
    idp.stop();
    let run = home.run(&["logout", "-p", "dev", "--timeout", "3s"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let stderr = run.stderr();
    assert!(
        stderr.contains("could not revoke") && stderr.contains("deleted"),
        "{stderr}"
    );
    assert!(!home.record_path("dev").exists());
}

#[test]
fn discovery_at_login_refuses_a_mismatched_issuer_and_plain_http_off_loopback() {
    let idp = quick_idp();
    let home = Home::new();
    let slash = format!("{}/", idp.issuer());
    let run = home.run(&["login", "--device", "--issuer", &slash, "--client-id", "c"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("trailing slash"), "{}", run.stderr());
    assert!(
        run.stderr().contains(&format!("use \"{}\"", idp.issuer())),
        "{}",
        run.stderr()
    );
    let run = home.run(&[
        "login",
        "--device",
        "--issuer",
        "http://idp.example",
        "--client-id",
        "c",
    ]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("https"), "{}", run.stderr());
    assert_eq!(idp.counters().device_authorization_requests, 0);
    assert!(
        !home.path().join("config.toml").exists(),
        "no profile from a refused login"
    );
}

#[test]
fn replacing_a_live_session_for_another_provider_needs_force_without_a_terminal() {
    let idp = quick_idp();
    let other = quick_idp();
    let home = Home::new();
    assert_eq!(device_login(&idp, &home, "dev").0, 0);
    let run = home.run(&[
        "login",
        "--device",
        "-p",
        "dev",
        "--issuer",
        other.issuer(),
        "--client-id",
        "c",
    ]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("needs --force"), "{}", run.stderr());
    assert!(
        config(&home).contains(idp.issuer()),
        "the profile is unchanged"
    );
    let mut login = Running::start(
        &home,
        &[
            "login",
            "--device",
            "--force",
            "-p",
            "dev",
            "--issuer",
            other.issuer(),
            "--client-id",
            "c",
        ],
        &[],
    );
    let line = login.line_with("enter the code");
    approve_device(other.issuer(), word_after(&line, "enter the code "));
    assert_eq!(login.finish().0, 0);
    assert!(config(&home).contains(other.issuer()));
}

#[test]
fn the_demo_opens_with_a_real_device_login_approved_over_http() {
    let home = Home::new();
    let run = home.run(&["demo", "--duration", "5s", "--access-ttl", "4s"]);
    let stdout = run.ok();
    let login = stdout
        .lines()
        .find(|l| l.contains("device login (RFC 8628): open http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(login.contains("/device and enter "), "{login}");
    let order = [
        "device login",
        "pressed Approve",
        "approved -> session stored",
        "summary",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|needle| {
            stdout
                .find(needle)
                .unwrap_or_else(|| panic!("{needle}: {stdout}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{stdout}");
    assert!(
        stdout.contains("session alive at the end            yes"),
        "{stdout}"
    );
}

#[test]
fn racing_processes_renew_a_client_credentials_session_with_one_grant() {
    let idp = quick_idp();
    let home = Home::new();
    service_login(&idp, &home, "svc", &[]);
    // Inside the refresh window: 100 s left of the provider's 300 s.
    home.age_record("svc", 100, 300);
    let before = idp.counters().token_requests_for("client_credentials");
    let (outputs, _) = home.release_at_once(&["token", "-p", "svc"], 8);
    let tokens: Vec<String> = outputs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
        .collect();
    assert_eq!(
        idp.counters().token_requests_for("client_credentials") - before,
        1
    );
    assert!(tokens.iter().all(|t| *t == tokens[0]), "one token for all");
    assert_eq!(stored(&home, "svc").0, tokens[0]);
}
