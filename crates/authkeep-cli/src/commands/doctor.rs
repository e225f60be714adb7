//! `authkeep doctor`: checks the setup and explains each finding in one line
//! with its fix: the configuration file, the binaries, the store's permissions,
//! the OS keyring (when a profile keeps secrets there), and for each profile
//! its session's remaining life and its provider: discovery, issuer, and the
//! local clock against the provider's `Date` header. Each check becomes a typed
//! [`Check`]; the judgements are pure functions of what was found and `now`,
//! tested at the bottom. Exit 0 when nothing failed (warnings allowed), else 1.
//!
//! Nothing here prints a secret: a session's tokens are never shown, and the
//! provider's words pass through the library's sanitiser.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use authkeep::oauth::discovery::{self, DiscoveryError};
use authkeep::oauth::{Secrets, display_url, sanitize};
use authkeep::store::VaultError;
use authkeep::{Network, Record, SessionKey, StoreError, TokenSet};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::common::instant;
use crate::config::{ConfigFile, Settings};
use crate::names::{NetworkArgs, OptionalProfileArg, PolicyArgs, ProfileArg};
use crate::printer;
use crate::stores::{Backend, KeySource, keyring_failure};

/// The largest clock difference from the provider that passes.
const CLOCK_TOLERANCE: SignedDuration = SignedDuration::from_secs(60);
/// A refresh token with less life left than this is a warning.
const REFRESH_WARNING: SignedDuration = SignedDuration::from_hours(24);
/// The longest provider text shown.
const SHOWN_CHARS: usize = 200;

/// Check the setup and explain what is wrong, one line per check with its fix:
/// config.toml, the binaries, the store's permissions, the OS keyring, and per
/// profile the session's remaining life and the provider (discovery, issuer,
/// clock). Exit 0 when no check fails (warnings allowed), 1 otherwise.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Check only this profile (default: every profile in config.toml, else the
    /// default profile; AUTHKEEP_PROFILE does not narrow it).
    #[command(flatten)]
    profile: OptionalProfileArg,
    /// Print {"ok": bool, "checks": [{"check", "status", "detail", "fix"}]} as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    network: NetworkArgs,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

/// What `--json` prints, its keys in this order.
#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    checks: &'a [Check],
}

/// One finding.
#[derive(Debug, PartialEq, Serialize)]
struct Check {
    check: &'static str,
    status: Status,
    detail: String,
    /// What to do about it; `None` when all is well.
    fix: Option<String>,
}

