//! OSS operations (PROTOCOL.md §4): classification of a request into an operation, the
//! pipeline around it (stats, injected faults, authentication, policy) and one handler per
//! operation. Handlers stream object bodies between the socket and `storage` and never
//! buffer a whole object; only XML request bodies (≤ `MAX_SMALL_BODY_BYTES`) are read whole.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use http::response::Builder;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use md5::{Digest as _, Md5};

use crate::error::OssError;
use crate::server::{
    ACCOUNT_ID, App, ReqBody, RespBody, Target, empty, full, http_date, percent_decode, read_small_body,
};
use crate::storage::{
    AppendRequest, BodyLen, Bucket, ListEntry, NewData, ObjectData, ObjectMeta, ObjectType, StorageError, WriteMeta,
    Written, spawn_reader,
};
use crate::xml::{XmlWriter, url_encode};
use crate::{auth, policy, s3};

/// Largest object (PutObject, append result, part) OSS accepts: 5 GiB.
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest non-last multipart part.
pub const MIN_PART_BYTES: u64 = 100 * 1024;
pub const MAX_KEY_BYTES: usize = 1023;
pub const MAX_LIST_KEYS: usize = 1000;
pub const DEFAULT_LIST_KEYS: usize = 100;
pub const MAX_PART_NUMBER: u32 = 10000;
pub const MAX_DELETE_KEYS: usize = 1000;
/// Pause before an injected connection reset so the bytes before the cut reach the client.
const RESET_FLUSH_GRACE_MS: u64 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    ListBuckets,
    GetBucketInfo,
    GetBucketLocation,
    ListObjects,
    ListObjectsV2,
    ListMultipartUploads,
    DeleteMultipleObjects,
    GetObject,
    HeadObject,
    GetObjectMeta,
    PutObject,
    CopyObject,
    DeleteObject,
    InitiateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    AppendObject,
    PutSymlink,
    GetSymlink,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::ListBuckets => "ListBuckets",
            Op::GetBucketInfo => "GetBucketInfo",
            Op::GetBucketLocation => "GetBucketLocation",
            Op::ListObjects => "ListObjects",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::DeleteMultipleObjects => "DeleteMultipleObjects",
            Op::GetObject => "GetObject",
            Op::HeadObject => "HeadObject",
            Op::GetObjectMeta => "GetObjectMeta",
            Op::PutObject => "PutObject",
            Op::CopyObject => "CopyObject",
            Op::DeleteObject => "DeleteObject",
            Op::InitiateMultipartUpload => "InitiateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::AbortMultipartUpload => "AbortMultipartUpload",
            Op::ListParts => "ListParts",
            Op::AppendObject => "AppendObject",
            Op::PutSymlink => "PutSymlink",
            Op::GetSymlink => "GetSymlink",
        }
    }

    /// RAM action checked for session principals (None: checked per key inside the op).
    fn action(self) -> Option<&'static str> {
        Some(match self {
            Op::ListBuckets => "oss:ListBuckets",
            Op::GetBucketInfo => "oss:GetBucketInfo",
            Op::GetBucketLocation => "oss:GetBucketLocation",
            Op::ListObjects | Op::ListObjectsV2 => "oss:ListObjects",
            Op::ListMultipartUploads => "oss:ListMultipartUploads",
            Op::DeleteMultipleObjects => return None,
            Op::GetObject | Op::HeadObject | Op::GetObjectMeta => "oss:GetObject",
            Op::GetSymlink => "oss:GetSymlink",
            Op::PutSymlink => "oss:PutSymlink",
            Op::PutObject
            | Op::CopyObject
            | Op::InitiateMultipartUpload
            | Op::UploadPart
            | Op::UploadPartCopy
            | Op::CompleteMultipartUpload
            | Op::AppendObject => "oss:PutObject",
            Op::DeleteObject => "oss:DeleteObject",
            Op::AbortMultipartUpload => "oss:AbortMultipartUpload",
            Op::ListParts => "oss:ListParts",
        })
    }
}

/// Decoded query parameters.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
    fn url(&self) -> bool {
        self.get("encoding-type") == Some("url")
    }
}

// ----- error constructors -----

pub fn invalid_object_name(message: &str) -> OssError {
    OssError::new(400, "InvalidObjectName", message, "0016-00000005")
}

fn method_not_allowed() -> OssError {
    OssError::new(
        405,
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
        "0016-00000010",
    )
}

fn precondition_failed() -> OssError {
    OssError::new(
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold.",
        "0016-00000101",
    )
}

fn file_exists() -> OssError {
    OssError::new(
        409,
        "FileAlreadyExists",
        "The object you specified already exists and can not be overwritten.",
        "0026-00000009",
    )
}

fn entity_too_large() -> OssError {
    OssError::new(
        400,
        "EntityTooLarge",
        "Your proposed upload exceeds the maximum allowed size.",
        "0016-00000016",
    )
}

fn no_such_upload(id: &str) -> OssError {
    OssError::new(
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        "0042-00000002",
    )
    .with("UploadId", id)
}

fn invalid_arg(message: &str, name: &str, value: &str) -> OssError {
    OssError::invalid_argument(message)
        .with("ArgumentName", name)
        .with("ArgumentValue", value)
}

fn storage_error(e: StorageError) -> OssError {
    match e {
        StorageError::Exists => file_exists(),
        StorageError::Truncated { .. } | StorageError::Body(_) => OssError::new(
            400,
            "IncompleteBody",
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            "0016-00000017",
        ),
        StorageError::Oversized { .. } => entity_too_large(),
        StorageError::BadDigest => bad_digest(),
        StorageError::TooLong { .. } => OssError::new(
            400,
            "InvalidArgument",
            "The request body is longer than Content-Length.",
            "0016-00000001",
        ),
        StorageError::NotAppendable => OssError::new(
            409,
            "ObjectNotAppendable",
            "The object is not appendable",
            "0026-00000015",
        ),
        StorageError::Position { .. } => OssError::new(
            409,
            "PositionNotEqualToLength",
            "Position is not equal to file length",
            "0026-00000016",
        ),
        other => {
            tracing::error!(error = %other, "storage failure");
            OssError::internal_error()
        }
    }
}

