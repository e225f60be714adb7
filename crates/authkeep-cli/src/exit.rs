//! Exit codes (docs/DESIGN.md §6), decided in one place from the error that ended a
//! command.

use authkeep::oauth::EndpointError;
use authkeep::{Error, FailureClass, LoginReason, SessionKey, StoreError};

use crate::common::{instant, with_lock_timeout_hint};
use crate::printer::with_cause_hint;

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
/// `request`: the resource server answered an error status, after the one retry.
pub const RESOURCE_ERROR: u8 = 5;

/// A usage or configuration error found by the CLI itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Wraps a message as a usage error (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// A URL that may not be used, as a usage error, with what to do about plain
/// http.
pub fn endpoint_usage(error: EndpointError) -> anyhow::Error {
    match error {
        EndpointError::PlainHttp { .. } => usage(format!(
            "{error}; to send it over plain http anyway, pass --insecure-allow-http"
        )),
        other => usage(other.to_string()),
    }
}

/// A condition that needs a login, found by the CLI itself (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NeedsLogin(pub String);

/// `request`: the resource server's final answer was an error status, or a
/// redirect too many (exit 5). Its body has been printed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResourceError(pub String);

/// A transient failure found by the CLI itself, such as a resource server that
/// could not be reached (exit 4).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RetryLater(pub String);

/// `authkeep doctor` found problems (exit 1); each was printed with its fix.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} checks failed")]
pub struct ChecksFailed {
    /// How many failed.
    pub failed: usize,
    /// How many ran.
    pub total: usize,
}

/// Standard output was closed by its reader (`authkeep token | head -c0`): exit
/// 1, since nothing was delivered, but without a message.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// A signal asked the command to stop (exit 128 + the signal's number).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Interrupted {
    /// The signal's number (2 for SIGINT, 15 for SIGTERM).
    pub signal: u8,
    /// What happened.
    pub message: String,
}

/// `exec`: the child's exit code, passed on (128 + N for a child killed by
/// signal N); or 126/127 for a command that could not be started, with
/// `message` saying why. An empty message prints nothing.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ChildExit {
    /// The exit code to end with.
    pub code: u8,
    /// What to say on stderr, if anything.
    pub message: String,
}

/// Whether an error ends the command without an error line: a closed stdout,
/// or a child's own exit code passed on.
pub fn is_silent(error: &anyhow::Error) -> bool {
    error.downcast_ref::<StdoutClosed>().is_some()
        || error
            .downcast_ref::<ChildExit>()
            .is_some_and(|e| e.message.is_empty())
}

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
            let code = if e.is_transient() {
                RETRY_LATER
            } else if e.is_misconfiguration() {
                USAGE
            } else {
                UNEXPECTED
            };
            return (code, e.class_name());
        }
        if let Some(e) = cause.downcast_ref::<Interrupted>() {
            return (128u8.saturating_add(e.signal), "interrupted");
        }
        if let Some(e) = cause.downcast_ref::<ChildExit>() {
            return (e.code, "child");
        }
        if cause.downcast_ref::<ChecksFailed>().is_some() {
            return (UNEXPECTED, "checks_failed");
        }
        if cause.downcast_ref::<StdoutClosed>().is_some() {
            return (UNEXPECTED, "stdout_closed");
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return (USAGE, "usage");
        }
        if cause
            .downcast_ref::<authkeep::config::ConfigError>()
            .is_some_and(authkeep::config::ConfigError::is_invalid)
        {
            return (USAGE, "usage");
        }
        if cause.downcast_ref::<NeedsLogin>().is_some() {
            return (LOGIN_REQUIRED, "login_required");
        }
        if cause.downcast_ref::<ResourceError>().is_some() {
            return (RESOURCE_ERROR, "resource_error");
        }
        if cause.downcast_ref::<RetryLater>().is_some() {
            return (RETRY_LATER, "transient");
        }
    }
    (UNEXPECTED, "unexpected")
}

