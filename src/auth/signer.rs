//! OSS request signing: V4 (OSS4-HMAC-SHA256) and V1 (HMAC-SHA1), pure functions.
