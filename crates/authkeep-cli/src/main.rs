//! The `authkeep` command: log in once and stay logged in.
//!
//! Argument parsing and dispatch live here; each command is a thin file under
//! `commands/` that parses, calls the library and prints through [`printer`].
//! Exit codes are decided in [`exit`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod config;
mod exit;
mod names;
mod printer;

/// Keeps OAuth 2.0 / OpenID Connect sessions alive: refreshes ahead of expiry,
/// one refresh at a time across processes, never logs you out because of a race
/// or a network blip, and never touches the network when the stored token will do.
#[derive(Parser, Debug)]
#[command(
    name = "authkeep",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit codes: 0 success, 1 unexpected (e.g. a corrupt session file), \
2 usage or configuration error, 3 login required, 4 retry later.\n\
Configuration and state live in $AUTHKEEP_HOME (default: the platform's config and state directories)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    verbosity: names::VerbosityArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Store a session: import a token response or record (interactive logins come later).
    Login(commands::login::Args),
    /// Print a usable access token, refreshing it first when it is due.
    Token(commands::token::Args),
    /// Show every session (or one): issuer, expiry, whether it can renew itself, health.
    Status(commands::status::Args),
    /// Delete the local session of a profile.
    Logout(commands::logout::Args),
    /// Watch authkeep keep a session alive against a built-in identity provider (about a minute).
    Demo(commands::demo::Args),
    /// Run the development identity provider (loopback only; for tests and demos, never production).
    Devidp(commands::devidp::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = printer::Level::from(cli.verbosity);
    let (json, result) = match cli.command {
        Command::Login(args) => (args.json, commands::login::run(args, level)),
        Command::Token(args) => (args.json, commands::token::run(args, level)),
        Command::Status(args) => (args.json, commands::status::run(args)),
        Command::Logout(args) => (false, commands::logout::run(args, level)),
        Command::Demo(args) => (false, commands::demo::run(args)),
        Command::Devidp(args) => (false, commands::devidp::run(args)),
    };
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(error) => {
            let (code, class) = exit::classify(&error);
            let message = format!("{error:#}");
            if json {
                let line = serde_json::json!({ "error": class, "message": message });
                eprintln!("{line}");
            } else {
                eprintln!("authkeep: error: {message}");
            }
            ExitCode::from(code)
        }
    }
}

/// A runtime for the commands that need the network; the warm path of `token`
/// never builds one.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
