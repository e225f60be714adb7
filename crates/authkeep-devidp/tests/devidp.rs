//! End-to-end behaviour of the development identity provider over real HTTP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authkeep_devidp::{ClientConfig, Config, DevIdp, FaultKind, Faults, SessionRequest};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, DATE, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Value, json};

const DEMO: &str = "authkeep-demo";

async fn start(config: Config) -> DevIdp {
    DevIdp::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn confidential() -> Config {
    Config {
        clients: vec![ClientConfig::new("svc", "s3cret")],
        ..Config::default()
    }
}

fn session(idp: &DevIdp) -> (String, String) {
    session_for(idp, SessionRequest::default())
}

fn session_for(idp: &DevIdp, request: SessionRequest) -> (String, String) {
    let response = idp.create_session(&request);
    (
        response["access_token"].as_str().unwrap().to_owned(),
        response["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

async fn token_request(
    http: &reqwest::Client,
    idp: &DevIdp,
    form: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{}/token", idp.issuer()))
        .form(form)
        .send()
        .await
}

async fn refresh(http: &reqwest::Client, idp: &DevIdp, refresh_token: &str) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", DEMO),
    ];
    body(token_request(http, idp, &form).await.unwrap()).await
}

async fn introspect(http: &reqwest::Client, idp: &DevIdp, token: &str) -> Value {
    let response = http
        .post(format!("{}/introspect", idp.issuer()))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let (status, json) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    json
}

async fn post_json(http: &reqwest::Client, url: String, json: &Value) -> reqwest::Response {
    http.post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(json.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_document_names_the_endpoints_and_capabilities() {
    let idp = start(Config::default()).await;
    let issuer = idp.issuer();
    assert_eq!(issuer, format!("http://127.0.0.1:{}", idp.addr().port()));

    let response = http()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key(DATE));
    let (status, doc) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["issuer"], issuer);
    for (key, path) in [
        ("token_endpoint", "/token"),
        ("introspection_endpoint", "/introspect"),
        ("userinfo_endpoint", "/userinfo"),
        ("revocation_endpoint", "/revoke"),
        ("jwks_uri", "/jwks"),
        ("authorization_endpoint", "/authorize"),
        ("device_authorization_endpoint", "/device"),
    ] {
        assert_eq!(doc[key], format!("{issuer}{path}"), "{key}");
    }
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["none", "client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["HS256"])
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    let grants = doc["grant_types_supported"].as_array().unwrap();
    for grant in [
        "refresh_token",
        "client_credentials",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        assert!(grants.contains(&json!(grant)), "{grant}");
    }
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert!(doc["response_types_supported"].is_array());
    assert!(doc["subject_types_supported"].is_array());

    let jwks = http().get(format!("{issuer}/jwks")).send().await.unwrap();
    assert_eq!(body(jwks).await, (StatusCode::OK, json!({ "keys": [] })));
    let authorize = http()
        .get(format!("{issuer}/authorize"))
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), StatusCode::BAD_REQUEST, "no client_id");

    assert_eq!(idp.counters().discovery_requests, 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_the_refresh_token() {
    let idp = start(Config::default()).await;
    let http = http();
    let (_, old) = session(&idp);

    let response = token_request(
        &http,
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &old),
            ("client_id", DEMO),
        ],
    )
    .await
    .unwrap();
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    assert!(response.headers().contains_key(DATE));
    let (status, tokens) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    assert_eq!(tokens["scope"], "openid profile offline_access");
    assert!(tokens["id_token"].is_string());
    let new = tokens["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);

    assert_eq!(
        introspect(&http, &idp, &old).await,
        json!({ "active": false })
    );
    let info = introspect(&http, &idp, new).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], DEMO);
    let access = introspect(&http, &idp, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(access["active"], true);
    assert_eq!(access["sub"], "alice");

    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 1);
    assert_eq!(idp.counters().introspection_requests, 3);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reusing_a_rotated_refresh_token_revokes_the_grant() {
    let idp = start(Config::default()).await;
    let http = http();
    let (first_access, old) = session(&idp);
    let (status, tokens) = refresh(&http, &idp, &old).await;
    assert_eq!(status, StatusCode::OK);
    let new_refresh = tokens["refresh_token"].as_str().unwrap();

    let (status, error) = refresh(&http, &idp, &old).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_grant");
    assert!(error["error_description"].is_string());

    assert_eq!(
        introspect(&http, &idp, &first_access).await["active"],
        false
    );
    assert!(!idp.is_active(tokens["access_token"].as_str().unwrap()));
    assert!(!idp.is_active(new_refresh));
    let counters = idp.counters();
    assert_eq!(counters.grants_revoked, 1);
    assert_eq!(counters.outcome("refresh_token", "invalid_grant"), 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_are_bound_to_their_client_and_scope() {
    let idp = start(Config::default()).await;
    let http = http();
    let (_, token) = session(&idp);

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token.as_str()),
        ("client_id", "someone-else"),
    ];
    let (status, error) = body(token_request(&http, &idp, &form).await.unwrap()).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token.as_str()),
        ("client_id", DEMO),
        ("scope", "openid admin"),
    ];
    let (status, error) = body(token_request(&http, &idp, &form).await.unwrap()).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_scope"))
    );

    assert!(idp.is_active(&token), "refused requests consume nothing");
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn confidential_clients_authenticate_by_basic_or_post() {
    let idp = start(confidential()).await;
    let http = http();
    let (_, token) = session_for(
        &idp,
        SessionRequest {
            client_id: "svc".to_owned(),
            ..SessionRequest::default()
        },
    );
    let url = format!("{}/token", idp.issuer());

    let response = http
        .post(&url)
        .basic_auth("svc", Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let (status, error) = body(response).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token.as_str()),
        ("client_id", "svc"),
        ("client_secret", "wrong"),
    ];
    let (status, error) = body(token_request(&http, &idp, &form).await.unwrap()).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token.as_str()),
        ("client_id", "svc"),
    ];
    let (status, _) = body(token_request(&http, &idp, &form).await.unwrap()).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a missing secret is refused"
    );
    assert!(
        idp.is_active(&token),
        "failed authentication consumes nothing"
    );

    let response = http
        .post(&url)
        .basic_auth("svc", Some("s3cret"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
        .send()
        .await
        .unwrap();
    let (status, tokens) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    let token = tokens["refresh_token"].as_str().unwrap();

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", "svc"),
        ("client_secret", "s3cret"),
    ];
    let (status, _) = body(token_request(&http, &idp, &form).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let counters = idp.counters();
    assert_eq!(counters.outcome("refresh_token", "invalid_client"), 3);
    assert_eq!(counters.outcome("refresh_token", "ok"), 2);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_serve_confidential_clients_only() {
    let idp = start(confidential()).await;
    let http = http();
    let response = http
        .post(format!("{}/token", idp.issuer()))
        .basic_auth("svc", Some("s3cret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "read write"),
        ])
        .send()
        .await
        .unwrap();
    let (status, tokens) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["scope"], "read write");
    assert!(tokens.get("refresh_token").is_none());
    let info = introspect(&http, &idp, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (&info["active"], &info["sub"]),
        (&json!(true), &json!("svc"))
    );

    let form = [("grant_type", "client_credentials"), ("client_id", DEMO)];
    let (status, error) = body(token_request(&http, &idp, &form).await.unwrap()).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::BAD_REQUEST, &json!("unauthorized_client"))
    );
    let counters = idp.counters();
    assert_eq!(counters.outcome("client_credentials", "ok"), 1);
    assert_eq!(
        counters.outcome("client_credentials", "unauthorized_client"),
        1
    );
    idp.shutdown().await;
}

