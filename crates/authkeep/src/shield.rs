//! Knowing when a refresh's result is not yet saved, so that a program can put
//! off shutting down until it is.
//!
//! From the moment a refresh request is sent until its result is written, the
//! provider may already have rotated the refresh token that the store still
//! holds: a process that exits then loses the session. The coordinator marks that
//! stretch on its [`Shield`]; a program that handles SIGINT or SIGTERM asks the
//! shield whether it is busy and, if so, exits once it is idle again. (A refresh
//! request that hangs still ends at its time-out.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Counts the refreshes whose results are not yet saved.
#[derive(Clone, Debug, Default)]
pub struct Shield {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    active: AtomicUsize,
    idle: Notify,
}

impl Shield {
    /// Whether a refresh's result is being awaited or saved right now.
    pub fn is_busy(&self) -> bool {
        self.inner.active.load(Ordering::SeqCst) > 0
    }

    /// Resolves once no refresh's result is outstanding.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if !self.is_busy() {
                return;
            }
            notified.await;
        }
    }

    /// Marks a refresh as outstanding until the returned guard is dropped.
    pub(crate) fn enter(&self) -> Section {
        self.inner.active.fetch_add(1, Ordering::SeqCst);
        Section {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// One outstanding refresh; dropping it ends the stretch.
#[derive(Debug)]
pub(crate) struct Section {
    inner: Arc<Inner>,
}

impl Drop for Section {
    fn drop(&mut self) {
        if self.inner.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_section_to_end() {
        let shield = Shield::default();
        assert!(!shield.is_busy());
        shield.idle().await;
        let first = shield.enter();
        let second = shield.enter();
        assert!(shield.is_busy());
        let waiter = tokio::spawn({
            let shield = shield.clone();
            async move { shield.idle().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(shield.is_busy(), "one section is still open");
        assert!(!waiter.is_finished());
        drop(second);
        waiter.await.unwrap();
        assert!(!shield.is_busy());
    }
}
