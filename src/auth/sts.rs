//! STS client (RPC style, API version 2015-04-01, PROTOCOL.md §7): the RPC v1 HMAC-SHA1
//! signer as pure functions, `AssumeRole`, `AssumeRoleWithOIDC` and `GetCallerIdentity` calls,
//! parameter validation, endpoint selection (§1.2), and the two credential sources built on
//! them ([`AssumeRoleSource`] over any base provider, [`OidcSource`]).
//!
//! Requests are `POST /` with every parameter (signature included) in an
//! `application/x-www-form-urlencoded` body, so URLs never carry signatures or tokens; the
//! signature covers the union of parameters and the method (§7.1). Answers are JSON
//! (`Format=JSON`); errors (§7.6) become `AuthError::Service` with code, message and request id.
//! 5xx, throttling and I/O errors are retried [`STS_MAX_ATTEMPTS`] times with jittered backoff.
//! Nothing here logs a parameter, a URL with a query, or a response body.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha1::Sha1;
use tracing::debug;

use super::cache::CredentialSource;
use super::env::Env;
use super::util::{Backoff, MAX_QUOTED_CHARS, SessionCredentialsJson, http_client, reqwest_error_text, truncate};
use super::{AuthError, CredentialProvider, Credentials};

/// STS API version.
pub const STS_API_VERSION: &str = "2015-04-01";
/// Default (global, public) STS host.
pub const STS_DEFAULT_HOST: &str = "sts.aliyuncs.com";
/// Default `DurationSeconds` of an assumed role session.
pub const DEFAULT_DURATION_SECS: u64 = 3600;
/// Smallest `DurationSeconds` STS accepts.
pub const MIN_DURATION_SECS: u64 = 900;
/// Largest `DurationSeconds` STS accepts (a role's `MaxSessionDuration` may be lower).
pub const MAX_DURATION_SECS: u64 = 43200;
/// Environment variable that allows durations below [`MIN_DURATION_SECS`] (tests against
/// osslocal `--min-duration`; never useful against real STS).
pub const ALLOW_SHORT_DURATION_ENV: &str = "OSSMOUNT_ALLOW_SHORT_DURATION";
/// Longest session policy STS accepts, in characters.
pub const MAX_POLICY_CHARS: usize = 2048;
/// Attempts per STS call (first try included) for retryable failures.
pub const STS_MAX_ATTEMPTS: u32 = 3;
/// First retry delay of an STS call (doubles, jittered).
pub const STS_RETRY_INITIAL: Duration = Duration::from_millis(200);
/// Longest retry delay of an STS call.
pub const STS_RETRY_MAX: Duration = Duration::from_secs(2);
/// TCP/TLS connect timeout for STS.
pub const STS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Whole-request timeout for one STS attempt.
pub const STS_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest STS response body we read.
const STS_MAX_BODY_BYTES: usize = 256 * 1024;

/// RFC 3986 unreserved characters stay literal; everything else is `%XX` (space → `%20`).
const RPC_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `pe()` of PROTOCOL.md §7.3.
pub fn rpc_percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RPC_ENCODE_SET).to_string()
}

/// `k=v&...` sorted by key, both encoded (the `Signature` parameter excluded).
pub fn canonicalized_query_string(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", rpc_percent_encode(k), rpc_percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD&%2F&pe(canonicalized query string)`.
pub fn rpc_string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    format!(
        "{}&{}&{}",
        method,
        rpc_percent_encode("/"),
        rpc_percent_encode(&canonicalized_query_string(params))
    )
}

