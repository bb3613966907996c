//! The local STS service (RPC style, API version 2015-04-01): AssumeRole, AssumeRoleWithOIDC and
//! GetCallerIdentity, answered in JSON (or XML when `Format=XML`).
//!
//! [`handle`] gets the decoded union of query and form parameters and verifies the RPC HMAC-SHA1
//! v1.0 signature over *exactly* the parameters received and the HTTP method (PROTOCOL.md §7.3),
//! so any conforming SDK works and nothing the client sent goes unsigned. Then it checks the
//! `Timestamp` (±15 min), rejects a replayed `SignatureNonce` (per AccessKeyId, remembered for
//! [`NONCE_RETENTION_SECS`], at most [`MAX_RECENT_NONCES`]) and runs the action.
//!
//! Callers are RAM users (`StsState::keys`) or STS sessions (role chaining: an `STS.` AccessKeyId
//! plus its `SecurityToken`, whose embedded secret verifies the signature). Issued credentials are
//! self-contained tokens (see `token.rs`); the OSS side needs no session table.
//!
//! Simplifications (documented in the README, "Authentication and STS fidelity"): any configured
//! caller may assume any configured role (no trust policy, no `sts:AssumeRole` permission check);
//! AssumeRoleWithOIDC does **not** verify the JWT signature (see [`verify_oidc_token`]); a missing
//! `Format` answers JSON (real STS defaults to XML).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::auth::{constant_time_eq, percent_encode_rfc3986, redact_token};
use crate::policy::{MAX_POLICY_CHARS, Policy};
pub use crate::token::TokenError;

/// Account id used in ARNs and GetCallerIdentity.
pub const DEFAULT_ACCOUNT_ID: &str = "1234567890123456";
/// Lower bound of `DurationSeconds` (real STS: 900); `--min-duration` lowers it for tests.
pub const DEFAULT_MIN_DURATION_SECS: u64 = 900;
/// Default role `MaxSessionDuration`.
pub const DEFAULT_MAX_SESSION_DURATION_SECS: u64 = 43_200;
/// `DurationSeconds` when the caller sends none.
pub const DEFAULT_DURATION_SECS: u64 = 3600;
/// Accepted distance between `Timestamp` and the server clock.
pub const MAX_TIMESTAMP_SKEW_SECS: i64 = 15 * 60;
/// How long a used `SignatureNonce` is remembered (a replay older than this fails the Timestamp check).
pub const NONCE_RETENTION_SECS: i64 = 2 * MAX_TIMESTAMP_SKEW_SECS;
/// Upper bound of remembered nonces; the oldest are forgotten first.
pub const MAX_RECENT_NONCES: usize = 100_000;
/// `ExternalId` length bounds, in characters.
const EXTERNAL_ID_CHARS: std::ops::RangeInclusive<usize> = 2..=1224;
/// `RoleSessionName` length bounds, in characters.
const SESSION_NAME_CHARS: std::ops::RangeInclusive<usize> = 2..=64;
/// `OIDCToken` length bounds, in characters.
const OIDC_TOKEN_CHARS: std::ops::RangeInclusive<usize> = 4..=20_000;
/// Length of the random part of an issued `STS.` AccessKeyId.
const STS_ACCESS_KEY_RANDOM_CHARS: usize = 24;
/// Length of an issued temporary AccessKeySecret.
const STS_SECRET_CHARS: usize = 40;
/// The only API version served.
const API_VERSION: &str = "2015-04-01";
const HOST_ID: &str = "sts.aliyuncs.com";
const CONTENT_TYPE_JSON: &str = "application/json;charset=utf-8";
const CONTENT_TYPE_XML: &str = "text/xml;charset=utf-8";
/// File (under the data dir) holding the token MAC key.
const TOKEN_KEY_RELATIVE_PATH: &str = ".osslocal/token.key";

