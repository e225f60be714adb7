//! The provider's HTTP face: routes, request parsing, response shapes and headers, the
//! login pages and redirects, the admin API, and carrying out the fault plan (latency,
//! dropped and hanging connections). The OAuth rules themselves live in `provider` and
//! `authorize`, the pages' markup in `pages`; the token endpoint's errors and encoding
//! follow the flavor (`flavor`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::authorize::{AuthorizeRequest, Redirect, Refused};
use crate::config::SessionRequest;
use crate::counters::{GRANT_UNKNOWN, OUTCOME_FAULT, OUTCOME_OK};
use crate::faults::{FaultAction, FaultKind, Faults, Sent};
use crate::flavor::{Encoding, form_body};
use crate::listener::Cut;
use crate::oauth::{Params, TokenError};
use crate::pages;
use crate::provider::login::{DEVICE_CODE_GRANT, Decision, DecisionRefused, login_user};
use crate::provider::{self, AccessExpiry, Provider};

pub(crate) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub(crate) const JWKS_PATH: &str = "/jwks";
pub(crate) const AUTHORIZE_PATH: &str = "/authorize";
/// The device authorization endpoint (RFC 8628 §3.1) and, for a form that carries
/// `action`, the verification page's answer: one path, as the page is `GET` of it.
pub(crate) const DEVICE_PATH: &str = provider::login::VERIFICATION_PATH;
pub(crate) const TOKEN_PATH: &str = "/token";
pub(crate) const INTROSPECT_PATH: &str = "/introspect";
pub(crate) const USERINFO_PATH: &str = "/userinfo";
pub(crate) const REVOKE_PATH: &str = "/revoke";

/// Largest request body read, in bytes.
const BODY_LIMIT: usize = 64 * 1024;
/// Longest grant type kept as a counter key.
const GRANT_LABEL_MAX: usize = 64;
/// The challenge every 401 of the token endpoint carries.
const BASIC_CHALLENGE: &str = r#"Basic realm="authkeep-devidp""#;
/// What the login pages may load and who may frame them: nothing and no one.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

type FormBody = Result<Form<Vec<(String, String)>>, FormRejection>;
type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    provider: Arc<Provider>,
    /// Becomes true when the provider shuts down; a closed channel means the same.
    shutdown: watch::Receiver<bool>,
}

pub(crate) fn router(provider: Arc<Provider>, shutdown: watch::Receiver<bool>) -> Router {
    let date_offset = provider.date_offset();
    let router = Router::new()
        .route(DISCOVERY_PATH, get(discovery))
        .route(JWKS_PATH, get(jwks))
        .route(AUTHORIZE_PATH, get(authorize_page).post(authorize_answer))
        .route(DEVICE_PATH, get(device_page).post(device_post))
        .route(TOKEN_PATH, post(token))
        .route(INTROSPECT_PATH, post(introspect))
        .route(USERINFO_PATH, get(userinfo).post(userinfo))
        .route(REVOKE_PATH, post(revoke))
        .route("/admin/sessions", post(admin_create_session))
        .route("/admin/sessions/bulk", post(admin_create_sessions))
        .route("/admin/grants", get(admin_grants))
        .route("/admin/counters", get(admin_counters))
        .route(
            "/admin/faults",
            post(admin_set_faults).delete(admin_clear_faults),
        )
        .route("/admin/revoke", post(admin_revoke))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(App { provider, shutdown });
    if date_offset.is_zero() {
        return router;
    }
    router.layer(axum::middleware::map_response(
        move |mut response: Response| async move {
            if let Some(date) = offset_date(jiff::Timestamp::now(), date_offset) {
                response.headers_mut().insert(header::DATE, date);
            }
            response
        },
    ))
}

/// The `Date` header (RFC 9110 §6.6.1) of a provider whose clock is `offset` from
/// `now`; `None` when that instant cannot be written, and the server's own `Date`
/// goes out instead.
fn offset_date(now: jiff::Timestamp, offset: jiff::SignedDuration) -> Option<HeaderValue> {
    let moved = now.checked_add(offset).ok()?;
    let text = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&moved)
        .ok()?;
    HeaderValue::from_str(&text).ok()
}

