//! The default credential chain (PROTOCOL.md §8.2), used when nothing explicit is configured:
//! environment → OIDC (RRSA) → aliyun CLI profile → shared credentials ini → ECS RAM role →
//! credentials URI. Entries are tried in order; the first that produces credentials is
//! remembered and used alone from then on (as the SDKs' `reuse_last_provider`), so a later
//! outage of that source is reported as such rather than silently switching identity.
//! An entry whose configuration is broken (e.g. an unparsable profile) fails at its turn with
//! its configuration error; if every entry fails, the error lists each entry and why.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::cache::CredentialSource;
use super::{AuthError, Credentials};

const NOT_CHOSEN: usize = usize::MAX;

/// One step of the chain: a working source, or the reason it could not be set up.
pub struct ChainEntry {
    pub label: String,
    pub source: Result<Box<dyn CredentialSource>, AuthError>,
}

/// The default chain as a [`CredentialSource`] (wrap it in a `CachingProvider`).
pub struct DefaultChain {
    entries: Vec<ChainEntry>,
    /// Entries that were not configured at all, for the "nothing found" message.
    skipped: Vec<String>,
    chosen: AtomicUsize,
}

impl DefaultChain {
    pub fn new(entries: Vec<ChainEntry>, skipped: Vec<String>) -> Self {
        DefaultChain {
            entries,
            skipped,
            chosen: AtomicUsize::new(NOT_CHOSEN),
        }
    }

    /// Description of the remembered entry, if one has worked.
    pub fn chosen(&self) -> Option<String> {
        let i = self.chosen.load(Ordering::SeqCst);
        self.entries.get(i).map(|e| match &e.source {
            Ok(s) => s.describe(),
            Err(_) => e.label.clone(),
        })
    }

    /// Labels of the configured entries, in order.
    pub fn labels(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.label.clone()).collect()
    }
}

impl std::fmt::Debug for DefaultChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultChain")
            .field("entries", &self.labels())
            .field("skipped", &self.skipped)
            .field("chosen", &self.chosen())
            .finish()
    }
}

#[async_trait]
impl CredentialSource for DefaultChain {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        let chosen = self.chosen.load(Ordering::SeqCst);
        if let Some(ChainEntry { source: Ok(s), .. }) = self.entries.get(chosen) {
            return s.fetch().await;
        }
        let mut failures = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            match &entry.source {
                Err(e) => failures.push(format!("{}: {e}", entry.label)),
                Ok(s) => match s.fetch().await {
                    Ok(c) => {
                        self.chosen.store(i, Ordering::SeqCst);
                        tracing::info!(source = %s.describe(), "default credential chain: using this source");
                        return Ok(c);
                    }
                    Err(e) => failures.push(format!("{}: {e}", entry.label)),
                },
            }
        }
        let mut msg = failures.join("; ");
        if !self.skipped.is_empty() {
            if !msg.is_empty() {
                msg.push_str("; ");
            }
            msg.push_str(&format!("not configured: {}", self.skipped.join(", ")));
        }
        Err(AuthError::NotFound(format!(
            "{msg}. Set ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET, use --profile, or --role-arn"
        )))
    }

    fn describe(&self) -> String {
        match self.chosen() {
            Some(d) => format!("default chain: {d}"),
            None => format!("default chain ({})", self.labels().join(" → ")),
        }
    }
}
