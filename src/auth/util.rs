//! Small helpers shared by the credential sources: parsing of the `{AccessKeyId, ...}` JSON
//! shape that STS, ECS metadata, credentials URIs and credential processes all answer with,
//! `Expiration` parsing, a jittered exponential backoff (our own, so `auth` does not depend on
//! the client's retry module), HTTP client construction, and secret-free error text.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use rand::Rng;
use serde::Deserialize;

use super::{AuthError, Credentials};

/// Longest excerpt of foreign text (stderr, an error body) we quote in an error message.
pub const MAX_QUOTED_CHARS: usize = 300;

/// The credential triple as STS (`Credentials`), ECS metadata, credentials URIs and
/// credential processes return it (PascalCase field names).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SessionCredentialsJson {
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    pub security_token: Option<String>,
    pub expiration: Option<String>,
    pub code: Option<String>,
}

impl SessionCredentialsJson {
    /// Turns the JSON into `Credentials`. `require_token`/`require_expiration` reflect what the
    /// source promises (ECS and URI answers carry all fields).
    pub fn into_credentials(
        self,
        source_name: &str,
        require_token: bool,
        require_expiration: bool,
    ) -> Result<Credentials, AuthError> {
        let invalid = |message: String| AuthError::InvalidResponse {
            source_name: source_name.to_string(),
            message,
        };
        let id = self
            .access_key_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("missing AccessKeyId".into()))?;
        let secret = self
            .access_key_secret
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("missing AccessKeySecret".into()))?;
        let mut creds = Credentials::new(id, secret);
        match self.security_token.filter(|s| !s.is_empty()) {
            Some(t) => creds = creds.with_token(t),
            None if require_token => return Err(invalid("missing SecurityToken".into())),
            None => {}
        }
        match self.expiration.filter(|s| !s.is_empty()) {
            Some(e) => creds = creds.with_expiration(parse_expiration(&e).map_err(invalid)?),
            None if require_expiration => return Err(invalid("missing Expiration".into())),
            None => {}
        }
        Ok(creds)
    }
}

/// Parses an `Expiration` value: `YYYY-MM-DDThh:mm:ssZ` (what every SDK expects) or any
/// RFC 3339 timestamp.
pub fn parse_expiration(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ") {
        return Ok(t.and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("unparsable Expiration {:?}", truncate(s, 40)))
}

/// At most `max` characters of `s`, with an ellipsis when cut. Used to quote foreign text.
pub fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Text of a reqwest error without its URL (STS URLs could carry signatures).
pub fn reqwest_error_text(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if timeout && !text.contains("timed out") {
        text.push_str(" (timed out)");
    } else if connect && !text.contains("connect") {
        text.push_str(" (connect failed)");
    }
    text
}

/// A reqwest client with the given timeouts; no redirects (a redirect could forward a signed
/// request elsewhere), no proxies from the environment for link-local metadata endpoints.
pub fn http_client(
    source_name: &str,
    connect_timeout: Duration,
    request_timeout: Duration,
    no_proxy: bool,
) -> Result<reqwest::Client, AuthError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ossmount/", env!("CARGO_PKG_VERSION")));
    if no_proxy {
        b = b.no_proxy();
    }
    b.build().map_err(|e| AuthError::Config {
        source_name: source_name.to_string(),
        message: format!("cannot build HTTP client: {}", reqwest_error_text(e)),
    })
}

/// Exponential backoff with jitter: each delay is uniform in `[d/2, d]` where `d` doubles from
/// `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }
    /// The next delay to wait, then doubles the base.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        jitter_between(d / 2, d)
    }
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// A uniformly random duration in `[lo, hi]`.
pub fn jitter_between(lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = (hi - lo).as_micros() as u64;
    lo + Duration::from_micros(rand::rng().random_range(0..=span))
}

/// Whether an environment-style flag value means "on".
pub fn is_truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_expiration_forms() {
        let a = parse_expiration("2025-01-15T09:30:00Z").unwrap();
        let b = parse_expiration("2025-01-15T09:30:00.000+00:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.timestamp(), 1736933400);
        assert!(parse_expiration("tomorrow").is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
        let d2 = b.next_delay();
        assert!(d2 >= Duration::from_secs(1) && d2 <= Duration::from_secs(2));
        b.next_delay();
        let d4 = b.next_delay();
        assert!(d4 >= Duration::from_secs(2) && d4 <= Duration::from_secs(4));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn json_shape_requires_fields() {
        let j: SessionCredentialsJson =
            serde_json::from_str(r#"{"AccessKeyId":"a","AccessKeySecret":"s","Expiration":"2025-01-15T09:30:00Z"}"#)
                .unwrap();
        assert!(
            j.into_credentials("t", true, true)
                .unwrap_err()
                .to_string()
                .contains("SecurityToken")
        );
        let j: SessionCredentialsJson = serde_json::from_str(r#"{"AccessKeyId":"a","AccessKeySecret":"s"}"#).unwrap();
        let c = j.into_credentials("t", false, false).unwrap();
        assert_eq!(c.access_key_id, "a");
        assert!(c.expiration.is_none());
    }

    #[test]
    fn truncate_marks_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
