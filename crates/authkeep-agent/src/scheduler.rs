//! The scheduler: claims due accounts from the store (which several agents
//! share without claiming one twice) and refreshes each, at most
//! `concurrency` at once, with `Keeper::refresh_unless_changed` at the
//! generation it claimed, so that an account written meanwhile (an
//! application's refresh through the API, another agent) is not refreshed
//! again. A claim takes the accounts' leases, which their refreshes take up.
//! Accounts are claimed a little ahead of their due instants, in batches;
//! between claims it sleeps until the next comes near, at most the poll
//! interval, or until woken. When told to stop it claims nothing more
//! and waits for the refreshes it started: their results are saved.
//!
//! Back-off and `Retry-After` need nothing here: the keeper records them in
//! the account's health and the store moves its due instant past them.

use std::sync::Arc;
use std::time::Duration;

use authkeep::Error;
use authkeep_db::Claim;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::api::failure_parts;
use crate::state::AgentState;

/// The pause after the store failed to answer, doubling to the poll interval.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(100);
/// How far ahead of their due instants accounts are claimed (each waits in
/// its slot until due), and the shortest pause between claims while nothing
/// is overdue: each claim takes what comes due over the next stretch,
/// instead of one claim per account when due instants are spread out.
const CLAIM_AHEAD: Duration = Duration::from_millis(200);
const CLAIM_GAP: Duration = Duration::from_millis(100);
/// With more due than slots, the share of the slots that must be free
/// before the next claim, so that claims stay batches instead of one per
/// slot freed.
const BACKLOG_BATCH_DIVISOR: usize = 8;

pub(crate) async fn run(
    state: Arc<AgentState>,
    concurrency: usize,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let concurrency = concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let mut store_pause = STORE_RETRY_FIRST;
    // Whether the last claim filled every free slot: more is due.
    let mut backlog = false;
    loop {
        if *stop.borrow() {
            break;
        }
        while let Some(done) = tasks.try_join_next() {
            surface_panic(done);
        }
        let free = slots.available_permits();
        let batch = if backlog {
            (concurrency / BACKLOG_BATCH_DIVISOR).max(1)
        } else {
            1
        };
        // `None`: until a refresh ends and frees its slot.
        let mut pause = None;
        if free >= batch {
            let now = state.keeper.now();
            let through = now.saturating_add(CLAIM_AHEAD).unwrap_or(now);
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            state.metrics.claim();
            match state.store.claim_due(limit, through).await {
                Ok(claims) => {
                    store_pause = STORE_RETRY_FIRST;
                    backlog = claims.len() == free;
                    for claim in claims {
                        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                            // Only this loop takes slots, and it counted them.
                            release_unused(&state, &claim).await;
                            continue;
                        };
                        tasks.spawn(refresh(Arc::clone(&state), claim, slot));
                    }
                    if !backlog {
                        pause = Some(until_next_due(&state, poll).await);
                    }
                }
                Err(e) => {
                    state.metrics.scheduler_error();
                    state.log(&format!("cannot claim due accounts: {e}"));
                    pause = Some(store_pause);
                    store_pause = (store_pause * 2).min(poll.max(STORE_RETRY_FIRST));
                }
            }
        }
        if tasks.is_empty() {
            // Nothing to wait for but time (cannot happen with `None`: every
            // slot would be free).
            pause = Some(pause.unwrap_or(poll));
        }
        let slot_freed = async {
            if pause.is_some() {
                std::future::pending::<()>().await;
            }
            if let Some(done) = tasks.join_next().await {
                surface_panic(done);
            }
        };
        let sleep = async {
            match pause {
                Some(pause) => tokio::time::sleep(pause).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = slot_freed => {}
            () = state.wake.notified() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    // Stopping: nothing more is claimed; what was started finishes and is
    // saved (the keeper's attempt runs in a task of its own).
    while let Some(done) = tasks.join_next().await {
        surface_panic(done);
    }
}

/// How long to sleep before claiming again: until the next due account
/// comes within [`CLAIM_AHEAD`], at least [`CLAIM_GAP`] and at most `poll`.
async fn until_next_due(state: &AgentState, poll: Duration) -> Duration {
    match state.store.next_due().await {
        Ok(Some(due)) => {
            let left = due.duration_since(state.keeper.now());
            let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
            left.saturating_sub(CLAIM_AHEAD)
                .clamp(CLAIM_GAP.min(poll), poll)
        }
        Ok(None) => poll,
        Err(e) => {
            state.metrics.scheduler_error();
            state.log(&format!("cannot read the next due account: {e}"));
            poll
        }
    }
}

/// Lets go of a claimed account's lease if nothing took it up.
async fn release_unused(state: &AgentState, claim: &Claim) {
    if let Err(e) = state.store.release_claim(claim).await {
        // Its lease runs out by itself within the lease's lifetime.
        state.log(&format!(
            "account {}: cannot release its claim: {e}",
            claim.key
        ));
    }
}

fn surface_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        // A panic in a refresh is a bug: it is the agent's too.
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Refreshes one claimed account when it is due, recording how late it
/// started.
async fn refresh(state: Arc<AgentState>, claim: Claim, slot: OwnedSemaphorePermit) {
    if let Some(due) = claim.due_at {
        // Claimed ahead: refreshed when due, not before.
        let early = due.duration_since(state.keeper.now());
        if let Ok(early) = Duration::try_from(early) {
            tokio::time::sleep(early.min(CLAIM_AHEAD)).await;
        }
        let now = state.keeper.now();
        state.metrics.lag(now.duration_since(due).as_secs_f64());
    }
    state.metrics.in_flight(1);
    let result = state
        .keeper
        .refresh_unless_changed(&claim.key, claim.generation)
        .await;
    state.metrics.in_flight(-1);
    if let Err(error) = result {
        report(&state, &claim, &error);
    }
    release_unused(&state, &claim).await;
    drop(slot);
}

/// One line for a refresh that did not give a token: the class and the
/// provider's code, never its text.
fn report(state: &AgentState, claim: &Claim, error: &Error) {
    let (_, class, code) = failure_parts(error);
    let code = code.map(|c| format!(", {c}")).unwrap_or_default();
    state.log(&format!("account {}: no token ({class}{code})", claim.key));
}
