//! A desktop app that shows whether its user is logged in. It follows the
//! keeper's token changes (login, refresh, end, logout) rather than polling,
//! and keeps showing "logged in" through a provider outage while the token is
//! still valid.
//!
//! Runs against the development identity provider, started in-process:
//! `cargo run -p authkeep --example desktop_app`.

// An example shows what happens on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use authkeep::{ChangeKind, Client, Demand, Event, Keeper, MemoryStore, SessionKey, TokenResponse};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, FaultKind, Faults, SessionRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idp = DevIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), Config::default()).await?;

    // The window's title bar: what the UI shows.
    let shown = Arc::new(Mutex::new(String::from("logged out")));
    let ui = shown.clone();
    let keeper = Keeper::builder(MemoryStore::new())
        .on_token_change(move |change| {
            let text = match change.kind {
                ChangeKind::LoggedIn | ChangeKind::Refreshed => "logged in",
                ChangeKind::Ended => "session ended: please log in again",
                ChangeKind::LoggedOut => "logged out",
                _ => "changed",
            };
            println!("ui: {text} ({:?})", change.kind);
            *ui.lock().unwrap_or_else(|p| p.into_inner()) = text.to_owned();
        })
        .on_event(|event| {
            if let Event::RefreshFailed { class, .. } = event {
                println!("ui: (refresh failed: {class}; the session is kept)");
            }
        })
        .build();
    let key = SessionKey::new("me")?;

    let login = idp.create_session(&SessionRequest::default());
    let refresh = login["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let client = Client::new(idp.issuer(), DEFAULT_CLIENT_ID);
    let response = TokenResponse::from_fields(login.as_object().ok_or("not an object")?);
    keeper.save_login(&key, client, response).await?;
    assert_eq!(
        *shown.lock().unwrap_or_else(|p| p.into_inner()),
        "logged in"
    );

    // The API rejects the token while the provider is down: refreshing fails
    // for now, and the user stays logged in (a retryable error, not a logout).
    let token = keeper.token(&key, Demand::new()).await?.access_token;
    idp.set_faults(Faults {
        kind: Some(FaultKind::Status {
            status: 503,
            retry_after: None,
            body: None,
        }),
        ..Faults::default()
    });
    let outage = keeper.token_after_rejection(&key, &token).await;
    assert!(outage.is_err_and(|e| e.is_transient()));
    assert_eq!(
        *shown.lock().unwrap_or_else(|p| p.into_inner()),
        "logged in"
    );
    idp.set_faults(Faults::default());

    // An administrator revokes the grant: the next refresh ends the session.
    idp.revoke_grant_of(&refresh);
    let ended = keeper.token_after_rejection(&key, &token).await;
    assert!(ended.is_err_and(|e| e.is_login_required()));
    assert_eq!(
        *shown.lock().unwrap_or_else(|p| p.into_inner()),
        "session ended: please log in again"
    );
    idp.shutdown().await;
    Ok(())
}
