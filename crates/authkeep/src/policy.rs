//! The refresh decision: a pure function of the record, the policy, the caller's
//! demand and `now` (docs/DESIGN.md §2). It does no I/O and reads no clock; the
//! coordinator acts on the decision and reports its reason. Every instant it
//! computes saturates rather than overflows: records and providers may carry any
//! instant jiff can represent, and a policy any duration.

use jiff::{SignedDuration, Timestamp};

use crate::error::FailureClass;
use crate::session::Record;
use crate::token::{ExpirySource, TokenSet, saturating_add, saturating_sub};

/// How early to refresh, and how long tokens without an expiry may live.
///
/// ```
/// # use authkeep::Policy;
/// # use jiff::SignedDuration;
/// let policy = Policy::default().with_threshold(SignedDuration::from_mins(10));
/// assert_eq!(policy.window(Some(SignedDuration::from_hours(1))), SignedDuration::from_mins(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Policy {
    /// Ceiling of the refresh window (default 5 minutes, no upper limit).
    pub threshold: SignedDuration,
    /// The window as a share of the token's lifetime (default 0.5).
    pub fraction: f64,
    /// Refresh a token whose provider gives no expiry once it is this old.
    pub max_age: Option<SignedDuration>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            threshold: SignedDuration::from_mins(5),
            fraction: 0.5,
            max_age: None,
        }
    }
}

impl Policy {
    /// The window's ceiling (no practical upper limit).
    pub fn with_threshold(mut self, threshold: SignedDuration) -> Self {
        self.threshold = threshold;
        self
    }

    /// The window as a share of the token's lifetime, from 0 to 1.
    pub fn with_fraction(mut self, fraction: f64) -> Self {
        self.fraction = fraction;
        self
    }

    /// Refresh a token whose provider gives no expiry once it is this old.
    pub fn with_max_age(mut self, max_age: SignedDuration) -> Self {
        self.max_age = Some(max_age);
        self
    }
}

/// What one caller asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Demand {
    /// The token handed out must stay valid at least this long.
    pub min_valid: Option<SignedDuration>,
    /// Refresh now, whatever the expiry says.
    pub force: bool,
}

impl Demand {
    /// A usable token, refreshed only when the policy says so.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token handed out must stay valid at least this long.
    pub fn min_valid(mut self, min_valid: SignedDuration) -> Self {
        self.min_valid = Some(min_valid);
        self
    }

    /// Refresh now (a refresh made moments ago by anyone satisfies it).
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }
}

/// Why a refresh is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshReason {
    /// The access token is missing or empty.
    NoAccessToken,
    /// Inside the refresh window.
    NearExpiry,
    /// Inside the window the caller's `min_valid` asks for.
    MinValid,
    /// Expired.
    Expired,
    /// The expiry was never learned.
    UnknownExpiry,
    /// The provider gives no expiry and the configured maximum age has passed.
    MaxAge,
    /// The caller forced it.
    Forced,
}

/// Why the stored token is handed out as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UseReason {
    /// Valid and outside the refresh window.
    Valid,
    /// Inside the window, or of unknown expiry, but the session cannot renew itself.
    CannotRenew,
    /// The provider gives no expiry; used until a server rejects it.
    NoExpiryFromProvider,
    /// Obtained from the provider moments ago; its lifetime is shorter than the
    /// caller's `min_valid`, and refreshing again would not help.
    ShorterThanAsked,
    /// A refresh is due but the last failure asked us to wait until this instant.
    BackingOff(Timestamp),
}

/// Why a new login is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginReason {
    /// No record, or a record that never held tokens.
    NoSession,
    /// The provider rejected the session's refresh token; its tokens were
    /// removed.
    SessionEnded,
    /// A resource server rejected the access token and the session cannot
    /// renew itself.
    TokenRejected,
    /// The access token has expired, and the provider's last answer said the
    /// user must sign in again (MFA, consent, re-authentication).
    InteractionRequired,
    /// The access token expired and the session cannot renew itself.
    ExpiredCannotRenew,
    /// The refresh token itself has expired.
    RefreshTokenExpired,
}

/// What to do for one request for a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Hand out the stored token without any network request.
    UseStored(UseReason),
    /// Refresh; `fallback` says whether the stored token may be served if the
    /// refresh fails transiently (it is still valid).
    Refresh {
        /// Why.
        reason: RefreshReason,
        /// Whether the stored token is still valid to fall back on.
        fallback: bool,
    },
    /// No usable token and no way to renew: log in.
    RequireLogin(LoginReason),
    /// The token has expired and a refresh is due, but the provider asked us
    /// (`Retry-After`) not to come back before this instant.
    WaitForProvider(Timestamp),
}