/// `base64(HMAC-SHA1(secret + "&", string_to_sign))`.
pub fn rpc_signature(access_key_secret: &str, string_to_sign: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha1>::new_from_slice(format!("{access_key_secret}&").as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any size"),
    };
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The form body for `params` (each key and value `pe()`-encoded).
pub fn form_body(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", rpc_percent_encode(k), rpc_percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Adds the common signed parameters for `caller` (incl. `SecurityToken` when temporary) and
/// the `Signature`. `timestamp` and `nonce` are injected for testability.
pub fn sign_params(
    method: &str,
    params: &mut BTreeMap<String, String>,
    caller: &Credentials,
    timestamp: DateTime<Utc>,
    nonce: &str,
) {
    params.insert("Format".into(), "JSON".into());
    params.insert("Version".into(), STS_API_VERSION.into());
    params.insert("Timestamp".into(), timestamp.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    params.insert("AccessKeyId".into(), caller.access_key_id.clone());
    params.insert("SignatureMethod".into(), "HMAC-SHA1".into());
    params.insert("SignatureVersion".into(), "1.0".into());
    params.insert("SignatureNonce".into(), nonce.to_string());
    if let Some(t) = &caller.security_token {
        params.insert("SecurityToken".into(), t.clone());
    }
    let sts = rpc_string_to_sign(method, params);
    params.insert("Signature".into(), rpc_signature(&caller.access_key_secret, &sts));
}

fn config_err(source_name: &str, message: impl Into<String>) -> AuthError {
    AuthError::Config {
        source_name: source_name.to_string(),
        message: message.into(),
    }
}

/// Checks `acs:ram::<digits>:role/<name>`.
pub fn validate_role_arn(arn: &str) -> Result<(), AuthError> {
    let bad = || {
        config_err(
            "AssumeRole",
            format!(
                "invalid role ARN {:?}: expected acs:ram::<account id>:role/<role name>",
                truncate(arn, 100)
            ),
        )
    };
    let rest = arn.strip_prefix("acs:ram::").ok_or_else(bad)?;
    let (account, role) = rest.split_once(":role/").ok_or_else(bad)?;
    if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if role.is_empty() || role.len() > 64 || !role.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(bad());
    }
    Ok(())
}

/// Checks an OIDC provider ARN `acs:ram::<digits>:oidc-provider/<name>`.
pub fn validate_oidc_provider_arn(arn: &str) -> Result<(), AuthError> {
    let ok = arn
        .strip_prefix("acs:ram::")
        .and_then(|r| r.split_once(":oidc-provider/"))
        .is_some_and(|(acct, name)| !acct.is_empty() && acct.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty());
    if ok {
        Ok(())
    } else {
        Err(config_err(
            "AssumeRoleWithOIDC",
            format!(
                "invalid OIDC provider ARN {:?}: expected acs:ram::<account id>:oidc-provider/<name>",
                truncate(arn, 100)
            ),
        ))
    }
}

/// Checks a `RoleSessionName`: 2–64 characters of `[A-Za-z0-9_.@-]`.
pub fn validate_session_name(name: &str) -> Result<(), AuthError> {
    let len = name.chars().count();
    if !(2..=64).contains(&len) || !name.chars().all(is_session_char) {
        return Err(config_err(
            "AssumeRole",
            format!(
                "invalid role session name {:?}: 2-64 characters of letters, digits and . @ - _",
                truncate(name, 80)
            ),
        ));
    }
    Ok(())
}

fn is_session_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')
}

/// Makes a valid session name out of anything: bad characters become `-`, cut to 64, padded
/// to 2.
pub fn sanitize_session_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| if is_session_char(c) { c } else { '-' })
        .take(64)
        .collect();
    while s.chars().count() < 2 {
        s.push('-');
    }
    s
}

/// The traceable default session name `ossmount-<host>-<pid>` (shows up in ActionTrail).
pub fn default_session_name() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    sanitize_session_name(&format!("ossmount-{}-{}", host, std::process::id()))
}

