//! `authkeep`: the front of the command.
//!
//! The warm path of `authkeep token` is a file read and a decision, yet a binary
//! that carries an HTTP stack, TLS and a full argument parser spends more time
//! paging itself in than doing that. So `authkeep` is small: it serves the common
//! invocation (`authkeep token [--profile NAME] [--json] [-q]`) when the stored
//! token is valid and outside its refresh window, with the default policy and no
//! configuration file, also after waiting for another process's refresh; and it
//! hands every other command line, unchanged, to the full binary `authkeep-main`
//! installed beside it, which decides everything again.

use std::ffi::OsString;
use std::process::ExitCode;

use std::time::Duration;

use authkeep::policy::UseReason;
use authkeep::{
    Clock as _, DEFAULT_LOCK_TIMEOUT, Decision, Demand, Policy, Record, SessionKey, StoreError,
    SystemClock, TokenSet,
};
use common::CommonToken;
use jiff::Timestamp;

mod common;
// The front uses only the names of the settings; the full binary uses the rest.
#[allow(dead_code)]
mod names;

/// The full binary's name.
const FULL: &str = "authkeep-main";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    match serve_warm(&args) {
        Some(code) => code,
        None => run_full(&args),
    }
}

/// Serves the stored token when the common invocation finds it valid and outside
/// its window, and returns the exit code. When the token is due for refresh and
/// another process holds the session's lock (it is refreshing), waits for it to
/// let go and reads its result: N processes that start together cost one full
/// start and N small ones. Anything else (other flags, settings from the
/// environment or a configuration file, `-v`, a refresh to make, no session, an
/// unreadable file) returns `None` and is left to the full binary.
fn serve_warm(args: &[OsString]) -> Option<ExitCode> {
    // The lock wait cannot change the decision; the front honours it itself.
    let is_set = |name: &str| name != names::ENV_LOCK_TIMEOUT && std::env::var_os(name).is_some();
    let invocation = common::CommonToken::read(args.get(1..).unwrap_or_default(), is_set)?;
    let lock_timeout = match std::env::var(names::ENV_LOCK_TIMEOUT) {
        Ok(text) => names::parse_duration(&text)
            .ok()
            .and_then(|d| Duration::try_from(d).ok())?,
        Err(_) => DEFAULT_LOCK_TIMEOUT,
    };
    let home = common::Home::locate().ok()?;
    if invocation.verbose || home.config_file().exists() {
        return None;
    }
    let key = SessionKey::new(&invocation.profile).ok()?;
    let store = home.store();
    let policy = Policy::default();
    let clock = SystemClock;
    let (mut loaded, mut decision) = store.warm(&key, &policy, Demand::new(), clock.now()).ok()?;
    if matches!(decision, Decision::Refresh { .. }) && store.is_locked_blocking(&key).ok()? {
        if !store.wait_for_release_blocking(&key, lock_timeout).ok()? {
            let record = loaded.map(|v| v.record).unwrap_or_default();
            return Some(lock_timed_out(&invocation, &key, &record, lock_timeout));
        }
        (loaded, decision) = store.warm(&key, &policy, Demand::new(), clock.now()).ok()?;
    }
    let tokens = loaded.as_ref().and_then(|v| v.record.tokens.as_ref());
    let (Decision::UseStored(UseReason::Valid), Some(tokens)) = (decision, tokens) else {
        return None;
    };
    Some(print(&invocation, &key, tokens, clock.now()))
}

/// Prints the token and returns the exit code.
fn print(
    invocation: &CommonToken,
    key: &SessionKey,
    tokens: &TokenSet,
    now: Timestamp,
) -> ExitCode {
    let printed = common::print_token(
        &tokens.access_token,
        &tokens.token_type,
        tokens.expires_at,
        key,
        now,
        invocation.json,
    );
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away: nothing was delivered, and nobody is listening.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(1),
        Err(e) => {
            let message = format!("cannot write to standard output: {e}");
            common::report_error(invocation.json, "unexpected", &message);
            ExitCode::from(1)
        }
    }
}

/// Another process held the session's lock for the whole lock wait: the stored
/// token if it is still valid, with a warning, else retry later (exit 4), as the
/// full binary says it.
fn lock_timed_out(
    invocation: &CommonToken,
    key: &SessionKey,
    record: &Record,
    waited: Duration,
) -> ExitCode {
    let now = Timestamp::now();
    match record.tokens.as_ref().filter(|t| t.is_usable(now)) {
        Some(tokens) => {
            if !invocation.quiet {
                let warning = common::lock_timeout_warning(key, waited);
                common::stderr_line(&format!("authkeep: {warning}"));
            }
            print(invocation, key, tokens, now)
        }
        None => {
            let timeout = StoreError::LockTimeout {
                key: key.to_string(),
                waited,
            };
            let message = common::with_lock_timeout_hint(&timeout.to_string());
            common::report_error(invocation.json, timeout.class_name(), &message);
            ExitCode::from(4)
        }
    }
}

/// Replaces this process with the full binary (on Unix; elsewhere runs it and
/// passes its exit code on).
fn run_full(args: &[OsString]) -> ExitCode {
    let full = std::env::current_exe()
        .map(|exe| exe.with_file_name(format!("{FULL}{}", std::env::consts::EXE_SUFFIX)));
    let full = match full {
        Ok(path) if path.is_file() => path,
        Ok(path) => {
            common::stderr_line(&format!(
                "authkeep: error: {} is missing; install authkeep with `cargo install --path crates/authkeep-cli` (or build it with `cargo build`)",
                path.display()
            ));
            return ExitCode::from(1);
        }
        Err(e) => {
            common::stderr_line(&format!(
                "authkeep: error: cannot find the authkeep executable: {e}"
            ));
            return ExitCode::from(1);
        }
    };
    let mut command = std::process::Command::new(&full);
    command.args(args.get(1..).unwrap_or_default());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let program = args.first().cloned().unwrap_or_else(|| "authkeep".into());
        let error = command.arg0(program).exec();
        common::stderr_line(&format!(
            "authkeep: error: cannot run {}: {error}",
            full.display()
        ));
        ExitCode::from(1)
    }
    #[cfg(not(unix))]
    match command.status() {
        Ok(status) => ExitCode::from(
            status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1),
        ),
        Err(error) => {
            common::stderr_line(&format!(
                "authkeep: error: cannot run {}: {error}",
                full.display()
            ));
            ExitCode::from(1)
        }
    }
}
