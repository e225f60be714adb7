//! The refresh protocol (docs/DESIGN.md §3, steps 2 to 5): the in-process single
//! flight, the cross-process lock and the wait for another holder's result, the
//! re-read under the lock, one refresh request, the durable write of its result
//! (retried, and never passed over), and the compare-and-delete that is the only
//! way a session ends. Only an `invalid_grant` for the refresh token the store
//! still holds ends a session; every other failure keeps it, serving the stored
//! token while it is valid.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use crate::error::{Error, FailureClass, StoreError};
use crate::events::{ChangeKind, Event, Stored, Unrecorded};
use crate::keeper::{Keeper, Token};
use crate::oauth::response::date;
use crate::oauth::{Cause, ProviderFailure, client_credentials, parse_token_response, refresh};
use crate::policy::{Decision, Demand, LoginReason, UseReason};
use crate::secret::{AccessToken, RefreshToken};
use crate::session::{Client, Failure, Record, Renewal, SessionKey, Versioned};
use crate::store::Store;
use crate::token::{Origin, TokenResponse, format_instant, saturating_add, truncate};

/// A refresh that another writer made this recently satisfies a forced refresh.
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

/// What started a refresh, re-evaluated once the lock is held.
#[derive(Clone, Debug)]
pub(crate) enum Trigger {
    /// A caller's demand; `seen` is the generation it read without the lock.
    Demand { demand: Demand, seen: Option<u64> },
    /// A resource server rejected this access token.
    Rejected(AccessToken),
    /// A scheduler claimed the session when it had generation `seen`: refresh
    /// now if it still has that generation under the lock, else only as the
    /// policy says (another writer got there first).
    Claimed { seen: u64 },
}

impl Trigger {
    /// Whether the result of an attempt that another caller led also serves
    /// this one. A failure always does: it is the session's state, and trying
    /// again at once would only repeat it.
    fn served_by(&self, result: &Outcome) -> bool {
        let Ok(token) = result else {
            return true;
        };
        match self {
            Trigger::Rejected(rejected) => token.access_token != *rejected,
            Trigger::Demand { demand, .. } => !demand.force || token.refreshed,
            // Whoever led the attempt, the claimed session was written or
            // found current by it: refreshing again would be a second refresh
            // in one cycle.
            Trigger::Claimed { .. } => true,
        }
    }

    fn rejected(&self) -> Option<&AccessToken> {
        match self {
            Trigger::Rejected(token) => Some(token),
            Trigger::Demand { .. } | Trigger::Claimed { .. } => None,
        }
    }

    fn demand(&self) -> Demand {
        match self {
            Trigger::Demand { demand, .. } => *demand,
            Trigger::Rejected(_) | Trigger::Claimed { .. } => Demand::default(),
        }
    }
}

/// How a session is renewed.
#[derive(Clone, Copy)]
enum Grant<'a> {
    /// With its refresh token.
    Refresh(&'a RefreshToken),
    /// By repeating the client credentials grant.
    ClientCredentials,
}

/// The client credentials grant's request for `client`: its scope and its
/// token parameters.
pub(crate) fn client_credentials_request(
    endpoint: &url::Url,
    client: &Client,
) -> Result<http::Request<Vec<u8>>, String> {
    let extra: Vec<(&str, &str)> = client
        .token_params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    client_credentials::request(endpoint, client, client.scope.as_deref(), &extra)
}

/// A repeated grant keeps no refresh token: the session renews by repeating
/// the grant, and one a provider sends anyway would only be a secret more to
/// keep.
pub(crate) fn without_refresh_token(mut response: TokenResponse) -> TokenResponse {
    response.refresh_token = None;
    response.refresh_expires_in = None;
    response.refresh_expires_at = None;
    response
}

/// What a failed client credentials grant means. There is no refresh token
/// for the provider to reject, so an `invalid_grant` (or a request for
/// interaction, which a service cannot give) says the client's configuration
/// is wrong; it never ends the session.
pub(crate) fn grant_failure(mut failure: ProviderFailure) -> ProviderFailure {
    if matches!(
        failure.class,
        FailureClass::SessionDead | FailureClass::InteractionRequired
    ) {
        failure.class = FailureClass::Misconfiguration;
    }
    failure
}

