//! What a store keeps for one session: who the client is, the current token set,
//! and the session's health (last success, last failure, next allowed attempt).

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::FailureClass;
use crate::secret::ClientSecret;
use crate::token::{ExpirySource, TokenSet, saturating_add, saturating_sub, truncate};

/// A session's name: a CLI profile or a backend's account id.
///
/// Profile names ([`SessionKey::new`]) are `[A-Za-z0-9._-]{1,64}` and never a
/// path (`.` and `..` are refused), so they can name files safely. Account ids
/// ([`SessionKey::account`]) are wider, for stores that do not name files after
/// sessions (a database): the file store refuses those it cannot name
/// ([`SessionKey::fits_file_name`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(String);

impl SessionKey {
    /// Validates a session name.
    pub fn new(name: &str) -> Result<Self, InvalidSessionKey> {
        if is_file_name(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidSessionKey(name.chars().take(80).collect()))
        }
    }

    /// Validates an account id: 1 to 256 printable ASCII characters (space
    /// included) other than `/`. Every profile name is one.
    pub fn account(id: &str) -> Result<Self, InvalidAccountId> {
        let printable = id.bytes().all(|b| matches!(b, b' '..=b'~') && b != b'/');
        if (1..=256).contains(&id.len()) && printable {
            Ok(Self(id.to_owned()))
        } else {
            Err(InvalidAccountId(id.chars().take(80).collect()))
        }
    }

    /// Whether the name is also a profile name (`[A-Za-z0-9._-]{1,64}`, not
    /// all dots), which the file store can use as a file name.
    pub fn fits_file_name(&self) -> bool {
        is_file_name(&self.0)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_file_name(name: &str) -> bool {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (1..=64).contains(&name.len()) && valid_chars && !name.bytes().all(|b| b == b'.')
}

/// A session name that is not `[A-Za-z0-9._-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid profile name {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (not a path)")]
pub struct InvalidSessionKey(String);

/// An account id that is not 1 to 256 printable ASCII characters without `/`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid account id {0:?}: use 1 to 256 printable ASCII characters, not /")]
pub struct InvalidAccountId(String);

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A public client: `client_id` in the body, no secret.
    #[default]
    None,
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the body.
    ClientSecretPost,
}

/// How a session renews its access token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Renewal {
    /// With the refresh token the provider issued (RFC 6749 §6).
    #[default]
    RefreshToken,
    /// By repeating the client credentials grant (RFC 6749 §4.4): no refresh
    /// token is needed or kept.
    ClientCredentials,
}

/// The client a session belongs to.
///
/// ```
/// # use authkeep::{Client, ClientAuth, ClientSecret};
/// let client = Client::new("https://idp.example", "my-app")
///     .with_secret(ClientSecret::new("s3cret"), ClientAuth::ClientSecretBasic)
///     .with_scope("openid offline_access");
/// assert_eq!(format!("{client:?}").contains("s3cret"), false);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Client {
    /// The issuer URL, as given at login (discovery checks it exactly).
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The client secret of a confidential client.
    pub client_secret: Option<ClientSecret>,
    /// How the secret is presented.
    pub auth: ClientAuth,
    /// The scope asked for at login, if any.
    pub scope: Option<String>,
    /// A token endpoint given explicitly, for providers without discovery.
    pub token_endpoint: Option<String>,
    /// How the session renews itself.
    pub renewal: Renewal,
    /// Extra token-request parameters of a repeated grant (an `audience`, a
    /// `resource`), in order; a name may repeat.
    pub token_params: Vec<(String, String)>,
}

impl Client {
    /// A public client of `issuer` (its URL exactly as the provider names
    /// itself) with the id `client_id`.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            ..Self::default()
        }
    }

    /// A confidential client: its secret and how it is presented.
    pub fn with_secret(mut self, secret: ClientSecret, auth: ClientAuth) -> Self {
        self.client_secret = Some(secret);
        self.auth = auth;
        self
    }

    /// The scope asked for at login.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// A token endpoint given explicitly, for providers without discovery.
    pub fn with_token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// How the session renews itself (default: with its refresh token).
    pub fn with_renewal(mut self, renewal: Renewal) -> Self {
        self.renewal = renewal;
        self
    }

    /// Extra parameters for the token requests of a repeated grant (an
    /// `audience`, a `resource`); they never override the grant's own.
    pub fn with_token_params(mut self, params: Vec<(String, String)>) -> Self {
        self.token_params = params;
        self
    }
}

