//! The device authorization grant (RFC 8628), without I/O: the request to the
//! device authorization endpoint and the reading of its answer (the user code and
//! verification URI shown to people, the device code kept secret), then the
//! polling requests to the token endpoint and what each answer means for the
//! polling loop (keep waiting, slow down, granted, denied, expired, failed).
//! Sending, waiting and showing the code to the user are the caller's.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};
use url::Url;

use super::response::DESCRIPTION_MAX_CHARS;
use super::{Cause, ProviderFailure, Secrets, sanitize};
use crate::error::FailureClass;
use crate::secret::DeviceCode;
use crate::session::Client;
use crate::token::{TokenResponse, numeric_seconds, saturating_add};

/// The grant type of the polling request (RFC 8628 §3.4).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The polling interval when the provider names none (RFC 8628 §3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest polling interval used, whatever the provider says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest polling interval used, whatever the provider says.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// What `slow_down` adds to the polling interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The longest lifetime of a device code believed, in seconds (one day).
pub const MAX_EXPIRES_IN_SECS: i64 = 86_400;
/// The longest user code kept, in characters.
pub const USER_CODE_MAX_CHARS: usize = 64;
/// The longest verification URI accepted, in bytes.
pub const VERIFICATION_URI_MAX_BYTES: usize = 2048;

/// Builds the device authorization request (RFC 8628 §3.1): a form POST with the
/// scope when there is one, then the `extra` pairs (an `audience`, say). Fails
/// only for an endpoint URL that a request cannot carry.
pub fn authorization_request(
    endpoint: &Url,
    client: &Client,
    scope: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<Request<Vec<u8>>, String> {
    let mut params: Vec<(&str, &str)> = Vec::with_capacity(extra.len() + 1);
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        params.push(("scope", scope));
    }
    params.extend_from_slice(extra);
    super::form_post(endpoint, client, params)
}

/// What the device authorization endpoint granted (RFC 8628 §3.2). Its `Debug`
/// never shows the device code.
#[derive(Clone, Debug)]
pub struct DeviceAuthorization {
    /// The code the client polls with; secret.
    pub device_code: DeviceCode,
    /// The code the user types, without control characters.
    pub user_code: String,
    /// Where the user goes (https, or http on loopback).
    pub verification_uri: String,
    /// The verification URI with the user code in it, when the provider sent one.
    pub verification_uri_complete: Option<String>,
    /// When the device code expires (at most one day after the answer).
    pub expires_at: Timestamp,
    /// How long to wait between polls (between 1 and 60 seconds; 5 by default).
    pub interval: Duration,
}

/// Interprets the device authorization endpoint's answer (RFC 8628 §3.2).
/// `verification_url` (Google) is read as `verification_uri`. Errors and
/// non-2xx answers are classified as [`super::parse_token_response`] does; an
/// answer lacking what must be shown to the user is transient, a verification URI
/// that is not https (or http on loopback) a misconfiguration.
pub fn parse_authorization(
    response: &Response<Vec<u8>>,
    now: Timestamp,
    secrets: &Secrets,
) -> Result<DeviceAuthorization, ProviderFailure> {
    let status = response.status();
    let fields = json_object(response.body());
    let Some(fields) = fields.filter(|f| status.is_success() && !f.contains_key("error")) else {
        // An error, or no JSON object: the token response reading classifies it.
        return Err(match super::parse_token_response(response, now, secrets) {
            Err(failure) => failure,
            Ok(_) => failure(
                status,
                FailureClass::Transient,
                "the device authorization answer lacks device_code",
            ),
        });
    };
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::trim);

    let device_code = text("device_code")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            failure(
                status,
                FailureClass::Transient,
                "the device authorization answer lacks device_code",
            )
        })?;
    let user_code = text("user_code")
        .map(|s| sanitize(s, &Secrets::new(), USER_CODE_MAX_CHARS))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            failure(
                status,
                FailureClass::Transient,
                "the device authorization answer lacks user_code",
            )
        })?;
    let verification_uri = text("verification_uri")
        .or_else(|| text("verification_url"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            failure(
                status,
                FailureClass::Transient,
                "the device authorization answer lacks verification_uri",
            )
        })?;
    let verification_uri = checked_uri(status, verification_uri, secrets)?;
    let verification_uri_complete = match text("verification_uri_complete")
        .or_else(|| text("verification_url_complete"))
        .filter(|s| !s.is_empty())
    {
        Some(uri) => Some(checked_uri(status, uri, secrets)?),
        None => None,
    };
    let expires_in = fields
        .get("expires_in")
        .and_then(numeric_seconds)
        .filter(|secs| *secs > 0)
        .ok_or_else(|| {
            failure(
                status,
                FailureClass::Transient,
                "the device authorization answer lacks a positive expires_in",
            )
        })?
        .min(MAX_EXPIRES_IN_SECS);
    let interval = fields
        .get("interval")
        .and_then(numeric_seconds)
        .map(|secs| Duration::from_secs(secs.max(0).unsigned_abs()))
        .unwrap_or(DEFAULT_INTERVAL)
        .clamp(MIN_INTERVAL, MAX_INTERVAL);
    Ok(DeviceAuthorization {
        device_code: DeviceCode::new(device_code),
        user_code,
        verification_uri,
        verification_uri_complete,
        expires_at: saturating_add(now, SignedDuration::from_secs(expires_in)),
        interval,
    })
}

