//! The `authkeep` command: log in once and stay logged in.
//!
//! Argument parsing and dispatch live here; each command is a thin file under
//! `commands/` that parses, calls the library and prints through [`printer`].
//! Exit codes are decided in [`exit`].

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Args as _, FromArgMatches as _, Parser, Subcommand};

mod browser;
mod commands;
mod common;
mod config;
mod database;
mod exit;
mod interrupt;
mod kube;
mod names;
mod printer;
mod progress;
mod stores;

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
2 usage or configuration error, 3 login required, 4 retry later, \
5 the server still answered an error after the one retry (request), \
130/143 stopped by SIGINT/SIGTERM (after any refresh's answer was saved).\n\
Configuration (config.toml: settings and [profiles.NAME] tables; see `authkeep profiles --help`) \
and state live in $AUTHKEEP_HOME (default: the platform's config and state directories)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    verbosity: names::VerbosityArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Log in (browser, device code, client credentials, token, import); keeps the profile.
    #[command(after_help = commands::login::AFTER_HELP)]
    Login(commands::login::Args),
    #[command(about = commands::token::ABOUT)]
    Token(commands::token::Args),
    /// Show every session (or one): issuer, expiry, whether it can renew itself, health.
    Status(commands::status::Args),
    /// Revoke the session's tokens and delete it locally (the profile stays).
    Logout(commands::logout::Args),
    /// List the profiles of config.toml and the stored sessions, or choose the default profile.
    #[command(after_help = commands::profiles::AFTER_HELP)]
    Profiles(commands::profiles::Args),
    /// Keys of the encrypted store (keygen, rekey) and moving sessions between stores (migrate).
    Store(commands::store::Args),
    #[command(about = commands::request::ABOUT, after_help = commands::request::AFTER_HELP)]
    Request(commands::request::Args),
    #[command(about = commands::kubectl::ABOUT, after_help = commands::kubectl::AFTER_HELP)]
    Kubectl(commands::kubectl::Args),
    #[command(about = commands::exec::ABOUT, after_help = commands::exec::AFTER_HELP)]
    Exec(commands::exec::Args),
    /// Watch authkeep keep a session alive against a built-in identity provider (about a minute).
    Demo(commands::demo::Args),
    /// Run the development identity provider (loopback only; for tests and demos, never production).
    Devidp(commands::devidp::Args),
    /// Be git's or docker's credential helper: hand out the token of the profile that claims a host.
    Credential(commands::credential::Args),
    /// Check the setup and explain each problem with its fix (config, store, keyring, clock, provider).
    Doctor(commands::doctor::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    Completions(commands::completions::CompletionsArgs),
    /// Print the man page, or write one page per command with --dir.
    Man(commands::completions::ManArgs),
    /// Keep every account of a database store alive and serve their tokens over a local API.
    Agent(commands::agent::AgentArgs),
    /// The OAuth clients that accounts of a database store share (add, list, remove).
    Clients(commands::accounts::ClientsArgs),
    /// The accounts of a database store (import, add, list, remove).
    Accounts(commands::accounts::AccountsArgs),
}

fn main() -> ExitCode {
    let (command, verbosity) = parse(std::env::args_os().collect());
    let level = printer::Level::from(verbosity);
    let (json, result) = match command {
        Command::Login(args) => (args.json, commands::login::run(args, level)),
        Command::Token(args) => (args.json, commands::token::run(args, level)),
        Command::Status(args) => (args.json, commands::status::run(args)),
        Command::Logout(args) => (false, commands::logout::run(args, level)),
        Command::Profiles(args) => (args.json, commands::profiles::run(args, level)),
        Command::Store(args) => (false, commands::store::run(args, level)),
        Command::Request(args) => (false, commands::request::run(args, level)),
        Command::Kubectl(args) => (false, commands::kubectl::run(args, level)),
        Command::Exec(args) => (false, commands::exec::run(args, level)),
        Command::Demo(args) => (false, commands::demo::run(args)),
        Command::Devidp(args) => (false, commands::devidp::run(args)),
        Command::Credential(args) => (false, commands::credential::run(args, level)),
        Command::Doctor(args) => (args.json, commands::doctor::run(args)),
        Command::Completions(args) => (false, commands::completions::completions(args, full())),
        Command::Man(args) => (false, commands::completions::man(args, full())),
        Command::Agent(args) => (false, commands::agent::run(args)),
        Command::Clients(args) => (false, commands::accounts::run_clients(args)),
        Command::Accounts(args) => (false, commands::accounts::run_accounts(args)),
    };
    match result {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(error) => {
            let (code, class) = exit::classify(&error);
            if !exit::is_silent(&error) {
                common::report_error(json, class, &exit::one_line(&error));
            }
            ExitCode::from(code)
        }
    }
}

/// Ends the process for a command line the parser refused: help and version
/// are printed as asked; a usage error is one line, or with `--json` the JSON
/// error object, and exit 2.
fn refuse(error: clap::Error, args: &[OsString]) -> ! {
    use clap::error::ErrorKind;
    let wants_json = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    if !wants_json
        || matches!(
            error.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
        )
    {
        error.exit();
    }
    let rendered = error.render().to_string();
    let message = rendered
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ")
        .to_owned();
    common::report_error(true, "usage", &format!("{message} (see --help)"));
    std::process::exit(i32::from(exit::USAGE));
}

