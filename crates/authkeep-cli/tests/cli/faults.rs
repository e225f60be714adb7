//! Refresh failures end to end (docs/DESIGN.md §1.5, §6): every fault the development
//! provider can inject, against a token far from expiry, inside its refresh window
//! and expired, and what the user is left with: the class recorded, the exit code,
//! the one stderr line, stdout, and the session record afterwards. Then the
//! provider going down and coming back, a grant revoked at the provider, back-off
//! under a failing provider, `--force-refresh`, clock skew and verbosity.
//!
//! The fault matrix as observed is a snapshot (`snapshots/fault_matrix.snap`):
//! a change in what any fault leaves the user with shows as a diff.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use authkeep::{Demand, FileStore, Keeper, ManualClock, SessionKey, SystemClock};
use authkeep_devidp::{Config, FaultKind, Faults};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::harness::{Home, Idp, Run, text};

const PROFILE: &str = "default";
const LOGIN_HINT: &str = "log in again with `authkeep login --profile default`";

/// Where the stored token stands when `authkeep token` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// 3000 s of 3600 s left: outside the refresh window.
    Far,
    /// 250 s of 3600 s left: inside the 300 s window.
    Window,
    /// Expired 10 s ago.
    Expired,
}

impl State {
    const ALL: [State; 3] = [State::Far, State::Window, State::Expired];
    const LEFT_IN_WINDOW: i64 = 250;

    fn name(self) -> &'static str {
        match self {
            State::Far => "far from expiry",
            State::Window => "inside the window",
            State::Expired => "expired",
        }
    }

    /// `(expires_in, lifetime)` for [`Home::age_record`].
    fn age(self) -> (i64, i64) {
        match self {
            State::Far => (3000, 3600),
            State::Window => (Self::LEFT_IN_WINDOW, 3600),
            State::Expired => (-10, 3600),
        }
    }
}

/// Where the next attempt is expected after a failure inside the window.
#[derive(Clone, Copy, Debug)]
enum BackOff {
    /// 30 s with ±10 % jitter.
    Jitter,
    /// The provider's `Retry-After`, this many seconds after the failure.
    RetryAfter(i64),
}

/// One injected fault and the class it must be given.
struct Fault {
    name: &'static str,
    /// Built right before the call, so that an HTTP-date is current.
    kind: fn() -> FaultKind,
    class: &'static str,
    /// Words the failure line must contain (what the provider did).
    detail: &'static str,
    args: &'static [&'static str],
    back_off: BackOff,
}

fn status(status: u16, retry_after: Option<String>, body: Option<&str>) -> FaultKind {
    FaultKind::Status {
        status,
        retry_after,
        body: body.map(str::to_owned),
    }
}

fn oauth(status: u16, error: &str, description: Option<&str>) -> FaultKind {
    FaultKind::OAuthError {
        status,
        error: error.to_owned(),
        description: description.map(str::to_owned),
    }
}

/// `Retry-After` as an HTTP-date this many seconds from now.
fn http_date_in(secs: i64) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&(Timestamp::now() + SignedDuration::from_secs(secs)))
        .unwrap()
}

const RETRY_AFTER_SECS: i64 = 120;
const RETRY_AFTER_DATE_SECS: i64 = 200;

