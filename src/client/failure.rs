//! `FailureClient<C>`: wraps any `ObjectClient` and injects faults, for tests of what the layers
//! above do when OSS misbehaves. Per operation kind (`MockOp`) a test can fail the n-th call
//! (1-based, counted from when the rule is added), fail every call, or add latency before the
//! call is passed on. Calls are counted per kind whether or not they fail.
//!
//! Errors are produced by a factory (`Fn() -> ClientError`) because `ClientError` is not `Clone`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::client::mock::{MockOp, OpCounters, service_error};
use crate::client::{
    AppendObjectParams, AppendObjectResult, BucketInfo, ClientError, CompleteMultipartUploadParams, CopyObjectParams,
    CopyObjectResult, CreateMultipartUploadParams, DeleteError, GetObjectParams, GetObjectResult, GetSymlinkResult,
    ListObjectsParams, ListObjectsResult, ListedPart, ObjectClient, PutObjectParams, PutObjectResult, PutSymlinkParams,
    UploadPartCopyParams, UploadPartParams, UploadedPart,
};
use crate::object::{ETag, ObjectMeta};

/// Builds the error an injected fault returns.
pub type ErrorFactory = Arc<dyn Fn() -> ClientError + Send + Sync>;

/// When a rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailWhen {
    /// Only the n-th matching call (1-based) after the rule was added.
    Nth(u64),
    /// Every matching call.
    Always,
}

struct Rule {
    op: MockOp,
    when: FailWhen,
    seen: AtomicU64,
    error: ErrorFactory,
}

/// A client that fails on command. See the module documentation.
pub struct FailureClient<C: ObjectClient> {
    inner: Arc<C>,
    rules: Mutex<Vec<Arc<Rule>>>,
    latency: Mutex<Vec<(Option<MockOp>, Duration)>>,
    counters: OpCounters,
    injected: AtomicU64,
    in_flight: [AtomicU64; MockOp::ALL.len()],
    max_in_flight: [AtomicU64; MockOp::ALL.len()],
}

/// Counts a call as in flight until dropped.
struct InFlight<'a> {
    gauge: &'a AtomicU64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<C: ObjectClient> std::fmt::Debug for FailureClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureClient")
            .field("injected", &self.injected.load(Ordering::SeqCst))
            .finish()
    }
}

/// A 500 InternalError, the usual injected fault.
pub fn internal_error() -> ClientError {
    ClientError::Service(service_error(500, "InternalError", "injected failure"))
}

/// A transport failure (what persists after the client's retries on a dead network).
pub fn transport_error() -> ClientError {
    ClientError::Transport("injected connection reset".to_string())
}

impl<C: ObjectClient> FailureClient<C> {
    pub fn new(inner: Arc<C>) -> Self {
        FailureClient {
            inner,
            rules: Mutex::new(Vec::new()),
            latency: Mutex::new(Vec::new()),
            counters: OpCounters::default(),
            injected: AtomicU64::new(0),
            in_flight: Default::default(),
            max_in_flight: Default::default(),
        }
    }

    /// The wrapped client.
    pub fn inner(&self) -> &Arc<C> {
        &self.inner
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Rule>>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_rule(&self, op: MockOp, when: FailWhen, error: impl Fn() -> ClientError + Send + Sync + 'static) {
        self.rules().push(Arc::new(Rule {
            op,
            when,
            seen: AtomicU64::new(0),
            error: Arc::new(error),
        }));
    }

    /// Fail the `n`-th call (1-based, counted from now) of `op` with `error()`.
    pub fn fail_nth(&self, op: MockOp, n: u64, error: impl Fn() -> ClientError + Send + Sync + 'static) {
        self.add_rule(op, FailWhen::Nth(n), error);
    }

    /// Fail every call of `op` with `error()`.
    pub fn fail_always(&self, op: MockOp, error: impl Fn() -> ClientError + Send + Sync + 'static) {
        self.add_rule(op, FailWhen::Always, error);
    }

    /// Add `delay` before every call of `op` (or of every operation when `op` is None).
    pub fn add_latency(&self, op: Option<MockOp>, delay: Duration) {
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).push((op, delay));
    }