/// Errors of this module: token-key persistence, and STS API errors (rendered by [`handle`]).
#[derive(Debug, thiserror::Error)]
pub enum StsError {
    #[error("cannot read or create the token key {path}: {source}")]
    TokenKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token key {path} holds {len} bytes, expected 32")]
    TokenKeyLength { path: PathBuf, len: usize },
    #[error("STS error {code} (HTTP {status}): {message}")]
    Api {
        status: u16,
        code: &'static str,
        message: String,
    },
}

fn api(status: u16, code: &'static str, message: impl Into<String>) -> StsError {
    StsError::Api {
        status,
        code,
        message: message.into(),
    }
}

fn missing(name: &str) -> StsError {
    api(
        400,
        "MissingParameter",
        format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
    )
}

/// A role that may be assumed.
#[derive(Clone, Debug)]
pub struct Role {
    pub arn: String,
    /// The role's permission policy; `None` = unrestricted.
    pub policy: Option<Policy>,
    /// Upper bound of `DurationSeconds` (RAM `MaxSessionDuration`, default 43200).
    pub max_session_duration: u64,
}

impl Role {
    /// A role with no policy and the default maximum session duration.
    pub fn new(arn: impl Into<String>) -> Role {
        Role {
            arn: arn.into(),
            policy: None,
            max_session_duration: DEFAULT_MAX_SESSION_DURATION_SECS,
        }
    }
}

/// A registered OIDC identity provider (for AssumeRoleWithOIDC).
#[derive(Clone, Debug)]
pub struct OidcProvider {
    pub arn: String,
    /// Required `iss` of accepted tokens; `None` accepts any issuer.
    pub issuer: Option<String>,
}

/// Recently used `SignatureNonce`s (bounded; see the module doc).
#[derive(Default)]
pub struct NonceCache {
    inner: Mutex<NonceInner>,
}

#[derive(Default)]
struct NonceInner {
    seen: HashSet<String>,
    order: VecDeque<(DateTime<Utc>, String)>,
}

impl NonceCache {
    /// Remember `nonce` for `access_key_id`; false if it was already used recently.
    pub fn check_and_insert(&self, access_key_id: &str, nonce: &str, now: DateTime<Utc>) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let horizon = now - Duration::seconds(NONCE_RETENTION_SECS);
        while let Some((at, _)) = inner.order.front() {
            if *at >= horizon && inner.order.len() < MAX_RECENT_NONCES {
                break;
            }
            if let Some((_, old)) = inner.order.pop_front() {
                inner.seen.remove(&old);
            }
        }
        let key = format!("{access_key_id}\n{nonce}");
        if !inner.seen.insert(key.clone()) {
            return false;
        }
        inner.order.push_back((now, key));
        true
    }
}

/// Configuration and state of the STS service. No `Debug`: it holds secrets.
pub struct StsState {
    /// RAM users allowed to call STS: AccessKeyId -> AccessKeySecret.
    pub keys: HashMap<String, String>,
    /// Assumable roles by ARN.
    pub roles: HashMap<String, Role>,
    pub oidc_providers: Vec<OidcProvider>,
    /// Lower bound of `DurationSeconds` (default 900).
    pub min_duration: u64,
    /// MAC key of security tokens; persist it with [`StsState::load_or_create_token_key`].
    pub token_key: [u8; 32],
    /// Account id in ARNs, default [`DEFAULT_ACCOUNT_ID`].
    pub account_id: String,
    /// Replay protection.
    pub nonces: NonceCache,
}

impl StsState {
    /// State with the given users and token key, no roles or OIDC providers, default bounds.
    pub fn new(keys: HashMap<String, String>, token_key: [u8; 32]) -> StsState {
        StsState {
            keys,
            roles: HashMap::new(),
            oidc_providers: Vec::new(),
            min_duration: DEFAULT_MIN_DURATION_SECS,
            token_key,
            account_id: DEFAULT_ACCOUNT_ID.to_string(),
            nonces: NonceCache::default(),
        }
    }

