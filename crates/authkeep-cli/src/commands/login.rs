//! `authkeep login`: store a session imported from a token response or record.
//!
//! Secrets are read from files, the environment or stdin, never from argv.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use authkeep::oauth::{check_endpoint, display_url};
use authkeep::{Client, ClientAuth, ClientSecret, Error, StoreError, TokenResponse};
use serde_json::Value;

use crate::common::instant;
use crate::config::{self, AuthMethod};
use crate::exit::{endpoint_usage, usage};
use crate::names::{ENV_CLIENT_SECRET, NetworkArgs, PolicyArgs, ProfileArg};
use crate::printer::{self, Level};

/// Store a session for a profile by importing an OAuth token response (RFC 6749
/// §5.1 JSON: access_token, token_type, expires_in, refresh_token, scope, id_token,
/// refresh_expires_in) or a token file another client wrote: a record carrying
/// expires_at (RFC 3339, or Unix seconds; milliseconds where it cannot be seconds),
/// camelCase as JavaScript apps keep it (accessToken, refreshToken, idToken,
/// expiresAt, tokenType), Go's oauth2.Token (expiry), or Python's Authlib
/// (expires_at in float seconds).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    profile: ProfileArg,
    /// The provider's issuer URL (https, or http on loopback).
    #[arg(long, value_name = "URL")]
    issuer: String,
    /// The OAuth client id.
    #[arg(long, value_name = "ID")]
    client_id: String,
    /// A file holding the client secret of a confidential client ("-" for stdin).
    /// The secret may also come from AUTHKEEP_CLIENT_SECRET; never from a flag value.
    #[arg(long, value_name = "PATH")]
    client_secret_file: Option<PathBuf>,
    /// How the client secret is presented to the token endpoint.
    #[arg(long, value_enum, default_value_t = AuthMethod::Basic)]
    client_auth: AuthMethod,
    /// Scope asked for (repeat for several).
    #[arg(long, value_name = "SCOPE")]
    scope: Vec<String>,
    /// The token endpoint, for providers without OpenID Connect discovery.
    #[arg(long, value_name = "URL")]
    token_endpoint: Option<String>,
    /// The JSON to import: a file, or "-" for stdin.
    #[arg(long, value_name = "FILE|-")]
    from_json: PathBuf,
    /// Print what was stored as JSON (never a token).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    network: NetworkArgs,
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    let settings = config::Settings::resolve(&args.profile, &PolicyArgs::default(), &args.network)?;
    let key = settings.key.clone();
    let insecure = args.network.insecure_allow_http;
    check_endpoint(&args.issuer, insecure).map_err(endpoint_usage)?;
    if let Some(endpoint) = &args.token_endpoint {
        check_endpoint(endpoint, insecure).map_err(endpoint_usage)?;
    }
    let secret = client_secret(args.client_secret_file.as_deref(), &args.from_json)?;
    let response = parse_import(&read_input(&args.from_json)?, &args.from_json)?;
    if response.expiry_in_milliseconds {
        printer::status(
            level,
            Level::Normal,
            &format!(
                "{key}: the expiry is a Unix time too large for seconds; read it as milliseconds"
            ),
        );
    }
    let mut client = Client::new(args.issuer, args.client_id);
    if let Some(secret) = secret {
        let auth = match args.client_auth {
            AuthMethod::Basic => ClientAuth::ClientSecretBasic,
            AuthMethod::Post => ClientAuth::ClientSecretPost,
        };
        client = client.with_secret(secret, auth);
    }
    if !args.scope.is_empty() {
        client = client.with_scope(args.scope.join(" "));
    }
    if let Some(endpoint) = args.token_endpoint {
        client = client.with_token_endpoint(endpoint);
    }
    let keeper = settings.keeper().build();
    let stored = crate::runtime()?
        .block_on(keeper.import_login(&key, client, response))
        .map_err(|e| match e {
            Error::Store(StoreError::Corrupt { .. }) => anyhow!(
                "{e}; run `authkeep logout --profile {key}` to move it aside, then log in again"
            ),
            other => other.into(),
        })?;
    let now = keeper.now();
    let record = &stored.record;
    let tokens = record.tokens.as_ref();
    let expires_at = tokens.and_then(|t| t.expires_at);
    let can_renew = record.can_renew();
    let issuer = record
        .client
        .as_ref()
        .map(|c| c.issuer.as_str())
        .unwrap_or_default();
    let has_access_token = tokens.is_some_and(|t| !t.access_token.is_empty());
    if args.json {
        printer::json(&serde_json::json!({
            "profile": key.as_str(),
            "issuer": display_url(issuer),
            "has_access_token": has_access_token,
            "expires_at": expires_at.filter(|_| has_access_token).map(instant),
            "can_renew": can_renew,
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
    printer::status(
        level,
        Level::Normal,
        &format!(
            "{key}: session stored for {}; {validity}",
            display_url(issuer)
        ),
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

fn client_secret(file: Option<&Path>, from_json: &Path) -> Result<Option<ClientSecret>> {
    let text = match file {
        Some(path) if path == Path::new("-") => {
            if from_json == Path::new("-") {
                return Err(usage(
                    "--client-secret-file - and --from-json - cannot both read stdin",
                ));
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the client secret from stdin")?;
            text
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the client secret file {}", path.display()))?,
        None => match std::env::var(ENV_CLIENT_SECRET) {
            Ok(text) => text,
            Err(_) => return Ok(None),
        },
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
