//! ECS instance RAM role credentials from the instance metadata service (PROTOCOL.md §8.5).
//! IMDSv2 first (`PUT /latest/api/token`, then the token in `X-aliyun-ecs-metadata-token`);
//! if the token PUT fails, IMDSv1 (no token) unless `ALIBABA_CLOUD_IMDSV1_DISABLED` is set.
//! The role name is configured or discovered (`GET .../security-credentials/`). Every request
//! has a [`ECS_TIMEOUT`] budget; an answer whose `Code` is not `Success` is an error. The base
//! URL can be overridden with `OSSMOUNT_ECS_METADATA_ENDPOINT` (tests).

use std::time::Duration;

use async_trait::async_trait;

use super::cache::CredentialSource;
use super::sts::read_limited;
use super::util::{SessionCredentialsJson, http_client, reqwest_error_text, truncate};
use super::{AuthError, Credentials};

/// The metadata service address.
pub const ECS_METADATA_DEFAULT_ENDPOINT: &str = "http://100.100.100.200";
/// Environment variable overriding the metadata base URL (tests).
pub const ECS_METADATA_ENDPOINT_ENV: &str = "OSSMOUNT_ECS_METADATA_ENDPOINT";
/// Connect and whole-request timeout of every metadata request.
pub const ECS_TIMEOUT: Duration = Duration::from_secs(1);
/// Lifetime requested for an IMDSv2 session token, in seconds (what the SDKs use).
pub const ECS_METADATA_TOKEN_TTL_SECS: u32 = 21600;
/// Longest metadata answer we read.
const ECS_MAX_BODY_BYTES: usize = 64 * 1024;

const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

/// Credentials of the instance's RAM role.
pub struct EcsSource {
    base_url: String,
    role_name: Option<String>,
    imdsv1_disabled: bool,
    http: reqwest::Client,
}

impl EcsSource {
    /// `base_url` e.g. [`ECS_METADATA_DEFAULT_ENDPOINT`]; `role_name` `None` = discover.
    pub fn new(base_url: &str, role_name: Option<String>, imdsv1_disabled: bool) -> Result<Self, AuthError> {
        let http = http_client("ECS metadata", ECS_TIMEOUT, ECS_TIMEOUT, true)?;
        let role_name = role_name.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        if let Some(r) = &role_name {
            if r.contains('/') || r.contains('?') || r.contains('#') {
                return Err(AuthError::Config {
                    source_name: "ECS RAM role".into(),
                    message: format!("invalid role name {:?}", truncate(r, 80)),
                });
            }
        }
        Ok(EcsSource {
            base_url: base_url.trim_end_matches('/').to_string(),
            role_name,
            imdsv1_disabled,
            http,
        })
    }

    fn name(&self) -> String {
        match &self.role_name {
            Some(r) => format!("ECS RAM role {r}"),
            None => "ECS RAM role".to_string(),
        }
    }

    fn unreachable(&self, message: String) -> AuthError {
        AuthError::Unreachable {
            source_name: self.name(),
            message,
        }
    }

    /// IMDSv2 token, or `None` to fall back to IMDSv1.
    async fn session_token(&self) -> Result<Option<String>, AuthError> {
        let r = self
            .http
            .put(format!("{}/latest/api/token", self.base_url))
            .header(
                "X-aliyun-ecs-metadata-token-ttl-seconds",
                ECS_METADATA_TOKEN_TTL_SECS.to_string(),
            )
            .send()
            .await;
        let failure = match r {
            Ok(resp) if resp.status().is_success() => match read_limited(resp, ECS_MAX_BODY_BYTES).await {
                Ok(b) => match String::from_utf8(b) {
                    Ok(t) if !t.trim().is_empty() => return Ok(Some(t.trim().to_string())),
                    _ => "empty or non-UTF-8 token".to_string(),
                },
                Err(e) => e,
            },
            Ok(resp) => format!("HTTP {}", resp.status()),
            Err(e) => reqwest_error_text(e),
        };
        if self.imdsv1_disabled {
            Err(self.unreachable(format!(
                "IMDSv2 token request failed ({failure}) and IMDSv1 is disabled"
            )))
        } else {
            tracing::debug!(reason = %failure, "IMDSv2 token unavailable; falling back to IMDSv1");
            Ok(None)
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<Vec<u8>, AuthError> {
        let mut req = self.http.get(format!("{}{}", self.base_url, path));
        if let Some(t) = token {
            req = req.header("X-aliyun-ecs-metadata-token", t);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(reqwest_error_text(e)))?;
        let status = resp.status();
        if status.as_u16() == 404 {
            return Err(AuthError::Config {
                source_name: self.name(),
                message: format!("{path}: not found (HTTP 404): is a RAM role attached to this instance?"),
            });
        }
        if !status.is_success() {
            return Err(self.unreachable(format!("{path}: HTTP {status}")));
        }
        read_limited(resp, ECS_MAX_BODY_BYTES)
            .await
            .map_err(|e| self.unreachable(e))
    }
}

impl std::fmt::Debug for EcsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsSource")
            .field("base_url", &self.base_url)
            .field("role_name", &self.role_name)
            .field("imdsv1_disabled", &self.imdsv1_disabled)
            .finish()
    }
}

#[async_trait]
impl CredentialSource for EcsSource {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        let token = self.session_token().await?;
        let role = match &self.role_name {
            Some(r) => r.clone(),
            None => {
                let body = self.get(CREDENTIALS_PATH, token.as_deref()).await?;
                let text = String::from_utf8_lossy(&body);
                text.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| AuthError::InvalidResponse {
                        source_name: self.name(),
                        message: "no RAM role attached".into(),
                    })?
            }
        };
        let body = self.get(&format!("{CREDENTIALS_PATH}{role}"), token.as_deref()).await?;
        let name = format!("ECS RAM role {role}");
        let json: SessionCredentialsJson = serde_json::from_slice(&body).map_err(|e| AuthError::InvalidResponse {
            source_name: name.clone(),
            message: format!("not the expected JSON: {e}"),
        })?;
        match json.code.as_deref() {
            Some("Success") => {}
            other => {
                return Err(AuthError::Service {
                    source_name: name,
                    code: other.unwrap_or("(missing)").to_string(),
                    message: "metadata service did not return Code=Success".into(),
                    request_id: None,
                });
            }
        }
        json.into_credentials(&name, true, true)
    }

    fn describe(&self) -> String {
        self.name()
    }
}