    /// Read `<data_dir>/.osslocal/token.key` (32 raw bytes), or create it (mode 0600) with a
    /// random key, so that tokens stay valid across server restarts on the same data dir.
    pub fn load_or_create_token_key(data_dir: &Path) -> Result<[u8; 32], StsError> {
        let path = data_dir.join(TOKEN_KEY_RELATIVE_PATH);
        let io_err = |source| StsError::TokenKey {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => return key_from_bytes(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let dir = path.parent().unwrap_or(data_dir);
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let key: [u8; 32] = rand::random();
        // Write a private temp file, then link it into place without clobbering a key that a
        // concurrent starter may have created meanwhile.
        let tmp = dir.join(format!("token.key.{}.tmp", uuid::Uuid::new_v4()));
        let written = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&key)?;
            f.sync_all()?;
            std::fs::hard_link(&tmp, &path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(&path).map_err(io_err)?;
                key_from_bytes(&path, &bytes)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    fn find_role(&self, arn: &str) -> Option<&Role> {
        self.roles
            .get(arn)
            .or_else(|| self.roles.values().find(|r| r.arn.eq_ignore_ascii_case(arn)))
    }
}

fn key_from_bytes(path: &Path, bytes: &[u8]) -> Result<[u8; 32], StsError> {
    bytes.try_into().map_err(|_| StsError::TokenKeyLength {
        path: path.to_path_buf(),
        len: bytes.len(),
    })
}

/// What a security token asserts. `Debug` hides the secret.
#[derive(Clone, PartialEq)]
pub struct SessionClaims {
    /// `STS.` + random.
    pub access_key_id: String,
    pub access_key_secret: String,
    pub role_arn: String,
    pub session_name: String,
    pub issued_at: DateTime<Utc>,
    pub expiration: DateTime<Utc>,
    /// Role policy (if any) + session policy (if any); all must allow.
    pub policies: Vec<Policy>,
    /// Who assumed the role: the caller's AccessKeyId, or the OIDC subject.
    pub source: String,
}

impl fmt::Debug for SessionClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionClaims")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"******")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("issued_at", &self.issued_at)
            .field("expiration", &self.expiration)
            .field("policies", &self.policies.len())
            .field("source", &self.source)
            .finish()
    }
}

impl SessionClaims {
    /// `acs:ram::<account>:role/<role>/<session>` (the `AssumedRoleUser.Arn` of the answer).
    pub fn assumed_role_user_arn(&self) -> String {
        format!("{}/{}", self.role_arn, self.session_name)
    }
}

/// A rendered STS answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Verify a security token issued by this STS (MAC with `state.token_key`, then expiry).
#[allow(clippy::result_large_err)] // the TokenError shape is fixed by the interface doc
pub fn verify_token(token: &str, state: &StsState, now: DateTime<Utc>) -> Result<SessionClaims, TokenError> {
    crate::token::verify(token, &state.token_key, now)
}

/// Serve one STS RPC call. `params` = decoded union of query and (POST) form parameters.
pub fn handle(method: &str, params: &[(String, String)], state: &StsState, now: DateTime<Utc>) -> StsAnswer {
    match dispatch(method, params, state, now) {
        Ok((root, mut body)) => {
            body.insert("RequestId".into(), Value::String(new_request_id()));
            render(200, root, body, wants_xml(params))
        }
        Err(StsError::Api { status, code, message }) => error_answer(params, status, code, &message),
        Err(other) => error_answer(params, 500, "InternalError", &other.to_string()),
    }
}

/// An STS error answer (§7.6 shape; XML when the request asked for `Format=XML`). For callers
/// that answer on STS's behalf, e.g. the server's `sts_outage` fault (503 `ServiceUnavailable`).
pub fn error_answer(params: &[(String, String)], status: u16, code: &str, message: &str) -> StsAnswer {
    let mut body = Map::new();
    body.insert("RequestId".into(), Value::String(new_request_id()));
    body.insert("HostId".into(), Value::String(HOST_ID.into()));
    body.insert("Code".into(), Value::String(code.into()));
    body.insert("Message".into(), Value::String(message.into()));
    body.insert(
        "Recommend".into(),
        Value::String(format!("https://api.aliyun.com/troubleshoot?q={code}&product=Sts")),
    );
    render(status, "Error", body, wants_xml(params))
}

impl StsAnswer {
    /// The `Code` of an error answer (for the server's per-code error counters); `None` on success.
    pub fn error_code(&self) -> Option<String> {
        if self.status < 400 {
            return None;
        }
        if self.content_type == CONTENT_TYPE_XML {
            let start = self.body.find("<Code>")? + "<Code>".len();
            let len = self.body[start..].find("</Code>")?;
            return quick_xml::escape::unescape(&self.body[start..start + len])
                .ok()
                .map(|c| c.into_owned());
        }
        let v: Value = serde_json::from_str(&self.body).ok()?;
        v.get("Code")?.as_str().map(str::to_string)
    }
}

fn wants_xml(params: &[(String, String)]) -> bool {
    param(params, "Format").is_some_and(|f| f.eq_ignore_ascii_case("XML"))
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

fn render(status: u16, root: &str, body: Map<String, Value>, xml: bool) -> StsAnswer {
    if xml {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        write_xml(&mut out, root, &Value::Object(body));
        StsAnswer {
            status,
            content_type: CONTENT_TYPE_XML,
            body: out,
        }
    } else {
        StsAnswer {
            status,
            content_type: CONTENT_TYPE_JSON,
            body: Value::Object(body).to_string(),
        }
    }
}

fn write_xml(out: &mut String, name: &str, value: &Value) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| write_xml(out, k, v)),
        Value::String(s) => out.push_str(&quick_xml::escape::escape(s.as_str())),
        Value::Null => {}
        other => out.push_str(&quick_xml::escape::escape(other.to_string().as_str())),
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// First value of parameter `name`.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn required<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, StsError> {
    param(params, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing(name))
}

