//! The keeper's steps at the provider other than a refresh, on a memory store,
//! a manual clock and canned answers: provider metadata with the RFC 8414
//! fallback, the client credentials login and its renewal by repeating the
//! grant, and revocation at logout (RFC 7009), with what each request carried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use authkeep::{
    Client, ClientAuth, ClientSecret, Demand, Error, FailureClass, Keeper, LoginReason,
    ManualClock, MemoryStore, Renewal, Revocation, SessionKey, Step, Store as _, TokenResponse,
    TransportError,
};
use http::{Request, Response};
use jiff::{SignedDuration, Timestamp};

const ISSUER: &str = "https://idp.example/tenant";
const OIDC: &str = "https://idp.example/tenant/.well-known/openid-configuration";
const RFC8414: &str = "https://idp.example/.well-known/oauth-authorization-server/tenant";
const TOKEN: &str = "https://idp.example/tenant/token";
const REVOKE: &str = "https://idp.example/tenant/revoke";

fn start() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn key() -> SessionKey {
    SessionKey::new("svc").unwrap()
}

/// One request as the provider saw it.
#[derive(Clone, Debug)]
struct Seen {
    uri: String,
    authorization: Option<String>,
    body: String,
}

/// A canned answer: a response, or a transport failure's message.
type Answer = Result<Response<Vec<u8>>, String>;

/// Canned answers per URL, in order; a URL without one left fails as a
/// connection would.
#[derive(Default)]
struct Provider {
    seen: Mutex<Vec<Seen>>,
    answers: Mutex<HashMap<String, Vec<Answer>>>,
}

impl Provider {
    fn answer(&self, uri: &str, status: u16, body: &str) {
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap();
        self.queue(uri, Ok(response));
    }

    fn fail(&self, uri: &str, message: &str) {
        self.queue(uri, Err(message.to_owned()));
    }

    fn queue(&self, uri: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .entry(uri.to_owned())
            .or_default()
            .push(answer);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn uris(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.uri).collect()
    }

    fn metadata(&self, uri: &str, revocation: bool) {
        let mut document = serde_json::json!({
            "issuer": ISSUER,
            "token_endpoint": TOKEN,
            "grant_types_supported": ["client_credentials", "refresh_token"],
        });
        if revocation {
            document["revocation_endpoint"] = REVOKE.into();
        }
        self.answer(uri, 200, &document.to_string());
    }
}

struct Setup {
    keeper: Keeper<MemoryStore>,
    provider: Arc<Provider>,
    clock: Arc<ManualClock>,
}

fn setup() -> Setup {
    let provider = Arc::new(Provider::default());
    let clock = Arc::new(ManualClock::new(start()));
    let answering = provider.clone();
    let keeper = Keeper::builder(MemoryStore::new())
        .clock(clock.clone())
        .transport(move |request: Request<Vec<u8>>| {
            let provider = answering.clone();
            async move {
                let uri = request.uri().to_string();
                provider.seen.lock().unwrap().push(Seen {
                    uri: uri.clone(),
                    authorization: request
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .map(|v| v.to_str().unwrap().to_owned()),
                    body: String::from_utf8(request.into_body()).unwrap(),
                });
                let mut answers = provider.answers.lock().unwrap();
                match answers.get_mut(&uri).filter(|q| !q.is_empty()) {
                    Some(queue) => queue.remove(0).map_err(TransportError::Failed),
                    None => Err(TransportError::Failed(format!(
                        "no canned answer for {uri}"
                    ))),
                }
            }
        })
        .build();
    Setup {
        keeper,
        provider,
        clock,
    }
}

fn service() -> Client {
    Client::new(ISSUER, "svc")
        .with_secret(ClientSecret::new("s3cret"), ClientAuth::ClientSecretPost)
        .with_scope("read")
        .with_token_params(vec![("audience".into(), "https://api".into())])
}

fn grant(access: &str) -> String {
    serde_json::json!({"access_token": access, "token_type": "Bearer", "expires_in": 600})
        .to_string()
}

#[tokio::test]
async fn metadata_falls_back_to_rfc_8414_through_the_keeper() {
    let s = setup();
    s.provider.answer(OIDC, 404, "");
    s.provider.metadata(RFC8414, true);
    let metadata = s.keeper.metadata(&key(), ISSUER).await.unwrap();
    assert_eq!(metadata.revocation_endpoint.as_deref(), Some(REVOKE));
    assert_eq!(s.provider.uris(), [OIDC, RFC8414]);
    // Within the cache's lifetime no request is made.
    s.keeper.metadata(&key(), ISSUER).await.unwrap();
    assert_eq!(s.provider.uris().len(), 2);
}

