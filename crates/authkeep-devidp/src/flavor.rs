//! Provider flavors: how the token endpoint answers when the provider emulates a real
//! one. The rules of grants, rotation, reuse and revocation stay in `provider`; a
//! flavor says which variant of them its provider follows (rotation, a grace period
//! for reuse, default lifetimes, access tokens ended by a refresh), what its tokens
//! look like, and how its answers are worded, shaped and encoded. Each flavor's doc
//! comment names the documentation its behaviour comes from.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::jwt::random_uuid;
use crate::oauth::{TokenError, form_urlencode};

/// GitHub's lifetime of a user refresh token: 184 days, "six months".
const GITHUB_REFRESH_TTL_SECS: u64 = 15_897_600;
/// Keycloak's default SSO Session Idle, which bounds an online session's refresh tokens.
const KEYCLOAK_SSO_IDLE_SECS: u64 = 1_800;
/// Okta's default grace period (its "leeway") for a refresh token just rotated out.
const OKTA_REUSE_GRACE_SECS: u64 = 30;

const GITHUB_BAD_REFRESH_TOKEN: &str = "The refresh token passed is incorrect or expired.";
const GITHUB_BAD_CREDENTIALS: &str = "The client_id and/or client_secret passed are incorrect.";
const GITHUB_REFRESH_DOCS: &str = "https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens";
const GITHUB_ERRORS_DOCS: &str = "https://docs.github.com/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors";

