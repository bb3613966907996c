//! HTTP front end: accept loop (hyper 1, HTTP/1.1 keep-alive), request classification
//! (admin / STS / OSS, path-style or virtual-hosted addressing, percent-decoding), the
//! per-request pipeline (stats → faults → authentication → policy → operation) and the
//! rendering of every answer with the common OSS headers and §5.1 error bodies.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::admin::{Faults, Stats};
use crate::error::OssError;
use crate::ops;
use crate::storage::Storage;
use crate::{auth, sts};

pub type RespBody = BoxBody<Bytes, std::io::Error>;

/// Largest request body read into memory (XML bodies, STS forms, admin JSON).
pub const MAX_SMALL_BODY_BYTES: usize = 1024 * 1024;
/// Account id used in owners, policy resources and ARNs.
pub const ACCOUNT_ID: &str = "1234567890123456";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("announcing readiness: {0}")]
    Ready(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Everything a request handler needs; shared by all connections.
pub struct App {
    pub storage: Storage,
    pub stats: Stats,
    pub faults: Faults,
    pub auth: auth::AuthConfig,
    pub region: String,
    request_counter: AtomicU64,
    request_salt: u64,
}

impl App {
    pub fn new(storage: Storage, auth: auth::AuthConfig, region: String) -> App {
        App {
            storage,
            stats: Stats::default(),
            faults: Faults::default(),
            auth,
            region,
            request_counter: AtomicU64::new(0),
            request_salt: rand::random(),
        }
    }

    /// Server clock including the injected offset.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.faults.time_offset()
    }

    fn request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let secs = Utc::now().timestamp() as u32;
        format!("{:08X}{:016X}", secs, n ^ self.request_salt)
    }
}

pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub fn full(body: impl Into<Bytes>) -> RespBody {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> RespBody {
    full(Bytes::new())
}

/// Percent-decode into bytes (`+` untouched: paths).
pub fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

/// Parse a query string: `+` is a space, values percent-decoded (lossy UTF-8).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| String::from_utf8_lossy(&percent_decode(&s.replace('+', " "))).into_owned();
            (dec(k), dec(v))
        })
        .collect()
}

/// Render an OSS error (§5.1). HEAD answers carry the XML base64-encoded in `x-oss-err`.
pub fn error_response(err: &OssError, request_id: &str, host_id: &str, head: bool) -> Response<RespBody> {
    let mut w = crate::xml::XmlWriter::new("Error");
    w.elem("Code", err.code)
        .elem("Message", &err.message)
        .elem("RequestId", request_id)
        .elem("HostId", host_id);
    for (name, value) in &err.extra {
        w.elem(name, value);
    }
    w.elem("EC", err.ec).elem(
        "RecommendDoc",
        &format!("https://api.aliyun.com/troubleshoot?q={}", err.ec),
    );
    let xml = w.finish();
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/xml");
    if let Ok(v) = HeaderValue::from_str(err.ec) {
        resp = resp.header("x-oss-ec", v);
    }
    let resp = if head {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml.as_bytes());
        resp.header("x-oss-err", b64)
            .header(header::CONTENT_LENGTH, 0)
            .body(empty())
    } else {
        resp.body(full(xml))
    };
    resp.unwrap_or_else(|_| Response::new(empty()))
}

