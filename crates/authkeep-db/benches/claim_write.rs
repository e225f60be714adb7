//! A quick figure for the agent's loop: store 10,000 logins in batches, then
//! claim every due account and write each back under its lease as a refresh
//! would (lease, load, write, release), from 8 tasks at once, on a runtime of
//! two threads. SQLite always; PostgreSQL too when `AUTHKEEP_TEST_POSTGRES_URL`
//! names a server, which should sync as a real one does:
//!
//! ```text
//! cargo bench -p authkeep-db --bench claim_write
//! PG_FSYNC=on scripts/with-postgres.sh cargo bench -p authkeep-db --bench claim_write
//! ```
//!
//! `AUTHKEEP_BENCH_WRITER_LANES=N` sets `DbOptions::writer_lanes` (0: no
//! group commit), `AUTHKEEP_BENCH_CONNECTIONS=N` `DbOptions::max_connections`,
//! `AUTHKEEP_BENCH_WORKERS=N` the number of tasks (8).
//! Results on stderr.

use std::sync::Arc;
use std::time::Instant;

use authkeep::store::{Store as _, StoreKey};
use authkeep::{Client, SessionKey, TokenResponse};
use authkeep_db::{AccountLogin, DbOptions, DbStore, NewClient};
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
    let sqlite = format!("sqlite:{}", dir.path().join("bench.db").display());
    bench("sqlite", &sqlite).await;
    if let Ok(url) = std::env::var("AUTHKEEP_TEST_POSTGRES_URL") {
        bench("postgres", &url).await;
    }
}

async fn bench(name: &str, url: &str) {
    let mut options = DbOptions::default();
    if let Ok(lanes) = std::env::var("AUTHKEEP_BENCH_WRITER_LANES") {
        options = options.writer_lanes(lanes.parse().expect("a number of lanes"));
    }
    if let Ok(max) = std::env::var("AUTHKEEP_BENCH_CONNECTIONS") {
        options = options.max_connections(max.parse().expect("a number of connections"));
    }
    let store = DbStore::open_with(url, StoreKey::generate().expect("a key"), options)
        .await
        .expect("the store");
    store
        .add_client(
            NewClient::new("bench", Client::new("https://idp.example", "bench")).replacing(),
        )
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
        "{name} import: {ACCOUNTS} logins in {:.2} s ({:.0}/s)",
        import.as_secs_f64(),
        ACCOUNTS as f64 / import.as_secs_f64()
    );

    let later = now + SignedDuration::from_secs(120);
    let started = Instant::now();
    let store = Arc::new(store);
    let workers = std::env::var("AUTHKEEP_BENCH_WORKERS")
        .map_or(WORKERS, |n| n.parse().expect("a number of tasks"));
    let workers: Vec<_> = (0..workers)
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
        "{name} claim + lease + load + write + release: {done} accounts in {:.2} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );
}
