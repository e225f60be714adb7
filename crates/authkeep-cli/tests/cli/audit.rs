//! The secret audit: the whole command surface run as real processes with
//! every secret that passes through collected, and none found where it must not
//! be.
//!
//! Every `authkeep` here reaches the provider (and the resource server) through
//! a recording HTTP proxy of the test's own (`HTTP_PROXY`), which plays the
//! provider's side of the wire: from what it forwards it collects each secret
//! sent or issued (access, refresh and ID tokens, device codes, authorization
//! codes, PKCE verifiers, client secrets and revoked tokens). The test adds what
//! it handed over itself (imports, a bare token, the client secret) and what the
//! browser it plays saw (the authorization code). Then no collected value may
//! appear in any stderr, in any stdout but the one access token `token` or
//! `request` was asked for, or in any file under `AUTHKEEP_HOME` other than the
//! session records. Values are never printed: a failure names the command, the
//! stream and the kind of secret.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use authkeep_devidp::{ClientConfig, Config, FaultKind, Faults};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse as _;
use serde_json::Value;

use crate::harness::{Home, Idp, text};
use crate::login::{Running, opened_url, recording_browser, word_after};
use crate::oidc::fields_of;

/// The confidential client's secret, known to the provider and given to
/// `authkeep` in an environment variable.
const CLIENT_SECRET: &str = "audit-client-secret-5b1f0c9e";
/// A client secret the provider does not know.
const WRONG_SECRET: &str = "audit-wrong-secret-77d1a2";
/// Generous bound for a step that takes milliseconds.
const BOUND: Duration = Duration::from_secs(20);
/// Shorter values are not checked: they could turn up by chance.
const SHORTEST: usize = 8;

/// A forward HTTP proxy that records every request and answer it carries.
struct Proxy {
    addr: SocketAddr,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&wire);
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || forward(client, &recorded));
            }
        });
        Self { addr, wire }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything carried so far, both ways.
    fn wire(&self) -> String {
        let wire = self.wire.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&wire).into_owned()
    }
}

/// Carries one request (absolute-form, as clients send them to a proxy) to its
/// origin and the answer back, then closes the connection; records both.
fn forward(mut client: TcpStream, recorded: &Mutex<Vec<u8>>) {
    client.set_read_timeout(Some(BOUND)).ok();
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let Some(rest) = target.strip_prefix("http://") else {
        return;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut upstream_request = format!("{method} {path} HTTP/1.1\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name != "connection" && name != "proxy-connection" {
            upstream_request.push_str(line);
            upstream_request.push_str("\r\n");
        }
    }
    upstream_request.push_str("connection: close\r\n\r\n");
    let mut answer = Vec::new();
    if let Ok(mut upstream) = TcpStream::connect(authority) {
        upstream.set_read_timeout(Some(BOUND)).ok();
        let sent = upstream
            .write_all(upstream_request.as_bytes())
            .and_then(|()| upstream.write_all(&body));
        if sent.is_ok() {
            // A provider that drops the connection answers nothing: so does the proxy.
            upstream.read_to_end(&mut answer).ok();
        }
    }
    {
        let mut wire = recorded.lock().unwrap_or_else(PoisonError::into_inner);
        wire.extend_from_slice(head.as_bytes());
        wire.extend_from_slice(b"\r\n\r\n");
        wire.extend_from_slice(&body);
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&answer);
        wire.extend_from_slice(b"\r\n");
    }
    client.write_all(&answer).ok();
}