/// What a session's record amounts to at an instant, for overviews such as a
/// status listing: the same decisions as getting a token, without acting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// No record, or one that never held tokens.
    None,
    /// The provider ended the session (its refresh token was rejected).
    Ended,
    /// The access token is usable.
    Valid,
    /// The access token is not usable, but the session can renew itself.
    ExpiredRenewable,
    /// A new login is needed: no usable token and no way to renew, or the
    /// provider asked for interaction.
    LoginRequired,
}

impl SessionState {
    /// The name used in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::None => "none",
            SessionState::Ended => "ended",
            SessionState::Valid => "valid",
            SessionState::ExpiredRenewable => "expired_renewable",
            SessionState::LoginRequired => "login_required",
        }
    }

    /// Whether the user must log in before a token can be had.
    pub fn needs_login(self) -> bool {
        matches!(
            self,
            SessionState::None | SessionState::Ended | SessionState::LoginRequired
        )
    }
}

impl Policy {
    /// The state of a session at `now`.
    pub fn state(&self, record: Option<&Record>, now: Timestamp) -> SessionState {
        let Some(record) = record else {
            return SessionState::None;
        };
        let last_class = record.health.last_error.as_ref().map(|e| e.class);
        let Some(tokens) = record.tokens.as_ref() else {
            return if last_class == Some(FailureClass::SessionDead) {
                SessionState::Ended
            } else {
                SessionState::None
            };
        };
        match self.decide(Some(record), Demand::default(), now) {
            Decision::RequireLogin(_) => SessionState::LoginRequired,
            _ if tokens.is_usable(now) => SessionState::Valid,
            // The provider asked for interaction: renewing will not work until
            // a login.
            _ if last_class == Some(FailureClass::InteractionRequired) => {
                SessionState::LoginRequired
            }
            _ => SessionState::ExpiredRenewable,
        }
    }

    /// The refresh window for a token of this lifetime:
    /// `min(threshold, lifetime × fraction)`, or the threshold when the lifetime is
    /// unknown.
    pub fn window(&self, lifetime: Option<SignedDuration>) -> SignedDuration {
        // A negative threshold or a share outside 0..=1 (NaN included) is a
        // caller's mistake; it is read as the nearest sensible value.
        let threshold = self.threshold.max(SignedDuration::ZERO);
        let fraction = if self.fraction.is_nan() {
            Policy::default().fraction
        } else {
            self.fraction.clamp(0.0, 1.0)
        };
        match lifetime {
            Some(lifetime) => {
                let share = SignedDuration::try_from_secs_f64(lifetime.as_secs_f64() * fraction)
                    .unwrap_or(threshold);
                share.min(threshold)
            }
            None => threshold,
        }
    }

    /// Decides what to do for `demand` given `record` at `now`.
    pub fn decide(&self, record: Option<&Record>, demand: Demand, now: Timestamp) -> Decision {
        let Some(record) = record else {
            return Decision::RequireLogin(LoginReason::NoSession);
        };
        let Some(tokens) = record.tokens.as_ref() else {
            let ended = record
                .health
                .last_error
                .as_ref()
                .is_some_and(|e| e.class == FailureClass::SessionDead);
            return Decision::RequireLogin(if ended {
                LoginReason::SessionEnded
            } else {
                LoginReason::NoSession
            });
        };
        // A repeated grant needs no refresh token, so no refresh token's expiry
        // limits it.
        let refresh_alive = record.can_renew()
            && (record.renews_by_grant() || tokens.refresh_expires_at.is_none_or(|at| now < at));
        let decision = self.decide_tokens(tokens, record.can_renew(), refresh_alive, demand, now);
        let health = &record.health;
        match decision {
            // A recorded back-off postpones a refresh the stored token can cover.
            Decision::Refresh { fallback: true, .. }
                if !demand.force && health.next_attempt_at.is_some_and(|until| now < until) =>
            {
                Decision::UseStored(UseReason::BackingOff(health.next_attempt_at.unwrap_or(now)))
            }
            // Once the token has expired only the provider's own `Retry-After`
            // still holds; authkeep's back-off yields to the next call.
            Decision::Refresh {
                fallback: false, ..
            } if !demand.force && health.retry_after.is_some_and(|until| now < until) => {
                Decision::WaitForProvider(health.retry_after.unwrap_or(now))
            }
            // The provider said the user must sign in again (MFA, consent,
            // Google's re-authentication): once the token has expired, asking
            // again only repeats the answer. A new login clears it; a forced
            // refresh tries anyway.
            Decision::Refresh {
                fallback: false, ..
            } if !demand.force
                && health
                    .last_error
                    .as_ref()
                    .is_some_and(|e| e.class == FailureClass::InteractionRequired) =>
            {
                Decision::RequireLogin(LoginReason::InteractionRequired)
            }
            decision => decision,
        }
    }

