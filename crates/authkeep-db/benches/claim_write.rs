//! A quick figure for the agent's loop on SQLite: store 10,000 logins in
//! batches, then claim every due account and write each back under its lease
//! as a refresh would (lease, load, write, release), from 8 tasks at once.
//! `cargo bench -p authkeep-db --bench claim_write`; results on stderr.

use std::sync::Arc;
use std::time::Instant;

use authkeep::store::{Store as _, StoreKey};
use authkeep::{Client, SessionKey, TokenResponse};
use authkeep_db::{AccountLogin, DbStore, NewClient};
use jiff::{SignedDuration, Timestamp};

const ACCOUNTS: usize = 10_000;
const WORKERS: usize = 8;

fn response(i: usize, now: Timestamp) -> TokenResponse {
    let mut fields = serde_json::Map::new();
    fields.insert(
        "access_token".into(),
        format!("access-token-{i:08}-{}", "x".repeat(600)).into(),
    );
    fields.insert(
        "refresh_token".into(),
        format!("refresh-token-{i:08}").into(),
    );
    let mut response = TokenResponse::from_fields(&fields);
    // Due now: a minute left.
    response.expires_at = Some(now + SignedDuration::from_secs(60));
    response.issued_at = Some(now - SignedDuration::from_secs(3540));
    response
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite:{}", dir.path().join("bench.db").display());
    let store = DbStore::open(&url, StoreKey::generate().expect("a key"))
        .await
        .expect("the store");
    store
        .add_client(NewClient::new(
            "bench",
            Client::new("https://idp.example", "bench"),
        ))
        .await
        .expect("a client");
    let now = Timestamp::now();
    let logins: Vec<_> = (0..ACCOUNTS)
        .map(|i| {
            let key = SessionKey::account(&format!("user-{i:06}@example.com")).expect("an id");
            AccountLogin::new(key, "bench", response(i, now))
        })
        .collect();
    let started = Instant::now();
    store.put_accounts(logins, now).await.expect("imported");
    let import = started.elapsed();
    eprintln!(
        "import: {ACCOUNTS} logins in {:.2} s ({:.0}/s)",
        import.as_secs_f64(),
        ACCOUNTS as f64 / import.as_secs_f64()
    );

    let later = now + SignedDuration::from_secs(120);
    let started = Instant::now();
    let store = Arc::new(store);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut done = 0usize;
                loop {
                    let claims = store.claim_due(50, later).await.expect("claimed");
                    if claims.is_empty() {
                        return done;
                    }
                    for claim in claims {
                        let guard = store
                            .try_lock(&claim.key)
                            .await
                            .expect("leased")
                            .expect("free");
                        let mut current =
                            store.load(&claim.key).await.expect("read").expect("there");
                        if let Some(tokens) = current.record.tokens.as_mut() {
                            tokens.expires_at = Some(later + SignedDuration::from_hours(1));
                        }
                        store
                            .write(&guard, Some(current.generation), &current.record)
                            .await
                            .expect("written");
                        done += 1;
                    }
                }
            })
        })
        .collect();
    let mut done = 0;
    for worker in workers {
        done += worker.await.expect("a worker");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "claim + lease + load + write: {done} accounts in {:.2} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );
}
