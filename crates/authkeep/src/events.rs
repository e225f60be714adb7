//! What the coordinator reports as it works (DESIGN.md §6). The CLI turns events
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
    /// The stored token was served although a refresh was due, because the session
    /// cannot renew itself, its provider gives no expiry, or a back-off is running.
    ServedWithoutRefresh {
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
    /// Another writer refreshed the session meanwhile; its result is used.
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
