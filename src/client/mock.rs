//! `MockClient`: an in-memory OSS bucket implementing the whole `ObjectClient` trait, for tests
//! of every layer above the client. It follows the OSS rules the filesystem relies on: listings
//! ordered by key bytes with prefix, delimiter, continuation token, start-after and max-keys;
//! ranges clamped at the end and `InvalidRange` when they start beyond it (empty objects give
//! empty data); `If-Match` → `PreconditionFailed`; multipart uploads with part-number, order and
//! size checks at completion; CopyObject with COPY/REPLACE metadata; AppendObject position
//! rules; symlinks; `x-oss-forbid-overwrite`; a new ETag on every write; CRC-64 on every object.
//!
//! Every call is counted per operation (`op_count(MockOp::GetObject)`), so a test can assert
//! that a workload issued exactly the requests it should (and no write at all on a read-only
//! mount). Objects can be inserted and inspected directly.
//!
//! The state sits behind one `std::sync::Mutex` that is never held across an `.await` (no method
//! awaits while holding it).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::client::{
    AppendObjectParams, AppendObjectResult, BucketInfo, ClientError, CompleteMultipartUploadParams, CopyObjectParams,
    CopyObjectResult, CreateMultipartUploadParams, DeleteError, GetObjectParams, GetObjectResult, GetSymlinkResult,
    ListObjectsParams, ListObjectsResult, ListedObject, ListedPart, MAX_DELETE_KEYS, MAX_LIST_KEYS, MAX_PARTS,
    MIN_PART_SIZE_BYTES, MetadataDirective, ObjectClient, PutObjectParams, PutObjectResult, PutSymlinkParams,
    ServiceError, UploadPartCopyParams, UploadPartParams, UploadedPart,
};
use crate::crc64;
use crate::object::{ETag, ObjectMeta, ObjectType, UserMeta};

/// The kinds of `ObjectClient` calls, for counters and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MockOp {
    GetObject,
    HeadObject,
    ListObjects,
    PutObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    CopyObject,
    DeleteObject,
    DeleteObjects,
    AppendObject,
    PutSymlink,
    GetSymlink,
    GetBucketInfo,
}

impl MockOp {
    /// Every operation, in declaration order.
    pub const ALL: [MockOp; 17] = [
        MockOp::GetObject,
        MockOp::HeadObject,
        MockOp::ListObjects,
        MockOp::PutObject,
        MockOp::CreateMultipartUpload,
        MockOp::UploadPart,
        MockOp::UploadPartCopy,
        MockOp::CompleteMultipartUpload,
        MockOp::AbortMultipartUpload,
        MockOp::ListParts,
        MockOp::CopyObject,
        MockOp::DeleteObject,
        MockOp::DeleteObjects,
        MockOp::AppendObject,
        MockOp::PutSymlink,
        MockOp::GetSymlink,
        MockOp::GetBucketInfo,
    ];

    /// Index into per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the operation changes the bucket (or starts/ends a change).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            MockOp::PutObject
                | MockOp::CreateMultipartUpload
                | MockOp::UploadPart
                | MockOp::UploadPartCopy
                | MockOp::CompleteMultipartUpload
                | MockOp::AbortMultipartUpload
                | MockOp::CopyObject
                | MockOp::DeleteObject
                | MockOp::DeleteObjects
                | MockOp::AppendObject
                | MockOp::PutSymlink
        )
    }
}

/// Per-operation call counters (shared by `MockClient` and `FailureClient`).
#[derive(Debug, Default)]
pub struct OpCounters {
    counts: [AtomicU64; MockOp::ALL.len()],
}

impl OpCounters {
    /// Count one call of `op`; returns the 1-based number of this call.
    pub fn bump(&self, op: MockOp) -> u64 {
        self.counts[op.index()].fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self, op: MockOp) -> u64 {
        self.counts[op.index()].load(Ordering::SeqCst)
    }
    pub fn total(&self) -> u64 {
        MockOp::ALL.iter().map(|op| self.get(*op)).sum()
    }
    pub fn writes(&self) -> u64 {
        MockOp::ALL
            .iter()
            .filter(|op| op.is_write())
            .map(|op| self.get(*op))
            .sum()
    }
    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::SeqCst);
        }
    }
}

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockObject {
    pub data: Bytes,
    pub etag: ETag,
    pub last_modified: SystemTime,
    pub object_type: ObjectType,
    pub content_type: Option<String>,
    pub user_meta: UserMeta,
    /// Target key of a symlink object.
    pub symlink_target: Option<String>,
    /// CRC-64 of `data`, computed when the object is stored (GET/HEAD report it without
    /// rescanning the data).
    pub crc64: u64,
}