/// Validate an object name (§1.1).
pub fn check_key(key: &str) -> Result<(), OssError> {
    if key.is_empty() {
        return Err(invalid_object_name("The Object name can not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid_object_name("The Length of Object name must be less than 1024"));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(invalid_object_name("The specified object is not valid."));
    }
    Ok(())
}

fn classify(method: &Method, t: &Target, q: &Query, headers: &HeaderMap) -> Result<Op, OssError> {
    let has_copy = headers.contains_key("x-oss-copy-source");
    let op = match (&t.bucket, &t.key) {
        (None, _) => match *method {
            Method::GET => Op::ListBuckets,
            _ => return Err(method_not_allowed()),
        },
        (Some(_), None) => match *method {
            Method::GET | Method::HEAD if q.has("bucketInfo") => Op::GetBucketInfo,
            Method::GET if q.has("location") => Op::GetBucketLocation,
            Method::GET if q.has("uploads") => Op::ListMultipartUploads,
            Method::GET if q.get("list-type") == Some("2") => Op::ListObjectsV2,
            Method::GET => Op::ListObjects,
            Method::HEAD => Op::GetBucketInfo,
            Method::POST if q.has("delete") => Op::DeleteMultipleObjects,
            _ => return Err(method_not_allowed()),
        },
        (Some(_), Some(_)) => match *method {
            Method::GET if q.has("symlink") => Op::GetSymlink,
            Method::GET if q.has("uploadId") => Op::ListParts,
            Method::GET => Op::GetObject,
            Method::HEAD if q.has("objectMeta") => Op::GetObjectMeta,
            Method::HEAD => Op::HeadObject,
            Method::PUT if q.has("symlink") => Op::PutSymlink,
            Method::PUT if q.has("uploadId") || q.has("partNumber") => {
                if has_copy {
                    Op::UploadPartCopy
                } else {
                    Op::UploadPart
                }
            }
            Method::PUT if has_copy => Op::CopyObject,
            Method::PUT => Op::PutObject,
            Method::POST if q.has("uploads") => Op::InitiateMultipartUpload,
            Method::POST if q.has("uploadId") => Op::CompleteMultipartUpload,
            Method::POST if q.has("append") => Op::AppendObject,
            Method::DELETE if q.has("uploadId") => Op::AbortMultipartUpload,
            Method::DELETE => Op::DeleteObject,
            _ => return Err(method_not_allowed()),
        },
    };
    Ok(op)
}

/// Authorization of one request's principal.
struct Authz {
    principal: auth::Principal,
    region: String,
}

impl Authz {
    fn check(&self, action: &str, bucket: Option<&str>, key: Option<&str>) -> Result<(), OssError> {
        let auth::Principal::Session(claims) = &self.principal else {
            return Ok(());
        };
        let resource = match (bucket, key) {
            (None, _) => format!("acs:oss:{}:{ACCOUNT_ID}:*", self.region),
            (Some(b), None) => format!("acs:oss:{}:{ACCOUNT_ID}:{b}", self.region),
            (Some(b), Some(k)) => format!("acs:oss:{}:{ACCOUNT_ID}:{b}/{k}", self.region),
        };
        if policy::authorize(&claims.policies, action, &resource) {
            Ok(())
        } else {
            Err(OssError::access_denied("Access denied by authorizer's policy."))
        }
    }
}

struct Ctx<'a> {
    app: &'a Arc<App>,
    op: Op,
    bucket: Option<Arc<Bucket>>,
    key: String,
    q: Query,
    headers: HeaderMap,
    authz: Authz,
    host: &'a str,
    request_id: &'a str,
    /// The request speaks S3: answers take the S3 shape.
    s3: bool,
}

impl Ctx<'_> {
    fn bucket(&self) -> Result<&Arc<Bucket>, OssError> {
        self.bucket.as_ref().ok_or_else(OssError::internal_error)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
    }
    fn forbid_overwrite(&self) -> bool {
        self.header("x-oss-forbid-overwrite")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Where a request came from and which dialect it speaks.
pub struct Origin<'a> {
    pub request_id: &'a str,
    /// `Host` of the request (also the `HostId` of errors).
    pub host: &'a str,
    /// Signed (or marked) as S3: S3 signatures, header names and answer shapes.
    pub s3: bool,
}

pub async fn handle(
    app: &Arc<App>,
    req: Request<Incoming>,
    target: Target,
    query: Vec<(String, String)>,
    raw_query: String,
    origin: Origin<'_>,
) -> Result<Response<RespBody>, OssError> {
    let Origin {
        request_id,
        host,
        s3: is_s3,
    } = origin;
    let (mut parts, body) = req.into_parts();
    let q = Query(query);
    let body = s3::request_body(is_s3 && s3::is_aws_chunked(&parts.headers), body);
    // The S3 originals stay in the map for the signature check; OSS names are added.
    let original_headers = is_s3.then(|| parts.headers.clone());
    if is_s3 {
        s3::map_request_headers(&mut parts.headers);
        if parts.method == Method::PUT && target.bucket.is_some() && target.key.is_none() && q.0.is_empty() {
            // CreateBucket: buckets come from the command line.
            let headers = original_headers.as_ref().unwrap_or(&parts.headers);
            s3_authenticate(app, &parts, headers, &raw_query, &target)?;
            let name = target.bucket.as_deref().unwrap_or("");
            return Err(match app.storage.bucket(name) {
                Some(_) => OssError::new(
                    409,
                    "BucketAlreadyOwnedByYou",
                    "Your previous request to create the named bucket succeeded and you already own it.",
                    "0015-00000001",
                )
                .with("BucketName", name),
                None => OssError::access_denied("osslocal buckets are created with --bucket only."),
            });
        }
    }
    let op = classify(&parts.method, &target, &q, &parts.headers)?;
    app.stats.op(op.name());
    if let Some(e) = app.faults.error_for(op.name()) {
        return Err(e);
    }
    if let Some(d) = app.faults.latency(op.name()) {
        tokio::time::sleep(d).await;
    }
    if let Some(k) = &target.key {
        check_key(k)?;
    }
    let principal = if let Some(headers) = &original_headers {
        let p = s3_authenticate(app, &parts, headers, &raw_query, &target)?;
        s3::check_supported(&q.0)?;
        s3::finish_request_headers(&mut parts.headers);
        p
    } else {
        auth::authenticate(
            &auth::RequestParts {
                method: parts.method.as_str(),
                bucket: target.bucket.as_deref(),
                key: target.key.as_deref(),
                raw_query: &raw_query,
                headers: &parts.headers,
            },
            &app.auth,
            app.now(),
            app.faults.tokens_expired_before(),
        )?
    };
    let bucket = match &target.bucket {
        Some(name) => Some(app.storage.bucket(name).ok_or_else(|| OssError::no_such_bucket(name))?),
        None => None,
    };
    let authz = Authz {
        principal,
        region: app.region.clone(),
    };
    if let Some(action) = op.action() {
        authz.check(action, target.bucket.as_deref(), target.key.as_deref())?;
    }
    let ctx = Ctx {
        app,
        op,
        bucket,
        key: target.key.unwrap_or_default(),
        q,
        headers: parts.headers,
        authz,
        host,
        request_id,
        s3: is_s3,
    };
    match op {
        Op::ListBuckets => list_buckets(&ctx),
        Op::GetBucketInfo => bucket_info(&ctx, parts.method == Method::HEAD),
        Op::GetBucketLocation if ctx.s3 => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint>{}</LocationConstraint>",
                crate::xml::escape(&ctx.app.region)
            );
            Ok(xml_response(&ctx, body))
        }
        Op::GetBucketLocation => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint>oss-{}</LocationConstraint>",
                ctx.app.region
            );
            Ok(xml_response(&ctx, body))
        }
        Op::ListObjects | Op::ListObjectsV2 => list_objects(&ctx),
        Op::ListMultipartUploads => list_uploads(&ctx),
        Op::DeleteMultipleObjects => delete_multiple(&ctx, body).await,
        Op::GetObject | Op::HeadObject | Op::GetObjectMeta => get_object(&ctx),
        Op::PutObject => put_object(&ctx, body).await,
        Op::CopyObject => copy_object(&ctx).await,
        Op::DeleteObject => {
            let (b, key) = (ctx.bucket()?.clone(), ctx.key.clone());
            blocking(move || b.delete(&key)).await?;
            status_only(StatusCode::NO_CONTENT)
        }
        Op::InitiateMultipartUpload => initiate(&ctx).await,
        Op::UploadPart | Op::UploadPartCopy => upload_part(&ctx, body).await,
        Op::CompleteMultipartUpload => complete(&ctx, body).await,
        Op::AbortMultipartUpload => {
            let id = ctx.q.get("uploadId").unwrap_or("").to_string();
            let b = ctx.bucket()?;
            if ctx.app.storage.upload(&b.name, &ctx.key, &id).is_none() {
                return Err(no_such_upload(&id));
            }
            let (app, id2) = (ctx.app.clone(), id.clone());
            match blocking(move || Ok(app.storage.remove_upload(&id2))).await? {
                true => status_only(StatusCode::NO_CONTENT),
                false => Err(no_such_upload(&id)),
            }
        }
        Op::ListParts => list_parts(&ctx),
        Op::AppendObject => append(&ctx, body).await,
        Op::PutSymlink => put_symlink(&ctx).await,
        Op::GetSymlink => get_symlink(&ctx),
    }
}

