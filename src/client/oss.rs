//! `OssClient`: the production [`ObjectClient`] for one bucket, over reqwest (rustls, keep-alive
//! pool, connect and per-read timeouts, no redirects).
//!
//! Every call runs one retry loop ([`RetryState`]): each attempt takes credentials fresh from the
//! provider, signs (V4 by default, V1 on request) with the current time corrected by the clock
//! offset learnt from `RequestTimeTooSkewed` answers, and sends. Error answers are parsed
//! (`<Error>` body, or the base64 `x-oss-err` header of HEAD answers) and classified by
//! [`crate::retry::classify`]: transient errors back off and retry within the attempt and time
//! budget; a clock-skew answer corrects the offset and re-signs; a rejected token forces exactly
//! one `refresh_after_rejection` and a re-signed retry (a second rejection is `AccessDenied`);
//! everything else is final. A GET body cut off mid-way is resumed from where it stopped, with
//! `If-Match` on the ETag, as another attempt of the same loop.
//!
//! Integrity: PutObject, UploadPart and AppendObject compare the CRC-64 of the bytes sent with
//! `x-oss-hash-crc64ecma`; CompleteMultipartUpload compares it with the combination of the
//! parts' CRCs; full-object GETs verify the bytes received. A mismatch is
//! `ClientError::Integrity`, never a success.
//!
//! Logging: one `debug` event per attempt (op, method, key, status, attempt), a `warn` per retry
//! with its cause. URLs with queries, headers, signatures, tokens and secrets are never logged.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use md5::{Digest as _, Md5};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use tracing::{debug, warn};

use super::buffers::BufferPool;
use super::xml;
use super::{
    AppendObjectParams, AppendObjectResult, BucketInfo, ClientError, CompleteMultipartUploadParams, CopyObjectParams,
    CopyObjectResult, CreateMultipartUploadParams, DeleteError, GetObjectParams, GetObjectResult, GetSymlinkResult,
    ListObjectsParams, ListObjectsResult, ListedObject, ListedPart, MAX_DELETE_KEYS, MAX_LIST_KEYS, MAX_PARTS,
    MetadataDirective, ObjectClient, PutObjectParams, PutObjectResult, PutSymlinkParams, ServiceError,
    UploadPartCopyParams, UploadPartParams, UploadedPart,
};
use crate::auth::signer::{self, KeyEncoding, SignableRequest, UrlBase};
use crate::auth::{CredentialProvider, Credentials};
use crate::config::SignatureVersion;
use crate::crc64;
use crate::object::{ETag, ObjectMeta, ObjectType, UserMeta};
use crate::retry::{Backoff, RetryClass, RetryConfig, classify};

/// Default time to establish a TCP/TLS connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest wait for the next bytes of an answer (headers or body).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default idle keep-alive connections kept per host.
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 64;
/// Longest OSS object key in bytes.
pub const MAX_KEY_BYTES: usize = 1023;
/// Page size asked of ListParts.
pub const LIST_PARTS_PAGE_SIZE: u32 = 1000;
/// Error bodies longer than this are cut before parsing.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

const H_RANGE_BEHAVIOR: &str = "x-oss-range-behavior";
const H_CRC64: &str = "x-oss-hash-crc64ecma";
const H_OBJECT_TYPE: &str = "x-oss-object-type";
const H_NEXT_APPEND: &str = "x-oss-next-append-position";
const H_META_PREFIX: &str = "x-oss-meta-";
const H_FORBID_OVERWRITE: &str = "x-oss-forbid-overwrite";
const H_COPY_SOURCE: &str = "x-oss-copy-source";
const H_SYMLINK_TARGET: &str = "x-oss-symlink-target";
const H_REQUEST_ID: &str = "x-oss-request-id";
const H_EC: &str = "x-oss-ec";
const H_ERR: &str = "x-oss-err";
const CONTENT_TYPE_DEFAULT: &str = "application/octet-stream";
const CONTENT_TYPE_XML: &str = "application/xml";

/// How to reach the bucket.
#[derive(Clone, Debug)]
pub struct OssClientConfig {
    /// e.g. `https://oss-cn-hangzhou.aliyuncs.com` or `http://127.0.0.1:9000` (scheme optional,
    /// https assumed).
    pub endpoint: String,
    /// V4 signing region (`cn-hangzhou`); derived from `oss-<region>[-internal].aliyuncs.com`
    /// when absent.
    pub region: Option<String>,
    pub bucket: String,
    pub signature_version: SignatureVersion,
    /// Path-style addressing; forced on for IP and localhost endpoints.
    pub path_style: bool,
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of an answer.
    pub read_timeout: Duration,
    pub retry: RetryConfig,
    pub pool_max_idle_per_host: usize,
    pub user_agent: String,
}

impl OssClientConfig {
    /// Defaults for everything but the endpoint and bucket.
    pub fn new(endpoint: impl Into<String>, bucket: impl Into<String>) -> Self {
        OssClientConfig {
            endpoint: endpoint.into(),
            region: None,
            bucket: bucket.into(),
            signature_version: SignatureVersion::V4,
            path_style: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            retry: RetryConfig::default(),
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            user_agent: concat!("ossmount/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl OssClientConfig {
    /// The client settings of a mount configuration (endpoint, region, signature, addressing),
    /// with a keep-alive pool sized for its concurrency.
    pub fn from_config(config: &crate::config::Config) -> Self {
        let mut c = OssClientConfig::new(config.endpoint.url.clone(), config.bucket.clone());
        c.region = config.endpoint.region.clone();
        c.signature_version = config.endpoint.signature_version;
        c.path_style = config.endpoint.path_style;
        c.pool_max_idle_per_host =
            DEFAULT_POOL_MAX_IDLE_PER_HOST.max(config.transfer.max_concurrency.saturating_mul(2));
        c
    }
}

/// The region of an `*.aliyuncs.com` OSS endpoint host: `oss-<region>[-internal].aliyuncs.com`
/// (optionally preceded by `<bucket>.`) or dual-stack `<region>.oss.aliyuncs.com`.
pub fn region_from_host(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let rest = host.strip_suffix(".aliyuncs.com")?;
    if let Some(dual) = rest.strip_suffix(".oss") {
        let region = dual.rsplit('.').next()?;
        return (!region.is_empty()).then(|| region.to_owned());
    }
    let label = rest.rsplit('.').next()?;
    let region = label.strip_prefix("oss-")?;
    let region = region.strip_suffix("-internal").unwrap_or(region);
    if region.is_empty() || region.starts_with("accelerate") {
        return None;
    }
    Some(region.to_owned())
}

fn is_ip_or_localhost(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok() || bare.eq_ignore_ascii_case("localhost")
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Check a key the way OSS does (PROTOCOL.md §1.1).
fn check_key(key: &str) -> Result<(), ClientError> {
    if key.is_empty() {
        return Err(ClientError::InvalidRequest("empty object key".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ClientError::InvalidRequest(format!(
            "object key longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(ClientError::InvalidRequest(format!(
            "object key {key:?} starts with a slash"
        )));
    }
    Ok(())
}

/// One OSS operation as the retry loop sends it.
struct OpRequest<'a> {
    op: &'static str,
    method: Method,
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl<'a> OpRequest<'a> {
    fn new(op: &'static str, method: Method, key: Option<&'a str>) -> Self {
        OpRequest {
            op,
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
    fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }
    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.into()));
    }
    fn body(mut self, body: Bytes, content_type: &str) -> Self {
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
        self.body = body;
        self.headers.push(("Content-MD5".to_owned(), md5));
        self.headers.push(("Content-Type".to_owned(), content_type.to_owned()));
        self
    }
    /// A part body without Content-MD5: a part's CRC-64 is verified against the server's before
    /// CompleteMultipartUpload, so a damaged part never becomes visible, and the MD5 pass would
    /// cost a core's worth of throughput on large uploads. Whole-object bodies (PutObject,
    /// AppendObject) keep Content-MD5 so the server refuses a damaged body before storing it.
    fn part_body(mut self, body: Bytes) -> Self {
        self.body = body;
        self.headers
            .push(("Content-Type".to_owned(), CONTENT_TYPE_DEFAULT.to_owned()));
        self
    }
    fn user_meta(mut self, meta: &UserMeta) -> Self {
        for (k, v) in meta {
            self.headers
                .push((format!("{H_META_PREFIX}{}", k.to_ascii_lowercase()), v.clone()));
        }
        self
    }
    fn key_for_log(&self) -> &str {
        self.key.unwrap_or("")
    }
}

/// A complete answer with its body.
struct OpResponse {
    headers: HeaderMap,
    body: Bytes,
}

/// The state of one call's retry loop, shared by all attempts (including GET resumptions).
struct RetryState {
    config: RetryConfig,
    backoff: Backoff,
    started: Instant,
    attempt: u32,
    refreshed: bool,
    forced: Option<Arc<Credentials>>,
}

impl RetryState {
    fn new(config: &RetryConfig) -> Self {
        RetryState {
            config: config.clone(),
            backoff: Backoff::new(config),
            started: Instant::now(),
            attempt: 0,
            refreshed: false,
            forced: None,
        }
    }

    /// Do not count the last attempt (it made progress).
    fn forgive_attempt(&mut self) {
        self.attempt = self.attempt.saturating_sub(1);
    }

    /// The delay before the next attempt, or None when the budget is spent.
    fn next_delay(&mut self) -> Option<Duration> {
        if self.attempt >= self.config.max_attempts.max(1) {
            return None;
        }
        let delay = self.backoff.next_delay();
        (self.started.elapsed() + delay <= self.config.max_total).then_some(delay)
    }
}

/// Why one attempt did not produce an answer.
enum SendError {
    /// The request cannot be expressed (bad header value ...): final.
    Build(ClientError),
    /// Network: connect, reset, timeout.
    Transport(String),
}

/// `reqwest::Error` with its source chain, without the URL.
fn transport_message(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "request error"
    };
    let e = e.without_url();
    let mut msg = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ClientError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| ClientError::InvalidResponse(format!("header {name} is not an unsigned integer"))),
    }
}

