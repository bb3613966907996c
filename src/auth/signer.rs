//! OSS request signing, V4 (`OSS4-HMAC-SHA256`, the default) and V1 (HMAC-SHA1), as pure
//! functions: no I/O, no clock reads (the signing time is passed in), no async.
//!
//! The client describes a request with a [`SignableRequest`] (method, bucket, key, decoded
//! query parameters, headers); [`sign_v4`] / [`sign_v1`] add the date, content-hash and token
//! headers and the `Authorization` header to it; [`presign_v4`] / [`presign_v1`] produce
//! query-authenticated URLs. Each step of the algorithms of PROTOCOL.md §2–§3 is a public
//! function so the unit tests can compare every intermediate string with the vectors made by
//! the official SDKs (`tests/data/vectors/oss_v1.json`, `oss_v4.json`).
//!
//! Nothing here logs; the outputs contain signatures and must not be logged by callers either.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::Credentials;

/// `x-oss-content-sha256` value: OSS accepts only unsigned payloads.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// V4 algorithm name.
pub const V4_ALGORITHM: &str = "OSS4-HMAC-SHA256";
/// Product name in the V4 scope.
pub const V4_PRODUCT: &str = "oss";
/// Longest validity of a V4 presigned URL.
pub const V4_MAX_PRESIGN_SECS: u64 = 7 * 24 * 3600;

/// Header names the signers set.
pub const HEADER_OSS_DATE: &str = "x-oss-date";
pub const HEADER_CONTENT_SHA256: &str = "x-oss-content-sha256";
pub const HEADER_SECURITY_TOKEN: &str = "x-oss-security-token";
pub const HEADER_AUTHORIZATION: &str = "authorization";
pub const HEADER_DATE: &str = "date";

/// RFC 3986 unreserved characters are kept; everything else is percent-encoded (upper hex).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Same, but `/` stays literal (object keys in paths).
const RFC3986_PATH: &AsciiSet = &RFC3986.remove(b'/');

/// V1 sub-resources: the only query parameters that enter the V1 canonical resource
/// (union of the SDK lists, PROTOCOL.md §2.3).
pub const V1_SUBRESOURCES: &[&str] = &[
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

/// RFC 3986 percent-encoding of the UTF-8 bytes (`/` encoded, space → `%20`, `~` kept).
pub fn pe(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// RFC 3986 percent-encoding keeping `/` literal (object keys in URL paths).
pub fn pe_path(s: &str) -> String {
    utf8_percent_encode(s, RFC3986_PATH).to_string()
}

/// How an object key is written in a URL path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyEncoding {
    /// `quote(key)` keeping `/` (alibabacloud-oss-v2, Go SDK; what our client sends).
    #[default]
    KeepSlash,
    /// `/` encoded as `%2F` (oss2).
    EncodeSlash,
}

/// Scheme + host of an OSS endpoint and the addressing style, for building request URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlBase {
    /// `http` or `https`.
    pub scheme: String,
    /// Endpoint host with optional `:port`, without the bucket (e.g. `oss-cn-hangzhou.aliyuncs.com`).
    pub host: String,
    /// `scheme://host/bucket/key` instead of `scheme://bucket.host/key`.
    pub path_style: bool,
}

impl UrlBase {
    /// The `Host` the request goes to for `bucket`.
    pub fn host_for(&self, bucket: Option<&str>) -> String {
        match bucket {
            Some(b) if !self.path_style => format!("{b}.{}", self.host),
            _ => self.host.clone(),
        }
    }

    /// `scheme://host/path` for a bucket/key, without query.
    pub fn url(&self, bucket: Option<&str>, key: Option<&str>, encoding: KeyEncoding) -> String {
        let mut url = format!("{}://{}/", self.scheme, self.host_for(bucket));
        if self.path_style
            && let Some(b) = bucket
        {
            url.push_str(b);
            url.push('/');
        }
        if let Some(k) = key {
            match encoding {
                KeyEncoding::KeepSlash => url.push_str(&pe_path(k)),
                KeyEncoding::EncodeSlash => url.push_str(&pe(k)),
            }
        }
        url
    }
}

