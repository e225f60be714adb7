//! When each account is next due for a refresh, and the plain columns kept
//! beside its sealed record so that queries need no decryption. Pure: a
//! function of the record, the account id, the schedule and `now`.
//!
//! `due_at = min(expires_at − window − jitter, refresh_expires_at − margin,
//! obtained_at + keep_alive)`, never before the next allowed attempt of a
//! back-off, and none at all when the account needs a login or cannot renew
//! itself. The window and the margin shrink to a share of the token's (or
//! refresh token's) lifetime, so that a short-lived token is not due the
//! moment it is obtained. The jitter is a share of the window fixed per account
//! (a hash of its id), so computing it again gives the same instant and the
//! accounts of one bulk login spread out.

use authkeep::{ExpirySource, FailureClass, Record, SessionKey};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest as _, Sha256};

/// How far ahead of expiry accounts are due; set on the store
/// ([`crate::DbOptions::schedule`]).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Schedule {
    /// Due this long before the access token expires (default 5 minutes), at
    /// most `lifetime_fraction` of its lifetime.
    pub window: SignedDuration,
    /// The largest share of a token's lifetime the window (and the refresh
    /// token margin) may take (default 0.5).
    pub lifetime_fraction: f64,
    /// Up to this share of the window is added to it, fixed per account
    /// (default 0.2).
    pub jitter_fraction: f64,
    /// Due at the latest this long after the tokens were obtained, to keep
    /// refresh tokens that die when idle alive (default: none).
    pub keep_alive: Option<SignedDuration>,
    /// Due this long before a refresh token that has an expiry dies (default
    /// 1 hour), at most `lifetime_fraction` of its lifetime.
    pub refresh_token_margin: SignedDuration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            window: SignedDuration::from_mins(5),
            lifetime_fraction: 0.5,
            jitter_fraction: 0.2,
            keep_alive: None,
            refresh_token_margin: SignedDuration::from_hours(1),
        }
    }
}

impl Schedule {
    /// The default schedule with a window of `window`.
    pub fn with_window(mut self, window: SignedDuration) -> Self {
        self.window = window;
        self
    }

    /// With up to this share of the window as jitter (0 to 1).
    pub fn with_jitter_fraction(mut self, fraction: f64) -> Self {
        self.jitter_fraction = fraction;
        self
    }

    /// Due at the latest `keep_alive` after the tokens were obtained.
    pub fn with_keep_alive(mut self, keep_alive: Option<SignedDuration>) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Due `margin` before a refresh token with an expiry dies.
    pub fn with_refresh_token_margin(mut self, margin: SignedDuration) -> Self {
        self.refresh_token_margin = margin;
        self
    }

    /// When the account is next due, or `None` when it is never due by itself
    /// (it needs a login or cannot renew).
    pub fn due_at(&self, id: &SessionKey, record: &Record, now: Timestamp) -> Option<Timestamp> {
        let tokens = record.tokens.as_ref()?;
        if needs_login(record, now) || !record.can_renew() {
            return None;
        }
        let fraction = share(self.lifetime_fraction, 0.5);
        let mut due: Option<Timestamp> = None;
        let mut consider = |at: Option<Timestamp>| {
            if let Some(at) = at {
                due = Some(due.map_or(at, |d| d.min(at)));
            }
        };
        if tokens.access_token.is_empty() {
            consider(Some(now));
        }
        match tokens.expires_at {
            Some(expires_at) => {
                let window = shrink(self.window, tokens.lifetime(), fraction);
                let jitter = scale(window, share(self.jitter_fraction, 0.0) * unit(id));
                consider(sub(expires_at, window.saturating_add(jitter)));
            }
            // Never learned: refreshing learns it.
            None if tokens.expiry_source == ExpirySource::Unknown => consider(Some(now)),
            None => {}
        }
        if let Some(refresh_expires_at) = tokens.refresh_expires_at
            && !record.renews_by_grant()
        {
            let lifetime = refresh_expires_at.duration_since(tokens.obtained_at);
            let lifetime = lifetime.is_positive().then_some(lifetime);
            let margin = shrink(self.refresh_token_margin, lifetime, fraction);
            consider(sub(refresh_expires_at, margin));
        }
        if let Some(keep_alive) = self.keep_alive {
            consider(tokens.obtained_at.checked_add(keep_alive).ok());
        }
        let health = &record.health;
        // The record's back-off yields once the token has expired (a caller
        // with nothing valid may try at once); a scheduler keeps backing off.
        let backing_off = health
            .last_error
            .as_ref()
            .filter(|_| health.consecutive_failures > 0)
            .and_then(|e| e.at.checked_add(back_off(health.consecutive_failures)).ok());
        let not_before = health
            .next_attempt_at
            .max(health.retry_after)
            .max(backing_off);
        due.map(|due| not_before.map_or(due, |nb| due.max(nb)))
    }
}

