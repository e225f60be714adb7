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
    tombstones: Arc<Mutex<HashMap<SessionKey, u64>>>,
    locks: Arc<Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>>,
    skews: Arc<Mutex<HashMap<String, i64>>>,
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
        unpoisoned(&self.records)
    }

    fn lock_of(&self, key: &SessionKey) -> Arc<tokio::sync::Mutex<()>> {
        unpoisoned(&self.locks)
            .entry(key.clone())
            .or_default()
            .clone()
    }
}

/// A panic while holding one of these maps cannot leave it half-updated: every
/// critical section is a single insert, remove or clone.
fn unpoisoned<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store for MemoryStore {
    type Guard = MemoryGuard;

    async fn load(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        Ok(self.records().get(key).cloned())
    }

    async fn try_lock(&self, key: &SessionKey) -> Result<Option<MemoryGuard>, StoreError> {
        Ok(self
            .lock_of(key)
            .try_lock_owned()
            .ok()
            .map(|held| MemoryGuard {
                key: key.clone(),
                _held: held,
            }))
    }

    async fn wait_for_release(&self, key: &SessionKey, wait: Duration) -> Result<bool, StoreError> {
        let mutex = self.lock_of(key);
        Ok(tokio::time::timeout(wait, mutex.lock()).await.is_ok())
    }

    async fn write(
        &self,
        guard: &MemoryGuard,
        expected: Option<u64>,
        record: &Record,
    ) -> Result<u64, StoreError> {
        let conflict = || StoreError::Conflict(guard.key.to_string());
        let mut records = self.records();
        let current = records.get(&guard.key).map(|v| v.generation);
        if current != expected {
            return Err(conflict());
        }
        let base = expected.or_else(|| unpoisoned(&self.tombstones).get(&guard.key).copied());
        let generation = base
            .map_or(Some(1), |g| g.checked_add(1))
            .ok_or_else(conflict)?;
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
                unpoisoned(&self.tombstones).insert(guard.key.clone(), expected);
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

    async fn issuer_skew(&self, issuer: &str) -> Result<Option<i64>, StoreError> {
        Ok(unpoisoned(&self.skews).get(issuer).copied())
    }

    async fn set_issuer_skew(
        &self,
        issuer: &str,
        skew_secs: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut skews = unpoisoned(&self.skews);
        match skew_secs {
            Some(skew) => skews.insert(issuer.to_owned(), skew),
            None => skews.remove(issuer),
        };
        Ok(())
    }
}
