//! Interpreting a token endpoint's answer (RFC 6749 §5) and classifying failures
//! (DESIGN.md §1.5).
//!
//! Real providers are lenient in what they send, so this is lenient in what it
//! reads: `expires_in` as a string, an `error` inside a 200 body, form-encoded
//! bodies, extra fields. What cannot be read as a token response or an OAuth error
//! (HTML, truncated, empty) is transient: it says nothing about the session.

use http::header::{CONTENT_TYPE, DATE, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use crate::error::FailureClass;
use crate::token::TokenResponse;

/// Why a token request failed, as far as the answer tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderFailure {
    /// What it means for the session.
    pub class: FailureClass,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The OAuth `error` code, when there was one.
    pub code: Option<String>,
    /// A one-line description for people (the provider's `error_description`,
    /// shortened, or what was wrong with the answer). The caller removes any
    /// secret it sent before showing it.
    pub description: String,
    /// When the provider asked us to come back (`Retry-After`).
    pub retry_after: Option<Timestamp>,
}

impl ProviderFailure {
    /// A failure without an answer (connection, time-out, oversized body).
    pub fn transport(description: impl Into<String>) -> Self {
        Self {
            class: FailureClass::Transient,
            status: None,
            code: None,
            description: description.into(),
            retry_after: None,
        }
    }

    /// One line for people: `invalid_grant (HTTP 400): Token is expired`.
    pub fn summary(&self) -> String {
        let mut out = self.code.clone().unwrap_or_default();
        if let Some(status) = self.status {
            if out.is_empty() {
                out = format!("HTTP {status}");
            } else {
                out.push_str(&format!(" (HTTP {status})"));
            }
        }
        if !self.description.is_empty() {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&self.description);
        }
        out
    }
}

/// Interprets a token endpoint response. `now` resolves `Retry-After` dates and
/// delays.
pub fn parse_token_response(
    response: &Response<Vec<u8>>,
    now: Timestamp,
) -> Result<TokenResponse, ProviderFailure> {
    let status = response.status();
    let headers = response.headers();
    let fields = body_fields(headers, response.body());
    let failure = |class, code: Option<&str>, description: String| ProviderFailure {
        class,
        status: Some(status.as_u16()),
        code: code.map(str::to_owned),
        description,
        retry_after: retry_after(headers, now),
    };

    let error_code = fields
        .as_ref()
        .and_then(|f| f.get("error"))
        .and_then(Value::as_str);
    if let Some(code) = error_code {
        let fields = fields
            .as_ref()
            .expect("an error code came from parsed fields");
        let description = fields
            .get("error_description")
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        let class = classify_error(status, code, fields, &description);
        return Err(failure(class, Some(code), description));
    }
    if !status.is_success() {
        return Err(failure(
            FailureClass::Transient,
            None,
            describe_body(headers, response.body()),
        ));
    }
    let Some(fields) = fields else {
        return Err(failure(
            FailureClass::Transient,
            None,
            describe_body(headers, response.body()),
        ));
    };
    let response = TokenResponse::from_fields(&fields);
    if response.access_token.is_empty() {
        return Err(failure(
            FailureClass::Transient,
            None,
            "the answer has no access_token".into(),
        ));
    }
    Ok(response)
}

/// The class of an OAuth error code (DESIGN.md §1.5). Only `invalid_grant` that
/// does not ask for interaction ends a session, whatever the status.
fn classify_error(
    status: StatusCode,
    code: &str,
    fields: &Map<String, Value>,
    description: &str,
) -> FailureClass {
    match code {
        "invalid_grant" if signals_interaction(fields, description) => {
            FailureClass::InteractionRequired
        }
        "invalid_grant" => FailureClass::SessionDead,
        "interaction_required"
        | "consent_required"
        | "login_required"
        | "account_selection_required" => FailureClass::InteractionRequired,
        "temporarily_unavailable" | "server_error" | "slow_down" => FailureClass::Transient,
        _ if status.is_server_error() || matches!(status.as_u16(), 408 | 429) => {
            FailureClass::Transient
        }
        _ => FailureClass::Misconfiguration,
    }
}

