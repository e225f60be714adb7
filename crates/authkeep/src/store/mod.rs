//! Where sessions live. One contract, several backends; the contract suite in
//! `tests/store_contract.rs` runs against each.
//!
//! The contract: load a record with its generation (without a lock); take a
//! session's exclusive lock, or wait for whoever holds it to let go; write a
//! record with compare-and-swap on the generation, which requires the lock guard;
//! remove a record the same way, leaving its generation behind so that a new
//! login continues it; list sessions; keep what is known of each issuer (its
//! clock skew).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::session::{Record, SessionKey, Versioned};

mod encrypted;
mod file;
#[cfg(feature = "keyring")]
mod keyring;
mod memory;

pub use encrypted::{Encrypting, KeyError, KeyProblem, Rekeyed, StoreKey, rekey, rekey_with};
pub use file::{
    FileGuard, FileStore, RecordProblem, SECRET_FIELDS, SealError, Sealer, decode_record,
    encode_record,
};
#[cfg(feature = "keyring")]
pub use keyring::{InKeyring, KEYRING_SERVICE, Vault, VaultError};
pub use memory::{MemoryGuard, MemoryStore};

/// Replaces a file atomically with private (0600) content, as the file store
/// writes its records; for programs that keep a secret in a file of their own.
pub use crate::lock::write_atomically;

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
    /// shared, if nobody holds it; `None` if somebody does. A backend that keeps
    /// a journal of interrupted writes recovers it here, under the lock.
    fn try_lock(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<Self::Guard>, StoreError>> + Send;

    /// Waits, at most `wait`, until whoever holds the session's lock lets go.
    /// Returns whether that happened in time; the lock may be taken again at
    /// once by anyone, so the caller re-reads and decides again.
    fn wait_for_release(
        &self,
        key: &SessionKey,
        wait: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Writes `record` if the stored generation is still `expected` (`None`: no
    /// record exists), durably, and returns the new generation: `expected + 1`,
    /// or one more than the generation a removed record left behind.
    fn write(
        &self,
        guard: &Self::Guard,
        expected: Option<u64>,
        record: &Record,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Removes the session if its generation is still `expected`, remembering that
    /// generation so that the next write continues after it.
    fn remove(
        &self,
        guard: &Self::Guard,
        expected: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored session, sorted.
    fn list(&self) -> impl Future<Output = Result<Vec<SessionKey>, StoreError>> + Send;

    /// The issuer's clock minus ours, in seconds, as last measured; `None` when
    /// it was never found to differ.
    fn issuer_skew(
        &self,
        issuer: &str,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Records the issuer's clock skew (`None`: the clocks agree).
    fn set_issuer_skew(
        &self,
        issuer: &str,
        skew_secs: Option<i64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes the session's exclusive lock, waiting at most `wait` in all for
    /// whoever holds it. `on_wait` is called once if it is busy.
    fn lock(
        &self,
        key: &SessionKey,
        wait: Duration,
        on_wait: impl FnOnce() + Send,
    ) -> impl Future<Output = Result<Self::Guard, StoreError>> + Send {
        async move {
            // A wait too long to represent is no deadline at all.
            let deadline = Instant::now().checked_add(wait);
            let mut on_wait = Some(on_wait);
            loop {
                if let Some(guard) = self.try_lock(key).await? {
                    return Ok(guard);
                }
                if let Some(notify) = on_wait.take() {
                    notify();
                }
                let left = deadline.map_or(wait, |d| d.saturating_duration_since(Instant::now()));
                if left.is_zero() || !self.wait_for_release(key, left).await? {
                    return Err(StoreError::LockTimeout {
                        key: key.to_string(),
                        waited: wait,
                    });
                }
            }
        }
    }
}
