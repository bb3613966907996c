//! S3 dialect on the same port and store: recognition of S3-signed requests, AWS Signature V4
//! (header and presigned) and V2 (header and presigned) verification against the same key
//! store, decoding of `aws-chunked` streaming bodies, mapping of `x-amz-*` request headers onto
//! their OSS equivalents, and the S3 shape of answers (`x-amz-meta-*`, lower-case ETags, the S3
//! XML namespace, `<Error>` without the OSS `EC` fields, `x-amz-request-id`). The operations
//! themselves are the OSS handlers in `ops.rs`.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::auth::{self, AuthConfig, MAX_REQUEST_SKEW_SECS, Principal};
use crate::error::OssError;
use crate::server::{ReqBody, RespBody, empty, full};

/// The S3 XML namespace of result documents.
pub const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
const V4_ALGORITHM: &str = "AWS4-HMAC-SHA256";
const V4_TERMINATOR: &str = "aws4_request";
const V4_SERVICE: &str = "s3";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Longest presigned V4 validity (`X-Amz-Expires`), as on AWS: 7 days.
const MAX_V4_PRESIGN_EXPIRES_SECS: i64 = 7 * 24 * 3600;
/// Longest `aws-chunked` chunk header line accepted (size + chunk signature).
const MAX_CHUNK_HEADER_BYTES: usize = 4096;
/// Largest trailer section after the last chunk that is skipped.
const MAX_CHUNK_TRAILER_BYTES: usize = 64 * 1024;

/// Sub-resources that take part in the V2 canonical resource (AWS list).
const V2_SUBRESOURCES: &[&str] = &[
    "acl",
    "cors",
    "delete",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "partNumber",
    "policy",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// Bucket and object sub-resources of S3 that osslocal does not implement: answered with 501
/// `NotImplemented` rather than served as a listing or an object read.
const UNSUPPORTED_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "versioning",
    "versions",
    "website",
];

/// 501 `NotImplemented` when the query names an unsupported S3 sub-resource.
pub fn check_supported(query: &[(String, String)]) -> Result<(), OssError> {
    match query
        .iter()
        .find(|(k, _)| UNSUPPORTED_SUBRESOURCES.contains(&k.as_str()))
    {
        Some((k, _)) => Err(OssError::new(
            501,
            "NotImplemented",
            format!("osslocal does not implement the S3 '{k}' sub-resource."),
            "0000-00000000",
        )),
        None => Ok(()),
    }
}

/// Request header renames applied to S3 requests (S3 name → OSS name).
const HEADER_MAP: &[(&str, &str)] = &[
    ("x-amz-copy-source", "x-oss-copy-source"),
    ("x-amz-copy-source-range", "x-oss-copy-source-range"),
    ("x-amz-metadata-directive", "x-oss-metadata-directive"),
    ("x-amz-copy-source-if-match", "x-oss-copy-source-if-match"),
    ("x-amz-copy-source-if-none-match", "x-oss-copy-source-if-none-match"),
    (
        "x-amz-copy-source-if-modified-since",
        "x-oss-copy-source-if-modified-since",
    ),
    (
        "x-amz-copy-source-if-unmodified-since",
        "x-oss-copy-source-if-unmodified-since",
    ),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("aws-chunked body: malformed chunk header")]
    BadHeader,
    #[error("aws-chunked body: chunk data not followed by CRLF")]
    BadTerminator,
    #[error("aws-chunked body: ended inside a chunk")]
    Truncated,
    #[error("aws-chunked body: trailer section too long")]
    TrailerTooLong,
    #[error("aws-chunked body: {0}")]
    Transport(String),
}

/// Does this request speak S3 (AWS signature or `x-amz-*` signing headers)?
pub fn is_s3_request(headers: &HeaderMap, raw_query: &str) -> bool {
    if let Some(a) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let a = a.trim_start();
        return a.starts_with("AWS4-HMAC-SHA256 ") || a.starts_with("AWS ");
    }
    if headers.contains_key("x-amz-date") || headers.contains_key("x-amz-content-sha256") {
        return true;
    }
    raw_query
        .split('&')
        .map(|p| p.split_once('=').map(|(k, _)| k).unwrap_or(p))
        .any(|k| k == "X-Amz-Algorithm" || k == "X-Amz-Signature" || k == "AWSAccessKeyId")
}

