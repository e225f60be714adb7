//! The store contract every backend keeps (crates/authkeep/tests/support),
//! on SQLite and PostgreSQL.

use std::sync::Arc;

use authkeep::store::{Store as _, StoreKey};
use authkeep_db::DbOptions;

use crate::suite;

use crate::harness::{postgres, postgres_url, sqlite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    suite::contract(sqlite(dir.path(), &key, DbOptions::default()).await).await;
    let other = tempfile::tempdir().unwrap();
    let store = sqlite(other.path(), &key, DbOptions::default()).await;
    suite::a_waiting_locker_gets_the_lock(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_contract() {
    let key = StoreKey::generate().unwrap();
    let url = postgres_url().await;
    suite::contract(postgres(&url, &key, DbOptions::default()).await).await;
    let url = postgres_url().await;
    let store = postgres(&url, &key, DbOptions::default()).await;
    suite::a_waiting_locker_gets_the_lock(Arc::new(store)).await;
}

/// An issuer's skew is read once a minute at most: another agent's change
/// is seen within that, this store's own at once.
async fn skew_is_read_once_a_minute(url: &str) {
    let key = StoreKey::generate().unwrap();
    let start = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let clock = Arc::new(authkeep::ManualClock::new(start));
    let options = DbOptions::default().clock(clock.clone());
    let reader = authkeep_db::DbStore::open_with(url, key.clone(), options.clone())
        .await
        .unwrap();
    let writer = authkeep_db::DbStore::open_with(url, key, options)
        .await
        .unwrap();
    let issuer = "https://issuer.example";
    assert_eq!(reader.skew(issuer).await.unwrap(), None);
    writer.set_issuer_skew(issuer, Some(120)).await.unwrap();
    assert_eq!(writer.skew(issuer).await.unwrap(), Some(120));
    clock.advance(jiff::SignedDuration::from_secs(59));
    assert_eq!(
        reader.skew(issuer).await.unwrap(),
        None,
        "read a minute ago"
    );
    clock.advance(jiff::SignedDuration::from_secs(1));
    assert_eq!(reader.skew(issuer).await.unwrap(), Some(120));
    assert_eq!(writer.skew(issuer).await.unwrap(), Some(120));
    reader.set_issuer_skew(issuer, None).await.unwrap();
    assert_eq!(reader.skew(issuer).await.unwrap(), None, "its own change");
    assert_eq!(
        writer.skew(issuer).await.unwrap(),
        Some(120),
        "read just now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_skew_is_read_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    skew_is_read_once_a_minute(&crate::harness::sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_skew_is_read_once_a_minute() {
    skew_is_read_once_a_minute(&postgres_url().await).await;
}
