//! The encrypted file store from the outside: no secret reaches any file in
//! its directory, through a keeper's import and refresh; a wrong key or a
//! record copied to another session is refused and changes nothing; `rekey`
//! moves every record to a new key, and every record stays readable with the
//! old key or the new at each step of an interrupted one.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use authkeep::store::{Encrypting, FileStore, Rekeyed, StoreKey, rekey, rekey_with};
use authkeep::{
    AccessToken, Client, ClientAuth, ClientSecret, Demand, Error, ExpirySource, IdToken,
    ManualClock, Origin, Record, RefreshToken, SessionKey, Store as _, StoreError, TokenResponse,
    TokenSet,
};
use http::{Request, Response};
use jiff::Timestamp;

const ENDPOINT: &str = "https://idp.example/token";
const WAIT: Duration = Duration::from_secs(5);

fn key(name: &str) -> SessionKey {
    SessionKey::new(name).unwrap()
}

fn encrypted(dir: &Path, keys: &[&StoreKey]) -> FileStore {
    let (current, old) = keys.split_first().unwrap();
    let sealer = old
        .iter()
        .fold(Encrypting::new((*current).clone()), |s, k| {
            s.with_old_key((*k).clone())
        });
    FileStore::new(dir).with_sealer(Arc::new(sealer))
}

fn record(name: &str) -> Record {
    let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
    Record {
        client: Some(Client::new("https://idp.example", "cli").with_secret(
            ClientSecret::new(format!("client-secret-{name}")),
            ClientAuth::ClientSecretBasic,
        )),
        tokens: Some(TokenSet {
            access_token: AccessToken::new(format!("access-token-{name}")),
            token_type: "Bearer".into(),
            refresh_token: Some(RefreshToken::new(format!("refresh-token-{name}"))),
            scope: Some("openid".into()),
            id_token: Some(IdToken::new(format!("id-token-{name}"))),
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

async fn write(store: &FileStore, name: &str) {
    let k = key(name);
    let guard = store.lock(&k, WAIT, || {}).await.unwrap();
    let expected = store.load(&k).await.unwrap().map(|v| v.generation);
    store.write(&guard, expected, &record(name)).await.unwrap();
}

/// Every file under `dir`, however deep.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn assert_no_file_holds(dir: &Path, secrets: &[&str]) {
    let all = files(dir);
    assert!(!all.is_empty());
    for file in all {
        let bytes = std::fs::read(&file).unwrap();
        for secret in secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret} in {}", file.display());
        }
    }
}

#[tokio::test]
async fn no_secret_reaches_any_file_through_an_import_and_a_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let store_key = StoreKey::generate().unwrap();
    let store = encrypted(dir.path(), &[&store_key]);
    let clock = Arc::new(ManualClock::new("2026-06-01T12:00:00Z".parse().unwrap()));
    let keeper = authkeep::Keeper::builder(store)
        .clock(clock)
        .transport(|request: Request<Vec<u8>>| async move {
            assert_eq!(request.uri(), ENDPOINT);
            let body = r#"{"access_token":"access-token-two","refresh_token":"refresh-token-two",
                "id_token":"id-token-two","token_type":"Bearer","expires_in":3600}"#;
            Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(body.as_bytes().to_vec())
                .unwrap())
        })
        .build();
    let alice = key("alice");
    let response = TokenResponse::from_fields(
        serde_json::json!({
            "access_token": "access-token-one", "refresh_token": "refresh-token-one",
            "id_token": "id-token-one", "token_type": "Bearer", "expires_in": 3600,
        })
        .as_object()
        .unwrap(),
    );
    let client = Client::new("https://idp.example", "cli")
        .with_token_endpoint(ENDPOINT)
        .with_secret(
            ClientSecret::new("client-secret-value"),
            ClientAuth::ClientSecretBasic,
        );
    keeper.import_login(&alice, client, response).await.unwrap();
    let token = keeper.token(&alice, Demand::new()).await.unwrap();
    assert_eq!(token.access_token.expose_secret(), "access-token-one");
    assert_no_file_holds(
        dir.path(),
        &[
            "access-token-one",
            "refresh-token-one",
            "id-token-one",
            "client-secret-value",
        ],
    );

    let token = keeper.token(&alice, Demand::new().force()).await.unwrap();
    assert_eq!(token.access_token.expose_secret(), "access-token-two");
    let stored = keeper.store().load(&alice).await.unwrap().unwrap().record;
    let tokens = stored.tokens.unwrap();
    assert_eq!(
        tokens.refresh_token.unwrap().expose_secret(),
        "refresh-token-two"
    );
    assert_eq!(tokens.id_token.unwrap().expose_secret(), "id-token-two");
    assert_no_file_holds(
        dir.path(),
        &[
            "access-token-one",
            "refresh-token-one",
            "id-token-one",
            "access-token-two",
            "refresh-token-two",
            "id-token-two",
            "client-secret-value",
        ],
    );
    // What is not secret stays readable, and the record says how it is sealed.
    let text = std::fs::read_to_string(dir.path().join("alice.json")).unwrap();
    assert!(text.contains("https://idp.example"), "{text}");
    assert!(text.contains(store_key.id()), "{text}");
}