// ----- helpers -----

/// Verify an S3 signature over the request as received (`headers` before the mapping).
fn s3_authenticate(
    app: &Arc<App>,
    parts: &http::request::Parts,
    headers: &HeaderMap,
    raw_query: &str,
    target: &Target,
) -> Result<auth::Principal, OssError> {
    s3::authenticate(
        &s3::S3Parts {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query,
            headers,
            virtual_bucket: target.bucket.as_deref().filter(|_| target.virtual_host),
        },
        &app.auth,
        app.now(),
        app.faults.tokens_expired_before(),
    )
}

/// Run synchronous storage work (fsync, rename, unlink) off the async worker threads.
async fn blocking<T, F>(f: F) -> Result<T, OssError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(storage_error),
        Err(e) => {
            tracing::error!(error = %e, "storage task failed");
            Err(OssError::internal_error())
        }
    }
}

fn status_only(status: StatusCode) -> Result<Response<RespBody>, OssError> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, 0)
        .body(empty())
        .map_err(|_| OssError::internal_error())
}

fn xml_response(ctx: &Ctx<'_>, body: String) -> Response<RespBody> {
    let body = if ctx.s3 { s3::xml_document(body) } else { body };
    ctx.app.stats.bytes_out(body.len() as u64);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/xml")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(empty()))
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.000Z").to_string()
}

fn set(b: Builder, name: &str, value: &str) -> Builder {
    match HeaderValue::from_bytes(value.as_bytes()) {
        Ok(v) => b.header(name, v),
        Err(_) => b,
    }
}

/// Headers describing an object (GetObject, HeadObject).
fn object_headers(mut b: Builder, m: &ObjectMeta) -> Builder {
    b = set(b, "ETag", &m.etag);
    b = set(b, "Last-Modified", &http_date(m.last_modified()));
    b = set(b, "x-oss-object-type", m.object_type.as_str());
    b = set(b, "x-oss-hash-crc64ecma", &m.crc64.to_string());
    b = set(b, "x-oss-storage-class", "Standard");
    b = set(b, "Accept-Ranges", "bytes");
    let ct = if m.meta.content_type.is_empty() {
        "application/octet-stream"
    } else {
        &m.meta.content_type
    };
    b = set(b, "Content-Type", ct);
    for (k, v) in &m.meta.headers {
        b = set(b, k, v);
    }
    for (k, v) in &m.meta.user_meta {
        b = set(b, &format!("x-oss-meta-{k}"), v);
    }
    if m.object_type == ObjectType::Appendable {
        b = set(b, "x-oss-next-append-position", &m.size.to_string());
    }
    b
}

/// Standard headers stored with an object and returned on GET.
const STORED_HEADERS: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];

fn write_meta_from(headers: &HeaderMap) -> WriteMeta {
    let mut m = WriteMeta::default();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let n = name.as_str();
        if let Some(user) = n.strip_prefix("x-oss-meta-") {
            m.user_meta.insert(user.to_ascii_lowercase(), value);
        } else if n == "content-type" {
            m.content_type = value;
        } else if STORED_HEADERS.contains(&n) {
            m.headers.insert(n.to_string(), value);
        }
    }
    m
}

/// The body length a write must have: `Content-Length`, or up to the object limit for a
/// chunked body (oss2 sends empty bodies chunked).
fn content_length(ctx: &Ctx<'_>) -> Result<BodyLen, OssError> {
    let chunked = ctx
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let Some(v) = ctx.header("content-length") else {
        if chunked {
            return Ok(BodyLen::AtMost(MAX_OBJECT_BYTES));
        }
        return Err(OssError::new(
            411,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
            "0016-00000004",
        ));
    };
    let len: u64 = v
        .parse()
        .map_err(|_| invalid_arg("Content-Length is invalid.", "Content-Length", v))?;
    if len > MAX_OBJECT_BYTES {
        return Err(entity_too_large());
    }
    Ok(BodyLen::Exact(len))
}

