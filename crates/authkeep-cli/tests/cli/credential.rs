//! `authkeep credential git` with real git against a test-local git server,
//! and `docker-credential-authkeep` by its protocol.
//!
//! The git server serves bare repositories over git's dumb HTTP protocol (their
//! files, after `git update-server-info`) and demands Basic auth whose password
//! is an access token the development identity provider still calls active
//! (asked by introspection, as a resource server would); anything else is 401
//! with `WWW-Authenticate: Basic`. git runs with no configuration of its own,
//! `GIT_TERMINAL_PROMPT=0` and no askpass, so the helper is its only source of
//! credentials. Tokens are compared, never printed.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use authkeep_devidp::Config;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::Value;

use crate::harness::{Home, Idp, Run, text};

/// What the git server saw of one request that carried credentials.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    username: String,
    password: String,
}

#[derive(Default)]
struct GitState {
    root: PathBuf,
    introspect: String,
    client: reqwest::Client,
    /// Authenticated requests still to be refused, valid token or not.
    reject_next: Mutex<usize>,
    seen: Mutex<Vec<Seen>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A git server on a runtime of its own, serving `repo.git` and
/// `team-a/repo.git` (each with one commit holding `README`).
struct GitServer {
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    state: Arc<GitState>,
}

impl GitServer {
    fn start(idp: &Idp) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("srv");
        let work = dir.path().join("work");
        git(dir.path(), &["init", "-q", work.to_str().unwrap()]);
        std::fs::write(work.join("README"), "kept alive\n").unwrap();
        git(&work, &["add", "README"]);
        git(
            &work,
            &["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
                .into_iter()
                .chain(["commit", "-q", "-m", "first"])
                .collect::<Vec<_>>(),
        );
        for repo in ["repo.git", "team-a/repo.git"] {
            let bare = root.join(repo);
            git(
                dir.path(),
                &[
                    "clone",
                    "-q",
                    "--bare",
                    work.to_str().unwrap(),
                    bare.to_str().unwrap(),
                ],
            );
            git(&bare, &["update-server-info"]);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(GitState {
            root,
            introspect: format!("http://{}/introspect", idp.get().addr()),
            ..GitState::default()
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(SocketAddr::from((
                [127, 0, 0, 1],
                0,
            ))))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .fallback(serve)
            .with_state(Arc::clone(&state));
        runtime.spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            _runtime: runtime,
            _dir: dir,
            addr,
            state,
        }
    }

    /// `host:port`, as git sends it and `credential_hosts` lists it.
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }

    fn reject_next(&self, n: usize) {
        *locked(&self.state.reject_next) = n;
    }

    fn seen(&self) -> Vec<Seen> {
        locked(&self.state.seen).clone()
    }

    /// The passwords of the requests that carried credentials, in order, with
    /// repeats of the same one collapsed.
    fn passwords(&self) -> Vec<String> {
        let mut passwords: Vec<String> = self.seen().into_iter().map(|s| s.password).collect();
        passwords.dedup();
        passwords
    }
}

async fn serve(
    axum::extract::State(state): axum::extract::State<Arc<GitState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let challenge = || {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
            "authentication required",
        )
            .into_response()
    };
    let Some((username, password)) = basic(&headers) else {
        return challenge();
    };
    locked(&state.seen).push(Seen {
        path: uri.path().to_owned(),
        username,
        password: password.clone(),
    });
    let refuse = {
        let mut left = locked(&state.reject_next);
        let refuse = *left > 0;
        *left = left.saturating_sub(1);
        refuse
    };
    if refuse || !active(&state, &password).await {
        return challenge();
    }
    let relative = uri.path().trim_start_matches('/');
    if relative
        .split('/')
        .any(|part| part == ".." || part.is_empty())
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read(state.root.join(relative)).await {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The user name and password of a Basic `Authorization` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

/// Whether the identity provider calls `token` active (introspection).
async fn active(state: &GitState, token: &str) -> bool {
    let answer = state
        .client
        .post(&state.introspect)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice::<Value>(&answer).unwrap()["active"] == Value::Bool(true)
}

/// git with no configuration but what the test gives, never prompting.
fn git_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::null());
    command
}