impl Check {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// `ok    check: detail`, or with ` (fix: …)` after a problem.
    fn line(&self) -> String {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        };
        let fix = self
            .fix
            .as_ref()
            .map(|fix| format!(" (fix: {fix})"))
            .unwrap_or_default();
        format!("{status:<4}  {}: {}{fix}", self.check, self.detail)
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let now = Timestamp::now();
    let asked = ProfileArg {
        profile: args.profile.profile.clone(),
    };
    let policy = PolicyArgs::default();
    let (settings, config_error) = Settings::resolve_lenient(&asked, &policy, &args.network)?;
    let mut checks = vec![config(&settings.config_path, config_error.as_deref())];
    checks.push(binaries(std::env::current_exe().as_deref()));
    checks.extend(store(&settings));
    let names: Vec<SessionKey> = match &args.profile.profile {
        Some(_) => vec![settings.key.clone()],
        None => {
            let file = ConfigFile::read(&settings.config_path).unwrap_or_default();
            let configured: Vec<SessionKey> = file
                .profiles()
                .filter_map(|(name, _)| SessionKey::new(name).ok())
                .collect();
            if configured.is_empty() {
                vec![settings.key.clone()]
            } else {
                configured
            }
        }
    };
    let mut profiles = Vec::new();
    for key in &names {
        let name = Some(key.to_string());
        let (one, _) =
            Settings::resolve_lenient(&ProfileArg { profile: name }, &policy, &args.network)?;
        profiles.push(one);
    }
    if let Some(check) = keyring(&profiles) {
        checks.push(check);
    }
    let runtime = crate::runtime()?;
    let mut probes = HashMap::new();
    for settings in &profiles {
        checks.extend(runtime.block_on(profile(settings, now, &mut probes)));
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if args.json {
        let report = Report {
            ok: failed == 0,
            checks: &checks,
        };
        printer::out(&serde_json::to_string(&report)?)?;
    } else {
        for check in &checks {
            printer::out(&check.line())?;
        }
    }
    match failed {
        0 => Ok(()),
        failed => Err(crate::exit::ChecksFailed {
            failed,
            total: checks.len(),
        }
        .into()),
    }
}

/// The configuration file: absent, valid, or the error with its place.
fn config(path: &Path, error: Option<&str>) -> Check {
    match error {
        Some(error) => Check::fail(
            "config",
            error,
            format!(
                "correct {} at that place (its keys: `authkeep profiles --help`)",
                path.display()
            ),
        ),
        None if path.is_file() => Check::ok("config", format!("{} is valid", path.display())),
        None => Check::ok(
            "config",
            format!("no {} (the defaults apply)", path.display()),
        ),
    }
}

/// The front (`authkeep`) and the full binary (`authkeep-main`) side by side,
/// as the front needs to hand over every command but the warm `token`.
fn binaries(exe: Result<&Path, &std::io::Error>) -> Check {
    let dir = match exe {
        Ok(exe) => exe.parent().unwrap_or(Path::new(".")),
        Err(e) => {
            return Check::fail(
                "binaries",
                format!("cannot find this executable: {e}"),
                "run authkeep by its path",
            );
        }
    };
    let missing: Vec<String> = ["authkeep", "authkeep-main"]
        .into_iter()
        .map(|name| format!("{name}{}", std::env::consts::EXE_SUFFIX))
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if missing.is_empty() {
        Check::ok(
            "binaries",
            format!(
                "authkeep and authkeep-main are side by side in {}",
                dir.display()
            ),
        )
    } else {
        Check::fail(
            "binaries",
            format!("{} missing from {}", missing.join(" and "), dir.display()),
            "install both into one directory: `cargo install --path crates/authkeep-cli` installs authkeep and authkeep-main",
        )
    }
}

/// The sessions directory and every file in it: private to the user, or each
/// loose one with its `chmod`. Allowed insecure, a loose one is a warning.
fn store(settings: &Settings) -> Vec<Check> {
    let store = settings.home.store();
    let dir = store.dir().display().to_string();
    let problems = match store.permission_problems_blocking() {
        Ok(problems) => problems,
        Err(e) => {
            return vec![Check::fail(
                "store",
                format!("cannot check {dir}: {e}"),
                format!("make {dir} readable by you"),
            )];
        }
    };
    if problems.is_empty() {
        return vec![if store.dir().is_dir() {
            Check::ok(
                "store",
                format!("{dir} and its files are private to you (0700, 0600)"),
            )
        } else {
            Check::ok(
                "store",
                format!("no sessions yet ({dir} is created 0700 at the first login)"),
            )
        }];
    }
    problems
        .iter()
        .map(|problem| loose(problem, settings.home.insecure_permissions))
        .collect()
}

/// One part of the store others may use.
fn loose(problem: &StoreError, allowed: bool) -> Check {
    let StoreError::InsecurePermissions {
        path,
        is_dir,
        mode,
        owner,
        fix,
    } = problem
    else {
        return Check::fail("store", problem.to_string(), "check the sessions directory");
    };
    let what = if *is_dir {
        "session directory"
    } else {
        "session file"
    };
    let mut why = Vec::new();
    if mode & 0o077 != 0 {
        why.push(format!(
            "is accessible by group or others (mode {mode:04o})"
        ));
    }
    if let Some(uid) = owner {
        why.push(format!("is owned by another user (uid {uid})"));
    }
    let detail = format!("{what} {} {}", path.display(), why.join(" and "));
    if allowed {
        Check::warn(
            "store",
            format!("{detail}; used anyway, as insecure_permissions allows"),
            fix.clone(),
        )
    } else {
        Check::fail("store", detail, fix.clone())
    }
}

/// The OS keyring, when any profile keeps secrets or the store key there.
fn keyring(profiles: &[Settings]) -> Option<Check> {
    let user = profiles.iter().find(|s| uses_keyring(s))?;
    Some(keyring_verdict(
        user.vault().probe_blocking(),
        user.keyring_fallback,
    ))
}

fn uses_keyring(settings: &Settings) -> bool {
    match settings.backend {
        Backend::Keyring => true,
        Backend::EncryptedFile => matches!(settings.key_source, KeySource::Keyring),
        Backend::File => false,
    }
}

/// What a keyring probe means.
fn keyring_verdict(probe: Result<(), VaultError>, fallback: bool) -> Check {
    let error = match probe {
        Ok(()) => return Check::ok("keyring", "the OS keyring answers and is unlocked"),
        Err(error) => error,
    };
    let why = keyring_failure(&error);
    match error {
        VaultError::Locked(_) => Check::fail(
            "keyring",
            why,
            "unlock it (log in to the desktop session, or unlock the login keyring in your keyring manager)",
        ),
        VaultError::TimedOut(_) => Check::fail(
            "keyring",
            why,
            "answer the keyring's prompt (it may be on another screen), or choose another store",
        ),
        _ if fallback => Check::warn(
            "keyring",
            format!(
                "{why}; secrets are kept in plain files instead, as insecure_keyring_fallback allows"
            ),
            "start a Secret Service (such as gnome-keyring), or choose store = \"encrypted-file\" with key_file",
        ),
        _ => Check::fail(
            "keyring",
            why,
            "start a Secret Service (such as gnome-keyring), or choose another store: store = \"file\", or \"encrypted-file\" with key_file",
        ),
    }
}

/// A profile's checks: its session, then its provider.
async fn profile(
    settings: &Settings,
    now: Timestamp,
    probes: &mut HashMap<String, Probe>,
) -> Vec<Check> {
    let key = &settings.key;
    let loaded = settings.store().load_with_skew_blocking(key);
    let record = loaded
        .as_ref()
        .ok()
        .and_then(|v| v.as_ref())
        .map(|v| &v.record);
    let mut checks = vec![match &loaded {
        Ok(_) => session(key, record, settings, now),
        Err(e) => unreadable(key, e),
    }];
    // Where this profile's provider is named: config.toml, and the session.
    let mut issuers: Vec<(Source, String)> = Vec::new();
    if let Some(issuer) = settings.profile.as_ref().and_then(|p| p.issuer.clone()) {
        issuers.push((Source::Config, issuer));
    }
    if let Some(client) = record.and_then(|r| r.client.as_ref())
        && !issuers.iter().any(|(_, i)| *i == client.issuer)
    {
        issuers.push((Source::Session, client.issuer.clone()));
    }
    let explicit = settings
        .profile
        .as_ref()
        .and_then(|p| p.token_endpoint.clone())
        .or_else(|| record.and_then(|r| r.client.as_ref()?.token_endpoint.clone()));
    if let Some(endpoint) = explicit {
        checks.push(Check::ok(
            "discovery",
            format!(
                "profile {key}: not used (the profile names its token endpoint, {})",
                display_url(&endpoint)
            ),
        ));
        return checks;
    }
    for (source, issuer) in issuers {
        let fresh = !probes.contains_key(&issuer);
        if fresh {
            let probe = Probe::run(&issuer, &settings.network).await;
            probes.insert(issuer.clone(), probe);
        }
        let Some(probe) = probes.get(&issuer) else {
            continue;
        };
        checks.extend(provider(key, source, &issuer, probe, settings));
        // The clock is the machine's: once per provider is enough.
        if fresh {
            checks.extend(
                probe
                    .clock
                    .map(|(theirs, ours)| clock(&issuer, theirs, ours)),
            );
        }
    }
    checks
}

/// A session that could not be read.
fn unreadable(key: &SessionKey, error: &StoreError) -> Check {
    match error {
        StoreError::InsecurePermissions { fix, .. } => Check::fail(
            "session",
            format!(
                "profile {key}: not read, as other users may use the store (see the store check)"
            ),
            fix.clone(),
        ),
        _ => Check::fail(
            "session",
            format!("profile {key}: cannot be read: {error}"),
            format!("log in again: `authkeep login --profile {key}`"),
        ),
    }
}

/// A session's state and, where known, its refresh token's remaining life.
fn session(
    key: &SessionKey,
    record: Option<&Record>,
    settings: &Settings,
    now: Timestamp,
) -> Check {
    let log_in = format!("log in: `authkeep login --profile {key}`");
    let Some(record) = record else {
        return Check::warn("session", format!("profile {key}: no session"), log_in);
    };
    let state = settings.policy.state(Some(record), now);
    match (&record.tokens, state.needs_login()) {
        (Some(tokens), false) => refresh_life(key, tokens, record.can_renew(), now),
        (_, _) => Check::fail(
            "session",
            format!(
                "profile {key}: a new login is needed ({})",
                state.as_str().replace('_', " ")
            ),
            log_in,
        ),
    }
}

/// How long a live session can renew itself.
fn refresh_life(key: &SessionKey, tokens: &TokenSet, can_renew: bool, now: Timestamp) -> Check {
    let log_in = format!("log in again: `authkeep login --profile {key}`");
    if !can_renew {
        let until = tokens.expires_at.map_or_else(
            || "until a server rejects it".to_owned(),
            |at| format!("until {}", instant(at)),
        );
        return Check::warn(
            "session",
            format!(
                "profile {key}: no refresh token; the access token serves {until}, then a login is needed"
            ),
            format!(
                "{log_in} asking for the offline_access scope (or the provider's equivalent) to get a refresh token"
            ),
        );
    }
    let Some(dies) = tokens.refresh_expires_at else {
        return Check::ok(
            "session",
            format!(
                "profile {key}: renews itself (the provider does not say how long its refresh token lives)"
            ),
        );
    };
    let left = dies.duration_since(now);
    let at = instant(dies);
    if left <= SignedDuration::ZERO {
        Check::fail(
            "session",
            format!("profile {key}: the refresh token expired at {at}"),
            log_in,
        )
    } else if left < REFRESH_WARNING {
        Check::warn(
            "session",
            format!(
                "profile {key}: the refresh token expires in {} (at {at})",
                printer::duration(left)
            ),
            format!(
                "{log_in} before then, or keep the session in use if the provider extends it on refresh"
            ),
        )
    } else {
        Check::ok(
            "session",
            format!(
                "profile {key}: renews itself; the refresh token lives {} more (until {at})",
                printer::duration(left)
            ),
        )
    }
}

/// Where an issuer was named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// `issuer` in the profile's table of config.toml.
    Config,
    /// The session, as it was logged in.
    Session,
}

