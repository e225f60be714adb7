//! `authkeep agent`, `clients` and `accounts` as real processes against the
//! development identity provider, on SQLite and on the PostgreSQL server of
//! `scripts/with-postgres.sh` (`AUTHKEEP_TEST_POSTGRES_URL`): the API's
//! access check and errors, tokens with `min_valid`, the rejected-token path,
//! logins stored through the API, listings without secrets, metrics, the
//! webhook, SIGTERM with a refresh in flight, an application and the
//! scheduler refreshing one account once, a provider outage and a revoked
//! grant, and two agents on one PostgreSQL with one killed mid-run.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, FaultKind, Faults, SessionRequest};
use serde_json::{Value, json};

use crate::harness::{Home, Idp, Run, signal, text, wait_until};

const API_KEY: &str = "test-api-key-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(60);

/// A home with a store key, an API key file, and a client `dev` for the
/// provider, on the database at `store`.
struct Setup {
    home: Home,
    key_file: String,
    api_key_file: String,
    store: String,
}

impl Setup {
    fn new(idp: &Idp, store: Option<String>) -> Self {
        let home = Home::new();
        let key_file = home.path().join("store.key");
        let key_file = key_file.to_str().unwrap().to_owned();
        home.run(&["store", "keygen", "--out", &key_file]).ok();
        let api_key_file = home.input("api.key", API_KEY);
        std::fs::set_permissions(
            &api_key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let store = store
            .unwrap_or_else(|| format!("sqlite:{}", home.path().join("accounts.db").display()));
        let setup = Self {
            home,
            key_file,
            api_key_file,
            store,
        };
        setup
            .cli(&[
                "clients",
                "add",
                "dev",
                "--issuer",
                idp.issuer(),
                "--client-id",
                DEFAULT_CLIENT_ID,
            ])
            .ok();
        setup
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.home.command(args);
        command
            .env("AUTHKEEP_KEY_FILE", &self.key_file)
            .env("AUTHKEEP_STORE", &self.store);
        command
    }

    fn cli(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().unwrap())
    }

    /// Stores a new grant of the provider as account `id`, its access token
    /// living `ttl` seconds; returns the session's JSON.
    fn add_account(&self, idp: &Idp, id: &str, ttl: u64) -> Value {
        let session = idp.get().create_session(&SessionRequest {
            access_ttl_secs: Some(ttl),
            ..SessionRequest::default()
        });
        let file = self.home.input(&format!("{id}.json"), &session.to_string());
        self.cli(&[
            "accounts",
            "add",
            id,
            "--client",
            "dev",
            "--from-json",
            &file,
        ])
        .ok();
        session
    }

