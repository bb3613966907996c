//! Hermetic HTTP tests of `OssClient` against a tiny scripted fake server: a tokio
//! `TcpListener` that records every request and answers each with the next scripted raw HTTP
//! response (then closes the connection). Covers retries, the forced credential refresh,
//! clock-skew correction, GET resumption, integrity checks, error parsing and log hygiene.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ossmount::auth::{AuthError, CredentialProvider, Credentials, StaticProvider};
use ossmount::client::oss::{OssClient, OssClientConfig};
use ossmount::client::{
    ClientError, CompleteMultipartUploadParams, GetObjectParams, ListObjectsParams, ObjectClient, PutObjectParams,
    UploadedPart,
};
use ossmount::config::SignatureVersion;
use ossmount::crc64;
use ossmount::object::ETag;
use ossmount::retry::RetryConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BUCKET: &str = "bkt";
const SECRET: &str = "SeCrEtAcCeSsKeY-0123456789";
const TOKEN_PREFIX: &str = "CAISsecuritytoken";

/// Script entry: accept the request and never answer.
const HANG: &[u8] = b"<hang>";

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct FakeServer {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    async fn start(script: Vec<Vec<u8>>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    recorded.lock().unwrap().push(req);
                    let reply = script.lock().unwrap().pop_front().unwrap_or_else(|| {
                        response(
                            500,
                            &[],
                            b"<Error><Code>NoScript</Code><Message>script exhausted</Message></Error>",
                        )
                    });
                    if reply == HANG {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    let _ = sock.write_all(&reply).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        FakeServer { addr, requests, task }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// A complete response; `Content-Length` is the body length.
fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    response_cut(status, headers, body, body.len())
}

/// Announce the whole body but send only `send` bytes of it.
fn response_cut(status: u16, headers: &[(&str, &str)], body: &[u8], send: usize) -> Vec<u8> {
    let mut out = Vec::new();
    write!(out, "HTTP/1.1 {status} {}\r\n", reason(status)).unwrap();
    write!(
        out,
        "Content-Length: {}\r\nConnection: close\r\nx-oss-request-id: RID{status}\r\n",
        body.len()
    )
    .unwrap();
    for (n, v) in headers {
        write!(out, "{n}: {v}\r\n").unwrap();
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body[..send]);
    out
}

/// A HEAD answer: headers only, `Content-Length` as given.
fn head_response(status: u16, headers: &[(&str, &str)], content_length: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Length: {content_length}\r\nConnection: close\r\n",
        reason(status)
    )
    .unwrap();
    for (n, v) in headers {
        write!(out, "{n}: {v}\r\n").unwrap();
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn error_response(status: u16, code: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>scripted {code}</Message>\
         <RequestId>RID-{code}</RequestId><HostId>h</HostId><EC>0002-00000001</EC></Error>"
    );
    let mut headers = vec![("Content-Type", "application/xml")];
    headers.extend_from_slice(extra);
    response(status, &headers, body.as_bytes())
}

fn object_response(body: &[u8], etag: &str) -> Vec<u8> {
    let crc = crc64::checksum(body).to_string();
    response(
        200,
        &[
            ("ETag", etag),
            ("Last-Modified", "Wed, 15 Jan 2025 08:30:00 GMT"),
            ("x-oss-hash-crc64ecma", &crc),
            ("x-oss-object-type", "Normal"),
            ("Content-Type", "application/octet-stream"),
        ],
        body,
    )
}

fn fast_retry(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_total: Duration::from_secs(20),
    }
}

fn client(server: &FakeServer, provider: Arc<dyn CredentialProvider>, version: SignatureVersion) -> OssClient {
    let mut cfg = OssClientConfig::new(server.endpoint(), BUCKET);
    cfg.region = Some("cn-hangzhou".into());
    cfg.signature_version = version;
    cfg.retry = fast_retry(5);
    cfg.read_timeout = Duration::from_secs(5);
    OssClient::new(cfg, provider).unwrap()
}

fn static_provider() -> Arc<dyn CredentialProvider> {
    Arc::new(StaticProvider::new(
        Credentials::new("LTAIakid", SECRET),
        "static test keys",
    ))
}

/// Hands out STS-style credentials of generation N; a rejection moves to N+1.
struct RotatingProvider {
    generation: AtomicUsize,
    refreshes: AtomicUsize,
    calls: AtomicUsize,
}

impl RotatingProvider {
    fn new() -> Arc<Self> {
        Arc::new(RotatingProvider {
            generation: AtomicUsize::new(1),
            refreshes: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        })
    }
    fn creds(generation: usize) -> Credentials {
        Credentials::new(format!("STS.ak{generation}"), format!("{SECRET}-{generation}"))
            .with_token(format!("{TOKEN_PREFIX}-{generation}"))
    }
}

#[async_trait]
impl CredentialProvider for RotatingProvider {
    async fn credentials(&self) -> Result<Arc<Credentials>, AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Self::creds(self.generation.load(Ordering::SeqCst))))
    }
    async fn refresh_after_rejection(&self, _rejected: &Credentials) -> Result<Arc<Credentials>, AuthError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Arc::new(Self::creds(g)))
    }
    fn describe(&self) -> String {
        "rotating test provider".into()
    }
}

