//! A small OpenID provider for developing and testing OAuth clients: tests,
//! benchmarks, `authkeep demo`, and anyone checking how their client copes with a
//! provider that rotates, revokes, stalls or misbehaves. It listens on loopback only and
//! is never a production server.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use authkeep_devidp::{Config, DevIdp, SessionRequest};
//!
//! let idp = DevIdp::start("127.0.0.1:0".parse().unwrap(), Config::default()).await?;
//! let tokens = idp.create_session(&SessionRequest::default());
//! // Point a client at `idp.issuer()` with `tokens`, then ask what it did:
//! let refreshes = idp.counters().token_requests_for("refresh_token");
//! # let _ = (tokens, refreshes);
//! idp.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Design overview
//!
//! One [`DevIdp`] is one provider instance: a fresh HS256 signing key, an in-memory
//! store of grants, and an HTTP server on a tokio task. A *grant* is one authorization
//! of a user for a client; it owns the refresh tokens and access tokens issued under
//! it, so revoking it (explicitly, or because a rotated-out refresh token came back)
//! deactivates all of them at once. Access tokens are JWTs (`typ` `at+jwt`) whose
//! `jti` the store remembers; refresh tokens are opaque and stored only as digests.
//!
//! The store is one `std` mutex never held across a wait. Refreshing is an atomic
//! check-and-consume unless [`Config::parallel_latency`] asks for the "networked
//! storage" race, where concurrent refreshes of one token all succeed.
//!
//! The [`Faults`] plan makes the token endpoint (and optionally discovery) slow, wrong
//! or silent. Dropped and hanging connections are real: each connection can be cut at
//! the socket, so a client sees a connection error, never an HTTP answer. Some faults
//! change a normal answer instead of replacing it: an access token that has already
//! expired, a discovery document whose token endpoint is too long to use.
//!
//! The login flows need no browser: a test GETs `/device` or `/authorize` and posts
//! the form back, or calls [`DevIdp::approve_device`]. Authorization codes and device
//! codes are single-use and stored as digests, like refresh tokens.
//!
//! Every HTTP request is counted ([`Counters`]), token requests by grant type and
//! outcome, so a test can assert how much traffic a client caused.
//!
//! A [`Flavor`] ([`Config::flavor`]) makes the token endpoint answer as a real provider
//! does: GitHub's errors inside an HTTP 200, Microsoft Entra's AADSTS codes, Google's
//! refresh tokens that never rotate, Keycloak's `refresh_expires_in: 0` for offline
//! tokens, Okta's and Auth0's grace period before reuse detection. The provider decides
//! the same way for every flavor, except where a flavor documents another rule; the
//! flavor then shapes the answer at the one point where it is built.
//!
//! ## HTTP endpoints
//!
//! | path | what |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | discovery |
//! | `POST /token` | `authorization_code` (PKCE S256), `refresh_token`, `client_credentials` (RFC 6749) and device code (RFC 8628) grants |
//! | `POST /introspect` | introspection (RFC 7662), no client authentication |
//! | `GET`/`POST /userinfo` | claims for a bearer access token |
//! | `POST /revoke` | revocation (RFC 7009): a refresh token takes its grant along |
//! | `GET /jwks` | an empty key set (HS256 keys are not published) |
//! | `GET`/`POST /authorize` | consent page; approving redirects with `code`, `state`, `iss` |
//! | `POST /device` | device authorization (RFC 8628 §3.1) |
//! | `GET /device`, `POST /device` with `action` | the verification page and its form |
//! | `POST /admin/sessions` | a grant without a browser ([`SessionRequest`] as JSON) |
//! | `POST /admin/sessions/bulk` | `{"count": N, <SessionRequest fields>}`: N grants (`{n}` in `user` numbers them), their token responses as JSON lines |
//! | `GET /admin/grants` | each grant's user, refreshes, shortest and longest gap between them, revocation, as JSON lines |
//! | `GET /admin/counters` | [`Counters`] as JSON |
//! | `POST`/`DELETE /admin/faults` | replace ([`Faults`] as JSON) or clear the fault plan |
//! | `POST /admin/revoke` | `{"token": …}`: revoke the grant behind a token |
//!
//! ## Where things live
//!
//! - `config`: [`Config`], [`ClientConfig`], [`SessionRequest`].
//! - `flavor`: [`Flavor`]: each real provider's rules, words and answer shapes.
//! - `provider`: grants, tokens, rotation, reuse detection, revocation, introspection;
//!   `provider::login`: pending device authorizations and authorization codes.
//! - `authorize`: authorization requests, loopback redirect URIs, redirects.
//! - `pages`: the HTML of the verification, consent and error pages.
//! - `oauth`: form parameters, scopes, client authentication, token-endpoint errors.
//! - `jwt`: HS256 signing and verification, random token strings.
//! - `faults`: [`Faults`], [`FaultKind`] and what each looks like on the wire.
//! - `counters`: [`Counters`].
//! - `server`: routes and handlers; `listener`: connections that can be cut.

