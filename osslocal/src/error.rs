//! OSS error answers: HTTP status, `Code`, `Message`, `EC` and operation-specific extra
//! elements (`StringToSign`, `Key`, `BucketName`, ...). The server renders them as the XML
//! `<Error>` body (or base64 in `x-oss-err` for HEAD) with `x-oss-request-id` and `x-oss-ec`.

/// One OSS error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OssError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Fine-grained error code, e.g. `0002-00000007`.
    pub ec: &'static str,
    /// Extra elements after `HostId`, in order (name, text).
    pub extra: Vec<(&'static str, String)>,
}

impl OssError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>, ec: &'static str) -> Self {
        OssError { status, code, message: message.into(), ec, extra: Vec::new() }
    }
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(403, "AccessDenied", message, "0003-00000001")
    }
    pub fn no_such_key(key: &str) -> Self {
        Self::new(404, "NoSuchKey", "The specified key does not exist.", "0026-00000001").with("Key", key)
    }
    pub fn no_such_bucket(bucket: &str) -> Self {
        Self::new(404, "NoSuchBucket", "The specified bucket does not exist.", "0015-00000101").with("BucketName", bucket)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidArgument", message, "0016-00000001")
    }
    pub fn invalid_access_key_id(ak: &str) -> Self {
        Self::new(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.", "0002-00000002")
            .with("OSSAccessKeyId", ak)
    }
    pub fn security_token_expired(token: &str) -> Self {
        Self::new(403, "SecurityTokenExpired", "The security token you provided has expired.", "0002-00000007")
            .with("SecurityToken", token)
    }
    pub fn invalid_security_token(message: impl Into<String>) -> Self {
        Self::new(403, "InvalidSecurityToken", message, "0002-00000006")
    }
    pub fn request_time_too_skewed(request_time: &str, server_time: &str) -> Self {
        Self::new(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            "0002-00000504",
        )
        .with("RequestTime", request_time)
        .with("ServerTime", server_time)
    }
    pub fn malformed_xml() -> Self {
        Self::new(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.", "0016-00000702")
    }
    pub fn internal_error() -> Self {
        Self::new(500, "InternalError", "We encountered an internal error. Please try again.", "0000-00000000")
    }
}

impl std::fmt::Display for OssError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for OssError {}
