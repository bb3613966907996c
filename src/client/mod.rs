//! The one trait through which everything above talks to OSS, and its implementations:
//! `OssClient` (HTTP, signing, retries, integrity checks), `MockClient` (in memory, with
//! per-operation counters) and `FailureClient` (wraps another client and injects faults).
//!
//! Contract shared by every implementation:
//! - keys are full object keys (the mount prefix is already applied by the caller);
//! - a success means the server confirmed the operation and, for writes, that the CRC-64 the
//!   server computed equals the CRC-64 of the bytes we sent (`ClientError::Integrity` otherwise);
//! - retryable failures (throttling, 5xx, connection errors, truncated bodies, clock skew) are
//!   retried inside the client; what surfaces is final for this call.

pub mod buffers;
pub mod failure;
pub mod mock;
pub mod oss;
pub mod xml;

use std::fmt;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::auth::AuthError;
use crate::object::{ETag, ObjectMeta, ObjectType, UserMeta};

/// Largest number of keys one DeleteMultipleObjects request may carry.
pub const MAX_DELETE_KEYS: usize = 1000;
/// Largest page ListObjectsV2 returns.
pub const MAX_LIST_KEYS: usize = 1000;
/// Part numbers run 1..=MAX_PARTS.
pub const MAX_PARTS: u32 = 10_000;
/// Smallest size of a part that is not the last one.
pub const MIN_PART_SIZE_BYTES: u64 = 100 * 1024;

/// An error answer from OSS: HTTP status plus the fields of the XML `<Error>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub ec: Option<String>,
    pub request_id: Option<String>,
}

impl fmt::Debug for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(ec) = &self.ec {
            write!(f, " (EC {ec})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request {id}]")?;
        }
        Ok(())
    }
}

/// Why a client call failed, after any retries.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 404 NoSuchKey (also a missing upload: NoSuchUpload).
    #[error("not found: {0}")]
    NoSuchKey(ServiceError),
    /// 404 NoSuchBucket.
    #[error("bucket not found: {0}")]
    NoSuchBucket(ServiceError),
    /// 403 AccessDenied (policy), or a credential error that persisted after one refresh.
    #[error("access denied: {0}")]
    AccessDenied(ServiceError),
    /// 412: an If-Match / copy-source-if-match precondition failed (the object changed).
    #[error("precondition failed (object changed): {0}")]
    PreconditionFailed(ServiceError),
    /// 409 FileAlreadyExists (x-oss-forbid-overwrite) .
    #[error("already exists: {0}")]
    AlreadyExists(ServiceError),
    /// 416 InvalidRange.
    #[error("invalid range: {0}")]
    InvalidRange(ServiceError),
    /// 409 PositionNotEqualToLength on AppendObject; carries the server's current length.
    #[error("append position mismatch (object length {next_position:?}): {error}")]
    AppendPositionMismatch {
        error: ServiceError,
        next_position: Option<u64>,
    },
    /// 409 ObjectNotAppendable.
    #[error("object not appendable: {0}")]
    NotAppendable(ServiceError),
    /// Any other error answer (400s, exhausted 5xx/throttling retries, ...).
    #[error("service error: {0}")]
    Service(ServiceError),
    /// Credentials could not be obtained (source down, expired and not refreshable, ...).
    #[error("credentials: {0}")]
    Credentials(#[source] AuthError),
    /// Network failure that persisted through the retries (connect, reset, timeout, truncated body).
    #[error("transport error: {0}")]
    Transport(String),
    /// The CRC-64 the server reported differs from the bytes sent/received.
    #[error("integrity check failed for {what}: expected crc64 {expected}, got {actual}")]
    Integrity { what: String, expected: u64, actual: u64 },
    /// The server's answer could not be understood (bad XML, missing header ...).
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The caller asked for something the protocol cannot express (e.g. an empty key).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// GetObject of a range (or the whole object when `range` is None).
#[derive(Clone, Debug, Default)]
pub struct GetObjectParams {
    pub key: String,
    pub range: Option<Range<u64>>,
    /// Fail with `PreconditionFailed` unless the object still has this ETag.
    pub if_match: Option<ETag>,
}

impl GetObjectParams {
    pub fn new(key: impl Into<String>) -> Self {
        GetObjectParams {
            key: key.into(),
            ..Default::default()
        }
    }
    pub fn range(mut self, range: Range<u64>) -> Self {
        self.range = Some(range);
        self
    }
    pub fn if_match(mut self, etag: ETag) -> Self {
        self.if_match = Some(etag);
        self
    }
}

/// The bytes of a GetObject. A range beyond the end is clamped (`data` may be shorter than
/// asked); a range starting at or beyond the end gives `InvalidRange` (empty objects: empty data).
#[derive(Clone, Debug)]
pub struct GetObjectResult {
    pub meta: ObjectMeta,
    /// Offset within the object where `data` starts.
    pub offset: u64,
    pub data: Bytes,
}

/// ListObjectsV2 page request.
#[derive(Clone, Debug, Default)]
pub struct ListObjectsParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub continuation_token: Option<String>,
    pub start_after: Option<String>,
    /// 1..=1000; 0 means 1000.
    pub max_keys: usize,
}

