//! The token API: the router, the access check, and the JSON of tokens,
//! accounts and errors.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/accounts/{id}/token[?min_valid=10m]` | `{"access_token","token_type","expires_at"}`, refreshed first if due (coalesced with the scheduler) |
//! | `POST /v1/accounts/{id}/rejected` | body `{"access_token"}`: a server rejected it; one refresh only if it is still the stored token; answers like the token route |
//! | `GET /v1/accounts[?state=&client=&after=&limit=]` | overviews, no secrets |
//! | `GET /v1/accounts/{id}` | one overview |
//! | `PUT /v1/accounts/{id}` | body `{"client": NAME, <token response fields>}`: stores a login |
//! | `GET /healthz`, `GET /metrics` | liveness (the store answers), Prometheus text |
//!
//! Every route goes through [`Access::allows`] first: on a unix socket the
//! socket's mode (0600) is the check; on TCP every request carries
//! `Authorization: Bearer KEY`. The status page extends that one function
//! (a cookie for its own reads) rather than adding a second check.
//! Unauthenticated requests get 401, malformed ones 400, unknown accounts
//! 404, each as `{"error":{"class","message"}}`, and change nothing. No
//! answer carries a refresh token, a client secret or a provider's text:
//! failures are a class and the provider's error code.

use std::sync::Arc;

use authkeep::{AccessToken, Demand, Error, FailureClass, LoginReason, SessionKey, Token};
use authkeep_db::{AccountFilter, AccountState, AccountSummary, DbError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::duration::parse_duration;
use crate::listen::ApiKey;
use crate::page::PageCookie;
use crate::state::AgentState;

/// Who may call the API.
#[derive(Clone, Debug, Default)]
pub struct Access {
    key: Option<(ApiKey, Arc<PageCookie>)>,
}

impl Access {
    /// Anyone who can reach the listener (a 0600 unix socket: its owner).
    pub fn socket_owner() -> Self {
        Self { key: None }
    }

    /// Requests that carry `Authorization: Bearer KEY`; the status page, the
    /// cookie its key form hands out.
    pub fn bearer(key: ApiKey) -> Self {
        let cookie = PageCookie::new(&key, Timestamp::now(), std::process::id());
        Self {
            key: Some((key, Arc::new(cookie))),
        }
    }

    /// The key requests must carry, if any.
    pub fn key(&self) -> Option<&ApiKey> {
        self.key.as_ref().map(|(key, _)| key)
    }

    /// The status page's cookie, where requests need a key.
    pub(crate) fn page_cookie(&self) -> Option<&PageCookie> {
        self.key.as_ref().map(|(_, cookie)| cookie.as_ref())
    }

    /// Whether `request` may be served: the one access check of every route.
    /// The page's cookie admits the page itself (`GET /`) and nothing else.
    pub fn allows(&self, request: &Request) -> bool {
        let Some((key, cookie)) = &self.key else {
            return true;
        };
        if bearer(request.headers()).is_some_and(|presented| key.matches(presented)) {
            return true;
        }
        is_page(request)
            && request
                .headers()
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| cookie.admits(v))
    }
}

/// `GET /`: the status page.
fn is_page(request: &Request) -> bool {
    request.method() == axum::http::Method::GET && request.uri().path() == "/"
}

/// Whether a request that may not be served still gets an answer of its
/// route: the page (which then shows the key form) and the form's post.
fn is_page_entry(request: &Request) -> bool {
    is_page(request)
        || (request.method() == axum::http::Method::POST && request.uri().path() == "/login")
}

/// Whether the access check let the request through (a request extension:
/// the page and its form see requests that were not).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admitted(pub bool);

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The API's routes over `state`, every one behind [`Access::allows`].
pub fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/", get(crate::page::show))
        .route("/login", axum::routing::post(crate::page::login))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/accounts", get(list))
        .route("/v1/accounts/{id}", get(account).put(put_login))
        .route("/v1/accounts/{id}/token", get(token))
        .route("/v1/accounts/{id}/rejected", axum::routing::post(rejected))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            check_access,
        ))
        .with_state(state)
}

async fn check_access(
    State(state): State<Arc<AgentState>>,
    request: Request,
    next: Next,
) -> Response {
    let admitted = state.access.allows(&request);
    if admitted || is_page_entry(&request) {
        let mut request = request;
        request.extensions_mut().insert(Admitted(admitted));
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this API needs an Authorization: Bearer header with the agent's API key",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// An error answer: `{"error":{"class","message"}}`, never a secret.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    class: &'static str,
    /// The provider's error code, when the class comes from its answer.
    code: Option<String>,
    message: String,
    retry_after: Option<i64>,
}

impl ApiError {
    fn new(status: StatusCode, class: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            class,
            code: None,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn no_account(key: &SessionKey) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no account {:?}", key.as_str()),
        )
    }

    pub(crate) fn store(error: &DbError) -> Self {
        if error.is_transient() {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store is busy or unreachable; try again",
            )
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "the store failed; the agent's log says why",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"class": self.class, "message": self.message});
        if let Some(code) = self.code {
            error["code"] = json!(code);
        }
        let body = json!({ "error": error });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// What a keeper error amounts to for another party: the status, the class