/// Bind and serve until `shutdown` resolves. Reports the bound address to `on_bound` before
/// accepting; an error from it stops the server.
pub async fn serve(
    app: Arc<App>,
    listen: &str,
    on_bound: impl FnOnce(SocketAddr) -> Result<(), String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(listen).await.map_err(|source| ServerError::Bind {
        addr: listen.to_string(),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: listen.to_string(),
        source,
    })?;
    on_bound(local).map_err(ServerError::Ready)?;
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req, remote).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .half_close(true)
                .max_buf_size(1024 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// Bucket and key of an OSS request.
pub struct Target {
    pub bucket: Option<String>,
    pub key: Option<String>,
}

fn host_of(req: &Request<Incoming>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// Resolve addressing. Virtual-hosted: the first label of `Host` names a configured bucket
/// and more labels follow. Otherwise path-style. Keys must be UTF-8.
fn resolve_target(app: &App, host: &str, raw_path: &str) -> Result<Target, OssError> {
    let host_no_port = host
        .rsplit_once(':')
        .map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    let host_no_port = host_no_port.unwrap_or(host);
    let decode_key = |raw: &str| -> Result<Option<String>, OssError> {
        if raw.is_empty() {
            return Ok(None);
        }
        String::from_utf8(percent_decode(raw))
            .map(Some)
            .map_err(|_| ops::invalid_object_name("The specified object is not valid."))
    };
    let path = raw_path.strip_prefix('/').unwrap_or(raw_path);
    if let Some((label, rest)) = host_no_port.split_once('.')
        && !rest.is_empty()
        && app.storage.bucket(label).is_some()
    {
        return Ok(Target {
            bucket: Some(label.to_string()),
            key: decode_key(path)?,
        });
    }
    if path.is_empty() {
        return Ok(Target {
            bucket: None,
            key: None,
        });
    }
    let (b, k) = path.split_once('/').unwrap_or((path, ""));
    let bucket = String::from_utf8_lossy(&percent_decode(b)).into_owned();
    Ok(Target {
        bucket: Some(bucket),
        key: decode_key(k)?,
    })
}

fn finish(app: &App, mut resp: Response<RespBody>, request_id: &str) -> Response<RespBody> {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-oss-request-id", v);
    }
    h.insert(header::SERVER, HeaderValue::from_static("AliyunOSS"));
    if let Ok(v) = HeaderValue::from_str(&http_date(app.now())) {
        h.insert(header::DATE, v);
    }
    resp
}

async fn handle(app: Arc<App>, req: Request<Incoming>, remote: SocketAddr) -> Response<RespBody> {
    let raw_path = req.uri().path().to_string();
    let request_id = app.request_id();
    if raw_path == "/_osslocal" || raw_path.starts_with("/_osslocal/") {
        let resp = crate::admin::handle_http(&app, req, remote).await;
        return finish(&app, resp, &request_id);
    }
    app.stats.request();
    let head = req.method() == Method::HEAD;
    let host = host_of(&req);
    let has_body = declares_body(req.headers());
    let mut resp = match route(&app, req, &request_id, &host).await {
        Ok(r) => r,
        Err(e) => {
            app.stats.error(e.code);
            tracing::debug!(code = e.code, status = e.status, "error answer");
            error_response(&e, &request_id, &host, head)
        }
    };
    // An error may be answered before the request body was read; hyper then cannot reuse the
    // connection. Say so, or a pooled client's next request fails on a silently closed socket.
    if has_body && !resp.status().is_success() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    finish(&app, resp, &request_id)
}

/// The request announces a body (non-zero Content-Length or a transfer coding).
fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

/// Read a small body completely, refusing more than `MAX_SMALL_BODY_BYTES`.
pub async fn read_small_body(app: &App, body: Incoming) -> Result<Bytes, OssError> {
    match Limited::new(body, MAX_SMALL_BODY_BYTES).collect().await {
        Ok(c) => {
            let b = c.to_bytes();
            app.stats.bytes_in(b.len() as u64);
            Ok(b)
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(OssError::new(
            400,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size.",
            "0016-00000016",
        )),
        Err(_) => Err(OssError::new(
            400,
            "IncompleteBody",
            "The request body is incomplete.",
            "0016-00000017",
        )),
    }
}

async fn route(
    app: &Arc<App>,
    req: Request<Incoming>,
    request_id: &str,
    host: &str,
) -> Result<Response<RespBody>, OssError> {
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = parse_query(&raw_query);
    let raw_path = req.uri().path().to_string();
    let target = resolve_target(app, host, &raw_path)?;
    let sts_in_query = query.iter().any(|(k, _)| k == "Action");
    if raw_path == "/"
        && (sts_in_query || (req.method() == Method::POST && target.bucket.is_none() && is_form(req.headers())))
    {
        return handle_sts(app, req, query).await;
    }
    ops::handle(app, req, target, query, raw_query, request_id, host).await
}

async fn handle_sts(
    app: &Arc<App>,
    req: Request<Incoming>,
    mut params: Vec<(String, String)>,
) -> Result<Response<RespBody>, OssError> {
    let method = req.method().as_str().to_string();
    if req.method() == Method::POST && is_form(req.headers()) {
        let body = read_small_body(app, req.into_body()).await?;
        params.extend(parse_query(&String::from_utf8_lossy(&body)));
    }
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    app.stats.sts(&action);
    let answer = if app.faults.sts_outage() {
        sts::StsAnswer {
            status: 503,
            content_type: "application/json",
            body: serde_json::json!({
                "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
                "HostId": "sts.aliyuncs.com",
                "Code": "ServiceUnavailable",
                "Message": "The request has failed due to a temporary failure of the server.",
            })
            .to_string(),
        }
    } else {
        let state = app.auth.sts.clone();
        let now = app.now();
        sts::handle(&method, &params, &state, now)
    };
    if answer.status >= 300 {
        app.stats.error(&sts_error_code(&answer.body));
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    app.stats.bytes_out(answer.body.len() as u64);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, answer.content_type)
        .body(full(answer.body))
        .map_err(|_| OssError::internal_error())
}

/// `Code` of an STS error body (JSON or XML).
fn sts_error_code(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(c) = v.get("Code").and_then(|c| c.as_str())
    {
        return c.to_string();
    }
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| "UnknownError".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_decodes_plus_and_percent() {
        let q = parse_query("prefix=a+b%2Fc&delimiter=%2F&uploads&max-keys=");
        assert_eq!(
            q,
            vec![
                ("prefix".into(), "a b/c".into()),
                ("delimiter".into(), "/".into()),
                ("uploads".into(), "".into()),
                ("max-keys".into(), "".into())
            ]
        );
    }

    #[test]
    fn error_xml_and_head_form() {
        let e = OssError::no_such_key("a<b");
        let r = error_response(&e, "RID", "host", true);
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-oss-ec"], "0026-00000001");
        use base64::Engine as _;
        let xml = base64::engine::general_purpose::STANDARD
            .decode(r.headers()["x-oss-err"].as_bytes())
            .unwrap();
        let xml = String::from_utf8(xml).unwrap();
        assert!(xml.contains("<Code>NoSuchKey</Code>"));
        assert!(xml.contains("<Key>a&lt;b</Key>"));
        assert!(xml.contains("<RequestId>RID</RequestId>"));
        assert!(xml.contains("<EC>0026-00000001</EC>"));
    }

    #[test]
    fn sts_codes() {
        assert_eq!(sts_error_code(r#"{"Code":"NoPermission"}"#), "NoPermission");
        assert_eq!(sts_error_code("<Error><Code>X</Code></Error>"), "X");
        assert_eq!(sts_error_code("junk"), "UnknownError");
    }
}
