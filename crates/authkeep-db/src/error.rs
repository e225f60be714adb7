//! What can go wrong with a database store, in words that name the account or
//! client and the database (never its password), and never a secret; and how
//! these become the library's [`StoreError`] when the keeper asks.

use std::path::PathBuf;
use std::sync::Arc;

use authkeep::StoreError;

/// Why a database store could not do what was asked. Nothing is changed by
/// any of these.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL names no database this build knows.
    #[error(
        "unsupported database URL (scheme {scheme:?}): use sqlite:PATH or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl {
        /// What stands before the first `:` (never the rest, which may hold a
        /// password).
        scheme: String,
    },
    /// The URL names a backend this build was made without.
    #[error("this build has no {0} support (the authkeep-db feature \"{0}\" is off)")]
    BackendDisabled(&'static str),
    /// The URL is malformed; the text never repeats it.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The SQLite file or its directory could not be prepared.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// The SQLite file may be read or changed by other users.
    #[error(
        "database file {} is accessible by group or others (mode {mode:04o}); fix it with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The database was set up by a newer authkeep.
    #[error(
        "database {location} has schema version {found}, newer than this authkeep understands ({known}); upgrade authkeep; nothing was changed"
    )]
    NewerSchema {
        /// The database, without credentials.
        location: String,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// The database cannot be reached (refused, timed out, pool closed).
    #[error("database {location} is unavailable: {detail}")]
    Unavailable {
        /// The database, without credentials.
        location: String,
        /// Why.
        detail: String,
    },
    /// A statement failed.
    #[error("database {location}: {action} failed: {detail}")]
    Sql {
        /// The database, without credentials.
        location: String,
        /// What was being done.
        action: &'static str,
        /// The database's message.
        detail: String,
    },
    /// A stored account or client cannot be read; it was left as it is.
    #[error("{what} in database {location} is corrupt ({detail}); it was left untouched")]
    Corrupt {
        /// `account "…"` or `client "…"`.
        what: String,
        /// The database, without credentials.
        location: String,
        /// What is wrong, without its content.
        detail: String,
    },
    /// Stored secrets do not open with the store key given (the wrong key, or
    /// altered); nothing was changed.
    #[error("cannot open the secrets of {what} in database {location}: {detail}")]
    Sealed {
        /// `account "…"` or `client "…"`.
        what: String,
        /// The database, without credentials.
        location: String,
        /// Why, without any secret.
        detail: String,
    },
    /// Secrets could not be sealed for writing: nothing was written.
    #[error("cannot seal the secrets of {what}: {detail}; nothing was written")]
    NotSealed {
        /// `account "…"` or `client "…"`.
        what: String,
        /// Why.
        detail: String,
    },
    /// A name or id is not acceptable.
    #[error("{0}")]
    InvalidName(String),
    /// A client of that name exists already (and replacing was not asked).
    #[error("client {0:?} exists already")]
    ClientExists(String),
    /// No client of that name exists.
    #[error("no client named {0:?}")]
    UnknownClient(String),
    /// The client is used by accounts, so it cannot be removed, nor can its
    /// issuer or client id change (their refresh tokens belong to it).
    #[error("client {name:?} is used by {accounts} account(s); {refused}")]
    ClientInUse {
        /// The client.
        name: String,
        /// How many accounts use it.
        accounts: i64,
        /// What was refused.
        refused: &'static str,
    },
    /// A store error of the session contract (a lock wait, a conflict, a lost
    /// lease).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DbError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Unavailable { .. } => true,
            DbError::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<DbError> for StoreError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Store(e) => e,
            DbError::Unavailable { .. } => StoreError::Unavailable(error.to_string()),
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// Turns a driver error into a [`DbError`] for `location`, keeping only the
/// database's own message: bound values (tokens among them) are never part of
/// a statement's text, and the URL is never repeated.
pub(crate) fn sql_error(location: &str, action: &'static str, error: sqlx::Error) -> DbError {
    let unavailable = |detail: String| DbError::Unavailable {
        location: location.to_owned(),
        detail,
    };
    match error {
        sqlx::Error::PoolTimedOut => unavailable("timed out waiting for a connection".into()),
        sqlx::Error::PoolClosed => unavailable("the connection pool was closed".into()),
        sqlx::Error::Io(e) => unavailable(e.to_string()),
        sqlx::Error::Tls(e) => unavailable(format!("TLS: {e}")),
        sqlx::Error::Database(e) => DbError::Sql {
            location: location.to_owned(),
            action,
            detail: e.message().to_owned(),
        },
        other => DbError::Sql {
            location: location.to_owned(),
            action,
            detail: other.to_string(),
        },
    }
}
