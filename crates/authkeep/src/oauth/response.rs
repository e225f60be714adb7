//! Interpreting a token endpoint's answer (RFC 6749 §5) and classifying failures
//! (docs/DESIGN.md §1.5).
//!
//! Real providers are lenient in what they send, so this is lenient in what it
//! reads: `expires_in` as a string, an `error` inside a 200 body, form-encoded
//! bodies, extra fields. What cannot be read as a token response or an OAuth error
//! (HTML, truncated, empty) is transient: it says nothing about the session.
//!
//! Classification reads the provider's `error` and `error_description` as sent;
//! what a [`ProviderFailure`] keeps of them is [`sanitize`]d: no secret the request
//! carried, no control characters, one line of bounded length.

use http::header::{CONTENT_TYPE, DATE, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use super::sanitize::{Secrets, sanitize};
use crate::error::FailureClass;
use crate::token::TokenResponse;

/// The longest OAuth `error` code kept, in characters.
pub const CODE_MAX_CHARS: usize = 64;
/// The longest description kept, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 300;

/// Why a token request failed, as far as the answer tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderFailure {
    /// What it means for the session.
    pub class: FailureClass,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The OAuth `error` code, when there was one, sanitised (at most
    /// [`CODE_MAX_CHARS`] characters).
    pub code: Option<String>,
    /// A one-line description for people: the provider's `error_description`, or
    /// what was wrong with the answer, sanitised (at most
    /// [`DESCRIPTION_MAX_CHARS`] characters, no secret the request carried).
    pub description: String,
    /// When the provider asked us to come back (`Retry-After`).
    pub retry_after: Option<Timestamp>,
    /// Where the failure arose.
    pub cause: Cause,
}

/// Where a failure arose, for a program that wants to advise its user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The provider answered; the status, code and description say how.
    Answer,
    /// No usable answer: connecting, sending or receiving failed, or the answer
    /// was too large.
    Transport,
    /// No answer within the network step's time-out.
    TimedOut,
    /// An endpoint would have been reached over plain http off loopback, which
    /// is refused unless insecure http was allowed.
    InsecureEndpoint,
    /// Something on this side: nothing to refresh with, an endpoint that cannot
    /// be used, an HTTP client that cannot be set up.
    Local,
}

impl ProviderFailure {
    /// A failure without an answer (connection, oversized body). The
    /// description is made one line of at most [`DESCRIPTION_MAX_CHARS`]
    /// characters.
    pub fn transport(description: impl Into<String>) -> Self {
        Self::local(FailureClass::Transient, Cause::Transport, description)
    }

    /// No answer within the network step's time-out: transient.
    pub(crate) fn timed_out(timeout: std::time::Duration) -> Self {
        Self::local(
            FailureClass::Transient,
            Cause::TimedOut,
            format!("no answer within {}", crate::token::human(timeout)),
        )
    }

