//! OpenID Connect discovery (OpenID Connect Discovery 1.0 §4, RFC 8414 §3).
//!
//! One GET and an issuer check; the crate for it would bring a large dependency
//! tree for these few lines. The `issuer` in the answer must equal the one asked
//! for exactly, and every endpoint must pass [`super::check_endpoint`]. Messages
//! show URLs through [`display_url`], never with user information, and the
//! provider's own words only sanitised.

use http::header::ACCEPT;
use http::{Method, Request, Response};
use serde::{Deserialize, Serialize};

use super::display_url;

/// The part of the provider metadata authkeep uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The issuer identifier.
    pub issuer: String,
    /// The token endpoint.
    pub token_endpoint: String,
    /// The authorization endpoint, for interactive logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// The device authorization endpoint (RFC 8628).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// The revocation endpoint (RFC 7009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// The introspection endpoint (RFC 7662).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// The PKCE methods the authorization endpoint accepts (RFC 8414 §2); empty
    /// when the provider does not say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code_challenge_methods_supported: Vec<String>,
    /// Whether authorization responses carry `iss` (RFC 9207 §3).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// The grant types the provider supports, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
}

/// The discovery document's URL for an issuer: the issuer without a trailing slash,
/// then `/.well-known/openid-configuration`.
pub fn url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Builds the discovery request.
pub fn request(issuer: &str) -> Result<Request<Vec<u8>>, String> {
    Request::builder()
        .method(Method::GET)
        .uri(url(issuer))
        .header(ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| format!("invalid issuer URL {:?}: {e}", display_url(issuer)))
}

/// Why discovery failed. The texts show URLs without user information and the
/// provider's words sanitised.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Worth retrying: a 5xx, 429, or an unreadable answer.
    Transient(String),
    /// The issuer or its metadata is wrong: retrying will not help.
    Invalid(String),
    /// The metadata names a token endpoint that may not be used.
    Endpoint(super::EndpointError),
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::Transient(m) | DiscoveryError::Invalid(m) => f.write_str(m),
            DiscoveryError::Endpoint(e) => write!(f, "discovery: {e}"),
        }
    }
}

/// Interprets the discovery answer for `issuer`.
pub fn parse(
    issuer: &str,
    response: &Response<Vec<u8>>,
    allow_insecure_http: bool,
) -> Result<Metadata, DiscoveryError> {
    let status = response.status();
    let shown = display_url(&url(issuer));
    if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        return Err(DiscoveryError::Transient(format!(
            "discovery at {shown} answered HTTP {status}"
        )));
    }
    if !status.is_success() {
        return Err(DiscoveryError::Invalid(format!(
            "discovery at {shown} answered HTTP {status}; check the issuer URL"
        )));
    }
    let metadata: Metadata = serde_json::from_slice(response.body()).map_err(|_| {
        DiscoveryError::Transient(format!(
            "discovery at {shown} returned no usable provider metadata"
        ))
    })?;
    if metadata.issuer != issuer {
        let (said, asked) = (display_url(&metadata.issuer), display_url(issuer));
        // The commonest mistake, and the hardest to see: say it plainly.
        let slash = metadata.issuer.trim_end_matches('/') == issuer.trim_end_matches('/');
        return Err(DiscoveryError::Invalid(if slash {
            format!(
                "the provider at {shown} says its issuer is {said:?}, not {asked:?}: they differ only in the trailing slash, and issuers must match exactly; use {said:?}"
            )
        } else {
            format!(
                "the provider at {shown} says its issuer is {said:?}, not {asked:?}; use exactly its issuer"
            )
        }));
    }
    super::check_endpoint(&metadata.token_endpoint, allow_insecure_http)
        .map_err(DiscoveryError::Endpoint)?;
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    #[test]
    fn url_strips_one_trailing_slash() {
        assert_eq!(
            url("https://idp.example/realms/x/"),
            "https://idp.example/realms/x/.well-known/openid-configuration"
        );
        assert_eq!(
            url("https://idp.example"),
            "https://idp.example/.well-known/openid-configuration"
        );
    }

    #[test]
    fn issuer_must_match_exactly() {
        let body =
            r#"{"issuer":"https://idp.example/","token_endpoint":"https://idp.example/token"}"#;
        let Err(DiscoveryError::Invalid(message)) =
            parse("https://idp.example", &answer(200, body), false)
        else {
            panic!("a trailing slash is a mismatch");
        };
        assert!(
            message.contains("differ only in the trailing slash")
                && message.ends_with(r#"use "https://idp.example/""#),
            "{message}"
        );
        let other =
            r#"{"issuer":"https://other.example","token_endpoint":"https://idp.example/token"}"#;
        let message = parse("https://idp.example", &answer(200, other), false)
            .unwrap_err()
            .to_string();
        assert!(
            message.ends_with("use exactly its issuer") && !message.contains("slash"),
            "{message}"
        );
        let m = parse("https://idp.example/", &answer(200, body), false).unwrap();
        assert_eq!(m.token_endpoint, "https://idp.example/token");
    }

    #[test]
    fn plain_http_token_endpoint_is_refused_off_loopback() {
        let body =
            r#"{"issuer":"https://idp.example","token_endpoint":"http://idp.example/token"}"#;
        assert!(matches!(
            parse("https://idp.example", &answer(200, body), false),
            Err(DiscoveryError::Endpoint(
                super::super::EndpointError::PlainHttp { .. }
            ))
        ));
        assert!(parse("https://idp.example", &answer(200, body), true).is_ok());
    }

    fn message(error: DiscoveryError) -> String {
        error.to_string()
    }

    #[test]
    fn messages_hide_user_information_and_sanitise_the_provider_issuer() {
        let issuer = "https://user:hunter2@idp.example";
        for status in [503, 404, 200] {
            let shown = message(parse(issuer, &answer(status, "<html>"), false).unwrap_err());
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("https://idp.example/.well-known"), "{shown}");
        }
        let body = serde_json::json!({
            "issuer": format!("https://idp.example/\u{1b}]0;pwned\u{7}\n{}", "i".repeat(5000)),
            "token_endpoint": "https://idp.example/token",
        });
        let shown = message(
            parse(
                "https://idp.example",
                &answer(200, &body.to_string()),
                false,
            )
            .unwrap_err(),
        );
        assert!(
            shown.contains("says its issuer is \"https://idp.example/ iii"),
            "{shown}"
        );
        assert!(
            !shown.contains('\u{1b}') && !shown.contains("pwned"),
            "{shown}"
        );
        assert!(shown.chars().count() < 500, "{shown}");
        let error = request("https://user:hunter2@idp example").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_token_endpoint_too_long_for_a_request_is_invalid() {
        let body = serde_json::json!({
            "issuer": "https://idp.example",
            "token_endpoint": format!("https://idp.example/{}", "t".repeat(70_000)),
        });
        let error = parse(
            "https://idp.example",
            &answer(200, &body.to_string()),
            false,
        );
        let Err(DiscoveryError::Endpoint(endpoint)) = error else {
            panic!("{error:?}");
        };
        let shown = endpoint.to_string();
        assert!(shown.chars().count() < 400, "{shown}");
    }

    #[test]
    fn failures_are_told_apart() {
        assert!(matches!(
            parse("https://i", &answer(503, ""), false),
            Err(DiscoveryError::Transient(_))
        ));
        assert!(matches!(
            parse("https://i", &answer(200, "<html>"), false),
            Err(DiscoveryError::Transient(_))
        ));
        assert!(matches!(
            parse("https://i", &answer(404, ""), false),
            Err(DiscoveryError::Invalid(_))
        ));
    }
}
