//! The two backends behind one code path: a pool of either kind, a macro that
//! runs the same query code against whichever it is, the SQL that differs
//! between them (the database's clock, row locking, collation), opening by
//! URL, and the schema.
//!
//! The schema is hand-run versioned SQL, not `sqlx::migrate!`: the version
//! lives in `authkeep_schema`, each step runs in one transaction with the
//! version bump, and a database of a newer version is refused before anything
//! is changed. Every table is prefixed `authkeep_`, so a PostgreSQL database
//! may be shared with an application's own tables.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, SqlSafeStr as _, SqlStr};

use crate::error::{DbError, sql_error};

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// A connection pool of either backend.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's own pool: one text,
/// compiled once per backend, so that each runs with its native types.
macro_rules! dispatch {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            #[cfg(feature = "sqlite")]
            $crate::backend::Pool::Sqlite($p) => $body,
            #[cfg(feature = "postgres")]
            $crate::backend::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use dispatch;

/// Binds the columns derived from a record (`schedule::Derived`), in the order
/// every statement that writes an account names them: state through due_at_ms.
macro_rules! bind_derived {
    ($query:expr, $d:expr) => {
        $query
            .bind($d.state)
            .bind($d.expires_at)
            .bind($d.refresh_expires_at)
            .bind($d.obtained_at)
            .bind($d.needs_login)
            .bind($d.last_success_at)
            .bind($d.last_error_class)
            .bind($d.last_error_code.as_deref())
            .bind($d.last_error_at)
            .bind($d.consecutive_failures)
            .bind($d.next_attempt_at)
            .bind($d.due_at_ms)
    };
}
pub(crate) use bind_derived;

/// Which backend, for the SQL that differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    /// The database's clock in milliseconds since the epoch: leases are judged
    /// by it, so that several machines agree.
    fn now_ms(self) -> &'static str {
        match self {
            Kind::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            Kind::Postgres => "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }
}

/// A statement prepared as text for one backend.
pub(crate) fn sql(kind: Kind, text: &str) -> SqlStr {
    let text = text
        .replace("{now}", kind.now_ms())
        .replace(
            "{skip_locked}",
            match kind {
                Kind::Sqlite => "",
                Kind::Postgres => "FOR UPDATE SKIP LOCKED",
            },
        )
        .replace(
            "{pairs}",
            match kind {
                Kind::Sqlite => {
                    "SELECT value ->> 0 AS id, value ->> 1 AS lease_id FROM json_each($2)"
                }
                Kind::Postgres => {
                    "SELECT e ->> 0 AS id, CAST(e ->> 1 AS BIGINT) AS lease_id \
                    FROM jsonb_array_elements(CAST($2 AS JSONB)) AS e"
                }
            },
        )
        .replace(
            "{text_c}",
            match kind {
                Kind::Sqlite => "TEXT",
                Kind::Postgres => "TEXT COLLATE \"C\"",
            },
        );
    // Every statement is a constant of this crate with fixed substitutions;
    // values are always bound, never formatted in.
    AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
}

/// An opened pool, what it is, and where (without credentials).
pub(crate) struct Opened {
    pub pool: Pool,
    /// What the group commit's lanes write through (`crate::commit`): on
    /// SQLite a pool of one connection of its own, since there is one writer
    /// at a time anyway and its durability level changes per batch; on
    /// PostgreSQL the same pool.
    pub writer: Pool,
    pub kind: Kind,
    pub location: String,
}

/// How many connections a pool keeps at most.
pub(crate) fn default_connections(kind: Kind) -> u32 {
    match kind {
        // One writer at a time anyway; readers share the WAL.
        Kind::Sqlite => 4,
        Kind::Postgres => 8,
    }
}

/// Opens the database `url` names.
pub(crate) async fn open(url: &str, max_connections: Option<u32>) -> Result<Opened, DbError> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => open_sqlite(url, max_connections).await,
        "postgres" | "postgresql" => open_postgres(url, max_connections).await,
        _ => Err(DbError::UnsupportedUrl {
            scheme: scheme
                .chars()
                .take(32)
                .filter(|c| !c.is_control())
                .collect(),
        }),
    }
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_url: &str, _max: Option<u32>) -> Result<Opened, DbError> {
    Err(DbError::BackendDisabled("sqlite"))
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, max: Option<u32>) -> Result<Opened, DbError> {
    use sqlx::sqlite::SqliteSynchronous;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    if rest.is_empty() || rest.starts_with(":memory:") || rest.contains('?') {
        return Err(DbError::InvalidUrl(
            "sqlite URLs are sqlite:PATH, a file path without parameters".into(),
        ));
    }
    let path = PathBuf::from(rest);
    prepare_sqlite_file(&path)?;
    let location = format!("sqlite:{}", path.display());
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is durable before the new session is handed out.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(max.unwrap_or(default_connections(Kind::Sqlite)))
        .acquire_timeout(Duration::from_secs(30))
        // No ping before each use: it doubled the round trips of every query
        // (on SQLite, each is a hand-off to the connection's thread). A
        // connection that broke fails its next statement, which is reported
        // as the store being unavailable (a transient error), and is replaced.
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await
        .map_err(|e| sql_error(&location, "connecting", e))?;
    // Exactly one connection, starting at FULL: the group commit keeps what
    // its durability level was last set to (crate::commit::Level).
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|e| sql_error(&location, "connecting", e))?;
    Ok(Opened {
        pool: Pool::Sqlite(pool),
        writer: Pool::Sqlite(writer),
        kind: Kind::Sqlite,
        location,
    })
}

