//! The authorization code grant with PKCE S256, without I/O (RFC 6749 §4.1,
//! RFC 7636, RFC 8252 loopback redirects, RFC 9207 `iss`): making the verifier,
//! challenge and `state`, building the URL the browser opens, reading the query
//! string of the redirect that comes back, building the token request that
//! exchanges the code, and checking loopback redirect URIs. Randomness is the
//! caller's: every constructor takes its random bytes as an argument.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;
use sha2::{Digest, Sha256};
use url::Url;

use super::{Secrets, display_url, sanitize};
use crate::secret::{AuthorizationCode, PkceVerifier};
use crate::session::Client;

/// The longest OAuth `error` code kept from a callback, in characters.
const CODE_MAX_CHARS: usize = 64;
/// The longest `error_description` kept from a callback, in characters.
const DESCRIPTION_MAX_CHARS: usize = 300;
/// The longest issuer shown in an [`CallbackError::IssuerMismatch`], in characters.
const ISSUER_MAX_CHARS: usize = 200;

/// The parameters [`authorization_url`] sets itself, which extra parameters
/// cannot override.
const PROTOCOL_PARAMS: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// A PKCE pair (RFC 7636): the verifier kept by the client and the S256
/// challenge sent in the authorization request. `Debug` does not show the
/// verifier.
#[derive(Clone, Debug)]
pub struct Pkce {
    /// The code verifier, sent only with the token request.
    pub verifier: PkceVerifier,
    /// `BASE64URL(SHA256(verifier))`, sent in the authorization request.
    pub challenge: String,
}

/// A PKCE pair made of 32 random bytes: the verifier is their base64url
/// encoding without padding (43 characters, RFC 7636 §4.1), the challenge the
/// base64url encoding of the verifier's SHA-256 (method `S256`).
///
/// The bytes must come from a cryptographically secure source (the operating
/// system's generator): whoever can guess them can redeem an intercepted code.
pub fn new_pkce(random: [u8; 32]) -> Pkce {
    let verifier = PkceVerifier::new(URL_SAFE_NO_PAD.encode(random));
    let challenge = challenge_of(&verifier);
    Pkce {
        verifier,
        challenge,
    }
}

/// The S256 challenge of `verifier` (RFC 7636 §4.2).
fn challenge_of(verifier: &PkceVerifier) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose_secret().as_bytes()))
}

/// A `state` value made of 16 random bytes, base64url without padding (22
/// characters).
///
/// The bytes must come from a cryptographically secure source: `state` is what
/// protects the redirect against cross-site request forgery (RFC 6749 §10.12).
pub fn new_state(random: [u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// What goes into the authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3).
/// `Debug` does not show the state.
#[derive(Clone, Copy)]
pub struct AuthorizationRequest<'a> {
    /// The provider's authorization endpoint; its own query parameters are kept.
    pub endpoint: &'a Url,
    /// The client id.
    pub client_id: &'a str,
    /// The redirect URI, exactly as it will be sent with the token request.
    pub redirect_uri: &'a str,
    /// The scope asked for; not sent when `None` or empty.
    pub scope: Option<&'a str>,
    /// The `state` value (see [`new_state`]).
    pub state: &'a str,
    /// The PKCE S256 challenge (see [`new_pkce`]).
    pub challenge: &'a str,
    /// Further parameters (`audience`, `prompt`, …), appended after the
    /// protocol ones. One named like a protocol parameter (`response_type`,
    /// `client_id`, `redirect_uri`, `scope`, `state`, `code_challenge`,
    /// `code_challenge_method`) is skipped.
    pub extra: &'a [(String, String)],
}

impl std::fmt::Debug for AuthorizationRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("endpoint", &display_url(self.endpoint.as_str()))
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("state", &"[redacted]")
            .field("challenge", &self.challenge)
            .field("extra", &self.extra)
            .finish()
    }
}

