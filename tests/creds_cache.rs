//! Token cache and background refresher: single flight, failures not cached, rejection storms,
//! refresh ahead of expiry with short tokens, outages longer than a token's life, and no
//! secrets in the logs.

mod creds_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use ossmount::auth::cache::{CredentialSource, spawn_refresher};
use ossmount::auth::{AuthError, CachingProvider, CredentialProvider, Credentials};

/// A scriptable source: counts fetches, can be made to fail or to hang, issues tokens with a
/// given lifetime; every issued secret/token is unique and contains "SECRET"/"TOKEN".
struct Fake {
    fetches: AtomicUsize,
    lifetime_ms: i64,
    delay: Duration,
    failing: AtomicBool,
    hanging: AtomicBool,
}

impl Fake {
    fn new(lifetime_ms: i64, delay: Duration) -> Fake {
        Fake {
            fetches: AtomicUsize::new(0),
            lifetime_ms,
            delay,
            failing: AtomicBool::new(false),
            hanging: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl CredentialSource for Fake {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if self.hanging.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(AuthError::Service {
                source_name: "fake STS".into(),
                code: "ServiceUnavailable".into(),
                message: "outage number 7".into(),
                request_id: None,
            });
        }
        Ok(Credentials::new(format!("STS.AK{n}"), format!("SECRET-{n}-xyz"))
            .with_token(format!("TOKEN-{n}-abc"))
            .with_expiration(Utc::now() + chrono::Duration::milliseconds(self.lifetime_ms)))
    }
    fn describe(&self) -> String {
        "fake STS".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_callers_one_fetch() {
    let p = Arc::new(CachingProvider::new(Fake::new(3_600_000, Duration::from_millis(200))));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move { p.credentials().await.unwrap() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().access_key_id, "STS.AK0");
    }
    assert_eq!(p.source().fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_failure_and_failure_is_not_cached() {
    let p = Arc::new(CachingProvider::new(Fake::new(3_600_000, Duration::from_millis(200))));
    p.source().failing.store(true, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move { p.credentials().await }));
    }
    for t in tasks {
        let e = t.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("outage number 7"), "{e}");
    }
    assert_eq!(
        p.source().fetches.load(Ordering::SeqCst),
        1,
        "waiters share the in-flight failure"
    );
    // The next call (not concurrent with the failure) tries again, and succeeds once the source is back.
    p.source().failing.store(false, Ordering::SeqCst);
    assert_eq!(p.credentials().await.unwrap().access_key_id, "STS.AK1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_storm_refreshes_once() {
    let p = Arc::new(CachingProvider::new(Fake::new(3_600_000, Duration::from_millis(100))));
    let first = p.credentials().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let p = p.clone();
        let rejected = (*first).clone();
        tasks.push(tokio::spawn(async move {
            p.refresh_after_rejection(&rejected).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().access_key_id, "STS.AK1");
    }
    assert_eq!(p.source().fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresher_keeps_short_tokens_fresh_without_callers_waiting() {
    // 2 s tokens: usable until 1.8 s, refreshed at about 1.3 s (1/3 of life left, minus jitter).
    // Each fetch takes 300 ms, so a caller that waited on one would be seen.
    let p = Arc::new(CachingProvider::new(Fake::new(2_000, Duration::from_millis(300))));
    p.credentials().await.unwrap();
    let _refresher = spawn_refresher(p.clone(), &tokio::runtime::Handle::current());
    let start = Instant::now();
    let mut seen = std::collections::HashSet::new();
    while start.elapsed() < Duration::from_secs(8) {
        let t = Instant::now();
        let c = p.credentials().await.unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "a caller waited {:?}",
            t.elapsed()
        );
        let left = c.expiration.unwrap() - Utc::now();
        assert!(
            left > chrono::Duration::milliseconds(150),
            "handed out creds with {left:?} left"
        );
        seen.insert(c.access_key_id.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fetches = p.source().fetches.load(Ordering::SeqCst);
    // About every 1.3 s over 8 s: 1 initial + about 6 refreshes.
    assert!((5..=10).contains(&fetches), "fetches = {fetches}");
    assert!(seen.len() >= 5, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_second_tokens_are_scheduled_for_refresh_at_about_13s() {
    // The schedule the refresher follows, read from the cache's plan (real clock).
    use ossmount::auth::cache::{NextRefresh, RefreshTarget};
    let p = Arc::new(CachingProvider::new(Fake::new(20_000, Duration::ZERO)));
    p.credentials().await.unwrap();
    match p.next_refresh() {
        NextRefresh::At {
            refresh_at,
            usable_until,
        } => {
            let now = tokio::time::Instant::now();
            let r = refresh_at - now;
            let u = usable_until - now;
            // window = 20/3 = 6.67 s, jitter ≤ 0.67 s → refresh between 12.6 and 13.4 s.
            assert!(
                r > Duration::from_millis(12_500) && r < Duration::from_millis(13_400),
                "{r:?}"
            );
            // margin = 2 s → usable until 18 s.
            assert!(
                u > Duration::from_millis(17_800) && u <= Duration::from_secs(18),
                "{u:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_longer_than_lifetime_fails_promptly_then_recovers() {
    let p = Arc::new(CachingProvider::new(Fake::new(2_000, Duration::from_millis(20))));
    let _refresher = spawn_refresher(p.clone(), &tokio::runtime::Handle::current());
    // Wait for the refresher's first fetch.
    let start = Instant::now();
    while p.cached().await.is_none() {
        assert!(start.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.source().failing.store(true, Ordering::SeqCst);
    // While the outage lasts, valid creds keep being served; then they expire.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let t = Instant::now();
    let e = p.credentials().await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    match &e {
        AuthError::Expired { last_error } => assert!(last_error.contains("outage number 7"), "{last_error}"),
        other => panic!("{other:?}"),
    }
    // A hanging source does not hang callers either.
    p.source().hanging.store(true, Ordering::SeqCst);
    let t = Instant::now();
    assert!(matches!(p.credentials().await, Err(AuthError::Expired { .. })));
    assert!(t.elapsed() < Duration::from_secs(7), "took {:?}", t.elapsed());
    p.source().hanging.store(false, Ordering::SeqCst);
    // Source back: the next call (or the refresher) recovers without intervention.
    p.source().failing.store(false, Ordering::SeqCst);
    let start = Instant::now();
    loop {
        match p.credentials().await {
            Ok(c) => {
                assert!(c.expiration.unwrap() > Utc::now());
                break;
            }
            Err(_) if start.elapsed() < Duration::from_secs(5) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no recovery: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_refresher_one_caller_refreshes_stale_creds_inline() {
    let p = Arc::new(CachingProvider::new(Fake::new(3_000, Duration::from_millis(10))));
    let first = p.credentials().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_200)).await; // stale (< 1/3 left) but usable
    let second = p.credentials().await.unwrap();
    assert_ne!(first.access_key_id, second.access_key_id);
    assert_eq!(p.source().fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_credentials_never_refresh() {
    struct Static;
    #[async_trait]
    impl CredentialSource for Static {
        async fn fetch(&self) -> Result<Credentials, AuthError> {
            Ok(Credentials::new("LTAI", "s"))
        }
        fn describe(&self) -> String {
            "static".into()
        }
    }
    let p = Arc::new(CachingProvider::new(Static));
    p.credentials().await.unwrap();
    let h = spawn_refresher(p.clone(), &tokio::runtime::Handle::current());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !h.is_running(),
        "refresher should go idle for credentials without expiration"
    );
    assert_eq!(p.fetch_attempts(), 1);
}

/// A source for paused-clock tests: records the (virtual) instant of every fetch. Its
/// `Expiration` is wall-clock `now + lifetime`, which the cache turns into a virtual deadline.
struct Recording {
    at: std::sync::Mutex<Vec<tokio::time::Instant>>,
    lifetime_secs: i64,
    failing: AtomicBool,
}

#[async_trait]
impl CredentialSource for Recording {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        let n = {
            let mut at = self.at.lock().unwrap();
            at.push(tokio::time::Instant::now());
            at.len()
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(AuthError::Unreachable {
                source_name: "recording".into(),
                message: "STS down".into(),
            });
        }
        Ok(Credentials::new(format!("STS.{n}"), "s")
            .with_token("t")
            .with_expiration(Utc::now() + chrono::Duration::seconds(self.lifetime_secs)))
    }
    fn describe(&self) -> String {
        "recording".into()
    }
}

fn recording(lifetime_secs: i64) -> Arc<CachingProvider<Recording>> {
    Arc::new(CachingProvider::new(Recording {
        at: std::sync::Mutex::new(Vec::new()),
        lifetime_secs,
        failing: AtomicBool::new(false),
    }))
}

#[tokio::test(start_paused = true)]
async fn paused_clock_twenty_second_tokens_refresh_every_13s_for_ten_minutes() {
    let p = recording(20);
    let _r = spawn_refresher(p.clone(), &tokio::runtime::Handle::current());
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(p.cached().await.is_some(), "no usable credentials at some second");
    }
    let at = p.source().at.lock().unwrap().clone();
    // 600 s / ~13 s per token = 45 or 46 fetches.
    assert!((45..=47).contains(&at.len()), "{} fetches", at.len());
    for w in at.windows(2) {
        let gap = w[1] - w[0];
        // refresh when 20/3 = 6.67 s are left, jitter ≤ 0.67 s earlier, plus the 0.1 s fetch.
        assert!(
            gap >= Duration::from_millis(12_700) && gap <= Duration::from_millis(13_500),
            "gap {gap:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn paused_clock_outage_backs_off_then_fails_fast_then_recovers() {
    let p = recording(60);
    let _r = spawn_refresher(p.clone(), &tokio::runtime::Handle::current());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(p.cached().await.is_some());
    p.source().failing.store(true, Ordering::SeqCst);
    // Refresh point at 40 s (20 s left); usable until 54 s (6 s margin); outage lasts 3 minutes.
    tokio::time::sleep(Duration::from_secs(53)).await;
    assert!(
        p.cached().await.is_some(),
        "still valid during the outage before expiry"
    );
    let before_expiry = p.source().at.lock().unwrap().len();
    // Retries: 1, 2, 4, 8 s (jittered, halved), at least a few before expiry, not a storm.
    assert!(
        (4..=12).contains(&before_expiry),
        "{before_expiry} fetches before expiry"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = tokio::time::Instant::now();
    match p.credentials().await {
        Err(AuthError::Expired { last_error }) => assert!(last_error.contains("STS down"), "{last_error}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() <= Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(120)).await;
    let during = p.source().at.lock().unwrap().len();
    // Backoff caps at 30 s: about 4-8 refresher attempts in 2 minutes, plus the caller's one.
    assert!(
        during - before_expiry <= 12,
        "{} attempts in 2 minutes of outage",
        during - before_expiry
    );
    p.source().failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(31)).await;
    // The refresher recovered on its own, without any caller.
    assert!(p.cached().await.is_some(), "no recovery within the 30 s backoff cap");
}