/// Which real provider the development provider answers like.
///
/// The flavor changes how refreshes are answered and, where the provider is documented
/// to differ, which rules apply (Google never rotates, Okta forgives a just-rotated
/// token for a while). Everything else is the same for every flavor: discovery,
/// introspection, userinfo, revocation, the admin API, the counters (which count each
/// refused request under the error code its answer carries, `bad_refresh_token` for
/// GitHub) and the fault plan (faults answer as written, never flavored). Lifetimes
/// come from [`Config`]; [`Config::for_flavor`] starts from the provider's usual one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Flavor {
    /// This provider's own answers, RFC 6749 as written with rotation and reuse
    /// detection as the OAuth 2.0 Security BCP (RFC 9700 §4.14) describes them: JWT
    /// access tokens, `token_type` `Bearer`, `refresh_expires_in` when refresh tokens
    /// expire, and `invalid_grant` with a plain description for every refused refresh.
    #[default]
    Standard,
    /// GitHub Apps' user access tokens, from GitHub Docs "Refreshing user access
    /// tokens", "Generating a user access token for a GitHub App" and "Troubleshooting
    /// OAuth app access token request errors".
    ///
    /// Every answer of the token endpoint is HTTP 200: JSON when the request accepts
    /// `application/json`, form-encoded otherwise, an error inside the 200 body with an
    /// `error_uri`. A dead, unknown, used or foreign refresh token is
    /// `bad_refresh_token` ("The refresh token passed is incorrect or expired."), wrong
    /// client credentials `incorrect_client_credentials`. A success carries an opaque
    /// `access_token` (`ghu_…`), `expires_in`, `refresh_token` (`ghr_…`),
    /// `refresh_token_expires_in` (15,897,600 s, about six months, unless
    /// [`Config::refresh_ttl`] says otherwise), `scope` `""` and `token_type` `bearer`
    /// in lowercase, and no ID token. A refresh rotates the refresh token and ends the
    /// access tokens issued before it. Usual access-token lifetime: 8 hours.
    GitHub,
    /// Microsoft Entra ID (the Microsoft identity platform, v2.0 endpoints), from
    /// "Microsoft identity platform and OAuth 2.0 authorization code flow" (refresh and
    /// error responses) and "Microsoft Entra authentication and authorization error
    /// codes".
    ///
    /// An error carries `error`, an `error_description` that starts with an AADSTS code
    /// and ends with a trace id, a correlation id and a timestamp, and `error_codes`,
    /// `timestamp`, `trace_id`, `correlation_id` and `error_uri`. An expired refresh
    /// token is AADSTS700082 ("The refresh token has expired due to inactivity."), a
    /// revoked grant AADSTS50173 (revoked, as after a password change), a used, unknown
    /// or foreign one AADSTS70000 ("Provided grant is invalid or malformed."), all
    /// `invalid_grant`. A success carries `token_type` `Bearer`, `expires_in` and
    /// `ext_expires_in` as numbers, `scope`, a rotated `refresh_token`, `id_token` when
    /// `openid` was granted, and never the refresh token's lifetime. Usual access-token
    /// lifetime: 3,599 s.
    Entra,
    /// Google, from Google Identity "Using OAuth 2.0 for Web Server Applications"
    /// (refreshing an access token, refresh token expiration) and its `invalid_grant`
    /// troubleshooting.
    ///
    /// A refresh never rotates, whatever [`Config::rotate_refresh_tokens`] says: the
    /// answer has no `refresh_token`, and the presented one stays valid. It carries an
    /// opaque access token (`ya29.…`), `expires_in`, `scope`, `token_type` `Bearer`,
    /// `id_token` when `openid` was granted, and `refresh_token_expires_in` only when
    /// refresh tokens expire. A revoked, expired or unknown refresh token is
    /// `invalid_grant` "Token has been expired or revoked.", one of another client
    /// `unauthorized_client` "Unauthorized". Usual access-token lifetime: 3,599 s.
    Google,
    /// Keycloak, from its Server Administration Guide (Revoke Refresh Token, Refresh
    /// Token Max Reuse, SSO Session Idle, offline sessions) and the messages of its
    /// token manager.
    ///
    /// A refused refresh is `invalid_grant` in Keycloak's words: "Token is not active"
    /// (expired), "Session not active" (revoked), "Offline session not active" (an
    /// offline token expired or revoked), "Maximum allowed refresh token reuse exceeded"
    /// (a used token with reuse detection on, as with Revoke Refresh Token and a max
    /// reuse of 0), "Stale token" (a used token without reuse detection), "Unmatching
    /// clients" (another client's), "Invalid refresh token" (unknown). A success carries
    /// `refresh_expires_in` (the refresh token's lifetime: [`Config::refresh_ttl`], else
    /// 1,800 s, the default SSO Session Idle; and `0`, meaning no fixed expiry, for an
    /// offline token, one granted with `offline_access`), `not-before-policy` `0`,
    /// `session_state` (one per grant), `token_type` `Bearer` and `expires_in` as a
    /// number. Usual access-token lifetime: 300 s.
    Keycloak,
    /// Okta, from Okta Developer "Refresh access tokens and rotate refresh tokens"
    /// (rotation, reuse detection, grace period) and its OpenID Connect & OAuth 2.0 API
    /// reference (the `leeway` of an app's refresh token settings, 30 s by default).
    ///
    /// Refresh tokens rotate with a grace period, [`Config::reuse_grace`] (30 s unless
    /// set): within it the refresh token just rotated out may be presented again and is
    /// answered with new tokens (the first exchange's stay valid too); after it, or for
    /// an older token, reuse detection revokes the whole grant. A refused refresh is
    /// `invalid_grant` "The refresh token is invalid or expired.". Access tokens are
    /// JWTs; a success carries `token_type` `Bearer` and `expires_in`, never the refresh
    /// token's lifetime. Usual access-token lifetime: 1 hour.
    Okta,
    /// Auth0, from Auth0 Docs "Refresh Token Rotation" and "Configure Refresh Token
    /// Rotation" (the reuse interval, 0 s by default; only the token just rotated out
    /// may be reused within it, anything else triggers breach detection, which revokes
    /// the whole token family).
    ///
    /// [`Config::reuse_grace`] is the reuse interval (0 s unless set): within it the
    /// token just rotated out is answered with new tokens (the first exchange's stay
    /// valid too). A refused refresh is `invalid_grant` "Unknown or invalid refresh
    /// token.". A success carries `token_type` `Bearer` and `expires_in` as a number,
    /// never the refresh token's lifetime. Usual access-token lifetime: 86,400 s, an
    /// API's default.
    Auth0,
}

/// A name that is not one of a [`Flavor`]'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFlavor(String);

