//! `authkeep login`: log a profile in (browser with PKCE, device code, client
//! credentials, a bare access token, or an imported token response) and keep
//! what it was logged in with as the profile in the configuration file.
//!
//! Secrets are read from files, the environment or stdin, never from argv; the
//! profile keeps where the client secret comes from, never the secret.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use authkeep::oauth::device::DeviceAuthorization;
use authkeep::oauth::{Metadata, check_endpoint, display_url};
use authkeep::{
    Client, ClientAuth, ClientSecret, Error, FileStore, Keeper, LoggedIn, Loopback, LoopbackError,
    Record, Renewal, SessionKey, SessionState, StoreError, TokenResponse, Versioned,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::common::instant;
use crate::config::{self, AuthMethod, LoginMethod, Profile, Settings};
use crate::exit::{endpoint_usage, usage};
use crate::names::{ENV_CLIENT_SECRET, NetworkArgs, PolicyArgs, ProfileArg, parse_duration};
use crate::printer::{self, Level};
use crate::{browser, progress};

/// How long a browser login waits for the redirect by default.
const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a device login waits for another login of the profile to finish:
/// as long as a user code commonly lives.
const DEVICE_LOGIN_WAIT: Duration = Duration::from_secs(900);

/// What `authkeep login` does, for `--help`.
pub const AFTER_HELP: &str = "\
Methods (the profile's `login` setting, else the browser where one can be opened, else the device code):
  --browser             authorization code with PKCE; the provider redirects to a listener on 127.0.0.1
  --device              device code (RFC 8628): enter a code on any device; for SSH sessions and terminals
  --client-credentials  a service's own token (no user); renewed by repeating the grant
  --with-token          a bare access token read from stdin; it cannot renew itself
  --from-json FILE|-    import a token response or another tool's token file

Everything given here is kept as the profile in config.toml (the client secret's source, never the
secret), so later commands need only --profile. Replacing a profile's live session with one for
another issuer or client asks first on a terminal, and needs --force otherwise.

Examples:
  authkeep login --issuer https://login.example.com --client-id my-cli
  authkeep login -p ci --client-credentials --issuer https://idp.example --client-id svc --client-secret-env SVC_SECRET
  printf %s \"$TOKEN\" | authkeep login -p pat --with-token --issuer https://api.example";

/// Log a profile in and keep its settings in the configuration file.
///
/// Import formats for --from-json: an OAuth token response (access_token,
/// token_type, expires_in, refresh_token, scope, id_token, refresh_expires_in) or
/// a token file another client wrote: a record carrying expires_at (RFC 3339, or
/// Unix seconds; milliseconds where it cannot be seconds), camelCase as
/// JavaScript apps keep it (accessToken, refreshToken, idToken, expiresAt,
/// tokenType), Go's oauth2.Token (expiry), or Python's Authlib (expires_at in
/// float seconds).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    profile: ProfileArg,
    /// Log in in a browser: authorization code with PKCE S256 and a loopback redirect.
    #[arg(long, group = "method")]
    browser: bool,
    /// Log in with a device code: open a URL on any device and enter the code shown.
    #[arg(long, group = "method")]
    device: bool,
    /// Obtain a token for the client itself (client credentials grant); no user involved.
    #[arg(long, group = "method")]
    client_credentials: bool,
    /// Store a bare access token read from stdin; it cannot renew itself.
    #[arg(long, group = "method")]
    with_token: bool,
    /// Import a token response or token file: a path, or "-" for stdin.
    #[arg(long, group = "method", value_name = "FILE|-")]
    from_json: Option<PathBuf>,
    /// The provider's issuer URL, exactly as it names itself (https, or http on loopback).
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// The OAuth client id.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// A file holding the client secret of a confidential client ("-" for stdin, not kept).
    #[arg(long, value_name = "PATH", conflicts_with = "client_secret_env")]
    client_secret_file: Option<PathBuf>,
    /// The name of an environment variable holding the client secret (the name is kept, never
    /// the secret). AUTHKEEP_CLIENT_SECRET is read when neither is given.
    #[arg(long, value_name = "NAME")]
    client_secret_env: Option<String>,
    /// How the client secret is presented to the token endpoint [default: basic]
    #[arg(long, value_enum)]
    client_auth: Option<ClientAuthArg>,
    /// Scope to ask for (repeat for several; replaces the profile's).
    #[arg(long, value_name = "SCOPE")]
    scope: Vec<String>,
    /// The audience to ask for (sent as the `audience` parameter).
    #[arg(long, value_name = "AUDIENCE")]
    audience: Option<String>,
    /// An extra authorization parameter (repeat for several), e.g. prompt=consent.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// The token endpoint, for providers without discovery (then the issuer is not checked).
    #[arg(long, value_name = "URL")]
    token_endpoint: Option<String>,
    /// The exact redirect URI to listen on (http://127.0.0.1:PORT/PATH), for providers that
    /// require a registered one [default: 127.0.0.1 with a port the system chooses]
    #[arg(long, value_name = "URI")]
    redirect_uri: Option<String>,
    /// Print the browser login's URL instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// How long to wait for the person to finish a browser login [default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    login_timeout: Option<SignedDuration>,
    /// Replace a live session of another issuer or client without asking.
    #[arg(long)]
    force: bool,
    /// Print what was stored as JSON (never a token).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    network: NetworkArgs,
}