fn content_md5(ctx: &Ctx<'_>) -> Result<Option<[u8; 16]>, OssError> {
    let Some(v) = ctx.header("content-md5") else {
        return Ok(None);
    };
    let bad = || {
        OssError::new(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified is not valid.",
            "0016-00000401",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD.decode(v).map_err(|_| bad())?;
    let arr: [u8; 16] = raw.try_into().map_err(|_| bad())?;
    Ok(Some(arr))
}

fn bad_digest() -> OssError {
    OssError::new(
        400,
        "BadDigest",
        "The Content-MD5 you specified did not match what we received.",
        "0016-00000402",
    )
}

fn body_stream(app: &Arc<App>, body: ReqBody) -> impl futures::Stream<Item = Result<Bytes, String>> + Unpin + use<> {
    let app = app.clone();
    body.into_data_stream().map(move |r| match r {
        Ok(b) => {
            app.stats.bytes_in(b.len() as u64);
            Ok(b)
        }
        Err(e) => Err(e.to_string()),
    })
}

fn etag_eq(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_start_matches("W/").trim_matches('"').to_ascii_uppercase();
    a.trim() == "*" || norm(a) == norm(b)
}

fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Evaluate If-Match / If-Unmodified-Since (→ 412) and If-None-Match / If-Modified-Since
/// (→ 304). `prefix` is "" for GET or "x-oss-copy-source-" for copies.
fn check_conditions(ctx: &Ctx<'_>, prefix: &str, m: &ObjectMeta) -> Result<Option<StatusCode>, OssError> {
    let h = |n: &str| ctx.header(&format!("{prefix}{n}")).map(str::to_string);
    // HTTP dates have second precision.
    let lm = m.last_modified().timestamp();
    if let Some(v) = h("if-match")
        && !v.split(',').any(|e| etag_eq(e, &m.etag))
    {
        return Err(precondition_failed());
    }
    if let Some(v) = h("if-unmodified-since")
        && let Some(t) = parse_http_date(&v)
        && lm > t.timestamp()
    {
        return Err(precondition_failed());
    }
    if let Some(v) = h("if-none-match") {
        if v.split(',').any(|e| etag_eq(e, &m.etag)) {
            return Ok(Some(StatusCode::NOT_MODIFIED));
        }
    } else if let Some(v) = h("if-modified-since")
        && let Some(t) = parse_http_date(&v)
        && lm <= t.timestamp()
    {
        return Ok(Some(StatusCode::NOT_MODIFIED));
    }
    Ok(None)
}

enum RangeResult {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// §4.1 range semantics. Only the first range of a list is honoured.
fn parse_range(value: Option<&str>, size: u64, standard: bool) -> RangeResult {
    let Some(v) = value else { return RangeResult::Whole };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeResult::Whole;
    };
    let first = spec.split(',').next().unwrap_or("").trim();
    let Some((a, b)) = first.split_once('-') else {
        return RangeResult::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return RangeResult::Whole;
        };
        if n == 0 {
            return RangeResult::Whole;
        }
        if size == 0 {
            return if standard {
                RangeResult::Unsatisfiable
            } else {
                RangeResult::Whole
            };
        }
        if n > size {
            return if standard {
                RangeResult::Part(0, size - 1)
            } else {
                RangeResult::Whole
            };
        }
        return RangeResult::Part(size - n, size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeResult::Whole;
    };
    let end = if b.is_empty() {
        None
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => Some(e),
            _ => return RangeResult::Whole,
        }
    };
    if start >= size {
        return if standard {
            RangeResult::Unsatisfiable
        } else {
            RangeResult::Whole
        };
    }
    match end {
        None => RangeResult::Part(start, size - 1),
        Some(e) if e < size => RangeResult::Part(start, e),
        Some(_) if standard => RangeResult::Part(start, size - 1),
        Some(_) => RangeResult::Whole,
    }
}

/// The object at `key`, following one symlink level (None when missing or dangling).
fn open_following(b: &Bucket, key: &str) -> Result<(Arc<ObjectMeta>, Option<ObjectData>), OssError> {
    let (meta, file) = b
        .open(key)
        .map_err(storage_error)?
        .ok_or_else(|| OssError::no_such_key(key))?;
    if meta.object_type != ObjectType::Symlink {
        return Ok((meta, file));
    }
    let target = symlink_target_key(meta.symlink_target.as_deref().unwrap_or(""));
    match b.open(&target).map_err(storage_error)? {
        Some((t, f)) if t.object_type != ObjectType::Symlink => Ok((t, f)),
        _ => Err(OssError::no_such_key(key)),
    }
}

fn symlink_target_key(raw: &str) -> String {
    String::from_utf8_lossy(&percent_decode(raw)).into_owned()
}

/// State of a GetObject body stream.
enum Phase {
    Streaming,
    /// An injected reset is due after the bytes already delivered.
    CutPending,
    Done,
}

// ----- operations -----

fn list_buckets(ctx: &Ctx<'_>) -> Result<Response<RespBody>, OssError> {
    let mut w = XmlWriter::new("ListAllMyBucketsResult");
    w.open("Owner")
        .elem("ID", ACCOUNT_ID)
        .elem("DisplayName", ACCOUNT_ID)
        .close();
    w.open("Buckets");
    let region = &ctx.app.region;
    for b in ctx.app.storage.buckets() {
        w.open("Bucket")
            .elem("CreationDate", &iso(b.created))
            .elem("ExtranetEndpoint", ctx.host)
            .elem("IntranetEndpoint", ctx.host)
            .elem("Location", &format!("oss-{region}"))
            .elem("Name", &b.name)
            .elem("Region", region)
            .elem("StorageClass", "Standard")
            .close();
    }
    w.close();
    Ok(xml_response(ctx, w.finish()))
}

fn bucket_info(ctx: &Ctx<'_>, head: bool) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    if head {
        return status_only(StatusCode::OK);
    }
    let region = &ctx.app.region;
    let mut w = XmlWriter::new("BucketInfo");
    w.open("Bucket")
        .elem("AccessMonitor", "Disabled")
        .elem("CreationDate", &iso(b.created))
        .elem("CrossRegionReplication", "Disabled")
        .elem("DataRedundancyType", "LRS")
        .elem("ExtranetEndpoint", ctx.host)
        .elem("IntranetEndpoint", ctx.host)
        .elem("Location", &format!("oss-{region}"))
        .elem("Name", &b.name)
        .elem("ResourceGroupId", "rg-default")
        .elem("StorageClass", "Standard")
        .elem("TransferAcceleration", "Disabled");
    w.open("Owner")
        .elem("DisplayName", ACCOUNT_ID)
        .elem("ID", ACCOUNT_ID)
        .close();
    w.open("AccessControlList").elem("Grant", "private").close();
    w.open("ServerSideEncryptionRule").elem("SSEAlgorithm", "None").close();
    w.open("BucketPolicy")
        .elem("LogBucket", "")
        .elem("LogPrefix", "")
        .close();
    w.elem("Versioning", "");
    Ok(xml_response(ctx, w.finish()))
}

fn parse_max(ctx: &Ctx<'_>, name: &str, default: usize, max: usize) -> Result<usize, OssError> {
    match ctx.q.get(name) {
        None | Some("") => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(invalid_arg(
                &format!("Argument {name} must be an integer between 0 and {max}."),
                name,
                v,
            )),
        },
    }
}

fn list_objects(ctx: &Ctx<'_>) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let v2 = ctx.op == Op::ListObjectsV2;
    let url = ctx.q.url();
    let prefix = ctx.q.get("prefix").unwrap_or("");
    let delimiter = ctx.q.get("delimiter").unwrap_or("");
    // S3 lists 1000 keys when max-keys is absent.
    let default_keys = if ctx.s3 { MAX_LIST_KEYS } else { DEFAULT_LIST_KEYS };
    let max = parse_max(ctx, "max-keys", default_keys, MAX_LIST_KEYS)?;
    if let Some(e) = ctx.q.get("encoding-type")
        && !e.is_empty()
        && e != "url"
    {
        return Err(invalid_arg(
            "The encoding-type argument is invalid.",
            "encoding-type",
            e,
        ));
    }
    let token = ctx.q.get("continuation-token").filter(|t| !t.is_empty());
    let start_after = ctx.q.get("start-after").filter(|t| !t.is_empty());
    let marker = ctx.q.get("marker").filter(|t| !t.is_empty());
    let token_key = match token {
        Some(t) if v2 => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or_else(|| invalid_arg("The continuation token provided is incorrect.", "continuation-token", t))?,
        ),
        _ => None,
    };
    let after = if v2 {
        match (token_key.as_deref(), start_after) {
            (Some(t), Some(s)) => Some(if t > s { t } else { s }),
            (t, s) => t.or(s),
        }
    } else {
        marker
    };
    let page = b.list(prefix, delimiter, after, max);
    let mut w = XmlWriter::new("ListBucketResult");
    w.elem("Name", &b.name).elem_enc("Prefix", prefix, url);
    if v2 {
        if let Some(s) = start_after {
            w.elem_enc("StartAfter", s, url);
        }
        if let Some(t) = token {
            w.elem("ContinuationToken", t);
        }
    } else {
        w.elem_enc("Marker", marker.unwrap_or(""), url);
    }
    w.elem("MaxKeys", &max.to_string());
    if !delimiter.is_empty() {
        w.elem_enc("Delimiter", delimiter, url);
    }
    if url {
        w.elem("EncodingType", "url");
    }
    w.elem("IsTruncated", if page.truncated { "true" } else { "false" });
    if v2 {
        w.elem("KeyCount", &page.entries.len().to_string());
    }
    if page.truncated
        && let Some(last) = &page.last
    {
        if v2 {
            w.elem(
                "NextContinuationToken",
                &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.as_bytes()),
            );
        } else {
            w.elem_enc("NextMarker", last, url);
        }
    }
    let owner = !v2 || ctx.q.get("fetch-owner") == Some("true");
    for e in &page.entries {
        if let ListEntry::Object(m) = e {
            w.open("Contents")
                .elem_enc("Key", &m.key, url)
                .elem("LastModified", &iso(m.last_modified()))
                .elem("ETag", &m.etag)
                .elem("Type", m.object_type.as_str())
                .elem("Size", &m.size.to_string())
                .elem("StorageClass", "Standard");
            if owner {
                w.open("Owner")
                    .elem("ID", ACCOUNT_ID)
                    .elem("DisplayName", ACCOUNT_ID)
                    .close();
            }
            w.close();
        }
    }
    for e in &page.entries {
        if let ListEntry::Prefix(p) = e {
            w.open("CommonPrefixes").elem_enc("Prefix", p, url).close();
        }
    }
    Ok(xml_response(ctx, w.finish()))
}