/// Checks that a session policy is a JSON object of at most [`MAX_POLICY_CHARS`] characters.
pub fn validate_policy(policy: &str) -> Result<(), AuthError> {
    let n = policy.chars().count();
    if n == 0 || n > MAX_POLICY_CHARS {
        return Err(config_err(
            "AssumeRole",
            format!("session policy is {n} characters; STS accepts 1-{MAX_POLICY_CHARS}"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(policy) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(config_err("AssumeRole", "session policy must be a JSON object")),
        Err(e) => Err(config_err(
            "AssumeRole",
            format!("session policy is not valid JSON: {e}"),
        )),
    }
}

/// Checks `DurationSeconds` (900–43200; lower only with `allow_short`).
pub fn validate_duration(secs: u64, allow_short: bool) -> Result<(), AuthError> {
    let min = if allow_short { 1 } else { MIN_DURATION_SECS };
    if secs < min || secs > MAX_DURATION_SECS {
        return Err(config_err(
            "AssumeRole",
            format!(
                "duration {secs} s out of range: STS accepts {MIN_DURATION_SECS}-{MAX_DURATION_SECS} s \
                 (and at most the role's MaxSessionDuration)"
            ),
        ));
    }
    Ok(())
}

/// Checks an `ExternalId`: 2–1224 characters of `[\w+=,.@:/-]`.
pub fn validate_external_id(id: &str) -> Result<(), AuthError> {
    let len = id.chars().count();
    let ok = (2..=1224).contains(&len) && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(config_err(
            "AssumeRole",
            "invalid external id: 2-1224 characters of [A-Za-z0-9_+=,.@:/-]",
        ))
    }
}

/// Picks the STS endpoint (PROTOCOL.md §1.2): explicit URL (a bare host gets `https://`) →
/// `sts[-vpc].<region>.aliyuncs.com` for `region` or `$ALIBABA_CLOUD_STS_REGION` →
/// `sts.aliyuncs.com`. `-vpc` when `vpc` or `$ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED` is true.
pub fn resolve_sts_endpoint(explicit: Option<&str>, region: Option<&str>, vpc: bool, env: &Env) -> String {
    if let Some(e) = explicit.map(str::trim).filter(|e| !e.is_empty()) {
        let e = e.trim_end_matches('/');
        return if e.contains("://") {
            e.to_string()
        } else {
            format!("https://{e}")
        };
    }
    let vpc = vpc || env.flag("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED");
    let region = region
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .or_else(|| env.get("ALIBABA_CLOUD_STS_REGION"));
    match region {
        Some(r) => format!("https://sts{}.{}.aliyuncs.com", if vpc { "-vpc" } else { "" }, r),
        None => format!("https://{STS_DEFAULT_HOST}"),
    }
}

/// Parameters of an AssumeRole / AssumeRoleWithOIDC session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSessionParams {
    pub role_arn: String,
    pub session_name: String,
    pub policy: Option<String>,
    pub duration_secs: u64,
    pub external_id: Option<String>,
}

impl RoleSessionParams {
    /// Parameters with the default session name and duration.
    pub fn new(role_arn: impl Into<String>) -> Self {
        RoleSessionParams {
            role_arn: role_arn.into(),
            session_name: default_session_name(),
            policy: None,
            duration_secs: DEFAULT_DURATION_SECS,
            external_id: None,
        }
    }
    /// Validates everything before any call.
    pub fn validate(&self, allow_short_duration: bool) -> Result<(), AuthError> {
        validate_role_arn(&self.role_arn)?;
        validate_session_name(&self.session_name)?;
        if let Some(p) = &self.policy {
            validate_policy(p)?;
        }
        validate_duration(self.duration_secs, allow_short_duration)?;
        if let Some(x) = &self.external_id {
            validate_external_id(x)?;
        }
        Ok(())
    }
    fn insert_into(&self, params: &mut BTreeMap<String, String>) {
        params.insert("RoleArn".into(), self.role_arn.clone());
        params.insert("RoleSessionName".into(), self.session_name.clone());
        params.insert("DurationSeconds".into(), self.duration_secs.to_string());
        if let Some(p) = &self.policy {
            params.insert("Policy".into(), p.clone());
        }
    }
}

/// `GetCallerIdentity` answer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CallerIdentity {
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub arn: Option<String>,
    pub identity_type: Option<String>,
    pub principal_id: Option<String>,
    pub role_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsErrorJson {
    code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleJson {
    credentials: Option<SessionCredentialsJson>,
}

/// A client for one STS endpoint.
#[derive(Clone)]
pub struct StsClient {
    endpoint: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for StsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsClient").field("endpoint", &self.endpoint).finish()
    }
}

/// Codes worth retrying (PROTOCOL.md §7.6).
fn retryable_code(code: &str) -> bool {
    code.starts_with("Throttling") || matches!(code, "InternalError" | "ServiceUnavailable" | "UnknownError")
}

/// STS error messages for `SignatureDoesNotMatch` echo the string to sign, which contains the
/// caller's AccessKeyId and SecurityToken: cut that part off.
fn scrub_message(message: &str) -> String {
    let cut = match message.find("string to sign is:") {
        Some(i) => &message[..i + "string to sign is:".len()],
        None => message,
    };
    let mut s = truncate(cut, MAX_QUOTED_CHARS);
    if cut.len() < message.len() {
        s.push_str(" <omitted>");
    }
    s
}

enum Attempt {
    Done(Result<serde_json::Value, AuthError>),
    Retry(AuthError),
}

impl StsClient {
    /// A client for `endpoint` (a URL such as `https://sts.aliyuncs.com` or
    /// `http://127.0.0.1:PORT`).
    pub fn new(endpoint: &str) -> Result<Self, AuthError> {
        let url = url::Url::parse(endpoint).map_err(|e| {
            config_err(
                "STS",
                format!("invalid STS endpoint {:?}: {e}", truncate(endpoint, 100)),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(config_err(
                "STS",
                format!(
                    "invalid STS endpoint {:?}: need http(s)://host",
                    truncate(endpoint, 100)
                ),
            ));
        }
        let mut endpoint = url.to_string();
        if !endpoint.ends_with('/') {
            endpoint.push('/');
        }
        if url.scheme() == "http" && !is_loopback_host(&url) {
            tracing::warn!(
                endpoint = %endpoint,
                "STS endpoint uses plain http: issued credentials would cross the network unencrypted"
            );
        }
        let http = http_client("STS", STS_CONNECT_TIMEOUT, STS_REQUEST_TIMEOUT, false)?;
        Ok(StsClient { endpoint, http })
    }

    /// The endpoint URL (no secrets).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `AssumeRole` as `caller` (which may itself be STS credentials: role chaining).
    pub async fn assume_role(&self, caller: &Credentials, p: &RoleSessionParams) -> Result<Credentials, AuthError> {
        let mut params = BTreeMap::new();
        params.insert("Action".to_string(), "AssumeRole".to_string());
        p.insert_into(&mut params);
        if let Some(x) = &p.external_id {
            params.insert("ExternalId".into(), x.clone());
        }
        let v = self.call("AssumeRole", params, Some(caller)).await?;
        parse_assume_role("AssumeRole", v)
    }

    /// `AssumeRoleWithOIDC` (anonymous: the OIDC token authenticates).
    pub async fn assume_role_with_oidc(
        &self,
        p: &RoleSessionParams,
        oidc_provider_arn: &str,
        oidc_token: &str,
    ) -> Result<Credentials, AuthError> {
        let mut params = BTreeMap::new();
        params.insert("Action".to_string(), "AssumeRoleWithOIDC".to_string());
        p.insert_into(&mut params);
        params.insert("OIDCProviderArn".into(), oidc_provider_arn.to_string());
        params.insert("OIDCToken".into(), oidc_token.to_string());
        let v = self.call("AssumeRoleWithOIDC", params, None).await?;
        parse_assume_role("AssumeRoleWithOIDC", v)
    }

    /// `GetCallerIdentity`: a cheap probe that `caller` works.
    pub async fn get_caller_identity(&self, caller: &Credentials) -> Result<CallerIdentity, AuthError> {
        let mut params = BTreeMap::new();
        params.insert("Action".to_string(), "GetCallerIdentity".to_string());
        let v = self.call("GetCallerIdentity", params, Some(caller)).await?;
        serde_json::from_value(v).map_err(|e| AuthError::InvalidResponse {
            source_name: "STS GetCallerIdentity".into(),
            message: format!("unexpected JSON: {e}"),
        })
    }

    /// One STS call with retries; each attempt is freshly signed (new nonce and timestamp).
    async fn call(
        &self,
        action: &str,
        base: BTreeMap<String, String>,
        caller: Option<&Credentials>,
    ) -> Result<serde_json::Value, AuthError> {
        let source_name = format!("STS {action}");
        let mut backoff = Backoff::new(STS_RETRY_INITIAL, STS_RETRY_MAX);
        let mut attempt = 1;
        loop {
            let mut params = base.clone();
            match caller {
                Some(c) => sign_params("POST", &mut params, c, Utc::now(), &uuid::Uuid::new_v4().to_string()),
                None => {
                    params.insert("Format".into(), "JSON".into());
                    params.insert("Version".into(), STS_API_VERSION.into());
                    params.insert("Timestamp".into(), Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
                }
            }
            match self.attempt(&source_name, &params).await {
                Attempt::Done(r) => return r,
                Attempt::Retry(e) if attempt < STS_MAX_ATTEMPTS => {
                    let d = backoff.next_delay();
                    debug!(endpoint = %self.endpoint, attempt, error = %e, "retrying STS call");
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                Attempt::Retry(e) => return Err(e),
            }
        }
    }

    async fn attempt(&self, source_name: &str, params: &BTreeMap<String, String>) -> Attempt {
        let resp = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form_body(params))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry(AuthError::Unreachable {
                    source_name: source_name.to_string(),
                    message: format!("{}: {}", self.endpoint, reqwest_error_text(e)),
                });
            }
        };
        let status = resp.status();
        let body = match read_limited(resp, STS_MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry(AuthError::Unreachable {
                    source_name: source_name.to_string(),
                    message: format!("{}: reading the answer: {e}", self.endpoint),
                });
            }
        };
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return Attempt::Done(json.ok_or_else(|| AuthError::InvalidResponse {
                source_name: source_name.to_string(),
                message: format!("HTTP {status} with a body that is not JSON"),
            }));
        }
        let parsed: Option<StsErrorJson> = json.and_then(|v| serde_json::from_value(v).ok());
        let (code, message, request_id) = match parsed {
            Some(StsErrorJson {
                code: Some(code),
                message,
                request_id,
            }) => {
                let mut message = scrub_message(message.as_deref().unwrap_or(""));
                // What support asks for first (the Display of `AuthError::Service` shows only
                // the message).
                if let Some(id) = request_id.as_deref().filter(|id| !id.is_empty()) {
                    message.push_str(&format!(" (RequestId {id})"));
                }
                (code, message, request_id)
            }
            _ => (
                format!("HTTP{}", status.as_u16()),
                format!("HTTP {status} without an STS error body"),
                None,
            ),
        };
        let err = AuthError::Service {
            source_name: source_name.to_string(),
            code: code.clone(),
            message,
            request_id,
        };
        if status.is_server_error() || status.as_u16() == 429 || retryable_code(&code) {
            Attempt::Retry(err)
        } else {
            Attempt::Done(Err(err))
        }
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Reads at most `limit` bytes of a body.
pub(crate) async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(reqwest_error_text)? {
        if out.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn parse_assume_role(source_name: &str, v: serde_json::Value) -> Result<Credentials, AuthError> {
    let parsed: AssumeRoleJson = serde_json::from_value(v).map_err(|e| AuthError::InvalidResponse {
        source_name: source_name.to_string(),
        message: format!("unexpected JSON: {e}"),
    })?;
    parsed
        .credentials
        .ok_or_else(|| AuthError::InvalidResponse {
            source_name: source_name.to_string(),
            message: "no Credentials in the answer".into(),
        })?
        .into_credentials(source_name, true, true)
}

/// Whether an STS error means the caller's own credentials were rejected (so a temporary base
/// is worth refreshing once).
fn caller_credentials_rejected(e: &AuthError) -> bool {
    match e {
        AuthError::Service { code, .. } => {
            code.starts_with("InvalidSecurityToken")
                || code.starts_with("InvalidAccessKeyId")
                || code == "SecurityTokenExpired"
                || code == "SignatureDoesNotMatch"
        }
        _ => false,
    }
}

/// AssumeRole on top of any base provider (static keys, environment, a profile, ECS, another
/// AssumeRole...). Each fetch asks the base for its current credentials (sending
/// `SecurityToken` when they are temporary) and, if STS rejects them, refreshes the base once.
pub struct AssumeRoleSource {
    base: Arc<dyn CredentialProvider>,
    params: RoleSessionParams,
    client: StsClient,
}

impl AssumeRoleSource {
    /// Validates `params` (use `allow_short_duration` only for tests against osslocal).
    pub fn new(
        base: Arc<dyn CredentialProvider>,
        params: RoleSessionParams,
        client: StsClient,
        allow_short_duration: bool,
    ) -> Result<Self, AuthError> {
        params.validate(allow_short_duration)?;
        Ok(AssumeRoleSource { base, params, client })
    }
    pub fn params(&self) -> &RoleSessionParams {
        &self.params
    }
}

impl std::fmt::Debug for AssumeRoleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRoleSource")
            .field("base", &self.base.describe())
            .field("params", &self.params)
            .field("client", &self.client)
            .finish()
    }
}

#[async_trait]
impl CredentialSource for AssumeRoleSource {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        let caller = self.base.credentials().await?;
        match self.client.assume_role(&caller, &self.params).await {
            Err(e) if caller.is_temporary() && caller_credentials_rejected(&e) => {
                debug!(base = %self.base.describe(), error = %e, "STS rejected the base credentials; refreshing them");
                let caller = self.base.refresh_after_rejection(&caller).await?;
                self.client.assume_role(&caller, &self.params).await
            }
            r => r,
        }
    }
    fn describe(&self) -> String {
        format!("AssumeRole {} (base: {})", self.params.role_arn, self.base.describe())
    }
}