fn faults() -> Vec<Fault> {
    let fault = |name, kind, class, detail| Fault {
        name,
        kind,
        class,
        detail,
        args: &[],
        back_off: BackOff::Jitter,
    };
    vec![
        fault(
            "503, no Retry-After",
            || status(503, None, None),
            "transient",
            "temporarily_unavailable (HTTP 503)",
        ),
        Fault {
            back_off: BackOff::RetryAfter(RETRY_AFTER_SECS),
            ..fault(
                "503, Retry-After: 120",
                || status(503, Some(RETRY_AFTER_SECS.to_string()), None),
                "transient",
                "temporarily_unavailable (HTTP 503)",
            )
        },
        fault(
            "500",
            || status(500, None, None),
            "transient",
            "server_error (HTTP 500)",
        ),
        Fault {
            back_off: BackOff::RetryAfter(RETRY_AFTER_DATE_SECS),
            ..fault(
                "429, Retry-After: HTTP-date in 200 s",
                || status(429, Some(http_date_in(RETRY_AFTER_DATE_SECS)), None),
                "transient",
                "HTTP 429: empty answer",
            )
        },
        fault(
            "502 HTML page",
            || FaultKind::Html { status: 502 },
            "transient",
            "HTTP 502: an HTML page instead of a token response",
        ),
        fault(
            "200 garbage",
            || FaultKind::Garbage,
            "transient",
            "HTTP 200: an answer that is not a token response",
        ),
        fault(
            "200 oversized (1.5 MiB > 1 MiB cap)",
            || FaultKind::Oversized { bytes: 1_572_864 },
            "transient",
            "the answer exceeded 1048576 bytes",
        ),
        fault(
            "200 empty body",
            || status(200, None, None),
            "transient",
            "HTTP 200: empty answer",
        ),
        fault(
            "dropped connection",
            || FaultKind::DropConnection,
            "transient",
            "connection closed before message completed",
        ),
        Fault {
            args: &["--timeout", "1s"],
            ..fault(
                "hang (--timeout 1s)",
                || FaultKind::Hang,
                "transient",
                "no answer within 1s (--timeout)",
            )
        },
        fault(
            "200 {\"error\":\"invalid_grant\"}",
            || oauth(200, "invalid_grant", None),
            "session_dead",
            "invalid_grant (HTTP 200)",
        ),
        fault(
            "400 invalid_grant",
            || oauth(400, "invalid_grant", Some("Token is not active")),
            "session_dead",
            "invalid_grant (HTTP 400): Token is not active",
        ),
        fault(
            "401 invalid_grant",
            || oauth(401, "invalid_grant", None),
            "session_dead",
            "invalid_grant (HTTP 401)",
        ),
        fault(
            "400 invalid_grant + suberror",
            || {
                status(
                    400,
                    None,
                    Some(
                        r#"{"error":"invalid_grant","suberror":"basic_action","error_description":"User action required"}"#,
                    ),
                )
            },
            "interaction_required",
            "invalid_grant (HTTP 400): User action required",
        ),
        fault(
            "400 invalid_grant, AADSTS50076 multi-factor",
            || {
                oauth(
                    400,
                    "invalid_grant",
                    Some(
                        "AADSTS50076: you must use multi-factor authentication to access this resource",
                    ),
                )
            },
            "interaction_required",
            "invalid_grant (HTTP 400): AADSTS50076",
        ),
        fault(
            "400 interaction_required",
            || oauth(400, "interaction_required", None),
            "interaction_required",
            "interaction_required (HTTP 400)",
        ),
        fault(
            "401 invalid_client",
            || oauth(401, "invalid_client", Some("Client authentication failed")),
            "misconfiguration",
            "invalid_client (HTTP 401): Client authentication failed",
        ),
        fault(
            "400 invalid_scope",
            || oauth(400, "invalid_scope", None),
            "misconfiguration",
            "invalid_scope (HTTP 400)",
        ),
        fault(
            "400 form-encoded invalid_grant",
            || FaultKind::FormEncodedError {
                status: 400,
                error: "invalid_grant".to_owned(),
            },
            "session_dead",
            "invalid_grant (HTTP 400)",
        ),
        fault(
            "503 temporarily_unavailable + description",
            || oauth(503, "temporarily_unavailable", Some("down for maintenance")),
            "transient",
            "temporarily_unavailable (HTTP 503): down for maintenance",
        ),
    ]
}

/// What docs/DESIGN.md §1.5 and §6 say the user is left with.
struct Expected {
    code: i32,
    prints_stored_token: bool,
    /// Every stderr line (there is exactly one, or none) contains each of these.
    stderr: Vec<String>,
    keeps_tokens: bool,
}

fn expected(class: &str, state: State) -> Expected {
    let warning = |class: &str| {
        vec![
            format!("authkeep: {PROFILE}: warning: refresh failed ({class})"),
            "serving the stored token, still valid until".to_owned(),
        ]
    };
    let error =
        |first: &str, then: &str| vec![format!("authkeep: error: {first}"), then.to_owned()];
    let (code, prints_stored_token, stderr) = match (state, class) {
        (State::Far, _) => (0, true, vec![]),
        (_, "session_dead") => (
            3,
            false,
            error(
                "the session for profile default has ended (the provider rejected its refresh token",
                LOGIN_HINT,
            ),
        ),
        (State::Window, class) => (0, true, warning(class)),
        (State::Expired, "transient") => (
            4,
            false,
            error(
                "cannot refresh profile default now:",
                "the session is kept, try again later",
            ),
        ),
        (State::Expired, "interaction_required") => (
            3,
            false,
            error(
                "the provider requires you to sign in again for profile default",
                LOGIN_HINT,
            ),
        ),
        (State::Expired, "misconfiguration") => (
            2,
            false,
            error(
                "cannot refresh profile default:",
                "check the client configuration",
            ),
        ),
        (state, class) => panic!("no expectation for {class} {state:?}"),
    };
    Expected {
        code,
        prints_stored_token,
        stderr,
        keeps_tokens: class != "session_dead",
    }
}

