//! `authkeep demo`: watch authkeep keep a session alive against a development
//! identity provider started in-process, in a temporary home, for about a minute.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use authkeep::{Client, Demand, Event, FileStore, Keeper, Policy, SessionKey, Stored};
use authkeep_devidp::{Config, DevIdp, FaultKind, Faults, Flavor};
use jiff::{SignedDuration, Timestamp};

use super::devidp::FlavorArg;
use crate::names::parse_duration;
use crate::printer;

/// Watch authkeep keep a session alive for about a minute against a development
/// identity provider it starts itself (short token lifetimes, rotating refresh
/// tokens, reuse detection): tokens served from the store without network, refresh
/// ahead of expiry with the rotated refresh token saved, eight concurrent callers
/// sharing one refresh, an outage ridden out, and a count of requests made and
/// avoided. `--flavor` makes the provider answer as a real one does. Needs nothing
/// but a free loopback port; leaves nothing behind.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How long to run.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    duration: SignedDuration,
    /// Lifetime of the provider's access tokens.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    access_ttl: SignedDuration,
    #[command(flatten)]
    flavor: FlavorArg,
}

/// What the events of one step said.
#[derive(Default)]
struct Seen {
    refreshed: Option<bool>,
    failed: Option<String>,
    served_after_failure: bool,
    backing_off: bool,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let duration = Duration::try_from(args.duration).unwrap_or_default();
    let ttl = Duration::try_from(args.access_ttl).unwrap_or_default();
    if ttl < Duration::from_secs(4) {
        return Err(crate::exit::usage("--access-ttl must be at least 4s"));
    }
    let runtime = crate::runtime()?;
    runtime.block_on(demo(duration, ttl, args.flavor.flavor))
}