/// One line for an error: its message and, after a colon, each cause that the
/// message does not already include (library errors name their causes
/// themselves, `anyhow` contexts do not). The library's errors are worded for
/// this command: profiles, and what to run or set.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = if let Some(e) = cause.downcast_ref::<Error>() {
            advise(e)
        } else if let Some(e) = cause.downcast_ref::<StoreError>() {
            advise_store(e)
        } else {
            cause.to_string()
        };
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// A library error in this command's words, with what to do about it.
fn advise(error: &Error) -> String {
    let log_in = |key: &SessionKey| format!("log in again with `authkeep login --profile {key}`");
    match error {
        Error::LoginRequired {
            key,
            reason,
            detail,
        } => {
            let what = match reason {
                LoginReason::NoSession => format!("no session for profile {key}"),
                LoginReason::SessionEnded => format!(
                    "the session for profile {key} has ended{}",
                    detail
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
                LoginReason::ExpiredCannotRenew => format!(
                    "the access token of profile {key} has expired and the session cannot renew itself"
                ),
                LoginReason::RefreshTokenExpired => {
                    format!("the refresh token of profile {key} has expired")
                }
                LoginReason::TokenRejected => format!(
                    "a server rejected the access token of profile {key}, and the session cannot renew itself"
                ),
                LoginReason::InteractionRequired => format!(
                    "the access token of profile {key} has expired, and the provider requires you to sign in again{}",
                    detail
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
                _ => format!("profile {key} needs a new login"),
            };
            format!("{what}; {}", log_in(key))
        }
        Error::RefreshFailed {
            key,
            class,
            failure,
            rejected,
        } => {
            let summary = with_cause_hint(&failure.summary(), failure.cause);
            let what = if *rejected {
                format!(
                    "a server rejected the access token of profile {key}, and refreshing it failed"
                )
            } else {
                format!("cannot refresh profile {key}")
            };
            match class {
                FailureClass::InteractionRequired => format!(
                    "the provider requires you to sign in again for profile {key} ({summary}); {}",
                    log_in(key)
                ),
                FailureClass::Misconfiguration => {
                    format!("{what}: {summary}; check the client configuration")
                }
                _ => {
                    let retry = failure
                        .retry_after
                        .map(|at| format!("; the provider asked to wait until {}", instant(at)))
                        .unwrap_or_default();
                    let now = if *rejected { "" } else { " now" };
                    format!("{what}{now}: {summary}{retry}; the session is kept, try again later")
                }
            }
        }
        Error::RetryAfter { key, until } => format!(
            "the access token of profile {key} has expired, and the provider asked not to be contacted again before {}; try again then",
            instant(*until)
        ),
        Error::NotSaved { key, cause } => format!(
            "the provider issued new tokens for profile {key}, but saving them failed: {}; none was handed out, and the previous refresh token may already be used up, so once the current access token expires the session may need a new login",
            advise_store(cause)
        ),
        Error::Store(e) => advise_store(e),
        Error::Provider { key, step, failure } => {
            let summary = with_cause_hint(&failure.summary(), failure.cause);
            let advice = match failure.class {
                FailureClass::Transient => "; try again later",
                FailureClass::InteractionRequired | FailureClass::SessionDead => {
                    "; nothing was stored, run the login again"
                }
                FailureClass::Misconfiguration => "",
            };
            format!("{step} for profile {key} failed: {summary}{advice}")
        }
        other => other.to_string(),
    }
}

/// A store error, with what to do about a lock time-out or a store others may
/// use.
fn advise_store(error: &StoreError) -> String {
    match error {
        StoreError::LockTimeout { .. } => with_lock_timeout_hint(&error.to_string()),
        StoreError::InsecurePermissions { .. } => format!(
            "{error}, or use it as it is with --insecure-permissions ({}=1)",
            crate::names::ENV_INSECURE_PERMISSIONS
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let store = StoreError::Io {
            action: "writing",
            path: "/s/p.json".into(),
            source: std::sync::Arc::new(io),
        };
        let error = anyhow::Error::from(Error::from(store));
        assert_eq!(
            one_line(&error),
            "writing /s/p.json: No space left on device"
        );
        let error = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&error), "outer: inner");
    }

    #[test]
    fn a_record_changed_under_us_is_retryable() {
        let error = anyhow::Error::from(Error::from(StoreError::Conflict("p".into())));
        assert_eq!(classify(&error), (RETRY_LATER, "conflict"));
    }
}