/// Builds a polling request to the token endpoint (RFC 8628 §3.4). Fails only for
/// an endpoint URL that a request cannot carry.
pub fn token_request(
    token_endpoint: &Url,
    client: &Client,
    device_code: &DeviceCode,
) -> Result<Request<Vec<u8>>, String> {
    super::form_post(
        token_endpoint,
        client,
        vec![
            ("grant_type", GRANT_TYPE),
            ("device_code", device_code.expose_secret()),
        ],
    )
}

/// The secrets [`token_request`] carries, for redacting what the provider answers.
pub fn secrets(client: &Client, device_code: &DeviceCode) -> Secrets {
    let mut secrets = super::client_secrets(client);
    secrets.add(device_code.expose_secret());
    secrets
}

/// What one polling answer means (RFC 8628 §3.5).
#[derive(Debug)]
#[non_exhaustive]
pub enum Poll {
    /// The user has not finished yet (`authorization_pending`): poll again.
    Pending,
    /// Polling too fast (`slow_down`): poll again, more slowly
    /// ([`next_interval`]).
    SlowDown,
    /// The user approved: the tokens.
    Granted(TokenResponse),
    /// The user refused (`access_denied`).
    Denied(ProviderFailure),
    /// The device code expired (`expired_token`): start again.
    Expired(ProviderFailure),
    /// Any other failure, classified as for any token request.
    Failed(ProviderFailure),
}

/// Interprets a polling answer from the token endpoint. `secrets` are those of
/// [`secrets`], redacted from whatever a failure keeps.
pub fn parse_poll(response: &Response<Vec<u8>>, now: Timestamp, secrets: &Secrets) -> Poll {
    match super::parse_token_response(response, now, secrets) {
        Ok(tokens) => Poll::Granted(tokens),
        Err(failure) => match failure.code.as_deref() {
            Some("authorization_pending") => Poll::Pending,
            Some("slow_down") => Poll::SlowDown,
            Some("access_denied") => Poll::Denied(failure),
            Some("expired_token") => Poll::Expired(failure),
            _ => Poll::Failed(failure),
        },
    }
}

/// The interval before the next poll: five seconds more after [`Poll::SlowDown`]
/// (RFC 8628 §3.5), at most [`MAX_INTERVAL`]; otherwise `current`.
pub fn next_interval(current: Duration, poll: &Poll) -> Duration {
    match poll {
        Poll::SlowDown => current.saturating_add(SLOW_DOWN_STEP).min(MAX_INTERVAL),
        _ => current,
    }
}

/// A JSON object body, or `None`.
fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// A failure of the provider's answer, described by this side (no secret in it).
fn failure(status: StatusCode, class: FailureClass, description: &str) -> ProviderFailure {
    ProviderFailure {
        class,
        status: Some(status.as_u16()),
        code: None,
        description: sanitize(description, &Secrets::new(), DESCRIPTION_MAX_CHARS),
        retry_after: None,
        cause: Cause::Answer,
    }
}