#[tokio::test]
async fn retries_503_then_succeeds() {
    let body = b"hello world\n";
    let server = FakeServer::start(vec![
        error_response(503, "ServiceUnavailable", &[]),
        error_response(503, "ServiceUnavailable", &[]),
        object_response(body, "\"E1\""),
    ])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let r = c.get_object(GetObjectParams::new("dir/a.txt")).await.unwrap();
    assert_eq!(&r.data[..], body);
    assert_eq!(r.meta.etag.as_str(), "\"E1\"");
    assert_eq!(r.meta.size, body.len() as u64);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.method == "GET" && r.target == "/bkt/dir/a.txt"));
    // Each attempt is signed afresh.
    assert!(reqs.iter().all(|r| {
        r.header("authorization")
            .unwrap()
            .starts_with("OSS4-HMAC-SHA256 Credential=LTAIakid/")
    }));
}

#[tokio::test]
async fn exhausted_retries_surface_the_service_error() {
    let server = FakeServer::start((0..5).map(|_| error_response(503, "ServiceUnavailable", &[])).collect()).await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let err = c.head_object("k").await.unwrap_err();
    assert!(matches!(err, ClientError::Service(ref e) if e.status == 503), "{err:?}");
    assert_eq!(server.requests().len(), 5, "max_attempts = 5");
}

#[tokio::test]
async fn access_denied_and_bad_signature_are_not_retried() {
    for code in ["AccessDenied", "SignatureDoesNotMatch"] {
        let server = FakeServer::start(vec![
            error_response(403, code, &[]),
            object_response(b"should not be fetched", "\"E\""),
        ])
        .await;
        let c = client(&server, static_provider(), SignatureVersion::V4);
        let err = c.get_object(GetObjectParams::new("a")).await.unwrap_err();
        match &err {
            ClientError::AccessDenied(e) => {
                assert_eq!(e.code, code);
                assert_eq!(e.request_id.as_deref(), Some(format!("RID-{code}").as_str()));
            }
            other => panic!("{code}: expected AccessDenied, got {other:?}"),
        }
        assert_eq!(server.requests().len(), 1, "{code} must not be retried");
    }
}

#[tokio::test]
async fn expired_token_forces_one_refresh_and_a_resigned_retry() {
    let server = FakeServer::start(vec![
        error_response(403, "SecurityTokenExpired", &[]),
        object_response(b"data", "\"E\""),
    ])
    .await;
    let provider = RotatingProvider::new();
    let c = client(&server, provider.clone(), SignatureVersion::V4);
    let r = c.get_object(GetObjectParams::new("a")).await.unwrap();
    assert_eq!(&r.data[..], b"data");
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 1);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].header("x-oss-security-token"),
        Some(format!("{TOKEN_PREFIX}-1").as_str())
    );
    assert_eq!(
        reqs[1].header("x-oss-security-token"),
        Some(format!("{TOKEN_PREFIX}-2").as_str())
    );
    assert!(reqs[1].header("authorization").unwrap().contains("Credential=STS.ak2/"));
}

#[tokio::test]
async fn second_credential_rejection_is_final_access_denied() {
    let server = FakeServer::start(vec![
        error_response(403, "InvalidSecurityToken", &[]),
        error_response(403, "SecurityTokenExpired", &[]),
        object_response(b"never", "\"E\""),
    ])
    .await;
    let provider = RotatingProvider::new();
    let c = client(&server, provider.clone(), SignatureVersion::V1);
    let err = c.get_object(GetObjectParams::new("a")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::AccessDenied(ref e) if e.code == "SecurityTokenExpired"),
        "{err:?}"
    );
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests().len(), 2);
    // V1 with a token: the token header is sent (and signed).
    assert_eq!(
        server.requests()[1].header("x-oss-security-token"),
        Some(format!("{TOKEN_PREFIX}-2").as_str())
    );
    assert!(
        server.requests()[1]
            .header("authorization")
            .unwrap()
            .starts_with("OSS STS.ak2:")
    );
}

