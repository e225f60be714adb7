//! The store contract, run against every backend: load with generation,
//! compare-and-swap writes under the lock, compare-and-delete that leaves the
//! generation behind, list, lock waits, issuer entries. The file store runs it
//! twice: in plain text and encrypted. The suite itself is in
//! `support/store_contract.rs`, shared with the database stores' tests.

use std::sync::Arc;
use std::time::Duration;

use authkeep::StoreError;
use authkeep::store::{Encrypting, FileStore, MemoryStore, Store, StoreKey};

#[path = "support/store_contract.rs"]
mod suite;

use suite::{WAIT, a_waiting_locker_gets_the_lock, contract, key};

#[tokio::test]
async fn file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(FileStore::new(dir.path().join("sessions"))).await;
}

#[tokio::test]
async fn encrypted_file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    let store =
        FileStore::new(dir.path().join("sessions")).with_sealer(Arc::new(Encrypting::new(key)));
    contract(store).await;
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_locker_gets_the_lock_when_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    a_waiting_locker_gets_the_lock(Arc::new(FileStore::new(dir.path()))).await;
    let dir = tempfile::tempdir().unwrap();
    let sealer = Arc::new(Encrypting::new(StoreKey::generate().unwrap()));
    a_waiting_locker_gets_the_lock(Arc::new(FileStore::new(dir.path()).with_sealer(sealer))).await;
    a_waiting_locker_gets_the_lock(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn file_store_lock_belongs_to_the_open_file_not_the_process() {
    // Two stores on one directory in one process contend like two processes.
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (FileStore::new(dir.path()), FileStore::new(dir.path()));
    let _held = one.lock(&key("s"), WAIT, || {}).await.unwrap();
    assert!(matches!(
        two.lock(&key("s"), Duration::from_millis(30), || {}).await,
        Err(StoreError::LockTimeout { .. })
    ));
}

// The OS keyring backend: the file store with each record's secrets sealed in
// the keyring. It needs a real Secret Service: ./scripts/test.sh starts one
// and sets AUTHKEEP_TEST_SECRET_SERVICE (tests/keyring.rs has the rest).
#[cfg(feature = "keyring")]
mod keyring {
    use std::sync::Arc;
    use std::time::Duration;

    use authkeep::store::{FileStore, InKeyring, Store, Vault};

    use super::{WAIT, contract};

    #[tokio::test]
    async fn keyring_store_keeps_the_contract() {
        // Only in the keyring ./scripts/test.sh starts, never a developer's own.
        assert!(
            std::env::var_os("AUTHKEEP_TEST_SECRET_SERVICE").is_some(),
            "this test needs the Secret Service that ./scripts/test.sh starts; run that, or: \
             dbus-run-session -- scripts/with-secret-service.sh cargo test -p authkeep --test store_contract"
        );
        let namespace = format!("contract-{}-{:016x}", std::process::id(), fastrand::u64(..));
        let vault = Vault::new(&namespace, Duration::from_secs(5));
        if let Err(e) = vault.probe_blocking() {
            panic!("the Secret Service started for the tests does not answer: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("sessions"))
            .with_sealer(Arc::new(InKeyring::new(vault.clone())));
        contract(store.clone()).await;

        // Remove the sessions the contract kept; the entries its refused writes
        // sealed are orphans no record names, gone with the test keyring.
        for key in store.list().await.unwrap() {
            let guard = store.lock(&key, WAIT, || {}).await.unwrap();
            let stored = store.load(&key).await.unwrap().unwrap();
            store.remove(&guard, stored.generation).await.unwrap();
        }
        assert!(store.list().await.unwrap().is_empty());
    }
}