/// Parses the command line. `authkeep token` is the hot path (a file read and a
/// decision), and building the whole command tree with every subcommand costs
/// more than that: the common invocation is read without clap, any other
/// command line that starts with `token` is parsed with the token command's own
/// arguments only; the result is the same as the full parser's.
fn parse(args: Vec<OsString>) -> (Command, names::VerbosityArgs) {
    let after_name = args.get(1..).unwrap_or_default();
    let is_set = |name: &str| std::env::var_os(name).is_some();
    if let Some(common) = common::CommonToken::read(after_name, is_set) {
        let (token, verbosity) = commands::token::Args::from_common(common);
        return (Command::Token(token), verbosity);
    }
    if after_name.first().is_some_and(|a| a == "token") {
        let parsed = token_command()
            .try_get_matches_from(after_name)
            .and_then(|matches| {
                Ok((
                    commands::token::Args::from_arg_matches(&matches)?,
                    names::VerbosityArgs::from_arg_matches(&matches)?,
                ))
            });
        return match parsed {
            Ok((token, verbosity)) => (Command::Token(token), verbosity),
            Err(error) => refuse(error, &args),
        };
    }
    match Cli::try_parse_from(&args) {
        Ok(cli) => (cli.command, cli.verbosity),
        Err(error) => refuse(error, &args),
    }
}

/// The whole command-line definition, for completions and man pages.
fn full() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// `authkeep token` alone, for the fast path of [`parse`].
fn token_command() -> clap::Command {
    names::VerbosityArgs::augment_args(commands::token::Args::augment_args(clap::Command::new(
        "token",
    )))
    // Set after the arguments, whose doc comments would otherwise name the command.
    .about(commands::token::ABOUT)
    .bin_name("authkeep token")
    .version(env!("CARGO_PKG_VERSION"))
    .max_term_width(100)
}

/// A runtime for the commands that need the network; the warm path of `token`
/// never builds one. Single-threaded: a one-shot command has one thing to do at a
/// time, and the multi-threaded scheduler would pull libm into every start-up.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(args).unwrap();
        format!("{:?} {:?}", cli.command, cli.verbosity)
    }

    fn fast(args: &[&str]) -> String {
        let (command, verbosity) = parse(args.iter().map(OsString::from).collect());
        format!("{command:?} {verbosity:?}")
    }

    /// Marks the copy of this test binary that runs with a cleared environment.
    const CLEAN: &str = "AUTHKEEP_TEST_IN_CLEAN_ENVIRONMENT";

    /// Both parsers read the settings' variables, so they are compared with none
    /// set: the test runs itself again in a copy of this binary whose
    /// environment is empty, and passes if that copy passes. Returns whether
    /// the caller is that copy (and should run its assertions).
    fn in_a_clean_environment(test: &str) -> bool {
        if std::env::var_os(CLEAN).is_some() {
            assert!(
                std::env::vars_os().all(|(name, _)| name == CLEAN),
                "the environment is empty"
            );
            return true;
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--test-threads", "1"])
            .env_clear()
            .env(CLEAN, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        false
    }

    #[test]
    fn the_token_fast_path_parses_like_the_full_parser() {
        if !in_a_clean_environment("tests::the_token_fast_path_parses_like_the_full_parser") {
            return;
        }
        for args in [
            &["authkeep", "token"][..],
            &["authkeep", "token", "--profile", "work", "--json", "-v"],
            &[
                "authkeep",
                "token",
                "--min-valid",
                "10m",
                "--force-refresh",
                "--lock-timeout",
                "5s",
                "-q",
            ],
            &[
                "authkeep",
                "token",
                "--refresh-threshold",
                "1h",
                "--refresh-fraction",
                "0.25",
                "--timeout",
                "2s",
            ],
        ] {
            assert_eq!(fast(args), full(args), "{args:?}");
        }
    }

    #[test]
    fn the_common_token_invocation_reads_like_clap() {
        if !in_a_clean_environment("tests::the_common_token_invocation_reads_like_clap") {
            return;
        }
        let forms: &[&[&str]] = &[
            &["authkeep", "token"],
            &["authkeep", "token", "--json"],
            &["authkeep", "token", "--profile", "work"],
            &["authkeep", "token", "-p", "work", "--json"],
            &["authkeep", "token", "--profile=work.prod", "-v"],
            &[
                "authkeep",
                "token",
                "--quiet",
                "--json",
                "--profile",
                "a_b-c",
            ],
        ];
        let none_set = |_: &str| false;
        for args in forms {
            let os: Vec<OsString> = args.iter().map(OsString::from).collect();
            let common = common::CommonToken::read(&os[1..], none_set)
                .unwrap_or_else(|| panic!("{args:?} is a common invocation"));
            let (token, verbosity) = commands::token::Args::from_common(common);
            assert_eq!(
                format!("{:?} {verbosity:?}", Command::Token(token)),
                full(args),
                "{args:?}"
            );
        }
        let left_to_clap: &[&[&str]] = &[
            &["authkeep", "token", "--min-valid", "5m"],
            &["authkeep", "token", "--json", "--json"],
            &["authkeep", "token", "-v", "-q"],
            &["authkeep", "token", "--profile"],
            &["authkeep", "token", "--profile", "--json"],
            &["authkeep", "token", "-p", "a", "-p", "b"],
            &["authkeep", "token", "--help"],
            &["authkeep", "token", "extra"],
            &["authkeep", "status"],
        ];
        for args in left_to_clap {
            let os: Vec<OsString> = args.iter().map(OsString::from).collect();
            assert!(
                common::CommonToken::read(&os[1..], none_set).is_none(),
                "{args:?}"
            );
        }
        let os: Vec<OsString> = ["token"].iter().map(OsString::from).collect();
        assert!(common::CommonToken::read(&os, |n| n == names::ENV_TIMEOUT).is_none());
    }

    #[test]
    fn the_token_fast_path_explains_the_command() {
        let help = token_command().render_help().to_string();
        assert!(help.starts_with("Print a usable access token"), "{help}");
        token_command().debug_assert();
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
