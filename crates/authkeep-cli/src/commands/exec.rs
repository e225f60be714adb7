//! `authkeep exec`: run a command with the profile's access token in its
//! environment, and with `--token-file`, in a private file kept current for the
//! command's whole life.
//!
//! The token is obtained first, with `token`'s semantics and exit codes; then the
//! child starts with the token in a variable (`AUTHKEEP_ACCESS_TOKEN` unless
//! `--env` names another). authkeep stays as the child's parent: it forwards
//! SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to it, and ends with its
//! exit code (128 + N when a signal N killed it). A command that cannot be started
//! is exit 127 (not found) or 126 (found, but it cannot be run).
//!
//! With `--token-file PATH` the token is also written to PATH (0600, replaced
//! atomically, no newline), whose absolute path the child finds in
//! `AUTHKEEP_TOKEN_FILE`. While the child runs, authkeep asks the keeper again
//! when the policy's refresh window begins ([`next_check`]), and at least every
//! [`LONGEST_SLEEP`] to follow changes other processes make; the keeper
//! refreshes (single flight, lock, policy) and the file is replaced when the
//! token changed. A transient failure keeps the still-valid token (the keeper
//! records its back-off); after expiry attempts back off on their own
//! ([`retry_pause`]). When the session needs a login, a warning says so and the
//! file is no longer refreshed. The file is removed when the child has ended,
//! however it ended; a refresh under way is saved first.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use authkeep::policy::UseReason;
use authkeep::{AccessToken, Decision, Demand, FileStore, Keeper, Policy, Record, SessionKey};
use jiff::{SignedDuration, Timestamp};

use super::token::status_lines;
use crate::config;
use crate::exit::{ChildExit, one_line, usage};
use crate::names::{self, NetworkArgs, PolicyArgs, ProfileArg, parse_duration};
use crate::printer::{self, Level};

/// What `authkeep exec` does, for `--help`.
pub const ABOUT: &str = "Run a command with the profile's access token in its environment \
(and with --token-file, in a file kept fresh while it runs); exit with its exit code.";

/// More on `authkeep exec`, for `--help`.
pub const AFTER_HELP: &str = "Examples:\n\
  authkeep exec -p work -- curl -H \"Authorization: Bearer $AUTHKEEP_ACCESS_TOKEN\" …\n\
  authkeep exec -p work --token-file /run/user/1000/work.token -- my-daemon\n\
Exit codes: the command's own (128 + N if signal N killed it); 126 or 127 if it could not be \
started; before it starts, those of `authkeep token` (2 usage, 3 login required, 4 retry later).\n\
SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on to the command.";

/// The longest authkeep sleeps between two looks at the session while the
/// child runs: changes other processes make (a newer token, a new login) reach
/// the file within this time.
pub const LONGEST_SLEEP: Duration = Duration::from_secs(10);
/// The shortest pause between two requests for a token while the child runs.
const MIN_PAUSE: SignedDuration = SignedDuration::from_secs(1);
/// The longest pause between attempts after failures.
const MAX_RETRY_PAUSE: SignedDuration = SignedDuration::from_secs(60);

