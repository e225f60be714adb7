//! The agent as a whole: what it is built from ([`AgentOptions`]), the state
//! every request and task shares ([`AgentState`]: the store, the keeper, the
//! metrics, the watcher and the access check, which the status page uses
//! too), and [`Agent::run`], which serves until shutdown and then lets every
//! refresh in flight finish and be saved.

use std::sync::Arc;
use std::time::Duration;

use authkeep::{Keeper, KeeperBuilder};
use authkeep_db::{AccountFilter, AccountState, DbStore};
use jiff::SignedDuration;
use tokio::sync::Notify;

use crate::api::Access;
use crate::error::AgentError;
use crate::listen::Bound;
use crate::metrics::Metrics;
use crate::watch::Watcher;

/// Refreshes at once, unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Every account is refreshed at least this often, unless told otherwise, so
/// that refresh tokens that die when unused stay alive.
pub const DEFAULT_KEEP_ALIVE: SignedDuration = SignedDuration::from_hours(24);
/// The longest wait for webhook deliveries at shutdown.
const WEBHOOK_GRACE: Duration = Duration::from_secs(10);

/// How the agent runs.
#[derive(Clone)]
#[non_exhaustive]
pub struct AgentOptions {
    /// Refreshes at once, at most (at least 1).
    pub concurrency: usize,
    /// The longest sleep between looks at the store, so that accounts that
    /// other processes add or change are noticed (default 1 s).
    pub poll: Duration,
    /// Where state changes are posted.
    pub webhook: Option<url::Url>,
    /// Who may call the API.
    pub access: Access,
    /// Where the agent's own lines go (start, failures), one at a time.
    pub log: Arc<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("concurrency", &self.concurrency)
            .field("poll", &self.poll)
            .field("webhook", &self.webhook.is_some())
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            poll: Duration::from_secs(1),
            webhook: None,
            access: Access::default(),
            log: Arc::new(|_| {}),
        }
    }
}

impl AgentOptions {
    /// At most `n` refreshes at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Looks at the store at least every `poll`.
    pub fn poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Posts state changes to `url`.
    pub fn webhook(mut self, url: url::Url) -> Self {
        self.webhook = Some(url);
        self
    }

    /// Who may call the API.
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Sends the agent's own lines to `log`.
    pub fn log(mut self, log: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.log = Arc::new(log);
        self
    }
}

/// What every request and task of an agent shares.
#[non_exhaustive]
pub struct AgentState {
    /// The store.
    pub store: DbStore,
    /// The keeper every refresh goes through.
    pub keeper: Keeper<DbStore>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// State changes.
    pub watcher: Arc<Watcher>,
    /// Who may call the API.
    pub access: Access,
    /// Wakes the scheduler (a login was stored).
    pub(crate) wake: Notify,
    pub(crate) log: Arc<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState")
            .field("store", &self.store)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl AgentState {
    pub(crate) fn log(&self, line: &str) {
        (self.log)(line);
    }
}

/// An agent over one store.
#[derive(Debug)]
pub struct Agent {
    state: Arc<AgentState>,
    options: AgentOptions,
}

impl Agent {
    /// An agent over `store`; `configure` sets up its keeper (policy,
    /// network, lock wait) — the agent adds its own event sink and the
    /// store's clock.
    pub fn new(
        store: DbStore,
        options: AgentOptions,
        configure: impl FnOnce(KeeperBuilder<DbStore>) -> KeeperBuilder<DbStore>,
    ) -> Agent {
        let metrics = Arc::new(Metrics::default());
        let clock = Arc::clone(&store.options().clock);
        let watcher = Arc::new(Watcher::new(
            Arc::clone(&metrics),
            Arc::clone(&clock),
            options.webhook.is_some(),
        ));
        let sink = Arc::clone(&watcher);
        let keeper = configure(Keeper::builder(store.clone()).clock(clock))
            .on_event(move |event| sink.event(event))
            .build();
        let state = Arc::new(AgentState {
            store,
            keeper,
            metrics,
            watcher,
            access: options.access.clone(),
            wake: Notify::new(),
            log: Arc::clone(&options.log),
        });
        Agent { state, options }
    }

    /// The shared state (for tests and the status page).
    pub fn state(&self) -> &Arc<AgentState> {
        &self.state
    }

    /// Serves the API on `bound` and runs the scheduler until `shutdown`
    /// resolves; then stops claiming accounts, lets the refreshes and
    /// requests in flight finish (their results saved), delivers queued
    /// webhook calls for a few seconds more, and returns.
    pub async fn run(
        self,
        bound: Bound,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), AgentError> {
        let state = self.state;
        for watched in [AccountState::Failing, AccountState::NeedsLogin] {
            for summary in state
                .store
                .accounts(&AccountFilter::all().state(watched))
                .await?
            {
                state.watcher.seed(summary.key, summary.state);
            }
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            // An error means the sender is gone: stop too.
            rx.wait_for(|stop| *stop).await.ok();
        };
        let scheduler = tokio::spawn(crate::scheduler::run(
            Arc::clone(&state),
            self.options.concurrency,
            self.options.poll,
            stop_rx.clone(),
        ));
        let webhook = self.options.webhook.clone().map(|url| {
            let watcher = Arc::clone(&state.watcher);
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move { watcher.deliver(url, stop, WEBHOOK_GRACE).await })
        });
        let signal = tokio::spawn(async move {
            shutdown.await;
            // Every receiver may be gone already: nothing left to stop.
            stop_tx.send(true).ok();
        });
        let router = crate::api::router(Arc::clone(&state));
        let graceful = stopped(stop_rx.clone());
        let (served, socket) = match bound {
            Bound::Tcp(listener) => (
                axum::serve(listener, router)
                    .with_graceful_shutdown(graceful)
                    .await,
                None,
            ),
            Bound::Unix(listener, path) => (
                axum::serve(listener, router)
                    .with_graceful_shutdown(graceful)
                    .await,
                Some(path),
            ),
        };
        // The server stopped: on a signal, or because it failed. Either way
        // the scheduler stops claiming and finishes what it started.
        signal.abort();
        let mut stop_rx = stop_rx;
        if !*stop_rx.borrow_and_update() {
            state.log("the API server stopped; stopping the scheduler");
        }
        drop(stop_rx);
        let scheduled = scheduler.await;
        if let Some(webhook) = webhook
            && let Err(e) = webhook.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        if let Some(path) = socket {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => state.log(&format!(
                    "could not remove the socket {}: {e}",
                    path.display()
                )),
            }
        }
        state.store.close().await;
        if let Err(e) = scheduled
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        served.map_err(|e| AgentError::io("serving the API failed on", "its listener", e))
    }
}
