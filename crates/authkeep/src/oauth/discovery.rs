//! Provider metadata: OpenID Connect discovery (OpenID Connect Discovery 1.0 §4)
//! with the OAuth 2.0 Authorization Server Metadata URL (RFC 8414 §3.1) as the
//! fallback for providers that serve only that.
//!
//! One GET (two when the first document is not served) and an issuer check; the
//! crate for it would bring a large dependency tree for these few lines. A
//! non-loopback `http://` issuer is refused before any request. The `issuer` in
//! the answer must equal the one asked for exactly, and every endpoint the
//! metadata names must pass [`super::check_endpoint`]. Messages show URLs through
//! [`display_url`], never with user information, and the provider's own words
//! only sanitised.

use http::header::ACCEPT;
use http::{Method, Request, Response};
use serde::{Deserialize, Deserializer, Serialize};

use super::{EndpointError, display_url};

/// The part of the provider metadata authkeep uses. Fields added later default
/// when absent (or `null`), so that cached documents of older versions still
/// read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
    /// The PKCE methods the provider supports (RFC 8414 §2); empty when it
    /// does not say.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub code_challenge_methods_supported: Vec<String>,
    /// Whether authorization responses carry `iss` (RFC 9207 §3).
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorization_response_iss_parameter_supported: bool,
    /// The grant types the provider supports; `None` when it does not say
    /// (RFC 8414 §2 then means `authorization_code` and `implicit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
}

/// Reads `null` as the type's default, as an absent field is.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The OpenID Connect discovery document's URL for an issuer: the issuer without
/// a trailing slash, then `/.well-known/openid-configuration`.
pub fn url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The RFC 8414 §3.1 metadata URL for an issuer: `/.well-known/oauth-authorization-server`
/// inserted between the host and the issuer's path (without its trailing slash),
/// so `https://h/tenant` gives `https://h/.well-known/oauth-authorization-server/tenant`.
pub fn oauth_url(issuer: &str) -> String {
    const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
    let trimmed = issuer.trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return format!("{trimmed}{WELL_KNOWN}");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    format!("{scheme}://{authority}{WELL_KNOWN}{path}")
}

/// Builds the OpenID Connect discovery request.
pub fn request(issuer: &str) -> Result<Request<Vec<u8>>, String> {
    request_at(issuer, &url(issuer))
}

/// Builds the RFC 8414 metadata request, the fallback when [`request`]'s
/// document is not served.
pub fn oauth_request(issuer: &str) -> Result<Request<Vec<u8>>, String> {
    request_at(issuer, &oauth_url(issuer))
}

fn request_at(issuer: &str, url: &str) -> Result<Request<Vec<u8>>, String> {
    Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| format!("invalid issuer URL {:?}: {e}", display_url(issuer)))
}

/// Why discovery failed. The texts show URLs without user information and the
/// provider's words sanitised.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Worth retrying: a 5xx, 408, 429, or an unreadable answer.
    Transient(String),
    /// The issuer or its metadata is wrong: retrying will not help.
    Invalid(String),
    /// The metadata names an endpoint that may not be used.
    Endpoint(super::EndpointError),
    /// The document is not served at that URL: a non-success status that is
    /// not transient (404, 400, 401, 403, 405, …). The other document may be.
    NotServed(String),
    /// The issuer is plain http off loopback, and insecure http is not allowed:
    /// refused before any request.
    InsecureIssuer(String),
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::Transient(m)
            | DiscoveryError::Invalid(m)
            | DiscoveryError::NotServed(m)
            | DiscoveryError::InsecureIssuer(m) => f.write_str(m),
            DiscoveryError::Endpoint(e) => write!(f, "discovery: {e}"),
        }
    }
}

/// Checks the issuer before anything is sent to it: a URL, https (plain http
/// only on loopback unless `allow_insecure_http`).
pub fn check_issuer(issuer: &str, allow_insecure_http: bool) -> Result<(), DiscoveryError> {
    match super::check_endpoint(issuer, allow_insecure_http) {
        Ok(_) => Ok(()),
        Err(EndpointError::PlainHttp { shown }) => Err(DiscoveryError::InsecureIssuer(format!(
            "the issuer {shown} uses plain http, and https is required: provider metadata \
             must not be open to tampering (plain http is allowed only on loopback, or when \
             insecure http is allowed explicitly)"
        ))),
        Err(other) => Err(DiscoveryError::Invalid(format!("issuer: {other}"))),
    }
}

