//! The agent's counters and their Prometheus text: refreshes by outcome and
//! failure class, refreshes in flight, schedule lag (seconds from an
//! account's due instant to the start of its refresh), webhook deliveries;
//! accounts by state are read from the store at each scrape. No label ever
//! holds an account id or anything a provider said.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use authkeep_db::AccountState;

/// Upper bounds (seconds) of the schedule lag histogram's buckets.
/// Fine below a second, where a scheduler that keeps up lands (p99 ≤ 1 s is its
/// target), coarse above it.
const LAG_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// Every state an account can be in, so that each has a line even at zero.
const STATES: [AccountState; 4] = [
    AccountState::Active,
    AccountState::Failing,
    AccountState::CannotRenew,
    AccountState::NeedsLogin,
];

/// The agent's counters. Cheap to update from any task or event sink.
#[derive(Debug, Default)]
pub struct Metrics {
    refreshes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    in_flight: AtomicI64,
    lag: Mutex<Histogram>,
    webhooks: Mutex<BTreeMap<&'static str, u64>>,
    scheduler_errors: AtomicU64,
    claims: AtomicU64,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LAG_BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is one small update: a panic cannot leave a
    // counter half-written.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// Counts a refresh's outcome (`success` or `failure`) and, for a
    /// failure, its class.
    pub fn refresh(&self, outcome: &'static str, class: &'static str) {
        *locked(&self.refreshes).entry((outcome, class)).or_default() += 1;
    }

    /// How many refreshes ended with `outcome` and `class`.
    pub fn refreshes(&self, outcome: &str, class: &str) -> u64 {
        locked(&self.refreshes)
            .iter()
            .filter(|((o, c), _)| *o == outcome && *c == class)
            .map(|(_, n)| *n)
            .sum()
    }

    /// A scheduled refresh started (`+1`) or ended (`-1`).
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Records how late a scheduled refresh started, in seconds (negative
    /// values count as zero).
    pub fn lag(&self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let mut lag = locked(&self.lag);
        for (bucket, bound) in lag.buckets.iter_mut().zip(LAG_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        lag.count += 1;
        lag.sum += seconds;
    }

    /// Counts a webhook delivery's outcome (`delivered`, `failed`, `dropped`).
    pub fn webhook(&self, outcome: &'static str) {
        *locked(&self.webhooks).entry(outcome).or_default() += 1;
    }

    /// Counts a claim of due accounts the scheduler made.
    pub fn claim(&self) {
        self.claims.fetch_add(1, Ordering::Relaxed);
    }

    /// How many claims the scheduler made.
    pub fn claims(&self) -> u64 {
        self.claims.load(Ordering::Relaxed)
    }

    /// Counts a failed look at the store by the scheduler.
    pub fn scheduler_error(&self) {
        self.scheduler_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with `accounts` counted by state.
    pub fn render(&self, accounts: &BTreeMap<AccountState, u64>) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line("# HELP authkeep_refreshes_total Refreshes by outcome and failure class.".into());
        line("# TYPE authkeep_refreshes_total counter".into());
        for ((outcome, class), n) in locked(&self.refreshes).iter() {
            line(format!(
                "authkeep_refreshes_total{{outcome=\"{outcome}\",class=\"{class}\"}} {n}"
            ));
        }
        line("# HELP authkeep_accounts Accounts by state.".into());
        line("# TYPE authkeep_accounts gauge".into());
        for state in STATES {
            let n = accounts.get(&state).copied().unwrap_or(0);
            line(format!(
                "authkeep_accounts{{state=\"{}\"}} {n}",
                state.as_str()
            ));
        }
        line("# HELP authkeep_refreshes_in_flight Scheduled refreshes running now.".into());
        line("# TYPE authkeep_refreshes_in_flight gauge".into());
        line(format!(
            "authkeep_refreshes_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        ));
        line(
            "# HELP authkeep_schedule_lag_seconds Seconds from an account's due instant to the start of its refresh."
                .into(),
        );
        line("# TYPE authkeep_schedule_lag_seconds histogram".into());
        {
            let lag = locked(&self.lag);
            for (bound, n) in LAG_BUCKETS.iter().zip(lag.buckets) {
                line(format!(
                    "authkeep_schedule_lag_seconds_bucket{{le=\"{bound}\"}} {n}"
                ));
            }
            line(format!(
                "authkeep_schedule_lag_seconds_bucket{{le=\"+Inf\"}} {}",
                lag.count
            ));
            line(format!("authkeep_schedule_lag_seconds_sum {}", lag.sum));
            line(format!("authkeep_schedule_lag_seconds_count {}", lag.count));
        }
        line("# HELP authkeep_webhook_deliveries_total Webhook deliveries by outcome.".into());
        line("# TYPE authkeep_webhook_deliveries_total counter".into());
        for (outcome, n) in locked(&self.webhooks).iter() {
            line(format!(
                "authkeep_webhook_deliveries_total{{outcome=\"{outcome}\"}} {n}"
            ));
        }
        line(
            "# HELP authkeep_scheduler_errors_total Failed looks at the store by the scheduler."
                .into(),
        );
        line("# TYPE authkeep_scheduler_errors_total counter".into());
        line(format!(
            "authkeep_scheduler_errors_total {}",
            self.scheduler_errors.load(Ordering::Relaxed)
        ));
        line(
            "# HELP authkeep_scheduler_claims_total Claims of due accounts by the scheduler."
                .into(),
        );
        line("# TYPE authkeep_scheduler_claims_total counter".into());
        line(format!("authkeep_scheduler_claims_total {}", self.claims()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_every_state_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.refresh("success", "none");
        metrics.refresh("failure", "transient");
        metrics.refresh("failure", "transient");
        metrics.lag(0.3);
        metrics.lag(45.0);
        metrics.lag(-2.0);
        let mut accounts = BTreeMap::new();
        accounts.insert(AccountState::Active, 7);
        let text = metrics.render(&accounts);
        assert!(
            text.contains("authkeep_refreshes_total{outcome=\"failure\",class=\"transient\"} 2\n")
        );
        assert!(text.contains("authkeep_accounts{state=\"active\"} 7\n"));
        assert!(text.contains("authkeep_accounts{state=\"needs_login\"} 0\n"));
        assert!(text.contains("authkeep_schedule_lag_seconds_bucket{le=\"0.01\"} 1\n"));
        assert!(text.contains("authkeep_schedule_lag_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("authkeep_schedule_lag_seconds_bucket{le=\"60\"} 3\n"));
        assert!(text.contains("authkeep_schedule_lag_seconds_count 3\n"));
        assert_eq!(metrics.refreshes("failure", "transient"), 2);
        metrics.claim();
        assert!(
            metrics
                .render(&accounts)
                .contains("authkeep_scheduler_claims_total 1\n")
        );
    }
}
