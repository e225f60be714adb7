//! A keeper on database stores against the development identity provider:
//! sixteen tasks, each with a store of its own (its own owner and pool) on
//! one SQLite file, ask for a due token at once; the provider sees one
//! refresh, the rotated refresh token is stored, and no token is in the
//! database's files in plain text.

use std::net::SocketAddr;
use std::sync::Arc;

use authkeep::store::StoreKey;
use authkeep::{Client, Demand, Keeper, Store as _, TokenResponse};
use authkeep_db::{DbOptions, DbStore, NewClient};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, SessionRequest};
use jiff::{SignedDuration, Timestamp};

use crate::harness::{account, sqlite, sqlite_url};

const TASKS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_stores_cause_one_refresh_and_keep_tokens_sealed() {
    let idp = DevIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), Config::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    let first = sqlite(dir.path(), &key, DbOptions::default()).await;
    first
        .add_client(NewClient::new(
            "dev",
            Client::new(idp.issuer(), DEFAULT_CLIENT_ID),
        ))
        .await
        .unwrap();
    let session = idp.create_session(&SessionRequest::default());
    let old_access = session["access_token"].as_str().unwrap().to_owned();
    let old_refresh = session["refresh_token"].as_str().unwrap().to_owned();
    let mut response = TokenResponse::from_fields(session.as_object().unwrap());
    let now = Timestamp::now();
    // 100 s of an hour left: inside the refresh window.
    response.expires_in = None;
    response.expires_at = Some(now + SignedDuration::from_secs(100));
    response.issued_at = Some(now - SignedDuration::from_secs(3500));
    let id = account("alice@example.com");
    first.put_account(&id, "dev", response, now).await.unwrap();

    let mut keepers = Vec::new();
    for _ in 0..TASKS {
        let store = DbStore::open(&sqlite_url(dir.path()), key.clone())
            .await
            .unwrap();
        keepers.push(Keeper::builder(store).build());
    }
    let owners: std::collections::HashSet<_> = keepers
        .iter()
        .map(|k| k.store().owner().to_owned())
        .collect();
    assert_eq!(owners.len(), TASKS, "each store is an owner of its own");
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = keepers
        .into_iter()
        .map(|keeper| {
            let (barrier, id) = (Arc::clone(&barrier), id.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                keeper.token(&id, Demand::default()).await
            })
        })
        .collect();
    let mut served = Vec::new();
    for task in tasks {
        served.push(task.await.unwrap().unwrap());
    }
    let counters = idp.counters();
    assert_eq!(counters.token_requests_for("refresh_token"), 1);
    assert_eq!(counters.outcome("refresh_token", "ok"), 1);
    let token = &served[0].access_token;
    assert!(
        served.iter().all(|t| t.access_token == *token),
        "one token for all"
    );
    assert_ne!(token.expose_secret(), old_access);
    assert!(idp.is_active(token.expose_secret()));

    let stored = first.load(&id).await.unwrap().unwrap();
    let tokens = stored.record.tokens.unwrap();
    let new_refresh = tokens.refresh_token.unwrap().expose_secret().to_owned();
    assert_ne!(new_refresh, old_refresh, "rotated and stored");
    assert!(idp.is_active(&new_refresh));
    assert_eq!(stored.generation, 2);
    let client = stored.record.client.unwrap();
    assert_eq!(
        client.client_id, DEFAULT_CLIENT_ID,
        "filled from the client row"
    );
    let summary = first.account(&id).await.unwrap().unwrap();
    assert_eq!(summary.client.as_deref(), Some("dev"), "still bound");
    assert!(summary.due_at > Some(Timestamp::now()), "due again later");

    first.close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("state")).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for secret in [
        &old_access,
        &old_refresh,
        token.expose_secret(),
        &new_refresh,
    ] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a token is in the database files in plain text"
        );
    }
}