impl ListObjectsParams {
    pub fn new(prefix: impl Into<String>) -> Self {
        ListObjectsParams {
            prefix: prefix.into(),
            ..Default::default()
        }
    }
    pub fn delimiter(mut self, d: impl Into<String>) -> Self {
        self.delimiter = Some(d.into());
        self
    }
    pub fn continuation_token(mut self, t: Option<String>) -> Self {
        self.continuation_token = t;
        self
    }
    pub fn start_after(mut self, s: impl Into<String>) -> Self {
        self.start_after = Some(s.into());
        self
    }
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }
}

/// One `<Contents>` entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub etag: ETag,
    pub last_modified: SystemTime,
    pub object_type: ObjectType,
}

/// One page of ListObjectsV2 (keys and prefixes already URL-decoded).
#[derive(Clone, Debug, Default)]
pub struct ListObjectsResult {
    pub objects: Vec<ListedObject>,
    pub common_prefixes: Vec<String>,
    /// Present when the listing is truncated.
    pub next_continuation_token: Option<String>,
}

/// PutObject: the whole body in memory (callers use multipart above their part size).
#[derive(Clone, Debug, Default)]
pub struct PutObjectParams {
    pub key: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub user_meta: UserMeta,
    /// `x-oss-forbid-overwrite: true`: fail with `AlreadyExists` if the key exists.
    pub forbid_overwrite: bool,
}

impl PutObjectParams {
    pub fn new(key: impl Into<String>, body: Bytes) -> Self {
        PutObjectParams {
            key: key.into(),
            body,
            ..Default::default()
        }
    }
    pub fn user_meta(mut self, meta: UserMeta) -> Self {
        self.user_meta = meta;
        self
    }
    pub fn content_type(mut self, ct: impl Into<String>) -> Self {
        self.content_type = Some(ct.into());
        self
    }
    pub fn forbid_overwrite(mut self, yes: bool) -> Self {
        self.forbid_overwrite = yes;
        self
    }
}

/// What a completed write reports. `crc64` has been verified against what we sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutObjectResult {
    pub etag: ETag,
    pub crc64: u64,
}

/// InitiateMultipartUpload.
#[derive(Clone, Debug, Default)]
pub struct CreateMultipartUploadParams {
    pub key: String,
    pub content_type: Option<String>,
    pub user_meta: UserMeta,
}

impl CreateMultipartUploadParams {
    pub fn new(key: impl Into<String>) -> Self {
        CreateMultipartUploadParams {
            key: key.into(),
            ..Default::default()
        }
    }
    pub fn user_meta(mut self, meta: UserMeta) -> Self {
        self.user_meta = meta;
        self
    }
}

/// UploadPart.
#[derive(Clone, Debug)]
pub struct UploadPartParams {
    pub key: String,
    pub upload_id: String,
    /// 1..=10000
    pub part_number: u32,
    pub body: Bytes,
}

/// UploadPartCopy: a range of an existing object becomes a part.
#[derive(Clone, Debug)]
pub struct UploadPartCopyParams {
    pub key: String,
    pub upload_id: String,
    pub part_number: u32,
    pub source_key: String,
    /// None = the whole source.
    pub source_range: Option<Range<u64>>,
    pub source_if_match: Option<ETag>,
}

/// A part as uploaded; `crc64` and `size` let the client verify the completed object's CRC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedPart {
    pub part_number: u32,
    pub etag: ETag,
    /// CRC-64 of the part's bytes, when known (always for UploadPart, verified).
    pub crc64: Option<u64>,
    pub size: u64,
}

/// CompleteMultipartUpload with the parts in ascending order.
#[derive(Clone, Debug)]
pub struct CompleteMultipartUploadParams {
    pub key: String,
    pub upload_id: String,
    pub parts: Vec<UploadedPart>,
    /// Fail with `AlreadyExists` if the key exists.
    pub forbid_overwrite: bool,
}

/// CopyObject metadata handling.
#[derive(Clone, Debug, Default)]
pub enum MetadataDirective {
    /// Keep the source's metadata.
    #[default]
    Copy,
    /// Replace it with this.
    Replace {
        content_type: Option<String>,
        user_meta: UserMeta,
    },
}