    /// Remove every rule and latency.
    pub fn clear(&self) {
        self.rules().clear();
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Calls of `op` that reached this wrapper (failed or not).
    pub fn op_count(&self, op: MockOp) -> u64 {
        self.counters.get(op)
    }

    /// Calls that changed (or tried to change) the bucket.
    pub fn write_ops(&self) -> u64 {
        self.counters.writes()
    }

    /// Most calls of `op` that were in progress at the same time.
    pub fn max_in_flight(&self, op: MockOp) -> u64 {
        self.max_in_flight[op.index()].load(Ordering::SeqCst)
    }

    fn track(&self, op: MockOp) -> InFlight<'_> {
        let gauge = &self.in_flight[op.index()];
        let now = gauge.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight[op.index()].fetch_max(now, Ordering::SeqCst);
        InFlight { gauge }
    }

    /// How many faults were injected.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Count the call, sleep for configured latency, and return the injected error if a rule fires.
    async fn before(&self, op: MockOp) -> Result<(), ClientError> {
        self.counters.bump(op);
        let delay: Duration = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(o, _)| o.is_none() || *o == Some(op))
            .map(|(_, d)| *d)
            .sum();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let firing: Option<ErrorFactory> = {
            let rules = self.rules();
            let mut hit = None;
            for rule in rules.iter().filter(|r| r.op == op) {
                let n = rule.seen.fetch_add(1, Ordering::SeqCst) + 1;
                let fires = match rule.when {
                    FailWhen::Nth(k) => n == k,
                    FailWhen::Always => true,
                };
                if fires && hit.is_none() {
                    hit = Some(rule.error.clone());
                }
            }
            hit
        };
        match firing {
            Some(make) => {
                self.injected.fetch_add(1, Ordering::SeqCst);
                Err(make())
            }
            None => Ok(()),
        }
    }
}