/// A request's head (without the blank line) and body (by `content-length`).
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body = bytes[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// Every secret seen, by value, with the kind it was seen as.
#[derive(Default)]
struct Secrets(BTreeMap<String, &'static str>);

impl Secrets {
    fn add(&mut self, kind: &'static str, value: &str) {
        if value.len() >= SHORTEST {
            self.0.entry(value.to_owned()).or_insert(kind);
        }
    }

    /// What the proxy carried: form fields of requests, JSON fields of
    /// answers, bearer tokens.
    fn collect_wire(&mut self, wire: &str) {
        for (field, kind) in [
            ("access_token", "an access token"),
            ("refresh_token", "a refresh token"),
            ("id_token", "an ID token"),
            ("device_code", "a device code"),
        ] {
            for value in json_values(wire, field) {
                self.add(kind, &value);
            }
        }
        for (field, kind) in [
            ("code", "an authorization code"),
            ("code_verifier", "a PKCE verifier"),
            ("device_code", "a device code"),
            ("refresh_token", "a refresh token"),
            ("client_secret", "a client secret"),
            ("token", "a revoked token"),
        ] {
            for value in form_values(wire, field) {
                self.add(kind, &value);
            }
        }
        for line in wire.lines() {
            let lower = line.to_ascii_lowercase();
            if let Some(at) = lower.find("authorization: bearer ") {
                self.add("an access token", line[at + 22..].trim());
            }
        }
    }

    /// The secrets of every session record in the home.
    fn collect_records(&mut self, home: &Home) {
        let Ok(entries) = std::fs::read_dir(home.path().join("sessions")) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let record: Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap_or_default();
                for (field, kind) in [
                    ("access_token", "an access token"),
                    ("refresh_token", "a refresh token"),
                    ("id_token", "an ID token"),
                    ("client_secret", "a client secret"),
                ] {
                    if let Some(value) = record[field].as_str() {
                        self.add(kind, value);
                    }
                }
            }
        }
    }

    /// The secrets found in `text`, but `allowed`.
    fn found_in(&self, text: &str, allowed: Option<&str>) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|(value, _)| Some(value.as_str()) != allowed && text.contains(value.as_str()))
            .map(|(_, kind)| *kind)
            .collect()
    }
}

/// The string values of `"field":"…"` in JSON text.
fn json_values(text: &str, field: &str) -> Vec<String> {
    let marker = format!("\"{field}\":\"");
    text.match_indices(&marker)
        .filter_map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

/// The decoded values of `field=…` in form-encoded text.
fn form_values(text: &str, field: &str) -> Vec<String> {
    let marker = format!("{field}=");
    text.match_indices(&marker)
        .filter(|(at, _)| {
            *at == 0 || matches!(text.as_bytes()[at - 1], b'&' | b'?' | b'\n' | b'\r')
        })
        .map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            let end = rest
                .find(|c: char| c == '&' || c.is_whitespace())
                .unwrap_or(rest.len());
            percent_decoded(&rest[..end])
        })
        .collect()
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if text.get(i + 1..i + 3).is_some() => {
                match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One command's outputs, and the access token it was asked to print.
struct Ran {
    what: String,
    stdout: String,
    stderr: String,
    allowed: Option<String>,
}

/// Runs the commands and keeps their outputs.
struct Audit<'a> {
    home: &'a Home,
    proxy: &'a Proxy,
    ran: Vec<Ran>,
    /// What the provider is doing wrong, for the list of commands.
    provider: String,
    /// The store's settings, in the environment of every command.
    store: Vec<(&'static str, String)>,
    /// Whether the records seal their secrets (then no file may hold one).
    sealed: bool,
}

impl Audit<'_> {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.home.command(args);
        command
            .env("HTTP_PROXY", self.proxy.url())
            .env("http_proxy", self.proxy.url())
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env("SVC_SECRET", CLIENT_SECRET)
            .env("WRONG_SECRET", WRONG_SECRET)
            .envs(self.store.iter().map(|(k, v)| (*k, v)));
        command
    }

    /// Runs `authkeep ARGS` with `stdin`; returns the exit code.
    fn run_with(&mut self, args: &[&str], stdin: &str, allowed: Option<String>) -> i32 {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        self.ran.push(Ran {
            what: format!("{}{}", args.join(" "), self.provider),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            allowed,
        });
        output.status.code().unwrap_or(-1)
    }

    fn run(&mut self, args: &[&str]) -> i32 {
        self.run_with(args, "", None)
    }

    /// Runs a command that prints the stored access token of `profile`.
    fn run_printing(&mut self, args: &[&str], profile: &str) -> i32 {
        self.run_printing_with(args, "", profile)
    }

    /// [`Self::run_printing`] with `stdin`.
    fn run_printing_with(&mut self, args: &[&str], stdin: &str, profile: &str) -> i32 {
        let code = self.run_with(args, stdin, None);
        // The token printed is the one stored once the command is done (a
        // sealed record does not show it: then the line printed is allowed).
        let stored = match self.sealed {
            false => self.home.record(profile)["access_token"]
                .as_str()
                .map(str::to_owned),
            true => self.ran.last().and_then(|r| printed_token(&r.stdout)),
        };
        if let Some(last) = self.ran.last_mut() {
            last.allowed = stored;
        }
        code
    }

    fn expect(&mut self, code: i32, args: &[&str]) {
        let got = self.run(args);
        let last = self.ran.last().unwrap();
        assert_eq!(got, code, "{}: {}", last.what, last.stderr);
    }

    fn keep(&mut self, what: String, (code, stdout, stderr): (i32, String, String), want: i32) {
        assert_eq!(code, want, "{what}: {stderr}");
        self.ran.push(Ran {
            what,
            stdout,
            stderr,
            allowed: None,
        });
    }
}