fn required_etag(headers: &HeaderMap, op: &str) -> Result<ETag, ClientError> {
    header_str(headers, "etag")
        .map(ETag::new)
        .ok_or_else(|| ClientError::InvalidResponse(format!("{op}: answer without ETag")))
}

fn required_crc(headers: &HeaderMap, op: &str) -> Result<u64, ClientError> {
    header_u64(headers, H_CRC64)?.ok_or_else(|| ClientError::InvalidResponse(format!("{op}: answer without {H_CRC64}")))
}

fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s).ok().map(|d| d.with_timezone(&Utc))
}

fn last_modified(headers: &HeaderMap) -> Result<SystemTime, ClientError> {
    match header_str(headers, "last-modified") {
        None => Ok(SystemTime::UNIX_EPOCH),
        Some(s) => parse_http_date(s)
            .map(SystemTime::from)
            .ok_or_else(|| ClientError::InvalidResponse(format!("bad Last-Modified {s:?}"))),
    }
}

fn user_meta_of(headers: &HeaderMap) -> UserMeta {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str();
            name.strip_prefix(H_META_PREFIX).map(|n| {
                (
                    n.to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
        })
        .collect()
}

/// Object metadata from GET/HEAD answer headers; `size` is the whole object's size.
fn meta_from_headers(headers: &HeaderMap, size: u64) -> Result<ObjectMeta, ClientError> {
    Ok(ObjectMeta {
        size,
        etag: required_etag(headers, "object metadata")?,
        last_modified: last_modified(headers)?,
        object_type: header_str(headers, H_OBJECT_TYPE)
            .map(ObjectType::parse)
            .unwrap_or_default(),
        crc64: header_u64(headers, H_CRC64)?,
        content_type: header_str(headers, "content-type").map(str::to_owned),
        user_meta: user_meta_of(headers),
    })
}

/// `Content-Range: bytes a-b/total` → (a, total).
fn parse_content_range(s: &str) -> Option<(u64, u64)> {
    let rest = s.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

fn iso8601_to_system_time(s: &str) -> Result<SystemTime, ClientError> {
    if s.is_empty() {
        return Ok(SystemTime::UNIX_EPOCH);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| SystemTime::from(d.with_timezone(&Utc)))
        .map_err(|_| ClientError::InvalidResponse(format!("bad LastModified {s:?}")))
}

fn invalid_xml(e: xml::XmlError) -> ClientError {
    ClientError::InvalidResponse(e.to_string())
}

/// The error code assumed for an error answer without a body (HEAD, proxies).
fn code_for_status(status: u16) -> &'static str {
    match status {
        304 => "NotModified",
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NoSuchKey",
        408 => "RequestTimeout",
        409 => "Conflict",
        412 => "PreconditionFailed",
        416 => "InvalidRange",
        429 => "QpsLimitExceeded",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "UnknownError",
    }
}

/// Build a `ServiceError` from an error answer: the XML body, else the base64 XML of the
/// `x-oss-err` header, else the status alone. A body that is not an OSS error document is Err.
fn service_error(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<ServiceError, String> {
    let header_ec = header_str(headers, H_EC).map(str::to_owned);
    let header_id = header_str(headers, H_REQUEST_ID).map(str::to_owned);
    let doc = if !body.iter().all(u8::is_ascii_whitespace) {
        Some(xml::parse_error(body).map_err(|e| e.to_string())?)
    } else if let Some(encoded) = header_str(headers, H_ERR) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("x-oss-err header is not base64: {e}"))?;
        Some(xml::parse_error(&raw).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok(match doc {
        Some(d) => ServiceError {
            status,
            code: d.code,
            message: d.message,
            ec: header_ec.or(d.ec),
            request_id: d.request_id.or(header_id),
        },
        None => ServiceError {
            status,
            code: code_for_status(status).to_owned(),
            message: format!("HTTP {status} without error body"),
            ec: header_ec,
            request_id: header_id,
        },
    })
}

/// The final `ClientError` for an error answer.
fn map_service_error(err: ServiceError, headers: &HeaderMap) -> ClientError {
    match err.code.as_str() {
        "NoSuchKey" | "NoSuchUpload" => ClientError::NoSuchKey(err),
        "NoSuchBucket" => ClientError::NoSuchBucket(err),
        "PreconditionFailed" => ClientError::PreconditionFailed(err),
        "FileAlreadyExists" => ClientError::AlreadyExists(err),
        "InvalidRange" => ClientError::InvalidRange(err),
        "PositionNotEqualToLength" => {
            let next_position = header_u64(headers, H_NEXT_APPEND).ok().flatten();
            ClientError::AppendPositionMismatch {
                error: err,
                next_position,
            }
        }
        "ObjectNotAppendable" => ClientError::NotAppendable(err),
        _ => match err.status {
            403 => ClientError::AccessDenied(err),
            404 => ClientError::NoSuchKey(err),
            412 => ClientError::PreconditionFailed(err),
            416 => ClientError::InvalidRange(err),
            _ => ClientError::Service(err),
        },
    }
}

/// The production OSS client for one bucket. Cheap to share behind an `Arc`.
pub struct OssClient {
    http: reqwest::Client,
    base: UrlBase,
    bucket: String,
    region: String,
    signature_version: SignatureVersion,
    retry: RetryConfig,
    provider: Arc<dyn CredentialProvider>,
    /// Server time minus local time, learnt from `RequestTimeTooSkewed` answers.
    clock_offset_ms: AtomicI64,
    /// Buffers GET bodies are received into.
    buffers: Arc<BufferPool>,
}

impl fmt::Debug for OssClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OssClient")
            .field("endpoint", &format!("{}://{}", self.base.scheme, self.base.host))
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("signature_version", &self.signature_version)
            .field("path_style", &self.base.path_style)
            .field("credentials", &self.provider.describe())
            .finish()
    }
}

