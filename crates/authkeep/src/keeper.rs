//! The coordinator: policy, store, lock and protocol put together (docs/DESIGN.md §3).
//!
//! Getting a token for a session:
//! 1. read the record without a lock and decide; "use the stored token" returns
//!    at once (the warm path: no HTTP client, no name resolution, no network);
//! 2. otherwise join the in-process single flight for the session: concurrent
//!    callers share one attempt and its result, a token or a classified failure;
//! 3. the flight's leader takes the session's cross-process lock; while another
//!    process holds it, it waits for the release and re-reads the record, which
//!    usually holds the other process's result;
//! 4. under the lock, re-read and decide again;
//! 5. refresh, and write the result with the next generation before anyone sees
//!    the new access token; a write that fails is retried briefly and then
//!    reported, never passed over.
//!
//! Only an `invalid_grant` for the refresh token the store still holds ends a
//! session; every other failure keeps it, serving the stored token while it is
//! valid.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use url::Url;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, FailureClass, StoreError};
use crate::events::{Event, EventSink};
use crate::http::{HttpClient, HttpSettings};
use crate::oauth::discovery::{self, DiscoveryError, Metadata};
use crate::oauth::response::{ProviderFailure, date, parse_token_response};
use crate::oauth::{check_endpoint, refresh};
use crate::policy::{Decision, Demand, LoginReason, Policy, UseReason};
use crate::secret::AccessToken;
use crate::session::{Client, Failure, Health, Record, SessionKey, Versioned};
use crate::shield::Shield;
use crate::store::Store;
use crate::token::{
    Origin, TokenResponse, TokenSet, format_instant, saturating_add, saturating_sub, truncate,
};

/// A refresh that another writer made this recently satisfies `--force-refresh`.
const FORCE_COALESCE_WINDOW: SignedDuration = SignedDuration::from_secs(10);
/// A clock difference beyond this is recorded and applied.
const SKEW_TOLERANCE_SECS: i64 = 60;
/// Pauses between attempts to save a refresh's result: a full disk or a
/// briefly unavailable store may clear within a second or so.
const SAVE_RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
];
/// How often a caller takes part in a new flight when the one it shared did
/// not serve its purpose (a rejected token came back, a forced refresh was
/// shared with a caller that did not force).
const FLIGHT_ROUNDS: usize = 3;

/// How the coordinator behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// When to refresh.
    pub policy: Policy,
    /// Longest wait for another process's refresh.
    pub lock_timeout: Duration,
    /// Network settings.
    pub http: HttpSettings,
    /// Where provider metadata is cached between processes (`None`: in memory).
    pub discovery_cache_dir: Option<PathBuf>,
    /// How long cached provider metadata is used.
    pub discovery_ttl: SignedDuration,
    /// What to tell a user who must log in; `{profile}` is replaced.
    pub login_hint: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            lock_timeout: Duration::from_secs(30),
            http: HttpSettings::default(),
            discovery_cache_dir: None,
            discovery_ttl: SignedDuration::from_hours(24),
            login_hint: "log in again".into(),
        }
    }
}

/// An access token handed out.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    /// The token.
    pub access_token: AccessToken,
    /// Its type, usually `Bearer`.
    pub token_type: String,
    /// Its expiry, if known.
    pub expires_at: Option<Timestamp>,
    /// Whether this call (or the attempt it shared) refreshed it.
    pub refreshed: bool,
}

impl Served {
    fn from_tokens(tokens: &TokenSet, refreshed: bool) -> Self {
        Self {
            access_token: tokens.access_token.clone(),
            token_type: tokens.token_type.clone(),
            expires_at: tokens.expires_at,
            refreshed,
        }
    }
}

/// What started a refresh, re-evaluated once the lock is held.
#[derive(Clone, Debug)]
enum Trigger {
    /// A caller's demand; `seen` is the generation it read without the lock.
    Demand { demand: Demand, seen: Option<u64> },
    /// A resource server rejected this access token.
    Rejected(AccessToken),
}

impl Trigger {
    /// Whether the result of an attempt that another caller led also serves
    /// this one. A failure always does: it is the session's state, and trying
    /// again at once would only repeat it.
    fn served_by(&self, result: &Result<Served, Error>) -> bool {
        let Ok(served) = result else {
            return true;
        };
        match self {
            Trigger::Rejected(rejected) => served.access_token != *rejected,
            Trigger::Demand { demand, .. } => !demand.force || served.refreshed,
        }
    }

    fn rejected(&self) -> Option<&AccessToken> {
        match self {
            Trigger::Rejected(token) => Some(token),
            Trigger::Demand { .. } => None,
        }
    }

    fn demand(&self) -> Demand {
        match self {
            Trigger::Demand { demand, .. } => *demand,
            Trigger::Rejected(_) => Demand::default(),
        }
    }
}

/// A successful refresh, not yet stored.
struct Refreshed {
    response: TokenResponse,
    sent_at: Timestamp,
    skew_secs: Option<i64>,
}

/// The outcome of one attempt, shared by every caller that joined it.
type Outcome = Result<Served, Error>;

/// The attempts in progress, one per session at most.
#[derive(Default)]
struct Flights(Mutex<HashMap<SessionKey, watch::Receiver<Option<Outcome>>>>);

