//! A load generator for the agent's token API over its unix socket: `N`
//! connections with keep-alive, each asking `GET /v1/accounts/{id}/token`
//! for accounts taken in turn from a file of ids, for a number of seconds.
//! Prints one JSON object: requests, errors (any answer but 200, or a broken
//! connection), seconds, requests per second, and latency p50/p99/max in
//! milliseconds. Used by `scripts/bench-agent.sh`.
//!
//! ```text
//! token_load --socket PATH --ids FILE [--connections 32] [--seconds 10]
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

struct Options {
    socket: PathBuf,
    ids: Vec<String>,
    connections: usize,
    seconds: u64,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "token_load: {problem}\nusage: token_load --socket PATH --ids FILE [--connections N] [--seconds S]"
    );
    std::process::exit(2);
}

fn options() -> Options {
    let mut socket = None;
    let mut ids = None;
    let mut connections = 32;
    let mut seconds = 10;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            usage(&format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--ids" => ids = Some(PathBuf::from(value)),
            "--connections" => {
                connections = value
                    .parse()
                    .unwrap_or_else(|_| usage("--connections takes a number"));
            }
            "--seconds" => {
                seconds = value
                    .parse()
                    .unwrap_or_else(|_| usage("--seconds takes a number"));
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let socket = socket.unwrap_or_else(|| usage("--socket is required"));
    let file = ids.unwrap_or_else(|| usage("--ids is required"));
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| usage(&format!("cannot read {}: {e}", file.display())));
    let ids: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(percent_encode)
        .collect();
    if ids.is_empty() {
        usage("the ids file is empty");
    }
    Options {
        socket,
        ids,
        connections: connections.max(1),
        seconds: seconds.max(1),
    }
}

/// An account id as one path segment.
fn percent_encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What one connection did: each request's latency in microseconds, and errors.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
}

async fn connection(
    socket: PathBuf,
    ids: std::sync::Arc<Vec<String>>,
    start: usize,
    step: usize,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut next = start;
    while Instant::now() < until {
        let stream = match UnixStream::connect(&socket).await {
            Ok(stream) => stream,
            Err(_) => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            tally.errors += 1;
            continue;
        };
        let driver = tokio::spawn(conn);
        while Instant::now() < until {
            let id = &ids[next % ids.len()];
            next = next.wrapping_add(step);
            let Ok(request) = hyper::Request::get(format!("/v1/accounts/{id}/token"))
                .header(hyper::header::HOST, "agent")
                .body(Empty::<Bytes>::new())
            else {
                tally.errors += 1;
                continue;
            };
            let began = Instant::now();
            let answered = match sender.send_request(request).await {
                Ok(response) => {
                    let ok = response.status() == hyper::StatusCode::OK;
                    response.into_body().collect().await.is_ok() && ok
                }
                Err(_) => false,
            };
            let micros = u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX);
            if answered {
                tally.latencies.push(micros);
            } else {
                tally.errors += 1;
                if sender.ready().await.is_err() {
                    break;
                }
            }
        }
        driver.abort();
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("cannot start a runtime: {e}")));
    let ids = std::sync::Arc::new(options.ids);
    let began = Instant::now();
    let until = began + Duration::from_secs(options.seconds);
    let tallies = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..options.connections {
            tasks.spawn(connection(
                options.socket.clone(),
                std::sync::Arc::clone(&ids),
                n,
                options.connections,
                until,
            ));
        }
        let mut tallies = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(tally) => tallies.push(tally),
                Err(e) => usage(&format!("a connection task failed: {e}")),
            }
        }
        tallies
    });
    let seconds = began.elapsed().as_secs_f64();
    let mut latencies: Vec<u32> = tallies.iter().flat_map(|t| t.latencies.clone()).collect();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    latencies.sort_unstable();
    let requests = latencies.len();
    let line = format!(
        "{{\"requests\":{requests},\"errors\":{errors},\"seconds\":{seconds:.2},\"per_second\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        requests as f64 / seconds,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    // The one line of output, for the bench script (the print lint wants an
    // explicit write).
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        usage(&format!("cannot write the result: {e}"));
    }
}