/// The OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414).
pub(crate) fn discovery_document(issuer: &str) -> Value {
    let at = |path: &str| format!("{issuer}{path}");
    json!({
        "issuer": issuer,
        "authorization_endpoint": at(AUTHORIZE_PATH),
        "device_authorization_endpoint": at(DEVICE_PATH),
        "token_endpoint": at(TOKEN_PATH),
        "introspection_endpoint": at(INTROSPECT_PATH),
        "userinfo_endpoint": at(USERINFO_PATH),
        "revocation_endpoint": at(REVOKE_PATH),
        "jwks_uri": at(JWKS_PATH),
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            DEVICE_CODE_GRANT,
        ],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "profile", "offline_access"],
        "claims_supported": ["sub", "name", "preferred_username"],
        "id_token_signing_alg_values_supported": ["HS256"],
        "token_endpoint_auth_methods_supported":
            ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
    })
}

/// The discovery document of [`FaultKind::HugeMetadata`]: the usual one, with a
/// `token_endpoint` under the issuer longer than `bytes`.
pub(crate) fn huge_discovery_document(issuer: &str, bytes: usize) -> Value {
    let mut document = discovery_document(issuer);
    document["token_endpoint"] = format!("{issuer}{TOKEN_PATH}/{}", "t".repeat(bytes)).into();
    document
}

impl App {
    /// Waits the plan's latency, then rolls its fault.
    async fn fault<'f>(&self, faults: &'f Faults) -> Option<&'f FaultKind> {
        if faults.latency_ms > 0 {
            self.sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        faults.roll()
    }

    /// Carries out a fault on the connection `cut` severs.
    async fn carry_out(&self, action: FaultAction, cut: &Cut) -> Response {
        match action {
            FaultAction::Respond(response) => return response,
            FaultAction::DropConnection => {}
            FaultAction::Hang => self.until_shutdown().await,
        }
        cut.pull();
        // Never sent: the connection fails before the first byte is written.
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }

    /// Sleeps, but no longer than until shutdown.
    async fn sleep(&self, duration: Duration) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.until_shutdown() => {}
        }
    }

    async fn until_shutdown(&self) {
        let mut shutdown = self.shutdown.clone();
        // An error means the provider's handle is gone, which is also a shutdown.
        shutdown.wait_for(|stop| *stop).await.ok();
    }
}

async fn discovery(State(app): State<App>, ConnectInfo(cut): ConnectInfo<Cut>) -> Response {
    app.provider.count(|c| c.discovery_requests += 1);
    let faults = app.provider.faults();
    let issuer = app.provider.issuer();
    if faults.covers_discovery() {
        match app.fault(&faults).await {
            Some(FaultKind::HugeMetadata { bytes }) => {
                return Json(huge_discovery_document(issuer, *bytes)).into_response();
            }
            Some(kind) => {
                if let Some(action) = kind.action(&Sent::default()) {
                    return app.carry_out(action, &cut).await;
                }
            }
            None => {}
        }
    }
    Json(discovery_document(issuer)).into_response()
}

async fn jwks() -> Json<Value> {
    // HS256 keys are shared secrets, never published.
    Json(json!({ "keys": [] }))
}

/// `GET` of the authorization endpoint: the consent page, or why the request is refused.
async fn authorize_page(State(app): State<App>, query: QueryPairs) -> Response {
    app.provider.count(|c| c.authorization_requests += 1);
    let Ok(Query(pairs)) = query else {
        return html(
            StatusCode::BAD_REQUEST,
            &pages::problem(SIGN_IN_REFUSED, "the query string is malformed"),
        );
    };
    match AuthorizeRequest::parse(pairs, app.provider.issuer()) {
        Ok(request) => html(StatusCode::OK, &pages::consent(AUTHORIZE_PATH, &request)),
        Err(refused) => refused_authorization(&refused),
    }
}

const SIGN_IN_REFUSED: &str = "Sign-in request refused";

/// `POST` of the consent form: the request's parameters again, `user` and `action`.
/// Approving redirects with a code, denying with `access_denied`.
async fn authorize_answer(State(app): State<App>, form: FormBody) -> Response {
    app.provider.count(|c| c.authorization_requests += 1);
    let Ok(Form(mut pairs)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            &pages::problem(SIGN_IN_REFUSED, "the form is malformed or too large"),
        );
    };
    let answer = match (take(&mut pairs, "action"), take(&mut pairs, "user")) {
        (Ok(action), Ok(user)) => (action, user),
        (Err(problem), _) | (_, Err(problem)) => {
            return html(
                StatusCode::BAD_REQUEST,
                &pages::problem(SIGN_IN_REFUSED, &problem),
            );
        }
    };
    let issuer = app.provider.issuer();
    let request = match AuthorizeRequest::parse(pairs, issuer) {
        Ok(request) => request,
        Err(refused) => return refused_authorization(&refused),
    };
    match answer {
        (Some(action), user) if action == "approve" => match login_user(user.as_deref()) {
            Some(user) => {
                redirect(&request.approved(&app.provider.issue_code(&request, &user), issuer))
            }
            None => html(
                StatusCode::BAD_REQUEST,
                &pages::problem(SIGN_IN_REFUSED, USER_REFUSED),
            ),
        },
        (Some(action), _) if action == "deny" => redirect(&request.denied(issuer)),
        _ => html(
            StatusCode::BAD_REQUEST,
            &pages::problem(SIGN_IN_REFUSED, "choose Approve or Deny"),
        ),
    }
}

