//! Credentials printed by an external command (`--credential-process`, aliyun CLI `External`
//! mode, ossfs `credential_process`). The command runs through `sh -c` in its own process
//! group, with stdin closed, and must finish within [`PROCESS_TIMEOUT`] (the whole group is
//! killed otherwise). Its stdout is JSON, either
//! `{"AccessKeyId","AccessKeySecret","SecurityToken"?,"Expiration"?}` or the aliyun CLI shape
//! `{"mode":"AK"|"StsToken","access_key_id","access_key_secret","sts_token"?,"expiration"?}`.
//! A non-zero exit or unparsable output is an error that quotes (truncated) stderr but never
//! stdout, which holds secrets.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::cache::CredentialSource;
use super::util::{MAX_QUOTED_CHARS, SessionCredentialsJson, parse_expiration, truncate};
use super::{AuthError, Credentials};

/// Longest a credential process may run.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest stdout we accept from it.
const PROCESS_MAX_STDOUT_BYTES: usize = 64 * 1024;

/// The aliyun CLI `External` JSON shape.
#[derive(Deserialize)]
struct CliShape {
    mode: Option<String>,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    sts_token: Option<String>,
    expiration: Option<serde_json::Value>,
}

/// Runs a command for credentials.
pub struct ProcessSource {
    command: String,
    timeout: Duration,
}

impl ProcessSource {
    pub fn new(command: impl Into<String>) -> Result<Self, AuthError> {
        let command = command.into();
        if command.trim().is_empty() {
            return Err(AuthError::Config {
                source_name: "credential process".into(),
                message: "empty command".into(),
            });
        }
        Ok(ProcessSource {
            command,
            timeout: PROCESS_TIMEOUT,
        })
    }

    /// A shorter timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn err(&self, message: String) -> AuthError {
        AuthError::InvalidResponse {
            source_name: self.describe(),
            message,
        }
    }
}

/// The first word of the command, for messages (arguments may carry secrets).
fn program_name(command: &str) -> &str {
    command.split_whitespace().next().unwrap_or("")
}

fn parse_output(stdout: &[u8]) -> Result<Credentials, String> {
    if stdout.len() > PROCESS_MAX_STDOUT_BYTES {
        return Err(format!("output larger than {PROCESS_MAX_STDOUT_BYTES} bytes"));
    }
    let value: serde_json::Value = serde_json::from_slice(stdout)
        .map_err(|e| format!("output is not JSON (line {}, column {})", e.line(), e.column()))?;
    if value.get("AccessKeyId").is_some() {
        let j: SessionCredentialsJson =
            serde_json::from_value(value).map_err(|_| "output JSON has unexpected field types".to_string())?;
        return j
            .into_credentials("credential process", false, false)
            .map_err(|e| e.to_string());
    }
    if value.get("access_key_id").is_some() {
        let j: CliShape =
            serde_json::from_value(value).map_err(|_| "output JSON has unexpected field types".to_string())?;
        if let Some(m) = j.mode.as_deref() {
            if m != "AK" && m != "StsToken" {
                return Err(format!("unsupported mode {:?} (need AK or StsToken)", truncate(m, 30)));
            }
        }
        let id = j
            .access_key_id
            .filter(|s| !s.is_empty())
            .ok_or("missing access_key_id")?;
        let secret = j
            .access_key_secret
            .filter(|s| !s.is_empty())
            .ok_or("missing access_key_secret")?;
        let mut c = Credentials::new(id, secret);
        if let Some(t) = j.sts_token.filter(|s| !s.is_empty()) {
            c = c.with_token(t);
        }
        match j.expiration {
            Some(serde_json::Value::String(s)) => c = c.with_expiration(parse_expiration(&s)?),
            Some(serde_json::Value::Number(n)) => {
                let secs = n.as_i64().ok_or("bad expiration")?;
                let t = chrono::DateTime::from_timestamp(secs, 0).ok_or("bad expiration")?;
                c = c.with_expiration(t);
            }
            Some(serde_json::Value::Null) | None => {}
            Some(_) => return Err("bad expiration".into()),
        }
        return Ok(c);
    }
    Err("output JSON has neither AccessKeyId nor access_key_id".into())
}

impl std::fmt::Debug for ProcessSource {
    // The program name only: arguments may carry secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSource")
            .field("program", &program_name(&self.command))
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[async_trait]
impl CredentialSource for ProcessSource {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&self.command)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| AuthError::Config {
            source_name: self.describe(),
            message: format!("cannot start sh: {e}"),
        })?;
        let pgid = child.id();
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(self.err(format!("waiting for the command: {e}"))),
            Err(_) => {
                if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
                    let _ =
                        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
                return Err(AuthError::Unreachable {
                    source_name: self.describe(),
                    message: format!("did not finish within {} s; killed", self.timeout.as_secs_f32()),
                });
            }
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let quoted = if stderr.is_empty() {
            String::new()
        } else {
            format!("; stderr: {}", truncate(stderr, MAX_QUOTED_CHARS))
        };
        if !output.status.success() {
            return Err(self.err(format!("exited with {}{quoted}", output.status)));
        }
        parse_output(&output.stdout).map_err(|m| self.err(format!("{m}{quoted}")))
    }

    fn describe(&self) -> String {
        format!("credential process {}", program_name(&self.command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_shapes() {
        let c = parse_output(
            br#"{"AccessKeyId":"a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.security_token.as_deref()),
            ("a", Some("t"))
        );
        let c = parse_output(
            br#"{"mode":"StsToken","access_key_id":"b","access_key_secret":"s","sts_token":"t","expiration":1893456000}"#,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "b");
        assert_eq!(c.expiration.unwrap().timestamp(), 1893456000);
        assert!(parse_output(b"{}").is_err());
        assert!(parse_output(br#"{"mode":"RamRoleArn","access_key_id":"b","access_key_secret":"s"}"#).is_err());
    }

    #[test]
    fn garbage_error_does_not_echo_stdout() {
        let e = parse_output(b"AccessKeySecret=hunter2 not json").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
