//! The coordinator: policy, store, lock and protocol put together (DESIGN.md §3).
//!
//! Getting a token for a session:
//! 1. read the record without a lock and decide; "use the stored token" returns
//!    at once (the warm path: no HTTP client, no name resolution, no network);
//! 2. otherwise join the in-process single flight for the session, so that tasks
//!    and threads of one process share one attempt;
//! 3. take the session's cross-process lock with a bounded wait;
//! 4. re-read and decide again: another process may have refreshed meanwhile;
//! 5. refresh, and write the result with the next generation before anyone sees
//!    the new access token.
//!
//! Only an `invalid_grant` for the refresh token the store still holds ends a
//! session; every other failure keeps it, serving the stored token while it is
//! valid.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
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
use crate::store::Store;
use crate::token::{Origin, TokenResponse, TokenSet, format_instant, truncate};

/// A refresh that another writer made this recently satisfies `--force-refresh`.
const FORCE_COALESCE_WINDOW: SignedDuration = SignedDuration::from_secs(10);
/// A clock difference beyond this is recorded and applied.
const SKEW_TOLERANCE_SECS: i64 = 60;

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
    /// Whether this call refreshed it.
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
enum Trigger {
    /// A caller's demand; `seen` is the generation it read without the lock.
    Demand { demand: Demand, seen: Option<u64> },
    /// A resource server rejected this access token.
    Rejected(AccessToken),
}

/// A successful refresh, not yet stored.
struct Refreshed {
    response: TokenResponse,
    sent_at: Timestamp,
    skew_secs: Option<i64>,
}

/// Keeps sessions alive: hands out access tokens, refreshing them when due.
pub struct Keeper<S: Store> {
    store: S,
    settings: Settings,
    clock: Arc<dyn Clock>,
    events: Option<EventSink>,
    http: tokio::sync::OnceCell<HttpClient>,
    flights: Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>,
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
            flights: Mutex::new(HashMap::new()),
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

