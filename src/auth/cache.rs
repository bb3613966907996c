//! Token cache and background refresher: what makes a mount survive weeks of rotating STS
//! credentials.
//!
//! A [`CredentialSource`] fetches fresh credentials every time it is asked (one STS call, one
//! metadata GET, one process run). [`CachingProvider`] wraps a source and is the
//! [`CredentialProvider`] the client calls before every request attempt:
//!
//! * **Expiry is monotonic.** At fetch time the server's `Expiration − now` becomes a
//!   `tokio::time::Instant` deadline, so later wall-clock jumps do not matter. Credentials are
//!   *usable* until `EXPIRY_SAFETY_MARGIN` (min of [`EXPIRY_SAFETY_MARGIN_MAX`] and
//!   1/[`EXPIRY_SAFETY_MARGIN_LIFETIME_DIVISOR`] of the lifetime) before that deadline, which
//!   covers clock skew and requests in flight.
//! * **Normal case: no waiting.** While the cached credentials are usable, `credentials()`
//!   answers from a read lock. With a refresher attached it never calls the source; without one,
//!   a single caller refreshes inline once the credentials are *stale* (see below) and everyone
//!   else keeps getting the cached ones.
//! * **Single flight.** Fetches happen under one `tokio::sync::Mutex`; callers that waited on
//!   it first re-check the cache, and if a fetch completed while they waited they share its
//!   outcome (success or error) instead of starting another. So 100 concurrent callers on an
//!   empty cache cause one fetch, and N concurrent `refresh_after_rejection(rejected)` calls
//!   cause one fetch (a refresh happens only if the cache still holds `rejected`).
//! * **Failures are not cached.** A call that starts after a failed fetch tries again.
//! * **Expired + source down = prompt error.** If the cached credentials have expired, the
//!   caller fetches synchronously but waits at most [`EXPIRED_FETCH_TIMEOUT`]; on failure it gets
//!   `AuthError::Expired { last_error }` and the next call tries again, so the mount recovers by
//!   itself once the source answers.
//!
//! The refresher ([`spawn_refresher`]) wakes when the remaining lifetime drops below
//! `min(`[`REFRESH_BEFORE_EXPIRY_MAX`]`, lifetime / `[`REFRESH_LIFETIME_DIVISOR`]`)` (the *stale*
//! point), moved earlier by a random jitter of up to 1/[`REFRESH_JITTER_DIVISOR`] of that
//! window, and refreshes. On failure it retries with jittered exponential backoff from
//! [`REFRESH_RETRY_INITIAL`] to [`REFRESH_RETRY_MAX`], never sleeping past half of the
//! remaining validity, logging `warn!` each time; each success logs `info!` with the new
//! expiration. It stops when its [`RefresherHandle`] is dropped.
//!
//! Lock order: `fetch` (tokio Mutex) before `state` (tokio RwLock); `last_error` (std Mutex)
//! is only ever held for a copy, never across `.await`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;
use tracing::{info, warn};

use super::util::{Backoff, jitter_between};
use super::{AuthError, CredentialProvider, Credentials};