/// `--client-auth`: [`AuthMethod`] as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ClientAuthArg {
    /// HTTP Basic (client_secret_basic).
    Basic,
    /// In the request body (client_secret_post).
    Post,
}

impl From<ClientAuthArg> for AuthMethod {
    fn from(arg: ClientAuthArg) -> Self {
        match arg {
            ClientAuthArg::Basic => AuthMethod::Basic,
            ClientAuthArg::Post => AuthMethod::Post,
        }
    }
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// How this login is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Login(LoginMethod),
    Import,
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    let settings = Settings::resolve(&args.profile, &PolicyArgs::default(), &args.network)?;
    let saved = settings.profile.clone().unwrap_or_default();
    let profile = merged(&args, &saved);
    let method = if args.from_json.is_some() {
        Method::Import
    } else {
        Method::Login(chosen_method(&args, &profile))
    };
    let options = Options {
        no_browser: args.no_browser,
        login_timeout: args
            .login_timeout
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(DEFAULT_LOGIN_TIMEOUT),
        force: args.force,
        json: args.json,
        secret_file: args.client_secret_file.clone(),
        import: args.from_json.clone(),
    };
    log_in(&settings, profile, method, &options, level)
}

/// Logs in with the profile as configured, for `authkeep token --login`.
pub fn run_configured(settings: &Settings, level: Level) -> Result<()> {
    let profile = settings.profile.clone().unwrap_or_default();
    let method = profile.login.unwrap_or_else(default_method);
    let options = Options {
        no_browser: false,
        login_timeout: DEFAULT_LOGIN_TIMEOUT,
        force: false,
        json: false,
        secret_file: None,
        import: None,
    };
    log_in(settings, profile, Method::Login(method), &options, level)
}

/// What the command line says beyond the profile.
struct Options {
    no_browser: bool,
    login_timeout: Duration,
    force: bool,
    json: bool,
    /// `--client-secret-file -` is read but not kept in the profile.
    secret_file: Option<PathBuf>,
    import: Option<PathBuf>,
}

/// The profile as saved, with what the command line says over it.
fn merged(args: &Args, saved: &Profile) -> Profile {
    let mut profile = saved.clone();
    if let Some(issuer) = &args.issuer {
        profile.issuer = Some(issuer.clone());
    }
    if let Some(id) = &args.client_id {
        profile.client_id = Some(id.clone());
    }
    match (&args.client_secret_file, &args.client_secret_env) {
        (Some(path), _) if path != Path::new("-") => {
            profile.client_secret_file = Some(path.clone());
            profile.client_secret_env = None;
        }
        (Some(_), _) => {
            profile.client_secret_file = None;
            profile.client_secret_env = None;
        }
        (None, Some(name)) => {
            profile.client_secret_env = Some(name.clone());
            profile.client_secret_file = None;
        }
        (None, None) => {}
    }
    if let Some(auth) = args.client_auth {
        profile.client_auth = Some(auth.into());
    }
    if !args.scope.is_empty() {
        profile.scopes = args.scope.clone();
    }
    if let Some(audience) = &args.audience {
        profile.audience = Some(audience.clone());
    }
    for (name, value) in &args.params {
        profile
            .authorization_params
            .insert(name.clone(), value.clone());
    }
    if let Some(endpoint) = &args.token_endpoint {
        profile.token_endpoint = Some(endpoint.clone());
    }
    if let Some(uri) = &args.redirect_uri {
        profile.redirect_uri = Some(uri.clone());
    }
    if args.network.insecure_allow_http {
        profile.insecure_allow_http = Some(true);
    }
    if let Some(store) = args.network.store.store {
        profile.store = Some(store);
    }
    let flagged = [
        (args.browser, LoginMethod::Browser),
        (args.device, LoginMethod::Device),
        (args.client_credentials, LoginMethod::ClientCredentials),
        (args.with_token, LoginMethod::Token),
    ];
    if let Some((_, method)) = flagged.into_iter().find(|(set, _)| *set) {
        profile.login = Some(method);
    }
    profile
}