fn get_object(ctx: &Ctx<'_>) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let (mut meta, file) = open_following(b, &ctx.key)?;
    if let Some(link) = b.get(&ctx.key)
        && link.object_type == ObjectType::Symlink
    {
        // A link reads as its target's bytes but still reports its own type.
        let mut m = (*meta).clone();
        m.object_type = ObjectType::Symlink;
        meta = Arc::new(m);
    }
    let head = ctx.op != Op::GetObject;
    if ctx.op == Op::GetObjectMeta {
        let mut r = Response::builder();
        r = set(r, "ETag", &meta.etag);
        r = set(r, "Last-Modified", &http_date(meta.last_modified()));
        r = set(r, "x-oss-last-access-time", &http_date(meta.last_modified()));
        r = set(r, "x-oss-hash-crc64ecma", &meta.crc64.to_string());
        return r
            .header(header::CONTENT_LENGTH, meta.size)
            .body(empty())
            .map_err(|_| OssError::internal_error());
    }
    if let Some(status) = check_conditions(ctx, "", &meta)? {
        let mut r = Response::builder().status(status);
        r = set(r, "ETag", &meta.etag);
        r = set(r, "Last-Modified", &http_date(meta.last_modified()));
        return r.body(empty()).map_err(|_| OssError::internal_error());
    }
    let standard = ctx
        .header("x-oss-range-behavior")
        .is_some_and(|v| v.eq_ignore_ascii_case("standard"));
    let (status, start, len) = match parse_range(ctx.header("range"), meta.size, standard) {
        RangeResult::Whole => (StatusCode::OK, 0, meta.size),
        RangeResult::Part(a, z) => (StatusCode::PARTIAL_CONTENT, a, z - a + 1),
        RangeResult::Unsatisfiable => {
            return Err(OssError::new(
                416,
                "InvalidRange",
                "The requested range cannot be satisfied",
                "0003-00000001",
            )
            .with("RangeRequested", ctx.header("range").unwrap_or(""))
            .with("ActualObjectSize", meta.size.to_string()));
        }
    };
    let mut r = object_headers(Response::builder().status(status), &meta);
    if status == StatusCode::PARTIAL_CONTENT {
        r = set(
            r,
            "Content-Range",
            &format!("bytes {}-{}/{}", start, start + len - 1, meta.size),
        );
    }
    for (param, hname) in [
        ("response-content-type", "Content-Type"),
        ("response-content-language", "Content-Language"),
        ("response-expires", "Expires"),
        ("response-cache-control", "Cache-Control"),
        ("response-content-disposition", "Content-Disposition"),
        ("response-content-encoding", "Content-Encoding"),
    ] {
        if let Some(v) = ctx.q.get(param)
            && let Ok(v) = HeaderValue::from_str(v)
            && let Some(h) = r.headers_mut()
        {
            h.insert(hname, v);
        }
    }
    r = r.header(header::CONTENT_LENGTH, len);
    if head || len == 0 {
        return r.body(empty()).map_err(|_| OssError::internal_error());
    }
    let Some(file) = file else {
        return Err(OssError::internal_error());
    };
    let cut = ctx.app.faults.reset_for(ctx.op.name());
    let rx = spawn_reader(file.ranges(start, len));
    let app = ctx.app.clone();
    let stream = futures::stream::unfold((rx, 0u64, Phase::Streaming), move |(mut rx, sent, phase)| {
        let app = app.clone();
        async move {
            match phase {
                Phase::Done => return None,
                Phase::CutPending => {
                    // Let hyper flush what was already handed over, then cut the connection.
                    tokio::time::sleep(std::time::Duration::from_millis(RESET_FLUSH_GRACE_MS)).await;
                    let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset");
                    return Some((Err(err), (rx, sent, Phase::Done)));
                }
                Phase::Streaming => {}
            }
            match rx.recv().await? {
                Ok(mut chunk) => {
                    let mut next = Phase::Streaming;
                    if let Some(cut) = cut
                        && sent + chunk.len() as u64 >= cut
                    {
                        chunk.truncate(cut.saturating_sub(sent) as usize);
                        next = Phase::CutPending;
                    }
                    let n = chunk.len() as u64;
                    app.stats.bytes_out(n);
                    Some((Ok(Frame::data(chunk)), (rx, sent + n, next)))
                }
                Err(e) => Some((Err(e), (rx, sent, Phase::Done))),
            }
        }
    });
    r.body(BodyExt::boxed(StreamBody::new(stream)))
        .map_err(|_| OssError::internal_error())
}

async fn put_object(ctx: &Ctx<'_>, body: ReqBody) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let len = content_length(ctx)?;
    let md5 = content_md5(ctx)?;
    let forbid = ctx.forbid_overwrite();
    if forbid && b.get(&ctx.key).is_some() {
        return Err(file_exists());
    }
    let w = ctx
        .app
        .storage
        .ingest(None, body_stream(ctx.app, body), len)
        .await
        .map_err(storage_error)?;
    if md5.is_some_and(|m| m != w.md5) {
        return Err(bad_digest());
    }
    let meta = new_meta(
        &ctx.key,
        &w,
        ObjectType::Normal,
        write_meta_from(&ctx.headers),
        w.etag(),
    );
    let md5_b64 = base64::engine::general_purpose::STANDARD.encode(w.md5);
    let (app, b) = (ctx.app.clone(), b.clone());
    let saved = blocking(move || app.storage.commit(&b, meta, NewData::Temp(w.temp), forbid)).await?;
    let mut r = Response::builder();
    r = set(r, "ETag", &saved.etag);
    r = set(r, "Content-MD5", &md5_b64);
    r = set(r, "x-oss-hash-crc64ecma", &saved.crc64.to_string());
    r.header(header::CONTENT_LENGTH, 0)
        .body(empty())
        .map_err(|_| OssError::internal_error())
}

fn new_meta(key: &str, w: &Written, object_type: ObjectType, meta: WriteMeta, etag: String) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size: w.size,
        etag,
        crc64: w.crc64,
        last_modified_ms: Utc::now().timestamp_millis(),
        object_type,
        meta,
        symlink_target: None,
        data_file: None,
        data_parts: Vec::new(),
    }
}

/// Parse `x-oss-copy-source` (`/bucket/key`, key percent-encoded with or without `/` kept).
fn copy_source(ctx: &Ctx<'_>) -> Result<(Arc<Bucket>, String), OssError> {
    let raw = ctx
        .headers
        .get("x-oss-copy-source")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let raw = raw.trim();
    let raw = raw.split_once('?').map(|(p, _)| p).unwrap_or(raw);
    let path = raw.strip_prefix('/').unwrap_or(raw);
    let Some((b, k)) = path.split_once('/') else {
        return Err(invalid_arg(
            "Copy Source must mention the source bucket and key: /sourcebucket/sourcekey.",
            "x-oss-copy-source",
            raw,
        ));
    };
    let bucket = String::from_utf8_lossy(&percent_decode(b)).into_owned();
    let key =
        String::from_utf8(percent_decode(k)).map_err(|_| invalid_object_name("The specified object is not valid."))?;
    check_key(&key)?;
    let sb = ctx
        .app
        .storage
        .bucket(&bucket)
        .ok_or_else(|| OssError::no_such_bucket(&bucket))?;
    ctx.authz.check("oss:GetObject", Some(&bucket), Some(&key))?;
    Ok((sb, key))
}

