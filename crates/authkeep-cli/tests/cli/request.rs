//! `authkeep request` against a resource server in the test and the
//! development identity provider: the token goes only to the URL's origin,
//! redirects are followed as curl follows them, a rejection (401, or 403 with
//! `--refresh-on-403`) renews the token once and retries once, two processes
//! rejected with one token share one refresh, and the exit code says what the
//! answer was.
//!
//! Tokens are compared, never printed: failure messages carry stderr only.

use std::collections::HashSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use authkeep_devidp::{Config, FaultKind};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::harness::{Home, Idp, Run, text};

const PROFILE: &str = "default";
/// Longest wait for the requests a test holds at the resource server.
const GATE_BOUND: Duration = Duration::from_secs(20);

/// What the resource server saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    /// The bearer token, if the request carried one.
    token: Option<String>,
    body: Vec<u8>,
}

/// How the resource server behaves.
#[derive(Default)]
struct Plan {
    /// Tokens it no longer accepts.
    rejected: HashSet<String>,
    /// Accepts no token at all.
    reject_all: bool,
    /// Answers rejections with 403 rather than 401.
    forbidden: bool,
    /// Where `/redirect/{status}` points.
    redirect_to: Option<String>,
    /// Rejections wait here until this many have arrived.
    gate: Option<Arc<tokio::sync::Barrier>>,
    /// Runs once, on a blocking thread, before the first rejection is answered.
    before_rejecting: Option<Box<dyn FnOnce() + Send>>,
}

#[derive(Default)]
struct ApiState {
    plan: Mutex<Plan>,
    seen: Mutex<Vec<Seen>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A resource server on a runtime of its own. `/data` answers 200 with what it
/// received to an accepted bearer token, and 401 (or 403) with `denied`
/// otherwise; `/missing` answers 404; `/redirect/{status}` redirects with that
/// status to wherever it is told.
struct Api {
    _runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    state: Arc<ApiState>,
}

impl Api {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(ApiState::default());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(SocketAddr::from((
                [127, 0, 0, 1],
                0,
            ))))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&state));
        runtime.spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            _runtime: runtime,
            addr,
            state,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        locked(&self.state.plan)
    }

    fn reject(&self, token: &str) {
        self.plan().rejected.insert(token.to_owned());
    }

    fn seen(&self) -> Vec<Seen> {
        locked(&self.state.seen).clone()
    }
}

async fn answer(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    locked(&state.seen).push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        token: token.clone(),
        body: body.to_vec(),
    });
    if let Some(status) = uri.path().strip_prefix("/redirect/") {
        let to = locked(&state.plan).redirect_to.clone().unwrap();
        let status = StatusCode::from_bytes(status.as_bytes()).unwrap();
        return (status, [(header::LOCATION, to)], "moved").into_response();
    }
    if uri.path() == "/missing" {
        return (StatusCode::NOT_FOUND, "no such thing").into_response();
    }
    let (rejects, status, gate, hook) = {
        let mut plan = locked(&state.plan);
        let rejects = plan.reject_all || token.as_ref().is_none_or(|t| plan.rejected.contains(t));
        let status = if plan.forbidden {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        };
        let hook = if rejects {
            plan.before_rejecting.take()
        } else {
            None
        };
        (rejects, status, plan.gate.clone(), hook)
    };
    if !rejects {
        let shown = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let echo = format!(
            "{method} type={} test={} body={}",
            shown(header::CONTENT_TYPE),
            shown(header::HeaderName::from_static("x-test")),
            String::from_utf8_lossy(&body)
        );
        return (StatusCode::OK, [("x-served-by", "api")], echo).into_response();
    }
    if let Some(hook) = hook {
        tokio::task::spawn_blocking(hook).await.unwrap();
    }
    if let Some(gate) = gate {
        tokio::time::timeout(GATE_BOUND, gate.wait())
            .await
            .expect("every held request arrived");
    }
    (status, [(header::WWW_AUTHENTICATE, "Bearer")], "denied").into_response()
}

/// A provider and a home with a fresh session (an hour left: no refresh due).
fn logged_in() -> (Idp, Home) {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    (idp, home)
}

