//! One refresh per session across processes, and nothing lost on a crash: many
//! `authkeep token` processes released at the same instant, a lock holder killed
//! or stopped mid-refresh, a foreign writer rotating the session during a refresh,
//! and refreshes interrupted by SIGKILL, SIGTERM and SIGINT at random instants.
//!
//! Tokens are compared, never printed: failure messages carry stderr only.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use authkeep::{FileStore, SessionKey};
use authkeep_devidp::{Config, Counters, FaultKind, Faults};
use jiff::{SignedDuration, Timestamp};

use crate::harness::{Home, Idp, instant, signal, text, wait_until};

const PROFILE: &str = "default";
const REFRESH: &str = "refresh_token";

/// How long a test waits for a process to reach a state before it fails.
const STATE_BOUND: Duration = Duration::from_secs(20);

/// The tests that start hundreds of processes, or time kills against how long a
/// run takes, take turns: on two cores they would otherwise skew each other.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn token_of(output: &Output) -> String {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

fn stored(home: &Home, field: &str) -> String {
    text(&home.record(PROFILE), field)
}

/// Counter differences over one step.
struct Delta {
    requests: u64,
    ok: u64,
    invalid_grant: u64,
    revoked: u64,
}

fn delta(before: &Counters, after: &Counters) -> Delta {
    Delta {
        requests: after.token_requests_for(REFRESH) - before.token_requests_for(REFRESH),
        ok: after.outcome(REFRESH, "ok") - before.outcome(REFRESH, "ok"),
        invalid_grant: after.outcome(REFRESH, "invalid_grant")
            - before.outcome(REFRESH, "invalid_grant"),
        revoked: after.grants_revoked - before.grants_revoked,
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// N processes, five trials each, on one session whose token is inside its
/// refresh window: exactly one refresh request per trial, nothing rejected or
/// revoked, every process prints the one token the winner stored.
fn one_refresh_per_race(config: Config, label: &str) {
    const TRIALS: usize = 5;
    let _turn = heavy();
    let idp = Idp::start(config);
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    for n in [8, 32, 128] {
        let mut walls = Vec::new();
        let mut refreshes = Vec::new();
        for trial in 1..=TRIALS {
            // 100 s left of 3600 s: inside the default 5 min window.
            home.age_record(PROFILE, 100, 3600);
            let old_refresh = stored(&home, "refresh_token");
            let before = idp.counters();
            let (outputs, wall) = home.release_at_once(&["token"], n);
            let d = delta(&before, &idp.counters());
            for (i, output) in outputs.iter().enumerate() {
                assert_eq!(
                    output.status.code(),
                    Some(0),
                    "{label} N={n} trial {trial}: process {i} failed: {}",
                    stderr_of(output)
                );
            }
            let served = token_of(&outputs[0]);
            assert!(!served.is_empty(), "{label} N={n} trial {trial}: no token");
            let different = outputs.iter().filter(|o| token_of(o) != served).count();
            assert_eq!(
                different, 0,
                "{label} N={n} trial {trial}: processes printed different tokens"
            );
            assert!(
                served == stored(&home, "access_token"),
                "{label} N={n} trial {trial}: the token printed is not the one stored"
            );
            assert_eq!(
                d.requests, 1,
                "{label} N={n} trial {trial}: refresh requests"
            );
            assert_eq!(d.ok, 1, "{label} N={n} trial {trial}: successful refreshes");
            assert_eq!(
                d.invalid_grant, 0,
                "{label} N={n} trial {trial}: invalid_grant"
            );
            assert_eq!(
                idp.counters().grants_revoked,
                0,
                "{label}: a grant was revoked"
            );
            assert!(
                idp.is_active(&served),
                "{label} N={n} trial {trial}: the provider rejects the token served"
            );
            let new_refresh = stored(&home, "refresh_token");
            assert!(
                new_refresh != old_refresh,
                "{label} N={n} trial {trial}: the rotated refresh token was not stored"
            );
            assert!(
                idp.is_active(&new_refresh),
                "{label} N={n} trial {trial}: the stored refresh token does not work"
            );
            walls.push(wall);
            refreshes.push(d.requests);
        }
        eprintln!(
            "race {label}: N={n} trials={TRIALS} refresh requests per trial={refreshes:?} \
             release-to-last-exit median={:?} min={:?} max={:?}",
            median(walls.clone()),
            walls.iter().min().unwrap(),
            walls.iter().max().unwrap(),
        );
    }
    // Waiters used what the winner stored without any request of their own; even
    // the winners after the first used the cached provider metadata.
    assert_eq!(idp.counters().discovery_requests, 1, "{label}");
}

#[test]
fn processes_released_at_once_cause_one_refresh() {
    one_refresh_per_race(Config::default(), "atomic provider");
}

#[test]
fn processes_released_at_once_cause_one_refresh_with_a_parallel_provider() {
    let config = Config {
        parallel_latency: Some(Duration::from_millis(50)),
        ..Config::default()
    };
    one_refresh_per_race(config, "parallel provider");
}

/// A session inside its window, and a provider that never answers refreshes, so
/// a process that starts one sits in the request holding the lock.
fn session_with_hanging_provider() -> (Idp, Home, serde_json::Value) {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let session = idp.session();
    home.login(PROFILE, idp.issuer(), &session).ok();
    home.age_record(PROFILE, 100, 3600);
    idp.set_faults(Faults {
        kind: Some(FaultKind::Hang),
        ..Faults::default()
    });
    (idp, home, session)
}

/// Starts `authkeep token` and returns once its refresh request is at the
/// provider, which holds it.
fn holder_in_flight(idp: &Idp, home: &Home) -> Child {
    let holder = home
        .command(&["token"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the holder's refresh request", STATE_BOUND, || {
        idp.counters().outcome(REFRESH, "fault") == 1
    });
    assert!(home.lock_is_held(PROFILE), "the holder holds the lock");
    holder
}

#[test]
fn a_lock_holder_killed_mid_refresh_lets_the_next_caller_proceed_at_once() {
    let (idp, home, session) = session_with_hanging_provider();
    let mut holder = holder_in_flight(&idp, &home);
    holder.kill().unwrap();
    assert_eq!(holder.wait().unwrap().signal(), Some(9));
    idp.clear_faults();

    let started = Instant::now();
    let next = home
        .command(&["token", "--lock-timeout", "120s"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(next.status.code(), Some(0), "{}", stderr_of(&next));
    assert!(
        took < Duration::from_secs(30),
        "the next caller took {took:?}, as if it had waited for the dead holder's lock"
    );
    let served = token_of(&next);
    assert!(served != text(&session, "access_token"), "it refreshed");
    assert!(idp.is_active(&served));
    assert!(idp.is_active(&stored(&home, "refresh_token")));
    let counters = idp.counters();
    assert_eq!(counters.outcome(REFRESH, "ok"), 1);
    assert_eq!(counters.outcome(REFRESH, "invalid_grant"), 0);
    assert_eq!(counters.grants_revoked, 0);
    assert!(!home.lock_is_held(PROFILE));
}

#[test]
fn a_stopped_lock_holder_makes_waiters_give_up_at_the_lock_timeout() {
    let (idp, home, _session) = session_with_hanging_provider();
    let mut holder = holder_in_flight(&idp, &home);
    signal(holder.id(), "STOP");

    // Still valid (inside the window): the stored token, with a warning.
    let valid = stored(&home, "access_token");
    let started = Instant::now();
    let served = home
        .command(&["token", "--lock-timeout", "1s"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = stderr_of(&served);
    assert_eq!(served.status.code(), Some(0), "{stderr}");
    assert!(token_of(&served) == valid, "the stored token is served");
    assert!(
        stderr.contains("serving the stored token") && stderr.contains("--lock-timeout"),
        "{stderr}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "took {took:?}"
    );
    // The front waits and decides on its own when the wait comes from the
    // environment; it says exactly what the full binary says.
    let front = home
        .command(&["token"])
        .env("AUTHKEEP_LOCK_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert_eq!(front.status.code(), Some(0), "{}", stderr_of(&front));
    assert!(token_of(&front) == valid, "the stored token is served");
    assert_eq!(stderr_of(&front), stderr, "front and full binary agree");

    // Expired: retry later, naming the setting; the bound comes from the
    // environment this time.
    home.age_record(PROFILE, -10, 600);
    let started = Instant::now();
    let failed = home
        .command(&["token"])
        .env("AUTHKEEP_LOCK_TIMEOUT", "1s")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = stderr_of(&failed);
    assert_eq!(failed.status.code(), Some(4), "{stderr}");
    assert!(failed.stdout.is_empty());
    assert!(
        stderr.contains("--lock-timeout") && stderr.contains("AUTHKEEP_LOCK_TIMEOUT"),
        "{stderr}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "took {took:?}"
    );
    let full = home
        .command(&["token", "--lock-timeout", "1s"])
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(4));
    assert_eq!(stderr_of(&full), stderr, "front and full binary agree");
    let json = home
        .command(&["token", "--json"])
        .env("AUTHKEEP_LOCK_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(4));
    let error: serde_json::Value = serde_json::from_slice(&json.stderr).unwrap();
    assert_eq!(error["error"], "lock_timeout", "{error}");

    idp.clear_faults();
    signal(holder.id(), "CONT");
    holder.kill().unwrap();
    holder.wait().unwrap();

    // Nothing was lost: the next call refreshes the expired token.
    let after = home.command(&["token"]).output().unwrap();
    assert_eq!(after.status.code(), Some(0), "{}", stderr_of(&after));
    assert!(idp.is_active(&token_of(&after)));
    let counters = idp.counters();
    assert_eq!(counters.outcome(REFRESH, "ok"), 1);
    assert_eq!(counters.outcome(REFRESH, "invalid_grant"), 0);
    assert_eq!(counters.grants_revoked, 0);
}

#[test]
fn a_session_rotated_by_a_foreign_writer_during_a_refresh_is_used_not_deleted() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    let first = idp.session();
    home.login(PROFILE, idp.issuer(), &first).ok();
    home.age_record(PROFILE, 100, 3600);
    // The foreign writer logged in elsewhere, which ended the old grant, and
    // writes the new session without taking the lock.
    assert!(idp.get().revoke_grant_of(&text(&first, "refresh_token")));
    let second = idp.session();
    let mut record = home.record(PROFILE);
    for field in ["access_token", "refresh_token", "id_token"] {
        record[field] = second[field].clone();
    }
    let now = Timestamp::now();
    record["expires_at"] = instant(now + SignedDuration::from_secs(300));
    record["issued_at"] = instant(now);
    idp.set_faults(Faults {
        latency_ms: 400,
        include_discovery: true,
        ..Faults::default()
    });
    home.forget_discovery();
    let child = home
        .command(&["token", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Discovery comes after the read under the lock, and is counted on arrival;
    // the provider then holds it and the refresh request 400 ms each, so the
    // write lands between the read and the refresh's answer.
    wait_until("the refresh to start", STATE_BOUND, || {
        // The login's check of the issuer was the first.
        idp.counters().discovery_requests == 2
    });
    home.replace_record(PROFILE, &record);

    let output = child.wait_with_output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        token_of(&output) == text(&second, "access_token"),
        "the newer session's token is served: {stderr}"
    );
    assert!(
        stderr.contains("another process refreshed the session"),
        "{stderr}"
    );
    assert!(
        stored(&home, "refresh_token") == text(&second, "refresh_token")
            && stored(&home, "access_token") == text(&second, "access_token"),
        "the record holds the newer session"
    );
    assert!(idp.is_active(&text(&second, "refresh_token")));
    let counters = idp.counters();
    assert_eq!(counters.outcome(REFRESH, "invalid_grant"), 1);
    assert_eq!(counters.outcome(REFRESH, "ok"), 0);
    assert_eq!(
        counters.grants_revoked, 1,
        "only the grant the writer revoked"
    );
}

/// A small deterministic generator (splitmix64), seeded from the clock; the seed
/// is printed so that a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// What a crash loop with one signal observed.
#[derive(Debug, Default)]
struct Tally {
    /// Cycles run.
    cycles: usize,
    /// The victim exited (or was stopped by the default action) before the
    /// signal could matter.
    finished_before_signal: usize,
    /// The provider rotated, the record still held the old refresh token after
    /// the signal, and the journal held the answer: the kill landed between the
    /// rotation and the durable write, and the journal saved the session.
    saved_by_journal: usize,
    /// SIGINT or SIGTERM arrived while the refresh's result was outstanding and
    /// the victim exited only once it was saved.
    deferred: usize,
    /// Sessions the next call found dead.
    lost: usize,
    /// Of those, kills after the request left and before its answer reached
    /// the journal (the provider rotated, nothing was written or journaled): a
    /// rotation the provider makes after its client died, or one whose answer
    /// was never read, cannot be saved by any client.
    lost_before_journal: usize,
    /// Signals that left a temporary file or journal for the next lock holder.
    leftovers: usize,
}

/// Runs at least `cycles` refreshes, each interrupted by `signal` at a random
/// instant, each followed by a normal call, and checks after every cycle that
/// the store parses, that the next call cleans up, and that a session is lost
/// only when the provider rotated and neither the record nor the journal got
/// the answer. Goes on (up to four times as long) until `landed` says the
/// signals hit the window the test is about.
fn crash_loop(
    idp: &Idp,
    home: &Home,
    signal_name: &str,
    cycles: usize,
    rng: &mut Rng,
    landed: impl Fn(&Tally) -> bool,
) -> Tally {
    let store = FileStore::new(home.path().join("sessions"));
    let key = SessionKey::new(PROFILE).unwrap();
    let journal = home
        .path()
        .join("sessions")
        .join(format!("{PROFILE}.journal"));
    // Signal instants are spread over the life of an uninterrupted run: the
    // median of the last few, so that the spread follows the machine's load.
    let mut recent: Vec<Duration> = (0..3)
        .map(|_| {
            home.age_record(PROFILE, 100, 3600);
            let started = Instant::now();
            let run = home.command(&["token"]).output().unwrap();
            assert_eq!(run.status.code(), Some(0), "{}", stderr_of(&run));
            started.elapsed()
        })
        .collect();
    let mut tally = Tally::default();
    for cycle in 0..cycles.saturating_mul(4) {
        if cycle >= cycles && landed(&tally) {
            break;
        }
        tally.cycles = cycle + 1;
        let refresh_before = stored(home, "refresh_token");
        let before = idp.counters();
        let span = median(recent.clone());
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64));
        home.age_record(PROFILE, 100, 3600);
        let mut victim = home
            .command(&["token"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if signal_name == "KILL" {
            // Directly, rather than through kill(1), whose start would compete
            // with the victim for the CPU at the very instant that matters.
            victim.kill().unwrap();
        } else {
            signal(victim.id(), signal_name);
        }
        let output = victim.wait_with_output().unwrap();
        let said = stderr_of(&output);
        match (output.status.signal(), output.status.code()) {
            (Some(_), _) => {}
            (None, Some(0)) => tally.finished_before_signal += 1,
            (None, Some(130 | 143)) => {
                if said
                    .contains("once the refresh under way had finished and its outcome was saved")
                {
                    tally.deferred += 1;
                }
            }
            other => panic!("cycle {cycle}: the victim ended {other:?}: {said}"),
        }

        let after_signal = store
            .load_blocking(&key)
            .unwrap_or_else(|e| panic!("cycle {cycle}: the store does not parse: {e}"))
            .expect("the record is never removed");
        let refresh_after_signal = after_signal
            .record
            .tokens
            .as_ref()
            .and_then(|t| t.refresh_token.as_ref())
            .map(|rt| rt.expose_secret().to_owned())
            .expect("the interrupted process removed no token");
        let journaled = std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0);
        if journaled || !home.temp_files(PROFILE).is_empty() {
            tally.leftovers += 1;
        }

        home.age_record(PROFILE, 100, 3600);
        let next_started = Instant::now();
        let next = home
            .command(&["token", "-v", "--lock-timeout", "5s"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        if recent.len() == 9 {
            recent.remove(0);
        }
        recent.push(next_started.elapsed());
        let code = next.status.code();
        let d = delta(&before, &idp.counters());
        assert!(
            home.temp_files(PROFILE).is_empty() && !journal.exists(),
            "cycle {cycle}: a temporary file or journal outlived the next lock holder"
        );
        // The next call says (-v) whether it refreshed; whatever else succeeded
        // was the victim's.
        let next_ok = u64::from(stderr_of(&next).contains(": refreshed;"));
        assert_eq!(
            d.requests,
            d.ok + d.invalid_grant,
            "cycle {cycle}: no faults expected"
        );
        let victim_rotated = d.ok > next_ok;
        let unwritten = victim_rotated && refresh_after_signal == refresh_before;
        if unwritten && journaled {
            tally.saved_by_journal += 1;
        }
        match code {
            Some(0) => {
                assert!(
                    !unwritten || journaled,
                    "cycle {cycle}: a rotation neither written nor journaled did not end the session"
                );
                assert_eq!(
                    (d.invalid_grant, d.revoked),
                    (0, 0),
                    "cycle {cycle} (signal after {delay:?}, journal: {journaled}): {}",
                    stderr_of(&next)
                );
                assert!(
                    idp.is_active(&stored(home, "refresh_token")),
                    "cycle {cycle}: the stored refresh token does not work"
                );
            }
            Some(3) => {
                tally.lost += 1;
                assert!(
                    unwritten && !journaled,
                    "cycle {cycle}: the session was lost although SIG{signal_name} did not fall \
                     between the provider's rotation and the journal write: {}",
                    stderr_of(&next)
                );
                tally.lost_before_journal += 1;
                assert_eq!(
                    (d.ok, d.invalid_grant, d.revoked),
                    (1, 1, 1),
                    "cycle {cycle}"
                );
                let ended = store.load_blocking(&key).unwrap().unwrap();
                assert!(
                    ended.record.tokens.is_none(),
                    "cycle {cycle}: tokens removed"
                );
                home.login(PROFILE, idp.issuer(), &idp.session()).ok();
            }
            other => panic!(
                "cycle {cycle}: the next call exited {other:?}: {}",
                stderr_of(&next)
            ),
        }
    }
    tally
}

/// Refreshes interrupted at random instants by SIGKILL, SIGTERM and SIGINT.
/// SIGTERM and SIGINT lose nothing: they wait for the write. SIGKILL loses a
/// session only when it lands after the request left and before its answer
/// reached the journal (the provider's time to answer, then a fraction of a
/// millisecond of ours); kills during the fsyncs, which used to lose the
/// session, are saved by the journal. The test asserts that its signals did
/// land inside the windows it is about.
///
/// `AUTHKEEP_CRASH_CYCLES` sets the cycles per signal (default 100;
/// `scripts/crash-loop.sh` runs more).
#[test]
fn refreshes_interrupted_at_random_instants_lose_only_what_no_journal_could_hold() {
    let cycles: usize = std::env::var("AUTHKEEP_CRASH_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let _turn = heavy();
    // The provider answers at once: time it spent before committing would only
    // widen the stretch in which a kill loses what no client can save.
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login(PROFILE, idp.issuer(), &idp.session()).ok();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng(seed);
    let started = Instant::now();
    for name in ["KILL", "TERM", "INT"] {
        let landed = |tally: &Tally| {
            if name == "KILL" {
                tally.saved_by_journal > 0
            } else {
                tally.deferred > 0
            }
        };
        let tally = crash_loop(&idp, &home, name, cycles, &mut rng, landed);
        eprintln!(
            "crash loop: seed={seed} SIG{name} {tally:?} after {:?}",
            started.elapsed()
        );
        if name == "KILL" {
            assert!(
                tally.saved_by_journal > 0,
                "no SIGKILL landed between the rotation and the durable write: {tally:?}"
            );
            assert_eq!(tally.lost, tally.lost_before_journal);
        } else {
            assert_eq!(tally.lost, 0, "SIG{name} lost a session: {tally:?}");
            assert!(
                tally.deferred > 0,
                "no SIG{name} landed while a refresh's result was outstanding: {tally:?}"
            );
        }
    }
}
