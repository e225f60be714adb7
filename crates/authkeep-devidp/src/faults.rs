//! The fault plan: which misbehaviour the token endpoint (and optionally discovery)
//! shows, how often, and what each kind of fault looks like on the wire. Dropping and
//! hanging connections, and the faults that change a normal answer (an expired access
//! token, huge metadata), are carried out by the HTTP layer and the provider; this
//! module only says which.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::oauth::form_urlencode;

/// The character of an [`FaultKind::EchoSecrets`] description that an echoed secret
/// straddles: the length many clients cut provider text to.
const ECHO_STRADDLED_CHAR: usize = 300;
/// The shortest [`FaultKind::EchoSecrets`] description, in characters.
const ECHO_MIN_CHARS: usize = 600;
/// The largest [`FaultKind::HugeMetadata`] size accepted, so that a plan cannot make
/// the provider exhaust its memory.
const HUGE_METADATA_MAX_BYTES: usize = 16 * 1024 * 1024;

/// What the provider does wrong, and how often.
///
/// Applies to the token endpoint, and to discovery as well when `include_discovery`
/// is set; [`FaultKind::HugeMetadata`] applies to discovery alone, whatever
/// `include_discovery` says. A faulted token request is counted under the outcome
/// `"fault"` and consumes nothing, except [`FaultKind::ExpiredAccessToken`], which
/// is a normal refresh with a different access token and is counted as one.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Wait this long before answering every affected request, faulted or not.
    pub latency_ms: u64,
    /// Share of affected requests that `kind` hits, from 0.0 to 1.0. With a `kind` set,
    /// 0.0 means every request (so `{"kind": …}` alone is a fault on every call).
    pub fraction: f64,
    /// The misbehaviour; `None` means answer normally (after the latency).
    pub kind: Option<FaultKind>,
    /// Also apply the plan to the discovery document.
    pub include_discovery: bool,
}

/// One kind of misbehaviour.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status. `retry_after` is the raw `Retry-After` value (`"30"` or
    /// an HTTP date). Without a `body`: a JSON `temporarily_unavailable` error for 503,
    /// a JSON `server_error` for 500, empty otherwise.
    Status {
        /// The HTTP status, 200 to 599.
        status: u16,
        /// Raw `Retry-After` header value.
        retry_after: Option<String>,
        /// Raw response body.
        body: Option<String>,
    },
    /// Close the TCP connection without sending any response.
    DropConnection,
    /// Answer 200 with bytes that are not JSON, labelled as JSON.
    Garbage,
    /// Answer with an HTML error page (`text/html`).
    Html {
        /// The HTTP status, 200 to 599.
        status: u16,
    },
    /// Answer 200 with a JSON-looking body of exactly this many bytes.
    Oversized {
        /// Body length in bytes.
        bytes: usize,
    },
    /// Answer with an OAuth error JSON body (`{"error": …, "error_description": …}`),
    /// under any status, 200 included (a quirk some providers have). Tagged
    /// `"o_auth_error"`, or `"oauth_error"`.
    #[serde(alias = "oauth_error")]
    OAuthError {
        /// The HTTP status, 200 to 599.
        status: u16,
        /// The `error` code.
        error: String,
        /// The `error_description`.
        description: Option<String>,
    },
    /// Answer with an `application/x-www-form-urlencoded` error body (`error=…`).
    FormEncodedError {
        /// The HTTP status, 200 to 599.
        status: u16,
        /// The `error` code.
        error: String,
    },
    /// Never answer: the request stays open until the client gives up or the provider
    /// shuts down.
    Hang,
    /// Answer with an OAuth error JSON body whose text echoes what the token request
    /// carried: the `refresh_token` and `client_secret` form values and the raw
    /// `Authorization` header value. `error` is `invalid_request` followed by the
    /// refresh token; `error_description` (at least 600 characters) has all three at
    /// its start, in its middle and at its end, mixed with terminal escape sequences
    /// (`\u001b[31m`, `\u001b]0;pwned\u0007`), a newline and a tab, and one of them
    /// (the refresh token, when there is one) straddling character 300, unless what
    /// comes before it is already longer. At discovery it echoes nothing.
    EchoSecrets {
        /// The HTTP status, 200 to 599.
        status: u16,
    },
    /// Refresh normally (a rotated refresh token is consumed, the outcome is counted
    /// as usual), but hand out an access token that has expired: a JWT whose `exp` is
    /// a minute before its `iat`, in a response without `expires_in`. Applies to every
    /// grant of the token endpoint; discovery answers normally.
    ExpiredAccessToken,
    /// Serve a discovery document (valid JSON, correct issuer) whose `token_endpoint`
    /// is a URL under the issuer longer than `bytes`, more than a request line may
    /// carry when `bytes` is 65,535 or more. Applies to discovery alone, with or
    /// without `include_discovery`; token requests are answered normally.
    HugeMetadata {
        /// The token endpoint URL is longer than this, in bytes; at most 16 MiB.
        bytes: usize,
    },
}