/// Refresh when less than this much lifetime remains (or less, for short-lived tokens).
pub const REFRESH_BEFORE_EXPIRY_MAX: Duration = Duration::from_secs(15 * 60);
/// ... or when less than `lifetime / REFRESH_LIFETIME_DIVISOR` remains, whichever is smaller
/// (3 → a 20 s token is refreshed with about 6.7 s left, i.e. about every 13 s).
pub const REFRESH_LIFETIME_DIVISOR: u32 = 3;
/// The refresh point is moved earlier by a random amount up to `window / REFRESH_JITTER_DIVISOR`
/// so that many mounts started together do not call STS in lockstep.
pub const REFRESH_JITTER_DIVISOR: u32 = 10;
/// Credentials stop being handed out this long before their expiration at most ...
pub const EXPIRY_SAFETY_MARGIN_MAX: Duration = Duration::from_secs(60);
/// ... or `lifetime / EXPIRY_SAFETY_MARGIN_LIFETIME_DIVISOR` before it, whichever is smaller.
pub const EXPIRY_SAFETY_MARGIN_LIFETIME_DIVISOR: u32 = 10;
/// How long a caller holding expired credentials waits for a synchronous refresh.
pub const EXPIRED_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the very first fetch (nothing cached), or one background refresh, may take:
/// sources bound themselves (e.g. the credential process timeout), this is a backstop.
pub const INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Without a refresher, a stale-but-valid cache triggers an inline refresh at most this often.
pub const STALE_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// First delay of the refresher after a failed refresh.
pub const REFRESH_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest delay of the refresher between failed refreshes.
pub const REFRESH_RETRY_MAX: Duration = Duration::from_secs(30);
/// Shortest delay of the refresher between failed refreshes (when close to expiry).
pub const REFRESH_RETRY_MIN: Duration = Duration::from_millis(100);

/// Something that produces fresh credentials on every call (no caching).
#[async_trait]
pub trait CredentialSource: Send + Sync + 'static {
    /// Fetches new credentials from the source.
    async fn fetch(&self) -> Result<Credentials, AuthError>;
    /// Short description for messages, e.g. `ECS RAM role EcsRole`.
    fn describe(&self) -> String;
}

#[async_trait]
impl<S: CredentialSource + ?Sized> CredentialSource for Box<S> {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        (**self).fetch().await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

#[async_trait]
impl<S: CredentialSource + ?Sized> CredentialSource for Arc<S> {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        (**self).fetch().await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A cached credential with its monotonic deadlines.
struct CacheEntry {
    creds: Arc<Credentials>,
    /// When the credentials stop being handed out (`None`: never).
    usable_until: Option<Instant>,
    /// When they should be refreshed, jitter included (`None`: never).
    refresh_at: Option<Instant>,
}

impl CacheEntry {
    fn new(creds: Credentials, now: Instant) -> Self {
        let Some(expiration) = creds.expiration else {
            return CacheEntry {
                creds: Arc::new(creds),
                usable_until: None,
                refresh_at: None,
            };
        };
        let lifetime = (expiration - Utc::now()).to_std().unwrap_or_default();
        let margin = EXPIRY_SAFETY_MARGIN_MAX.min(lifetime / EXPIRY_SAFETY_MARGIN_LIFETIME_DIVISOR);
        let window = REFRESH_BEFORE_EXPIRY_MAX.min(lifetime / REFRESH_LIFETIME_DIVISOR);
        let jitter = jitter_between(Duration::ZERO, window / REFRESH_JITTER_DIVISOR);
        let expiry = now + lifetime;
        CacheEntry {
            creds: Arc::new(creds),
            usable_until: Some(expiry - margin),
            refresh_at: Some(expiry - window - jitter),
        }
    }
    fn is_usable(&self, now: Instant) -> bool {
        self.usable_until.is_none_or(|t| now < t)
    }
    fn is_stale(&self, now: Instant) -> bool {
        self.refresh_at.is_some_and(|t| now >= t)
    }
}

/// State guarded by the fetch lock.
struct FetchState {
    last_failure_at: Option<Instant>,
    last_error: Option<AuthError>,
}

/// When the refresher should act next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRefresh {
    /// Nothing usable is cached (or never fetched): refresh now.
    Now,
    /// Refresh at `refresh_at`; the current credentials are usable until `usable_until`.
    At { refresh_at: Instant, usable_until: Instant },
    /// The credentials never expire: nothing to do.
    Never,
}

/// What a background refresher drives. Implemented by [`CachingProvider`]; object safe so the
/// builder can hand out `Arc<dyn RefreshTarget>`.
#[async_trait]
pub trait RefreshTarget: Send + Sync + 'static {
    /// When to refresh next, from the cached entry.
    fn next_refresh(&self) -> NextRefresh;
    /// Refreshes unless the cached entry is usable and not stale (someone else already
    /// refreshed); returns the new credentials, or `None` when there was nothing to do.
    async fn refresh_if_stale(&self) -> Result<Option<Arc<Credentials>>, AuthError>;
    /// Marks a refresher as running (or stopped): with one running, callers never refresh
    /// stale credentials inline.
    fn set_refresher_attached(&self, attached: bool);
    /// The source's description, for logs.
    fn source_description(&self) -> String;
}

