//! `authkeep token`: print a usable access token, refreshing it first when due.

use std::ffi::OsString;

use anyhow::Result;
use authkeep::token::format_instant;
use authkeep::{Demand, EventSink};
use jiff::SignedDuration;

use crate::config::{self, session_key};
use crate::names::{self, NetworkArgs, PolicyArgs, ProfileArg, VerbosityArgs, parse_duration};
use crate::printer::{self, Level};

/// What `authkeep token` does, for `--help`.
pub const ABOUT: &str = "Print a usable access token, refreshing it first when it is due. \
While the stored token is valid and outside the refresh window this makes no network request at all.";

/// The arguments of `authkeep token`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    profile: ProfileArg,
    /// Print {"access_token","token_type","expires_at","expired","profile"} instead
    /// of the bare token (never the refresh token).
    #[arg(long)]
    pub json: bool,
    /// The token printed stays valid at least this long (e.g. 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    min_valid: Option<SignedDuration>,
    /// Refresh now, e.g. after a server rejected the token (shares a refresh that
    /// another process made moments ago).
    #[arg(long)]
    force_refresh: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    network: NetworkArgs,
}

/// The variables that set `token` arguments; the common-invocation reader leaves
/// any command line to clap while one of them is set.
pub const SETTING_VARIABLES: [&str; 6] = [
    names::ENV_PROFILE,
    names::ENV_REFRESH_THRESHOLD,
    names::ENV_REFRESH_FRACTION,
    names::ENV_LOCK_TIMEOUT,
    names::ENV_CONNECT_TIMEOUT,
    names::ENV_TIMEOUT,
];

impl Args {
    /// Reads the common invocation without clap: `token` with any of `--json`,
    /// `--profile NAME` (`-p NAME`, `--profile=NAME`), `-v`/`--verbose` or
    /// `-q`/`--quiet`, each at most once, and none of the setting variables in the
    /// environment (`is_set` says which are). Anything else is `None`, for clap.
    ///
    /// Written by hand because on the warm path clap is the largest body of code
    /// the process would touch: building and running its parser costs more than
    /// reading the record. A unit test holds it to clap's result for every form.
    pub fn parse_common(
        args: &[OsString],
        is_set: impl Fn(&str) -> bool,
    ) -> Option<(Self, VerbosityArgs)> {
        if SETTING_VARIABLES.iter().any(|name| is_set(name)) {
            return None;
        }
        let mut profile = None;
        let (mut json, mut verbose, mut quiet) = (false, false, false);
        let mut rest = args.iter().map(|a| a.to_str());
        if rest.next()? != Some("token") {
            return None;
        }
        while let Some(arg) = rest.next() {
            let seen = match arg? {
                "--json" => std::mem::replace(&mut json, true),
                "-v" | "--verbose" => std::mem::replace(&mut verbose, true),
                "-q" | "--quiet" => std::mem::replace(&mut quiet, true),
                "-p" | "--profile" => {
                    let value = rest.next()??;
                    profile.replace(value.to_owned()).is_some() || value.starts_with('-')
                }
                other => {
                    let value = other.strip_prefix("--profile=")?;
                    profile.replace(value.to_owned()).is_some()
                }
            };
            if seen || (verbose && quiet) {
                return None;
            }
        }
        let args = Self {
            profile: ProfileArg {
                profile: profile.unwrap_or_else(|| names::defaults::PROFILE.to_owned()),
            },
            json,
            min_valid: None,
            force_refresh: false,
            policy: PolicyArgs::default(),
            network: NetworkArgs::default(),
        };
        Some((args, VerbosityArgs { verbose, quiet }))
    }
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    let key = session_key(&args.profile.profile)?;
    let keeper = config::keeper(&args.policy, &args.network)?.with_events(status_lines(level));
    let demand = Demand {
        min_valid: args.min_valid,
        force: args.force_refresh,
    };
    let served = match keeper.token_without_network(&key, demand) {
        Some(result) => result?,
        None => crate::runtime()?.block_on(keeper.token(&key, demand))?,
    };
    if args.json {
        let now = keeper.now();
        printer::json(&serde_json::json!({
            "access_token": served.access_token.expose_secret(),
            "token_type": served.token_type,
            "expires_at": served.expires_at.map(format_instant),
            "expired": served.expires_at.is_some_and(|at| now >= at),
            "profile": key.as_str(),
        }));
    } else {
        printer::out(served.access_token.expose_secret());
    }
    Ok(())
}

/// Renders the library's events as status lines at `level`.
pub fn status_lines(level: Level) -> EventSink {
    std::sync::Arc::new(move |event| {
        if level == Level::Quiet {
            return;
        }
        let (needed, line) = printer::describe(event, jiff::Timestamp::now());
        printer::status(level, needed, &line);
    })
}