const USER_REFUSED: &str =
    "the user name must have at most 64 characters and no control characters";

/// Removes every `name` pair from `pairs`: its one value, or why it cannot be used.
fn take(pairs: &mut Vec<(String, String)>, name: &str) -> Result<Option<String>, String> {
    let mut found = Vec::new();
    pairs.retain(|(key, value)| {
        if key == name {
            found.push(value.clone());
        }
        key != name
    });
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(format!("parameter {name} is repeated")),
    }
}

fn refused_authorization(refused: &Refused) -> Response {
    match refused {
        Refused::Shown(problem) => html(
            StatusCode::BAD_REQUEST,
            &pages::problem(SIGN_IN_REFUSED, problem),
        ),
        Refused::Redirected(to) => redirect(to),
    }
}

/// `GET /device`: the verification page, its code pre-filled from `?user_code=`.
async fn device_page(State(app): State<App>, query: QueryPairs) -> Response {
    app.provider.count(|c| c.device_verification_requests += 1);
    let Ok(Query(pairs)) = query else {
        return html(
            StatusCode::BAD_REQUEST,
            &pages::problem(CODE_REFUSED, "the query string is malformed"),
        );
    };
    let user_code = pairs
        .iter()
        .find(|(name, _)| name == "user_code")
        .map_or("", |(_, value)| value.as_str());
    html(StatusCode::OK, &pages::device_form(DEVICE_PATH, user_code))
}

const CODE_REFUSED: &str = "Code not accepted";

/// `POST /device`: the verification form when it carries `action` (its buttons always
/// send one), else a device authorization request (RFC 8628 §3.1), which never does.
async fn device_post(State(app): State<App>, headers: HeaderMap, form: FormBody) -> Response {
    match form {
        Ok(Form(pairs)) if pairs.iter().any(|(name, _)| name == "action") => {
            device_answer(&app, pairs)
        }
        form => {
            app.provider.count(|c| c.device_authorization_requests += 1);
            let answer = form_params(form).and_then(|params| {
                app.provider
                    .authorize_device(&params, headers.get(header::AUTHORIZATION))
            });
            match answer {
                Ok(body) => no_store_json(StatusCode::OK, body),
                Err(error) => token_error(&error),
            }
        }
    }
}

/// The verification form's answer: approve or deny the device authorization whose
/// user code was typed.
fn device_answer(app: &App, pairs: Vec<(String, String)>) -> Response {
    app.provider.count(|c| c.device_verification_requests += 1);
    let refused = |problem: &str| {
        html(
            StatusCode::BAD_REQUEST,
            &pages::problem(CODE_REFUSED, problem),
        )
    };
    let params = match Params::from_pairs(pairs) {
        Ok(params) => params,
        Err(name) => return refused(&format!("parameter {name} is repeated")),
    };
    let typed = params.get("user_code").unwrap_or_default();
    let decision = match params.get("action") {
        Some("approve") => match login_user(params.get("user")) {
            Some(user) => Decision::Approved { user },
            None => return refused(USER_REFUSED),
        },
        Some("deny") => Decision::Denied,
        _ => return refused("choose Approve or Deny"),
    };
    let approved_for = match &decision {
        Decision::Approved { user } => Some(user.clone()),
        _ => None,
    };
    match app.provider.decide_device(typed, decision) {
        Ok(shown) => html(
            StatusCode::OK,
            &pages::device_done(&shown, approved_for.as_deref()),
        ),
        Err(DecisionRefused::Unknown) => html(
            StatusCode::BAD_REQUEST,
            &pages::unknown_user_code(typed, "is unknown or has expired"),
        ),
        Err(DecisionRefused::Decided) => html(
            StatusCode::BAD_REQUEST,
            &pages::unknown_user_code(typed, "was already answered"),
        ),
    }
}

