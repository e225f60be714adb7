//! The reqwest middleware against a resource server in the test and the
//! development identity provider: the token goes only to configured origins,
//! never across a redirect to another origin; a rejection (401, or 403 where
//! configured) renews the token once and retries once, concurrent rejections
//! share one refresh, and whatever cannot be renewed is passed through with the
//! reason.
//!
//! Tokens are compared, never printed.

#![cfg(feature = "middleware")]

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use authkeep::middleware::{Bearer, NotRenewed};
use authkeep::{Client, Demand, Event, FileStore, Keeper, SessionKey, TokenResponse};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, FaultKind, Faults, SessionRequest};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use reqwest_middleware::ClientWithMiddleware;

const REFRESH: &str = "refresh_token";
/// Longest wait for the requests a test holds at the resource server.
const GATE_BOUND: Duration = Duration::from_secs(20);

type Hook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What the resource server saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    /// The bearer token, if the request carried one.
    token: Option<String>,
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
    /// Where `/redirect` points.
    redirect_to: Option<String>,
    /// Rejections wait here until this many have arrived.
    gate: Option<Arc<tokio::sync::Barrier>>,
    /// Runs once, before the first rejection is answered.
    before_rejecting: Option<Hook>,
}

#[derive(Default)]
struct ApiState {
    plan: Mutex<Plan>,
    seen: Mutex<Vec<Seen>>,
}

/// A resource server: `/data` answers 200 to an accepted bearer token and 401
/// (or 403) otherwise; `/redirect` answers 302 to wherever it is told.
struct Api {
    addr: SocketAddr,
    state: Arc<ApiState>,
}

impl Api {
    async fn start() -> Self {
        let state = Arc::new(ApiState::default());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { addr, state }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.state
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn reject(&self, token: &str) {
        self.plan().rejected.insert(token.to_owned());
    }

    fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
    state
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Seen {
            path: uri.path().to_owned(),
            token: token.clone(),
        });
    if uri.path() == "/redirect" {
        let to = state
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .redirect_to
            .clone()
            .unwrap();
        return (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    }
    let (rejects, status, gate, hook) = {
        let mut plan = state.plan.lock().unwrap_or_else(PoisonError::into_inner);
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
        return (StatusCode::OK, format!("{method} {} ok", body.len())).into_response();
    }
    if let Some(hook) = hook {
        hook().await;
    }
    if let Some(gate) = gate {
        tokio::time::timeout(GATE_BOUND, gate.wait())
            .await
            .expect("every held request arrived");
    }
    (status, [(header::WWW_AUTHENTICATE, "Bearer")], "denied").into_response()
}

struct Setup {
    idp: DevIdp,
    _dir: tempfile::TempDir,
    keeper: Keeper<FileStore>,
    events: Arc<Mutex<Vec<Event>>>,
    sessions: std::path::PathBuf,
}

fn key() -> SessionKey {
    SessionKey::new("default").unwrap()
}

impl Setup {
    /// A provider, and a keeper over a file store that holds a fresh session
    /// (an hour left: no refresh due).
    async fn logged_in() -> Self {
        let setup = Self::without_session().await;
        let session = setup.idp.create_session(&SessionRequest::default());
        let response = TokenResponse::from_fields(session.as_object().unwrap());
        setup
            .keeper
            .import_login(
                &key(),
                Client::new(setup.idp.issuer(), DEFAULT_CLIENT_ID),
                response,
            )
            .await
            .unwrap();
        setup.events.lock().unwrap().clear();
        setup
    }

