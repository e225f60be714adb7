//! Account state changes, read from the keeper's events as they happen, and
//! the webhook that reports them.
//!
//! The watcher remembers which accounts are failing or need a login (seeded
//! from the store at start), so that it reports a change once: an account
//! that comes to need a login (`needs_login`, with the class that ended it:
//! `session_dead`, `interaction_required`, `login_required`), and one that
//! was failing or needed a login and now refreshed or was given a login
//! (`recovered`). A transient failure never makes an account need a login.
//! Each agent reports the changes it sees happen (its own refreshes and
//! logins stored through it). Deliveries are POSTs of
//! `{"account","state","class","at"}` (never a secret), from a bounded queue,
//! retried with back-off; a full queue drops the change and counts it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authkeep::{Clock, Event, FailureClass, LoginReason, SessionKey};
use authkeep_db::AccountState;
use jiff::Timestamp;
use tokio::sync::{Semaphore, mpsc};

use crate::metrics::Metrics;

/// How many changes wait for delivery at most.
const QUEUE: usize = 1024;
/// Deliveries under way at once.
const PARALLEL: usize = 4;
/// Pauses before the second and later attempts of one delivery.
const RETRY_PAUSES: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];
/// The longest one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A change of an account's state, as the webhook reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Transition {
    /// The account id.
    pub account: String,
    /// `needs_login` or `recovered`.
    pub state: &'static str,
    /// Why it needs a login (`session_dead`, `interaction_required`,
    /// `login_required`); `null` for a recovery.
    pub class: Option<&'static str>,
    /// When it was seen, RFC 3339.
    pub at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tracked {
    Failing,
    NeedsLogin,
}

/// Follows keeper events: counts refreshes and reports state changes.
pub struct Watcher {
    tracked: Mutex<HashMap<SessionKey, Tracked>>,
    queue: Option<mpsc::Sender<Transition>>,
    pending: Mutex<Option<mpsc::Receiver<Transition>>>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("webhook", &self.queue.is_some())
            .finish_non_exhaustive()
    }
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each critical section is one lookup or update of the map.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Watcher {
    /// A watcher counting into `metrics`; with `webhook`, changes are queued
    /// for delivery once [`Watcher::deliver`] runs.
    pub fn new(metrics: Arc<Metrics>, clock: Arc<dyn Clock>, webhook: bool) -> Self {
        let (queue, pending) = if webhook {
            let (tx, rx) = mpsc::channel(QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Self {
            tracked: Mutex::new(HashMap::new()),
            queue,
            pending: Mutex::new(pending),
            metrics,
            clock,
        }
    }

    /// Remembers an account's state as the store shows it, at start.
    pub fn seed(&self, key: SessionKey, state: AccountState) {
        let tracked = match state {
            AccountState::Failing => Tracked::Failing,
            AccountState::NeedsLogin => Tracked::NeedsLogin,
            AccountState::Active | AccountState::CannotRenew => return,
            _ => return,
        };
        locked(&self.tracked).insert(key, tracked);
    }

    /// Reads one keeper event (cheap: it runs in the keeper's sink).
    pub fn event(&self, event: &Event) {
        match event {
            Event::Refreshed { key, .. } => {
                self.metrics.refresh("success", "none");
                self.recovered(key);
            }
            Event::RefreshFailed { key, class, .. } => {
                self.metrics.refresh("failure", class.as_str());
                if *class == FailureClass::InteractionRequired {
                    self.needs_login(key, "interaction_required");
                } else {
                    locked(&self.tracked)
                        .entry(key.clone())
                        .or_insert(Tracked::Failing);
                }
            }
            Event::SessionEnded { key } => {
                self.metrics.refresh("failure", "session_dead");
                self.needs_login(key, "session_dead");
            }
            Event::NotSaved { .. } => self.metrics.refresh("failure", "not_saved"),
            Event::LoginRequired { key, reason } => {
                let class = match reason {
                    LoginReason::NoSession => return,
                    LoginReason::SessionEnded => "session_dead",
                    LoginReason::InteractionRequired => "interaction_required",
                    _ => "login_required",
                };
                self.needs_login(key, class);
            }
            _ => {}
        }
    }

    /// A login was stored for the account.
    pub fn logged_in(&self, key: &SessionKey) {
        self.recovered(key);
    }

    fn recovered(&self, key: &SessionKey) {
        if locked(&self.tracked).remove(key).is_some() {
            self.send(key, "recovered", None);
        }
    }

    fn needs_login(&self, key: &SessionKey, class: &'static str) {
        let before = locked(&self.tracked).insert(key.clone(), Tracked::NeedsLogin);
        if before != Some(Tracked::NeedsLogin) {
            self.send(key, "needs_login", Some(class));
        }
    }

    fn send(&self, key: &SessionKey, state: &'static str, class: Option<&'static str>) {
        let Some(queue) = &self.queue else {
            return;
        };
        let transition = Transition {
            account: key.as_str().to_owned(),
            state,
            class,
            at: self.clock.now().round(jiff::Unit::Second).map_or_else(
                |_| self.clock.now().to_string(),
                |t: Timestamp| t.to_string(),
            ),
        };
        if queue.try_send(transition).is_err() {
            self.metrics.webhook("dropped");
        }
    }

    /// Delivers queued changes to `url` until `stop` resolves; then waits at
    /// most `grace` for deliveries under way. Runs once per watcher (a second
    /// call returns at once).
    pub async fn deliver(
        &self,
        url: url::Url,
        stop: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        let Some(mut rx) = locked(&self.pending).take() else {
            return;
        };
        let client = match reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(_) => {
                // No HTTP client: every change is counted as failed.
                rx.close();
                while rx.recv().await.is_some() {
                    self.metrics.webhook("failed");
                }
                return;
            }
        };
        let slots = Arc::new(Semaphore::new(PARALLEL));
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            let transition = tokio::select! {
                next = rx.recv() => match next {
                    Some(t) => t,
                    None => break,
                },
                () = &mut stop => break,
            };
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let (client, url, metrics) = (client.clone(), url.clone(), Arc::clone(&self.metrics));
            tasks.spawn(async move {
                let outcome = deliver_one(&client, &url, &transition).await;
                metrics.webhook(outcome);
                drop(slot);
            });
            while tasks.try_join_next().is_some() {}
        }
        // Whatever is still queued goes out now, within the grace period.
        rx.close();
        while let Ok(transition) = rx.try_recv() {
            let (client, url, metrics) = (client.clone(), url.clone(), Arc::clone(&self.metrics));
            tasks.spawn(async move {
                metrics.webhook(deliver_one(&client, &url, &transition).await);
            });
        }
        let drained = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tasks.abort_all();
        }
    }
}

