//! Errors of the library and the failure classes that decide what happens to a
//! session (docs/DESIGN.md §1.5).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a failed refresh means for the session. Only [`FailureClass::SessionDead`]
/// ever ends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The provider rejected the stored refresh token (`invalid_grant`).
    SessionDead,
    /// The user must interact (MFA, consent, re-authentication).
    InteractionRequired,
    /// The client or request is misconfigured (`invalid_client`, `invalid_scope`, …).
    Misconfiguration,
    /// Try again later: network, timeout, 5xx, 429, unparseable answers.
    Transient,
}

impl FailureClass {
    /// The name used in records, `--json` output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::SessionDead => "session_dead",
            FailureClass::InteractionRequired => "interaction_required",
            FailureClass::Misconfiguration => "misconfiguration",
            FailureClass::Transient => "transient",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A store could not do what was asked. Nothing is deleted on any of these.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record exists but cannot be parsed.
    #[error("session file {} is corrupt ({detail}); it was left untouched", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, without any of its content.
        detail: String,
    },
    /// The record was written by a newer authkeep.
    #[error("session file {} has format version {version}, newer than this authkeep understands (1); upgrade authkeep; the file was left untouched", path.display())]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u64,
    },
    /// The record changed since it was read (a writer that ignores the lock).
    #[error("the session {0} was changed by another writer; try again")]
    Conflict(String),
    /// The session's lock could not be taken in time.
    #[error(
        "timed out after {waited_secs} s waiting for another process to finish with session {key}; raise --lock-timeout (AUTHKEEP_LOCK_TIMEOUT) if that is expected"
    )]
    LockTimeout {
        /// The session.
        key: String,
        /// How long we waited.
        waited_secs: u64,
    },
    /// An I/O error on a named file.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause (shared, so that one failure can be handed to every caller
        /// waiting on the same attempt).
        source: Arc<std::io::Error>,
    },
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io {
            action,
            path,
            source: Arc::new(source),
        }
    }
}

/// Why [`crate::Keeper::token`] could not hand out a token.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no usable session: log in.
    #[error("{message}")]
    LoginRequired {
        /// One line for the user, naming the profile and what to run.
        message: String,
    },
    /// The provider requires user interaction and no valid token is left.
    #[error("{message}")]
    InteractionRequired {
        /// One line for the user.
        message: String,
    },
    /// The client is misconfigured (locally or as the provider says) and no valid
    /// token is left.
    #[error("{message}")]
    Misconfiguration {
        /// One line for the user.
        message: String,
    },
    /// The provider failed transiently and no valid token is left.
    #[error("{message}")]
    Transient {
        /// One line for the user.
        message: String,
    },
    /// The provider issued new tokens but they could not be saved, even after
    /// retrying: none of them is handed out, because the refresh token they
    /// replace may already be used up at the provider.
    #[error(
        "the provider issued new tokens for profile {key}, but saving them failed: {cause}; \
         none was handed out, and the previous refresh token may already be used up, so once \
         the current access token expires the session may need a new login"
    )]
    NotSaved {
        /// The session.
        key: String,
        /// Why the write failed, naming the file.
        cause: StoreError,
    },
    /// The store failed (including a lock time-out).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// Whether trying again later may succeed without the user doing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Transient { .. }
                | Error::Store(StoreError::LockTimeout { .. } | StoreError::Conflict(_))
        )
    }

    /// Whether the user must log in (again).
    pub fn is_login_required(&self) -> bool {
        matches!(
            self,
            Error::LoginRequired { .. } | Error::InteractionRequired { .. }
        )
    }

    /// Whether configuration must change.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, Error::Misconfiguration { .. })
    }

    /// The class name shown in `--json` errors.
    pub fn class_name(&self) -> &'static str {
        match self {
            Error::LoginRequired { .. } => "login_required",
            Error::InteractionRequired { .. } => "interaction_required",
            Error::Misconfiguration { .. } => "misconfiguration",
            Error::Transient { .. } => "transient",
            Error::NotSaved { .. } => "not_saved",
            Error::Store(StoreError::LockTimeout { .. }) => "lock_timeout",
            Error::Store(StoreError::Conflict(_)) => "conflict",
            Error::Store(_) => "store",
        }
    }
}
