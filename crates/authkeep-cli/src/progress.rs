//! A spinner on stderr for waits the user is part of (a login waiting for
//! approval), with a line of text that may change as it turns (the time left).
//! Shown only when stderr is a terminal and `NO_COLOR` is unset; otherwise the
//! caller's one status line is all there is.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use tokio::task::JoinHandle;

/// How often the spinner turns.
const TICK: Duration = Duration::from_millis(120);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Whether stderr may carry a spinner.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A running spinner; dropping it stops it and clears its line.
pub struct Spinner(Option<JoinHandle<()>>);

impl Spinner {
    /// Starts a spinner whose text `label` gives afresh at each turn, when
    /// stderr may carry one; otherwise does nothing. Must be called within a
    /// tokio runtime.
    pub fn start(label: impl Fn() -> String + Send + 'static) -> Self {
        if !enabled() {
            return Self(None);
        }
        let task = tokio::spawn(async move {
            for frame in FRAMES.iter().cycle() {
                let line = format!("\r\x1b[2K{frame} {}", label());
                // A terminal that cannot be written to only loses the spinner.
                if write(line.as_bytes()).is_err() {
                    return;
                }
                tokio::time::sleep(TICK).await;
            }
        });
        Self(Some(task))
    }

    /// No spinner at all (for `-q`).
    pub fn none() -> Self {
        Self(None)
    }

    fn clear(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            // The line is cosmetic: a failed write leaves it, nothing more.
            if write(b"\r\x1b[2K").is_err() {}
        }
    }
}

/// Moves the cursor up a line and clears it (after the terminal echoed a
/// newline typed while a spinner ran).
pub fn clear_line_above() {
    // Cosmetic: a terminal that cannot be written to keeps the stale line.
    if write(b"\x1b[1A\r\x1b[2K").is_err() {}
}

fn write(bytes: &[u8]) -> std::io::Result<()> {
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(bytes)?;
    stderr.flush()
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.clear();
    }
}
