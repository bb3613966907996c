//! OSS request authentication: signature V1 and V4, each in header and presigned-query form,
//! exactly as PROTOCOL.md §2–§3, plus the SDK quirks of §4.13 and §9.
//!
//! [`authenticate`] recognises the scheme (Authorization header first, then presign query
//! parameters, else anonymous), rebuilds the canonical string from the request as received
//! (the query is decoded here from `raw_query` because canonicalisation needs every parameter,
//! `+` decoded as space), resolves the secret (RAM user from [`AuthConfig::keys`], or the secret
//! inside a verified STS security token for `STS.` AccessKeyIds), compares signatures in constant
//! time, and finally checks time: request skew > 15 min → `RequestTimeTooSkewed`, presigned URL
//! past its expiry → `AccessDenied` "Request has expired.".
//!
//! Choices where OSS behaviour is not pinned down: the V4 scope region is not trusted from the
//! client — the server signs with its own region (`AuthConfig::region`), so a request scoped to
//! another region fails with `SignatureDoesNotMatch` whose echoed `StringToSign` shows the
//! expected scope. Security tokens are never echoed in full in error answers (the
//! `SecurityToken` element and echoed strings to sign carry a redacted prefix); this departs from
//! real OSS on purpose, so test logs never hold a usable token.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::OssError;
use crate::sts::{self, SessionClaims, StsState, TokenError};

/// Accepted distance between the request time and the server clock.
pub const MAX_REQUEST_SKEW_SECS: i64 = 15 * 60;
/// Longest V4 presigned URL lifetime (`x-oss-expires`).
pub const MAX_V4_PRESIGN_EXPIRES_SECS: i64 = 7 * 24 * 3600;
/// Characters of a security token kept when it is echoed in an error answer.
const REDACTED_TOKEN_PREFIX_CHARS: usize = 8;

const V4_ALGORITHM: &str = "OSS4-HMAC-SHA256";
const V4_TERMINATOR: &str = "aliyun_v4_request";
const V4_PRODUCT: &str = "oss";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const SIGNATURE_MISMATCH_MESSAGE: &str =
    "The request signature we calculated does not match the signature you provided. Check your key and signing method.";
const SIGNATURE_MISMATCH_EC: &str = "0002-00000040";

/// V1 sub-resources (query parameters that enter the CanonicalizedResource): the union of the
/// oss2, alibabacloud-oss-v2 and Go v2 SDK lists (PROTOCOL.md §2.3).
const V1_SUBRESOURCES: &[&str] = &[
    "acl",
    "append",
    "asyncFetch",
    "bucketInfo",
    "callback",
    "callback-var",
    "cloudboxes",
    "cname",
    "comp",
    "continuation-token",
    "cors",
    "delete",
    "encryption",
    "endTime",
    "group",
    "inventory",
    "inventoryId",
    "lifecycle",
    "link",
    "live",
    "location",
    "logging",
    "metaQuery",
    "objectInfo",
    "objectMeta",
    "partNumber",
    "policy",
    "position",
    "qos",
    "qosInfo",
    "referer",
    "regionList",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "requestPayment",
    "resourceGroup",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "sequential",
    "startTime",
    "stat",
    "status",
    "style",
    "styleName",
    "symlink",
    "tagging",
    "transferAcceleration",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "vod",
    "website",
    "worm",
    "wormExtend",
    "wormId",
    "x-oss-ac-forward-allow",
    "x-oss-ac-source-ip",
    "x-oss-ac-subnet-mask",
    "x-oss-ac-vpc-id",
    "x-oss-async-process",
    "x-oss-process",
    "x-oss-request-payer",
    "x-oss-traffic-limit",
];

/// What the server knows about credentials.
pub struct AuthConfig {
    /// AccessKeyId -> AccessKeySecret of RAM users.
    pub keys: HashMap<String, String>,
    /// Allow unsigned requests (as [`Principal::Anonymous`]).
    pub anonymous: bool,
    /// Region of V4 scopes (the server signs with it; a client scoped elsewhere fails).
    pub region: String,
    /// Verifies security tokens.
    pub sts: Arc<StsState>,
}

/// The parts of an HTTP request that authentication looks at.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// Decoded bucket name (path-style first segment or virtual host).
    pub bucket: Option<&'a str>,
    /// Decoded object key; `None` for bucket- and service-level requests.
    pub key: Option<&'a str>,
    /// Query string as received, undecoded, without `?`.
    pub raw_query: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// Who made an authenticated request.
