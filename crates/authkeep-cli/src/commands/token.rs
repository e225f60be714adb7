//! `authkeep token`: print a usable access token, refreshing it first when due.

use anyhow::Result;
use authkeep::{Demand, Event};
use jiff::SignedDuration;

use crate::common::{CommonToken, print_token};
use crate::config;
use crate::names::{NetworkArgs, PolicyArgs, ProfileArg, VerbosityArgs, parse_duration};
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
    /// When the profile needs a login, start it (as `authkeep login` would with the profile's
    /// settings), then print the token; only where stdin and stderr are a terminal. Without a
    /// terminal, or without this flag, a needed login is exit 3 naming the command to run.
    #[arg(long)]
    login: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    network: NetworkArgs,
}

impl Args {
    /// The arguments of the common invocation read without clap.
    pub fn from_common(common: CommonToken) -> (Self, VerbosityArgs) {
        let args = Self {
            profile: ProfileArg {
                profile: common.profile,
            },
            json: common.json,
            min_valid: None,
            force_refresh: false,
            login: false,
            policy: PolicyArgs::default(),
            network: NetworkArgs::default(),
        };
        (
            args,
            VerbosityArgs {
                verbose: common.verbose,
                quiet: common.quiet,
            },
        )
    }
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    let settings = config::Settings::resolve(&args.profile, &args.policy, &args.network)?;
    let key = settings.key.clone();
    let keeper = settings.keeper().on_event(status_lines(level)).build();
    let mut demand = Demand::new();
    if let Some(min_valid) = args.min_valid {
        demand = demand.min_valid(min_valid);
    }
    if args.force_refresh {
        demand = demand.force();
    }
    let obtain = || -> Result<authkeep::Token> {
        match keeper.token_without_network(&key, demand) {
            Some(result) => Ok(result?),
            None => crate::runtime()?.block_on(crate::interrupt::shielded(
                keeper.shield(),
                keeper.token(&key, demand),
            )),
        }
    };
    let served = match obtain() {
        Err(e) if args.login && needs_login(&e) && interactive() => {
            super::login::run_configured(&settings, level)?;
            obtain()?
        }
        other => other?,
    };
    print_token(
        &served.access_token,
        &served.token_type,
        served.expires_at,
        &key,
        keeper.now(),
        args.json,
    )
    .map_err(printer::stdout_error)
}

/// Renders the library's events as status lines at `level`.
pub fn status_lines(level: Level) -> impl Fn(&Event) + Send + Sync + 'static {
    move |event| {
        if level == Level::Quiet {
            return;
        }
        let (needed, line) = printer::describe(event, jiff::Timestamp::now());
        printer::status(level, needed, &line);
    }
}

/// Whether an error says the profile needs a login.
pub fn needs_login(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<authkeep::Error>()
        .is_some_and(authkeep::Error::is_login_required)
}

/// Whether a person is at the terminal to log in.
pub fn interactive() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}