/// Whether an `invalid_grant` means "the user must act" rather than "the session
/// is gone": a `suberror` (Microsoft), Google's `invalid_rapt`, or an MFA or consent
/// requirement in the description.
fn signals_interaction(fields: &Map<String, Value>, description: &str) -> bool {
    if fields
        .get("suberror")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return true;
    }
    if fields.get("error_subtype").and_then(Value::as_str) == Some("invalid_rapt") {
        return true;
    }
    let d = description.to_ascii_lowercase();
    [
        "invalid_rapt",
        "multi-factor",
        "multifactor",
        "mfa",
        "consent",
        "interaction",
        "reauth",
        "re-auth",
        "aadsts50076",
        "aadsts50079",
        "aadsts50158",
        "aadsts65001",
    ]
    .iter()
    .any(|needle| d.contains(needle))
}

/// The fields of a JSON object or form-encoded body; `None` for anything else.
fn body_fields(headers: &HeaderMap, body: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.starts_with('{') {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        };
    }
    let form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    // Some providers (GitHub without an Accept header) answer form-encoded.
    let looks_like_form =
        form || (!text.is_empty() && !text.contains(['<', ' ', '\n']) && text.contains('='));
    if !looks_like_form {
        return None;
    }
    let map: Map<String, Value> = url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    (!map.is_empty()).then_some(map)
}

/// Describes an unreadable body without quoting it.
fn describe_body(headers: &HeaderMap, body: &[u8]) -> String {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type");
    if body.is_empty() {
        "empty answer".into()
    } else if content_type.contains("html") || body.trim_ascii_start().starts_with(b"<") {
        format!(
            "an HTML page instead of a token response ({} bytes)",
            body.len()
        )
    } else {
        format!(
            "an answer that is not a token response ({content_type}, {} bytes)",
            body.len()
        )
    }
}

/// Shortens text from the provider to one line of at most 200 characters.
fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 200 {
        format!("{}…", flat.chars().take(200).collect::<String>())
    } else {
        flat
    }
}

/// `Retry-After` as an instant: delay seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Timestamp> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        let secs = i64::try_from(secs).ok()?.min(86_400);
        return now.checked_add(SignedDuration::from_secs(secs)).ok();
    }
    http_date(value)
}

/// The `Date` header, for measuring the provider's clock.
pub fn date(headers: &HeaderMap) -> Option<Timestamp> {
    http_date(headers.get(DATE)?.to_str().ok()?.trim())
}

