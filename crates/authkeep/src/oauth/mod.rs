//! The OAuth 2.0 and OpenID Connect protocol, without I/O: each endpoint builds an
//! `http::Request<Vec<u8>>` and interprets an `http::Response<Vec<u8>>`, so every
//! edge case is tested on bytes. A [`crate::Transport`] does the sending. Whatever the
//! provider says passes through [`sanitize()`] before anyone sees it.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};
use url::Url;

use crate::session::{Client, ClientAuth};

pub mod authorization;
pub mod client_credentials;
pub mod device;
pub mod discovery;
mod providers;
pub mod refresh;
pub mod response;
pub mod revocation;
pub mod sanitize;

pub use discovery::Metadata;
pub use response::{Cause, ProviderFailure, parse_token_response};
pub use sanitize::{Secrets, display_url, sanitize};

/// Why an endpoint URL may not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Not a URL.
    #[error("invalid URL {shown:?}: {reason}")]
    Invalid {
        /// The URL as shown to people (no user information).
        shown: String,
        /// What is wrong.
        reason: String,
    },
    /// Plain http to a host that is not loopback, while insecure http is not
    /// allowed.
    #[error(
        "refusing to send credentials to {shown} over plain http; use https (plain http is allowed only on loopback unless insecure http is allowed explicitly)"
    )]
    PlainHttp {
        /// The URL as shown to people.
        shown: String,
    },
    /// A scheme other than https or http.
    #[error("unsupported URL scheme {scheme:?} in {shown}")]
    Scheme {
        /// The scheme.
        scheme: String,
        /// The URL as shown to people.
        shown: String,
    },
    /// A URL no request can carry (`http::Uri` takes at most 65,534 bytes).
    #[error("unusable URL {shown} ({bytes} bytes): {reason}")]
    Unusable {
        /// The URL as shown to people (shortened).
        shown: String,
        /// Its length.
        bytes: usize,
        /// What is wrong.
        reason: String,
    },
}