/// One change, with retries: `delivered` on a 2xx answer, else `failed`.
async fn deliver_one(client: &reqwest::Client, url: &url::Url, t: &Transition) -> &'static str {
    let mut pauses = RETRY_PAUSES.iter();
    loop {
        let sent = client.post(url.clone()).json(t).send().await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            return "delivered";
        }
        match pauses.next() {
            Some(pause) => tokio::time::sleep(*pause).await,
            None => return "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authkeep::oauth::Cause;
    use authkeep::{ManualClock, Stored};

    fn key(id: &str) -> SessionKey {
        SessionKey::account(id).unwrap()
    }

    fn failed(id: &str, class: FailureClass) -> Event {
        Event::RefreshFailed {
            key: key(id),
            class,
            cause: Cause::Answer,
            message: "whatever the provider said".into(),
            next_attempt_at: None,
        }
    }

    #[tokio::test]
    async fn each_change_is_reported_once_and_transient_failures_never_need_a_login() {
        let metrics = Arc::new(Metrics::default());
        let clock = Arc::new(ManualClock::new("2026-06-01T12:00:00Z".parse().unwrap()));
        let watcher = Watcher::new(Arc::clone(&metrics), clock, true);
        watcher.event(&failed("a", FailureClass::Transient));
        watcher.event(&failed("a", FailureClass::Transient));
        watcher.event(&failed("b", FailureClass::InteractionRequired));
        watcher.event(&Event::SessionEnded { key: key("c") });
        watcher.event(&Event::LoginRequired {
            key: key("c"),
            reason: LoginReason::SessionEnded,
        });
        watcher.event(&Event::LoginRequired {
            key: key("nobody"),
            reason: LoginReason::NoSession,
        });
        watcher.event(&Event::Refreshed {
            key: key("a"),
            expires_at: None,
            rotated: true,
        });
        watcher.event(&Event::Refreshed {
            key: key("d"),
            expires_at: None,
            rotated: true,
        });
        watcher.logged_in(&key("c"));
        watcher.event(&Event::ServedStored {
            key: key("e"),
            expires_at: None,
            reason: Stored::CannotRenew,
        });
        let mut rx = watcher.pending.lock().unwrap().take().unwrap();
        let mut seen = Vec::new();
        while let Ok(t) = rx.try_recv() {
            seen.push((t.account, t.state, t.class));
        }
        assert_eq!(
            seen,
            [
                ("b".to_owned(), "needs_login", Some("interaction_required")),
                ("c".to_owned(), "needs_login", Some("session_dead")),
                ("a".to_owned(), "recovered", None),
                ("c".to_owned(), "recovered", None),
            ]
        );
        assert_eq!(metrics.refreshes("failure", "transient"), 2);
        assert_eq!(metrics.refreshes("success", "none"), 2);
        assert_eq!(metrics.refreshes("failure", "session_dead"), 1);
    }
}