async fn token(
    State(app): State<App>,
    ConnectInfo(cut): ConnectInfo<Cut>,
    headers: HeaderMap,
    form: FormBody,
) -> Response {
    let params = form_params(form);
    let grant_type: String = params
        .as_ref()
        .ok()
        .and_then(|params| params.get("grant_type"))
        .unwrap_or(GRANT_UNKNOWN)
        .chars()
        .take(GRANT_LABEL_MAX)
        .collect();

    let faults = app.provider.faults();
    let fault = app.fault(&faults).await;
    let sent = sent(params.as_ref().ok(), &headers);
    if let Some(action) = fault.and_then(|kind| kind.action(&sent)) {
        app.provider
            .count(|c| c.record_token(&grant_type, OUTCOME_FAULT));
        return app.carry_out(action, &cut).await;
    }
    let access = match fault {
        Some(FaultKind::ExpiredAccessToken) => AccessExpiry::Past,
        _ => AccessExpiry::Lifetime,
    };

    let result = match params {
        Ok(params) => {
            app.provider
                .token(&params, headers.get(header::AUTHORIZATION), access)
                .await
        }
        Err(error) => Err(error),
    };
    let flavor = app.provider.flavor();
    let result = result.map_err(|error| flavor.shape_error(error, provider::now()));
    let outcome = match &result {
        Ok(_) => OUTCOME_OK,
        Err(error) => error.error,
    };
    app.provider.count(|c| c.record_token(&grant_type, outcome));
    let encoding = flavor.encoding(headers.get(header::ACCEPT));
    match result {
        Ok(body) => no_store(StatusCode::OK, body, encoding),
        Err(error) => token_error_as(&error, encoding),
    }
}

async fn introspect(State(app): State<App>, form: FormBody) -> Response {
    app.provider.count(|c| c.introspection_requests += 1);
    let token = match form_params(form).and_then(|params| Ok(params.require("token")?.to_owned())) {
        Ok(token) => token,
        Err(error) => return token_error(&error),
    };
    no_store_json(StatusCode::OK, app.provider.introspect(&token))
}

async fn userinfo(State(app): State<App>, headers: HeaderMap) -> Response {
    app.provider.count(|c| c.userinfo_requests += 1);
    let Some(token) = bearer_token(&headers) else {
        // RFC 6750 §3.1: a request without credentials gets a challenge, no error code.
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
        return (StatusCode::UNAUTHORIZED, challenge).into_response();
    };
    match app.provider.userinfo(token) {
        Some(claims) => no_store_json(StatusCode::OK, claims),
        None => {
            let challenge = [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)];
            let body = Json(json!({ "error": "invalid_token" }));
            (StatusCode::UNAUTHORIZED, challenge, body).into_response()
        }
    }
}

async fn revoke(State(app): State<App>, form: FormBody) -> Response {
    app.provider.count(|c| c.revocation_requests += 1);
    match form_params(form).and_then(|params| Ok(params.require("token")?.to_owned())) {
        Ok(token) => {
            app.provider.revoke(&token);
            StatusCode::OK.into_response()
        }
        Err(error) => token_error(&error),
    }
}

async fn admin_create_session(State(app): State<App>, body: Bytes) -> Response {
    match parse_json::<SessionRequest>(&body) {
        Ok(request) => no_store_json(StatusCode::OK, app.provider.create_session(&request)),
        Err(problem) => bad_request(&problem),
    }
}

/// Most sessions one bulk call opens.
const BULK_MAX: u32 = 1_000_000;
/// What a bulk request's `user` may hold to number its sessions.
const BULK_NUMBER: &str = "{n}";

/// What `POST /admin/sessions/bulk` asks for: `count` grants of one
/// [`SessionRequest`] (its fields beside `count`).
#[derive(Default, Deserialize)]
#[serde(default)]
struct BulkSessions {
    count: u32,
    #[serde(flatten)]
    session: SessionRequest,
}

