//! The coordinator's face: how a [`Keeper`] is built, what it is asked, and the
//! warm path (docs/DESIGN.md §3), readable top to bottom. The refresh protocol
//! behind it (single flight, lock, re-read, refresh, write, compare-and-delete)
//! lives in `refresh.rs`.
//!
//! Getting a token for a session:
//! 1. read the record without a lock and decide; "use the stored token" returns
//!    at once (the warm path: no HTTP client, no name resolution, no network);
//! 2. otherwise join the in-process single flight for the session;
//! 3. the flight's leader takes the session's cross-process lock, waiting for
//!    another holder's release and reading its result;
//! 4. under the lock, re-read and decide again;
//! 5. refresh, and write the result with the next generation before anyone sees
//!    the new access token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::clock::{Clock, SystemClock};
use crate::discovery::Discovery;
use crate::error::{Error, FailureClass, Step, StoreError};
use crate::events::{ChangeKind, ChangeSink, Event, EventSink, Stored, TokenChange};
use crate::http::{Carrier, Network, Reqwest, Transport};
use crate::oauth::{Cause, Metadata, ProviderFailure, parse_token_response};
use crate::policy::{Decision, Demand, LoginReason, Policy, SessionState, UseReason};
use crate::refresh::Flights;
use crate::secret::AccessToken;
use crate::session::{Client, Health, Record, Renewal, SessionKey, Versioned};
use crate::shield::Shield;
use crate::store::Store;
use crate::token::{Origin, TokenResponse, TokenSet, saturating_sub, truncate};

/// How long to wait for another process's refresh, unless told otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long provider metadata is used, unless told otherwise.
pub const DEFAULT_DISCOVERY_TTL: SignedDuration = SignedDuration::from_hours(24);

/// An access token handed out.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Token {
    /// The token.
    pub access_token: AccessToken,
    /// Its type, usually `Bearer`.
    pub token_type: String,
    /// Its expiry, if known.
    pub expires_at: Option<Timestamp>,
    /// Whether this call (or the attempt it shared) refreshed it.
    pub refreshed: bool,
}

impl Token {
    pub(crate) fn from_tokens(tokens: &TokenSet, refreshed: bool) -> Self {
        Self {
            access_token: tokens.access_token.clone(),
            token_type: tokens.token_type.clone(),
            expires_at: tokens.expires_at,
            refreshed,
        }
    }
}

/// Keeps sessions alive: hands out access tokens, refreshing them when due.
///
/// Cheap to clone: clones share the store, the single flights and the HTTP
/// client. Built with [`Keeper::builder`].
pub struct Keeper<S: Store> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Keeper<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What every clone of a keeper shares.
pub(crate) struct Inner<S: Store> {
    pub(crate) store: S,
    pub(crate) policy: Policy,
    pub(crate) lock_timeout: Duration,
    pub(crate) network: Network,
    pub(crate) carrier: Carrier,
    pub(crate) discovery: Discovery,
    pub(crate) clock: Arc<dyn Clock>,
    events: Vec<EventSink>,
    changes: Vec<ChangeSink>,
    broadcast: tokio::sync::broadcast::Sender<Event>,
    /// The key of every session whose tokens changed, for cached tokens that
    /// follow changes made through any clone of the keeper (no secrets).
    pub(crate) changed_keys: tokio::sync::broadcast::Sender<SessionKey>,
    pub(crate) flights: Flights,
    pub(crate) shield: Shield,
}

impl<S: Store> std::fmt::Debug for Keeper<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("policy", &self.inner.policy)
            .field("lock_timeout", &self.inner.lock_timeout)
            .field("network", &self.inner.network)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Keeper`].
///
/// ```no_run
/// # async fn run() -> Result<(), authkeep::Error> {
/// use authkeep::{Demand, FileStore, Keeper, Policy, SessionKey};
/// use jiff::SignedDuration;
///
/// let keeper = Keeper::builder(FileStore::new("/var/lib/myapp/sessions"))
///     .policy(Policy::default().with_threshold(SignedDuration::from_mins(10)))
///     .http_client(reqwest::Client::new())
///     .on_event(|event| eprintln!("{event:?}"))
///     .build();
/// let token = keeper.token(&SessionKey::new("alice").unwrap(), Demand::new()).await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct KeeperBuilder<S: Store> {
    store: S,
    policy: Policy,
    lock_timeout: Duration,
    network: Network,
    transport: Option<Arc<dyn Transport>>,
    clock: Arc<dyn Clock>,
    events: Vec<EventSink>,
    changes: Vec<ChangeSink>,
    discovery_dir: Option<PathBuf>,
    discovery_ttl: SignedDuration,
}