/// The URL the user's browser opens: the endpoint with its own query kept,
/// then `response_type=code`, `client_id`, `redirect_uri`, `scope` (when not
/// empty), `state`, `code_challenge`, `code_challenge_method=S256`, then the
/// extra parameters that do not name one of these.
pub fn authorization_url(req: &AuthorizationRequest) -> Url {
    let mut url = req.endpoint.clone();
    {
        let mut pairs = url.query_pairs_mut();
        pairs
            .append_pair("response_type", "code")
            .append_pair("client_id", req.client_id)
            .append_pair("redirect_uri", req.redirect_uri);
        if let Some(scope) = req.scope.filter(|s| !s.is_empty()) {
            pairs.append_pair("scope", scope);
        }
        pairs
            .append_pair("state", req.state)
            .append_pair("code_challenge", req.challenge)
            .append_pair("code_challenge_method", "S256");
        for (name, value) in req.extra {
            if !PROTOCOL_PARAMS.contains(&name.as_str()) {
                pairs.append_pair(name, value);
            }
        }
    }
    url
}

/// What the redirect brought back (RFC 6749 §4.1.2).
#[derive(Debug)]
#[non_exhaustive]
pub enum Callback {
    /// The user agreed: the code to exchange with [`token_request`].
    Code {
        /// The authorization code (its `Debug` is redacted).
        code: AuthorizationCode,
    },
    /// The provider refused (RFC 6749 §4.1.2.1), e.g. `access_denied`.
    Error {
        /// The OAuth `error` code, sanitised (at most 64 characters).
        code: String,
        /// The `error_description`, sanitised (at most 300 characters; empty
        /// when absent).
        description: String,
    },
}

/// Why a redirect's query string is not an answer to our request. Messages are
/// one line and never show the state or the code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// `state` is missing or differs from the one sent: the redirect may be
    /// forged (RFC 6749 §10.12).
    #[error("the redirect's state does not match the one sent; ignoring it (possible forgery)")]
    StateMismatch,
    /// `iss` names another issuer (RFC 9207 §2.4): a mix-up attack, perhaps.
    #[error("the redirect comes from issuer {got}, not the expected one (RFC 9207)")]
    IssuerMismatch {
        /// The issuer received, sanitised and shown through [`display_url`].
        got: String,
    },
    /// `iss` is missing although the provider promises it (RFC 9207 §2.4).
    #[error("the redirect carries no iss parameter although the provider promises one (RFC 9207)")]
    IssuerMissing,
    /// Neither a code nor an error.
    #[error("the redirect carries neither a code nor an error")]
    MissingCode,
    /// A parameter appears more than once (RFC 6749 §3.1 forbids it).
    #[error("the redirect repeats the {name} parameter")]
    DuplicateParameter {
        /// The parameter's name.
        name: &'static str,
    },
}

/// Reads the query string of the redirect (with or without its leading `?`).
///
/// `state` must equal `expected_state` exactly (compared in constant time),
/// also for an error answer. `iss` (RFC 9207), when present, must equal
/// `expected_issuer` exactly; when absent it is an error if `iss_required` (the
/// provider's metadata says
/// `authorization_response_iss_parameter_supported`). An `iss` present while
/// `expected_issuer` is `None` is a mismatch. Then `error` gives
/// [`Callback::Error`], with code and description sanitised, and otherwise
/// `code` must be present and not empty.
pub fn parse_callback(
    query: &str,
    expected_state: &str,
    expected_issuer: Option<&str>,
    iss_required: bool,
) -> Result<Callback, CallbackError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut state = None;
    let mut iss = None;
    let mut code = None;
    let mut error = None;
    let mut description = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let (slot, name) = match name.as_ref() {
            "state" => (&mut state, "state"),
            "iss" => (&mut iss, "iss"),
            "code" => (&mut code, "code"),
            "error" => (&mut error, "error"),
            "error_description" => (&mut description, "error_description"),
            _ => continue,
        };
        if slot.is_some() {
            return Err(CallbackError::DuplicateParameter { name });
        }
        *slot = Some(zeroize::Zeroizing::new(value.into_owned()));
    }
    match &state {
        Some(got) if constant_time_eq(got.as_bytes(), expected_state.as_bytes()) => {}
        _ => return Err(CallbackError::StateMismatch),
    }
    match (iss.as_deref(), expected_issuer) {
        (Some(got), Some(expected)) if got == expected => {}
        (Some(got), _) => {
            let mut secrets = Secrets::new();
            secrets.add(expected_state);
            return Err(CallbackError::IssuerMismatch {
                got: display_url(&sanitize(got, &secrets, ISSUER_MAX_CHARS)),
            });
        }
        (None, _) if iss_required => return Err(CallbackError::IssuerMissing),
        (None, _) => {}
    }
    // What the provider says is shown to people: no control characters, bounded,
    // and never the state (a provider may echo it).
    let mut secrets = Secrets::new();
    secrets.add(expected_state);
    if let Some(error) = error {
        return Ok(Callback::Error {
            code: sanitize(&error, &secrets, CODE_MAX_CHARS),
            description: description
                .map(|d| sanitize(&d, &secrets, DESCRIPTION_MAX_CHARS))
                .unwrap_or_default(),
        });
    }
    match code {
        Some(code) if !code.is_empty() => Ok(Callback::Code {
            code: AuthorizationCode::new(code.as_str()),
        }),
        _ => Err(CallbackError::MissingCode),
    }
}

