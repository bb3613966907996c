//! The process environment as the credential code sees it, and the environment-variable
//! credential source. `Env` is a snapshot (a map) so that the builder and the default chain
//! can be tested without touching the real, process-wide environment; `Env::from_process()`
//! is what production uses.
//!
//! Variable precedence for static keys (PROTOCOL.md §8.1, §8.8): `ALIBABA_CLOUD_ACCESS_KEY_ID`
//! / `_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN`, then the OSS SDK names `OSS_ACCESS_KEY_ID` /
//! `OSS_ACCESS_KEY_SECRET` / `OSS_SESSION_TOKEN`, then the ossfs 1.x legacy names
//! `OSSACCESSKEYID` / `OSSSECRETACCESSKEY` / `OSSSESSIONTOKEN`. A key id without its secret
//! (or the reverse) is a configuration error, not a silent fall-through.

use std::collections::HashMap;
use std::path::PathBuf;

use super::util::is_truthy;
use super::{AuthError, Credentials};

/// One family of environment variable names for a key triple.
struct EnvNames {
    id: &'static str,
    secret: &'static str,
    token: &'static str,
}

const ENV_FAMILIES: [EnvNames; 3] = [
    EnvNames {
        id: "ALIBABA_CLOUD_ACCESS_KEY_ID",
        secret: "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        token: "ALIBABA_CLOUD_SECURITY_TOKEN",
    },
    EnvNames {
        id: "OSS_ACCESS_KEY_ID",
        secret: "OSS_ACCESS_KEY_SECRET",
        token: "OSS_SESSION_TOKEN",
    },
    EnvNames {
        id: "OSSACCESSKEYID",
        secret: "OSSSECRETACCESSKEY",
        token: "OSSSESSIONTOKEN",
    },
];

/// A snapshot of environment variables (empty values count as unset).
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl std::fmt::Debug for Env {
    // Values may be secrets: list names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

impl Env {
    /// The real process environment (non-UTF-8 values are ignored).
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An explicit set of variables (tests, embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Env {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    /// Adds or replaces one variable.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// The value of `name`, trimmed, if set and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// Whether `name` is set to a true-ish value (`1`, `true`, `yes`, `on`).
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(is_truthy)
    }

    /// `$HOME`, if set.
    pub fn home(&self) -> Option<PathBuf> {
        self.get("HOME").map(PathBuf::from)
    }
}

/// Static credentials from the environment, if any family of variables is set.
/// Returns the credentials and the name of the id variable that supplied them.
pub fn env_credentials(env: &Env) -> Result<Option<(Credentials, &'static str)>, AuthError> {
    for fam in &ENV_FAMILIES {
        match (env.get(fam.id), env.get(fam.secret)) {
            (Some(id), Some(secret)) => {
                let mut c = Credentials::new(id, secret);
                if let Some(t) = env.get(fam.token) {
                    c = c.with_token(t);
                }
                return Ok(Some((c, fam.id)));
            }
            (Some(_), None) => {
                return Err(AuthError::Config {
                    source_name: "environment".into(),
                    message: format!("{} is set but {} is not", fam.id, fam.secret),
                });
            }
            (None, Some(_)) => {
                return Err(AuthError::Config {
                    source_name: "environment".into(),
                    message: format!("{} is set but {} is not", fam.secret, fam.id),
                });
            }
            (None, None) => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_token() {
        let env = Env::from_pairs([
            ("OSS_ACCESS_KEY_ID", "oss-id"),
            ("OSS_ACCESS_KEY_SECRET", "oss-secret"),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ali-id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ali-secret"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "ali-token"),
        ]);
        let (c, from) = env_credentials(&env).unwrap().unwrap();
        assert_eq!(c.access_key_id, "ali-id");
        assert_eq!(c.security_token.as_deref(), Some("ali-token"));
        assert_eq!(from, "ALIBABA_CLOUD_ACCESS_KEY_ID");

        let env = Env::from_pairs([
            ("OSSACCESSKEYID", "legacy"),
            ("OSSSECRETACCESSKEY", "s"),
            ("OSSSESSIONTOKEN", "t"),
        ]);
        let (c, from) = env_credentials(&env).unwrap().unwrap();
        assert_eq!((c.access_key_id.as_str(), from), ("legacy", "OSSACCESSKEYID"));
        assert!(c.is_temporary());
    }

    #[test]
    fn half_set_is_an_error_and_empty_is_unset() {
        let env = Env::from_pairs([("OSS_ACCESS_KEY_ID", "x")]);
        let e = env_credentials(&env).unwrap_err().to_string();
        assert!(e.contains("OSS_ACCESS_KEY_SECRET"), "{e}");
        let env = Env::from_pairs([
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", " "),
        ]);
        assert!(env_credentials(&env).unwrap().is_none());
    }

    #[test]
    fn debug_lists_names_only() {
        let env = Env::from_pairs([("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "hunter2")]);
        assert!(!format!("{env:?}").contains("hunter2"));
    }
}
