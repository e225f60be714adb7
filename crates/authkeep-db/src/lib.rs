//! Database stores for authkeep: many accounts, a few shared clients, in
//! SQLite (one file, the embedded default) or PostgreSQL (several agents on
//! several machines).
//!
//! # Design overview
//!
//! [`DbStore`] implements the library's session contract
//! (`authkeep::store::Store`), so a `Keeper<DbStore>` refreshes accounts
//! exactly as it refreshes CLI profiles. Its lock is a lease on the account's
//! row, named after the store (host, process, random) and judged by the
//! database's clock; every write is a compare-and-swap on the generation and
//! on the lease (fencing), so a holder whose lease ran out never overwrites
//! what the next holder wrote. Secrets (tokens, client secrets) are sealed
//! with the store key (XChaCha20-Poly1305, as the encrypted file store),
//! bound to the account or client they belong to.
//!
//! Beside the contract: named clients shared by accounts; logins stored one
//! at a time or in batches; overviews and counts without secrets, from plain
//! columns derived at every write; and a schedule ([`Schedule`]) that says
//! when each account is due, so that an agent can [claim](DbStore::claim_due)
//! due accounts (several agents never claim one twice) and
//! [sleep](DbStore::next_due) until the next.
//!
//! # Where things live
//!
//! | module | what |
//! |---|---|
//! | `store` | [`DbStore`], options, leases, the session contract |
//! | `accounts` | clients, logins, overviews, claims |
//! | `schedule` | when an account is due, its state, derived columns (pure) |
//! | `commit` | group commit: lease changes and record writes, batched per transaction |
//! | `backend` | the two backends behind one code path, opening, the schema |
//! | `error` | [`DbError`] |

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod accounts;
mod backend;
mod commit;
mod error;
mod schedule;
mod store;

pub use accounts::{
    AccountFilter, AccountLogin, AccountSummary, Claim, Imported, NamedClient, NewClient,
};
pub use error::DbError;
pub use schedule::{AccountState, Schedule, error_code};
pub use store::{DEFAULT_LEASE_TTL, DbGuard, DbOptions, DbStore};
