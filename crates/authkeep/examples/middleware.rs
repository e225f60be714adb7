//! A program that calls an API through `reqwest` with the `Bearer` middleware
//! (feature `middleware`): every request to the API's origin carries the
//! session's token, and when the API rejects it (here: it was revoked), the
//! middleware renews it once and retries once. Requests to other origins never
//! see it.
//!
//! Runs against the development identity provider, whose `/userinfo` is the API:
//! `cargo run -p authkeep --features middleware --example middleware`.

// An example shows what happens on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;

use authkeep::middleware::Bearer;
use authkeep::{Client, Keeper, MemoryStore, SessionKey, TokenResponse};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, SessionRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idp = DevIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), Config::default()).await?;
    let issuer = idp.issuer();
    let keeper = Keeper::builder(MemoryStore::new()).build();
    let key = SessionKey::new("me")?;
    let login = idp.create_session(&SessionRequest::default());
    let first_token = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let response = TokenResponse::from_fields(login.as_object().ok_or("not an object")?);
    keeper
        .save_login(
            &key,
            Client::new(issuer.clone(), DEFAULT_CLIENT_ID),
            response,
        )
        .await?;

    // One client for the program; the middleware knows which origin gets the token.
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(Bearer::new(keeper.clone(), key.clone()).origin(&issuer)?)
        .build();
    let api = format!("{issuer}/userinfo");

    let answer = client.get(&api).send().await?;
    println!("GET /userinfo: {}", answer.status());
    assert!(answer.status().is_success());

    // The token is revoked behind the program's back: the API answers 401, the
    // middleware refreshes once and retries, and the program sees a 200.
    let revoked = reqwest::Client::new()
        .post(format!("{issuer}/revoke"))
        .form(&[
            ("token", first_token.as_str()),
            ("client_id", DEFAULT_CLIENT_ID),
        ])
        .send()
        .await?;
    assert!(revoked.status().is_success());
    let answer = client.get(&api).send().await?;
    println!(
        "GET /userinfo after the token was revoked: {} (refresh requests: {})",
        answer.status(),
        idp.counters().token_requests_for("refresh_token")
    );
    assert!(answer.status().is_success());
    assert_eq!(idp.counters().token_requests_for("refresh_token"), 1);
    idp.shutdown().await;
    Ok(())
}