/// The arguments of `authkeep exec`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    profile: ProfileArg,
    /// The environment variable that hands the command its access token.
    #[arg(
        long = "env",
        value_name = "NAME",
        default_value = names::DEFAULT_TOKEN_VARIABLE,
        value_parser = parse_variable_name
    )]
    env: String,
    /// Also write the token to this file (0600, replaced atomically), keep it fresh while the
    /// command runs, and remove it when the command ends; its path is in AUTHKEEP_TOKEN_FILE.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// The token the command starts with stays valid at least this long (e.g. 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    min_valid: Option<SignedDuration>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    network: NetworkArgs,
    /// The command to run and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        num_args = 1..,
        value_name = "COMMAND",
        value_parser = clap::value_parser!(OsString)
    )]
    command: Vec<OsString>,
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    if args.token_file.is_some() && args.env == names::ENV_TOKEN_FILE {
        return Err(usage(format!(
            "--env {}: that variable holds the token file's path; name another",
            names::ENV_TOKEN_FILE
        )));
    }
    let token_file = match &args.token_file {
        Some(path) => Some(
            std::path::absolute(path)
                .map_err(|e| usage(format!("--token-file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let settings = config::Settings::resolve(&args.profile, &args.policy, &args.network)?;
    let key = settings.key.clone();
    let keeper = settings.keeper().on_event(status_lines(level)).build();
    let mut demand = Demand::new();
    if let Some(min_valid) = args.min_valid {
        demand = demand.min_valid(min_valid);
    }
    let code = crate::runtime()?.block_on(async {
        let token = crate::interrupt::shielded(keeper.shield(), keeper.token(&key, demand)).await?;
        let child = Child {
            command: &args.command,
            variable: &args.env,
            token_file,
        };
        let code = child.run(&keeper, &key, token.access_token, level).await;
        // A refresh the keeper started is saved before the process ends.
        keeper.shield().idle().await;
        code
    })?;
    match code {
        0 => Ok(()),
        code => Err(ChildExit {
            code,
            message: String::new(),
        }
        .into()),
    }
}

/// The command to run, and how it gets the token.
struct Child<'a> {
    command: &'a [OsString],
    variable: &'a str,
    token_file: Option<PathBuf>,
}

impl Child<'_> {
    /// Starts the child with `token`, forwards signals to it and keeps the token
    /// file fresh until it ends, removes the file, and returns the exit code.
    async fn run(
        self,
        keeper: &Keeper<FileStore>,
        key: &SessionKey,
        token: AccessToken,
        level: Level,
    ) -> Result<u8> {
        let Some((program, arguments)) = self.command.split_first() else {
            return Err(usage("no command to run"));
        };
        // Listening before the child exists: a signal from now on is passed on,
        // never the end of authkeep with the child left behind.
        let mut signals = Signals::listen().context("cannot listen for signals")?;
        let file = match self.token_file {
            Some(path) => Some(TokenFile::create(path, &token)?),
            None => None,
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(arguments)
            .env(self.variable, token.expose_secret());
        if let Some(file) = &file {
            command.env(names::ENV_TOKEN_FILE, &file.path);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                if let Some(file) = file {
                    file.remove(level);
                }
                return Err(cannot_run(program, &error).into());
            }
        };
        drop(command);
        let pid = child.id();
        let status = {
            let refresher = async {
                match &file {
                    Some(file) => keep_fresh(keeper, key, file, token, level).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(refresher);
            let mut refreshing = true;
            loop {
                tokio::select! {
                    status = child.wait() => break status,
                    signal = signals.next() => forward(pid, signal, level),
                    () = &mut refresher, if refreshing => refreshing = false,
                }
            }
        };
        if let Some(file) = file {
            file.remove(level);
        }
        let status = status.context("cannot wait for the command")?;
        Ok(exit_code(status))
    }
}

/// The exit code that passes `status` on: the child's own, or 128 + N when
/// signal N killed it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        // A Unix exit code is 0..=255; elsewhere a wider one is "failed".
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return 128u8.saturating_add(u8::try_from(signal).unwrap_or(127));
        }
    }
    1
}

/// A command that could not be started: 127 when it does not exist, 126 when
/// it exists but cannot be run, as shells report it.
fn cannot_run(program: &OsStr, error: &std::io::Error) -> ChildExit {
    let (code, why) = match error.kind() {
        std::io::ErrorKind::NotFound => (127, "command not found".to_owned()),
        std::io::ErrorKind::PermissionDenied => (126, "permission denied (not executable)".into()),
        _ => (126, error.to_string()),
    };
    ChildExit {
        code,
        message: format!("cannot run {program:?}: {why}"),
    }
}

/// Reads `--env`: a portable variable name (letters, digits and `_`, not
/// starting with a digit).
fn parse_variable_name(text: &str) -> Result<String, String> {
    let mut chars = text.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err("a variable name is letters, digits and _, and does not start with a digit".into())
    }
}