/// How the HTTP layer carries out a fault.
pub(crate) enum FaultAction {
    Respond(Response),
    DropConnection,
    Hang,
}

/// What a token request carried, for a fault that echoes it; empty where it carried
/// nothing. No `Debug`: the values are secrets.
#[derive(Default)]
pub(crate) struct Sent<'a> {
    pub(crate) refresh_token: &'a str,
    pub(crate) client_secret: &'a str,
    pub(crate) authorization: &'a str,
}

impl Faults {
    /// The fault to apply to one request, rolled against `fraction`.
    pub(crate) fn roll(&self) -> Option<&FaultKind> {
        let kind = self.kind.as_ref()?;
        let fraction = if self.fraction == 0.0 {
            1.0
        } else {
            self.fraction
        };
        // `fastrand::f64` is in [0, 1): a fraction of 1.0 always hits, a negative or NaN
        // one never does.
        (fastrand::f64() < fraction).then_some(kind)
    }

    /// Whether the plan applies to discovery: when `include_discovery` is set, and
    /// always for [`FaultKind::HugeMetadata`].
    pub(crate) fn covers_discovery(&self) -> bool {
        self.include_discovery || matches!(self.kind, Some(FaultKind::HugeMetadata { .. }))
    }

    /// Why this plan cannot be carried out as written, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.fraction) {
            return Err(format!(
                "fraction must be between 0.0 and 1.0, not {}",
                self.fraction
            ));
        }
        let status = match &self.kind {
            None
            | Some(
                FaultKind::DropConnection
                | FaultKind::Garbage
                | FaultKind::Hang
                | FaultKind::ExpiredAccessToken,
            ) => None,
            Some(FaultKind::Oversized { .. }) => None,
            Some(FaultKind::HugeMetadata { bytes }) => {
                if *bytes > HUGE_METADATA_MAX_BYTES {
                    return Err(format!(
                        "bytes must be at most {HUGE_METADATA_MAX_BYTES}, not {bytes}"
                    ));
                }
                None
            }
            Some(FaultKind::Status {
                status,
                retry_after,
                ..
            }) => {
                if let Some(value) = retry_after
                    && HeaderValue::from_str(value).is_err()
                {
                    return Err("retry_after is not a valid header value".to_owned());
                }
                Some(*status)
            }
            Some(
                FaultKind::Html { status }
                | FaultKind::OAuthError { status, .. }
                | FaultKind::FormEncodedError { status, .. }
                | FaultKind::EchoSecrets { status },
            ) => Some(*status),
        };
        match status {
            Some(status) if !(200..=599).contains(&status) => {
                Err(format!("status must be between 200 and 599, not {status}"))
            }
            _ => Ok(()),
        }
    }
}