/// What an account amounts to for overviews and counts; unlike
/// [`authkeep::SessionState`] it does not change by itself as time passes
/// (except that [`AccountState::NeedsLogin`] is judged when it is written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AccountState {
    /// It renews itself and its last attempt succeeded.
    Active,
    /// It renews itself, but its last attempts failed (transient or
    /// misconfiguration); it is retried with back-off.
    Failing,
    /// It holds a token but cannot renew it (no refresh token).
    CannotRenew,
    /// A new login is needed: no tokens, the session ended, the refresh
    /// token expired, or the provider asked for interaction.
    NeedsLogin,
}

impl AccountState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Active => "active",
            AccountState::Failing => "failing",
            AccountState::CannotRenew => "cannot_renew",
            AccountState::NeedsLogin => "needs_login",
        }
    }

    /// The state of that name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            AccountState::Active,
            AccountState::Failing,
            AccountState::CannotRenew,
            AccountState::NeedsLogin,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// The state of `record` at `now`.
    pub fn of(record: &Record, now: Timestamp) -> Self {
        if needs_login(record, now) {
            AccountState::NeedsLogin
        } else if !record.can_renew() {
            AccountState::CannotRenew
        } else if record.health.consecutive_failures > 0 {
            AccountState::Failing
        } else {
            AccountState::Active
        }
    }
}

/// Whether nothing but a new login helps: no tokens; the provider asked for
/// interaction; the refresh token has expired; or the token cannot be renewed
/// and has expired (or is empty).
pub(crate) fn needs_login(record: &Record, now: Timestamp) -> bool {
    let Some(tokens) = record.tokens.as_ref() else {
        return true;
    };
    let interaction = record
        .health
        .last_error
        .as_ref()
        .is_some_and(|e| e.class == FailureClass::InteractionRequired);
    let refresh_dead = !record.renews_by_grant()
        && tokens.refresh_token.is_some()
        && tokens.refresh_expires_at.is_some_and(|at| now >= at);
    let dead_end = !record.can_renew() && !tokens.is_usable(now);
    interaction || refresh_dead || dead_end
}

/// The plain columns of an account row, derived from its record at each write.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Derived {
    pub state: Option<&'static str>,
    pub expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub obtained_at: Option<i64>,
    pub needs_login: i64,
    pub last_success_at: Option<i64>,
    pub last_error_class: Option<&'static str>,
    pub last_error_code: Option<String>,
    pub last_error_at: Option<i64>,
    pub consecutive_failures: i64,
    pub next_attempt_at: Option<i64>,
    /// In milliseconds (the other instants are in seconds).
    pub due_at_ms: Option<i64>,
}

