//! The authkeep agent: keeps many accounts of a database store alive and
//! hands their access tokens to programs in any language over a local HTTP
//! API (docs/DESIGN.md §10).
//!
//! # Design overview
//!
//! An [`Agent`] owns a `Keeper<DbStore>`: every refresh, whoever asks for it,
//! goes through the keeper's single flight and the account's lease, so an
//! application's token call and the scheduler never refresh one account
//! twice. The scheduler claims due accounts from the store (several agents on
//! one PostgreSQL never claim the same one) and refreshes each with
//! [`authkeep::Keeper::refresh_unless_changed`] at the generation it claimed,
//! under a bound on concurrent refreshes; back-off and `Retry-After` come
//! from the accounts' health, through the store's due instants. The API
//! serves on a unix socket (0600) or on loopback TCP behind a bearer key.
//! Keeper events feed the metrics and the state changes the webhook reports;
//! none carries a secret, and what leaves the process names a failure's class
//! and code, never a provider's text.
//!
//! # Where things live
//!
//! | module | what |
//! |---|---|
//! | `state` | [`Agent`], [`AgentOptions`], the state every request and task shares ([`AgentState`]) |
//! | `api` | the router, the access check (one function the status page extends), the JSON of accounts and errors |
//! | `listen` | where the API listens ([`Listen`]), the API key ([`ApiKey`]), binding sockets safely |
//! | `scheduler` | claiming due accounts and refreshing them, bounded, until shutdown |
//! | `metrics` | counters and the Prometheus text |
//! | `page` | the status page at `/` and its key form (a cookie on TCP) |
//! | `watch` | account state changes seen in keeper events, and the webhook that reports them |
//! | `error` | [`AgentError`] |

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod duration;
mod error;
mod listen;
mod metrics;
mod page;
mod scheduler;
mod state;
mod watch;

pub use api::{Access, router, summary_json};
pub use duration::parse_duration;
pub use error::AgentError;
pub use listen::{ApiKey, Bound, Listen};
pub use metrics::Metrics;
pub use state::{Agent, AgentOptions, AgentState, DEFAULT_CONCURRENCY, DEFAULT_KEEP_ALIVE};
pub use watch::{Transition, Watcher};