/// Encode decoded query parameters for the wire (`pe(name)=pe(value)`, bare `name` when empty),
/// in the given order.
pub fn encode_query(query: &[(String, String)]) -> String {
    query
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                pe(k)
            } else {
                format!("{}={}", pe(k), pe(v))
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// What a signer needs to know about a request. Query parameter values are decoded; header
/// names may have any case. The signers add headers to `headers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignableRequest {
    pub method: String,
    /// None for service-level requests (ListBuckets).
    pub bucket: Option<String>,
    /// None (or empty) for bucket-level requests.
    pub key: Option<String>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl SignableRequest {
    pub fn new(method: impl Into<String>, bucket: Option<&str>, key: Option<&str>) -> Self {
        SignableRequest {
            method: method.into(),
            bucket: bucket.map(str::to_owned),
            key: key.map(str::to_owned),
            query: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Replace every header of that name (case-insensitive) with one value.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.into()));
    }

    fn key_nonempty(&self) -> Option<&str> {
        self.key.as_deref().filter(|k| !k.is_empty())
    }
}

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<Sha1>;

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <HmacSha1 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn v4_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// RFC 1123 GMT date (`Wed, 15 Jan 2025 08:30:00 GMT`).
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

// ---------------------------------------------------------------------------------------
// V4

/// CanonicalURI: `pe("/" + bucket + "/" + key)` keeping `/`.
pub fn v4_canonical_uri(bucket: Option<&str>, key: Option<&str>) -> String {
    match (bucket, key.filter(|k| !k.is_empty())) {
        (None, _) => "/".to_owned(),
        (Some(b), None) => format!("/{}/", pe_path(b)),
        (Some(b), Some(k)) => format!("/{}/{}", pe_path(b), pe_path(k)),
    }
}

/// CanonicalQuery: every parameter, encoded, sorted by encoded name, bare name when empty.
pub fn v4_canonical_query(query: &[(String, String)]) -> String {
    let mut items: Vec<(String, String)> = query.iter().map(|(k, v)| (pe(k), pe(v))).collect();
    items.sort();
    items
        .into_iter()
        .map(|(k, v)| if v.is_empty() { k } else { format!("{k}={v}") })
        .collect::<Vec<_>>()
        .join("&")
}

fn v4_signed_by_default(lower: &str) -> bool {
    lower.starts_with("x-oss-") || lower == "content-type" || lower == "content-md5"
}

/// The AdditionalHeaders actually used: lower-case, sorted, deduplicated, without names that
/// are signed anyway and without names absent from the request.
pub fn v4_additional_headers(headers: &[(String, String)], requested: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = requested
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty() && !v4_signed_by_default(h))
        .filter(|h| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(h)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// CanonicalHeaders: `name:value\n` lines (lower-case names, trimmed values, sorted) for every
/// `x-oss-*`, `content-type`, `content-md5` and additional header.
pub fn v4_canonical_headers(headers: &[(String, String)], additional: &[String]) -> String {
    let mut lines: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(n, _)| v4_signed_by_default(n) || additional.iter().any(|a| a == n))
        .collect();
    lines.sort();
    lines.into_iter().map(|(n, v)| format!("{n}:{v}\n")).collect()
}

/// The whole canonical request.
pub fn v4_canonical_request(req: &SignableRequest, additional: &[String]) -> String {
    let payload = req.header(HEADER_CONTENT_SHA256).unwrap_or(UNSIGNED_PAYLOAD);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        v4_canonical_uri(req.bucket.as_deref(), req.key_nonempty()),
        v4_canonical_query(&req.query),
        v4_canonical_headers(&req.headers, additional),
        additional.join(";"),
        payload
    )
}

/// `<YYYYMMDD>/<region>/oss/aliyun_v4_request`.
pub fn v4_scope(date_yyyymmdd: &str, region: &str) -> String {
    format!("{date_yyyymmdd}/{region}/{V4_PRODUCT}/aliyun_v4_request")
}