#[tokio::test]
async fn a_wrong_key_is_a_clear_error_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong) = (StoreKey::generate().unwrap(), StoreKey::generate().unwrap());
    write(&encrypted(dir.path(), &[&right]), "alice").await;
    let path = dir.path().join("alice.json");
    let before = std::fs::read(&path).unwrap();

    let keeper = authkeep::Keeper::builder(encrypted(dir.path(), &[&wrong])).build();
    let error = keeper
        .token(&key("alice"), Demand::new())
        .await
        .unwrap_err();
    let Error::Store(StoreError::Sealed { path: named, .. }) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(named, &path);
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "sealed with key {}, which is not the key given ({})",
            right.id(),
            wrong.id()
        )) && message.contains("left untouched"),
        "{message}"
    );
    assert!(keeper.logout(&key("alice")).await.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        encrypted(dir.path(), &[&right])
            .load(&key("alice"))
            .await
            .unwrap()
            .unwrap()
            .record,
        record("alice")
    );
}

#[tokio::test]
async fn a_record_copied_to_another_session_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let store_key = StoreKey::generate().unwrap();
    let store = encrypted(dir.path(), &[&store_key]);
    write(&store, "alice").await;
    std::fs::copy(
        dir.path().join("alice.json"),
        dir.path().join("mallory.json"),
    )
    .unwrap();
    let error = store.load(&key("mallory")).await.unwrap_err();
    assert!(matches!(error, StoreError::Sealed { .. }), "{error:?}");
    assert!(
        error.to_string().contains("do not decrypt with key")
            && error.to_string().contains("altered file"),
        "{error}"
    );
}

#[tokio::test]
async fn rekey_moves_every_record_to_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (StoreKey::generate().unwrap(), StoreKey::generate().unwrap());
    let names = ["alice", "bob", "carol"];
    for name in names {
        write(&encrypted(dir.path(), &[&old]), name).await;
    }

    let done = rekey(dir.path(), old.clone(), new.clone(), WAIT)
        .await
        .unwrap();
    assert_eq!(
        done,
        Rekeyed {
            resealed: 3,
            already: 0,
            other: 0
        }
    );
    let only_new = encrypted(dir.path(), &[&new]);
    let only_old = encrypted(dir.path(), &[&old]);
    for name in names {
        let loaded = only_new.load(&key(name)).await.unwrap().unwrap();
        assert_eq!(loaded.record, record(name));
        assert_eq!(loaded.generation, 2, "a rekey is a write like any other");
        assert!(matches!(
            only_old.load(&key(name)).await,
            Err(StoreError::Sealed { .. })
        ));
    }
    assert_no_file_holds(dir.path(), &["access-token-", "refresh-token-"]);

    // Running it again finds nothing to do.
    let again = rekey(dir.path(), old, new, WAIT).await.unwrap();
    assert_eq!(
        again,
        Rekeyed {
            resealed: 0,
            already: 3,
            other: 0
        }
    );
}