/// Compares without stopping at the first difference (the length may leak).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Builds the token request exchanging `code` (RFC 6749 §4.1.3, RFC 7636 §4.5),
/// authenticating the client as configured. `redirect_uri` must be the one of
/// the authorization request. Fails only for an endpoint URL that a request
/// cannot carry.
pub fn token_request(
    token_endpoint: &Url,
    client: &Client,
    code: &AuthorizationCode,
    redirect_uri: &str,
    verifier: &PkceVerifier,
) -> Result<Request<Vec<u8>>, String> {
    super::form_post(
        token_endpoint,
        client,
        vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.expose_secret()),
        ],
    )
}

/// The secrets [`token_request`] carries, for redacting what the provider
/// answers.
pub fn secrets(client: &Client, code: &AuthorizationCode, verifier: &PkceVerifier) -> Secrets {
    let mut secrets = super::client_secrets(client);
    secrets.add(code.expose_secret());
    secrets.add(verifier.expose_secret());
    secrets
}

/// A loopback redirect URI, `http://127.0.0.1:{port}{path}` (RFC 8252 §7.3).
/// An empty path becomes `/`; a path not starting with `/` gets one.
pub fn loopback_redirect_uri(port: u16, path: &str) -> String {
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!("http://127.0.0.1:{port}{slash}{path}")
}