#[tokio::test]
async fn invalid_access_key_without_token_is_final() {
    let server = FakeServer::start(vec![
        error_response(403, "InvalidAccessKeyId", &[]),
        object_response(b"x", "\"E\""),
    ])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    assert!(matches!(
        c.get_object(GetObjectParams::new("a")).await,
        Err(ClientError::AccessDenied(_))
    ));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn clock_skew_is_corrected_from_the_server_date() {
    let server_time: DateTime<Utc> = Utc::now() + chrono::Duration::hours(2);
    let date = server_time.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    for version in [SignatureVersion::V4, SignatureVersion::V1] {
        let server = FakeServer::start(vec![
            error_response(403, "RequestTimeTooSkewed", &[("Date", &date)]),
            object_response(b"ok", "\"E\""),
        ])
        .await;
        let c = client(&server, static_provider(), version);
        assert_eq!(&c.get_object(GetObjectParams::new("a")).await.unwrap().data[..], b"ok");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        let signed_time = |r: &Recorded| -> DateTime<Utc> {
            match version {
                SignatureVersion::V4 => {
                    chrono::NaiveDateTime::parse_from_str(r.header("x-oss-date").unwrap(), "%Y%m%dT%H%M%SZ")
                        .unwrap()
                        .and_utc()
                }
                SignatureVersion::V1 => DateTime::parse_from_rfc2822(r.header("date").unwrap())
                    .unwrap()
                    .with_timezone(&Utc),
            }
        };
        let first = signed_time(&reqs[0]);
        let second = signed_time(&reqs[1]);
        assert!(
            (first - Utc::now()).num_seconds().abs() < 60,
            "{version:?}: first attempt uses local time"
        );
        assert!(
            (second - server_time).num_seconds().abs() < 60,
            "{version:?}: retry not signed with the server's time"
        );
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8).collect()
}

#[tokio::test]
async fn body_cut_midway_is_resumed_with_if_match() {
    let data = pattern(100_000);
    let crc = crc64::checksum(&data).to_string();
    let common = [
        ("ETag", "\"ETAG1\""),
        ("Last-Modified", "Wed, 15 Jan 2025 08:30:00 GMT"),
        ("x-oss-hash-crc64ecma", crc.as_str()),
    ];
    let cut = 40_000;
    let range = format!("bytes {cut}-99999/100000");
    let mut second = common.to_vec();
    second.push(("Content-Range", range.as_str()));
    let server = FakeServer::start(vec![
        response_cut(200, &common, &data, cut),
        response(206, &second, &data[cut..]),
    ])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let r = c.get_object(GetObjectParams::new("big.bin")).await.unwrap();
    assert_eq!(r.data.len(), data.len());
    assert!(r.data[..] == data[..], "resumed bytes differ");
    assert_eq!(r.meta.size, 100_000);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), None);
    assert_eq!(reqs[1].header("range"), Some("bytes=40000-99999"));
    assert_eq!(reqs[1].header("if-match"), Some("\"ETAG1\""));
    assert_eq!(reqs[1].header("x-oss-range-behavior"), Some("standard"));
}

#[tokio::test]
async fn ranged_get_resumes_and_reports_offset() {
    let data = pattern(10_000);
    let crc = crc64::checksum(&data).to_string();
    let common = [("ETag", "\"R\""), ("x-oss-hash-crc64ecma", crc.as_str())];
    let first_range = "bytes 1000-4999/10000".to_string();
    let second_range = "bytes 3000-4999/10000".to_string();
    let mut h1 = common.to_vec();
    h1.push(("Content-Range", first_range.as_str()));
    let mut h2 = common.to_vec();
    h2.push(("Content-Range", second_range.as_str()));
    let server = FakeServer::start(vec![
        response_cut(206, &h1, &data[1000..5000], 2000),
        response(206, &h2, &data[3000..5000]),
    ])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let r = c.get_object(GetObjectParams::new("k").range(1000..5000)).await.unwrap();
    assert_eq!(r.offset, 1000);
    assert!(r.data[..] == data[1000..5000]);
    assert_eq!(r.meta.size, 10_000);
    let reqs = server.requests();
    assert_eq!(reqs[0].header("range"), Some("bytes=1000-4999"));
    assert_eq!(reqs[0].header("x-oss-range-behavior"), Some("standard"));
    assert_eq!(reqs[0].header("if-match"), None);
    assert_eq!(reqs[1].header("range"), Some("bytes=3000-4999"));
    assert_eq!(reqs[1].header("if-match"), Some("\"R\""));
}