/// The access token a command printed: in its JSON (`token --json`, kubectl's
/// ExecCredential, docker's credential), as git's `password=`, or alone on the
/// first line.
fn printed_token(stdout: &str) -> Option<String> {
    if let Ok(printed) = serde_json::from_str::<Value>(stdout) {
        return [
            &printed["access_token"],
            &printed["status"]["token"],
            &printed["Secret"],
        ]
        .into_iter()
        .find_map(|v| v.as_str().map(str::to_owned));
    }
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("password="))
        .or_else(|| stdout.lines().next())
        .map(str::to_owned)
}

/// What a browser does with the authorization URL: approves on the consent
/// page and follows the redirect to the loopback listener. Returns the
/// authorization code the redirect carried.
fn approve_in_browser(url: &str) -> String {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let page = http.get(url).send().unwrap();
    let mut action = page.url().clone();
    let mut fields = fields_of(&page.text().unwrap());
    fields.push(("action".to_owned(), "approve".to_owned()));
    action.set_query(None);
    let redirect = http.post(action).form(&fields).send().unwrap();
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    let code = form_values(&location, "code")
        .pop()
        .expect("a code in the redirect");
    http.get(&location).send().unwrap();
    code
}

/// A resource server: 200 `hello` to a bearer token, 401 on `/deny`.
struct Api {
    _runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
}

impl Api {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().fallback(|uri: Uri, headers: HeaderMap| async move {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes().starts_with(b"Bearer "));
            if uri.path() == "/deny" || !bearer {
                (StatusCode::UNAUTHORIZED, "denied").into_response()
            } else {
                (StatusCode::OK, "hello").into_response()
            }
        });
        runtime.spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            _runtime: runtime,
            addr,
        }
    }
}

/// The refresh token stored for `profile`, opened with the store's key file
/// when the store seals it.
fn stored_refresh_token(home: &Home, store: &[(&str, String)], profile: &str) -> String {
    let Some((_, key)) = store.iter().find(|(name, _)| *name == "AUTHKEEP_KEY_FILE") else {
        return text(&home.record(profile), "refresh_token");
    };
    let key = authkeep::store::StoreKey::read_file(Path::new(key)).unwrap();
    let sealer = std::sync::Arc::new(authkeep::store::Encrypting::new(key));
    let store = authkeep::FileStore::new(home.path().join("sessions")).with_sealer(sealer);
    let session = authkeep::SessionKey::new(profile).unwrap();
    let loaded = store.load_blocking(&session).unwrap().unwrap();
    let tokens = loaded.record.tokens.unwrap();
    tokens.refresh_token.unwrap().expose_secret().to_owned()
}

/// Every file under `dir`, but the session records unless `records` too.
fn files_but_records(dir: &Path, out: &mut Vec<std::path::PathBuf>, records: bool) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_but_records(&path, out, records);
        } else if records
            || !(path.parent().is_some_and(|p| p.ends_with("sessions"))
                && path.extension().is_some_and(|e| e == "json"))
        {
            out.push(path);
        }
    }
}

fn fault(idp: &Idp, kind: FaultKind) {
    idp.set_faults(Faults {
        kind: Some(kind),
        ..Faults::default()
    });
}

#[test]
fn no_secret_leaks_from_any_command() {
    audit(Vec::new(), false);
}

#[test]
fn no_secret_leaks_from_any_command_with_the_encrypted_store() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("store.key");
    authkeep::store::StoreKey::generate()
        .unwrap()
        .write_new_file(&key)
        .unwrap();
    let store = vec![
        ("AUTHKEEP_STORE", "encrypted-file".to_owned()),
        ("AUTHKEEP_KEY_FILE", key.to_str().unwrap().to_owned()),
    ];
    audit(store, true);
}