impl MockObject {
    /// A Normal object with these bytes (the ETag is assigned when it is stored).
    pub fn from_bytes(data: impl Into<Bytes>) -> Self {
        MockObject {
            data: data.into(),
            etag: ETag::new("\"\""),
            last_modified: SystemTime::now(),
            object_type: ObjectType::Normal,
            content_type: None,
            user_meta: UserMeta::new(),
            symlink_target: None,
            crc64: 0,
        }
    }

    /// `size` bytes of `byte`.
    pub fn constant(byte: u8, size: usize) -> Self {
        Self::from_bytes(vec![byte; size])
    }

    /// `size` deterministic bytes derived from `seed` (see `ramp_bytes`).
    pub fn ramp(seed: u8, size: usize) -> Self {
        Self::from_bytes(ramp_bytes(seed, size))
    }

    pub fn with_user_meta(mut self, meta: UserMeta) -> Self {
        self.user_meta = meta;
        self
    }

    pub fn with_last_modified(mut self, t: SystemTime) -> Self {
        self.last_modified = t;
        self
    }

    pub fn with_object_type(mut self, t: ObjectType) -> Self {
        self.object_type = t;
        self
    }

    /// A symlink object pointing at `target`.
    pub fn symlink(target: impl Into<String>) -> Self {
        let mut o = Self::from_bytes(Bytes::new());
        o.object_type = ObjectType::Symlink;
        o.symlink_target = Some(target.into());
        o
    }

    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            size: self.data.len() as u64,
            etag: self.etag.clone(),
            last_modified: self.last_modified,
            object_type: self.object_type,
            crc64: Some(self.crc64),
            content_type: self.content_type.clone(),
            user_meta: self.user_meta.clone(),
        }
    }
}

/// Deterministic test bytes: byte `i` of a ramp with `seed` is `seed + i*31 + i/251` (mod 256),
/// so shifted or reordered data never compares equal by accident.
pub fn ramp_bytes(seed: u8, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| {
            seed.wrapping_add((i as u8).wrapping_mul(31))
                .wrapping_add((i / 251) as u8)
        })
        .collect()
}

/// A `ServiceError` as the mock (and tests injecting faults) build them.
pub fn service_error(status: u16, code: &str, message: &str) -> ServiceError {
    ServiceError {
        status,
        code: code.to_string(),
        message: message.to_string(),
        ec: None,
        request_id: Some("mock".to_string()),
    }
}

fn no_such_key(key: &str) -> ClientError {
    ClientError::NoSuchKey(service_error(
        404,
        "NoSuchKey",
        &format!("The specified key does not exist: {key}"),
    ))
}

fn no_such_upload(upload_id: &str) -> ClientError {
    ClientError::NoSuchKey(service_error(
        404,
        "NoSuchUpload",
        &format!("The specified upload does not exist: {upload_id}"),
    ))
}

fn already_exists(key: &str) -> ClientError {
    ClientError::AlreadyExists(service_error(
        409,
        "FileAlreadyExists",
        &format!("The object already exists: {key}"),
    ))
}

fn bad_request(code: &str, message: &str) -> ClientError {
    ClientError::Service(service_error(400, code, message))
}

#[derive(Debug)]
struct MockUpload {
    key: String,
    content_type: Option<String>,
    user_meta: UserMeta,
    parts: BTreeMap<u32, (ETag, Bytes)>,
}

#[derive(Debug, Default)]
struct MockState {
    objects: BTreeMap<String, MockObject>,
    uploads: HashMap<String, MockUpload>,
    next_id: u64,
}

impl MockState {
    fn new_etag(&mut self, data: &[u8]) -> ETag {
        self.next_id += 1;
        ETag::new(format!("\"{:016X}{:016X}\"", self.next_id, data.len()))
    }

    fn store(&mut self, key: &str, object: MockObject) -> ETag {
        let crc = crc64::checksum(&object.data);
        self.store_with_crc(key, object, crc)
    }