fn chosen_method(args: &Args, profile: &Profile) -> LoginMethod {
    if args.no_browser && profile.login.is_none() {
        return LoginMethod::Browser;
    }
    profile.login.unwrap_or_else(default_method)
}

/// A browser login where a browser can be opened, else a device login.
fn default_method() -> LoginMethod {
    if browser::can_open(|name| std::env::var_os(name)) {
        LoginMethod::Browser
    } else {
        LoginMethod::Device
    }
}

fn log_in(
    settings: &Settings,
    profile: Profile,
    method: Method,
    options: &Options,
    level: Level,
) -> Result<()> {
    let key = settings.key.clone();
    let insecure = settings.network.allow_insecure_http;
    let issuer = profile.issuer.clone().ok_or_else(|| {
        usage(format!(
            "profile {key} has no issuer: give --issuer URL (the provider's issuer, exactly as it names itself)"
        ))
    })?;
    check_endpoint(&issuer, insecure).map_err(endpoint_usage)?;
    if let Some(endpoint) = &profile.token_endpoint {
        check_endpoint(endpoint, insecure).map_err(endpoint_usage)?;
    }
    let client_id = match (&profile.client_id, method) {
        (Some(id), _) => id.clone(),
        (None, Method::Login(LoginMethod::Token)) => String::new(),
        (None, _) => {
            return Err(usage(format!(
                "profile {key} has no client id: give --client-id ID"
            )));
        }
    };
    let reads_stdin = matches!(method, Method::Login(LoginMethod::Token))
        || options.import.as_deref() == Some(Path::new("-"));
    let secret = client_secret(&profile, options.secret_file.as_deref(), reads_stdin)?;
    let mut client = Client::new(issuer.clone(), client_id);
    if let Some(secret) = secret {
        let auth = match profile.client_auth.unwrap_or(AuthMethod::Basic) {
            AuthMethod::Basic => ClientAuth::ClientSecretBasic,
            AuthMethod::Post => ClientAuth::ClientSecretPost,
        };
        client = client.with_secret(secret, auth);
    }
    if !profile.scopes.is_empty() {
        client = client.with_scope(profile.scopes.join(" "));
    }
    if let Some(endpoint) = &profile.token_endpoint {
        client = client.with_token_endpoint(endpoint.clone());
    }
    settings.check_store(profile.store.unwrap_or(settings.backend))?;
    let keeper = settings
        .keeper()
        .on_event(super::token::status_lines(level))
        .build();
    let runtime = crate::runtime()?;
    confirm_replacing(&runtime, &keeper, &key, &client, options.force)?;
    let login = obtain(&keeper, &key, client, &profile, method, options, level);
    let outcome = runtime.block_on(crate::interrupt::shielded(keeper.shield(), login))?;
    let saved = saved_profile(profile, method);
    let config_path = settings.config_path.clone();
    config::write_profile(&config_path, key.as_str(), &saved).with_context(|| {
        format!(
            "the session of profile {key} was stored, but its settings could not be saved in {}",
            config_path.display()
        )
    })?;
    report(&keeper, &key, &outcome, options.json, level)
}