/// The token file the child reads.
struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// Writes `token` to `path` (absolute).
    fn create(path: PathBuf, token: &AccessToken) -> Result<Self> {
        let file = Self { path };
        file.write(token)
            .with_context(|| format!("cannot write the token file {}", file.path.display()))?;
        Ok(file)
    }

    /// Replaces the file's content with `token`: private (0600), atomically.
    fn write(&self, token: &AccessToken) -> Result<(), authkeep::StoreError> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        authkeep::store::write_atomically(
            &self.path,
            &format!(".{name}."),
            token.expose_secret().as_bytes(),
        )
    }

    /// Removes the file; one already gone is fine, any other failure is said
    /// on stderr (the token may be left on disk).
    fn remove(self, level: Level) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => printer::status(
                level,
                Level::Quiet,
                &format!(
                    "error: cannot remove the token file {}: {e}; remove it yourself",
                    self.path.display()
                ),
            ),
        }
    }
}

/// Keeps `file` holding a usable token of `key` (it holds `held` now) until
/// the session needs a login; never returns otherwise.
async fn keep_fresh(
    keeper: &Keeper<FileStore>,
    key: &SessionKey,
    file: &TokenFile,
    mut held: AccessToken,
    level: Level,
) {
    let warn = |line: String| printer::status(level, Level::Normal, &format!("warning: {line}"));
    let mut failures = 0u32;
    let mut not_before = add(keeper.now(), MIN_PAUSE);
    loop {
        let now = keeper.now();
        let next = match keeper.session(key).await {
            Ok(loaded) => {
                let record = loaded.as_ref().map(|v| &v.record);
                next_check(record, &held, keeper.policy(), now)
            }
            // The keeper meets the store's error and reports it.
            Err(_) => now,
        };
        let wake = next.max(not_before);
        if wake > now {
            let pause = Duration::try_from(wake.duration_since(now)).unwrap_or(Duration::ZERO);
            tokio::time::sleep(pause.min(LONGEST_SLEEP)).await;
            if keeper.now() < wake {
                // A look at the session only: what another process changed.
                continue;
            }
        }
        let now = keeper.now();
        match keeper.token(key, Demand::new()).await {
            Ok(token) if token.access_token == held => {
                failures = 0;
                not_before = add(now, MIN_PAUSE);
            }
            Ok(token) => match file.write(&token.access_token) {
                Ok(()) => {
                    failures = 0;
                    not_before = add(now, MIN_PAUSE);
                    held = token.access_token;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = retry_pause(failures);
                    warn(format!(
                        "cannot update the token file: {e}; trying again in {}s",
                        pause.as_secs()
                    ));
                    not_before = add(now, pause);
                }
            },
            Err(e) if e.is_login_required() => {
                warn(format!(
                    "{}; {} is no longer refreshed",
                    one_line(&e.into()),
                    file.path.display()
                ));
                return;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = retry_pause(failures);
                warn(format!(
                    "cannot renew the token in {}: {}; trying again in {}s",
                    file.path.display(),
                    one_line(&e.into()),
                    pause.as_secs()
                ));
                not_before = add(now, pause);
            }
        }
    }
}