    /// Store with the CRC-64 already known (saves a pass over large data).
    fn store_with_crc(&mut self, key: &str, mut object: MockObject, crc: u64) -> ETag {
        object.etag = self.new_etag(&object.data);
        object.crc64 = crc;
        object.last_modified = SystemTime::now();
        let etag = object.etag.clone();
        self.objects.insert(key.to_string(), object);
        etag
    }

    /// The object a GET/HEAD of `key` reads: symlinks are followed (one level, as OSS does).
    fn resolve(&self, key: &str) -> Result<&MockObject, ClientError> {
        let object = self.objects.get(key).ok_or_else(|| no_such_key(key))?;
        match (&object.object_type, &object.symlink_target) {
            (ObjectType::Symlink, Some(target)) => self.objects.get(target).ok_or_else(|| no_such_key(target)),
            _ => Ok(object),
        }
    }
}

/// An in-memory bucket. See the module documentation.
#[derive(Debug)]
pub struct MockClient {
    bucket: String,
    state: Mutex<MockState>,
    counters: OpCounters,
    min_part_size_bytes: AtomicU64,
}

impl MockClient {
    pub fn new(bucket: impl Into<String>) -> Self {
        MockClient {
            bucket: bucket.into(),
            state: Mutex::new(MockState::default()),
            counters: OpCounters::default(),
            min_part_size_bytes: AtomicU64::new(MIN_PART_SIZE_BYTES),
        }
    }

