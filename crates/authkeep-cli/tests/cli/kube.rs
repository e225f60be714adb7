//! `authkeep kubectl` as kubectl's credential plugin: the real kubectl against an
//! API server in the test (https on loopback, since kubectl sends credentials
//! only over TLS) that accepts a bearer token only while the development
//! identity provider says it is active. Parallel kubectl calls inside the
//! refresh window share one refresh; a non-interactive call that needs a login
//! ends with exit 3 and never prompts; the front serves the warm path itself.
//!
//! Tokens are compared, never printed: failure messages carry stderr only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use authkeep_devidp::Config;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{Home, Idp, Run, text};

const PROFILE: &str = "default";

/// The real kubectl: on PATH, or where the distribution installs it. Missing
/// is a failure, never a skipped test.
fn kubectl() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|p| p.is_file())
    });
    let found = on_path.or_else(|| {
        let usual = PathBuf::from("/usr/bin/kubectl");
        usual.is_file().then_some(usual)
    });
    found.expect(
        "kubectl is needed by these tests and was not found on PATH or at /usr/bin/kubectl; install it",
    )
}

/// What the API server saw.
#[derive(Default)]
struct Seen {
    accepted: AtomicU64,
    rejected: AtomicU64,
}

struct ApiState {
    idp: Arc<Idp>,
    seen: Seen,
}

/// A Kubernetes API server on loopback, on a runtime of its own, with a
/// self-signed certificate for 127.0.0.1: `/api` and `/version` answer 200 to
/// a bearer token that is active at the provider, 401 to anything else.
struct Api {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    certificate_pem: String,
    state: Arc<ApiState>,
}

impl Api {
    fn start(idp: Arc<Idp>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let tcp = runtime
            .block_on(tokio::net::TcpListener::bind(SocketAddr::from((
                [127, 0, 0, 1],
                0,
            ))))
            .unwrap();
        let addr = tcp.local_addr().unwrap();
        let state = Arc::new(ApiState {
            idp,
            seen: Seen::default(),
        });
        let router = axum::Router::new()
            .route("/api", axum::routing::get(api))
            .route("/version", axum::routing::get(version))
            .with_state(Arc::clone(&state));
        runtime.spawn(async move {
            let listener = TlsListener::start(tcp, acceptor, addr);
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            runtime: Some(runtime),
            addr,
            certificate_pem: certified.cert.pem(),
            state,
        }
    }

    fn accepted(&self) -> u64 {
        self.state.seen.accepted.load(Ordering::SeqCst)
    }

    fn rejected(&self) -> u64 {
        self.state.seen.rejected.load(Ordering::SeqCst)
    }

    /// A kubeconfig for this server whose user is `authkeep kubectl` in `home`
    /// with `args` after `kubectl`.
    fn kubeconfig(&self, home: &Home, args: &[&str]) -> String {
        let mut plugin_args = vec!["kubectl"];
        plugin_args.extend_from_slice(args);
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": format!("https://{}", self.addr),
                "certificate-authority-data":
                    base64::engine::general_purpose::STANDARD.encode(&self.certificate_pem),
            }}],
            "users": [{"name": "test", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": env!("CARGO_BIN_EXE_authkeep"),
                "args": plugin_args,
                "env": [{"name": "AUTHKEEP_HOME", "value": home.path()}],
                "interactiveMode": "IfAvailable",
                "provideClusterInfo": false,
            }}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        });
        home.input("kubeconfig", &config.to_string())
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        // Dropped here, on the test's thread, which waits for its tasks to be
        // dropped: the provider they hold a reference to is then dropped by the
        // test, outside any runtime.
        drop(self.runtime.take());
    }
}

/// Whether the request carries a bearer token that the provider says is active.
fn authorized(state: &ApiState, headers: &HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = token.is_some_and(|t| state.idp.is_active(t));
    let counter = if ok {
        &state.seen.accepted
    } else {
        &state.seen.rejected
    };
    counter.fetch_add(1, Ordering::SeqCst);
    ok
}

fn answer(state: &ApiState, headers: &HeaderMap, body: Value) -> Response {
    if authorized(state, headers) {
        axum::Json(body).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"kind": "Status", "status": "Failure", "code": 401})),
        )
            .into_response()
    }
}

async fn api(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Response {
    answer(
        &state,
        &headers,
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
    )
}

async fn version(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Response {
    answer(
        &state,
        &headers,
        json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}),
    )
}

/// TLS connections for axum: handshakes run in tasks of their own, so one
/// slow client holds up no other.
struct TlsListener {
    connections:
        tokio::sync::mpsc::Receiver<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    addr: SocketAddr,
}

