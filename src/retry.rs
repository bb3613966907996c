//! Backoff with jitter and retry classification, shared by `client` and `auth`.
//!
//! [`RetryConfig`] bounds a call's attempts and total time; [`Backoff`] yields decorrelated
//! jitter delays (`min(max, uniform(initial, 3 × previous))`, AWS architecture blog / object_store);
//! [`classify`] sorts an OSS error answer into what the client does next (PROTOCOL.md §5.2):
//! retry after a delay, correct the clock and re-sign, refresh credentials once, or give up.

use std::time::Duration;

use rand::Rng;

/// Default number of attempts per call (first try included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Default first backoff.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Default ceiling of one backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Default ceiling of the time one call may spend retrying.
pub const DEFAULT_MAX_TOTAL: Duration = Duration::from_secs(60);

/// Error codes that mean "slow down" (retried with backoff whatever the status).
pub const THROTTLE_CODES: &[&str] = &[
    "QpsLimitExceeded",
    "TotalQpsLimitExceeded",
    "DownloadTrafficRateLimitExceeded",
    "UploadTrafficRateLimitExceeded",
    "MetaOperationQpsLimitExceeded",
    "ActiveRequestLimitExceeded",
    "CpuLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
    "SlowDown",
    "Throttling",
    "Throttling.User",
];

/// Error codes that say the credentials were rejected and a refresh may help.
pub const TOKEN_CODES: &[&str] = &["SecurityTokenExpired", "InvalidSecurityToken"];
/// The access key id is unknown: a credential error only when a token was used (an STS AK
/// that expired long ago); with permanent keys it is final.
pub const INVALID_ACCESS_KEY_CODE: &str = "InvalidAccessKeyId";
/// Clock skew beyond 15 minutes.
pub const CLOCK_SKEW_CODE: &str = "RequestTimeTooSkewed";

/// Limits of the retry loop of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts per call, the first included (1 = no retries).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry is started once this much time has passed since the first attempt.
    pub max_total: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_total: DEFAULT_MAX_TOTAL,
        }
    }
}

impl RetryConfig {
    /// No retries at all (tests, probes).
    pub fn no_retry() -> Self {
        RetryConfig {
            max_attempts: 1,
            ..Default::default()
        }
    }
}

/// Decorrelated-jitter backoff: each delay is uniform in `[initial, 3 × previous]`, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    previous: Duration,
}

impl Backoff {
    pub fn new(config: &RetryConfig) -> Self {
        let initial = config.initial_backoff.min(config.max_backoff);
        Backoff {
            initial,
            max: config.max_backoff,
            previous: initial,
        }
    }

    /// The next delay to wait before retrying.
    pub fn next_delay(&mut self) -> Duration {
        let low = self.initial.as_secs_f64();
        let high = (self.previous.as_secs_f64() * 3.0).max(low);
        let pick = if high > low {
            rand::rng().random_range(low..=high)
        } else {
            low
        };
        let delay = Duration::from_secs_f64(pick).min(self.max);
        self.previous = delay;
        delay
    }
}

/// What to do with a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Transient (5xx, throttling, 408, network): back off and retry.
    Retryable,
    /// `RequestTimeTooSkewed`: correct the clock offset from the response `Date`, re-sign, retry.
    ClockSkew,
    /// Credentials rejected: refresh once, re-sign, retry once.
    Credential,
    /// Final; never retried.
    Fatal,
}

/// Classify an error answer by HTTP status and OSS `<Code>`; `used_token` says whether the
/// rejected request carried an STS security token.
pub fn classify(status: u16, code: &str, used_token: bool) -> RetryClass {
    if code == CLOCK_SKEW_CODE {
        return RetryClass::ClockSkew;
    }
    if TOKEN_CODES.contains(&code) || (code == INVALID_ACCESS_KEY_CODE && used_token) {
        return RetryClass::Credential;
    }
    if THROTTLE_CODES.contains(&code) || status >= 500 || status == 429 || status == 408 {
        return RetryClass::Retryable;
    }
    RetryClass::Fatal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_protocol_table() {
        assert_eq!(classify(503, "ServiceUnavailable", false), RetryClass::Retryable);
        assert_eq!(classify(500, "InternalError", false), RetryClass::Retryable);
        assert_eq!(classify(502, "", false), RetryClass::Retryable);
        assert_eq!(classify(429, "QpsLimitExceeded", false), RetryClass::Retryable);
        assert_eq!(classify(408, "RequestTimeout", false), RetryClass::Retryable);
        assert_eq!(
            classify(503, "MetaOperationQpsLimitExceeded", false),
            RetryClass::Retryable
        );
        // A throttle code is retried whatever status carries it.
        assert_eq!(
            classify(400, "DownloadTrafficRateLimitExceeded", false),
            RetryClass::Retryable
        );
        assert_eq!(classify(403, "RequestTimeTooSkewed", false), RetryClass::ClockSkew);
        assert_eq!(classify(403, "SecurityTokenExpired", true), RetryClass::Credential);
        assert_eq!(classify(403, "InvalidSecurityToken", true), RetryClass::Credential);
        assert_eq!(classify(403, "InvalidAccessKeyId", true), RetryClass::Credential);
        assert_eq!(classify(403, "InvalidAccessKeyId", false), RetryClass::Fatal);
        assert_eq!(classify(403, "AccessDenied", true), RetryClass::Fatal);
        assert_eq!(classify(403, "SignatureDoesNotMatch", true), RetryClass::Fatal);
        assert_eq!(classify(404, "NoSuchKey", false), RetryClass::Fatal);
        assert_eq!(classify(409, "PositionNotEqualToLength", false), RetryClass::Fatal);
        assert_eq!(classify(416, "InvalidRange", false), RetryClass::Fatal);
        assert_eq!(classify(412, "PreconditionFailed", false), RetryClass::Fatal);
    }

    #[test]
    fn backoff_stays_within_bounds_and_grows() {
        let cfg = RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..Default::default()
        };
        let mut b = Backoff::new(&cfg);
        let mut prev = cfg.initial_backoff;
        let mut max_seen = Duration::ZERO;
        for _ in 0..200 {
            let d = b.next_delay();
            assert!(d >= cfg.initial_backoff, "{d:?} below initial");
            assert!(d <= cfg.max_backoff, "{d:?} above max");
            assert!(
                d <= (prev * 3).max(cfg.initial_backoff),
                "{d:?} above 3x previous {prev:?}"
            );
            prev = d;
            max_seen = max_seen.max(d);
        }
        // With 200 draws the decorrelated walk reaches well above the initial delay.
        assert!(
            max_seen > Duration::from_millis(500),
            "backoff never grew: {max_seen:?}"
        );
    }

    #[test]
    fn backoff_with_initial_above_max_is_capped() {
        let cfg = RetryConfig {
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        let mut b = Backoff::new(&cfg);
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn defaults_match_the_brief() {
        let c = RetryConfig::default();
        assert_eq!(c.max_attempts, 10);
        assert_eq!(c.initial_backoff, Duration::from_millis(100));
        assert_eq!(c.max_backoff, Duration::from_secs(10));
        assert_eq!(c.max_total, Duration::from_secs(60));
    }
}
