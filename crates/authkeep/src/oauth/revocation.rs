//! Token revocation (RFC 7009): the request that tells the provider a token is no
//! longer wanted, and what its answer means.
//!
//! RFC 7009 §2.2: the provider answers 200 whether or not the token was valid, so
//! a 200 is success; `unsupported_token_type` means it does not revoke that kind
//! of token; 503 (and other 5xx, 429) may be retried later. The provider's text
//! is sanitised like every other answer.

use http::{Request, Response};
use jiff::Timestamp;
use url::Url;

use super::response::{CODE_MAX_CHARS, DESCRIPTION_MAX_CHARS, retry_after};
use super::{Cause, ProviderFailure, Secrets, sanitize};
use crate::error::FailureClass;
use crate::session::Client;

/// Which kind of token is revoked, sent as `token_type_hint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenKind {
    /// A refresh token: revoking it usually ends the whole grant.
    RefreshToken,
    /// An access token.
    AccessToken,
}

impl TokenKind {
    /// The `token_type_hint` value (RFC 7009 §2.1).
    pub fn hint(self) -> &'static str {
        match self {
            TokenKind::RefreshToken => "refresh_token",
            TokenKind::AccessToken => "access_token",
        }
    }
}

/// What a revocation answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// The provider no longer accepts the token (or never did: RFC 7009 answers
    /// 200 either way).
    Done,
    /// The provider does not revoke tokens of this kind.
    Unsupported,
}

/// Builds the revocation request for `token`, authenticating the client as the
/// token endpoint does. Fails only for a URL a request cannot carry.
pub fn request(
    endpoint: &Url,
    client: &Client,
    token: &str,
    kind: TokenKind,
) -> Result<Request<Vec<u8>>, String> {
    super::form_post(
        endpoint,
        client,
        vec![("token", token), ("token_type_hint", kind.hint())],
    )
}

/// The secrets [`request`] carries, for redacting what the provider answers.
pub fn secrets(client: &Client, token: &str) -> Secrets {
    let mut secrets = super::client_secrets(client);
    secrets.add(token);
    secrets
}

/// Interprets a revocation answer. `now` resolves `Retry-After`.
pub fn parse(
    response: &Response<Vec<u8>>,
    now: Timestamp,
    secrets: &Secrets,
) -> Result<Revoked, ProviderFailure> {
    let status = response.status();
    if status.is_success() {
        return Ok(Revoked::Done);
    }
    let fields: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(response.body()).ok();
    let text = |name: &str| {
        fields
            .as_ref()
            .and_then(|f| f.get(name))
            .and_then(serde_json::Value::as_str)
    };
    let code = text("error");
    if code == Some("unsupported_token_type") {
        return Ok(Revoked::Unsupported);
    }
    let class = if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        FailureClass::Transient
    } else {
        FailureClass::Misconfiguration
    };
    let description = match text("error_description") {
        Some(description) => sanitize(description, secrets, DESCRIPTION_MAX_CHARS),
        None if code.is_none() => "the revocation endpoint refused the request".to_owned(),
        None => String::new(),
    };
    Err(ProviderFailure {
        class,
        status: Some(status.as_u16()),
        code: code.map(|c| sanitize(c, secrets, CODE_MAX_CHARS)),
        description,
        retry_after: retry_after(response.headers(), now),
        cause: Cause::Answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ClientSecret;
    use crate::session::ClientAuth;

    fn answer(status: u16, body: &str) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("retry-after", "30")
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_request_names_the_token_and_its_kind() {
        let url = Url::parse("https://idp.example/revoke").unwrap();
        let public = Client {
            client_id: "cli".into(),
            ..Default::default()
        };
        let body = |r: Request<Vec<u8>>| String::from_utf8(r.into_body()).unwrap();
        assert_eq!(
            body(request(&url, &public, "r/t", TokenKind::RefreshToken).unwrap()),
            "token=r%2Ft&token_type_hint=refresh_token&client_id=cli"
        );
        let confidential = Client {
            client_id: "svc".into(),
            client_secret: Some(ClientSecret::new("pw")),
            auth: ClientAuth::ClientSecretBasic,
            ..Default::default()
        };
        let r = request(&url, &confidential, "at", TokenKind::AccessToken).unwrap();
        assert_eq!(r.headers()[http::header::AUTHORIZATION], "Basic c3ZjOnB3");
        assert_eq!(body(r), "token=at&token_type_hint=access_token");
    }

    #[test]
    fn answers_are_told_apart() {
        let secrets = secrets(&Client::default(), "the-token");
        assert_eq!(parse(&answer(200, ""), now(), &secrets), Ok(Revoked::Done));
        assert_eq!(
            parse(
                &answer(400, r#"{"error":"unsupported_token_type"}"#),
                now(),
                &secrets
            ),
            Ok(Revoked::Unsupported)
        );
        let busy = parse(&answer(503, "<html>busy</html>"), now(), &secrets).unwrap_err();
        assert_eq!(busy.class, FailureClass::Transient);
        assert_eq!(
            busy.retry_after,
            Some(now() + jiff::SignedDuration::from_secs(30))
        );
        let refused = parse(
            &answer(
                401,
                r#"{"error":"invalid_client","error_description":"bad client for the-token\u001b[31m"}"#,
            ),
            now(),
            &secrets,
        )
        .unwrap_err();
        assert_eq!(refused.class, FailureClass::Misconfiguration);
        assert_eq!(refused.code.as_deref(), Some("invalid_client"));
        assert!(!refused.summary().contains("the-token"), "{refused:?}");
        assert!(!refused.summary().contains('\u{1b}'), "{refused:?}");
        let bare = parse(&answer(404, "not found"), now(), &secrets).unwrap_err();
        assert_eq!(
            bare.summary(),
            "HTTP 404: the revocation endpoint refused the request"
        );
    }
}