#[tokio::test]
async fn metadata_failures_are_discovery_failures_of_the_session() {
    let s = setup();
    s.provider.answer(OIDC, 503, "");
    let error = s.keeper.metadata(&key(), ISSUER).await.unwrap_err();
    assert!(
        matches!(&error, Error::Provider { step: Step::Discovery, failure, .. }
            if failure.class == FailureClass::Transient),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(
        s.provider.uris(),
        [OIDC],
        "a transient answer has no fallback"
    );

    let error = s
        .keeper
        .metadata(&key(), "http://idp.example")
        .await
        .unwrap_err();
    assert!(error.is_misconfiguration(), "{error:?}");
    assert!(error.to_string().contains("https is required"), "{error}");
    assert_eq!(s.provider.uris().len(), 1, "refused before any request");
}

#[tokio::test]
async fn a_client_credentials_login_is_stored_and_renewed_by_repeating_the_grant() {
    let s = setup();
    s.provider.metadata(OIDC, true);
    s.provider.answer(
        TOKEN,
        200,
        r#"{"access_token":"at-1","token_type":"Bearer","expires_in":600,"refresh_token":"unwanted"}"#,
    );
    let stored = s
        .keeper
        .login_client_credentials(&key(), service())
        .await
        .unwrap();
    let client = stored.record.client.as_ref().unwrap();
    assert_eq!(client.renewal, Renewal::ClientCredentials);
    let tokens = stored.record.tokens.as_ref().unwrap();
    assert_eq!(tokens.refresh_token, None, "a repeated grant keeps none");
    assert_eq!(
        tokens.expires_at,
        Some(start() + SignedDuration::from_secs(600))
    );
    assert!(stored.record.can_renew());
    let login = &s.provider.seen()[1];
    assert_eq!(login.uri, TOKEN);
    assert_eq!(
        login.body,
        "grant_type=client_credentials&scope=read&audience=https%3A%2F%2Fapi&client_id=svc&client_secret=s3cret"
    );

    // Warm: no request.
    let token = s.keeper.token(&key(), Demand::default()).await.unwrap();
    assert_eq!(token.access_token.expose_secret(), "at-1");
    assert_eq!(s.provider.seen().len(), 2);

    // Inside the window: the grant again, with the same parameters.
    s.clock.advance(SignedDuration::from_secs(500));
    s.provider.answer(TOKEN, 200, &grant("at-2"));
    let token = s.keeper.token(&key(), Demand::default()).await.unwrap();
    assert!(token.refreshed);
    assert_eq!(token.access_token.expose_secret(), "at-2");
    let renewal = s.provider.seen().last().unwrap().clone();
    assert_eq!(renewal.body, login.body);
}

#[tokio::test]
async fn invalid_grant_for_client_credentials_is_misconfiguration_and_keeps_the_session() {
    let s = setup();
    s.provider.metadata(OIDC, true);
    s.provider.answer(TOKEN, 200, &grant("at-1"));
    s.keeper
        .login_client_credentials(&key(), service())
        .await
        .unwrap();
    s.clock.advance(SignedDuration::from_secs(700));
    s.provider.answer(
        TOKEN,
        400,
        r#"{"error":"invalid_grant","error_description":"bad s3cret"}"#,
    );
    let error = s.keeper.token(&key(), Demand::default()).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::RefreshFailed {
                class: FailureClass::Misconfiguration,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.to_string().contains("s3cret"), "{error}");
    let kept = s.keeper.store().load(&key()).await.unwrap().unwrap();
    assert!(kept.record.tokens.is_some(), "the session was not ended");
    assert!(kept.record.can_renew());
}

#[tokio::test]
async fn a_failed_client_credentials_login_stores_nothing_and_names_its_step() {
    let s = setup();
    s.provider.answer(OIDC, 404, "");
    s.provider.answer(RFC8414, 404, "");
    let error = s
        .keeper
        .login_client_credentials(&key(), service())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Provider {
                step: Step::Discovery,
                ..
            }
        ),
        "{error:?}"
    );
    let explicit = service().with_token_endpoint(TOKEN);
    s.provider.answer(
        TOKEN,
        401,
        r#"{"error":"invalid_client","error_description":"unknown client"}"#,
    );
    let error = s
        .keeper
        .login_client_credentials(&key(), explicit.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Provider { step: Step::Login, failure, .. }
            if failure.class == FailureClass::Misconfiguration),
        "{error:?}"
    );
    s.provider
        .answer(TOKEN, 400, r#"{"error":"invalid_grant"}"#);
    let error = s
        .keeper
        .login_client_credentials(&key(), explicit)
        .await
        .unwrap_err();
    assert!(
        error.is_misconfiguration() && !error.is_login_required(),
        "{error:?}"
    );
    assert!(s.keeper.store().load(&key()).await.unwrap().is_none());
}