impl fmt::Display for UnknownFlavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Flavor::ALL.iter().map(|flavor| flavor.name()).collect();
        write!(
            f,
            "unknown provider flavor {:?}; expected one of {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownFlavor {}

impl Flavor {
    /// Every flavor, [`Flavor::Standard`] first.
    pub const ALL: &'static [Flavor] = &[
        Flavor::Standard,
        Flavor::GitHub,
        Flavor::Entra,
        Flavor::Google,
        Flavor::Keycloak,
        Flavor::Okta,
        Flavor::Auth0,
    ];

    /// The flavor's name, as `--flavor` takes it: `standard`, `github`, `entra`,
    /// `google`, `keycloak`, `okta` or `auth0`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Standard => "standard",
            Flavor::GitHub => "github",
            Flavor::Entra => "entra",
            Flavor::Google => "google",
            Flavor::Keycloak => "keycloak",
            Flavor::Okta => "okta",
            Flavor::Auth0 => "auth0",
        }
    }

    /// The access-token lifetime this provider usually grants (300 s for
    /// [`Flavor::Standard`], as [`Config::default`] has it).
    pub fn access_ttl(self) -> Duration {
        Duration::from_secs(match self {
            Flavor::Standard | Flavor::Keycloak => 300,
            Flavor::GitHub => 8 * 3600,
            Flavor::Entra | Flavor::Google => 3599,
            Flavor::Okta => 3600,
            Flavor::Auth0 => 86_400,
        })
    }

    /// Whether refresh tokens rotate under this flavor when
    /// [`Config::rotate_refresh_tokens`] is on: for all but [`Flavor::Google`].
    pub fn rotates(self) -> bool {
        self != Flavor::Google
    }

    /// The lifetime of a refresh token in seconds, `None` for no expiry: the
    /// configured one, else the provider's own where it always has one. `offline`
    /// says whether the grant has `offline_access`.
    pub(crate) fn refresh_ttl(self, config: &Config, offline: bool) -> Option<u64> {
        let configured = config.refresh_ttl.map(|ttl| ttl.as_secs());
        match self {
            Flavor::GitHub => configured.or(Some(GITHUB_REFRESH_TTL_SECS)),
            Flavor::Keycloak if !offline => configured.or(Some(KEYCLOAK_SSO_IDLE_SECS)),
            _ => configured,
        }
    }

    /// For how many seconds after its rotation the refresh token just rotated out is
    /// still accepted.
    pub(crate) fn reuse_grace(self, config: &Config) -> u64 {
        let default = match self {
            Flavor::Okta => OKTA_REUSE_GRACE_SECS,
            _ => 0,
        };
        config.reuse_grace.map_or(default, |grace| grace.as_secs())
    }

    /// The prefix of an opaque access token; `None` when access tokens are JWTs.
    pub(crate) fn opaque_access_prefix(self) -> Option<&'static str> {
        match self {
            Flavor::GitHub => Some("ghu_"),
            Flavor::Google => Some("ya29."),
            _ => None,
        }
    }

    /// What every refresh token starts with.
    pub(crate) fn refresh_prefix(self) -> &'static str {
        match self {
            Flavor::GitHub => "ghr_",
            Flavor::Google => "1//",
            _ => "",
        }
    }

    /// Whether a refresh ends the access tokens issued before it on the same grant.
    pub(crate) fn refresh_ends_older_access_tokens(self) -> bool {
        self == Flavor::GitHub
    }

    /// Reshapes a token response built as [`Flavor::Standard`] answers into this
    /// flavor's.
    pub(crate) fn shape(self, body: &mut Value, issued: &Issued<'_>) {
        let Some(fields) = body.as_object_mut() else {
            return;
        };
        match self {
            Flavor::Standard => {}
            Flavor::GitHub => {
                fields.insert("token_type".to_owned(), "bearer".into());
                fields.insert("scope".to_owned(), "".into());
                fields.remove("id_token");
                rename(fields, "refresh_expires_in", "refresh_token_expires_in");
            }
            Flavor::Entra => {
                if let Some(expires_in) = fields.get("expires_in").cloned() {
                    fields.insert("ext_expires_in".to_owned(), expires_in);
                }
                fields.remove("refresh_expires_in");
            }
            Flavor::Google => rename(fields, "refresh_expires_in", "refresh_token_expires_in"),
            Flavor::Keycloak => {
                if issued.offline {
                    fields.insert("refresh_expires_in".to_owned(), 0.into());
                }
                fields.insert("not-before-policy".to_owned(), 0.into());
                fields.insert("session_state".to_owned(), issued.session.into());
            }
            Flavor::Okta | Flavor::Auth0 => {
                fields.remove("refresh_expires_in");
            }
        }
    }

    /// Rewords and reshapes an error of the token endpoint as this flavor's provider
    /// answers it, `now` being the time of the answer (Unix seconds).
    pub(crate) fn shape_error(self, mut error: TokenError, now: i64) -> TokenError {
        let refusal = error.refusal;
        match self {
            Flavor::Standard => {}
            Flavor::GitHub => {
                let (code, description, docs) = match (refusal, error.error) {
                    (Some(_), _) => (
                        "bad_refresh_token",
                        GITHUB_BAD_REFRESH_TOKEN,
                        GITHUB_REFRESH_DOCS.to_owned(),
                    ),
                    (None, "invalid_client") => (
                        "incorrect_client_credentials",
                        GITHUB_BAD_CREDENTIALS,
                        format!("{GITHUB_ERRORS_DOCS}#incorrect-client-credentials"),
                    ),
                    (None, code) => (code, "", GITHUB_ERRORS_DOCS.to_owned()),
                };
                error.error = code;
                if !description.is_empty() {
                    error.description = description.to_owned();
                }
                error.status = StatusCode::OK;
                error.extra.insert("error_uri".to_owned(), docs.into());
            }
            Flavor::Entra => {
                let (code, message) = match refusal {
                    Some(refusal) => entra_refusal(refusal, now),
                    None => (entra_code(error.error), error.description.clone()),
                };
                entra_dress(&mut error, code, &message, now);
            }
            Flavor::Google => {
                if let Some(refusal) = refusal {
                    (error.error, error.description) = match refusal {
                        Refusal::OtherClient => ("unauthorized_client", "Unauthorized".to_owned()),
                        _ => (
                            "invalid_grant",
                            "Token has been expired or revoked.".to_owned(),
                        ),
                    };
                }
            }
            Flavor::Keycloak => {
                if let Some(refusal) = refusal {
                    error.description = keycloak_words(refusal).to_owned();
                }
            }
            Flavor::Okta => {
                if refusal.is_some() {
                    error.description = "The refresh token is invalid or expired.".to_owned();
                }
            }
            Flavor::Auth0 => {
                if refusal.is_some() {
                    error.description = "Unknown or invalid refresh token.".to_owned();
                }
            }
        }
        error
    }

    /// How the token endpoint encodes its answer to a request with this `Accept`
    /// header.
    pub(crate) fn encoding(self, accept: Option<&HeaderValue>) -> Encoding {
        let accepts_json = accept
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.to_ascii_lowercase().contains("application/json"));
        match self {
            Flavor::GitHub if !accepts_json => Encoding::Form,
            _ => Encoding::Json,
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Flavor {
    type Err = UnknownFlavor;

    /// A flavor by its [`Flavor::name`], in any ASCII case.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Flavor::ALL
            .iter()
            .copied()
            .find(|flavor| flavor.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownFlavor(name.to_owned()))
    }
}