fn http_date(value: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::parse(value)
        .ok()
        .map(|zoned| zoned.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    fn answer(
        status: u16,
        content_type: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Response<Vec<u8>> {
        let mut builder = Response::builder().status(status);
        if !content_type.is_empty() {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        for (k, v) in extra {
            builder = builder.header(*k, *v);
        }
        builder.body(body.as_bytes().to_vec()).unwrap()
    }

    fn class_of(status: u16, content_type: &str, body: &str) -> FailureClass {
        parse_token_response(&answer(status, content_type, body, &[]), now())
            .unwrap_err()
            .class
    }

    const JSON: &str = "application/json";

    #[test]
    fn a_normal_token_response() {
        let body = r#"{"access_token":"at","token_type":"Bearer","expires_in":"3600","refresh_token":"rt","scope":"openid","extra":{"x":1}}"#;
        let r = parse_token_response(&answer(200, JSON, body, &[]), now()).unwrap();
        assert_eq!(r.access_token.expose_secret(), "at");
        assert_eq!(r.expires_in, Some(3600));
        assert_eq!(r.refresh_token.unwrap().expose_secret(), "rt");
        assert_eq!(r.scope.as_deref(), Some("openid"));
    }

    #[test]
    fn a_201_with_tokens_is_success_and_form_bodies_are_read() {
        assert!(
            parse_token_response(&answer(201, JSON, r#"{"access_token":"a"}"#, &[]), now()).is_ok()
        );
        let r = parse_token_response(
            &answer(
                200,
                "application/x-www-form-urlencoded",
                "access_token=a%2Bb&expires_in=60",
                &[],
            ),
            now(),
        )
        .unwrap();
        assert_eq!(r.access_token.expose_secret(), "a+b");
        assert_eq!(r.expires_in, Some(60));
    }

    #[test]
    fn error_codes_are_classified_whatever_the_status() {
        use FailureClass::*;
        let cases = [
            (
                400,
                r#"{"error":"invalid_grant","error_description":"Token is not active"}"#,
                SessionDead,
            ),
            (401, r#"{"error":"invalid_grant"}"#, SessionDead),
            (403, r#"{"error":"invalid_grant"}"#, SessionDead),
            (200, r#"{"error":"invalid_grant"}"#, SessionDead),
            (
                400,
                r#"{"error":"invalid_grant","suberror":"basic_action"}"#,
                InteractionRequired,
            ),
            (
                400,
                r#"{"error":"invalid_grant","error_subtype":"invalid_rapt"}"#,
                InteractionRequired,
            ),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS50076: you must use multi-factor authentication"}"#,
                InteractionRequired,
            ),
            (
                400,
                r#"{"error":"interaction_required"}"#,
                InteractionRequired,
            ),
            (400, r#"{"error":"consent_required"}"#, InteractionRequired),
            (400, r#"{"error":"login_required"}"#, InteractionRequired),
            (401, r#"{"error":"invalid_client"}"#, Misconfiguration),
            (400, r#"{"error":"unauthorized_client"}"#, Misconfiguration),
            (400, r#"{"error":"invalid_scope"}"#, Misconfiguration),
            (
                400,
                r#"{"error":"unsupported_grant_type"}"#,
                Misconfiguration,
            ),
            (400, r#"{"error":"invalid_request"}"#, Misconfiguration),
            (400, r#"{"error":"something_new"}"#, Misconfiguration),
            (503, r#"{"error":"temporarily_unavailable"}"#, Transient),
            (500, r#"{"error":"server_error"}"#, Transient),
            (503, r#"{"error":"invalid_request"}"#, Transient),
            (429, r#"{"error":"rate_limited"}"#, Transient),
            (200, r#"{"error":"temporarily_unavailable"}"#, Transient),
        ];
        for (status, body, expected) in cases {
            assert_eq!(class_of(status, JSON, body), expected, "{status} {body}");
        }
        assert_eq!(
            class_of(
                400,
                "application/x-www-form-urlencoded",
                "error=invalid_grant"
            ),
            SessionDead
        );
    }

    #[test]
    fn unreadable_answers_are_transient() {
        use FailureClass::Transient;
        assert_eq!(
            class_of(503, "text/html", "<html><body>Bad gateway</body></html>"),
            Transient
        );
        assert_eq!(class_of(200, "text/html", "<html>login</html>"), Transient);
        assert_eq!(class_of(200, JSON, r#"{"access_token":"a"#), Transient);
        assert_eq!(class_of(200, JSON, ""), Transient);
        assert_eq!(class_of(200, JSON, r#"{"token_type":"Bearer"}"#), Transient);
        assert_eq!(class_of(401, "", ""), Transient);
        assert_eq!(
            class_of(502, "text/plain", "upstream connect error"),
            Transient
        );
    }

    #[test]
    fn descriptions_never_quote_an_unreadable_body() {
        let f = parse_token_response(
            &answer(500, "text/html", "<html>secret-looking-stuff</html>", &[]),
            now(),
        )
        .unwrap_err();
        assert!(!f.summary().contains("secret-looking"), "{}", f.summary());
        assert_eq!(
            f.summary(),
            "HTTP 500: an HTML page instead of a token response (33 bytes)"
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let f = parse_token_response(&answer(429, JSON, "", &[("retry-after", "120")]), now())
            .unwrap_err();
        assert_eq!(f.retry_after, Some(now() + SignedDuration::from_secs(120)));
        let f = parse_token_response(
            &answer(
                503,
                JSON,
                "",
                &[("retry-after", "Mon, 01 Jun 2026 12:05:00 GMT")],
            ),
            now(),
        )
        .unwrap_err();
        assert_eq!(f.retry_after, Some("2026-06-01T12:05:00Z".parse().unwrap()));
        let f = parse_token_response(&answer(503, JSON, "", &[("retry-after", "later")]), now())
            .unwrap_err();
        assert_eq!(f.retry_after, None);
    }

    #[test]
    fn date_header_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert(DATE, "Mon, 01 Jun 2026 12:03:00 GMT".parse().unwrap());
        assert_eq!(
            date(&headers),
            Some("2026-06-01T12:03:00Z".parse().unwrap())
        );
    }
}
