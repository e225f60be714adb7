//! authkeep keeps OAuth 2.0 / OpenID Connect client sessions alive: once someone
//! has logged in, it hands out a usable access token for as long as the refresh
//! token lives, refreshing ahead of expiry, never logging anyone out because of a
//! race, a network blip or a crash, and never touching the network when it does
//! not have to.
//!
//! # Design overview
//!
//! A [`Keeper`] coordinates a [`Store`] of sessions. Getting a token is a read
//! and a pure decision ([`Policy::decide`]) on the warm path: no HTTP client,
//! no name resolution, no request. Only when the decision is to refresh does the
//! keeper join the session's in-process single flight (concurrent callers share
//! one attempt and its outcome), take the session's cross-process lock (or wait
//! for its holder's result), re-read the record, and send one refresh request
//! built by the sans-I/O [`oauth`] layer through a [`Transport`] (by default a
//! `reqwest::Client`, the caller's own if given). The result is written durably,
//! with the next generation number, before the new token is handed out; a write
//! that fails is an error, never a token. Failures are classified
//! ([`FailureClass`]); only an `invalid_grant` for the refresh token the store
//! still holds ends a session (compare-and-delete). Everything the keeper does is
//! reported as an [`Event`], and every change of a session's tokens as a
//! [`TokenChange`]. Time comes from an injected [`Clock`]. Long-running programs
//! read a session's token from a [`CachedToken`] ([`cache`]): no lock, no I/O and
//! no clock read per call, with an optional task that refreshes ahead of expiry.
//!
//! ```no_run
//! use authkeep::{Client, Demand, FileStore, Keeper, SessionKey, TokenResponse};
//!
//! # async fn run(response: TokenResponse) -> Result<(), authkeep::Error> {
//! let keeper = Keeper::builder(FileStore::new("/var/lib/myapp/sessions")).build();
//! let key = SessionKey::new("account-42").expect("a valid name");
//! // Once, after a login elsewhere:
//! keeper
//!     .import_login(&key, Client::new("https://idp.example", "my-app"), response)
//!     .await?;
//! // Whenever a token is needed:
//! let token = keeper.token(&key, Demand::new()).await?;
//! # let _ = token.access_token.expose_secret();
//! // If a server answers 401 to it:
//! let token = keeper.token_after_rejection(&key, &token.access_token).await?;
//! # Ok(()) }
//! ```
//!
//! # Where things live
//!
//! | module | owns |
//! |---|---|
//! | `keeper` | the [`Keeper`], its builder, the warm path |
//! | [`config`] | `config.toml`, the environment variables, and how each setting is chosen; which store |
//! | [`cache`] | the [`CachedToken`] of long-running programs: a read without lock, I/O or clock; refresh-ahead |
//! | `refresh` | the refresh protocol: single flight, lock, re-read, write, compare-and-delete |
//! | [`login`] | interactive logins: device code polling, browser with PKCE on a loopback listener |
//! | `logout` | logging out: local removal under the lock, then revocation at the provider (RFC 7009) |
//! | [`policy`] | the refresh window and decision table, pure |
//! | [`store`] | the store contract and its backends (file, memory), the file store's sealers (encrypted, OS keyring), `rekey` |
//! | [`oauth`] | requests and responses, without I/O |
//! | `http` | the [`Transport`] and the default `reqwest` one |
//! | `discovery` | where a token endpoint comes from, cached |
//! | [`resource`] | sending the token to resource servers: which origins get it, the 401 rule |
//! | `middleware` | the reqwest middleware over [`resource`] (feature `middleware`) |
//! | `token`, `session`, `secret` | tokens and expiry, records and health, redacting secret types |
//! | `events`, `error`, `clock`, `shield` | what is reported, what fails, the injected clock, unsaved results |

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cache;
mod clock;
pub mod config;
mod discovery;
mod error;
mod events;
mod http;
mod keeper;
mod lock;
pub mod login;
mod logout;
#[cfg(feature = "middleware")]
pub mod middleware;
pub mod oauth;
pub mod policy;
mod refresh;
pub mod resource;
mod secret;
mod session;
mod shield;
pub mod store;
mod token;

pub use cache::{CachedToken, TokenReader};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, FailureClass, Step, StoreError};
pub use events::{ChangeKind, ChangeSink, Event, EventSink, Stored, TokenChange, Unrecorded};
pub use http::{BoxFuture, Network, Transport, TransportError, describe_http_error};
pub use keeper::{DEFAULT_LOCK_TIMEOUT, Keeper, KeeperBuilder, Token};
pub use login::{LoggedIn, Loopback, LoopbackError};
pub use logout::{Logout, Revocation};
#[cfg(feature = "middleware")]
pub use middleware::Bearer;
pub use policy::{Decision, Demand, LoginReason, Policy, SessionState};
pub use resource::ResourceAccess;
pub use secret::{
    AccessToken, AuthorizationCode, ClientSecret, DeviceCode, IdToken, PkceVerifier, RefreshToken,
};
pub use session::{
    Client, ClientAuth, Failure, Health, InvalidAccountId, InvalidSessionKey, Record, Renewal,
    SessionKey, Versioned,
};
pub use shield::Shield;
pub use store::{FileStore, MemoryStore, Store};
pub use token::{ExpirySource, Origin, TokenResponse, TokenSet};