impl OssClient {
    pub fn new(config: OssClientConfig, provider: Arc<dyn CredentialProvider>) -> Result<Self, ClientError> {
        let raw = config.endpoint.trim();
        let with_scheme = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("https://{raw}")
        };
        let url = url::Url::parse(&with_scheme)
            .map_err(|e| ClientError::InvalidRequest(format!("endpoint {raw:?} is not a URL: {e}")))?;
        let scheme = url.scheme().to_owned();
        if scheme != "http" && scheme != "https" {
            return Err(ClientError::InvalidRequest(format!(
                "endpoint {raw:?}: scheme must be http or https"
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| ClientError::InvalidRequest(format!("endpoint {raw:?} has no host")))?
            .to_owned();
        let host_port = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        if config.bucket.is_empty() {
            return Err(ClientError::InvalidRequest("empty bucket name".into()));
        }
        let path_style = config.path_style || is_ip_or_localhost(&host);
        let region = match config
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| region_from_host(&host))
        {
            Some(r) => r,
            None if config.signature_version == SignatureVersion::V4 => {
                return Err(ClientError::InvalidRequest(format!(
                    "cannot derive the signing region from endpoint {raw:?}; give --region (e.g. cn-hangzhou) \
                     or use --signature-version 1"
                )));
            }
            None => String::new(),
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(config.user_agent.clone())
            .use_rustls_tls();
        if is_loopback(&host) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::InvalidRequest(format!("HTTP client: {e}")))?;
        Ok(OssClient {
            http,
            base: UrlBase {
                scheme,
                host: host_port,
                path_style,
            },
            bucket: config.bucket,
            region,
            signature_version: config.signature_version,
            retry: config.retry,
            provider,
            clock_offset_ms: AtomicI64::new(0),
            buffers: BufferPool::global().clone(),
        })
    }

    /// The bucket this client talks to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The V4 signing region (empty for V1 without one).
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Whether requests use path-style addressing.
    pub fn path_style(&self) -> bool {
        self.base.path_style
    }

    /// The URL (without query) of a key, as requests use it.
    pub fn object_url(&self, key: Option<&str>) -> String {
        self.base.url(Some(&self.bucket), key, KeyEncoding::KeepSlash)
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Sign and send one attempt; answers with headers (body still streaming).
    async fn send_once(
        &self,
        req: &OpRequest<'_>,
        creds: &Credentials,
        now: DateTime<Utc>,
    ) -> Result<reqwest::Response, SendError> {
        let mut signable = SignableRequest {
            method: req.method.as_str().to_owned(),
            bucket: Some(self.bucket.clone()),
            key: req.key.map(str::to_owned),
            query: req.query.clone(),
            headers: req.headers.clone(),
        };
        match self.signature_version {
            SignatureVersion::V4 => signer::sign_v4(&mut signable, creds, &self.region, now, &[]),
            SignatureVersion::V1 => signer::sign_v1(&mut signable, creds, now),
        }
        let mut url = self.base.url(Some(&self.bucket), req.key, KeyEncoding::KeepSlash);
        if !req.query.is_empty() {
            url.push('?');
            url.push_str(&signer::encode_query(&req.query));
        }
        let mut headers = HeaderMap::with_capacity(signable.headers.len());
        for (name, value) in &signable.headers {
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                SendError::Build(ClientError::InvalidRequest(format!(
                    "{}: invalid header name {name:?}",
                    req.op
                )))
            })?;
            let v = HeaderValue::from_str(value).map_err(|_| {
                // Never echo the value: it may be a token or signature.
                SendError::Build(ClientError::InvalidRequest(format!(
                    "{}: header {name} has a value that is not visible ASCII",
                    req.op
                )))
            })?;
            headers.append(n, v);
        }
        if req.method == Method::PUT || req.method == Method::POST {
            // hyper omits the header for an empty body; OSS requires it (411 MissingContentLength).
            headers.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(req.body.len()));
        }
        let builder = self.http.request(req.method.clone(), url).headers(headers);
        let builder = if (req.body.is_empty() && req.method == Method::GET) || req.method == Method::HEAD {
            builder
        } else {
            builder.body(req.body.clone())
        };
        builder
            .send()
            .await
            .map_err(|e| SendError::Transport(transport_message(e)))
    }

    /// Run attempts until an answer with a success status arrives or the error is final.
    async fn execute_raw(&self, req: &OpRequest<'_>, state: &mut RetryState) -> Result<reqwest::Response, ClientError> {
        loop {
            state.attempt += 1;
            let creds = match state.forced.take() {
                Some(c) => c,
                None => self.provider.credentials().await.map_err(ClientError::Credentials)?,
            };
            let started = Instant::now();
            let result = self.send_once(req, &creds, self.now()).await;
            let resp = match result {
                Err(SendError::Build(e)) => return Err(e),
                Err(SendError::Transport(msg)) => {
                    debug!(op = req.op, method = %req.method, key = req.key_for_log(), attempt = state.attempt,
                        error = %msg, "OSS request failed");
                    if let Some(delay) = state.next_delay() {
                        warn!(op = req.op, key = req.key_for_log(), attempt = state.attempt, cause = %msg,
                            delay_ms = delay.as_millis() as u64, "retrying OSS request");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(ClientError::Transport(format!(
                        "{} {}: {msg} (after {} attempts)",
                        req.op,
                        req.key_for_log(),
                        state.attempt
                    )));
                }
                Ok(r) => r,
            };
            let status = resp.status();
            debug!(op = req.op, method = %req.method, key = req.key_for_log(), status = status.as_u16(),
                attempt = state.attempt, elapsed_ms = started.elapsed().as_millis() as u64, "OSS request");
            if status.is_success() {
                return Ok(resp);
            }
            let headers = resp.headers().clone();
            let body = read_error_body(resp).await;
            let code = status.as_u16();
            let err = match service_error(code, &headers, &body) {
                Ok(e) => e,
                Err(msg) if code >= 500 || code == 429 || code == 408 => ServiceError {
                    status: code,
                    code: code_for_status(code).to_owned(),
                    message: format!("unparseable error answer: {msg}"),
                    ec: None,
                    request_id: header_str(&headers, H_REQUEST_ID).map(str::to_owned),
                },
                Err(msg) => {
                    return Err(ClientError::InvalidResponse(format!(
                        "{} {}: HTTP {code} with an unparseable error answer: {msg}",
                        req.op,
                        req.key_for_log()
                    )));
                }
            };
            match classify(code, &err.code, creds.is_temporary()) {
                RetryClass::Retryable => {
                    if let Some(delay) = state.next_delay() {
                        warn!(op = req.op, key = req.key_for_log(), attempt = state.attempt, cause = %err,
                            delay_ms = delay.as_millis() as u64, "retrying OSS request");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(map_service_error(err, &headers));
                }
                RetryClass::ClockSkew => {
                    if let Some(server) = header_str(&headers, "date").and_then(parse_http_date) {
                        let offset = (server - Utc::now()).num_milliseconds();
                        self.clock_offset_ms.store(offset, Ordering::Relaxed);
                        warn!(
                            offset_ms = offset,
                            "OSS reports clock skew; signing with the server's time from now on"
                        );
                    }
                    if state.attempt < state.config.max_attempts.max(2) {
                        continue;
                    }
                    return Err(map_service_error(err, &headers));
                }
                RetryClass::Credential => {
                    if state.refreshed {
                        return Err(ClientError::AccessDenied(err));
                    }
                    state.refreshed = true;
                    warn!(op = req.op, key = req.key_for_log(), code = %err.code,
                        source = %self.provider.describe(), "credentials rejected; refreshing once and retrying");
                    let fresh = self
                        .provider
                        .refresh_after_rejection(&creds)
                        .await
                        .map_err(ClientError::Credentials)?;
                    state.forced = Some(fresh);
                    continue;
                }
                RetryClass::Fatal => return Err(map_service_error(err, &headers)),
            }
        }
    }

    /// Run a request to completion, body included; a body cut off counts as a failed attempt.
    async fn execute_with(&self, req: &OpRequest<'_>, state: &mut RetryState) -> Result<OpResponse, ClientError> {
        loop {
            let resp = self.execute_raw(req, state).await?;
            let headers = resp.headers().clone();
            match resp.bytes().await {
                Ok(body) => return Ok(OpResponse { headers, body }),
                Err(e) => {
                    let msg = transport_message(e);
                    if let Some(delay) = state.next_delay() {
                        warn!(op = req.op, key = req.key_for_log(), attempt = state.attempt, cause = %msg,
                            delay_ms = delay.as_millis() as u64, "answer body cut off; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(ClientError::Transport(format!(
                        "{} {}: {msg}",
                        req.op,
                        req.key_for_log()
                    )));
                }
            }
        }
    }

    async fn execute(&self, req: &OpRequest<'_>) -> Result<OpResponse, ClientError> {
        let mut state = RetryState::new(&self.retry);
        self.execute_with(req, &mut state).await
    }

    fn copy_source(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, signer::pe_path(key))
    }
}