/// One call of `authkeep token` as seen from outside.
struct Observed {
    fault: &'static str,
    state: State,
    class: String,
    code: i32,
    stdout: &'static str,
    stderr: Vec<String>,
    record: String,
    requests: u64,
}

fn seconds_between(from: &Value, to: &Value) -> Option<i64> {
    let from: Timestamp = from.as_str()?.parse().ok()?;
    let to: Timestamp = to.as_str()?.parse().ok()?;
    Some(to.as_second() - from.as_second())
}

/// Runs one fault against one state; returns what was observed and every way it
/// differs from what is expected.
fn run_case(idp: &Idp, fault: &Fault, state: State) -> (Observed, Vec<String>) {
    let home = Home::new();
    let session = idp.session();
    home.login(PROFILE, idp.issuer(), &session).ok();
    let (expires_in, lifetime) = state.age();
    home.age_record(PROFILE, expires_in, lifetime);
    let before = home.record(PROFILE);
    let access = text(&session, "access_token");
    let refresh = text(&session, "refresh_token");
    let requests_before = idp.refreshes();

    idp.fail_with((fault.kind)());
    let mut args = vec!["token"];
    args.extend(fault.args);
    let run = home.run(&args);
    idp.clear_faults();

    let after = home.record(PROFILE);
    let health = &after["health"];
    let error = &health["last_error"];
    let class = error["class"].as_str().unwrap_or("-").to_owned();
    let stdout = match run.stdout().trim_end() {
        "" => "-",
        out if out == access => "stored token",
        _ => "another token",
    };
    let next_attempt = seconds_between(&error["at"], &health["next_attempt_at"]);
    let record = if after == before {
        "unchanged".to_owned()
    } else if after.get("refresh_token").is_none() && after.get("access_token").is_none() {
        format!("tokens removed, {class} recorded")
    } else {
        let kept = if after["refresh_token"] == before["refresh_token"]
            && after["access_token"] == before["access_token"]
        {
            "tokens kept"
        } else {
            "tokens changed"
        };
        // The exact delay (jittered, or counted from a second boundary) is
        // checked below; the table says which rule set it.
        let next = match (state, next_attempt, fault.back_off) {
            (State::Expired, _, _) if health["next_attempt_at"] == after["expires_at"] => {
                "next attempt: at expiry".to_owned()
            }
            (_, Some(_), BackOff::Jitter) => "next attempt: after the back-off".to_owned(),
            (_, Some(_), BackOff::RetryAfter(secs)) => {
                format!("next attempt: after Retry-After ({secs}s)")
            }
            (_, None, _) => "no next attempt".to_owned(),
        };
        format!("{kept}, {class} recorded, {next}")
    };
    let observed = Observed {
        fault: fault.name,
        state,
        class: if state == State::Far {
            "(no attempt)".to_owned()
        } else {
            class.clone()
        },
        code: run.code(),
        stdout,
        stderr: run.stderr_lines(),
        record,
        requests: idp.refreshes() - requests_before,
    };

    let want = expected(fault.class, state);
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(format!("{} / {}: {what}", fault.name, state.name()));
        }
    };
    check(
        observed.code == want.code,
        format!("exit {} (want {})", observed.code, want.code),
    );
    check(
        (stdout == "stored token") == want.prints_stored_token && stdout != "another token",
        format!("stdout {stdout}"),
    );
    let lines = &observed.stderr;
    if want.stderr.is_empty() {
        check(lines.is_empty(), format!("stderr {lines:?} (want nothing)"));
    } else {
        check(
            lines.len() == 1,
            format!("{} stderr lines: {lines:?}", lines.len()),
        );
        let all = lines.join("\n");
        for needle in want.stderr.iter().map(String::as_str).chain([fault.detail]) {
            check(
                all.contains(needle),
                format!("stderr {all:?} lacks {needle:?}"),
            );
        }
    }
    for (name, secret) in [("access", &access), ("refresh", &refresh)] {
        check(
            !run.stderr().contains(secret.as_str()),
            format!("the {name} token on stderr"),
        );
    }
    check(
        !run.stdout().contains(refresh.as_str()),
        "the refresh token on stdout".into(),
    );
    let wanted_requests = u64::from(state != State::Far);
    check(
        observed.requests == wanted_requests,
        format!(
            "{} refresh requests (want {wanted_requests})",
            observed.requests
        ),
    );

    if state == State::Far {
        check(after == before, "the record changed".into());
        return (observed, problems);
    }
    check(class == fault.class, format!("class {class} recorded"));
    check(
        after["issuer"] == idp.issuer() && after["client_id"] == authkeep_devidp::DEFAULT_CLIENT_ID,
        "issuer or client lost".into(),
    );
    if want.keeps_tokens {
        check(
            after["refresh_token"] == before["refresh_token"]
                && after["access_token"] == before["access_token"],
            "tokens not kept".into(),
        );
        check(
            health["consecutive_failures"] == 1,
            format!("consecutive_failures {}", health["consecutive_failures"]),
        );
        let range = match (state, fault.back_off) {
            (State::Window, BackOff::Jitter) => 27..=33,
            (State::Window, BackOff::RetryAfter(secs)) => secs - 3..=secs + 1,
            _ => i64::MIN..=i64::MAX,
        };
        check(
            next_attempt.is_some_and(|s| range.contains(&s)),
            format!("next attempt {next_attempt:?}s after the failure, want {range:?}"),
        );
        check(
            seconds_between(&health["next_attempt_at"], &after["expires_at"])
                .is_some_and(|s| s >= 0),
            "next attempt past expiry".into(),
        );
    } else {
        check(
            after.get("access_token").is_none() && after.get("refresh_token").is_none(),
            "tokens not removed".into(),
        );
    }
    let shown = home.status_of(PROFILE);
    check(
        shown["last_error"]["class"] == fault.class,
        format!("status shows {}", shown["last_error"]),
    );
    // A dead session needs a login; so does one whose provider asked for
    // interaction once its token has expired.
    let needs_login = fault.class == "session_dead"
        || (fault.class == "interaction_required" && state == State::Expired);
    check(
        shown["needs_login"] == needs_login,
        format!("status needs_login {}", shown["needs_login"]),
    );
    (observed, problems)
}

