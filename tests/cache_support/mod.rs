//! A minimal in-test `ObjectClient` for the cache tests: objects with deterministic,
//! position-dependent content generated on demand (no storage, so large objects are cheap),
//! GET counters, a log of requested ranges, the peak of bytes requested by GETs running at
//! once, optional latency and injected failures. Every other operation is unsupported.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use ossmount::client::*;
use ossmount::object::{ETag, ObjectId, ObjectMeta, ObjectType};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

#[derive(Clone)]
struct FakeObject {
    size: u64,
    etag: ETag,
    seed: u64,
}

/// What the next failing GETs should fail with.
#[derive(Clone, Copy, Debug)]
pub enum Failure {
    Transport,
    PreconditionFailed,
}

#[derive(Default)]
pub struct FakeClient {
    objects: Mutex<HashMap<String, FakeObject>>,
    latency: Mutex<Duration>,
    versions: AtomicU64,
    pub gets: AtomicU64,
    pub get_bytes: AtomicU64,
    outstanding_bytes: AtomicU64,
    pub max_outstanding_bytes: AtomicU64,
    running: AtomicU64,
    pub max_running: AtomicU64,
    requests: Mutex<Vec<(String, Range<u64>)>>,
    failures: Mutex<Vec<Failure>>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The content of an object with `seed` at `range`.
pub fn content(seed: u64, range: Range<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    let mut word = range.start / 8;
    let mut bytes = splitmix(word ^ seed.rotate_left(32)).to_le_bytes();
    for off in range {
        if off / 8 != word {
            word = off / 8;
            bytes = splitmix(word ^ seed.rotate_left(32)).to_le_bytes();
        }
        out.push(bytes[(off % 8) as usize]);
    }
    out
}

fn service(status: u16, code: &str) -> ServiceError {
    ServiceError {
        status,
        code: code.into(),
        message: "fake".into(),
        ec: None,
        request_id: None,
    }
}

fn unsupported<T>() -> Result<T, ClientError> {
    Err(ClientError::InvalidRequest("unsupported".into()))
}

impl FakeClient {
    pub fn new() -> Self {
        Self::default()
    }

    /// Create or replace `key` with `size` bytes of fresh content; returns its id (new ETag).
    pub fn put(&self, key: &str, size: u64) -> ObjectId {
        let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let etag = ETag::new(format!("\"etag-{version}\""));
        let seed = splitmix(version);
        self.objects.lock().unwrap().insert(
            key.to_string(),
            FakeObject {
                size,
                etag: etag.clone(),
                seed,
            },
        );
        ObjectId::new(key, etag)
    }

    /// The bytes `range` of the current version of `key`.
    pub fn expected(&self, key: &str, range: Range<u64>) -> Vec<u8> {
        let o = self.objects.lock().unwrap().get(key).cloned().unwrap();
        content(o.seed, range.start.min(o.size)..range.end.min(o.size))
    }

    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap() = latency;
    }

    /// The next GETs fail, in this order.
    pub fn fail_next(&self, failures: &[Failure]) {
        self.failures.lock().unwrap().extend(failures.iter().rev());
    }

    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }

    pub fn get_bytes(&self) -> u64 {
        self.get_bytes.load(Ordering::SeqCst)
    }

    pub fn max_outstanding_bytes(&self) -> u64 {
        self.max_outstanding_bytes.load(Ordering::SeqCst)
    }

    pub fn max_running(&self) -> u64 {
        self.max_running.load(Ordering::SeqCst)
    }

    /// Every GET range asked so far, in order.
    pub fn requests(&self) -> Vec<(String, Range<u64>)> {
        self.requests.lock().unwrap().clone()
    }
}

