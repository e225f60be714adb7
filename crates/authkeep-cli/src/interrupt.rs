//! SIGINT and SIGTERM while a refresh's result is outstanding.
//!
//! Between sending a refresh request and saving its answer, the provider may
//! already have rotated the refresh token the store holds; exiting then loses
//! the session. So a command that may refresh handles both signals itself: one
//! that arrives while nothing is outstanding ends the command at once, one that
//! arrives while a result is outstanding ends it as soon as the result is saved
//! (a hung request still ends at its time-out). Either way the exit code is
//! 128 + the signal's number, as a shell reports a process the signal killed.

use std::future::Future;

use authkeep::Shield;

use crate::exit::Interrupted;

/// Runs `work`, ending early on SIGINT or SIGTERM as described above.
pub async fn shielded<T, E>(
    shield: &Shield,
    work: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::pin!(work);
        let mut pending: Option<u8> = None;
        loop {
            tokio::select! {
                result = &mut work => {
                    return match pending {
                        Some(signal) => Err(interrupted(signal, true)),
                        None => result.map_err(Into::into),
                    };
                }
                _ = interrupt.recv(), if pending.is_none() => pending = Some(2),
                _ = terminate.recv(), if pending.is_none() => pending = Some(15),
                () = shield.idle(), if pending.is_some() => {
                    return Err(interrupted(pending.unwrap_or(2), true));
                }
            }
            if let Some(signal) = pending
                && !shield.is_busy()
            {
                return Err(interrupted(signal, false));
            }
        }
    }
    #[cfg(not(unix))]
    {
        // Elsewhere Ctrl-C ends the process as the platform does.
        let _ = shield;
        work.await.map_err(Into::into)
    }
}

fn interrupted(signal: u8, waited: bool) -> anyhow::Error {
    let name = if signal == 15 { "SIGTERM" } else { "SIGINT" };
    let message = if waited {
        format!(
            "stopped by {name} once the refresh under way had finished and its outcome was saved"
        )
    } else {
        format!("stopped by {name}")
    };
    Interrupted { signal, message }.into()
}
