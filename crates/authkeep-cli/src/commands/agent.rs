//! `authkeep agent`: refreshes every account of a database store ahead of
//! expiry and serves the token API (on `agent.sock` in the state directory,
//! or `--listen`), until SIGTERM or SIGINT; then it lets the refreshes in
//! flight finish and be saved, and exits 0. The work is the agent library's
//! (`authkeep-agent`); this file parses, opens the store and prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use authkeep::Policy;
use authkeep_agent::{
    Access, Agent, AgentOptions, ApiKey, Bound, DEFAULT_CONCURRENCY, Listen, parse_duration,
};
use authkeep_db::{DbOptions, Schedule};
use clap::Args;
use jiff::SignedDuration;

use crate::common::{Home, stderr_line};
use crate::database::{DbArgs, open, url};
use crate::exit::usage;
use crate::names::DEFAULT_AGENT_SOCKET;

/// `authkeep agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Where the token API listens: unix:PATH, or 127.0.0.1:PORT (loopback only; needs
    /// --api-key-file) [default: unix: with agent.sock in the state directory]
    #[arg(long, value_name = "ADDRESS")]
    listen: Option<String>,
    /// The API key every TCP request must carry as `Authorization: Bearer KEY` (a 0600 file)
    #[arg(long, value_name = "PATH")]
    api_key_file: Option<PathBuf>,
    /// Refreshes at once, at most (a large fleet wants 64 to 256: writes are
    /// batched, so more at once means more a second)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Refresh every account at least this often, for providers whose refresh tokens die when
    /// unused (0s: never)
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    keep_alive: SignedDuration,
    /// POST {"account","state","class","at"} here when an account needs a login or recovers
    #[arg(long, value_name = "URL")]
    webhook: Option<url::Url>,
    /// How long a refresh's lease on an account lasts unless renewed (tests)
    #[arg(long, value_name = "DURATION", hide = true, value_parser = parse_duration)]
    lease_ttl: Option<SignedDuration>,
}

fn std_duration(d: SignedDuration) -> Duration {
    // Parsed durations are never negative.
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Runs the agent until a signal.
pub fn run(args: AgentArgs) -> Result<()> {
    let home = Home::locate()?;
    let listen = match &args.listen {
        Some(text) => Listen::parse(text).map_err(|e| usage(e.to_string()))?,
        None => Listen::Unix(home.state_dir.join(DEFAULT_AGENT_SOCKET)),
    };
    let access = match (&listen, &args.api_key_file) {
        (Listen::Tcp(_), Some(path)) => {
            Access::bearer(ApiKey::read_file(path).map_err(|e| usage(e.to_string()))?)
        }
        (Listen::Tcp(_), None) => {
            return Err(usage(
                "--listen on TCP needs --api-key-file PATH: every request must carry that key",
            ));
        }
        (Listen::Unix(_), Some(_)) => {
            return Err(usage(
                "--api-key-file is for --listen 127.0.0.1:PORT; a unix socket is private to its owner (0600)",
            ));
        }
        (Listen::Unix(_), None) => Access::socket_owner(),
    };
    if let Some(url) = &args.webhook
        && !matches!(url.scheme(), "http" | "https")
    {
        return Err(usage("--webhook must be an http or https URL"));
    }
    let keep_alive = (!args.keep_alive.is_zero()).then_some(args.keep_alive);
    let mut db_options =
        DbOptions::default().schedule(Schedule::default().with_keep_alive(keep_alive));
    if let Some(ttl) = args.lease_ttl {
        db_options = db_options.lease_ttl(std_duration(ttl));
    }
    if !url(&args.db, &home)?.starts_with("sqlite:") {
        // Each refresh holds a connection for a few round trips: a pool
        // smaller than the refreshes at once makes them queue for it (the
        // bench measured 8 connections capping 64 refreshes). SQLite keeps
        // its default: it has one writer whatever the pool.
        db_options = db_options.max_connections(pool_size(args.concurrency));
    }
    let mut options = AgentOptions::default()
        .concurrency(args.concurrency)
        .access(access)
        .log(|line| stderr_line(&format!("authkeep agent: {line}")));
    if let Some(url) = args.webhook.clone() {
        options = options.webhook(url);
    }
    let discovery = home.state_dir.join("cache").join("discovery");
    runtime()?.block_on(async move {
        let shutdown = shutdown_signal()?;
        let store = open(&args.db, &home, db_options).await?;
        let location = store.location().to_owned();
        let agent = Agent::new(store, options, |keeper| {
            keeper.policy(Policy::default()).discovery_cache(discovery)
        });
        let bound = match Bound::bind(&listen).await {
            Ok(bound) => bound,
            Err(e) => {
                agent.state().store.close().await;
                return Err(usage(e.to_string()));
            }
        };
        stderr_line(&format!(
            "authkeep agent: serving {} (store {location})",
            bound.describe()
        ));
        agent
            .run(bound, shutdown)
            .await
            .context("the agent stopped")?;
        stderr_line("authkeep agent: stopped");
        Ok(())
    })
}

/// Connections to PostgreSQL for `concurrency` refreshes at once, the API and
/// the scheduler's own queries.
fn pool_size(concurrency: usize) -> u32 {
    u32::try_from(concurrency.saturating_add(4))
        .unwrap_or(u32::MAX)
        .clamp(8, MAX_POOL)
}

/// The most connections one agent opens to PostgreSQL (its default
/// `max_connections` is 100, shared by every agent).
const MAX_POOL: u32 = 32;

/// A runtime with a worker per core: refreshes, the store's drivers and API
/// requests run in parallel (the commands that do one thing use the
/// single-threaded one).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the agent's runtime")
}

/// Resolves at the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            // Without a handler, Ctrl-C ends the process at once.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
