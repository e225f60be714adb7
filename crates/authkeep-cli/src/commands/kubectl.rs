//! `authkeep kubectl`: kubectl's credential plugin. Prints the profile's token as
//! a `client.authentication.k8s.io/v1` `ExecCredential` on stdout, with the same
//! token semantics as `authkeep token` (the front serves its warm path, see
//! `kube.rs`).
//!
//! kubectl says in `KUBERNETES_EXEC_INFO` whether the plugin has a terminal
//! (`spec.interactive`). When it says no, a needed login is never started: the
//! command ends with exit 3 naming the login to run. With `--login`, a terminal
//! on stdin and stderr, and kubectl not saying no, it starts the profile's login
//! as `token --login` does; logins of one profile share its lock, so parallel
//! kubectl calls ask the person once.

use anyhow::Result;
use authkeep::Demand;
use jiff::SignedDuration;

use super::token::{interactive, needs_login, status_lines};
use crate::config;
use crate::exit::usage;
use crate::kube::{ExecInfo, print_credential};
use crate::names::{NetworkArgs, PolicyArgs, ProfileArg, parse_duration};
use crate::printer::{self, Level};

/// What `authkeep kubectl` does, for `--help`.
pub const ABOUT: &str = "kubectl's credential plugin: print the profile's token as an \
ExecCredential (client.authentication.k8s.io/v1), refreshing it first when it is due.";

/// The kubeconfig stanza, for `--help`.
pub const AFTER_HELP: &str = "In the kubeconfig:\n\
  users:\n\
  - name: work\n\
  \x20 user:\n\
  \x20   exec:\n\
  \x20     apiVersion: client.authentication.k8s.io/v1\n\
  \x20     command: authkeep\n\
  \x20     args: [kubectl, --profile, work, --login]\n\
  \x20     interactiveMode: IfAvailable\n\
  \x20     provideClusterInfo: false\n\
Exit 3 when a login is needed and cannot be started here (kubectl gave no terminal).";

/// The arguments of `authkeep kubectl`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    profile: ProfileArg,
    /// The token handed to kubectl stays valid at least this long (e.g. 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    min_valid: Option<SignedDuration>,
    /// When the profile needs a login, start it, then answer kubectl; only where stdin and
    /// stderr are a terminal and kubectl does not say it is non-interactive.
    #[arg(long)]
    login: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    network: NetworkArgs,
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    let info = ExecInfo::from_environment().map_err(usage)?;
    let settings = config::Settings::resolve(&args.profile, &args.policy, &args.network)?;
    let key = settings.key.clone();
    let keeper = settings.keeper().on_event(status_lines(level)).build();
    let mut demand = Demand::new();
    if let Some(min_valid) = args.min_valid {
        demand = demand.min_valid(min_valid);
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
    let may_log_in = may_log_in(args.login, info, interactive());
    let served = match obtain() {
        Err(e) if may_log_in && needs_login(&e) => {
            super::login::run_configured(&settings, level)?;
            obtain()?
        }
        other => other?,
    };
    print_credential(info.api_version, &served.access_token, served.expires_at)
        .map_err(printer::stdout_error)
}

/// Whether a needed login may be started: asked for, with a terminal, and
/// kubectl not saying the plugin runs without one.
fn may_log_in(asked: bool, info: ExecInfo, terminal: bool) -> bool {
    asked && terminal && info.interactive != Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_starts_only_when_asked_on_a_terminal_and_kubectl_allows_it() {
        let info = |interactive| ExecInfo {
            interactive,
            ..ExecInfo::default()
        };
        assert!(may_log_in(true, info(Some(true)), true));
        assert!(may_log_in(true, info(None), true));
        assert!(!may_log_in(true, info(Some(false)), true));
        assert!(!may_log_in(true, info(Some(true)), false));
        assert!(!may_log_in(false, info(Some(true)), true));
    }
}
