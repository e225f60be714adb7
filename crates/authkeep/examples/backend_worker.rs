//! A backend worker that acts for many accounts: one keeper over one store,
//! a task per account, every task asking for its account's token whenever it
//! works. Tasks of one account share one refresh; accounts do not wait for
//! each other.
//!
//! Runs against the development identity provider, started in-process:
//! `cargo run -p authkeep --example backend_worker`.

// An example shows what happens on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::time::Duration;

use authkeep::{Client, Demand, FileStore, Keeper, Policy, SessionKey, TokenResponse};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, SessionRequest};
use jiff::SignedDuration;

const ACCOUNTS: usize = 20;
const TASKS_PER_ACCOUNT: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Tokens that live 4 seconds, refreshed in their last 2.
    let config = Config {
        access_ttl: Duration::from_secs(4),
        ..Config::default()
    };
    let idp = DevIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await?;
    let dir = tempfile::tempdir()?;
    let keeper = Keeper::builder(FileStore::new(dir.path()))
        .policy(Policy::default().with_threshold(SignedDuration::from_secs(2)))
        .build();

    let mut keys = Vec::new();
    for n in 0..ACCOUNTS {
        let key = SessionKey::new(&format!("account-{n}"))?;
        let login = idp.create_session(&SessionRequest {
            user: format!("user-{n}"),
            ..SessionRequest::default()
        });
        let response = TokenResponse::from_fields(login.as_object().ok_or("not an object")?);
        keeper
            .save_login(&key, Client::new(idp.issuer(), DEFAULT_CLIENT_ID), response)
            .await?;
        keys.push(key);
    }

    // Three rounds of work, the last two with every token inside its window.
    for round in 0..3 {
        let mut tasks = tokio::task::JoinSet::new();
        for key in &keys {
            for _ in 0..TASKS_PER_ACCOUNT {
                let (keeper, key) = (keeper.clone(), key.clone());
                tasks.spawn(async move { keeper.token(&key, Demand::new()).await });
            }
        }
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        let refreshes = idp.counters().token_requests_for("refresh_token");
        println!(
            "round {round}: {} token calls, refresh requests so far: {refreshes}",
            ACCOUNTS * TASKS_PER_ACCOUNT
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
    }
    // Each account was refreshed once per round that found it in its window,
    // however many tasks asked.
    let refreshes = idp.counters().token_requests_for("refresh_token");
    assert!(refreshes <= (2 * ACCOUNTS) as u64, "{refreshes}");
    assert!(refreshes >= ACCOUNTS as u64, "{refreshes}");
    idp.shutdown().await;
    Ok(())
}