/// A caller's part in a flight.
enum Role {
    /// Runs the attempt and publishes its outcome.
    Lead(watch::Sender<Option<Outcome>>),
    /// Waits for the leader's outcome.
    Follow(watch::Receiver<Option<Outcome>>),
}

impl Flights {
    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SessionKey, watch::Receiver<Option<Outcome>>>> {
        // Every critical section is one lookup, insert or remove: a panic cannot
        // leave the map half-updated.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the flight for `key`, or starts one.
    fn join(&self, key: &SessionKey) -> Role {
        let mut map = self.map();
        if let Some(rx) = map.get(key)
            && rx.borrow().is_none()
            && rx.has_changed().is_ok()
        {
            return Role::Follow(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx);
        Role::Lead(tx)
    }

    /// Ends the leader's flight: it is forgotten first, so that a caller arriving
    /// from now on starts over from the store, then its followers get the outcome.
    fn land(&self, key: &SessionKey, tx: &watch::Sender<Option<Outcome>>, outcome: &Outcome) {
        self.forget(key, tx);
        tx.send_replace(Some(outcome.clone()));
    }

    fn forget(&self, key: &SessionKey, tx: &watch::Sender<Option<Outcome>>) {
        let mut map = self.map();
        if map
            .get(key)
            .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
        {
            map.remove(key);
        }
    }
}

/// Forgets a flight whose leader was dropped before it landed, so that its
/// followers (woken by the closed channel) start a new one.
struct Takeoff<'a> {
    flights: &'a Flights,
    key: &'a SessionKey,
    tx: watch::Sender<Option<Outcome>>,
}

impl Drop for Takeoff<'_> {
    fn drop(&mut self) {
        self.flights.forget(self.key, &self.tx);
    }
}

/// Keeps sessions alive: hands out access tokens, refreshing them when due.
pub struct Keeper<S: Store> {
    store: S,
    settings: Settings,
    clock: Arc<dyn Clock>,
    events: Option<EventSink>,
    http: tokio::sync::OnceCell<HttpClient>,
    flights: Flights,
    shield: Shield,
    metadata: Mutex<HashMap<String, (Metadata, Timestamp)>>,
}