impl Derived {
    pub(crate) fn of(
        id: &SessionKey,
        record: &Record,
        schedule: &Schedule,
        now: Timestamp,
    ) -> Self {
        let tokens = record.tokens.as_ref();
        let health = &record.health;
        let secs = |t: Timestamp| t.as_second();
        let state = AccountState::of(record, now);
        Derived {
            state: Some(state.as_str()),
            expires_at: tokens.and_then(|t| t.expires_at).map(secs),
            refresh_expires_at: tokens.and_then(|t| t.refresh_expires_at).map(secs),
            obtained_at: tokens.map(|t| secs(t.obtained_at)),
            needs_login: i64::from(state == AccountState::NeedsLogin),
            last_success_at: health.last_success_at.map(secs),
            last_error_class: health.last_error.as_ref().map(|e| e.class.as_str()),
            last_error_code: health
                .last_error
                .as_ref()
                .and_then(|e| error_code(&e.message)),
            last_error_at: health.last_error.as_ref().map(|e| secs(e.at)),
            consecutive_failures: i64::from(health.consecutive_failures),
            next_attempt_at: health.next_attempt_at.map(secs),
            due_at_ms: schedule.due_at(id, record, now).map(|t| t.as_millisecond()),
        }
    }
}

/// The error code a failure's one-line message starts with (an OAuth code
/// such as `invalid_grant`, or `HTTP 503` as `http_503`), if it does: at most
/// 64 of `[a-z0-9_]`, so that nothing else of the provider's text is kept.
/// A message the library composed around the provider's answer ("the
/// provider rejected its refresh token: invalid_grant (HTTP 400): …") has it
/// after its first ": ", which is tried when the start has no code; nothing
/// later is, as that is the provider's own text.
pub fn error_code(message: &str) -> Option<String> {
    code_at_start(message).or_else(|| {
        message
            .split_once(": ")
            .and_then(|(_, answer)| code_at_start(answer))
    })
}

fn code_at_start(message: &str) -> Option<String> {
    if let Some(status) = message.strip_prefix("HTTP ") {
        let digits: String = status.chars().take_while(char::is_ascii_digit).collect();
        return (digits.len() == 3).then(|| format!("http_{digits}"));
    }
    let word: String = message
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let ends_well =
        message[word.len()..].is_empty() || message[word.len()..].starts_with([' ', ':', '(']);
    let is_code = (3..=64).contains(&word.len())
        && word.contains('_')
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (is_code && ends_well).then_some(word)
}

/// The scheduler's pause after `failures` failures in a row: 30 s doubling
/// to 15 minutes (the library's back-off without its jitter).
fn back_off(failures: u32) -> SignedDuration {
    let doublings = failures.saturating_sub(1).min(5);
    SignedDuration::from_secs((30i64 << doublings).min(900))
}

/// `value` if it is a share (0 to 1), else `default`.
fn share(value: f64, default: f64) -> f64 {
    if (0.0..=1.0).contains(&value) {
        value
    } else {
        default
    }
}

/// `limit`, shrunk to `fraction` of `lifetime` when that is known and shorter.
fn shrink(
    limit: SignedDuration,
    lifetime: Option<SignedDuration>,
    fraction: f64,
) -> SignedDuration {
    let limit = limit.max(SignedDuration::ZERO);
    match lifetime {
        Some(lifetime) => limit.min(scale(lifetime, fraction)),
        None => limit,
    }
}

fn scale(duration: SignedDuration, factor: f64) -> SignedDuration {
    SignedDuration::try_from_secs_f64(duration.as_secs_f64() * factor)
        .unwrap_or(SignedDuration::ZERO)
        .max(SignedDuration::ZERO)
}

fn sub(at: Timestamp, by: SignedDuration) -> Option<Timestamp> {
    Some(at.checked_sub(by).unwrap_or(Timestamp::MIN))
}

