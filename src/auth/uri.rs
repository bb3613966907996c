//! Credentials from a URI (`--credentials-uri`, `ALIBABA_CLOUD_CREDENTIALS_URI`; PROTOCOL.md
//! §8.6): `GET` answers 200 with `{"Code":"Success","AccessKeyId","AccessKeySecret",
//! "SecurityToken","Expiration"}`, all fields required. The URI may hold a secret in its query:
//! messages only name its scheme, host and path.

use std::time::Duration;

use async_trait::async_trait;

use super::cache::CredentialSource;
use super::sts::read_limited;
use super::util::{SessionCredentialsJson, http_client, reqwest_error_text, truncate};
use super::{AuthError, Credentials};

/// Connect timeout of the credentials URI.
pub const URI_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Whole-request timeout of the credentials URI.
pub const URI_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest answer we read.
const URI_MAX_BODY_BYTES: usize = 64 * 1024;

/// Credentials from an HTTP(S) endpoint.
pub struct UriSource {
    url: url::Url,
    display: String,
    http: reqwest::Client,
}

impl UriSource {
    pub fn new(uri: &str) -> Result<Self, AuthError> {
        let url = url::Url::parse(uri.trim()).map_err(|e| AuthError::Config {
            source_name: "credentials URI".into(),
            message: format!("invalid URI: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(AuthError::Config {
                source_name: "credentials URI".into(),
                message: format!(
                    "unsupported URI scheme {:?}: need http(s)://host/...",
                    truncate(url.scheme(), 20)
                ),
            });
        }
        let mut shown = url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        let display = shown.to_string();
        let http = http_client("credentials URI", URI_CONNECT_TIMEOUT, URI_REQUEST_TIMEOUT, false)?;
        Ok(UriSource { url, display, http })
    }
}

impl std::fmt::Debug for UriSource {
    // The URI without query, fragment or user info (they may carry a secret).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UriSource").field("uri", &self.display).finish()
    }
}

#[async_trait]
impl CredentialSource for UriSource {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        let name = self.describe();
        let resp = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| AuthError::Unreachable {
                source_name: name.clone(),
                message: reqwest_error_text(e),
            })?;
        let status = resp.status();
        let body = read_limited(resp, URI_MAX_BODY_BYTES)
            .await
            .map_err(|e| AuthError::Unreachable {
                source_name: name.clone(),
                message: e,
            })?;
        if !status.is_success() {
            return Err(AuthError::Unreachable {
                source_name: name,
                message: format!("HTTP {status}"),
            });
        }
        let json: SessionCredentialsJson = serde_json::from_slice(&body).map_err(|e| AuthError::InvalidResponse {
            source_name: name.clone(),
            message: format!("not the expected JSON: {e}"),
        })?;
        if json.code.as_deref() != Some("Success") {
            return Err(AuthError::Service {
                source_name: name,
                code: json.code.unwrap_or_else(|| "(missing)".into()),
                message: "answer did not have Code=Success".into(),
                request_id: None,
            });
        }
        json.into_credentials(&name, true, true)
    }

    fn describe(&self) -> String {
        format!("credentials URI {}", self.display)
    }
}
