//! What the CLI tests share: a development identity provider on its own runtime,
//! and a private home in which `authkeep` runs as a real process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use authkeep_devidp::{Config, Counters, DevIdp, SessionRequest};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// A development identity provider running on a runtime of its own, so that the
/// test thread can run processes synchronously.
pub struct Idp {
    runtime: tokio::runtime::Runtime,
    idp: Option<DevIdp>,
    issuer: String,
}

impl Idp {
    pub fn start(config: Config) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let idp = runtime
            .block_on(DevIdp::start(SocketAddr::from(([127, 0, 0, 1], 0)), config))
            .unwrap();
        let issuer = idp.issuer();
        Self {
            runtime,
            idp: Some(idp),
            issuer,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn get(&self) -> &DevIdp {
        self.idp.as_ref().expect("provider running")
    }

    pub fn session(&self) -> Value {
        self.get().create_session(&SessionRequest::default())
    }

    pub fn counters(&self) -> Counters {
        self.get().counters()
    }

    pub fn refreshes(&self) -> u64 {
        self.counters().token_requests_for("refresh_token")
    }

    pub fn is_active(&self, token: &str) -> bool {
        self.get().is_active(token)
    }

    pub fn stop(&mut self) {
        if let Some(idp) = self.idp.take() {
            self.runtime.block_on(idp.shutdown());
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private `AUTHKEEP_HOME`.
pub struct Home {
    dir: tempfile::TempDir,
    inputs: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            inputs: tempfile::tempdir().unwrap(),
        }
    }

    /// A file outside the home, for inputs such as imports.
    pub fn input(&self, name: &str, content: &str) -> String {
        let path = self.inputs.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn record_path(&self, profile: &str) -> PathBuf {
        self.path().join("sessions").join(format!("{profile}.json"))
    }

    /// `authkeep` with this home and no other authkeep settings from outside.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_authkeep"));
        command
            .args(args)
            .env("AUTHKEEP_HOME", self.path())
            .stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AUTHKEEP_") && name != "AUTHKEEP_HOME" {
                command.env_remove(name);
            }
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().unwrap())
    }

    /// Imports `json` as `profile` for the provider at `issuer`.
    pub fn login(&self, profile: &str, issuer: &str, json: &Value) -> Run {
        let file = self.input(&format!("import-{profile}.json"), &json.to_string());
        self.run(&[
            "login",
            "--profile",
            profile,
            "--issuer",
            issuer,
            "--client-id",
            authkeep_devidp::DEFAULT_CLIENT_ID,
            "--from-json",
            &file,
        ])
    }

    pub fn record(&self, profile: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.record_path(profile)).unwrap()).unwrap()
    }

    pub fn write_record(&self, profile: &str, record: &Value) {
        std::fs::create_dir_all(self.path().join("sessions")).unwrap();
        std::fs::write(
            self.record_path(profile),
            serde_json::to_vec_pretty(record).unwrap(),
        )
        .unwrap();
    }

    /// Moves the stored token's clock: as if `by` had passed since it was issued.
    pub fn age_record(&self, profile: &str, expires_in: i64, lifetime: i64) {
        let mut record = self.record(profile);
        let now = Timestamp::now();
        record["expires_at"] = instant(now + SignedDuration::from_secs(expires_in));
        record["issued_at"] = instant(now + SignedDuration::from_secs(expires_in - lifetime));
        self.write_record(profile, &record);
    }
}

pub fn instant(t: Timestamp) -> Value {
    Value::String(authkeep::token::format_instant(t))
}

/// A finished process.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().expect("exited normally")
    }

    pub fn stdout(&self) -> String {
        String::from_utf8(self.0.stdout.clone()).unwrap()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8(self.0.stderr.clone()).unwrap()
    }

    /// Asserts success and returns stdout without its final newline.
    pub fn ok(&self) -> String {
        assert_eq!(
            self.code(),
            0,
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self.stdout().trim_end_matches('\n').to_owned()
    }
}

pub fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {value}"))
        .to_owned()
}