    fn accounts(&self) -> Vec<Value> {
        self.cli(&["accounts", "list", "--json"])
            .ok()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn account(&self, id: &str) -> Value {
        self.accounts()
            .into_iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no account {id}"))
    }

    /// Starts an agent on loopback TCP with the API key.
    fn agent(&self, extra: &[&str]) -> Agent {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = self.home.path().join(format!("agent-{port}.log"));
        let mut args = vec![
            "agent",
            "--listen",
            &listen,
            "--api-key-file",
            &self.api_key_file,
        ];
        args.extend_from_slice(extra);
        let child = self
            .command(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let agent = Agent {
            child,
            base: format!("http://{listen}"),
            http: reqwest::blocking::Client::new(),
            log,
        };
        wait_until("the agent to answer", WAIT, || {
            agent.get("/healthz").is_ok_and(|(status, _)| status == 200)
        });
        agent
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Agent {
    child: Child,
    base: String,
    http: reqwest::blocking::Client,
    log: std::path::PathBuf,
}

impl Agent {
    fn send(&self, request: reqwest::blocking::RequestBuilder) -> reqwest::Result<(u16, Value)> {
        let response = request.send()?;
        let status = response.status().as_u16();
        let body = response.text()?;
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        Ok((status, value))
    }

    fn get(&self, path: &str) -> reqwest::Result<(u16, Value)> {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(API_KEY),
        )
    }

    fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    fn token(&self, id: &str) -> String {
        text(
            &self.ok(&format!("/v1/accounts/{id}/token")),
            "access_token",
        )
    }

    fn metrics(&self) -> String {
        self.ok("/metrics").as_str().unwrap().to_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> i32 {
        signal(self.child.id(), "TERM");
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// A webhook receiver: records each POST's JSON body, answers 204.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(value) = serde_json::from_slice(&body)
            {
                record.lock().unwrap().push(value);
            }
            stream
                .write_all(
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .ok();
        }
    });
    (url, seen)
}

#[test]
fn the_api_checks_access_and_input_and_serves_tokens_logins_and_listings() {
    let idp = Idp::start(Config::default());
    let s = Setup::new(&idp, None);
    let alice = s.add_account(&idp, "alice@example.com", 3600);
    let agent = s.agent(&[]);
    let stored = text(&alice, "access_token");

    // Without the key, or with another, nothing is served: not even health.
    for path in [
        "/healthz",
        "/metrics",
        "/v1/accounts",
        "/v1/accounts/alice@example.com/token",
    ] {
        let url = format!("{}{path}", agent.base);
        let (status, body) = agent.send(agent.http.get(&url)).unwrap();
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"]["class"], "unauthorized");
        let (status, _) = agent
            .send(
                agent
                    .http
                    .get(&url)
                    .bearer_auth("test-api-key-0123456789abcdeX"),
            )
            .unwrap();
        assert_eq!(status, 401, "{path} with a wrong key");
    }
    let put = |id: &str, body: &Value, key: &str| {
        agent
            .send(
                agent
                    .http
                    .put(format!("{}/v1/accounts/{id}", agent.base))
                    .bearer_auth(key)
                    .json(body),
            )
            .unwrap()
    };
    let bob = idp.session();
    let mut login = bob.clone();
    login["client"] = json!("dev");
    assert_eq!(put("bob", &login, "wrong-key-0123456789abcdef").0, 401);
    assert_eq!(
        agent.get("/v1/accounts/bob").unwrap().0,
        404,
        "the 401 stored nothing"
    );

    // Malformed requests: 400; unknown accounts: 404.
    for path in [
        "/v1/accounts/a%2Fb/token",
        "/v1/accounts/alice@example.com/token?min_valid=soon",
        "/v1/accounts/alice@example.com/token?force=1",
        "/v1/accounts?state=sleepy",
    ] {
        let (status, body) = agent.get(path).unwrap();
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["class"], "bad_request");
    }
    assert_eq!(put("carol", &json!({"client": "dev"}), API_KEY).0, 400);
    assert_eq!(
        put(
            "carol",
            &json!({"client": "nope", "access_token": "x"}),
            API_KEY
        )
        .0,
        400
    );
    assert_eq!(put("carol", &json!([1, 2]), API_KEY).0, 400);
    assert_eq!(agent.get("/v1/accounts/carol").unwrap().0, 404);
    let (status, body) = agent.get("/v1/accounts/nobody/token").unwrap();
    assert_eq!(
        (status, body["error"]["class"].clone()),
        (404, json!("not_found"))
    );

    // A valid token costs no refresh; min_valid beyond its life refreshes.
    assert_eq!(agent.token("alice@example.com"), stored);
    assert_eq!(idp.refreshes(), 0);
    let fresh = agent.ok("/v1/accounts/alice@example.com/token?min_valid=2h");
    assert_eq!(idp.refreshes(), 1);
    let fresh_token = text(&fresh, "access_token");
    assert_ne!(fresh_token, stored);
    assert_eq!(fresh["token_type"], "Bearer");
    assert!(fresh["expires_at"].is_string());
    assert_eq!(
        fresh.as_object().unwrap().len(),
        3,
        "no other field: {fresh}"
    );

    // Rejected: the old token is no longer stored, so no refresh; the stored
    // one is, so exactly one.
    let rejected = |token: &str| {
        agent
            .send(
                agent
                    .http
                    .post(format!(
                        "{}/v1/accounts/alice@example.com/rejected",
                        agent.base
                    ))
                    .bearer_auth(API_KEY)
                    .json(&json!({"access_token": token})),
            )
            .unwrap()
    };
    let (status, body) = rejected(&stored);
    assert_eq!(
        (status, text(&body, "access_token")),
        (200, fresh_token.clone())
    );
    assert_eq!(idp.refreshes(), 1, "someone already refreshed");
    let (status, body) = rejected(&fresh_token);
    assert_eq!(status, 200);
    let newest = text(&body, "access_token");
    assert_ne!(newest, fresh_token);
    assert_eq!(idp.refreshes(), 2);
    let (status, _) = agent
        .send(
            agent
                .http
                .post(format!(
                    "{}/v1/accounts/alice@example.com/rejected",
                    agent.base
                ))
                .bearer_auth(API_KEY)
                .body("not json"),
        )
        .unwrap();
    assert_eq!(status, 400);

    // A login stored through the API, then listed without secrets.
    let (status, body) = put("bob", &login, API_KEY);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "active");
    assert_eq!(agent.token("bob"), text(&bob, "access_token"));
    let listed = agent.ok("/v1/accounts");
    let ids: Vec<_> = listed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(ids, [json!("alice@example.com"), json!("bob")]);
    let one = agent.ok("/v1/accounts/alice@example.com");
    assert_eq!(one["generation"], 3);
    let shown = format!(
        "{listed}{one}{}",
        s.cli(&["accounts", "list", "--json"]).ok()
    );
    for secret in [
        &newest,
        &text(&bob, "refresh_token"),
        &text(&bob, "access_token"),
    ] {
        assert!(!shown.contains(secret.as_str()), "a secret in a listing");
    }

    let metrics = agent.metrics();
    assert!(
        metrics.contains("authkeep_refreshes_total{outcome=\"success\",class=\"none\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("authkeep_accounts{state=\"active\"} 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE authkeep_schedule_lag_seconds histogram"));
    assert_eq!(agent.stop(), 0);
}

#[test]
fn the_default_socket_is_private_and_serves_without_a_key() {
    let idp = Idp::start(Config::default());
    let s = Setup::new(&idp, None);
    s.add_account(&idp, "alice", 3600);
    let log = s.home.path().join("agent.log");
    let mut child = s
        .command(&["agent"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let socket = s.home.path().join("agent.sock");
    wait_until("the socket", WAIT, || socket.exists());
    let mode = std::fs::metadata(&socket).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let answer = |request: &str| {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let answer =
        answer("GET /v1/accounts/alice/token HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("access_token"));
    // A second agent refuses the socket the first answers on.
    let second = s.cli(&["agent"]);
    assert_eq!(second.code(), 2, "{}", second.stderr());
    assert!(
        second.stderr().contains("another process is listening"),
        "{}",
        second.stderr()
    );
    signal(child.id(), "TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!socket.exists(), "the socket is removed at exit");
}

#[test]
fn tcp_needs_a_private_key_file_and_a_database_needs_a_key() {
    let idp = Idp::start(Config::default());
    let s = Setup::new(&idp, None);
    let run = s.cli(&["agent", "--listen", "127.0.0.1:1"]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("--api-key-file"), "{}", run.stderr());
    let run = s.cli(&[
        "agent",
        "--listen",
        "0.0.0.0:8080",
        "--api-key-file",
        &s.api_key_file,
    ]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("loopback only"), "{}", run.stderr());
    let loose = s.home.input("loose.key", API_KEY);
    let run = s.cli(&["agent", "--listen", "127.0.0.1:1", "--api-key-file", &loose]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("chmod 600"), "{}", run.stderr());
    assert!(!run.stderr().contains(API_KEY));
    let run = Run(s
        .command(&["accounts", "list"])
        .env_remove("AUTHKEEP_KEY_FILE")
        .output()
        .unwrap());
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("authkeep store keygen"),
        "{}",
        run.stderr()
    );
}

#[test]
fn sigterm_lets_a_refresh_in_flight_finish_and_saves_it() {
    let idp = Idp::start(Config::default());
    let s = Setup::new(&idp, None);
    // Due at once: one second left of a short life.
    let session = idp.session();
    let mut due = session.clone();
    due["expires_in"] = json!(1);
    let file = s.home.input("due.json", &due.to_string());
    s.cli(&[
        "accounts",
        "add",
        "alice",
        "--client",
        "dev",
        "--from-json",
        &file,
    ])
    .ok();
    idp.set_faults(Faults {
        latency_ms: 3000,
        ..Faults::default()
    });
    let agent = s.agent(&[]);
    wait_until("a refresh in flight", WAIT, || {
        agent.metrics().contains("authkeep_refreshes_in_flight 1\n")
    });
    assert_eq!(agent.stop(), 0, "exit 0 after the refresh is saved");
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 1);
    let account = s.account("alice");
    assert_eq!(account["generation"], 2, "{account}");
    assert_eq!(account["state"], "active");
    // The saved refresh token is the live one: the old one was consumed.
    assert!(!idp.is_active(&text(&session, "refresh_token")));
}

#[test]
fn an_application_and_the_scheduler_refresh_an_account_once() {
    let idp = Idp::start(Config::default());
    let s = Setup::new(&idp, None);
    let session = idp.session();
    let mut due = session.clone();
    due["expires_in"] = json!(1);
    let file = s.home.input("due.json", &due.to_string());
    s.cli(&[
        "accounts",
        "add",
        "alice",
        "--client",
        "dev",
        "--from-json",
        &file,
    ])
    .ok();
    idp.set_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    let agent = s.agent(&[]);
    wait_until("the scheduler's refresh in flight", WAIT, || {
        agent.metrics().contains("authkeep_refreshes_in_flight 1\n")
    });
    // The worker asks while the agent refreshes (for a token that stays
    // valid a minute, which the stored one does not): it shares that refresh.
    let token = text(
        &agent.ok("/v1/accounts/alice/token?min_valid=1m"),
        "access_token",
    );
    assert_ne!(token, text(&session, "access_token"));
    wait_until("the refresh to land", WAIT, || {
        agent.metrics().contains("authkeep_refreshes_in_flight 0\n")
    });
    assert_eq!(idp.refreshes(), 1, "one refresh for both");
    assert_eq!(agent.token("alice"), token);
    assert_eq!(s.account("alice")["generation"], 2);
    assert_eq!(agent.stop(), 0);
}

#[test]
fn an_outage_makes_nobody_need_a_login_and_a_revoked_grant_only_its_account() {
    let idp = Idp::start(Config::default());
    let s = Setup::new(&idp, None);
    let mut sessions = Vec::new();
    for id in ["a", "b", "c"] {
        sessions.push(s.add_account(&idp, id, 4));
    }
    let (hook, seen) = webhook_receiver();
    idp.fail_with(FaultKind::Status {
        status: 503,
        retry_after: None,
        body: None,
    });
    let agent = s.agent(&["--webhook", &hook]);
    wait_until("every account to fail", WAIT, || {
        s.accounts().iter().all(|a| a["state"] == "failing")
    });
    for account in s.accounts() {
        assert_eq!(account["needs_login"], false, "{account}");
        assert_eq!(account["last_error"]["class"], "transient");
        assert_eq!(account["last_error"]["code"], "temporarily_unavailable");
    }
    let (status, body) = agent.get("/v1/accounts/a/token").unwrap();
    assert!(status == 503 || status == 200, "{status} {body}");
    if status == 503 {
        assert_eq!(body["error"]["class"], "transient");
    }
    idp.clear_faults();
    wait_until("every account to recover", WAIT, || {
        s.accounts().iter().all(|a| a["state"] == "active")
    });
    wait_until("three recoveries posted", WAIT, || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "recovered")
            .count()
            == 3
    });

    // b's grant is revoked at the provider: only b needs a login.
    let b = s.account("b");
    let b_token = agent.token("b");
    assert!(idp.revoke_grant_of(&b_token));
    let before = b["generation"].as_u64().unwrap();
    wait_until("b to need a login", WAIT, || {
        s.account("b")["state"] == "needs_login"
    });
    assert!(s.account("b")["generation"].as_u64().unwrap() > before);
    assert_eq!(s.account("b")["last_error"]["code"], "invalid_grant");
    let (status, body) = agent.get("/v1/accounts/b/token").unwrap();
    assert_eq!(
        (status, &body["error"]["class"], &body["error"]["code"]),
        (409, &json!("session_dead"), &json!("invalid_grant")),
        "{body}"
    );
    wait_until("a and c to refresh again", WAIT, || {
        ["a", "c"]
            .iter()
            .all(|id| s.account(id)["generation"].as_u64() >= Some(3))
    });
    for id in ["a", "c"] {
        assert_eq!(s.account(id)["state"], "active");
    }
    wait_until("b's change posted", WAIT, || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|t| t["state"] == "needs_login")
    });
    let posted = seen.lock().unwrap().clone();
    let needs: Vec<_> = posted
        .iter()
        .filter(|t| t["state"] == "needs_login")
        .collect();
    assert_eq!(needs.len(), 1, "{posted:?}");
    assert_eq!(needs[0]["account"], "b");
    assert_eq!(needs[0]["class"], "session_dead");
    assert!(needs[0]["at"].is_string());
    let all = serde_json::to_string(&posted).unwrap();
    for session in &sessions {
        assert!(
            !all.contains(&text(session, "refresh_token")),
            "a secret in a webhook"
        );
    }
    let metrics = agent.metrics();
    assert!(
        metrics.contains("authkeep_accounts{state=\"needs_login\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("class=\"transient\""), "{metrics}");
    let log = agent.log();
    assert_eq!(agent.stop(), 0, "{log}");
}

/// A database of its own on the test PostgreSQL server.
pub(crate) fn postgres_database() -> String {
    let Ok(base) = std::env::var("AUTHKEEP_TEST_POSTGRES_URL") else {
        panic!(
            "this test needs the PostgreSQL server that scripts/with-postgres.sh starts \
             (AUTHKEEP_TEST_POSTGRES_URL is not set); run ./scripts/test.sh"
        );
    };
    let name = format!("agent_{:016x}", fastrand_u64());
    psql(&base, &format!("CREATE DATABASE {name}"));
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish()
}

#[test]
fn two_agents_on_postgres_share_due_accounts_and_survive_one_killed() {
    let idp = Idp::start(Config::default());
    let s = Setup::new(&idp, Some(postgres_database()));
    const ACCOUNTS: usize = 12;
    let ids: Vec<String> = (0..ACCOUNTS)
        .map(|i| format!("user{i}@example.com"))
        .collect();
    for id in &ids {
        s.add_account(&idp, id, 8);
    }
    idp.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let short = ["--lease-ttl", "2s", "--concurrency", "2"];
    let first = s.agent(&short);
    let mut second = s.agent(&short);
    // Kill the second mid-run, while it refreshes.
    wait_until("the second agent mid-refresh", WAIT, || {
        second
            .metrics()
            .contains("authkeep_refreshes_in_flight 1\n")
            || second
                .metrics()
                .contains("authkeep_refreshes_in_flight 2\n")
    });
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    // Two full cycles: every account refreshed at least twice, by whoever.
    wait_until(
        "two cycles of every account",
        Duration::from_secs(120),
        || {
            s.accounts()
                .iter()
                .all(|a| a["generation"].as_u64() >= Some(3))
        },
    );
    let accounts = s.accounts();
    assert_eq!(accounts.len(), ACCOUNTS);
    for account in &accounts {
        assert_eq!(account["state"], "active", "{account}");
    }
    let counters = idp.counters();
    // Each successful refresh made exactly one generation; a refresh whose
    // answer the killed agent never saved leaves one extra "ok" at most.
    let generations: u64 = accounts
        .iter()
        .map(|a| a["generation"].as_u64().unwrap() - 1)
        .sum();
    let ok = counters.outcome("refresh_token", "ok");
    assert!(
        ok >= generations && ok <= generations + 2,
        "ok {ok}, generations {generations}"
    );
    assert_eq!(
        counters.grants_revoked, 0,
        "no refresh token was presented twice"
    );
    assert_eq!(first.stop(), 0);
}

/// A store that fails the scheduler's claims (a statement the database
/// refuses) is logged and counted, changes no account, and once it answers
/// again the due account is refreshed, once.
#[test]
fn the_scheduler_waits_out_a_store_that_refuses_its_claims() {
    let idp = Idp::start(Config::default());
    let database = postgres_database();
    let s = Setup::new(&idp, Some(database.clone()));
    // Due in about 4 seconds (half its life, less the jitter).
    s.add_account(&idp, "alice", 10);
    let agent = s.agent(&[]);
    psql(
        &database,
        "CREATE FUNCTION refuse_claim() RETURNS trigger LANGUAGE plpgsql \
        AS $$ BEGIN RAISE EXCEPTION 'claims are refused'; END $$; \
        CREATE TRIGGER refuse_claim BEFORE UPDATE ON authkeep_accounts FOR EACH ROW \
        WHEN (NEW.lease_owner IS NOT NULL AND OLD.lease_owner IS DISTINCT FROM NEW.lease_owner) \
        EXECUTE FUNCTION refuse_claim()",
    );
    wait_until("a refused claim", WAIT, || {
        agent.log().contains("cannot claim due accounts")
    });
    assert_eq!(idp.refreshes(), 0, "refused before the account came due");
    let errors = agent
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix("authkeep_scheduler_errors_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(errors >= Some(1), "{errors:?}");
    assert_eq!(s.account("alice")["state"], "active");
    psql(
        &database,
        "DROP TRIGGER refuse_claim ON authkeep_accounts; DROP FUNCTION refuse_claim()",
    );
    wait_until("the refresh after", WAIT, || {
        s.account("alice")["generation"] == 2
    });
    assert_eq!(idp.refreshes(), 1);
    assert_eq!(s.account("alice")["state"], "active");
    assert_eq!(agent.stop(), 0);
}

fn psql(database: &str, sql: &str) {
    let status = std::process::Command::new("psql")
        .args([database, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .status()
        .unwrap();
    assert!(status.success(), "psql: {sql}");
}

/// The status page's browser check (`crates/authkeep-agent/tests/page`), its
/// packages installed by `scripts/test.sh`.
fn page_check() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../authkeep-agent/tests/page");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "the status page test drives Chromium with playwright-core: run scripts/test.sh, or `npm ci --prefix {}`",
        dir.display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "the status page test needs Debian's chromium (scripts/test.sh installs it)"
    );
    dir.join("check.mjs")
}

#[test]
fn the_status_page_in_a_real_browser_asks_for_the_key_once_and_filters() {
    let check = page_check();
    let idp = Idp::start(Config::default());
    let s = Setup::new(&idp, None);
    let alice = s.add_account(&idp, "alice", 3600);
    let odd = s.add_account(&idp, "team <x> & co", 3600);
    let bob = s.add_account(&idp, "bob", 4);
    assert!(idp.revoke_grant_of(&text(&bob, "access_token")));
    let agent = s.agent(&[]);
    wait_until("bob to need a login", WAIT, || {
        s.account("bob")["state"] == "needs_login"
    });

    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let output = std::process::Command::new("node")
        .arg(&check)
        .arg(format!("{}/", agent.base))
        .arg(&screenshot)
        .env("AUTHKEEP_PAGE_KEY", API_KEY)
        .env("AUTHKEEP_PAGE_QUERY", "ali")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser check failed: {stderr}"
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();

    // The page asks for the key (401), refuses a wrong one, takes the right one.
    assert_eq!(seen["form"], json!({"status": 401, "asks_key": true}));
    assert_eq!(seen["wrong"], json!({"error_shown": true, "table": false}));
    let rows = |name: &str| -> Vec<(String, String)> {
        seen[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (text(r, "account"), text(r, "state")))
            .collect()
    };
    let row = |id: &str, state: &str| (id.to_owned(), state.to_owned());
    assert_eq!(
        rows("all"),
        [
            row("alice", "active"),
            row("bob", "needs_login"),
            row("team <x> & co", "active")
        ]
    );
    assert_eq!(rows("needs_login"), [row("bob", "needs_login")]);
    assert_eq!(rows("by_id"), [row("alice", "active")]);
    // One cookie, out of reach of scripts, never sent cross-site, not the key;
    // it opens the page again but not the API.
    assert_eq!(
        seen["cookies"],
        json!([{"name": "authkeep_page", "httpOnly": true, "sameSite": "Strict", "is_key": false}])
    );
    assert_eq!(seen["cookie_visible_to_script"], "");
    assert_eq!(seen["api_with_cookie"], 401);
    assert_eq!(seen["after_reload"], json!({"status": 200, "table": true}));
    // No secret on the page.
    let html = text(&seen, "html");
    for session in [&alice, &odd, &bob] {
        for field in ["access_token", "refresh_token"] {
            assert!(
                !html.contains(&text(session, field)),
                "a {field} on the page"
            );
        }
    }
    assert!(!html.contains(API_KEY), "the API key on the page");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);
    assert_eq!(agent.stop(), 0);
}