/// The parts of an S3 request that its signature covers.
pub struct S3Parts<'a> {
    pub method: &'a str,
    /// Path as received (percent-encoded), e.g. `/bucket/key`.
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    /// Bucket named by a virtual host (`Host: bucket.…`), which V2 puts in front of the path.
    pub virtual_bucket: Option<&'a str>,
}

/// Authenticate an S3 request: V4 or V2, header or presigned query, keys from `cfg` (STS keys
/// with `x-amz-security-token`). Unsigned requests pass only with `--anonymous`.
pub fn authenticate(
    req: &S3Parts<'_>,
    cfg: &AuthConfig,
    now: DateTime<Utc>,
    tokens_expired_before: Option<DateTime<Utc>>,
) -> Result<Principal, OssError> {
    let query = decode_query(req.raw_query);
    let v = Verifier {
        req,
        query: &query,
        cfg,
        now,
        tokens_expired_before,
    };
    let (scheme, result) = if let Some(a) = req.headers.get(header::AUTHORIZATION) {
        let a = std::str::from_utf8(a.as_bytes())
            .map_err(|_| malformed_authorization())?
            .trim();
        if let Some(rest) = a.strip_prefix(V4_ALGORITHM).filter(|r| r.starts_with(' ')) {
            ("v4", v.v4_header(rest))
        } else if let Some(rest) = a.strip_prefix("AWS ") {
            ("v2", v.v2_header(rest))
        } else {
            return Err(malformed_authorization());
        }
    } else if param(&query, "X-Amz-Algorithm").is_some() {
        ("v4-presigned", v.v4_presigned())
    } else if param(&query, "AWSAccessKeyId").is_some() {
        ("v2-presigned", v.v2_presigned())
    } else if cfg.anonymous {
        ("anonymous", Ok(Principal::Anonymous))
    } else {
        return Err(OssError::access_denied(
            "Anonymous access is forbidden for this operation",
        ));
    };
    tracing::debug!(scheme, ok = result.is_ok(), method = req.method, "S3 request");
    result
}

fn malformed_authorization() -> OssError {
    OssError::new(
        400,
        "AuthorizationHeaderMalformed",
        "The authorization header is malformed.",
        "0002-00000001",
    )
}

/// `SignatureDoesNotMatch` echoing what the server signed; a security token inside it (raw or
/// percent-encoded) is shortened to its first characters.
fn signature_mismatch(
    ak: &str,
    provided: &str,
    string_to_sign: &str,
    canonical: Option<&str>,
    token: Option<&str>,
) -> OssError {
    let redact = |text: &str| match token {
        Some(t) if !t.is_empty() => text
            .replace(t, &auth::redact_token(t))
            .replace(&auth::percent_encode_rfc3986(t), &auth::redact_token(t)),
        _ => text.to_string(),
    };
    let string_to_sign = &redact(string_to_sign);
    let canonical = canonical.map(redact);
    let canonical = canonical.as_deref();
    let bytes: String = string_to_sign.bytes().map(|b| format!("{b:02x} ")).collect();
    let mut e = OssError::new(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        "0002-00000040",
    )
    .with("AWSAccessKeyId", ak)
    .with("StringToSign", string_to_sign)
    .with("SignatureProvided", provided)
    .with("StringToSignBytes", bytes.trim_end());
    if let Some(c) = canonical {
        e = e.with("CanonicalRequest", c);
    }
    e
}

/// Query pairs percent-decoded (`+` kept literally: S3 clients encode spaces as `%20`).
fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| String::from_utf8_lossy(&crate::server::percent_decode(s)).into_owned();
            (dec(k), dec(v))
        })
        .collect()
}

fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn required<'q>(query: &'q [(String, String)], name: &'static str) -> Result<&'q str, OssError> {
    param(query, name).ok_or_else(|| {
        OssError::new(
            400,
            "AuthorizationQueryParametersError",
            format!("Query-string authentication requires the {name} parameter."),
            "0002-00000001",
        )
    })
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
}

struct Verifier<'a> {
    req: &'a S3Parts<'a>,
    query: &'a [(String, String)],
    cfg: &'a AuthConfig,
    now: DateTime<Utc>,
    tokens_expired_before: Option<DateTime<Utc>>,
}

/// Parsed `Credential=AK/DATE/REGION/s3/aws4_request`.
struct Scope<'a> {
    ak: &'a str,
    date: &'a str,
    region: &'a str,
}

fn parse_scope(credential: &str) -> Option<Scope<'_>> {
    let mut it = credential.rsplitn(5, '/');
    let terminator = it.next()?;
    let service = it.next()?;
    let region = it.next()?;
    let date = it.next()?;
    let ak = it.next()?;
    (terminator == V4_TERMINATOR && service == V4_SERVICE && !ak.is_empty() && date.len() == 8).then_some(Scope {
        ak,
        date,
        region,
    })
}

/// What a V4 request claims: scope, signed header list, signature, time and payload hash.
struct V4Claim<'a> {
    scope: Scope<'a>,
    signed_headers: &'a str,
    provided: &'a str,
    amz_date: &'a str,
    payload: &'a str,
    /// Query-string form: `X-Amz-Signature` is left out of the canonical query.
    presigned: bool,
}