fn stored_token(home: &Home) -> String {
    text(&home.record(PROFILE), "access_token")
}

/// Asserts that neither stdout nor stderr carries `token`.
fn assert_no_token(run: &Run, token: &str) {
    assert!(!run.stdout().contains(token), "stdout carries a token");
    assert!(!run.stderr().contains(token), "stderr carries a token");
}

fn tokens(seen: &[Seen]) -> Vec<Option<String>> {
    seen.iter().map(|s| s.token.clone()).collect()
}

#[test]
fn a_401_to_the_stored_token_refreshes_once_and_retries_once() {
    let (idp, home) = logged_in();
    let api = Api::start();
    let old = stored_token(&home);
    api.reject(&old);

    let run = home.run(&["request", &api.url("/data")]);
    assert_eq!(run.ok(), "GET type=- test=- body=", "{}", run.stderr());
    assert_eq!(run.stderr(), "", "nothing to warn about");
    let new = stored_token(&home);
    assert!(new != old, "refreshed");
    assert!(tokens(&api.seen()) == [Some(old.clone()), Some(new.clone())]);
    assert_eq!(idp.refreshes(), 1);
    assert_no_token(&run, &old);
    assert_no_token(&run, &new);
}

#[test]
fn a_401_to_an_older_token_retries_with_the_stored_one_without_refreshing() {
    let (idp, home) = logged_in();
    let api = Api::start();
    let old = stored_token(&home);
    api.reject(&old);
    // While the request with the old token is at the server, another process
    // refreshes the session.
    let mut other = home.command(&["token", "--force-refresh"]);
    api.plan().before_rejecting = Some(Box::new(move || {
        let output = other.output().unwrap();
        assert!(output.status.success(), "the other process refreshed");
    }));

    let run = home.run(&["request", "-v", &api.url("/data")]);
    run.ok();
    assert_eq!(idp.refreshes(), 1, "only the other process's refresh");
    let new = stored_token(&home);
    assert!(tokens(&api.seen()) == [Some(old), Some(new)]);
    assert!(!run.stderr().contains("refreshing"), "{}", run.stderr());
}

#[test]
fn a_403_renews_the_token_only_with_refresh_on_403() {
    let (idp, home) = logged_in();
    let api = Api::start();
    api.reject(&stored_token(&home));
    api.plan().forbidden = true;

    let run = home.run(&["request", &api.url("/data")]);
    assert_eq!(run.code(), 5, "{}", run.stderr());
    assert_eq!(run.stdout(), "denied", "the body is still printed");
    assert!(run.stderr().contains("403 Forbidden"), "{}", run.stderr());
    assert_eq!(api.seen().len(), 1);
    assert_eq!(idp.refreshes(), 0);

    let run = home.run(&["request", "--refresh-on-403", &api.url("/data")]);
    assert_eq!(run.ok(), "GET type=- test=- body=");
    assert_eq!(api.seen().len(), 3, "one more request and its retry");
    assert_eq!(idp.refreshes(), 1);
}

#[test]
fn redirects_carry_the_token_within_the_origin_only() {
    let (idp, home) = logged_in();
    let api = Api::start();
    let elsewhere = Api::start();
    let token = stored_token(&home);

    api.plan().redirect_to = Some(api.url("/data"));
    let run = home.run(&["request", &api.url("/redirect/302")]);
    assert_eq!(run.ok(), "GET type=- test=- body=");
    assert!(tokens(&api.seen()) == [Some(token.clone()), Some(token.clone())]);

    // To another origin the token does not follow, and that origin's 401 is
    // not taken for a rejection of it.
    api.plan().redirect_to = Some(elsewhere.url("/data"));
    let run = home.run(&["request", &api.url("/redirect/307")]);
    assert_eq!(run.code(), 5, "{}", run.stderr());
    assert_eq!(run.stdout(), "denied");
    let there = elsewhere.seen();
    assert_eq!(there.len(), 1, "followed once, not retried");
    assert_eq!(there[0].path, "/data");
    assert!(there[0].token.is_none(), "no Authorization header");
    assert_eq!(idp.refreshes(), 0);
    assert_no_token(&run, &token);
}