#[derive(Clone, Debug)]
pub enum Principal {
    Anonymous,
    User { access_key_id: String },
    Session(Arc<SessionClaims>),
}

/// Authenticate `req` (V1/V4, header/presigned; see the module doc). `now` includes any injected
/// clock offset. Tokens issued before `tokens_expired_before` answer `SecurityTokenExpired`.
pub fn authenticate(
    req: &RequestParts<'_>,
    cfg: &AuthConfig,
    now: DateTime<Utc>,
    tokens_expired_before: Option<DateTime<Utc>>,
) -> Result<Principal, OssError> {
    let query = parse_query(req.raw_query)?;
    let ctx = Ctx {
        req,
        query: &query,
        cfg,
        now,
        tokens_expired_before,
    };
    if let Some(authz) = header_str(req.headers, "authorization") {
        let authz = authz.trim();
        if let Some(rest) = authz.strip_prefix(V4_ALGORITHM).filter(|r| r.starts_with(' ')) {
            return ctx.v4_header(rest);
        }
        if let Some(rest) = authz.strip_prefix("OSS ") {
            return ctx.v1_header(rest);
        }
        return Err(
            OssError::invalid_argument("Authorization header is invalid.").with("ArgumentName", "Authorization")
        );
    }
    if has_param(&query, "x-oss-signature") || has_param(&query, "x-oss-signature-version") {
        return ctx.v4_presigned();
    }
    if has_param(&query, "OSSAccessKeyId") || has_param(&query, "Signature") {
        return ctx.v1_presigned();
    }
    if cfg.anonymous {
        Ok(Principal::Anonymous)
    } else {
        Err(OssError::access_denied(
            "You have no right to access this object because of bucket acl.",
        ))
    }
}

/// One request being authenticated.
struct Ctx<'a> {
    req: &'a RequestParts<'a>,
    query: &'a [(String, String)],
    cfg: &'a AuthConfig,
    now: DateTime<Utc>,
    tokens_expired_before: Option<DateTime<Utc>>,
}

/// The verified key behind a request.
struct Resolved {
    secret: String,
    principal: Principal,
    /// The security token presented (for redaction in echoed strings).
    token: Option<String>,
}