/// A successful refresh, not yet stored.
struct Refreshed {
    response: TokenResponse,
    sent_at: Timestamp,
    skew_secs: Option<i64>,
}

/// The outcome of one attempt, shared by every caller that joined it.
type Outcome = Result<Token, Error>;

/// The attempts in progress, one per session at most.
#[derive(Default)]
pub(crate) struct Flights(Mutex<HashMap<SessionKey, watch::Receiver<Option<Outcome>>>>);

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

/// Forgets a flight whose attempt ended without landing (its task panicked or
/// its runtime shut down), so that its followers, woken by the closed channel,
/// start a new one.
struct Takeoff<S: Store> {
    keeper: Keeper<S>,
    key: SessionKey,
    tx: watch::Sender<Option<Outcome>>,
}

impl<S: Store> Drop for Takeoff<S> {
    fn drop(&mut self) {
        self.keeper.inner.flights.forget(&self.key, &self.tx);
    }
}

impl<S: Store> Keeper<S> {
    /// Step 2: the in-process single flight. One caller leads the attempt; the
    /// others wait for its outcome, so the lock wait and the refresh happen once
    /// for all of them.
    pub(crate) async fn refresh_coordinated(&self, key: &SessionKey, trigger: Trigger) -> Outcome {
        let mut rounds = 0;
        loop {
            let outcome = match self.inner.flights.join(key) {
                Role::Lead(tx) => {
                    // Whatever this caller asked for, it was asked of this attempt.
                    return self.fly(key, &trigger, tx).await;
                }
                Role::Follow(mut rx) => {
                    match rx.wait_for(Option::is_some).await.map(|o| o.clone()) {
                        Ok(Some(outcome)) => outcome,
                        // The leader was dropped before it landed (`wait_for`
                        // returns only a landed outcome otherwise): start over.
                        Ok(None) | Err(_) => continue,
                    }
                }
            };
            rounds += 1;
            if trigger.served_by(&outcome) {
                return outcome;
            }
            if rounds >= FLIGHT_ROUNDS {
                return match trigger {
                    Trigger::Rejected(_) => Err(Error::RefreshFailed {
                        key: key.clone(),
                        class: FailureClass::Transient,
                        failure: ProviderFailure::local(
                            FailureClass::Transient,
                            Cause::Local,
                            "no newer token could be obtained yet",
                        ),
                        rejected: true,
                    }),
                    Trigger::Demand { .. } | Trigger::Claimed { .. } => outcome,
                };
            }
        }
    }

