//! Errors of the library and the failure classes that decide what happens to a
//! session (docs/DESIGN.md §1.5).

use std::path::PathBuf;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::oauth::ProviderFailure;
use crate::policy::LoginReason;
use crate::session::SessionKey;

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
    /// The record's secrets are sealed (encrypted, or kept in a keyring) and
    /// cannot be opened here: the wrong key, a missing keyring entry, or a
    /// store that does not seal. Nothing was changed.
    #[error("cannot open the secrets of session file {}: {detail}; it was left untouched", path.display())]
    Sealed {
        /// The file.
        path: PathBuf,
        /// Why, without any secret.
        detail: String,
    },
    /// The record's secrets could not be sealed (encrypted, or put in a
    /// keyring) for writing: nothing was written.
    #[error("cannot seal the secrets of session file {}: {detail}; nothing was written", path.display())]
    NotSealed {
        /// The file.
        path: PathBuf,
        /// Why, without any secret.
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
        "timed out after {} waiting for another process to finish with session {key}",
        crate::token::human(*waited)
    )]
    LockTimeout {
        /// The session.
        key: String,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// The store's directory or one of its files may be read or changed by
    /// other users (group or others have access, or another user owns it): it
    /// is not used, as ssh refuses a private key others can read. Nothing was
    /// read from it or changed.
    #[error(
        "{} {} {}; fix it with `{fix}`",
        if *is_dir { "session directory" } else { "session file" },
        path.display(),
        insecure_why(*mode, *owner)
    )]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Whether it is the store's directory.
        is_dir: bool,
        /// Its permission bits (e.g. `0o644`).
        mode: u32,
        /// Its owner's uid, when that is not the current user.
        owner: Option<u32>,
        /// The shell command that fixes it (`chmod 600 /path/x.json`).
        fix: String,
    },
    /// The lease on the session (a database store's lock) ran out and another
    /// owner took it over: nothing was written, so that a late holder never
    /// overwrites a newer session (fencing).
    #[error("the lease on session {0} ran out and was taken over; nothing was written")]
    LeaseLost(String),
    /// The session's name cannot be used by this store (the file store takes
    /// only profile names, which name files safely).
    #[error(
        "session {0:?} cannot be kept in a file store, whose names are 1 to 64 of A-Z a-z 0-9 . _ -"
    )]
    KeyNotStorable(String),
    /// A database store cannot be reached (connection refused, pool time-out):
    /// nothing was changed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A database store failed otherwise; the text names the account and what
    /// went wrong, never a secret. Nothing was changed.
    #[error("{0}")]
    Database(String),
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

/// Why permissions were refused, for [`StoreError::InsecurePermissions`].
fn insecure_why(mode: u32, owner: Option<u32>) -> String {
    let access = if mode & 0o077 != 0 {
        format!("is accessible by group or others (mode {mode:04o})")
    } else {
        format!("has mode {mode:04o}")
    };
    match owner {
        Some(uid) => format!("{access} and is owned by another user (uid {uid})"),
        None => access,
    }
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

/// Why [`crate::Keeper::token`] could not hand out a token. Each says what
/// happened to which session, never what to type: a program adds its own
/// advice (the `authkeep` command names its commands and flags).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no usable token, and none can be had without the user.
    #[error("{}", login_required(key, *reason, detail.as_deref()))]
    LoginRequired {
        /// The session.
        key: SessionKey,
        /// Why.
        reason: LoginReason,
        /// What the provider said when it ended the session, if it did.
        detail: Option<String>,
    },
    /// A refresh was due and failed, and no valid token is left to serve (or
    /// the only one left is the token a server rejected).
    #[error("{}", refresh_failed(key, failure, *rejected))]
    RefreshFailed {
        /// The session.
        key: SessionKey,
        /// What it means for the session.
        class: FailureClass,
        /// What went wrong, without secrets.
        failure: ProviderFailure,
        /// Whether the refresh was to replace a token a server rejected.
        rejected: bool,
    },
    /// The access token has expired, and the provider asked (`Retry-After`) not
    /// to be contacted before `until`: no request was made.
    #[error(
        "the access token of session {key} has expired, and the provider asked not to be contacted again before {}",
        crate::token::format_instant(*until)
    )]
    RetryAfter {
        /// The session.
        key: SessionKey,
        /// The provider's instant.
        until: Timestamp,
    },
    /// The provider issued new tokens but they could not be saved, even after
    /// retrying: none of them is handed out, because the refresh token they
    /// replace may already be used up at the provider.
    #[error(
        "the provider issued new tokens for session {key}, but saving them failed: {cause}; \
         none was handed out, and the previous refresh token may already be used up, so once \
         the current access token expires the session may need a new login"
    )]
    NotSaved {
        /// The session.
        key: SessionKey,
        /// Why the write failed, naming the file.
        cause: StoreError,
    },
    /// The store failed (including a lock time-out).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A step at the provider other than a refresh failed: discovery at login,
    /// a login grant, or revocation.
    #[error("{step} for session {key} failed: {}", failure.summary())]
    Provider {
        /// The session.
        key: SessionKey,
        /// Which step.
        step: Step,
        /// What went wrong, without secrets.
        failure: ProviderFailure,
    },
    /// The session's access token holds characters an HTTP header cannot
    /// carry, so it cannot be sent to a resource server.
    #[error("the access token of session {key} cannot be sent in an HTTP header")]
    TokenNotSendable {
        /// The session.
        key: SessionKey,
    },
}