#[async_trait]
impl<C: ObjectClient> ObjectClient for FailureClient<C> {
    async fn get_object(&self, params: GetObjectParams) -> Result<GetObjectResult, ClientError> {
        let _in_flight = self.track(MockOp::GetObject);
        self.before(MockOp::GetObject).await?;
        self.inner.get_object(params).await
    }
    async fn head_object(&self, key: &str) -> Result<ObjectMeta, ClientError> {
        let _in_flight = self.track(MockOp::HeadObject);
        self.before(MockOp::HeadObject).await?;
        self.inner.head_object(key).await
    }
    async fn list_objects(&self, params: ListObjectsParams) -> Result<ListObjectsResult, ClientError> {
        let _in_flight = self.track(MockOp::ListObjects);
        self.before(MockOp::ListObjects).await?;
        self.inner.list_objects(params).await
    }
    async fn put_object(&self, params: PutObjectParams) -> Result<PutObjectResult, ClientError> {
        let _in_flight = self.track(MockOp::PutObject);
        self.before(MockOp::PutObject).await?;
        self.inner.put_object(params).await
    }
    async fn create_multipart_upload(&self, params: CreateMultipartUploadParams) -> Result<String, ClientError> {
        let _in_flight = self.track(MockOp::CreateMultipartUpload);
        self.before(MockOp::CreateMultipartUpload).await?;
        self.inner.create_multipart_upload(params).await
    }
    async fn upload_part(&self, params: UploadPartParams) -> Result<UploadedPart, ClientError> {
        let _in_flight = self.track(MockOp::UploadPart);
        self.before(MockOp::UploadPart).await?;
        self.inner.upload_part(params).await
    }
    async fn upload_part_copy(&self, params: UploadPartCopyParams) -> Result<UploadedPart, ClientError> {
        let _in_flight = self.track(MockOp::UploadPartCopy);
        self.before(MockOp::UploadPartCopy).await?;
        self.inner.upload_part_copy(params).await
    }
    async fn complete_multipart_upload(
        &self,
        params: CompleteMultipartUploadParams,
    ) -> Result<PutObjectResult, ClientError> {
        let _in_flight = self.track(MockOp::CompleteMultipartUpload);
        self.before(MockOp::CompleteMultipartUpload).await?;
        self.inner.complete_multipart_upload(params).await
    }
    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ClientError> {
        let _in_flight = self.track(MockOp::AbortMultipartUpload);
        self.before(MockOp::AbortMultipartUpload).await?;
        self.inner.abort_multipart_upload(key, upload_id).await
    }
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<ListedPart>, ClientError> {
        let _in_flight = self.track(MockOp::ListParts);
        self.before(MockOp::ListParts).await?;
        self.inner.list_parts(key, upload_id).await
    }
    async fn copy_object(&self, params: CopyObjectParams) -> Result<CopyObjectResult, ClientError> {
        let _in_flight = self.track(MockOp::CopyObject);
        self.before(MockOp::CopyObject).await?;
        self.inner.copy_object(params).await
    }
    async fn delete_object(&self, key: &str) -> Result<(), ClientError> {
        let _in_flight = self.track(MockOp::DeleteObject);
        self.before(MockOp::DeleteObject).await?;
        self.inner.delete_object(key).await
    }
    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<DeleteError>, ClientError> {
        let _in_flight = self.track(MockOp::DeleteObjects);
        self.before(MockOp::DeleteObjects).await?;
        self.inner.delete_objects(keys).await
    }
    async fn append_object(&self, params: AppendObjectParams) -> Result<AppendObjectResult, ClientError> {
        let _in_flight = self.track(MockOp::AppendObject);
        self.before(MockOp::AppendObject).await?;
        self.inner.append_object(params).await
    }
    async fn put_symlink(&self, params: PutSymlinkParams) -> Result<ETag, ClientError> {
        let _in_flight = self.track(MockOp::PutSymlink);
        self.before(MockOp::PutSymlink).await?;
        self.inner.put_symlink(params).await
    }
    async fn get_symlink(&self, key: &str) -> Result<GetSymlinkResult, ClientError> {
        let _in_flight = self.track(MockOp::GetSymlink);
        self.before(MockOp::GetSymlink).await?;
        self.inner.get_symlink(key).await
    }
    async fn get_bucket_info(&self) -> Result<BucketInfo, ClientError> {
        let _in_flight = self.track(MockOp::GetBucketInfo);
        self.before(MockOp::GetBucketInfo).await?;
        self.inner.get_bucket_info().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::mock::{MockClient, MockObject};

    #[tokio::test]
    async fn nth_and_always_rules() {
        let mock = Arc::new(MockClient::new("b"));
        mock.add_object("k", MockObject::constant(7, 4));
        let f = FailureClient::new(mock.clone());
        f.fail_nth(MockOp::HeadObject, 2, internal_error);
        assert!(f.head_object("k").await.is_ok());
        assert!(matches!(f.head_object("k").await, Err(ClientError::Service(ref e)) if e.status == 500));
        assert!(f.head_object("k").await.is_ok());
        f.fail_always(MockOp::GetObject, transport_error);
        for _ in 0..3 {
            assert!(matches!(
                f.get_object(GetObjectParams::new("k")).await,
                Err(ClientError::Transport(_))
            ));
        }
        assert_eq!(f.op_count(MockOp::HeadObject), 3);
        assert_eq!(mock.op_count(MockOp::HeadObject), 2);
        assert_eq!(mock.op_count(MockOp::GetObject), 0);
        assert_eq!(f.injected(), 4);
        f.clear();
        assert!(f.get_object(GetObjectParams::new("k")).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_added() {
        let mock = Arc::new(MockClient::new("b"));
        let f = FailureClient::new(mock);
        f.add_latency(Some(MockOp::ListObjects), Duration::from_secs(2));
        let start = tokio::time::Instant::now();
        f.list_objects(ListObjectsParams::new("")).await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(2));
    }
}
