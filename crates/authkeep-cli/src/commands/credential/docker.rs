//! `authkeep credential docker`: docker's credential helper protocol, which
//! the `docker-credential-authkeep` binary hands over to. docker runs the
//! helper with one operation as its argument: `get` (the server URL on stdin;
//! the answer a JSON object `{"ServerURL","Username","Secret"}` on stdout),
//! `list` (a JSON object of server URL to user name), `store` and `erase`.
//! A server no profile claims is `credentials not found in native keychain` on
//! stdout and exit 1, the words docker looks for. Other failures are also told
//! on stdout, where docker reads them, with the usual exit code.

use std::collections::BTreeMap;

use anyhow::Result;

use super::Target;
use crate::config::{ConfigFile, OnErase};
use crate::exit::{self, usage};
use crate::names::{NetworkArgs, PolicyArgs};
use crate::printer::Level;

/// The rest of `--help`.
pub const AFTER_HELP: &str = "\
docker runs docker-credential-authkeep, installed beside authkeep, for the registries that \
~/.docker/config.json names in credHelpers:
  { \"credHelpers\": { \"registry.example.com\": \"authkeep\" } }
A registry maps to the profile whose credential_hosts lists its host, as for git. store is \
ignored; erase too, unless that profile sets credential_on_erase = \"refresh\" (then the token \
last handed out is renewed, the 401 path).";

/// What docker expects for a server the helper has no credentials for.
pub const NOT_FOUND: &str = "credentials not found in native keychain";

/// The arguments of `authkeep credential docker`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    network: NetworkArgs,
    /// What docker asks: get, list, store or erase.
    #[arg(value_name = "OPERATION")]
    operation: String,
}

/// No profile claims the server.
#[derive(Debug, thiserror::Error)]
#[error("{NOT_FOUND}")]
struct NotFound;

/// Runs the command. Errors are answered on stdout, as docker reads them,
/// and end the process here with their exit code.
pub fn run(args: Args, level: Level) -> Result<()> {
    let Err(error) = answer(&args, level) else {
        return Ok(());
    };
    let (code, line) = if error.downcast_ref::<NotFound>().is_some() {
        (exit::UNEXPECTED, NOT_FOUND.to_owned())
    } else if error.downcast_ref::<exit::StdoutClosed>().is_some() {
        return Err(error);
    } else {
        (exit::classify(&error).0, exit::one_line(&error))
    };
    write_stdout(&format!("{line}\n"))?;
    // Everything this command opened is closed by now; the exit code is all
    // that is left to give.
    std::process::exit(i32::from(code))
}

fn answer(args: &Args, level: Level) -> Result<()> {
    // Read whatever the operation, so that docker never writes into a closed pipe.
    let input = super::read_input()?;
    match args.operation.as_str() {
        "get" => get(args, &input, level),
        "list" => list(),
        "store" => Ok(()),
        "erase" => erase(args, &input, level),
        _ => Err(usage(
            "unknown operation: docker asks for get, list, store or erase",
        )),
    }
}

/// A server URL as docker writes it (`registry.example.com`,
/// `https://index.docker.io/v1/`): https unless it says otherwise.
fn target(server: &str) -> Result<Target> {
    let server = server.trim();
    let (scheme, rest) = server.split_once("://").unwrap_or(("https", server));
    if scheme != "https" && scheme != "http" {
        return Err(usage("the server URL is neither https nor http"));
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Target::new(scheme, host, Some(path))
}

fn get(args: &Args, input: &str, level: Level) -> Result<()> {
    let server = input.trim();
    if server.is_empty() {
        return Err(usage("no server URL on standard input"));
    }
    let target = target(server)?;
    let chosen = super::choose_configured(None, &target)?.ok_or(NotFound)?;
    let settings = super::settings_for(&chosen, &target, &args.policy, &args.network)?;
    let token = super::fresh_token(&settings, level)?;
    super::printable(&token, &chosen.name)?;
    let answer = serde_json::json!({
        "ServerURL": server,
        "Username": chosen.username,
        "Secret": token.access_token.expose_secret(),
    });
    write_stdout(&zeroize::Zeroizing::new(format!("{answer}\n")))
}

fn list() -> Result<()> {
    let file = ConfigFile::read(&crate::common::Home::locate()?.config_file())?;
    let mut servers = BTreeMap::new();
    for (name, profile) in file.profiles() {
        let chosen = super::Chosen::of(name, profile);
        for host in &profile.credential_hosts {
            servers.insert(host.clone(), chosen.username.clone());
        }
    }
    write_stdout(&format!("{}\n", serde_json::json!(servers)))
}

fn erase(args: &Args, input: &str, level: Level) -> Result<()> {
    let Ok(target) = target(input) else {
        return Ok(());
    };
    let Some(chosen) = super::choose_configured(None, &target)? else {
        return Ok(());
    };
    if chosen.on_erase != OnErase::Refresh {
        return Ok(());
    }
    let settings = super::settings_for(&chosen, &target, &args.policy, &args.network)?;
    super::renew_rejected(&settings, None, level)
}

fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(crate::printer::stdout_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_read_as_docker_writes_them() {
        let url = |s: &str| target(s).unwrap().url.to_string();
        assert_eq!(url("registry.example.com"), "https://registry.example.com/");
        assert_eq!(
            url("https://index.docker.io/v1/"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(url("http://127.0.0.1:5000\n"), "http://127.0.0.1:5000/");
        assert!(target("ftp://h").is_err());
        assert!(target("").is_err());
    }
}