#[test]
fn redirects_change_the_method_as_curl_does_and_stop_after_ten() {
    let (_idp, home) = logged_in();
    let api = Api::start();
    api.plan().redirect_to = Some(api.url("/data"));

    let run = home.run(&["request", "--data", "a=1", &api.url("/redirect/303")]);
    assert_eq!(run.ok(), "GET type=- test=- body=", "GET without a body");
    let run = home.run(&["request", "--data", "a=1", &api.url("/redirect/301")]);
    assert_eq!(run.ok(), "GET type=- test=- body=");
    let run = home.run(&[
        "request",
        "-X",
        "PUT",
        "--data",
        "a=1",
        &api.url("/redirect/308"),
    ]);
    assert_eq!(
        run.ok(),
        "PUT type=application/x-www-form-urlencoded test=- body=a=1"
    );
    let seen = api.seen();
    assert_eq!(seen.len(), 6);
    assert_eq!(
        (seen[4].method.as_str(), seen[4].body.as_slice()),
        ("PUT", &b"a=1"[..])
    );

    api.plan().redirect_to = Some(api.url("/redirect/302"));
    let before = api.seen().len();
    let run = home.run(&["request", &api.url("/redirect/302")]);
    assert_eq!(run.code(), 5, "{}", run.stderr());
    assert!(
        run.stderr().contains("more than 10 redirects"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        api.seen().len() - before,
        11,
        "the request and 10 redirects"
    );
}

#[test]
fn a_401_that_persists_exits_5_after_one_refresh_and_one_retry() {
    let (idp, home) = logged_in();
    let api = Api::start();
    api.plan().reject_all = true;

    let run = home.run(&["request", &api.url("/data")]);
    assert_eq!(run.code(), 5, "{}", run.stderr());
    assert_eq!(run.stdout(), "denied", "the body is still printed");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("401 Unauthorized"), "{lines:?}");
    assert_eq!(api.seen().len(), 2);
    assert_eq!(idp.refreshes(), 1);

    let run = home.run(&["request", &api.url("/missing")]);
    assert_eq!(run.code(), 5, "{}", run.stderr());
    assert_eq!(run.stdout(), "no such thing");
    assert_eq!(idp.refreshes(), 1, "a 404 is not a rejection of the token");
}

#[test]
fn two_processes_rejected_with_one_token_cause_one_refresh() {
    let (idp, home) = logged_in();
    let api = Api::start();
    let old = stored_token(&home);
    api.reject(&old);
    // Both rejections are held until both requests have arrived: both
    // processes sent the old token, and both ask for a new one.
    api.plan().gate = Some(Arc::new(tokio::sync::Barrier::new(2)));

    let url = api.url("/data");
    let (outputs, _) = home.release_at_once(&["request", &url], 2);
    for output in &outputs {
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.stdout, b"GET type=- test=- body=");
    }
    assert_eq!(idp.refreshes(), 1, "one refresh between them");
    let seen = api.seen();
    assert_eq!(seen.len(), 4);
    let new = stored_token(&home);
    let with_old = seen
        .iter()
        .filter(|s| s.token.as_deref() == Some(&old))
        .count();
    let with_new = seen
        .iter()
        .filter(|s| s.token.as_deref() == Some(&new))
        .count();
    assert_eq!((with_old, with_new), (2, 2));
}

#[test]
fn without_a_session_it_exits_3_and_sends_nothing() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let api = Api::start();

    let run = home.run(&["request", "--profile", "nobody", &api.url("/data")]);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert_eq!(run.stdout(), "");
    assert!(run.stderr().contains("authkeep login"), "{}", run.stderr());
    assert!(api.seen().is_empty());
    assert_eq!(idp.refreshes(), 0);
}