async fn refresh_concurrently(idp: &DevIdp, token: &str, n: usize) -> Vec<(StatusCode, Value)> {
    let http = http();
    let issuer = idp.issuer();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, url, token) = (http.clone(), format!("{issuer}/token"), token.to_owned());
            tokio::spawn(async move {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", DEMO),
                ];
                body(http.post(url).form(&form).send().await.unwrap()).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_latency_lets_concurrent_refreshes_of_one_token_all_succeed() {
    let idp = start(Config {
        parallel_latency: Some(Duration::from_millis(500)),
        ..Config::default()
    })
    .await;
    let (_, token) = session(&idp);

    let results = refresh_concurrently(&idp, &token, 8).await;
    assert!(
        results.iter().all(|(status, _)| *status == StatusCode::OK),
        "{results:?}"
    );
    let mut new_tokens: Vec<&str> = results
        .iter()
        .map(|(_, tokens)| tokens["refresh_token"].as_str().unwrap())
        .collect();
    assert!(
        new_tokens.iter().all(|t| idp.is_active(t)),
        "the grant split in eight"
    );
    new_tokens.sort_unstable();
    new_tokens.dedup();
    assert_eq!(new_tokens.len(), 8);
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 8);
    assert!(!idp.is_active(&token));

    let (status, error) = refresh(&http(), &idp, &token).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );
    assert!(
        !idp.is_active(new_tokens[0]),
        "later reuse still revokes the grant"
    );
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serialised_refreshes_of_one_token_let_exactly_one_win() {
    let idp = start(Config::default()).await;
    let (_, token) = session(&idp);

    let results = refresh_concurrently(&idp, &token, 8).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let invalid = results
        .iter()
        .filter(|(s, body)| *s == StatusCode::BAD_REQUEST && body["error"] == "invalid_grant")
        .count();
    assert_eq!((ok, invalid), (1, 7), "{results:?}");
    let counters = idp.counters();
    assert_eq!(counters.outcome("refresh_token", "ok"), 1);
    assert_eq!(counters.outcome("refresh_token", "invalid_grant"), 7);
    assert_eq!(
        counters.grants_revoked, 1,
        "the losers' reuse revoked the grant"
    );
    idp.shutdown().await;
}