/// Stores a session with a refresh token for a confidential client (HTTP Basic).
async fn log_in(s: &Setup) {
    let response = TokenResponse::from_fields(
        serde_json::json!({"access_token": "at-0", "refresh_token": "rt-0", "expires_in": 3600})
            .as_object()
            .unwrap(),
    );
    let client = Client::new(ISSUER, "cli")
        .with_secret(ClientSecret::new("pw"), ClientAuth::ClientSecretBasic);
    s.keeper.save_login(&key(), client, response).await.unwrap();
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_then_the_access_token_as_the_client() {
    let s = setup();
    log_in(&s).await;
    s.provider.metadata(OIDC, true);
    s.provider.answer(REVOKE, 200, "");
    s.provider
        .answer(REVOKE, 400, r#"{"error":"unsupported_token_type"}"#);
    let logout = s.keeper.logout_and_revoke(&key(), true).await.unwrap();
    assert!(logout.removed);
    assert_eq!(
        logout.revocation,
        Revocation::Revoked {
            refresh_token: true,
            access_token: false
        }
    );
    let seen = s.provider.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].uri, REVOKE);
    assert_eq!(seen[1].body, "token=rt-0&token_type_hint=refresh_token");
    assert_eq!(seen[2].body, "token=at-0&token_type_hint=access_token");
    for request in &seen[1..] {
        // base64("cli:pw")
        assert_eq!(request.authorization.as_deref(), Some("Basic Y2xpOnB3"));
    }
    assert!(s.keeper.store().load(&key()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_network_failure_at_revocation_still_removes_the_session_and_is_reported() {
    let s = setup();
    log_in(&s).await;
    s.provider.metadata(OIDC, true);
    s.provider.answer(REVOKE, 200, "");
    s.provider.fail(REVOKE, "connection reset");
    let logout = s.keeper.logout_and_revoke(&key(), true).await.unwrap();
    assert!(logout.removed);
    let Revocation::Failed {
        failure,
        refresh_token_revoked,
    } = &logout.revocation
    else {
        panic!("{logout:?}");
    };
    assert!(*refresh_token_revoked);
    assert_eq!(failure.class, FailureClass::Transient);
    let shown = format!("{logout:?}");
    assert!(
        !shown.contains("rt-0") && !shown.contains("at-0"),
        "{shown}"
    );
    assert!(s.keeper.store().load(&key()).await.unwrap().is_none());
    let error = s.keeper.token(&key(), Demand::default()).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::LoginRequired {
                reason: LoginReason::NoSession,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn without_a_revocation_endpoint_logout_says_it_is_not_offered() {
    let s = setup();
    log_in(&s).await;
    s.provider.metadata(OIDC, false);
    let logout = s.keeper.logout_and_revoke(&key(), true).await.unwrap();
    assert!(logout.removed);
    assert_eq!(logout.revocation, Revocation::NotOffered);
    assert_eq!(s.provider.uris(), [OIDC]);
}

#[tokio::test]
async fn no_session_or_no_revocation_asked_sends_nothing() {
    let s = setup();
    let logout = s.keeper.logout_and_revoke(&key(), true).await.unwrap();
    assert!(!logout.removed);
    assert_eq!(logout.revocation, Revocation::NothingToRevoke);
    log_in(&s).await;
    let logout = s.keeper.logout_and_revoke(&key(), false).await.unwrap();
    assert!(logout.removed);
    assert_eq!(logout.revocation, Revocation::NotAsked);
    assert!(s.provider.seen().is_empty());
    log_in(&s).await;
    assert!(s.keeper.logout(&key()).await.unwrap());
    assert!(!s.keeper.logout(&key()).await.unwrap());
    assert!(s.provider.seen().is_empty());
}

#[tokio::test]
async fn a_client_credentials_session_revokes_its_access_token_only() {
    let s = setup();
    s.provider.metadata(OIDC, true);
    s.provider.answer(TOKEN, 200, &grant("at-1"));
    s.keeper
        .login_client_credentials(&key(), service())
        .await
        .unwrap();
    s.provider.answer(REVOKE, 200, "");
    let logout = s.keeper.logout_and_revoke(&key(), true).await.unwrap();
    assert_eq!(
        logout.revocation,
        Revocation::Revoked {
            refresh_token: false,
            access_token: true
        }
    );
    let seen = s.provider.seen();
    assert_eq!(seen.len(), 3, "metadata came from the cache: {seen:?}");
    assert_eq!(
        seen[2].body,
        "token=at-1&token_type_hint=access_token&client_id=svc&client_secret=s3cret"
    );
}