/// Runs every command with the store `store` sets up, and checks that no
/// secret leaks; with a `sealed` store, the session records are checked too.
fn audit(store: Vec<(&'static str, String)>, sealed: bool) {
    let idp = Idp::start(Config {
        device_interval: Duration::from_secs(1),
        clients: vec![ClientConfig::new("svc", CLIENT_SECRET)],
        ..Config::default()
    });
    let issuer_url = idp.issuer().to_owned();
    let issuer = issuer_url.as_str();
    let demo_client = authkeep_devidp::DEFAULT_CLIENT_ID;
    let home = Home::new();
    let proxy = Proxy::start();
    let api = Api::start();
    let mut secrets = Secrets::default();
    secrets.add("a client secret", CLIENT_SECRET);
    secrets.add("a client secret", WRONG_SECRET);
    let mut audit = Audit {
        home: &home,
        proxy: &proxy,
        ran: Vec::new(),
        provider: String::new(),
        store,
        sealed,
    };
    let scopes = ["--scope", "openid", "--scope", "offline_access"];

    // Every --help.
    for help in [
        &["--help"][..],
        &["login", "--help"],
        &["token", "--help"],
        &["status", "--help"],
        &["logout", "--help"],
        &["profiles", "--help"],
        &["request", "--help"],
        &["demo", "--help"],
        &["devidp", "--help"],
        &["--version"],
    ] {
        audit.expect(0, help);
    }

    // A device login, approved as a person would, by the code shown.
    let proxied = [("HTTP_PROXY", proxy.url()), ("NO_PROXY", String::new())];
    let envs: Vec<(&str, &str)> = proxied.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut args = vec!["login", "--device", "-p", "dev", "--issuer", issuer];
    args.extend(["--client-id", demo_client]);
    args.extend(scopes);
    let mut device = Running::start(&home, &args, &envs);
    let line = device.line_with("enter the code");
    let user_code = word_after(&line, "enter the code ").to_owned();
    assert!(idp.get().approve_device(&user_code, "alice"));
    audit.keep(args.join(" "), device.finish(), 0);

    // A browser login; the browser is the test.
    let urls = Path::new(&home.input("urls.txt", "")).to_owned();
    std::fs::remove_file(&urls).unwrap();
    let browser = recording_browser(&home, &urls);
    let mut args = vec!["login", "--browser", "-p", "web", "--issuer", issuer];
    args.extend(["--client-id", demo_client]);
    args.extend(scopes);
    let mut envs = envs.clone();
    envs.push(("BROWSER", browser.as_str()));
    let login = Running::start(&home, &args, &envs);
    let url = opened_url(&urls);
    secrets.add("an authorization code", &approve_in_browser(&url));
    audit.keep(args.join(" "), login.finish(), 0);

    // Client credentials, the secret in a variable; a bare token; an import.
    let svc = [
        "login",
        "--client-credentials",
        "-p",
        "svc",
        "--issuer",
        issuer,
        "--client-id",
        "svc",
        "--client-secret-env",
        "SVC_SECRET",
    ];
    audit.expect(0, &svc);
    let bare = idp.session();
    let bare_token = text(&bare, "access_token");
    secrets.add("an access token", &bare_token);
    let with_token = [
        "login",
        "--with-token",
        "-p",
        "bare",
        "--issuer",
        issuer,
        "--client-id",
        demo_client,
    ];
    assert_eq!(audit.run_with(&with_token, &bare_token, None), 0);
    let imported = idp.session();
    for field in ["access_token", "refresh_token", "id_token"] {
        if let Some(value) = imported[field].as_str() {
            secrets.add("an imported token", value);
        }
    }
    let import = home.input("import.json", &imported.to_string());
    let mut args = vec!["login", "-p", "imported", "--issuer", issuer];
    args.extend(["--client-id", demo_client, "--from-json", import.as_str()]);
    audit.expect(0, &args);
    assert_eq!(
        audit.run_with(
            &[
                "login",
                "-p",
                "stdin",
                "--issuer",
                issuer,
                "--client-id",
                demo_client,
                "--from-json",
                "-",
            ],
            &idp.session().to_string(),
            None,
        ),
        0
    );

    // Logins that cannot be.
    audit.expect(2, &["login", "--device", "--browser", "-p", "x"]);
    audit.expect(2, &["login", "-p", "x"]);
    audit.expect(
        2,
        &[
            "login",
            "--issuer",
            "http://idp.example",
            "--client-id",
            "c",
        ],
    );
    audit.expect(
        4,
        &[
            "login",
            "--issuer",
            "http://127.0.0.1:9",
            "--client-id",
            "c",
            "--device",
        ],
    );
    let wrong_issuer = format!("{issuer}/elsewhere");
    let code = audit.run(&[
        "login",
        "--issuer",
        wrong_issuer.as_str(),
        "--client-id",
        "c",
        "--device",
    ]);
    assert_ne!(code, 0);
    let mut wrong_secret = svc.to_vec();
    (wrong_secret[3], wrong_secret[9]) = ("svc2", "WRONG_SECRET");
    audit.expect(2, &wrong_secret);
    let mut no_secret = svc.to_vec();
    no_secret[9] = "UNSET_SECRET_VARIABLE";
    no_secret[3] = "svc3";
    assert_eq!(audit.run(&no_secret), 2);

    // Tokens: warm (the front), with every output option, refreshed, forced.
    for args in [
        &["token", "-p", "dev"][..],
        &["token", "-p", "dev", "--json"],
        &["token", "-p", "dev", "-v"],
        &["token", "-p", "dev", "-q"],
        &["token", "-p", "dev", "--force-refresh", "-v"],
        &["token", "-p", "dev", "--min-valid", "2h", "-v", "--json"],
        &["token", "-p", "svc", "--force-refresh", "-v"],
        &["token", "-p", "web", "--force-refresh", "--json"],
        &["token", "-p", "bare", "-v"],
        &["token", "-p", "imported", "-v"],
    ] {
        let profile = args[2];
        let code = audit.run_printing(args, profile);
        let last = audit.ran.last().unwrap();
        assert_eq!(code, 0, "{}: {}", last.what, last.stderr);
    }
    home.age_record("web", 60, 3600);
    assert_eq!(audit.run_printing(&["token", "-p", "web", "-v"], "web"), 0);

    // A resource server, through the same proxy.
    let data = format!("http://{}/data", api.addr);
    let deny = format!("http://{}/deny", api.addr);
    assert_eq!(
        audit.run_printing(&["request", "-p", "web", data.as_str()], "web"),
        0
    );
    assert_eq!(
        audit.run_printing(&["request", "-p", "web", "-v", deny.as_str()], "web"),
        5
    );

    // kubectl's credential plugin (the front and the full binary), and exec.
    assert_eq!(audit.run_printing(&["kubectl", "-p", "dev"], "dev"), 0);
    assert_eq!(
        audit.run_printing(&["kubectl", "-p", "dev", "--min-valid", "2h", "-v"], "dev"),
        0
    );
    let token_file = home.path().join("exec-token");
    let token_file = token_file.to_str().unwrap();
    audit.expect(
        0,
        &[
            "exec",
            "-p",
            "dev",
            "--token-file",
            token_file,
            "--",
            "true",
        ],
    );
    audit.expect(3, &["exec", "-p", "nobody", "--", "true"]);

    // Credential helpers: git's and docker's, each handing out the token.
    let config = home.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replacen(
        "[profiles.dev]\n",
        "[profiles.dev]\ncredential_hosts = [\"git.example.com\", \"registry.example.com\"]\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let git_get = "protocol=https\nhost=git.example.com\n\n";
    let git = ["credential", "git", "--profile", "dev", "get"];
    assert_eq!(audit.run_printing_with(&git, git_get, "dev"), 0);
    let docker = ["credential", "docker", "get"];
    assert_eq!(
        audit.run_printing_with(&docker, "https://registry.example.com", "dev"),
        0
    );
    let erase = "protocol=https\nhost=git.example.com\nusername=x-access-token\npassword=rejected-token-value\n\n";
    audit.run_with(
        &["credential", "git", "--profile", "dev", "erase"],
        erase,
        None,
    );

    // Status and profiles.
    audit.expect(0, &["status"]);
    audit.expect(0, &["status", "--json"]);
    audit.expect(0, &["status", "--json", "-p", "dev"]);
    audit.expect(0, &["profiles"]);
    audit.expect(0, &["profiles", "--json"]);

    // Failures at the provider, each with a refresh due.
    let failures = [
        FaultKind::EchoSecrets { status: 400 },
        FaultKind::EchoSecrets { status: 200 },
        FaultKind::EchoSecrets { status: 500 },
        FaultKind::Html { status: 502 },
        FaultKind::Garbage,
        FaultKind::Status {
            status: 503,
            retry_after: None,
            body: None,
        },
        FaultKind::FormEncodedError {
            status: 400,
            error: "invalid_client".into(),
        },
        FaultKind::DropConnection,
    ];
    for kind in failures {
        audit.provider = format!("   (provider: {kind:?})");
        fault(&idp, kind);
        for profile in ["dev", "svc"] {
            for extra in [&["-v"][..], &["--json"]] {
                let mut args = vec!["token", "-p", profile, "--force-refresh"];
                args.extend(extra);
                // Served the stored token with a warning, or refused.
                audit.run_printing(&args, profile);
            }
            home.end_back_off(profile);
        }
        audit.run(&["status", "--json"]);
    }
    // Expired, the provider down: retry later, nothing served.
    home.age_record("dev", -60, 3600);
    audit.provider = "   (provider: DropConnection, token expired)".into();
    fault(&idp, FaultKind::DropConnection);
    audit.expect(4, &["token", "-p", "dev", "-v"]);
    audit.expect(4, &["token", "-p", "dev", "--json"]);
    home.end_back_off("dev");
    // The provider ends the session, quoting the refresh token back.
    let refresh = stored_refresh_token(&home, &audit.store, "dev");
    fault(
        &idp,
        FaultKind::OAuthError {
            status: 400,
            error: "invalid_grant".into(),
            description: Some(format!("refresh token {refresh} was revoked")),
        },
    );
    audit.provider = "   (provider: invalid_grant quoting the refresh token)".into();
    audit.expect(3, &["token", "-p", "dev", "-v"]);
    audit.expect(3, &["token", "-p", "dev", "--json"]);
    audit.provider.clear();
    audit.run(&["status", "--json"]);
    audit.run(&["status"]);
    audit.run(&["doctor"]);
    audit.run(&["doctor", "--json"]);

    // Logouts: revoking, not revoking, the provider down.
    idp.clear_faults();
    audit.expect(0, &["logout", "-p", "web", "-v"]);
    audit.expect(0, &["logout", "-p", "imported", "--no-revoke"]);
    fault(&idp, FaultKind::DropConnection);
    audit.provider = "   (provider: DropConnection)".into();
    audit.run(&["logout", "-p", "svc", "-v"]);
    audit.provider.clear();
    idp.clear_faults();
    audit.expect(3, &["token", "-p", "web"]);

    // A short demo, against its own provider (its traffic passes the proxy too).
    audit.expect(0, &["demo", "--duration", "4s", "--access-ttl", "4s"]);

    // Collect, then look.
    secrets.collect_wire(&proxy.wire());
    secrets.collect_records(&home);
    for kind in [
        "a device code",
        "an authorization code",
        "a PKCE verifier",
        "a refresh token",
        "an access token",
        "an ID token",
        "a client secret",
    ] {
        assert!(
            secrets.0.values().any(|k| *k == kind),
            "the audit saw no {kind}: it would prove nothing about it"
        );
    }
    // The matcher finds what it looks for: the tokens printed as asked are there.
    assert!(
        audit.ran.iter().any(|r| r
            .allowed
            .as_ref()
            .is_some_and(|t| secrets.0.contains_key(t) && r.stdout.contains(t.as_str()))),
        "no printed token was recognised: the audit would prove nothing"
    );
    let mut leaks = Vec::new();
    for ran in &audit.ran {
        for kind in secrets.found_in(&ran.stdout, ran.allowed.as_deref()) {
            leaks.push(format!("{kind} on the stdout of `{}`", ran.what));
        }
        for kind in secrets.found_in(&ran.stderr, None) {
            leaks.push(format!("{kind} on the stderr of `{}`", ran.what));
        }
    }
    let mut files = Vec::new();
    files_but_records(home.path(), &mut files, sealed);
    assert!(
        files.iter().any(|f| f.ends_with("config.toml")),
        "{files:?}"
    );
    for file in &files {
        let content = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        for kind in secrets.found_in(&content, None) {
            leaks.push(format!("{kind} in {}", file.display()));
        }
    }
    assert!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));
    let commands: Vec<&str> = audit.ran.iter().map(|r| r.what.as_str()).collect();
    eprintln!(
        "secret audit: {} commands run, {} distinct secret values checked, none leaked:\n  authkeep {}",
        commands.len(),
        secrets.0.len(),
        commands.join("\n  authkeep ")
    );
}
