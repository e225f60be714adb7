//! How each provider flavor answers a refresh over real HTTP: the shape of a success,
//! a dead session, and for Okta and Auth0 the grace period before breach detection.

use std::time::Duration;

use authkeep_devidp::{Config, DevIdp, Flavor, SessionRequest};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

const DEMO: &str = "authkeep-demo";

async fn start(config: Config) -> DevIdp {
    DevIdp::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

async fn flavored(flavor: Flavor) -> DevIdp {
    start(Config::for_flavor(flavor)).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Opens a grant; its access and refresh tokens.
fn session(idp: &DevIdp, scope: Option<&str>) -> (String, String) {
    let response = idp.create_session(&SessionRequest {
        scope: scope.map(str::to_owned),
        ..SessionRequest::default()
    });
    (
        response["access_token"].as_str().unwrap().to_owned(),
        response["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// A refresh as authkeep sends it, with `Accept: application/json`: the status, the
/// content type and the JSON body.
async fn refresh(idp: &DevIdp, refresh_token: &str) -> (StatusCode, String, Value) {
    let response = http()
        .post(format!("{}/token", idp.issuer()))
        .header(ACCEPT, "application/json")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", DEMO),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, content_type, body)
}

fn text<'a>(body: &'a Value, member: &str) -> &'a str {
    body[member]
        .as_str()
        .unwrap_or_else(|| panic!("no string {member} in {body}"))
}

/// Asserts a refused refresh: status 400, `invalid_grant` and this description.
fn assert_invalid_grant(answer: &(StatusCode, String, Value), description: &str) {
    let (status, _, body) = answer;
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body,
        &json!({ "error": "invalid_grant", "error_description": description })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn github_refresh_is_a_200_with_lowercase_bearer_and_opaque_rotated_tokens() {
    let idp = flavored(Flavor::GitHub).await;
    let (old_access, old_refresh) = session(&idp, None);
    assert!(old_refresh.starts_with("ghr_"), "{old_refresh}");

    let (status, content_type, tokens) = refresh(&idp, &old_refresh).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 28_800);
    assert_eq!(tokens["refresh_token_expires_in"], 15_897_600);
    assert_eq!(tokens["scope"], "");
    assert!(tokens.get("id_token").is_none(), "{tokens}");
    assert!(tokens.get("refresh_expires_in").is_none(), "{tokens}");
    let access = text(&tokens, "access_token");
    assert!(
        access.starts_with("ghu_") && !access.contains('.'),
        "{access}"
    );
    let new_refresh = text(&tokens, "refresh_token");
    assert!(new_refresh.starts_with("ghr_"), "{new_refresh}");

    assert!(idp.is_active(access));
    assert!(idp.is_active(new_refresh));
    assert!(!idp.is_active(&old_refresh), "rotated out");
    assert!(
        !idp.is_active(&old_access),
        "a refresh ends the older access tokens"
    );
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn github_answers_form_encoded_without_accept_json() {
    let idp = flavored(Flavor::GitHub).await;
    let (_, token) = session(&idp, None);
    let response = http()
        .post(format!("{}/token", idp.issuer()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token.as_str()),
            ("client_id", DEMO),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "application/x-www-form-urlencoded; charset=utf-8"
    );
    let body = response.text().await.unwrap();
    assert!(body.starts_with("access_token=ghu_"), "{body}");
    assert!(
        body.contains("&expires_in=28800&refresh_token=ghr_"),
        "{body}"
    );
    assert!(body.ends_with("&scope=&token_type=bearer"), "{body}");
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn github_dead_sessions_are_bad_refresh_token_inside_a_200() {
    let idp = flavored(Flavor::GitHub).await;
    let (_, token) = session(&idp, None);
    assert!(idp.revoke_grant_of(&token));

    let (status, content_type, error) = refresh(&idp, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(error["error"], "bad_refresh_token");
    assert_eq!(
        error["error_description"],
        "The refresh token passed is incorrect or expired."
    );
    assert!(text(&error, "error_uri").starts_with("https://docs.github.com/"));
    assert!(error.get("access_token").is_none());

    let (_, used) = session(&idp, None);
    let (_, _, tokens) = refresh(&idp, &used).await;
    let (status, _, error) = refresh(&idp, &used).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::OK, &json!("bad_refresh_token"))
    );
    assert!(
        !idp.is_active(text(&tokens, "refresh_token")),
        "reuse revoked the grant"
    );

    let (status, _, error) = refresh(&idp, "ghr_unknown").await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::OK, &json!("bad_refresh_token"))
    );
    let counters = idp.counters();
    assert_eq!(counters.outcome("refresh_token", "bad_refresh_token"), 3);
    assert_eq!(counters.outcome("refresh_token", "invalid_grant"), 0);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn github_wrong_client_credentials_are_a_200_too() {
    let idp = start(Config {
        clients: vec![authkeep_devidp::ClientConfig::new("svc", "s3cret")],
        ..Config::for_flavor(Flavor::GitHub)
    })
    .await;
    let response = http()
        .post(format!("{}/token", idp.issuer()))
        .header(ACCEPT, "application/json")
        .basic_auth("svc", Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "ghr_x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let error: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(error["error"], "incorrect_client_credentials");
    assert_eq!(
        idp.counters()
            .outcome("refresh_token", "incorrect_client_credentials"),
        1
    );
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_refresh_states_ext_expires_in_and_rotates() {
    let idp = flavored(Flavor::Entra).await;
    let (_, old) = session(&idp, None);
    let (status, _, tokens) = refresh(&idp, &old).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3599);
    assert_eq!(tokens["ext_expires_in"], 3599);
    assert_eq!(tokens["scope"], "openid profile offline_access");
    assert!(tokens["id_token"].is_string());
    assert_ne!(text(&tokens, "refresh_token"), old);
    assert!(tokens.get("refresh_expires_in").is_none(), "{tokens}");
    assert!(!idp.is_active(&old));
    idp.shutdown().await;
}

/// Asserts Microsoft Entra's error form: `invalid_grant`, the AADSTS code first in
/// the description, and trace facts both in it and beside it.
fn assert_entra_error(body: &Value, code: u32, message: &str) {
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert_eq!(body["error_codes"], json!([code]));
    let description = text(body, "error_description");
    assert!(
        description.starts_with(&format!("AADSTS{code}: {message}")),
        "{description}"
    );
    let trace_id = text(body, "trace_id");
    let correlation_id = text(body, "correlation_id");
    let timestamp = text(body, "timestamp");
    assert_eq!(trace_id.len(), 36);
    assert!(description.contains(&format!("\r\nTrace ID: {trace_id}\r\n")));
    assert!(description.contains(&format!("\r\nCorrelation ID: {correlation_id}\r\n")));
    assert!(description.ends_with(&format!("\r\nTimestamp: {timestamp}")));
    assert!(
        timestamp.starts_with("20") && timestamp.ends_with('Z'),
        "{timestamp}"
    );
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_dead_sessions_carry_aadsts_codes() {
    let idp = flavored(Flavor::Entra).await;
    let (_, revoked) = session(&idp, None);
    assert!(idp.revoke_grant_of(&revoked));
    let (status, _, error) = refresh(&idp, &revoked).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_entra_error(
        &error,
        50_173,
        "The provided grant has expired due to it being revoked",
    );

    let (_, used) = session(&idp, None);
    refresh(&idp, &used).await;
    let (status, _, error) = refresh(&idp, &used).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_entra_error(&error, 70_000, "Provided grant is invalid or malformed.");

    let (_, _, error) = refresh(&idp, "not-a-token").await;
    assert_entra_error(&error, 70_000, "Provided grant is invalid or malformed.");
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_expired_refresh_tokens_expired_due_to_inactivity() {
    let idp = start(Config {
        refresh_ttl: Some(Duration::from_secs(1)),
        ..Config::for_flavor(Flavor::Entra)
    })
    .await;
    let (_, token) = session(&idp, None);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, _, error) = refresh(&idp, &token).await;
    assert_entra_error(
        &error,
        700_082,
        "The refresh token has expired due to inactivity. The token was issued on 20",
    );
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn google_refresh_keeps_the_refresh_token() {
    let idp = flavored(Flavor::Google).await;
    let (_, token) = session(&idp, None);
    assert!(token.starts_with("1//"), "{token}");
    for _ in 0..2 {
        let (status, _, tokens) = refresh(&idp, &token).await;
        assert_eq!(status, StatusCode::OK);
        assert!(tokens.get("refresh_token").is_none(), "{tokens}");
        assert!(tokens.get("refresh_token_expires_in").is_none(), "{tokens}");
        assert_eq!(tokens["expires_in"], 3599);
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["scope"], "openid profile offline_access");
        assert!(tokens["id_token"].is_string());
        let access = text(&tokens, "access_token");
        assert!(access.starts_with("ya29."), "{access}");
        assert!(idp.is_active(access));
    }
    assert!(
        idp.is_active(&token),
        "the presented refresh token stays valid"
    );

    let (status, _, tokens) = {
        let (_, online) = session(&idp, Some("profile"));
        refresh(&idp, &online).await
    };
    assert_eq!(status, StatusCode::OK);
    assert!(tokens.get("id_token").is_none(), "no openid, no ID token");
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 3);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn google_dead_sessions_are_token_expired_or_revoked() {
    let idp = flavored(Flavor::Google).await;
    let (_, token) = session(&idp, None);
    assert!(idp.revoke_grant_of(&token));
    assert_invalid_grant(
        &refresh(&idp, &token).await,
        "Token has been expired or revoked.",
    );
    assert_invalid_grant(
        &refresh(&idp, "1//unknown").await,
        "Token has been expired or revoked.",
    );
    assert_eq!(idp.counters().outcome("refresh_token", "invalid_grant"), 2);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keycloak_offline_tokens_say_refresh_expires_in_zero() {
    let idp = flavored(Flavor::Keycloak).await;
    let (_, offline) = session(&idp, Some("openid offline_access"));
    let (status, _, tokens) = refresh(&idp, &offline).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["refresh_expires_in"], 0);
    assert_eq!(tokens["not-before-policy"], 0);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    let session_state = text(&tokens, "session_state").to_owned();
    assert_eq!(session_state.len(), 36);
    let (_, _, again) = refresh(&idp, text(&tokens, "refresh_token")).await;
    assert_eq!(
        again["session_state"],
        session_state.as_str(),
        "one per grant"
    );

    let (_, online) = session(&idp, Some("openid profile"));
    let (status, _, tokens) = refresh(&idp, &online).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        tokens["refresh_expires_in"], 1800,
        "the default SSO Session Idle"
    );
    assert_ne!(tokens["session_state"], session_state.as_str());
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keycloak_dead_sessions_answer_in_keycloak_words() {
    let idp = flavored(Flavor::Keycloak).await;
    let (_, online) = session(&idp, Some("openid profile"));
    assert!(idp.revoke_grant_of(&online));
    assert_invalid_grant(&refresh(&idp, &online).await, "Session not active");

    let (_, first) = session(&idp, Some("openid offline_access"));
    let (_, _, tokens) = refresh(&idp, &first).await;
    let rotated = text(&tokens, "refresh_token").to_owned();
    assert_invalid_grant(
        &refresh(&idp, &first).await,
        "Maximum allowed refresh token reuse exceeded",
    );
    assert_invalid_grant(&refresh(&idp, &rotated).await, "Offline session not active");
    assert_invalid_grant(&refresh(&idp, "eyJ.x.y").await, "Invalid refresh token");
    assert_eq!(idp.counters().grants_revoked, 2);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_forgives_the_token_just_rotated_out_then_detects_reuse() {
    let idp = flavored(Flavor::Okta).await;
    let (_, first) = session(&idp, None);
    let (status, _, tokens) = refresh(&idp, &first).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert!(
        text(&tokens, "access_token").split('.').count() == 3,
        "a JWT"
    );
    let second = text(&tokens, "refresh_token").to_owned();

    let (status, _, forgiven) = refresh(&idp, &first).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "within the 30 s grace period: {forgiven}"
    );
    let forked = text(&forgiven, "refresh_token").to_owned();
    assert_ne!(
        forked, second,
        "new tokens, not those of the first exchange"
    );
    assert!(idp.is_active(&second) && idp.is_active(&forked));

    let (_, _, tokens) = refresh(&idp, &second).await;
    let third = text(&tokens, "refresh_token").to_owned();
    assert_invalid_grant(
        &refresh(&idp, &first).await,
        "The refresh token is invalid or expired.",
    );
    for token in [&third, &forked] {
        assert!(!idp.is_active(token), "reuse revoked the whole grant");
    }
    let counters = idp.counters();
    assert_eq!(counters.outcome("refresh_token", "ok"), 3);
    assert_eq!(counters.outcome("refresh_token", "invalid_grant"), 1);
    assert_eq!(counters.grants_revoked, 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn okta_detects_reuse_once_the_grace_period_has_run_out() {
    let idp = start(Config {
        reuse_grace: Some(Duration::from_secs(2)),
        ..Config::for_flavor(Flavor::Okta)
    })
    .await;
    let (_, first) = session(&idp, None);
    let (_, _, tokens) = refresh(&idp, &first).await;
    let second = text(&tokens, "refresh_token").to_owned();
    let (status, _, _) = refresh(&idp, &first).await;
    assert_eq!(status, StatusCode::OK, "within the grace period");

    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_invalid_grant(
        &refresh(&idp, &first).await,
        "The refresh token is invalid or expired.",
    );
    assert!(!idp.is_active(&second));
    assert_eq!(idp.counters().grants_revoked, 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auth0_reuse_interval_then_breach_detection_revokes_the_family() {
    let idp = flavored(Flavor::Auth0).await;
    let (_, first) = session(&idp, None);
    let (status, _, tokens) = refresh(&idp, &first).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 86_400);
    let second = text(&tokens, "refresh_token").to_owned();
    assert_invalid_grant(
        &refresh(&idp, &first).await,
        "Unknown or invalid refresh token.",
    );
    assert!(!idp.is_active(&second), "no reuse interval by default");
    idp.shutdown().await;

    let idp = start(Config {
        reuse_grace: Some(Duration::from_secs(30)),
        ..Config::for_flavor(Flavor::Auth0)
    })
    .await;
    let (_, first) = session(&idp, None);
    let (_, _, tokens) = refresh(&idp, &first).await;
    let second = text(&tokens, "refresh_token").to_owned();
    let (status, _, _) = refresh(&idp, &first).await;
    assert_eq!(status, StatusCode::OK, "within the reuse interval");
    let (_, _, tokens) = refresh(&idp, &second).await;
    let third = text(&tokens, "refresh_token").to_owned();
    assert_invalid_grant(
        &refresh(&idp, &first).await,
        "Unknown or invalid refresh token.",
    );
    assert!(
        !idp.is_active(&third),
        "the second-to-last token breaks the family"
    );
    assert_eq!(idp.counters().grants_revoked, 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_is_the_default_flavor() {
    assert_eq!(Config::default().flavor, Flavor::Standard);
    let idp = start(Config::default()).await;
    let (_, token) = session(&idp, None);
    assert!(idp.revoke_grant_of(&token));
    assert_invalid_grant(&refresh(&idp, &token).await, "the grant was revoked");
    idp.shutdown().await;
}