fn fault(kind: FaultKind) -> Faults {
    Faults {
        kind: Some(kind),
        ..Faults::default()
    }
}

async fn faulted_refresh(idp: &DevIdp, kind: FaultKind) -> (String, reqwest::Response) {
    let (_, token) = session(idp);
    idp.set_faults(fault(kind));
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token.as_str()),
        ("client_id", DEMO),
    ];
    let response = token_request(&http(), idp, &form).await.unwrap();
    (token, response)
}

#[tokio::test(flavor = "multi_thread")]
async fn status_faults_answer_with_their_status_and_consume_nothing() {
    let idp = start(Config::default()).await;
    let kind = FaultKind::Status {
        status: 503,
        retry_after: Some("30".to_owned()),
        body: None,
    };
    let (token, response) = faulted_refresh(&idp, kind).await;
    assert_eq!(response.headers()[RETRY_AFTER], "30");
    let (status, error) = body(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error["error"], "temporarily_unavailable");
    assert!(idp.is_active(&token));
    assert_eq!(idp.counters().outcome("refresh_token", "fault"), 1);

    idp.set_faults(Faults::default());
    let (status, _) = refresh(&http(), &idp, &token).await;
    assert_eq!(status, StatusCode::OK);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_connection_gives_a_connection_error_not_a_response() {
    let idp = start(Config::default()).await;
    let (_, token) = session(&idp);
    idp.set_faults(fault(FaultKind::DropConnection));
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token.as_str()),
        ("client_id", DEMO),
    ];
    let error = token_request(&http(), &idp, &form)
        .await
        .expect_err("the connection must fail");
    assert!(!error.is_timeout(), "{error:?}");
    assert!(
        error.is_request() || error.is_connect() || error.is_body(),
        "{error:?}"
    );
    assert!(error.status().is_none());
    assert_eq!(idp.counters().outcome("refresh_token", "fault"), 1);
    assert!(idp.is_active(&token));
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_html_and_oversized_faults_send_what_they_say() {
    let idp = start(Config::default()).await;

    let (_, response) = faulted_refresh(&idp, FaultKind::Garbage).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.unwrap();
    assert!(!bytes.is_empty());
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());

    let (_, response) = faulted_refresh(&idp, FaultKind::Html { status: 502 }).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.text().await.unwrap().contains("<html>"));

    let (_, response) = faulted_refresh(&idp, FaultKind::Oversized { bytes: 200_000 }).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), 200_000);
    assert!(bytes.starts_with(b"{\"access_token\":"));

    assert_eq!(idp.counters().outcome("refresh_token", "fault"), 3);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_error_faults_send_json_or_form_errors() {
    let idp = start(Config::default()).await;

    let kind = FaultKind::OAuthError {
        status: 200,
        error: "invalid_grant".to_owned(),
        description: Some("quirky provider".to_owned()),
    };
    let (token, response) = faulted_refresh(&idp, kind).await;
    let (status, error) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        error,
        json!({ "error": "invalid_grant", "error_description": "quirky provider" })
    );
    assert!(
        idp.is_active(&token),
        "a faked invalid_grant revokes nothing"
    );

    let kind = FaultKind::OAuthError {
        status: 401,
        error: "invalid_client".to_owned(),
        description: None,
    };
    let (_, response) = faulted_refresh(&idp, kind).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(WWW_AUTHENTICATE));

    let kind = FaultKind::FormEncodedError {
        status: 400,
        error: "invalid_grant".to_owned(),
    };
    let (_, response) = faulted_refresh(&idp, kind).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(response.text().await.unwrap(), "error=invalid_grant");
    idp.shutdown().await;
}

