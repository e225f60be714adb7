//! A command-line tool that calls an API for its user: one session in a file
//! store, a token whenever a command needs one. The warm path makes no request;
//! a token the API rejects is refreshed once, the rotated refresh token saved
//! before the new access token is used, and a second caller that saw the same
//! rejection gets the new token without another refresh.
//!
//! Runs against the development identity provider, started in-process:
//! `cargo run -p authkeep --example cli_tool`.

// An example shows what happens on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;

use authkeep::{Client, Demand, FileStore, Keeper, SessionKey, TokenResponse};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, SessionRequest};
use jiff::Timestamp;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idp = DevIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), Config::default()).await?;
    let dir = tempfile::tempdir()?;

    // What a tool would keep in its own state directory.
    let keeper = Keeper::builder(FileStore::new(dir.path().join("sessions"))).build();
    let key = SessionKey::new("default")?;

    // After the user logged in (here: a session the provider creates directly).
    let login = idp.create_session(&SessionRequest::default());
    let response = TokenResponse::from_fields(login.as_object().ok_or("not an object")?);
    let client = Client::new(idp.issuer(), DEFAULT_CLIENT_ID);
    keeper.save_login(&key, client, response).await?;

    // Every command asks for a token: while it is valid and outside its
    // refresh window, that is a file read and no request.
    for _ in 0..3 {
        let token = keeper.token(&key, Demand::new()).await?;
        println!(
            "token valid until {:?}, refreshed: {}",
            token.expires_at, token.refreshed
        );
    }
    assert_eq!(idp.counters().token_requests_for("refresh_token"), 0);

    // The API rejects the token (a 401): one refresh replaces it...
    let rejected = keeper.token(&key, Demand::new()).await?.access_token;
    let fresh = keeper.token_after_rejection(&key, &rejected).await?;
    println!("after a 401: refreshed: {}", fresh.refreshed);
    // ...and a second command that saw the same 401 gets the new token at once.
    let again = keeper.token_after_rejection(&key, &rejected).await?;
    assert_eq!(again.access_token, fresh.access_token);
    assert!(again.expires_at.is_some_and(|at| at > Timestamp::now()));
    let refreshes = idp.counters().token_requests_for("refresh_token");
    println!("refresh requests: {refreshes}");
    assert_eq!(refreshes, 1);
    idp.shutdown().await;
    Ok(())
}
