//! What a development identity provider is started with ([`Config`], [`ClientConfig`])
//! and what the admin call that opens a session without a browser asks for
//! ([`SessionRequest`]).

use std::fmt;
use std::time::Duration;

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

use crate::flavor::Flavor;

/// The user a session belongs to when a [`SessionRequest`] names none.
pub const DEFAULT_USER: &str = "alice";
/// The client a session is issued to when a [`SessionRequest`] names none.
pub const DEFAULT_CLIENT_ID: &str = "authkeep-demo";
/// The scope a session is granted when a [`SessionRequest`] names none.
pub const DEFAULT_SCOPE: &str = "openid profile offline_access";

/// How a [`DevIdp`](crate::DevIdp) issues, rotates and checks tokens.
///
/// Build one with struct update syntax over the default:
/// `Config { rotate_refresh_tokens: false, ..Config::default() }`, or over
/// [`Config::for_flavor`] to answer as a real provider does.
#[derive(Clone, Debug)]
pub struct Config {
    /// Which real provider the answers emulate (default [`Flavor::Standard`]: this
    /// provider's own). The flavor words and shapes answers, and fills in what it
    /// documents where the fields below leave a choice open.
    pub flavor: Flavor,
    /// Lifetime of access tokens and ID tokens (default 300 s). A session may override it.
    pub access_ttl: Duration,
    /// Lifetime of each refresh token, counted from its issue. `None` (the default)
    /// means refresh tokens never expire, unless the flavor's always do (GitHub's after
    /// about six months, an online Keycloak session's after 30 minutes); a lifetime
    /// makes token responses carry `refresh_expires_in`, or the flavor's equivalent.
    pub refresh_ttl: Option<Duration>,
    /// Whether a refresh hands out a new refresh token and consumes the presented one
    /// (default true; Google's flavor never rotates). When false, refresh responses
    /// carry no `refresh_token` and the presented one stays valid.
    pub rotate_refresh_tokens: bool,
    /// Whether presenting a consumed refresh token again revokes its whole grant, every
    /// access and refresh token it issued (default true). Either way the request fails
    /// with `invalid_grant`.
    pub reuse_detection: bool,
    /// For how long the refresh token just rotated out of a grant may still be
    /// presented: within this time after its rotation it is answered with new tokens
    /// (those of the first exchange stay valid too), and only after it, or for an older
    /// token, is presenting it reuse. `None` (the default) means the flavor's: 30 s for
    /// [`Flavor::Okta`], none for the others ([`Flavor::Auth0`]'s reuse interval is 0 s
    /// by default). Counted in whole seconds.
    pub reuse_grace: Option<Duration>,
    /// "Networked storage" mode. When set, a refresh reads the grant, waits this long
    /// without holding any lock, then writes, so concurrent refreshes of one refresh
    /// token can all succeed and the grant splits into several valid refresh tokens.
    /// When `None` (the default), refreshes of one grant are an atomic check-and-consume.
    pub parallel_latency: Option<Duration>,
    /// Registered confidential clients. A `client_id` not listed here is accepted as a
    /// public client, and any secret it sends is ignored.
    pub clients: Vec<ClientConfig>,
    /// How long a device code and its user code live (RFC 8628 `expires_in`; default
    /// 600 s). Counted in whole seconds.
    pub device_code_ttl: Duration,
    /// The least time between two polls of one device code (RFC 8628 `interval`;
    /// default 5 s). A poll sooner is answered `slow_down` and adds 5 s to that device
    /// code's interval. Counted in whole seconds; tests that poll for real want 1 s.
    pub device_interval: Duration,
    /// How far the provider's clock is from the true time, as its answers show it:
    /// every response carries a `Date` header of now plus this offset (default zero:
    /// the server's usual `Date`). Positive is a provider clock ahead of ours. Only
    /// the header moves; tokens are stamped with the true time. For testing how a
    /// client measures and copes with clock skew (`authkeep doctor`'s clock check).
    pub date_offset: SignedDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config::for_flavor(Flavor::Standard)
    }
}