#[tokio::test]
async fn an_interrupted_rekey_leaves_every_record_readable_with_old_and_new() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (StoreKey::generate().unwrap(), StoreKey::generate().unwrap());
    let names = ["alice", "bob", "carol"];
    for name in names {
        write(&encrypted(dir.path(), &[&old]), name).await;
    }
    let both = encrypted(dir.path(), &[&new, &old]);
    let only_new = encrypted(dir.path(), &[&new]);
    let only_old = encrypted(dir.path(), &[&old]);

    // Stopped after the first session: at that step, every record opens with
    // both keys, the first with the new one only, the others with the old one.
    let mut seen = Vec::new();
    let done = rekey_with(dir.path(), old.clone(), new.clone(), WAIT, |k| {
        for name in names {
            let loaded = both.load_blocking(&key(name)).unwrap().unwrap();
            assert_eq!(loaded.record, record(name));
        }
        seen.push(k.to_string());
        ControlFlow::Break(())
    })
    .await
    .unwrap();
    assert_eq!(
        done,
        Rekeyed {
            resealed: 1,
            already: 0,
            other: 0
        }
    );
    assert_eq!(seen, ["alice"]);
    assert!(only_new.load_blocking(&key("alice")).unwrap().is_some());
    for name in ["bob", "carol"] {
        assert!(only_old.load_blocking(&key(name)).unwrap().is_some());
        assert!(matches!(
            only_new.load_blocking(&key(name)),
            Err(StoreError::Sealed { .. })
        ));
    }

    // Run again, it finishes the rest, checking at every step.
    let done = rekey_with(dir.path(), old, new, WAIT, |_| {
        for name in names {
            assert!(both.load_blocking(&key(name)).unwrap().is_some());
        }
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(
        done,
        Rekeyed {
            resealed: 2,
            already: 1,
            other: 0
        }
    );
    for name in names {
        assert_eq!(
            only_new.load_blocking(&key(name)).unwrap().unwrap().record,
            record(name)
        );
    }
}

#[tokio::test]
async fn rekey_leaves_plain_records_and_stops_at_one_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, stranger) = (
        StoreKey::generate().unwrap(),
        StoreKey::generate().unwrap(),
        StoreKey::generate().unwrap(),
    );
    write(&FileStore::new(dir.path()), "alice").await;
    write(&encrypted(dir.path(), &[&stranger]), "bob").await;
    write(&encrypted(dir.path(), &[&old]), "carol").await;
    let bob = dir.path().join("bob.json");
    let before = std::fs::read(&bob).unwrap();

    let error = rekey(dir.path(), old.clone(), new.clone(), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Sealed { .. }), "{error:?}");
    assert!(error.to_string().contains(stranger.id()), "{error}");
    assert_eq!(std::fs::read(&bob).unwrap(), before);
    // The plain record listed before it is left as it was.
    let only_new = encrypted(dir.path(), &[&new]);
    assert_eq!(
        only_new.load(&key("alice")).await.unwrap().unwrap().record,
        record("alice")
    );
    let plain = FileStore::new(dir.path());
    assert_eq!(plain.sealed_kind_blocking(&key("alice")).unwrap(), None);

    // Once the record no key at hand opens is gone, running it again moves
    // the rest and counts what was moved before.
    std::fs::remove_file(&bob).unwrap();
    let done = rekey(dir.path(), old, new.clone(), WAIT).await.unwrap();
    assert_eq!(
        done,
        Rekeyed {
            resealed: 1,
            already: 0,
            other: 1
        }
    );
    assert!(only_new.load(&key("carol")).await.unwrap().is_some());
}