/// Obtains the session by `method`.
async fn obtain(
    keeper: &Keeper<FileStore>,
    key: &SessionKey,
    client: Client,
    profile: &Profile,
    method: Method,
    options: &Options,
    level: Level,
) -> Result<LoggedIn> {
    let issuer = client.issuer.clone();
    match method {
        Method::Import => {
            let source = options.import.as_deref().unwrap_or(Path::new("-"));
            let response = parse_import(&read_input(source)?, source)?;
            if response.expiry_in_milliseconds {
                printer::status(
                    level,
                    Level::Normal,
                    &format!(
                        "{key}: the expiry is a Unix time too large for seconds; read it as milliseconds"
                    ),
                );
            }
            if profile.token_endpoint.is_none() {
                keeper.metadata(key, &issuer).await?;
            }
            let stored = keeper.import_login(key, client, response).await;
            Ok(LoggedIn::Stored(stored.map_err(with_corrupt_hint(key))?))
        }
        Method::Login(LoginMethod::Token) => {
            let token = read_token()?;
            let response = TokenResponse::from_fields(
                serde_json::json!({ "access_token": token, "token_type": "Bearer" })
                    .as_object()
                    .ok_or_else(|| anyhow!("a JSON object"))?,
            );
            let stored = keeper.import_login(key, client, response).await;
            Ok(LoggedIn::Stored(stored.map_err(with_corrupt_hint(key))?))
        }
        Method::Login(LoginMethod::ClientCredentials) => {
            let client = client
                .with_renewal(Renewal::ClientCredentials)
                .with_token_params(token_params(profile));
            Ok(LoggedIn::Stored(
                keeper.login_client_credentials(key, client).await?,
            ))
        }
        Method::Login(LoginMethod::Device) => {
            let metadata = metadata(keeper, key, &issuer, profile).await?;
            let extra = authorization_params(profile);
            let spinner = std::sync::Mutex::new(None);
            let result = keeper
                .login_device(
                    key,
                    client,
                    &metadata,
                    &extra,
                    DEVICE_LOGIN_WAIT,
                    |authorization| {
                        show_device_prompt(key, authorization, level);
                        *spinner.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(waiting_spinner(key, authorization.expires_at, level));
                    },
                )
                .await;
            // The spinner, if one started, is cleared as it goes out of scope here.
            Ok(result?)
        }
        Method::Login(LoginMethod::Browser) => {
            let metadata = metadata(keeper, key, &issuer, profile).await?;
            let loopback = Loopback::bind(profile.redirect_uri.as_deref())
                .await
                .map_err(loopback_usage)?;
            let extra = authorization_params(profile);
            let deadline = jiff::Timestamp::now()
                .checked_add(options.login_timeout)
                .unwrap_or(jiff::Timestamp::MAX);
            let spinner = std::sync::Mutex::new(None);
            let result = keeper
                .login_browser(
                    key,
                    client,
                    &metadata,
                    &extra,
                    loopback,
                    options.login_timeout,
                    |url| {
                        show_browser_prompt(key, url.as_str(), options.no_browser, level);
                        *spinner.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(waiting_spinner(key, deadline, level));
                    },
                )
                .await;
            // The spinner, if one started, is cleared as it goes out of scope here.
            Ok(result?)
        }
    }
}

/// The profile as kept: the method only for real logins (an import is not a way
/// to log in again).
fn saved_profile(mut profile: Profile, method: Method) -> Profile {
    if method == Method::Import && profile.login == Some(LoginMethod::Token) {
        profile.login = None;
    }
    profile
}

/// Extra authorization parameters: the audience, then the profile's own.
fn authorization_params(profile: &Profile) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = profile
        .audience
        .iter()
        .map(|a| ("audience".to_owned(), a.clone()))
        .collect();
    params.extend(
        profile
            .authorization_params
            .iter()
            .filter(|(name, _)| name.as_str() != "audience" || profile.audience.is_none())
            .map(|(n, v)| (n.clone(), v.clone())),
    );
    params
}

/// Extra token-request parameters of a client credentials grant: the audience.
fn token_params(profile: &Profile) -> Vec<(String, String)> {
    let mut params = BTreeMap::new();
    if let Some(audience) = &profile.audience {
        params.insert("audience".to_owned(), audience.clone());
    }
    params.into_iter().collect()
}

/// The provider's metadata for an interactive login; an explicit token
/// endpoint does not help here (the authorization endpoints come only from
/// discovery).
async fn metadata(
    keeper: &Keeper<FileStore>,
    key: &SessionKey,
    issuer: &str,
    profile: &Profile,
) -> Result<Metadata> {
    let mut metadata = keeper.metadata(key, issuer).await?;
    if let Some(endpoint) = &profile.token_endpoint {
        metadata.token_endpoint = endpoint.clone();
    }
    Ok(metadata)
}