/// The token cache over a [`CredentialSource`]; see the module doc.
pub struct CachingProvider<S> {
    source: S,
    state: RwLock<Option<CacheEntry>>,
    fetch: Mutex<FetchState>,
    /// Completed fetch attempts (success or failure), bumped under the fetch lock.
    attempts: AtomicU64,
    refresher_attached: AtomicBool,
    /// Copy of the last fetch error text for messages when a wait times out.
    last_error: std::sync::Mutex<Option<String>>,
}

impl<S: CredentialSource> CachingProvider<S> {
    pub fn new(source: S) -> Self {
        CachingProvider {
            source,
            state: RwLock::new(None),
            fetch: Mutex::new(FetchState {
                last_failure_at: None,
                last_error: None,
            }),
            attempts: AtomicU64::new(0),
            refresher_attached: AtomicBool::new(false),
            last_error: std::sync::Mutex::new(None),
        }
    }

    /// The wrapped source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Number of completed fetch attempts so far (tests, metrics).
    pub fn fetch_attempts(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// The cached credentials if usable now, without any I/O.
    pub async fn cached(&self) -> Option<Arc<Credentials>> {
        let now = Instant::now();
        self.state
            .read()
            .await
            .as_ref()
            .filter(|e| e.is_usable(now))
            .map(|e| e.creds.clone())
    }

    fn last_error_text(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    /// Fetches from the source and records the outcome. Caller holds the fetch lock.
    async fn fetch_locked(&self, fs: &mut FetchState) -> Result<Arc<Credentials>, AuthError> {
        let result = self.source.fetch().await;
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok(creds) => {
                if let Some(exp) = creds.expiration {
                    if exp <= Utc::now() {
                        warn!(
                            source = %self.source.describe(),
                            expiration = %exp.to_rfc3339(),
                            "fresh credentials are already expired by the local clock; is the system clock right?"
                        );
                    }
                }
                let entry = CacheEntry::new(creds, Instant::now());
                let out = entry.creds.clone();
                *self.state.write().await = Some(entry);
                fs.last_error = None;
                fs.last_failure_at = None;
                Ok(out)
            }
            Err(e) => {
                if let Ok(mut g) = self.last_error.lock() {
                    *g = Some(e.to_string());
                }
                fs.last_error = Some(e.clone());
                fs.last_failure_at = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Under the fetch lock: the cached credentials if usable, else the shared outcome of a
    /// fetch that completed while we waited (`seen` = attempts when we started), else `None`.
    async fn recheck_locked(&self, fs: &FetchState, seen: u64) -> Option<Result<Arc<Credentials>, AuthError>> {
        let now = Instant::now();
        if let Some(e) = self.state.read().await.as_ref().filter(|e| e.is_usable(now)) {
            return Some(Ok(e.creds.clone()));
        }
        if self.attempts.load(Ordering::SeqCst) != seen {
            if let Some(err) = &fs.last_error {
                return Some(Err(err.clone()));
            }
        }
        None
    }

    /// The slow path: nothing usable cached.
    async fn fetch_blocking(&self, had_entry: bool) -> Result<Arc<Credentials>, AuthError> {
        let seen = self.attempts.load(Ordering::SeqCst);
        let work = async {
            let mut fs = self.fetch.lock().await;
            if let Some(r) = self.recheck_locked(&fs, seen).await {
                return r;
            }
            self.fetch_locked(&mut fs).await
        };
        if had_entry {
            match tokio::time::timeout(EXPIRED_FETCH_TIMEOUT, work).await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(AuthError::Expired {
                    last_error: e.to_string(),
                }),
                Err(_) => Err(AuthError::Expired {
                    last_error: self.last_error_text().unwrap_or_else(|| {
                        format!(
                            "{} did not answer within {} s",
                            self.source.describe(),
                            EXPIRED_FETCH_TIMEOUT.as_secs()
                        )
                    }),
                }),
            }
        } else {
            match tokio::time::timeout(INITIAL_FETCH_TIMEOUT, work).await {
                Ok(r) => r,
                Err(_) => Err(AuthError::Unreachable {
                    source_name: self.source.describe(),
                    message: format!("no answer within {} s", INITIAL_FETCH_TIMEOUT.as_secs()),
                }),
            }
        }
    }

    /// Without a refresher: one caller refreshes stale (still usable) credentials inline.
    async fn refresh_stale_inline(&self, current: Arc<Credentials>) -> Arc<Credentials> {
        let Ok(mut fs) = self.fetch.try_lock() else {
            return current;
        };
        if fs.last_failure_at.is_some_and(|t| t.elapsed() < STALE_REFRESH_INTERVAL) {
            return current;
        }
        let now = Instant::now();
        if let Some(e) = self
            .state
            .read()
            .await
            .as_ref()
            .filter(|e| e.is_usable(now) && !e.is_stale(now))
        {
            return e.creds.clone();
        }
        match tokio::time::timeout(EXPIRED_FETCH_TIMEOUT, self.fetch_locked(&mut fs)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                warn!(source = %self.source.describe(), error = %e, "credential refresh failed; using cached credentials");
                current
            }
            Err(_) => {
                fs.last_failure_at = Some(Instant::now());
                warn!(source = %self.source.describe(), "credential refresh timed out; using cached credentials");
                current
            }
        }
    }
}

/// Same access key and token: the same credentials as far as OSS is concerned.
fn same_identity(a: &Credentials, b: &Credentials) -> bool {
    a.access_key_id == b.access_key_id && a.security_token == b.security_token
}

impl<S: CredentialSource> std::fmt::Debug for CachingProvider<S> {
    // Names the source only: never the cached credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingProvider")
            .field("source", &self.source.describe())
            .field("fetch_attempts", &self.fetch_attempts())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: CredentialSource> CredentialProvider for CachingProvider<S> {
    async fn credentials(&self) -> Result<Arc<Credentials>, AuthError> {
        let now = Instant::now();
        let (had_entry, stale) = {
            let guard = self.state.read().await;
            match guard.as_ref() {
                Some(e) if e.is_usable(now) => {
                    if !e.is_stale(now) || self.refresher_attached.load(Ordering::SeqCst) {
                        return Ok(e.creds.clone());
                    }
                    (true, Some(e.creds.clone()))
                }
                Some(_) => (true, None),
                None => (false, None),
            }
        };
        match stale {
            Some(current) => Ok(self.refresh_stale_inline(current).await),
            None => self.fetch_blocking(had_entry).await,
        }
    }

    async fn refresh_after_rejection(&self, rejected: &Credentials) -> Result<Arc<Credentials>, AuthError> {
        let seen = self.attempts.load(Ordering::SeqCst);
        let work = async {
            let mut fs = self.fetch.lock().await;
            let now = Instant::now();
            if let Some(e) = self.state.read().await.as_ref() {
                if e.is_usable(now) && !same_identity(&e.creds, rejected) {
                    return Ok(e.creds.clone());
                }
            }
            if self.attempts.load(Ordering::SeqCst) != seen {
                // A fetch completed while we waited: share its outcome.
                if let Some(err) = &fs.last_error {
                    return Err(err.clone());
                }
                if let Some(e) = self.state.read().await.as_ref().filter(|e| e.is_usable(now)) {
                    return Ok(e.creds.clone());
                }
            }
            self.fetch_locked(&mut fs).await
        };
        match tokio::time::timeout(EXPIRED_FETCH_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(AuthError::Unreachable {
                source_name: self.source.describe(),
                message: format!("refresh did not complete within {} s", EXPIRED_FETCH_TIMEOUT.as_secs()),
            }),
        }
    }

    fn describe(&self) -> String {
        self.source.describe()
    }
}

#[async_trait]
impl<S: CredentialSource> RefreshTarget for CachingProvider<S> {
    fn next_refresh(&self) -> NextRefresh {
        // try_read: the refresher must not block; if a writer holds the lock a fetch is
        // finishing, so look again shortly.
        let Ok(guard) = self.state.try_read() else {
            return NextRefresh::At {
                refresh_at: Instant::now() + REFRESH_RETRY_MIN,
                usable_until: Instant::now() + REFRESH_RETRY_MIN,
            };
        };
        match guard.as_ref() {
            None => NextRefresh::Now,
            Some(e) => match (e.refresh_at, e.usable_until) {
                (Some(refresh_at), Some(usable_until)) => NextRefresh::At {
                    refresh_at,
                    usable_until,
                },
                _ => NextRefresh::Never,
            },
        }
    }

    async fn refresh_if_stale(&self) -> Result<Option<Arc<Credentials>>, AuthError> {
        let mut fs = self.fetch.lock().await;
        let now = Instant::now();
        if self
            .state
            .read()
            .await
            .as_ref()
            .is_some_and(|e| e.is_usable(now) && !e.is_stale(now))
        {
            return Ok(None);
        }
        self.fetch_locked(&mut fs).await.map(Some)
    }

    fn set_refresher_attached(&self, attached: bool) {
        self.refresher_attached.store(attached, Ordering::SeqCst);
    }

    fn source_description(&self) -> String {
        self.source.describe()
    }
}

/// Stops the background refresher when dropped.
#[derive(Debug)]
pub struct RefresherHandle {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RefresherHandle {
    /// A handle with no task (credentials that never expire).
    pub fn idle() -> Self {
        RefresherHandle { task: None }
    }
    /// Stops the refresher and waits for it to be gone.
    pub async fn shutdown(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
    /// Whether the refresher task is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for RefresherHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Clears the "refresher attached" flag when the refresher task ends or is aborted.
struct AttachGuard<T: RefreshTarget + ?Sized>(Arc<T>);

impl<T: RefreshTarget + ?Sized> Drop for AttachGuard<T> {
    fn drop(&mut self) {
        self.0.set_refresher_attached(false);
    }
}

/// Starts the background refresher for `target` on `handle`; see the module doc for the
/// schedule. Dropping the returned handle stops it.
pub fn spawn_refresher<T: RefreshTarget + ?Sized>(target: Arc<T>, handle: &tokio::runtime::Handle) -> RefresherHandle {
    target.set_refresher_attached(true);
    let guard = AttachGuard(target);
    let task = handle.spawn(async move {
        let target = &guard.0;
        refresher_loop(target.as_ref()).await;
    });
    RefresherHandle { task: Some(task) }
}

async fn refresher_loop<T: RefreshTarget + ?Sized>(target: &T) {
    let source = target.source_description();
    let mut backoff = Backoff::new(REFRESH_RETRY_INITIAL, REFRESH_RETRY_MAX);
    loop {
        match target.next_refresh() {
            NextRefresh::Never => {
                info!(source = %source, "credentials do not expire; background refresher idle");
                return;
            }
            NextRefresh::Now => {}
            NextRefresh::At { refresh_at, .. } => tokio::time::sleep_until(refresh_at).await,
        }
        let outcome = match tokio::time::timeout(INITIAL_FETCH_TIMEOUT, target.refresh_if_stale()).await {
            Ok(r) => r,
            Err(_) => Err(AuthError::Unreachable {
                source_name: source.clone(),
                message: format!("refresh did not complete within {} s", INITIAL_FETCH_TIMEOUT.as_secs()),
            }),
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(creds)) => {
                backoff.reset();
                match creds.expiration {
                    Some(exp) => {
                        let secs = (exp - Utc::now()).num_seconds();
                        info!(source = %source, expiration = %exp.to_rfc3339(), expires_in_secs = secs, "credentials refreshed");
                    }
                    None => info!(source = %source, "credentials refreshed (no expiration)"),
                }
            }
            Err(e) => {
                let mut delay = backoff.next_delay();
                let now = Instant::now();
                let still_valid_for = match target.next_refresh() {
                    NextRefresh::At { usable_until, .. } if usable_until > now => Some(usable_until - now),
                    _ => None,
                };
                if let Some(left) = still_valid_for {
                    delay = delay.min(left / 2).max(REFRESH_RETRY_MIN);
                }
                warn!(
                    source = %source,
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    still_valid_secs = still_valid_for.map(|d| d.as_secs()),
                    "credential refresh failed; will retry"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counting {
        calls: AtomicUsize,
        lifetime_secs: i64,
        delay: Duration,
        fail: AtomicBool,
    }

    #[async_trait]
    impl CredentialSource for Counting {
        async fn fetch(&self) -> Result<Credentials, AuthError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(AuthError::Unreachable {
                    source_name: "counting".into(),
                    message: "down".into(),
                });
            }
            Ok(Credentials::new(format!("AK{n}"), "secret")
                .with_token(format!("tok{n}"))
                .with_expiration(Utc::now() + chrono::Duration::seconds(self.lifetime_secs)))
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    fn counting(lifetime_secs: i64) -> Arc<CachingProvider<Counting>> {
        Arc::new(CachingProvider::new(Counting {
            calls: AtomicUsize::new(0),
            lifetime_secs,
            delay: Duration::from_millis(50),
            fail: AtomicBool::new(false),
        }))
    }

    #[tokio::test]
    async fn entry_deadlines_follow_lifetime() {
        let now = Instant::now();
        let e = CacheEntry::new(
            Credentials::new("a", "b").with_expiration(Utc::now() + chrono::Duration::seconds(3600)),
            now,
        );
        let usable = e.usable_until.unwrap() - now;
        let refresh = e.refresh_at.unwrap() - now;
        // margin min(60 s, 360 s) = 60 s; window min(900 s, 1200 s) = 900 s, jitter ≤ 90 s
        assert!(
            usable > Duration::from_secs(3535) && usable <= Duration::from_secs(3540),
            "{usable:?}"
        );
        assert!(
            refresh >= Duration::from_secs(2605) && refresh <= Duration::from_secs(2700),
            "{refresh:?}"
        );
        let e = CacheEntry::new(Credentials::new("a", "b"), now);
        assert!(e.is_usable(now + Duration::from_secs(1_000_000)) && !e.is_stale(now + Duration::from_secs(1_000_000)));
    }

    #[tokio::test]
    async fn cached_within_lifetime() {
        let p = counting(3600);
        let a = p.credentials().await.unwrap();
        let b = p.credentials().await.unwrap();
        assert_eq!(a.access_key_id, b.access_key_id);
        assert_eq!(p.fetch_attempts(), 1);
    }

    #[tokio::test]
    async fn rejection_of_stale_creds_is_a_noop() {
        let p = counting(3600);
        let a = p.credentials().await.unwrap();
        let b = p.refresh_after_rejection(&a).await.unwrap();
        assert_ne!(a.access_key_id, b.access_key_id);
        // Rejecting the old ones again must not fetch.
        let c = p.refresh_after_rejection(&a).await.unwrap();
        assert_eq!(b.access_key_id, c.access_key_id);
        assert_eq!(p.fetch_attempts(), 2);
    }
}