type Answer = (&'static str, Map<String, Value>);

fn dispatch(
    method: &str,
    params: &[(String, String)],
    state: &StsState,
    now: DateTime<Utc>,
) -> Result<Answer, StsError> {
    let action = required(params, "Action")?;
    match param(params, "Version") {
        Some(API_VERSION) => {}
        Some(_) => return Err(api(400, "InvalidVersion", "Specified parameter Version is not valid.")),
        None => return Err(missing("Version")),
    }
    match action {
        "AssumeRole" => {
            let caller = authenticate_rpc(method, params, state, now)?;
            assume_role(params, state, now, &caller).map(|body| ("AssumeRoleResponse", body))
        }
        "GetCallerIdentity" => {
            let caller = authenticate_rpc(method, params, state, now)?;
            Ok(("GetCallerIdentityResponse", caller_identity(&caller, state)))
        }
        "AssumeRoleWithOIDC" => {
            if let Some(ts) = param(params, "Timestamp") {
                check_timestamp(ts, now)?;
            }
            assume_role_with_oidc(params, state, now).map(|body| ("AssumeRoleWithOIDCResponse", body))
        }
        _ => Err(api(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        )),
    }
}

/// The verified caller of a signed call.
enum Caller {
    User { access_key_id: String },
    Session(SessionClaims),
}

impl Caller {
    fn access_key_id(&self) -> &str {
        match self {
            Caller::User { access_key_id } => access_key_id,
            Caller::Session(c) => &c.access_key_id,
        }
    }
}

/// RPC v1.0 StringToSign over all parameters except `Signature` (PROTOCOL.md §7.3).
pub fn rpc_string_to_sign(method: &str, params: &[(String, String)]) -> String {
    rpc_string_to_sign_with(method, params, percent_encode_rfc3986)
}

/// The StringToSign of alibabacloud-credentials for Python (PROTOCOL.md §9.2), which encodes
/// parameters with `quote_plus`: a space becomes `+` (then `%2B`) instead of `%20` (`%2520`).
fn rpc_string_to_sign_quote_plus(method: &str, params: &[(String, String)]) -> String {
    rpc_string_to_sign_with(method, params, |s| percent_encode_rfc3986(s).replace("%20", "+"))
}

fn rpc_string_to_sign_with(method: &str, params: &[(String, String)], encode: impl Fn(&str) -> String) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    pairs.sort();
    let canonical: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}&%2F&{}",
        method.to_ascii_uppercase(),
        percent_encode_rfc3986(&canonical.join("&"))
    )
}

