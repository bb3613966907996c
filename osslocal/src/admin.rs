//! Admin API state: request statistics and injected faults (`/_osslocal/stats`,
//! `/_osslocal/faults`). Both are plain data behind short std mutexes (never held across
//! `.await`); counters on the hot path are atomics. Faults never apply to admin requests.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::error::OssError;

/// The operation names of the interface document (stats keys; fault `ops` filter).
pub const OPERATIONS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "GetObjectMeta",
    "PutObject",
    "DeleteObject",
    "DeleteMultipleObjects",
    "ListObjectsV2",
    "ListObjects",
    "CopyObject",
    "InitiateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
    "ListMultipartUploads",
    "AppendObject",
    "PutSymlink",
    "GetSymlink",
    "GetBucketInfo",
    "GetBucketLocation",
    "ListBuckets",
];

const STS_ACTIONS: &[&str] = &["AssumeRole", "AssumeRoleWithOIDC", "GetCallerIdentity"];

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid fault JSON: {0}")]
    BadJson(#[from] serde_json::Error),
    #[error("invalid fault setting: {0}")]
    BadValue(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Counters {
    ops: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    sts: BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct Stats {
    counters: Mutex<Counters>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    requests: AtomicU64,
}

impl Stats {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn op(&self, name: &str) {
        *lock(&self.counters).ops.entry(name.to_string()).or_default() += 1;
    }
    pub fn error(&self, code: &str) {
        *lock(&self.counters).errors.entry(code.to_string()).or_default() += 1;
    }
    pub fn sts(&self, action: &str) {
        *lock(&self.counters).sts.entry(action.to_string()).or_default() += 1;
    }
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }
    pub fn reset(&self) {
        *lock(&self.counters) = Counters::default();
        self.bytes_in.store(0, Ordering::Relaxed);
        self.bytes_out.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
    }
    pub fn to_json(&self) -> serde_json::Value {
        let c = lock(&self.counters);
        let mut sts: BTreeMap<String, u64> = STS_ACTIONS.iter().map(|a| (a.to_string(), 0)).collect();
        sts.extend(c.sts.iter().map(|(k, v)| (k.clone(), *v)));
        json!({
            "ops": c.ops,
            "errors": c.errors,
            "sts": sts,
            "bytes_in": self.bytes_in.load(Ordering::Relaxed),
            "bytes_out": self.bytes_out.load(Ordering::Relaxed),
            "requests": self.requests.load(Ordering::Relaxed),
        })
    }
}

/// The JSON posted to `/_osslocal/faults`; every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    pub error_rate: Option<f64>,
    pub error_status: Option<u16>,
    pub error_code: Option<String>,
    pub ops: Option<Vec<String>>,
    pub latency_ms: Option<u64>,
    pub reset_rate: Option<f64>,
    pub reset_after_bytes: Option<u64>,
    pub sts_outage: Option<bool>,
    pub time_offset_secs: Option<i64>,
    pub expire_tokens: Option<bool>,
    pub max_faults: Option<u64>,
}

/// Default cut point of a connection reset when `reset_after_bytes` is absent.
const DEFAULT_RESET_AFTER_BYTES: u64 = 64 * 1024;

#[derive(Default)]
struct FaultState {
    cfg: FaultConfig,
    /// Errors and resets injected since the fault set was posted.
    injected: u64,
    tokens_expired_before: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

/// Give an error code from JSON the `'static` lifetime `OssError` wants. The set of distinct
/// codes posted by tests is tiny, so interning (leaking once per distinct code) is bounded.
fn intern(code: &str) -> &'static str {
    static CODES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = lock(CODES.get_or_init(Default::default));
    if let Some(c) = set.get(code) {
        return c;
    }
    let leaked: &'static str = Box::leak(code.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

fn rate_ok(name: &str, r: Option<f64>) -> Result<(), AdminError> {
    match r {
        Some(r) if !(0.0..=1.0).contains(&r) => Err(AdminError::BadValue(format!("{name} must be within 0..=1"))),
        _ => Ok(()),
    }
}

impl Faults {
    /// Replace the fault set.
    pub fn set(&self, body: &[u8]) -> Result<(), AdminError> {
        let cfg: FaultConfig = if body.iter().all(u8::is_ascii_whitespace) {
            FaultConfig::default()
        } else {
            serde_json::from_slice(body)?
        };
        rate_ok("error_rate", cfg.error_rate)?;
        rate_ok("reset_rate", cfg.reset_rate)?;
        if let Some(s) = cfg.error_status
            && !(400..=599).contains(&s)
        {
            return Err(AdminError::BadValue("error_status must be within 400..=599".into()));
        }
        if let Some(ops) = &cfg.ops
            && let Some(bad) = ops.iter().find(|o| !OPERATIONS.contains(&o.as_str()))
        {
            return Err(AdminError::BadValue(format!("unknown operation {bad:?} in ops")));
        }
        let offset = chrono::Duration::seconds(cfg.time_offset_secs.unwrap_or(0));
        let expired_before = cfg.expire_tokens.unwrap_or(false).then(|| Utc::now() + offset);
        *lock(&self.state) = FaultState {
            cfg,
            injected: 0,
            tokens_expired_before: expired_before,
        };
        Ok(())
    }

    pub fn clear(&self) {
        *lock(&self.state) = FaultState::default();
    }

    pub fn time_offset(&self) -> chrono::Duration {
        chrono::Duration::seconds(lock(&self.state).cfg.time_offset_secs.unwrap_or(0))
    }

    pub fn tokens_expired_before(&self) -> Option<DateTime<Utc>> {
        lock(&self.state).tokens_expired_before
    }

    pub fn sts_outage(&self) -> bool {
        lock(&self.state).cfg.sts_outage.unwrap_or(false)
    }

    fn applies(cfg: &FaultConfig, op: &str) -> bool {
        cfg.ops.as_ref().is_none_or(|ops| ops.iter().any(|o| o == op))
    }

    pub fn latency(&self, op: &str) -> Option<Duration> {
        let st = lock(&self.state);
        match st.cfg.latency_ms {
            Some(ms) if ms > 0 && Self::applies(&st.cfg, op) => Some(Duration::from_millis(ms)),
            _ => None,
        }
    }

    fn budget_left(st: &FaultState) -> bool {
        st.cfg.max_faults.is_none_or(|m| st.injected < m)
    }

    /// An injected error answer for this request, if the dice say so.
    pub fn error_for(&self, op: &str) -> Option<OssError> {
        let mut st = lock(&self.state);
        let rate = st.cfg.error_rate.unwrap_or(0.0);
        if rate <= 0.0 || !Self::applies(&st.cfg, op) || !Self::budget_left(&st) {
            return None;
        }
        if rate < 1.0 && rand::random::<f64>() >= rate {
            return None;
        }
        st.injected += 1;
        let status = st.cfg.error_status.unwrap_or(503);
        let code = intern(st.cfg.error_code.as_deref().unwrap_or("ServiceUnavailable"));
        Some(OssError::new(
            status,
            code,
            "Injected fault: please retry later.",
            "0000-00000000",
        ))
    }

    /// Byte offset at which to cut this GetObject body, if a reset is due.
    pub fn reset_for(&self, op: &str) -> Option<u64> {
        let mut st = lock(&self.state);
        let rate = st.cfg.reset_rate.unwrap_or(0.0);
        if rate <= 0.0 || op != "GetObject" || !Self::applies(&st.cfg, op) || !Self::budget_left(&st) {
            return None;
        }
        if rate < 1.0 && rand::random::<f64>() >= rate {
            return None;
        }
        st.injected += 1;
        Some(st.cfg.reset_after_bytes.unwrap_or(DEFAULT_RESET_AFTER_BYTES))
    }
}

/// Serve `/_osslocal/...` (loopback clients only).
pub async fn handle_http(
    app: &crate::server::App,
    req: http::Request<hyper::body::Incoming>,
    remote: std::net::SocketAddr,
) -> http::Response<crate::server::RespBody> {
    use http::{Method, StatusCode};
    let reply = |status: StatusCode, body: serde_json::Value| {
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(crate::server::full(body.to_string()))
            .unwrap_or_else(|_| http::Response::new(crate::server::empty()))
    };
    if !remote.ip().is_loopback() {
        return reply(
            StatusCode::FORBIDDEN,
            json!({"error": "the admin API answers only on loopback"}),
        );
    }
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    match (method, path.as_str()) {
        (Method::GET, "/_osslocal/stats") => reply(StatusCode::OK, app.stats.to_json()),
        (Method::POST, "/_osslocal/stats/reset") => {
            app.stats.reset();
            reply(StatusCode::OK, json!({"ok": true}))
        }
        (Method::POST, "/_osslocal/faults") => {
            use http_body_util::BodyExt;
            let body = match http_body_util::Limited::new(req.into_body(), crate::server::MAX_SMALL_BODY_BYTES)
                .collect()
                .await
            {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        json!({"error": format!("reading the body: {e}")}),
                    );
                }
            };
            match app.faults.set(&body) {
                Ok(()) => reply(StatusCode::OK, json!({"ok": true})),
                Err(e) => reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
            }
        }
        (Method::POST, "/_osslocal/faults/clear") => {
            app.faults.clear();
            reply(StatusCode::OK, json!({"ok": true}))
        }
        _ => reply(StatusCode::NOT_FOUND, json!({"error": "unknown admin endpoint"})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_json_shape() {
        let s = Stats::default();
        s.op("GetObject");
        s.op("GetObject");
        s.error("NoSuchKey");
        s.sts("AssumeRole");
        s.bytes_in(5);
        s.bytes_out(7);
        s.request();
        let j = s.to_json();
        assert_eq!(j["ops"]["GetObject"], 2);
        assert_eq!(j["errors"]["NoSuchKey"], 1);
        assert_eq!(j["sts"]["AssumeRole"], 1);
        assert_eq!(j["sts"]["GetCallerIdentity"], 0);
        assert_eq!(j["bytes_in"], 5);
        assert_eq!(j["bytes_out"], 7);
        assert_eq!(j["requests"], 1);
        s.reset();
        assert_eq!(s.to_json()["ops"], json!({}));
    }

    #[test]
    fn faults_respect_ops_and_budget() {
        let f = Faults::default();
        f.set(
            br#"{"error_rate":1.0,"error_status":500,"error_code":"InternalError","ops":["GetObject"],"max_faults":2}"#,
        )
        .unwrap();
        assert!(f.error_for("PutObject").is_none());
        let e = f.error_for("GetObject").unwrap();
        assert_eq!((e.status, e.code), (500, "InternalError"));
        assert!(f.error_for("GetObject").is_some());
        assert!(f.error_for("GetObject").is_none(), "max_faults exhausted");
        f.clear();
        assert!(f.error_for("GetObject").is_none());
    }

    #[test]
    fn bad_fault_json_is_rejected() {
        let f = Faults::default();
        assert!(f.set(br#"{"error_rate": 2}"#).is_err());
        assert!(f.set(br#"{"bogus": 1}"#).is_err());
        assert!(f.set(br#"{"ops": ["Nope"]}"#).is_err());
        assert!(f.set(b"{").is_err());
        f.set(br#"{"reset_rate":1,"reset_after_bytes":10,"time_offset_secs":-60,"expire_tokens":true}"#)
            .unwrap();
        assert_eq!(f.reset_for("GetObject"), Some(10));
        assert_eq!(f.reset_for("HeadObject"), None);
        assert_eq!(f.time_offset(), chrono::Duration::seconds(-60));
        assert!(f.tokens_expired_before().is_some());
    }
}
