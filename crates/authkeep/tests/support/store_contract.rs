//! The store contract, shared by every backend's tests: this crate's
//! (tests/store_contract.rs) and the database stores' (crates/authkeep-db),
//! which include this file with `#[path]`.

use std::sync::Arc;
use std::time::Duration;

use authkeep::store::Store;
use authkeep::{
    AccessToken, Client, ExpirySource, Origin, Record, RefreshToken, SessionKey, StoreError,
    TokenSet,
};
use jiff::Timestamp;
pub fn key(name: &str) -> SessionKey {
    SessionKey::new(name).unwrap()
}

pub fn record(access: &str, refresh: &str) -> Record {
    let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
    Record {
        client: Some(Client::new("https://idp.example", "cli")),
        tokens: Some(TokenSet {
            access_token: AccessToken::new(access),
            token_type: "Bearer".into(),
            refresh_token: Some(RefreshToken::new(refresh)),
            scope: Some("openid".into()),
            id_token: None,
            expires_at: Some(now + jiff::SignedDuration::from_secs(3600)),
            issued_at: Some(now),
            refresh_expires_at: None,
            expiry_source: ExpirySource::ExpiresIn,
            obtained_at: now,
            origin: Origin::Refresh,
        }),
        ..Record::default()
    }
}

pub const WAIT: Duration = Duration::from_secs(5);

pub async fn contract<S: Store>(store: S) {
    let a = key("alpha");
    assert_eq!(store.load(&a).await.unwrap(), None);
    assert!(store.list().await.unwrap().is_empty());

    // Create: expected None → generation 1, read back exactly.
    let guard = store.lock(&a, WAIT, || {}).await.unwrap();
    let first = record("at-1", "rt-1");
    assert_eq!(store.write(&guard, None, &first).await.unwrap(), 1);
    let loaded = store.load(&a).await.unwrap().unwrap();
    assert_eq!(loaded.generation, 1);
    assert_eq!(loaded.record, first);

    // Compare-and-swap: a stale generation is refused and changes nothing.
    let second = record("at-2", "rt-2");
    assert!(matches!(
        store.write(&guard, None, &second).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.write(&guard, Some(7), &second).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.load(&a).await.unwrap().unwrap().record, first);
    assert_eq!(store.write(&guard, Some(1), &second).await.unwrap(), 2);
    assert_eq!(store.load(&a).await.unwrap().unwrap().record, second);

    // Compare-and-delete.
    assert!(matches!(
        store.remove(&guard, 1).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.load(&a).await.unwrap().is_some());
    drop(guard);

    // The lock is exclusive and its wait is bounded; waiting is reported once.
    let held = store.lock(&a, WAIT, || {}).await.unwrap();
    let mut told = 0;
    let timed_out = store
        .lock(&a, Duration::from_millis(50), || told += 1)
        .await;
    assert!(
        matches!(timed_out, Err(StoreError::LockTimeout { .. })),
        "{timed_out:?}"
    );
    assert_eq!(told, 1);
    // Another session is not blocked by it.
    let b = key("beta");
    let other = store
        .lock(&b, Duration::from_millis(50), || {})
        .await
        .unwrap();
    store.write(&other, None, &record("b", "rb")).await.unwrap();
    drop(other);
    assert_eq!(store.list().await.unwrap(), vec![a.clone(), b.clone()]);

    store.remove(&held, 2).await.unwrap();
    assert_eq!(store.load(&a).await.unwrap(), None);
    assert_eq!(store.list().await.unwrap(), vec![b]);
    // A new session after a removal continues the generation, so that a writer
    // holding generation 2 from before cannot overwrite it.
    assert!(matches!(
        store.write(&held, Some(2), &first).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.write(&held, None, &first).await.unwrap(), 3);
    assert_eq!(store.load(&a).await.unwrap().unwrap().generation, 3);
    drop(held);

    // What is known of an issuer is kept apart from the sessions.
    let issuer = "https://idp.example";
    assert_eq!(store.issuer_skew(issuer).await.unwrap(), None);
    store.set_issuer_skew(issuer, Some(300)).await.unwrap();
    assert_eq!(store.issuer_skew(issuer).await.unwrap(), Some(300));
    assert_eq!(
        store.issuer_skew("https://other.example").await.unwrap(),
        None
    );
    store.set_issuer_skew(issuer, None).await.unwrap();
    assert_eq!(store.issuer_skew(issuer).await.unwrap(), None);
    assert_eq!(store.list().await.unwrap().len(), 2, "no session was added");
}

/// A locker waiting for a held lock gets it once the holder lets go.
pub async fn a_waiting_locker_gets_the_lock<S: Store>(store: Arc<S>) {
    let a = key("alpha");
    let held = store.lock(&a, WAIT, || {}).await.unwrap();
    let waiter = {
        let store = store.clone();
        let a = a.clone();
        tokio::spawn(async move { store.lock(&a, WAIT, || {}).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiter.is_finished());
    drop(held);
    waiter.await.unwrap().unwrap();
}