impl Ctx<'_> {
    /// V1 `Authorization: OSS <AccessKeyId>:<Signature>`.
    fn v1_header(&self, rest: &str) -> Result<Principal, OssError> {
        let (ak, provided) = rest
            .trim()
            .split_once(':')
            .filter(|(ak, sig)| !ak.is_empty() && !sig.is_empty())
            .ok_or_else(|| {
                OssError::invalid_argument("Authorization header is invalid.").with("ArgumentName", "Authorization")
            })?;
        let date = header_str(self.req.headers, "x-oss-date")
            .or_else(|| header_str(self.req.headers, "date"))
            .map(str::to_string)
            .unwrap_or_default();
        let resolved = self.resolve(ak, self.token())?;
        let candidates = self.v1_strings_to_sign(&date);
        if !candidates
            .iter()
            .any(|s| constant_time_eq(v1_signature(&resolved.secret, s).as_bytes(), provided.as_bytes()))
        {
            return Err(signature_mismatch(
                ak,
                provided,
                &candidates[0],
                None,
                resolved.token.as_deref(),
            ));
        }
        let request_time = parse_http_date(&date)
            .ok_or_else(|| OssError::access_denied("OSS authentication requires a valid Date."))?;
        self.check_skew(&date, request_time)?;
        Ok(resolved.principal)
    }

    /// V1 presigned URL: `OSSAccessKeyId`, `Expires`, `Signature` (+ `security-token`).
    fn v1_presigned(&self) -> Result<Principal, OssError> {
        let ak = required_param(self.query, "OSSAccessKeyId")?;
        let expires = required_param(self.query, "Expires")?;
        // A literal `+` in an unencoded signature was decoded as a space.
        let provided = required_param(self.query, "Signature")?.replace(' ', "+");
        let expires_at = expires
            .parse::<i64>()
            .ok()
            .and_then(|e| Utc.timestamp_opt(e, 0).single())
            .ok_or_else(|| OssError::invalid_argument("Expires is invalid.").with("ArgumentName", "Expires"))?;
        let resolved = self.resolve(ak, self.token())?;
        let candidates = self.v1_strings_to_sign(expires);
        if !candidates
            .iter()
            .any(|s| constant_time_eq(v1_signature(&resolved.secret, s).as_bytes(), provided.as_bytes()))
        {
            return Err(signature_mismatch(
                ak,
                &provided,
                &candidates[0],
                None,
                resolved.token.as_deref(),
            ));
        }
        if self.now > expires_at {
            return Err(request_expired(expires_at, self.now));
        }
        Ok(resolved.principal)
    }

    /// V1 StringToSign candidates: the canonical one first; then, if the query carries `x-oss-*`
    /// parameters outside the sub-resource list, the Go v2 SDK variant that signs them too.
    fn v1_strings_to_sign(&self, date_line: &str) -> Vec<String> {
        let mut out = vec![v1_string_to_sign(self.req, self.query, date_line, false)];
        if self
            .query
            .iter()
            .any(|(k, _)| k.starts_with("x-oss-") && !V1_SUBRESOURCES.contains(&k.as_str()))
        {
            out.push(v1_string_to_sign(self.req, self.query, date_line, true));
        }
        out
    }

    /// V4 `Authorization: OSS4-HMAC-SHA256 Credential=…,AdditionalHeaders=…,Signature=…`.
    fn v4_header(&self, rest: &str) -> Result<Principal, OssError> {
        let malformed = |why: &str| {
            OssError::invalid_argument(format!("Authorization header is invalid: {why}."))
                .with("ArgumentName", "Authorization")
        };
        let mut credential = None;
        let mut additional = None;
        let mut provided = None;
        for field in rest.split(',') {
            let field = field.trim();
            if field.is_empty() {
                continue;
            }
            let (name, value) = field.split_once('=').ok_or_else(|| malformed("field without '='"))?;
            match name.trim() {
                "Credential" => credential = Some(value.trim()),
                "AdditionalHeaders" => additional = Some(value.trim()),
                "Signature" => provided = Some(value.trim()),
                _ => {}
            }
        }
        let credential = credential.ok_or_else(|| malformed("no Credential"))?;
        let provided = provided
            .filter(|s| !s.is_empty())
            .ok_or_else(|| malformed("no Signature"))?;
        let scope = V4Credential::parse(credential).ok_or_else(|| malformed("bad Credential"))?;
        let date = header_str(self.req.headers, "x-oss-date")
            .ok_or_else(|| OssError::access_denied("OSS V4 authentication requires the x-oss-date header."))?;
        let request_time = parse_v4_date(date)
            .ok_or_else(|| OssError::invalid_argument("x-oss-date is invalid.").with("ArgumentName", "x-oss-date"))?;
        let payload_hash = match header_str(self.req.headers, "x-oss-content-sha256") {
            Some(UNSIGNED_PAYLOAD) => UNSIGNED_PAYLOAD,
            Some(_) => {
                return Err(OssError::new(
                    400,
                    "InvalidArgument",
                    "x-oss-content-sha256 must be UNSIGNED-PAYLOAD.",
                    "0002-00000214",
                ));
            }
            None => {
                return Err(OssError::invalid_argument("x-oss-content-sha256 header is required.")
                    .with("ArgumentName", "x-oss-content-sha256"));
            }
        };
        let resolved = self.resolve(scope.access_key_id, self.token())?;
        let signed = self.v4_sign(
            &resolved.secret,
            date,
            scope.date,
            additional.unwrap_or(""),
            payload_hash,
            false,
        );
        if !constant_time_eq(signed.signature.as_bytes(), provided.to_ascii_lowercase().as_bytes()) {
            return Err(signature_mismatch(
                scope.access_key_id,
                provided,
                &signed.string_to_sign,
                Some(&signed.canonical_request),
                resolved.token.as_deref(),
            ));
        }
        self.check_skew(date, request_time)?;
        Ok(resolved.principal)
    }

    /// V4 presigned URL (`x-oss-signature-version`, `x-oss-date`, `x-oss-expires`, …).
    fn v4_presigned(&self) -> Result<Principal, OssError> {
        let version = required_param(self.query, "x-oss-signature-version")?;
        if version != V4_ALGORITHM {
            return Err(OssError::invalid_argument("x-oss-signature-version is invalid.")
                .with("ArgumentName", "x-oss-signature-version"));
        }
        let credential = required_param(self.query, "x-oss-credential")?;
        let date = required_param(self.query, "x-oss-date")?;
        let expires = required_param(self.query, "x-oss-expires")?;
        let provided = required_param(self.query, "x-oss-signature")?;
        let scope = V4Credential::parse(credential).ok_or_else(|| {
            OssError::invalid_argument("x-oss-credential is invalid.").with("ArgumentName", "x-oss-credential")
        })?;
        let request_time = parse_v4_date(date)
            .ok_or_else(|| OssError::invalid_argument("x-oss-date is invalid.").with("ArgumentName", "x-oss-date"))?;
        let expires_secs = expires
            .parse::<i64>()
            .ok()
            .filter(|e| (1..=MAX_V4_PRESIGN_EXPIRES_SECS).contains(e))
            .ok_or_else(|| {
                OssError::invalid_argument("x-oss-expires is invalid.").with("ArgumentName", "x-oss-expires")
            })?;
        let additional = param(self.query, "x-oss-additional-headers").unwrap_or("");
        let resolved = self.resolve(scope.access_key_id, self.token())?;
        let signed = self.v4_sign(&resolved.secret, date, scope.date, additional, UNSIGNED_PAYLOAD, true);
        if !constant_time_eq(signed.signature.as_bytes(), provided.to_ascii_lowercase().as_bytes()) {
            return Err(signature_mismatch(
                scope.access_key_id,
                provided,
                &signed.string_to_sign,
                Some(&signed.canonical_request),
                resolved.token.as_deref(),
            ));
        }
        if request_time - self.now > Duration::seconds(MAX_REQUEST_SKEW_SECS) {
            return Err(skewed(date, self.now));
        }
        let expires_at = request_time + Duration::seconds(expires_secs);
        if self.now > expires_at {
            return Err(request_expired(expires_at, self.now));
        }
        Ok(resolved.principal)
    }

    /// Canonical request, string to sign and signature for V4, scoped to the server's region.
    fn v4_sign(
        &self,
        secret: &str,
        date: &str,
        scope_date: &str,
        additional_headers: &str,
        payload_hash: &str,
        presigned: bool,
    ) -> V4Signed {
        let additional = v4_additional_headers(self.req.headers, additional_headers);
        let canonical_request = [
            self.req.method.to_string(),
            v4_canonical_uri(self.req.bucket, self.req.key),
            v4_canonical_query(self.query, presigned),
            v4_canonical_headers(self.req.headers, &additional),
            additional.join(";"),
            payload_hash.to_string(),
        ]
        .join("\n");
        let scope = format!("{scope_date}/{}/{V4_PRODUCT}/{V4_TERMINATOR}", self.cfg.region);
        let string_to_sign = format!(
            "{V4_ALGORITHM}\n{date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let key = v4_signing_key(secret, scope_date, &self.cfg.region);
        let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
        V4Signed {
            canonical_request,
            string_to_sign,
            signature,
        }
    }

    /// The security token presented with the request, from (in order) the `x-oss-security-token`
    /// header, the unsigned `security-token` header (alibabacloud-oss-v2 V1 quirk, PROTOCOL.md §9.1),
    /// or the presign query (`security-token` V1, `x-oss-security-token` V4).
    fn token(&self) -> Option<&str> {
        header_str(self.req.headers, "x-oss-security-token")
            .or_else(|| header_str(self.req.headers, "security-token"))
            .or_else(|| param(self.query, "security-token"))
            .or_else(|| param(self.query, "x-oss-security-token"))
            .filter(|t| !t.is_empty())
    }

    /// Find the secret for `ak`: a RAM user, or an `STS.` key with a valid token carrying that key.
    fn resolve(&self, ak: &str, token: Option<&str>) -> Result<Resolved, OssError> {
        if !ak.starts_with("STS.") {
            let secret = self
                .cfg
                .keys
                .get(ak)
                .ok_or_else(|| OssError::invalid_access_key_id(ak))?;
            return Ok(Resolved {
                secret: secret.clone(),
                principal: Principal::User {
                    access_key_id: ak.to_string(),
                },
                token: token.map(str::to_string),
            });
        }
        let token = token.ok_or_else(|| {
            OssError::invalid_security_token("The security token you provided is invalid.").with("OSSAccessKeyId", ak)
        })?;
        let claims = match sts::verify_token(token, &self.cfg.sts, self.now) {
            Ok(claims) => claims,
            Err(TokenError::Expired(claims)) if claims.access_key_id == ak => {
                return Err(OssError::security_token_expired(&redact_token(token)));
            }
            Err(TokenError::Expired(_)) | Err(TokenError::Invalid(_)) => {
                return Err(OssError::invalid_security_token(
                    "The security token you provided is invalid.",
                ));
            }
        };
        if claims.access_key_id != ak {
            return Err(OssError::invalid_security_token(
                "The security token you provided is invalid.",
            ));
        }
        if self
            .tokens_expired_before
            .is_some_and(|cutoff| claims.issued_at < cutoff)
        {
            return Err(OssError::security_token_expired(&redact_token(token)));
        }
        Ok(Resolved {
            secret: claims.access_key_secret.clone(),
            principal: Principal::Session(Arc::new(claims)),
            token: Some(token.to_string()),
        })
    }

    fn check_skew(&self, request_time_text: &str, request_time: DateTime<Utc>) -> Result<(), OssError> {
        if (self.now - request_time).num_seconds().abs() > MAX_REQUEST_SKEW_SECS {
            return Err(skewed(request_time_text, self.now));
        }
        Ok(())
    }
}

