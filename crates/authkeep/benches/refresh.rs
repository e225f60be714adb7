//! A refresh through the coordinator against the in-process development
//! identity provider, next to the provider's own time for the same request, so
//! that what the keeper adds to a refresh can be told apart from the provider.
//!
//! - `keeper_file_store`: [`Keeper::token`] with a forced refresh, over a file
//!   store in a temporary directory: single flight, lock file, re-read, the
//!   request, parsing, the journal and the durable write (fsync of the file and
//!   the directory).
//! - `keeper_memory_store`: the same over a memory store: no file, no fsync.
//! - `provider_only`: the same refresh grant sent directly with the same
//!   `reqwest` client, and the answer's body read.
//!
//! Each iteration refreshes a session of its own, imported (of unknown age,
//! so that the forced refresh is never satisfied by a recent one) before the
//! iteration. Run with `cargo bench -p authkeep --bench refresh` (or
//! `scripts/bench-lib.sh`); `cargo test` runs each once.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use authkeep::{Client, Demand, FileStore, Keeper, MemoryStore, SessionKey, Store, TokenResponse};
use authkeep_devidp::{Config, DEFAULT_CLIENT_ID, DevIdp, SessionRequest};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    idp: DevIdp,
    http: reqwest::Client,
    file: Keeper<FileStore>,
    memory: Keeper<MemoryStore>,
    sessions: AtomicU64,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let idp = runtime
            .block_on(DevIdp::start(addr, Config::default()))
            .expect("the development identity provider");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        let fixture = Fixture {
            file: Keeper::builder(FileStore::new(dir.path()))
                .http_client(http.clone())
                .build(),
            memory: Keeper::builder(MemoryStore::default())
                .http_client(http.clone())
                .build(),
            runtime,
            idp,
            http,
            sessions: AtomicU64::new(0),
            _dir: dir,
        };
        // Discovery (cached from then on) and warm connections.
        for _ in 0..3 {
            fixture.refresh(&fixture.file, fixture.session(&fixture.file));
            fixture.refresh(&fixture.memory, fixture.session(&fixture.memory));
            fixture.provider_refresh(fixture.refresh_token());
        }
        fixture
    })
}

impl Fixture {
    /// A new session at the provider: its token response.
    fn create(&self) -> serde_json::Value {
        self.idp.create_session(&SessionRequest::default())
    }

    /// A new session, imported into `keeper`'s store under a key of its own.
    fn session<S: Store>(&self, keeper: &Keeper<S>) -> SessionKey {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let key = SessionKey::new(&format!("bench-{n}")).expect("a valid name");
        let created = self.create();
        let response =
            TokenResponse::from_fields(created.as_object().expect("a token response object"));
        let client = Client::new(self.idp.issuer(), DEFAULT_CLIENT_ID);
        self.runtime
            .block_on(keeper.import_login(&key, client, response))
            .expect("the session is stored");
        key
    }

    fn refresh<S: Store>(&self, keeper: &Keeper<S>, key: SessionKey) {
        let token = self
            .runtime
            .block_on(keeper.token(&key, Demand::new().force()))
            .expect("a refresh");
        assert!(token.refreshed, "refreshed");
        black_box(token);
    }

    /// A new session's refresh token.
    fn refresh_token(&self) -> String {
        self.create()["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned()
    }

    fn provider_refresh(&self, refresh_token: String) {
        let url = format!("{}/token", self.idp.issuer());
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", DEFAULT_CLIENT_ID),
        ];
        let body = self.runtime.block_on(async {
            let response = self
                .http
                .post(&url)
                .form(&form)
                .send()
                .await
                .expect("an answer");
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.expect("a body")
        });
        black_box(body);
    }
}

#[divan::bench(sample_count = 200, sample_size = 1)]
fn keeper_file_store(bencher: Bencher) {
    let fixture = fixture();
    bencher
        .with_inputs(|| fixture.session(&fixture.file))
        .bench_local_values(|key| fixture.refresh(&fixture.file, key));
}

#[divan::bench(sample_count = 200, sample_size = 1)]
fn keeper_memory_store(bencher: Bencher) {
    let fixture = fixture();
    bencher
        .with_inputs(|| fixture.session(&fixture.memory))
        .bench_local_values(|key| fixture.refresh(&fixture.memory, key));
}

#[divan::bench(sample_count = 200, sample_size = 1)]
fn provider_only(bencher: Bencher) {
    let fixture = fixture();
    bencher
        .with_inputs(|| fixture.refresh_token())
        .bench_local_values(|refresh_token| fixture.provider_refresh(refresh_token));
}
