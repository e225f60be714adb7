//! The OAuth 2.0 and OpenID Connect protocol, without I/O: each endpoint builds an
//! `http::Request<Vec<u8>>` and interprets an `http::Response<Vec<u8>>`, so every
//! edge case is tested on bytes. [`crate::http`] does the sending.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};
use url::Url;

use crate::session::{Client, ClientAuth};

pub mod discovery;
pub mod refresh;
pub mod response;

pub use discovery::Metadata;
pub use response::{ProviderFailure, parse_token_response};

/// An endpoint URL that tokens may be sent to.
///
/// Only https, or plain http to a loopback host (127.0.0.0/8, ::1, `localhost`),
/// unless the caller allowed insecure http explicitly.
pub fn check_endpoint(url: &str, allow_insecure_http: bool) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_insecure_http || is_loopback(&parsed) => Ok(parsed),
        "http" => Err(format!(
            "refusing to send credentials to {url} over plain http; use https (plain http is allowed only on loopback, or with --insecure-allow-http)"
        )),
        other => Err(format!("unsupported URL scheme {other:?} in {url}")),
    }
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
/// is configured (RFC 6749 §2.3.1).
pub(crate) fn form_post<'a>(
    url: &Url,
    client: &'a Client,
    mut params: Vec<(&'a str, &'a str)>,
) -> Request<Vec<u8>> {
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
    // Method, a URI that parsed as a URL and static header names cannot fail to
    // build a request; the header values are ASCII.
    builder
        .body(body.into_bytes())
        .expect("a form POST is always a valid request")
}

/// `Basic base64(urlencode(id):urlencode(secret))`, as RFC 6749 §2.3.1 requires.
fn basic_auth(client_id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
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
        assert!(check_endpoint("http://idp.example/token", false).is_err());
        assert!(check_endpoint("http://localhost.evil.example/token", false).is_err());
        assert!(check_endpoint("http://idp.example/token", true).is_ok());
        assert!(check_endpoint("ftp://idp.example/token", true).is_err());
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