    fn decide_tokens(
        &self,
        tokens: &TokenSet,
        can_renew: bool,
        refresh_alive: bool,
        demand: Demand,
        now: Timestamp,
    ) -> Decision {
        let refresh_or_login = |reason, fallback, otherwise| {
            if refresh_alive {
                Decision::Refresh { reason, fallback }
            } else if can_renew && !fallback {
                Decision::RequireLogin(LoginReason::RefreshTokenExpired)
            } else {
                otherwise
            }
        };
        if tokens.access_token.is_empty() {
            return refresh_or_login(
                RefreshReason::NoAccessToken,
                false,
                Decision::RequireLogin(LoginReason::NoSession),
            );
        }
        if tokens.is_expired(now) {
            return refresh_or_login(
                RefreshReason::Expired,
                false,
                Decision::RequireLogin(LoginReason::ExpiredCannotRenew),
            );
        }
        let cannot_renew = Decision::UseStored(UseReason::CannotRenew);
        if demand.force {
            return refresh_or_login(RefreshReason::Forced, true, cannot_renew);
        }
        let Some(expires_at) = tokens.expires_at else {
            return match tokens.expiry_source {
                ExpirySource::ProviderGivesNone => {
                    let too_old = self
                        .max_age
                        .is_some_and(|age| now >= saturating_add(tokens.obtained_at, age));
                    if too_old {
                        refresh_or_login(RefreshReason::MaxAge, true, cannot_renew)
                    } else {
                        Decision::UseStored(UseReason::NoExpiryFromProvider)
                    }
                }
                _ => refresh_or_login(RefreshReason::UnknownExpiry, true, cannot_renew),
            };
        };
        let lifetime = tokens.lifetime();
        let window = self.window(lifetime);
        if now < saturating_sub(expires_at, window) {
            let Some(min_valid) = demand.min_valid.filter(|m| *m > window) else {
                return Decision::UseStored(UseReason::Valid);
            };
            if now < saturating_sub(expires_at, min_valid) {
                return Decision::UseStored(UseReason::Valid);
            }
            // Only `min_valid` asks for a refresh. A token the provider issued
            // moments ago (within a tenth of its lifetime) would come back no
            // longer: serve it and say so, rather than refresh in a loop.
            let fresh = tokens.origin.from_provider()
                && lifetime.is_some_and(|l| now < saturating_add(tokens.obtained_at, l / 10));
            if fresh {
                return Decision::UseStored(UseReason::ShorterThanAsked);
            }
            return refresh_or_login(RefreshReason::MinValid, true, cannot_renew);
        }
        refresh_or_login(RefreshReason::NearExpiry, true, cannot_renew)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{AccessToken, RefreshToken};
    use crate::session::{Client, Health};
    use crate::token::Origin;

    const NOW: &str = "2026-06-01T12:00:00Z";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn now() -> Timestamp {
        ts(NOW)
    }

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    /// A record whose access token was issued `age` ago and expires `left` from now.
    fn record(access: &str, left: Option<i64>, lifetime: i64, refresh: bool) -> Record {
        let expires_at = left.map(|l| now() + secs(l));
        let issued_at = expires_at.map(|e| e - secs(lifetime));
        Record {
            client: Some(Client {
                issuer: "https://idp.example".into(),
                client_id: "c".into(),
                ..Default::default()
            }),
            tokens: Some(TokenSet {
                access_token: AccessToken::new(access),
                token_type: "Bearer".into(),
                refresh_token: refresh.then(|| RefreshToken::new("rt")),
                scope: None,
                id_token: None,
                expires_at,
                issued_at,
                refresh_expires_at: None,
                expiry_source: if left.is_some() {
                    ExpirySource::ExpiresIn
                } else {
                    ExpirySource::Unknown
                },
                obtained_at: issued_at.unwrap_or(now() - secs(3600)),
                origin: Origin::Import,
            }),
            health: Health::default(),
            clock_skew_secs: None,
        }
    }

    fn decide(record: &Record) -> Decision {
        Policy::default().decide(Some(record), Demand::default(), now())
    }

    use Decision::*;

    #[test]
    fn decision_table_row_by_row() {
        // Lifetime 3600 s: window = min(300 s, 1800 s) = 300 s.
        let rows: Vec<(&str, Record, Decision)> = vec![
            (
                "empty access, refresh",
                record("", Some(1000), 3600, true),
                Refresh {
                    reason: RefreshReason::NoAccessToken,
                    fallback: false,
                },
            ),
            (
                "empty access, no refresh",
                record("", Some(1000), 3600, false),
                RequireLogin(LoginReason::NoSession),
            ),
            (
                "outside window, refresh",
                record("at", Some(301), 3600, true),
                UseStored(UseReason::Valid),
            ),
            (
                "outside window, no refresh",
                record("at", Some(301), 3600, false),
                UseStored(UseReason::Valid),
            ),
            (
                "inside window, refresh",
                record("at", Some(300), 3600, true),
                Refresh {
                    reason: RefreshReason::NearExpiry,
                    fallback: true,
                },
            ),
            (
                "inside window, no refresh",
                record("at", Some(1), 3600, false),
                UseStored(UseReason::CannotRenew),
            ),
            (
                "expired at the instant, refresh",
                record("at", Some(0), 3600, true),
                Refresh {
                    reason: RefreshReason::Expired,
                    fallback: false,
                },
            ),
            (
                "expired, no refresh",
                record("at", Some(-10), 3600, false),
                RequireLogin(LoginReason::ExpiredCannotRenew),
            ),
            (
                "unknown expiry, refresh",
                record("at", None, 3600, true),
                Refresh {
                    reason: RefreshReason::UnknownExpiry,
                    fallback: true,
                },
            ),
            (
                "unknown expiry, no refresh",
                record("at", None, 3600, false),
                UseStored(UseReason::CannotRenew),
            ),
        ];
        for (name, rec, expected) in rows {
            assert_eq!(decide(&rec), expected, "{name}");
        }
    }

    #[test]
    fn boundaries_of_the_window_and_of_expiry() {
        // Exactly at expires_at − window: inside (refresh); one second earlier: outside.
        assert!(matches!(
            decide(&record("at", Some(300), 3600, true)),
            Refresh { .. }
        ));
        assert_eq!(
            decide(&record("at", Some(301), 3600, true)),
            UseStored(UseReason::Valid)
        );
        // Exactly at expires_at: expired, no fallback.
        assert_eq!(
            decide(&record("at", Some(0), 3600, true)),
            Refresh {
                reason: RefreshReason::Expired,
                fallback: false
            }
        );
        assert_eq!(
            decide(&record("at", Some(1), 3600, true)),
            Refresh {
                reason: RefreshReason::NearExpiry,
                fallback: true
            }
        );
    }

    #[test]
    fn window_is_min_of_threshold_and_share_of_lifetime() {
        let policy = Policy::default();
        assert_eq!(policy.window(Some(secs(3600))), secs(300));
        assert_eq!(policy.window(Some(secs(120))), secs(60));
        assert_eq!(policy.window(None), secs(300));
        let long = Policy {
            threshold: SignedDuration::from_hours(48),
            ..Policy::default()
        };
        assert_eq!(
            long.window(Some(SignedDuration::from_hours(240))),
            SignedDuration::from_hours(48)
        );
        // Short token: lifetime 120 s → window 60 s.
        assert_eq!(
            decide(&record("at", Some(61), 120, true)),
            UseStored(UseReason::Valid)
        );
        assert!(matches!(
            decide(&record("at", Some(60), 120, true)),
            Refresh { .. }
        ));
    }

    #[test]
    fn no_record_or_ended_session_requires_login() {
        assert_eq!(
            Policy::default().decide(None, Demand::default(), now()),
            RequireLogin(LoginReason::NoSession)
        );
        let mut ended = record("at", Some(1000), 3600, true);
        ended.tokens = None;
        assert_eq!(decide(&ended), RequireLogin(LoginReason::NoSession));
    }

    #[test]
    fn min_valid_widens_the_window() {
        let rec = record("at", Some(600), 3600, true);
        let demand = Demand {
            min_valid: Some(SignedDuration::from_mins(10)),
            force: false,
        };
        assert_eq!(
            Policy::default().decide(Some(&rec), demand, now()),
            Refresh {
                reason: RefreshReason::MinValid,
                fallback: true
            }
        );
        let demand = Demand {
            min_valid: Some(secs(599)),
            force: false,
        };
        assert_eq!(
            Policy::default().decide(Some(&rec), demand, now()),
            UseStored(UseReason::Valid)
        );
    }

    #[test]
    fn a_token_just_obtained_is_not_refreshed_again_for_min_valid() {
        // Provider lifetime 15 minutes, obtained 30 s ago, caller asks for 20 minutes.
        let mut rec = record("at", Some(870), 900, true);
        let tokens = rec.tokens.as_mut().unwrap();
        tokens.origin = Origin::Refresh;
        let demand = Demand {
            min_valid: Some(SignedDuration::from_mins(20)),
            force: false,
        };
        assert_eq!(
            Policy::default().decide(Some(&rec), demand, now()),
            UseStored(UseReason::ShorterThanAsked)
        );
        // An import of the same age gets no such exemption.
        rec.tokens.as_mut().unwrap().origin = Origin::Import;
        assert_eq!(
            Policy::default().decide(Some(&rec), demand, now()),
            Refresh {
                reason: RefreshReason::MinValid,
                fallback: true
            }
        );
    }

    #[test]
    fn force_refreshes_a_valid_token_and_ignores_back_off() {
        let mut rec = record("at", Some(3000), 3600, true);
        rec.health.next_attempt_at = Some(now() + secs(60));
        let demand = Demand {
            force: true,
            ..Demand::default()
        };
        assert_eq!(
            Policy::default().decide(Some(&rec), demand, now()),
            Refresh {
                reason: RefreshReason::Forced,
                fallback: true
            }
        );
    }

    #[test]
    fn back_off_postpones_only_while_the_token_is_valid() {
        let mut rec = record("at", Some(100), 3600, true);
        let until = now() + secs(30);
        rec.health.next_attempt_at = Some(until);
        assert_eq!(decide(&rec), UseStored(UseReason::BackingOff(until)));
        rec.health.next_attempt_at = Some(now());
        assert!(matches!(decide(&rec), Refresh { .. }));
        let mut expired = record("at", Some(-1), 3600, true);
        expired.health.next_attempt_at = Some(now() + secs(30));
        assert_eq!(
            decide(&expired),
            Refresh {
                reason: RefreshReason::Expired,
                fallback: false
            }
        );
    }

    #[test]
    fn a_providers_retry_after_holds_after_expiry_but_not_against_force() {
        let mut expired = record("at", Some(-1), 3600, true);
        let until = now() + secs(120);
        expired.health.retry_after = Some(until);
        // authkeep's own back-off, capped at the expiry, has passed.
        expired.health.next_attempt_at = Some(now() - secs(1));
        assert_eq!(decide(&expired), WaitForProvider(until));
        let forced = Demand {
            force: true,
            ..Demand::default()
        };
        assert_eq!(
            Policy::default().decide(Some(&expired), forced, now()),
            Refresh {
                reason: RefreshReason::Expired,
                fallback: false
            }
        );
        expired.health.retry_after = Some(now());
        assert!(matches!(decide(&expired), Refresh { .. }), "it has passed");
    }

    #[test]
    fn an_expired_token_after_interaction_required_needs_a_login_without_a_request() {
        use crate::error::FailureClass;
        use crate::session::Failure;
        let mut rec = record("at", Some(-1), 3600, true);
        rec.health.last_error = Some(Failure {
            class: FailureClass::InteractionRequired,
            message: "invalid_rapt".into(),
            at: now(),
        });
        assert_eq!(decide(&rec), RequireLogin(LoginReason::InteractionRequired));
        let forced = Demand::new().force();
        assert!(matches!(
            Policy::default().decide(Some(&rec), forced, now()),
            Refresh { .. }
        ));
        // While the token is valid, the usual back-off applies instead.
        let mut valid = record("at", Some(100), 3600, true);
        valid.health = rec.health.clone();
        assert!(matches!(decide(&valid), Refresh { .. }));
    }

    #[test]
    fn a_session_state_is_what_getting_a_token_would_find() {
        use crate::error::FailureClass;
        use crate::session::Failure;
        let policy = Policy::default();
        let state = |r: &Record| policy.state(Some(r), now());
        assert_eq!(policy.state(None, now()), SessionState::None);
        assert_eq!(
            state(&record("at", Some(100), 3600, true)),
            SessionState::Valid
        );
        assert_eq!(
            state(&record("at", Some(-1), 3600, true)),
            SessionState::ExpiredRenewable
        );
        assert_eq!(
            state(&record("at", Some(-1), 3600, false)),
            SessionState::LoginRequired
        );
        let mut refresh_expired = record("at", Some(-1), 3600, true);
        refresh_expired.tokens.as_mut().unwrap().refresh_expires_at = Some(now() - secs(1));
        assert_eq!(state(&refresh_expired), SessionState::LoginRequired);
        assert!(state(&refresh_expired).needs_login());
        let mut ended = record("at", Some(100), 3600, true);
        ended.tokens = None;
        ended.health.last_error = Some(Failure {
            class: FailureClass::SessionDead,
            message: String::new(),
            at: now(),
        });
        assert_eq!(state(&ended), SessionState::Ended);
    }

    #[test]
    fn a_nonsensical_policy_is_read_as_the_nearest_sensible_one() {
        let negative = Policy {
            threshold: secs(-10),
            ..Policy::default()
        };
        assert_eq!(negative.window(Some(secs(3600))), SignedDuration::ZERO);
        for fraction in [f64::NAN, f64::INFINITY, -1.0, 7.0] {
            let odd = Policy {
                fraction,
                ..Policy::default()
            };
            let window = odd.window(Some(secs(100)));
            assert!(
                window >= SignedDuration::ZERO && window <= secs(100),
                "{fraction}: {window:?}"
            );
        }
        let huge = Policy {
            threshold: SignedDuration::MAX,
            ..Policy::default()
        };
        let rec = record("at", Some(100), 3600, true);
        assert!(matches!(
            huge.decide(Some(&rec), Demand::default(), now()),
            Refresh { .. }
        ));
    }

    #[test]
    fn expired_refresh_token_means_login_without_a_doomed_attempt() {
        let mut rec = record("at", Some(-1), 3600, true);
        rec.tokens.as_mut().unwrap().refresh_expires_at = Some(now() - secs(1));
        assert_eq!(decide(&rec), RequireLogin(LoginReason::RefreshTokenExpired));
        // Still valid access token inside the window: serve it.
        let mut rec = record("at", Some(10), 3600, true);
        rec.tokens.as_mut().unwrap().refresh_expires_at = Some(now());
        assert_eq!(decide(&rec), UseStored(UseReason::CannotRenew));
    }

    #[test]
    fn provider_without_expiry_is_not_refreshed_on_every_call() {
        let mut rec = record("at", None, 3600, true);
        rec.tokens.as_mut().unwrap().expiry_source = ExpirySource::ProviderGivesNone;
        assert_eq!(decide(&rec), UseStored(UseReason::NoExpiryFromProvider));
        let policy = Policy {
            max_age: Some(SignedDuration::from_mins(30)),
            ..Policy::default()
        };
        assert_eq!(
            policy.decide(Some(&rec), Demand::default(), now()),
            Refresh {
                reason: RefreshReason::MaxAge,
                fallback: true
            }
        );
    }

    /// docs/DESIGN.md §2: a grant that can simply be repeated counts as
    /// "refresh token present", row by row.
    #[test]
    fn a_client_credentials_session_is_decided_as_one_with_a_refresh_token() {
        let by_grant = |access: &str, left: Option<i64>| {
            let mut rec = record(access, left, 3600, false);
            rec.client = rec
                .client
                .map(|c| c.with_renewal(crate::session::Renewal::ClientCredentials));
            rec
        };
        for (access, left) in [
            ("", Some(1000)),
            ("at", Some(1000)),
            ("at", Some(100)),
            ("at", Some(0)),
            ("at", None),
        ] {
            let with_refresh_token = decide(&record(access, left, 3600, true));
            assert_eq!(
                decide(&by_grant(access, left)),
                with_refresh_token,
                "{access:?} {left:?}"
            );
        }
        assert!(matches!(
            decide(&by_grant("at", Some(-1))),
            Refresh {
                reason: RefreshReason::Expired,
                fallback: false
            }
        ));
        // No refresh token's expiry limits a repeated grant.
        let mut rec = by_grant("at", Some(-1));
        rec.tokens.as_mut().unwrap().refresh_expires_at = Some(now() - secs(1));
        assert!(matches!(decide(&rec), Refresh { .. }));
    }
}