/// StringToSign from the `x-oss-date` value, scope and canonical request.
pub fn v4_string_to_sign(oss_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("{V4_ALGORITHM}\n{oss_date}\n{scope}\n{hash}")
}

/// The intermediate keys of the V4 key derivation.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyChain {
    pub k_date: Vec<u8>,
    pub k_region: Vec<u8>,
    pub k_product: Vec<u8>,
    pub signing_key: Vec<u8>,
}

impl std::fmt::Debug for SigningKeyChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeyChain(******)")
    }
}

/// kDate → kRegion → kProduct → kSigning.
pub fn v4_signing_key_chain(secret: &str, date_yyyymmdd: &str, region: &str) -> SigningKeyChain {
    let k_date = hmac_sha256(format!("aliyun_v4{secret}").as_bytes(), date_yyyymmdd.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_product = hmac_sha256(&k_region, V4_PRODUCT.as_bytes());
    let signing_key = hmac_sha256(&k_product, b"aliyun_v4_request");
    SigningKeyChain {
        k_date,
        k_region,
        k_product,
        signing_key,
    }
}

/// Lower-hex HMAC-SHA256 of the string to sign.
pub fn v4_signature(signing_key: &[u8], string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(signing_key, string_to_sign.as_bytes()))
}

/// `OSS4-HMAC-SHA256 Credential=<AK>/<scope>[,AdditionalHeaders=<list>],Signature=<hex>`.
pub fn v4_authorization(access_key_id: &str, scope: &str, additional: &[String], signature: &str) -> String {
    let mut s = format!("{V4_ALGORITHM} Credential={access_key_id}/{scope}");
    if !additional.is_empty() {
        s.push_str(",AdditionalHeaders=");
        s.push_str(&additional.join(";"));
    }
    s.push_str(",Signature=");
    s.push_str(signature);
    s
}

/// Sign `req` with V4 at time `now`: sets `x-oss-date`, `x-oss-content-sha256`, the token header
/// for temporary credentials, and `Authorization`. `additional` names extra headers to sign.
pub fn sign_v4(req: &mut SignableRequest, creds: &Credentials, region: &str, now: DateTime<Utc>, additional: &[&str]) {
    let oss_date = v4_datetime(now);
    req.set_header(HEADER_OSS_DATE, oss_date.clone());
    req.set_header(HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD);
    if let Some(token) = &creds.security_token {
        req.set_header(HEADER_SECURITY_TOKEN, token.clone());
    }
    let additional = v4_additional_headers(&req.headers, additional);
    let canonical = v4_canonical_request(req, &additional);
    let scope = v4_scope(&oss_date[..8], region);
    let sts = v4_string_to_sign(&oss_date, &scope, &canonical);
    let chain = v4_signing_key_chain(&creds.access_key_secret, &oss_date[..8], region);
    let signature = v4_signature(&chain.signing_key, &sts);
    let auth = v4_authorization(&creds.access_key_id, &scope, &additional, &signature);
    req.set_header(HEADER_AUTHORIZATION, auth);
}

