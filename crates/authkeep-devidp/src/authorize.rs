//! The authorization request of the authorization code grant (RFC 6749 §4.1.1) with
//! PKCE (RFC 7636): which parameters it needs, which redirect URIs it accepts (plain
//! http on a loopback address with any port, RFC 8252 §7.3), and how an answer goes
//! back to the client: a redirect carrying `code` or `error`, `state` and `iss`
//! (RFC 6749 §4.1.2, RFC 9207). A request whose client or redirect URI cannot be
//! trusted is never redirected; the person at the browser is told instead. No I/O and
//! no state.

use std::net::IpAddr;

use url::{Host, Url};

use crate::config::DEFAULT_SCOPE;
use crate::oauth::Params;

/// The only PKCE method accepted.
const S256: &str = "S256";
/// Length of a base64url SHA-256 digest without padding: every S256 challenge's.
const S256_CHALLENGE_LEN: usize = 43;
/// Longest client identifier accepted.
const CLIENT_ID_MAX: usize = 256;

/// A checked authorization request: what the consent page carries along and the code
/// is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthorizeRequest {
    pub(crate) client_id: String,
    /// The redirect URI exactly as the client sent it; the token request must repeat
    /// it character for character.
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) state: Option<String>,
    pub(crate) code_challenge: String,
    /// `redirect_uri` parsed, for building the answer.
    redirect: Url,
}

/// Why an authorization request was refused, and how to say so.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The client identifier or redirect URI is missing or wrong: tell the person at
    /// the browser, never redirect (RFC 6749 §4.1.2.1).
    Shown(String),
    /// Tell the client at its redirect URI.
    Redirected(Redirect),
}

/// A redirect to the client's redirect URI with the answer in its query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Redirect(Url);

impl Redirect {
    fn to(redirect: &Url, pairs: &[(&str, Option<&str>)]) -> Self {
        let mut url = redirect.clone();
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in pairs {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
        }
        Redirect(url)
    }

    /// The `Location` of the redirect.
    pub(crate) fn location(&self) -> &str {
        self.0.as_str()
    }
}

impl AuthorizeRequest {
    /// Checks the parameters of an authorization request (from the query, or from the
    /// consent form that carried them). `issuer` goes into redirected errors as `iss`.
    pub(crate) fn parse(pairs: Vec<(String, String)>, issuer: &str) -> Result<Self, Refused> {
        let client_id = only(&pairs, "client_id").map_err(Refused::Shown)?;
        if client_id.chars().count() > CLIENT_ID_MAX || client_id.chars().any(char::is_control) {
            return Err(Refused::Shown(
                "client_id is not a valid client identifier".to_owned(),
            ));
        }
        let redirect_uri = only(&pairs, "redirect_uri").map_err(Refused::Shown)?;
        let redirect = loopback_redirect(&redirect_uri)
            .map_err(|why| Refused::Shown(format!("redirect_uri {why}")))?;

        let state = only(&pairs, "state").ok();
        let refuse = |error: &str, description: &str| {
            Refused::Redirected(Redirect::to(
                &redirect,
                &[
                    ("error", Some(error)),
                    ("error_description", Some(description)),
                    ("state", state.as_deref()),
                    ("iss", Some(issuer)),
                ],
            ))
        };
        let params = Params::from_pairs(pairs)
            .map_err(|name| refuse("invalid_request", &format!("parameter {name} is repeated")))?;
        match params.get("response_type") {
            None => return Err(refuse("invalid_request", "missing parameter response_type")),
            Some("code") => {}
            Some(_) => {
                return Err(refuse(
                    "unsupported_response_type",
                    "this provider supports response_type=code only",
                ));
            }
        }
        let Some(code_challenge) = params.get("code_challenge") else {
            return Err(refuse(
                "invalid_request",
                "code_challenge is required (PKCE with S256)",
            ));
        };
        if params.get("code_challenge_method") != Some(S256) {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256; plain is not supported",
            ));
        }
        if !is_s256_challenge(code_challenge) {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be the 43-character base64url SHA-256 of the verifier",
            ));
        }
        let scope = params.get("scope").unwrap_or(DEFAULT_SCOPE);
        if !scope.bytes().all(is_scope_byte) {
            return Err(refuse("invalid_scope", "the scope has invalid characters"));
        }
        Ok(AuthorizeRequest {
            client_id,
            redirect_uri,
            scope: scope.to_owned(),
            state,
            code_challenge: code_challenge.to_owned(),
            redirect,
        })
    }

    /// The request's parameters, as the consent form carries them back.
    pub(crate) fn fields(&self) -> Vec<(&'static str, &str)> {
        let mut fields = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("scope", self.scope.as_str()),
            ("code_challenge", self.code_challenge.as_str()),
            ("code_challenge_method", S256),
        ];
        if let Some(state) = &self.state {
            fields.push(("state", state));
        }
        fields
    }

    /// The redirect that hands the client its authorization code.
    pub(crate) fn approved(&self, code: &str, issuer: &str) -> Redirect {
        Redirect::to(
            &self.redirect,
            &[
                ("code", Some(code)),
                ("state", self.state.as_deref()),
                ("iss", Some(issuer)),
            ],
        )
    }

    /// The redirect that tells the client the user said no.
    pub(crate) fn denied(&self, issuer: &str) -> Redirect {
        Redirect::to(
            &self.redirect,
            &[
                ("error", Some("access_denied")),
                ("error_description", Some("the user denied the request")),
                ("state", self.state.as_deref()),
                ("iss", Some(issuer)),
            ],
        )
    }
}