/// What one discovery exchange found.
#[derive(Debug)]
struct Probe {
    /// The document's URL, for messages.
    url: String,
    /// The provider's `Date` and our clock when it arrived.
    clock: Option<(Timestamp, Timestamp)>,
    /// The `issuer` the document names, when a document came back.
    said: Option<String>,
    /// The metadata, or why there is none.
    outcome: Result<(), Refusal>,
}

/// Why discovery gave no usable metadata.
#[derive(Debug)]
enum Refusal {
    /// No answer: connection, time-out, set-up.
    Unreachable(String),
    /// An answer that is not usable metadata.
    Refused(DiscoveryError),
}

impl Probe {
    /// One GET of the discovery document (two when the OpenID one is not
    /// served), bounded by the network time-out.
    async fn run(issuer: &str, network: &Network) -> Self {
        let mut probe = Probe {
            url: display_url(&discovery::url(issuer)),
            clock: None,
            said: None,
            outcome: Ok(()),
        };
        if let Err(e) = discovery::check_issuer(issuer, network.allow_insecure_http) {
            probe.outcome = Err(Refusal::Refused(e));
            return probe;
        }
        let bounded = tokio::time::timeout(network.timeout, probe.exchange(issuer, network)).await;
        if bounded.is_err() {
            probe.outcome = Err(Refusal::Unreachable(format!(
                "no answer within {}",
                printer::duration(
                    SignedDuration::try_from(network.timeout).unwrap_or(SignedDuration::MAX)
                )
            )));
        }
        probe
    }

