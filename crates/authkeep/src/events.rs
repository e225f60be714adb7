//! What the coordinator reports as it works (docs/DESIGN.md §6). The CLI turns
//! events into status lines on stderr; an agent turns them into metrics; a
//! desktop app into "logged in / logged out". No event carries a secret, and
//! none is a sentence: each is typed, for the program to word.

use std::time::Duration;

use jiff::Timestamp;

use crate::error::FailureClass;
use crate::oauth::Cause;
use crate::policy::{LoginReason, RefreshReason};
use crate::session::SessionKey;
use crate::token::TokenSet;

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
    /// The stored token was served without a refresh, for `reason`.
    ServedStored {
        /// The session.
        key: SessionKey,
        /// Its expiry, if known.
        expires_at: Option<Timestamp>,
        /// Why.
        reason: Stored,
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
        /// Where it arose.
        cause: Cause,
        /// One line, without secrets.
        message: String,
        /// No new attempt before this instant while the stored token is valid.
        next_attempt_at: Option<Timestamp>,
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
    /// A refresh succeeded at the provider but its result could not be saved,
    /// even after retrying; no token was handed out.
    NotSaved {
        /// The session.
        key: SessionKey,
        /// Why, naming the file or store and the system's error.
        message: String,
    },
    /// Something advisory could not be recorded; the session and its tokens are
    /// unaffected.
    NotRecorded {
        /// The session.
        key: SessionKey,
        /// What was not recorded.
        what: Unrecorded,
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
}

/// Why the stored token was served without a refresh.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Stored {
    /// The session cannot renew itself (no usable refresh token): normal
    /// operation for such a session.
    CannotRenew,
    /// A refresh was forced, but the session cannot renew itself.
    CannotRenewForced,
    /// The token does not stay valid as long as asked, and the session cannot
    /// renew itself.
    CannotRenewShort,
    /// The provider gives no expiry for this token; it is used until a server
    /// rejects it.
    NoExpiryFromProvider,
    /// A refresh is due, but the last one failed; no new attempt before `until`.
    BackingOff {
        /// The next attempt.
        until: Timestamp,
    },
    /// A refresh is due, but another process held the session's lock for the
    /// whole lock wait.
    LockTimeout {
        /// How long we waited.
        waited: Duration,
    },
    /// The refresh just failed; the stored token is still valid.
    AfterFailure {
        /// The class of the failure.
        class: FailureClass,
        /// Where it arose.
        cause: Cause,
        /// The failure in one line, without secrets.
        message: String,
    },
}

impl Stored {
    /// Whether serving the stored token for this reason deserves a warning:
    /// something the caller would want (a refresh) did not happen.
    pub fn is_warning(&self) -> bool {
        !matches!(self, Stored::CannotRenew | Stored::NoExpiryFromProvider)
    }
}

/// Advisory state that was not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unrecorded {
    /// A failed refresh in the session's health.
    Failure,
    /// The issuer's clock skew.
    ClockSkew,
}

/// Receives events. Must be cheap: it is called on the warm path too.
pub type EventSink = std::sync::Arc<dyn Fn(&Event) + Send + Sync>;

/// What changed in a session's tokens, for programs that keep their own copy,
/// show "logged in / logged out", or must react to a new token.
///
/// `tokens` is the new token set (`None` once the session ended or was logged
/// out). Its `Debug` shows no secret; its secrets are reached, as everywhere,
/// through `expose_secret()`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TokenChange {
    /// The session.
    pub key: SessionKey,
    /// What happened.
    pub kind: ChangeKind,
    /// The session's tokens from now on.
    pub tokens: Option<TokenSet>,
}

/// What happened to a session's tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A login or import stored new tokens.
    LoggedIn,
    /// A refresh stored new tokens.
    Refreshed,
    /// The provider rejected the refresh token; the tokens were removed.
    Ended,
    /// The session was logged out.
    LoggedOut,
}

/// Receives token changes, after they are saved.
pub type ChangeSink = std::sync::Arc<dyn Fn(&TokenChange) + Send + Sync>;