/// Opens `count` grants at once and answers their token responses as JSON lines
/// (`application/x-ndjson`), for benchmarks that need many accounts. A `{n}` in
/// `user` becomes each grant's number, from 0, so that every session has a user
/// of its own.
async fn admin_create_sessions(State(app): State<App>, body: Bytes) -> Response {
    let request = match parse_json::<BulkSessions>(&body) {
        Ok(request) => request,
        Err(problem) => return bad_request(&problem),
    };
    if request.count == 0 || request.count > BULK_MAX {
        return bad_request(&format!("count must be 1 to {BULK_MAX}"));
    }
    let mut lines = Vec::new();
    let numbered = request.session.user.contains(BULK_NUMBER);
    let mut session_request = request.session.clone();
    for n in 0..request.count {
        if numbered {
            session_request.user = request.session.user.replace(BULK_NUMBER, &n.to_string());
        }
        let session = app.provider.create_session(&session_request);
        // A `Value` always serialises: its keys are strings.
        serde_json::to_writer(&mut lines, &session).expect("a JSON value serialises");
        lines.push(b'\n');
    }
    let headers = [
        (header::CONTENT_TYPE, "application/x-ndjson"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (StatusCode::OK, headers, lines).into_response()
}

/// Every grant's refresh history as JSON lines (see `Provider::grant_report`).
async fn admin_grants(State(app): State<App>) -> Response {
    let mut lines = Vec::new();
    for grant in app.provider.grant_report() {
        // A `Value` always serialises: its keys are strings.
        serde_json::to_writer(&mut lines, &grant).expect("a JSON value serialises");
        lines.push(b'\n');
    }
    let headers = [(header::CONTENT_TYPE, "application/x-ndjson")];
    (StatusCode::OK, headers, lines).into_response()
}

async fn admin_counters(State(app): State<App>) -> Response {
    Json(app.provider.counters()).into_response()
}

async fn admin_set_faults(State(app): State<App>, body: Bytes) -> Response {
    let faults = match parse_json::<Faults>(&body) {
        Ok(faults) => faults,
        Err(problem) => return bad_request(&problem),
    };
    if let Err(problem) = faults.check() {
        return bad_request(&problem);
    }
    app.provider.set_faults(faults);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_clear_faults(State(app): State<App>) -> StatusCode {
    app.provider.set_faults(Faults::default());
    StatusCode::NO_CONTENT
}

async fn admin_revoke(State(app): State<App>, body: Bytes) -> Response {
    #[derive(Default, Deserialize)]
    struct RevokeRequest {
        token: String,
    }
    match parse_json::<RevokeRequest>(&body) {
        Ok(request) => {
            let revoked = app.provider.revoke_grant_of(&request.token);
            Json(json!({ "revoked": revoked })).into_response()
        }
        Err(problem) => bad_request(&problem),
    }
}

/// What a token request carried that a fault may echo.
fn sent<'a>(params: Option<&'a Params>, headers: &'a HeaderMap) -> Sent<'a> {
    let param = |name| params.and_then(|p| p.get(name)).unwrap_or_default();
    Sent {
        refresh_token: param("refresh_token"),
        client_secret: param("client_secret"),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    }
}

/// The form parameters of a request, or the `invalid_request` it deserves.
fn form_params(form: FormBody) -> Result<Params, TokenError> {
    let Form(pairs) = form.map_err(|rejection| {
        let status = rejection.status();
        let mut error = TokenError::invalid_request(
            "the body must be an application/x-www-form-urlencoded form of at most 64 KiB",
        );
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            error.status = status;
        }
        error
    })?;
    Params::from_pairs(pairs)
        .map_err(|name| TokenError::invalid_request(format!("parameter {name} is repeated")))
}

/// A JSON admin request body; an empty body means the type's default. The error is
/// the `invalid_request` answer to send.
fn parse_json<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|error| format!("invalid JSON: {error}"))
}

fn bad_request(description: &str) -> Response {
    let body = json!({ "error": "invalid_request", "error_description": description });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A login page that caches must not keep, that loads nothing and cannot be framed.
fn html(status: StatusCode, page: &str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (status, headers, page.to_owned()).into_response()
}

/// A 302 to the client's redirect URI (RFC 6749 §4.1.2).
fn redirect(to: &Redirect) -> Response {
    match HeaderValue::from_str(to.location()) {
        Ok(location) => {
            let no_store = HeaderValue::from_static("no-store");
            let headers = [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, no_store),
            ];
            (StatusCode::FOUND, headers).into_response()
        }
        // A parsed URL serialises to visible ASCII, so this is not expected; say so
        // rather than send a broken redirect.
        Err(_) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            &pages::problem(SIGN_IN_REFUSED, "the redirect URI cannot be sent back"),
        ),
    }
}

/// A JSON answer that caches must not keep (RFC 6749 §5.1).
fn no_store_json(status: StatusCode, body: Value) -> Response {
    no_store(status, body, Encoding::Json)
}