    /// A failure found on this side, or without an answer, of the given class
    /// and cause.
    pub fn local(class: FailureClass, cause: Cause, description: impl Into<String>) -> Self {
        Self {
            class,
            status: None,
            code: None,
            description: sanitize(&description.into(), &Secrets::new(), DESCRIPTION_MAX_CHARS),
            retry_after: None,
            cause,
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
/// delays; `secrets` are what the request carried, redacted from every text of
/// the provider's a failure keeps.
pub fn parse_token_response(
    response: &Response<Vec<u8>>,
    now: Timestamp,
    secrets: &Secrets,
) -> Result<TokenResponse, ProviderFailure> {
    let status = response.status();
    let headers = response.headers();
    let fields = body_fields(headers, response.body());
    // The one way out for a failure: whatever the provider wrote, sanitised.
    let failure = |class, code: Option<&str>, description: &str| ProviderFailure {
        class,
        status: Some(status.as_u16()),
        code: code.map(|code| sanitize(code, secrets, CODE_MAX_CHARS)),
        description: sanitize(description, secrets, DESCRIPTION_MAX_CHARS),
        retry_after: retry_after(headers, now),
        cause: Cause::Answer,
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
            .unwrap_or_default();
        let class = classify_error(status, code, fields, description);
        return Err(failure(class, Some(code), description));
    }
    if !status.is_success() {
        return Err(failure(
            FailureClass::Transient,
            None,
            &describe_body(headers, response.body()),
        ));
    }
    let Some(fields) = fields else {
        return Err(failure(
            FailureClass::Transient,
            None,
            &describe_body(headers, response.body()),
        ));
    };
    let response = TokenResponse::from_fields(&fields);
    if response.access_token.is_empty() {
        return Err(failure(
            FailureClass::Transient,
            None,
            "the answer has no access_token",
        ));
    }
    Ok(response)
}

/// The class of an OAuth error code (docs/DESIGN.md §1.5). Only `invalid_grant` that
/// does not ask for interaction ends a session, whatever the status.
fn classify_error(
    status: StatusCode,
    code: &str,
    fields: &Map<String, Value>,
    description: &str,
) -> FailureClass {
    // Microsoft Entra says what it means with a code of its own.
    if let Some(class) = super::providers::entra_class(fields, description) {
        return class;
    }
    match code {
        "invalid_grant" if signals_interaction(fields, description) => {
            FailureClass::InteractionRequired
        }
        "invalid_grant" => FailureClass::SessionDead,
        code if super::providers::dead_refresh_token_code(code) => FailureClass::SessionDead,
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

/// Describes an unreadable body without quoting it; of its content type, at most
/// [`CODE_MAX_CHARS`] characters.
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
            "an answer that is not a token response ({}, {} bytes)",
            sanitize(content_type, &Secrets::new(), CODE_MAX_CHARS),
            body.len()
        )
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

    /// A response to a request that carried no secret.
    fn parse(
        response: &Response<Vec<u8>>,
        now: Timestamp,
    ) -> Result<TokenResponse, ProviderFailure> {
        parse_token_response(response, now, &Secrets::new())
    }

    fn class_of(status: u16, content_type: &str, body: &str) -> FailureClass {
        parse(&answer(status, content_type, body, &[]), now())
            .unwrap_err()
            .class
    }

    const JSON: &str = "application/json";

    #[test]
    fn a_normal_token_response() {
        let body = r#"{"access_token":"at","token_type":"Bearer","expires_in":"3600","refresh_token":"rt","scope":"openid","extra":{"x":1}}"#;
        let r = parse(&answer(200, JSON, body, &[]), now()).unwrap();
        assert_eq!(r.access_token.expose_secret(), "at");
        assert_eq!(r.expires_in, Some(3600));
        assert_eq!(r.refresh_token.unwrap().expose_secret(), "rt");
        assert_eq!(r.scope.as_deref(), Some("openid"));
    }

    #[test]
    fn a_201_with_tokens_is_success_and_form_bodies_are_read() {
        assert!(parse(&answer(201, JSON, r#"{"access_token":"a"}"#, &[]), now()).is_ok());
        let r = parse(
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
        let f = parse(
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
        let f = parse(&answer(429, JSON, "", &[("retry-after", "120")]), now()).unwrap_err();
        assert_eq!(f.retry_after, Some(now() + SignedDuration::from_secs(120)));
        let f = parse(
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
        let f = parse(&answer(503, JSON, "", &[("retry-after", "later")]), now()).unwrap_err();
        assert_eq!(f.retry_after, None);
    }

    const REFRESH_TOKEN: &str = "RT9f8e7d6c5b4a3928/1706+f5e4d3c2b1a0=";
    const CLIENT_SECRET: &str = "CSq7w6e5 r4t3&y2u1=i0!";

    /// What a refresh by confidential client `svc` with HTTP Basic carried.
    fn request_secrets() -> Secrets {
        let mut secrets = Secrets::new();
        secrets.add(REFRESH_TOKEN);
        secrets.add(CLIENT_SECRET);
        secrets.add_basic_credential("svc", CLIENT_SECRET);
        secrets
    }

    fn form(text: &str) -> String {
        url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }

    /// The raw secrets a request carried, and the forms they travelled in.
    fn secret_forms() -> Vec<String> {
        let basic = crate::oauth::basic_credential("svc", CLIENT_SECRET);
        let mut forms = Vec::new();
        for secret in [REFRESH_TOKEN.to_owned(), CLIENT_SECRET.to_owned(), basic] {
            forms.push(form(&secret));
            forms.push(secret);
        }
        forms
    }

    /// What a provider echoing its request might say.
    fn echoes() -> Vec<String> {
        let basic = crate::oauth::basic_credential("svc", CLIENT_SECRET);
        let mut echoes = secret_forms();
        echoes.push(format!("Basic {basic}"));
        echoes.push(format!(
            "grant_type=refresh_token&refresh_token={}&client_secret={}",
            form(REFRESH_TOKEN),
            form(CLIENT_SECRET)
        ));
        echoes
    }

    /// Descriptions with `echo` at the start, in the middle, straddling the
    /// length cap (after plain text and after escape sequences) and at the end.
    fn descriptions(echo: &str) -> Vec<String> {
        let before_cap = DESCRIPTION_MAX_CHARS - echo.chars().count() / 2;
        vec![
            format!("{echo}\u{1b}[31m rejected\n\tby policy"),
            format!(
                "refused \u{1b}]0;title\u{7}{echo}\u{1b}[0m\tfor\nreasons {}",
                "x".repeat(50)
            ),
            format!(
                "{}{echo}\u{1b}[31m tail {}",
                "x".repeat(before_cap),
                "y".repeat(100)
            ),
            format!(
                "{}{}{echo} tail",
                "\u{1b}[1m\u{1b}]0;t\u{7}".repeat(10),
                "x".repeat(before_cap)
            ),
            format!("{}\n{echo}", "z".repeat(500)),
            format!("short\r\n{echo}\t"),
        ]
    }

    fn echoing(status: u16, error: &str, description: &str) -> Response<Vec<u8>> {
        let body = serde_json::json!({ "error": error, "error_description": description });
        answer(status, JSON, &body.to_string(), &[])
    }

    /// Neither a secret nor any 8-character piece of one, and nothing a terminal
    /// would act on.
    fn assert_shows_nothing_secret(shown: &str) {
        for secret in secret_forms() {
            assert!(!shown.contains(&secret), "{secret:?} in {shown:?}");
            let chars: Vec<char> = secret.chars().collect();
            for piece in chars.windows(8) {
                let piece: String = piece.iter().collect();
                assert!(
                    !shown.contains(&piece),
                    "{piece:?} of {secret:?} in {shown:?}"
                );
            }
        }
        for c in shown.chars() {
            let code = u32::from(c);
            assert!(
                code >= 0x20 && !(0x7f..=0x9f).contains(&code),
                "U+{code:04X} in {shown:?}"
            );
        }
    }

    #[test]
    fn a_provider_echoing_secrets_shows_none_and_classes_are_unchanged() {
        use FailureClass::*;
        let secrets = request_secrets();
        let mut checked = 0;
        for echo in echoes() {
            let errors = [
                format!("invalid_request{echo}"),
                format!("{echo}invalid_request"),
                format!("invalid\u{1b}[31m_request\n\t{echo}\u{1b}]0;title\u{7}"),
            ];
            for description in descriptions(&echo) {
                let mut cases = vec![
                    (400, "invalid_grant".to_owned(), SessionDead),
                    (400, "interaction_required".to_owned(), InteractionRequired),
                    (503, "invalid_grant".to_owned(), SessionDead),
                ];
                for error in &errors {
                    cases.push((400, error.clone(), Misconfiguration));
                    cases.push((503, error.clone(), Transient));
                }
                for (status, error, class) in cases {
                    let response = echoing(status, &error, &description);
                    let failure = parse_token_response(&response, now(), &secrets).unwrap_err();
                    assert_eq!(failure.class, class, "{status} {error:?}");
                    assert_eq!(failure.class, parse(&response, now()).unwrap_err().class);
                    let code = failure.code.clone().unwrap_or_default();
                    assert!(code.chars().count() <= CODE_MAX_CHARS, "{code:?}");
                    assert!(failure.description.chars().count() <= DESCRIPTION_MAX_CHARS);
                    assert_shows_nothing_secret(&failure.summary());
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 8 * 6 * 9);
    }

    #[test]
    fn classification_reads_the_description_as_sent() {
        let description = format!("{REFRESH_TOKEN} needs multi-factor authentication");
        let failure = parse_token_response(
            &echoing(400, "invalid_grant", &description),
            now(),
            &request_secrets(),
        )
        .unwrap_err();
        assert_eq!(failure.class, FailureClass::InteractionRequired);
        assert_eq!(
            failure.summary(),
            "invalid_grant (HTTP 400): [redacted] needs multi-factor authentication"
        );
    }

    #[test]
    fn secret_straddling_the_length_cap_is_redacted_before_truncation() {
        let before_cap = DESCRIPTION_MAX_CHARS - REFRESH_TOKEN.len() / 2;
        let description = format!("{}{REFRESH_TOKEN} and more", "x".repeat(before_cap));
        let failure = parse_token_response(
            &echoing(400, "invalid_grant", &description),
            now(),
            &request_secrets(),
        )
        .unwrap_err();
        assert_shows_nothing_secret(&failure.summary());
        assert_eq!(
            failure.description,
            format!("{}[redacted] and mo…", "x".repeat(before_cap))
        );
    }

    #[test]
    fn form_encoded_errors_are_sanitised_too() {
        let body = format!(
            "error=invalid_grant&error_description={}",
            form(&format!("bad \u{1b}[2J{REFRESH_TOKEN}\nline"))
        );
        let failure = parse_token_response(
            &answer(400, "application/x-www-form-urlencoded", &body, &[]),
            now(),
            &request_secrets(),
        )
        .unwrap_err();
        assert_eq!(failure.class, FailureClass::SessionDead);
        assert_eq!(failure.description, "bad [redacted] line");
    }

    #[test]
    fn a_long_content_type_is_shown_short() {
        let content_type = format!("text/plain; x={}", "a".repeat(5000));
        let f = parse(&answer(502, &content_type, "upstream error", &[]), now()).unwrap_err();
        assert_eq!(f.class, FailureClass::Transient);
        assert!(f.description.ends_with("…, 14 bytes)"), "{}", f.description);
        assert!(f.description.chars().count() < 150, "{}", f.description);
    }

    #[test]
    fn transport_descriptions_are_one_bounded_line() {
        let failure = ProviderFailure::transport(format!(
            "could not connect\n\u{1b}[31m{}",
            "e".repeat(1000)
        ));
        assert!(failure.description.starts_with("could not connect eee"));
        assert_eq!(failure.description.chars().count(), DESCRIPTION_MAX_CHARS);
        assert_shows_nothing_secret(&failure.description);
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
