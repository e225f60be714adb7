//! Opening stores for tests: a SQLite file in a temporary directory, or a
//! fresh schema on the test PostgreSQL server.

use std::path::Path;

use authkeep::store::StoreKey;
use authkeep::{SessionKey, TokenResponse};
use authkeep_db::{DbOptions, DbStore};
use jiff::{SignedDuration, Timestamp};
use sqlx::{AssertSqlSafe, Connection as _};

pub const POSTGRES_VAR: &str = "AUTHKEEP_TEST_POSTGRES_URL";

pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("state").join("authkeep.db").display())
}

pub async fn sqlite(dir: &Path, key: &StoreKey, options: DbOptions) -> DbStore {
    DbStore::open_with(&sqlite_url(dir), key.clone(), options)
        .await
        .unwrap()
}

/// The URL of a new, empty schema on the test server.
pub async fn postgres_url() -> String {
    let Ok(base) = std::env::var(POSTGRES_VAR) else {
        panic!(
            "this test needs the PostgreSQL server that scripts/with-postgres.sh starts \
             ({POSTGRES_VAR} is not set); run ./scripts/test.sh, or: \
             scripts/with-postgres.sh cargo test -p authkeep-db --all-features"
        );
    };
    let schema = format!("t_{:016x}", fastrand::u64(..));
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

pub async fn postgres(url: &str, key: &StoreKey, options: DbOptions) -> DbStore {
    DbStore::open_with(url, key.clone(), options).await.unwrap()
}

pub fn account(id: &str) -> SessionKey {
    SessionKey::account(id).unwrap()
}

/// A token response as if obtained with `left` of an hour's lifetime left.
pub fn response(access: &str, refresh: &str, now: Timestamp, left: i64) -> TokenResponse {
    let mut fields = serde_json::Map::new();
    fields.insert("access_token".into(), access.into());
    fields.insert("refresh_token".into(), refresh.into());
    fields.insert("token_type".into(), "Bearer".into());
    let mut response = TokenResponse::from_fields(&fields);
    response.expires_at = Some(now + SignedDuration::from_secs(left));
    response.issued_at = Some(now + SignedDuration::from_secs(left - 3600));
    response
}