/// The table of what was observed, one row per case. Times, ports, paths and
/// durations are filtered out by the snapshot's settings ([`stable`]); how
/// long each case took is left out, since it differs on every run.
fn matrix(rows: &[Observed]) -> String {
    let mut md = String::from(
        "| fault | token | class | exit | stdout | stderr | record afterwards | requests |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let stderr = if row.stderr.is_empty() {
            "-".to_owned()
        } else {
            row.stderr.join("<br>")
        };
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.fault.replace('|', "\\|"),
            row.state.name(),
            row.class,
            row.code,
            row.stdout,
            stderr.replace('|', "\\|"),
            row.record,
            row.requests,
        )
        // Writing to a String cannot fail.
        .expect("a table row");
    }
    md
}

/// Snapshot settings that make a run's output read the same every run:
/// instants, loopback ports, temporary paths, UUIDs (trace ids) and remaining
/// times replaced.
pub fn stable() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    for (pattern, replacement) in [
        (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}Z", "[time]"),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[uuid]",
        ),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
        (r"/tmp/[^\s;:)`]+", "[path]"),
        (
            r"\((?:in )?-?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?: left)?\)",
            "([duration])",
        ),
    ] {
        settings.add_filter(pattern, replacement);
    }
    settings
}

#[test]
fn fault_matrix() {
    let idp = Idp::start(Config::default());
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for fault in faults() {
        for state in State::ALL {
            let (observed, wrong) = run_case(&idp, &fault, state);
            rows.push(observed);
            problems.extend(wrong);
        }
    }
    assert_eq!(rows.len(), 60);
    stable().bind(|| insta::assert_snapshot!("fault_matrix", matrix(&rows)));
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A token inside the window, for `profile`, from a new session.
fn session_in_window(idp: &Idp, home: &Home, profile: &str) -> Value {
    let session = idp.session();
    home.login(profile, idp.issuer(), &session).ok();
    home.forget_discovery();
    home.age_record(profile, State::LEFT_IN_WINDOW, 3600);
    session
}

/// Asserts that two tokens are the same (or differ), without printing either.
fn same_token(actual: &str, expected: &str, same: bool, what: &str) {
    assert!(
        (actual == expected) == same && !actual.is_empty(),
        "{what}: the token {} (never printed)",
        if same { "differs" } else { "is the same" }
    );
}

fn one_line(run: &Run) -> String {
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

#[test]
fn timeout_bounds_discovery_and_request_together() {
    let idp = Idp::start(Config::default());
    // Each of discovery and the token request takes 0.7 s: each alone is within
    // --timeout 1s, both together are not.
    idp.set_faults(Faults {
        latency_ms: 700,
        include_discovery: true,
        ..Faults::default()
    });
    for (state, code) in [(State::Window, 0), (State::Expired, 4)] {
        let home = Home::new();
        let session = session_in_window(&idp, &home, PROFILE);
        let (expires_in, lifetime) = state.age();
        home.age_record(PROFILE, expires_in, lifetime);
        let (run, elapsed) = home.run_timed(&["token", "--timeout", "1s"]);
        eprintln!(
            "0.7 s discovery + 0.7 s request, --timeout 1s, {state:?}: exit {} after {elapsed:?}",
            run.code()
        );
        assert_eq!(run.code(), code, "{}", run.stderr());
        assert!(
            (Duration::from_millis(950)..Duration::from_secs(15)).contains(&elapsed),
            "{state:?} took {elapsed:?}"
        );
        assert!(
            one_line(&run).contains("no answer within 1s (--timeout)"),
            "{}",
            run.stderr()
        );
        if code == 0 {
            same_token(
                run.stdout().trim_end(),
                &text(&session, "access_token"),
                true,
                "served",
            );
        }
        same_token(
            &text(&home.record(PROFILE), "refresh_token"),
            &text(&session, "refresh_token"),
            true,
            "refresh token kept",
        );
    }
}

#[test]
fn provider_down_then_back() {
    let mut idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    home.login(PROFILE, idp.issuer(), &session).ok();
    home.age_record(PROFILE, -10, 3600);
    // Far below the --timeout given, far above what a loaded machine needs.
    let bound = Duration::from_secs(20);

    // Down: every connection dropped, then every request hanging.
    idp.fail_with(FaultKind::DropConnection);
    let (run, elapsed) = home.run_timed(&["token", "--timeout", "60s"]);
    eprintln!(
        "dropped connection, expired token: exit {} after {elapsed:?}",
        run.code()
    );
    assert_eq!(run.code(), 4, "{}", run.stderr());
    assert!(elapsed < bound, "dropped connections took {elapsed:?}");
    assert_eq!(run.stdout(), "");
    assert!(
        one_line(&run).contains("try again later"),
        "{}",
        run.stderr()
    );
    idp.fail_with(FaultKind::Hang);
    let (run, elapsed) = home.run_timed(&["token", "--timeout", "1s"]);
    eprintln!(
        "hanging provider, --timeout 1s, expired token: exit {} after {elapsed:?}",
        run.code()
    );
    assert_eq!(run.code(), 4, "{}", run.stderr());
    assert!(elapsed < Duration::from_secs(15), "a hang took {elapsed:?}");
    let record = home.record(PROFILE);
    same_token(
        &text(&record, "refresh_token"),
        &text(&session, "refresh_token"),
        true,
        "refresh token kept",
    );
    assert_eq!(record["health"]["consecutive_failures"], 2);
    assert_eq!(idp.counters().outcome("refresh_token", "fault"), 2);

    // Back: the next call refreshes, and the failures are forgotten.
    idp.clear_faults();
    let token = home.run(&["token"]).ok();
    same_token(&token, &text(&session, "access_token"), false, "refreshed");
    assert!(idp.is_active(&token));
    let record = home.record(PROFILE);
    let health = &record["health"];
    assert!(health.get("last_error").is_none(), "{health}");
    assert_eq!(health["consecutive_failures"], 0);
    assert_eq!(idp.counters().outcome("refresh_token", "ok"), 1);
    let rotated = text(&record, "refresh_token");

    // Stopped: connection refused, well within the time-out, nothing lost.
    let stranger = Home::new();
    stranger.login(PROFILE, idp.issuer(), &idp.session()).ok();
    stranger.forget_discovery();
    stranger.age_record(PROFILE, -10, 3600);
    let in_window = Home::new();
    let window_session = session_in_window(&idp, &in_window, PROFILE);
    idp.stop();
    home.age_record(PROFILE, -10, 3600);
    let (run, elapsed) = home.run_timed(&["token", "--timeout", "60s"]);
    eprintln!(
        "stopped provider, --timeout 60s, expired token: exit {} after {elapsed:?}",
        run.code()
    );
    assert_eq!(run.code(), 4, "{}", run.stderr());
    assert!(elapsed < bound, "a stopped provider took {elapsed:?}");
    assert!(
        one_line(&run).contains("try again later"),
        "{}",
        run.stderr()
    );
    same_token(
        &text(&home.record(PROFILE), "refresh_token"),
        &rotated,
        true,
        "rotated refresh token kept",
    );
    // Without cached discovery, the discovery request is what fails.
    let (run, elapsed) = stranger.run_timed(&["token", "--timeout", "60s"]);
    eprintln!(
        "stopped provider, no cached discovery: exit {} after {elapsed:?}",
        run.code()
    );
    assert_eq!(run.code(), 4, "{}", run.stderr());
    assert!(elapsed < bound, "discovery took {elapsed:?}");
    assert!(one_line(&run).contains("discovery"), "{}", run.stderr());
    // A token still valid is served, with a warning.
    let run = in_window.run(&["token", "--timeout", "10s"]);
    same_token(
        &run.ok(),
        &text(&window_session, "access_token"),
        true,
        "served",
    );
    assert!(one_line(&run).contains("warning"), "{}", run.stderr());
}

#[test]
fn a_revoked_grant_ends_only_its_session() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let gone = idp.session();
    home.login("gone", idp.issuer(), &gone).ok();
    home.age_record("gone", -10, 3600);
    let gone_in_window = session_in_window(&idp, &home, "gone-window");
    let other = idp.session();
    home.login("other", idp.issuer(), &other).ok();
    let other_bytes = std::fs::read(home.record_path("other")).unwrap();
    assert!(idp.revoke_grant_of(&text(&gone, "refresh_token")));
    assert!(idp.revoke_grant_of(&text(&gone_in_window, "access_token")));

    for profile in ["gone", "gone-window"] {
        let run = home.run(&["token", "--profile", profile]);
        assert_eq!(run.code(), 3, "{}", run.stderr());
        assert_eq!(run.stdout(), "");
        let line = one_line(&run);
        assert!(
            line.contains(&format!("the session for profile {profile} has ended"))
                && line.contains(&format!("`authkeep login --profile {profile}`")),
            "{line}"
        );
        let record = home.record(profile);
        assert_eq!(record["issuer"], idp.issuer());
        assert_eq!(record["client_id"], authkeep_devidp::DEFAULT_CLIENT_ID);
        for field in ["access_token", "refresh_token", "id_token"] {
            assert!(record.get(field).is_none(), "{profile}: {field} kept");
        }
    }
    assert_eq!(idp.counters().outcome("refresh_token", "invalid_grant"), 2);

    // An ended session says so again without asking the provider.
    let again = home.run(&["token", "--profile", "gone"]);
    assert_eq!(again.code(), 3);
    assert!(one_line(&again).contains("has ended"), "{}", again.stderr());
    assert_eq!(idp.refreshes(), 2);

    let human = home.run(&["status"]).ok();
    let line = |p: &str| {
        human
            .lines()
            .find(|l| l.starts_with(&format!("{p}: ")))
            .unwrap_or_else(|| panic!("no {p} in {human}"))
            .to_owned()
    };
    assert!(
        line("gone").starts_with("gone: ended")
            && line("gone").contains("last error session_dead")
            && line("gone").contains("log in again with `authkeep login --profile gone`"),
        "{human}"
    );
    assert!(line("other").starts_with("other: valid"), "{human}");
    assert!(!line("other").contains("log in"), "{human}");
    let json: Value = serde_json::from_str(&home.run(&["status", "--json"]).ok()).unwrap();
    let row = |p: &str| {
        json["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["profile"] == p)
            .unwrap()
            .clone()
    };
    for profile in ["gone", "gone-window"] {
        assert_eq!(row(profile)["state"], "ended");
        assert_eq!(row(profile)["needs_login"], true);
        assert_eq!(row(profile)["last_error"]["class"], "session_dead");
    }
    assert_eq!(row("other")["state"], "valid");
    assert_eq!(row("other")["needs_login"], false);
    let one = home.run(&["status", "--profile", "gone"]);
    assert_eq!(one.code(), 3, "{}", one.stderr());
    assert!(one.stdout().starts_with("gone: ended"), "{}", one.stdout());

    // Nothing else was touched.
    assert_eq!(
        std::fs::read(home.record_path("other")).unwrap(),
        other_bytes
    );
    same_token(
        &home.run(&["token", "--profile", "other"]).ok(),
        &text(&other, "access_token"),
        true,
        "other profile",
    );
    assert_eq!(idp.refreshes(), 2);
}

#[test]
fn fifty_calls_against_a_failing_provider_are_held_back() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = session_in_window(&idp, &home, PROFILE);
    let stored = text(&session, "access_token");
    idp.fail_with(status(503, None, None));
    let mut lines = Vec::new();
    for _ in 0..50 {
        let run = home.run(&["token"]);
        same_token(&run.ok(), &stored, true, "served while failing");
        lines.push(one_line(&run));
    }
    let requests = idp.refreshes();
    eprintln!(
        "50 calls inside the window against a provider answering 503: {requests} refresh requests"
    );
    assert!(requests <= 2, "{requests} requests");
    assert!(
        lines[0].contains("warning: refresh failed (transient)"),
        "{}",
        lines[0]
    );
    for line in &lines[1..] {
        assert!(
            line.contains("a refresh is due but the last one failed; next attempt after"),
            "{line}"
        );
    }
    let human = home.run(&["status"]).ok();
    assert!(
        human.contains("last error transient at") && human.contains("next refresh attempt after"),
        "{human}"
    );

    // The wait grows with each failure.
    let first = home.record(PROFILE)["health"].clone();
    home.end_back_off(PROFILE);
    same_token(
        &home.run(&["token"]).ok(),
        &stored,
        true,
        "served after a second failure",
    );
    assert_eq!(idp.refreshes(), requests + 1);
    let health = home.record(PROFILE)["health"].clone();
    assert_eq!(
        health["consecutive_failures"],
        first["consecutive_failures"].as_u64().unwrap() + 1
    );
    let wait = seconds_between(&health["last_error"]["at"], &health["next_attempt_at"]).unwrap();
    assert!((54..=66).contains(&wait), "second wait {wait}s");

    // A success clears it.
    idp.clear_faults();
    home.end_back_off(PROFILE);
    same_token(
        &home.run(&["token"]).ok(),
        &stored,
        false,
        "refreshed once back",
    );
    let health = home.record(PROFILE)["health"].clone();
    assert!(
        health.get("last_error").is_none() && health.get("next_attempt_at").is_none(),
        "{health}"
    );
    assert_eq!(health["consecutive_failures"], 0);

    // So does a new login.
    idp.fail_with(status(503, None, None));
    home.age_record(PROFILE, State::LEFT_IN_WINDOW, 3600);
    home.run(&["token"]).ok();
    assert_eq!(home.record(PROFILE)["health"]["consecutive_failures"], 1);
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    let health = home.record(PROFILE)["health"].clone();
    assert!(
        health.get("last_error").is_none() && health.get("next_attempt_at").is_none(),
        "{health}"
    );
}

#[test]
fn force_refresh_refreshes_once_and_shares_a_fresh_refresh() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    home.login(PROFILE, idp.issuer(), &session).ok();

    let forced = home.run(&["token", "--force-refresh"]).ok();
    same_token(&forced, &text(&session, "access_token"), false, "forced");
    assert_eq!(idp.refreshes(), 1);

    // Another process right after: the refresh made moments ago is the answer.
    let run = home.run(&["-v", "token", "--force-refresh"]);
    same_token(&run.ok(), &forced, true, "forced moments after a refresh");
    assert_eq!(idp.refreshes(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("refreshed the session moments ago"),
        "{}",
        run.stderr()
    );

    // Once that refresh is older than a few seconds, forcing refreshes again.
    home.age_obtained(PROFILE, 11);
    let again = home.run(&["token", "--force-refresh"]).ok();
    same_token(&again, &forced, false, "forced once the refresh is older");
    assert_eq!(idp.refreshes(), 2);

    // Four processes forcing at once, all having read the record before any of
    // them could refresh: one refresh, one token.
    home.age_obtained(PROFILE, 11);
    let lock = home.hold_lock(PROFILE);
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut child = home
                .command(&["-v", "token", "--force-refresh"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stderr = BufReader::new(child.stderr.take().unwrap());
            let mut first = String::new();
            stderr.read_line(&mut first).unwrap();
            assert!(first.contains("waiting for it"), "{first}");
            (child, stderr)
        })
        .collect();
    drop(lock);
    let tokens: Vec<String> = children
        .into_iter()
        .map(|(child, mut stderr)| {
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{rest}");
            String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
        })
        .collect();
    assert_eq!(idp.refreshes(), 3);
    for token in &tokens {
        same_token(token, &tokens[0], true, "concurrent forced");
    }
    same_token(&tokens[0], &again, false, "concurrent forced");
    same_token(
        &text(&home.record(PROFILE), "access_token"),
        &tokens[0],
        true,
        "stored",
    );
}

#[test]
fn clock_skew_from_the_date_header_is_recorded() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SessionKey::new(PROFILE).unwrap();
    let force = Demand::new().force();
    let refresh_with = |clock: Arc<dyn authkeep::Clock>| {
        let keeper = Keeper::builder(FileStore::new(home.path().join("sessions")))
            .clock(clock)
            .build();
        let served = runtime.block_on(keeper.token(&key, force)).unwrap();
        assert!(served.refreshed);
    };

    // The dev provider's Date header is its real clock; ours is five minutes slow.
    refresh_with(Arc::new(ManualClock::new(
        Timestamp::now() - SignedDuration::from_mins(5),
    )));
    let skew = home.record(PROFILE)["clock_skew_secs"].as_i64();
    assert!(skew.is_some_and(|s| (298..=302).contains(&s)), "{skew:?}");

    // Within a minute of each other: nothing recorded, the old value dropped.
    refresh_with(Arc::new(SystemClock));
    assert_eq!(home.record(PROFILE).get("clock_skew_secs"), None);
    assert_eq!(idp.refreshes(), 2);
}