/// A step at the provider other than a refresh, named in [`Error::Provider`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Reading the provider's metadata (OpenID Connect discovery or RFC 8414).
    Discovery,
    /// Obtaining tokens by a login grant (device code, authorization code,
    /// client credentials).
    Login,
    /// Revoking a token (RFC 7009).
    Revocation,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Discovery => "discovery",
            Step::Login => "login",
            Step::Revocation => "revocation",
        })
    }
}

fn login_required(key: &SessionKey, reason: LoginReason, detail: Option<&str>) -> String {
    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    match reason {
        LoginReason::NoSession => format!("no session for {key}"),
        LoginReason::SessionEnded => format!("the session {key} has ended{detail}"),
        LoginReason::ExpiredCannotRenew => format!(
            "the access token of session {key} has expired and the session cannot renew itself"
        ),
        LoginReason::RefreshTokenExpired => {
            format!("the refresh token of session {key} has expired")
        }
        LoginReason::TokenRejected => format!(
            "a server rejected the access token of session {key}, and the session cannot renew itself"
        ),
        LoginReason::InteractionRequired => {
            format!("the provider requires a new sign-in for session {key}{detail}")
        }
    }
}

fn refresh_failed(key: &SessionKey, failure: &ProviderFailure, rejected: bool) -> String {
    let summary = failure.summary();
    match (failure.class, rejected) {
        (FailureClass::InteractionRequired, _) => {
            format!("the provider requires a new sign-in for session {key} ({summary})")
        }
        (_, true) => format!(
            "a server rejected the access token of session {key}, and refreshing it failed: {summary}"
        ),
        (FailureClass::Misconfiguration, false) => {
            format!("cannot refresh session {key}: {summary}")
        }
        (FailureClass::Transient | FailureClass::SessionDead, false) => {
            format!("cannot refresh session {key} now: {summary}")
        }
    }
}

impl Error {
    /// Whether trying again later may succeed without the user doing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::RefreshFailed { class, .. } => {
                matches!(class, FailureClass::Transient | FailureClass::SessionDead)
            }
            Error::RetryAfter { .. } => true,
            Error::Provider { failure, .. } => failure.class == FailureClass::Transient,
            Error::Store(e) => e.is_transient(),
            Error::LoginRequired { .. }
            | Error::NotSaved { .. }
            | Error::TokenNotSendable { .. } => false,
        }
    }

    /// Whether the user must log in (again).
    pub fn is_login_required(&self) -> bool {
        match self {
            Error::LoginRequired { .. } => true,
            Error::RefreshFailed { class, .. } => *class == FailureClass::InteractionRequired,
            Error::Provider { failure, .. } => matches!(
                failure.class,
                FailureClass::InteractionRequired | FailureClass::SessionDead
            ),
            _ => false,
        }
    }

    /// Whether configuration must change.
    pub fn is_misconfiguration(&self) -> bool {
        match self {
            Error::RefreshFailed { class, .. } => *class == FailureClass::Misconfiguration,
            Error::Provider { failure, .. } => failure.class == FailureClass::Misconfiguration,
            Error::Store(e) => e.is_misconfiguration(),
            _ => false,
        }
    }

    /// The class name a program may show or log (`--json` errors use it).
    pub fn class_name(&self) -> &'static str {
        match self {
            Error::LoginRequired { .. } => "login_required",
            Error::RefreshFailed { class, .. } => match class {
                FailureClass::InteractionRequired => "interaction_required",
                FailureClass::Misconfiguration => "misconfiguration",
                FailureClass::Transient | FailureClass::SessionDead => "transient",
            },
            Error::RetryAfter { .. } => "transient",
            Error::Provider { failure, .. } => match failure.class {
                FailureClass::InteractionRequired => "interaction_required",
                FailureClass::Misconfiguration => "misconfiguration",
                FailureClass::SessionDead => "login_required",
                FailureClass::Transient => "transient",
            },
            Error::NotSaved { .. } => "not_saved",
            Error::Store(e) => e.class_name(),
            Error::TokenNotSendable { .. } => "token_not_sendable",
        }
    }
}

impl StoreError {
    /// Whether trying again later may succeed: a lock wait that ran out, a
    /// record another writer changed meanwhile, a lease another owner took
    /// over, a database that cannot be reached.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::LockTimeout { .. }
                | StoreError::Conflict(_)
                | StoreError::LeaseLost(_)
                | StoreError::Unavailable(_)
        )
    }

    /// Whether the store's setup must change before it can be used (its
    /// permissions).
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, StoreError::InsecurePermissions { .. })
    }

    /// The class name a program may show or log.
    pub fn class_name(&self) -> &'static str {
        match self {
            StoreError::LockTimeout { .. } => "lock_timeout",
            StoreError::Conflict(_) => "conflict",
            StoreError::InsecurePermissions { .. } => "insecure_permissions",
            StoreError::LeaseLost(_) => "lease_lost",
            StoreError::Unavailable(_) => "store_unavailable",
            _ => "store",
        }
    }
}