#[test]
fn a_token_that_cannot_be_refreshed_now_exits_4() {
    let (idp, home) = logged_in();
    let api = Api::start();
    idp.fail_with(FaultKind::Status {
        status: 503,
        retry_after: None,
        body: None,
    });

    // Expired: nothing is sent.
    home.age_record(PROFILE, -10, 3600);
    let run = home.run(&["request", &api.url("/data")]);
    assert_eq!(run.code(), 4, "{}", run.stderr());
    assert_eq!(run.stdout(), "");
    assert!(api.seen().is_empty());

    // Valid but rejected: the answer is printed, and the exit code says why
    // it could not be retried.
    home.age_record(PROFILE, 3000, 3600);
    home.end_back_off(PROFILE);
    api.reject(&stored_token(&home));
    let run = home.run(&["request", &api.url("/data")]);
    assert_eq!(run.code(), 4, "{}", run.stderr());
    assert_eq!(run.stdout(), "denied");
    assert!(
        run.stderr().contains("rejected the access token"),
        "{}",
        run.stderr()
    );
    assert_eq!(api.seen().len(), 1, "not retried");
}

#[test]
fn include_prints_the_status_line_and_headers_first() {
    let (_idp, home) = logged_in();
    let api = Api::start();

    let run = home.run(&["request", "--include", &api.url("/data")]);
    let out = run.ok();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nx-served-by: api"), "{head}");
    assert!(head.contains("\r\ncontent-length: "), "{head}");
    assert_eq!(body, "GET type=- test=- body=");
}

#[test]
fn data_from_text_or_stdin_and_headers_are_sent() {
    let (_idp, home) = logged_in();
    let api = Api::start();
    let url = api.url("/data");

    let run = home.run(&["request", "--data", "x=1&y=2", &url]);
    assert_eq!(
        run.ok(),
        "POST type=application/x-www-form-urlencoded test=- body=x=1&y=2"
    );

    let mut child = home
        .command(&[
            "request",
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-Test:  yes ",
            "--data-file",
            "-",
            &url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(br#"{"a": 1}"#).unwrap();
    drop(stdin);
    let run = Run(child.wait_with_output().unwrap());
    assert_eq!(
        run.ok(),
        r#"PATCH type=application/json test=yes body={"a": 1}"#
    );

    let file = home.input("body.txt", "from a file");
    let run = home.run(&["request", "-X", "PUT", "--data-file", &file, &url]);
    assert_eq!(
        run.ok(),
        "PUT type=application/x-www-form-urlencoded test=- body=from a file"
    );
}

#[test]
fn usage_errors_exit_2_and_send_nothing() {
    let (idp, home) = logged_in();
    let api = Api::start();
    let url = api.url("/data");
    let file = home.input("body.txt", "b");

    for args in [
        &["request", "-H", "no colon here", &url][..],
        &["request", "-H", "Bad Name: v", &url],
        &["request", "-H", "Authorization: Basic c2VjcmV0", &url],
        &["request", "--data", "a", "--data-file", &file, &url],
        &["request", "-X", "GE T", &url],
        &["request", "not a url"],
        &["request", "ftp://127.0.0.1/x"],
        &["request", "http://api.example.com/x"],
        &["request", "http://user:hunter2@127.0.0.1:9/x"],
        &["request", "--data-file", "/nonexistent/body", &url],
    ] {
        let run = home.run(args);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        assert_eq!(run.stdout(), "", "{args:?}");
        let stderr = run.stderr();
        assert!(!stderr.contains("c2VjcmV0"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    assert!(api.seen().is_empty());
    assert_eq!(idp.refreshes(), 0);
}

#[test]
fn a_rejected_token_of_a_session_that_cannot_renew_itself_exits_3() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let mut session = idp.session();
    session.as_object_mut().unwrap().remove("refresh_token");
    home.login(PROFILE, idp.issuer(), &session).ok();
    let api = Api::start();
    api.reject(&stored_token(&home));

    let run = home.run(&["request", &api.url("/data")]);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert_eq!(run.stdout(), "denied", "the answer is printed");
    let lines = run.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "one line, no warning about serving it: {lines:?}"
    );
    assert!(
        lines[0].contains("rejected the access token of profile default")
            && lines[0].contains("authkeep login"),
        "{lines:?}"
    );
    assert_eq!(api.seen().len(), 1, "not retried");
    assert_eq!(idp.refreshes(), 0);

    // Step by step: a login is required, and nothing claims the token was served.
    let run = home.run(&["request", "-v", &api.url("/data")]);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    let stderr = run.stderr();
    assert!(
        stderr.contains("login required: a server rejected the token"),
        "{stderr}"
    );
    assert!(!stderr.contains("serving the stored token"), "{stderr}");
}