async fn demo(duration: Duration, ttl: Duration, flavor: Flavor) -> Result<()> {
    let home = tempfile::Builder::new()
        .prefix("authkeep-demo-")
        .tempdir()
        .context("cannot create a temporary home")?;
    let config = Config {
        access_ttl: ttl,
        device_interval: Duration::from_secs(1),
        ..Config::for_flavor(flavor)
    };
    let idp = DevIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .context("cannot start the development identity provider on 127.0.0.1")?;
    let issuer = idp.issuer();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink_seen = seen.clone();
    let window = Policy::default().window(Some(SignedDuration::try_from(ttl)?));
    let keeper = Keeper::builder(FileStore::new(home.path().join("sessions")))
        .discovery_cache(home.path().join("cache"))
        .on_event(move |event| {
            let mut seen = sink_seen.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                Event::Refreshed { rotated, .. } => seen.refreshed = Some(*rotated),
                Event::RefreshFailed { message, .. } => seen.failed = Some(message.clone()),
                Event::ServedStored {
                    reason: Stored::AfterFailure { .. },
                    ..
                } => seen.served_after_failure = true,
                Event::ServedStored {
                    reason: Stored::BackingOff { .. },
                    ..
                } => seen.backing_off = true,
                _ => {}
            }
        })
        .build();
    let key = SessionKey::new("demo").map_err(|e| anyhow!(e))?;

    say(&format!(
        "authkeep demo: keeping one session alive for {} against a development identity provider",
        printer::duration(SignedDuration::try_from(duration)?)
    ))?;
    say(&format!(
        "  provider  {issuer}, answering as {flavor} (access tokens live {}; {})",
        printer::duration(SignedDuration::try_from(ttl)?),
        if flavor.rotates() {
            "refresh tokens rotate; reusing one revokes the grant"
        } else {
            "the refresh token stays the same"
        }
    ))?;
    say(&format!(
        "  store     {} (a temporary home, removed at the end)",
        home.path().display()
    ))?;
    say(&format!(
        "  policy    refresh when less than min(5m, 50% of the lifetime) = {} remains",
        printer::duration(window)
    ))?;
    say("")?;

    let started = Instant::now();
    device_login(&keeper, &key, &issuer, started).await?;

    let tick = (ttl / 10).clamp(Duration::from_millis(500), Duration::from_secs(2));
    let (mut calls, mut from_store, mut race_done, mut outage) = (0u64, 0u64, false, 0u8);
    while started.elapsed() < duration {
        tokio::time::sleep(tick).await;
        let elapsed = started.elapsed();
        let stored = keeper
            .store()
            .load_blocking(&key)?
            .and_then(|v| v.record.tokens);
        let old_refresh = stored.as_ref().and_then(|t| t.refresh_token.clone());
        let left = stored
            .as_ref()
            .and_then(|t| t.expires_at)
            .map(|at| at.duration_since(Timestamp::now()));
        let in_window = left.is_some_and(|l| l <= window);

        // Once, the second time the token nears expiry: eight callers at once.
        if in_window && !race_done && elapsed > ttl {
            race_done = true;
            let before = idp.counters().token_requests_for("refresh_token");
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let (keeper, key) = (keeper.clone(), key.clone());
                tasks.spawn(async move { keeper.token(&key, Demand::default()).await });
            }
            while let Some(result) = tasks.join_next().await {
                result.context("a demo task failed")??;
            }
            calls += 8;
            let sent = idp.counters().token_requests_for("refresh_token") - before;
            from_store += 8 - sent;
            step(
                started,
                &format!(
                    "race     8 callers at once inside the window -> {sent} refresh request; the others used its result"
                ),
            )?;
            take(&seen);
            continue;
        }
        // Once, later: the provider goes down while the token is still valid.
        if in_window && race_done && outage == 0 && elapsed > ttl * 2 {
            outage = 1;
            idp.set_faults(Faults {
                fraction: 1.0,
                kind: Some(FaultKind::Status {
                    status: 503,
                    retry_after: None,
                    body: None,
                }),
                ..Faults::default()
            });
        }

        let served = keeper.token(&key, Demand::default()).await?;
        calls += 1;
        let events = take(&seen);
        let remaining = served
            .expires_at
            .map(|at| printer::duration(at.duration_since(Timestamp::now())))
            .unwrap_or_default();
        if let Some(rotated) = events.refreshed {
            let old_active = old_refresh
                .as_ref()
                .is_some_and(|rt| idp.is_active(rt.expose_secret()));
            step(
                started,
                &format!(
                    "refresh  {} -> refreshed; new token valid {remaining}{}{}",
                    match left {
                        Some(left) if left.is_positive() =>
                            format!("{} left, inside the window", printer::duration(left)),
                        _ => "expired".to_owned(),
                    },
                    if rotated {
                        "; rotated refresh token saved before use"
                    } else {
                        ""
                    },
                    if old_active {
                        ""
                    } else {
                        "; the old refresh token is now rejected by the provider"
                    },
                ),
            )?;
            if outage == 1 {
                outage = 2;
                step(
                    started,
                    "recover  the provider is back: refreshed, and the session never ended",
                )?;
            }
        } else if let Some(failure) = events.failed {
            step(
                started,
                &format!(
                    "outage   refresh failed ({failure}) -> kept the session, served the stored token ({remaining} left); retry by expiry at the latest"
                ),
            )?;
            idp.set_faults(Faults::default());
        } else if events.backing_off || events.served_after_failure {
            from_store += 1;
            step(
                started,
                &format!(
                    "wait     served the stored token ({remaining} left) while backing off after the failure; no request"
                ),
            )?;
        } else {
            from_store += 1;
            step(
                started,
                &format!(
                    "token    served from the store, {remaining} left - no network (no DNS, no HTTP client, no request)"
                ),
            )?;
        }
    }

    let counters = idp.counters();
    let refreshes = counters.token_requests_for("refresh_token");
    let final_token = keeper.token(&key, Demand::default()).await?;
    let accepted = idp.is_active(final_token.access_token.expose_secret());
    say("")?;
    say("summary")?;
    say(&format!("  token requests by the application   {calls}"))?;
    say(&format!(
        "  served from the store, no network   {from_store}"
    ))?;
    say(&format!(
        "  refresh requests sent               {refreshes} (ok {}, failed {})",
        counters.outcome("refresh_token", "ok"),
        refreshes - counters.outcome("refresh_token", "ok")
    ))?;
    say(&format!(
        "  network requests avoided            {}",
        calls.saturating_sub(refreshes)
    ))?;
    say(&format!(
        "  grants revoked by reuse detection   {}",
        counters.grants_revoked
    ))?;
    say(&format!(
        "  session alive at the end            {}",
        if accepted {
            "yes: the provider accepts the current token"
        } else {
            "NO"
        }
    ))?;
    idp.shutdown().await;
    if !accepted {
        return Err(anyhow!("the demo session did not survive; this is a bug"));
    }
    Ok(())
}