    async fn exchange(&mut self, issuer: &str, network: &Network) {
        let client = match network.client_builder().and_then(|b| {
            b.build()
                .map_err(|e| authkeep::TransportError::Setup(e.to_string()))
        }) {
            Ok(client) => client,
            Err(e) => {
                self.outcome = Err(Refusal::Unreachable(e.to_string()));
                return;
            }
        };
        let insecure = network.allow_insecure_http;
        let first = match self.get(&client, discovery::request(issuer), network).await {
            Ok(response) => response,
            Err(e) => {
                self.outcome = Err(Refusal::Unreachable(e));
                return;
            }
        };
        let not_served = match discovery::parse(issuer, &first, insecure) {
            Ok(_) => return,
            Err(e @ DiscoveryError::NotServed(_)) => e,
            Err(e) => {
                self.outcome = Err(Refusal::Refused(e));
                return;
            }
        };
        self.url = display_url(&discovery::oauth_url(issuer));
        let second = match self
            .get(&client, discovery::oauth_request(issuer), network)
            .await
        {
            Ok(response) => response,
            Err(e) => {
                self.outcome = Err(Refusal::Unreachable(e));
                return;
            }
        };
        if let Err(e) = discovery::parse_oauth(issuer, &second, insecure) {
            self.outcome = Err(Refusal::Refused(discovery::after_fallback(&not_served, e)));
        }
    }

