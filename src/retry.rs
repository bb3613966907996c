//! Backoff with jitter and retry classification, shared by `client` and `auth`.
