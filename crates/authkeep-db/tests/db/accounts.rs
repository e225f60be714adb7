//! Clients shared by accounts, logins stored one at a time and in batches,
//! overviews and counts without secrets, and claims: several stores on one
//! database never claim an account twice.

use std::collections::HashSet;
use std::sync::Arc;

use authkeep::store::{Store, StoreKey};
use authkeep::{Client, ClientAuth, ClientSecret};
use authkeep_db::{
    AccountFilter, AccountLogin, AccountState, DbError, DbOptions, DbStore, NewClient,
};
use jiff::{SignedDuration, Timestamp};

use crate::harness::{account, postgres, postgres_url, response, sqlite, sqlite_url};

fn confidential(issuer: &str, secret: &str) -> Client {
    Client::new(issuer, "app")
        .with_secret(ClientSecret::new(secret), ClientAuth::ClientSecretBasic)
        .with_scope("openid offline_access")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_shared_and_guarded_and_accounts_are_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    let store = sqlite(dir.path(), &key, DbOptions::default()).await;
    let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
    store
        .add_client(NewClient::new(
            "acme",
            confidential("https://idp.example", "s1"),
        ))
        .await
        .unwrap();
    let again = store
        .add_client(NewClient::new(
            "acme",
            confidential("https://idp.example", "s2"),
        ))
        .await;
    assert!(matches!(again, Err(DbError::ClientExists(_))), "{again:?}");
    let unknown = store
        .put_account(&account("x"), "nobody", response("a", "r", now, 3600), now)
        .await;
    assert!(
        matches!(unknown, Err(DbError::UnknownClient(_))),
        "{unknown:?}"
    );

    let alice = account("alice@example.com");
    assert_eq!(
        store
            .put_account(&alice, "acme", response("at-a", "rt-a", now, 3600), now)
            .await
            .unwrap(),
        1
    );
    // A rotated secret reaches every account of the client.
    store
        .add_client(NewClient::new("acme", confidential("https://idp.example", "s3")).replacing())
        .await
        .unwrap();
    let loaded = store.load(&alice).await.unwrap().unwrap();
    let client = loaded.record.client.unwrap();
    assert_eq!(client.client_secret.unwrap().expose_secret(), "s3");
    assert_eq!(client.scope.as_deref(), Some("openid offline_access"));
    let moved = store
        .add_client(NewClient::new("acme", confidential("https://other.example", "s3")).replacing())
        .await;
    assert!(
        matches!(moved, Err(DbError::ClientInUse { .. })),
        "{moved:?}"
    );
    let removed = store.remove_client("acme").await;
    assert!(
        matches!(removed, Err(DbError::ClientInUse { accounts: 1, .. })),
        "{removed:?}"
    );
    let debug = format!("{:?}", store.clients().await.unwrap());
    assert!(debug.contains("acme") && !debug.contains("s3"), "{debug}");

    // A second login continues the generation and clears the health.
    assert_eq!(
        store
            .put_account(&alice, "acme", response("at-a2", "rt-a2", now, 3600), now)
            .await
            .unwrap(),
        2
    );
    let summary = store.account(&alice).await.unwrap().unwrap();
    assert_eq!(summary.state, AccountState::Active);
    assert_eq!(summary.client.as_deref(), Some("acme"));
    assert_eq!(
        summary.expires_at,
        Some(now + SignedDuration::from_hours(1))
    );
    assert_eq!(summary.last_success_at, Some(now));
    assert!(summary.due_at.unwrap() < now + SignedDuration::from_hours(1));
    assert!(!format!("{summary:?}").contains("at-a2"));

    let logins: Vec<_> = (0..1200)
        .map(|i| {
            let left = if i % 2 == 0 { 3600 } else { -10 };
            AccountLogin::new(
                account(&format!("u{i:04}")),
                "acme",
                response(&format!("a{i}"), "", now, left),
            )
        })
        .collect();
    let done = store.put_accounts(logins, now).await.unwrap();
    assert_eq!((done.written.len(), done.busy.len()), (1200, 0));
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.get(&AccountState::CannotRenew), Some(&600));
    assert_eq!(counts.get(&AccountState::NeedsLogin), Some(&600));
    assert_eq!(counts.get(&AccountState::Active), Some(&1));
    let page = store
        .accounts(
            &AccountFilter::all()
                .state(AccountState::NeedsLogin)
                .page(None, 10),
        )
        .await
        .unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!(page[0].key, account("u0001"));
    assert!(page.iter().all(|s| s.needs_login && s.due_at.is_none()));
    let next = store
        .accounts(
            &AccountFilter::all()
                .state(AccountState::NeedsLogin)
                .page(Some(page[9].key.clone()), 10),
        )
        .await
        .unwrap();
    assert_eq!(next[0].key, account("u0021"));

    assert!(store.remove_account(&alice).await.unwrap());
    assert!(!store.remove_account(&alice).await.unwrap());
    assert_eq!(store.load(&alice).await.unwrap(), None);
}

