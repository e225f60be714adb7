//! Group commit: writes that queue up together are committed in one
//! transaction, yet each is judged by itself, so a conflicting or fenced-off
//! write fails alone and the others land; releases that queue up together
//! are let go in one statement, each only of its own lease.

use authkeep::store::{Store, StoreKey};
use authkeep::{SessionKey, StoreError};
use authkeep_db::{DbGuard, DbOptions, DbStore};
use sqlx::Connection as _;

use crate::harness::{account, postgres_url, sqlite_url};
use crate::suite;

const ACCOUNTS: usize = 24;

/// Locks `ACCOUNTS` accounts, then writes them all at once: every third with
/// a stale generation, every seventh under a guard whose lease another
/// store took over. Those fail (conflict, lost lease), the rest are written.
async fn each_write_in_a_batch_is_judged_alone(url: String, options: DbOptions) {
    let key = StoreKey::generate().unwrap();
    let store = DbStore::open_with(&url, key.clone(), options.clone())
        .await
        .unwrap();
    let thief = DbStore::open_with(&url, key, options).await.unwrap();
    let ids: Vec<_> = (0..ACCOUNTS)
        .map(|i| account(&format!("user-{i:02}@example.com")))
        .collect();
    let mut guards = Vec::with_capacity(ACCOUNTS);
    for id in &ids {
        let guard = store.lock(id, suite::WAIT, || {}).await.unwrap();
        let record = suite::record(&format!("at-{id}"), "rt");
        assert_eq!(store.write(&guard, None, &record).await.unwrap(), 1);
        guards.push(guard);
    }
    // Every seventh lease is stolen: as if it ran out and another took it.
    let stolen = |i: usize| i % 7 == 3;
    let stale = |i: usize| i.is_multiple_of(3);
    let mut thieves = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if stolen(i) {
            thieves.push(steal(&thief, &url, id).await);
        }
    }
    // Spawned together: the writes queue up while a commit is under way.
    let writes: Vec<_> = guards
        .into_iter()
        .enumerate()
        .map(|(i, guard)| {
            let store = store.clone();
            let expected = if stale(i) { 7 } else { 1 };
            let record = suite::record(&format!("at-{i}-2"), "rt-2");
            tokio::spawn(async move {
                let result = store.write(&guard, Some(expected), &record).await;
                (result, guard)
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut guards = Vec::new();
    for write in writes {
        let (result, guard) = write.await.unwrap();
        results.push(result);
        guards.push(guard);
    }
    for (i, result) in results.iter().enumerate() {
        if stolen(i) {
            assert!(
                matches!(result, Err(StoreError::LeaseLost(_))),
                "{i}: {result:?}"
            );
        } else if stale(i) {
            assert!(
                matches!(result, Err(StoreError::Conflict(_))),
                "{i}: {result:?}"
            );
        } else {
            assert!(matches!(result, Ok(2)), "{i}: {result:?}");
        }
        let stored = store.load(&ids[i]).await.unwrap().unwrap();
        let landed = !stolen(i) && !stale(i);
        assert_eq!(stored.generation, if landed { 2 } else { 1 }, "{i}");
    }

    // Dropped at once, the guards' releases queue up and are let go
    // together: each of its own lease, none of a lease taken over.
    drop(guards);
    for (i, id) in ids.iter().enumerate() {
        if stolen(i) {
            assert!(
                thief.try_lock(id).await.unwrap().is_none(),
                "{i}: the thief's"
            );
        } else {
            assert!(
                thief.wait_for_release(id, suite::WAIT).await.unwrap(),
                "{i}: released"
            );
        }
    }
    drop(thieves);
}

/// Takes over `id`'s lease from whoever holds it, as if it had run out: its
/// expiry is set in the past behind the store's back.
async fn steal(thief: &DbStore, url: &str, id: &SessionKey) -> DbGuard {
    let expire = "UPDATE authkeep_accounts SET lease_until = 0 WHERE id = $1";
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(expire)
            .bind(id.as_str())
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(expire)
            .bind(id.as_str())
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    thief
        .try_lock(id)
        .await
        .unwrap()
        .expect("the lease ran out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_commit_judges_each_write_alone() {
    let dir = tempfile::tempdir().unwrap();
    each_write_in_a_batch_is_judged_alone(sqlite_url(dir.path()), DbOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_without_group_commit_judges_each_write_alone() {
    let dir = tempfile::tempdir().unwrap();
    let options = DbOptions::default().writer_lanes(0);
    each_write_in_a_batch_is_judged_alone(sqlite_url(dir.path()), options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_commit_judges_each_write_alone() {
    let options = DbOptions::default().writer_lanes(2);
    each_write_in_a_batch_is_judged_alone(postgres_url().await, options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_group_commit_judges_each_write_alone() {
    each_write_in_a_batch_is_judged_alone(postgres_url().await, DbOptions::default()).await;
}