/// Asks before a live session is replaced by one for another issuer or client.
fn confirm_replacing(
    runtime: &tokio::runtime::Runtime,
    keeper: &Keeper<FileStore>,
    key: &SessionKey,
    client: &Client,
    force: bool,
) -> Result<()> {
    if force {
        return Ok(());
    }
    let (current, state) = runtime.block_on(async {
        let current = keeper.session(key).await?;
        let state = keeper.state(key).await?;
        Ok::<_, StoreError>((current, state))
    })?;
    let Some(Versioned {
        record: Record {
            client: Some(current),
            ..
        },
        ..
    }) = current
    else {
        return Ok(());
    };
    let live = matches!(state, SessionState::Valid | SessionState::ExpiredRenewable);
    if !live || (current.issuer == client.issuer && current.client_id == client.client_id) {
        return Ok(());
    }
    let what = format!(
        "profile {key} holds a live session for {} (client {})",
        display_url(&current.issuer),
        current.client_id
    );
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(usage(format!(
            "{what}; replacing it with a login to {} needs --force",
            display_url(&client.issuer)
        )));
    }
    let answer = ask(&format!(
        "authkeep: {what}. Replace it with a login to {}? [y/N] ",
        display_url(&client.issuer)
    ))
    .context("cannot ask on the terminal")?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        Ok(())
    } else {
        Err(usage(format!("{what}; kept it (nothing changed)")))
    }
}

fn show_device_prompt(key: &SessionKey, authorization: &DeviceAuthorization, level: Level) {
    let left = printer::duration(authorization.expires_at.duration_since(Timestamp::now()));
    let mut lines = vec![format!(
        "{key}: to sign in, open {} and enter the code {}",
        authorization.verification_uri, authorization.user_code
    )];
    if let Some(complete) = &authorization.verification_uri_complete {
        lines.push(format!("{key}: or open {complete} (the code is filled in)"));
    }
    lines.push(format!("{key}: the code expires in {left}"));
    for line in &lines {
        // The prompt is the point of the command: shown even with -q.
        printer::status(level.max(Level::Normal), Level::Normal, line);
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let url = authorization
            .verification_uri_complete
            .clone()
            .unwrap_or_else(|| authorization.verification_uri.clone());
        printer::status(
            level.max(Level::Normal),
            Level::Normal,
            &format!("{key}: press Enter to open it in your browser"),
        );
        let key = key.clone();
        // Reading the terminal blocks; a thread waits for the Enter key while
        // the login polls, and is dropped with the process.
        std::thread::spawn(move || {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() || line.is_empty() {
                return;
            }
            // The Enter key's echo moved the cursor below the spinner's line:
            // go back up and clear it, so the spinner goes on where it was.
            progress::clear_line_above();
            if let Err(e) = browser::open(&url) {
                crate::common::stderr_line(&format!(
                    "authkeep: {key}: could not open a browser ({e}); open the URL yourself"
                ));
            }
        });
    }
}

fn show_browser_prompt(key: &SessionKey, url: &str, no_browser: bool, level: Level) {
    let shown = level.max(Level::Normal);
    if no_browser {
        printer::status(
            shown,
            Level::Normal,
            &format!("{key}: open this URL in a browser to sign in:"),
        );
        printer::status(shown, Level::Normal, url);
        return;
    }
    match browser::open(url) {
        Ok(_) => {
            printer::status(
                shown,
                Level::Normal,
                &format!("{key}: opened your browser to sign in; if it did not open, visit:"),
            );
            printer::status(shown, Level::Normal, url);
        }
        Err(e) => {
            printer::status(
                shown,
                Level::Normal,
                &format!("{key}: could not open a browser ({e}); open this URL to sign in:"),
            );
            printer::status(shown, Level::Normal, url);
        }
    }
}

/// A spinner with the time left until `deadline` on a terminal; elsewhere one
/// line saying what is awaited.
fn waiting_spinner(key: &SessionKey, deadline: Timestamp, level: Level) -> progress::Spinner {
    if level == Level::Quiet {
        return progress::Spinner::none();
    }
    if !progress::enabled() {
        let left = printer::duration(deadline.duration_since(Timestamp::now()));
        printer::status(
            level,
            Level::Normal,
            &format!("{key}: waiting for the sign-in (at most {left})"),
        );
        return progress::Spinner::none();
    }
    progress::Spinner::start(move || {
        let left = deadline
            .duration_since(Timestamp::now())
            .max(SignedDuration::ZERO);
        format!("waiting for the sign-in… {} left", printer::duration(left))
    })
}