impl Config {
    /// The default configuration, answering as `flavor` does with its provider's usual
    /// access-token lifetime ([`Flavor::access_ttl`]).
    pub fn for_flavor(flavor: Flavor) -> Self {
        Config {
            flavor,
            access_ttl: flavor.access_ttl(),
            refresh_ttl: None,
            rotate_refresh_tokens: true,
            reuse_detection: true,
            reuse_grace: None,
            parallel_latency: None,
            clients: Vec::new(),
            device_code_ttl: Duration::from_secs(600),
            device_interval: Duration::from_secs(5),
            date_offset: SignedDuration::ZERO,
        }
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<&ClientConfig> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }
}

/// A registered confidential client. Its `Debug` output hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client identifier.
    pub client_id: String,
    /// The secret the client authenticates with (basic or post).
    pub client_secret: String,
}

impl ClientConfig {
    /// A confidential client with this identifier and secret.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        ClientConfig {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// The admin request that opens a grant without a browser.
///
/// Every field may be left out of the JSON form; an empty `user` or `client_id` (as
/// `Default` gives) means [`DEFAULT_USER`] or [`DEFAULT_CLIENT_ID`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SessionRequest {
    /// The user the grant belongs to (the tokens' `sub`); empty means `"alice"`.
    pub user: String,
    /// The client the grant is issued to; empty means `"authkeep-demo"`.
    pub client_id: String,
    /// Space-separated scope; `None` means `"openid profile offline_access"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Access-token lifetime for this grant, overriding [`Config::access_ttl`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_ttl_secs: Option<u64>,
}

impl SessionRequest {
    pub(crate) fn user(&self) -> &str {
        non_empty_or(&self.user, DEFAULT_USER)
    }

    pub(crate) fn client_id(&self) -> &str {
        non_empty_or(&self.client_id, DEFAULT_CLIENT_ID)
    }

    pub(crate) fn scope(&self) -> &str {
        self.scope.as_deref().unwrap_or(DEFAULT_SCOPE)
    }
}

fn non_empty_or<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_debug_hides_the_secret() {
        let client = ClientConfig::new("svc", "hunter2-secret");
        let shown = format!("{client:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(shown.contains("svc"), "{shown}");
    }

    #[test]
    fn empty_session_request_means_the_defaults() {
        let request: SessionRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(request.user(), "alice");
        assert_eq!(request.client_id(), "authkeep-demo");
        assert_eq!(request.scope(), "openid profile offline_access");
        assert_eq!(request.access_ttl_secs, None);
    }

    #[test]
    fn session_request_fields_override_the_defaults() {
        let request: SessionRequest =
            serde_json::from_str(r#"{"user":"bob","client_id":"cli","scope":"openid"}"#).unwrap();
        assert_eq!(request.user(), "bob");
        assert_eq!(request.client_id(), "cli");
        assert_eq!(request.scope(), "openid");
    }

    #[test]
    fn default_config_matches_the_documented_values() {
        let config = Config::default();
        assert_eq!(config.access_ttl, Duration::from_secs(300));
        assert_eq!(config.refresh_ttl, None);
        assert!(config.rotate_refresh_tokens);
        assert!(config.reuse_detection);
        assert_eq!(config.reuse_grace, None);
        assert_eq!(config.parallel_latency, None);
        assert!(config.clients.is_empty());
        assert_eq!(config.flavor, Flavor::Standard);
        assert_eq!(config.device_code_ttl, Duration::from_secs(600));
        assert_eq!(config.device_interval, Duration::from_secs(5));
        assert_eq!(config.date_offset, SignedDuration::ZERO);
    }

    #[test]
    fn a_flavored_config_takes_the_providers_usual_lifetime() {
        let config = Config::for_flavor(Flavor::GitHub);
        assert_eq!(config.flavor, Flavor::GitHub);
        assert_eq!(config.access_ttl, Duration::from_secs(28_800));
        assert_eq!(config.refresh_ttl, None);
        assert!(config.rotate_refresh_tokens && config.reuse_detection);
        assert_eq!(
            Config::for_flavor(Flavor::Google).access_ttl.as_secs(),
            3599
        );
    }
}