/// base64(HMAC-SHA1(secret + "&", string_to_sign)).
pub fn rpc_signature(secret: &str, string_to_sign: &str) -> String {
    let key = format!("{secret}&");
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(key.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn check_timestamp(ts: &str, now: DateTime<Utc>) -> Result<(), StsError> {
    let parsed = NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%SZ")
        .or_else(|_| NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.fZ"))
        .map_err(|_| {
            api(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        })?
        .and_utc();
    if (now - parsed).num_seconds().abs() > MAX_TIMESTAMP_SKEW_SECS {
        return Err(api(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

fn authenticate_rpc(
    method: &str,
    params: &[(String, String)],
    state: &StsState,
    now: DateTime<Utc>,
) -> Result<Caller, StsError> {
    let access_key_id = required(params, "AccessKeyId")?;
    // Base64 has no spaces: a space is an unencoded `+` that the query decoding turned into one.
    let provided = required(params, "Signature")?.replace(' ', "+");
    if required(params, "SignatureMethod")? != "HMAC-SHA1" {
        return Err(api(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not supported.",
        ));
    }
    if required(params, "SignatureVersion")? != "1.0" {
        return Err(api(
            400,
            "InvalidSignatureVersion",
            "Specified signature version is not supported.",
        ));
    }
    let nonce = required(params, "SignatureNonce")?;
    check_timestamp(required(params, "Timestamp")?, now)?;

    let (secret, caller, token) = if let Some(secret) = state.keys.get(access_key_id) {
        (
            secret.clone(),
            Caller::User {
                access_key_id: access_key_id.to_string(),
            },
            None,
        )
    } else if access_key_id.starts_with("STS.") {
        let token = param(params, "SecurityToken")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                api(
                    400,
                    "MissingSecurityToken",
                    "SecurityToken is mandatory for this action.",
                )
            })?;
        let claims = match verify_token(token, state, now) {
            Ok(c) => c,
            Err(TokenError::Expired(_)) => {
                return Err(api(
                    400,
                    "InvalidSecurityToken.Expired",
                    "Specified SecurityToken is expired.",
                ));
            }
            Err(TokenError::Invalid(_)) => {
                return Err(api(
                    400,
                    "InvalidSecurityToken.Malformed",
                    "Specified SecurityToken is malformed.",
                ));
            }
        };
        if claims.access_key_id != access_key_id {
            return Err(api(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey.",
            ));
        }
        (claims.access_key_secret.clone(), Caller::Session(claims), Some(token))
    } else {
        return Err(api(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    };

    let string_to_sign = rpc_string_to_sign(method, params);
    let matches = |sts: &str| constant_time_eq(rpc_signature(&secret, sts).as_bytes(), provided.as_bytes());
    // The quote_plus variant differs only when a parameter contains a space.
    let quirk = || params.iter().any(|(k, v)| k.contains(' ') || v.contains(' '));
    let verified = matches(&string_to_sign) || (quirk() && matches(&rpc_string_to_sign_quote_plus(method, params)));
    if !verified {
        // Echo what we signed, with the caller's security token redacted.
        let echoed = match token {
            None => string_to_sign,
            Some(token) => {
                let redacted: Vec<(String, String)> = params
                    .iter()
                    .map(|(k, v)| {
                        if k == "SecurityToken" {
                            (k.clone(), redact_token(token))
                        } else {
                            (k.clone(), v.clone())
                        }
                    })
                    .collect();
                rpc_string_to_sign(method, &redacted)
            }
        };
        return Err(api(
            400,
            "SignatureDoesNotMatch",
            format!("Specified signature is not matched with our calculation. server string to sign is:{echoed}"),
        ));
    }
    if !state.nonces.check_and_insert(caller.access_key_id(), nonce, now) {
        return Err(api(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    Ok(caller)
}

/// `acs:ram::<digits>:role/<name>` → Ok; the name allows letters, digits and `.@-_`.
fn check_role_arn(arn: &str) -> Result<(), StsError> {
    let bad = || {
        api(
            400,
            "InvalidParameter.RoleArn",
            "The parameter RoleArn is wrongly formed.",
        )
    };
    let rest = arn.strip_prefix("acs:ram::").ok_or_else(bad)?;
    let (account, name) = rest.split_once(":role/").ok_or_else(bad)?;
    let name_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || ".@-_".contains(c));
    if account.is_empty() || !account.chars().all(|c| c.is_ascii_digit()) || !name_ok {
        return Err(bad());
    }
    Ok(())
}

fn lookup_role<'a>(params: &[(String, String)], state: &'a StsState) -> Result<&'a Role, StsError> {
    let arn = required(params, "RoleArn")?;
    check_role_arn(arn)?;
    state
        .find_role(arn)
        .ok_or_else(|| api(404, "EntityNotExist.Role", format!("The role not exists: {arn}.")))
}

fn session_name(params: &[(String, String)]) -> Result<String, StsError> {
    let name = required(params, "RoleSessionName")?;
    let ok = SESSION_NAME_CHARS.contains(&name.chars().count())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
    if !ok {
        return Err(api(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        ));
    }
    Ok(name.to_string())
}

fn duration_secs(params: &[(String, String)], state: &StsState, role: &Role) -> Result<u64, StsError> {
    let (min, max) = (state.min_duration, role.max_session_duration);
    let bad = || {
        api(
            400,
            "InvalidParameter.DurationSeconds",
            format!("The Min/Max value of DurationSeconds is {min}s/{max}s."),
        )
    };
    let secs = match param(params, "DurationSeconds").filter(|v| !v.is_empty()) {
        None => DEFAULT_DURATION_SECS.clamp(min.min(max), max),
        Some(v) => v.parse::<u64>().map_err(|_| bad())?,
    };
    if secs < min || secs > max {
        return Err(bad());
    }
    Ok(secs)
}

fn session_policy(params: &[(String, String)]) -> Result<Option<Policy>, StsError> {
    let Some(doc) = param(params, "Policy").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let grammar = |why: String| {
        api(
            400,
            "InvalidParameter.PolicyGrammar",
            format!("The parameter Policy has not passed grammar check: {why}"),
        )
    };
    if doc.chars().count() > MAX_POLICY_CHARS {
        return Err(grammar(format!("longer than {MAX_POLICY_CHARS} characters")));
    }
    Policy::parse(doc).map(Some).map_err(grammar)
}

/// `ExternalId`: 2–1224 characters of `[\w+=,.@:/-]` (PROTOCOL.md §7.4) plus `~`, which the SDK
/// vectors use.
fn check_external_id(params: &[(String, String)]) -> Result<(), StsError> {
    let Some(id) = param(params, "ExternalId") else {
        return Ok(());
    };
    let ok = EXTERNAL_ID_CHARS.contains(&id.chars().count())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-~".contains(c));
    if !ok {
        return Err(api(
            400,
            "InvalidParameter.ExternalId",
            "The parameter ExternalId is wrongly formed.",
        ));
    }
    Ok(())
}

fn random_alnum(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A stable 18-digit numeric id for `name` (RAM ids are numeric).
fn numeric_id(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("{:018}", u64::from_be_bytes(first) % 1_000_000_000_000_000_000)
}

fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit_once(":role/").map_or(role_arn, |(_, name)| name)
}

fn format_expiration(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Create a session for `role` and the credential part of the answer.
fn issue_session(
    state: &StsState,
    role: &Role,
    session_name: String,
    duration: u64,
    session_policy: Option<Policy>,
    source: String,
    now: DateTime<Utc>,
) -> Result<Map<String, Value>, StsError> {
    // Whole seconds, so the Expiration the client parses is exactly the token's expiry.
    let expiration = i64::try_from(duration)
        .ok()
        .and_then(Duration::try_seconds)
        .and_then(|d| Utc.timestamp_opt(now.timestamp(), 0).single()?.checked_add_signed(d))
        .ok_or_else(|| {
            api(
                400,
                "InvalidParameter.DurationSeconds",
                "DurationSeconds is out of range.",
            )
        })?;
    let claims = SessionClaims {
        access_key_id: format!("STS.{}", random_alnum(STS_ACCESS_KEY_RANDOM_CHARS)),
        access_key_secret: random_alnum(STS_SECRET_CHARS),
        role_arn: role.arn.clone(),
        session_name,
        issued_at: now,
        expiration,
        policies: role.policy.iter().cloned().chain(session_policy).collect(),
        source,
    };
    let token = crate::token::issue(&claims, &state.token_key);
    let mut body = Map::new();
    body.insert(
        "AssumedRoleUser".into(),
        json!({
            "AssumedRoleId": format!("{}:{}", numeric_id(&role.arn), claims.session_name),
            "Arn": claims.assumed_role_user_arn(),
        }),
    );
    body.insert(
        "Credentials".into(),
        json!({
            "SecurityToken": token,
            "AccessKeyId": claims.access_key_id,
            "AccessKeySecret": claims.access_key_secret,
            "Expiration": format_expiration(claims.expiration),
        }),
    );
    Ok(body)
}

fn assume_role(
    params: &[(String, String)],
    state: &StsState,
    now: DateTime<Utc>,
    caller: &Caller,
) -> Result<Map<String, Value>, StsError> {
    let role = lookup_role(params, state)?;
    let name = session_name(params)?;
    let duration = duration_secs(params, state, role)?;
    let policy = session_policy(params)?;
    check_external_id(params)?;
    let mut body = issue_session(
        state,
        role,
        name,
        duration,
        policy,
        caller.access_key_id().to_string(),
        now,
    )?;
    if let Some(source_identity) = param(params, "SourceIdentity").filter(|s| !s.is_empty()) {
        body.insert("SourceIdentity".into(), Value::String(source_identity.to_string()));
    }
    Ok(body)
}

fn caller_identity(caller: &Caller, state: &StsState) -> Map<String, Value> {
    let account = &state.account_id;
    let value = match caller {
        Caller::User { access_key_id } => {
            let user_id = numeric_id(access_key_id);
            json!({
                "AccountId": account,
                "UserId": user_id,
                "PrincipalId": user_id,
                "IdentityType": "RAMUser",
                "Arn": format!("acs:ram::{account}:user/{access_key_id}"),
            })
        }
        Caller::Session(claims) => {
            let role_id = numeric_id(&claims.role_arn);
            let principal = format!("{role_id}:{}", claims.session_name);
            json!({
                "AccountId": account,
                "UserId": principal,
                "PrincipalId": principal,
                "RoleId": role_id,
                "IdentityType": "AssumedRoleUser",
                "Arn": format!("acs:ram::{account}:assumed-role/{}/{}", role_name(&claims.role_arn), claims.session_name),
            })
        }
    };
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Claims of an accepted OIDC token.
struct OidcClaims {
    subject: String,
    issuer: String,
    audiences: Vec<String>,
    expires: DateTime<Utc>,
    issued: Option<DateTime<Utc>>,
}

/// Check an OIDC token **without verifying its signature** (osslocal has no JWKS): it must be a
/// JWT (three base64url parts, JSON header and payload) whose payload has `exp` in the future,
/// no `nbf` in the future, a non-empty `sub`, and `iss` equal to the provider's issuer when one is
/// configured. Anyone can mint such a token; the check exists to exercise client-side token-file
/// handling (rotation, expiry), not to secure anything.
fn verify_oidc_token(token: &str, provider: &OidcProvider, now: DateTime<Utc>) -> Result<OidcClaims, StsError> {
    let invalid = |why: &str| {
        api(
            401,
            "AuthenticationFail.OIDCToken.Invalid",
            format!("The OIDC token is invalid: {why}."),
        )
    };
    if !OIDC_TOKEN_CHARS.contains(&token.chars().count()) {
        return Err(invalid("bad length"));
    }
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(invalid("not a JWT"));
    }
    let decode = |part: &str| -> Result<Value, StsError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| invalid("part is not base64url"))?;
        serde_json::from_slice::<Value>(&bytes).map_err(|_| invalid("part is not JSON"))
    };
    if !decode(parts[0])?.is_object() {
        return Err(invalid("header is not a JSON object"));
    }
    let payload = decode(parts[1])?;
    let instant = |name: &str| -> Result<Option<DateTime<Utc>>, StsError> {
        match payload.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
                .map(Some)
                .ok_or_else(|| invalid(&format!("{name} is not a number"))),
        }
    };
    let expires = instant("exp")?.ok_or_else(|| invalid("no exp"))?;
    if expires <= now {
        return Err(api(
            401,
            "AuthenticationFail.OIDCToken.Expired",
            "The OIDC token has expired.",
        ));
    }
    if instant("nbf")?.is_some_and(|nbf| nbf > now + Duration::seconds(MAX_TIMESTAMP_SKEW_SECS)) {
        return Err(invalid("not valid yet"));
    }
    let issued = instant("iat")?;
    let issuer = payload.get("iss").and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(expected) = &provider.issuer {
        if &issuer != expected {
            return Err(invalid("issuer does not match the OIDC provider"));
        }
    }
    let subject = payload
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("no sub"))?;
    let audiences = match payload.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    Ok(OidcClaims {
        subject: subject.to_string(),
        issuer,
        audiences,
        expires,
        issued,
    })
}

fn assume_role_with_oidc(
    params: &[(String, String)],
    state: &StsState,
    now: DateTime<Utc>,
) -> Result<Map<String, Value>, StsError> {
    let provider_arn = required(params, "OIDCProviderArn")?;
    let provider = state
        .oidc_providers
        .iter()
        .find(|p| p.arn == provider_arn)
        .ok_or_else(|| {
            api(
                404,
                "EntityNotExist.OIDCProvider",
                format!("The OIDC provider not exists: {provider_arn}."),
            )
        })?;
    let role = lookup_role(params, state)?;
    let token = required(params, "OIDCToken")?;
    let oidc = verify_oidc_token(token, provider, now)?;
    let name = session_name(params)?;
    let duration = duration_secs(params, state, role)?;
    let policy = session_policy(params)?;
    let mut body = issue_session(state, role, name, duration, policy, oidc.subject.clone(), now)?;
    body.insert(
        "OIDCTokenInfo".into(),
        json!({
            "Subject": oidc.subject,
            "Issuer": oidc.issuer,
            "ClientIds": oidc.audiences.join(","),
            "ExpirationTime": format_expiration(oidc.expires),
            "IssuanceTime": oidc.issued.map(format_expiration).unwrap_or_default(),
        }),
    );
    Ok(body)
}

#[cfg(test)]
mod tests;
