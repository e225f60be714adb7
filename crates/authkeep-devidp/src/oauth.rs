//! OAuth 2.0 request vocabulary (RFC 6749): form parameters, scopes, client
//! authentication (`client_secret_basic`, `client_secret_post`, public clients) and the
//! error responses of the token endpoint. No I/O and no state.

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Map, Value};

use crate::config::ClientConfig;
use crate::flavor::Refusal;

/// The form parameters of one request. A parameter sent without a value counts as
/// absent (RFC 6749 §3.1).
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// The parameters, or the name of one sent more than once (RFC 6749 §3.1 forbids it).
    pub(crate) fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, String> {
        let mut params = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if value.is_empty() {
                continue;
            }
            if params.contains_key(&name) {
                return Err(name);
            }
            params.insert(name, value);
        }
        Ok(Params(params))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn require(&self, name: &str) -> Result<&str, TokenError> {
        self.get(name)
            .ok_or_else(|| TokenError::invalid_request(format!("missing parameter {name}")))
    }
}

/// The scope that asks for a refresh token usable without the user (OpenID Connect
/// Core §11), which Keycloak calls an offline token.
pub(crate) const OFFLINE_ACCESS: &str = "offline_access";

/// A space-separated scope, deduplicated, in the order first given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope(Vec<String>);

impl Scope {
    pub(crate) fn parse(scope: &str) -> Self {
        let mut items: Vec<String> = Vec::new();
        for item in scope.split(' ').filter(|item| !item.is_empty()) {
            if !items.iter().any(|known| known == item) {
                items.push(item.to_owned());
            }
        }
        Scope(items)
    }

    pub(crate) fn contains(&self, item: &str) -> bool {
        self.0.iter().any(|known| known == item)
    }

    pub(crate) fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.iter().all(|item| other.contains(item))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn as_string(&self) -> String {
        self.0.join(" ")
    }
}

/// An error answer of the token endpoint (RFC 6749 §5.2).
#[derive(Debug, PartialEq)]
pub(crate) struct TokenError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
    /// Why a refresh was refused, when that is what this error says, so that a
    /// flavor can word it as its provider does.
    pub(crate) refusal: Option<Refusal>,
    /// Members of the error object beyond `error` and `error_description`.
    pub(crate) extra: Map<String, Value>,
}

impl TokenError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        TokenError {
            status,
            error,
            description: description.into(),
            refusal: None,
            extra: Map::new(),
        }
    }

    /// This error, marked as the refusal of a refresh for `refusal`'s reason.
    pub(crate) fn refused(mut self, refusal: Refusal) -> Self {
        self.refusal = Some(refusal);
        self
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// A 401; the HTTP layer adds the `WWW-Authenticate: Basic` challenge every 401
    /// must carry.
    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub(crate) fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    pub(crate) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    /// RFC 8628 §3.5: the user has not answered yet; poll again after the interval.
    pub(crate) fn authorization_pending(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            description,
        )
    }

    /// RFC 8628 §3.5: polled too soon; the interval grows by 5 s.
    pub(crate) fn slow_down(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "slow_down", description)
    }

    /// RFC 8628 §3.5: the user denied the request.
    pub(crate) fn access_denied(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "access_denied", description)
    }

    /// RFC 8628 §3.5: the device code expired before it was exchanged.
    pub(crate) fn expired_token(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "expired_token", description)
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("error".to_owned(), self.error.into());
        body.insert(
            "error_description".to_owned(),
            self.description.clone().into(),
        );
        Value::Object(body)
    }
}

/// Who is asking, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Client {
    /// No client identification at all.
    Anonymous,
    /// A `client_id` that is not registered.
    Public(String),
    /// A registered client that presented its secret.
    Confidential(String),
}

impl Client {
    pub(crate) fn id(&self) -> Option<&str> {
        match self {
            Client::Anonymous => None,
            Client::Public(id) | Client::Confidential(id) => Some(id),
        }
    }
}

/// Authenticates the client of a token request from its `Authorization` header and
/// its form parameters.
pub(crate) fn authenticate(
    authorization: Option<&HeaderValue>,
    params: &Params,
    clients: &[ClientConfig],
) -> Result<Client, TokenError> {
    let basic = match authorization.map(basic_credentials) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(credentials))) => Some(credentials),
        Some(Err(())) => {
            return Err(TokenError::invalid_client(
                "malformed HTTP Basic credentials",
            ));
        }
    };
    let (client_id, secret) = match basic {
        Some((id, secret)) => {
            if params.get("client_secret").is_some() {
                return Err(TokenError::invalid_request(
                    "the client used more than one authentication method",
                ));
            }
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(TokenError::invalid_request(
                    "client_id differs from the one in the Authorization header",
                ));
            }
            (Some(id), Some(secret))
        }
        None => (
            params.get("client_id").map(str::to_owned),
            params.get("client_secret").map(str::to_owned),
        ),
    };
    let Some(client_id) = client_id else {
        return Ok(Client::Anonymous);
    };
    let Some(registered) = clients.iter().find(|c| c.client_id == client_id) else {
        return Ok(Client::Public(client_id));
    };
    match secret {
        Some(secret) if constant_time_eq(&secret, &registered.client_secret) => {
            Ok(Client::Confidential(client_id))
        }
        Some(_) => Err(TokenError::invalid_client("client authentication failed")),
        None => Err(TokenError::invalid_client(
            "client authentication is required for this client",
        )),
    }
}

