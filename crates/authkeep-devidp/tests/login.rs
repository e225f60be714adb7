//! The login flows over real HTTP, driven as a browser and a client would: device
//! authorization with its verification page, and the authorization code grant with
//! its consent page, redirect and PKCE exchange.

use std::time::Duration;

use authkeep_devidp::{Config, DevIdp};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::Url;

const CLIENT: &str = "cli";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

async fn start(config: Config) -> DevIdp {
    DevIdp::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

/// A client that shows redirects instead of following them.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, value)
}

async fn page(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(
        response.headers().get(LOCATION).is_none(),
        "a page never redirects"
    );
    (status, response.text().await.unwrap())
}

async fn post(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
    http.post(url).form(form).send().await.unwrap()
}

/// The `name` and `value` of every `<input>` of a page, unescaped.
fn inputs(html: &str) -> Vec<(String, String)> {
    let attribute = |tag: &str, name: &str| {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + tag[start..].find('"')?;
        Some(
            tag[start..end]
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    html.split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            Some((attribute(tag, "name")?, attribute(tag, "value")?))
        })
        .collect()
}

fn query(url: &Url) -> Vec<(String, String)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(url: &Url, name: &str) -> Option<String> {
    query(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

async fn introspect(http: &reqwest::Client, idp: &DevIdp, token: &str) -> Value {
    let url = format!("{}/introspect", idp.issuer());
    json(post(http, &url, &[("token", token)]).await).await.1
}

async fn authorize_device(http: &reqwest::Client, idp: &DevIdp, scope: &str) -> Value {
    let url = format!("{}/device", idp.issuer());
    let (status, answer) =
        json(post(http, &url, &[("client_id", CLIENT), ("scope", scope)]).await).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

async fn poll(http: &reqwest::Client, idp: &DevIdp, device_code: &str) -> (StatusCode, Value) {
    let url = format!("{}/token", idp.issuer());
    let form = [
        ("grant_type", DEVICE_GRANT),
        ("device_code", device_code),
        ("client_id", CLIENT),
    ];
    json(post(http, &url, &form).await).await
}

fn error(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
    (answer.0, answer.1["error"].as_str().unwrap_or("(none)"))
}

#[tokio::test(flavor = "multi_thread")]
async fn device_flow_waits_slows_down_and_is_approved_through_the_page() {
    // A long interval, so that two polls in a row are surely too soon.
    let idp = start(Config {
        device_interval: Duration::from_secs(30),
        ..Config::default()
    })
    .await;
    let http = http();
    let issuer = idp.issuer();
    let answer = authorize_device(&http, &idp, "openid offline_access").await;
    let device_code = answer["device_code"].as_str().unwrap();
    let user_code = answer["user_code"].as_str().unwrap();
    assert_eq!(answer["verification_uri"], format!("{issuer}/device"));
    assert_eq!(answer["interval"], 30);
    assert_eq!(answer["expires_in"], 600);

    let pending = poll(&http, &idp, device_code).await;
    assert_eq!(
        error(&pending),
        (StatusCode::BAD_REQUEST, "authorization_pending")
    );
    let slow = poll(&http, &idp, device_code).await;
    assert_eq!(error(&slow), (StatusCode::BAD_REQUEST, "slow_down"));
    assert!(
        slow.1["error_description"]
            .as_str()
            .unwrap()
            .contains("35 s"),
        "the interval grew by 5 s: {}",
        slow.1
    );

    // The person opens the complete verification URI and presses Approve.
    let complete = answer["verification_uri_complete"].as_str().unwrap();
    let (status, html) = page(http.get(complete).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let fields = inputs(&html);
    assert!(
        fields.contains(&("user_code".to_owned(), user_code.to_owned())),
        "{html}"
    );
    assert!(fields.contains(&("user".to_owned(), "alice".to_owned())));
    assert!(
        html.contains("<form method=\"post\" action=\"/device\">"),
        "{html}"
    );
    let typed = user_code.replace('-', "").to_lowercase();
    let form = [
        ("user_code", typed.as_str()),
        ("user", "bob"),
        ("action", "approve"),
    ];
    let (status, done) = page(post(&http, &format!("{issuer}/device"), &form).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(done.contains("approved") && done.contains("bob"), "{done}");

    let (status, tokens) = poll(&http, &idp, device_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "openid offline_access");
    assert!(tokens["id_token"].is_string());
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let info = introspect(&http, &idp, access).await;
    assert_eq!(
        (info["sub"].as_str(), info["client_id"].as_str()),
        (Some("bob"), Some(CLIENT))
    );

    let reused = poll(&http, &idp, device_code).await;
    assert_eq!(error(&reused), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert_eq!(introspect(&http, &idp, refresh).await["active"], true);

    let counters = idp.counters();
    assert_eq!(counters.device_authorization_requests, 1);
    assert_eq!(counters.device_verification_requests, 2);
    for (outcome, count) in [
        ("authorization_pending", 1),
        ("slow_down", 1),
        ("ok", 1),
        ("invalid_grant", 1),
    ] {
        assert_eq!(counters.outcome(DEVICE_GRANT, outcome), count, "{outcome}");
    }
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_denied_through_the_page_is_access_denied() {
    let idp = start(Config::default()).await;
    let http = http();
    let answer = authorize_device(&http, &idp, "openid").await;
    let device_code = answer["device_code"].as_str().unwrap();
    let user_code = answer["user_code"].as_str().unwrap();
    let url = format!("{}/device", idp.issuer());
    let form = [("user_code", user_code), ("action", "deny")];
    let (status, done) = page(post(&http, &url, &form).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(done.contains("denied"), "{done}");
    let (status, again) = page(post(&http, &url, &form).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(again.contains("already answered"), "{again}");

    let denied = poll(&http, &idp, device_code).await;
    assert_eq!(error(&denied), (StatusCode::BAD_REQUEST, "access_denied"));
    assert!(!idp.approve_device(user_code, "alice"), "already answered");
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_device_code_is_expired_token_and_its_page_says_so() {
    // A lifetime of zero: expired the moment it is issued, no waiting needed.
    let idp = start(Config {
        device_code_ttl: Duration::ZERO,
        ..Config::default()
    })
    .await;
    let http = http();
    let answer = authorize_device(&http, &idp, "openid").await;
    let user_code = answer["user_code"].as_str().unwrap();
    let expired = poll(&http, &idp, answer["device_code"].as_str().unwrap()).await;
    assert_eq!(error(&expired), (StatusCode::BAD_REQUEST, "expired_token"));

    let url = format!("{}/device", idp.issuer());
    let form = [("user_code", user_code), ("action", "approve")];
    let (status, html) = page(post(&http, &url, &form).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("unknown or has expired"), "{html}");
    assert!(!idp.approve_device(user_code, "alice"));
    assert!(!idp.deny_device(user_code));
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_helpers_answer_device_authorizations() {
    let idp = start(Config::default()).await;
    let http = http();
    let answer = authorize_device(&http, &idp, "profile").await;
    let user_code = answer["user_code"].as_str().unwrap();
    let unknown = if user_code == "BCDF-GHJK" {
        "CDFG-HJKL"
    } else {
        "BCDF-GHJK"
    };
    assert!(!idp.approve_device(unknown, "alice"));
    assert!(
        !idp.approve_device(user_code, "a\nb"),
        "a control character"
    );
    assert!(idp.approve_device(&user_code.to_lowercase(), ""));
    let (status, tokens) = poll(&http, &idp, answer["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens.get("refresh_token").is_none(), "no offline_access");
    let info = introspect(&http, &idp, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(info["sub"], "alice", "an empty user name means alice");

    let other = authorize_device(&http, &idp, "profile").await;
    assert!(idp.deny_device(other["user_code"].as_str().unwrap()));
    let denied = poll(&http, &idp, other["device_code"].as_str().unwrap()).await;
    assert_eq!(error(&denied).1, "access_denied");
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn device_authorization_needs_a_client() {
    let idp = start(Config::default()).await;
    let url = format!("{}/device", idp.issuer());
    let answer = json(post(&http(), &url, &[("scope", "openid")]).await).await;
    assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, "invalid_request"));
    assert_eq!(idp.counters().device_authorization_requests, 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn echoed_user_codes_and_names_are_html_escaped() {
    let idp = start(Config::default()).await;
    let http = http();
    let url = format!("{}/device", idp.issuer());
    let evil = "\"><script>alert(1)</script>";
    let (status, html) = page(
        http.get(&url)
            .query(&[("user_code", evil)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert_eq!(inputs(&html)[0], ("user_code".to_owned(), evil.to_owned()));

    let form = [("user_code", "<b>BCDF</b>"), ("action", "approve")];
    let (status, html) = page(post(&http, &url, &form).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!html.contains("<b>BCDF"), "{html}");
    assert!(html.contains("&lt;b&gt;BCDF&lt;/b&gt;"), "{html}");

    let answer = authorize_device(&http, &idp, "openid").await;
    let user_code = answer["user_code"].as_str().unwrap();
    let form = [
        ("user_code", user_code),
        ("user", "<i>eve</i>"),
        ("action", "approve"),
    ];
    let (status, html) = page(post(&http, &url, &form).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("&lt;i&gt;eve&lt;/i&gt;") && !html.contains("<i>"),
        "{html}"
    );
    idp.shutdown().await;
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The query of an authorization request to `redirect_uri`, with `changes` applied
/// (an empty value removes the parameter).
fn authorize_url(idp: &DevIdp, redirect_uri: &str, changes: &[(&str, &str)]) -> Url {
    let challenge = challenge(VERIFIER);
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", CLIENT),
        ("redirect_uri", redirect_uri),
        ("scope", "openid offline_access"),
        ("state", "st<&>1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in changes {
        params.retain(|(k, _)| k != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    Url::parse_with_params(&format!("{}/authorize", idp.issuer()), &params).unwrap()
}

/// Opens the consent page and posts its form back with `action`, as a browser does:
/// the redirect it answers with.
async fn consent(http: &reqwest::Client, idp: &DevIdp, redirect_uri: &str, action: &str) -> Url {
    let url = authorize_url(idp, redirect_uri, &[]);
    let (status, html) = page(http.get(url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("action=\"/authorize\""), "{html}");
    let mut form = inputs(&html);
    assert!(
        form.contains(&("state".to_owned(), "st<&>1".to_owned())),
        "{form:?}"
    );
    for (name, value) in &mut form {
        if name == "user" {
            *value = "carol".to_owned();
        }
    }
    form.push(("action".to_owned(), action.to_owned()));
    let response = http
        .post(format!("{}/authorize", idp.issuer()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    Url::parse(response.headers()[LOCATION].to_str().unwrap()).unwrap()
}

async fn exchange(
    http: &reqwest::Client,
    idp: &DevIdp,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("client_id", CLIENT),
    ];
    json(post(http, &format!("{}/token", idp.issuer()), &form).await).await
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_code_flow_with_pkce_through_the_consent_page() {
    let idp = start(Config::default()).await;
    let http = http();
    let redirect_uri = "http://127.0.0.1:43210/callback";
    let location = consent(&http, &idp, redirect_uri, "approve").await;
    assert_eq!(
        (location.host_str(), location.port(), location.path()),
        (Some("127.0.0.1"), Some(43210), "/callback")
    );
    assert_eq!(param(&location, "state").as_deref(), Some("st<&>1"));
    assert_eq!(param(&location, "iss"), Some(idp.issuer()));
    let code = param(&location, "code").unwrap();

    let wrong_verifier = "W".repeat(43);
    let refused = exchange(&http, &idp, &code, redirect_uri, &wrong_verifier).await;
    assert_eq!(error(&refused), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let other_redirect = "http://127.0.0.1:43210/other";
    let refused = exchange(&http, &idp, &code, other_redirect, VERIFIER).await;
    assert_eq!(error(&refused), (StatusCode::BAD_REQUEST, "invalid_grant"));

    let (status, tokens) = exchange(&http, &idp, &code, redirect_uri, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert!(tokens["id_token"].is_string());
    let info = introspect(&http, &idp, access).await;
    assert_eq!(
        (info["active"].as_bool(), info["sub"].as_str()),
        (Some(true), Some("carol"))
    );

    let reused = exchange(&http, &idp, &code, redirect_uri, VERIFIER).await;
    assert_eq!(error(&reused), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert_eq!(introspect(&http, &idp, access).await["active"], false);
    assert_eq!(introspect(&http, &idp, refresh).await["active"], false);

    let counters = idp.counters();
    assert_eq!(counters.outcome("authorization_code", "ok"), 1);
    assert_eq!(counters.outcome("authorization_code", "invalid_grant"), 3);
    assert_eq!(counters.authorization_requests, 2);
    assert_eq!(counters.grants_revoked, 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn denying_consent_redirects_with_access_denied() {
    let idp = start(Config::default()).await;
    let location = consent(&http(), &idp, "http://localhost:9/cb?keep=1", "deny").await;
    assert_eq!(location.host_str(), Some("localhost"));
    assert_eq!(param(&location, "keep").as_deref(), Some("1"));
    assert_eq!(param(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&location, "state").as_deref(), Some("st<&>1"));
    assert_eq!(param(&location, "iss"), Some(idp.issuer()));
    assert_eq!(param(&location, "code"), None);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_redirect_uri_or_client_shows_a_page_and_never_redirects() {
    let idp = start(Config::default()).await;
    let http = http();
    for (redirect_uri, changes) in [
        ("http://evil.example/cb", vec![]),
        ("https://127.0.0.1/cb", vec![]),
        ("http://127.0.0.1:9/cb", vec![("client_id", "")]),
    ] {
        let url = authorize_url(&idp, redirect_uri, &changes);
        let (status, html) = page(http.get(url).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{redirect_uri}");
        assert!(html.contains("Sign-in request refused"), "{html}");
        assert!(!html.contains("<form"), "{html}");
    }
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_authorization_errors_are_redirected_to_the_client() {
    let idp = start(Config::default()).await;
    let http = http();
    let redirect_uri = "http://[::1]:9/cb";
    for (changes, expected) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
    ] {
        let url = authorize_url(&idp, redirect_uri, &changes);
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FOUND, "{changes:?}");
        let location = Url::parse(response.headers()[LOCATION].to_str().unwrap()).unwrap();
        assert_eq!(location.host_str(), Some("[::1]"));
        assert_eq!(
            param(&location, "error").as_deref(),
            Some(expected),
            "{changes:?}"
        );
        assert_eq!(param(&location, "state").as_deref(), Some("st<&>1"));
        assert_eq!(param(&location, "iss"), Some(idp.issuer()));
    }
    idp.shutdown().await;
}
