//! Where sessions live. One contract, several backends; the contract suite in
//! `tests/store_contract.rs` runs against each.
//!
//! The contract: load a record with its generation (without a lock); take a
//! session's exclusive lock with a bounded wait; write a record with
//! compare-and-swap on the generation, which requires the lock guard; remove a
//! record the same way; list sessions.

use std::future::Future;
use std::time::Duration;

use crate::error::StoreError;
use crate::session::{Record, SessionKey, Versioned};

mod file;
mod memory;

pub use file::{FileGuard, FileStore};
pub use memory::{MemoryGuard, MemoryStore};

/// Proof that a session's lock is held.
pub trait Guard: Send + Sync + std::fmt::Debug {
    /// The session the lock is for.
    fn key(&self) -> &SessionKey;
}

/// A backend that keeps session records.
pub trait Store: Send + Sync + 'static {
    /// Held while a session is locked; writes require it.
    type Guard: Guard;

    /// Reads a session without locking; `None` when there is none.
    fn load(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<Versioned>, StoreError>> + Send;

    /// Takes the session's exclusive lock, across processes where the backend is
    /// shared, waiting at most `wait`. `on_wait` is called once if it is busy.
    fn lock(
        &self,
        key: &SessionKey,
        wait: Duration,
        on_wait: impl FnOnce() + Send,
    ) -> impl Future<Output = Result<Self::Guard, StoreError>> + Send;

    /// Writes `record` if the stored generation is still `expected` (`None`: no
    /// record exists), durably, and returns the new generation (`expected + 1`).
    fn write(
        &self,
        guard: &Self::Guard,
        expected: Option<u64>,
        record: &Record,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Removes the session if its generation is still `expected`.
    fn remove(
        &self,
        guard: &Self::Guard,
        expected: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored session, sorted.
    fn list(&self) -> impl Future<Output = Result<Vec<SessionKey>, StoreError>> + Send;
}