/// CopyObject (server side; objects up to `COPY_OBJECT_MAX_BYTES`, multipart copy above).
#[derive(Clone, Debug)]
pub struct CopyObjectParams {
    pub source_key: String,
    pub dest_key: String,
    pub metadata: MetadataDirective,
    pub source_if_match: Option<ETag>,
    pub forbid_overwrite: bool,
}

/// Result of CopyObject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyObjectResult {
    pub etag: ETag,
    pub crc64: Option<u64>,
}

/// A key DeleteMultipleObjects could not delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteError {
    pub key: String,
    pub code: String,
    pub message: String,
}

/// AppendObject.
#[derive(Clone, Debug, Default)]
pub struct AppendObjectParams {
    pub key: String,
    pub position: u64,
    pub body: Bytes,
    /// CRC-64 of the object before this append (0 for position 0) so the result can be verified.
    pub init_crc64: Option<u64>,
    pub content_type: Option<String>,
    pub user_meta: UserMeta,
}

/// Result of AppendObject; `crc64` is of the whole object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendObjectResult {
    pub next_position: u64,
    pub crc64: Option<u64>,
}

/// PutSymlink.
#[derive(Clone, Debug, Default)]
pub struct PutSymlinkParams {
    pub key: String,
    /// The target as the user wrote it (the client percent-encodes it on the wire).
    pub target: String,
    pub user_meta: UserMeta,
    pub forbid_overwrite: bool,
}

/// GetSymlink.
#[derive(Clone, Debug)]
pub struct GetSymlinkResult {
    pub target: String,
    pub etag: ETag,
    pub last_modified: SystemTime,
    pub user_meta: UserMeta,
}

/// A part listed by ListParts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPart {
    pub part_number: u32,
    pub etag: ETag,
    pub size: u64,
    pub crc64: Option<u64>,
}

/// What GetBucketInfo says (used by `--check` and to find the region).
#[derive(Clone, Debug, Default)]
pub struct BucketInfo {
    pub name: String,
    /// e.g. `oss-cn-hangzhou`
    pub location: String,
}

/// Everything the filesystem needs from OSS. Implementations must be cheap to share (`Arc`).
#[async_trait]
pub trait ObjectClient: Send + Sync + 'static {
    /// GetObject of a range (or whole object), collected into memory. A body cut off in the
    /// middle is resumed (If-Match on the ETag) so the bytes are whole or an error.
    async fn get_object(&self, params: GetObjectParams) -> Result<GetObjectResult, ClientError>;
    /// HeadObject. `NoSuchKey` when absent.
    async fn head_object(&self, key: &str) -> Result<ObjectMeta, ClientError>;
    /// One page of ListObjectsV2.
    async fn list_objects(&self, params: ListObjectsParams) -> Result<ListObjectsResult, ClientError>;
    /// PutObject, CRC-64 verified.
    async fn put_object(&self, params: PutObjectParams) -> Result<PutObjectResult, ClientError>;
    /// InitiateMultipartUpload; returns the upload id.
    async fn create_multipart_upload(&self, params: CreateMultipartUploadParams) -> Result<String, ClientError>;
    /// UploadPart, CRC-64 verified.
    async fn upload_part(&self, params: UploadPartParams) -> Result<UploadedPart, ClientError>;
    /// UploadPartCopy.
    async fn upload_part_copy(&self, params: UploadPartCopyParams) -> Result<UploadedPart, ClientError>;
    /// CompleteMultipartUpload; when every part's CRC is known the combined CRC is verified.
    async fn complete_multipart_upload(
        &self,
        params: CompleteMultipartUploadParams,
    ) -> Result<PutObjectResult, ClientError>;
    /// AbortMultipartUpload.
    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ClientError>;
    /// ListParts (all pages).
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<ListedPart>, ClientError>;
    /// CopyObject.
    async fn copy_object(&self, params: CopyObjectParams) -> Result<CopyObjectResult, ClientError>;
    /// DeleteObject (succeeds when the key is absent).
    async fn delete_object(&self, key: &str) -> Result<(), ClientError>;
    /// DeleteMultipleObjects, at most `MAX_DELETE_KEYS` keys; returns the keys that failed.
    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<DeleteError>, ClientError>;
    /// AppendObject.
    async fn append_object(&self, params: AppendObjectParams) -> Result<AppendObjectResult, ClientError>;
    /// PutSymlink.
    async fn put_symlink(&self, params: PutSymlinkParams) -> Result<ETag, ClientError>;
    /// GetSymlink.
    async fn get_symlink(&self, key: &str) -> Result<GetSymlinkResult, ClientError>;
    /// GetBucketInfo.
    async fn get_bucket_info(&self) -> Result<BucketInfo, ClientError>;
}
