//! What the `Bearer` middleware adds to a request on a warm token: its own
//! work ([`authkeep::ResourceAccess`]'s `authorize`: the origin check, the
//! keeper's warm path and the header), over a memory store and a file store;
//! and a whole request to a resource server on loopback with and without the
//! middleware, whose difference is the same overhead seen from outside.
//!
//! Run with `cargo bench -p authkeep --features middleware --bench middleware`
//! (or `scripts/bench-lib.sh`); `cargo test` runs each once.

use std::net::SocketAddr;
use std::sync::OnceLock;

use authkeep::middleware::Bearer;
use authkeep::{
    AccessToken, Client, FileStore, Keeper, MemoryStore, RefreshToken, ResourceAccess, SessionKey,
    Store, TokenResponse,
};
use divan::{Bencher, black_box};
use http::HeaderMap;
use url::Url;

fn main() {
    divan::main();
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    api: Url,
    memory: ResourceAccess<MemoryStore>,
    file: ResourceAccess<FileStore>,
    plain: reqwest::Client,
    bearer: reqwest_middleware::ClientWithMiddleware,
    _dir: tempfile::TempDir,
}

/// A session valid for an hour in `keeper`, and access to `api` with it.
fn access<S: Store>(
    runtime: &tokio::runtime::Runtime,
    keeper: Keeper<S>,
    api: &Url,
) -> ResourceAccess<S> {
    let key = SessionKey::new("bench").expect("a valid name");
    let response = TokenResponse {
        access_token: AccessToken::new("a".repeat(800)),
        expires_in: Some(3600),
        refresh_token: Some(RefreshToken::new("r".repeat(64))),
        ..TokenResponse::default()
    };
    runtime
        .block_on(keeper.save_login(&key, Client::new("https://idp.example", "bench"), response))
        .expect("a stored session");
    ResourceAccess::new(keeper, key)
        .origin(api.origin().ascii_serialization().as_str())
        .expect("a loopback origin")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        // The resource server: 200 to anything.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(SocketAddr::from((
                [127, 0, 0, 1],
                0,
            ))))
            .expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        runtime.spawn(async move {
            let app = axum::Router::new().fallback(|| async { "ok" });
            axum::serve(listener, app).await.ok();
        });
        let api = Url::parse(&format!("http://{addr}/data")).expect("a URL");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let memory = access(&runtime, Keeper::builder(MemoryStore::new()).build(), &api);
        let file = access(
            &runtime,
            Keeper::builder(FileStore::new(dir.path())).build(),
            &api,
        );
        let plain = reqwest::Client::new();
        let bearer = reqwest_middleware::ClientBuilder::new(plain.clone())
            .with(Bearer::from(access(
                &runtime,
                Keeper::builder(MemoryStore::new()).build(),
                &api,
            )))
            .build();
        Fixture {
            runtime,
            api,
            memory,
            file,
            plain,
            bearer,
            _dir: dir,
        }
    })
}

#[divan::bench(sample_count = 200, sample_size = 100)]
fn authorize_memory_store(bencher: Bencher) {
    let f = fixture();
    bencher.bench_local(|| {
        let mut headers = HeaderMap::new();
        let carried = f
            .runtime
            .block_on(f.memory.exchange().authorize(&f.api, &mut headers));
        black_box((carried.is_ok(), headers));
    });
}

#[divan::bench(sample_count = 200, sample_size = 100)]
fn authorize_file_store(bencher: Bencher) {
    let f = fixture();
    bencher.bench_local(|| {
        let mut headers = HeaderMap::new();
        let carried = f
            .runtime
            .block_on(f.file.exchange().authorize(&f.api, &mut headers));
        black_box((carried.is_ok(), headers));
    });
}

#[divan::bench(sample_count = 100, sample_size = 20)]
fn request_without_middleware(bencher: Bencher) {
    let f = fixture();
    bencher.bench_local(|| {
        let status = f
            .runtime
            .block_on(async { f.plain.get(f.api.clone()).send().await.map(|r| r.status()) });
        black_box(status.is_ok());
    });
}

#[divan::bench(sample_count = 100, sample_size = 20)]
fn request_with_middleware(bencher: Bencher) {
    let f = fixture();
    bencher.bench_local(|| {
        let status = f
            .runtime
            .block_on(async { f.bearer.get(f.api.clone()).send().await.map(|r| r.status()) });
        black_box(status.is_ok());
    });
}
