//! `authkeep request`: send an HTTP request with the session's access token and
//! print the answer. The token goes only to the URL's origin; redirects are
//! followed here, hop by hop, so that each hop is judged by the library's
//! 401 rule (`authkeep::resource`, docs/DESIGN.md §3): a rejection renews the
//! token and retries the hop once.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use authkeep::oauth::display_url;
use authkeep::resource::Verdict;
use authkeep::{FileStore, ResourceAccess, describe_http_error};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName};
use reqwest::header::{HeaderValue, LOCATION};
use reqwest::{Method, StatusCode, Url};

use crate::commands::token::status_lines;
use crate::config;
use crate::exit::{ResourceError, RetryLater, endpoint_usage, usage};
use crate::names::{NetworkArgs, PolicyArgs, ProfileArg};
use crate::printer::{self, Level};

/// What `authkeep request` does, for `--help`.
pub const ABOUT: &str = "Send an HTTP request with the session's access token and print the \
answer's body; if the server rejects the token, renew it and send the request once more.";

/// The rest of `--help`.
pub const AFTER_HELP: &str = "\
The token goes only to the URL's origin (scheme, host and port). Redirects are followed: \
within the origin with the token, to another origin without it. 301, 302 and 303 become \
GET without a body (HEAD stays HEAD); 307 and 308 keep the method and the body; at most 10.

A 401 from the origin (and a 403 with --refresh-on-403) renews the token: a refresh if the \
session still holds the rejected token, else the newer token another process stored, without \
a request to the provider. The request is then sent once more, never twice, and whatever \
that gets is the answer. The token is never printed. --connect-timeout applies to the server \
too; --timeout bounds the steps with the provider only.

Exit codes: 0 the final answer was 2xx or 3xx; 2 usage error (a bad URL or header, \
--data with --data-file); 3 login required (no session, or the rejected token cannot be \
renewed without one); 4 retry later (the provider or the server could not be reached, a \
refresh failed for now); 5 the server answered an error status after the one retry (its \
body is still printed); 130/143 stopped by SIGINT/SIGTERM (after any refresh's answer was \
saved).

Examples:
  authkeep request https://api.example.com/v1/me
  authkeep request -X PUT -H 'Content-Type: application/json' --data '{\"a\":1}' URL
  authkeep request --data-file - URL < body.json";

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 10;

/// The arguments of `authkeep request`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    profile: ProfileArg,
    /// The request method [default: GET, or POST with --data or --data-file]
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// A request header, 'Name: value' (repeatable); the Authorization header is authkeep's.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Send TEXT as the request body (Content-Type application/x-www-form-urlencoded
    /// unless -H sets one, as curl does).
    #[arg(long, value_name = "TEXT", conflicts_with = "data_file")]
    data: Option<String>,
    /// Send the content of PATH as the request body (- for stdin), as --data does.
    #[arg(long, value_name = "PATH")]
    data_file: Option<PathBuf>,
    /// Print the final answer's status line and headers before its body, as curl -i.
    #[arg(short = 'i', long)]
    include: bool,
    /// Treat a 403 from the URL's origin as a rejection of the token too, as a 401 is.
    #[arg(long)]
    refresh_on_403: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    network: NetworkArgs,
    /// The URL: https, or plain http on loopback (elsewhere only with --insecure-allow-http).
    #[arg(value_name = "URL")]
    url: String,
}