async fn copy_object(ctx: &Ctx<'_>) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let (sb, skey) = copy_source(ctx)?;
    let (src, file) = open_following(&sb, &skey)?;
    if let Some(status) = check_conditions(ctx, "x-oss-copy-source-", &src)? {
        return status_only(status);
    }
    let directive = ctx.header("x-oss-metadata-directive").unwrap_or("COPY");
    let meta = match directive.to_ascii_uppercase().as_str() {
        "COPY" => src.meta.clone(),
        "REPLACE" => write_meta_from(&ctx.headers),
        _ => {
            return Err(invalid_arg(
                "Invalid metadata directive.",
                "x-oss-metadata-directive",
                directive,
            ));
        }
    };
    let forbid = ctx.forbid_overwrite();
    if forbid && b.get(&ctx.key).is_some() {
        return Err(file_exists());
    }
    let ranges = file.map(|data| data.ranges(0, src.size)).unwrap_or_default();
    let w = ctx.app.storage.copy_ranges(ranges, true).await.map_err(storage_error)?;
    let m = new_meta(&ctx.key, &w, ObjectType::Normal, meta, w.etag());
    let (app, b) = (ctx.app.clone(), b.clone());
    let saved = blocking(move || app.storage.commit(&b, m, NewData::Temp(w.temp), forbid)).await?;
    let mut x = XmlWriter::new("CopyObjectResult");
    x.elem("ETag", &saved.etag)
        .elem("LastModified", &iso(saved.last_modified()));
    let mut r = xml_response(ctx, x.finish());
    if let Ok(v) = HeaderValue::from_str(&saved.crc64.to_string()) {
        r.headers_mut().insert("x-oss-hash-crc64ecma", v);
    }
    if let Ok(v) = HeaderValue::from_str(&saved.etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

async fn initiate(ctx: &Ctx<'_>) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    if ctx.forbid_overwrite() && b.get(&ctx.key).is_some() {
        return Err(file_exists());
    }
    let (app, bucket, key, meta) = (
        ctx.app.clone(),
        b.name.clone(),
        ctx.key.clone(),
        write_meta_from(&ctx.headers),
    );
    let up = blocking(move || app.storage.initiate(&bucket, &key, meta)).await?;
    let url = ctx.q.url();
    let mut w = XmlWriter::new("InitiateMultipartUploadResult");
    w.elem("Bucket", &b.name)
        .elem_enc("Key", &ctx.key, url)
        .elem("UploadId", &up.info.id);
    if url {
        w.elem("EncodingType", "url");
    }
    Ok(xml_response(ctx, w.finish()))
}

fn parse_part_number(ctx: &Ctx<'_>) -> Result<u32, OssError> {
    let v = ctx.q.get("partNumber").unwrap_or("");
    match v.parse::<u32>() {
        Ok(n) if (1..=MAX_PART_NUMBER).contains(&n) => Ok(n),
        _ => Err(invalid_arg(
            "Part number must be an integer between 1 and 10000, inclusive.",
            "partNumber",
            v,
        )),
    }
}

async fn upload_part(ctx: &Ctx<'_>, body: ReqBody) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let number = parse_part_number(ctx)?;
    let id = ctx.q.get("uploadId").unwrap_or("");
    let up = ctx
        .app
        .storage
        .upload(&b.name, &ctx.key, id)
        .ok_or_else(|| no_such_upload(id))?;
    if ctx.op == Op::UploadPartCopy {
        let (sb, skey) = copy_source(ctx)?;
        let (src, file) = open_following(&sb, &skey)?;
        if let Some(status) = check_conditions(ctx, "x-oss-copy-source-", &src)? {
            return status_only(status);
        }
        let (offset, len) = match ctx.header("x-oss-copy-source-range") {
            None => (0, src.size),
            Some(v) => match parse_range(Some(v), src.size, true) {
                RangeResult::Part(a, z) => (a, z - a + 1),
                _ => {
                    return Err(invalid_arg(
                        "The x-oss-copy-source-range is invalid.",
                        "x-oss-copy-source-range",
                        v,
                    ));
                }
            },
        };
        if len > MAX_OBJECT_BYTES {
            return Err(entity_too_large());
        }
        let ranges = file.map(|data| data.ranges(offset, len)).unwrap_or_default();
        let w = ctx.app.storage.copy_ranges(ranges, true).await.map_err(storage_error)?;
        let app = ctx.app.clone();
        let part = blocking(move || app.storage.put_part(&up, number, w)).await?;
        let mut x = XmlWriter::new("CopyPartResult");
        x.elem("LastModified", &iso(Utc::now())).elem("ETag", &part.etag());
        let mut r = xml_response(ctx, x.finish());
        if let Ok(v) = HeaderValue::from_str(&part.crc64.to_string()) {
            r.headers_mut().insert("x-oss-hash-crc64ecma", v);
        }
        // oss2 takes the part ETag from the header.
        if let Ok(v) = HeaderValue::from_str(&part.etag()) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    let len = content_length(ctx)?;
    let md5 = content_md5(ctx)?;
    let w = ctx
        .app
        .storage
        .ingest(None, body_stream(ctx.app, body), len)
        .await
        .map_err(storage_error)?;
    if md5.is_some_and(|m| m != w.md5) {
        return Err(bad_digest());
    }
    let md5_b64 = base64::engine::general_purpose::STANDARD.encode(w.md5);
    // The upload may have been aborted or completed meanwhile.
    if ctx.app.storage.upload(&b.name, &ctx.key, id).is_none() {
        return Err(no_such_upload(id));
    }
    let app = ctx.app.clone();
    let part = blocking(move || app.storage.put_part(&up, number, w)).await?;
    let mut r = Response::builder();
    r = set(r, "ETag", &part.etag());
    r = set(r, "Content-MD5", &md5_b64);
    r = set(r, "x-oss-hash-crc64ecma", &part.crc64.to_string());
    r.header(header::CONTENT_LENGTH, 0)
        .body(empty())
        .map_err(|_| OssError::internal_error())
}

fn invalid_part(message: &str) -> OssError {
    OssError::new(400, "InvalidPart", message, "0042-00000205")
}

async fn complete(ctx: &Ctx<'_>, body: ReqBody) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let id = ctx.q.get("uploadId").unwrap_or("").to_string();
    let up = ctx
        .app
        .storage
        .upload(&b.name, &ctx.key, &id)
        .ok_or_else(|| no_such_upload(&id))?;
    let body = read_small_body(ctx.app, body).await?;
    let complete_all = ctx
        .header("x-oss-complete-all")
        .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let stored = up.parts();
    let listed: Vec<(u32, String)> = if complete_all {
        if !body.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid_arg(
                "Should not specify both complete all header and http body.",
                "x-oss-complete-all",
                "yes",
            ));
        }
        stored.values().map(|p| (p.number, p.etag())).collect()
    } else {
        crate::xml::parse_complete(&body).map_err(|_| OssError::malformed_xml())?
    };
    if listed.is_empty() {
        return Err(OssError::malformed_xml());
    }
    if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(OssError::new(
            400,
            "InvalidPartOrder",
            "The list of parts was not in ascending order. Parts list must specified in order by part number.",
            "0042-00000206",
        ));
    }
    let mut parts = Vec::with_capacity(listed.len());
    for (n, etag) in &listed {
        match stored.get(n) {
            Some(p) if etag_eq(etag, &p.etag()) => parts.push(p.clone()),
            _ => {
                return Err(invalid_part(
                    "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag.",
                )
                .with("PartNumber", n.to_string())
                .with("ETag", etag.clone()));
            }
        }
    }
    let non_last = &parts[..parts.len() - 1];
    if let Some(p) = non_last.iter().find(|p| p.size < MIN_PART_BYTES) {
        return Err(OssError::new(
            400,
            "EntityTooSmall",
            "Your proposed upload is smaller than the minimum allowed size.",
            "0042-00000213",
        )
        .with("PartNumber", p.number.to_string())
        .with("ProposedSize", p.size.to_string())
        .with("MinSizeAllowed", MIN_PART_BYTES.to_string()));
    }
    let forbid = ctx.forbid_overwrite();
    if forbid && b.get(&ctx.key).is_some() {
        return Err(file_exists());
    }
    // Claim the upload so a concurrent Abort/Complete sees it gone.
    let up = ctx.app.storage.take_upload(&id).ok_or_else(|| no_such_upload(&id))?;
    // As in OSS, completing copies nothing: the object is the list of its parts' files, its
    // CRC is combined from theirs and its ETag built from their MD5s.
    let (mut crc64, mut size) = (0u64, 0u64);
    for p in &parts {
        crc64 = crate::storage::crc64_combine(crc64, p.crc64, p.size);
        size += p.size;
    }
    let files: Vec<(std::path::PathBuf, u64)> = parts.iter().map(|p| (up.part_path(p), p.size)).collect();
    let mut h = Md5::new();
    for p in &parts {
        if let Ok(raw) = hex::decode(&p.md5_hex) {
            h.update(raw);
        }
    }
    let etag = format!("\"{}-{}\"", hex::encode_upper(h.finalize()), parts.len());
    let m = ObjectMeta {
        key: ctx.key.clone(),
        size,
        etag,
        crc64,
        last_modified_ms: Utc::now().timestamp_millis(),
        object_type: ObjectType::Multipart,
        meta: up.info.meta.clone(),
        symlink_target: None,
        data_file: None,
        data_parts: Vec::new(),
    };
    let (app, b2) = (ctx.app.clone(), b.clone());
    let saved = match blocking(move || app.storage.commit(&b2, m, NewData::Parts(files), forbid)).await {
        Ok(s) => s,
        Err(e) => {
            ctx.app.storage.restore_upload(up);
            return Err(e);
        }
    };
    let app = ctx.app.clone();
    blocking(move || {
        app.storage.discard_upload_files(&up);
        Ok(())
    })
    .await?;
    let url = ctx.q.url();
    let mut x = XmlWriter::new("CompleteMultipartUploadResult");
    if url {
        x.elem("EncodingType", "url");
    }
    x.elem(
        "Location",
        &format!("http://{}/{}/{}", ctx.host, b.name, url_encode(&ctx.key)),
    )
    .elem("Bucket", &b.name)
    .elem_enc("Key", &ctx.key, url)
    .elem("ETag", &saved.etag);
    let mut r = xml_response(ctx, x.finish());
    if let Ok(v) = HeaderValue::from_str(&saved.crc64.to_string()) {
        r.headers_mut().insert("x-oss-hash-crc64ecma", v);
    }
    if let Ok(v) = HeaderValue::from_str(&saved.etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

fn list_parts(ctx: &Ctx<'_>) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let id = ctx.q.get("uploadId").unwrap_or("");
    let up = ctx
        .app
        .storage
        .upload(&b.name, &ctx.key, id)
        .ok_or_else(|| no_such_upload(id))?;
    let max = parse_max(ctx, "max-parts", 1000, 1000)?;
    let marker: u32 = match ctx.q.get("part-number-marker").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| invalid_arg("Invalid part-number-marker.", "part-number-marker", v))?,
    };
    let parts = up.parts();
    let selected: Vec<_> = parts.values().filter(|p| p.number > marker).collect();
    let truncated = selected.len() > max;
    let page = &selected[..selected.len().min(max)];
    let url = ctx.q.url();
    let mut w = XmlWriter::new("ListPartsResult");
    w.elem("Bucket", &b.name)
        .elem_enc("Key", &ctx.key, url)
        .elem("UploadId", id);
    if url {
        w.elem("EncodingType", "url");
    }
    w.elem("PartNumberMarker", &marker.to_string())
        .elem(
            "NextPartNumberMarker",
            &page.last().map(|p| p.number).unwrap_or(marker).to_string(),
        )
        .elem("MaxParts", &max.to_string())
        .elem("IsTruncated", if truncated { "true" } else { "false" })
        .elem("StorageClass", "Standard");
    for p in page {
        let lm = chrono::TimeZone::timestamp_millis_opt(&Utc, p.last_modified_ms)
            .single()
            .unwrap_or_else(Utc::now);
        w.open("Part")
            .elem("PartNumber", &p.number.to_string())
            .elem("LastModified", &iso(lm))
            .elem("ETag", &p.etag())
            .elem("HashCrc64ecma", &p.crc64.to_string())
            .elem("Size", &p.size.to_string())
            .close();
    }
    Ok(xml_response(ctx, w.finish()))
}