/// When to ask the keeper again, for a file that holds `held`, given the
/// stored `record` at `now`: at once when the store holds another token (a
/// refresh or login elsewhere) or a refresh is due; at the start of the
/// policy's refresh window; when a back-off or the provider's `Retry-After`
/// ends; at expiry for a session that cannot renew itself (the keeper then
/// says a login is needed). The caller adds its own pauses and wakes at least
/// every [`LONGEST_SLEEP`] anyway.
fn next_check(
    record: Option<&Record>,
    held: &AccessToken,
    policy: &Policy,
    now: Timestamp,
) -> Timestamp {
    let tokens = record.and_then(|r| r.tokens.as_ref());
    if tokens.is_some_and(|t| t.access_token != *held) {
        return now;
    }
    let later = |at: Option<Timestamp>| at.unwrap_or_else(|| far(now));
    match policy.decide(record, Demand::new(), now) {
        Decision::UseStored(UseReason::Valid | UseReason::ShorterThanAsked) => {
            later(tokens.and_then(|t| {
                let window = policy.window(t.lifetime());
                t.expires_at.map(|at| add(at, -window))
            }))
        }
        Decision::UseStored(UseReason::BackingOff(until)) | Decision::WaitForProvider(until) => {
            until
        }
        Decision::UseStored(UseReason::NoExpiryFromProvider) => later(
            policy
                .max_age
                .zip(tokens)
                .map(|(age, t)| add(t.obtained_at, age)),
        ),
        Decision::UseStored(UseReason::CannotRenew) => later(tokens.and_then(|t| t.expires_at)),
        Decision::UseStored(_) => far(now),
        Decision::Refresh { .. } | Decision::RequireLogin(_) => now,
        _ => now,
    }
}

/// `t + d`, held at the ends of time rather than overflowing.
fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Beyond the next periodic look.
fn far(now: Timestamp) -> Timestamp {
    let longest = SignedDuration::try_from(LONGEST_SLEEP).unwrap_or(SignedDuration::ZERO);
    add(now, longest)
}

/// The pause after `failures` failures in a row: 1 s, doubling, at most a minute.
fn retry_pause(failures: u32) -> SignedDuration {
    let doublings = failures.saturating_sub(1).min(6);
    SignedDuration::from_secs(1i64 << doublings).min(MAX_RETRY_PAUSE)
}

/// The signals passed on to the child.
#[cfg(unix)]
struct Signals {
    streams: Vec<(rustix::process::Signal, tokio::signal::unix::Signal)>,
}

#[cfg(unix)]
impl Signals {
    /// Handles each forwarded signal from now on (instead of its default
    /// action, which would end authkeep and leave the child behind).
    fn listen() -> std::io::Result<Self> {
        use rustix::process::Signal;
        use tokio::signal::unix::{SignalKind, signal};
        let forwarded = [
            (Signal::INT, SignalKind::interrupt()),
            (Signal::TERM, SignalKind::terminate()),
            (Signal::HUP, SignalKind::hangup()),
            (Signal::QUIT, SignalKind::quit()),
            (Signal::USR1, SignalKind::user_defined1()),
            (Signal::USR2, SignalKind::user_defined2()),
        ];
        let mut streams = Vec::with_capacity(forwarded.len());
        for (number, kind) in forwarded {
            streams.push((number, signal(kind)?));
        }
        Ok(Self { streams })
    }

