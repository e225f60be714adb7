//! `authkeep credential`: authkeep as a credential helper for git and docker.
//!
//! Both ask the same question: "credentials for this host?". A profile answers
//! for the hosts its `credential_hosts` lists (`host[:port][/path]`; the longest
//! path that matches wins), with `credential_username` and a fresh access token
//! as the password, which may mean a refresh but never a login. A rejected
//! credential (`erase`) is ignored unless the profile sets
//! `credential_on_erase = "refresh"`; then it takes the 401 path (a refresh
//! only if the session still holds the rejected token). Nothing here ever
//! deletes a session: one rejected push must not log anyone out.
//!
//! The protocols live in [`git`] and [`docker`]; this module chooses the
//! profile and gets its token.

use std::io::Read as _;

use anyhow::{Context as _, Result};
use authkeep::{AccessToken, Demand, Token};
use reqwest::Url;
use zeroize::Zeroizing;

use crate::commands::token::status_lines;
use crate::common::Home;
use crate::config::{ConfigFile, OnErase, Profile, Settings};
use crate::exit::{endpoint_usage, usage};
use crate::names::{NetworkArgs, PolicyArgs, ProfileArg};
use crate::printer::Level;

pub mod docker;
pub mod git;

/// The user name handed out when a profile sets none: what GitHub and Gitea
/// take beside an OAuth token, and what most servers ignore.
pub const DEFAULT_USERNAME: &str = "x-access-token";

/// The most a helper reads from its standard input: a request is a few lines.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// The arguments of `authkeep credential`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    helper: Helper,
}

#[derive(clap::Subcommand, Debug)]
enum Helper {
    #[command(about = git::ABOUT, after_help = git::AFTER_HELP)]
    Git(git::Args),
    /// docker's credential helper protocol (what docker-credential-authkeep runs).
    #[command(after_help = docker::AFTER_HELP)]
    Docker(docker::Args),
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    match args.helper {
        Helper::Git(args) => git::run(args, level),
        Helper::Docker(args) => docker::run(args, level),
    }
}

/// One entry of `credential_hosts` (the library reads and checks them with
/// the configuration file).
use authkeep::config::CredentialHost as Pattern;

/// Where credentials are asked for: a URL of scheme, host, port and path.
#[derive(Debug, Clone)]
pub struct Target {
    url: Url,
}

impl Target {
    /// A target from its parts, as git sends them.
    fn new(scheme: &str, host: &str, path: Option<&str>) -> Result<Self> {
        let path = path.unwrap_or_default().trim_start_matches('/');
        if host.is_empty() || host.contains(['/', '@', '?', '#', '\\']) {
            return Err(usage("the request names no usable host"));
        }
        let url = Url::parse(&format!("{scheme}://{host}/{path}"))
            .map_err(|_| usage("the request names no usable host"))?;
        if url.host_str().is_none() {
            return Err(usage("the request names no usable host"));
        }
        Ok(Self { url })
    }

    /// The URL shown in messages (without user information).
    fn shown(&self) -> String {
        authkeep::oauth::display_url(self.url.as_str())
    }
}

/// The profile that answers for a target, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The profile's name.
    pub name: String,
    /// The user name handed out with the token.
    pub username: String,
    /// What `erase` does.
    pub on_erase: OnErase,
    /// Whether the profile allows plain http to hosts other than loopback.
    insecure_http: bool,
}

impl Chosen {
    fn of(name: &str, profile: &Profile) -> Self {
        Self {
            name: name.to_owned(),
            username: profile
                .credential_username
                .clone()
                .unwrap_or_else(|| DEFAULT_USERNAME.to_owned()),
            on_erase: profile.credential_on_erase.unwrap_or_default(),
            insecure_http: profile.insecure_allow_http == Some(true),
        }
    }
}

/// The best score of any of a profile's patterns for `target`.
fn best_score(profile: &Profile, target: &Target) -> Option<usize> {
    profile
        .credential_hosts
        .iter()
        // `ConfigFile::read` checked every pattern.
        .filter_map(|text| Pattern::parse(text).ok())
        .filter_map(|pattern| pattern.score(&target.url))
        .max()
}