impl<S: Store> KeeperBuilder<S> {
    /// When to refresh (default: [`Policy::default`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The longest wait for another process's refresh of the same session
    /// (default 30 s). When it runs out, a still-valid token is served.
    pub fn lock_timeout(mut self, wait: Duration) -> Self {
        self.lock_timeout = wait;
        self
    }

    /// How the network is used (default: [`Network::default`]).
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Sends requests with the caller's own client, so that its proxies, roots,
    /// connection pool and time-outs apply. It should not follow redirects: an
    /// answer that comes from another origin than the endpoint is refused.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.transport = Some(Arc::new(Reqwest::with_client(client, &self.network)));
        self
    }

    /// Sends requests through `transport` (tests feed canned answers this way).
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// Reads `now` from `clock` (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `sink` with every event. Must be cheap: it runs on the warm path
    /// too.
    pub fn on_event(mut self, sink: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.events.push(Arc::new(sink));
        self
    }

    /// Calls `sink` whenever a session's tokens change (login, refresh, end,
    /// logout), after the change is saved: to keep a copy elsewhere, or to show
    /// whether the user is logged in.
    pub fn on_token_change(mut self, sink: impl Fn(&TokenChange) + Send + Sync + 'static) -> Self {
        self.changes.push(Arc::new(sink));
        self
    }

    /// Caches provider metadata in `dir` too, so that short-lived processes
    /// discover once a day rather than once each (default: in memory only).
    pub fn discovery_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.discovery_dir = Some(dir.into());
        self
    }

    /// How long provider metadata is used (default 24 hours).
    pub fn discovery_ttl(mut self, ttl: SignedDuration) -> Self {
        self.discovery_ttl = ttl;
        self
    }

    /// The keeper.
    pub fn build(self) -> Keeper<S> {
        let carrier = match self.transport {
            Some(transport) => Carrier::Given(transport),
            None => Carrier::Lazy(tokio::sync::OnceCell::new()),
        };
        Keeper {
            inner: Arc::new(Inner {
                store: self.store,
                policy: self.policy,
                lock_timeout: self.lock_timeout,
                network: self.network,
                carrier,
                discovery: Discovery::new(self.discovery_dir, self.discovery_ttl),
                clock: self.clock,
                events: self.events,
                changes: self.changes,
                broadcast: tokio::sync::broadcast::channel(256).0,
                changed_keys: tokio::sync::broadcast::channel(64).0,
                flights: Flights::default(),
                shield: Shield::default(),
            }),
        }
    }
}

