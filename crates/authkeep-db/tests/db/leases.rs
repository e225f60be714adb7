//! Leases: a holder whose lease ran out and was taken over writes nothing
//! (fencing); a long holder's lease is renewed; a dropped guard's lease is
//! released. Separate stores (separate owners and connections), and for the
//! stalled holder a runtime of its own on a thread that stops, as a paused
//! process does.

use std::sync::mpsc;
use std::time::Duration;

use authkeep::store::{Store, StoreKey};
use authkeep::{Record, StoreError};
use authkeep_db::{DbOptions, DbStore};

use crate::suite;

use crate::harness::{account, postgres_url, sqlite_url};

const SHORT: Duration = Duration::from_millis(300);

fn record(access: &str) -> Record {
    suite::record(access, &format!("rt-{access}"))
}

/// A (lease 300 ms) locks and stalls for a second, its runtime blocked so
/// nothing renews the lease; B takes over once it runs out and writes; A
/// then loads B's session, and its late write and removal fail with
/// `LeaseLost` and change nothing.
async fn a_stalled_holder_cannot_overwrite_its_successor(url: String) {
    let key = StoreKey::generate().unwrap();
    let b = DbStore::open(&url, key.clone()).await.unwrap();
    let id = account("user@example.com");
    let first = b.lock(&id, suite::WAIT, || {}).await.unwrap();
    b.write(&first, None, &record("at-0")).await.unwrap();
    drop(first);

    let (locked_tx, locked_rx) = mpsc::channel();
    let (wrote_tx, wrote_rx) = mpsc::channel::<()>();
    let holder = {
        let (url, key, id) = (url.clone(), key.clone(), id.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let a = DbStore::open_with(&url, key, DbOptions::default().lease_ttl(SHORT))
                    .await
                    .unwrap();
                let guard = a.lock(&id, suite::WAIT, || {}).await.unwrap();
                let generation = a.load(&id).await.unwrap().unwrap().generation;
                locked_tx.send(generation).unwrap();
                // Stalled: the runtime is blocked, the renewal task cannot run.
                wrote_rx.recv_timeout(Duration::from_secs(20)).unwrap();
                // Its lease ran out: what it loads is the successor's write,
                // not the session as it took the lease.
                let seen = a.load(&id).await.unwrap().unwrap();
                let write = a.write(&guard, Some(generation), &record("at-A")).await;
                let remove = a.remove(&guard, generation).await;
                (seen, write, remove)
            })
        })
    };
    let generation = locked_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    // The race this test is about landed: A holds the lease now.
    assert!(
        b.try_lock(&id).await.unwrap().is_none(),
        "A holds the lease"
    );
    let guard = b.lock(&id, Duration::from_secs(10), || {}).await.unwrap();
    let taken_over = b
        .write(&guard, Some(generation), &record("at-B"))
        .await
        .unwrap();
    assert_eq!(taken_over, generation + 1);
    wrote_tx.send(()).unwrap();
    let (seen, write, remove) = holder.join().unwrap();
    assert_eq!(seen.generation, taken_over);
    assert_eq!(seen.record, record("at-B"));
    assert!(matches!(write, Err(StoreError::LeaseLost(_))), "{write:?}");
    assert!(
        matches!(remove, Err(StoreError::LeaseLost(_))),
        "{remove:?}"
    );
    let stored = b.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.generation, taken_over);
    assert_eq!(stored.record, record("at-B"));
    // B's lease is intact: it writes on.
    b.write(&guard, Some(taken_over), &record("at-B2"))
        .await
        .unwrap();
}

/// A holder that keeps its guard for three lease lifetimes keeps the lease;
/// once it drops the guard, another store gets it at once.
async fn a_long_holder_keeps_its_lease(url: String) {
    let key = StoreKey::generate().unwrap();
    let options = DbOptions::default().lease_ttl(SHORT);
    let a = DbStore::open_with(&url, key.clone(), options.clone())
        .await
        .unwrap();
    let b = DbStore::open_with(&url, key, options).await.unwrap();
    let id = account("long holder");
    let guard = a.lock(&id, suite::WAIT, || {}).await.unwrap();
    tokio::time::sleep(SHORT * 3).await;
    assert!(!guard.is_lost());
    assert!(b.try_lock(&id).await.unwrap().is_none(), "still held");
    assert_eq!(a.write(&guard, None, &record("at-1")).await.unwrap(), 1);
    drop(guard);
    let released = b
        .wait_for_release(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(released);
    assert!(b.try_lock(&id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fencing_refuses_a_stalled_holder() {
    let dir = tempfile::tempdir().unwrap();
    a_stalled_holder_cannot_overwrite_its_successor(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fencing_refuses_a_stalled_holder() {
    a_stalled_holder_cannot_overwrite_its_successor(postgres_url().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lease_is_renewed_while_held() {
    let dir = tempfile::tempdir().unwrap();
    a_long_holder_keeps_its_lease(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_is_renewed_while_held() {
    a_long_holder_keeps_its_lease(postgres_url().await).await;
}
