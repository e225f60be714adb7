//! `authkeep devidp`: run the development identity provider until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use authkeep_devidp::{ClientConfig, Config, DevIdp};
use jiff::SignedDuration;

use crate::exit::usage;
use crate::names::parse_duration;
use crate::printer;

/// Run the development identity provider: OpenID discovery, JWT access tokens,
/// refresh with rotation and reuse detection, introspection, userinfo, revocation,
/// admin calls and fault injection. Loopback only; for tests and demos, never
/// production. The first line on stdout is the issuer URL.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (a loopback address; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8765")]
    addr: SocketAddr,
    /// Lifetime of access tokens.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    access_ttl: SignedDuration,
    /// Lifetime of refresh tokens (default: no expiry).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    refresh_ttl: Option<SignedDuration>,
    /// Keep refresh tokens across refreshes instead of rotating them.
    #[arg(long)]
    no_rotation: bool,
    /// Do not revoke a grant when a consumed refresh token is presented again.
    #[arg(long)]
    no_reuse_detection: bool,
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
    let config = Config {
        access_ttl: std_duration(args.access_ttl),
        refresh_ttl: args.refresh_ttl.map(std_duration),
        rotate_refresh_tokens: !args.no_rotation,
        reuse_detection: !args.no_reuse_detection,
        parallel_latency: args.parallel_latency.map(std_duration),
        clients,
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let idp = DevIdp::start(args.addr, config)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let issuer = idp.issuer();
        printer::out(&issuer)?;
        crate::common::stderr_line(&format!(
            "authkeep devidp: development identity provider at {issuer} (loopback only; never for production)\n\
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