/// Read at most `MAX_ERROR_BODY_BYTES` of an error answer; a failure gives what was read.
async fn read_error_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c),
            _ => break,
        }
    }
    out.truncate(MAX_ERROR_BODY_BYTES);
    out
}

#[async_trait]
impl ObjectClient for OssClient {
    async fn get_object(&self, params: GetObjectParams) -> Result<GetObjectResult, ClientError> {
        check_key(&params.key)?;
        let key = params.key.as_str();
        if let Some(r) = &params.range
            && r.start >= r.end
        {
            // Nothing to read; still report the metadata (and the precondition).
            let meta = self.head_object(key).await?;
            if let Some(want) = &params.if_match
                && *want != meta.etag
            {
                return Err(ClientError::PreconditionFailed(ServiceError {
                    status: 412,
                    code: "PreconditionFailed".into(),
                    message: "ETag changed".into(),
                    ec: None,
                    request_id: None,
                }));
            }
            return Ok(GetObjectResult {
                meta,
                offset: r.start,
                data: Bytes::new(),
            });
        }
        let want_start = params.range.as_ref().map(|r| r.start).unwrap_or(0);
        let mut want_end: Option<u64> = params.range.as_ref().map(|r| r.end);
        let mut etag = params.if_match.clone();
        let mut meta: Option<ObjectMeta> = None;
        let mut buf = self.buffers.take(0);
        let mut state = RetryState::new(&self.retry);
        let mut resumed = false;
        'attempts: loop {
            let pos = want_start + buf.len() as u64;
            let mut req = OpRequest::new("GetObject", Method::GET, Some(key));
            if params.range.is_some() || resumed {
                let spec = match want_end {
                    Some(end) => format!("bytes={pos}-{}", end - 1),
                    None => format!("bytes={pos}-"),
                };
                req = req.header("Range", spec).header(H_RANGE_BEHAVIOR, "standard");
            }
            if let Some(e) = &etag {
                req = req.header("If-Match", e.as_str());
            }
            let resp = match self.execute_raw(&req, &mut state).await {
                Ok(r) => r,
                Err(ClientError::InvalidRange(e)) if !resumed && want_start == 0 => {
                    // A range on an empty object: empty data, not an error.
                    let m = self.head_object(key).await?;
                    if m.size == 0 {
                        return Ok(GetObjectResult {
                            meta: m,
                            offset: 0,
                            data: Bytes::new(),
                        });
                    }
                    return Err(ClientError::InvalidRange(e));
                }
                Err(e) => return Err(e),
            };
            let headers = resp.headers().clone();
            let (body_start, total) = if resp.status() == StatusCode::PARTIAL_CONTENT {
                let cr = header_str(&headers, "content-range")
                    .and_then(parse_content_range)
                    .ok_or_else(|| ClientError::InvalidResponse("206 answer without a valid Content-Range".into()))?;
                (cr.0, Some(cr.1))
            } else {
                (0, header_u64(&headers, "content-length")?)
            };
            if body_start > pos {
                return Err(ClientError::InvalidResponse(format!(
                    "GetObject {key}: asked for bytes from {pos}, got bytes from {body_start}"
                )));
            }
            if meta.is_none() {
                let size = total.ok_or_else(|| {
                    ClientError::InvalidResponse(format!("GetObject {key}: object size unknown (no Content-Length)"))
                })?;
                let m = meta_from_headers(&headers, size)?;
                if pos > size || (pos == size && size > 0) {
                    // The server ignored the range (200) and the start is beyond the end.
                    return Err(ClientError::InvalidRange(ServiceError {
                        status: 416,
                        code: "InvalidRange".into(),
                        message: format!("range starts at {pos}, object has {size} bytes"),
                        ec: None,
                        request_id: header_str(&headers, H_REQUEST_ID).map(str::to_owned),
                    }));
                }
                let end = want_end.map_or(size, |e| e.min(size));
                want_end = Some(end);
                // Received straight into a reused buffer of the final size: no regrowth, and
                // its pages are already faulted in.
                buf = self.buffers.take(end.saturating_sub(want_start) as usize);
                if etag.is_none() {
                    etag = Some(m.etag.clone());
                }
                meta = Some(m);
            }
            let end = want_end.unwrap_or(0);
            let mut skip = (pos - body_start) as usize;
            let mut resp = resp;
            let received_before = buf.len();
            let cut_cause = loop {
                let remaining = end.saturating_sub(want_start + buf.len() as u64) as usize;
                if remaining == 0 {
                    break 'attempts;
                }
                match resp.chunk().await {
                    Ok(Some(mut chunk)) => {
                        if skip > 0 {
                            let n = skip.min(chunk.len());
                            let _ = chunk.split_to(n);
                            skip -= n;
                        }
                        let take = chunk.len().min(remaining);
                        buf.append(&chunk[..take]);
                    }
                    Ok(None) => break format!("body ended after {} of {} bytes", buf.len(), end - want_start),
                    Err(e) => break transport_message(e),
                }
            };
            resumed = true;
            if buf.len() > received_before && state.started.elapsed() < state.config.max_total {
                // The cut attempt made progress: resume at once, without spending the budget, so a
                // large object survives any number of resets as long as each one moves forward.
                state.forgive_attempt();
                warn!(op = "GetObject", key, received = buf.len(), cause = %cut_cause, "resuming cut-off GetObject body");
                continue 'attempts;
            }
            if let Some(delay) = state.next_delay() {
                warn!(op = "GetObject", key, attempt = state.attempt, received = buf.len(), cause = %cut_cause,
                    delay_ms = delay.as_millis() as u64, "resuming cut-off GetObject body");
                tokio::time::sleep(delay).await;
                continue 'attempts;
            }
            return Err(ClientError::Transport(format!(
                "GetObject {key}: {cut_cause} (after {} attempts)",
                state.attempt
            )));
        }
        let meta = meta.ok_or_else(|| ClientError::InvalidResponse("GetObject without metadata".into()))?;
        let data = buf.freeze();
        if params.range.is_none()
            && let Some(expected) = meta.crc64
        {
            let actual = crc64::checksum(&data);
            if actual != expected {
                return Err(ClientError::Integrity {
                    what: format!("GetObject {key}"),
                    expected,
                    actual,
                });
            }
        }
        Ok(GetObjectResult {
            meta,
            offset: want_start,
            data,
        })
    }

    async fn head_object(&self, key: &str) -> Result<ObjectMeta, ClientError> {
        check_key(key)?;
        let resp = self
            .execute(&OpRequest::new("HeadObject", Method::HEAD, Some(key)))
            .await?;
        let size = header_u64(&resp.headers, "content-length")?
            .ok_or_else(|| ClientError::InvalidResponse(format!("HeadObject {key}: no Content-Length")))?;
        meta_from_headers(&resp.headers, size)
    }

    async fn list_objects(&self, params: ListObjectsParams) -> Result<ListObjectsResult, ClientError> {
        let max_keys = if params.max_keys == 0 {
            MAX_LIST_KEYS
        } else {
            params.max_keys.min(MAX_LIST_KEYS)
        };
        let mut req = OpRequest::new("ListObjectsV2", Method::GET, None)
            .query("list-type", "2")
            .query("encoding-type", "url")
            .query("max-keys", max_keys.to_string());
        let optional = [
            ("prefix", Some(&params.prefix)),
            ("delimiter", params.delimiter.as_ref()),
            ("continuation-token", params.continuation_token.as_ref()),
            ("start-after", params.start_after.as_ref()),
        ];
        for (name, value) in optional {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                req = req.query(name, v.clone());
            }
        }
        let resp = self.execute(&req).await?;
        let doc = xml::parse_list_bucket_result(&resp.body).map_err(invalid_xml)?;
        let encoded = doc.encoding_type.as_deref() == Some("url");
        let decode = |field: &'static str, s: &str| -> Result<String, ClientError> {
            if encoded {
                xml::url_decode("ListBucketResult", field, s).map_err(invalid_xml)
            } else {
                Ok(s.to_owned())
            }
        };
        let mut objects = Vec::with_capacity(doc.contents.len());
        for c in &doc.contents {
            objects.push(ListedObject {
                key: decode("Key", &c.key)?,
                size: c.size,
                etag: ETag::new(&c.etag),
                last_modified: iso8601_to_system_time(&c.last_modified)?,
                object_type: ObjectType::parse(&c.object_type),
            });
        }
        let common_prefixes = doc
            .common_prefixes
            .iter()
            .map(|p| decode("Prefix", &p.prefix))
            .collect::<Result<Vec<_>, _>>()?;
        let next_continuation_token = match (&doc.next_continuation_token, doc.is_truncated) {
            (Some(t), true) if !t.is_empty() => Some(decode("NextContinuationToken", t)?),
            (_, true) => {
                return Err(ClientError::InvalidResponse(
                    "ListObjectsV2: truncated listing without NextContinuationToken".into(),
                ));
            }
            _ => None,
        };
        Ok(ListObjectsResult {
            objects,
            common_prefixes,
            next_continuation_token,
        })
    }

    async fn put_object(&self, params: PutObjectParams) -> Result<PutObjectResult, ClientError> {
        check_key(&params.key)?;
        let ct = params.content_type.as_deref().unwrap_or(CONTENT_TYPE_DEFAULT);
        let mut req = OpRequest::new("PutObject", Method::PUT, Some(&params.key))
            .body(params.body.clone(), ct)
            .user_meta(&params.user_meta);
        if params.forbid_overwrite {
            req = req.header(H_FORBID_OVERWRITE, "true");
        }
        let local = crc64::checksum(&params.body);
        let mut state = RetryState::new(&self.retry);
        let resp = match self.execute_with(&req, &mut state).await {
            Ok(r) => r,
            Err(ClientError::AlreadyExists(e)) if params.forbid_overwrite && state.attempt > 1 => {
                // An earlier attempt may have written the object and lost the answer: it is ours
                // iff it holds exactly our bytes.
                let meta = self.head_object(&params.key).await?;
                if meta.crc64 == Some(local) && meta.size == params.body.len() as u64 {
                    return Ok(PutObjectResult {
                        etag: meta.etag,
                        crc64: local,
                    });
                }
                return Err(ClientError::AlreadyExists(e));
            }
            Err(e) => return Err(e),
        };
        let etag = required_etag(&resp.headers, "PutObject")?;
        let server = required_crc(&resp.headers, "PutObject")?;
        if server != local {
            return Err(ClientError::Integrity {
                what: format!("PutObject {}", params.key),
                expected: local,
                actual: server,
            });
        }
        Ok(PutObjectResult { etag, crc64: server })
    }

    async fn create_multipart_upload(&self, params: CreateMultipartUploadParams) -> Result<String, ClientError> {
        check_key(&params.key)?;
        let ct = params.content_type.as_deref().unwrap_or(CONTENT_TYPE_DEFAULT);
        let req = OpRequest::new("InitiateMultipartUpload", Method::POST, Some(&params.key))
            .query("uploads", "")
            .body(Bytes::new(), ct)
            .user_meta(&params.user_meta);
        let resp = self.execute(&req).await?;
        Ok(xml::parse_initiate_result(&resp.body).map_err(invalid_xml)?.upload_id)
    }

    async fn upload_part(&self, params: UploadPartParams) -> Result<UploadedPart, ClientError> {
        check_key(&params.key)?;
        check_part_number(params.part_number)?;
        let req = OpRequest::new("UploadPart", Method::PUT, Some(&params.key))
            .query("partNumber", params.part_number.to_string())
            .query("uploadId", params.upload_id.clone())
            .part_body(params.body.clone());
        let resp = self.execute(&req).await?;
        let etag = required_etag(&resp.headers, "UploadPart")?;
        let server = required_crc(&resp.headers, "UploadPart")?;
        let local = crc64::checksum(&params.body);
        if server != local {
            return Err(ClientError::Integrity {
                what: format!("UploadPart {} #{}", params.key, params.part_number),
                expected: local,
                actual: server,
            });
        }
        Ok(UploadedPart {
            part_number: params.part_number,
            etag,
            crc64: Some(local),
            size: params.body.len() as u64,
        })
    }

    async fn upload_part_copy(&self, params: UploadPartCopyParams) -> Result<UploadedPart, ClientError> {
        check_key(&params.key)?;
        check_key(&params.source_key)?;
        check_part_number(params.part_number)?;
        let size = match &params.source_range {
            Some(r) if r.start >= r.end => {
                return Err(ClientError::InvalidRequest("UploadPartCopy: empty source range".into()));
            }
            Some(r) => r.end - r.start,
            None => self.head_object(&params.source_key).await?.size,
        };
        let mut req = OpRequest::new("UploadPartCopy", Method::PUT, Some(&params.key))
            .query("partNumber", params.part_number.to_string())
            .query("uploadId", params.upload_id.clone())
            .header(H_COPY_SOURCE, self.copy_source(&params.source_key));
        if let Some(Range { start, end }) = &params.source_range {
            req = req.header("x-oss-copy-source-range", format!("bytes={start}-{}", end - 1));
        }
        if let Some(e) = &params.source_if_match {
            req = req.header("x-oss-copy-source-if-match", e.as_str());
        }
        let resp = self.execute(&req).await?;
        let doc = xml::parse_copy_result(&resp.body).map_err(invalid_xml)?;
        Ok(UploadedPart {
            part_number: params.part_number,
            etag: ETag::new(&doc.etag),
            crc64: header_u64(&resp.headers, H_CRC64)?,
            size,
        })
    }

    async fn complete_multipart_upload(
        &self,
        params: CompleteMultipartUploadParams,
    ) -> Result<PutObjectResult, ClientError> {
        check_key(&params.key)?;
        if params.parts.is_empty() {
            return Err(ClientError::InvalidRequest(
                "CompleteMultipartUpload without parts".into(),
            ));
        }
        let mut parts = params.parts.clone();
        parts.sort_by_key(|p| p.part_number);
        if parts.windows(2).any(|w| w[0].part_number == w[1].part_number) {
            return Err(ClientError::InvalidRequest(
                "CompleteMultipartUpload: duplicate part numbers".into(),
            ));
        }
        let listed: Vec<(u32, &str)> = parts.iter().map(|p| (p.part_number, p.etag.as_str())).collect();
        let body = Bytes::from(xml::complete_multipart_body(&listed));
        let mut req = OpRequest::new("CompleteMultipartUpload", Method::POST, Some(&params.key))
            .query("uploadId", params.upload_id.clone())
            .body(body, CONTENT_TYPE_XML);
        if params.forbid_overwrite {
            req = req.header(H_FORBID_OVERWRITE, "true");
        }
        let expected: Option<u64> = parts
            .iter()
            .map(|p| p.crc64.map(|c| (c, p.size)))
            .collect::<Option<Vec<_>>>()
            .map(crc64::combine_all);
        let mut state = RetryState::new(&self.retry);
        let resp = match self.execute_with(&req, &mut state).await {
            Ok(r) => r,
            Err(ClientError::NoSuchKey(e)) if state.attempt > 1 && expected.is_some() => {
                // An earlier attempt may have completed the upload and lost the answer: the
                // object is there with the expected CRC iff so.
                let meta = self.head_object(&params.key).await?;
                if meta.crc64.is_some() && meta.crc64 == expected {
                    let crc = meta.crc64.unwrap_or_default();
                    return Ok(PutObjectResult {
                        etag: meta.etag,
                        crc64: crc,
                    });
                }
                return Err(ClientError::NoSuchKey(e));
            }
            Err(e) => return Err(e),
        };
        let doc = xml::parse_complete_result(&resp.body).map_err(invalid_xml)?;
        let server = required_crc(&resp.headers, "CompleteMultipartUpload")?;
        if let Some(local) = expected
            && local != server
        {
            return Err(ClientError::Integrity {
                what: format!("CompleteMultipartUpload {}", params.key),
                expected: local,
                actual: server,
            });
        }
        let etag = header_str(&resp.headers, "etag")
            .map(ETag::new)
            .unwrap_or_else(|| ETag::new(&doc.etag));
        Ok(PutObjectResult { etag, crc64: server })
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ClientError> {
        check_key(key)?;
        let req = OpRequest::new("AbortMultipartUpload", Method::DELETE, Some(key)).query("uploadId", upload_id);
        self.execute(&req).await.map(|_| ())
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<ListedPart>, ClientError> {
        check_key(key)?;
        let mut out = Vec::new();
        let mut marker: Option<u32> = None;
        loop {
            let mut req = OpRequest::new("ListParts", Method::GET, Some(key))
                .query("uploadId", upload_id)
                .query("max-parts", LIST_PARTS_PAGE_SIZE.to_string());
            if let Some(m) = marker {
                req = req.query("part-number-marker", m.to_string());
            }
            let resp = self.execute(&req).await?;
            let doc = xml::parse_list_parts(&resp.body).map_err(invalid_xml)?;
            let last = doc.parts.last().map(|p| p.part_number);
            out.extend(doc.parts.into_iter().map(|p| ListedPart {
                part_number: p.part_number,
                etag: ETag::new(&p.etag),
                size: p.size,
                crc64: p.hash_crc64ecma,
            }));
            if !doc.is_truncated {
                return Ok(out);
            }
            let next = doc.next_part_number_marker.or(last);
            match next {
                Some(n) if Some(n) != marker && n < MAX_PARTS => marker = Some(n),
                _ => {
                    return Err(ClientError::InvalidResponse(
                        "ListParts: truncated answer without a usable NextPartNumberMarker".into(),
                    ));
                }
            }
        }
    }

    async fn copy_object(&self, params: CopyObjectParams) -> Result<CopyObjectResult, ClientError> {
        check_key(&params.source_key)?;
        check_key(&params.dest_key)?;
        let mut req = OpRequest::new("CopyObject", Method::PUT, Some(&params.dest_key))
            .header(H_COPY_SOURCE, self.copy_source(&params.source_key));
        match &params.metadata {
            MetadataDirective::Copy => req = req.header("x-oss-metadata-directive", "COPY"),
            MetadataDirective::Replace {
                content_type,
                user_meta,
            } => {
                req = req.header("x-oss-metadata-directive", "REPLACE").user_meta(user_meta);
                req.set_header("Content-Type", content_type.as_deref().unwrap_or(CONTENT_TYPE_DEFAULT));
            }
        }
        if let Some(e) = &params.source_if_match {
            req = req.header("x-oss-copy-source-if-match", e.as_str());
        }
        if params.forbid_overwrite {
            req = req.header(H_FORBID_OVERWRITE, "true");
        }
        let resp = self.execute(&req).await?;
        let doc = xml::parse_copy_result(&resp.body).map_err(invalid_xml)?;
        Ok(CopyObjectResult {
            etag: ETag::new(&doc.etag),
            crc64: header_u64(&resp.headers, H_CRC64)?,
        })
    }

    async fn delete_object(&self, key: &str) -> Result<(), ClientError> {
        check_key(key)?;
        match self
            .execute(&OpRequest::new("DeleteObject", Method::DELETE, Some(key)))
            .await
        {
            Ok(_) | Err(ClientError::NoSuchKey(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<DeleteError>, ClientError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.len() > MAX_DELETE_KEYS {
            return Err(ClientError::InvalidRequest(format!(
                "DeleteMultipleObjects: {} keys, at most {MAX_DELETE_KEYS}",
                keys.len()
            )));
        }
        for k in keys {
            check_key(k)?;
        }
        // Keys with control characters cannot travel in an XML 1.0 body (and CR/LF would be
        // normalised by the parser): delete those one by one.
        let (batch, single): (Vec<String>, Vec<String>) =
            keys.iter().cloned().partition(|k| !k.chars().any(|c| c.is_control()));
        let mut failed = Vec::new();
        for k in &single {
            match self.delete_object(k).await {
                Ok(()) => {}
                Err(ClientError::AccessDenied(e)) | Err(ClientError::Service(e)) => failed.push(DeleteError {
                    key: k.clone(),
                    code: e.code,
                    message: e.message,
                }),
                Err(e) => return Err(e),
            }
        }
        if batch.is_empty() {
            return Ok(failed);
        }
        let body = Bytes::from(xml::delete_objects_body(&batch));
        let req = OpRequest::new("DeleteMultipleObjects", Method::POST, None)
            .query("delete", "")
            .query("encoding-type", "url")
            .body(body, CONTENT_TYPE_XML);
        let resp = self.execute(&req).await?;
        let doc = xml::parse_delete_result(&resp.body).map_err(invalid_xml)?;
        let encoded = doc.encoding_type.as_deref() == Some("url");
        let batch_failed = doc
            .errors
            .into_iter()
            .map(|e| {
                let key = if encoded {
                    xml::url_decode("DeleteResult", "Key", &e.key).map_err(invalid_xml)?
                } else {
                    e.key
                };
                Ok(DeleteError {
                    key,
                    code: e.code,
                    message: e.message,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        failed.extend(batch_failed);
        Ok(failed)
    }

    async fn append_object(&self, params: AppendObjectParams) -> Result<AppendObjectResult, ClientError> {
        check_key(&params.key)?;
        let ct = params.content_type.as_deref().unwrap_or(CONTENT_TYPE_DEFAULT);
        let req = OpRequest::new("AppendObject", Method::POST, Some(&params.key))
            .query("append", "")
            .query("position", params.position.to_string())
            .body(params.body.clone(), ct)
            .user_meta(&params.user_meta);
        let init = params.init_crc64.or(if params.position == 0 { Some(0) } else { None });
        let body_crc = crc64::checksum(&params.body);
        let len = params.body.len() as u64;
        let expected = init.map(|i| crc64::combine(i, body_crc, len));
        let mut state = RetryState::new(&self.retry);
        let resp = match self.execute_with(&req, &mut state).await {
            Ok(r) => r,
            Err(ClientError::AppendPositionMismatch { error, next_position })
                if state.attempt > 1 && next_position == Some(params.position + len) && expected.is_some() =>
            {
                // A retried append whose first attempt landed: accept only if the object's CRC
                // is exactly what our bytes make.
                let meta = self.head_object(&params.key).await?;
                if meta.crc64 == expected {
                    return Ok(AppendObjectResult {
                        next_position: params.position + len,
                        crc64: meta.crc64,
                    });
                }
                return Err(ClientError::AppendPositionMismatch { error, next_position });
            }
            Err(e) => return Err(e),
        };
        let next_position = header_u64(&resp.headers, H_NEXT_APPEND)?
            .ok_or_else(|| ClientError::InvalidResponse(format!("AppendObject: answer without {H_NEXT_APPEND}")))?;
        let server = header_u64(&resp.headers, H_CRC64)?;
        if let Some(local) = expected {
            let server = server.ok_or_else(|| ClientError::InvalidResponse(format!("AppendObject: no {H_CRC64}")))?;
            if server != local {
                return Err(ClientError::Integrity {
                    what: format!("AppendObject {} at {}", params.key, params.position),
                    expected: local,
                    actual: server,
                });
            }
        }
        Ok(AppendObjectResult {
            next_position,
            crc64: server,
        })
    }

    async fn put_symlink(&self, params: PutSymlinkParams) -> Result<ETag, ClientError> {
        check_key(&params.key)?;
        if params.target.is_empty() {
            return Err(ClientError::InvalidRequest("PutSymlink: empty target".into()));
        }
        let mut req = OpRequest::new("PutSymlink", Method::PUT, Some(&params.key))
            .query("symlink", "")
            .header(H_SYMLINK_TARGET, signer::pe(&params.target))
            .user_meta(&params.user_meta);
        if params.forbid_overwrite {
            req = req.header(H_FORBID_OVERWRITE, "true");
        }
        let mut state = RetryState::new(&self.retry);
        let resp = match self.execute_with(&req, &mut state).await {
            Ok(r) => r,
            Err(ClientError::AlreadyExists(e)) if params.forbid_overwrite && state.attempt > 1 => {
                // As for PutObject: a link with our target is the one a lost attempt made.
                let link = self.get_symlink(&params.key).await?;
                if link.target == params.target {
                    return Ok(link.etag);
                }
                return Err(ClientError::AlreadyExists(e));
            }
            Err(e) => return Err(e),
        };
        required_etag(&resp.headers, "PutSymlink")
    }

    async fn get_symlink(&self, key: &str) -> Result<GetSymlinkResult, ClientError> {
        check_key(key)?;
        let resp = self
            .execute(&OpRequest::new("GetSymlink", Method::GET, Some(key)).query("symlink", ""))
            .await?;
        let raw = header_str(&resp.headers, H_SYMLINK_TARGET)
            .ok_or_else(|| ClientError::InvalidResponse(format!("GetSymlink {key}: no {H_SYMLINK_TARGET}")))?;
        let target = xml::url_decode("GetSymlink", H_SYMLINK_TARGET, raw).map_err(invalid_xml)?;
        Ok(GetSymlinkResult {
            target,
            etag: required_etag(&resp.headers, "GetSymlink")?,
            last_modified: last_modified(&resp.headers)?,
            user_meta: user_meta_of(&resp.headers),
        })
    }

    async fn get_bucket_info(&self) -> Result<BucketInfo, ClientError> {
        let resp = self
            .execute(&OpRequest::new("GetBucketInfo", Method::GET, None).query("bucketInfo", ""))
            .await?;
        let doc = xml::parse_bucket_info(&resp.body).map_err(invalid_xml)?;
        Ok(BucketInfo {
            name: doc.bucket.name,
            location: doc.bucket.location,
        })
    }
}

fn check_part_number(n: u32) -> Result<(), ClientError> {
    if n == 0 || n > MAX_PARTS {
        return Err(ClientError::InvalidRequest(format!(
            "part number {n} outside 1..={MAX_PARTS}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StaticProvider;

    fn provider() -> Arc<dyn CredentialProvider> {
        Arc::new(StaticProvider::new(Credentials::new("ak", "sk"), "test"))
    }

    #[test]
    fn region_is_derived_from_oss_hosts() {
        assert_eq!(
            region_from_host("oss-cn-hangzhou.aliyuncs.com").as_deref(),
            Some("cn-hangzhou")
        );
        assert_eq!(
            region_from_host("oss-cn-beijing-internal.aliyuncs.com").as_deref(),
            Some("cn-beijing")
        );
        assert_eq!(
            region_from_host("bkt.oss-ap-southeast-1.aliyuncs.com").as_deref(),
            Some("ap-southeast-1")
        );
        assert_eq!(
            region_from_host("cn-shanghai.oss.aliyuncs.com").as_deref(),
            Some("cn-shanghai")
        );
        assert_eq!(region_from_host("oss-accelerate.aliyuncs.com"), None);
        assert_eq!(region_from_host("127.0.0.1"), None);
        assert_eq!(region_from_host("example.com"), None);
    }

    #[test]
    fn new_picks_addressing_and_region() {
        let c = OssClient::new(
            OssClientConfig::new("https://oss-cn-hangzhou.aliyuncs.com", "bkt"),
            provider(),
        )
        .unwrap();
        assert_eq!(c.region(), "cn-hangzhou");
        assert!(!c.path_style());
        assert_eq!(
            c.object_url(Some("a b/c")),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/a%20b/c"
        );

        let mut cfg = OssClientConfig::new("http://127.0.0.1:9000", "bkt");
        cfg.region = Some("cn-test".into());
        let c = OssClient::new(cfg, provider()).unwrap();
        assert!(c.path_style());
        assert_eq!(
            c.object_url(Some("d/ü+.txt")),
            "http://127.0.0.1:9000/bkt/d/%C3%BC%2B.txt"
        );

        let mut cfg = OssClientConfig::new("localhost:8080", "bkt");
        cfg.region = Some("r".into());
        let c = OssClient::new(cfg, provider()).unwrap();
        assert!(c.path_style());
        assert_eq!(c.object_url(None), "https://localhost:8080/bkt/");

        let mut cfg = OssClientConfig::new("https://oss.example.com", "bkt");
        cfg.path_style = true;
        cfg.region = Some("r".into());
        assert_eq!(
            OssClient::new(cfg, provider()).unwrap().object_url(Some("k")),
            "https://oss.example.com/bkt/k"
        );
    }

    #[test]
    fn v4_without_region_is_refused_v1_is_not() {
        let err = OssClient::new(OssClientConfig::new("http://127.0.0.1:9000", "bkt"), provider()).unwrap_err();
        assert!(
            matches!(err, ClientError::InvalidRequest(ref m) if m.contains("region")),
            "{err}"
        );
        let mut cfg = OssClientConfig::new("http://127.0.0.1:9000", "bkt");
        cfg.signature_version = SignatureVersion::V1;
        assert!(OssClient::new(cfg, provider()).is_ok());
        assert!(OssClient::new(OssClientConfig::new("ftp://x", "b"), provider()).is_err());
    }

    #[test]
    fn config_maps_onto_client_settings() {
        use crate::config::{
            CacheConfig, Config, CredentialsConfig, EndpointConfig, FuseConfig, LogConfig, TransferConfig,
        };
        let cfg = Config {
            bucket: "bkt".into(),
            prefix: String::new(),
            mountpoint: "/mnt".into(),
            endpoint: EndpointConfig {
                url: "http://127.0.0.1:9000".into(),
                region: Some("cn-test".into()),
                signature_version: SignatureVersion::V1,
                path_style: true,
            },
            credentials: CredentialsConfig::default(),
            fuse: FuseConfig::default(),
            cache: CacheConfig::default(),
            transfer: TransferConfig {
                part_size_bytes: 8 << 20,
                max_concurrency: 100,
            },
            log: LogConfig::default(),
            check_only: false,
        };
        let c = OssClientConfig::from_config(&cfg);
        assert_eq!(c.endpoint, "http://127.0.0.1:9000");
        assert_eq!(c.bucket, "bkt");
        assert_eq!(c.region.as_deref(), Some("cn-test"));
        assert_eq!(c.signature_version, SignatureVersion::V1);
        assert!(c.path_style);
        assert_eq!(c.pool_max_idle_per_host, 200);
        let client = OssClient::new(c, provider()).unwrap();
        assert_eq!(client.region(), "cn-test");
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("a/b").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("/a").is_err());
        assert!(check_key("\\a").is_err());
        assert!(check_key(&"x".repeat(1024)).is_err());
        assert!(check_key(&"x".repeat(1023)).is_ok());
    }

    #[test]
    fn error_answers_are_parsed_and_mapped() {
        let mut h = HeaderMap::new();
        h.insert(H_EC, HeaderValue::from_static("0026-00000001"));
        h.insert(H_REQUEST_ID, HeaderValue::from_static("RID"));
        let body = b"<Error><Code>NoSuchKey</Code><Message>gone</Message><RequestId>RID2</RequestId></Error>";
        let e = service_error(404, &h, body).unwrap();
        assert_eq!(e.code, "NoSuchKey");
        assert_eq!(e.ec.as_deref(), Some("0026-00000001"));
        assert_eq!(e.request_id.as_deref(), Some("RID2"));
        assert!(matches!(map_service_error(e, &h), ClientError::NoSuchKey(_)));

        // HEAD: no body, base64 XML in x-oss-err.
        let xml = "<Error><Code>AccessDenied</Code><Message>denied by policy</Message></Error>";
        let mut h = HeaderMap::new();
        h.insert(
            H_ERR,
            HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(xml)).unwrap(),
        );
        let e = service_error(403, &h, b"").unwrap();
        assert_eq!(e.code, "AccessDenied");
        assert_eq!(e.message, "denied by policy");
        assert!(matches!(map_service_error(e, &h), ClientError::AccessDenied(_)));

        // No body at all: the status decides.
        let e = service_error(404, &HeaderMap::new(), b"").unwrap();
        assert!(matches!(
            map_service_error(e, &HeaderMap::new()),
            ClientError::NoSuchKey(_)
        ));

        // Garbage is not an OSS error document.
        assert!(service_error(400, &HeaderMap::new(), b"<html>oops</html>").is_err());
        let mut h = HeaderMap::new();
        h.insert(H_ERR, HeaderValue::from_static("!!!notbase64"));
        assert!(service_error(403, &h, b"").is_err());

        let mut h = HeaderMap::new();
        h.insert(H_NEXT_APPEND, HeaderValue::from_static("42"));
        let e = ServiceError {
            status: 409,
            code: "PositionNotEqualToLength".into(),
            message: String::new(),
            ec: None,
            request_id: None,
        };
        assert!(matches!(
            map_service_error(e, &h),
            ClientError::AppendPositionMismatch {
                next_position: Some(42),
                ..
            }
        ));
        let up = ServiceError {
            status: 404,
            code: "NoSuchUpload".into(),
            message: String::new(),
            ec: None,
            request_id: None,
        };
        assert!(matches!(map_service_error(up, &h), ClientError::NoSuchKey(_)));
    }

    #[test]
    fn content_range_and_metadata_headers() {
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 100)));
        assert_eq!(parse_content_range("bytes 0-0/1"), Some((0, 1)));
        assert_eq!(parse_content_range("bytes */100"), None);
        let mut h = HeaderMap::new();
        h.insert("etag", HeaderValue::from_static("\"ABC\""));
        h.insert(
            "last-modified",
            HeaderValue::from_static("Wed, 15 Jan 2025 08:30:00 GMT"),
        );
        h.insert(H_OBJECT_TYPE, HeaderValue::from_static("Appendable"));
        h.insert(H_CRC64, HeaderValue::from_static("11051210869376104954"));
        h.insert("x-oss-meta-Mode", HeaderValue::from_static("33188"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        let m = meta_from_headers(&h, 9).unwrap();
        assert_eq!(m.etag.as_str(), "\"ABC\"");
        assert_eq!(m.object_type, ObjectType::Appendable);
        assert_eq!(m.crc64, Some(11051210869376104954));
        assert_eq!(m.user_meta.get("mode").map(String::as_str), Some("33188"));
        assert_eq!(
            m.last_modified,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1736929800)
        );
        h.insert(H_CRC64, HeaderValue::from_static("12x"));
        assert!(matches!(meta_from_headers(&h, 9), Err(ClientError::InvalidResponse(_))));
        h.remove(H_CRC64);
        h.remove("etag");
        assert!(matches!(meta_from_headers(&h, 9), Err(ClientError::InvalidResponse(_))));
    }

    #[test]
    fn debug_shows_no_secrets() {
        let p: Arc<dyn CredentialProvider> = Arc::new(StaticProvider::new(
            Credentials::new("AKID", "SECRETXYZ").with_token("TOKENXYZ"),
            "static",
        ));
        let c = OssClient::new(OssClientConfig::new("https://oss-cn-hangzhou.aliyuncs.com", "bkt"), p).unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("SECRETXYZ") && !s.contains("TOKENXYZ"), "{s}");
    }
}