/// One recorded failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Its class.
    pub class: FailureClass,
    /// A one-line description that never contains a secret.
    pub message: String,
    /// When it happened.
    pub at: Timestamp,
}

/// A session's health, kept in the record and shown by `status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// The last successful refresh or login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<Timestamp>,
    /// The last failure, cleared by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Failure>,
    /// Failures since the last success.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// No refresh is attempted before this instant while a valid token is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// The instant a provider's `Retry-After` named: no refresh is attempted
    /// before it even once the token has expired (unless forced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Timestamp>,
}

impl Health {
    /// Records a success: clears the last error and any back-off.
    pub fn record_success(&mut self, at: Timestamp) {
        *self = Health {
            last_success_at: Some(at),
            ..Health::default()
        };
    }

    /// Records a failure and when the next attempt is allowed: 30 s (with ±10 %
    /// jitter) doubling with each consecutive failure up to 15 minutes, at least
    /// until `retry_after`, and never past `valid_until` (the stored token's
    /// expiry), so that once the token has expired the next call tries again;
    /// the provider's own `retry_after` is also kept apart, and holds after
    /// expiry too.
    pub fn record_failure(
        &mut self,
        failure: Failure,
        retry_after: Option<Timestamp>,
        valid_until: Option<Timestamp>,
    ) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let mut next = saturating_add(failure.at, back_off(self.consecutive_failures));
        if let Some(at) = retry_after {
            next = next.max(at);
        }
        if let Some(until) = valid_until {
            next = next.min(until);
        }
        self.next_attempt_at = Some(truncate(next));
        self.retry_after = retry_after.map(truncate);
        self.last_error = Some(failure);
    }
}

/// The pause after `consecutive_failures` failures in a row (at least one): 30 s
/// with ±10 % jitter, doubling with each further failure, up to 15 minutes.
pub(crate) fn back_off(consecutive_failures: u32) -> SignedDuration {
    let doublings = consecutive_failures.saturating_sub(1).min(5);
    let base = (30.0 * f64::from(1u32 << doublings)).min(900.0);
    SignedDuration::from_secs_f64(base * (0.9 + 0.2 * fastrand::f64()))
}

/// Everything a store keeps for one session.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// The client; absent only in records written by other tools.
    pub client: Option<Client>,
    /// The current tokens; `None` once the session has ended (or never began).
    pub tokens: Option<TokenSet>,
    /// Health and back-off.
    pub health: Health,
    /// The issuer's clock minus ours, in seconds, as already applied to the
    /// instants of the token set that the provider's clock gave (a JWT's `exp`
    /// and `iat`); see [`Record::apply_issuer_skew`].
    pub clock_skew_secs: Option<i64>,
}

impl Record {
    /// Whether the session can renew itself: it has a client and tokens, and
    /// either a refresh token or a grant it can simply repeat (client
    /// credentials).
    pub fn can_renew(&self) -> bool {
        let (Some(client), Some(tokens)) = (self.client.as_ref(), self.tokens.as_ref()) else {
            return false;
        };
        match client.renewal {
            Renewal::RefreshToken => tokens.refresh_token.is_some(),
            Renewal::ClientCredentials => true,
        }
    }

    /// Whether the session renews itself by repeating the client credentials
    /// grant rather than with a refresh token.
    pub fn renews_by_grant(&self) -> bool {
        self.client
            .as_ref()
            .is_some_and(|c| c.renewal == Renewal::ClientCredentials)
    }

    /// Whether the token set's expiry was read on the provider's clock, so that
    /// the issuer's clock skew matters.
    pub fn expiry_on_provider_clock(&self) -> bool {
        self.tokens
            .as_ref()
            .is_some_and(|t| t.expiry_source == ExpirySource::JwtExp)
    }