/// AssumeRoleWithOIDC (RRSA). The token file is re-read at every fetch: the kubelet rotates it.
pub struct OidcSource {
    params: RoleSessionParams,
    provider_arn: String,
    token_file: PathBuf,
    client: StsClient,
}

impl OidcSource {
    /// Validates the parameters and that the token file exists now.
    pub fn new(
        params: RoleSessionParams,
        provider_arn: impl Into<String>,
        token_file: impl Into<PathBuf>,
        client: StsClient,
        allow_short_duration: bool,
    ) -> Result<Self, AuthError> {
        params.validate(allow_short_duration)?;
        let provider_arn = provider_arn.into();
        validate_oidc_provider_arn(&provider_arn)?;
        let token_file = token_file.into();
        std::fs::metadata(&token_file).map_err(|e| {
            config_err(
                "AssumeRoleWithOIDC",
                format!("OIDC token file {}: {e}", token_file.display()),
            )
        })?;
        Ok(OidcSource {
            params,
            provider_arn,
            token_file,
            client,
        })
    }
}

impl std::fmt::Debug for OidcSource {
    // The token file's path only, never its content.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSource")
            .field("params", &self.params)
            .field("provider_arn", &self.provider_arn)
            .field("token_file", &self.token_file)
            .field("client", &self.client)
            .finish()
    }
}