/// Two stores claim due accounts in turns and at once until none is left:
/// every due account is claimed exactly once, and none that is not due.
async fn claims_never_overlap(one: DbStore, two: DbStore) {
    let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
    one.add_client(NewClient::new(
        "acme",
        Client::new("https://idp.example", "app"),
    ))
    .await
    .unwrap();
    let logins: Vec<_> = (0..300)
        .map(|i| {
            // Two in three due (a minute left), the rest an hour away.
            let left = if i % 3 == 2 { 3600 } else { 60 };
            AccountLogin::new(
                account(&format!("acct-{i}")),
                "acme",
                response("at", "rt", now, left),
            )
        })
        .collect();
    one.put_accounts(logins, now).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let claim_all = |store: DbStore| {
        let start = Arc::clone(&start);
        tokio::spawn(async move {
            start.wait().await;
            let mut claimed = Vec::new();
            loop {
                let batch = store.claim_due(3, now).await.unwrap();
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(batch.into_iter().map(|c| c.key));
            }
        })
    };
    let (a, b) = (claim_all(one.clone()), claim_all(two.clone()));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let all: Vec<_> = a.iter().chain(&b).collect();
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every due account once");
    assert_eq!(unique.len(), 200, "never twice");
    assert!(!a.is_empty() && !b.is_empty(), "both stores took part");
    assert!(one.claim_due(100, now).await.unwrap().is_empty());
    // Claimed accounts are not "next": the next is an hour away, less the window.
    let next = two.next_due().await.unwrap().unwrap();
    assert!(next > now + SignedDuration::from_mins(50), "{next}");
    let later = now + SignedDuration::from_hours(2);
    let due_later = one.claim_due(1000, later).await.unwrap();
    assert_eq!(due_later.len(), 100, "only the unclaimed ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_claims_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    let one = sqlite(dir.path(), &key, DbOptions::default()).await;
    let two = DbStore::open(&sqlite_url(dir.path()), key).await.unwrap();
    claims_never_overlap(one, two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_never_overlap() {
    let url = postgres_url().await;
    let key = StoreKey::generate().unwrap();
    let one = postgres(&url, &key, DbOptions::default()).await;
    let two = postgres(&url, &key, DbOptions::default()).await;
    claims_never_overlap(one, two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_waits_for_a_refresh_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    let store = sqlite(dir.path(), &key, DbOptions::default()).await;
    let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
    store
        .add_client(NewClient::new(
            "acme",
            Client::new("https://idp.example", "app"),
        ))
        .await
        .unwrap();
    let id = account("bob");
    store
        .put_account(&id, "acme", response("a1", "r1", now, 3600), now)
        .await
        .unwrap();
    let guard = store.lock(&id, crate::suite::WAIT, || {}).await.unwrap();
    let busy = store
        .put_accounts(
            vec![AccountLogin::new(
                id.clone(),
                "acme",
                response("a2", "r2", now, 3600),
            )],
            now,
        )
        .await
        .unwrap();
    assert_eq!(busy.busy, vec![id.clone()], "held: left as it was");
    let waiting = {
        let store = store.clone();
        let id = id.clone();
        tokio::spawn(async move {
            store
                .put_account(&id, "acme", response("a3", "r3", now, 3600), now)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "it waits for the lease");
    drop(guard);
    assert_eq!(waiting.await.unwrap().unwrap(), 2);
}