/// The one non-empty value of `name`, or what is wrong with it.
fn only(pairs: &[(String, String)], name: &str) -> Result<String, String> {
    let mut values = pairs
        .iter()
        .filter(|(key, value)| key == name && !value.is_empty());
    match (values.next(), values.next()) {
        (Some((_, value)), None) => Ok(value.clone()),
        (None, _) => Err(format!("missing parameter {name}")),
        (Some(_), Some(_)) => Err(format!("parameter {name} is repeated")),
    }
}

/// `uri` parsed if it is plain http on a loopback address (127.0.0.0/8, `[::1]` or
/// `localhost`) with any port, no user information and no fragment; else why not.
fn loopback_redirect(uri: &str) -> Result<Url, &'static str> {
    let url = Url::parse(uri).map_err(|_| "is not an absolute URL")?;
    if url.scheme() != "http" {
        return Err("must be plain http on a loopback address (RFC 8252 §7.3)");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry user information");
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment");
    }
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::from(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::from(ip).is_loopback(),
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !loopback {
        return Err("must point at a loopback address: 127.0.0.1, [::1] or localhost");
    }
    Ok(url)
}

/// Whether `challenge` can be an S256 code challenge: 43 base64url characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == S256_CHALLENGE_LEN
        && challenge
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// A byte a scope may have: a scope token's (RFC 6749 §3.3) or the space between them.
fn is_scope_byte(byte: u8) -> bool {
    matches!(byte, b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// Whether `verifier` is a PKCE code verifier (RFC 7636 §4.1): 43 to 128 unreserved
/// characters.
pub(crate) fn is_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "http://127.0.0.1:9";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("response_type", "code"),
            ("client_id", "cli"),
            ("redirect_uri", "http://127.0.0.1:4321/callback"),
            ("scope", "openid offline_access"),
            ("state", "st-1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
    }

    fn with(name: &str, value: &str) -> Vec<(String, String)> {
        let mut items = good();
        items.retain(|(k, _)| *k != name);
        items.push((name, value));
        pairs(&items)
    }

    fn redirected(result: Result<AuthorizeRequest, Refused>) -> Url {
        match result {
            Err(Refused::Redirected(redirect)) => Url::parse(redirect.location()).unwrap(),
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    fn query(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn a_good_request_is_accepted_and_approved_with_code_state_and_iss() {
        let request = AuthorizeRequest::parse(pairs(&good()), ISSUER).unwrap();
        assert_eq!(request.client_id, "cli");
        assert_eq!(request.scope, "openid offline_access");
        let location = Url::parse(request.approved("c0de", ISSUER).location()).unwrap();
        assert_eq!(location.path(), "/callback");
        assert_eq!(
            query(&location),
            pairs(&[("code", "c0de"), ("state", "st-1"), ("iss", ISSUER)])
        );
        let denied = Url::parse(request.denied(ISSUER).location()).unwrap();
        assert!(query(&denied).contains(&("error".to_owned(), "access_denied".to_owned())));
    }

    #[test]
    fn the_redirect_uri_keeps_its_own_query() {
        let request =
            AuthorizeRequest::parse(with("redirect_uri", "http://localhost/cb?x=1"), ISSUER)
                .unwrap();
        assert_eq!(request.redirect_uri, "http://localhost/cb?x=1");
        let location = Url::parse(request.approved("c", ISSUER).location()).unwrap();
        assert_eq!(query(&location)[0], ("x".to_owned(), "1".to_owned()));
    }

    #[test]
    fn loopback_redirect_uris_on_any_port_are_accepted() {
        for uri in [
            "http://127.0.0.1/cb",
            "http://127.0.0.1:65535/cb",
            "http://127.1.2.3:80/",
            "http://[::1]:8080/cb",
            "http://LOCALHOST:1/cb",
        ] {
            assert!(loopback_redirect(uri).is_ok(), "{uri}");
        }
    }

    #[test]
    fn other_redirect_uris_are_shown_never_redirected() {
        for uri in [
            "https://127.0.0.1/cb",
            "http://example.com/cb",
            "http://127.0.0.1.example.com/cb",
            "http://10.0.0.1/cb",
            "http://user:pw@127.0.0.1/cb",
            "http://127.0.0.1/cb#frag",
            "/cb",
            "javascript:alert(1)",
        ] {
            match AuthorizeRequest::parse(with("redirect_uri", uri), ISSUER) {
                Err(Refused::Shown(why)) => assert!(why.starts_with("redirect_uri "), "{why}"),
                other => panic!("{uri}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_or_repeated_client_or_redirect_uri_is_shown() {
        let mut missing = good();
        missing.retain(|(k, _)| *k != "client_id");
        assert_eq!(
            AuthorizeRequest::parse(pairs(&missing), ISSUER),
            Err(Refused::Shown("missing parameter client_id".to_owned()))
        );
        let mut twice = good();
        twice.push(("redirect_uri", "http://127.0.0.1:1/other"));
        assert_eq!(
            AuthorizeRequest::parse(pairs(&twice), ISSUER),
            Err(Refused::Shown(
                "parameter redirect_uri is repeated".to_owned()
            ))
        );
        assert!(matches!(
            AuthorizeRequest::parse(with("client_id", "a\u{7}b"), ISSUER),
            Err(Refused::Shown(_))
        ));
    }

    #[test]
    fn other_errors_are_redirected_with_state_and_iss() {
        for (name, value, error) in [
            ("response_type", "token", "unsupported_response_type"),
            ("code_challenge_method", "plain", "invalid_request"),
            ("code_challenge_method", "", "invalid_request"),
            ("code_challenge", "", "invalid_request"),
            ("code_challenge", "too-short", "invalid_request"),
            ("scope", "a\"b", "invalid_scope"),
        ] {
            let url = redirected(AuthorizeRequest::parse(with(name, value), ISSUER));
            let query = query(&url);
            assert_eq!(
                query[0],
                ("error".to_owned(), error.to_owned()),
                "{name}={value}"
            );
            assert!(query.contains(&("state".to_owned(), "st-1".to_owned())));
            assert!(query.contains(&("iss".to_owned(), ISSUER.to_owned())));
            assert_eq!(url.host_str(), Some("127.0.0.1"));
        }
        let mut repeated = good();
        repeated.push(("scope", "x"));
        let url = redirected(AuthorizeRequest::parse(pairs(&repeated), ISSUER));
        assert!(query(&url).contains(&(
            "error_description".to_owned(),
            "parameter scope is repeated".to_owned()
        )));
    }

    #[test]
    fn a_missing_scope_means_the_default_and_state_is_optional() {
        let mut items = good();
        items.retain(|(k, _)| *k != "scope" && *k != "state");
        let request = AuthorizeRequest::parse(pairs(&items), ISSUER).unwrap();
        assert_eq!(request.scope, DEFAULT_SCOPE);
        assert_eq!(request.state, None);
        let location = Url::parse(request.approved("c", ISSUER).location()).unwrap();
        assert!(query(&location).iter().all(|(k, _)| k != "state"));
        assert!(request.fields().iter().all(|(k, _)| *k != "state"));
    }

    #[test]
    fn code_verifiers_follow_rfc_7636() {
        assert!(is_code_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(is_code_verifier(&"a~.-_".repeat(20)));
        assert!(!is_code_verifier("short"));
        assert!(!is_code_verifier(&"a".repeat(129)));
        assert!(!is_code_verifier(&format!("{}+", "a".repeat(43))));
    }
}