impl<S: Store> std::fmt::Debug for Keeper<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Keeper<S> {
    /// A keeper over `store` with the system clock and no event sink.
    pub fn new(store: S, settings: Settings) -> Self {
        Self {
            store,
            settings,
            clock: Arc::new(SystemClock),
            events: None,
            http: tokio::sync::OnceCell::new(),
            flights: Flights::default(),
            shield: Shield::default(),
            metadata: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sends events to `sink`.
    pub fn with_events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Says whether a refresh's result is outstanding (sent but not yet saved),
    /// so that a program can put off exiting until it is saved.
    pub fn shield(&self) -> &Shield {
        &self.shield
    }

    /// The current instant, from the injected clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn emit(&self, event: Event) {
        if let Some(sink) = &self.events {
            sink(&event);
        }
    }

    /// Reads a session, with the instants its provider's clock gave moved onto
    /// ours by the issuer's last measured clock skew.
    async fn load(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        let mut loaded = self.store.load(key).await?;
        if let Some(versioned) = loaded.as_mut()
            && versioned.record.expiry_on_provider_clock()
            && let Some(client) = versioned.record.client.as_ref()
            && let Some(skew) = self.store.issuer_skew(&client.issuer).await?
        {
            versioned.record.apply_issuer_skew(skew);
        }
        Ok(loaded)
    }

    /// A usable access token for the session, refreshing it if the policy says so.
    pub async fn token(&self, key: &SessionKey, demand: Demand) -> Result<Served, Error> {
        let now = self.clock.now();
        let loaded = self.load(key).await?;
        let decision = self
            .settings
            .policy
            .decide(loaded.as_ref().map(|v| &v.record), demand, now);
        if !matches!(decision, Decision::Refresh { .. }) {
            return self.conclude(key, loaded.as_ref(), decision, demand, now);
        }
        let seen = loaded.as_ref().map(|v| v.generation);
        self.refresh_coordinated(key, Trigger::Demand { demand, seen })
            .await
    }

    /// A resource server rejected `rejected` (a 401): refresh only if the store
    /// still holds that token; otherwise someone already refreshed, and the stored
    /// token is returned without a network request. The rejected token itself is
    /// never returned: when it cannot be replaced, the error says why.
    pub async fn token_after_rejection(
        &self,
        key: &SessionKey,
        rejected: &AccessToken,
    ) -> Result<Served, Error> {
        let now = self.clock.now();
        let loaded = self.load(key).await?;
        if let Some(tokens) = loaded.as_ref().and_then(|v| v.record.tokens.as_ref())
            && tokens.access_token != *rejected
        {
            let decision = self.settings.policy.decide(
                loaded.as_ref().map(|v| &v.record),
                Demand::default(),
                now,
            );
            if matches!(decision, Decision::UseStored(_)) {
                return self.conclude(key, loaded.as_ref(), decision, Demand::default(), now);
            }
        }
        self.refresh_coordinated(key, Trigger::Rejected(rejected.clone()))
            .await
    }

    /// Stores a session obtained by a login or an import, under the session's lock,
    /// continuing its generation. The token set's expiry is inferred from `now`,
    /// with the issuer's clock skew applied where the provider's clock gave it.
    pub async fn store_login(
        &self,
        key: &SessionKey,
        client: Client,
        response: TokenResponse,
        origin: Origin,
    ) -> Result<Versioned, Error> {
        let guard = self.lock(key).await?;
        let current = self.store.load(key).await?;
        let skew = self.store.issuer_skew(&client.issuer).await?;
        let now = self.clock.now();
        let mut health = Health::default();
        health.record_success(truncate(now));
        let record = Record {
            client: Some(client),
            tokens: Some(response.into_token_set(
                now,
                origin,
                SignedDuration::from_secs(skew.unwrap_or(0)),
            )),
            health,
            clock_skew_secs: skew.filter(|s| *s != 0),
        };
        let generation = self
            .store
            .write(&guard, current.map(|v| v.generation), &record)
            .await?;
        Ok(Versioned { generation, record })
    }

    /// Removes a session under its lock. Returns whether there was one. The
    /// generation is remembered, so a later login continues it.
    pub async fn logout(&self, key: &SessionKey) -> Result<bool, Error> {
        let guard = self.lock(key).await?;
        match self.store.load(key).await? {
            Some(current) => {
                self.store.remove(&guard, current.generation).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn lock(&self, key: &SessionKey) -> Result<S::Guard, StoreError> {
        let on_wait = || self.emit(Event::WaitingForLock { key: key.clone() });
        self.store
            .lock(key, self.settings.lock_timeout, on_wait)
            .await
    }

    /// Step 2: the in-process single flight. One caller leads the attempt; the
    /// others wait for its outcome, so the lock wait and the refresh happen once
    /// for all of them.
    async fn refresh_coordinated(&self, key: &SessionKey, trigger: Trigger) -> Outcome {
        let mut rounds = 0;
        loop {
            let outcome = match self.flights.join(key) {
                Role::Lead(tx) => {
                    let takeoff = Takeoff {
                        flights: &self.flights,
                        key,
                        tx,
                    };
                    let outcome = self.lead(key, &trigger).await;
                    self.flights.land(key, &takeoff.tx, &outcome);
                    // Whatever this caller asked for, it was asked of this attempt.
                    return outcome;
                }
                Role::Follow(mut rx) => match rx.wait_for(Option::is_some).await.map(|o| o.clone())
                {
                    Ok(Some(outcome)) => outcome,
                    // The leader was dropped before it landed (`wait_for` returns
                    // only a landed outcome otherwise): start over.
                    Ok(None) | Err(_) => continue,
                },
            };
            rounds += 1;
            if trigger.served_by(&outcome) {
                return outcome;
            }
            if rounds >= FLIGHT_ROUNDS {
                return self.unserved(key, &trigger, outcome);
            }
        }
    }

    /// What a caller gets when the attempts it shared never served its purpose.
    fn unserved(&self, key: &SessionKey, trigger: &Trigger, outcome: Outcome) -> Outcome {
        match trigger {
            Trigger::Rejected(_) => Err(Error::Transient {
                message: format!(
                    "a server rejected the access token of profile {key}, and no newer one could be obtained yet; try again"
                ),
            }),
            Trigger::Demand { .. } => outcome,
        }
    }

    /// Step 3: the flight's leader takes the cross-process lock. While another
    /// process holds it, the leader waits for the release and re-reads the
    /// record without taking a turn: usually the holder's result is there. The
    /// wait is bounded once, by the lock time-out, for the whole attempt.
    async fn lead(&self, key: &SessionKey, trigger: &Trigger) -> Outcome {
        let wait = self.settings.lock_timeout;
        let deadline = std::time::Instant::now().checked_add(wait);
        let mut announced = false;
        loop {
            if let Some(guard) = self.store.try_lock(key).await? {
                return self.refresh_locked(key, &guard, trigger).await;
            }
            if !std::mem::replace(&mut announced, true) {
                self.emit(Event::WaitingForLock { key: key.clone() });
            }
            let left = deadline.map_or(wait, |d| {
                d.saturating_duration_since(std::time::Instant::now())
            });
            if left.is_zero() || !self.store.wait_for_release(key, left).await? {
                return self.lock_timed_out(key, trigger).await;
            }
            let now = self.clock.now();
            let current = self.load(key).await?;
            let demand = self.demand_under_lock(trigger, current.as_ref(), now);
            let decision =
                self.settings
                    .policy
                    .decide(current.as_ref().map(|v| &v.record), demand, now);
            if !matches!(decision, Decision::Refresh { .. }) {
                if matches!(decision, Decision::UseStored(UseReason::Valid)) {
                    self.emit(Event::UsedNewerSession { key: key.clone() });
                }
                return self.conclude_for(key, trigger, current.as_ref(), decision, now);
            }
        }
    }

    /// The lock wait ran out: the stored token if it is still valid (and not the
    /// one a server rejected), else a retryable error.
    async fn lock_timed_out(&self, key: &SessionKey, trigger: &Trigger) -> Outcome {
        let timeout = StoreError::LockTimeout {
            key: key.to_string(),
            waited_secs: self.settings.lock_timeout.as_secs(),
        };
        let now = self.clock.now();
        let loaded = self.load(key).await?;
        if let Some(tokens) = loaded.as_ref().and_then(|v| v.record.tokens.as_ref())
            && tokens.is_usable(now)
            && trigger.rejected() != Some(&tokens.access_token)
        {
            self.emit(Event::ServedWithoutRefresh {
                key: key.clone(),
                why: format!("it is still valid, but {timeout}"),
            });
            return Ok(Served::from_tokens(tokens, false));
        }
        Err(timeout.into())
    }

    /// Steps 4 and 5, under the lock.
    async fn refresh_locked(
        &self,
        key: &SessionKey,
        guard: &S::Guard,
        trigger: &Trigger,
    ) -> Outcome {
        // A session whose refresh token a foreign writer replaced while we were
        // refreshing is tried again with the newer token, at most this often.
        let mut newer_sessions_left = 2;
        let seen = match trigger {
            Trigger::Demand { seen, .. } => *seen,
            Trigger::Rejected(_) => None,
        };
        loop {
            let now = self.clock.now();
            let current = self.load(key).await?;
            let demand = self.demand_under_lock(trigger, current.as_ref(), now);
            // A forced refresh that a fresh enough session satisfied.
            let shared = trigger.demand().force && !demand.force && trigger.rejected().is_none();
            let decision =
                self.settings
                    .policy
                    .decide(current.as_ref().map(|v| &v.record), demand, now);
            let (current, reason, fallback) = match (current, decision) {
                (Some(current), Decision::Refresh { reason, fallback }) => {
                    (current, reason, fallback)
                }
                (current, decision) => {
                    let changed = seen.is_some() && current.as_ref().map(|v| v.generation) != seen;
                    if shared || changed {
                        self.emit(Event::UsedNewerSession { key: key.clone() });
                    }
                    let mut outcome =
                        self.conclude_for(key, trigger, current.as_ref(), decision, now);
                    if shared && let Ok(served) = outcome.as_mut() {
                        // The session was refreshed moments ago: that is the
                        // refresh the caller forced.
                        served.refreshed = true;
                    }
                    return outcome;
                }
            };
            self.emit(Event::Refreshing {
                key: key.clone(),
                reason,
            });
            let known_skew = self.known_skew(key, &current.record).await;
            // From the request until its result is saved, an exit would lose the
            // session: the shield lets the program put off exiting.
            let _section = self.shield.enter();
            let failure = match self.attempt(&current.record).await {
                Ok(refreshed) => {
                    return self
                        .store_refreshed(key, guard, current, refreshed, known_skew, trigger)
                        .await;
                }
                Err(failure) => failure,
            };
            if failure.class != FailureClass::SessionDead {
                return self
                    .keep_after_failure(key, guard, current, failure, fallback, trigger)
                    .await;
            }
            // invalid_grant: first re-read; another writer may have rotated the token.
            let latest = self.store.load(key).await?;
            let rejected = current
                .record
                .tokens
                .as_ref()
                .and_then(|t| t.refresh_token.as_ref());
            let stored = latest
                .as_ref()
                .and_then(|v| v.record.tokens.as_ref())
                .and_then(|t| t.refresh_token.as_ref());
            if stored != rejected && newer_sessions_left > 0 {
                newer_sessions_left -= 1;
                self.emit(Event::UsedNewerSession { key: key.clone() });
                continue;
            }
            match latest {
                Some(latest) if stored == rejected => {
                    return self.end_session(key, guard, latest, &failure).await;
                }
                _ => {
                    return Err(Error::Transient {
                        message: format!(
                            "the session for profile {key} kept changing while it was being refreshed; try again"
                        ),
                    });
                }
            }
        }
    }

    /// The demand to decide with once the lock is held: a forced refresh is
    /// satisfied by one the provider answered moments ago, whether it happened
    /// while we waited or just before we started (forcing again would hand out a
    /// token no fresher, and a caller that forces on every rejection would
    /// refresh on every call); a rejected token forces a refresh only while the
    /// store still holds it.
    fn demand_under_lock(
        &self,
        trigger: &Trigger,
        current: Option<&Versioned>,
        now: Timestamp,
    ) -> Demand {
        let tokens = current.and_then(|v| v.record.tokens.as_ref());
        match trigger {
            Trigger::Demand { demand, .. } => {
                let refreshed_moments_ago = tokens.is_some_and(|t| {
                    t.origin.from_provider()
                        && t.obtained_at <= now
                        && now < saturating_add(t.obtained_at, FORCE_COALESCE_WINDOW)
                });
                Demand {
                    force: demand.force && !refreshed_moments_ago,
                    ..*demand
                }
            }
            Trigger::Rejected(rejected) => Demand {
                force: tokens.is_some_and(|t| t.access_token == *rejected),
                ..Demand::default()
            },
        }
    }

    /// [`Self::conclude`] for a trigger: a server's rejected token is never
    /// handed back as a success.
    fn conclude_for(
        &self,
        key: &SessionKey,
        trigger: &Trigger,
        loaded: Option<&Versioned>,
        decision: Decision,
        now: Timestamp,
    ) -> Outcome {
        let served = self.conclude(key, loaded, decision, trigger.demand(), now)?;
        if trigger.rejected() == Some(&served.access_token) {
            return Err(Error::LoginRequired {
                message: format!(
                    "a server rejected the access token of profile {key}, and the session cannot renew itself; {}",
                    self.hint(key)
                ),
            });
        }
        Ok(served)
    }

    /// Turns a decision that needs no network into a result, with its event.
    fn conclude(
        &self,
        key: &SessionKey,
        loaded: Option<&Versioned>,
        decision: Decision,
        demand: Demand,
        now: Timestamp,
    ) -> Outcome {
        let record = loaded.map(|v| &v.record);
        let tokens = record.and_then(|r| r.tokens.as_ref());
        match (decision, tokens) {
            (Decision::UseStored(reason), Some(tokens)) => {
                let expires_at = tokens.expires_at;
                let event = match reason {
                    UseReason::Valid => Event::Valid {
                        key: key.clone(),
                        expires_at,
                    },
                    UseReason::ShorterThanAsked => Event::ShorterThanAsked {
                        key: key.clone(),
                        expires_at,
                    },
                    UseReason::CannotRenew => self.cannot_renew_event(key, tokens, demand, now),
                    UseReason::NoExpiryFromProvider => Event::ServedAsIs {
                        key: key.clone(),
                        why: "the provider gives no expiry for this token".into(),
                    },
                    UseReason::BackingOff(until) => Event::ServedWithoutRefresh {
                        key: key.clone(),
                        why: format!(
                            "a refresh is due but the last one failed; next attempt after {}",
                            format_instant(until)
                        ),
                    },
                };
                self.emit(event);
                Ok(Served::from_tokens(tokens, false))
            }
            (Decision::RequireLogin(reason), _) => {
                self.emit(Event::LoginRequired {
                    key: key.clone(),
                    reason,
                });
                Err(self.login_required(key, reason, record, now))
            }
            (Decision::WaitForProvider(until), _) => {
                self.emit(Event::WaitingForProvider {
                    key: key.clone(),
                    until,
                });
                Err(Error::Transient {
                    message: format!(
                        "the access token of profile {key} has expired, and the provider asked not to be contacted again before {}; try again then",
                        format_instant(until)
                    ),
                })
            }
            // Refresh is never concluded here; UseStored implies tokens. Either
            // would be a bug in the policy, reported rather than panicking.
            (decision, _) => Err(Error::Transient {
                message: format!("internal error: cannot conclude {decision:?} for profile {key}"),
            }),
        }
    }

    /// The stored token is served as is because the session cannot renew
    /// itself: normal operation, unless the caller asked for more than it has.
    fn cannot_renew_event(
        &self,
        key: &SessionKey,
        tokens: &TokenSet,
        demand: Demand,
        now: Timestamp,
    ) -> Event {
        let short = demand.min_valid.is_some_and(|min| {
            tokens
                .expires_at
                .is_some_and(|at| saturating_sub(at, min) <= now)
        });
        let asked = match (demand.force, short) {
            (true, _) => Some("a refresh was forced"),
            (false, true) => Some("it does not stay valid as long as asked"),
            (false, false) => None,
        };
        match asked {
            Some(asked) => Event::ServedWithoutRefresh {
                key: key.clone(),
                why: format!(
                    "{asked}, but the session cannot renew itself (no usable refresh token)"
                ),
            },
            None => Event::ServedAsIs {
                key: key.clone(),
                why: "the session cannot renew itself (no usable refresh token)".into(),
            },
        }
    }

    fn hint(&self, key: &SessionKey) -> String {
        self.settings.login_hint.replace("{profile}", key.as_str())
    }

    fn login_required(
        &self,
        key: &SessionKey,
        reason: LoginReason,
        record: Option<&Record>,
        now: Timestamp,
    ) -> Error {
        let ended = record
            .and_then(|r| r.health.last_error.as_ref())
            .filter(|e| e.class == FailureClass::SessionDead);
        let hint = self.hint(key);
        let message = match (reason, record, ended) {
            (LoginReason::NoSession, None, _) => format!("no session for profile {key}; {hint}"),
            (LoginReason::NoSession, Some(_), Some(ended)) => {
                format!(
                    "the session for profile {key} has ended ({}); {hint}",
                    ended.message
                )
            }
            (LoginReason::NoSession, Some(_), None) => {
                format!("profile {key} holds no tokens; {hint}")
            }
            (LoginReason::ExpiredCannotRenew, ..) => format!(
                "the access token of profile {key} expired{} and the session cannot renew itself; {hint}",
                expired_since(record, now)
            ),
            (LoginReason::RefreshTokenExpired, ..) => {
                format!("the refresh token of profile {key} has expired; {hint}")
            }
        };
        Error::LoginRequired { message }
    }

    /// One refresh request, discovery included, bounded by the step time-out.
    async fn attempt(&self, record: &Record) -> Result<Refreshed, ProviderFailure> {
        let (Some(client), Some(refresh_token)) = (
            record.client.as_ref(),
            record
                .tokens
                .as_ref()
                .and_then(|t| t.refresh_token.as_ref()),
        ) else {
            return Err(misconfigured(
                "the session has no client or refresh token to refresh with".into(),
            ));
        };
        let http = self
            .http
            .get_or_try_init(|| async { HttpClient::new(&self.settings.http) })
            .await
            .map_err(|e| misconfigured(e.to_string()))?;
        let timeout = self.settings.http.timeout;
        let step = async {
            let endpoint = self.token_endpoint(client, http).await?;
            let request =
                refresh::request(&endpoint, client, refresh_token).map_err(misconfigured)?;
            let sent_at = self.clock.now();
            let response = http
                .send(request)
                .await
                .map_err(|e| ProviderFailure::transport(e.to_string()))?;
            Ok::<_, ProviderFailure>((sent_at, response))
        };
        let (sent_at, response) = tokio::time::timeout(timeout, step).await.map_err(|_| {
            ProviderFailure::transport(format!("no answer within {} (--timeout)", human(timeout)))
        })??;
        let received = self.clock.now();
        let skew_secs = date(response.headers()).map(|provider_now| {
            provider_now
                .as_second()
                .saturating_sub(received.as_second())
        });
        let secrets = refresh::secrets(client, refresh_token);
        parse_token_response(&response, received, &secrets).map(|response| Refreshed {
            response,
            sent_at,
            skew_secs,
        })
    }

    /// The token endpoint: given explicitly, or from (cached) discovery.
    async fn token_endpoint(
        &self,
        client: &Client,
        http: &HttpClient,
    ) -> Result<Url, ProviderFailure> {
        let insecure = self.settings.http.allow_insecure_http;
        if let Some(explicit) = &client.token_endpoint {
            return check_endpoint(explicit, insecure).map_err(misconfigured);
        }
        check_endpoint(&client.issuer, insecure).map_err(misconfigured)?;
        let now = self.clock.now();
        let metadata = match self.cached_metadata(&client.issuer, now) {
            Some(metadata) => metadata,
            None => {
                let request = discovery::request(&client.issuer).map_err(misconfigured)?;
                let response = http
                    .send(request)
                    .await
                    .map_err(|e| ProviderFailure::transport(format!("discovery: {e}")))?;
                let metadata =
                    discovery::parse(&client.issuer, &response, insecure).map_err(|e| match e {
                        DiscoveryError::Transient(message) => ProviderFailure::transport(message),
                        DiscoveryError::Invalid(message) => misconfigured(message),
                    })?;
                self.cache_metadata(&metadata, now);
                metadata
            }
        };
        check_endpoint(&metadata.token_endpoint, insecure).map_err(misconfigured)
    }

    fn metadata_cache_path(&self, issuer: &str) -> Option<PathBuf> {
        let name: String = issuer
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.settings
            .discovery_cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{name}.json")))
    }

    fn cached_metadata(&self, issuer: &str, now: Timestamp) -> Option<Metadata> {
        let fresh =
            |fetched: Timestamp| now < fetched + self.settings.discovery_ttl && fetched <= now;
        let in_memory = {
            let memory = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
            memory
                .get(issuer)
                .filter(|(_, fetched)| fresh(*fetched))
                .map(|(m, _)| m.clone())
        };
        if in_memory.is_some() {
            return in_memory;
        }
        let bytes = std::fs::read(self.metadata_cache_path(issuer)?).ok()?;
        let cached: CachedMetadata = serde_json::from_slice(&bytes).ok()?;
        (cached.metadata.issuer == issuer && fresh(cached.fetched_at)).then_some(cached.metadata)
    }

    fn cache_metadata(&self, metadata: &Metadata, now: Timestamp) {
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(metadata.issuer.clone(), (metadata.clone(), now));
        if let (Some(path), Ok(bytes)) = (
            self.metadata_cache_path(&metadata.issuer),
            serde_json::to_vec(&CachedMetadata {
                fetched_at: truncate(now),
                metadata: metadata.clone(),
            }),
        ) && let Some(dir) = path.parent()
        {
            let written = crate::lock::create_private_dir(dir)
                .and_then(|()| crate::lock::write_atomically(&path, ".metadata.", &bytes));
            if let Err(e) = written {
                // A cache that cannot be written only costs a discovery next time.
                self.emit(Event::CacheNotWritten {
                    message: e.to_string(),
                });
            }
        }
    }

    /// Writes a successful refresh durably, then hands out its token. Between
    /// the answer and the journal the store writes first, nothing is read or
    /// written: that stretch is all a killed process can lose.
    async fn store_refreshed(
        &self,
        key: &SessionKey,
        guard: &S::Guard,
        current: Versioned,
        refreshed: Refreshed,
        known_skew: i64,
        trigger: &Trigger,
    ) -> Outcome {
        let mut record = current.record;
        let skew_secs = match refreshed.skew_secs {
            // Differences within the tolerance are the network's and the
            // clocks' resolution, not skew.
            Some(measured) if measured.abs() > SKEW_TOLERANCE_SECS => measured,
            Some(_) => 0,
            None => known_skew,
        };
        let previous = record.tokens.take();
        let mut tokens = refreshed.response.into_token_set(
            refreshed.sent_at,
            Origin::Refresh,
            SignedDuration::from_secs(skew_secs),
        );
        let mut rotated = true;
        if let Some(previous) = previous {
            if tokens.refresh_token.is_none() || tokens.refresh_token == previous.refresh_token {
                rotated = false;
                tokens.refresh_token = previous.refresh_token;
                tokens.refresh_expires_at =
                    tokens.refresh_expires_at.or(previous.refresh_expires_at);
            }
            tokens.scope = tokens.scope.or(previous.scope);
            tokens.id_token = tokens.id_token.or(previous.id_token);
        }
        let now = self.clock.now();
        // An access token that is empty or already expired is the provider's
        // fault: it is not handed out, but the refresh token that came with it
        // is saved all the same, since the old one may be used up.
        let unusable = (!tokens.is_usable(now)).then(|| {
            format!(
                "the provider answered the refresh with an access token that {}",
                match tokens.expires_at {
                    Some(at) if !tokens.access_token.is_empty() => {
                        format!("had already expired (at {})", format_instant(at))
                    }
                    _ => "is empty".to_owned(),
                }
            )
        });
        let valid_until = tokens.expires_at;
        record.tokens = Some(tokens);
        record.clock_skew_secs = (skew_secs != 0).then_some(skew_secs);
        match &unusable {
            None => record.health.record_success(truncate(now)),
            Some(message) => record.health.record_failure(
                Failure {
                    class: FailureClass::Transient,
                    message: message.clone(),
                    at: truncate(now),
                },
                None,
                valid_until,
            ),
        }
        if let Err(cause) = self.save(key, guard, current.generation, &mut record).await {
            self.emit(Event::NotSaved {
                key: key.clone(),
                message: cause.to_string(),
            });
            return Err(Error::NotSaved {
                key: key.to_string(),
                cause,
            });
        }
        if skew_secs != known_skew
            && let Some(client) = record.client.as_ref()
        {
            self.record_skew(key, &client.issuer, skew_secs).await;
        }
        let Some(tokens) = record.tokens.as_ref() else {
            // Set above; a record without tokens here would be a bug, reported
            // rather than panicking.
            return Err(Error::Transient {
                message: format!("internal error: refreshed profile {key} holds no tokens"),
            });
        };
        self.emit(Event::Refreshed {
            key: key.clone(),
            expires_at: tokens.expires_at,
            rotated,
        });
        if let Some(message) = unusable {
            self.emit(Event::RefreshFailed {
                key: key.clone(),
                class: FailureClass::Transient,
                message: message.clone(),
                next_attempt_at: record.health.next_attempt_at,
            });
            return Err(Error::Transient {
                message: format!(
                    "cannot refresh profile {key} now: {message}; the new refresh token was saved, try again later"
                ),
            });
        }
        let short = trigger.demand().min_valid.is_some_and(|min| {
            tokens
                .expires_at
                .is_some_and(|at| saturating_sub(at, min) <= now)
        });
        if short {
            self.emit(Event::ShorterThanAsked {
                key: key.clone(),
                expires_at: tokens.expires_at,
            });
        }
        Ok(Served::from_tokens(tokens, true))
    }

    /// The issuer's last measured clock skew (0 when never measured).
    async fn known_skew(&self, key: &SessionKey, record: &Record) -> i64 {
        let Some(client) = record.client.as_ref() else {
            return 0;
        };
        match self.store.issuer_skew(&client.issuer).await {
            Ok(known) => known.unwrap_or(0),
            Err(e) => {
                self.emit(Event::NotRecorded {
                    key: key.clone(),
                    what: "the issuer's clock skew",
                    message: e.to_string(),
                });
                0
            }
        }
    }

    /// Records a newly measured clock skew for the issuer, so that every session
    /// of it uses it.
    async fn record_skew(&self, key: &SessionKey, issuer: &str, skew_secs: i64) {
        if let Err(e) = self.store.set_issuer_skew(issuer, Some(skew_secs)).await {
            // The skew only steers when to refresh; this refresh used it anyway.
            self.emit(Event::NotRecorded {
                key: key.clone(),
                what: "the issuer's clock skew",
                message: e.to_string(),
            });
        }
    }

    /// Writes a refresh's result, retrying briefly: the provider may already
    /// have rotated the refresh token the store holds, so giving up at the first
    /// error could lose the session. A writer that ignored the lock and changed
    /// the record meanwhile loses to ours (our refresh token is the one that
    /// works), though its client settings are kept.
    async fn save(
        &self,
        key: &SessionKey,
        guard: &S::Guard,
        mut expected: u64,
        record: &mut Record,
    ) -> Result<u64, StoreError> {
        let mut pauses = SAVE_RETRY_PAUSES.iter();
        loop {
            let error = match self.store.write(guard, Some(expected), record).await {
                Ok(generation) => return Ok(generation),
                Err(StoreError::Conflict(what)) => match self.store.load(key).await {
                    Ok(Some(latest)) => {
                        expected = latest.generation;
                        if let Some(client) = latest.record.client {
                            record.client = Some(client);
                        }
                        // A conflict resolved this way is retried at once.
                        continue;
                    }
                    Ok(None) => StoreError::Conflict(what),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            match pauses.next() {
                Some(pause) => tokio::time::sleep(*pause).await,
                None => return Err(error),
            }
        }
    }

    /// Records a failure that does not end the session; serves the stored token if
    /// it is still valid (and not one a server rejected), else says what to do.
    async fn keep_after_failure(
        &self,
        key: &SessionKey,
        guard: &S::Guard,
        current: Versioned,
        failure: ProviderFailure,
        fallback: bool,
        trigger: &Trigger,
    ) -> Outcome {
        let now = self.clock.now();
        let summary = failure.summary();
        let mut record = current.record;
        let valid_until = record.tokens.as_ref().and_then(|t| t.expires_at);
        let failed = Failure {
            class: failure.class,
            message: summary.clone(),
            at: truncate(now),
        };
        record
            .health
            .record_failure(failed, failure.retry_after, valid_until);
        match self
            .store
            .write(guard, Some(current.generation), &record)
            .await
        {
            Ok(_) => {}
            // Only a writer that ignores the lock changes a record we hold; its
            // record keeps its own health.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => self.emit(Event::NotRecorded {
                key: key.clone(),
                what: "the failed refresh",
                message: e.to_string(),
            }),
        }
        self.emit(Event::RefreshFailed {
            key: key.clone(),
            class: failure.class,
            message: summary.clone(),
            next_attempt_at: record.health.next_attempt_at,
        });
        let tokens = record.tokens.as_ref();
        if fallback
            && let Some(tokens) = tokens.filter(|t| t.is_usable(now))
            && trigger.rejected() != Some(&tokens.access_token)
        {
            self.emit(Event::ServedStoredAfterFailure {
                key: key.clone(),
                expires_at: tokens.expires_at,
                class: failure.class,
                message: summary,
            });
            return Ok(Served::from_tokens(tokens, false));
        }
        let hint = self.hint(key);
        let what = match trigger {
            Trigger::Rejected(_) => "a server rejected the access token of profile",
            Trigger::Demand { .. } => "cannot refresh profile",
        };
        let retry = failure
            .retry_after
            .filter(|at| *at > now)
            .map(|at| format!("; the provider asked to wait until {}", format_instant(at)))
            .unwrap_or_default();
        Err(match failure.class {
            FailureClass::InteractionRequired => Error::InteractionRequired {
                message: format!(
                    "the provider requires you to sign in again for profile {key} ({summary}); {hint}"
                ),
            },
            FailureClass::Misconfiguration => Error::Misconfiguration {
                message: format!("{what} {key}: {summary}; check the client configuration"),
            },
            FailureClass::Transient | FailureClass::SessionDead => Error::Transient {
                message: format!(
                    "{what} {key}{}: {summary}{retry}; the session is kept, try again later",
                    if trigger.rejected().is_some() {
                        ", and refreshing it failed"
                    } else {
                        " now"
                    }
                ),
            },
        })
    }

    /// Compare-and-delete: the provider rejected the refresh token the store still
    /// holds, so remove the tokens and record why.
    async fn end_session(
        &self,
        key: &SessionKey,
        guard: &S::Guard,
        latest: Versioned,
        failure: &ProviderFailure,
    ) -> Result<Served, Error> {
        let now = self.clock.now();
        let mut record = latest.record;
        record.tokens = None;
        let message = format!(
            "the provider rejected its refresh token: {}",
            failure.summary()
        );
        record.health.last_error = Some(Failure {
            class: FailureClass::SessionDead,
            message: message.clone(),
            at: truncate(now),
        });
        record.health.next_attempt_at = None;
        record.health.consecutive_failures = record.health.consecutive_failures.saturating_add(1);
        self.store
            .write(guard, Some(latest.generation), &record)
            .await?;
        self.emit(Event::SessionEnded { key: key.clone() });
        Err(Error::LoginRequired {
            message: format!(
                "the session for profile {key} has ended ({message}); {}",
                self.hint(key)
            ),
        })
    }
}

impl Keeper<crate::store::FileStore> {
    /// Step 1 alone, synchronously: the answer when it needs no network (the
    /// stored token, or "log in"), or `None` when a refresh is due. A one-shot
    /// command calls this before it sets up an async runtime at all.
    pub fn token_without_network(
        &self,
        key: &SessionKey,
        demand: Demand,
    ) -> Option<Result<Served, Error>> {
        let now = self.clock.now();
        let loaded = match self.store.load_with_skew_blocking(key) {
            Ok(loaded) => loaded,
            Err(e) => return Some(Err(e.into())),
        };
        let decision = self
            .settings
            .policy
            .decide(loaded.as_ref().map(|v| &v.record), demand, now);
        match decision {
            Decision::Refresh { .. } => None,
            decision => Some(self.conclude(key, loaded.as_ref(), decision, demand, now)),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedMetadata {
    fetched_at: Timestamp,
    metadata: Metadata,
}

fn misconfigured(description: String) -> ProviderFailure {
    ProviderFailure {
        class: FailureClass::Misconfiguration,
        status: None,
        code: None,
        description,
        retry_after: None,
    }
}

fn expired_since(record: Option<&Record>, now: Timestamp) -> String {
    record
        .and_then(|r| r.tokens.as_ref())
        .and_then(|t| t.expires_at)
        .map(|at| format!(" {} ago", human_signed(now.duration_since(at))))
        .unwrap_or_default()
}

/// A duration as people write it: `90s` → `1m30s`.
pub fn human(d: Duration) -> String {
    human_signed(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
}

/// A signed duration as people write it, to the second.
pub fn human_signed(d: SignedDuration) -> String {
    let total = d.as_secs().unsigned_abs();
    let sign = if d.is_negative() { "-" } else { "" };
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || (h == 0 && m == 0) {
        out.push_str(&format!("{s}s"));
    }
    out
}