fn git(dir: &Path, args: &[&str]) {
    let output = git_command(dir).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A home whose git runs authkeep as its only credential helper, noting each
/// operation git asks for in a log.
struct GitClient<'a> {
    home: &'a Home,
    dir: tempfile::TempDir,
}

impl<'a> GitClient<'a> {
    fn new(home: &'a Home) -> Self {
        Self {
            home,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("helper.log")
    }

    /// The operations git asked the helper for, in order.
    fn operations(&self) -> Vec<String> {
        match std::fs::read_to_string(self.log()) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("reading the helper log: {e}"),
        }
    }

    /// `git -c credential.helper=… ARGS` in the client's directory.
    fn run(&self, extra: &[&str], args: &[&str]) -> Run {
        let helper = format!(
            "!f() {{ echo \"$1\" >> '{}'; exec '{}' credential git {} \"$@\"; }}; f",
            self.log().display(),
            env!("CARGO_BIN_EXE_authkeep"),
            extra.join(" ")
        );
        let mut command = git_command(self.dir.path());
        command
            .args(["-c", "credential.helper=", "-c"])
            .arg(format!("credential.helper={helper}"))
            .args(args)
            .env("AUTHKEEP_HOME", self.home.path());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AUTHKEEP_") && name != "AUTHKEEP_HOME" {
                command.env_remove(name);
            }
        }
        Run(command.output().unwrap())
    }
}