/// An endpoint URL that tokens may be sent to.
///
/// Only https, or plain http to a loopback host (127.0.0.0/8, ::1, `localhost`),
/// unless the caller allowed insecure http explicitly; and only a URL a request
/// can carry. Messages show the URL through [`display_url`].
pub fn check_endpoint(url: &str, allow_insecure_http: bool) -> Result<Url, EndpointError> {
    let shown = || display_url(url);
    let parsed = Url::parse(url).map_err(|e| EndpointError::Invalid {
        shown: shown(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_insecure_http || is_loopback(&parsed) => {}
        "http" => return Err(EndpointError::PlainHttp { shown: shown() }),
        other => {
            return Err(EndpointError::Scheme {
                scheme: other.chars().take(20).collect(),
                shown: shown(),
            });
        }
    }
    http::Uri::try_from(parsed.as_str()).map_err(|e| EndpointError::Unusable {
        shown: shown(),
        bytes: url.len(),
        reason: e.to_string(),
    })?;
    Ok(parsed)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Builds a form POST to a token-style endpoint, authenticating the client as it
/// is configured (RFC 6749 §2.3.1). Fails only for a URL that a request cannot
/// carry (one [`check_endpoint`] refuses too).
pub(crate) fn form_post<'a>(
    url: &Url,
    client: &'a Client,
    mut params: Vec<(&'a str, &'a str)>,
) -> Result<Request<Vec<u8>>, String> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(url.as_str())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json");
    let secret = client.client_secret.as_ref().map(|s| s.expose_secret());
    match (client.auth, secret) {
        (ClientAuth::ClientSecretBasic, Some(secret)) => {
            builder = builder.header(AUTHORIZATION, basic_auth(&client.client_id, secret));
        }
        (ClientAuth::ClientSecretPost, Some(secret)) => {
            params.push(("client_id", &client.client_id));
            params.push(("client_secret", secret));
        }
        _ => params.push(("client_id", &client.client_id)),
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    // The method and header names are static and the header values ASCII, so
    // only the URI (too long for `http::Uri`) can make this fail.
    builder.body(body.into_bytes()).map_err(|e| {
        format!(
            "unusable URL {} ({} bytes): {e}",
            display_url(url.as_str()),
            url.as_str().len()
        )
    })
}

/// The secrets a request puts on the wire for `client`: its secret, and with
/// HTTP Basic the credential made of it.
pub fn client_secrets(client: &Client) -> Secrets {
    let mut secrets = Secrets::new();
    if let Some(secret) = &client.client_secret {
        secrets.add(secret.expose_secret());
        if client.auth == ClientAuth::ClientSecretBasic {
            secrets.add_basic_credential(&client.client_id, secret.expose_secret());
        }
    }
    secrets
}

/// `Basic base64(urlencode(id):urlencode(secret))`, as RFC 6749 §2.3.1 requires.
fn basic_auth(client_id: &str, secret: &str) -> String {
    format!("Basic {}", basic_credential(client_id, secret))
}

/// The credential of [`basic_auth`], `base64(urlencode(id):urlencode(secret))`.
pub(crate) fn basic_credential(client_id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = zeroize::Zeroizing::new(format!("{}:{}", encode(client_id), encode(secret)));
    base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_endpoint("https://idp.example/token", false).is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080/token", false).is_ok());
        assert!(check_endpoint("http://127.8.0.1/token", false).is_ok());
        assert!(check_endpoint("http://[::1]:9/token", false).is_ok());
        assert!(check_endpoint("http://localhost/token", false).is_ok());
        assert!(matches!(
            check_endpoint("http://idp.example/token", false),
            Err(EndpointError::PlainHttp { .. })
        ));
        assert!(check_endpoint("http://localhost.evil.example/token", false).is_err());
        assert!(check_endpoint("http://idp.example/token", true).is_ok());
        assert!(check_endpoint("ftp://idp.example/token", true).is_err());
    }

    #[test]
    fn a_url_too_long_for_a_request_is_refused_and_shown_short() {
        let long = format!("https://idp.example/{}", "t".repeat(70_000));
        let message = check_endpoint(&long, false).unwrap_err().to_string();
        assert!(message.contains("70020 bytes"), "{message}");
        assert!(message.chars().count() < 400, "{message}");
        assert!(
            check_endpoint(
                &format!("https://idp.example/{}", "t".repeat(60_000)),
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn endpoint_messages_never_show_user_information() {
        for url in [
            "http://user:hunter2@idp.example/token",
            "ftp://user:hunter2@idp.example/token",
            "https://user:hunter2@idp.example:99999/token",
        ] {
            let message = check_endpoint(url, false).unwrap_err().to_string();
            assert!(!message.contains("hunter2"), "{message}");
            assert!(!message.contains("user"), "{message}");
        }
    }

    #[test]
    fn client_secrets_cover_what_the_request_carries() {
        let url = Url::parse("https://idp.example/token").unwrap();
        let refresh_token = crate::secret::RefreshToken::new("rt/+ secret");
        let bodies = [
            (
                ClientAuth::ClientSecretBasic,
                "grant_type=refresh_token&refresh_token=[redacted]",
            ),
            (
                ClientAuth::ClientSecretPost,
                "grant_type=refresh_token&refresh_token=[redacted]&client_id=svc+id&client_secret=[redacted]",
            ),
        ];
        for (auth, expected) in bodies {
            let client = Client {
                client_id: "svc id".into(),
                client_secret: Some(crate::secret::ClientSecret::new("pw&= x")),
                auth,
                ..Default::default()
            };
            let request = refresh::request(&url, &client, &refresh_token).unwrap();
            let secrets = refresh::secrets(&client, &refresh_token);
            let body = String::from_utf8(request.body().clone()).unwrap();
            assert_eq!(sanitize(&body, &secrets, 1000), expected);
            if let Some(header) = request.headers().get(AUTHORIZATION) {
                let shown = sanitize(header.to_str().unwrap(), &secrets, 1000);
                assert_eq!(shown, "Basic [redacted]");
            }
        }
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret() {
        // "a b:c" → "a+b%3Ac"
        assert_eq!(
            basic_auth("id:1", "a b"),
            format!("Basic {}", {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode("id%3A1:a+b")
            })
        );
    }
}