/// Why the provider refused a refresh: what a flavor words its answer from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a refresh token of this provider.
    Unknown,
    /// Its grant was revoked; `offline` when the grant has `offline_access`.
    Revoked { offline: bool },
    /// Issued to another client.
    OtherClient,
    /// Already used, and its grant was revoked for it (reuse detection).
    Reused,
    /// Already used, with reuse detection off.
    Consumed,
    /// Expired; it was issued at `issued_at` (Unix seconds).
    Expired { issued_at: i64, offline: bool },
}

/// What a flavor needs to know of the token response it shapes.
pub(crate) struct Issued<'a> {
    /// Whether the grant has `offline_access`.
    pub(crate) offline: bool,
    /// The grant's session identifier.
    pub(crate) session: &'a str,
}

/// How an answer of the token endpoint is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded`, as GitHub answers a request that does not
    /// accept JSON.
    Form,
}

/// The members of a JSON answer as a form-encoded body, in their order; strings as
/// they are, numbers and booleans as JSON writes them, nulls left out.
pub(crate) fn form_body(body: &Value) -> String {
    let Some(fields) = body.as_object() else {
        return String::new();
    };
    let pairs: Vec<String> = fields
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            format!("{}={}", form_urlencode(name), form_urlencode(&value))
        })
        .collect();
    pairs.join("&")
}

fn rename(fields: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(value) = fields.remove(from) {
        fields.insert(to.to_owned(), value);
    }
}