/// A number in `[0, 1)` fixed by the account id.
fn unit(id: &SessionKey) -> f64 {
    let digest = Sha256::digest(id.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits: exactly representable.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use authkeep::{AccessToken, Client, Failure, Origin, RefreshToken, Renewal, TokenSet};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn key(id: &str) -> SessionKey {
        SessionKey::account(id).unwrap()
    }

    fn record(lifetime_secs: i64, refresh: bool) -> Record {
        let obtained = at("2026-06-01T12:00:00Z");
        Record {
            client: Some(Client::new("https://idp.example", "app")),
            tokens: Some(TokenSet {
                access_token: AccessToken::new("at"),
                token_type: "Bearer".into(),
                refresh_token: refresh.then(|| RefreshToken::new("rt")),
                scope: None,
                id_token: None,
                expires_at: Some(obtained + SignedDuration::from_secs(lifetime_secs)),
                issued_at: Some(obtained),
                refresh_expires_at: None,
                expiry_source: ExpirySource::ExpiresIn,
                obtained_at: obtained,
                origin: Origin::Refresh,
            }),
            ..Record::default()
        }
    }

    #[test]
    fn due_a_window_before_expiry_with_a_stable_jitter_per_account() {
        let schedule = Schedule::default();
        let now = at("2026-06-01T12:00:00Z");
        let expiry = at("2026-06-01T13:00:00Z");
        let one = schedule
            .due_at(&key("alice"), &record(3600, true), now)
            .unwrap();
        let again = schedule
            .due_at(&key("alice"), &record(3600, true), now)
            .unwrap();
        assert_eq!(one, again, "the jitter is fixed per account");
        let before = expiry.duration_since(one).as_secs();
        assert!((300..=360).contains(&before), "{before}");
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|i| schedule.due_at(&key(&format!("u{i}")), &record(3600, true), now))
            .collect();
        assert!(spread.len() > 40, "accounts spread out: {}", spread.len());
        let exact = schedule.with_jitter_fraction(0.0);
        assert_eq!(
            exact.due_at(&key("alice"), &record(3600, true), now),
            Some(expiry - SignedDuration::from_mins(5))
        );
    }

    #[test]
    fn a_short_lived_token_is_not_due_the_moment_it_is_obtained() {
        let schedule = Schedule::default().with_jitter_fraction(0.0);
        let now = at("2026-06-01T12:00:00Z");
        // 60 s lifetime: the 5-minute window shrinks to half of it.
        assert_eq!(
            schedule.due_at(&key("a"), &record(60, true), now),
            Some(now + SignedDuration::from_secs(30))
        );
    }

    #[test]
    fn refresh_token_expiry_keep_alive_and_back_off_move_the_due_instant() {
        let schedule = Schedule::default().with_jitter_fraction(0.0);
        let now = at("2026-06-01T12:00:00Z");
        let mut r = record(3600, true);
        if let Some(t) = r.tokens.as_mut() {
            t.refresh_expires_at = Some(now + SignedDuration::from_mins(40));
        }
        // The refresh token dies first: due 20 minutes in (the margin is at
        // most half its 40-minute life).
        assert_eq!(
            schedule.due_at(&key("a"), &r, now),
            Some(now + SignedDuration::from_mins(20))
        );
        let kept = schedule.with_keep_alive(Some(SignedDuration::from_mins(10)));
        assert_eq!(
            kept.due_at(&key("a"), &r, now),
            Some(now + SignedDuration::from_mins(10))
        );
        r.health.next_attempt_at = Some(now + SignedDuration::from_mins(30));
        assert_eq!(
            kept.due_at(&key("a"), &r, now),
            Some(now + SignedDuration::from_mins(30)),
            "back-off pushes it"
        );
    }

    #[test]
    fn failures_after_expiry_still_back_off() {
        let schedule = Schedule::default().with_jitter_fraction(0.0);
        let now = at("2026-06-01T14:00:00Z");
        let mut r = record(3600, true);
        for (failures, pause) in [(1, 30), (2, 60), (3, 120), (9, 900)] {
            r.health.consecutive_failures = failures;
            r.health.next_attempt_at = Some(at("2026-06-01T13:00:00Z"));
            r.health.last_error = Some(Failure {
                class: FailureClass::Transient,
                message: "HTTP 503".into(),
                at: now,
            });
            assert_eq!(
                schedule.due_at(&key("a"), &r, now),
                Some(now + SignedDuration::from_secs(pause)),
                "{failures} failures"
            );
        }
    }

    #[test]
    fn never_due_when_it_cannot_renew_or_needs_a_login() {
        let schedule = Schedule::default();
        let now = at("2026-06-01T12:00:00Z");
        let no_refresh = record(3600, false);
        assert_eq!(schedule.due_at(&key("a"), &no_refresh, now), None);
        assert_eq!(
            AccountState::of(&no_refresh, now),
            AccountState::CannotRenew
        );
        let later = now + SignedDuration::from_hours(2);
        assert_eq!(
            AccountState::of(&no_refresh, later),
            AccountState::NeedsLogin
        );

        let mut ended = record(3600, true);
        ended.tokens = None;
        assert_eq!(schedule.due_at(&key("a"), &ended, now), None);
        assert_eq!(AccountState::of(&ended, now), AccountState::NeedsLogin);

        let mut interaction = record(3600, true);
        interaction.health.last_error = Some(Failure {
            class: FailureClass::InteractionRequired,
            message: "interaction_required (HTTP 400)".into(),
            at: now,
        });
        assert_eq!(schedule.due_at(&key("a"), &interaction, now), None);
        assert_eq!(
            AccountState::of(&interaction, now),
            AccountState::NeedsLogin
        );

        let mut grant = record(3600, false);
        grant.client = grant
            .client
            .map(|c| c.with_renewal(Renewal::ClientCredentials));
        assert!(schedule.due_at(&key("a"), &grant, now).is_some());
        assert_eq!(AccountState::of(&grant, now), AccountState::Active);
    }

    #[test]
    fn unknown_expiry_is_due_at_once_and_extreme_settings_do_not_overflow() {
        let now = at("2026-06-01T12:00:00Z");
        let mut r = record(3600, true);
        if let Some(t) = r.tokens.as_mut() {
            t.expires_at = None;
            t.expiry_source = ExpirySource::Unknown;
        }
        assert_eq!(Schedule::default().due_at(&key("a"), &r, now), Some(now));
        if let Some(t) = r.tokens.as_mut() {
            t.expiry_source = ExpirySource::ProviderGivesNone;
        }
        assert_eq!(Schedule::default().due_at(&key("a"), &r, now), None);
        let extreme = Schedule {
            window: SignedDuration::MAX,
            lifetime_fraction: f64::NAN,
            jitter_fraction: 7.0,
            keep_alive: Some(SignedDuration::MAX),
            refresh_token_margin: SignedDuration::MIN,
        };
        let mut long = record(i64::from(i32::MAX), true);
        if let Some(t) = long.tokens.as_mut() {
            t.refresh_expires_at = Some(Timestamp::MAX);
        }
        assert!(extreme.due_at(&key("a"), &long, now).is_some());
    }

    #[test]
    fn error_codes_keep_only_the_code() {
        assert_eq!(
            error_code("invalid_grant (HTTP 400): Token is expired").as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            error_code("temporarily_unavailable").as_deref(),
            Some("temporarily_unavailable")
        );
        assert_eq!(error_code("HTTP 503").as_deref(), Some("http_503"));
        assert_eq!(error_code("connection refused"), None);
        assert_eq!(error_code("Bad_Thing: x"), None);
        assert_eq!(error_code("secret_abc123xyz=more"), None);
        assert_eq!(
            error_code(
                "the provider rejected its refresh token: invalid_grant (HTTP 400): grant revoked"
            )
            .as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            error_code("the provider rejected its refresh token: HTTP 401").as_deref(),
            Some("http_401")
        );
        assert_eq!(
            error_code("no answer: connection refused: user_not_found"),
            None
        );
    }
}