    /// Runs the leader's attempt in a task of its own and lands it. A caller
    /// that stops waiting (a time-out, a dropped future) does not stop the
    /// attempt: once a refresh request is out, its answer is saved whatever
    /// happens to the caller, and the followers get the outcome.
    async fn fly(
        &self,
        key: &SessionKey,
        trigger: &Trigger,
        tx: watch::Sender<Option<Outcome>>,
    ) -> Outcome {
        let takeoff = Takeoff {
            keeper: self.clone(),
            key: key.clone(),
            tx,
        };
        let rejected = trigger.rejected().is_some();
        let trigger = trigger.clone();
        let attempt = tokio::spawn(async move {
            let outcome = takeoff.keeper.lead(&takeoff.key, &trigger).await;
            takeoff
                .keeper
                .inner
                .flights
                .land(&takeoff.key, &takeoff.tx, &outcome);
            outcome
        });
        match attempt.await {
            Ok(outcome) => outcome,
            // A panic in the attempt is a bug: it is the caller's too.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => Err(Error::RefreshFailed {
                key: key.clone(),
                class: FailureClass::Transient,
                failure: ProviderFailure::local(
                    FailureClass::Transient,
                    Cause::Local,
                    "the refresh was stopped because its runtime is shutting down",
                ),
                rejected,
            }),
        }
    }

    /// Step 3: the flight's leader takes the cross-process lock. While another
    /// process holds it, the leader waits for the release and re-reads the
    /// record without taking a turn: usually the holder's result is there. The
    /// wait is bounded once, by the lock time-out, for the whole attempt.
    async fn lead(&self, key: &SessionKey, trigger: &Trigger) -> Outcome {
        let wait = self.inner.lock_timeout;
        let deadline = Instant::now().checked_add(wait);
        let mut announced = false;
        loop {
            if let Some(guard) = self.inner.store.try_lock(key).await? {
                return self.refresh_locked(key, &guard, trigger).await;
            }
            if !std::mem::replace(&mut announced, true) {
                self.emit(Event::WaitingForLock { key: key.clone() });
            }
            let left = deadline.map_or(wait, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() || !self.inner.store.wait_for_release(key, left).await? {
                return self.lock_timed_out(key, trigger).await;
            }
            let now = self.now();
            let current = self.session(key).await?;
            let demand = self.demand_under_lock(trigger, current.as_ref(), now);
            let record = current.as_ref().map(|v| &v.record);
            let decision = self.inner.policy.decide(record, demand, now);
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
        let waited = self.inner.lock_timeout;
        let now = self.now();
        let loaded = self.session(key).await?;
        if let Some(tokens) = loaded.as_ref().and_then(|v| v.record.tokens.as_ref())
            && tokens.is_usable(now)
            && trigger.rejected() != Some(&tokens.access_token)
        {
            self.emit(Event::ServedStored {
                key: key.clone(),
                expires_at: tokens.expires_at,
                reason: Stored::LockTimeout { waited },
            });
            return Ok(Token::from_tokens(tokens, false));
        }
        Err(StoreError::LockTimeout {
            key: key.to_string(),
            waited,
        }
        .into())
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
            Trigger::Claimed { seen } => Some(*seen),
            Trigger::Rejected(_) => None,
        };
        loop {
            let now = self.now();
            let current = self.session(key).await?;
            let demand = self.demand_under_lock(trigger, current.as_ref(), now);
            // A forced refresh that a fresh enough session satisfied.
            let shared = trigger.demand().force && !demand.force && trigger.rejected().is_none();
            let record = current.as_ref().map(|v| &v.record);
            let decision = self.inner.policy.decide(record, demand, now);
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
                    if shared && let Ok(token) = outcome.as_mut() {
                        // The session was refreshed moments ago: that is the
                        // refresh the caller forced.
                        token.refreshed = true;
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
            let _section = self.inner.shield.enter();
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
            let latest = self.inner.store.load(key).await?;
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
            return match latest {
                Some(latest) if stored == rejected => {
                    self.end_session(key, guard, latest, &failure).await
                }
                // The record kept changing under us (a writer ignoring the lock).
                _ => Err(StoreError::Conflict(key.to_string()).into()),
            };
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
            Trigger::Claimed { seen } => Demand {
                force: current.is_some_and(|v| v.generation == *seen),
                ..Demand::default()
            },
        }
    }

    /// [`Keeper::conclude`] for a trigger: a server's rejected token is never
    /// handed back as a success.
    fn conclude_for(
        &self,
        key: &SessionKey,
        trigger: &Trigger,
        loaded: Option<&Versioned>,
        decision: Decision,
        now: Timestamp,
    ) -> Outcome {
        let stored = loaded
            .and_then(|v| v.record.tokens.as_ref())
            .map(|t| &t.access_token);
        if matches!(decision, Decision::UseStored(_))
            && trigger.rejected().is_some()
            && trigger.rejected() == stored
        {
            // Not "served": the only token left is the one a server rejected.
            self.emit(Event::LoginRequired {
                key: key.clone(),
                reason: LoginReason::TokenRejected,
            });
            return Err(Error::LoginRequired {
                key: key.clone(),
                reason: LoginReason::TokenRejected,
                detail: None,
            });
        }
        self.conclude(key, loaded, decision, trigger.demand(), now)
    }

    /// One refresh request, discovery included, bounded by the step time-out:
    /// the refresh token grant, or for a session that renews by repeating the
    /// client credentials grant, that grant with the client's scope and token
    /// parameters.
    async fn attempt(&self, record: &Record) -> Result<Refreshed, ProviderFailure> {
        let refresh_token = record
            .tokens
            .as_ref()
            .and_then(|t| t.refresh_token.as_ref());
        let (client, grant) = match (record.client.as_ref(), refresh_token) {
            (Some(client), _) if client.renewal == Renewal::ClientCredentials => {
                (client, Grant::ClientCredentials)
            }
            (Some(client), Some(refresh_token)) => (client, Grant::Refresh(refresh_token)),
            _ => {
                return Err(ProviderFailure::local(
                    FailureClass::Misconfiguration,
                    Cause::Local,
                    "the session has no client or refresh token to refresh with",
                ));
            }
        };
        let network = &self.inner.network;
        let transport = self.inner.carrier.get(network).await.map_err(|e| {
            ProviderFailure::local(FailureClass::Misconfiguration, Cause::Local, e.to_string())
        })?;
        let step = async {
            let endpoint = self
                .inner
                .discovery
                .token_endpoint(client, transport.as_ref(), network, self.now(), |message| {
                    self.emit(Event::CacheNotWritten { message });
                })
                .await?;
            let request = match grant {
                Grant::Refresh(refresh_token) => refresh::request(&endpoint, client, refresh_token),
                Grant::ClientCredentials => client_credentials_request(&endpoint, client),
            }
            .map_err(|e| ProviderFailure::local(FailureClass::Misconfiguration, Cause::Local, e))?;
            let sent_at = self.now();
            let response = transport
                .send(request)
                .await
                .map_err(|e| ProviderFailure::transport(e.to_string()))?;
            Ok::<_, ProviderFailure>((sent_at, response))
        };
        let (sent_at, response) = tokio::time::timeout(network.timeout, step)
            .await
            .map_err(|_| ProviderFailure::timed_out(network.timeout))??;
        let received = self.now();
        let skew_secs = date(response.headers()).map(|provider_now| {
            provider_now
                .as_second()
                .saturating_sub(received.as_second())
        });
        let result = match grant {
            Grant::Refresh(refresh_token) => {
                let secrets = refresh::secrets(client, refresh_token);
                parse_token_response(&response, received, &secrets)
            }
            Grant::ClientCredentials => {
                let secrets = client_credentials::secrets(client);
                parse_token_response(&response, received, &secrets)
                    .map(without_refresh_token)
                    .map_err(grant_failure)
            }
        };
        result.map(|response| Refreshed {
            response,
            sent_at,
            skew_secs,
        })
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
        let mut tokens = refreshed.response.into_token_set(
            refreshed.sent_at,
            Origin::Refresh,
            SignedDuration::from_secs(skew_secs),
        );
        let rotated = match record.tokens.take() {
            Some(previous) => tokens.keep_from(previous),
            None => tokens.refresh_token.is_some(),
        };
        let now = self.now();
        // An access token that is empty or already expired is the provider's
        // fault: it is not handed out, but the refresh token that came with it
        // is saved all the same, since the old one may be used up.
        let unusable = (!tokens.is_usable(now)).then(|| match tokens.expires_at {
            Some(at) if !tokens.access_token.is_empty() => format!(
                "the provider answered the refresh with an access token that had already expired (at {})",
                format_instant(at)
            ),
            _ => "the provider answered the refresh with an empty access token".to_owned(),
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
                key: key.clone(),
                cause,
            });
        }
        if skew_secs != known_skew
            && let Some(client) = record.client.as_ref()
        {
            self.record_skew(key, &client.issuer, skew_secs).await;
        }
        self.changed(key, ChangeKind::Refreshed, record.tokens.as_ref());
        let Some(tokens) = record.tokens.as_ref() else {
            // Set above; a record without tokens here would be a bug, reported
            // rather than panicking.
            return Err(StoreError::Conflict(key.to_string()).into());
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
                cause: Cause::Answer,
                message: message.clone(),
                next_attempt_at: record.health.next_attempt_at,
            });
            return Err(Error::RefreshFailed {
                key: key.clone(),
                class: FailureClass::Transient,
                failure: ProviderFailure::local(
                    FailureClass::Transient,
                    Cause::Answer,
                    format!("{message}; the new refresh token was saved"),
                ),
                rejected: trigger.rejected().is_some(),
            });
        }
        let short = trigger.demand().min_valid.is_some_and(|min| {
            tokens
                .expires_at
                .is_some_and(|at| crate::token::saturating_sub(at, min) <= now)
        });
        if short {
            self.emit(Event::ShorterThanAsked {
                key: key.clone(),
                expires_at: tokens.expires_at,
            });
        }
        Ok(Token::from_tokens(tokens, true))
    }

    /// The issuer's last measured clock skew (0 when never measured).
    async fn known_skew(&self, key: &SessionKey, record: &Record) -> i64 {
        let Some(client) = record.client.as_ref() else {
            return 0;
        };
        match self.inner.store.issuer_skew(&client.issuer).await {
            Ok(known) => known.unwrap_or(0),
            Err(e) => {
                self.emit(Event::NotRecorded {
                    key: key.clone(),
                    what: Unrecorded::ClockSkew,
                    message: e.to_string(),
                });
                0
            }
        }
    }

    /// Records a newly measured clock skew for the issuer, so that every session
    /// of it uses it.
    async fn record_skew(&self, key: &SessionKey, issuer: &str, skew_secs: i64) {
        if let Err(e) = self
            .inner
            .store
            .set_issuer_skew(issuer, Some(skew_secs))
            .await
        {
            // The skew only steers when to refresh; this refresh used it anyway.
            self.emit(Event::NotRecorded {
                key: key.clone(),
                what: Unrecorded::ClockSkew,
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
        let store = &self.inner.store;
        let mut pauses = SAVE_RETRY_PAUSES.iter();
        loop {
            let error = match store.write(guard, Some(expected), record).await {
                Ok(generation) => return Ok(generation),
                Err(StoreError::Conflict(what)) => match store.load(key).await {
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
    /// it is still valid (and not one a server rejected), else says what failed.
    async fn keep_after_failure(
        &self,
        key: &SessionKey,
        guard: &S::Guard,
        current: Versioned,
        failure: ProviderFailure,
        fallback: bool,
        trigger: &Trigger,
    ) -> Outcome {
        let now = self.now();
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
            .inner
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
                what: Unrecorded::Failure,
                message: e.to_string(),
            }),
        }
        self.emit(Event::RefreshFailed {
            key: key.clone(),
            class: failure.class,
            cause: failure.cause,
            message: summary.clone(),
            next_attempt_at: record.health.next_attempt_at,
        });
        if fallback
            && let Some(tokens) = record.tokens.as_ref().filter(|t| t.is_usable(now))
            && trigger.rejected() != Some(&tokens.access_token)
        {
            self.emit(Event::ServedStored {
                key: key.clone(),
                expires_at: tokens.expires_at,
                reason: Stored::AfterFailure {
                    class: failure.class,
                    cause: failure.cause,
                    message: summary,
                },
            });
            return Ok(Token::from_tokens(tokens, false));
        }
        Err(Error::RefreshFailed {
            key: key.clone(),
            class: failure.class,
            failure,
            rejected: trigger.rejected().is_some(),
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
    ) -> Outcome {
        let now = self.now();
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
        self.inner
            .store
            .write(guard, Some(latest.generation), &record)
            .await?;
        self.emit(Event::SessionEnded { key: key.clone() });
        self.changed(key, ChangeKind::Ended, None);
        Err(Error::LoginRequired {
            key: key.clone(),
            reason: LoginReason::SessionEnded,
            detail: Some(message),
        })
    }
}
