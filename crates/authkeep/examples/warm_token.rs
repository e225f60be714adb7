//! `Keeper::token` on a warm token (valid and outside its refresh window) in a
//! file store: each call's time, over many calls after a warm-up; prints the
//! median and the 99th percentile. The same call as the Node.js package's
//! `bindings/node/bench/token-latency.js`, without the JavaScript crossing.
//! No network: the session is imported with a long lifetime.
//!
//! `cargo run --release -p authkeep --example warm_token [CALLS]`

// An example prints its result.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use authkeep::{Client, Demand, FileStore, Keeper, SessionKey, TokenResponse};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = match std::env::args().nth(1) {
        Some(text) => text.parse()?,
        None => 20_000,
    };
    let dir = tempfile::tempdir()?;
    let keeper = Keeper::builder(FileStore::new(dir.path().join("sessions"))).build();
    let key = SessionKey::new("bench")?;
    let fields = serde_json::json!({
        "access_token": "warm-token",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "r",
    });
    let serde_json::Value::Object(fields) = fields else {
        return Err("a JSON object".into());
    };
    let client = Client::new("https://idp.example", "bench");
    keeper
        .import_login(&key, client, TokenResponse::from_fields(&fields))
        .await?;
    for _ in 0..1000 {
        keeper.token(&key, Demand::new()).await?;
    }
    let mut micros = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let token = keeper.token(&key, Demand::new()).await?;
        micros.push(start.elapsed().as_secs_f64() * 1e6);
        assert!(!token.refreshed, "a warm token is never refreshed");
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| {
        // `calls` is at least one here, or the loop above found nothing to sort.
        let index = ((q * calls as f64) as usize).min(calls.saturating_sub(1));
        micros.get(index).copied().unwrap_or(0.0)
    };
    println!(
        "Keeper::token from Rust, warm, file store: {calls} calls, median {:.1} µs, p99 {:.1} µs",
        at(0.5),
        at(0.99)
    );
    Ok(())
}