struct V4Signed {
    canonical_request: String,
    string_to_sign: String,
    signature: String,
}

/// `<AccessKeyId>/<YYYYMMDD>/<region>/oss/aliyun_v4_request`.
struct V4Credential<'a> {
    access_key_id: &'a str,
    date: &'a str,
}

impl<'a> V4Credential<'a> {
    fn parse(text: &'a str) -> Option<V4Credential<'a>> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [ak, date, region, product, terminator]
                if !ak.is_empty()
                    && date.len() == 8
                    && date.bytes().all(|b| b.is_ascii_digit())
                    && !region.is_empty()
                    && *product == V4_PRODUCT
                    && *terminator == V4_TERMINATOR =>
            {
                Some(V4Credential {
                    access_key_id: ak,
                    date,
                })
            }
            _ => None,
        }
    }
}

fn skewed(request_time: &str, now: DateTime<Utc>) -> OssError {
    OssError::request_time_too_skewed(request_time, &now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn request_expired(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> OssError {
    OssError::access_denied("Request has expired.")
        .with("Expires", expires_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .with("ServerTime", now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// `SignatureDoesNotMatch` with what the server signed (security token redacted).
fn signature_mismatch(
    ak: &str,
    provided: &str,
    string_to_sign: &str,
    canonical_request: Option<&str>,
    token: Option<&str>,
) -> OssError {
    let redact = |s: &str| match token {
        Some(t) if !t.is_empty() => s.replace(t, &redact_token(t)),
        _ => s.to_string(),
    };
    let echoed = redact(string_to_sign);
    let bytes: String = echoed.bytes().map(|b| format!("{b:02X} ")).collect();
    let mut err = OssError::new(
        403,
        "SignatureDoesNotMatch",
        SIGNATURE_MISMATCH_MESSAGE,
        SIGNATURE_MISMATCH_EC,
    )
    .with("OSSAccessKeyId", ak)
    .with("SignatureProvided", provided)
    .with("StringToSign", echoed)
    .with("StringToSignBytes", bytes);
    if let Some(cr) = canonical_request {
        err = err.with("CanonicalRequest", redact(cr));
    }
    err
}

/// A security token shortened for error answers: its first characters and `****`.
pub(crate) fn redact_token(token: &str) -> String {
    let prefix: String = token.chars().take(REDACTED_TOKEN_PREFIX_CHARS).collect();
    format!("{prefix}****")
}

/// Constant-time byte comparison (length is not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 3986 percent-encoding of UTF-8: only `A-Z a-z 0-9 - _ . ~` stay, upper-case hex.
pub(crate) fn percent_encode_rfc3986(s: &str) -> String {
    encode_keeping(s, b"")
}

fn encode_keeping(s: &str, extra_safe: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || extra_safe.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode a query string: `&`-separated `name[=value]`, `+` = space, `%XX` escapes, UTF-8.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, OssError> {
    let decode = |s: &str| -> Result<String, OssError> {
        let plus_decoded = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus_decoded)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| OssError::invalid_argument("The query string is not valid UTF-8."))
    };
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn has_param(query: &[(String, String)], name: &str) -> bool {
    query.iter().any(|(k, _)| k == name)
}

fn required_param<'a>(query: &'a [(String, String)], name: &'static str) -> Result<&'a str, OssError> {
    param(query, name).filter(|v| !v.is_empty()).ok_or_else(|| {
        OssError::invalid_argument(format!("The query parameter {name} is missing or empty."))
            .with("ArgumentName", name)
    })
}

/// First value of a header as text (`None` if absent or not visible ASCII/UTF-8).
fn header_str<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
}

/// All values of a header, trimmed and joined with `,` (Go SDK rule for repeated headers).
fn header_joined(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `Date`/`x-oss-date` of a V1 request: RFC 1123 (GMT), or the V4 basic ISO form.
fn parse_http_date(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(text.trim())
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| parse_v4_date(text))
}

/// `YYYYMMDDTHHMMSSZ`.
fn parse_v4_date(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|d| d.and_utc())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// base64(HMAC-SHA1(secret, string_to_sign)).
pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// V1 StringToSign (PROTOCOL.md §2.1). `date_line` is the Date/x-oss-date value or the presign
/// `Expires`. With `all_x_oss_params`, every `x-oss-*` query parameter counts as a sub-resource
/// (Go v2 SDK behaviour).
pub fn v1_string_to_sign(
    req: &RequestParts<'_>,
    query: &[(String, String)],
    date_line: &str,
    all_x_oss_params: bool,
) -> String {
    let headers = req.headers;
    let content_md5 = header_str(headers, "content-md5").unwrap_or("");
    let content_type = header_str(headers, "content-type").unwrap_or("");
    let mut oss_headers = BTreeMap::new();
    for name in headers.keys() {
        if name.as_str().starts_with("x-oss-") {
            oss_headers.insert(name.as_str(), header_joined(headers, name.as_str()));
        }
    }
    let canonical_headers: String = oss_headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let mut resource = match (req.bucket, req.key) {
        (None, _) => "/".to_string(),
        (Some(b), None) => format!("/{b}/"),
        (Some(b), Some(k)) => format!("/{b}/{k}"),
    };
    let mut subresources: Vec<&(String, String)> = query
        .iter()
        .filter(|(k, _)| V1_SUBRESOURCES.contains(&k.as_str()) || (all_x_oss_params && k.starts_with("x-oss-")))
        .collect();
    subresources.sort_by(|a, b| a.0.cmp(&b.0));
    if !subresources.is_empty() {
        resource.push('?');
        let joined: Vec<String> = subresources
            .iter()
            .map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") })
            .collect();
        resource.push_str(&joined.join("&"));
    }
    format!(
        "{}\n{content_md5}\n{content_type}\n{date_line}\n{canonical_headers}{resource}",
        req.method
    )
}

/// `pe("/" + bucket + "/" + key)` keeping `/`.
fn v4_canonical_uri(bucket: Option<&str>, key: Option<&str>) -> String {
    match (bucket, key) {
        (None, _) => "/".to_string(),
        (Some(b), None) => format!("/{}/", encode_keeping(b, b"/")),
        (Some(b), Some(k)) => encode_keeping(&format!("/{b}/{k}"), b"/"),
    }
}

/// All query parameters but `x-oss-signature`, encoded, sorted; empty value = bare name.
fn v4_canonical_query(query: &[(String, String)], presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !(presigned && k == "x-oss-signature"))
        .map(|(k, v)| (percent_encode_rfc3986(k), percent_encode_rfc3986(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") })
        .collect::<Vec<_>>()
        .join("&")
}

/// Signed-by-default headers are dropped, as are names absent from the request; sorted, unique.
fn v4_additional_headers(headers: &http::HeaderMap, list: &str) -> Vec<String> {
    let mut names: Vec<String> = list
        .split(';')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && !is_v4_default_signed(n) && headers.contains_key(n.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn is_v4_default_signed(name: &str) -> bool {
    name.starts_with("x-oss-") || name == "content-type" || name == "content-md5"
}

/// `name:value\n` for every default-signed or additional header, sorted by name.
fn v4_canonical_headers(headers: &http::HeaderMap, additional: &[String]) -> String {
    let mut lines = BTreeMap::new();
    for name in headers.keys() {
        let n = name.as_str();
        if is_v4_default_signed(n) || additional.iter().any(|a| a == n) {
            lines.insert(n, header_joined(headers, n));
        }
    }
    lines.iter().map(|(k, v)| format!("{k}:{v}\n")).collect()
}

/// kSigning = HMAC chain over "aliyun_v4" + secret, date, region, "oss", "aliyun_v4_request".
pub fn v4_signing_key(secret: &str, date: &str, region: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("aliyun_v4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_product = hmac_sha256(&k_region, V4_PRODUCT.as_bytes());
    hmac_sha256(&k_product, V4_TERMINATOR.as_bytes())
}

#[cfg(test)]
mod tests;