/// The message Keycloak's token manager refuses a refresh with.
fn keycloak_words(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Unknown => "Invalid refresh token",
        Refusal::Revoked { offline: true } | Refusal::Expired { offline: true, .. } => {
            "Offline session not active"
        }
        Refusal::Revoked { offline: false } => "Session not active",
        Refusal::OtherClient => "Unmatching clients",
        Refusal::Reused => "Maximum allowed refresh token reuse exceeded",
        Refusal::Consumed => "Stale token",
        Refusal::Expired { offline: false, .. } => "Token is not active",
    }
}

/// The AADSTS code and message Microsoft Entra refuses a refresh with.
fn entra_refusal(refusal: Refusal, now: i64) -> (u32, String) {
    match refusal {
        Refusal::Expired { issued_at, .. } => (
            700_082,
            format!(
                "The refresh token has expired due to inactivity. The token was issued on {} \
                 and was inactive for {}.",
                iso_instant(issued_at),
                time_span(now.saturating_sub(issued_at))
            ),
        ),
        Refusal::Revoked { .. } => (
            50_173,
            "The provided grant has expired due to it being revoked, a fresh auth token is \
             needed. The user might have changed or reset their password."
                .to_owned(),
        ),
        Refusal::Unknown | Refusal::OtherClient | Refusal::Reused | Refusal::Consumed => {
            (70_000, "Provided grant is invalid or malformed.".to_owned())
        }
    }
}

/// The AADSTS code of an error that is not a refused refresh.
fn entra_code(error: &str) -> u32 {
    match error {
        "invalid_client" => 7_000_215,
        "invalid_scope" => 70_011,
        "unauthorized_client" => 7_000_218,
        "unsupported_grant_type" => 70_003,
        _ => 9_002_313,
    }
}

/// Gives `error` Microsoft Entra's form: the code first and the trace lines last in
/// the description, and the same facts as members of their own.
fn entra_dress(error: &mut TokenError, code: u32, message: &str, now: i64) {
    let (trace_id, correlation_id) = (random_uuid(), random_uuid());
    let timestamp = entra_timestamp(now);
    error.description = format!(
        "AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\n\
         Timestamp: {timestamp}"
    );
    let extra = [
        ("error_codes", Value::from(vec![code])),
        ("timestamp", timestamp.into()),
        ("trace_id", trace_id.into()),
        ("correlation_id", correlation_id.into()),
        (
            "error_uri",
            format!("https://login.microsoftonline.com/error?code={code}").into(),
        ),
    ];
    for (name, value) in extra {
        error.extra.insert(name.to_owned(), value);
    }
}

/// An instant as RFC 3339 in UTC (`2026-01-09T02:02:12Z`); empty if out of range.
fn iso_instant(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|at| at.to_string())
        .unwrap_or_default()
}