/// Whether `needle` occurs in `text` covering characters 299 and 300, so that a cut
/// after 300 characters would halve it.
fn straddles_character_300(text: &str, needle: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let needle: Vec<char> = needle.chars().collect();
    (0..300).any(|start| {
        start + needle.len() > 300 && text.get(start..start + needle.len()) == Some(&needle[..])
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_secrets_sends_back_what_the_request_carried() {
    use base64::Engine as _;
    let idp = start(confidential()).await;
    let svc = SessionRequest {
        client_id: "svc".to_owned(),
        ..SessionRequest::default()
    };
    let (_, token) = session_for(&idp, svc);
    idp.set_faults(fault(FaultKind::EchoSecrets { status: 400 }));
    let url = format!("{}/token", idp.issuer());
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token.as_str()),
    ];

    let response = http()
        .post(&url)
        .basic_auth("svc", Some("s3cret"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let (status, error) = body(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], format!("invalid_request{token}"));
    let description = error["error_description"].as_str().unwrap();
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("svc:s3cret")
    );
    assert!(description.chars().count() >= 400, "{description:?}");
    assert!(description.starts_with(&token), "{description:?}");
    assert!(description.ends_with(&authorization), "{description:?}");
    assert_eq!(description.matches(token.as_str()).count(), 4);
    assert_eq!(description.matches(authorization.as_str()).count(), 3);
    assert!(
        straddles_character_300(description, &token),
        "{description:?}"
    );
    for needle in ["\u{1b}[31m", "\u{1b}]0;pwned\u{7}", "\n", "\t"] {
        assert!(
            description.contains(needle),
            "{needle:?} in {description:?}"
        );
    }

    let mut posted = form.to_vec();
    posted.extend([("client_id", "svc"), ("client_secret", "s3cret")]);
    let response = http().post(&url).form(&posted).send().await.unwrap();
    let (_, error) = body(response).await;
    let description = error["error_description"].as_str().unwrap();
    assert_eq!(description.matches("s3cret").count(), 3, "{description:?}");
    assert!(
        straddles_character_300(description, &token),
        "{description:?}"
    );

    assert!(idp.is_active(&token), "an echo consumes nothing");
    assert_eq!(idp.counters().outcome("refresh_token", "fault"), 2);
    idp.shutdown().await;
}

/// The claims of a JWT, unverified.
fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_access_token_is_a_normal_refresh_with_an_expired_jwt() {
    let idp = start(Config::default()).await;
    let (_, old) = session(&idp);
    idp.set_faults(fault(FaultKind::ExpiredAccessToken));
    let (status, response) = refresh(&http(), &idp, &old).await;
    assert_eq!(status, StatusCode::OK);
    assert!(response.get("expires_in").is_none(), "{response}");

    let access = response["access_token"].as_str().unwrap();
    let claims = jwt_claims(access);
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp, iat - 60);
    assert!(exp < jiff::Timestamp::now().as_second());
    assert!(!idp.is_active(access));

    let new = response["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(
        !idp.is_active(&old),
        "the presented refresh token is consumed"
    );
    assert!(idp.is_active(new));
    let counters = idp.counters();
    assert_eq!(counters.outcome("refresh_token", "ok"), 1);
    assert_eq!(counters.outcome("refresh_token", "fault"), 0);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_metadata_names_a_token_endpoint_longer_than_asked() {
    let idp = start(Config::default()).await;
    let issuer = idp.issuer();
    idp.set_faults(fault(FaultKind::HugeMetadata { bytes: 70_000 }));
    let response = http()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    let (status, document) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["issuer"], issuer);
    let endpoint = document["token_endpoint"].as_str().unwrap();
    assert!(endpoint.len() > 70_000, "{} bytes", endpoint.len());
    assert!(endpoint.starts_with(&format!("{issuer}/token/")));
    assert_eq!(document["jwks_uri"], format!("{issuer}/jwks"));

    let (_, token) = session(&idp);
    let (status, _) = refresh(&http(), &idp, &token).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "token requests are answered normally"
    );
    let counters = idp.counters();
    assert_eq!(counters.outcome("refresh_token", "ok"), 1);
    assert_eq!(counters.outcome("refresh_token", "fault"), 0);
    assert_eq!(counters.discovery_requests, 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hang_outlasts_the_client_timeout_and_shutdown_still_completes() {
    let idp = start(Config::default()).await;
    let (_, token) = session(&idp);
    idp.set_faults(fault(FaultKind::Hang));
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token.as_str()),
        ("client_id", DEMO),
    ];
    let error = token_request(&impatient, &idp, &form)
        .await
        .expect_err("a hanging provider must time out");
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(idp.counters().outcome("refresh_token", "fault"), 1);

    // A second hanging request, still open while the provider shuts down.
    let url = format!("{}/token", idp.issuer());
    let pending = tokio::spawn(async move {
        http()
            .post(url)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
    });
    let until_counted = async {
        while idp.counters().outcome("client_credentials", "fault") == 0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), until_counted)
        .await
        .expect("the second request arrives");
    tokio::time::timeout(Duration::from_secs(5), idp.shutdown())
        .await
        .expect("shutdown cuts hanging requests");
    assert!(
        pending.await.unwrap().is_err(),
        "the hanging request never gets an answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_delays_answers() {
    let idp = start(Config::default()).await;
    let (_, token) = session(&idp);
    idp.set_faults(Faults {
        latency_ms: 250,
        ..Faults::default()
    });
    let started = Instant::now();
    let (status, _) = refresh(&http(), &idp, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_faults_only_when_included() {
    let idp = start(Config::default()).await;
    let url = format!("{}/.well-known/openid-configuration", idp.issuer());
    let kind = FaultKind::Status {
        status: 500,
        retry_after: None,
        body: None,
    };
    idp.set_faults(fault(kind.clone()));
    assert_eq!(
        http().get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );

    idp.set_faults(Faults {
        include_discovery: true,
        ..fault(kind)
    });
    let (status, error) = body(http().get(&url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error["error"], "server_error");
    assert_eq!(idp.counters().discovery_requests, 2);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_sets_faults_creates_sessions_and_reports_counters() {
    let idp = start(Config {
        refresh_ttl: Some(Duration::from_secs(3600)),
        ..Config::default()
    })
    .await;
    let http = http();
    let issuer = idp.issuer();

    let response = post_json(
        &http,
        format!("{issuer}/admin/sessions"),
        &json!({ "user": "bob", "access_ttl_secs": 60 }),
    )
    .await;
    let (status, tokens) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["expires_in"], 60);
    assert_eq!(tokens["refresh_expires_in"], 3600);
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&http, &idp, refresh_token).await["sub"], "bob");

    let empty = http
        .post(format!("{issuer}/admin/sessions"))
        .send()
        .await
        .unwrap();
    let (status, tokens) = body(empty).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        introspect(&http, &idp, tokens["access_token"].as_str().unwrap()).await["sub"],
        "alice"
    );

    let plan = json!({ "kind": { "kind": "status", "status": 429, "retry_after": "7" } });
    let response = post_json(&http, format!("{issuer}/admin/faults"), &plan).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = {
        let response = token_request(
            &http,
            &idp,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
        .unwrap();
        (response.status(), ())
    };
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    let bad = json!({ "fraction": 2.0 });
    let response = post_json(&http, format!("{issuer}/admin/faults"), &bad).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = http
        .delete(format!("{issuer}/admin/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = refresh(&http, &idp, refresh_token).await;
    assert_eq!(status, StatusCode::OK);

    let response = post_json(
        &http,
        format!("{issuer}/admin/revoke"),
        &json!({ "token": refresh_token }),
    )
    .await;
    assert_eq!(
        body(response).await,
        (StatusCode::OK, json!({ "revoked": true }))
    );
    let response = post_json(
        &http,
        format!("{issuer}/admin/revoke"),
        &json!({ "token": "x" }),
    )
    .await;
    assert_eq!(
        body(response).await,
        (StatusCode::OK, json!({ "revoked": false }))
    );

    let response = http
        .get(format!("{issuer}/admin/counters"))
        .send()
        .await
        .unwrap();
    let (status, counters) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(counters, serde_json::to_value(idp.counters()).unwrap());
    assert_eq!(
        counters["token_requests"]["refresh_token"],
        json!({ "fault": 1, "ok": 1 })
    );
    assert_eq!(counters["grants_revoked"], 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_token_requests_are_counted_by_their_error() {
    let idp = start(Config::default()).await;
    let http = http();

    let (status, error) = body(
        token_request(&http, &idp, &[("client_id", DEMO)])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );

    let form = [("grant_type", "password"), ("username", "alice")];
    let (status, error) = body(token_request(&http, &idp, &form).await.unwrap()).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::BAD_REQUEST, &json!("unsupported_grant_type"))
    );

    let form = [("grant_type", "refresh_token"), ("client_id", DEMO)];
    let (status, error) = body(token_request(&http, &idp, &form).await.unwrap()).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );

    let huge = "x".repeat(100 * 1024);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", huge.as_str()),
    ];
    let response = token_request(&http, &idp, &form).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let counters = idp.counters();
    assert_eq!(counters.outcome("unknown", "invalid_request"), 2);
    assert_eq!(counters.outcome("password", "unsupported_grant_type"), 1);
    assert_eq!(counters.outcome("refresh_token", "invalid_request"), 1);
    assert_eq!(counters.token_requests_for("refresh_token"), 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_and_revocation_follow_the_grant() {
    let idp = start(Config::default()).await;
    let http = http();
    let (access, refresh_token) = session(&idp);
    let userinfo = format!("{}/userinfo", idp.issuer());

    let response = http
        .get(&userinfo)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let (status, claims) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claims["sub"], "alice");
    assert!(claims["name"].is_string());

    let response = http
        .post(format!("{}/revoke", idp.issuer()))
        .form(&[
            ("token", refresh_token.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = http
        .post(format!("{}/revoke", idp.issuer()))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let response = http
        .get(&userinfo)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token""#
    );
    assert!(!idp.is_active(&refresh_token));

    let counters = idp.counters();
    assert_eq!(
        (counters.userinfo_requests, counters.revocation_requests),
        (2, 2)
    );
    assert_eq!(counters.grants_revoked, 1);
    idp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn non_loopback_addresses_are_refused() {
    for addr in ["0.0.0.0:0", "192.0.2.1:0", "[::]:0"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let error = DevIdp::start(addr, Config::default()).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{addr}");
        assert!(error.to_string().contains("loopback"), "{error}");
    }
    match DevIdp::start("[::1]:0".parse().unwrap(), Config::default()).await {
        Ok(idp) => {
            assert!(
                idp.issuer().starts_with("http://[::1]:"),
                "{}",
                idp.issuer()
            );
            idp.shutdown().await;
        }
        // No IPv6 on this host; the address itself was accepted.
        Err(error) => assert_ne!(error.kind(), std::io::ErrorKind::InvalidInput),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_frees_the_port_even_with_idle_connections() {
    let idp = start(Config::default()).await;
    let addr = idp.addr();
    let http = http();
    let url = format!("{}/.well-known/openid-configuration", idp.issuer());
    assert_eq!(
        http.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );

    tokio::time::timeout(Duration::from_secs(5), idp.shutdown())
        .await
        .expect("shutdown completes with a keep-alive connection open");
    assert!(http.get(&url).send().await.is_err());
    tokio::net::TcpListener::bind(addr)
        .await
        .expect("the port is free again");
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_sessions_are_json_lines_of_distinct_numbered_grants_with_a_report() {
    let idp = start(Config::default()).await;
    let http = http();
    let url = format!("{}/admin/sessions/bulk", idp.issuer());

    let response = post_json(
        &http,
        url.clone(),
        &json!({ "count": 3, "user": "bob{n}@example.com", "access_ttl_secs": 90 }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/x-ndjson");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let text = response.text().await.unwrap();
    let sessions: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(sessions.len(), 3);
    for (n, session) in sessions.iter().enumerate() {
        assert_eq!(session["expires_in"], 90);
        let access = session["access_token"].as_str().unwrap();
        assert_eq!(
            introspect(&http, &idp, access).await["sub"],
            format!("bob{n}@example.com")
        );
    }
    let refresh_token = |n: usize| sessions[n]["refresh_token"].as_str().unwrap().to_owned();

    // Grant 0 refreshes twice, then its first token comes back: reuse.
    let (status, first) = refresh(&http, &idp, &refresh_token(0)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = refresh(&http, &idp, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(idp.is_active(&refresh_token(1)), "grants are separate");
    let report = |http: reqwest::Client| {
        let url = format!("{}/admin/grants", idp.issuer());
        async move {
            let text = http.get(url).send().await.unwrap().text().await.unwrap();
            text.lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let grants = report(http.clone()).await;
    assert_eq!(grants.len(), 3);
    assert_eq!(
        grants[0],
        json!({"user": "bob0@example.com", "client_id": DEMO, "refreshes": 2,
               "min_gap_secs": 0, "max_gap_secs": 0, "revoked": false})
    );
    assert_eq!(grants[1]["refreshes"], 0);
    assert_eq!(grants[1]["min_gap_secs"], Value::Null);
    let (status, _) = refresh(&http, &idp, &refresh_token(0)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let grants = report(http.clone()).await;
    assert_eq!(grants[0]["revoked"], true);
    assert_eq!(grants[2]["revoked"], false);
    assert!(
        !grants
            .iter()
            .any(|g| g.to_string().contains(&refresh_token(2))),
        "no token in the report"
    );

    for bad in [
        json!({}),
        json!({ "count": 0 }),
        json!({ "count": 1_000_001 }),
    ] {
        let (status, error) = body(post_json(&http, url.clone(), &bad).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error["error"], "invalid_request");
    }
    let (status, _) = body(post_json(&http, url, &json!({ "count": "many" })).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    idp.shutdown().await;
}