    async fn without_session() -> Self {
        let idp = DevIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), Config::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sessions = dir.path().join("sessions");
        let events = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&events);
        let keeper = Keeper::builder(FileStore::new(&sessions))
            .on_event(move |event| recorded.lock().unwrap().push(event.clone()))
            .build();
        Self {
            idp,
            _dir: dir,
            keeper,
            events,
            sessions,
        }
    }

    /// Another keeper on the same store, as another process would have.
    fn other_keeper(&self) -> Keeper<FileStore> {
        Keeper::builder(FileStore::new(&self.sessions)).build()
    }

    async fn stored_token(&self) -> String {
        self.keeper
            .session(&key())
            .await
            .unwrap()
            .unwrap()
            .record
            .tokens
            .unwrap()
            .access_token
            .expose_secret()
            .to_owned()
    }

    fn refreshes(&self) -> u64 {
        self.idp.counters().token_requests_for(REFRESH)
    }

    fn refreshing_events(&self) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Refreshing { .. }))
            .count()
    }

    fn client(&self, bearer: Bearer<FileStore>) -> ClientWithMiddleware {
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(bearer)
            .build()
    }

    fn bearer(&self) -> Bearer<FileStore> {
        Bearer::new(self.keeper.clone(), key())
    }
}

fn tokens(seen: &[Seen]) -> Vec<Option<String>> {
    seen.iter().map(|s| s.token.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_to_the_stored_token_refreshes_once_and_retries_once() {
    let setup = Setup::logged_in().await;
    let api = Api::start().await;
    let old = setup.stored_token().await;
    api.reject(&old);
    let client = setup.client(setup.bearer().origin(&api.origin()).unwrap());

    let response = client.get(api.url("/data")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "GET 0 ok");
    let new = setup.stored_token().await;
    assert!(new != old, "the session was refreshed");
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "one request, one retry");
    assert!(
        tokens(&seen) == [Some(old), Some(new)],
        "the rejected token, then the new one"
    );
    assert_eq!(setup.refreshes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_to_an_older_token_retries_with_the_stored_one_without_refreshing() {
    let setup = Setup::logged_in().await;
    let api = Api::start().await;
    let old = setup.stored_token().await;
    api.reject(&old);
    // While the request with the old token is at the server, another writer
    // refreshes the session.
    let other = setup.other_keeper();
    api.plan().before_rejecting = Some(Box::new(move || {
        Box::pin(async move {
            other.token(&key(), Demand::new().force()).await.unwrap();
        })
    }));
    let client = setup.client(setup.bearer().origin(&api.origin()).unwrap());

    let response = client.get(api.url("/data")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(setup.refreshes(), 1, "only the other writer's refresh");
    assert_eq!(setup.refreshing_events(), 0, "this keeper did not refresh");
    let new = setup.stored_token().await;
    assert!(tokens(&api.seen()) == [Some(old), Some(new)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_renews_the_token_only_where_configured() {
    let setup = Setup::logged_in().await;
    let api = Api::start().await;
    let old = setup.stored_token().await;
    api.reject(&old);
    api.plan().forbidden = true;

    let plain = setup.client(setup.bearer().origin(&api.origin()).unwrap());
    let response = plain.get(api.url("/data")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "passed through");
    assert_eq!(api.seen().len(), 1, "not retried");
    assert_eq!(setup.refreshes(), 0);

    let configured = setup.client(setup.bearer().refresh_on_403(&api.origin()).unwrap());
    let response = configured.get(api.url("/data")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.seen().len(), 3, "one more request and its retry");
    assert_eq!(setup.refreshes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_never_carries_the_token() {
    let setup = Setup::logged_in().await;
    let api = Api::start().await;
    let elsewhere = Api::start().await;
    let token = setup.stored_token().await;
    let client = setup.client(setup.bearer().origin(&api.origin()).unwrap());

    // Within the origin, the redirect is followed with the token.
    api.plan().redirect_to = Some(api.url("/data"));
    let response = client.get(api.url("/redirect")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert!(tokens(&seen) == [Some(token.clone()), Some(token.clone())]);

    // To another origin, it is followed without the token, and that origin's
    // 401 is not taken for a rejection of the token.
    api.plan().redirect_to = Some(elsewhere.url("/data"));
    let response = client.get(api.url("/redirect")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let there = elsewhere.seen();
    assert_eq!(there.len(), 1, "followed once, not retried");
    assert_eq!(there[0].path, "/data");
    assert!(there[0].token.is_none(), "no Authorization header");
    assert_eq!(api.seen().len(), 3);
    assert_eq!(setup.refreshes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_that_persists_is_passed_through_after_one_refresh_and_one_retry() {
    let setup = Setup::logged_in().await;
    let api = Api::start().await;
    api.plan().reject_all = true;
    let client = setup.client(setup.bearer().origin(&api.origin()).unwrap());

    let response = client.get(api.url("/data")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.extensions().get::<NotRenewed>().is_none(),
        "the token was renewed; the server still refused it"
    );
    assert_eq!(response.text().await.unwrap(), "denied");
    assert_eq!(api.seen().len(), 2);
    assert_eq!(setup.refreshes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_401s_for_one_session_cause_one_refresh() {
    const TASKS: usize = 8;
    let setup = Setup::logged_in().await;
    let api = Api::start().await;
    let old = setup.stored_token().await;
    api.reject(&old);
    // Every rejection is held until all of them have arrived, so that every
    // task asks the keeper for a new token while the store still holds the old.
    api.plan().gate = Some(Arc::new(tokio::sync::Barrier::new(TASKS)));
    let client = setup.client(setup.bearer().origin(&api.origin()).unwrap());

    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let client = client.clone();
            let url = api.url("/data");
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(setup.refreshes(), 1);
    let seen = api.seen();
    assert_eq!(seen.len(), 2 * TASKS);
    let new = setup.stored_token().await;
    let retried_with_new = seen
        .iter()
        .filter(|s| s.token.as_deref() == Some(new.as_str()))
        .count();
    assert_eq!(retried_with_new, TASKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_unconfigured_origin_carries_no_token() {
    let setup = Setup::logged_in().await;
    let api = Api::start().await;
    let configured = Api::start().await;
    let client = setup.client(setup.bearer().origin(&configured.origin()).unwrap());

    let response = client.get(api.url("/data")).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "passed through"
    );
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].token.is_none());
    assert_eq!(setup.refreshes(), 0);
    assert!(
        setup.events.lock().unwrap().is_empty(),
        "no token was asked for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_request_is_not_sent_and_the_error_is_typed() {
    let setup = Setup::without_session().await;
    let api = Api::start().await;
    let client = setup.client(setup.bearer().origin(&api.origin()).unwrap());

    let error = client.get(api.url("/data")).send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(error) = error else {
        panic!("a middleware error: {error}");
    };
    let error = error.downcast_ref::<authkeep::Error>().unwrap();
    assert!(error.is_login_required(), "{error}");
    assert!(api.seen().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_the_keeper_cannot_answer_is_passed_through_with_the_reason() {
    let setup = Setup::logged_in().await;
    let api = Api::start().await;
    api.reject(&setup.stored_token().await);
    setup.idp.set_faults(Faults {
        kind: Some(FaultKind::Status {
            status: 503,
            retry_after: None,
            body: None,
        }),
        ..Faults::default()
    });
    let client = setup.client(setup.bearer().origin(&api.origin()).unwrap());

    let response = client.get(api.url("/data")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let NotRenewed(error) = response.extensions().get::<NotRenewed>().unwrap().clone();
    assert!(error.is_transient(), "{error}");
    assert_eq!(api.seen().len(), 1, "not retried");
    assert_eq!(setup.refreshes(), 1, "one attempt");
    let failed = setup
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::RefreshFailed { .. }));
    assert!(failed, "the keeper reported the failure as an event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_is_not_retried_but_the_token_is_renewed() {
    let setup = Setup::logged_in().await;
    let api = Api::start().await;
    let old = setup.stored_token().await;
    api.reject(&old);
    let client = setup.client(setup.bearer().origin(&api.origin()).unwrap());

    // A body of unknown origin, as a stream: reqwest cannot clone it.
    let body = reqwest::Body::wrap(String::from("streamed"));
    let response = client
        .post(api.url("/data"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "passed through"
    );
    assert_eq!(api.seen().len(), 1, "not retried");
    assert_eq!(setup.refreshes(), 1);
    assert!(
        setup.stored_token().await != old,
        "the next request gets the new token"
    );

    let response = client
        .post(api.url("/data"))
        .body("again")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "POST 5 ok");
}