/// A verification URI people may be sent to: https, or http on loopback, of
/// bounded length; returned as `Url` writes it (no control characters or spaces).
fn checked_uri(
    status: StatusCode,
    uri: &str,
    secrets: &Secrets,
) -> Result<String, ProviderFailure> {
    if uri.len() > VERIFICATION_URI_MAX_BYTES {
        return Err(failure(
            status,
            FailureClass::Transient,
            &format!(
                "the device authorization answer has a verification URI of {} bytes",
                uri.len()
            ),
        ));
    }
    match super::check_endpoint(uri, false) {
        Ok(url) => Ok(url.as_str().to_owned()),
        Err(e) => {
            let mut failure = failure(
                status,
                FailureClass::Misconfiguration,
                "unusable verification URI",
            );
            failure.description = sanitize(
                &format!("unusable verification URI: {e}"),
                secrets,
                DESCRIPTION_MAX_CHARS,
            );
            Err(failure)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ClientSecret;
    use crate::session::ClientAuth;

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn body(req: &Request<Vec<u8>>) -> String {
        String::from_utf8(req.body().clone()).unwrap()
    }

    fn public() -> Client {
        Client {
            client_id: "cli".into(),
            ..Default::default()
        }
    }

    fn answer(status: u16, json: &str) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(json.as_bytes().to_vec())
            .unwrap()
    }

    fn parse(status: u16, json: &str) -> Result<DeviceAuthorization, ProviderFailure> {
        parse_authorization(&answer(status, json), now(), &Secrets::new())
    }

    fn poll(status: u16, json: &str) -> Poll {
        let secrets = secrets(&public(), &DeviceCode::new("dc-secret"));
        parse_poll(&answer(status, json), now(), &secrets)
    }

    const FULL: &str = r#"{"device_code":"GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS",
        "user_code":"WDJB-MJHT","verification_uri":"https://example.com/device",
        "verification_uri_complete":"https://example.com/device?user_code=WDJB-MJHT",
        "expires_in":1800,"interval":7}"#;

    #[test]
    fn authorization_request_carries_scope_extra_and_public_client_id() {
        let url = Url::parse("https://idp.example/device").unwrap();
        let req = authorization_request(
            &url,
            &public(),
            Some("openid email"),
            &[("audience", "api")],
        )
        .unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri(), "https://idp.example/device");
        assert_eq!(body(&req), "scope=openid+email&audience=api&client_id=cli");
        let req = authorization_request(&url, &public(), Some(""), &[]).unwrap();
        assert_eq!(body(&req), "client_id=cli");
        let req = authorization_request(&url, &public(), None, &[]).unwrap();
        assert_eq!(body(&req), "client_id=cli");
    }

    #[test]
    fn token_request_carries_grant_type_and_device_code() {
        let url = Url::parse("https://idp.example/token").unwrap();
        let req = token_request(&url, &public(), &DeviceCode::new("d/c")).unwrap();
        assert_eq!(
            body(&req),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=d%2Fc&client_id=cli"
        );
        let client = Client {
            client_id: "svc".into(),
            client_secret: Some(ClientSecret::new("pw")),
            auth: ClientAuth::ClientSecretPost,
            ..Default::default()
        };
        let req = token_request(&url, &client, &DeviceCode::new("d/c")).unwrap();
        let secrets = secrets(&client, &DeviceCode::new("d/c"));
        assert_eq!(
            sanitize(&body(&req), &secrets, 1000),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=[redacted]&client_id=svc&client_secret=[redacted]"
        );
    }

    #[test]
    fn a_full_answer_is_read() {
        let auth = parse(200, FULL).unwrap();
        assert_eq!(
            auth.device_code.expose_secret(),
            "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS"
        );
        assert_eq!(auth.user_code, "WDJB-MJHT");
        assert_eq!(auth.verification_uri, "https://example.com/device");
        assert_eq!(
            auth.verification_uri_complete.as_deref(),
            Some("https://example.com/device?user_code=WDJB-MJHT")
        );
        assert_eq!(auth.expires_at, now() + SignedDuration::from_secs(1800));
        assert_eq!(auth.interval, Duration::from_secs(7));
    }

    #[test]
    fn debug_never_shows_the_device_code() {
        let auth = parse(200, FULL).unwrap();
        let shown = format!("{auth:?}");
        assert!(!shown.contains("GmRhmhcx"), "{shown}");
        assert!(shown.contains("WDJB-MJHT"), "{shown}");
    }

    #[test]
    fn verification_url_alias_and_string_expires_in() {
        let auth = parse(
            200,
            r#"{"device_code":"dc","user_code":"ABC","verification_url":"https://www.google.com/device","expires_in":"1800"}"#,
        )
        .unwrap();
        assert_eq!(auth.verification_uri, "https://www.google.com/device");
        assert_eq!(auth.expires_at, now() + SignedDuration::from_secs(1800));
        assert_eq!(auth.interval, DEFAULT_INTERVAL, "missing interval is 5 s");
        assert!(auth.verification_uri_complete.is_none());
    }

    #[test]
    fn interval_and_expiry_are_bounded() {
        let auth = parse(
            200,
            r#"{"device_code":"dc","user_code":"ABC","verification_uri":"https://idp.example/d","expires_in":999999999,"interval":0}"#,
        )
        .unwrap();
        assert_eq!(auth.interval, MIN_INTERVAL);
        assert_eq!(auth.expires_at, now() + SignedDuration::from_secs(86_400));
        let auth = parse(
            200,
            r#"{"device_code":"dc","user_code":"ABC","verification_uri":"https://idp.example/d","expires_in":60,"interval":3600}"#,
        )
        .unwrap();
        assert_eq!(auth.interval, MAX_INTERVAL);
        for expires in ["", r#","expires_in":0"#, r#","expires_in":"soon""#] {
            let json = format!(
                r#"{{"device_code":"dc","user_code":"ABC","verification_uri":"https://idp.example/d"{expires}}}"#
            );
            let failure = parse(200, &json).unwrap_err();
            assert_eq!(failure.class, FailureClass::Transient);
            assert!(failure.description.contains("expires_in"), "{failure:?}");
        }
    }

    #[test]
    fn missing_fields_are_transient_answer_failures() {
        for (json, missing) in [
            (
                r#"{"user_code":"ABC","verification_uri":"https://idp.example/d","expires_in":60}"#,
                "device_code",
            ),
            (
                r#"{"device_code":"dc","user_code":" ","verification_uri":"https://idp.example/d","expires_in":60}"#,
                "user_code",
            ),
            (
                r#"{"device_code":"dc","user_code":"ABC","expires_in":60}"#,
                "verification_uri",
            ),
        ] {
            let failure = parse(200, json).unwrap_err();
            assert_eq!(failure.class, FailureClass::Transient);
            assert_eq!(failure.cause, Cause::Answer);
            assert_eq!(failure.status, Some(200));
            assert!(failure.description.contains(missing), "{failure:?}");
        }
    }

    #[test]
    fn plain_http_verification_uri_is_refused() {
        let failure = parse(
            200,
            r#"{"device_code":"dc","user_code":"ABC","verification_uri":"http://evil.example/d","expires_in":60}"#,
        )
        .unwrap_err();
        assert_eq!(failure.class, FailureClass::Misconfiguration);
        assert_eq!(failure.cause, Cause::Answer);
        let failure = parse(
            200,
            r#"{"device_code":"dc","user_code":"ABC","verification_uri":"https://idp.example/d","verification_uri_complete":"javascript:alert(1)","expires_in":60}"#,
        )
        .unwrap_err();
        assert_eq!(failure.class, FailureClass::Misconfiguration);
        assert!(
            parse(
                200,
                r#"{"device_code":"dc","user_code":"ABC","verification_uri":"http://127.0.0.1:8080/d","expires_in":60}"#,
            )
            .is_ok()
        );
    }

    #[test]
    fn control_characters_are_stripped_from_the_user_code() {
        let auth = parse(
            200,
            r#"{"device_code":"dc","user_code":"AB\u001b[31mCD\u0007","verification_uri":"https://idp.example/d","expires_in":60}"#,
        )
        .unwrap();
        assert_eq!(auth.user_code, "ABCD");
    }

    #[test]
    fn error_answers_are_classified_like_token_errors() {
        let failure = parse(
            400,
            r#"{"error":"invalid_client","error_description":"unknown client"}"#,
        )
        .unwrap_err();
        assert_eq!(failure.class, FailureClass::Misconfiguration);
        assert_eq!(failure.code.as_deref(), Some("invalid_client"));
        assert_eq!(failure.status, Some(400));
        let failure = parse(503, "<html>down</html>").unwrap_err();
        assert_eq!(failure.class, FailureClass::Transient);
        let failure = parse(200, "not json").unwrap_err();
        assert_eq!(failure.class, FailureClass::Transient);
    }

    #[test]
    fn polling_answers() {
        assert!(matches!(
            poll(400, r#"{"error":"authorization_pending"}"#),
            Poll::Pending
        ));
        assert!(matches!(
            poll(400, r#"{"error":"slow_down"}"#),
            Poll::SlowDown
        ));
        assert!(matches!(
            poll(400, r#"{"error":"access_denied"}"#),
            Poll::Denied(f) if f.code.as_deref() == Some("access_denied")
        ));
        assert!(matches!(
            poll(400, r#"{"error":"expired_token"}"#),
            Poll::Expired(_)
        ));
        match poll(
            400,
            r#"{"error":"invalid_grant","error_description":"bad code dc-secret"}"#,
        ) {
            Poll::Failed(failure) => {
                assert_eq!(failure.code.as_deref(), Some("invalid_grant"));
                assert!(!failure.description.contains("dc-secret"), "{failure:?}");
            }
            other => panic!("{other:?}"),
        }
        match poll(
            200,
            r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600}"#,
        ) {
            Poll::Granted(tokens) => {
                assert_eq!(tokens.access_token.expose_secret(), "at-1");
                assert_eq!(tokens.expires_in, Some(3600));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn slow_down_adds_five_seconds_up_to_a_minute() {
        let five = Duration::from_secs(5);
        assert_eq!(
            next_interval(five, &Poll::SlowDown),
            Duration::from_secs(10)
        );
        assert_eq!(next_interval(five, &Poll::Pending), five);
        assert_eq!(
            next_interval(Duration::from_secs(58), &Poll::SlowDown),
            MAX_INTERVAL
        );
        assert_eq!(next_interval(Duration::MAX, &Poll::SlowDown), MAX_INTERVAL);
    }
}