impl Verifier<'_> {
    /// The security token presented (header, or presigned query parameter).
    fn token(&self) -> Option<&str> {
        header_str(self.req.headers, "x-amz-security-token")
            .or_else(|| param(self.query, "X-Amz-Security-Token"))
            .or_else(|| param(self.query, "x-amz-security-token"))
    }

    fn resolve(&self, ak: &str, token: Option<&str>) -> Result<(String, Principal), OssError> {
        auth::resolve_secret(self.cfg, ak, token, self.now, self.tokens_expired_before).map_err(|mut e| {
            for (name, _) in e.extra.iter_mut() {
                if *name == "OSSAccessKeyId" {
                    *name = "AWSAccessKeyId";
                }
            }
            e
        })
    }

    fn check_skew(&self, text: &str, t: DateTime<Utc>) -> Result<(), OssError> {
        if (self.now - t).num_seconds().abs() > MAX_REQUEST_SKEW_SECS {
            return Err(auth::skewed(text, self.now));
        }
        Ok(())
    }

    /// `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
    fn v4_header(&self, rest: &str) -> Result<Principal, OssError> {
        let mut fields = BTreeMap::new();
        for f in rest.split(',') {
            if let Some((k, v)) = f.trim().split_once('=') {
                fields.insert(k.trim(), v.trim());
            }
        }
        let (Some(credential), Some(signed), Some(provided)) = (
            fields.get("Credential"),
            fields.get("SignedHeaders"),
            fields.get("Signature"),
        ) else {
            return Err(malformed_authorization());
        };
        let scope = parse_scope(credential).ok_or_else(malformed_authorization)?;
        let amz_date = header_str(self.req.headers, "x-amz-date")
            .map(str::to_string)
            .or_else(|| {
                header_str(self.req.headers, "date")
                    .and_then(auth::parse_http_date)
                    .map(|d| d.format("%Y%m%dT%H%M%SZ").to_string())
            })
            .ok_or_else(|| OssError::access_denied("AWS authentication requires a valid Date or x-amz-date header"))?;
        let request_time = auth::parse_v4_date(&amz_date)
            .ok_or_else(|| OssError::access_denied("AWS authentication requires a valid Date or x-amz-date header"))?;
        let token = header_str(self.req.headers, "x-amz-security-token");
        let (secret, principal) = self.resolve(scope.ak, token)?;
        let payload = header_str(self.req.headers, "x-amz-content-sha256").unwrap_or(UNSIGNED_PAYLOAD);
        let claim = V4Claim {
            scope,
            signed_headers: signed,
            provided,
            amz_date: &amz_date,
            payload,
            presigned: false,
        };
        self.v4_verify(&claim, &secret)?;
        self.check_skew(&amz_date, request_time)?;
        Ok(principal)
    }

    /// Presigned `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
    /// `X-Amz-SignedHeaders`, `X-Amz-Signature` (+ `X-Amz-Security-Token`).
    fn v4_presigned(&self) -> Result<Principal, OssError> {
        let q = self.query;
        if required(q, "X-Amz-Algorithm")? != V4_ALGORITHM {
            return Err(OssError::new(
                400,
                "AuthorizationQueryParametersError",
                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
                "0002-00000001",
            ));
        }
        let credential = required(q, "X-Amz-Credential")?;
        let amz_date = required(q, "X-Amz-Date")?;
        let expires = required(q, "X-Amz-Expires")?;
        let signed = required(q, "X-Amz-SignedHeaders")?;
        let provided = required(q, "X-Amz-Signature")?;
        let scope = parse_scope(credential).ok_or_else(malformed_authorization)?;
        let bad = |what: &str| {
            OssError::new(
                400,
                "AuthorizationQueryParametersError",
                format!("{what} is invalid."),
                "0002-00000001",
            )
        };
        let t = auth::parse_v4_date(amz_date).ok_or_else(|| bad("X-Amz-Date"))?;
        let secs: i64 = expires
            .parse()
            .ok()
            .filter(|s| (1..=MAX_V4_PRESIGN_EXPIRES_SECS).contains(s))
            .ok_or_else(|| bad("X-Amz-Expires"))?;
        let token = param(q, "X-Amz-Security-Token");
        let (secret, principal) = self.resolve(scope.ak, token)?;
        let payload = header_str(self.req.headers, "x-amz-content-sha256").unwrap_or(UNSIGNED_PAYLOAD);
        let claim = V4Claim {
            scope,
            signed_headers: signed,
            provided,
            amz_date,
            payload,
            presigned: true,
        };
        self.v4_verify(&claim, &secret)?;
        let expires_at = t + chrono::Duration::seconds(secs);
        if self.now > expires_at {
            return Err(OssError::access_denied("Request has expired")
                .with("Expires", expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .with("ServerTime", self.now.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
        }
        if t - self.now > chrono::Duration::seconds(MAX_REQUEST_SKEW_SECS) {
            return Err(auth::skewed(amz_date, self.now));
        }
        Ok(principal)
    }

    fn v4_verify(&self, claim: &V4Claim<'_>, secret: &str) -> Result<(), OssError> {
        let V4Claim {
            scope,
            signed_headers,
            provided,
            amz_date,
            payload,
            presigned,
        } = claim;
        let key = v4_signing_key(secret, scope.date, scope.region);
        let query = v4_canonical_query(self.query, presigned.then_some("X-Amz-Signature"));
        let headers = v4_canonical_headers(self.req.headers, signed_headers);
        let mut first: Option<(String, String)> = None;
        for uri in v4_canonical_uris(self.req.raw_path) {
            let canonical = format!(
                "{}\n{uri}\n{query}\n{headers}\n{signed_headers}\n{payload}",
                self.req.method
            );
            let sts = v4_string_to_sign(amz_date, scope, &canonical);
            let sig = hex::encode(auth::hmac_sha256(&key, sts.as_bytes()));
            if auth::constant_time_eq(sig.as_bytes(), provided.as_bytes()) {
                return Ok(());
            }
            first.get_or_insert((sts, canonical));
        }
        let (sts, canonical) = first.unwrap_or_default();
        Err(signature_mismatch(
            scope.ak,
            provided,
            &sts,
            Some(&canonical),
            self.token(),
        ))
    }

    /// `Authorization: AWS AK:SIG`.
    fn v2_header(&self, rest: &str) -> Result<Principal, OssError> {
        let (ak, provided) = rest
            .trim()
            .split_once(':')
            .filter(|(a, s)| !a.is_empty() && !s.is_empty())
            .ok_or_else(malformed_authorization)?;
        let token = header_str(self.req.headers, "x-amz-security-token");
        let (secret, principal) = self.resolve(ak, token)?;
        let amz_date = header_str(self.req.headers, "x-amz-date");
        let date = header_str(self.req.headers, "date");
        // With x-amz-date the Date line is empty (AWS rule); some clients put its value there.
        let mut lines: Vec<&str> = Vec::new();
        match amz_date {
            Some(a) => {
                lines.push("");
                lines.push(a);
            }
            None => lines.push(date.unwrap_or("")),
        }
        self.v2_verify(ak, provided, &secret, &lines)?;
        let text = amz_date.or(date).unwrap_or("");
        let t = auth::parse_http_date(text)
            .ok_or_else(|| OssError::access_denied("AWS authentication requires a valid Date or x-amz-date header"))?;
        self.check_skew(text, t)?;
        Ok(principal)
    }

    /// Presigned `AWSAccessKeyId`, `Expires`, `Signature`.
    fn v2_presigned(&self) -> Result<Principal, OssError> {
        let ak = required(self.query, "AWSAccessKeyId")?;
        let expires = required(self.query, "Expires")?;
        let provided = required(self.query, "Signature")?;
        let expires_at = expires
            .parse::<i64>()
            .ok()
            .and_then(|e| Utc.timestamp_opt(e, 0).single())
            .ok_or_else(|| OssError::invalid_argument("Expires is invalid."))?;
        let token = param(self.query, "x-amz-security-token");
        let (secret, principal) = self.resolve(ak, token)?;
        self.v2_verify(ak, provided, &secret, &[expires])?;
        if self.now > expires_at {
            return Err(OssError::access_denied("Request has expired"));
        }
        Ok(principal)
    }

    fn v2_verify(&self, ak: &str, provided: &str, secret: &str, date_lines: &[&str]) -> Result<(), OssError> {
        let mut first = None;
        for date in date_lines {
            for resource in self.v2_resources() {
                let sts = v2_string_to_sign(self.req.method, self.req.headers, date, &resource, self.query);
                let sig = v2_signature(secret, &sts);
                if auth::constant_time_eq(sig.as_bytes(), provided.as_bytes()) {
                    return Ok(());
                }
                first.get_or_insert(sts);
            }
        }
        Err(signature_mismatch(
            ak,
            provided,
            &first.unwrap_or_default(),
            None,
            self.token(),
        ))
    }

    /// The canonical resource as sent, then with the path decoded (clients differ).
    fn v2_resources(&self) -> Vec<String> {
        let prefix = self.req.virtual_bucket.map(|b| format!("/{b}")).unwrap_or_default();
        let raw = format!("{prefix}{}", self.req.raw_path);
        let decoded = String::from_utf8_lossy(&crate::server::percent_decode(&raw)).into_owned();
        if decoded == raw { vec![raw] } else { vec![raw, decoded] }
    }
}

/// kSigning = HMAC chain over "AWS4" + secret, date, region, "s3", "aws4_request".
pub fn v4_signing_key(secret: &str, date: &str, region: &str) -> Vec<u8> {
    let k_date = auth::hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = auth::hmac_sha256(&k_date, region.as_bytes());
    let k_service = auth::hmac_sha256(&k_region, V4_SERVICE.as_bytes());
    auth::hmac_sha256(&k_service, V4_TERMINATOR.as_bytes())
}

fn v4_string_to_sign(amz_date: &str, scope: &Scope<'_>, canonical: &str) -> String {
    format!(
        "{V4_ALGORITHM}\n{amz_date}\n{}/{}/{V4_SERVICE}/{V4_TERMINATOR}\n{}",
        scope.date,
        scope.region,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

/// Canonical URI candidates: each segment decoded and encoded once (RFC 3986), then the path
/// exactly as received (a client that encodes fewer characters signs what it sent).
fn v4_canonical_uris(raw_path: &str) -> Vec<String> {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let normalized: String = path
        .split('/')
        .map(|seg| auth::percent_encode_rfc3986(&String::from_utf8_lossy(&crate::server::percent_decode(seg))))
        .collect::<Vec<_>>()
        .join("/");
    if normalized == path {
        vec![normalized]
    } else {
        vec![normalized, path.to_string()]
    }
}

/// Every query parameter but the signature, encoded, sorted; `name=` for empty values.
fn v4_canonical_query(query: &[(String, String)], skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .map(|(k, v)| (auth::percent_encode_rfc3986(k), auth::percent_encode_rfc3986(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `name:value\n` for each header in `SignedHeaders`, in the listed order; values trimmed,
/// inner whitespace runs collapsed, repeated headers joined with `,`.
fn v4_canonical_headers(headers: &HeaderMap, signed: &str) -> String {
    let mut out = String::new();
    for name in signed.split(';').filter(|n| !n.is_empty()) {
        let name = name.trim().to_ascii_lowercase();
        let value = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join(",");
        out.push_str(&name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    out
}

/// V2 StringToSign: VERB, Content-MD5, Content-Type, date line, `x-amz-*` headers, resource
/// with the signed sub-resources.
pub fn v2_string_to_sign(
    method: &str,
    headers: &HeaderMap,
    date_line: &str,
    resource: &str,
    query: &[(String, String)],
) -> String {
    let md5 = header_str(headers, "content-md5").unwrap_or("").trim();
    let ctype = header_str(headers, "content-type").unwrap_or("").trim();
    let mut amz = BTreeMap::new();
    for name in headers.keys() {
        let n = name.as_str();
        if n.starts_with("x-amz-") && n != "x-amz-date" {
            amz.insert(n, auth::header_joined(headers, n));
        }
    }
    let mut out = format!("{method}\n{md5}\n{ctype}\n{date_line}\n");
    // x-amz-date is signed through the date line only when the Date line is empty.
    if date_line.is_empty()
        && let Some(d) = header_str(headers, "x-amz-date")
    {
        amz.insert("x-amz-date", d.trim().to_string());
    }
    for (k, v) in &amz {
        out.push_str(&format!("{k}:{v}\n"));
    }
    out.push_str(resource);
    let mut subs: Vec<&(String, String)> = query
        .iter()
        .filter(|(k, _)| V2_SUBRESOURCES.contains(&k.as_str()))
        .collect();
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (k, v)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        if !v.is_empty() {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// base64(HMAC-SHA1(secret, string_to_sign)).
pub fn v2_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

// ----- requests -----

/// Is the body `aws-chunked` framed (streaming SigV4 or unsigned-with-trailer)?
pub fn is_aws_chunked(headers: &HeaderMap) -> bool {
    header_str(headers, "x-amz-content-sha256").is_some_and(|v| v.starts_with("STREAMING-"))
        || header_str(headers, "content-encoding")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("aws-chunked")))
}

/// Add the OSS names of the mapped `x-amz-*` headers (the S3 originals stay for the signature
/// check). S3 ranges are standard: past-the-end ranges are clipped or answer 416.
pub fn map_request_headers(headers: &mut HeaderMap) {
    let mut add: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (name, value) in headers.iter() {
        let n = name.as_str();
        let mapped = if let Some(user) = n.strip_prefix("x-amz-meta-") {
            Some(format!("x-oss-meta-{user}"))
        } else {
            HEADER_MAP
                .iter()
                .find(|(s3, _)| *s3 == n)
                .map(|(_, oss)| oss.to_string())
        };
        if let Some(m) = mapped
            && let Ok(hn) = HeaderName::from_bytes(m.as_bytes())
        {
            add.push((hn, value.clone()));
        }
    }
    // Headers a client sent under OSS names never act on an S3 request.
    let stale: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("x-oss-"))
        .cloned()
        .collect();
    for n in stale {
        headers.remove(n);
    }
    for (n, v) in add {
        headers.append(n, v);
    }
    headers.insert("x-oss-range-behavior", HeaderValue::from_static("standard"));
}

/// After authentication: the decoded length replaces Content-Length of an `aws-chunked` body
/// and `aws-chunked` leaves Content-Encoding (it is not stored with the object).
pub fn finish_request_headers(headers: &mut HeaderMap) {
    if !is_aws_chunked(headers) {
        return;
    }
    match headers.get("x-amz-decoded-content-length").cloned() {
        Some(v) => {
            headers.insert(header::CONTENT_LENGTH, v);
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
    }
    if let Some(ce) = header_str(headers, "content-encoding") {
        let rest: Vec<String> = ce
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
            .map(str::to_string)
            .collect();
        match HeaderValue::from_str(&rest.join(", ")) {
            Ok(v) if !rest.is_empty() => {
                headers.insert(header::CONTENT_ENCODING, v);
            }
            _ => {
                headers.remove(header::CONTENT_ENCODING);
            }
        }
    }
}

/// Incremental decoder of the `aws-chunked` framing
/// (`hex-size[;chunk-signature=…]\r\n data \r\n … 0[;…]\r\n [trailers] \r\n`). Chunk
/// signatures are not verified (the seed request signature is).
#[derive(Debug)]
pub struct ChunkDecoder {
    state: ChunkState,
    line: BytesMut,
}

#[derive(Debug, PartialEq, Eq)]
enum ChunkState {
    Header,
    Data(u64),
    DataEnd(u8),
    Trailer(usize),
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        ChunkDecoder {
            state: ChunkState::Header,
            line: BytesMut::new(),
        }
    }
}

impl ChunkDecoder {
    /// Feed received bytes; returns the payload slices they complete (no copy for data).
    pub fn feed(&mut self, mut input: Bytes) -> Result<Vec<Bytes>, ChunkError> {
        let mut out = Vec::new();
        while !input.is_empty() {
            match self.state {
                ChunkState::Data(n) => {
                    let take = (n.min(input.len() as u64)) as usize;
                    out.push(input.split_to(take));
                    self.state = if n == take as u64 {
                        ChunkState::DataEnd(0)
                    } else {
                        ChunkState::Data(n - take as u64)
                    };
                }
                ChunkState::DataEnd(seen) => {
                    let expected = if seen == 0 { b'\r' } else { b'\n' };
                    if input[0] != expected {
                        return Err(ChunkError::BadTerminator);
                    }
                    let _ = input.split_to(1);
                    self.state = if seen == 0 {
                        ChunkState::DataEnd(1)
                    } else {
                        ChunkState::Header
                    };
                }
                ChunkState::Header => {
                    let nl = input.iter().position(|&b| b == b'\n');
                    let upto = nl.map(|p| p + 1).unwrap_or(input.len());
                    self.line.extend_from_slice(&input.split_to(upto));
                    if self.line.len() > MAX_CHUNK_HEADER_BYTES {
                        return Err(ChunkError::BadHeader);
                    }
                    if nl.is_none() {
                        continue;
                    }
                    let line = std::str::from_utf8(&self.line).map_err(|_| ChunkError::BadHeader)?;
                    let line = line.strip_suffix("\r\n").ok_or(ChunkError::BadHeader)?;
                    let size_text = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size_text, 16).map_err(|_| ChunkError::BadHeader)?;
                    self.line.clear();
                    self.state = if size == 0 {
                        ChunkState::Trailer(0)
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Trailer(seen) => {
                    let seen = seen + input.len();
                    if seen > MAX_CHUNK_TRAILER_BYTES {
                        return Err(ChunkError::TrailerTooLong);
                    }
                    input.clear();
                    self.state = ChunkState::Trailer(seen);
                }
            }
        }
        Ok(out)
    }

    /// The body ended: fine only after the last (zero-size) chunk.
    pub fn finish(&self) -> Result<(), ChunkError> {
        match self.state {
            ChunkState::Trailer(_) => Ok(()),
            _ => Err(ChunkError::Truncated),
        }
    }
}

/// The request body, with the `aws-chunked` framing removed when present.
pub fn request_body(chunked: bool, body: Incoming) -> ReqBody {
    if !chunked {
        return body.map_err(std::io::Error::other).boxed_unsync();
    }
    let stream = futures::stream::unfold(
        (body.into_data_stream(), ChunkDecoder::default(), false),
        |(mut s, mut dec, done)| async move {
            if done {
                return None;
            }
            let item = match s.next().await {
                Some(Ok(b)) => dec.feed(b).map(|parts| parts.into_iter().map(Ok).collect::<Vec<_>>()),
                Some(Err(e)) => Err(ChunkError::Transport(e.to_string())),
                None => match dec.finish() {
                    Ok(()) => return None,
                    Err(e) => Err(e),
                },
            };
            match item {
                Ok(v) => Some((futures::stream::iter(v), (s, dec, false))),
                Err(e) => Some((
                    futures::stream::iter(vec![Err(std::io::Error::other(e))]),
                    (s, dec, true),
                )),
            }
        },
    )
    .flatten()
    .map(|r: Result<Bytes, std::io::Error>| r.map(Frame::data));
    StreamBody::new(stream).boxed_unsync()
}

// ----- answers -----

/// Rewrite an OSS answer for an S3 client: `x-oss-meta-*` → `x-amz-meta-*`, lower-case ETag,
/// `x-amz-request-id`.
pub fn finish_response(resp: &mut Response<RespBody>, request_id: &str) {
    let h = resp.headers_mut();
    let meta: Vec<(HeaderName, HeaderValue)> = h
        .iter()
        .filter_map(|(n, v)| {
            let user = n.as_str().strip_prefix("x-oss-meta-")?;
            Some((
                HeaderName::from_bytes(format!("x-amz-meta-{user}").as_bytes()).ok()?,
                v.clone(),
            ))
        })
        .collect();
    for (n, v) in meta {
        let oss = format!("x-oss-meta-{}", &n.as_str()["x-amz-meta-".len()..]);
        h.remove(oss.as_str());
        h.append(n, v);
    }
    if let Some(etag) = h.get(header::ETAG).and_then(|v| v.to_str().ok())
        && let Ok(v) = HeaderValue::from_str(&etag.to_ascii_lowercase())
    {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amz-request-id", v);
    }
}

/// An OSS result document in S3 form: the S3 namespace on the root and lower-case ETags.
pub fn xml_document(body: String) -> String {
    let mut out = String::with_capacity(body.len() + 64);
    let (decl, rest) = match body.find("?>") {
        Some(p) => body.split_at(p + 2),
        None => ("", body.as_str()),
    };
    out.push_str(decl);
    let mut rest = rest;
    if let Some(lt) = rest.find('<')
        && let Some(gt) = rest[lt..].find('>').map(|g| g + lt)
        && !rest[lt..gt].contains(' ')
    {
        out.push_str(&rest[..gt]);
        out.push_str(&format!(" xmlns=\"{S3_XMLNS}\""));
        rest = &rest[gt..];
    }
    while let Some(start) = rest.find("<ETag>") {
        let body_start = start + "<ETag>".len();
        let Some(len) = rest[body_start..].find("</ETag>") else {
            break;
        };
        out.push_str(&rest[..body_start]);
        out.push_str(&rest[body_start..body_start + len].to_ascii_lowercase());
        rest = &rest[body_start + len..];
    }
    out.push_str(rest);
    out
}

/// S3 error answer: `<Error><Code/><Message/>…<RequestId/><HostId/></Error>` (no body on HEAD).
pub fn error_response(err: &OssError, request_id: &str, host_id: &str, head: bool) -> Response<RespBody> {
    let mut w = crate::xml::XmlWriter::new("Error");
    w.elem("Code", err.code).elem("Message", &err.message);
    for (name, value) in &err.extra {
        w.elem(name, value);
    }
    w.elem("RequestId", request_id).elem("HostId", host_id);
    let xml = w.finish();
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/xml");
    let r = if head {
        b.header(header::CONTENT_LENGTH, 0).body(empty())
    } else {
        b.body(full(xml))
    };
    r.unwrap_or_else(|_| Response::new(empty()))
}

#[cfg(test)]
mod tests;