#![warn(missing_docs)]

mod authorize;
mod config;
mod counters;
mod faults;
mod flavor;
mod jwt;
mod listener;
mod oauth;
mod pages;
mod provider;
mod server;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    ClientConfig, Config, DEFAULT_CLIENT_ID, DEFAULT_SCOPE, DEFAULT_USER, SessionRequest,
};
pub use counters::{Counters, GRANT_UNKNOWN, OUTCOME_FAULT, OUTCOME_OK};
pub use faults::{FaultKind, Faults};
pub use flavor::{Flavor, UnknownFlavor};

use listener::{Cut, CuttableListener};
use provider::Provider;

/// A running development identity provider.
///
/// Dropping it stops the server as [`DevIdp::shutdown`] does, without waiting.
pub struct DevIdp {
    addr: SocketAddr,
    provider: Arc<Provider>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<io::Result<()>>,
}

impl DevIdp {
    /// Binds `addr` and serves on the current tokio runtime. Port 0 picks a free port.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `addr` is not a loopback address (127.0.0.0/8 or ::1); any
    /// error binding the socket.
    pub async fn start(addr: SocketAddr, config: Config) -> io::Result<DevIdp> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the development identity provider listens on loopback addresses only \
                     (127.0.0.0/8 or ::1), not {}",
                    addr.ip()
                ),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let provider = Arc::new(Provider::new(format!("http://{addr}"), config));
        let (shutdown, stopping) = watch::channel(false);
        let router = server::router(Arc::clone(&provider), stopping.clone());
        let mut stopping = stopping;
        let server = axum::serve(
            CuttableListener::new(listener),
            router.into_make_service_with_connect_info::<Cut>(),
        )
        .with_graceful_shutdown(async move {
            // An error means the handle was dropped, which also asks for a stop.
            stopping.wait_for(|stop| *stop).await.ok();
        });
        Ok(DevIdp {
            addr,
            provider,
            shutdown,
            server: tokio::spawn(server.into_future()),
        })
    }

    /// The issuer URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> String {
        self.provider.issuer().to_owned()
    }

    /// The address the provider listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates a grant without a browser and returns its token response (RFC 6749
    /// §5.1): `access_token`, `token_type`, `expires_in`, `refresh_token`, `scope`,
    /// `id_token` when the scope has `openid`, `refresh_expires_in` when refresh tokens
    /// expire; shaped as the configured [`Flavor`] answers.
    pub fn create_session(&self, request: &SessionRequest) -> serde_json::Value {
        self.provider.create_session(request)
    }

    /// Approves the pending device authorization with this user code (in any case,
    /// with or without its dash) for `user` (`alice` when empty), as the verification
    /// page at `/device` does. False if the code is unknown, expired, exchanged or
    /// already answered, or the user name is longer than 64 characters or holds
    /// control characters.
    pub fn approve_device(&self, user_code: &str, user: &str) -> bool {
        let Some(user) = provider::login::login_user(Some(user)) else {
            return false;
        };
        let decision = provider::login::Decision::Approved { user };
        self.provider.decide_device(user_code, decision).is_ok()
    }

    /// Denies the pending device authorization with this user code, as the
    /// verification page does; false if the code is unknown, expired, exchanged or
    /// already answered.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.provider
            .decide_device(user_code, provider::login::Decision::Denied)
            .is_ok()
    }

    /// A snapshot of the request counters.
    pub fn counters(&self) -> Counters {
        self.provider.counters()
    }

    /// Whether `token` (access or refresh) is active, as introspection would say.
    pub fn is_active(&self, token: &str) -> bool {
        self.provider.is_active(token)
    }

    /// Revokes the whole grant that issued this access or refresh token; false if the
    /// token is not one of this provider's.
    pub fn revoke_grant_of(&self, token: &str) -> bool {
        self.provider.revoke_grant_of(token)
    }

    /// Replaces the fault plan.
    pub fn set_faults(&self, faults: Faults) {
        self.provider.set_faults(faults);
    }

    /// Stops accepting connections, frees the port, lets requests in flight finish (a
    /// hanging one is cut), and returns once every connection is closed.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        match self.server.await {
            Ok(_) => {}
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => {}
        }
    }
}

impl fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIdp")
            .field("issuer", &self.provider.issuer())
            .finish_non_exhaustive()
    }
}