    /// The current instant, from the injected clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn emit(&self, event: Event) {
        if let Some(sink) = &self.events {
            sink(&event);
        }
    }

    /// A usable access token for the session, refreshing it if the policy says so.
    pub async fn token(&self, key: &SessionKey, demand: Demand) -> Result<Served, Error> {
        let now = self.clock.now();
        let loaded = self.store.load(key).await?;
        let decision = self
            .settings
            .policy
            .decide(loaded.as_ref().map(|v| &v.record), demand, now);
        if !matches!(decision, Decision::Refresh { .. }) {
            return self.conclude(key, loaded.as_ref(), decision, now);
        }
        let seen = loaded.as_ref().map(|v| v.generation);
        self.refresh_coordinated(key, Trigger::Demand { demand, seen })
            .await
    }

    /// A resource server rejected `rejected` (a 401): refresh only if the store
    /// still holds that token; otherwise someone already refreshed, and the stored
    /// token is returned without a network request.
    pub async fn token_after_rejection(
        &self,
        key: &SessionKey,
        rejected: &AccessToken,
    ) -> Result<Served, Error> {
        let now = self.clock.now();
        let loaded = self.store.load(key).await?;
        if let Some(tokens) = loaded.as_ref().and_then(|v| v.record.tokens.as_ref())
            && tokens.access_token != *rejected
        {
            let decision = self.settings.policy.decide(
                loaded.as_ref().map(|v| &v.record),
                Demand::default(),
                now,
            );
            if matches!(decision, Decision::UseStored(_)) {
                return self.conclude(key, loaded.as_ref(), decision, now);
            }
        }
        self.refresh_coordinated(key, Trigger::Rejected(rejected.clone()))
            .await
    }

    /// Stores a session obtained by a login or an import, under the session's lock,
    /// continuing its generation. The token set's expiry is inferred from `now`.
    pub async fn store_login(
        &self,
        key: &SessionKey,
        client: Client,
        response: TokenResponse,
        origin: Origin,
    ) -> Result<Versioned, Error> {
        let guard = self.lock(key).await?;
        let current = self.store.load(key).await?;
        let now = self.clock.now();
        let mut health = Health::default();
        health.record_success(truncate(now));
        let record = Record {
            client: Some(client),
            tokens: Some(response.into_token_set(now, origin, SignedDuration::ZERO)),
            health,
            clock_skew_secs: current.as_ref().and_then(|v| v.record.clock_skew_secs),
        };
        let generation = self
            .store
            .write(&guard, current.map(|v| v.generation), &record)
            .await?;
        Ok(Versioned { generation, record })
    }

    /// Removes a session under its lock. Returns whether there was one.
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

    fn flight(&self, key: &SessionKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self
            .flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        flights.entry(key.clone()).or_default().clone()
    }

    /// Steps 2–5: single flight, cross-process lock, re-read, refresh.
    async fn refresh_coordinated(
        &self,
        key: &SessionKey,
        trigger: Trigger,
    ) -> Result<Served, Error> {
        let flight = self.flight(key);
        let _turn = flight.lock().await;
        let guard = match self.lock(key).await {
            Ok(guard) => guard,
            Err(timeout @ StoreError::LockTimeout { .. }) => {
                let now = self.clock.now();
                let loaded = self.store.load(key).await?;
                if let Some(tokens) = loaded.as_ref().and_then(|v| v.record.tokens.as_ref())
                    && tokens.is_usable(now)
                {
                    self.emit(Event::ServedWithoutRefresh {
                        key: key.clone(),
                        why: format!("it is still valid, but {timeout}"),
                    });
                    return Ok(Served::from_tokens(tokens, false));
                }
                return Err(timeout.into());
            }
            Err(other) => return Err(other.into()),
        };
        self.refresh_locked(key, &guard, trigger).await
    }

    async fn refresh_locked(
        &self,
        key: &SessionKey,
        guard: &S::Guard,
        trigger: Trigger,
    ) -> Result<Served, Error> {
        // A session whose refresh token a foreign writer replaced while we were
        // refreshing is tried again with the newer token, at most this often.
        let mut newer_sessions_left = 2;
        let seen = match &trigger {
            Trigger::Demand { seen, .. } => *seen,
            Trigger::Rejected(_) => None,
        };
        loop {
            let now = self.clock.now();
            let current = self.store.load(key).await?;
            let demand = self.demand_under_lock(&trigger, current.as_ref(), now);
            // A forced refresh that a fresh enough session satisfied.
            let shared = matches!(
                &trigger,
                Trigger::Demand { demand: asked, .. } if asked.force && !demand.force
            );
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
                    return self.conclude(key, current.as_ref(), decision, now);
                }
            };
            self.emit(Event::Refreshing {
                key: key.clone(),
                reason,
            });
            let failure = match self.attempt(&current.record).await {
                Ok(refreshed) => return self.store_refreshed(key, guard, current, refreshed).await,
                Err(failure) => failure,
            };
            if failure.class != FailureClass::SessionDead {
                return self
                    .keep_after_failure(key, guard, current, failure, fallback)
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
                        && (t.obtained_at..t.obtained_at + FORCE_COALESCE_WINDOW).contains(&now)
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

    /// Turns a decision that needs no network into a result, with its event.
    fn conclude(
        &self,
        key: &SessionKey,
        loaded: Option<&Versioned>,
        decision: Decision,
        now: Timestamp,
    ) -> Result<Served, Error> {
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
                    UseReason::CannotRenew => Event::ServedAsIs {
                        key: key.clone(),
                        why: "the session cannot renew itself (no usable refresh token)".into(),
                    },
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
            // Refresh is never concluded here; UseStored implies tokens. Either
            // would be a bug in the policy, reported rather than panicking.
            (decision, _) => Err(Error::Transient {
                message: format!("internal error: cannot conclude {decision:?} for profile {key}"),
            }),
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
            let request = refresh::request(&endpoint, client, refresh_token);
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
        let skew_secs = date(response.headers())
            .map(|provider_now| provider_now.as_second() - received.as_second())
            .filter(|skew| skew.abs() > SKEW_TOLERANCE_SECS);
        let secrets = [
            Some(refresh_token.expose_secret()),
            client.client_secret.as_ref().map(|s| s.expose_secret()),
        ];
        parse_token_response(&response, received)
            .map(|response| Refreshed {
                response,
                sent_at,
                skew_secs,
            })
            .map_err(|mut failure| {
                for secret in secrets.into_iter().flatten().filter(|s| s.len() >= 4) {
                    failure.description = failure.description.replace(secret, "[redacted]");
                }
                failure
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
            // A cache that cannot be written only costs a discovery next time.
            let _ = crate::lock::create_private_dir(dir)
                .and_then(|()| crate::lock::write_atomically(&path, ".metadata.", &bytes));
        }
    }

    /// Writes a successful refresh durably, then hands out its token.
    async fn store_refreshed(
        &self,
        key: &SessionKey,
        guard: &S::Guard,
        current: Versioned,
        refreshed: Refreshed,
    ) -> Result<Served, Error> {
        let mut record = current.record;
        let previous = record.tokens.take();
        let skew = SignedDuration::from_secs(refreshed.skew_secs.unwrap_or(0));
        let mut tokens =
            refreshed
                .response
                .into_token_set(refreshed.sent_at, Origin::Refresh, skew);
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
        record.tokens = Some(tokens);
        record.clock_skew_secs = refreshed.skew_secs;
        record.health.record_success(truncate(self.clock.now()));
        let mut expected = current.generation;
        if let Err(StoreError::Conflict(_)) = self.store.write(guard, Some(expected), &record).await
        {
            // A writer that ignores the lock changed the record after we read it.
            // The provider may have rotated the refresh token already, so ours is
            // the one that works: keep the newer client settings, write our tokens.
            let latest = self.store.load(key).await?;
            if let Some(latest) = latest {
                expected = latest.generation;
                record.client = latest.record.client.or(record.client);
            }
            self.store.write(guard, Some(expected), &record).await?;
        }
        let tokens = record.tokens.as_ref().expect("set just above");
        self.emit(Event::Refreshed {
            key: key.clone(),
            expires_at: tokens.expires_at,
            rotated,
        });
        Ok(Served::from_tokens(tokens, true))
    }

    /// Records a failure that does not end the session; serves the stored token if
    /// it is still valid, else says what to do.
    async fn keep_after_failure(
        &self,
        key: &SessionKey,
        guard: &S::Guard,
        current: Versioned,
        failure: ProviderFailure,
        fallback: bool,
    ) -> Result<Served, Error> {
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
        // Health is advisory: a record changed meanwhile keeps its own.
        let _ = self
            .store
            .write(guard, Some(current.generation), &record)
            .await;
        self.emit(Event::RefreshFailed {
            key: key.clone(),
            class: failure.class,
            message: summary.clone(),
            next_attempt_at: record.health.next_attempt_at,
        });
        let tokens = record.tokens.as_ref();
        if fallback && let Some(tokens) = tokens.filter(|t| t.is_usable(now)) {
            self.emit(Event::ServedStoredAfterFailure {
                key: key.clone(),
                expires_at: tokens.expires_at,
                class: failure.class,
                message: summary,
            });
            return Ok(Served::from_tokens(tokens, false));
        }
        let hint = self.hint(key);
        Err(match failure.class {
            FailureClass::InteractionRequired => Error::InteractionRequired {
                message: format!(
                    "the provider requires you to sign in again for profile {key} ({summary}); {hint}"
                ),
            },
            FailureClass::Misconfiguration => Error::Misconfiguration {
                message: format!(
                    "cannot refresh profile {key}: {summary}; check the client configuration"
                ),
            },
            FailureClass::Transient | FailureClass::SessionDead => Error::Transient {
                message: format!(
                    "cannot refresh profile {key} now: {summary}; the session is kept, try again later"
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
        let loaded = match self.store.load_blocking(key) {
            Ok(loaded) => loaded,
            Err(e) => return Some(Err(e.into())),
        };
        let decision = self
            .settings
            .policy
            .decide(loaded.as_ref().map(|v| &v.record), demand, now);
        match decision {
            Decision::Refresh { .. } => None,
            decision => Some(self.conclude(key, loaded.as_ref(), decision, now)),
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
