//! Bad input: URLs of no known database, a corrupt or altered record, the
//! wrong key, a schema newer than this build, a database file others may
//! read. Each is a clear error, changes nothing, and never panics.

use authkeep::StoreError;
use authkeep::store::{Store, StoreKey};
use authkeep_db::{DbError, DbOptions, DbStore};
use sqlx::Connection as _;

use crate::harness::{account, sqlite, sqlite_url};

#[tokio::test]
async fn unknown_or_malformed_urls_are_refused_without_repeating_them() {
    let key = StoreKey::generate().unwrap();
    for url in ["mysql://root:hunter2@db/x", "hunter2", "", "file:/tmp/x.db"] {
        let error = DbStore::open(url, key.clone()).await.unwrap_err();
        assert!(matches!(error, DbError::UnsupportedUrl { .. }), "{error:?}");
        assert!(
            !error.to_string().contains("hunter2") || url == "hunter2",
            "{error}"
        );
        assert!(error.to_string().contains("sqlite:PATH"), "{error}");
    }
    for url in ["sqlite:", "sqlite::memory:", "sqlite:/tmp/x.db?mode=rwc"] {
        let error = DbStore::open(url, key.clone()).await.unwrap_err();
        assert!(matches!(error, DbError::InvalidUrl(_)), "{url}: {error:?}");
    }
    let error = DbStore::open("postgres://u:hunter2@[::1:5432/x", key.clone())
        .await
        .unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

async fn raw(dir: &std::path::Path) -> sqlx::SqliteConnection {
    let path = dir.join("state").join("authkeep.db");
    sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap()
}

async fn stored_record(conn: &mut sqlx::SqliteConnection, id: &str) -> String {
    sqlx::query_scalar("SELECT record FROM authkeep_accounts WHERE id = $1")
        .bind(id)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_or_the_wrong_key_is_an_error_that_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    let store = sqlite(dir.path(), &key, DbOptions::default()).await;
    let id = account("carol");
    let guard = store.lock(&id, crate::suite::WAIT, || {}).await.unwrap();
    let record = crate::suite::record("at-secret-1", "rt-secret-1");
    store.write(&guard, None, &record).await.unwrap();
    drop(guard);
    let mut conn = raw(dir.path()).await;
    let original = stored_record(&mut conn, "carol").await;
    assert!(!original.contains("secret-1"), "sealed");

    // The wrong key.
    let other = DbStore::open(&sqlite_url(dir.path()), StoreKey::generate().unwrap())
        .await
        .unwrap();
    let error = other.session(&id).await.unwrap_err();
    assert!(matches!(error, DbError::Sealed { .. }), "{error:?}");
    assert!(error.to_string().contains(key.id()), "{error}");
    let via_contract = other.load(&id).await.unwrap_err();
    assert!(
        matches!(via_contract, StoreError::Database(_)),
        "{via_contract:?}"
    );

    // Sealed secrets copied to another account do not open there.
    sqlx::query("INSERT INTO authkeep_accounts (id, generation, record) VALUES ('mallory', 1, $1)")
        .bind(&original)
        .execute(&mut conn)
        .await
        .unwrap();
    let error = store.session(&account("mallory")).await.unwrap_err();
    assert!(matches!(error, DbError::Sealed { .. }), "{error:?}");

    // Corrupt and altered records.
    for (bad, expected) in [
        ("{not json", "corrupt"),
        ("[1]", "corrupt"),
        ("{\"version\":9}", "format version 9"),
        (
            &original.replace("\"ciphertext\":\"", "\"ciphertext\":\"AA"),
            "cannot open",
        ),
    ] {
        sqlx::query("UPDATE authkeep_accounts SET record = $1 WHERE id = 'carol'")
            .bind(bad)
            .execute(&mut conn)
            .await
            .unwrap();
        let error = store.session(&id).await.unwrap_err();
        assert!(error.to_string().contains(expected), "{expected}: {error}");
        assert!(!error.to_string().contains("not json"), "{error}");
        // A refresh under the lease cannot even read it: nothing is written.
        assert_eq!(stored_record(&mut conn, "carol").await, bad);
    }
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    sqlite(dir.path(), &key, DbOptions::default())
        .await
        .close()
        .await;
    let mut conn = raw(dir.path()).await;
    sqlx::query("UPDATE authkeep_schema SET version = 99")
        .execute(&mut conn)
        .await
        .unwrap();
    let error = DbStore::open(&sqlite_url(dir.path()), key)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DbError::NewerSchema {
                found: 99,
                known: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("upgrade authkeep"), "{error}");
    let version: i64 = sqlx::query_scalar("SELECT version FROM authkeep_schema")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, 99);
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_file_is_private_and_a_shared_one_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    sqlite(dir.path(), &key, DbOptions::default())
        .await
        .close()
        .await;
    let state = dir.path().join("state");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    let file = state.join("authkeep.db");
    assert_eq!(mode(&file), 0o600);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = DbStore::open(&sqlite_url(dir.path()), key)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DbError::InsecurePermissions { mode: 0o644, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("chmod 600"), "{error}");
    assert_eq!(mode(&file), 0o644, "left as it was");
}

/// A version 1 database (due instants in whole seconds, column `due_at`) is
/// brought to version 2 (milliseconds, `due_at_ms`) when opened, its due
/// instants kept, and due accounts are then claimed as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_upgraded_keeping_due_instants() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate().unwrap();
    let store = sqlite(dir.path(), &key, DbOptions::default()).await;
    // A login obtained at a fraction of a second: due at one too.
    let now: jiff::Timestamp = "2026-06-01T12:00:00.250Z".parse().unwrap();
    store
        .add_client(authkeep_db::NewClient::new(
            "acme",
            authkeep::Client::new("https://idp.example", "acme"),
        ))
        .await
        .unwrap();
    let id = account("alice");
    store
        .put_account(
            &id,
            "acme",
            crate::harness::response("a", "r", now, 3600),
            now,
        )
        .await
        .unwrap();
    let due = store.account(&id).await.unwrap().unwrap().due_at.unwrap();
    assert_ne!(due.subsec_nanosecond(), 0, "{due}: kept to the millisecond");
    store.close().await;

    // Back to version 1, as that build left it.
    let mut conn = raw(dir.path()).await;
    for statement in [
        "ALTER TABLE authkeep_accounts ADD COLUMN due_at BIGINT",
        "UPDATE authkeep_accounts SET due_at = due_at_ms / 1000",
        "DROP INDEX authkeep_accounts_due_ms",
        "ALTER TABLE authkeep_accounts DROP COLUMN due_at_ms",
        "CREATE INDEX authkeep_accounts_due ON authkeep_accounts (due_at) WHERE due_at IS NOT NULL",
        "UPDATE authkeep_schema SET version = 1",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    let store = sqlite(dir.path(), &key, DbOptions::default()).await;
    let upgraded = store.account(&id).await.unwrap().unwrap().due_at.unwrap();
    assert_eq!(upgraded.as_second(), due.as_second());
    assert_eq!(upgraded.subsec_nanosecond(), 0);
    let mut conn = raw(dir.path()).await;
    let version: i64 = sqlx::query_scalar("SELECT version FROM authkeep_schema")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, 2);
    let early = upgraded - jiff::SignedDuration::from_millis(1);
    assert!(store.claim_due(10, early).await.unwrap().is_empty());
    let claimed = store.claim_due(10, upgraded).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].due_at, Some(upgraded));
}