/// What to say when neither document could be had: the first URL's failure
/// (not served), then the fallback's, keeping the fallback's kind, so the
/// message names both URLs.
pub fn after_fallback(first: &DiscoveryError, fallback: DiscoveryError) -> DiscoveryError {
    let join = |second: String| format!("{first}; then {second}");
    match fallback {
        DiscoveryError::Transient(m) => DiscoveryError::Transient(join(m)),
        DiscoveryError::Invalid(m) => DiscoveryError::Invalid(join(m)),
        DiscoveryError::NotServed(m) => DiscoveryError::Invalid(join(format!(
            "{m}; check the issuer URL (neither OpenID Connect discovery nor RFC 8414 metadata is served for it)"
        ))),
        other => other,
    }
}

/// Interprets the OpenID Connect discovery answer for `issuer`.
pub fn parse(
    issuer: &str,
    response: &Response<Vec<u8>>,
    allow_insecure_http: bool,
) -> Result<Metadata, DiscoveryError> {
    parse_from(issuer, &url(issuer), response, allow_insecure_http)
}

/// Interprets the RFC 8414 metadata answer for `issuer`.
pub fn parse_oauth(
    issuer: &str,
    response: &Response<Vec<u8>>,
    allow_insecure_http: bool,
) -> Result<Metadata, DiscoveryError> {
    parse_from(issuer, &oauth_url(issuer), response, allow_insecure_http)
}