fn loopback_usage(error: LoopbackError) -> anyhow::Error {
    match error {
        LoopbackError::InUse { .. } => usage(format!(
            "{error}; stop that program, or choose another port with --redirect-uri (the provider must accept it)"
        )),
        LoopbackError::InvalidUri(_) => usage(error.to_string()),
        other => anyhow!(other),
    }
}

fn with_corrupt_hint(key: &SessionKey) -> impl FnOnce(Error) -> anyhow::Error + '_ {
    move |e| match e {
        Error::Store(StoreError::Corrupt { .. }) => anyhow!(
            "{e}; run `authkeep logout --profile {key}` to move it aside, then log in again"
        ),
        other => other.into(),
    }
}

fn report(
    keeper: &Keeper<FileStore>,
    key: &SessionKey,
    outcome: &LoggedIn,
    json: bool,
    level: Level,
) -> Result<()> {
    let now = keeper.now();
    let record = &outcome.session().record;
    let tokens = record.tokens.as_ref();
    let expires_at = tokens.and_then(|t| t.expires_at);
    let can_renew = record.can_renew();
    let issuer = record
        .client
        .as_ref()
        .map(|c| c.issuer.as_str())
        .unwrap_or_default();
    let has_access_token = tokens.is_some_and(|t| !t.access_token.is_empty());
    let joined = matches!(outcome, LoggedIn::Joined(_));
    if json {
        printer::json(&serde_json::json!({
            "profile": key.as_str(),
            "issuer": display_url(issuer),
            "has_access_token": has_access_token,
            "expires_at": expires_at.filter(|_| has_access_token).map(instant),
            "can_renew": can_renew,
            "joined": joined,
        }))?;
    }
    let validity = match expires_at {
        _ if !has_access_token => {
            "no access token yet; the next `authkeep token` gets one with the refresh token"
                .to_owned()
        }
        Some(at) if now >= at => format!("access token already expired at {}", instant(at)),
        Some(at) => format!(
            "access token valid until {} ({} left)",
            instant(at),
            printer::duration(at.duration_since(now))
        ),
        None => "access token expiry unknown".to_owned(),
    };
    let how = if joined {
        "another login of this profile finished first; using its session"
    } else {
        "session stored"
    };
    printer::status(
        level,
        Level::Normal,
        &format!("{key}: {how} for {}; {validity}", display_url(issuer)),
    );
    if !can_renew {
        printer::status(
            level,
            Level::Normal,
            &format!(
                "{key}: this session cannot renew itself (no refresh token); log in again when the access token expires"
            ),
        );
    }
    Ok(())
}

fn read_input(source: &Path) -> Result<Vec<u8>> {
    if source == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the token JSON from stdin")?;
        Ok(bytes)
    } else {
        std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))
    }
}

/// Shows `prompt` on stderr and reads one line of the answer from stdin.
fn ask(prompt: &str) -> std::io::Result<String> {
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(prompt.as_bytes())?;
    stderr.flush()?;
    drop(stderr);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer)
}