/// A V4 presigned URL valid `expires_secs` (≤ 7 days) from `now`. Headers in `req` (e.g.
/// Content-Type) are signed and must be sent identically.
pub fn presign_v4(
    req: &SignableRequest,
    creds: &Credentials,
    region: &str,
    now: DateTime<Utc>,
    expires_secs: u64,
    base: &UrlBase,
) -> Result<String, PresignError> {
    if expires_secs == 0 || expires_secs > V4_MAX_PRESIGN_SECS {
        return Err(PresignError::Expires {
            seconds: expires_secs,
            max: V4_MAX_PRESIGN_SECS,
        });
    }
    let oss_date = v4_datetime(now);
    let scope = v4_scope(&oss_date[..8], region);
    let mut signed = req.clone();
    let mut added: Vec<(String, String)> = vec![
        ("x-oss-signature-version".into(), V4_ALGORITHM.into()),
        ("x-oss-date".into(), oss_date.clone()),
        ("x-oss-expires".into(), expires_secs.to_string()),
        ("x-oss-credential".into(), format!("{}/{scope}", creds.access_key_id)),
    ];
    if let Some(token) = &creds.security_token {
        added.push(("x-oss-security-token".into(), token.clone()));
    }
    signed.query.extend(added.iter().cloned());
    let canonical = v4_canonical_request(&signed, &[]);
    let sts = v4_string_to_sign(&oss_date, &scope, &canonical);
    let chain = v4_signing_key_chain(&creds.access_key_secret, &oss_date[..8], region);
    let signature = v4_signature(&chain.signing_key, &sts);
    let mut query = req.query.clone();
    query.extend(added);
    query.push(("x-oss-signature".into(), signature));
    let url = base.url(req.bucket.as_deref(), req.key_nonempty(), KeyEncoding::KeepSlash);
    Ok(format!("{url}?{}", encode_query(&query)))
}

/// Why a presigned URL could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    #[error("presigned URL validity of {seconds} s is out of range 1..={max}")]
    Expires { seconds: u64, max: u64 },
}

// ---------------------------------------------------------------------------------------
// V1

/// CanonicalizedOSSHeaders: `x-oss-*` headers, lower-case names, trimmed values (repeated
/// headers joined with `,`), sorted, each `name:value\n`.
pub fn v1_canonicalized_oss_headers(headers: &[(String, String)]) -> String {
    let mut map: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for (n, v) in headers {
        let lower = n.to_ascii_lowercase();
        if lower.starts_with("x-oss-") {
            map.entry(lower).or_default().push(v.trim().to_owned());
        }
    }
    map.into_iter()
        .map(|(n, vs)| format!("{n}:{}\n", vs.join(",")))
        .collect()
}

/// CanonicalizedResource: `/bucket/key` (raw key) plus the sorted sub-resources (raw values).
pub fn v1_canonicalized_resource(bucket: Option<&str>, key: Option<&str>, query: &[(String, String)]) -> String {
    let mut s = match (bucket, key.filter(|k| !k.is_empty())) {
        (None, _) => "/".to_owned(),
        (Some(b), None) => format!("/{b}/"),
        (Some(b), Some(k)) => format!("/{b}/{k}"),
    };
    let mut subs: Vec<&(String, String)> = query
        .iter()
        .filter(|(k, _)| V1_SUBRESOURCES.contains(&k.as_str()))
        .collect();
    if !subs.is_empty() {
        subs.sort();
        let parts: Vec<String> = subs
            .iter()
            .map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") })
            .collect();
        s.push('?');
        s.push_str(&parts.join("&"));
    }
    s
}

/// StringToSign of V1; `date` is the `x-oss-date`/`Date` value, or the Expires epoch for presigning.
pub fn v1_string_to_sign(req: &SignableRequest, date: &str) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}{}",
        req.method.to_ascii_uppercase(),
        req.header("content-md5").unwrap_or(""),
        req.header("content-type").unwrap_or(""),
        date,
        v1_canonicalized_oss_headers(&req.headers),
        v1_canonicalized_resource(req.bucket.as_deref(), req.key_nonempty(), &req.query)
    )
}

/// base64(HMAC-SHA1(secret, string_to_sign)).
pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha1(secret.as_bytes(), string_to_sign.as_bytes()))
}

/// `OSS <AK>:<signature>`.
pub fn v1_authorization(access_key_id: &str, signature: &str) -> String {
    format!("OSS {access_key_id}:{signature}")
}

/// The date line V1 signs: `x-oss-date` if present, else `Date`.
fn v1_date_of(req: &SignableRequest) -> String {
    req.header(HEADER_OSS_DATE)
        .or_else(|| req.header(HEADER_DATE))
        .unwrap_or("")
        .to_owned()
}