fn list_uploads(ctx: &Ctx<'_>) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let url = ctx.q.url();
    let prefix = ctx.q.get("prefix").unwrap_or("");
    let key_marker = ctx.q.get("key-marker").unwrap_or("");
    let id_marker = ctx.q.get("upload-id-marker").unwrap_or("");
    let max = parse_max(ctx, "max-uploads", 1000, 1000)?;
    let all: Vec<_> = ctx
        .app
        .storage
        .uploads_of(&b.name)
        .into_iter()
        .filter(|u| u.info.key.starts_with(prefix))
        .filter(|u| {
            key_marker.is_empty()
                || u.info.key.as_str() > key_marker
                || (u.info.key == key_marker && !id_marker.is_empty() && u.info.id.as_str() > id_marker)
        })
        .collect();
    // With a delimiter, keys that continue past it roll up into one CommonPrefixes entry.
    let delimiter = ctx.q.get("delimiter").unwrap_or("");
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last: Option<(String, String)> = None;
    for u in &all {
        let rest = &u.info.key[prefix.len()..];
        let cp = (!delimiter.is_empty())
            .then(|| rest.find(delimiter))
            .flatten()
            .map(|pos| u.info.key[..prefix.len() + pos + delimiter.len()].to_string());
        if cp.is_some() && prefixes.last() == cp.as_ref() {
            continue;
        }
        if uploads.len() + prefixes.len() >= max {
            truncated = true;
            break;
        }
        last = Some((u.info.key.clone(), u.info.id.clone()));
        match cp {
            Some(cp) => prefixes.push(cp),
            None => uploads.push(u.clone()),
        }
    }
    let (next_key, next_id) = last.unwrap_or_default();
    let mut w = XmlWriter::new("ListMultipartUploadsResult");
    w.elem("Bucket", &b.name)
        .elem_enc("KeyMarker", key_marker, url)
        .elem("UploadIdMarker", id_marker)
        .elem_enc("NextKeyMarker", &next_key, url)
        .elem("NextUploadIdMarker", &next_id)
        .elem_enc("Delimiter", delimiter, url)
        .elem_enc("Prefix", prefix, url)
        .elem("MaxUploads", &max.to_string())
        .elem("IsTruncated", if truncated { "true" } else { "false" });
    if url {
        w.elem("EncodingType", "url");
    }
    for u in &uploads {
        let t = chrono::TimeZone::timestamp_millis_opt(&Utc, u.info.initiated_ms)
            .single()
            .unwrap_or_else(Utc::now);
        w.open("Upload")
            .elem_enc("Key", &u.info.key, url)
            .elem("UploadId", &u.info.id)
            .elem("Initiated", &iso(t))
            .close();
    }
    for p in &prefixes {
        w.open("CommonPrefixes").elem_enc("Prefix", p, url).close();
    }
    Ok(xml_response(ctx, w.finish()))
}