/// One request to send: the first hop, or a redirect's.
#[derive(Clone, Debug)]
struct Hop {
    method: Method,
    url: Url,
    /// The user's headers, without the token.
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

/// Runs the command.
pub fn run(args: Args, level: Level) -> Result<()> {
    let first = first_hop(&args)?;
    let settings = config::Settings::resolve(&args.profile, &args.policy, &args.network)?;
    let key = settings.key.clone();
    // One client for the provider and the server: one connection pool. It
    // follows no redirect: each hop is judged here.
    let client = settings
        .network
        .client_builder()
        .and_then(|builder| {
            builder
                .build()
                .map_err(|e| authkeep::TransportError::Setup(e.to_string()))
        })
        .map_err(|e| usage(e.to_string()))?;
    let keeper = settings
        .keeper()
        .http_client(client.clone())
        .on_event(status_lines(level))
        .build();
    let origin = first.url.origin().ascii_serialization();
    let mut access = ResourceAccess::new(keeper.clone(), key)
        .origin(&origin)
        .map_err(endpoint_usage)?;
    if args.refresh_on_403 {
        access = access.refresh_on_403(&origin).map_err(endpoint_usage)?;
    }
    crate::runtime()?.block_on(crate::interrupt::shielded(
        keeper.shield(),
        send(&client, &access, first, args.include),
    ))
}

/// Sends the request, following redirects and retrying once after a
/// rejection, and prints the final answer.
async fn send(
    client: &reqwest::Client,
    access: &ResourceAccess<FileStore>,
    mut hop: Hop,
    include: bool,
) -> Result<()> {
    let mut exchange = access.exchange();
    let mut redirects = 0;
    loop {
        let mut headers = hop.headers.clone();
        exchange.authorize(&hop.url, &mut headers).await?;
        let mut request = client
            .request(hop.method.clone(), hop.url.clone())
            .headers(headers);
        if let Some(body) = &hop.body {
            request = request.body(body.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| RetryLater(describe_http_error(&e)))?;
        match exchange.answered(&hop.url, response.status()).await {
            Verdict::Retry => continue,
            Verdict::NotRenewed(error) => {
                print(response, include).await?;
                return Err(error.into());
            }
            // `Keep`: the answer stands.
            _ => {}
        }
        let Some(next) = redirect(&hop, &response) else {
            let status = response.status();
            print(response, include).await?;
            if status.is_client_error() || status.is_server_error() {
                return Err(ResourceError(format!("{} answered {status}", shown(&hop.url))).into());
            }
            return Ok(());
        };
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            print(response, include).await?;
            return Err(ResourceError(format!(
                "more than {MAX_REDIRECTS} redirects, the last from {}",
                shown(&hop.url)
            ))
            .into());
        }
        hop = next;
    }
}

/// The hop a redirect asks for, if the answer is a redirect to an http(s) URL.
fn redirect(hop: &Hop, response: &reqwest::Response) -> Option<Hop> {
    let status = response.status();
    let keeps_method = match status {
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => true,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER => false,
        _ => return None,
    };
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    let url = hop.url.join(location).ok()?;
    if !matches!(url.scheme(), "https" | "http") {
        return None;
    }
    let mut next = Hop { url, ..hop.clone() };
    if !keeps_method {
        if next.method != Method::HEAD {
            next.method = Method::GET;
        }
        next.body = None;
        next.headers.remove(CONTENT_TYPE);
        next.headers.remove(CONTENT_LENGTH);
    }
    Some(next)
}

/// Prints an answer: with `include`, its status line and headers as curl -i
/// does, then its body as it is.
async fn print(mut response: reqwest::Response, include: bool) -> Result<()> {
    if include {
        let mut head = format!("{:?} {}\r\n", response.version(), response.status()).into_bytes();
        for (name, value) in response.headers() {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        printer::bytes(&head)?;
    }
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RetryLater(describe_http_error(&e)))?
    {
        printer::bytes(&chunk)?;
    }
    Ok(())
}

/// The first hop, from the command line; every mistake in it is a usage error.
fn first_hop(args: &Args) -> Result<Hop> {
    let url = Url::parse(&args.url)
        .map_err(|e| usage(format!("invalid URL {:?}: {e}", display_url(&args.url))))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(usage(format!(
            "invalid URL {:?}: only https and http are supported",
            shown(&url)
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(usage(format!(
            "the URL {} carries user information; the session's token is what authenticates",
            shown(&url)
        )));
    }
    let mut headers = HeaderMap::new();
    for header in &args.headers {
        let (name, value) = parse_header(header)?;
        headers.append(name, value);
    }
    let body = match (&args.data, &args.data_file) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        (None, Some(path)) => Some(read_data(path)?),
        (None, None) => None,
    };
    if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    let method = match &args.method {
        Some(method) => Method::from_bytes(method.as_bytes())
            .map_err(|_| usage("invalid method given with -X"))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    Ok(Hop {
        method,
        url,
        headers,
        body,
    })
}

/// `Name: value`, as curl takes it. Values are never echoed: they may be secrets.
fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue)> {
    let malformed = || usage("invalid header given with -H: write it as 'Name: value'");
    let (name, value) = text.split_once(':').ok_or_else(malformed)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| malformed())?;
    if name == AUTHORIZATION {
        return Err(usage(
            "the Authorization header is authkeep's: it carries the session's token",
        ));
    }
    let value = HeaderValue::from_str(value.trim()).map_err(|_| {
        usage(format!(
            "invalid header {name} given with -H: its value holds characters a header cannot carry"
        ))
    })?;
    Ok((name, value))
}

fn read_data(path: &std::path::Path) -> Result<Vec<u8>> {
    if path == std::path::Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("cannot read the request body from stdin")?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
}

/// A URL as shown in messages: no user information, no query.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    display_url(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_as_curl_takes_them() {
        let (name, value) = parse_header("X-Trace:  abc def ").unwrap();
        assert_eq!(name, "x-trace");
        assert_eq!(value, "abc def");
        let (_, value) = parse_header("Accept:application/json").unwrap();
        assert_eq!(value, "application/json");
        for bad in ["no colon", ": value", "Bad Name: v", "X: a\u{7f}secret"] {
            let error = parse_header(bad).unwrap_err().to_string();
            assert!(!error.contains("secret"), "{error}");
        }
        let error = parse_header("authorization: Bearer x").unwrap_err();
        assert!(error.to_string().contains("Authorization"), "{error}");
    }
}