impl FaultKind {
    /// What the fault answers instead of the normal answer to a request that carried
    /// `sent`; `None` for the kinds that change the normal answer instead
    /// ([`FaultKind::ExpiredAccessToken`], [`FaultKind::HugeMetadata`]).
    pub(crate) fn action(&self, sent: &Sent<'_>) -> Option<FaultAction> {
        let response = match self {
            FaultKind::ExpiredAccessToken | FaultKind::HugeMetadata { .. } => return None,
            FaultKind::DropConnection => return Some(FaultAction::DropConnection),
            FaultKind::Hang => return Some(FaultAction::Hang),
            FaultKind::Status {
                status,
                retry_after,
                body,
            } => {
                let status = status_code(*status);
                let (content_type, body) = match body {
                    Some(body) if serde_json::from_str::<serde_json::Value>(body).is_ok() => {
                        (Some("application/json"), body.clone())
                    }
                    Some(body) => (Some("text/plain; charset=utf-8"), body.clone()),
                    None => match status {
                        StatusCode::SERVICE_UNAVAILABLE => (
                            Some("application/json"),
                            r#"{"error":"temporarily_unavailable"}"#.to_owned(),
                        ),
                        StatusCode::INTERNAL_SERVER_ERROR => (
                            Some("application/json"),
                            r#"{"error":"server_error"}"#.to_owned(),
                        ),
                        _ => (None, String::new()),
                    },
                };
                let mut response = respond(status, content_type, body);
                if let Some(value) = retry_after.as_deref()
                    && let Ok(value) = HeaderValue::from_str(value)
                {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            FaultKind::Garbage => respond(
                StatusCode::OK,
                Some("application/json"),
                "\u{0}\u{1}<not json>{\"access_token\": ".to_owned(),
            ),
            FaultKind::Html { status } => {
                let status = status_code(*status);
                let reason = status.canonical_reason().unwrap_or("Error");
                let page = format!(
                    "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\
                     <body><h1>{reason}</h1><p>The server could not handle the request.</p>\
                     </body></html>\n",
                    code = status.as_u16(),
                );
                respond(status, Some("text/html; charset=utf-8"), page)
            }
            FaultKind::Oversized { bytes } => respond(
                StatusCode::OK,
                Some("application/json"),
                oversized_body(*bytes),
            ),
            FaultKind::OAuthError {
                status,
                error,
                description,
            } => {
                let mut body = serde_json::json!({ "error": error });
                if let Some(description) = description {
                    body["error_description"] = description.clone().into();
                }
                let status = status_code(*status);
                let mut response = respond(status, Some("application/json"), body.to_string());
                if status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Basic realm="authkeep-devidp""#),
                    );
                }
                response
            }
            FaultKind::FormEncodedError { status, error } => respond(
                status_code(*status),
                Some("application/x-www-form-urlencoded"),
                format!("error={}", form_urlencode(error)),
            ),
            FaultKind::EchoSecrets { status } => respond(
                status_code(*status),
                Some("application/json"),
                echo_body(sent).to_string(),
            ),
        };
        Some(FaultAction::Respond(response))
    }
}

/// The OAuth error of [`FaultKind::EchoSecrets`].
///
/// Up to the straddling echo the description has single spaces and no escape
/// sequence, so the echo straddles character 300 both as sent and with control
/// characters removed and whitespace collapsed, as a careful client shows it.
fn echo_body(sent: &Sent<'_>) -> Value {
    let values = [sent.refresh_token, sent.client_secret, sent.authorization];
    let all = values.join(" ");
    let straddler = values
        .into_iter()
        .find(|value| !value.is_empty())
        .unwrap_or_default();

    let mut description = format!("{all} was refused; the provider echoes what it was sent ");
    let before_straddler = ECHO_STRADDLED_CHAR.saturating_sub(straddler.chars().count() / 2);
    pad(&mut description, before_straddler);
    description.push_str(straddler);
    description.push_str(&format!(
        "\u{1b}[31m refresh_token={}\n\tclient_secret={} \u{1b}]0;pwned\u{7}authorization={}\u{1b}[0m ",
        sent.refresh_token, sent.client_secret, sent.authorization
    ));
    pad(
        &mut description,
        ECHO_MIN_CHARS.saturating_sub(all.chars().count() + 1),
    );
    description.push(' ');
    description.push_str(&all);
    json!({
        "error": format!("invalid_request{}", sent.refresh_token),
        "error_description": description,
    })
}