/// The client id and secret of an HTTP Basic `Authorization` header (RFC 6749 §2.3.1:
/// each form-url-encoded, then joined by `:` and base64-encoded). `Ok(None)` for another
/// scheme, `Err` for Basic credentials that do not decode.
fn basic_credentials(value: &HeaderValue) -> Result<Option<(String, String)>, ()> {
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, encoded) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let encoded = encoded.trim();
    let decoded = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| ())?;
    let decoded = String::from_utf8(decoded).map_err(|_| ())?;
    let (id, secret) = decoded.split_once(':').ok_or(())?;
    let id = form_urldecode(id).ok_or(())?;
    let secret = form_urldecode(secret).ok_or(())?;
    if id.is_empty() {
        return Err(());
    }
    Ok(Some((id, secret)))
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte. A
/// `%` not followed by two hex digits stays as it is. `None` if the bytes are not UTF-8.
pub(crate) fn form_urldecode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    out.push((high << 4) | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Encodes one value for an `application/x-www-form-urlencoded` body.
pub(crate) fn form_urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// Compares secrets in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
        .unwrap()
    }

    fn basic(id: &str, secret: &str) -> HeaderValue {
        let encoded = STANDARD.encode(format!("{id}:{secret}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    fn clients() -> Vec<ClientConfig> {
        vec![
            ClientConfig::new("svc", "s3cret"),
            ClientConfig::new("a b", "x:y z"),
        ]
    }

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_ignored() {
        let pairs = vec![
            ("scope".to_owned(), "a".to_owned()),
            ("scope".to_owned(), "b".to_owned()),
        ];
        assert_eq!(Params::from_pairs(pairs).unwrap_err(), "scope");
        let p = params(&[("scope", ""), ("grant_type", "refresh_token")]);
        assert_eq!(p.get("scope"), None);
        assert_eq!(p.get("grant_type"), Some("refresh_token"));
        assert_eq!(
            p.require("refresh_token").unwrap_err().error,
            "invalid_request"
        );
    }

    #[test]
    fn scopes_compare_as_sets() {
        let granted = Scope::parse("openid profile offline_access");
        assert!(Scope::parse("profile  openid").is_subset_of(&granted));
        assert!(!Scope::parse("openid email").is_subset_of(&granted));
        assert_eq!(Scope::parse("a b a").as_string(), "a b");
        assert!(Scope::parse("").is_empty());
    }

    #[test]
    fn form_urldecode_follows_the_form_rules() {
        assert_eq!(form_urldecode("a+b%3Ac%25").unwrap(), "a b:c%");
        assert_eq!(form_urldecode("100%").unwrap(), "100%");
        assert_eq!(form_urldecode("%zz%4").unwrap(), "%zz%4");
        assert_eq!(form_urldecode("%C3%A9").unwrap(), "é");
        assert_eq!(form_urldecode("%FF"), None);
    }

    #[test]
    fn basic_credentials_are_form_url_decoded() {
        let header = basic("a+b", "x%3Ay+z");
        let client = authenticate(Some(&header), &Params::default(), &clients()).unwrap();
        assert_eq!(client, Client::Confidential("a b".to_owned()));
    }

    #[test]
    fn basic_and_post_authenticate_registered_clients() {
        let header = basic("svc", "s3cret");
        assert_eq!(
            authenticate(Some(&header), &Params::default(), &clients()).unwrap(),
            Client::Confidential("svc".to_owned())
        );
        let body = params(&[("client_id", "svc"), ("client_secret", "s3cret")]);
        assert_eq!(
            authenticate(None, &body, &clients()).unwrap(),
            Client::Confidential("svc".to_owned())
        );
    }

    #[test]
    fn wrong_or_missing_secrets_are_invalid_client() {
        let error =
            authenticate(Some(&basic("svc", "nope")), &Params::default(), &clients()).unwrap_err();
        assert_eq!(
            (error.status, error.error),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );

        let body = params(&[("client_id", "svc"), ("client_secret", "nope")]);
        let error = authenticate(None, &body, &clients()).unwrap_err();
        assert_eq!(error.error, "invalid_client");

        let error = authenticate(None, &params(&[("client_id", "svc")]), &clients()).unwrap_err();
        assert_eq!(error.error, "invalid_client");
    }

    #[test]
    fn unregistered_and_absent_clients_are_public_or_anonymous() {
        let body = params(&[("client_id", "cli"), ("client_secret", "whatever")]);
        assert_eq!(
            authenticate(None, &body, &clients()).unwrap(),
            Client::Public("cli".to_owned())
        );
        assert_eq!(
            authenticate(None, &Params::default(), &clients()).unwrap(),
            Client::Anonymous
        );
        let bearer = HeaderValue::from_static("Bearer abc");
        assert_eq!(
            authenticate(Some(&bearer), &Params::default(), &clients()).unwrap(),
            Client::Anonymous
        );
    }

    #[test]
    fn malformed_or_conflicting_basic_credentials_are_refused() {
        let garbage = HeaderValue::from_static("Basic !!!");
        assert_eq!(
            authenticate(Some(&garbage), &Params::default(), &clients())
                .unwrap_err()
                .error,
            "invalid_client"
        );
        let both = params(&[("client_secret", "s3cret")]);
        assert_eq!(
            authenticate(Some(&basic("svc", "s3cret")), &both, &clients())
                .unwrap_err()
                .error,
            "invalid_request"
        );
        let other_id = params(&[("client_id", "other")]);
        assert_eq!(
            authenticate(Some(&basic("svc", "s3cret")), &other_id, &clients())
                .unwrap_err()
                .error,
            "invalid_request"
        );
    }
}