impl<S: Store> Keeper<S> {
    /// A builder over `store`, with the defaults of every setting.
    pub fn builder(store: S) -> KeeperBuilder<S> {
        KeeperBuilder {
            store,
            policy: Policy::default(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            network: Network::default(),
            transport: None,
            clock: Arc::new(SystemClock),
            events: Vec::new(),
            changes: Vec::new(),
            discovery_dir: None,
            discovery_ttl: DEFAULT_DISCOVERY_TTL,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The refresh policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The longest wait for another process's refresh.
    pub fn lock_timeout(&self) -> Duration {
        self.inner.lock_timeout
    }

    /// Says whether a refresh's result is outstanding (sent but not yet saved),
    /// so that a program can put off exiting until it is saved.
    pub fn shield(&self) -> &Shield {
        &self.inner.shield
    }

    /// The current instant, from the keeper's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Every event from now on, for a task that consumes them (a receiver that
    /// falls more than 256 events behind skips the oldest).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.broadcast.subscribe()
    }

    pub(crate) fn emit(&self, event: Event) {
        for sink in &self.inner.events {
            sink(&event);
        }
        if self.inner.broadcast.receiver_count() > 0 {
            // Sending fails only when every receiver is gone: nobody to tell.
            self.inner.broadcast.send(event).ok();
        }
    }

    pub(crate) fn changed(&self, key: &SessionKey, kind: ChangeKind, tokens: Option<&TokenSet>) {
        if self.inner.changed_keys.receiver_count() > 0 {
            // Sending fails only when every receiver is gone: nobody to tell.
            self.inner.changed_keys.send(key.clone()).ok();
        }
        if self.inner.changes.is_empty() {
            return;
        }
        let change = TokenChange {
            key: key.clone(),
            kind,
            tokens: tokens.cloned(),
        };
        for sink in &self.inner.changes {
            sink(&change);
        }
    }

    /// Reads a session, with the instants its provider's clock gave moved onto
    /// ours by the issuer's last measured clock skew.
    pub async fn session(&self, key: &SessionKey) -> Result<Option<Versioned>, StoreError> {
        let mut loaded = self.inner.store.load(key).await?;
        if let Some(versioned) = loaded.as_mut()
            && versioned.record.expiry_on_provider_clock()
            && let Some(client) = versioned.record.client.as_ref()
            && let Some(skew) = self.inner.store.issuer_skew(&client.issuer).await?
        {
            versioned.record.apply_issuer_skew(skew);
        }
        Ok(loaded)
    }

    /// What a session amounts to now, as getting a token would find it.
    pub async fn state(&self, key: &SessionKey) -> Result<SessionState, StoreError> {
        let loaded = self.session(key).await?;
        Ok(self
            .inner
            .policy
            .state(loaded.as_ref().map(|v| &v.record), self.now()))
    }

    /// A usable access token for the session, refreshing it if the policy says so.
    pub async fn token(&self, key: &SessionKey, demand: Demand) -> Result<Token, Error> {
        let now = self.now();
        let loaded = self.session(key).await?;
        let decision = self
            .inner
            .policy
            .decide(loaded.as_ref().map(|v| &v.record), demand, now);
        if !matches!(decision, Decision::Refresh { .. }) {
            return self.conclude(key, loaded.as_ref(), decision, demand, now);
        }
        let seen = loaded.as_ref().map(|v| v.generation);
        self.refresh_coordinated(key, crate::refresh::Trigger::Demand { demand, seen })
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
    ) -> Result<Token, Error> {
        let now = self.now();
        let loaded = self.session(key).await?;
        if let Some(tokens) = loaded.as_ref().and_then(|v| v.record.tokens.as_ref())
            && tokens.access_token != *rejected
        {
            let record = loaded.as_ref().map(|v| &v.record);
            let decision = self.inner.policy.decide(record, Demand::default(), now);
            if matches!(decision, Decision::UseStored(_)) {
                return self.conclude(key, loaded.as_ref(), decision, Demand::default(), now);
            }
        }
        self.refresh_coordinated(key, crate::refresh::Trigger::Rejected(rejected.clone()))
            .await
    }

    /// Refreshes the session now if, under its lock, it still has generation
    /// `seen`; otherwise somebody wrote it since it was read (another
    /// scheduler's refresh, an application's, a login) and the stored session
    /// is used as [`Keeper::token`] would use it, without a second refresh. A
    /// scheduler that claimed a due session at generation `seen` calls this,
    /// so that each due session is refreshed once per cycle whoever else asks
    /// for it meanwhile; callers that join the attempt in progress share it.
    /// [`Token::refreshed`] says whether this call (or the attempt it shared)
    /// refreshed.
    pub async fn refresh_unless_changed(
        &self,
        key: &SessionKey,
        seen: u64,
    ) -> Result<Token, Error> {
        self.refresh_coordinated(key, crate::refresh::Trigger::Claimed { seen })
            .await
    }

    /// Stores a session imported from a token response obtained elsewhere (its
    /// age unknown), under the session's lock, continuing its generation.
    pub async fn import_login(
        &self,
        key: &SessionKey,
        client: Client,
        response: TokenResponse,
    ) -> Result<Versioned, Error> {
        self.store_login(key, client, response, Origin::Import)
            .await
    }

    /// Stores a session from a token response the provider issued just now (a
    /// login), under the session's lock, continuing its generation.
    pub async fn save_login(
        &self,
        key: &SessionKey,
        client: Client,
        response: TokenResponse,
    ) -> Result<Versioned, Error> {
        self.store_login(key, client, response, Origin::Login).await
    }

    /// Logs a service in with the client credentials grant (RFC 6749 §4.4) and
    /// stores the session, which renews itself by repeating the grant: `client`
    /// gets [`Renewal::ClientCredentials`], its scope and token parameters go
    /// with every request. The token endpoint is discovered unless given.
    /// Stored as [`Keeper::save_login`] stores, under the session's lock; a
    /// failure at the provider is [`Error::Provider`] (step
    /// [`Step::Discovery`] or [`Step::Login`]) and stores nothing.
    pub async fn login_client_credentials(
        &self,
        key: &SessionKey,
        client: Client,
    ) -> Result<Versioned, Error> {
        let client = client.with_renewal(Renewal::ClientCredentials);
        let failed = |step, failure| Error::Provider {
            key: key.clone(),
            step,
            failure,
        };
        let network = &self.inner.network;
        let transport = self.transport().await.map_err(|f| failed(Step::Login, f))?;
        let step = async {
            let endpoint = self
                .inner
                .discovery
                .token_endpoint(
                    &client,
                    transport.as_ref(),
                    network,
                    self.now(),
                    |message| {
                        self.emit(Event::CacheNotWritten { message });
                    },
                )
                .await
                .map_err(|f| (Step::Discovery, f))?;
            let request = crate::refresh::client_credentials_request(&endpoint, &client)
                .map_err(|e| (Step::Login, local_failure(e)))?;
            let sent_at = self.now();
            let response = transport
                .send(request)
                .await
                .map_err(|e| (Step::Login, ProviderFailure::transport(e.to_string())))?;
            Ok::<_, (Step, ProviderFailure)>((sent_at, response))
        };
        let (sent_at, response) = tokio::time::timeout(network.timeout, step)
            .await
            .map_err(|_| failed(Step::Login, ProviderFailure::timed_out(network.timeout)))?
            .map_err(|(step, failure)| failed(step, failure))?;
        let secrets = crate::oauth::client_credentials::secrets(&client);
        let response = parse_token_response(&response, self.now(), &secrets)
            .map(crate::refresh::without_refresh_token)
            .map_err(|f| failed(Step::Login, crate::refresh::grant_failure(f)))?;
        self.store_login_at(key, client, response, Origin::Login, Some(sent_at))
            .await
    }

    /// The transport, building the default one on first use; an HTTP client
    /// that cannot be set up is a configuration failure.
    async fn transport(&self) -> Result<Arc<dyn Transport>, ProviderFailure> {
        self.inner
            .carrier
            .get(&self.inner.network)
            .await
            .map_err(|e| local_failure(e.to_string()))
    }

    /// Sends one request within the network step's time-out; returns when it
    /// was sent and the answer.
    pub(crate) async fn exchange(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<(Timestamp, http::Response<Vec<u8>>), ProviderFailure> {
        let network = &self.inner.network;
        let transport = self.transport().await?;
        let sent_at = self.now();
        let response = tokio::time::timeout(network.timeout, transport.send(request))
            .await
            .map_err(|_| ProviderFailure::timed_out(network.timeout))?
            .map_err(|e| ProviderFailure::transport(e.to_string()))?;
        Ok((sent_at, response))
    }

    /// The provider metadata of `issuer` (OpenID Connect discovery, or RFC 8414
    /// where that is not served), from the discovery cache while it is fresh,
    /// else fetched within the network time-out. Never called on the warm path.
    /// A failure is [`Error::Provider`] with [`Step::Discovery`].
    pub async fn metadata(&self, key: &SessionKey, issuer: &str) -> Result<Metadata, Error> {
        let failed = |failure| Error::Provider {
            key: key.clone(),
            step: Step::Discovery,
            failure,
        };
        let network = &self.inner.network;
        let transport = self.transport().await.map_err(failed)?;
        let fetch = self.inner.discovery.metadata(
            issuer,
            transport.as_ref(),
            network,
            self.now(),
            |message| self.emit(Event::CacheNotWritten { message }),
        );
        tokio::time::timeout(network.timeout, fetch)
            .await
            .map_err(|_| failed(ProviderFailure::timed_out(network.timeout)))?
            .map_err(failed)
    }

    async fn store_login(
        &self,
        key: &SessionKey,
        client: Client,
        response: TokenResponse,
        origin: Origin,
    ) -> Result<Versioned, Error> {
        self.store_login_at(key, client, response, origin, None)
            .await
    }

    /// Stores a login; `sent_at`, when known, is the instant its request was
    /// sent, from which its expiry counts (else the instant it is stored).
    async fn store_login_at(
        &self,
        key: &SessionKey,
        client: Client,
        response: TokenResponse,
        origin: Origin,
        sent_at: Option<Timestamp>,
    ) -> Result<Versioned, Error> {
        let guard = self.lock(key).await?;
        let at = sent_at.unwrap_or_else(|| self.now());
        self.write_login(&guard, key, client, response, origin, at)
            .await
    }

    /// Writes a session obtained by a login or import under the session's lock
    /// (`guard`), continuing its generation; the token response's lifetimes are
    /// counted from `at` (when the request was sent, or the import instant).
    pub(crate) async fn write_login(
        &self,
        guard: &S::Guard,
        key: &SessionKey,
        client: Client,
        response: TokenResponse,
        origin: Origin,
        at: Timestamp,
    ) -> Result<Versioned, Error> {
        let store = &self.inner.store;
        let current = store.load(key).await?;
        let skew = store.issuer_skew(&client.issuer).await?;
        let mut health = Health::default();
        health.record_success(truncate(self.now()));
        let record = Record {
            client: Some(client),
            tokens: Some(response.into_token_set(
                at,
                origin,
                SignedDuration::from_secs(skew.unwrap_or(0)),
            )),
            health,
            clock_skew_secs: skew.filter(|s| *s != 0),
        };
        let generation = store
            .write(guard, current.map(|v| v.generation), &record)
            .await?;
        self.changed(key, ChangeKind::LoggedIn, record.tokens.as_ref());
        Ok(Versioned { generation, record })
    }

    /// Removes a session under its lock. Returns whether there was one. The
    /// generation is remembered, so a later login continues it. Nothing is
    /// sent to the provider; [`Keeper::logout_and_revoke`] revokes too.
    pub async fn logout(&self, key: &SessionKey) -> Result<bool, Error> {
        self.logout_and_revoke(key, false)
            .await
            .map(|logout| logout.removed)
    }

    pub(crate) async fn lock(&self, key: &SessionKey) -> Result<S::Guard, StoreError> {
        let on_wait = || self.emit(Event::WaitingForLock { key: key.clone() });
        self.inner
            .store
            .lock(key, self.inner.lock_timeout, on_wait)
            .await
    }

    /// Turns a decision that needs no network into a result, with its event.
    pub(crate) fn conclude(
        &self,
        key: &SessionKey,
        loaded: Option<&Versioned>,
        decision: Decision,
        demand: Demand,
        now: Timestamp,
    ) -> Result<Token, Error> {
        let record = loaded.map(|v| &v.record);
        let tokens = record.and_then(|r| r.tokens.as_ref());
        match (decision, tokens) {
            (Decision::UseStored(reason), Some(tokens)) => {
                let expires_at = tokens.expires_at;
                let stored = |reason| Event::ServedStored {
                    key: key.clone(),
                    expires_at,
                    reason,
                };
                let event = match reason {
                    UseReason::Valid => Event::Valid {
                        key: key.clone(),
                        expires_at,
                    },
                    UseReason::ShorterThanAsked => Event::ShorterThanAsked {
                        key: key.clone(),
                        expires_at,
                    },
                    UseReason::CannotRenew => stored(cannot_renew(tokens, demand, now)),
                    UseReason::NoExpiryFromProvider => stored(Stored::NoExpiryFromProvider),
                    UseReason::BackingOff(until) => stored(Stored::BackingOff { until }),
                };
                self.emit(event);
                Ok(Token::from_tokens(tokens, false))
            }
            (Decision::RequireLogin(reason), _) => {
                self.emit(Event::LoginRequired {
                    key: key.clone(),
                    reason,
                });
                let detail = record
                    .and_then(|r| r.health.last_error.as_ref())
                    .filter(|_| {
                        matches!(
                            reason,
                            LoginReason::SessionEnded | LoginReason::InteractionRequired
                        )
                    })
                    .map(|e| e.message.clone());
                Err(Error::LoginRequired {
                    key: key.clone(),
                    reason,
                    detail,
                })
            }
            (Decision::WaitForProvider(until), _) => {
                self.emit(Event::WaitingForProvider {
                    key: key.clone(),
                    until,
                });
                Err(Error::RetryAfter {
                    key: key.clone(),
                    until,
                })
            }
            // Refresh is never concluded here, and UseStored implies tokens:
            // either would be a bug in the policy. The caller gets a retryable
            // error rather than a panic.
            (decision, _) => Err(Error::Store(StoreError::Conflict(format!(
                "{key} (unexpected decision {decision:?})"
            )))),
        }
    }
}

/// A failure on this side of the network: retrying will not help.
fn local_failure(message: String) -> ProviderFailure {
    ProviderFailure::local(FailureClass::Misconfiguration, Cause::Local, message)
}

/// Why a session that cannot renew itself is served as it is: normal operation,
/// unless the caller asked for more than it has.
fn cannot_renew(tokens: &TokenSet, demand: Demand, now: Timestamp) -> Stored {
    let short = demand.min_valid.is_some_and(|min| {
        tokens
            .expires_at
            .is_some_and(|at| saturating_sub(at, min) <= now)
    });
    match (demand.force, short) {
        (true, _) => Stored::CannotRenewForced,
        (false, true) => Stored::CannotRenewShort,
        (false, false) => Stored::CannotRenew,
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
    ) -> Option<Result<Token, Error>> {
        let now = self.now();
        match self.inner.store.warm(key, &self.inner.policy, demand, now) {
            Err(e) => Some(Err(e.into())),
            Ok((_, Decision::Refresh { .. })) => None,
            Ok((loaded, decision)) => {
                Some(self.conclude(key, loaded.as_ref(), decision, demand, now))
            }
        }
    }
}