    /// Sends one request; keeps the `Date` and the named issuer it brings.
    async fn get(
        &mut self,
        client: &reqwest::Client,
        request: Result<http::Request<Vec<u8>>, String>,
        network: &Network,
    ) -> Result<http::Response<Vec<u8>>, String> {
        let request =
            reqwest::Request::try_from(request?).map_err(|e| authkeep::describe_http_error(&e))?;
        let mut response = client
            .execute(request)
            .await
            .map_err(|e| authkeep::describe_http_error(&e))?;
        let arrived = Timestamp::now();
        let status = response.status();
        if let Some(theirs) = authkeep::oauth::response::date(response.headers()) {
            self.clock.get_or_insert((theirs, arrived));
        }
        let mut answer = http::Response::builder().status(status);
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| authkeep::describe_http_error(&e))?
        {
            if body.len().saturating_add(chunk.len()) > network.max_body_bytes {
                return Err(format!(
                    "the answer exceeded {} bytes",
                    network.max_body_bytes
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            self.said = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("issuer")?.as_str().map(str::to_owned));
        }
        answer.body(body).map_err(|e| e.to_string())
    }
}

/// Discovery and the issuer, for one place that names `issuer`.
fn provider(
    key: &SessionKey,
    source: Source,
    issuer: &str,
    probe: &Probe,
    settings: &Settings,
) -> Vec<Check> {
    let shown = display_url(issuer);
    let named = match source {
        Source::Config => format!("profile {key} (config.toml)"),
        Source::Session => format!("profile {key} (its session)"),
    };
    let mismatch = probe.said.as_deref().filter(|said| *said != issuer);
    let reach = match (&probe.outcome, mismatch) {
        (Err(Refusal::Unreachable(why)), _) => Check::fail(
            "discovery",
            format!("{named}: cannot reach {}: {why}", probe.url),
            "check the issuer URL and the network (HTTPS_PROXY, SSL_CERT_FILE); raise --timeout if the provider is slow",
        ),
        (Err(Refusal::Refused(e @ DiscoveryError::InsecureIssuer(_))), _) => Check::fail(
            "discovery",
            format!("{named}: {e}"),
            format!(
                "use the provider's https URL, or set insecure_allow_http = true in [profiles.{key}] (dangerous)"
            ),
        ),
        // It answered, with another issuer: the issuer check says so.
        (_, Some(_)) => Check::ok("discovery", format!("{named}: {} answered", probe.url)),
        (Err(Refusal::Refused(e)), None) => Check::fail(
            "discovery",
            format!("{named}: {e}"),
            match e {
                DiscoveryError::Transient(_) => {
                    "try again later; if it persists, check the issuer URL".to_owned()
                }
                _ => "check the issuer URL, and that the provider serves OpenID Connect discovery"
                    .to_owned(),
            },
        ),
        (Ok(()), None) => Check::ok(
            "discovery",
            format!("{named}: {} answered with usable metadata", probe.url),
        ),
    };
    let mut checks = vec![reach];
    if let Some(said) = mismatch {
        let said = sanitize(&display_url(said), &Secrets::new(), SHOWN_CHARS);
        let config = settings.config_path.display();
        checks.push(Check::fail(
            "issuer",
            format!("{named} names the issuer {shown:?}, but the provider's metadata names {said:?}; issuers must match exactly"),
            match source {
                Source::Config => format!("set issuer = {said:?} in [profiles.{key}] of {config}"),
                Source::Session => format!("log in again: `authkeep login --profile {key} --issuer {said}`"),
            },
        ));
    } else if probe.said.is_some() {
        checks.push(Check::ok(
            "issuer",
            format!("{named}: the provider's metadata names {shown:?}, as configured"),
        ));
    }
    checks
}

/// The local clock against the provider's: fails beyond [`CLOCK_TOLERANCE`],
/// saying by how much and which way.
fn clock(issuer: &str, theirs: Timestamp, ours: Timestamp) -> Check {
    let shown = display_url(issuer);
    // The provider's `Date` has whole seconds: so is the comparison.
    let ahead = SignedDuration::from_secs(ours.as_second().saturating_sub(theirs.as_second()));
    let by = printer::duration(ahead.abs());
    if ahead.abs() <= CLOCK_TOLERANCE {
        return Check::ok(
            "clock",
            format!("the local clock agrees with {shown}'s to within {by}"),
        );
    }
    let way = if ahead.is_positive() {
        "ahead of"
    } else {
        "behind"
    };
    Check::fail(
        "clock",
        format!(
            "the local clock is {by} {way} {shown}'s (its Date header said {})",
            instant(theirs)
        ),
        "set the system clock right, e.g. turn on time synchronisation (`timedatectl set-ntp true`); meanwhile authkeep corrects this provider's expiry times by the difference it measures",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn key() -> SessionKey {
        SessionKey::new("work").unwrap()
    }

    #[test]
    fn lines_read_status_check_detail_and_fix() {
        assert_eq!(Check::ok("config", "fine").line(), "ok    config: fine");
        assert_eq!(
            Check::fail("store", "loose", "chmod 600 x").line(),
            "fail  store: loose (fix: chmod 600 x)"
        );
        let json = serde_json::to_value(Check::warn("keyring", "slow", "wait")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"check": "keyring", "status": "warn", "detail": "slow", "fix": "wait"})
        );
        let json = serde_json::to_value(Check::ok("clock", "fine")).unwrap();
        assert_eq!(json["fix"], serde_json::Value::Null);
    }