fn parse_from(
    issuer: &str,
    document: &str,
    response: &Response<Vec<u8>>,
    allow_insecure_http: bool,
) -> Result<Metadata, DiscoveryError> {
    let status = response.status();
    let shown = display_url(document);
    if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        return Err(DiscoveryError::Transient(format!(
            "discovery at {shown} answered HTTP {status}"
        )));
    }
    if !status.is_success() {
        return Err(DiscoveryError::NotServed(format!(
            "discovery at {shown} answered HTTP {status}"
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
    let endpoints = [
        Some(&metadata.token_endpoint),
        metadata.authorization_endpoint.as_ref(),
        metadata.device_authorization_endpoint.as_ref(),
        metadata.revocation_endpoint.as_ref(),
        metadata.introspection_endpoint.as_ref(),
    ];
    for endpoint in endpoints.into_iter().flatten() {
        super::check_endpoint(endpoint, allow_insecure_http).map_err(DiscoveryError::Endpoint)?;
    }
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
            Err(DiscoveryError::NotServed(_))
        ));
        for status in [400, 401, 403, 405] {
            assert!(matches!(
                parse_oauth("https://i", &answer(status, ""), false),
                Err(DiscoveryError::NotServed(_))
            ));
        }
        for status in [408, 429, 500] {
            assert!(matches!(
                parse_oauth("https://i", &answer(status, ""), false),
                Err(DiscoveryError::Transient(_))
            ));
        }
    }

    #[test]
    fn the_rfc_8414_url_goes_between_host_and_path() {
        assert_eq!(
            oauth_url("https://h/tenant"),
            "https://h/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(
            oauth_url("https://h:8443/a/b/"),
            "https://h:8443/.well-known/oauth-authorization-server/a/b"
        );
        assert_eq!(
            oauth_url("https://h"),
            "https://h/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            oauth_url("https://h/"),
            "https://h/.well-known/oauth-authorization-server"
        );
        let request = oauth_request("https://h/tenant").unwrap();
        assert_eq!(
            request.uri(),
            "https://h/.well-known/oauth-authorization-server/tenant"
        );
    }

    #[test]
    fn rfc_8414_answers_are_checked_like_discovery_and_named_by_their_url() {
        let body = r#"{"issuer":"https://h/tenant","token_endpoint":"https://h/tenant/token"}"#;
        let m = parse_oauth("https://h/tenant", &answer(200, body), false).unwrap();
        assert_eq!(m.token_endpoint, "https://h/tenant/token");
        let message = parse_oauth("https://h/tenant/", &answer(200, body), false)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("https://h/.well-known/oauth-authorization-server/tenant")
                && message.contains("differ only in the trailing slash"),
            "{message}"
        );
    }

    #[test]
    fn when_both_documents_fail_the_message_names_both_urls() {
        let issuer = "https://h/tenant";
        let first = parse(issuer, &answer(404, ""), false).unwrap_err();
        let both = after_fallback(
            &first,
            parse_oauth(issuer, &answer(404, ""), false).unwrap_err(),
        );
        let DiscoveryError::Invalid(message) = &both else {
            panic!("{both:?}");
        };
        assert!(
            message.contains("https://h/tenant/.well-known/openid-configuration answered HTTP 404")
                && message.contains(
                    "https://h/.well-known/oauth-authorization-server/tenant answered HTTP 404"
                )
                && message.contains("check the issuer URL"),
            "{message}"
        );
        let busy = after_fallback(
            &first,
            parse_oauth(issuer, &answer(503, ""), false).unwrap_err(),
        );
        assert!(
            matches!(&busy, DiscoveryError::Transient(m) if m.contains("openid-configuration") && m.contains("503")),
            "{busy:?}"
        );
    }

    #[test]
    fn every_endpoint_in_the_metadata_must_be_https_off_loopback() {
        for field in [
            "authorization_endpoint",
            "device_authorization_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
        ] {
            let body = serde_json::json!({
                "issuer": "https://idp.example",
                "token_endpoint": "https://idp.example/token",
                field: "http://idp.example/plain",
            })
            .to_string();
            let result = parse("https://idp.example", &answer(200, &body), false);
            assert!(
                matches!(
                    result,
                    Err(DiscoveryError::Endpoint(EndpointError::PlainHttp { .. }))
                ),
                "{field}: {result:?}"
            );
            assert!(parse("https://idp.example", &answer(200, &body), true).is_ok());
        }
    }

    #[test]
    fn a_plain_http_issuer_is_refused_saying_https_is_required() {
        let error = check_issuer("http://user:pw@idp.example/realm", false).unwrap_err();
        let DiscoveryError::InsecureIssuer(message) = &error else {
            panic!("{error:?}");
        };
        assert!(
            message.contains("https is required") && message.contains("http://idp.example/realm"),
            "{message}"
        );
        assert!(!message.contains("pw"), "{message}");
        assert!(check_issuer("http://idp.example", true).is_ok());
        assert!(check_issuer("http://127.0.0.1:9", false).is_ok());
        assert!(check_issuer("https://idp.example", false).is_ok());
        assert!(matches!(
            check_issuer("not a url", false),
            Err(DiscoveryError::Invalid(_))
        ));
    }

    #[test]
    fn new_fields_are_read_and_older_documents_still_parse() {
        let old = r#"{"issuer":"https://i","token_endpoint":"https://i/t","revocation_endpoint":"https://i/r"}"#;
        let m: Metadata = serde_json::from_str(old).unwrap();
        assert_eq!(m.introspection_endpoint, None);
        assert!(m.code_challenge_methods_supported.is_empty());
        assert!(!m.authorization_response_iss_parameter_supported);
        assert_eq!(m.grant_types_supported, None);
        let new = r#"{"issuer":"https://i","token_endpoint":"https://i/t",
            "introspection_endpoint":"https://i/in","code_challenge_methods_supported":["S256"],
            "authorization_response_iss_parameter_supported":true,
            "grant_types_supported":["client_credentials"]}"#;
        let m: Metadata = serde_json::from_str(new).unwrap();
        assert_eq!(m.introspection_endpoint.as_deref(), Some("https://i/in"));
        assert_eq!(m.code_challenge_methods_supported, ["S256"]);
        assert!(m.authorization_response_iss_parameter_supported);
        assert_eq!(
            m.grant_types_supported.as_deref(),
            Some(&["client_credentials".to_owned()][..])
        );
        let again: Metadata = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(again, m);
        let nulls = r#"{"issuer":"https://i","token_endpoint":"https://i/t",
            "code_challenge_methods_supported":null,
            "authorization_response_iss_parameter_supported":null}"#;
        assert!(serde_json::from_str::<Metadata>(nulls).is_ok());
    }
}
