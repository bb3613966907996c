//! Credentials and where they come from. `Credentials` is the (possibly temporary) key triple,
//! with a `Debug` that never prints the secret or the token. `CredentialProvider` is the one
//! trait every source implements (static keys, environment, profile files, AssumeRole, OIDC,
//! ECS metadata, credential process, credentials URI); the client calls it before every
//! attempt, so a provider must answer from its cache in the normal case. The signers (V4, V1)
//! live in `signer`, as pure functions with the date injected.

pub mod signer;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// An access key pair, with an STS security token when temporary.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: Option<String>,
    /// When temporary credentials stop working (from the source's `Expiration`).
    pub expiration: Option<DateTime<Utc>>,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: None,
            expiration: None,
        }
    }
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }
    pub fn with_expiration(mut self, expiration: DateTime<Utc>) -> Self {
        self.expiration = Some(expiration);
        self
    }
    pub fn is_temporary(&self) -> bool {
        self.security_token.is_some()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"******")
            .field("security_token", &self.security_token.as_ref().map(|_| "******"))
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// Why credentials could not be had. Messages name the source and the cause, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The source answered, but with an error (e.g. STS `NoPermission`).
    #[error("{source_name} failed: {code}: {message}")]
    Service { source_name: String, code: String, message: String, request_id: Option<String> },
    /// The source could not be reached or did not answer in time.
    #[error("{source_name} unreachable: {message}")]
    Unreachable { source_name: String, message: String },
    /// The source answered something we cannot understand.
    #[error("{source_name} gave an invalid answer: {message}")]
    InvalidResponse { source_name: String, message: String },
    /// The configuration of the source is wrong (bad ARN, duration, missing file ...).
    #[error("{source_name}: {message}")]
    Config { source_name: String, message: String },
    /// No source in the chain produced credentials.
    #[error("no credentials found: {0}")]
    NotFound(String),
    /// The credentials expired and refreshing them failed; carries the last refresh error.
    #[error("credentials expired and refresh failed: {last_error}")]
    Expired { last_error: String },
}

/// One source of credentials.
#[async_trait]
pub trait CredentialProvider: Send + Sync + 'static {
    /// Current credentials. Called before every request attempt: must be cheap (answer from
    /// cache) except when nothing valid is cached.
    async fn credentials(&self) -> Result<Arc<Credentials>, AuthError>;

    /// OSS rejected `rejected` as expired or invalid: fetch fresh credentials unless that has
    /// already happened since `rejected` was handed out (so N concurrent failures refresh once).
    async fn refresh_after_rejection(&self, rejected: &Credentials) -> Result<Arc<Credentials>, AuthError> {
        let _ = rejected;
        self.credentials().await
    }

    /// A short human description of the source for messages, e.g.
    /// `AssumeRole acs:ram::123:role/x`.
    fn describe(&self) -> String;
}

/// Fixed credentials (flags or environment). Never refreshes.
#[derive(Debug)]
pub struct StaticProvider {
    creds: Arc<Credentials>,
    name: String,
}

impl StaticProvider {
    pub fn new(creds: Credentials, name: impl Into<String>) -> Self {
        StaticProvider { creds: Arc::new(creds), name: name.into() }
    }
}

#[async_trait]
impl CredentialProvider for StaticProvider {
    async fn credentials(&self) -> Result<Arc<Credentials>, AuthError> {
        Ok(self.creds.clone())
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[async_trait]
impl<P: CredentialProvider + ?Sized> CredentialProvider for Arc<P> {
    async fn credentials(&self) -> Result<Arc<Credentials>, AuthError> {
        (**self).credentials().await
    }
    async fn refresh_after_rejection(&self, rejected: &Credentials) -> Result<Arc<Credentials>, AuthError> {
        (**self).refresh_after_rejection(rejected).await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_and_token() {
        let c = Credentials::new("AKID", "topsecretvalue").with_token("tokenvalue123");
        let s = format!("{c:?}");
        assert!(s.contains("AKID"));
        assert!(!s.contains("topsecretvalue"));
        assert!(!s.contains("tokenvalue123"));
    }
}
