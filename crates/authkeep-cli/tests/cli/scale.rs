//! The agent at scale, in short: the invariants `scripts/bench-agent.sh` and
//! `scripts/soak-agents.sh` check at full size, on a few seconds' worth. Two
//! thousand accounts coming due staggered are each refreshed once, on SQLite;
//! three agents on one PostgreSQL, one killed with SIGKILL while it
//! refreshes, refresh every account exactly once per cycle by the provider's
//! own records, and only an account whose answer died with the killed agent
//! is rejected (as reuse) and needs a login. Timings are the scripts' to
//! report, never asserted here.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, Faults, SessionRequest};
use serde_json::{Value, json};

use crate::agent::postgres_database;
use crate::harness::{Home, Idp, Run, signal, text, wait_until};

const API_KEY: &str = "scale-api-key-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(120);

/// A home with a store key, an API key and the client `dev` on `store`.
struct Fleet {
    home: Home,
    store: String,
    key_file: String,
    api_key_file: String,
    http: reqwest::blocking::Client,
}

struct Agent {
    child: Child,
    base: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

impl Fleet {
    fn new(idp: &Idp, store: Option<String>) -> Self {
        let home = Home::new();
        let key_file = home.path().join("store.key").to_str().unwrap().to_owned();
        home.run(&["store", "keygen", "--out", &key_file]).ok();
        let api_key_file = home.input("api.key", API_KEY);
        std::fs::set_permissions(
            &api_key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let store = store
            .unwrap_or_else(|| format!("sqlite:{}", home.path().join("accounts.db").display()));
        let fleet = Self {
            home,
            store,
            key_file,
            api_key_file,
            http: reqwest::blocking::Client::new(),
        };
        fleet
            .cli(&[
                "clients",
                "add",
                "dev",
                "--issuer",
                idp.issuer(),
                "--client-id",
                DEFAULT_CLIENT_ID,
            ])
            .ok();
        fleet
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.home.command(args);
        command
            .env("AUTHKEEP_KEY_FILE", &self.key_file)
            .env("AUTHKEEP_STORE", &self.store);
        command
    }

    fn cli(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().unwrap())
    }

    /// Imports `count` new grants of the provider as `user{i}` (each the
    /// grant's user), account `i`'s token living `expires_in(i)` seconds.
    fn import(&self, idp: &Idp, count: usize, expires_in: impl Fn(usize) -> u64) {
        let mut lines = String::new();
        for i in 0..count {
            let id = format!("user{i}");
            let mut session = idp.get().create_session(&SessionRequest {
                user: id.clone(),
                ..SessionRequest::default()
            });
            session["id"] = json!(id);
            session["expires_in"] = json!(expires_in(i));
            lines.push_str(&session.to_string());
            lines.push('\n');
        }
        let file = self.home.input("import.jsonl", &lines);
        self.cli(&["accounts", "import", "--client", "dev", &file])
            .ok();
    }

    fn accounts(&self) -> BTreeMap<String, Value> {
        self.cli(&["accounts", "list", "--json"])
            .ok()
            .lines()
            .map(|l| {
                let account: Value = serde_json::from_str(l).unwrap();
                (text(&account, "id"), account)
            })
            .collect()
    }

