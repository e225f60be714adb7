//! The scheduler: claims due accounts from the store (which several agents
//! share without claiming one twice) and refreshes each, at most
//! `concurrency` at once, with `Keeper::refresh_unless_changed` at the
//! generation it claimed, so that an account written meanwhile (an
//! application's refresh through the API, another agent) is not refreshed
//! again. Between claims it sleeps until the next due instant, at most the
//! poll interval, or until woken. When told to stop it claims nothing more
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

pub(crate) async fn run(
    state: Arc<AgentState>,
    concurrency: usize,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut store_pause = STORE_RETRY_FIRST;
    loop {
        if *stop.borrow() {
            break;
        }
        while let Some(done) = tasks.try_join_next() {
            surface_panic(done);
        }
        let free = slots.available_permits();
        let mut pause = poll;
        if free > 0 {
            let now = state.keeper.now();
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            state.metrics.claim();
            match state.store.claim_due(limit, now).await {
                Ok(claims) => {
                    store_pause = STORE_RETRY_FIRST;
                    let full = claims.len() == free;
                    for claim in claims {
                        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                            // Only this loop takes slots, and it counted them.
                            break;
                        };
                        tasks.spawn(refresh(Arc::clone(&state), claim, slot));
                    }
                    if full {
                        // More may be due: look again as soon as a slot frees.
                        pause = Duration::ZERO;
                    } else {
                        pause = until_next_due(&state, poll).await;
                    }
                }
                Err(e) => {
                    state.metrics.scheduler_error();
                    state.log(&format!("cannot claim due accounts: {e}"));
                    pause = store_pause;
                    store_pause = (store_pause * 2).min(poll.max(STORE_RETRY_FIRST));
                }
            }
        }
        let slot_freed = async {
            if tasks.is_empty() || (free > 0 && !pause.is_zero()) {
                std::future::pending::<()>().await;
            }
            if let Some(done) = tasks.join_next().await {
                surface_panic(done);
            }
        };
        let sleep = async {
            if free > 0 {
                tokio::time::sleep(pause).await;
            } else {
                std::future::pending::<()>().await;
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

/// How long to sleep before the next due account, at most `poll`.
async fn until_next_due(state: &AgentState, poll: Duration) -> Duration {
    match state.store.next_due().await {
        Ok(Some(due)) => {
            let left = due.duration_since(state.keeper.now());
            if left.is_negative() {
                Duration::ZERO
            } else {
                Duration::try_from(left).map_or(poll, |d| d.min(poll))
            }
        }
        Ok(None) => poll,
        Err(e) => {
            state.metrics.scheduler_error();
            state.log(&format!("cannot read the next due account: {e}"));
            poll
        }
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

/// Refreshes one claimed account, recording how late it started.
async fn refresh(state: Arc<AgentState>, claim: Claim, slot: OwnedSemaphorePermit) {
    if let Some(due) = claim.due_at {
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
    drop(slot);
}

/// One line for a refresh that did not give a token: the class and the
/// provider's code, never its text.
fn report(state: &AgentState, claim: &Claim, error: &Error) {
    let (_, class, code) = failure_parts(error);
    let code = code.map(|c| format!(", {c}")).unwrap_or_default();
    state.log(&format!("account {}: no token ({class}{code})", claim.key));
}