/// Sets keys of `[profiles.NAME]` in the home's config.toml.
fn configure(home: &Home, profile: &str, keys: &[(&str, toml::Value)]) {
    let path = home.path().join("config.toml");
    let mut file: toml::Table = match std::fs::read_to_string(&path) {
        Ok(text) => text.parse().unwrap(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => panic!("reading config.toml: {e}"),
    };
    let profiles = file
        .entry("profiles")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap();
    let table = profiles
        .entry(profile)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap();
    for (key, value) in keys {
        table.insert((*key).to_owned(), value.clone());
    }
    std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
}

fn hosts(entries: &[&str]) -> toml::Value {
    toml::Value::Array(entries.iter().map(|h| toml::Value::from(*h)).collect())
}

/// A provider, a git server, and a home where `profile` is logged in and
/// claims the server's host.
fn set_up(profile: &str) -> (Idp, GitServer, Home) {
    let idp = Idp::start(Config::default());
    let server = GitServer::start(&idp);
    let home = Home::new();
    home.login(profile, idp.issuer(), &idp.session()).ok();
    configure(
        &home,
        profile,
        &[("credential_hosts", hosts(&[&server.host()]))],
    );
    (idp, server, home)
}

fn stored_token(home: &Home, profile: &str) -> String {
    text(&home.record(profile), "access_token")
}

fn assert_no_token(run: &Run, token: &str) {
    assert!(!run.stdout().contains(token), "stdout carries a token");
    assert!(!run.stderr().contains(token), "stderr carries a token");
}

/// `authkeep credential git OPERATION` with `input` on stdin.
fn helper(home: &Home, args: &[&str], input: &str) -> Run {
    let mut all = vec!["credential", "git"];
    all.extend_from_slice(args);
    let mut child = home
        .command(&all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Run(child.wait_with_output().unwrap())
}

#[test]
fn git_clones_and_lists_with_the_profiles_token() {
    let (idp, server, home) = set_up("forge");
    let client = GitClient::new(&home);
    let token = stored_token(&home, "forge");

    let clone = client.run(&[], &["clone", "-q", &server.url("repo.git"), "copy"]);
    clone.ok();
    assert_eq!(
        std::fs::read_to_string(client.dir.path().join("copy/README")).unwrap(),
        "kept alive\n"
    );
    let listed = client.run(&[], &["ls-remote", &server.url("repo.git")]);
    assert!(listed.ok().contains("refs/heads/"), "{}", listed.stdout());

    assert!(idp.is_active(&token));
    assert!(
        server.passwords() == [token.clone()],
        "only the stored token was sent"
    );
    assert!(server.seen().iter().all(|s| s.username == "x-access-token"));
    assert_eq!(idp.refreshes(), 0, "a valid token needs no refresh");
    assert!(
        client
            .operations()
            .iter()
            .all(|op| op == "get" || op == "store")
    );
    assert_no_token(&clone, &token);
    assert_no_token(&listed, &token);
}

#[test]
fn the_host_and_path_choose_the_profile() {
    let idp = Idp::start(Config::default());
    let server = GitServer::start(&idp);
    let home = Home::new();
    home.login("whole", idp.issuer(), &idp.session()).ok();
    home.login("team", idp.issuer(), &idp.session()).ok();
    configure(
        &home,
        "whole",
        &[("credential_hosts", hosts(&[&server.host()]))],
    );
    let team_host = format!("{}/team-a", server.host());
    configure(
        &home,
        "team",
        &[
            ("credential_hosts", hosts(&[&team_host])),
            ("credential_username", toml::Value::from("oauth2")),
        ],
    );
    let (whole, team) = (stored_token(&home, "whole"), stored_token(&home, "team"));
    assert!(whole != team);
    let client = GitClient::new(&home);

    // git sends the path only when told to; the path-specific entry then wins.
    let with_path = ["-c", "credential.useHttpPath=true"];
    let ls = |extra: &[&str], repo: &str| {
        let url = server.url(repo);
        let mut args = extra.to_vec();
        args.extend(["ls-remote", &url]);
        client.run(&[], &args).ok();
        server.seen().last().cloned().unwrap()
    };
    let seen = ls(&with_path, "team-a/repo.git");
    assert!(seen.password == team, "team's token for its path");
    assert_eq!(seen.username, "oauth2");
    assert!(seen.path.starts_with("/team-a/repo.git/"), "{}", seen.path);
    let seen = ls(&with_path, "repo.git");
    assert!(seen.password == whole, "the host's token elsewhere");
    assert_eq!(seen.username, "x-access-token");
    let seen = ls(&[], "team-a/repo.git");
    assert!(
        seen.password == whole,
        "without a path, only the host matches"
    );

    // --profile: a profile that lists hosts answers only for those.
    let request = format!("protocol=http\nhost={}\n\n", server.host());
    assert_eq!(
        helper(&home, &["--profile", "whole", "get"], &request).ok(),
        format!(
            "username=x-access-token\npassword={whole}\npassword_expiry_utc={}",
            unix_seconds(&text(&home.record("whole"), "expires_at"))
        )
    );
    let run = helper(&home, &["--profile", "team", "get"], &request);
    assert_eq!((run.ok(), run.stderr()), (String::new(), String::new()));
}

/// An RFC 3339 instant of a record in Unix seconds.
fn unix_seconds(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_second()
}

#[test]
fn a_host_no_profile_claims_gets_no_answer() {
    let (idp, server, home) = set_up("forge");
    for request in [
        "protocol=https\nhost=elsewhere.example\n\n".to_owned(),
        // Another port of the same host.
        format!("protocol=http\nhost=127.0.0.1:{}\n", server.addr.port() ^ 1),
        // Another account's credential for this host.
        format!(
            "protocol=http\nhost={}\nusername=someone\n\n",
            server.host()
        ),
        format!("protocol=ssh\nhost={}\n\n", server.host()),
        String::new(),
    ] {
        let run = helper(&home, &["get"], &request);
        assert_eq!(run.code(), 0, "{request:?}: {}", run.stderr());
        assert_eq!(
            (run.stdout(), run.stderr()),
            (String::new(), String::new()),
            "{request:?}"
        );
    }
    // git then tries its other helpers, and without one fails, not prompting.
    let elsewhere = Home::new();
    let client = GitClient::new(&elsewhere);
    let run = client.run(&[], &["ls-remote", &server.url("repo.git")]);
    assert_eq!(run.code(), 128, "{}", run.stderr());
    assert_eq!(client.operations(), ["get"]);
    assert!(server.seen().is_empty(), "no credential was sent");
    assert_eq!(idp.refreshes(), 0);
}

#[test]
fn a_needed_login_is_one_line_on_stderr_and_exit_3() {
    let (_idp, server, home) = set_up("forge");
    configure(
        &home,
        "absent",
        &[(
            "credential_hosts",
            hosts(&[&format!("{}/new", server.host())]),
        )],
    );
    let request = format!(
        "protocol=http\nhost={}\npath=new/repo.git\n\n",
        server.host()
    );
    let run = helper(&home, &["get"], &request);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert_eq!(run.stdout(), "", "git reads nothing");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("no session for profile absent"),
        "{lines:?}"
    );
    assert!(!home.record_path("absent").exists(), "no login was started");

    // Plain http to a host that is not loopback is refused before anything.
    configure(
        &home,
        "far",
        &[("credential_hosts", hosts(&["git.example.com"]))],
    );
    let run = helper(&home, &["get"], "protocol=http\nhost=git.example.com\n\n");
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert_eq!(run.stdout(), "");
    assert!(run.stderr().contains("plain http"), "{}", run.stderr());
}

#[test]
fn a_rejected_token_is_erased_by_git_but_the_session_stays() {
    let (idp, server, home) = set_up("forge");
    let client = GitClient::new(&home);
    let token = stored_token(&home, "forge");
    let record = home.record("forge");
    server.reject_next(1);

    let refused = client.run(&[], &["ls-remote", &server.url("repo.git")]);
    assert_eq!(refused.code(), 128, "{}", refused.stderr());
    assert!(
        client.operations().contains(&"erase".to_owned()),
        "{:?}",
        client.operations()
    );
    assert_eq!(home.record("forge"), record, "the session is untouched");
    assert!(idp.is_active(&token));
    assert_eq!(idp.refreshes(), 0);

    client
        .run(&[], &["ls-remote", &server.url("repo.git")])
        .ok();
    assert!(server.passwords() == [token], "the same token again");
}

#[test]
fn with_on_erase_refresh_a_rejected_token_is_renewed_once() {
    let (idp, server, home) = set_up("forge");
    configure(
        &home,
        "forge",
        &[("credential_on_erase", toml::Value::from("refresh"))],
    );
    let client = GitClient::new(&home);
    let old = stored_token(&home, "forge");
    server.reject_next(1);

    let refused = client.run(&[], &["ls-remote", &server.url("repo.git")]);
    assert_eq!(refused.code(), 128, "{}", refused.stderr());
    assert!(client.operations().contains(&"erase".to_owned()));
    assert_eq!(idp.refreshes(), 1);
    let new = stored_token(&home, "forge");
    assert!(new != old, "renewed");
    assert!(idp.is_active(&new));

    // git erasing the old token again: the session no longer holds it.
    let erase = format!(
        "protocol=http\nhost={}\nusername=x-access-token\npassword={old}\n\n",
        server.host()
    );
    let run = helper(&home, &["erase"], &erase);
    assert_eq!((run.ok(), run.stderr()), (String::new(), String::new()));
    assert_eq!(idp.refreshes(), 1, "exactly one refresh");
    assert_no_token(&run, &old);

    client
        .run(&[], &["ls-remote", &server.url("repo.git")])
        .ok();
    assert!(server.passwords() == [old, new.clone()]);
    assert!(home.record_path("forge").exists());
    assert!(idp.is_active(&new));
}

/// `docker-credential-authkeep OPERATION` with `input` on stdin.
fn docker(home: &Home, operation: &str, input: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_docker-credential-authkeep"));
    command
        .arg(operation)
        .env("AUTHKEEP_HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AUTHKEEP_") && name != "AUTHKEEP_HOME" {
            command.env_remove(name);
        }
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Run(child.wait_with_output().unwrap())
}

/// A provider and a home where `registry` is logged in for `registry.example.com`
/// (and `mirror` for a loopback registry) as docker's helper sees them.
fn registry_home() -> (Idp, Home) {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login("registry", idp.issuer(), &idp.session()).ok();
    configure(
        &home,
        "registry",
        &[
            (
                "credential_hosts",
                hosts(&["registry.example.com", "index.docker.io/v1"]),
            ),
            (
                "credential_username",
                toml::Value::from("oauth2accesstoken"),
            ),
        ],
    );
    configure(
        &home,
        "mirror",
        &[("credential_hosts", hosts(&["127.0.0.1:5000"]))],
    );
    (idp, home)
}

#[test]
fn docker_get_and_list_answer_in_json() {
    let (idp, home) = registry_home();
    let token = stored_token(&home, "registry");
    for server in ["registry.example.com", "https://index.docker.io/v1/"] {
        let run = docker(&home, "get", &format!("{server}\n"));
        let answer: Value = serde_json::from_str(&run.ok()).unwrap();
        assert_eq!(answer["ServerURL"], server);
        assert_eq!(answer["Username"], "oauth2accesstoken");
        assert!(
            answer["Secret"] == Value::String(token.clone()),
            "the stored token"
        );
        assert_eq!(run.stderr(), "");
    }
    let listed: Value = serde_json::from_str(&docker(&home, "list", "").ok()).unwrap();
    assert_eq!(
        listed,
        serde_json::json!({
            "registry.example.com": "oauth2accesstoken",
            "index.docker.io/v1": "oauth2accesstoken",
            "127.0.0.1:5000": "x-access-token",
        })
    );
    assert_eq!(idp.refreshes(), 0);
}

#[test]
fn docker_is_told_of_an_unknown_server_as_it_expects() {
    let (_idp, home) = registry_home();
    for server in ["other.example.com", "https://registry.example.com:8443"] {
        let run = docker(&home, "get", server);
        assert_eq!(run.code(), 1, "{}", run.stderr());
        assert_eq!(run.stdout(), "credentials not found in native keychain\n");
        assert_eq!(run.stderr(), "");
    }
    // A claimed server whose profile has no session: said on stdout, exit 3.
    let run = docker(&home, "get", "http://127.0.0.1:5000");
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(
        run.stdout().contains("no session for profile mirror"),
        "{}",
        run.stdout()
    );
    let run = docker(&home, "frobnicate", "");
    assert_eq!(run.code(), 2);
    assert!(
        run.stdout().contains("unknown operation"),
        "{}",
        run.stdout()
    );
}

#[test]
fn docker_store_and_erase_keep_the_session() {
    let (idp, home) = registry_home();
    let token = stored_token(&home, "registry");
    let record = home.record("registry");
    let stored = serde_json::json!({
        "ServerURL": "registry.example.com",
        "Username": "someone",
        "Secret": "not-authkeeps",
    });
    let run = docker(&home, "store", &stored.to_string());
    assert_eq!((run.ok(), run.stderr()), (String::new(), String::new()));
    let run = docker(&home, "erase", "registry.example.com\n");
    assert_eq!((run.ok(), run.stderr()), (String::new(), String::new()));
    assert_eq!(home.record("registry"), record, "untouched");
    assert_eq!(idp.refreshes(), 0);

    configure(
        &home,
        "registry",
        &[("credential_on_erase", toml::Value::from("refresh"))],
    );
    docker(&home, "erase", "registry.example.com\n").ok();
    assert_eq!(idp.refreshes(), 1, "the 401 path: one refresh");
    let new = stored_token(&home, "registry");
    assert!(new != token && idp.is_active(&new));
    docker(&home, "store", &stored.to_string()).ok();
    assert_eq!(idp.refreshes(), 1, "store never refreshes");
    // An unclaimed server's erase is a no-op.
    docker(&home, "erase", "other.example.com\n").ok();
    assert_eq!(idp.refreshes(), 1);
}