#[async_trait]
impl CredentialSource for OidcSource {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| AuthError::Config {
                source_name: "AssumeRoleWithOIDC".into(),
                message: format!("cannot read OIDC token file {}: {e}", self.token_file.display()),
            })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(config_err(
                "AssumeRoleWithOIDC",
                format!("OIDC token file {} is empty", self.token_file.display()),
            ));
        }
        self.client
            .assume_role_with_oidc(&self.params, &self.provider_arn, token)
            .await
    }
    fn describe(&self) -> String {
        format!(
            "AssumeRoleWithOIDC {} (provider {})",
            self.params.role_arn, self.provider_arn
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_rules() {
        assert_eq!(rpc_percent_encode("a b*~+/=中"), "a%20b%2A~%2B%2F%3D%E4%B8%AD");
    }

    #[test]
    fn arn_validation() {
        assert!(validate_role_arn("acs:ram::1234567890123456:role/oss-fuse-role").is_ok());
        for bad in [
            "",
            "acs:ram::12a:role/x",
            "acs:ram::123:user/x",
            "acs:ram::123:role/",
            "arn:aws:iam::1:role/x",
        ] {
            let e = validate_role_arn(bad).unwrap_err().to_string();
            assert!(e.contains("invalid role ARN"), "{bad}: {e}");
        }
    }

    #[test]
    fn session_names() {
        assert!(validate_session_name("fuse.mount@host-01").is_ok());
        assert!(validate_session_name("a").is_err());
        assert!(validate_session_name("has space").is_err());
        assert!(validate_session_name(&"x".repeat(65)).is_err());
        assert_eq!(
            sanitize_session_name("ossmount-my host.local-12"),
            "ossmount-my-host.local-12"
        );
        assert_eq!(sanitize_session_name("é"), "--");
        assert_eq!(sanitize_session_name(&"h".repeat(100)).len(), 64);
        let d = default_session_name();
        assert!(d.starts_with("ossmount-"), "{d}");
        validate_session_name(&d).unwrap();
    }

    #[test]
    fn policy_duration_external_id() {
        assert!(validate_policy(r#"{"Version":"1","Statement":[]}"#).is_ok());
        assert!(
            validate_policy("{not json")
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
        assert!(validate_policy("[1]").is_err());
        assert!(
            validate_policy(&format!(r#"{{"a":"{}"}}"#, "x".repeat(3000)))
                .unwrap_err()
                .to_string()
                .contains("2048")
        );
        assert!(validate_duration(900, false).is_ok());
        assert!(validate_duration(43200, false).is_ok());
        assert!(
            validate_duration(899, false)
                .unwrap_err()
                .to_string()
                .contains("900-43200")
        );
        assert!(validate_duration(43201, true).is_err());
        assert!(validate_duration(5, true).is_ok());
        assert!(validate_duration(0, true).is_err());
        assert!(validate_external_id("ext-id_1.0").is_ok());
        assert!(validate_external_id("x").is_err());
    }

    #[test]
    fn endpoint_selection() {
        let none = Env::default();
        assert_eq!(
            resolve_sts_endpoint(None, None, false, &none),
            "https://sts.aliyuncs.com"
        );
        assert_eq!(
            resolve_sts_endpoint(Some("sts.example.com"), None, true, &none),
            "https://sts.example.com"
        );
        assert_eq!(
            resolve_sts_endpoint(Some("http://127.0.0.1:9/"), None, false, &none),
            "http://127.0.0.1:9"
        );
        let env = Env::from_pairs([
            ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
            ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
        ]);
        assert_eq!(
            resolve_sts_endpoint(None, None, false, &env),
            "https://sts-vpc.cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            resolve_sts_endpoint(None, Some("cn-hangzhou"), false, &none),
            "https://sts.cn-hangzhou.aliyuncs.com"
        );
    }

    #[test]
    fn signature_message_is_scrubbed() {
        let m = "Specified signature is not matched with our calculation. server string to sign is:GET&%2F&AccessKeyId%3DLTAI%26SecurityToken%3DSECRET";
        let s = scrub_message(m);
        assert!(!s.contains("SECRET") && !s.contains("LTAI"), "{s}");
        assert!(s.contains("not matched"));
    }
}
