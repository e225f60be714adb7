//! The cached token's hot read, [`CachedToken::get`] (an `arc-swap` load, its
//! usable flag, an `Arc` clone), at one and two threads, against the usual
//! alternative: an `RwLock<Arc<Token>>` read and clone. Each iteration gets
//! the token and lets it go, so both sides pay the reference count twice.
//! `cached_with` is [`CachedToken::with`], which touches no reference count;
//! `cached_reader` is a [`authkeep::TokenReader`] of the thread's own (one
//! atomic load while the token is unchanged);
//! `token_hot` is [`CachedToken::token`] when the cached token is served,
//! polled once.
//!
//! Sample sizes are fixed: the first read on a thread registers it with
//! `arc-swap` (tens of microseconds, once), which would otherwise make divan
//! time single iterations.
//!
//! Run with `cargo bench -p authkeep --bench cached_read` (or
//! `scripts/bench-lib.sh`); `cargo test` runs each once.

use std::future::Future as _;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll, Waker};

use authkeep::{
    AccessToken, CachedToken, Client, Keeper, MemoryStore, RefreshToken, SessionKey, Token,
    TokenResponse,
};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

struct Fixture {
    cached: CachedToken<MemoryStore>,
    baseline: RwLock<Arc<Token>>,
    /// Runs the cache's background task; kept for as long as the benches run.
    _runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let keeper = Keeper::builder(MemoryStore::default()).build();
        let key = SessionKey::new("bench").expect("a valid name");
        // A token as long as a typical JWT, valid for an hour: no refresh is
        // due while the benches run.
        let response = TokenResponse {
            access_token: AccessToken::new("a".repeat(800)),
            expires_in: Some(3600),
            refresh_token: Some(RefreshToken::new("r".repeat(64))),
            ..TokenResponse::default()
        };
        let client = Client::new("https://idp.example", "bench");
        let cached = keeper.cached(key.clone());
        runtime.block_on(async {
            keeper
                .save_login(&key, client, response)
                .await
                .expect("a session in memory");
            cached.token().await.expect("the stored token")
        });
        let token = cached.get().expect("a cached token");
        Fixture {
            baseline: RwLock::new(Arc::new(Token::clone(&token))),
            cached,
            _runtime: runtime,
        }
    })
}

#[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 1000)]
fn cached_reader(bencher: Bencher) {
    let fixture = fixture();
    bencher
        .with_inputs(|| fixture.cached.reader())
        .bench_local_refs(|reader| {
            let token = reader.get().map(|t| t.access_token.expose_secret().len());
            black_box(token);
        });
}

#[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 1000)]
fn cached_get(bencher: Bencher) {
    let fixture = fixture();
    bencher.bench(|| {
        let token = fixture.cached.get();
        black_box(&token);
    });
}

#[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 1000)]
fn cached_with(bencher: Bencher) {
    let fixture = fixture();
    bencher.bench(|| {
        let length = fixture
            .cached
            .with(|token| token.access_token.expose_secret().len());
        black_box(length);
    });
}

#[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 1000)]
fn rwlock_read_clone(bencher: Bencher) {
    let fixture = fixture();
    bencher.bench(|| {
        let token = Arc::clone(
            &fixture
                .baseline
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        black_box(&token);
    });
}

#[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 1000)]
fn token_hot(bencher: Bencher) {
    let fixture = fixture();
    bencher.bench(|| {
        let mut call = std::pin::pin!(fixture.cached.token());
        let polled = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(polled, Poll::Ready(Ok(_))), "served at once");
        black_box(&polled);
    });
}