/// Sign `req` with V1 at time `now`: sets `Date`, the token header for temporary credentials,
/// and `Authorization`.
pub fn sign_v1(req: &mut SignableRequest, creds: &Credentials, now: DateTime<Utc>) {
    req.set_header(HEADER_DATE, http_date(now));
    if let Some(token) = &creds.security_token {
        req.set_header(HEADER_SECURITY_TOKEN, token.clone());
    }
    let sts = v1_string_to_sign(req, &v1_date_of(req));
    let signature = v1_signature(&creds.access_key_secret, &sts);
    req.set_header(HEADER_AUTHORIZATION, v1_authorization(&creds.access_key_id, &signature));
}

/// A V1 presigned URL expiring at `expires_epoch` (Unix seconds). Signed headers in `req`
/// (Content-Type, Content-MD5, `x-oss-*`) must be sent identically.
pub fn presign_v1(
    req: &SignableRequest,
    creds: &Credentials,
    expires_epoch: i64,
    base: &UrlBase,
    encoding: KeyEncoding,
) -> String {
    let expires = expires_epoch.to_string();
    let mut signed = req.clone();
    if let Some(token) = &creds.security_token {
        signed.query.push(("security-token".into(), token.clone()));
    }
    let sts = v1_string_to_sign(&signed, &expires);
    let signature = v1_signature(&creds.access_key_secret, &sts);
    let mut query = signed.query;
    query.push(("OSSAccessKeyId".into(), creds.access_key_id.clone()));
    query.push(("Expires".into(), expires));
    query.push(("Signature".into(), signature));
    let url = base.url(req.bucket.as_deref(), req.key_nonempty(), encoding);
    format!("{url}?{}", encode_query(&query))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::Value;

    const V1_JSON: &str = include_str!("../../tests/data/vectors/oss_v1.json");
    const V4_JSON: &str = include_str!("../../tests/data/vectors/oss_v4.json");

    fn s(v: &Value) -> Option<&str> {
        v.as_str()
    }

    fn headers_of(v: &Value) -> Vec<(String, String)> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn query_of(v: &Value) -> Vec<(String, String)> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn creds_of(inputs: &Value) -> Credentials {
        let mut c = Credentials::new(
            inputs["access_key_id"].as_str().unwrap(),
            inputs["access_key_secret"].as_str().unwrap(),
        );
        if let Some(t) = s(&inputs["security_token"]) {
            c = c.with_token(t);
        }
        c
    }

    fn request_of(inputs: &Value, headers_field: &str, query_field: &str) -> SignableRequest {
        SignableRequest {
            method: inputs["method"].as_str().unwrap().to_owned(),
            bucket: s(&inputs["bucket"]).map(str::to_owned),
            key: s(&inputs["key"]).map(str::to_owned),
            query: query_of(&inputs[query_field]),
            headers: headers_of(&inputs[headers_field]),
        }
    }

    fn vector_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 15, 8, 30, 0).unwrap()
    }

    fn base_for(endpoint: &str, path_style: bool) -> UrlBase {
        let (scheme, host) = endpoint.split_once("://").unwrap();
        UrlBase {
            scheme: scheme.into(),
            host: host.into(),
            path_style,
        }
    }

    #[test]
    fn v1_header_cases_match_vectors() {
        let doc: Value = serde_json::from_str(V1_JSON).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 25);
        for case in cases {
            let id = case["id"].as_str().unwrap();
            let inputs = &case["inputs"];
            let exp = &case["expected"];
            let req = request_of(inputs, "headers", "query");
            assert_eq!(
                v1_canonicalized_oss_headers(&req.headers),
                exp["canonicalized_oss_headers"].as_str().unwrap(),
                "{id}: canonicalized headers"
            );
            assert_eq!(
                v1_canonicalized_resource(req.bucket.as_deref(), req.key.as_deref(), &req.query),
                exp["canonicalized_resource"].as_str().unwrap(),
                "{id}: canonicalized resource"
            );
            let sts = v1_string_to_sign(&req, inputs["date"].as_str().unwrap());
            assert_eq!(sts, exp["string_to_sign"].as_str().unwrap(), "{id}: string to sign");
            let creds = creds_of(inputs);
            let sig = v1_signature(&creds.access_key_secret, &sts);
            assert_eq!(sig, exp["signature"].as_str().unwrap(), "{id}: signature");
            assert_eq!(
                v1_authorization(&creds.access_key_id, &sig),
                exp["authorization"].as_str().unwrap(),
                "{id}: authorization"
            );
            // The full signer (date injected, token header added from the credentials) agrees.
            let mut signed = req.clone();
            signed
                .headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("date") && !n.eq_ignore_ascii_case(HEADER_SECURITY_TOKEN));
            sign_v1(&mut signed, &creds, vector_time());
            assert_eq!(
                signed.header("authorization"),
                exp["authorization"].as_str(),
                "{id}: sign_v1"
            );
        }
    }

    #[test]
    fn v1_presigned_urls_match_vectors() {
        let doc: Value = serde_json::from_str(V1_JSON).unwrap();
        let cases = doc["presigned_url_cases"].as_array().unwrap();
        assert_eq!(cases.len(), 3);
        for case in cases {
            let id = case["id"].as_str().unwrap();
            let inputs = &case["inputs"];
            let exp = &case["expected"];
            let mut req = request_of(inputs, "headers", "query_before_signing");
            req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("date"));
            let creds = creds_of(inputs);
            let expires = inputs["now_epoch"].as_i64().unwrap() + inputs["expires_in_seconds"].as_i64().unwrap();
            assert_eq!(expires.to_string(), exp["expires"].as_str().unwrap(), "{id}");
            let mut with_token = req.clone();
            if let Some(t) = &creds.security_token {
                with_token.query.push(("security-token".into(), t.clone()));
            }
            let sts = v1_string_to_sign(&with_token, &expires.to_string());
            assert_eq!(sts, exp["string_to_sign"].as_str().unwrap(), "{id}: string to sign");
            assert_eq!(
                v1_signature(&creds.access_key_secret, &sts),
                exp["signature"].as_str().unwrap(),
                "{id}"
            );
            let base = base_for(inputs["endpoint"].as_str().unwrap(), false);
            let url = presign_v1(&req, &creds, expires, &base, KeyEncoding::EncodeSlash);
            assert_eq!(url, exp["url"].as_str().unwrap(), "{id}: url");
        }
    }

    #[test]
    fn v4_header_cases_match_vectors() {
        let doc: Value = serde_json::from_str(V4_JSON).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 10);
        for case in cases {
            let id = case["id"].as_str().unwrap();
            let inputs = &case["inputs"];
            let exp = &case["expected"];
            let req = request_of(inputs, "headers", "query");
            let region = inputs["region"].as_str().unwrap();
            let requested: Vec<&str> = inputs["additional_headers_requested"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let additional = v4_additional_headers(&req.headers, &requested);
            let canonical = v4_canonical_request(&req, &additional);
            assert_eq!(
                canonical,
                exp["canonical_request"].as_str().unwrap(),
                "{id}: canonical request"
            );
            assert_eq!(
                hex::encode(Sha256::digest(canonical.as_bytes())),
                exp["canonical_request_sha256"].as_str().unwrap(),
                "{id}"
            );
            let oss_date = inputs["x_oss_date"].as_str().unwrap();
            let scope = v4_scope(&oss_date[..8], region);
            assert_eq!(scope, exp["scope"].as_str().unwrap(), "{id}: scope");
            let sts = v4_string_to_sign(oss_date, &scope, &canonical);
            assert_eq!(sts, exp["string_to_sign"].as_str().unwrap(), "{id}: string to sign");
            let creds = creds_of(inputs);
            let chain = v4_signing_key_chain(&creds.access_key_secret, &oss_date[..8], region);
            let kc = &exp["signing_key_chain_hex"];
            assert_eq!(
                hex::encode(&chain.k_date),
                kc["k_date"].as_str().unwrap(),
                "{id}: k_date"
            );
            assert_eq!(
                hex::encode(&chain.k_region),
                kc["k_region"].as_str().unwrap(),
                "{id}: k_region"
            );
            assert_eq!(
                hex::encode(&chain.k_product),
                kc["k_product"].as_str().unwrap(),
                "{id}: k_product"
            );
            assert_eq!(
                hex::encode(&chain.signing_key),
                kc["signing_key"].as_str().unwrap(),
                "{id}: signing_key"
            );
            let sig = v4_signature(&chain.signing_key, &sts);
            assert_eq!(sig, exp["signature"].as_str().unwrap(), "{id}: signature");
            let auth = v4_authorization(&creds.access_key_id, &scope, &additional, &sig);
            assert_eq!(auth, exp["authorization"].as_str().unwrap(), "{id}: authorization");
            // The full signer, from a request without the signer-set headers, agrees.
            let mut signed = req.clone();
            signed.headers.retain(|(n, _)| {
                let l = n.to_ascii_lowercase();
                l != HEADER_OSS_DATE && l != HEADER_CONTENT_SHA256 && l != HEADER_SECURITY_TOKEN
            });
            sign_v4(&mut signed, &creds, region, vector_time(), &requested);
            assert_eq!(
                signed.header("authorization"),
                exp["authorization"].as_str(),
                "{id}: sign_v4"
            );
        }
    }

    #[test]
    fn v4_presigned_urls_match_vectors() {
        let doc: Value = serde_json::from_str(V4_JSON).unwrap();
        let cases = doc["presigned_url_cases"].as_array().unwrap();
        assert_eq!(cases.len(), 2);
        for case in cases {
            let id = case["id"].as_str().unwrap();
            let inputs = &case["inputs"];
            let exp = &case["expected"];
            let req = request_of(inputs, "signed_headers", "query");
            let creds = creds_of(inputs);
            let region = inputs["region"].as_str().unwrap();
            let expires = inputs["expires_in_seconds"].as_u64().unwrap();
            let base = base_for("https://oss-cn-hangzhou.aliyuncs.com", false);
            let url = presign_v4(&req, &creds, region, vector_time(), expires, &base).unwrap();
            assert_eq!(url, exp["url"].as_str().unwrap(), "{id}: url");
            // Intermediate strings.
            let mut q = req.clone();
            let scope = v4_scope("20250115", region);
            q.query.push(("x-oss-signature-version".into(), V4_ALGORITHM.into()));
            q.query.push(("x-oss-date".into(), "20250115T083000Z".into()));
            q.query.push(("x-oss-expires".into(), expires.to_string()));
            q.query
                .push(("x-oss-credential".into(), format!("{}/{scope}", creds.access_key_id)));
            if let Some(t) = &creds.security_token {
                q.query.push(("x-oss-security-token".into(), t.clone()));
            }
            let canonical = v4_canonical_request(&q, &[]);
            assert_eq!(
                canonical,
                exp["canonical_request"].as_str().unwrap(),
                "{id}: canonical request"
            );
            let sts = v4_string_to_sign("20250115T083000Z", &scope, &canonical);
            assert_eq!(sts, exp["string_to_sign"].as_str().unwrap(), "{id}: string to sign");
            let chain = v4_signing_key_chain(&creds.access_key_secret, "20250115", region);
            assert_eq!(
                v4_signature(&chain.signing_key, &sts),
                exp["signature"].as_str().unwrap(),
                "{id}"
            );
        }
    }

    #[test]
    fn presign_v4_rejects_bad_expiry() {
        let req = SignableRequest::new("GET", Some("b"), Some("k"));
        let base = base_for("https://oss-cn-hangzhou.aliyuncs.com", false);
        let c = Credentials::new("ak", "sk");
        assert!(presign_v4(&req, &c, "cn-hangzhou", vector_time(), 0, &base).is_err());
        assert!(presign_v4(&req, &c, "cn-hangzhou", vector_time(), V4_MAX_PRESIGN_SECS + 1, &base).is_err());
        assert!(presign_v4(&req, &c, "cn-hangzhou", vector_time(), V4_MAX_PRESIGN_SECS, &base).is_ok());
    }

    #[test]
    fn url_building_virtual_host_and_path_style() {
        let vh = base_for("https://oss-cn-hangzhou.aliyuncs.com", false);
        assert_eq!(
            vh.url(Some("bkt"), Some("dir/a b+c.txt"), KeyEncoding::KeepSlash),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/dir/a%20b%2Bc.txt"
        );
        assert_eq!(
            vh.url(Some("bkt"), None, KeyEncoding::KeepSlash),
            "https://bkt.oss-cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(vh.host_for(Some("bkt")), "bkt.oss-cn-hangzhou.aliyuncs.com");
        let ps = base_for("http://127.0.0.1:9000", true);
        assert_eq!(
            ps.url(Some("bkt"), Some("目录/x~y*z"), KeyEncoding::KeepSlash),
            "http://127.0.0.1:9000/bkt/%E7%9B%AE%E5%BD%95/x~y%2Az"
        );
        assert_eq!(
            ps.url(Some("bkt"), Some("a/b"), KeyEncoding::EncodeSlash),
            "http://127.0.0.1:9000/bkt/a%2Fb"
        );
        assert_eq!(
            ps.url(Some("bkt"), None, KeyEncoding::KeepSlash),
            "http://127.0.0.1:9000/bkt/"
        );
        assert_eq!(ps.host_for(Some("bkt")), "127.0.0.1:9000");
    }

    #[test]
    fn v1_subresource_list_follows_the_protocol() {
        for name in [
            "acl",
            "uploads",
            "uploadId",
            "partNumber",
            "append",
            "position",
            "symlink",
            "delete",
            "bucketInfo",
            "location",
            "objectMeta",
            "security-token",
            "continuation-token",
            "versionId",
            "response-content-type",
            "response-content-disposition",
            "x-oss-process",
            "cloudboxes",
        ] {
            assert!(V1_SUBRESOURCES.contains(&name), "{name} must be signed");
        }
        for name in [
            "list-type",
            "prefix",
            "delimiter",
            "max-keys",
            "marker",
            "start-after",
            "fetch-owner",
            "encoding-type",
            "max-parts",
            "part-number-marker",
            "max-uploads",
            "key-marker",
            "upload-id-marker",
        ] {
            assert!(!V1_SUBRESOURCES.contains(&name), "{name} must not be signed");
        }
    }

    #[test]
    fn query_encoding_is_rfc3986() {
        let q = vec![
            ("prefix".to_owned(), "a b/c+d".to_owned()),
            ("uploads".to_owned(), String::new()),
        ];
        assert_eq!(encode_query(&q), "prefix=a%20b%2Fc%2Bd&uploads");
    }

    proptest::proptest! {
        #[test]
        fn percent_encoding_round_trips_and_keeps_only_unreserved(s in "\\PC{0,40}") {
            let encoded = pe(&s);
            let path = pe_path(&s);
            let unreserved = |c: char| c.is_ascii_alphanumeric() || "-_.~%".contains(c);
            proptest::prop_assert!(encoded.chars().all(unreserved), "{}", encoded);
            proptest::prop_assert!(path.chars().all(|c| unreserved(c) || c == '/'), "{}", path);
            let back = percent_encoding::percent_decode_str(&encoded).decode_utf8().unwrap();
            proptest::prop_assert_eq!(back.as_ref(), s.as_str());
            let back = percent_encoding::percent_decode_str(&path).decode_utf8().unwrap();
            proptest::prop_assert_eq!(back.as_ref(), s.as_str());
        }
    }

    #[test]
    fn signing_key_chain_debug_is_redacted() {
        let chain = v4_signing_key_chain("secret", "20250115", "cn-hangzhou");
        assert_eq!(format!("{chain:?}"), "SigningKeyChain(******)");
    }
}