#[test]
fn token_is_quiet_unless_something_went_wrong() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    home.login(PROFILE, idp.issuer(), &session).ok();

    // The warm path: nothing, or one line with -v.
    assert_eq!(home.run(&["token"]).stderr(), "");
    assert_eq!(home.run(&["-q", "token"]).stderr(), "");
    let verbose = home.run(&["-v", "token"]);
    assert!(
        one_line(&verbose).contains("no network needed"),
        "{}",
        verbose.stderr()
    );

    // A refresh that works: nothing, or every step with -v.
    home.age_record(PROFILE, State::LEFT_IN_WINDOW, 3600);
    assert_eq!(home.run(&["token"]).stderr(), "");
    home.age_record(PROFILE, State::LEFT_IN_WINDOW, 3600);
    let verbose = home.run(&["-v", "token"]);
    let stderr = verbose.stderr();
    assert!(
        stderr.contains("refreshing: the token is inside the refresh window")
            && stderr.contains("refreshed; new token"),
        "{stderr}"
    );

    // A failure with a valid token left: one warning; nothing with -q.
    idp.fail_with(status(503, None, None));
    home.age_record(PROFILE, State::LEFT_IN_WINDOW, 3600);
    let run = home.run(&["token"]);
    run.ok();
    assert!(one_line(&run).contains("warning: refresh failed (transient)"));
    for _ in 0..2 {
        home.end_back_off(PROFILE);
        let quiet = home.run(&["-q", "token"]);
        quiet.ok();
        assert_eq!(quiet.stderr(), "");
    }
    home.end_back_off(PROFILE);
    let verbose = home.run(&["-v", "token"]);
    verbose.ok();
    let stderr = verbose.stderr();
    assert!(
        stderr.contains("refreshing:")
            && stderr.contains("refresh failed (transient)")
            && stderr.contains("next attempt after")
            && stderr.contains("warning: refresh failed"),
        "{stderr}"
    );

    // No valid token left: the error, in one line, even with -q.
    home.age_record(PROFILE, -10, 3600);
    for args in [&["token"][..], &["-q", "token"]] {
        let run = home.run(args);
        assert_eq!(run.code(), 4);
        assert!(
            one_line(&run).starts_with("authkeep: error: cannot refresh"),
            "{}",
            run.stderr()
        );
    }
    let verbose = home.run(&["-v", "token"]);
    assert_eq!(verbose.code(), 4);
    assert!(verbose.stderr_lines().len() > 1, "{}", verbose.stderr());

    // A session that cannot renew itself is no news inside its window.
    let plain = Home::new();
    plain
        .login(
            PROFILE,
            idp.issuer(),
            &serde_json::json!({"access_token": "opaque", "expires_in": 3600}),
        )
        .ok();
    plain.age_record(PROFILE, 60, 3600);
    let run = plain.run(&["token"]);
    assert_eq!(run.ok(), "opaque");
    assert_eq!(run.stderr(), "");
}