#[tokio::test]
async fn full_get_with_wrong_crc_is_an_integrity_error() {
    let server = FakeServer::start(vec![response(
        200,
        &[("ETag", "\"E\""), ("x-oss-hash-crc64ecma", "12345")],
        b"corrupted?",
    )])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let err = c.get_object(GetObjectParams::new("k")).await.unwrap_err();
    assert!(matches!(err, ClientError::Integrity { expected: 12345, .. }), "{err:?}");
}

#[tokio::test]
async fn range_on_empty_object_gives_empty_data() {
    let server = FakeServer::start(vec![
        error_response(416, "InvalidRange", &[]),
        head_response(200, &[("ETag", "\"EMPTY\""), ("x-oss-hash-crc64ecma", "0")], 0),
    ])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let r = c
        .get_object(GetObjectParams::new("empty").range(0..4096))
        .await
        .unwrap();
    assert!(r.data.is_empty());
    assert_eq!(r.meta.size, 0);
    assert_eq!(server.requests()[1].method, "HEAD");
}

#[tokio::test]
async fn put_with_wrong_crc_is_an_integrity_error() {
    let server = FakeServer::start(vec![response(
        200,
        &[("ETag", "\"P\""), ("x-oss-hash-crc64ecma", "42")],
        b"",
    )])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let body = Bytes::from_static(b"important bytes");
    let err = c
        .put_object(PutObjectParams::new("dir/f.txt", body.clone()))
        .await
        .unwrap_err();
    match err {
        ClientError::Integrity { expected, actual, .. } => {
            assert_eq!(expected, crc64::checksum(&body));
            assert_eq!(actual, 42);
        }
        other => panic!("expected Integrity, got {other:?}"),
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(reqs[0].body, body.to_vec());
    assert_eq!(reqs[0].header("content-md5"), Some("JVXKccuw5qJaTN9XQPn8vQ=="));
}

#[tokio::test]
async fn put_with_matching_crc_succeeds_and_sends_meta() {
    let body = Bytes::from_static(b"payload");
    let crc = crc64::checksum(&body).to_string();
    let server = FakeServer::start(vec![response(
        200,
        &[("ETag", "\"P\""), ("x-oss-hash-crc64ecma", &crc)],
        b"",
    )])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let mut meta = ossmount::object::UserMeta::new();
    meta.insert("mode".into(), "33188".into());
    let r = c
        .put_object(
            PutObjectParams::new("a b/ü+.txt", body)
                .user_meta(meta)
                .forbid_overwrite(true),
        )
        .await
        .unwrap();
    assert_eq!(r.etag, ETag::new("\"P\""));
    let req = &server.requests()[0];
    assert_eq!(req.target, "/bkt/a%20b/%C3%BC%2B.txt");
    assert_eq!(req.header("x-oss-meta-mode"), Some("33188"));
    assert_eq!(req.header("x-oss-forbid-overwrite"), Some("true"));
    assert_eq!(req.header("x-oss-content-sha256"), Some("UNSIGNED-PAYLOAD"));
}

#[tokio::test]
async fn complete_verifies_the_combined_crc() {
    let a = pattern(300);
    let b = pattern(500);
    let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
    let good = crc64::checksum(&whole).to_string();
    let body = b"<CompleteMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><ETag>\"M-2\"</ETag></CompleteMultipartUploadResult>";
    let parts = vec![
        UploadedPart {
            part_number: 2,
            etag: ETag::new("\"B\""),
            crc64: Some(crc64::checksum(&b)),
            size: 500,
        },
        UploadedPart {
            part_number: 1,
            etag: ETag::new("\"A\""),
            crc64: Some(crc64::checksum(&a)),
            size: 300,
        },
    ];
    let params = CompleteMultipartUploadParams {
        key: "k".into(),
        upload_id: "UP1".into(),
        parts,
        forbid_overwrite: false,
    };
    let server = FakeServer::start(vec![
        response(200, &[("x-oss-hash-crc64ecma", &good)], body),
        response(200, &[("x-oss-hash-crc64ecma", "7")], body),
    ])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let ok = c.complete_multipart_upload(params.clone()).await.unwrap();
    assert_eq!(ok.crc64, crc64::checksum(&whole));
    let sent = String::from_utf8(server.requests()[0].body.clone()).unwrap();
    let p1 = sent.find("<PartNumber>1</PartNumber>").unwrap();
    let p2 = sent.find("<PartNumber>2</PartNumber>").unwrap();
    assert!(p1 < p2, "parts must be sent in ascending order: {sent}");
    assert_eq!(server.requests()[0].target, "/bkt/k?uploadId=UP1");
    let err = c.complete_multipart_upload(params).await.unwrap_err();
    assert!(matches!(err, ClientError::Integrity { actual: 7, .. }), "{err:?}");
}

#[tokio::test]
async fn head_error_from_x_oss_err_header() {
    use base64::Engine as _;
    let xml = "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><RequestId>RQ</RequestId></Error>";
    let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
    let server = FakeServer::start(vec![head_response(
        404,
        &[("x-oss-err", &encoded), ("x-oss-ec", "0026-00000001")],
        0,
    )])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    match c.head_object("missing").await.unwrap_err() {
        ClientError::NoSuchKey(e) => {
            assert_eq!(e.message, "The specified key does not exist.");
            assert_eq!(e.ec.as_deref(), Some("0026-00000001"));
            assert_eq!(e.request_id.as_deref(), Some("RQ"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn malformed_answers_are_invalid_response() {
    let server = FakeServer::start(vec![
        response(400, &[("Content-Type", "text/html")], b"<html>proxy error</html>"),
        response(
            200,
            &[],
            b"<ListBucketResult><Contents><Key>k</Key><Size>notanumber</Size></Contents>",
        ),
    ])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    assert!(matches!(
        c.get_object(GetObjectParams::new("k")).await,
        Err(ClientError::InvalidResponse(_))
    ));
    assert!(matches!(
        c.list_objects(ListObjectsParams::new("")).await,
        Err(ClientError::InvalidResponse(_))
    ));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn list_objects_decodes_url_encoded_fields() {
    let body = b"<ListBucketResult><Name>bkt</Name><Prefix>a%2F</Prefix><EncodingType>url</EncodingType>\
        <IsTruncated>true</IsTruncated><NextContinuationToken>tok%2Fen</NextContinuationToken>\
        <Contents><Key>a%2Fhello%20world%2B.txt</Key><LastModified>2025-01-15T08:29:59.000Z</LastModified>\
        <ETag>\"X\"</ETag><Type>Appendable</Type><Size>12</Size></Contents>\
        <CommonPrefixes><Prefix>a%2Fsub%2F</Prefix></CommonPrefixes></ListBucketResult>";
    let server = FakeServer::start(vec![response(200, &[("Content-Type", "application/xml")], body)]).await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let r = c
        .list_objects(
            ListObjectsParams::new("a/")
                .delimiter("/")
                .continuation_token(Some("prev/tok".into())),
        )
        .await
        .unwrap();
    assert_eq!(r.objects.len(), 1);
    assert_eq!(r.objects[0].key, "a/hello world+.txt");
    assert_eq!(r.objects[0].size, 12);
    assert_eq!(r.objects[0].object_type, ossmount::object::ObjectType::Appendable);
    assert_eq!(r.common_prefixes, vec!["a/sub/".to_owned()]);
    assert_eq!(r.next_continuation_token.as_deref(), Some("tok/en"));
    let target = &server.requests()[0].target;
    for part in [
        "list-type=2",
        "encoding-type=url",
        "max-keys=1000",
        "prefix=a%2F",
        "delimiter=%2F",
        "continuation-token=prev%2Ftok",
    ] {
        assert!(target.contains(part), "{target} lacks {part}");
    }
    assert!(target.starts_with("/bkt/?"), "{target}");
}

/// A `Write` sink shared with the test, for a tracing subscriber.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_or_errors() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // Global, not scoped: a scoped dispatcher can miss events whose callsite interest was
    // cached by tests running concurrently without one. Every test of this binary uses the same
    // secret and token strings, so whatever they log must be clean too.
    tracing::subscriber::set_global_default(subscriber).expect("only this test installs a subscriber");

    let server = FakeServer::start(vec![
        error_response(503, "ServiceUnavailable", &[]),
        error_response(403, "SecurityTokenExpired", &[]),
        object_response(b"secret-free data", "\"E\""),
        error_response(403, "AccessDenied", &[]),
    ])
    .await;
    let provider = RotatingProvider::new();
    let c = client(&server, provider.clone(), SignatureVersion::V4);
    c.get_object(GetObjectParams::new("a")).await.unwrap();
    let err = c.get_object(GetObjectParams::new("b")).await.unwrap_err();
    let client_debug = format!("{c:?}");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 4);
    let signatures: Vec<String> = reqs
        .iter()
        .map(|r| {
            r.header("authorization")
                .unwrap()
                .rsplit("Signature=")
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("OSS request"),
        "the test must capture the client's logs: {text}"
    );
    assert!(text.contains("retrying"), "the retry warning must be captured: {text}");
    let mut forbidden: Vec<String> = vec![SECRET.to_owned(), TOKEN_PREFIX.to_owned()];
    forbidden.extend(signatures);
    forbidden.push("OSS4-HMAC-SHA256 Credential".to_owned());
    for f in &forbidden {
        assert!(!text.contains(f.as_str()), "logs leak {f:?}");
        assert!(!format!("{err}").contains(f.as_str()), "error Display leaks {f:?}");
        assert!(!format!("{err:?}").contains(f.as_str()), "error Debug leaks {f:?}");
        assert!(!client_debug.contains(f.as_str()), "client Debug leaks {f:?}");
    }
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_after_retries() {
    // Bind then drop to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = OssClientConfig::new(format!("http://127.0.0.1:{port}"), BUCKET);
    cfg.region = Some("cn-hangzhou".into());
    cfg.retry = fast_retry(3);
    let c = OssClient::new(cfg, static_provider()).unwrap();
    let err = c.head_object("k").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Transport(ref m) if m.contains("3 attempts")),
        "{err:?}"
    );
}

#[tokio::test]
async fn every_attempt_takes_fresh_credentials() {
    let server = FakeServer::start(vec![
        error_response(503, "ServiceUnavailable", &[]),
        error_response(500, "InternalError", &[]),
        object_response(b"x", "\"E\""),
    ])
    .await;
    let provider = RotatingProvider::new();
    let c = client(&server, provider.clone(), SignatureVersion::V4);
    c.get_object(GetObjectParams::new("a")).await.unwrap();
    assert_eq!(provider.calls.load(Ordering::SeqCst), 3);
    assert_eq!(provider.refreshes.load(Ordering::SeqCst), 0);
    // The signing time is taken per attempt too (the dates are well-formed and present).
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("x-oss-date").is_some_and(|d| d.len() == 16))
    );
}

#[tokio::test]
async fn append_whose_answer_was_lost_is_recognised_by_crc() {
    let first = crc64::checksum(b"hello ");
    let whole = crc64::checksum(b"hello world").to_string();
    let wrong = "99".to_owned();
    for (head_crc, should_succeed) in [(whole.as_str(), true), (wrong.as_str(), false)] {
        let server = FakeServer::start(vec![
            Vec::new(), // connection closed without an answer: the append may or may not have landed
            error_response(409, "PositionNotEqualToLength", &[("x-oss-next-append-position", "11")]),
            head_response(
                200,
                &[
                    ("ETag", "\"A\""),
                    ("x-oss-hash-crc64ecma", head_crc),
                    ("x-oss-object-type", "Appendable"),
                ],
                11,
            ),
        ])
        .await;
        let c = client(&server, static_provider(), SignatureVersion::V4);
        let r = c
            .append_object(ossmount::client::AppendObjectParams {
                key: "log".into(),
                position: 6,
                body: Bytes::from_static(b"world"),
                init_crc64: Some(first),
                ..Default::default()
            })
            .await;
        if should_succeed {
            let r = r.unwrap();
            assert_eq!(r.next_position, 11);
            assert_eq!(r.crc64, Some(crc64::checksum(b"hello world")));
        } else {
            assert!(
                matches!(
                    r,
                    Err(ClientError::AppendPositionMismatch {
                        next_position: Some(11),
                        ..
                    })
                ),
                "{r:?}"
            );
        }
        let reqs = server.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].target, "/bkt/log?append&position=6");
        assert_eq!(reqs[2].method, "HEAD");
    }
}

#[tokio::test]
async fn append_crc_mismatch_is_an_integrity_error() {
    let server = FakeServer::start(vec![response(
        200,
        &[("x-oss-next-append-position", "5"), ("x-oss-hash-crc64ecma", "1")],
        b"",
    )])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let r = c
        .append_object(ossmount::client::AppendObjectParams {
            key: "log".into(),
            position: 0,
            body: Bytes::from_static(b"hello"),
            ..Default::default()
        })
        .await;
    assert!(matches!(r, Err(ClientError::Integrity { actual: 1, .. })), "{r:?}");
}

#[tokio::test]
async fn complete_whose_answer_was_lost_is_recognised_by_crc() {
    let a = pattern(200_000);
    let crc = crc64::checksum(&a);
    let server = FakeServer::start(vec![
        Vec::new(),
        error_response(404, "NoSuchUpload", &[]),
        head_response(
            200,
            &[("ETag", "\"M-1\""), ("x-oss-hash-crc64ecma", &crc.to_string())],
            200_000,
        ),
    ])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let r = c
        .complete_multipart_upload(CompleteMultipartUploadParams {
            key: "k".into(),
            upload_id: "U".into(),
            parts: vec![UploadedPart {
                part_number: 1,
                etag: ETag::new("\"P\""),
                crc64: Some(crc),
                size: 200_000,
            }],
            forbid_overwrite: false,
        })
        .await
        .unwrap();
    assert_eq!(r.crc64, crc);
    assert_eq!(r.etag.as_str(), "\"M-1\"");
}

#[tokio::test]
async fn list_parts_follows_every_page() {
    let page1 = b"<ListPartsResult><IsTruncated>true</IsTruncated><NextPartNumberMarker>2</NextPartNumberMarker>\
        <Part><PartNumber>1</PartNumber><ETag>\"A\"</ETag><Size>5</Size><HashCrc64ecma>11</HashCrc64ecma></Part>\
        <Part><PartNumber>2</PartNumber><ETag>\"B\"</ETag><Size>6</Size></Part></ListPartsResult>";
    let page2 = b"<ListPartsResult><IsTruncated>false</IsTruncated>\
        <Part><PartNumber>3</PartNumber><ETag>\"C\"</ETag><Size>7</Size></Part></ListPartsResult>";
    let server = FakeServer::start(vec![response(200, &[], page1), response(200, &[], page2)]).await;
    let c = client(&server, static_provider(), SignatureVersion::V1);
    let parts = c.list_parts("k", "UP").await.unwrap();
    assert_eq!(parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(parts[0].crc64, Some(11));
    assert_eq!(parts[2].size, 7);
    let reqs = server.requests();
    assert!(!reqs[0].target.contains("part-number-marker"), "{}", reqs[0].target);
    assert!(reqs[1].target.contains("part-number-marker=2"), "{}", reqs[1].target);
}

#[tokio::test]
async fn delete_objects_sends_a_quiet_md5_signed_body() {
    use base64::Engine as _;
    use md5::Digest as _;
    let server = FakeServer::start(vec![response(
        200,
        &[],
        b"<DeleteResult><EncodingType>url</EncodingType><Error><Key>a%20b</Key><Code>AccessDenied</Code>\
          <Message>no</Message></Error></DeleteResult>",
    )])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let failed = c.delete_objects(&["a b".to_owned(), "c&d".to_owned()]).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].key, "a b");
    assert_eq!(failed[0].code, "AccessDenied");
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.target, "/bkt/?delete&encoding-type=url");
    let body = String::from_utf8(req.body.clone()).unwrap();
    assert!(body.contains("<Quiet>true</Quiet>"), "{body}");
    assert!(
        body.contains("<Key>a b</Key>") && body.contains("<Key>c&amp;d</Key>"),
        "{body}"
    );
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&req.body));
    assert_eq!(req.header("content-md5"), Some(md5.as_str()));
    assert!(matches!(
        c.delete_objects(&vec!["k".to_owned(); 1001]).await,
        Err(ClientError::InvalidRequest(_))
    ));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn symlink_target_is_encoded_on_write_and_decoded_on_read() {
    let server = FakeServer::start(vec![
        response(200, &[("ETag", "\"S\"")], b""),
        response(
            200,
            &[
                ("ETag", "\"S\""),
                ("x-oss-symlink-target", "dir%2Ftarget%20file%C3%BC.txt"),
                ("x-oss-meta-uid", "7"),
            ],
            b"",
        ),
    ])
    .await;
    let c = client(&server, static_provider(), SignatureVersion::V1);
    c.put_symlink(ossmount::client::PutSymlinkParams {
        key: "link".into(),
        target: "dir/target fileü.txt".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let s = c.get_symlink("link").await.unwrap();
    assert_eq!(s.target, "dir/target fileü.txt");
    assert_eq!(s.user_meta.get("uid").map(String::as_str), Some("7"));
    let reqs = server.requests();
    assert_eq!(reqs[0].target, "/bkt/link?symlink");
    assert_eq!(
        reqs[0].header("x-oss-symlink-target"),
        Some("dir%2Ftarget%20file%C3%BC.txt")
    );
    assert!(reqs[0].header("authorization").unwrap().starts_with("OSS LTAIakid:"));
    assert_eq!(reqs[1].method, "GET");
}

#[tokio::test]
async fn resets_that_make_progress_do_not_spend_the_attempt_budget() {
    let data = pattern(100_000);
    let crc = crc64::checksum(&data).to_string();
    let common = [("ETag", "\"P\""), ("x-oss-hash-crc64ecma", crc.as_str())];
    let mut script = vec![response_cut(200, &common, &data, 20_000)];
    let ranges: Vec<String> = [20_000, 40_000, 60_000]
        .iter()
        .map(|s| format!("bytes {s}-99999/100000"))
        .collect();
    for (i, r) in ranges.iter().enumerate() {
        let mut h = common.to_vec();
        h.push(("Content-Range", r.as_str()));
        let start = 20_000 * (i + 1);
        let send = if i < 2 { 20_000 } else { 100_000 - start };
        script.push(response_cut(206, &h, &data[start..], send));
    }
    let server = FakeServer::start(script).await;
    let mut cfg = OssClientConfig::new(server.endpoint(), BUCKET);
    cfg.region = Some("cn-hangzhou".into());
    cfg.retry = fast_retry(2);
    let c = OssClient::new(cfg, static_provider()).unwrap();
    let r = c.get_object(GetObjectParams::new("k")).await.unwrap();
    assert!(r.data[..] == data[..]);
    assert_eq!(server.requests().len(), 4);

    // Cuts without progress spend the budget: two attempts, then a transport error.
    let mut h = common.to_vec();
    let r0 = "bytes 0-99999/100000".to_string();
    h.push(("Content-Range", r0.as_str()));
    let server = FakeServer::start(vec![
        response_cut(200, &common, &data, 0),
        response_cut(206, &h, &data, 0),
    ])
    .await;
    let mut cfg = OssClientConfig::new(server.endpoint(), BUCKET);
    cfg.region = Some("cn-hangzhou".into());
    cfg.retry = fast_retry(2);
    let c = OssClient::new(cfg, static_provider()).unwrap();
    let err = c.get_object(GetObjectParams::new("k")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Transport(ref m) if m.contains("2 attempts")),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn exclusive_put_whose_answer_was_lost_is_recognised_by_crc() {
    let body = Bytes::from_static(b"exclusive bytes");
    let crc = crc64::checksum(&body).to_string();
    for (head_crc, should_succeed) in [(crc.as_str(), true), ("5", false)] {
        let server = FakeServer::start(vec![
            Vec::new(),
            error_response(409, "FileAlreadyExists", &[]),
            head_response(
                200,
                &[("ETag", "\"X\""), ("x-oss-hash-crc64ecma", head_crc)],
                body.len() as u64,
            ),
        ])
        .await;
        let c = client(&server, static_provider(), SignatureVersion::V4);
        let r = c
            .put_object(PutObjectParams::new("x", body.clone()).forbid_overwrite(true))
            .await;
        if should_succeed {
            assert_eq!(r.unwrap().etag.as_str(), "\"X\"");
        } else {
            assert!(matches!(r, Err(ClientError::AlreadyExists(_))), "{r:?}");
        }
        assert_eq!(server.requests().len(), 3);
    }
    // Without a lost first attempt, FileAlreadyExists is final at once.
    let server = FakeServer::start(vec![error_response(409, "FileAlreadyExists", &[])]).await;
    let c = client(&server, static_provider(), SignatureVersion::V4);
    let r = c
        .put_object(PutObjectParams::new("x", body.clone()).forbid_overwrite(true))
        .await;
    assert!(matches!(r, Err(ClientError::AlreadyExists(_))), "{r:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_server_that_stops_answering_times_out_and_is_retried() {
    let server = FakeServer::start(vec![HANG.to_vec(), object_response(b"late", "\"E\"")]).await;
    let mut cfg = OssClientConfig::new(server.endpoint(), BUCKET);
    cfg.region = Some("cn-hangzhou".into());
    cfg.retry = fast_retry(3);
    cfg.read_timeout = Duration::from_millis(300);
    let c = OssClient::new(cfg, static_provider()).unwrap();
    let started = std::time::Instant::now();
    let r = c.get_object(GetObjectParams::new("slow")).await.unwrap();
    assert_eq!(&r.data[..], b"late");
    assert_eq!(server.requests().len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the read timeout did not fire"
    );
}