    /// The next signal received.
    async fn next(&mut self) -> rustix::process::Signal {
        std::future::poll_fn(|cx| {
            for (number, stream) in &mut self.streams {
                // `None` would mean the runtime's signal driver is gone, which
                // it is not while this runs: that stream just never fires.
                if stream.poll_recv(cx) == std::task::Poll::Ready(Some(())) {
                    return std::task::Poll::Ready(*number);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// Passes `signal` on to the child `pid`. The child has not been reaped (its
/// exit is collected only by the wait this races with), so the id is still its.
#[cfg(unix)]
fn forward(pid: Option<u32>, signal: rustix::process::Signal, level: Level) {
    let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process(pid, signal) {
        printer::status(
            level,
            Level::Normal,
            &format!(
                "warning: cannot pass signal {} on to the command: {e}",
                signal.as_raw()
            ),
        );
    }
}

/// Elsewhere the platform delivers console signals to the child itself.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> std::convert::Infallible {
        std::future::pending().await
    }
}

#[cfg(not(unix))]
fn forward(_pid: Option<u32>, signal: std::convert::Infallible, _level: Level) {
    match signal {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use authkeep::{Client, ExpirySource, Health, Origin, RefreshToken, TokenSet};

    fn now() -> Timestamp {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    /// A record whose access token `at`, of `lifetime` seconds, expires `left`
    /// seconds from now.
    fn record(left: i64, lifetime: i64, renew: bool) -> Record {
        let expires_at = now() + secs(left);
        Record {
            client: Some(Client::new("https://idp.example", "c")),
            tokens: Some(TokenSet {
                access_token: AccessToken::new("at"),
                token_type: "Bearer".into(),
                refresh_token: renew.then(|| RefreshToken::new("rt")),
                scope: None,
                id_token: None,
                expires_at: Some(expires_at),
                issued_at: Some(expires_at - secs(lifetime)),
                refresh_expires_at: None,
                expiry_source: ExpirySource::ExpiresIn,
                obtained_at: expires_at - secs(lifetime),
                origin: Origin::Refresh,
            }),
            health: Health::default(),
            clock_skew_secs: None,
        }
    }

    fn held() -> AccessToken {
        AccessToken::new("at")
    }

    #[test]
    fn a_valid_token_is_looked_at_again_when_its_window_begins() {
        let policy = Policy::default();
        // 60 s tokens: window min(5m, 30 s) = 30 s before expiry.
        let at = next_check(Some(&record(50, 60, true)), &held(), &policy, now());
        assert_eq!(at, now() + secs(20));
        // An hour-long token: the 5-minute threshold.
        let at = next_check(Some(&record(3000, 3600, true)), &held(), &policy, now());
        assert_eq!(at, now() + secs(2700));
        // A fraction of 0.1 moves the window.
        let policy = Policy::default().with_fraction(0.1);
        let at = next_check(Some(&record(50, 60, true)), &held(), &policy, now());
        assert_eq!(at, now() + secs(44));
    }

    #[test]
    fn a_refresh_due_or_a_newer_token_elsewhere_is_acted_on_at_once() {
        let policy = Policy::default();
        assert_eq!(
            next_check(Some(&record(10, 60, true)), &held(), &policy, now()),
            now()
        );
        assert_eq!(
            next_check(Some(&record(-1, 60, true)), &held(), &policy, now()),
            now()
        );
        let other = AccessToken::new("newer");
        assert_eq!(
            next_check(Some(&record(50, 60, true)), &other, &policy, now()),
            now()
        );
        // No session: the keeper says a login is needed.
        assert_eq!(next_check(None, &held(), &policy, now()), now());
    }

    #[test]
    fn a_back_off_or_a_session_that_cannot_renew_waits() {
        let policy = Policy::default();
        let mut backing_off = record(10, 60, true);
        backing_off.health.next_attempt_at = Some(now() + secs(7));
        assert_eq!(
            next_check(Some(&backing_off), &held(), &policy, now()),
            now() + secs(7)
        );
        // Cannot renew: nothing to do until it expires, when a login is needed.
        assert_eq!(
            next_check(Some(&record(10, 60, false)), &held(), &policy, now()),
            now() + secs(10)
        );
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        let pauses: Vec<i64> = (1..=9).map(|n| retry_pause(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_pause(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn variable_names_are_portable() {
        for ok in ["AUTHKEEP_ACCESS_TOKEN", "_x", "a1"] {
            assert_eq!(parse_variable_name(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É"] {
            assert!(parse_variable_name(bad).is_err(), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn exit_codes_pass_the_childs_on() {
        use std::os::unix::process::ExitStatusExt as _;
        let status = std::process::ExitStatus::from_raw;
        assert_eq!(exit_code(status(7 << 8)), 7);
        assert_eq!(exit_code(status(0)), 0);
        // Killed by SIGKILL (9) and SIGTERM (15).
        assert_eq!(exit_code(status(9)), 137);
        assert_eq!(exit_code(status(15)), 143);
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(cannot_run(OsStr::new("x"), &missing).code, 127);
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let denied = cannot_run(OsStr::new("x"), &denied);
        assert_eq!(denied.code, 126);
        assert!(
            denied.message.starts_with("cannot run \"x\""),
            "{}",
            denied.message
        );
    }
}