struct Outstanding<'a> {
    client: &'a FakeClient,
    bytes: u64,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.client.outstanding_bytes.fetch_sub(self.bytes, Ordering::SeqCst);
        self.client.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ObjectClient for FakeClient {
    async fn get_object(&self, params: GetObjectParams) -> Result<GetObjectResult, ClientError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let object = self.objects.lock().unwrap().get(&params.key).cloned();
        let Some(object) = object else {
            return Err(ClientError::NoSuchKey(service(404, "NoSuchKey")));
        };
        let range = params.range.clone().unwrap_or(0..object.size);
        self.requests.lock().unwrap().push((params.key.clone(), range.clone()));
        let end = range.end.min(object.size);
        if range.start >= object.size && object.size > 0 {
            return Err(ClientError::InvalidRange(service(416, "InvalidRange")));
        }
        let len = end.saturating_sub(range.start);
        let now = self.outstanding_bytes.fetch_add(len, Ordering::SeqCst) + len;
        self.max_outstanding_bytes.fetch_max(now, Ordering::SeqCst);
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(running, Ordering::SeqCst);
        let _outstanding = Outstanding {
            client: self,
            bytes: len,
        };
        let latency = *self.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let failure = self.failures.lock().unwrap().pop();
        match failure {
            Some(Failure::Transport) => return Err(ClientError::Transport("injected reset".into())),
            Some(Failure::PreconditionFailed) => {
                return Err(ClientError::PreconditionFailed(service(412, "PreconditionFailed")));
            }
            None => {}
        }
        if params.if_match.as_ref().is_some_and(|e| *e != object.etag) {
            return Err(ClientError::PreconditionFailed(service(412, "PreconditionFailed")));
        }
        let data = Bytes::from(content(object.seed, range.start..end));
        self.get_bytes.fetch_add(len, Ordering::SeqCst);
        Ok(GetObjectResult {
            meta: ObjectMeta {
                size: object.size,
                etag: object.etag.clone(),
                last_modified: SystemTime::UNIX_EPOCH,
                object_type: ObjectType::Normal,
                crc64: None,
                content_type: None,
                user_meta: Default::default(),
            },
            offset: range.start,
            data,
        })
    }
    async fn head_object(&self, _key: &str) -> Result<ObjectMeta, ClientError> {
        unsupported()
    }
    async fn list_objects(&self, _params: ListObjectsParams) -> Result<ListObjectsResult, ClientError> {
        unsupported()
    }
    async fn put_object(&self, _params: PutObjectParams) -> Result<PutObjectResult, ClientError> {
        unsupported()
    }
    async fn create_multipart_upload(&self, _params: CreateMultipartUploadParams) -> Result<String, ClientError> {
        unsupported()
    }
    async fn upload_part(&self, _params: UploadPartParams) -> Result<UploadedPart, ClientError> {
        unsupported()
    }
    async fn upload_part_copy(&self, _params: UploadPartCopyParams) -> Result<UploadedPart, ClientError> {
        unsupported()
    }
    async fn complete_multipart_upload(
        &self,
        _params: CompleteMultipartUploadParams,
    ) -> Result<PutObjectResult, ClientError> {
        unsupported()
    }
    async fn abort_multipart_upload(&self, _key: &str, _upload_id: &str) -> Result<(), ClientError> {
        unsupported()
    }
    async fn list_parts(&self, _key: &str, _upload_id: &str) -> Result<Vec<ListedPart>, ClientError> {
        unsupported()
    }
    async fn copy_object(&self, _params: CopyObjectParams) -> Result<CopyObjectResult, ClientError> {
        unsupported()
    }
    async fn delete_object(&self, _key: &str) -> Result<(), ClientError> {
        unsupported()
    }
    async fn delete_objects(&self, _keys: &[String]) -> Result<Vec<DeleteError>, ClientError> {
        unsupported()
    }
    async fn append_object(&self, _params: AppendObjectParams) -> Result<AppendObjectResult, ClientError> {
        unsupported()
    }
    async fn put_symlink(&self, _params: PutSymlinkParams) -> Result<ETag, ClientError> {
        unsupported()
    }
    async fn get_symlink(&self, _key: &str) -> Result<GetSymlinkResult, ClientError> {
        unsupported()
    }
    async fn get_bucket_info(&self) -> Result<BucketInfo, ClientError> {
        unsupported()
    }
}