async fn append(ctx: &Ctx<'_>, body: ReqBody) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let pv = ctx.q.get("position").unwrap_or("");
    let position: u64 = pv
        .parse()
        .map_err(|_| invalid_arg("Position must be a non-negative integer.", "position", pv))?;
    let len = match content_length(ctx)? {
        BodyLen::Exact(n) if position.saturating_add(n) > MAX_OBJECT_BYTES => return Err(entity_too_large()),
        BodyLen::AtMost(_) => BodyLen::AtMost(MAX_OBJECT_BYTES.saturating_sub(position)),
        exact => exact,
    };
    let md5 = content_md5(ctx)?;
    let res = ctx
        .app
        .storage
        .append(
            b,
            &ctx.key,
            AppendRequest {
                position,
                expected: len,
                meta: write_meta_from(&ctx.headers),
                content_md5: md5,
            },
            body_stream(ctx.app, body),
        )
        .await;
    let saved = match res {
        Ok(s) => s,
        Err(StorageError::Position { length, .. }) => {
            let e = storage_error(StorageError::Position { position, length });
            ctx.app.stats.error(e.code);
            // This error answer carries an extra header, so it is built here.
            let mut r = crate::server::error_response(&e, ctx.request_id, ctx.host, false);
            if let Ok(v) = HeaderValue::from_str(&length.to_string()) {
                r.headers_mut().insert("x-oss-next-append-position", v);
            }
            return Ok(r);
        }
        Err(e) => return Err(storage_error(e)),
    };
    let mut r = Response::builder();
    r = set(r, "ETag", &saved.etag);
    r = set(r, "x-oss-next-append-position", &saved.size.to_string());
    r = set(r, "x-oss-hash-crc64ecma", &saved.crc64.to_string());
    r.header(header::CONTENT_LENGTH, 0)
        .body(empty())
        .map_err(|_| OssError::internal_error())
}

async fn put_symlink(ctx: &Ctx<'_>) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let raw = ctx
        .headers
        .get("x-oss-symlink-target")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
        .ok_or_else(|| invalid_arg("x-oss-symlink-target is missing.", "x-oss-symlink-target", ""))?;
    check_key(&symlink_target_key(&raw))?;
    let etag = format!("\"{}\"", hex::encode_upper(Md5::digest(raw.as_bytes())));
    let meta = ObjectMeta {
        key: ctx.key.clone(),
        size: 0,
        etag,
        crc64: 0,
        last_modified_ms: Utc::now().timestamp_millis(),
        object_type: ObjectType::Symlink,
        meta: write_meta_from(&ctx.headers),
        symlink_target: Some(raw),
        data_file: None,
        data_parts: Vec::new(),
    };
    let (app, b, forbid) = (ctx.app.clone(), b.clone(), ctx.forbid_overwrite());
    let saved = blocking(move || app.storage.commit(&b, meta, NewData::None, forbid)).await?;
    let mut r = Response::builder();
    r = set(r, "ETag", &saved.etag);
    r.header(header::CONTENT_LENGTH, 0)
        .body(empty())
        .map_err(|_| OssError::internal_error())
}

fn get_symlink(ctx: &Ctx<'_>) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let m = b.get(&ctx.key).ok_or_else(|| OssError::no_such_key(&ctx.key))?;
    if m.object_type != ObjectType::Symlink {
        return Err(OssError::new(
            400,
            "NotSymlink",
            "The specified object is not a symlink.",
            "0026-00000012",
        ));
    }
    let mut r = Response::builder();
    r = set(r, "x-oss-symlink-target", m.symlink_target.as_deref().unwrap_or(""));
    r = set(r, "ETag", &m.etag);
    r = set(r, "Last-Modified", &http_date(m.last_modified()));
    r = set(r, "x-oss-object-type", "Symlink");
    for (k, v) in &m.meta.user_meta {
        r = set(r, &format!("x-oss-meta-{k}"), v);
    }
    r.header(header::CONTENT_LENGTH, 0)
        .body(empty())
        .map_err(|_| OssError::internal_error())
}

async fn delete_multiple(ctx: &Ctx<'_>, body: ReqBody) -> Result<Response<RespBody>, OssError> {
    let b = ctx.bucket()?;
    let md5 = content_md5(ctx)?;
    // S3 clients may protect the body with a signed payload hash instead of Content-MD5.
    if md5.is_none() && !ctx.s3 {
        return Err(OssError::new(
            400,
            "InvalidDigest",
            "Content-MD5 is required for DeleteMultipleObjects.",
            "0016-00000401",
        ));
    }
    let body = read_small_body(ctx.app, body).await?;
    if let Some(md5) = md5
        && Md5::digest(&body).as_slice() != md5
    {
        return Err(bad_digest());
    }
    let req = crate::xml::parse_delete(&body).map_err(|_| OssError::malformed_xml())?;
    if req.keys.is_empty() || req.keys.len() > MAX_DELETE_KEYS {
        return Err(OssError::malformed_xml());
    }
    let url = ctx.q.url();
    // With encoding-type=url the keys in the body are percent-encoded too.
    let keys: Vec<String> = if url {
        req.keys
            .iter()
            .map(|k| String::from_utf8_lossy(&percent_decode(k)).into_owned())
            .collect()
    } else {
        req.keys
    };
    for k in &keys {
        check_key(k)?;
        ctx.authz.check("oss:DeleteObject", Some(&b.name), Some(k))?;
    }
    let mut w = XmlWriter::new("DeleteResult");
    if url {
        w.elem("EncodingType", "url");
    }
    let (b, to_delete) = (b.clone(), keys.clone());
    blocking(move || to_delete.iter().try_for_each(|k| b.delete(k).map(|_| ()))).await?;
    if !req.quiet {
        for k in &keys {
            w.open("Deleted").elem_enc("Key", k, url).close();
        }
    }
    Ok(xml_response(ctx, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(v: &str, size: u64, std: bool) -> Option<(u64, u64)> {
        match parse_range(Some(v), size, std) {
            RangeResult::Whole => None,
            RangeResult::Part(a, b) => Some((a, b)),
            RangeResult::Unsatisfiable => Some((u64::MAX, u64::MAX)),
        }
    }

    #[test]
    fn range_semantics() {
        assert_eq!(pr("bytes=0-9", 100, false), Some((0, 9)));
        assert_eq!(pr("bytes=90-", 100, false), Some((90, 99)));
        assert_eq!(pr("bytes=-10", 100, false), Some((90, 99)));
        assert_eq!(pr("bytes=0-1,5-6", 100, false), Some((0, 1)));
        assert_eq!(pr("bytes=100-200", 100, false), None);
        assert_eq!(pr("bytes=50-200", 100, false), None);
        assert_eq!(pr("bytes=50-200", 100, true), Some((50, 99)));
        assert_eq!(pr("bytes=100-200", 100, true), Some((u64::MAX, u64::MAX)));
        assert_eq!(pr("byte=0-1", 100, true), None);
        assert_eq!(pr("bytes=5-1", 100, true), None);
        assert_eq!(pr("bytes=-200", 100, false), None);
        assert_eq!(pr("bytes=-200", 100, true), Some((0, 99)));
        assert_eq!(pr("bytes=0-0", 0, true), Some((u64::MAX, u64::MAX)));
    }

    #[test]
    fn key_rules() {
        assert!(check_key("").is_err());
        assert!(check_key("/abs").is_err());
        assert!(check_key("\\abs").is_err());
        assert!(check_key(&"a".repeat(1023)).is_ok());
        assert!(check_key(&"a".repeat(1024)).is_err());
        assert!(check_key("../../etc/passwd").is_ok());
        assert!(check_key("a\0b").is_ok());
    }

    #[test]
    fn etag_comparison() {
        assert!(etag_eq("\"ABC\"", "\"abc\""));
        assert!(etag_eq("abc", "\"ABC\""));
        assert!(etag_eq("*", "\"X\""));
        assert!(!etag_eq("\"ABD\"", "\"ABC\""));
    }
}