/// Reads the bare access token of `--with-token` from stdin: one line on a
/// terminal (asked for), else everything until the end.
fn read_token() -> Result<String> {
    let text = if std::io::stdin().is_terminal() {
        ask("authkeep: paste the access token and press Enter: ")
            .context("cannot read the access token from the terminal")?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the access token from stdin")?;
        text
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(usage("no access token on stdin"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(usage(
            "the access token on stdin must be one line without spaces",
        ));
    }
    Ok(token.to_owned())
}

/// The client secret: from `--client-secret-file` (a path, or "-" for stdin),
/// the profile's file or environment variable, or `AUTHKEEP_CLIENT_SECRET`.
fn client_secret(
    profile: &Profile,
    file: Option<&Path>,
    stdin_taken: bool,
) -> Result<Option<ClientSecret>> {
    let text = if file == Some(Path::new("-")) {
        if stdin_taken {
            return Err(usage(
                "--client-secret-file - cannot read stdin: this login reads something else from it",
            ));
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the client secret from stdin")?;
        text
    } else if let Some(path) = file.or(profile.client_secret_file.as_deref()) {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the client secret file {}", path.display()))?
    } else if let Some(name) = &profile.client_secret_env {
        std::env::var(name).map_err(|_| {
            usage(format!(
                "the client secret's environment variable {name} is not set"
            ))
        })?
    } else {
        match std::env::var(ENV_CLIENT_SECRET) {
            Ok(text) => text,
            Err(_) => return Ok(None),
        }
    };
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(usage("the client secret is empty"));
    }
    Ok(Some(ClientSecret::new(secret)))
}

/// Reads a token response or record leniently. Errors never quote the input.
fn parse_import(bytes: &[u8], source: &Path) -> Result<TokenResponse> {
    let name = source.display();
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        usage(format!(
            "{name} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(usage(format!(
            "{name} must hold a JSON object with access_token or refresh_token"
        )));
    };
    let response = TokenResponse::from_fields(&map);
    if response.access_token.is_empty() && response.refresh_token.is_none() {
        return Err(usage(format!(
            "{name} holds neither an access_token nor a refresh_token"
        )));
    }
    let expiry = [
        "expires_at",
        "expiresAt",
        "access_token_expires_at",
        "expiry",
    ]
    .into_iter()
    .find(|field| map.get(*field).is_some_and(|v| !v.is_null()));
    if let Some(field) = expiry
        && response.expires_at.is_none()
    {
        return Err(usage(format!(
            "{name}: {field} is neither an RFC 3339 time nor a Unix time"
        )));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_errors_never_quote_the_input() {
        let err = parse_import(
            br#"{"access_token": "s3cr3t-value", "#,
            Path::new("in.json"),
        )
        .unwrap_err();
        assert!(!format!("{err:#}").contains("s3cr3t"), "{err:#}");
        let err = parse_import(br#"{"token_type":"Bearer"}"#, Path::new("in.json")).unwrap_err();
        assert!(format!("{err}").contains("neither"), "{err}");
    }

    #[test]
    fn record_with_unix_expiry_is_read() {
        let r = parse_import(
            br#"{"access_token":"a","expires_at":1767225600}"#,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(r.expires_at, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        let r = parse_import(
            br#"{"access_token":"a","expires_in":"300","refresh_token":""}"#,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(r.expires_in, Some(300));
        assert!(r.refresh_token.is_none());
    }

    #[test]
    fn token_files_of_other_clients_are_read() {
        let at: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        // A JavaScript app's, expiry in epoch milliseconds.
        let r = parse_import(
            br#"{"accessToken":"a","refreshToken":"r","idToken":"i","tokenType":"bearer","expiresAt":1767225600000}"#,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(r.access_token.expose_secret(), "a");
        assert_eq!(r.refresh_token.unwrap().expose_secret(), "r");
        assert_eq!(r.token_type.as_deref(), Some("Bearer"));
        assert_eq!(r.expires_at, Some(at));
        assert!(r.expiry_in_milliseconds);
        // The same as an ISO string.
        let r = parse_import(
            br#"{"accessToken":"a","expiresAt":"2026-01-01T00:00:00.000Z"}"#,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(r.expires_at, Some(at));
        assert!(!r.expiry_in_milliseconds);
        // Go's oauth2.Token, with nanoseconds and an offset.
        let r = parse_import(
            br#"{"access_token":"a","token_type":"Bearer","refresh_token":"r","expiry":"2026-01-01T01:00:00.123456789+01:00"}"#,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(r.expires_at.map(|t| t.as_second()), Some(at.as_second()));
        // Authlib: expires_at in float seconds.
        let r = parse_import(
            br#"{"access_token":"a","refresh_token":"r","expires_at":1767225600.5}"#,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(r.expires_at, Some(at));
        assert!(!r.expiry_in_milliseconds);
        // Seconds stay seconds, however far ahead (up to the year 5000).
        let r = parse_import(
            br#"{"access_token":"a","expires_at":95617584000}"#,
            Path::new("x"),
        )
        .unwrap();
        assert!(!r.expiry_in_milliseconds);
        let err =
            parse_import(br#"{"accessToken":"a","expiresAt":"soon"}"#, Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("expiresAt"), "{err}");
    }
}