    #[test]
    fn the_clock_fails_beyond_a_minute_saying_which_way() {
        let theirs = at("2026-06-01T12:00:00Z");
        let check = clock("http://127.0.0.1:1", theirs, at("2026-06-01T11:50:00Z"));
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .detail
                .starts_with("the local clock is 10m behind http://127.0.0.1:1's"),
            "{}",
            check.detail
        );
        let check = clock("https://idp", theirs, at("2026-06-01T12:01:01Z"));
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("1m1s ahead of"), "{}", check.detail);
        for ours in [
            "2026-06-01T12:01:00Z",
            "2026-06-01T11:59:00Z",
            "2026-06-01T12:00:00.900Z",
        ] {
            let check = clock("https://idp", theirs, at(ours));
            assert_eq!(check.status, Status::Ok, "{ours}: {}", check.detail);
        }
    }

    fn tokens(refresh: bool, refresh_expires_at: Option<&str>) -> TokenSet {
        let response = authkeep::TokenResponse {
            access_token: authkeep::AccessToken::new("at-secret"),
            refresh_token: refresh.then(|| authkeep::RefreshToken::new("rt-secret")),
            expires_in: Some(300),
            ..authkeep::TokenResponse::default()
        };
        let mut set = response.into_token_set(
            at("2026-06-01T11:00:00Z"),
            authkeep::Origin::Login,
            SignedDuration::ZERO,
        );
        set.refresh_expires_at = refresh_expires_at.map(at);
        set
    }

    #[test]
    fn a_refresh_token_under_a_day_from_its_end_is_a_warning_and_past_it_a_failure() {
        let now = at("2026-06-01T12:00:00Z");
        let cases = [
            (Some("2026-06-09T12:00:00Z"), Status::Ok, "lives 192h more"),
            (Some("2026-06-02T12:00:00Z"), Status::Ok, "lives 24h more"),
            (
                Some("2026-06-02T11:59:59Z"),
                Status::Warn,
                "expires in 23h59m59s",
            ),
            (
                Some("2026-06-01T12:00:00Z"),
                Status::Fail,
                "expired at 2026-06-01T12:00:00Z",
            ),
            (None, Status::Ok, "does not say"),
        ];
        for (dies, status, says) in cases {
            let check = refresh_life(&key(), &tokens(true, dies), true, now);
            assert_eq!(check.status, status, "{dies:?}: {}", check.detail);
            assert!(check.detail.contains(says), "{dies:?}: {}", check.detail);
            assert!(!check.line().contains("secret"), "{}", check.line());
        }
        let check = refresh_life(&key(), &tokens(false, None), false, now);
        assert_eq!(check.status, Status::Warn);
        assert!(
            check.detail.contains("no refresh token"),
            "{}",
            check.detail
        );
        assert!(check.fix.unwrap().contains("offline_access"));
    }

    #[test]
    fn keyring_findings_name_their_fix() {
        assert_eq!(keyring_verdict(Ok(()), false).status, Status::Ok);
        let locked = keyring_verdict(Err(VaultError::Locked("collection locked".into())), false);
        assert_eq!(locked.status, Status::Fail);
        assert!(locked.fix.unwrap().starts_with("unlock it"));
        let absent = || VaultError::Unavailable("no session bus".into());
        let check = keyring_verdict(Err(absent()), false);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("no session bus"), "{}", check.detail);
        assert_eq!(keyring_verdict(Err(absent()), true).status, Status::Warn);
        let slow = keyring_verdict(
            Err(VaultError::TimedOut(std::time::Duration::from_secs(5))),
            true,
        );
        assert_eq!(slow.status, Status::Fail);
    }

    #[test]
    fn loose_permissions_fail_unless_allowed() {
        let problem = StoreError::InsecurePermissions {
            path: std::path::PathBuf::from("/h/sessions/work.json"),
            is_dir: false,
            mode: 0o644,
            owner: Some(1001),
            fix: "chown 1000 /h/sessions/work.json && chmod 600 /h/sessions/work.json".into(),
        };
        let check = loose(&problem, false);
        assert_eq!(
            check.line(),
            "fail  store: session file /h/sessions/work.json is accessible by group or others (mode 0644) and is owned by another user (uid 1001) (fix: chown 1000 /h/sessions/work.json && chmod 600 /h/sessions/work.json)"
        );
        assert_eq!(loose(&problem, true).status, Status::Warn);
    }

    #[test]
    fn both_binaries_must_be_there() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("authkeep-main");
        std::fs::write(&exe, b"").unwrap();
        let check = binaries(Ok(&exe));
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.detail.starts_with("authkeep missing from "),
            "{}",
            check.detail
        );
        std::fs::write(dir.path().join("authkeep"), b"").unwrap();
        assert_eq!(binaries(Ok(&exe)).status, Status::Ok);
        let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(binaries(Err(&gone)).status, Status::Fail);
    }
}