    fn agent(&self, name: &str, extra: &[&str]) -> Agent {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let log = self.home.path().join(format!("agent-{name}.log"));
        let mut args = vec![
            "agent",
            "--listen",
            &listen,
            "--api-key-file",
            &self.api_key_file,
        ];
        args.extend_from_slice(extra);
        let child = self
            .command(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let agent = Agent {
            child,
            base: format!("http://{listen}"),
        };
        wait_until("the agent to answer", WAIT, || {
            self.get(&agent, "/healthz").is_some()
        });
        agent
    }

    fn get(&self, agent: &Agent, path: &str) -> Option<String> {
        let response = self
            .http
            .get(format!("{}{path}", agent.base))
            .bearer_auth(API_KEY)
            .send()
            .ok()?;
        (response.status() == 200).then(|| response.text().unwrap())
    }

    fn metric(&self, agent: &Agent, line_start: &str) -> u64 {
        let Some(text) = self.get(agent, "/metrics") else {
            return 0;
        };
        text.lines()
            .filter(|l| l.starts_with(line_start))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

fn stop(mut agent: Agent) {
    signal(agent.child.id(), "TERM");
    assert_eq!(agent.child.wait().unwrap().code(), Some(0));
}

#[test]
fn two_thousand_staggered_accounts_are_each_refreshed_once() {
    const ACCOUNTS: usize = 2000;
    let idp = Idp::start(Config::default());
    let fleet = Fleet::new(&idp, None);
    // Due half a life after the import, less up to a fifth of that: account i
    // between 0.8 and 1 times (2 + i/1000) seconds from now. Refreshed
    // tokens live 5 minutes: nothing is due twice.
    fleet.import(&idp, ACCOUNTS, |i| 4 + (2 * i as u64) / 1000);
    let agent = fleet.agent("one", &[]);
    wait_until("every account refreshed", WAIT, || {
        fleet.metric(&agent, "authkeep_refreshes_total{outcome=\"success\"") >= ACCOUNTS as u64
    });
    assert_eq!(
        fleet.metric(&agent, "authkeep_schedule_lag_seconds_count"),
        ACCOUNTS as u64
    );
    stop(agent);
    let counters = idp.counters();
    assert_eq!(
        counters.token_requests["refresh_token"],
        BTreeMap::from([("ok".to_owned(), ACCOUNTS as u64)]),
        "one successful refresh each, nothing else"
    );
    let accounts = fleet.accounts();
    assert_eq!(accounts.len(), ACCOUNTS);
    for (id, account) in &accounts {
        assert_eq!(account["generation"], 2, "{id}: {account}");
        assert_eq!(account["state"], "active", "{id}");
    }
}

/// A backlog (far more accounts due than refreshes run at once) is claimed
/// in batches, not with a claim per finished refresh: refreshes end in
/// bunches (a group commit answers many writes at once), and each claim
/// takes every slot free by then.
#[test]
fn a_backlog_is_claimed_in_batches() {
    const ACCOUNTS: usize = 1000;
    const CONCURRENCY: usize = 128;
    let idp = Idp::start(Config::default());
    let fleet = Fleet::new(&idp, None);
    // All due within the same second or two, a second from now.
    fleet.import(&idp, ACCOUNTS, |_| 2);
    let agent = fleet.agent("one", &["--concurrency", &CONCURRENCY.to_string()]);
    wait_until("every account refreshed", WAIT, || {
        fleet.metric(&agent, "authkeep_refreshes_total{outcome=\"success\"") >= ACCOUNTS as u64
    });
    let claims = fleet.metric(&agent, "authkeep_scheduler_claims_total");
    stop(agent);
    // Far more come due at once than slots: a claim per finished refresh
    // would be about ACCOUNTS claims.
    assert!(
        claims <= (ACCOUNTS / 8) as u64,
        "{claims} claims for {ACCOUNTS} accounts"
    );
    assert_eq!(
        idp.counters().token_requests["refresh_token"],
        BTreeMap::from([("ok".to_owned(), ACCOUNTS as u64)]),
        "one successful refresh each"
    );
}

#[test]
fn three_agents_on_postgres_one_killed_refresh_each_account_once_per_cycle() {
    const ACCOUNTS: usize = 200;
    const TTL: u64 = 6;
    let idp = Idp::start(Config {
        access_ttl: Duration::from_secs(TTL),
        ..Config::default()
    });
    // Some latency, so that the killed agent has requests in flight.
    idp.set_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    });
    let fleet = Fleet::new(&idp, Some(postgres_database()));
    fleet.import(&idp, ACCOUNTS, |_| TTL);
    let short = ["--lease-ttl", "2s", "--concurrency", "8"];
    let first = fleet.agent("1", &short);
    let second = fleet.agent("2", &short);
    let third = fleet.agent("3", &short);
    let started = std::time::Instant::now();

    // Kill the second while it refreshes, after a first cycle.
    std::thread::sleep(Duration::from_secs(TTL));
    let mut in_flight = 0;
    wait_until("the second agent mid-refresh", WAIT, || {
        in_flight = fleet.metric(&second, "authkeep_refreshes_in_flight");
        in_flight > 0
    });
    let mut second = second;
    second.child.kill().unwrap();
    second.child.wait().unwrap();

    // Two more cycles at least, then every active account's token, from an
    // agent, is accepted by the provider.
    let left = Duration::from_secs(3 * TTL).saturating_sub(started.elapsed());
    std::thread::sleep(left.max(Duration::from_secs(2 * TTL)));
    let accounts = fleet.accounts();
    let lost: Vec<&String> = accounts
        .iter()
        .filter(|(_, a)| a["state"] != "active")
        .map(|(id, _)| id)
        .collect();
    for id in accounts.keys().filter(|id| !lost.contains(id)) {
        let answer = fleet
            .get(&first, &format!("/v1/accounts/{id}/token"))
            .unwrap_or_else(|| panic!("{id}: no token"));
        let token: Value = serde_json::from_str(&answer).unwrap();
        assert!(idp.is_active(&text(&token, "access_token")), "{id}");
    }
    stop(first);
    stop(third);

    let counters = idp.counters();
    let grants: BTreeMap<String, Value> = fleet
        .http
        .get(format!("{}/admin/grants", idp.issuer()))
        .send()
        .unwrap()
        .text()
        .unwrap()
        .lines()
        .map(|l| {
            let grant: Value = serde_json::from_str(l).unwrap();
            (text(&grant, "user"), grant)
        })
        .collect();
    let accounts = fleet.accounts();
    let lost: Vec<&String> = accounts
        .iter()
        .filter(|(_, a)| a["state"] != "active")
        .map(|(id, _)| id)
        .collect();
    // Only a refresh answered to the killed agent and never saved is lost:
    // its account's next refresh presents the consumed token, which the
    // provider takes for reuse.
    assert!(
        lost.len() as u64 <= in_flight,
        "{lost:?} lost, {in_flight} in flight"
    );
    let lost_count = lost.len() as u64;
    assert_eq!(
        counters.outcome("refresh_token", "invalid_grant"),
        lost_count
    );
    assert_eq!(counters.grants_revoked, lost_count);
    assert_eq!(
        counters.token_requests_for("refresh_token"),
        counters.outcome("refresh_token", "ok") + lost_count,
        "{counters:?}"
    );
    let mut cycles = Vec::new();
    for (id, account) in &accounts {
        let grant = &grants[id];
        let generation = account["generation"].as_u64().unwrap();
        // Every refresh the provider answered was saved once (a lost
        // account's removal took the generation its refresh would have).
        assert_eq!(
            grant["refreshes"],
            generation - 1,
            "{id}: {grant} {account}"
        );
        if lost.contains(&id) {
            assert_eq!(account["state"], "needs_login", "{id}");
            assert_eq!(grant["revoked"], true, "{id}");
            continue;
        }
        assert_eq!(grant["revoked"], false, "{id}");
        // Never twice in one cycle: the earliest an account is due again is
        // 40% of its token's life after a refresh.
        let gap = grant["min_gap_secs"].as_u64().unwrap();
        assert!(gap >= 1, "{id}: refreshed twice in a cycle: {grant}");
        cycles.push(generation - 1);
    }
    assert!(
        cycles.iter().all(|&c| c >= 2),
        "every account cycled: {cycles:?}"
    );
}
