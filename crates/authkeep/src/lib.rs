//! authkeep keeps OAuth 2.0 / OpenID Connect client sessions alive: once someone
//! has logged in, it hands out a usable access token for as long as the refresh
//! token lives, refreshing ahead of expiry, never logging anyone out because of a
//! race, a network blip or a crash, and never touching the network when it does
//! not have to.
//!
//! # Design overview
//!
//! Getting a token is a file read and a pure decision ([`Policy::decide`]) on the
//! warm path. Only when the decision is to refresh does the [`Keeper`] join an
//! in-process single flight, take the session's cross-process lock, re-read the
//! record (another process may have refreshed it), and send one refresh request
//! built by the sans-I/O [`oauth`] layer. The result is written atomically with
//! the next generation number before the new token is handed out. Failures are
//! classified ([`FailureClass`]); only an `invalid_grant` for the refresh token
//! the store still holds ends a session (compare-and-delete).
//!
//! # Where things live
//!
//! | module | owns |
//! |---|---|
//! | [`secret`] | redacting newtypes for tokens and secrets |
//! | [`token`] | the token set and expiry inference |
//! | [`policy`] | the refresh window and decision table |
//! | [`session`] | the stored record, its client and health |
//! | [`store`] | the store contract and its backends |
//! | [`lock`] | cross-process locks and atomic writes |
//! | [`oauth`] | requests and responses, without I/O |
//! | [`http`] | the one place that does HTTP |
//! | [`keeper`] | the coordinator |
//! | [`events`] | what the coordinator reports |
//! | [`shield`] | when a refresh's result is not yet saved |
//! | [`clock`] | the injected clock |

pub mod clock;
pub mod error;
pub mod events;
pub mod http;
pub mod keeper;
pub mod lock;
pub mod oauth;
pub mod policy;
pub mod secret;
pub mod session;
pub mod shield;
pub mod store;
pub mod token;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, FailureClass, StoreError};
pub use events::{Event, EventSink};
pub use keeper::{Keeper, Served, Settings};
pub use policy::{Decision, Demand, Policy};
pub use secret::{AccessToken, ClientSecret, IdToken, RefreshToken};
pub use session::{Client, ClientAuth, Health, Record, SessionKey, Versioned};
pub use shield::Shield;
pub use store::{FileStore, MemoryStore, Store};
pub use token::{TokenResponse, TokenSet};
