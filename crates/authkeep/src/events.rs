//! What the coordinator reports as it works (docs/DESIGN.md §6). The CLI turns events
//! into status lines on stderr; an agent turns them into metrics. No event carries
//! a secret.

use jiff::Timestamp;

use crate::error::FailureClass;
use crate::policy::{LoginReason, RefreshReason};
use crate::session::SessionKey;

/// One step of getting a token.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The stored token is valid and outside the window: no network.
    Valid {
        /// The session.
        key: SessionKey,
        /// Its expiry, if known.
        expires_at: Option<Timestamp>,
    },
    /// The stored token was served although a refresh was due, because a back-off
    /// is running or the lock wait ran out: worth a warning.
    ServedWithoutRefresh {
        /// The session.
        key: SessionKey,
        /// Why, in words.
        why: String,
    },
    /// The stored token was served inside its window or with its expiry unknown,
    /// because that is all there is to do: the session cannot renew itself, or its
    /// provider gives no expiry. Normal operation, not a warning (docs/DESIGN.md §2).
    ServedAsIs {
        /// The session.
        key: SessionKey,
        /// Why, in words.
        why: String,
    },
    /// Another process or task is refreshing this session; waiting for it.
    WaitingForLock {
        /// The session.
        key: SessionKey,
    },
    /// Another writer refreshed the session meanwhile, or moments before a forced
    /// refresh; its result is used.
    UsedNewerSession {
        /// The session.
        key: SessionKey,
    },
    /// A refresh request is about to be sent.
    Refreshing {
        /// The session.
        key: SessionKey,
        /// Why.
        reason: RefreshReason,
    },
    /// A refresh succeeded and its result is stored.
    Refreshed {
        /// The session.
        key: SessionKey,
        /// The new expiry, if known.
        expires_at: Option<Timestamp>,
        /// Whether the provider rotated the refresh token.
        rotated: bool,
    },
    /// A refresh failed.
    RefreshFailed {
        /// The session.
        key: SessionKey,
        /// The class of the failure.
        class: FailureClass,
        /// One line, without secrets.
        message: String,
        /// No new attempt before this instant while the stored token is valid.
        next_attempt_at: Option<Timestamp>,
    },
    /// The stored, still valid token was served after a failure.
    ServedStoredAfterFailure {
        /// The session.
        key: SessionKey,
        /// Its expiry, if known.
        expires_at: Option<Timestamp>,
        /// The class of the failure.
        class: FailureClass,
        /// The failure in one line, without secrets.
        message: String,
    },
    /// The provider's lifetime is shorter than the caller's minimum validity.
    ShorterThanAsked {
        /// The session.
        key: SessionKey,
        /// The token's expiry.
        expires_at: Option<Timestamp>,
    },
    /// The provider rejected the stored refresh token; the tokens were removed.
    SessionEnded {
        /// The session.
        key: SessionKey,
    },
    /// A refresh succeeded at the provider but its result could not be saved,
    /// even after retrying; no token was handed out.
    NotSaved {
        /// The session.
        key: SessionKey,
        /// Why, naming the file or store and the system's error.
        message: String,
    },
    /// Something advisory could not be recorded (a failure's health entry, the
    /// issuer's clock skew); the session and its tokens are unaffected.
    NotRecorded {
        /// The session.
        key: SessionKey,
        /// What was not recorded.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// Provider metadata could not be cached; the next process discovers again.
    CacheNotWritten {
        /// Why.
        message: String,
    },
    /// The token has expired and the provider asked (`Retry-After`) not to be
    /// contacted before `until`; no request was made.
    WaitingForProvider {
        /// The session.
        key: SessionKey,
        /// The provider's instant.
        until: Timestamp,
    },
    /// A new login is needed.
    LoginRequired {
        /// The session.
        key: SessionKey,
        /// Why.
        reason: LoginReason,
    },
}

/// Receives events. Must be cheap: it is called on the warm path too.
pub type EventSink = std::sync::Arc<dyn Fn(&Event) + Send + Sync>;
