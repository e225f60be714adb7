//! Exit codes (DESIGN.md §6), decided in one place from the error that ended a
//! command.

use authkeep::{Error, StoreError};

/// Success (for `token`: a usable token was printed).
pub const SUCCESS: u8 = 0;
/// Anything unexpected, including a corrupt record or one of a newer format.
pub const UNEXPECTED: u8 = 1;
/// Usage or configuration error.
pub const USAGE: u8 = 2;
/// Login required.
pub const LOGIN_REQUIRED: u8 = 3;
/// Retry later.
pub const RETRY_LATER: u8 = 4;

/// A usage or configuration error found by the CLI itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Wraps a message as a usage error (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// A condition that needs a login, found by the CLI itself (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NeedsLogin(pub String);

/// The exit code and the `--json` error class for an error.
pub fn classify(error: &anyhow::Error) -> (u8, &'static str) {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            let code = if e.is_login_required() {
                LOGIN_REQUIRED
            } else if e.is_transient() {
                RETRY_LATER
            } else if e.is_misconfiguration() {
                USAGE
            } else {
                UNEXPECTED
            };
            return (code, e.class_name());
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return match e {
                StoreError::LockTimeout { .. } => (RETRY_LATER, "lock_timeout"),
                _ => (UNEXPECTED, "store"),
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return (USAGE, "usage");
        }
        if cause.downcast_ref::<NeedsLogin>().is_some() {
            return (LOGIN_REQUIRED, "login_required");
        }
    }
    (UNEXPECTED, "unexpected")
}
