//! What the CLI tests share: a development identity provider on its own runtime,
//! and a private home in which `authkeep` runs as a real process.

use std::fs::TryLockError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use authkeep_devidp::{Config, Counters, DevIdp, Faults, SessionRequest};
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

    pub fn set_faults(&self, faults: Faults) {
        self.get().set_faults(faults);
    }

    pub fn clear_faults(&self) {
        self.set_faults(Faults::default());
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

    /// `authkeep` behind `sh`, which writes one byte (`r`) on stdout once it is
    /// about to wait for a line on stdin, then replaces itself with `authkeep`. A
    /// test starts many, waits for every `r`, and releases them all with one write.
    pub fn command_held_until_stdin(&self, args: &[&str]) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"printf r; read _; exec "$0" "$@""#)
            .arg(env!("CARGO_BIN_EXE_authkeep"))
            .args(args)
            .env("AUTHKEEP_HOME", self.path());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AUTHKEEP_") && name != "AUTHKEEP_HOME" {
                command.env_remove(name);
            }
        }
        command
    }

    /// The session's lock file.
    pub fn lock_path(&self, profile: &str) -> PathBuf {
        self.path().join("sessions").join(format!("{profile}.lock"))
    }

    /// Whether some process holds the session's lock: probes it without waiting
    /// and lets go at once if it was free.
    pub fn lock_is_held(&self, profile: &str) -> bool {
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.lock_path(profile))
        else {
            return false;
        };
        match file.try_lock() {
            Ok(()) => false,
            Err(TryLockError::WouldBlock) => true,
            Err(TryLockError::Error(e)) => panic!("probing the lock: {e}"),
        }
    }

    /// Temporary files of an atomic replace of the session's record.
    pub fn temp_files(&self, profile: &str) -> Vec<PathBuf> {
        let prefix = format!(".{profile}.json.");
        let Ok(entries) = std::fs::read_dir(self.path().join("sessions")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".tmp")
            })
            .map(|e| e.path())
            .collect()
    }

    /// Forgets the provider metadata that a login (which checks the issuer by
    /// discovery) cached, so that the next network step discovers again.
    pub fn forget_discovery(&self) {
        match std::fs::remove_dir_all(self.path().join("cache")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing the discovery cache: {e}"),
        }
    }

    /// Imports `json` as `profile` for the provider at `issuer` (which checks the
    /// issuer by discovery and caches the provider's metadata).
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
        self.write_session_file(
            &self.record_path(profile),
            &serde_json::to_vec_pretty(record).unwrap(),
        );
    }

    /// The sessions directory, created private (0700) as authkeep creates it:
    /// authkeep refuses one that other users may read.
    pub fn sessions_dir(&self) -> PathBuf {
        let dir = self.path().join("sessions");
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).unwrap();
        dir
    }

    /// Writes a file of the sessions directory, private (0600) as authkeep
    /// writes it: authkeep refuses one that other users may read.
    pub fn write_session_file(&self, path: &Path, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt as _;
        self.sessions_dir();
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Replaces the record the way a writer that ignores the lock would, but
    /// atomically (a temporary file renamed over it), so readers never see half.
    pub fn replace_record(&self, profile: &str, record: &Value) {
        let temp = self.sessions_dir().join(format!("foreign-{profile}.new"));
        self.write_session_file(&temp, &serde_json::to_vec_pretty(record).unwrap());
        std::fs::rename(&temp, self.record_path(profile)).unwrap();
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

/// Polls `condition` every few milliseconds until it holds; panics after `bound`.
pub fn wait_until(what: &str, bound: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < bound,
            "gave up after {bound:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends a signal by name (`STOP`, `CONT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}

impl Idp {
    /// Makes every token request (not discovery) fail with `kind`.
    pub fn fail_with(&self, kind: authkeep_devidp::FaultKind) {
        self.set_faults(Faults {
            kind: Some(kind),
            ..Faults::default()
        });
    }

    pub fn revoke_grant_of(&self, token: &str) -> bool {
        self.get().revoke_grant_of(token)
    }
}

impl Home {
    /// Runs `authkeep` and measures how long it took.
    pub fn run_timed(&self, args: &[&str]) -> (Run, std::time::Duration) {
        let started = std::time::Instant::now();
        let run = self.run(args);
        (run, started.elapsed())
    }

    /// Starts `n` `authkeep` processes with `args`, waits until every one is
    /// parked on its stdin, releases them all with one write to the pipe they
    /// share, and returns their outputs and the time from the release to the
    /// last exit.
    pub fn release_at_once(&self, args: &[&str], n: usize) -> (Vec<Output>, Duration) {
        use std::io::{Read as _, Write as _};
        let (reader, mut writer) = std::io::pipe().unwrap();
        let mut children: Vec<std::process::Child> = (0..n)
            .map(|_| {
                self.command_held_until_stdin(args)
                    .stdin(reader.try_clone().unwrap())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        drop(reader);
        for child in &mut children {
            let mut ready = [0u8];
            child
                .stdout
                .as_mut()
                .unwrap()
                .read_exact(&mut ready)
                .unwrap();
            assert_eq!(&ready, b"r");
        }
        // One write of n newlines (far below PIPE_BUF, so atomic) releases
        // every process at the same instant.
        let released = Instant::now();
        writer.write_all(&vec![b'\n'; n]).unwrap();
        drop(writer);
        let outputs: Vec<Output> = children
            .into_iter()
            .map(|child| child.wait_with_output().unwrap())
            .collect();
        (outputs, released.elapsed())
    }

    /// Moves a recorded back-off into the past, as if its wait had passed.
    pub fn end_back_off(&self, profile: &str) {
        let mut record = self.record(profile);
        record["health"]["next_attempt_at"] =
            instant(Timestamp::now() - SignedDuration::from_secs(1));
        self.write_record(profile, &record);
    }

    /// Makes the stored tokens look obtained `secs` ago.
    pub fn age_obtained(&self, profile: &str, secs: i64) {
        let mut record = self.record(profile);
        record["obtained_at"] = instant(Timestamp::now() - SignedDuration::from_secs(secs));
        self.write_record(profile, &record);
    }

    /// Takes the session's cross-process lock, as another `authkeep` refreshing
    /// it would, until the returned file is dropped.
    pub fn hold_lock(&self, profile: &str) -> std::fs::File {
        self.sessions_dir();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock_path(profile))
            .unwrap();
        file.lock().unwrap();
        file
    }

    /// `authkeep status --json` for one profile, whatever its exit code.
    pub fn status_of(&self, profile: &str) -> Value {
        let run = self.run(&["status", "--json", "--profile", profile]);
        let all: Value = serde_json::from_str(&run.stdout())
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", run.stderr()));
        all["profiles"][0].clone()
    }
}

/// An instant as authkeep writes it: RFC 3339 UTC, to the second.
pub fn instant(t: Timestamp) -> Value {
    Value::String(Timestamp::from_second(t.as_second()).unwrap().to_string())
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

    /// The lines written to stderr.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr().lines().map(str::to_owned).collect()
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
