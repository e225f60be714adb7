//! The store contract every backend keeps (crates/authkeep/tests/support),
//! on SQLite and PostgreSQL.

use std::sync::Arc;

use authkeep::store::StoreKey;
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