/// The profile that answers for `target`: the one asked for (if it lists
/// hosts, only for those), else the profile whose `credential_hosts` match it
/// most specifically. Two profiles that match equally are a configuration
/// error; no match is `None`.
fn choose(file: &ConfigFile, asked: Option<&str>, target: &Target) -> Result<Option<Chosen>> {
    if let Some(name) = asked {
        crate::config::session_key(name)?;
        let profile = file.profile(name).cloned().unwrap_or_default();
        if !profile.credential_hosts.is_empty() && best_score(&profile, target).is_none() {
            return Ok(None);
        }
        return Ok(Some(Chosen::of(name, &profile)));
    }
    let mut best: Option<(usize, &str, &Profile)> = None;
    let mut tied: Option<&str> = None;
    for (name, profile) in file.profiles() {
        let Some(score) = best_score(profile, target) else {
            continue;
        };
        match best {
            Some((top, ..)) if score < top => {}
            Some((top, ..)) if score == top => tied = Some(name),
            _ => {
                best = Some((score, name, profile));
                tied = None;
            }
        }
    }
    if let (Some((_, first, _)), Some(second)) = (best, tied) {
        return Err(usage(format!(
            "profiles {first} and {second} both list {} in credential_hosts; \
             give one of them a longer path, or pass --profile",
            target.shown()
        )));
    }
    Ok(best.map(|(_, name, profile)| Chosen::of(name, profile)))
}

/// Reads the configuration and chooses the profile for `target`.
fn choose_configured(asked: Option<&str>, target: &Target) -> Result<Option<Chosen>> {
    let file = ConfigFile::read(&Home::locate()?.config_file())?;
    choose(&file, asked, target)
}

/// The settings of the chosen profile, after checking that its token may be
/// sent to `target` (https, or plain http to loopback unless allowed).
fn settings_for(
    chosen: &Chosen,
    target: &Target,
    policy: &PolicyArgs,
    network: &NetworkArgs,
) -> Result<Settings> {
    let insecure = chosen.insecure_http || network.insecure_allow_http;
    authkeep::oauth::check_endpoint(target.url.as_str(), insecure).map_err(endpoint_usage)?;
    let profile = ProfileArg {
        profile: Some(chosen.name.clone()),
    };
    Settings::resolve(&profile, policy, network)
}

/// A usable access token for the settings' profile, refreshing it if due;
/// never a login.
fn fresh_token(settings: &Settings, level: Level) -> Result<Token> {
    let keeper = settings.keeper().on_event(status_lines(level)).build();
    let key = &settings.key;
    match keeper.token_without_network(key, Demand::new()) {
        Some(result) => Ok(result?),
        None => crate::runtime()?.block_on(crate::interrupt::shielded(
            keeper.shield(),
            keeper.token(key, Demand::new()),
        )),
    }
}

/// A server rejected `rejected` (or, when the caller does not say which, the
/// token last handed out): the 401 path, which refreshes only if the session
/// still holds that token. Never deletes the session.
fn renew_rejected(settings: &Settings, rejected: Option<AccessToken>, level: Level) -> Result<()> {
    let keeper = settings.keeper().on_event(status_lines(level)).build();
    let key = &settings.key;
    crate::runtime()?.block_on(crate::interrupt::shielded(keeper.shield(), async {
        let rejected = match rejected {
            Some(token) => token,
            None => match keeper.session(key).await? {
                Some(loaded) => match loaded.record.tokens {
                    Some(tokens) => tokens.access_token,
                    None => return Ok(()),
                },
                None => return Ok(()),
            },
        };
        keeper
            .token_after_rejection(key, &rejected)
            .await
            .map(drop)
            .map_err(anyhow::Error::from)
    }))
}

/// A token that can be written into a helper's answer: one line of printable
/// text (a provider could send anything).
fn printable(token: &Token, profile: &str) -> Result<()> {
    if token
        .access_token
        .expose_secret()
        .contains(char::is_control)
    {
        return Err(anyhow::anyhow!(
            "the access token of profile {profile} holds control characters and cannot be handed to a credential helper's caller"
        ));
    }
    Ok(())
}