    /// Lower (or raise) the minimum size of non-final parts checked at completion, so tests can
    /// use small parts. OSS enforces `MIN_PART_SIZE_BYTES`, the default.
    pub fn set_min_part_size(&self, bytes: u64) {
        self.min_part_size_bytes.store(bytes, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MockState> {
        // A panic while holding the lock can only come from a bug in this file; the state is
        // still consistent (every mutation is a single insert/remove), so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Store an object directly (not counted); returns its new ETag.
    pub fn add_object(&self, key: &str, object: MockObject) -> ETag {
        let last_modified = object.last_modified;
        let mut state = self.lock();
        let etag = state.store(key, object);
        if let Some(o) = state.objects.get_mut(key) {
            o.last_modified = last_modified;
        }
        etag
    }

    /// A copy of the stored object (not counted).
    pub fn object(&self, key: &str) -> Option<MockObject> {
        self.lock().objects.get(key).cloned()
    }

    /// The stored bytes of `key` (not counted).
    pub fn object_data(&self, key: &str) -> Option<Bytes> {
        self.lock().objects.get(key).map(|o| o.data.clone())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.lock().objects.contains_key(key)
    }

    /// Remove an object directly (not counted).
    pub fn remove_object(&self, key: &str) -> Option<MockObject> {
        self.lock().objects.remove(key)
    }

    /// Every key, in listing order.
    pub fn keys(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    /// Multipart uploads started and neither completed nor aborted: (key, upload id).
    pub fn in_progress_uploads(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .lock()
            .uploads
            .iter()
            .map(|(id, u)| (u.key.clone(), id.clone()))
            .collect();
        v.sort();
        v
    }

    /// Calls of `op` so far.
    pub fn op_count(&self, op: MockOp) -> u64 {
        self.counters.get(op)
    }

    /// All calls so far.
    pub fn total_ops(&self) -> u64 {
        self.counters.total()
    }

    /// Calls that change the bucket.
    pub fn write_ops(&self) -> u64 {
        self.counters.writes()
    }

    pub fn reset_counts(&self) {
        self.counters.reset()
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

fn check_key(key: &str) -> Result<(), ClientError> {
    if key.is_empty() {
        return Err(bad_request("InvalidObjectName", "The Object name can not be empty"));
    }
    if key.len() > 1023 {
        return Err(bad_request(
            "InvalidObjectName",
            "The Length of Object name must be less than 1024",
        ));
    }
    Ok(())
}

fn clamp_range(size: u64, range: &Range<u64>) -> Result<Range<u64>, ClientError> {
    if range.start >= size && size > 0 {
        return Err(ClientError::InvalidRange(service_error(
            416,
            "InvalidRange",
            "The requested range cannot be satisfied",
        )));
    }
    let start = range.start.min(size);
    let end = range.end.min(size).max(start);
    Ok(start..end)
}

/// One item of a listing in key order: an object or a rolled-up common prefix.
enum ListItem<'a> {
    Object(&'a str, &'a MockObject),
    Prefix(String),
}

#[async_trait]
impl ObjectClient for MockClient {
    async fn get_object(&self, params: GetObjectParams) -> Result<GetObjectResult, ClientError> {
        self.counters.bump(MockOp::GetObject);
        let state = self.lock();
        let object = state.resolve(&params.key)?;
        if let Some(etag) = &params.if_match {
            if *etag != object.etag {
                return Err(ClientError::PreconditionFailed(service_error(
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                )));
            }
        }
        let size = object.data.len() as u64;
        let range = match &params.range {
            Some(r) => clamp_range(size, r)?,
            None => 0..size,
        };
        Ok(GetObjectResult {
            meta: object.meta(),
            offset: range.start,
            data: object.data.slice(range.start as usize..range.end as usize),
        })
    }

    async fn head_object(&self, key: &str) -> Result<ObjectMeta, ClientError> {
        self.counters.bump(MockOp::HeadObject);
        let state = self.lock();
        let object = state.objects.get(key).ok_or_else(|| no_such_key(key))?;
        if object.object_type == ObjectType::Symlink {
            // HEAD follows the link like GET; the metadata is the target's.
            return Ok(state.resolve(key)?.meta());
        }
        Ok(object.meta())
    }

    async fn list_objects(&self, params: ListObjectsParams) -> Result<ListObjectsResult, ClientError> {
        self.counters.bump(MockOp::ListObjects);
        let max_keys = match params.max_keys {
            0 => MAX_LIST_KEYS,
            n if n > MAX_LIST_KEYS => {
                return Err(bad_request("InvalidArgument", "max-keys must be between 1 and 1000"));
            }
            n => n,
        };
        // The continuation token is the last item returned ("o:" key or "p:" common prefix).
        let (after, skip_prefix) = match &params.continuation_token {
            Some(token) => match (token.strip_prefix("o:"), token.strip_prefix("p:")) {
                (Some(key), _) => (Some(key.to_string()), None),
                (None, Some(prefix)) => (Some(prefix.to_string()), Some(prefix.to_string())),
                (None, None) => return Err(bad_request("InvalidArgument", "invalid continuation token")),
            },
            None => (params.start_after.clone(), None),
        };
        let state = self.lock();
        let mut result = ListObjectsResult::default();
        let mut count = 0usize;
        let mut last_prefix: Option<String> = None;
        let lower = match &after {
            Some(a) => std::ops::Bound::Excluded(a.clone()),
            None => std::ops::Bound::Included(params.prefix.clone()),
        };
        let iter = state
            .objects
            .range::<String, _>((lower, std::ops::Bound::Unbounded))
            .skip_while(|(k, _)| !k.starts_with(&params.prefix) && k.as_str() < params.prefix.as_str())
            .take_while(|(k, _)| k.starts_with(&params.prefix));
        let mut last_item: Option<String> = None;
        for (key, object) in iter {
            if let Some(p) = &skip_prefix {
                if key.starts_with(p.as_str()) {
                    continue;
                }
            }
            let item = match params.delimiter.as_deref().filter(|d| !d.is_empty()) {
                Some(d) => match key[params.prefix.len()..].find(d) {
                    Some(i) => ListItem::Prefix(key[..params.prefix.len() + i + d.len()].to_string()),
                    None => ListItem::Object(key, object),
                },
                None => ListItem::Object(key, object),
            };
            if let ListItem::Prefix(p) = &item {
                if last_prefix.as_deref() == Some(p.as_str()) {
                    continue;
                }
            }
            if count == max_keys {
                result.next_continuation_token = last_item.take();
                return Ok(result);
            }
            count += 1;
            match item {
                ListItem::Object(key, object) => {
                    result.objects.push(ListedObject {
                        key: key.to_string(),
                        size: object.data.len() as u64,
                        etag: object.etag.clone(),
                        last_modified: object.last_modified,
                        object_type: object.object_type,
                    });
                    last_item = Some(format!("o:{key}"));
                }
                ListItem::Prefix(p) => {
                    last_item = Some(format!("p:{p}"));
                    result.common_prefixes.push(p.clone());
                    last_prefix = Some(p);
                }
            }
        }
        Ok(result)
    }

    async fn put_object(&self, params: PutObjectParams) -> Result<PutObjectResult, ClientError> {
        self.counters.bump(MockOp::PutObject);
        check_key(&params.key)?;
        let mut state = self.lock();
        if params.forbid_overwrite && state.objects.contains_key(&params.key) {
            return Err(already_exists(&params.key));
        }
        let crc64 = crc64::checksum(&params.body);
        let mut object = MockObject::from_bytes(params.body);
        object.content_type = params.content_type;
        object.user_meta = params.user_meta;
        let etag = state.store_with_crc(&params.key, object, crc64);
        Ok(PutObjectResult { etag, crc64 })
    }

    async fn create_multipart_upload(&self, params: CreateMultipartUploadParams) -> Result<String, ClientError> {
        self.counters.bump(MockOp::CreateMultipartUpload);
        check_key(&params.key)?;
        let mut state = self.lock();
        state.next_id += 1;
        let upload_id = format!("mock-upload-{}", state.next_id);
        state.uploads.insert(
            upload_id.clone(),
            MockUpload {
                key: params.key,
                content_type: params.content_type,
                user_meta: params.user_meta,
                parts: BTreeMap::new(),
            },
        );
        Ok(upload_id)
    }

    async fn upload_part(&self, params: UploadPartParams) -> Result<UploadedPart, ClientError> {
        self.counters.bump(MockOp::UploadPart);
        if params.part_number == 0 || params.part_number > MAX_PARTS {
            return Err(bad_request(
                "InvalidArgument",
                "Part number must be an integer between 1 and 10000, inclusive.",
            ));
        }
        let mut state = self.lock();
        let etag = state.new_etag(&params.body);
        let upload = state
            .uploads
            .get_mut(&params.upload_id)
            .ok_or_else(|| no_such_upload(&params.upload_id))?;
        if upload.key != params.key {
            return Err(no_such_upload(&params.upload_id));
        }
        let size = params.body.len() as u64;
        let crc = crc64::checksum(&params.body);
        upload.parts.insert(params.part_number, (etag.clone(), params.body));
        Ok(UploadedPart {
            part_number: params.part_number,
            etag,
            crc64: Some(crc),
            size,
        })
    }

    async fn upload_part_copy(&self, params: UploadPartCopyParams) -> Result<UploadedPart, ClientError> {
        self.counters.bump(MockOp::UploadPartCopy);
        if params.part_number == 0 || params.part_number > MAX_PARTS {
            return Err(bad_request(
                "InvalidArgument",
                "Part number must be an integer between 1 and 10000, inclusive.",
            ));
        }
        let mut state = self.lock();
        let source = state
            .objects
            .get(&params.source_key)
            .ok_or_else(|| no_such_key(&params.source_key))?;
        if let Some(etag) = &params.source_if_match {
            if *etag != source.etag {
                return Err(ClientError::PreconditionFailed(service_error(
                    412,
                    "PreconditionFailed",
                    "copy source changed",
                )));
            }
        }
        if source.object_type == ObjectType::Appendable {
            return Err(bad_request(
                "InvalidArgument",
                "appendable objects cannot be copied by parts",
            ));
        }
        let size = source.data.len() as u64;
        let range = match &params.source_range {
            Some(r) if r.start >= size || r.end > size || r.start >= r.end => {
                return Err(ClientError::InvalidRange(service_error(
                    416,
                    "InvalidRange",
                    "bad copy source range",
                )));
            }
            Some(r) => r.clone(),
            None => 0..size,
        };
        let body = source.data.slice(range.start as usize..range.end as usize);
        let etag = state.new_etag(&body);
        let upload = state
            .uploads
            .get_mut(&params.upload_id)
            .ok_or_else(|| no_such_upload(&params.upload_id))?;
        let crc = crc64::checksum(&body);
        let size = body.len() as u64;
        upload.parts.insert(params.part_number, (etag.clone(), body));
        Ok(UploadedPart {
            part_number: params.part_number,
            etag,
            crc64: Some(crc),
            size,
        })
    }

    async fn complete_multipart_upload(
        &self,
        params: CompleteMultipartUploadParams,
    ) -> Result<PutObjectResult, ClientError> {
        self.counters.bump(MockOp::CompleteMultipartUpload);
        let min_part = self.min_part_size_bytes.load(Ordering::SeqCst);
        let mut state = self.lock();
        let upload = state
            .uploads
            .get(&params.upload_id)
            .ok_or_else(|| no_such_upload(&params.upload_id))?;
        if upload.key != params.key {
            return Err(no_such_upload(&params.upload_id));
        }
        if params.parts.is_empty() {
            return Err(bad_request("MalformedXML", "no parts"));
        }
        if params.parts.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
            return Err(bad_request(
                "InvalidPartOrder",
                "The list of parts was not in ascending order.",
            ));
        }
        let mut data = BytesMut::new();
        for (i, part) in params.parts.iter().enumerate() {
            let (etag, body) = upload
                .parts
                .get(&part.part_number)
                .ok_or_else(|| bad_request("InvalidPart", "One or more of the specified parts could not be found"))?;
            if *etag != part.etag {
                return Err(bad_request(
                    "InvalidPart",
                    "One or more of the specified parts could not be found",
                ));
            }
            if i + 1 < params.parts.len() && (body.len() as u64) < min_part {
                return Err(bad_request(
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed size.",
                ));
            }
            data.extend_from_slice(body);
        }
        if params.forbid_overwrite && state.objects.contains_key(&params.key) {
            return Err(already_exists(&params.key));
        }
        let Some(upload) = state.uploads.remove(&params.upload_id) else {
            return Err(no_such_upload(&params.upload_id));
        };
        let data = data.freeze();
        let crc64 = crc64::checksum(&data);
        let mut object = MockObject::from_bytes(data);
        object.object_type = ObjectType::Multipart;
        object.content_type = upload.content_type;
        object.user_meta = upload.user_meta;
        let etag = state.store_with_crc(&params.key, object, crc64);
        Ok(PutObjectResult { etag, crc64 })
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ClientError> {
        self.counters.bump(MockOp::AbortMultipartUpload);
        let mut state = self.lock();
        match state.uploads.get(upload_id) {
            Some(u) if u.key == key => {
                state.uploads.remove(upload_id);
                Ok(())
            }
            _ => Err(no_such_upload(upload_id)),
        }
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<ListedPart>, ClientError> {
        self.counters.bump(MockOp::ListParts);
        let state = self.lock();
        let upload = state
            .uploads
            .get(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(|| no_such_upload(upload_id))?;
        Ok(upload
            .parts
            .iter()
            .map(|(n, (etag, body))| ListedPart {
                part_number: *n,
                etag: etag.clone(),
                size: body.len() as u64,
                crc64: Some(crc64::checksum(body)),
            })
            .collect())
    }

    async fn copy_object(&self, params: CopyObjectParams) -> Result<CopyObjectResult, ClientError> {
        self.counters.bump(MockOp::CopyObject);
        check_key(&params.dest_key)?;
        let mut state = self.lock();
        let source = state
            .objects
            .get(&params.source_key)
            .ok_or_else(|| no_such_key(&params.source_key))?;
        if let Some(etag) = &params.source_if_match {
            if *etag != source.etag {
                return Err(ClientError::PreconditionFailed(service_error(
                    412,
                    "PreconditionFailed",
                    "copy source changed",
                )));
            }
        }
        let mut object = source.clone();
        if params.forbid_overwrite && state.objects.contains_key(&params.dest_key) {
            return Err(already_exists(&params.dest_key));
        }
        if let MetadataDirective::Replace {
            content_type,
            user_meta,
        } = params.metadata
        {
            object.content_type = content_type;
            object.user_meta = user_meta;
        }
        if object.object_type == ObjectType::Appendable {
            object.object_type = ObjectType::Normal;
        }
        let crc = object.crc64;
        let etag = state.store_with_crc(&params.dest_key, object, crc);
        Ok(CopyObjectResult { etag, crc64: Some(crc) })
    }

    async fn delete_object(&self, key: &str) -> Result<(), ClientError> {
        self.counters.bump(MockOp::DeleteObject);
        self.lock().objects.remove(key);
        Ok(())
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<DeleteError>, ClientError> {
        self.counters.bump(MockOp::DeleteObjects);
        if keys.is_empty() || keys.len() > MAX_DELETE_KEYS {
            return Err(bad_request("MalformedXML", "between 1 and 1000 keys per request"));
        }
        let mut state = self.lock();
        for key in keys {
            state.objects.remove(key);
        }
        Ok(Vec::new())
    }

    async fn append_object(&self, params: AppendObjectParams) -> Result<AppendObjectResult, ClientError> {
        self.counters.bump(MockOp::AppendObject);
        check_key(&params.key)?;
        let mut state = self.lock();
        let existing = state.objects.get(&params.key);
        let (mut data, mut object) = match existing {
            None if params.position == 0 => {
                let mut o = MockObject::from_bytes(Bytes::new());
                o.object_type = ObjectType::Appendable;
                o.content_type = params.content_type.clone();
                o.user_meta = params.user_meta.clone();
                (BytesMut::new(), o)
            }
            None => {
                return Err(ClientError::AppendPositionMismatch {
                    error: service_error(409, "PositionNotEqualToLength", "Position is not equal to file length"),
                    next_position: Some(0),
                });
            }
            Some(o) if o.object_type != ObjectType::Appendable => {
                return Err(ClientError::NotAppendable(service_error(
                    409,
                    "ObjectNotAppendable",
                    "The object is not appendable",
                )));
            }
            Some(o) if o.data.len() as u64 != params.position => {
                return Err(ClientError::AppendPositionMismatch {
                    error: service_error(409, "PositionNotEqualToLength", "Position is not equal to file length"),
                    next_position: Some(o.data.len() as u64),
                });
            }
            Some(o) => (BytesMut::from(&o.data[..]), o.clone()),
        };
        if let Some(init) = params.init_crc64 {
            let actual = crc64::checksum(&data);
            if init != actual {
                return Err(ClientError::Integrity {
                    what: params.key.clone(),
                    expected: init,
                    actual,
                });
            }
        }
        data.extend_from_slice(&params.body);
        object.data = data.freeze();
        let next_position = object.data.len() as u64;
        let crc = crc64::checksum(&object.data);
        state.store_with_crc(&params.key, object, crc);
        Ok(AppendObjectResult {
            next_position,
            crc64: Some(crc),
        })
    }

    async fn put_symlink(&self, params: PutSymlinkParams) -> Result<ETag, ClientError> {
        self.counters.bump(MockOp::PutSymlink);
        check_key(&params.key)?;
        let mut state = self.lock();
        if params.forbid_overwrite && state.objects.contains_key(&params.key) {
            return Err(already_exists(&params.key));
        }
        let object = MockObject::symlink(params.target).with_user_meta(params.user_meta);
        Ok(state.store(&params.key, object))
    }

    async fn get_symlink(&self, key: &str) -> Result<GetSymlinkResult, ClientError> {
        self.counters.bump(MockOp::GetSymlink);
        let state = self.lock();
        let object = state.objects.get(key).ok_or_else(|| no_such_key(key))?;
        match (&object.object_type, &object.symlink_target) {
            (ObjectType::Symlink, Some(target)) => Ok(GetSymlinkResult {
                target: target.clone(),
                etag: object.etag.clone(),
                last_modified: object.last_modified,
                user_meta: object.user_meta.clone(),
            }),
            _ => Err(bad_request("NotSymlink", "The specified object is not a symlink")),
        }
    }

    async fn get_bucket_info(&self) -> Result<BucketInfo, ClientError> {
        self.counters.bump(MockOp::GetBucketInfo);
        Ok(BucketInfo {
            name: self.bucket.clone(),
            location: "oss-cn-hangzhou".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    #[test]
    fn list_pages_with_delimiter_and_tokens() {
        let m = MockClient::new("b");
        for k in ["a", "b/1", "b/2", "c", "d/x/y", "e"] {
            m.add_object(k, MockObject::constant(1, 3));
        }
        rt().block_on(async {
            let mut token = None;
            let mut seen = Vec::new();
            loop {
                let page = m
                    .list_objects(
                        ListObjectsParams::new("")
                            .delimiter("/")
                            .max_keys(2)
                            .continuation_token(token),
                    )
                    .await
                    .unwrap();
                assert!(page.objects.len() + page.common_prefixes.len() <= 2);
                seen.extend(page.objects.iter().map(|o| o.key.clone()));
                seen.extend(page.common_prefixes.iter().cloned());
                token = page.next_continuation_token;
                if token.is_none() {
                    break;
                }
            }
            seen.sort();
            assert_eq!(seen, ["a", "b/", "c", "d/", "e"]);
            assert_eq!(m.op_count(MockOp::ListObjects), 3);
            let page = m
                .list_objects(ListObjectsParams::new("b/").start_after("b/1"))
                .await
                .unwrap();
            assert_eq!(page.objects.len(), 1);
            assert_eq!(page.objects[0].key, "b/2");
        });
    }

    #[test]
    fn ranges_and_preconditions() {
        let m = MockClient::new("b");
        let etag = m.add_object("k", MockObject::ramp(0, 10));
        m.add_object("empty", MockObject::from_bytes(Bytes::new()));
        rt().block_on(async {
            let r = m.get_object(GetObjectParams::new("k").range(8..100)).await.unwrap();
            assert_eq!(r.data.len(), 2);
            assert!(matches!(
                m.get_object(GetObjectParams::new("k").range(10..12)).await,
                Err(ClientError::InvalidRange(_))
            ));
            assert!(
                m.get_object(GetObjectParams::new("empty").range(0..12))
                    .await
                    .unwrap()
                    .data
                    .is_empty()
            );
            assert!(
                m.get_object(GetObjectParams::new("k").if_match(etag.clone()))
                    .await
                    .is_ok()
            );
            m.put_object(PutObjectParams::new("k", Bytes::from_static(b"new")))
                .await
                .unwrap();
            assert!(matches!(
                m.get_object(GetObjectParams::new("k").if_match(etag)).await,
                Err(ClientError::PreconditionFailed(_))
            ));
        });
    }

    #[test]
    fn multipart_checks_order_and_size() {
        let m = MockClient::new("b");
        rt().block_on(async {
            let id = m
                .create_multipart_upload(CreateMultipartUploadParams::new("k"))
                .await
                .unwrap();
            let small = |n| UploadPartParams {
                key: "k".into(),
                upload_id: id.clone(),
                part_number: n,
                body: Bytes::from_static(b"xy"),
            };
            let p1 = m.upload_part(small(1)).await.unwrap();
            let p2 = m.upload_part(small(2)).await.unwrap();
            let complete = |parts: Vec<UploadedPart>| CompleteMultipartUploadParams {
                key: "k".into(),
                upload_id: id.clone(),
                parts,
                forbid_overwrite: false,
            };
            let err = m
                .complete_multipart_upload(complete(vec![p2.clone(), p1.clone()]))
                .await
                .unwrap_err();
            assert!(matches!(err, ClientError::Service(ref e) if e.code == "InvalidPartOrder"));
            let err = m
                .complete_multipart_upload(complete(vec![p1.clone(), p2.clone()]))
                .await
                .unwrap_err();
            assert!(matches!(err, ClientError::Service(ref e) if e.code == "EntityTooSmall"));
            m.set_min_part_size(1);
            let r = m.complete_multipart_upload(complete(vec![p1, p2])).await.unwrap();
            assert_eq!(r.crc64, crc64::checksum(b"xyxy"));
            assert_eq!(m.object_data("k").unwrap(), Bytes::from_static(b"xyxy"));
            assert!(m.in_progress_uploads().is_empty());
        });
    }

    #[test]
    fn append_rules_and_symlinks() {
        let m = MockClient::new("b");
        rt().block_on(async {
            let p = |pos, body: &'static [u8]| AppendObjectParams {
                key: "a".into(),
                position: pos,
                body: Bytes::from_static(body),
                ..Default::default()
            };
            assert_eq!(m.append_object(p(0, b"abc")).await.unwrap().next_position, 3);
            let err = m.append_object(p(1, b"x")).await.unwrap_err();
            assert!(matches!(
                err,
                ClientError::AppendPositionMismatch {
                    next_position: Some(3),
                    ..
                }
            ));
            m.put_object(PutObjectParams::new("n", Bytes::new())).await.unwrap();
            let mut q = p(0, b"x");
            q.key = "n".into();
            assert!(matches!(m.append_object(q).await, Err(ClientError::NotAppendable(_))));
            m.put_symlink(PutSymlinkParams {
                key: "l".into(),
                target: "a".into(),
                ..Default::default()
            })
            .await
            .unwrap();
            assert_eq!(m.get_symlink("l").await.unwrap().target, "a");
            assert_eq!(
                m.get_object(GetObjectParams::new("l")).await.unwrap().data,
                Bytes::from_static(b"abc")
            );
            let err = m
                .put_symlink(PutSymlinkParams {
                    key: "l".into(),
                    target: "b".into(),
                    forbid_overwrite: true,
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert!(matches!(err, ClientError::AlreadyExists(_)));
        });
    }
}