/// and the provider's error code (or `http_NNN`), never its text.
pub(crate) fn failure_parts(error: &Error) -> (StatusCode, &'static str, Option<String>) {
    match error {
        Error::LoginRequired { reason, detail, .. } => {
            // The provider's code, as the account's health records it.
            let code = detail.as_deref().and_then(authkeep_db::error_code);
            match reason {
                LoginReason::NoSession => (StatusCode::NOT_FOUND, "not_found", None),
                LoginReason::SessionEnded => (StatusCode::CONFLICT, "session_dead", code),
                LoginReason::InteractionRequired => {
                    (StatusCode::CONFLICT, "interaction_required", code)
                }
                _ => (StatusCode::CONFLICT, "login_required", None),
            }
        }
        Error::RefreshFailed { class, failure, .. } => {
            let code = failure
                .code
                .clone()
                .or_else(|| failure.status.map(|s| format!("http_{s}")));
            let (status, class) = match class {
                FailureClass::InteractionRequired => (StatusCode::CONFLICT, "interaction_required"),
                FailureClass::Misconfiguration => (StatusCode::BAD_GATEWAY, "misconfiguration"),
                FailureClass::Transient | FailureClass::SessionDead => {
                    (StatusCode::SERVICE_UNAVAILABLE, "transient")
                }
            };
            (status, class, code)
        }
        Error::RetryAfter { .. } => (StatusCode::SERVICE_UNAVAILABLE, "transient", None),
        Error::Store(e) if e.is_transient() => {
            (StatusCode::SERVICE_UNAVAILABLE, e.class_name(), None)
        }
        Error::Store(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.class_name(), None),
        Error::NotSaved { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "not_saved", None),
        other => (StatusCode::BAD_GATEWAY, other.class_name(), None),
    }
}

fn keeper_error(key: &SessionKey, error: &Error, now: Timestamp) -> ApiError {
    let (status, class, code) = failure_parts(error);
    let id = key.as_str();
    let message = match class {
        "not_found" => format!("no account {id:?}"),
        "session_dead" => {
            format!("account {id:?} needs a new login: the provider ended its session")
        }
        "interaction_required" => {
            format!("account {id:?} needs a new login: the provider asks the user to sign in again")
        }
        "login_required" => format!("account {id:?} needs a new login"),
        "not_saved" => format!(
            "account {id:?} was refreshed but the result could not be saved; no token was handed out"
        ),
        _ => match &code {
            Some(code) => format!("no token for account {id:?} now ({class}, {code})"),
            None => format!("no token for account {id:?} now ({class})"),
        },
    };
    let mut api = ApiError::new(status, class, message);
    api.code = code;
    if let Error::RetryAfter { until, .. } = error {
        api.retry_after = Some(until.duration_since(now).as_secs());
    }
    if let Error::RefreshFailed { failure, .. } = error
        && let Some(until) = failure.retry_after
    {
        api.retry_after = Some(until.duration_since(now).as_secs());
    }
    api
}

fn account_key(path: Result<Path<String>, PathRejection>) -> Result<SessionKey, ApiError> {
    let Path(id) =
        path.map_err(|_| ApiError::bad_request("the account id is not valid in a URL"))?;
    SessionKey::account(&id).map_err(|_| {
        ApiError::bad_request(
            "invalid account id: 1 to 256 printable ASCII characters, not / (percent-encode it in URLs)",
        )
    })
}

/// The query's pairs; a name not in `allowed`, or given twice, is refused.
fn query(raw: Option<String>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let raw = raw.unwrap_or_default();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {:?} (known: {})",
                name.chars().take(40).collect::<String>(),
                allowed.join(", ")
            )));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::bad_request(format!("{name} is given twice")));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

fn time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

fn token_json(token: &Token) -> Value {
    json!({
        "access_token": token.access_token.expose_secret(),
        "token_type": token.token_type,
        "expires_at": time(token.expires_at),
    })
}

