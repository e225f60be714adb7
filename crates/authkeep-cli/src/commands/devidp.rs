//! `authkeep devidp`: run the development identity provider until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use authkeep_devidp::{ClientConfig, Config, DevIdp, Flavor};
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use jiff::SignedDuration;

use crate::exit::usage;
use crate::names::parse_duration;
use crate::printer;

/// `--flavor`, for `devidp` and `demo`: which real provider the development identity
/// provider answers like.
#[derive(clap::Args, Debug, Clone)]
pub struct FlavorArg {
    /// Answer refreshes as this provider does: its error codes and words, status
    /// codes, response fields, rotation and reuse grace period.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "standard",
        value_parser = PossibleValuesParser::new(Flavor::ALL.iter().map(|flavor| flavor.name()))
            .try_map(|name| name.parse::<Flavor>())
    )]
    pub flavor: Flavor,
}

/// Run the development identity provider: OpenID discovery, JWT access tokens,
/// refresh with rotation and reuse detection, introspection, userinfo, revocation,
/// admin calls and fault injection, answering as a real provider would with
/// `--flavor`. Loopback only; for tests and demos, never production. The first line
/// on stdout is the issuer URL.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (a loopback address; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8765")]
    addr: SocketAddr,
    #[command(flatten)]
    flavor: FlavorArg,
    /// Lifetime of access tokens [default: the flavor's usual one: 5m for standard and
    /// keycloak, 8h for github, 59m59s for entra and google, 1h for okta, 24h for auth0].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    access_ttl: Option<SignedDuration>,
    /// Lifetime of refresh tokens (default: no expiry, unless the flavor's always expire:
    /// after 184 days for github, 30m for a keycloak session without offline_access).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    refresh_ttl: Option<SignedDuration>,
    /// Keep refresh tokens across refreshes instead of rotating them.
    #[arg(long)]
    no_rotation: bool,
    /// Do not revoke a grant when a consumed refresh token is presented again.
    #[arg(long)]
    no_reuse_detection: bool,
    /// For how long the refresh token just rotated out may still be presented and is
    /// answered with new tokens [default: the flavor's: 30s for okta, none otherwise].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    reuse_grace: Option<SignedDuration>,
    /// Process concurrent refreshes of one refresh token in parallel with this
    /// storage latency, as providers with networked storage do (they can split a grant).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    parallel_latency: Option<SignedDuration>,
    /// Register a confidential client with this id (its secret from --client-secret-file).
    #[arg(long, value_name = "ID", requires = "client_secret_file")]
    confidential_client: Option<String>,
    /// File holding the confidential client's secret.
    #[arg(long, value_name = "PATH", requires = "confidential_client")]
    client_secret_file: Option<PathBuf>,
}

fn std_duration(d: SignedDuration) -> Duration {
    // parse_duration refuses negative durations.
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    if !args.addr.ip().is_loopback() {
        return Err(usage(format!(
            "--addr {}: the development identity provider listens on loopback only",
            args.addr
        )));
    }
    let mut clients = Vec::new();
    if let (Some(id), Some(path)) = (args.confidential_client, args.client_secret_file) {
        let secret = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the client secret file {}", path.display()))?;
        clients.push(ClientConfig::new(id, secret.trim_end_matches(['\r', '\n'])));
    }
    let flavor = args.flavor.flavor;
    let defaults = Config::for_flavor(flavor);
    let config = Config {
        access_ttl: args.access_ttl.map_or(defaults.access_ttl, std_duration),
        refresh_ttl: args.refresh_ttl.map(std_duration),
        rotate_refresh_tokens: !args.no_rotation,
        reuse_detection: !args.no_reuse_detection,
        reuse_grace: args.reuse_grace.map(std_duration),
        parallel_latency: args.parallel_latency.map(std_duration),
        clients,
        ..defaults
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let idp = DevIdp::start(args.addr, config)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let issuer = idp.issuer();
        printer::out(&issuer)?;
        crate::common::stderr_line(&format!(
            "authkeep devidp: development identity provider at {issuer}, answering as {flavor} (loopback only; never for production)\n\
             \x20 discovery        {issuer}/.well-known/openid-configuration\n\
             \x20 create a session curl -s -X POST {issuer}/admin/sessions -H 'content-type: application/json' -d '{{}}' \\\n\
             \x20                    | authkeep login --issuer {issuer} --client-id authkeep-demo --from-json -\n\
             \x20 counters         curl -s {issuer}/admin/counters\n\
             \x20 faults           curl -s -X POST {issuer}/admin/faults -H 'content-type: application/json' -d '{{\"kind\":{{\"kind\":\"status\",\"status\":503}}}}'\n\
             Press Ctrl-C to stop."
        ));
        tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
        idp.shutdown().await;
        Ok(())
    })
}