/// Checks a redirect URI a local listener is to serve, returning the address to
/// listen on and the path to expect.
///
/// Accepted (RFC 8252 §7.3): `http://127.0.0.1:PORT/PATH`,
/// `http://[::1]:PORT/PATH` and `http://localhost:PORT/PATH` (which listens on
/// 127.0.0.1), with an explicit non-zero port other than 80, and no user
/// information, query or fragment.
pub fn check_redirect_uri(uri: &str) -> Result<(SocketAddr, String), String> {
    const ACCEPTED: &str = "a redirect URI must be http://127.0.0.1:PORT/PATH, http://[::1]:PORT/PATH or http://localhost:PORT/PATH with an explicit port and no query or fragment (RFC 8252 §7.3)";
    let shown = display_url(uri);
    let refuse = |why: &str| format!("unusable redirect URI {shown}: {why}; {ACCEPTED}");
    let url = Url::parse(uri).map_err(|e| refuse(&e.to_string()))?;
    if url.scheme() != "http" {
        return Err(refuse("not plain http"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("it carries user information"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("it has a query or fragment"));
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) if ip == Ipv4Addr::LOCALHOST => ip.into(),
        Some(url::Host::Ipv6(ip)) if ip == Ipv6Addr::LOCALHOST => ip.into(),
        Some(url::Host::Domain("localhost")) => Ipv4Addr::LOCALHOST.into(),
        _ => return Err(refuse("not a loopback host")),
    };
    // `Url` drops the scheme's default port, so `:80` reads as no port.
    let port = match url.port() {
        Some(port) if port != 0 => port,
        _ => return Err(refuse("no explicit port (or port 0 or 80)")),
    };
    Ok((SocketAddr::new(ip, port), url.path().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "st4te-Value_xyz";
    const RFC7636_BYTES: [u8; 32] = [
        116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37,
        77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
    ];

    fn params(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn rfc7636_appendix_b_vector() {
        let pkce = new_pkce(RFC7636_BYTES);
        assert_eq!(
            pkce.verifier.expose_secret(),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        assert_eq!(
            pkce.challenge,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(pkce.verifier.expose_secret().len(), 43);
        assert_eq!(new_state([0xff; 16]).len(), 22);
        assert_ne!(new_state([1; 16]), new_state([2; 16]));
    }

    #[test]
    fn debug_never_shows_verifier_or_code() {
        let pkce = new_pkce(RFC7636_BYTES);
        let shown = format!("{pkce:?}");
        assert!(!shown.contains("dBjftJeZ4CVP"), "{shown}");
        assert!(shown.contains("E9Melhoa"), "{shown}");
        let callback =
            parse_callback("code=c0de-secret&state=st4te-Value_xyz", STATE, None, false).unwrap();
        let shown = format!("{callback:?}");
        assert!(!shown.contains("c0de-secret"), "{shown}");
        let endpoint = Url::parse("https://idp.example/authorize").unwrap();
        let req = AuthorizationRequest {
            endpoint: &endpoint,
            client_id: "cli",
            redirect_uri: "http://127.0.0.1:1/",
            scope: None,
            state: STATE,
            challenge: "c",
            extra: &[],
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains(STATE) && shown.contains("cli"), "{shown}");
    }

    #[test]
    fn authorization_url_has_every_parameter_and_keeps_the_endpoints_query() {
        let endpoint = Url::parse("https://idp.example/authorize?tenant=a%20b").unwrap();
        let extra = vec![
            ("audience".to_owned(), "api".to_owned()),
            ("state".to_owned(), "evil".to_owned()),
            ("code_challenge_method".to_owned(), "plain".to_owned()),
        ];
        let url = authorization_url(&AuthorizationRequest {
            endpoint: &endpoint,
            client_id: "cli",
            redirect_uri: "http://127.0.0.1:8080/cb",
            scope: Some("openid offline_access"),
            state: STATE,
            challenge: "chal",
            extra: &extra,
        });
        let pairs: Vec<(String, String)> = [
            ("tenant", "a b"),
            ("response_type", "code"),
            ("client_id", "cli"),
            ("redirect_uri", "http://127.0.0.1:8080/cb"),
            ("scope", "openid offline_access"),
            ("state", STATE),
            ("code_challenge", "chal"),
            ("code_challenge_method", "S256"),
            ("audience", "api"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(params(&url), pairs);
        assert_eq!(url.path(), "/authorize");
    }

    #[test]
    fn an_empty_scope_is_not_sent() {
        let endpoint = Url::parse("https://idp.example/authorize").unwrap();
        for scope in [None, Some("")] {
            let url = authorization_url(&AuthorizationRequest {
                endpoint: &endpoint,
                client_id: "cli",
                redirect_uri: "http://127.0.0.1:1/",
                scope,
                state: STATE,
                challenge: "c",
                extra: &[],
            });
            assert!(params(&url).iter().all(|(k, _)| k != "scope"), "{url}");
        }
    }

    #[test]
    fn a_good_callback_gives_the_code() {
        let q = format!("?code=abc%2B1&state={STATE}&iss=https%3A%2F%2Fidp.example");
        match parse_callback(&q, STATE, Some("https://idp.example"), true).unwrap() {
            Callback::Code { code } => assert_eq!(code.expose_secret(), "abc+1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wrong_or_missing_state_is_refused_without_showing_it() {
        for q in [
            "code=abc&state=other".to_owned(),
            "code=abc".to_owned(),
            format!("code=abc&state={STATE}x"),
            "error=access_denied&state=nope".to_owned(),
        ] {
            let error = parse_callback(&q, STATE, None, false).unwrap_err();
            assert_eq!(error, CallbackError::StateMismatch, "{q}");
            let message = error.to_string();
            assert!(
                !message.contains(STATE) && !message.contains("abc"),
                "{message}"
            );
        }
        let q = format!("code=abc&state={STATE}&state={STATE}");
        assert_eq!(
            parse_callback(&q, STATE, None, false).unwrap_err(),
            CallbackError::DuplicateParameter { name: "state" }
        );
    }

    #[test]
    fn an_error_is_sanitised() {
        let q = format!(
            "state={STATE}&error=access_denied%0A%1B[31m&error_description=no%0D%0Ait+is+{STATE}"
        );
        match parse_callback(&q, STATE, None, false).unwrap() {
            Callback::Error { code, description } => {
                assert!(code.starts_with("access_denied"), "{code}");
                assert!(!code.chars().any(char::is_control), "{code:?}");
                assert!(
                    !description.chars().any(char::is_control),
                    "{description:?}"
                );
                assert!(!description.contains(STATE), "{description}");
                assert!(description.starts_with("no"), "{description}");
            }
            other => panic!("{other:?}"),
        }
        let q = format!("state={STATE}&error={}", "x".repeat(500));
        match parse_callback(&q, STATE, None, false).unwrap() {
            Callback::Error { code, description } => {
                assert!(code.chars().count() <= CODE_MAX_CHARS, "{code}");
                assert!(description.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn iss_is_checked_as_rfc9207_says() {
        let issuer = Some("https://idp.example");
        let good = format!("code=c&state={STATE}&iss=https://idp.example");
        assert!(parse_callback(&good, STATE, issuer, true).is_ok());
        assert!(parse_callback(&good, STATE, issuer, false).is_ok());

        let bad = format!("code=c&state={STATE}&iss=https://evil.example/%0Ax");
        let error = parse_callback(&bad, STATE, issuer, false).unwrap_err();
        match &error {
            CallbackError::IssuerMismatch { got } => {
                assert!(got.contains("evil.example"), "{got}");
                assert!(!got.chars().any(char::is_control), "{got:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!error.to_string().contains(STATE));
        // An iss while none is expected is not silently accepted.
        assert!(matches!(
            parse_callback(&good, STATE, None, false),
            Err(CallbackError::IssuerMismatch { .. })
        ));
        // A trailing slash is another issuer.
        let slash = format!("code=c&state={STATE}&iss=https://idp.example/");
        assert!(parse_callback(&slash, STATE, issuer, false).is_err());

        let missing = format!("code=c&state={STATE}");
        assert_eq!(
            parse_callback(&missing, STATE, issuer, true).unwrap_err(),
            CallbackError::IssuerMissing
        );
        assert!(parse_callback(&missing, STATE, issuer, false).is_ok());
    }

    #[test]
    fn a_missing_code_is_an_error() {
        for q in [format!("state={STATE}"), format!("state={STATE}&code=")] {
            let error = parse_callback(&q, STATE, None, false).unwrap_err();
            assert_eq!(error, CallbackError::MissingCode);
            assert!(!error.to_string().contains(STATE));
        }
    }

    #[test]
    fn the_token_request_carries_code_redirect_and_verifier() {
        let url = Url::parse("https://idp.example/token").unwrap();
        let client = Client::new("https://idp.example", "cli");
        let code = AuthorizationCode::new("co/de");
        let pkce = new_pkce(RFC7636_BYTES);
        let req = token_request(
            &url,
            &client,
            &code,
            "http://127.0.0.1:9/cb",
            &pkce.verifier,
        )
        .unwrap();
        assert_eq!(req.method(), http::Method::POST);
        let body = String::from_utf8(req.body().clone()).unwrap();
        assert_eq!(
            body,
            "grant_type=authorization_code&code=co%2Fde&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk&client_id=cli"
        );
        let secrets = secrets(&client, &code, &pkce.verifier);
        let shown = sanitize(&body, &secrets, 1000);
        assert!(!shown.contains("dBjftJeZ4CVP"), "{shown}");
        assert!(shown.contains("code=[redacted]"), "{shown}");
    }

    #[test]
    fn loopback_redirect_uris() {
        assert_eq!(loopback_redirect_uri(8080, ""), "http://127.0.0.1:8080/");
        assert_eq!(loopback_redirect_uri(1, "/cb"), "http://127.0.0.1:1/cb");
        assert_eq!(loopback_redirect_uri(1, "cb"), "http://127.0.0.1:1/cb");
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
        assert_eq!(
            check_redirect_uri("http://127.0.0.1:8080/cb").unwrap(),
            (v4, "/cb".to_owned())
        );
        assert_eq!(
            check_redirect_uri("http://localhost:8080").unwrap(),
            (v4, "/".to_owned())
        );
        assert_eq!(
            check_redirect_uri("http://[::1]:9/a/b").unwrap(),
            (
                SocketAddr::from((Ipv6Addr::LOCALHOST, 9)),
                "/a/b".to_owned()
            )
        );
        for bad in [
            "https://127.0.0.1:8080/cb",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:80/cb",
            "http://127.0.0.1:0/cb",
            "http://127.0.0.2:8080/cb",
            "http://localhost.evil.example:8080/cb",
            "http://example.com:8080/cb",
            "http://user:hunter2@127.0.0.1:8080/cb",
            "http://127.0.0.1:8080/cb?x=1",
            "http://127.0.0.1:8080/cb#f",
            "not a url",
        ] {
            let message = check_redirect_uri(bad).unwrap_err();
            assert!(message.contains("127.0.0.1:PORT"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}