/// Reads standard input, at most [`MAX_INPUT_BYTES`]; it may hold a password,
/// so it is zeroized when dropped.
fn read_input() -> Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .take(MAX_INPUT_BYTES + 1)
        .read_to_string(&mut text)
        .context("cannot read the request on standard input")?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(usage(format!(
            "the request on standard input is longer than {MAX_INPUT_BYTES} bytes"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(scheme: &str, host: &str, path: Option<&str>) -> Target {
        Target::new(scheme, host, path).unwrap()
    }

    /// A target is matched by its URL.
    impl std::ops::Deref for Target {
        type Target = Url;

        fn deref(&self) -> &Url {
            &self.url
        }
    }

    fn file(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile::read(&path).unwrap()
    }

    #[test]
    fn patterns_match_host_port_and_path_prefix() {
        let host = Pattern::parse("Git.Example.com").unwrap();
        let org = Pattern::parse("git.example.com/org/").unwrap();
        let port = Pattern::parse("127.0.0.1:8080").unwrap();
        let https = |path| target("https", "git.example.com", path);
        assert_eq!(host.score(&https(None)), Some(0));
        assert_eq!(host.score(&https(Some("other/repo.git"))), Some(0));
        assert_eq!(org.score(&https(None)), None, "git sent no path");
        assert_eq!(org.score(&https(Some("org/repo.git"))), Some(1));
        assert_eq!(org.score(&https(Some("org"))), Some(1));
        assert_eq!(org.score(&https(Some("organisation/r"))), None);
        assert_eq!(
            host.score(&target("https", "git.example.com:8443", None)),
            None
        );
        assert_eq!(
            host.score(&target("https", "git.example.com:443", None)),
            Some(0)
        );
        assert_eq!(host.score(&target("https", "example.com", None)), None);
        assert_eq!(port.score(&target("http", "127.0.0.1:8080", None)), Some(0));
        assert_eq!(port.score(&target("http", "127.0.0.1", None)), None);
        let explicit = Pattern::parse("h.example:443").unwrap();
        assert_eq!(explicit.score(&target("https", "h.example", None)), Some(0));
        assert_eq!(explicit.score(&target("http", "h.example", None)), None);
        let v6 = Pattern::parse("[::1]:9").unwrap();
        assert_eq!(v6.score(&target("http", "[::1]:9", None)), Some(0));
    }

    #[test]
    fn bad_patterns_are_refused_without_being_repeated() {
        for bad in [
            "",
            "https://git.example.com",
            "user@git.example.com",
            "git.example.com?x",
            "two words",
            "/org",
            "host:notaport",
        ] {
            let error = Pattern::parse(bad).unwrap_err();
            assert!(error.contains("host[:port][/path]"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_most_specific_profile_answers_and_a_tie_is_an_error() {
        let config = file(
            "[profiles.all]\ncredential_hosts = [\"git.example.com\"]\n\
             [profiles.org]\ncredential_hosts = [\"git.example.com/org\"]\ncredential_username = \"oauth2\"\ncredential_on_erase = \"refresh\"\n\
             [profiles.none]\nissuer = \"https://i.example\"\n",
        );
        let name = |path| {
            choose(&config, None, &target("https", "git.example.com", path))
                .unwrap()
                .map(|c| c.name)
        };
        assert_eq!(name(None).as_deref(), Some("all"));
        assert_eq!(name(Some("org/r.git")).as_deref(), Some("org"));
        assert_eq!(name(Some("other/r.git")).as_deref(), Some("all"));
        let org = choose(
            &config,
            None,
            &target("https", "git.example.com", Some("org/r")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (org.username.as_str(), org.on_erase),
            ("oauth2", OnErase::Refresh)
        );
        let all = choose(&config, None, &target("https", "git.example.com", None))
            .unwrap()
            .unwrap();
        assert_eq!(
            (all.username.as_str(), all.on_erase),
            (DEFAULT_USERNAME, OnErase::Ignore)
        );
        assert_eq!(
            choose(&config, None, &target("https", "elsewhere.example", None)).unwrap(),
            None
        );
        // Asked for by name: only for its own hosts, if it lists any.
        let asked = |name, host| {
            choose(&config, Some(name), &target("https", host, None))
                .unwrap()
                .map(|c| c.name)
        };
        assert_eq!(asked("org", "elsewhere.example"), None);
        assert_eq!(asked("none", "elsewhere.example").as_deref(), Some("none"));
        assert_eq!(
            asked("unlisted", "elsewhere.example").as_deref(),
            Some("unlisted")
        );
        assert!(choose(&config, Some("../x"), &target("https", "h", None)).is_err());

        let tied = file(
            "[profiles.a]\ncredential_hosts = [\"git.example.com\"]\n\
             [profiles.b]\ncredential_hosts = [\"GIT.example.com\"]\n",
        );
        let error = choose(&tied, None, &target("https", "git.example.com", None)).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("profiles a and b both list"), "{message}");
        assert_eq!(crate::exit::classify(&error).0, crate::exit::USAGE);
    }

    #[test]
    fn bad_credential_keys_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for (text, key) in [
            (
                "[profiles.a]\ncredential_hosts = [\"https://h\"]\n",
                "credential_hosts",
            ),
            (
                "[profiles.a]\ncredential_username = \"\"\n",
                "credential_username",
            ),
            (
                "[profiles.a]\ncredential_username = \"a\\nb\"\n",
                "credential_username",
            ),
            (
                "[profiles.a]\ncredential_on_erase = \"delete\"\n",
                "credential_on_erase",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let message = format!("{:#}", ConfigFile::read(&path).unwrap_err());
            assert!(
                message.contains(&format!("{key:?} in [profiles.a]")),
                "{message}"
            );
        }
    }

    #[test]
    fn targets_refuse_what_is_not_a_host() {
        for host in ["", "a/b", "user@h", "h?x"] {
            assert!(Target::new("https", host, None).is_err(), "{host}");
        }
        let t = target("https", "h.example", Some("/org/r.git"));
        assert_eq!(t.url.as_str(), "https://h.example/org/r.git");
    }
}
