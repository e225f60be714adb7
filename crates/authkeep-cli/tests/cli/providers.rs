//! How real providers answer a refresh, as a corpus (`tests/providers/*.toml`,
//! each case with its source): a server in the test replays each answer byte
//! for byte (status, headers, body) to a real `authkeep token`, whose token has
//! expired, and the test checks what the user is left with: the class
//! recorded, the exit code, whether the tokens were kept, removed or replaced,
//! and what was shown. The observed table is a snapshot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use authkeep_devidp::{Config, FaultKind, Flavor};

use crate::faults::stable;
use crate::harness::{Home, Idp, text};

const PROFILE: &str = "default";

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Clone, Deserialize)]
struct Case {
    name: String,
    status: u16,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    body: String,
    expect: Expect,
}

#[derive(Clone, Deserialize)]
struct Expect {
    /// `ok` or the failure class recorded.
    class: String,
    exit: i32,
    /// `kept`, `removed`, `rotated` (new refresh token) or `refreshed` (new
    /// access token, the refresh token kept).
    tokens: String,
    /// `set` or `none`: the refresh token's expiry afterwards.
    refresh_expires: Option<String>,
    /// `set` or `none`: the access token's expiry afterwards.
    expires: Option<String>,
    token_type: Option<String>,
    /// A piece of the one line on stderr.
    shown: Option<String>,
    /// Requests a second `authkeep token` sends right after.
    again: Option<u64>,
}

/// The answer the replay server gives, and how many it gave.
#[derive(Default)]
struct Replay {
    answer: Mutex<Option<Case>>,
    requests: AtomicU64,
}

async fn token(
    axum::extract::State(replay): axum::extract::State<Arc<Replay>>,
    _body: Bytes,
) -> Response {
    replay.requests.fetch_add(1, Ordering::SeqCst);
    let case = replay
        .answer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some(case) = case else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = Response::new(axum::body::Body::from(case.body));
    *response.status_mut() = StatusCode::from_u16(case.status).unwrap();
    for (name, value) in &case.headers {
        response.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    response
}

/// A provider whose discovery names a token endpoint that replays `answer`.
struct Server {
    issuer: String,
    replay: Arc<Replay>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(SocketAddr::from((
                [127, 0, 0, 1],
                0,
            ))))
            .unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let replay = Arc::new(Replay::default());
        let document = serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
        });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(document) }),
            )
            .route("/token", axum::routing::post(token))
            .with_state(Arc::clone(&replay));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            issuer,
            replay,
            _runtime: runtime,
        }
    }

    fn answer(&self, case: &Case) {
        *self
            .replay
            .answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(case.clone());
    }

    fn requests(&self) -> u64 {
        self.replay.requests.load(Ordering::SeqCst)
    }
}

/// What one case left the user with.
struct Observed {
    class: String,
    exit: i32,
    tokens: String,
    refresh_expires: String,
    expires: String,
    token_type: String,
    stderr: String,
    again: u64,
}

fn run_case(server: &Server, case: &Case) -> Observed {
    let home = Home::new();
    let session = serde_json::json!({
        "access_token": "at-old", "refresh_token": "rt-old", "token_type": "Bearer", "expires_in": 3600,
    });
    home.login(PROFILE, &server.issuer, &session).ok();
    home.age_record(PROFILE, -10, 3600);
    server.answer(case);
    let run = home.run(&["token"]);
    let after = home.record(PROFILE);
    let requests = server.requests();
    home.run(&["token"]);
    let again = server.requests() - requests;
    let text = |field: &str| after.get(field).and_then(Value::as_str).map(str::to_owned);
    let tokens = match (text("access_token"), text("refresh_token")) {
        (None, None) => "removed",
        (Some(at), Some(rt)) if at == "at-old" && rt == "rt-old" => "kept",
        (_, Some(rt)) if rt == "rt-old" => "refreshed",
        _ => "rotated",
    };
    let set = |field: &str| if text(field).is_some() { "set" } else { "none" };
    Observed {
        class: if run.code() == 0 {
            "ok".into()
        } else {
            after["health"]["last_error"]["class"]
                .as_str()
                .unwrap_or("-")
                .to_owned()
        },
        exit: run.code(),
        tokens: tokens.into(),
        refresh_expires: set("refresh_expires_at").into(),
        expires: set("expires_at").into(),
        token_type: text("token_type").unwrap_or_default(),
        stderr: run.stderr().trim_end().to_owned(),
        again,
    }
}

/// The cases of one corpus file, by provider.
fn corpus() -> Vec<(String, Case)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/providers");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let provider = file.file_stem().unwrap().to_string_lossy().into_owned();
        let corpus: Corpus = toml::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        cases.extend(corpus.case.into_iter().map(|case| (provider.clone(), case)));
    }
    cases
}