/// Creates the SQLite file (0600) and, if missing, its directory (0700);
/// refuses an existing file that group or others may use.
#[cfg(feature = "sqlite")]
fn prepare_sqlite_file(path: &Path) -> Result<(), DbError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |e| DbError::Io {
            action,
            path,
            source: Arc::new(e),
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(io("creating", dir))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(io("opening", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file
            .metadata()
            .map_err(io("reading", path))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(DbError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    drop(file);
    Ok(())
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str, _max: Option<u32>) -> Result<Opened, DbError> {
    Err(DbError::BackendDisabled("postgres"))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, max: Option<u32>) -> Result<Opened, DbError> {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    // The driver's message may quote the URL: only its kind is kept.
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| DbError::InvalidUrl("not a valid postgres:// URL".into()))?;
    let location = format!(
        "postgres://{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    let pool = PgPoolOptions::new()
        .max_connections(max.unwrap_or(default_connections(Kind::Postgres)))
        .acquire_timeout(Duration::from_secs(30))
        // As for SQLite: a ping per query cost a round trip each.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|e| sql_error(&location, "connecting", e))?;
    Ok(Opened {
        writer: Pool::Postgres(pool.clone()),
        pool: Pool::Postgres(pool),
        kind: Kind::Postgres,
        location,
    })
}

/// The schema, step by step: entry `n` brings version `n` to `n + 1`.
const MIGRATIONS: [&[&str]; 2] = [
    &[
        "CREATE TABLE authkeep_clients (
        name {text_c} PRIMARY KEY,
        issuer TEXT NOT NULL,
        client_id TEXT NOT NULL,
        secret TEXT,
        auth TEXT NOT NULL,
        scopes TEXT,
        token_endpoint TEXT,
        renewal TEXT NOT NULL,
        token_params TEXT
    )",
        "CREATE TABLE authkeep_accounts (
        id {text_c} PRIMARY KEY,
        client_name {text_c} REFERENCES authkeep_clients (name),
        generation BIGINT NOT NULL DEFAULT 0,
        record TEXT,
        state TEXT,
        expires_at BIGINT,
        refresh_expires_at BIGINT,
        obtained_at BIGINT,
        needs_login BIGINT NOT NULL DEFAULT 0,
        last_success_at BIGINT,
        last_error_class TEXT,
        last_error_code TEXT,
        last_error_at BIGINT,
        consecutive_failures BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT,
        due_at BIGINT,
        lease_owner TEXT,
        lease_id BIGINT,
        lease_until BIGINT,
        claimed_by TEXT,
        claimed_until BIGINT
    )",
        "CREATE INDEX authkeep_accounts_due ON authkeep_accounts (due_at) WHERE due_at IS NOT NULL",
        "CREATE INDEX authkeep_accounts_client ON authkeep_accounts (client_name)",
        "CREATE TABLE authkeep_issuers (
        issuer TEXT PRIMARY KEY,
        clock_skew_secs BIGINT NOT NULL
    )",
    ],
    // Due instants in milliseconds: in whole seconds, every account due
    // within a second became due at its start, all at once.
    &[
        "ALTER TABLE authkeep_accounts ADD COLUMN due_at_ms BIGINT",
        "UPDATE authkeep_accounts SET due_at_ms = due_at * 1000 WHERE due_at IS NOT NULL",
        "DROP INDEX authkeep_accounts_due",
        "ALTER TABLE authkeep_accounts DROP COLUMN due_at",
        "CREATE INDEX authkeep_accounts_due_ms ON authkeep_accounts (due_at_ms) \
            WHERE due_at_ms IS NOT NULL",
    ],
];

/// Brings the schema to [`SCHEMA_VERSION`], or refuses a newer one, changing
/// nothing. Concurrent openers serialise on the version table.
pub(crate) async fn migrate(opened: &Opened) -> Result<(), DbError> {
    let kind = opened.kind;
    let location = &opened.location;
    let failed = |action| move |e| sql_error(location, action, e);
    dispatch!(&opened.pool, pool => {
        sqlx::query(sql(kind, "CREATE TABLE IF NOT EXISTS authkeep_schema (version BIGINT NOT NULL)"))
            .execute(pool)
            .await
            .map_err(failed("creating the schema table"))?;
        let begin = match kind {
            Kind::Sqlite => "BEGIN IMMEDIATE",
            Kind::Postgres => "BEGIN",
        };
        let mut tx = pool.begin_with(begin).await.map_err(failed("beginning the schema update"))?;
        if kind == Kind::Postgres {
            sqlx::query("LOCK TABLE authkeep_schema IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .map_err(failed("locking the schema table"))?;
        }
        let found: Option<i64> = sqlx::query_scalar(sql(kind, "SELECT MAX(version) FROM authkeep_schema"))
            .fetch_one(&mut *tx)
            .await
            .map_err(failed("reading the schema version"))?;
        let found = found.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(DbError::NewerSchema {
                location: location.clone(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            tx.rollback().await.map_err(failed("ending the schema check"))?;
            return Ok(());
        }
        for step in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
            for statement in *step {
                sqlx::query(sql(kind, statement))
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("updating the schema"))?;
            }
        }
        sqlx::query("DELETE FROM authkeep_schema")
            .execute(&mut *tx)
            .await
            .map_err(failed("updating the schema version"))?;
        sqlx::query("INSERT INTO authkeep_schema (version) VALUES ($1)")
            .bind(SCHEMA_VERSION)
            .execute(&mut *tx)
            .await
            .map_err(failed("updating the schema version"))?;
        tx.commit().await.map_err(failed("committing the schema"))?;
        Ok(())
    })
}