/// Logs in with a real device login, and plays the person who approves it in
/// a browser: opens the verification page and presses Approve, over HTTP.
async fn device_login(
    keeper: &Keeper<FileStore>,
    key: &SessionKey,
    issuer: &str,
    started: Instant,
) -> Result<()> {
    let metadata = keeper.metadata(key, issuer).await?;
    let client = Client::new(issuer, authkeep_devidp::DEFAULT_CLIENT_ID)
        .with_scope(authkeep_devidp::DEFAULT_SCOPE);
    let (shown, prompt) = tokio::sync::oneshot::channel();
    let person = tokio::spawn(async move {
        let (page, user_code): (String, String) = prompt
            .await
            .map_err(|_| anyhow!("the login ended before it showed a code"))?;
        // Long enough for a poll or two to find the approval pending.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        approve(&page, &user_code).await?;
        step(
            started,
            "person   opened the page, checked the code and pressed Approve (a browser's GET and POST, made by the demo)",
        )
    });
    let unshown = Mutex::new(None);
    let logged_in = keeper
        .login_device(
            key,
            client,
            &metadata,
            &[],
            Duration::from_secs(60),
            |authorization| {
                let page = authorization
                    .verification_uri_complete
                    .clone()
                    .unwrap_or_else(|| authorization.verification_uri.clone());
                let line = format!(
                    "login    device login (RFC 8628): open {} and enter {}",
                    authorization.verification_uri, authorization.user_code
                );
                // A closed stdout ends the demo once the login is over.
                if let Err(e) = step(started, &line) {
                    *unshown.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
                // The approving task waits for this, and is gone only if it
                // panicked, which awaiting it below reports.
                if shown.send((page, authorization.user_code.clone())).is_err() {}
            },
        )
        .await;
    person.await.context("the demo's approving task failed")??;
    if let Some(error) = unshown.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(error);
    }
    let stored = logged_in?;
    let expires = stored
        .session()
        .record
        .tokens
        .as_ref()
        .and_then(|t| t.expires_at)
        .map(|at| printer::duration(at.duration_since(Timestamp::now())))
        .unwrap_or_default();
    step(
        started,
        &format!(
            "login    approved -> session stored (0600 file), access token valid {expires}; it holds a refresh token, so it can renew itself"
        ),
    )
}

/// What a person does in the browser: open the verification page and submit
/// its form with Approve.
async fn approve(page: &str, user_code: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let opened = http
        .get(page)
        .send()
        .await
        .context("opening the verification page")?;
    if !opened.status().is_success() {
        return Err(anyhow!(
            "the verification page answered {}",
            opened.status()
        ));
    }
    // The page's form posts to the page itself, without the query.
    let mut action = opened.url().clone();
    action.set_query(None);
    let form = [
        ("user_code", user_code),
        ("user", authkeep_devidp::DEFAULT_USER),
        ("action", "approve"),
    ];
    let approved = http
        .post(action.as_str())
        .form(&form)
        .send()
        .await
        .context("submitting the verification page")?;
    if !approved.status().is_success() {
        return Err(anyhow!("approving answered {}", approved.status()));
    }
    Ok(())
}

fn take(seen: &Mutex<Seen>) -> Seen {
    std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()))
}

fn say(line: &str) -> Result<()> {
    printer::out(line)
}

fn step(started: Instant, line: &str) -> Result<()> {
    printer::out(&format!(
        "[{:>5.1}s] {line}",
        started.elapsed().as_secs_f64()
    ))
}