/// An instant as Entra writes its error timestamps (`2026-01-09 02:02:12Z`); empty if
/// out of range.
fn entra_timestamp(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|at| at.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A length of time as .NET writes a `TimeSpan`: `12:00:00`, or `90.00:00:00` with days.
fn time_span(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let clock = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}.{clock}")
    } else {
        clock
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const T0: i64 = 1_700_000_000;

    fn standard_body() -> Value {
        json!({
            "access_token": "at",
            "token_type": "Bearer",
            "expires_in": 300,
            "refresh_token": "rt",
            "refresh_expires_in": 3600,
            "scope": "openid offline_access",
            "id_token": "id",
        })
    }

    fn shaped(flavor: Flavor, offline: bool) -> Value {
        let mut body = standard_body();
        let issued = Issued {
            offline,
            session: "s-1",
        };
        flavor.shape(&mut body, &issued);
        body
    }

    fn refused(flavor: Flavor, refusal: Refusal) -> TokenError {
        flavor.shape_error(
            TokenError::invalid_grant("plain words").refused(refusal),
            T0,
        )
    }

    #[test]
    fn names_parse_back_in_any_case() {
        for &flavor in Flavor::ALL {
            assert_eq!(flavor.name().parse::<Flavor>(), Ok(flavor));
            assert_eq!(
                flavor.to_string().to_uppercase().parse::<Flavor>(),
                Ok(flavor)
            );
        }
        let error = "gitlab".parse::<Flavor>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown provider flavor \"gitlab\"; expected one of standard, github, entra, \
             google, keycloak, okta, auth0"
        );
        assert_eq!(Flavor::default(), Flavor::Standard);
    }

    #[test]
    fn standard_changes_nothing() {
        assert_eq!(shaped(Flavor::Standard, true), standard_body());
        let error = refused(Flavor::Standard, Refusal::Reused);
        assert_eq!(
            error.body(),
            json!({ "error": "invalid_grant", "error_description": "plain words" })
        );
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(Flavor::Standard.access_ttl(), Config::default().access_ttl);
    }

    #[test]
    fn github_answers_lowercase_bearer_without_scope_or_id_token() {
        let body = shaped(Flavor::GitHub, true);
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["scope"], "");
        assert_eq!(body["refresh_token_expires_in"], 3600);
        assert!(body.get("id_token").is_none());
        assert!(body.get("refresh_expires_in").is_none());
    }

    #[test]
    fn github_errors_are_200_with_its_codes_and_an_error_uri() {
        for refusal in [Refusal::Unknown, Refusal::Reused, Refusal::OtherClient] {
            let error = refused(Flavor::GitHub, refusal);
            assert_eq!(error.status, StatusCode::OK);
            assert_eq!(error.error, "bad_refresh_token");
            assert_eq!(error.description, GITHUB_BAD_REFRESH_TOKEN);
            assert_eq!(error.extra["error_uri"], GITHUB_REFRESH_DOCS);
        }
        let error = Flavor::GitHub.shape_error(TokenError::invalid_client("no"), T0);
        assert_eq!(
            (error.status, error.error),
            (StatusCode::OK, "incorrect_client_credentials")
        );
        let error = Flavor::GitHub.shape_error(TokenError::invalid_request("missing"), T0);
        assert_eq!(
            (error.error, error.description.as_str()),
            ("invalid_request", "missing")
        );
        assert_eq!(error.status, StatusCode::OK);
    }

    #[test]
    fn entra_errors_carry_aadsts_codes_and_trace_facts() {
        let error = refused(
            Flavor::Entra,
            Refusal::Expired {
                issued_at: T0 - 90 * 86_400,
                offline: true,
            },
        );
        let body = error.body();
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(body["error_codes"], json!([700_082]));
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(
                "AADSTS700082: The refresh token has expired due to inactivity. The token was \
                 issued on 2023-08-16T22:13:20Z and was inactive for 90.00:00:00.\r\nTrace ID: "
            ),
            "{description}"
        );
        let trace_id = body["trace_id"].as_str().unwrap();
        let correlation_id = body["correlation_id"].as_str().unwrap();
        assert!(description.contains(&format!("Trace ID: {trace_id}\r\n")));
        assert!(description.contains(&format!("Correlation ID: {correlation_id}\r\n")));
        assert_eq!(body["timestamp"], "2023-11-14 22:13:20Z");
        assert!(description.ends_with("Timestamp: 2023-11-14 22:13:20Z"));
        assert_eq!(
            body["error_uri"],
            "https://login.microsoftonline.com/error?code=700082"
        );

        let revoked = refused(Flavor::Entra, Refusal::Revoked { offline: false });
        assert!(revoked.description.starts_with("AADSTS50173: "));
        let reused = refused(Flavor::Entra, Refusal::Reused);
        assert!(
            reused
                .description
                .starts_with("AADSTS70000: Provided grant is invalid or malformed.\r\n")
        );
        let client = Flavor::Entra.shape_error(TokenError::invalid_client("bad secret"), T0);
        assert_eq!(client.status, StatusCode::UNAUTHORIZED);
        assert!(
            client
                .description
                .starts_with("AADSTS7000215: bad secret\r\n")
        );
    }

    #[test]
    fn entra_states_ext_expires_in_and_no_refresh_lifetime() {
        let body = shaped(Flavor::Entra, true);
        assert_eq!(body["ext_expires_in"], 300);
        assert_eq!(body["token_type"], "Bearer");
        assert!(body.get("refresh_expires_in").is_none());
    }

    #[test]
    fn google_words_every_refusal_alike_except_another_clients() {
        for refusal in [
            Refusal::Unknown,
            Refusal::Revoked { offline: true },
            Refusal::Expired {
                issued_at: T0,
                offline: false,
            },
        ] {
            let error = refused(Flavor::Google, refusal);
            assert_eq!(error.error, "invalid_grant");
            assert_eq!(error.description, "Token has been expired or revoked.");
        }
        let error = refused(Flavor::Google, Refusal::OtherClient);
        assert_eq!(
            (error.error, error.description.as_str()),
            ("unauthorized_client", "Unauthorized")
        );
        assert_eq!(
            shaped(Flavor::Google, true)["refresh_token_expires_in"],
            3600
        );
        assert!(!Flavor::Google.rotates());
    }

    #[test]
    fn keycloak_uses_its_own_words_and_fields() {
        for (refusal, words) in [
            (Refusal::Unknown, "Invalid refresh token"),
            (Refusal::Revoked { offline: false }, "Session not active"),
            (
                Refusal::Revoked { offline: true },
                "Offline session not active",
            ),
            (Refusal::OtherClient, "Unmatching clients"),
            (
                Refusal::Reused,
                "Maximum allowed refresh token reuse exceeded",
            ),
            (Refusal::Consumed, "Stale token"),
            (
                Refusal::Expired {
                    issued_at: T0,
                    offline: false,
                },
                "Token is not active",
            ),
        ] {
            let error = refused(Flavor::Keycloak, refusal);
            assert_eq!(
                (error.error, error.description.as_str()),
                ("invalid_grant", words)
            );
        }
        let offline = shaped(Flavor::Keycloak, true);
        assert_eq!(offline["refresh_expires_in"], 0);
        assert_eq!(offline["not-before-policy"], 0);
        assert_eq!(offline["session_state"], "s-1");
        assert_eq!(shaped(Flavor::Keycloak, false)["refresh_expires_in"], 3600);
    }

    #[test]
    fn okta_and_auth0_word_refusals_and_hide_refresh_lifetimes() {
        let okta = refused(Flavor::Okta, Refusal::Reused);
        assert_eq!(okta.description, "The refresh token is invalid or expired.");
        let auth0 = refused(
            Flavor::Auth0,
            Refusal::Expired {
                issued_at: T0,
                offline: true,
            },
        );
        assert_eq!(auth0.description, "Unknown or invalid refresh token.");
        for flavor in [Flavor::Okta, Flavor::Auth0] {
            assert!(shaped(flavor, true).get("refresh_expires_in").is_none());
            let other = flavor.shape_error(TokenError::invalid_scope("wide"), T0);
            assert_eq!(other.description, "wide", "only refusals are reworded");
        }
    }

    #[test]
    fn defaults_fill_what_the_configuration_leaves_open() {
        let config = Config::default();
        assert_eq!(Flavor::Standard.refresh_ttl(&config, false), None);
        assert_eq!(Flavor::GitHub.refresh_ttl(&config, true), Some(15_897_600));
        assert_eq!(Flavor::Keycloak.refresh_ttl(&config, false), Some(1800));
        assert_eq!(Flavor::Keycloak.refresh_ttl(&config, true), None);
        assert_eq!(Flavor::Okta.reuse_grace(&config), 30);
        assert_eq!(Flavor::Auth0.reuse_grace(&config), 0);
        assert_eq!(Flavor::Standard.reuse_grace(&config), 0);

        let config = Config {
            refresh_ttl: Some(Duration::from_secs(60)),
            reuse_grace: Some(Duration::from_secs(5)),
            ..Config::default()
        };
        assert_eq!(Flavor::GitHub.refresh_ttl(&config, true), Some(60));
        assert_eq!(Flavor::Keycloak.refresh_ttl(&config, true), Some(60));
        assert_eq!(Flavor::Okta.reuse_grace(&config), 5);
        assert_eq!(Flavor::Auth0.reuse_grace(&config), 5);
    }

    #[test]
    fn github_answers_form_encoded_unless_json_is_accepted() {
        let json = HeaderValue::from_static("application/json");
        let any = HeaderValue::from_static("*/*");
        assert_eq!(Flavor::GitHub.encoding(Some(&json)), Encoding::Json);
        assert_eq!(Flavor::GitHub.encoding(Some(&any)), Encoding::Form);
        assert_eq!(Flavor::GitHub.encoding(None), Encoding::Form);
        assert_eq!(Flavor::Standard.encoding(None), Encoding::Json);
        assert_eq!(
            form_body(
                &json!({ "access_token": "a b", "expires_in": 28800, "scope": "", "x": null })
            ),
            "access_token=a+b&expires_in=28800&scope="
        );
    }

    #[test]
    fn time_spans_read_as_dotnet_writes_them() {
        assert_eq!(time_span(12 * 3600), "12:00:00");
        assert_eq!(time_span(90 * 86_400 + 61), "90.00:01:01");
        assert_eq!(time_span(-5), "00:00:00");
    }
}