/// An answer that caches must not keep (RFC 6749 §5.1), encoded as asked.
fn no_store(status: StatusCode, body: Value, encoding: Encoding) -> Response {
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ];
    match encoding {
        Encoding::Json => (status, headers, Json(body)).into_response(),
        Encoding::Form => {
            let content_type = [(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )];
            (status, headers, content_type, form_body(&body)).into_response()
        }
    }
}

fn token_error(error: &TokenError) -> Response {
    token_error_as(error, Encoding::Json)
}

fn token_error_as(error: &TokenError, encoding: Encoding) -> Response {
    let mut response = no_store(error.status, error.body(), encoding);
    if error.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BASIC_CHALLENGE),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_date_is_an_http_date_moved_by_the_offset() {
        let now: jiff::Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        let ahead = offset_date(now, jiff::SignedDuration::from_mins(10)).unwrap();
        assert_eq!(ahead, "Mon, 01 Jun 2026 12:10:00 GMT");
        let behind = offset_date(now, jiff::SignedDuration::from_secs(-90)).unwrap();
        assert_eq!(behind, "Mon, 01 Jun 2026 11:58:30 GMT");
        assert!(offset_date(jiff::Timestamp::MAX, jiff::SignedDuration::from_secs(1)).is_none());
    }

    #[test]
    fn discovery_names_every_endpoint_under_the_issuer() {
        let document = discovery_document("http://127.0.0.1:8080");
        assert_eq!(document["issuer"], "http://127.0.0.1:8080");
        assert_eq!(document["token_endpoint"], "http://127.0.0.1:8080/token");
        assert_eq!(document["jwks_uri"], "http://127.0.0.1:8080/jwks");
        for (key, value) in document.as_object().unwrap() {
            if key.ends_with("_endpoint") || key == "jwks_uri" {
                assert!(
                    value
                        .as_str()
                        .unwrap()
                        .starts_with("http://127.0.0.1:8080/"),
                    "{key}"
                );
            }
        }
    }

    #[test]
    fn huge_metadata_has_a_long_token_endpoint_and_the_usual_rest() {
        let issuer = "http://127.0.0.1:8080";
        let document = huge_discovery_document(issuer, 70_000);
        let endpoint = document["token_endpoint"].as_str().unwrap();
        assert!(endpoint.len() > 70_000);
        assert!(endpoint.starts_with("http://127.0.0.1:8080/token/ttt"));
        assert_eq!(document["issuer"], issuer);
        assert_eq!(document["jwks_uri"], "http://127.0.0.1:8080/jwks");
    }

    #[test]
    fn bearer_tokens_are_found_whatever_the_scheme_case() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn pages_are_html_that_loads_nothing_and_is_never_cached_or_framed() {
        let response = html(StatusCode::OK, "<p>x</p>");
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn form_fields_are_taken_once_and_repeats_refused() {
        let mut pairs = vec![
            ("action".to_owned(), "approve".to_owned()),
            ("client_id".to_owned(), "cli".to_owned()),
        ];
        assert_eq!(take(&mut pairs, "action"), Ok(Some("approve".to_owned())));
        assert_eq!(pairs, [("client_id".to_owned(), "cli".to_owned())]);
        assert_eq!(take(&mut pairs, "user"), Ok(None));
        pairs.push(("user".to_owned(), "a".to_owned()));
        pairs.push(("user".to_owned(), "b".to_owned()));
        assert_eq!(
            take(&mut pairs, "user"),
            Err("parameter user is repeated".to_owned())
        );
    }

    #[test]
    fn discovery_advertises_the_login_grants_and_iss() {
        let document = discovery_document("http://127.0.0.1:8080");
        let grants = document["grant_types_supported"].as_array().unwrap();
        assert!(grants.contains(&json!("authorization_code")));
        assert!(grants.contains(&json!(DEVICE_CODE_GRANT)));
        assert_eq!(
            document["authorization_response_iss_parameter_supported"],
            true
        );
        assert_eq!(
            document["code_challenge_methods_supported"],
            json!(["S256"])
        );
        assert_eq!(
            document["device_authorization_endpoint"],
            "http://127.0.0.1:8080/device"
        );
    }

    #[test]
    fn invalid_client_carries_a_basic_challenge() {
        let response = token_error(&TokenError::invalid_client("no"));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            BASIC_CHALLENGE
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");

        let response = token_error(&TokenError::invalid_grant("no"));
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
