//! `authkeep credential git`: git's credential helper protocol
//! (git-credential(1)). git writes `key=value` lines on standard input, ended
//! by a blank line or the end of input, and reads the same from standard
//! output. `get` answers with the profile's user name and a fresh access
//! token as the password; a host no profile claims gets no answer (exit 0), so
//! git asks its other helpers. A failure is one line on stderr, which git
//! shows, nothing on stdout, and the usual exit code. `store` is ignored;
//! `erase` too, unless the profile asks for the 401 path.

use anyhow::Result;
use authkeep::AccessToken;

use super::{Chosen, Target};
use crate::config::OnErase;
use crate::exit::usage;
use crate::names::{NetworkArgs, PolicyArgs};
use crate::printer::{self, Level};

/// What `authkeep credential git` does, for `--help`.
pub const ABOUT: &str = "git's credential helper: hands git the access token of the profile \
whose credential_hosts match the host (get); ignores store, and erase unless the profile sets \
credential_on_erase = \"refresh\".";

/// The rest of `--help`.
pub const AFTER_HELP: &str = "\
Set it up for one host (the helper runs through the shell, hence the !):
  git config --global credential.https://git.example.com.helper '!authkeep credential git --profile work'
or for every host that some profile lists in credential_hosts:
  git config --global credential.helper '!authkeep credential git'

git sends the path only with credential.useHttpPath = true; entries of credential_hosts with \
a path (git.example.com/org) match only then. With --profile, a profile that lists hosts \
answers only for those. Never starts a login: when one is needed, git shows the error and \
`authkeep login --profile P` fixes it.";

/// The arguments of `authkeep credential git`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Use this profile [default: the profile whose credential_hosts match the host git asks about;
    /// AUTHKEEP_PROFILE is not read]
    #[arg(long, short = 'p', value_name = "NAME")]
    profile: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    network: NetworkArgs,
    /// What git asks: get, store or erase (anything else is ignored, as git expects).
    #[arg(value_name = "OPERATION")]
    operation: String,
}

/// What git sent.
#[derive(Debug, Default)]
struct Request {
    protocol: Option<String>,
    host: Option<String>,
    path: Option<String>,
    username: Option<String>,
    /// The password git used, on `erase`: the credential the server rejected.
    password: Option<AccessToken>,
}

impl Request {
    /// Reads `key=value` lines up to a blank line or the end; unknown keys
    /// (and `key[]` lists) are skipped. Messages never repeat a line: it may be a
    /// password.
    fn parse(text: &str) -> Result<Self> {
        let mut request = Self::default();
        for line in text.lines() {
            if line.is_empty() {
                break;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(usage("git sent a line that is not key=value"));
            };
            let value = value.to_owned();
            match key {
                "protocol" => request.protocol = Some(value),
                "host" => request.host = Some(value),
                "path" => request.path = Some(value),
                "username" => request.username = Some(value),
                "password" => request.password = Some(AccessToken::new(value)),
                _ => {}
            }
        }
        Ok(request)
    }

    /// Where git wants credentials for; `None` when git did not say (then no
    /// profile answers).
    fn target(&self) -> Result<Option<Target>> {
        let (Some(protocol), Some(host)) = (&self.protocol, &self.host) else {
            return Ok(None);
        };
        if protocol != "https" && protocol != "http" {
            return Ok(None);
        }
        Target::new(protocol, host, self.path.as_deref()).map(Some)
    }

    /// The profile that answers, if any: also not one whose user name differs
    /// from the one git already has (another account's credential).
    fn chosen(&self, asked: Option<&str>) -> Result<Option<(Chosen, Target)>> {
        let Some(target) = self.target()? else {
            return Ok(None);
        };
        let chosen = super::choose_configured(asked, &target)?;
        Ok(chosen
            .filter(|c| self.username.as_ref().is_none_or(|u| *u == c.username))
            .map(|c| (c, target)))
    }
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    // Read whatever the operation, so that git never writes into a closed pipe.
    let request = Request::parse(&super::read_input()?)?;
    match args.operation.as_str() {
        "get" => get(&args, &request, level),
        "erase" => erase(&args, &request, level),
        _ => Ok(()),
    }
}

fn get(args: &Args, request: &Request, level: Level) -> Result<()> {
    let Some((chosen, target)) = request.chosen(args.profile.as_deref())? else {
        return Ok(());
    };
    let settings = super::settings_for(&chosen, &target, &args.policy, &args.network)?;
    let token = super::fresh_token(&settings, level)?;
    super::printable(&token, &chosen.name)?;
    let mut answer = zeroize::Zeroizing::new(format!(
        "username={}\npassword={}\n",
        chosen.username,
        token.access_token.expose_secret()
    ));
    if let Some(at) = token.expires_at {
        answer.push_str(&format!("password_expiry_utc={}\n", at.as_second()));
    }
    write_answer(&answer)
}

fn erase(args: &Args, request: &Request, level: Level) -> Result<()> {
    let Some((chosen, target)) = request.chosen(args.profile.as_deref())? else {
        return Ok(());
    };
    let Some(rejected) = request.password.clone() else {
        return Ok(());
    };
    if chosen.on_erase != OnErase::Refresh {
        return Ok(());
    }
    let settings = super::settings_for(&chosen, &target, &args.policy, &args.network)?;
    super::renew_rejected(&settings, Some(rejected), level)
}

/// Writes git's answer in one piece.
fn write_answer(answer: &str) -> Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(answer.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(printer::stdout_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_up_to_the_blank_line() {
        let request = Request::parse(
            "protocol=https\nhost=git.example.com\nwwwauth[]=Basic realm=\"x\"\ncapability[]=authtype\n\
             username=me\npassword=s3cret\n\nhost=ignored\n",
        )
        .unwrap();
        assert_eq!(request.protocol.as_deref(), Some("https"));
        assert_eq!(request.host.as_deref(), Some("git.example.com"));
        assert_eq!(request.username.as_deref(), Some("me"));
        assert_eq!(
            request.password.as_ref().map(|p| p.expose_secret()),
            Some("s3cret")
        );
        assert!(!format!("{request:?}").contains("s3cret"));
        let message = format!("{:#}", Request::parse("password s3cret\n").unwrap_err());
        assert!(!message.contains("s3cret"), "{message}");
        assert!(Request::parse("").unwrap().target().unwrap().is_none());
        let ssh = Request::parse("protocol=ssh\nhost=h\n").unwrap();
        assert!(ssh.target().unwrap().is_none(), "only http(s) is answered");
    }
}