#[test]
fn real_providers_answers_leave_the_user_where_they_should() {
    let server = Server::start();
    let mut table = String::from(
        "| provider | case | class | exit | tokens | refresh expiry | what the user sees |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut problems = Vec::new();
    let cases = corpus();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (provider, case) in &cases {
        let seen = run_case(&server, case);
        let want = &case.expect;
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(format!("{provider} / {}: {what}", case.name));
            }
        };
        check(
            seen.class == want.class,
            format!("class {} (want {})", seen.class, want.class),
        );
        check(
            seen.exit == want.exit,
            format!("exit {} (want {}): {}", seen.exit, want.exit, seen.stderr),
        );
        check(
            seen.tokens == want.tokens,
            format!("tokens {} (want {})", seen.tokens, want.tokens),
        );
        if let Some(want) = &want.refresh_expires {
            check(
                &seen.refresh_expires == want,
                format!("refresh expiry {}", seen.refresh_expires),
            );
        }
        if let Some(want) = &want.expires {
            check(&seen.expires == want, format!("expiry {}", seen.expires));
        }
        if let Some(want) = &want.token_type {
            check(
                &seen.token_type == want,
                format!("token_type {}", seen.token_type),
            );
        }
        if let Some(want) = &want.shown {
            check(
                seen.stderr.contains(want.as_str()),
                format!("stderr lacks {want:?}: {}", seen.stderr),
            );
        }
        if let Some(want) = want.again {
            check(
                seen.again == want,
                format!("a second call sent {} requests", seen.again),
            );
        }
        check(
            seen.exit == 0 || seen.stderr.lines().count() == 1,
            format!("not one line: {}", seen.stderr),
        );
        table.push_str(&format!(
            "| {provider} | {} | {} | {} | {} | {} | {} |\n",
            case.name,
            seen.class,
            seen.exit,
            seen.tokens,
            seen.refresh_expires,
            if seen.stderr.is_empty() {
                "-".into()
            } else {
                seen.stderr.replace('|', "\\|")
            }
        ));
    }
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
    stable().bind(|| insta::assert_snapshot!("providers", table));
}

/// How a flavor's provider asks for interaction, injected as a fault: GitHub
/// has no such answer.
fn interaction_answer(flavor: Flavor) -> Option<FaultKind> {
    let (error, description) = match flavor {
        Flavor::GitHub => return None,
        Flavor::Entra => (
            "invalid_grant",
            "AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource. Trace ID: 1 Correlation ID: 2 Timestamp: 2026-06-02 12:00:00Z",
        ),
        Flavor::Google => ("invalid_grant", "reauth related error (invalid_rapt)"),
        _ => ("interaction_required", "The user must authenticate again."),
    };
    Some(FaultKind::OAuthError {
        status: 400,
        error: error.into(),
        description: Some(description.into()),
    })
}

#[test]
fn each_flavor_end_to_end_succeeds_ends_and_asks_for_interaction() {
    let mut transcript = String::new();
    for &flavor in Flavor::ALL {
        let idp = Idp::start(Config::for_flavor(flavor));
        let name = flavor.name();
        transcript.push_str(&format!("## {name}\n"));

        // A refresh that succeeds.
        let home = Home::new();
        let session = idp.session();
        home.login(PROFILE, idp.issuer(), &session).ok();
        home.age_record(PROFILE, -10, 3600);
        let run = home.run(&["token"]);
        assert_eq!(run.code(), 0, "{name}: {}", run.stderr());
        assert_ne!(
            run.stdout().trim(),
            text(&session, "access_token"),
            "{name}: refreshed"
        );
        assert!(idp.is_active(run.stdout().trim()), "{name}");
        transcript.push_str("refresh: exit 0, a new token\n");

        // One that needs interaction: kept, and a login asked for.
        if let Some(fault) = interaction_answer(flavor) {
            home.age_record(PROFILE, -10, 3600);
            idp.fail_with(fault);
            let run = home.run(&["token"]);
            idp.clear_faults();
            assert_eq!(run.code(), 3, "{name}: {}", run.stderr());
            assert_eq!(
                home.record(PROFILE)["health"]["last_error"]["class"],
                "interaction_required"
            );
            assert!(
                home.record(PROFILE).get("refresh_token").is_some(),
                "{name}: kept"
            );
            transcript.push_str(&format!("interaction: exit 3\n{}", run.stderr()));
        } else {
            transcript.push_str("interaction: (the provider has no such answer)\n");
        }

        // One that ends the session: the grant is revoked at the provider.
        let gone = Home::new();
        let session = idp.session();
        gone.login(PROFILE, idp.issuer(), &session).ok();
        gone.age_record(PROFILE, -10, 3600);
        assert!(idp.revoke_grant_of(&text(&session, "refresh_token")));
        let run = gone.run(&["token"]);
        assert_eq!(run.code(), 3, "{name}: {}", run.stderr());
        assert_eq!(run.stderr_lines().len(), 1, "{name}: {}", run.stderr());
        assert!(
            gone.record(PROFILE).get("refresh_token").is_none(),
            "{name}: removed"
        );
        transcript.push_str(&format!("ended: exit 3\n{}\n", run.stderr()));
    }
    stable().bind(|| insta::assert_snapshot!("flavors", transcript));
}
