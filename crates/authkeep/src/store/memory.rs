//! An in-memory store for tests and short-lived programs. Locks are per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

use super::{Guard, Store};
use crate::error::StoreError;
use crate::session::{Record, SessionKey, Versioned};

/// Sessions kept in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    records: Arc<Mutex<HashMap<SessionKey, Versioned>>>,
    locks: Arc<Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>>,
}

/// The lock on one in-memory session.
#[derive(Debug)]
pub struct MemoryGuard {
    key: SessionKey,
    _held: OwnedMutexGuard<()>,
}

impl Guard for MemoryGuard {
    fn key(&self) -> &SessionKey {
        &self.key
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Versioned>> {
        // A panic while holding this map cannot leave it half-updated: every
        // critical section is a single insert, remove or clone.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    type Guard = MemoryGuard;

    async fn load(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        Ok(self.records().get(key).cloned())
    }

    async fn lock(
        &self,
        key: &SessionKey,
        wait: Duration,
        on_wait: impl FnOnce() + Send,
    ) -> Result<MemoryGuard, StoreError> {
        let mutex = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let held = match mutex.clone().try_lock_owned() {
            Ok(held) => held,
            Err(_) => {
                on_wait();
                tokio::time::timeout(wait, mutex.lock_owned())
                    .await
                    .map_err(|_| StoreError::LockTimeout {
                        key: key.to_string(),
                        waited_secs: wait.as_secs(),
                    })?
            }
        };
        Ok(MemoryGuard {
            key: key.clone(),
            _held: held,
        })
    }

    async fn write(
        &self,
        guard: &MemoryGuard,
        expected: Option<u64>,
        record: &Record,
    ) -> Result<u64, StoreError> {
        let mut records = self.records();
        let current = records.get(&guard.key).map(|v| v.generation);
        if current != expected {
            return Err(StoreError::Conflict(guard.key.to_string()));
        }
        let generation = expected.map_or(1, |g| g + 1);
        records.insert(
            guard.key.clone(),
            Versioned {
                generation,
                record: record.clone(),
            },
        );
        Ok(generation)
    }

    async fn remove(&self, guard: &MemoryGuard, expected: u64) -> Result<(), StoreError> {
        let mut records = self.records();
        match records.get(&guard.key) {
            Some(v) if v.generation == expected => {
                records.remove(&guard.key);
                Ok(())
            }
            None => Ok(()),
            Some(_) => Err(StoreError::Conflict(guard.key.to_string())),
        }
    }

    async fn list(&self) -> Result<Vec<SessionKey>, StoreError> {
        let mut keys: Vec<_> = self.records().keys().cloned().collect();
        keys.sort();
        Ok(keys)
    }
}