/// An account's overview as the API and the command show it: no secrets.
pub fn summary_json(s: &AccountSummary) -> Value {
    let last_error = s.last_error_class.map(|class| {
        json!({
            "class": class.as_str(),
            "code": s.last_error_code,
            "at": time(s.last_error_at),
        })
    });
    json!({
        "id": s.key.as_str(),
        "client": s.client,
        "state": s.state.as_str(),
        "generation": s.generation,
        "expires_at": time(s.expires_at),
        "refresh_expires_at": time(s.refresh_expires_at),
        "obtained_at": time(s.obtained_at),
        "needs_login": s.needs_login,
        "last_success_at": time(s.last_success_at),
        "last_error": last_error,
        "consecutive_failures": s.consecutive_failures,
        "next_attempt_at": time(s.next_attempt_at),
        "due_at": time(s.due_at),
    })
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn healthz(State(state): State<Arc<AgentState>>) -> Result<Response, ApiError> {
    state
        .store
        .next_due()
        .await
        .map_err(|e| ApiError::store(&e))?;
    Ok(axum::Json(json!({"status": "ok"})).into_response())
}

async fn metrics(State(state): State<Arc<AgentState>>) -> Result<Response, ApiError> {
    let counts = state
        .store
        .counts()
        .await
        .map_err(|e| ApiError::store(&e))?;
    let text = state.metrics.render(&counts);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

async fn list(
    State(state): State<Arc<AgentState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut filter = AccountFilter::all();
    let mut after = None;
    let mut limit = None;
    for (name, value) in query(raw, &["state", "client", "after", "limit"])? {
        match name.as_str() {
            "state" => {
                let parsed = AccountState::parse(&value).ok_or_else(|| {
                    ApiError::bad_request(
                        "unknown state (known: active, failing, cannot_renew, needs_login)",
                    )
                })?;
                filter = filter.state(parsed);
            }
            "client" => filter = filter.client(value),
            "after" => {
                after = Some(
                    SessionKey::account(&value)
                        .map_err(|_| ApiError::bad_request("after is not a valid account id"))?,
                );
            }
            _ => {
                limit = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            ApiError::bad_request("limit must be a whole number from 1")
                        })?,
                );
            }
        }
    }
    if after.is_some() || limit.is_some() {
        filter = filter.page(after, limit.unwrap_or(u32::MAX));
    }
    let accounts = state
        .store
        .accounts(&filter)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let accounts: Vec<Value> = accounts.iter().map(summary_json).collect();
    Ok(axum::Json(json!({"accounts": accounts})).into_response())
}

async fn account(
    State(state): State<Arc<AgentState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let key = account_key(path)?;
    match state
        .store
        .account(&key)
        .await
        .map_err(|e| ApiError::store(&e))?
    {
        Some(summary) => Ok(axum::Json(summary_json(&summary)).into_response()),
        None => Err(ApiError::no_account(&key)),
    }
}

async fn token(
    State(state): State<Arc<AgentState>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let key = account_key(path)?;
    let mut demand = Demand::new();
    for (_, value) in query(raw, &["min_valid"])? {
        let min =
            parse_duration(&value).map_err(|e| ApiError::bad_request(format!("min_valid: {e}")))?;
        demand = demand.min_valid(min);
    }
    let keeper = &state.keeper;
    match keeper.token(&key, demand).await {
        Ok(token) => Ok(axum::Json(token_json(&token)).into_response()),
        Err(e) => Err(keeper_error(&key, &e, keeper.now())),
    }
}

async fn rejected(
    State(state): State<Arc<AgentState>>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = account_key(path)?;
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("access_token")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                r#"the body must be JSON {"access_token": "<the token a server rejected>"}"#,
            )
        })?;
    let keeper = &state.keeper;
    match keeper
        .token_after_rejection(&key, &AccessToken::new(token))
        .await
    {
        Ok(token) => Ok(axum::Json(token_json(&token)).into_response()),
        Err(e) => Err(keeper_error(&key, &e, keeper.now())),
    }
}

async fn put_login(
    State(state): State<Arc<AgentState>>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = account_key(path)?;
    let shape = r#"the body must be a JSON object {"client": NAME, "access_token": ..., "refresh_token": ..., "expires_in": ...}"#;
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&body) else {
        return Err(ApiError::bad_request(shape));
    };
    let client = match fields.remove("client") {
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => return Err(ApiError::bad_request(shape)),
    };
    let has_token = |fields: &Map<String, Value>, name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    };
    if !has_token(&fields, "access_token") && !has_token(&fields, "refresh_token") {
        return Err(ApiError::bad_request(
            "the body holds neither an access_token nor a refresh_token",
        ));
    }
    let response = authkeep::TokenResponse::from_fields(&fields);
    let now = state.keeper.now();
    match state.store.put_account(&key, &client, response, now).await {
        Ok(_) => {}
        Err(DbError::UnknownClient(name)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_client",
                format!(
                    "no client named {:?} (add it with authkeep clients add)",
                    name.chars().take(80).collect::<String>()
                ),
            ));
        }
        Err(e) => return Err(ApiError::store(&e)),
    }
    state.watcher.logged_in(&key);
    state.wake.notify_one();
    match state
        .store
        .account(&key)
        .await
        .map_err(|e| ApiError::store(&e))?
    {
        Some(summary) => Ok(axum::Json(summary_json(&summary)).into_response()),
        None => Err(ApiError::no_account(&key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_are_read_strictly() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn queries_refuse_unknown_and_repeated_names() {
        assert!(query(Some("min_valid=10m".into()), &["min_valid"]).is_ok());
        assert!(query(Some("min_valid=1m&min_valid=2m".into()), &["min_valid"]).is_err());
        assert!(query(Some("force=1".into()), &["min_valid"]).is_err());
        assert!(query(None, &["min_valid"]).unwrap().is_empty());
    }
}