impl TlsListener {
    fn start(
        tcp: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        addr: SocketAddr,
    ) -> Self {
        let (sender, connections) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    // A failed handshake is the client's problem, not a server's.
                    if let Ok(tls) = acceptor.accept(stream).await {
                        sender.send(tls).await.ok();
                    }
                });
            }
        });
        Self { connections, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(tls) => (tls, self.addr),
            // The accepting task ended: no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// kubectl with `kubeconfig`, a home of its own (its caches) and none of the
/// test's authkeep settings.
fn kubectl_command(kubeconfig: &str, kube_home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(kubectl());
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", kube_home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("AUTHKEEP_") || name_text.starts_with("KUBE") {
            command.env_remove(name);
        }
    }
    command
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}; stderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn parallel_kubectl_calls_inside_the_window_share_one_refresh() {
    let idp = Arc::new(Idp::start(Config::default()));
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    // 100 s left of 300: inside the window of min(5m, 150 s).
    home.age_record(PROFILE, 100, 300);
    let old = text(&home.record(PROFILE), "access_token");
    let api = Api::start(Arc::clone(&idp));
    let kubeconfig = api.kubeconfig(&home, &["--profile", PROFILE]);
    let kube_home = tempfile::tempdir().unwrap();
    let before = idp.refreshes();
    let children: Vec<_> = (0..32)
        .map(|_| {
            kubectl_command(&kubeconfig, kube_home.path(), &["get", "--raw", "/api"])
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", describe(output));
        let body: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(body["kind"], "APIVersions");
    }
    assert_eq!(idp.refreshes() - before, 1, "exactly one refresh");
    let new = text(&home.record(PROFILE), "access_token");
    assert_ne!(new, old, "the session was refreshed");
    assert!(idp.is_active(&new));
    assert!(api.accepted() >= 32, "{}", api.accepted());
    assert_eq!(
        api.rejected(),
        0,
        "no request went out with a token the server refused"
    );
    // Again, warm: the front answers without a refresh.
    let output = kubectl_command(&kubeconfig, kube_home.path(), &["get", "--raw", "/version"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(idp.refreshes() - before, 1);
}

#[test]
fn a_non_interactive_call_that_needs_a_login_says_so_and_never_prompts() {
    let idp = Arc::new(Idp::start(Config {
        device_interval: std::time::Duration::from_secs(1),
        ..Config::default()
    }));
    let home = Home::new();
    // A profile that would log in with a device code, but no session.
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[profiles.{PROFILE}]\nissuer = \"{}\"\nclient_id = \"{}\"\nlogin = \"device\"\n",
            idp.issuer(),
            authkeep_devidp::DEFAULT_CLIENT_ID
        ),
    )
    .unwrap();
    let api = Api::start(Arc::clone(&idp));
    let kube_home = tempfile::tempdir().unwrap();
    // kubectl says interactive: false when its stdin is not a terminal.
    let kubeconfig = api.kubeconfig(&home, &["--profile", PROFILE, "--login"]);
    let output = kubectl_command(&kubeconfig, kube_home.path(), &["get", "--raw", "/api"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no session for profile default")
            && stderr.contains("`authkeep login --profile default`")
            && stderr.contains("exit code 3"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("to sign in"),
        "no login was started: {stderr}"
    );
    assert_eq!(api.accepted(), 0);
    // The plugin alone on a terminal (script(1) gives it one) with --login:
    // kubectl saying interactive: false is exit 3 at once, without a prompt;
    // saying true, the same command starts the profile's device login.
    let run = on_terminal(&home, r#"{"spec":{"interactive":false}}"#, "sign in");
    assert_eq!(run.0, Some(3), "{}", run.1);
    assert!(
        run.1.contains("`authkeep login --profile default`"),
        "{}",
        run.1
    );
    assert!(!run.1.contains("to sign in"), "{}", run.1);
    let run = on_terminal(&home, r#"{"spec":{"interactive":true}}"#, "to sign in");
    assert!(run.1.contains("to sign in, open"), "{}", run.1);
}

/// Runs `authkeep kubectl --login` in `home` on a terminal of its own, with
/// `exec_info`, until it exits or writes `until`; then ends it. Returns its
/// exit code (if it exited by itself) and what it wrote to the terminal.
fn on_terminal(home: &Home, exec_info: &str, until: &str) -> (Option<i32>, String) {
    use std::io::Read as _;
    let template = home.command(&[]);
    let mut command = Command::new("script");
    command
        .args([
            "-q",
            "-e",
            "-c",
            "exec \"$AUTHKEEP_BIN\" kubectl --login",
            "/dev/null",
        ])
        .env("AUTHKEEP_BIN", env!("CARGO_BIN_EXE_authkeep"))
        .env("KUBERNETES_EXEC_INFO", exec_info)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in template.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut child = command
        .spawn()
        .expect("script(1) from util-linux is needed");
    let mut stdout = child.stdout.take().unwrap();
    let (sender, written) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 || sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut text = String::new();
    loop {
        if let Ok(bytes) = written.recv_timeout(std::time::Duration::from_millis(50)) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        if let Some(status) = child.try_wait().unwrap() {
            while let Ok(bytes) = written.recv_timeout(std::time::Duration::from_millis(200)) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
            return (status.code(), text);
        }
        if text.contains(until) || started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            return (None, text);
        }
    }
}

#[test]
fn the_credential_is_what_token_serves_and_exec_info_is_checked() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    let record = home.record(PROFILE);
    let run = home.run(&["kubectl"]);
    let credential: Value = serde_json::from_str(&run.ok()).unwrap();
    assert_eq!(
        credential,
        json!({
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {
                "token": record["access_token"],
                "expirationTimestamp": record["expires_at"],
            }
        })
    );
    // In the version kubectl asks in.
    let mut command = home.command(&["kubectl", "-p", PROFILE]);
    command.env(
        "KUBERNETES_EXEC_INFO",
        r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":true}}"#,
    );
    let credential: Value = serde_json::from_str(&Run(command.output().unwrap()).ok()).unwrap();
    assert_eq!(
        credential["apiVersion"],
        "client.authentication.k8s.io/v1beta1"
    );
    // Malformed: a usage error, whoever reads it first.
    for bad in ["{\"spec\":", "[]", r#"{"spec":{"interactive":"no"}}"#] {
        let mut command = home.command(&["kubectl"]);
        command.env("KUBERNETES_EXEC_INFO", bad);
        let run = Run(command.output().unwrap());
        assert_eq!(run.code(), 2, "{bad}: {}", run.stderr());
        assert!(
            run.stderr().contains("KUBERNETES_EXEC_INFO"),
            "{}",
            run.stderr()
        );
        assert!(run.stdout().is_empty());
    }
    // interactive: false with nothing to serve: exit 3 naming the login.
    let empty = Home::new();
    let mut command = empty.command(&["kubectl", "--profile", "work", "--login"]);
    command.env("KUBERNETES_EXEC_INFO", r#"{"spec":{"interactive":false}}"#);
    let run = Run(command.output().unwrap());
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(
        run.stderr().contains("authkeep login --profile work"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_front_serves_kubectl_exactly_when_it_serves_token() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    let dir = tempfile::tempdir().unwrap();
    let front = dir.path().join("authkeep");
    std::fs::copy(env!("CARGO_BIN_EXE_authkeep"), &front).unwrap();
    let run_front = |args: &[&str], exec_info: Option<&str>| {
        let template = home.command(args);
        let mut command = Command::new(&front);
        command.args(args).stdin(Stdio::null());
        for (name, value) in template.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        if let Some(info) = exec_info {
            command.env("KUBERNETES_EXEC_INFO", info);
        }
        Run(command.output().unwrap())
    };
    let served = |run: &Run| match run.code() {
        0 => true,
        _ => {
            assert!(
                run.stderr().contains("authkeep-main is missing"),
                "{}",
                run.stderr()
            );
            false
        }
    };
    let info = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#;
    // Valid, outside the window: served, as the full binary prints it.
    for args in [
        &["kubectl"][..],
        &["kubectl", "-p", PROFILE, "--login", "-q"],
    ] {
        let run = run_front(args, Some(info));
        assert!(served(&run), "{args:?}");
        assert!(served(&run_front(&["token"], None)));
        let full = Run(Command::new(env!("CARGO_BIN_EXE_authkeep-main"))
            .args(args)
            .envs(
                home.command(args)
                    .get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k, v))),
            )
            .env("KUBERNETES_EXEC_INFO", info)
            .stdin(Stdio::null())
            .output()
            .unwrap());
        assert_eq!(run.stdout(), full.ok() + "\n");
    }
    // What the front cannot judge, or a refresh to make: handed over.
    assert!(!served(&run_front(&["kubectl", "-v"], None)));
    assert!(!served(&run_front(&["kubectl", "--min-valid", "1m"], None)));
    assert!(!served(&run_front(&["kubectl"], Some("{"))));
    home.age_record(PROFILE, 100, 300);
    assert!(!served(&run_front(&["kubectl"], None)));
    assert!(!served(&run_front(&["token"], None)));
}