    /// Moves the instants the provider's clock gave onto ours, given the issuer's
    /// clock minus ours in seconds (as last measured for the issuer). Only the
    /// difference to the skew already applied is applied, so this may be called
    /// on every read.
    pub fn apply_issuer_skew(&mut self, skew_secs: i64) {
        let applied = self.clock_skew_secs.unwrap_or(0);
        let Some(tokens) = self.tokens.as_mut() else {
            return;
        };
        if tokens.expiry_source == ExpirySource::JwtExp && skew_secs != applied {
            let shift = SignedDuration::from_secs(skew_secs.saturating_sub(applied));
            tokens.expires_at = tokens.expires_at.map(|t| saturating_sub(t, shift));
            tokens.issued_at = tokens.issued_at.map(|t| saturating_sub(t, shift));
        }
        self.clock_skew_secs = (skew_secs != 0).then_some(skew_secs);
    }
}

/// A record as loaded, with the generation number that a compare-and-swap checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned {
    /// Incremented by every write.
    pub generation: u64,
    /// The record.
    pub record: Record,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(at: Timestamp) -> Failure {
        Failure {
            class: FailureClass::Transient,
            message: "HTTP 503".into(),
            at,
        }
    }

    #[test]
    fn back_off_grows_honours_retry_after_and_stops_at_expiry() {
        let at: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        let mut health = Health::default();
        health.record_failure(failure(at), None, None);
        let first = health.next_attempt_at.unwrap().duration_since(at).as_secs();
        assert!((27..=33).contains(&first), "{first}");
        health.record_failure(failure(at), None, None);
        let second = health.next_attempt_at.unwrap().duration_since(at).as_secs();
        assert!((54..=66).contains(&second), "{second}");
        let retry = at + jiff::SignedDuration::from_secs(600);
        health.record_failure(failure(at), Some(retry), None);
        assert_eq!(health.next_attempt_at, Some(retry));
        let expiry = at + jiff::SignedDuration::from_secs(10);
        health.record_failure(failure(at), Some(retry), Some(expiry));
        assert_eq!(health.next_attempt_at, Some(expiry));
        assert_eq!(health.consecutive_failures, 4);
        health.record_success(at);
        assert_eq!(
            health,
            Health {
                last_success_at: Some(at),
                ..Health::default()
            }
        );
    }

    #[test]
    fn a_client_credentials_session_renews_without_a_refresh_token() {
        let tokens = crate::token::TokenResponse {
            access_token: crate::secret::AccessToken::new("at"),
            ..Default::default()
        }
        .into_token_set(
            "2026-06-01T12:00:00Z".parse().unwrap(),
            crate::token::Origin::Login,
            SignedDuration::ZERO,
        );
        let mut record = Record {
            client: Some(Client::new("https://idp.example", "svc")),
            tokens: Some(tokens),
            ..Record::default()
        };
        assert!(!record.can_renew() && !record.renews_by_grant());
        record.client = record
            .client
            .map(|c| c.with_renewal(Renewal::ClientCredentials));
        assert!(record.can_renew() && record.renews_by_grant());
        let orphan = Record {
            client: None,
            ..record.clone()
        };
        assert!(!orphan.can_renew(), "no client, no grant");
        record.tokens = None;
        assert!(!record.can_renew(), "an ended session renews nothing");
    }

    #[test]
    fn session_names_are_never_paths() {
        for ok in ["default", "work.prod", "a_b-c", "x", &"a".repeat(64)] {
            assert!(SessionKey::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "...",
            "a/b",
            "../x",
            "a b",
            "é",
            &"a".repeat(65),
            "a\\b",
        ] {
            assert!(SessionKey::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn account_ids_are_wider_but_the_file_store_is_told_apart() {
        for ok in [
            "user@example.com",
            "a b",
            "tenant:42|x",
            "..",
            &"a".repeat(256),
        ] {
            let key = SessionKey::account(ok).unwrap();
            assert_eq!(key.as_str(), ok);
            assert!(!key.fits_file_name(), "{ok}");
        }
        assert!(SessionKey::account("default").unwrap().fits_file_name());
        for bad in ["", "a/b", "é", "tab\there", "nl\n", &"a".repeat(257)] {
            let error = SessionKey::account(bad).unwrap_err();
            assert!(
                error.to_string().starts_with("invalid account id"),
                "{error}"
            );
        }
    }
}
