//! `authkeep`: the front of the command.
//!
//! The warm path of `authkeep token` is a file read and a decision, yet a binary
//! that carries an HTTP stack, TLS and a full argument parser spends more time
//! paging itself in than doing that. So `authkeep` is small: it serves the common
//! invocation (`authkeep token [--profile NAME] [--json] [-q]`) when the stored
//! token is valid and outside its refresh window, with the default policy and no
//! configuration file, and hands every other command line, unchanged, to the full
//! binary `authkeep-main` installed beside it, which decides everything again.

use std::ffi::OsString;
use std::process::ExitCode;

use authkeep::SessionKey;
use authkeep::policy::{Decision, Demand, UseReason};

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
/// its window, and returns the exit code. Anything else (other flags, settings
/// from the environment or a configuration file, `-v`, a token due for refresh,
/// no session, an unreadable file) returns `None` and is left to the full binary.
fn serve_warm(args: &[OsString]) -> Option<ExitCode> {
    let is_set = |name: &str| std::env::var_os(name).is_some();
    let invocation = common::CommonToken::read(args.get(1..).unwrap_or_default(), is_set)?;
    let home = common::Home::locate().ok()?;
    if invocation.verbose || home.config_file().exists() {
        return None;
    }
    let key = SessionKey::new(&invocation.profile).ok()?;
    let loaded = home.store().load_with_skew_blocking(&key).ok()??;
    let now = jiff::Timestamp::now();
    let decision = common::default_policy().decide(Some(&loaded.record), Demand::default(), now);
    let (Decision::UseStored(UseReason::Valid), Some(tokens)) =
        (decision, loaded.record.tokens.as_ref())
    else {
        return None;
    };
    let printed = common::print_token(
        &tokens.access_token,
        &tokens.token_type,
        tokens.expires_at,
        &key,
        now,
        invocation.json,
    );
    Some(match printed {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away: nothing was delivered, and nobody is listening.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(1),
        Err(e) => {
            let message = format!("cannot write to standard output: {e}");
            if invocation.json {
                eprintln!(
                    "{}",
                    serde_json::json!({"error": "unexpected", "message": message})
                );
            } else {
                eprintln!("authkeep: error: {message}");
            }
            ExitCode::from(1)
        }
    })
}

/// Replaces this process with the full binary (on Unix; elsewhere runs it and
/// passes its exit code on).
fn run_full(args: &[OsString]) -> ExitCode {
    let full = std::env::current_exe()
        .map(|exe| exe.with_file_name(format!("{FULL}{}", std::env::consts::EXE_SUFFIX)));
    let full = match full {
        Ok(path) if path.is_file() => path,
        Ok(path) => {
            eprintln!(
                "authkeep: error: {} is missing; install authkeep with `cargo install --path crates/authkeep-cli` (or build it with `cargo build`)",
                path.display()
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("authkeep: error: cannot find the authkeep executable: {e}");
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
        eprintln!("authkeep: error: cannot run {}: {error}", full.display());
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
            eprintln!("authkeep: error: cannot run {}: {error}", full.display());
            ExitCode::from(1)
        }
    }
}
