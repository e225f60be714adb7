//! Leases: a holder whose lease ran out and was taken over writes nothing
//! (fencing); a long holder's lease is renewed; a dropped guard's lease is
//! released; a claim's leases are taken up by the claiming store's guards. Separate stores (separate owners and connections), and for the
//! stalled holder a runtime of its own on a thread that stops, as a paused
//! process does.

use std::sync::mpsc;
use std::time::Duration;

use std::time::Instant;

use authkeep::store::{Store, StoreKey};
use authkeep::{Client, Record, StoreError};
use authkeep_db::{AccountLogin, DbOptions, DbStore, NewClient};
use jiff::{SignedDuration, Timestamp};
use sqlx::Connection as _;

use crate::suite;

use crate::harness::{account, postgres_url, response, sqlite_url};

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

/// A claim takes the leases of the accounts it claims: another store cannot
/// lock them; the claiming store's `try_lock` takes the lease up (a fresh
/// take would find it held) and writes under it; `release_claim` lets go of
/// one nobody took up; and one older than a third of the lease's lifetime
/// (its renewal could come too late) is let go and taken afresh. A release
/// the database refuses is an error, and the lease is left to run out.
async fn a_claim_leases_its_accounts(url: String) {
    const TTL: Duration = Duration::from_secs(6);
    let key = StoreKey::generate().unwrap();
    let options = DbOptions::default().lease_ttl(TTL);
    let a = DbStore::open_with(&url, key.clone(), options.clone())
        .await
        .unwrap();
    let b = DbStore::open_with(&url, key, options).await.unwrap();
    let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
    a.add_client(NewClient::new(
        "acme",
        Client::new("https://idp.example", "app"),
    ))
    .await
    .unwrap();
    let ids = ["alpha", "beta", "delta", "epsilon", "gamma"].map(account);
    let logins = ids
        .iter()
        .map(|id| AccountLogin::new(id.clone(), "acme", response("at", "rt", now, 60)))
        .collect();
    a.put_accounts(logins, now).await.unwrap();
    let [alpha, beta, delta, epsilon, gamma] = &ids;

    let claimed_at = Instant::now();
    let mut claims = a
        .claim_due(10, now + SignedDuration::from_hours(1))
        .await
        .unwrap();
    claims.sort_by(|x, y| x.key.cmp(&y.key));
    let keys: Vec<_> = claims.iter().map(|c| c.key.clone()).collect();
    assert_eq!(keys, ids.to_vec());
    assert!(
        b.claim_due(10, now + SignedDuration::from_hours(1))
            .await
            .unwrap()
            .is_empty()
    );
    for id in &ids {
        assert!(
            b.try_lock(id).await.unwrap().is_none(),
            "{id}: claimed by a"
        );
    }
    assert!(
        a.wait_for_release(alpha, Duration::ZERO).await.unwrap(),
        "a's own claim: take it up"
    );

    let guard = a.try_lock(alpha).await.unwrap().expect("taken up");
    let loaded = a.load(alpha).await.unwrap().unwrap();
    assert_eq!(loaded.generation, claims[0].generation);
    let written = a
        .write(&guard, Some(loaded.generation), &record("at-alpha"))
        .await
        .unwrap();
    assert_eq!(written, loaded.generation + 1);
    a.release_claim(&claims[0]).await.unwrap();
    assert!(
        b.try_lock(alpha).await.unwrap().is_none(),
        "the guard holds it"
    );
    drop(guard);
    assert!(
        b.wait_for_release(alpha, Duration::from_secs(10))
            .await
            .unwrap()
    );

    a.release_claim(&claims[1]).await.unwrap();
    assert!(b.try_lock(beta).await.unwrap().is_some(), "let go");

    refuse_releases(&url, true).await;
    let refused = a.release_claim(&claims[3]).await;
    refuse_releases(&url, false).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        b.try_lock(epsilon).await.unwrap().is_none(),
        "left to run out"
    );
    a.release_claim(&claims[3]).await.unwrap();
    // What follows relies on the above taking less than a third of the
    // lease's lifetime.
    assert!(claimed_at.elapsed() < TTL / 3, "{:?}", claimed_at.elapsed());

    tokio::time::sleep((TTL / 3).saturating_sub(claimed_at.elapsed()) + SHORT).await;
    let late = a.try_lock(gamma).await.unwrap().expect("taken afresh");
    let loaded = a.load(gamma).await.unwrap().unwrap();
    a.write(&late, Some(loaded.generation), &record("at-gamma"))
        .await
        .unwrap();
    assert!(b.try_lock(gamma).await.unwrap().is_none());
    // Its claim is gone with the lease it took: releasing it changes nothing.
    a.release_claim(&claims[4]).await.unwrap();
    assert!(
        b.try_lock(gamma).await.unwrap().is_none(),
        "still a's guard's"
    );

    // A claim too old to take up whose release is refused: an error, and
    // the lease is left to run out.
    refuse_releases(&url, true).await;
    let refused = a.try_lock(delta).await;
    refuse_releases(&url, false).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(a.try_lock(delta).await.unwrap().is_none(), "still leased");
}

/// Makes the database refuse (or accept again) every release of a lease,
/// behind the stores' backs.
async fn refuse_releases(url: &str, refuse: bool) {
    let statements: &[&str] = match (url.starts_with("sqlite:"), refuse) {
        (true, true) => &[
            "CREATE TRIGGER refuse_release BEFORE UPDATE ON authkeep_accounts \
            WHEN OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL \
            BEGIN SELECT RAISE(ABORT, 'releases are refused'); END",
        ],
        (true, false) => &["DROP TRIGGER refuse_release"],
        (false, true) => &[
            "CREATE FUNCTION refuse_release() RETURNS trigger LANGUAGE plpgsql \
            AS $$ BEGIN RAISE EXCEPTION 'releases are refused'; END $$",
            "CREATE TRIGGER refuse_release BEFORE UPDATE ON authkeep_accounts FOR EACH ROW \
            WHEN (OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL) \
            EXECUTE FUNCTION refuse_release()",
        ],
        (false, false) => &[
            "DROP TRIGGER refuse_release ON authkeep_accounts",
            "DROP FUNCTION refuse_release()",
        ],
    };
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        for statement in statements {
            sqlx::query(*statement).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        for statement in statements {
            sqlx::query(*statement).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_claims_lease_their_accounts() {
    let dir = tempfile::tempdir().unwrap();
    a_claim_leases_its_accounts(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_lease_their_accounts() {
    a_claim_leases_its_accounts(postgres_url().await).await;
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