/// Pads `text` with dots to `chars` characters.
fn pad(text: &mut String, chars: usize) {
    let missing = chars.saturating_sub(text.chars().count());
    text.extend(std::iter::repeat_n('.', missing));
}

/// A status the plan names, or 500 for one outside 200..=599.
fn status_code(status: u16) -> StatusCode {
    match StatusCode::from_u16(status) {
        Ok(code) if (200..=599).contains(&status) => code,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn respond(status: StatusCode, content_type: Option<&'static str>, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A body of exactly `bytes` bytes that starts like a token response.
fn oversized_body(bytes: usize) -> String {
    const HEAD: &str = r#"{"access_token":""#;
    const TAIL: &str = r#"","token_type":"Bearer","expires_in":300}"#;
    if bytes < HEAD.len() + TAIL.len() {
        let mut body = format!("{HEAD}{TAIL}");
        body.truncate(bytes);
        return body;
    }
    let mut body = String::with_capacity(bytes);
    body.push_str(HEAD);
    body.extend(std::iter::repeat_n('A', bytes - HEAD.len() - TAIL.len()));
    body.push_str(TAIL);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(kind: FaultKind) -> Response {
        match kind.action(&Sent::default()) {
            Some(FaultAction::Respond(response)) => response,
            _ => panic!("expected a response"),
        }
    }

    #[test]
    fn a_kind_without_fraction_hits_every_request() {
        let faults = Faults {
            kind: Some(FaultKind::Garbage),
            ..Faults::default()
        };
        assert!((0..100).all(|_| faults.roll().is_some()));
    }

    #[test]
    fn no_kind_never_hits() {
        let faults = Faults {
            fraction: 1.0,
            latency_ms: 10,
            ..Faults::default()
        };
        assert!((0..100).all(|_| faults.roll().is_none()));
    }

    #[test]
    fn a_fraction_hits_some_requests() {
        let faults = Faults {
            fraction: 0.5,
            kind: Some(FaultKind::Garbage),
            ..Faults::default()
        };
        let hits = (0..1000).filter(|_| faults.roll().is_some()).count();
        assert!((300..700).contains(&hits), "{hits} of 1000");
    }

    #[test]
    fn oversized_bodies_have_the_exact_length() {
        for bytes in [0, 5, 58, 59, 60, 1000, 100_000] {
            assert_eq!(oversized_body(bytes).len(), bytes);
        }
        assert!(oversized_body(1000).starts_with(r#"{"access_token":"AAA"#));
        assert!(serde_json::from_str::<serde_json::Value>(&oversized_body(1000)).is_ok());
    }

    #[test]
    fn status_503_defaults_to_temporarily_unavailable() {
        let response = response(FaultKind::Status {
            status: 503,
            retry_after: Some("30".to_owned()),
            body: None,
        });
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn other_statuses_default_to_an_empty_body() {
        let response = response(FaultKind::Status {
            status: 429,
            retry_after: None,
            body: None,
        });
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().get(header::CONTENT_TYPE).is_none());
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn form_encoded_errors_are_encoded() {
        assert_eq!(form_urlencode("invalid_grant"), "invalid_grant");
        assert_eq!(form_urlencode("a b&c=d"), "a+b%26c%3Dd");
    }

    #[test]
    fn check_rejects_what_cannot_be_sent() {
        let with = |kind| Faults {
            kind: Some(kind),
            ..Faults::default()
        };
        assert!(with(FaultKind::Html { status: 502 }).check().is_ok());
        assert!(with(FaultKind::Html { status: 99 }).check().is_err());
        assert!(
            with(FaultKind::Status {
                status: 503,
                retry_after: Some("bad\nvalue".to_owned()),
                body: None
            })
            .check()
            .is_err()
        );
        let fraction = |fraction| Faults {
            fraction,
            ..Faults::default()
        };
        assert!(with(FaultKind::EchoSecrets { status: 400 }).check().is_ok());
        assert!(
            with(FaultKind::EchoSecrets { status: 600 })
                .check()
                .is_err()
        );
        assert!(with(FaultKind::ExpiredAccessToken).check().is_ok());
        assert!(
            with(FaultKind::HugeMetadata { bytes: 70_000 })
                .check()
                .is_ok()
        );
        assert!(
            with(FaultKind::HugeMetadata { bytes: usize::MAX })
                .check()
                .is_err()
        );
        assert!(fraction(1.5).check().is_err());
        assert!(fraction(f64::NAN).check().is_err());
        assert!(fraction(0.25).check().is_ok());
    }

    #[test]
    fn faults_parse_from_the_documented_json() {
        let faults: Faults = serde_json::from_str(
            r#"{"latency_ms": 50, "kind": {"kind": "o_auth_error", "status": 400, "error": "invalid_scope", "description": null}}"#,
        )
        .unwrap();
        assert_eq!(faults.latency_ms, 50);
        assert_eq!(
            faults.kind,
            Some(FaultKind::OAuthError {
                status: 400,
                error: "invalid_scope".to_owned(),
                description: None
            })
        );
        let faults: Faults =
            serde_json::from_str(r#"{"kind": {"kind": "drop_connection"}}"#).unwrap();
        assert_eq!(faults.kind, Some(FaultKind::DropConnection));
        let faults: Faults =
            serde_json::from_str(r#"{"kind": {"kind": "status", "status": 503}}"#).unwrap();
        assert_eq!(
            faults.kind,
            Some(FaultKind::Status {
                status: 503,
                retry_after: None,
                body: None
            })
        );
        let kind: FaultKind = serde_json::from_str(
            r#"{"kind": "oauth_error", "status": 401, "error": "invalid_client"}"#,
        )
        .unwrap();
        assert!(matches!(kind, FaultKind::OAuthError { status: 401, .. }));
        for (json, kind) in [
            (
                r#"{"kind": "echo_secrets", "status": 400}"#,
                FaultKind::EchoSecrets { status: 400 },
            ),
            (
                r#"{"kind": "expired_access_token"}"#,
                FaultKind::ExpiredAccessToken,
            ),
            (
                r#"{"kind": "huge_metadata", "bytes": 70000}"#,
                FaultKind::HugeMetadata { bytes: 70_000 },
            ),
        ] {
            assert_eq!(
                serde_json::from_str::<FaultKind>(json).unwrap(),
                kind,
                "{json}"
            );
        }
    }

    #[test]
    fn huge_metadata_covers_discovery_without_being_asked() {
        let mut faults = Faults {
            kind: Some(FaultKind::HugeMetadata { bytes: 10 }),
            ..Faults::default()
        };
        assert!(faults.covers_discovery());
        faults.kind = Some(FaultKind::Garbage);
        assert!(!faults.covers_discovery());
        faults.include_discovery = true;
        assert!(faults.covers_discovery());
    }

    #[test]
    fn echoes_put_a_secret_across_character_300() {
        let refresh_token = "R".repeat(43);
        let sent = Sent {
            refresh_token: &refresh_token,
            client_secret: "s3cret",
            authorization: "Basic c3ZjOnMzY3JldA==",
        };
        let body = echo_body(&sent);
        assert_eq!(body["error"], format!("invalid_request{refresh_token}"));
        let description: Vec<char> = body["error_description"]
            .as_str()
            .unwrap()
            .chars()
            .collect();
        assert!(description.len() >= ECHO_MIN_CHARS);
        assert!(description[..21].iter().all(|c| *c == 'R'));
        let (before, after) = (description[299], description[300]);
        assert_eq!((before, after), ('R', 'R'));
        let text: String = description.iter().collect();
        assert!(text.ends_with("s3cret Basic c3ZjOnMzY3JldA=="), "{text}");
        assert_eq!(text.matches("s3cret").count(), 3);

        let empty = echo_body(&Sent::default());
        assert_eq!(empty["error"], "invalid_request");
    }
}
