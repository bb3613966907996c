//! Turns a [`CredentialsConfig`] (plus the environment) into a ready credential provider,
//! validating everything up front so that a bad ARN, duration, policy, session name, missing
//! OIDC token file, missing profile or unreadable file stops the mount with a one-line
//! message before anything starts.
//!
//! Precedence of explicit sources (at most one may be given, else it is an error):
//! `--access-key-id/--access-key-secret[/--security-token]`, `--credential-process`,
//! `--credentials-uri`, `--ecs-ram-role`, `--profile`/`--credentials-file` (the ini file first,
//! then the aliyun CLI config). With none, the default chain (PROTOCOL.md §8.2) runs.
//! `--role-arn` then assumes that role *on top of* whatever the base is (role chaining works:
//! STS base credentials are sent with their `SecurityToken`); `--role-session-name`,
//! `--policy`, `--duration`, `--external-id` require `--role-arn`. `--sts-endpoint` applies to
//! every STS call, including roles and OIDC from profiles and the default chain.
//!
//! The result is one [`CachingProvider`] over the chosen source: hand
//! [`BuiltCredentials::provider`] to the client and call [`BuiltCredentials::spawn_refresher`]
//! once the runtime is up.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::cache::{CachingProvider, CredentialSource, RefreshTarget, RefresherHandle, spawn_refresher};
use super::chain::{ChainEntry, DefaultChain};
use super::cli_config::{default_cli_config_path, load_cli_profile};
use super::ecs::{ECS_METADATA_DEFAULT_ENDPOINT, ECS_METADATA_ENDPOINT_ENV, EcsSource};
use super::env::{Env, env_credentials};
use super::process::ProcessSource;
use super::profile::{find_default_ini, ini_has_profile, load_ini_profile, read_credential_file};
use super::sts::{
    ALLOW_SHORT_DURATION_ENV, AssumeRoleSource, DEFAULT_DURATION_SECS, OidcSource, RoleSessionParams, StsClient,
    default_session_name, resolve_sts_endpoint,
};
use super::uri::UriSource;
use super::{AuthError, CredentialProvider, Credentials, StaticProvider};
use crate::config::CredentialsConfig;

/// Where STS is for one role (explicit endpoint, region, VPC flag).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StsSpec {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub vpc: bool,
}

/// A parsed, not yet validated, description of a credential source.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    Static {
        creds: Credentials,
        name: String,
    },
    AssumeRole {
        base: Box<SourceSpec>,
        params: RoleSessionParams,
        sts: StsSpec,
    },
    Oidc {
        params: RoleSessionParams,
        provider_arn: String,
        token_file: PathBuf,
        sts: StsSpec,
    },
    Ecs {
        role_name: Option<String>,
    },
    Process {
        command: String,
    },
    Uri {
        uri: String,
    },
}

/// Fixed credentials as a source.
pub struct StaticSource {
    creds: Credentials,
    name: String,
}

impl StaticSource {
    pub fn new(creds: Credentials, name: impl Into<String>) -> Self {
        StaticSource {
            creds,
            name: name.into(),
        }
    }
}

impl std::fmt::Debug for StaticSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticSource")
            .field("name", &self.name)
            .field("creds", &self.creds)
            .finish()
    }
}

#[async_trait]
impl CredentialSource for StaticSource {
    async fn fetch(&self) -> Result<Credentials, AuthError> {
        Ok(self.creds.clone())
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// What `build_credentials` returns: the provider for the client and the handle to refresh it.
pub struct BuiltCredentials {
    cache: Arc<CachingProvider<Box<dyn CredentialSource>>>,
}

impl std::fmt::Debug for BuiltCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltCredentials")
            .field("source", &self.describe())
            .finish()
    }
}

impl BuiltCredentials {
    /// The provider to give the OSS client.
    pub fn provider(&self) -> Arc<dyn CredentialProvider> {
        self.cache.clone()
    }
    /// The cache, as a refresher target.
    pub fn refresh_target(&self) -> Arc<dyn RefreshTarget> {
        self.cache.clone()
    }
    /// Starts the background refresher on `handle`; keep the returned handle for the life of
    /// the mount (dropping it stops the refresher).
    pub fn spawn_refresher(&self, handle: &tokio::runtime::Handle) -> RefresherHandle {
        spawn_refresher(self.cache.clone(), handle)
    }
    /// E.g. `AssumeRole acs:ram::123:role/x (base: environment)`.
    pub fn describe(&self) -> String {
        self.cache.describe()
    }
}

/// Builds the provider from `cfg` and the process environment (see the module doc).
pub fn build_provider(cfg: &CredentialsConfig) -> Result<Arc<dyn CredentialProvider>, AuthError> {
    Ok(build_credentials(cfg)?.provider())
}

/// Like [`build_provider`], also giving access to the refresher.
pub fn build_credentials(cfg: &CredentialsConfig) -> Result<BuiltCredentials, AuthError> {
    build_credentials_with_env(cfg, &Env::from_process())
}

/// Like [`build_credentials`] with an explicit environment (tests).
pub fn build_credentials_with_env(cfg: &CredentialsConfig, env: &Env) -> Result<BuiltCredentials, AuthError> {
    let ctx = Ctx {
        env,
        allow_short: env.flag(ALLOW_SHORT_DURATION_ENV),
        sts_override: non_empty(&cfg.sts_endpoint),
    };
    let explicit = explicit_spec(cfg, env)?;
    let top: Box<dyn CredentialSource> = match non_empty(&cfg.role_arn) {
        None => {
            for (flag, set) in [
                ("--role-session-name", cfg.role_session_name.is_some()),
                ("--policy", cfg.policy.is_some()),
                ("--duration", cfg.duration_secs.is_some()),
                ("--external-id", cfg.external_id.is_some()),
            ] {
                if set {
                    return Err(cfg_err("credentials", format!("{flag} requires --role-arn")));
                }
            }
            match explicit {
                Some(spec) => ctx.source(spec)?,
                None => Box::new(ctx.default_chain()?),
            }
        }
        Some(role_arn) => {
            let params = RoleSessionParams {
                role_arn,
                session_name: non_empty(&cfg.role_session_name)
                    .or_else(|| env.get("ALIBABA_CLOUD_ROLE_SESSION_NAME").map(str::to_string))
                    .unwrap_or_else(default_session_name),
                policy: cfg.policy.as_ref().map(|p| p.trim().to_string()),
                duration_secs: cfg.duration_secs.unwrap_or(DEFAULT_DURATION_SECS),
                external_id: cfg.external_id.clone(),
            };
            // Validate before touching the base, so parameter errors come first.
            params.validate(ctx.allow_short)?;
            let base: Arc<dyn CredentialProvider> = match explicit {
                Some(spec) => ctx.provider(spec)?,
                None => Arc::new(CachingProvider::new(
                    Box::new(ctx.default_chain()?) as Box<dyn CredentialSource>
                )),
            };
            let client = StsClient::new(&resolve_sts_endpoint(ctx.sts_override.as_deref(), None, false, env))?;
            Box::new(AssumeRoleSource::new(base, params, client, ctx.allow_short)?)
        }
    };
    Ok(BuiltCredentials {
        cache: Arc::new(CachingProvider::new(top)),
    })
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn cfg_err(source_name: &str, message: impl Into<String>) -> AuthError {
    AuthError::Config {
        source_name: source_name.to_string(),
        message: message.into(),
    }
}

/// The explicitly configured base source, if any.
fn explicit_spec(cfg: &CredentialsConfig, env: &Env) -> Result<Option<SourceSpec>, AuthError> {
    let mut given: Vec<&str> = Vec::new();
    if cfg.access_key_id.is_some() || cfg.access_key_secret.is_some() || cfg.security_token.is_some() {
        given.push("--access-key-id/--access-key-secret");
    }
    if cfg.credential_process.is_some() {
        given.push("--credential-process");
    }
    if cfg.credentials_uri.is_some() {
        given.push("--credentials-uri");
    }
    if cfg.ecs_ram_role.is_some() {
        given.push("--ecs-ram-role");
    }
    if cfg.profile.is_some() || cfg.credentials_file.is_some() {
        given.push("--profile/--credentials-file");
    }
    if given.len() > 1 {
        return Err(cfg_err(
            "credentials",
            format!("conflicting credential sources: {}; give only one", given.join(" and ")),
        ));
    }
    if given.is_empty() {
        return Ok(None);
    }
    if cfg.access_key_id.is_some() || cfg.access_key_secret.is_some() || cfg.security_token.is_some() {
        let id = non_empty(&cfg.access_key_id)
            .ok_or_else(|| cfg_err("credentials", "access key secret given without an access key id"))?;
        let secret = non_empty(&cfg.access_key_secret)
            .ok_or_else(|| cfg_err("credentials", "access key id given without an access key secret"))?;
        let mut creds = Credentials::new(id, secret);
        if let Some(t) = non_empty(&cfg.security_token) {
            creds = creds.with_token(t);
        }
        return Ok(Some(SourceSpec::Static {
            creds,
            name: "static keys".into(),
        }));
    }
    if let Some(c) = &cfg.credential_process {
        return Ok(Some(SourceSpec::Process { command: c.clone() }));
    }
    if let Some(u) = &cfg.credentials_uri {
        return Ok(Some(SourceSpec::Uri { uri: u.clone() }));
    }
    if let Some(r) = &cfg.ecs_ram_role {
        // `--ecs-ram-role auto` (or empty) discovers the role, as ossfs `-oram_role=auto`.
        let role = Some(r.trim())
            .filter(|r| !r.is_empty() && *r != "auto")
            .map(str::to_string);
        return Ok(Some(SourceSpec::Ecs { role_name: role }));
    }
    if let Some(file) = &cfg.credentials_file {
        let profile = non_empty(&cfg.profile)
            .or_else(|| env.get("ALIBABA_CLOUD_PROFILE").map(str::to_string))
            .unwrap_or_else(|| "default".into());
        return load_ini_profile(file, &profile, env).map(Some);
    }
    let profile = non_empty(&cfg.profile).ok_or_else(|| cfg_err("credentials", "empty --profile"))?;
    let mut looked = Vec::new();
    if let Some(ini) = find_default_ini(env) {
        let text = read_credential_file(&ini, "credentials file")?;
        if ini_has_profile(&text, &profile) {
            return super::profile::parse_ini_profile(&text, &profile, &ini, env).map(Some);
        }
        looked.push(ini.display().to_string());
    }
    if let Some(cli) = default_cli_config_path(env).filter(|p| p.exists()) {
        match load_cli_profile(&cli, Some(&profile), env) {
            Ok(spec) => return Ok(Some(spec)),
            Err(e) if e.to_string().contains("no aliyun CLI profile") => looked.push(cli.display().to_string()),
            Err(e) => return Err(e),
        }
    }
    Err(cfg_err(
        "credentials",
        if looked.is_empty() {
            format!("profile {profile:?} not found: no ~/.alibabacloud/credentials or ~/.aliyun/config.json")
        } else {
            format!("profile {profile:?} not found in {}", looked.join(" nor "))
        },
    ))
}

struct Ctx<'a> {
    env: &'a Env,
    allow_short: bool,
    sts_override: Option<String>,
}

impl Ctx<'_> {
    fn sts_client(&self, sts: &StsSpec) -> Result<StsClient, AuthError> {
        let explicit = self.sts_override.as_deref().or(sts.endpoint.as_deref());
        StsClient::new(&resolve_sts_endpoint(
            explicit,
            sts.region.as_deref(),
            sts.vpc,
            self.env,
        ))
    }

    /// A provider (cached unless static) for use as a base.
    fn provider(&self, spec: SourceSpec) -> Result<Arc<dyn CredentialProvider>, AuthError> {
        match spec {
            SourceSpec::Static { creds, name } => Ok(Arc::new(StaticProvider::new(creds, name))),
            other => Ok(Arc::new(CachingProvider::new(self.source(other)?))),
        }
    }

    fn source(&self, spec: SourceSpec) -> Result<Box<dyn CredentialSource>, AuthError> {
        Ok(match spec {
            SourceSpec::Static { creds, name } => Box::new(StaticSource::new(creds, name)),
            SourceSpec::AssumeRole { base, params, sts } => {
                params.validate(self.allow_short)?;
                let client = self.sts_client(&sts)?;
                Box::new(AssumeRoleSource::new(
                    self.provider(*base)?,
                    params,
                    client,
                    self.allow_short,
                )?)
            }
            SourceSpec::Oidc {
                params,
                provider_arn,
                token_file,
                sts,
            } => {
                let client = self.sts_client(&sts)?;
                Box::new(OidcSource::new(
                    params,
                    provider_arn,
                    token_file,
                    client,
                    self.allow_short,
                )?)
            }
            SourceSpec::Ecs { role_name } => {
                let base = self
                    .env
                    .get(ECS_METADATA_ENDPOINT_ENV)
                    .unwrap_or(ECS_METADATA_DEFAULT_ENDPOINT);
                let role_name = role_name.or_else(|| self.env.get("ALIBABA_CLOUD_ECS_METADATA").map(str::to_string));
                Box::new(EcsSource::new(
                    base,
                    role_name,
                    self.env.flag("ALIBABA_CLOUD_IMDSV1_DISABLED"),
                )?)
            }
            SourceSpec::Process { command } => Box::new(ProcessSource::new(command)?),
            SourceSpec::Uri { uri } => Box::new(UriSource::new(&uri)?),
        })
    }

    /// The default chain of PROTOCOL.md §8.2. Sources configured through the environment
    /// that are clearly intended but broken (a key id without its secret, OIDC variables with a
    /// bad ARN or a missing token file) fail the build; a broken profile file only fails its
    /// own chain entry, since it may be unrelated to this mount.
    fn default_chain(&self) -> Result<DefaultChain, AuthError> {
        let env = self.env;
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        let mut push = |label: String, source: Result<Box<dyn CredentialSource>, AuthError>| {
            entries.push(ChainEntry { label, source });
        };

        match env_credentials(env) {
            Ok(Some((creds, var))) => push(
                "environment".into(),
                Ok(Box::new(StaticSource::new(creds, format!("environment ({var})")))),
            ),
            Ok(None) => skipped.push("environment".to_string()),
            Err(e) => return Err(e),
        }

        match (
            env.get("ALIBABA_CLOUD_ROLE_ARN"),
            env.get("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
            env.get("ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
        ) {
            (Some(role), Some(provider), Some(file)) => {
                let params = RoleSessionParams {
                    role_arn: role.to_string(),
                    session_name: env
                        .get("ALIBABA_CLOUD_ROLE_SESSION_NAME")
                        .map(str::to_string)
                        .unwrap_or_else(default_session_name),
                    policy: None,
                    duration_secs: DEFAULT_DURATION_SECS,
                    external_id: None,
                };
                let spec = SourceSpec::Oidc {
                    params,
                    provider_arn: provider.to_string(),
                    token_file: PathBuf::from(file),
                    sts: StsSpec::default(),
                };
                push("OIDC (ALIBABA_CLOUD_ROLE_ARN)".into(), Ok(self.source(spec)?));
            }
            _ => skipped.push("OIDC".to_string()),
        }

        match default_cli_config_path(env).filter(|p| p.exists()) {
            Some(path) if !env.flag("ALIBABA_CLOUD_CLI_PROFILE_DISABLED") => {
                let spec = load_cli_profile(&path, env.get("ALIBABA_CLOUD_PROFILE"), env);
                push(
                    format!("aliyun CLI config {}", path.display()),
                    spec.and_then(|s| self.source(s)),
                );
            }
            _ => skipped.push("aliyun CLI config".to_string()),
        }

        match find_default_ini(env) {
            Some(path) => {
                let profile = env.get("ALIBABA_CLOUD_PROFILE").unwrap_or("default");
                let spec = load_ini_profile(&path, profile, env);
                push(
                    format!("credentials file {}", path.display()),
                    spec.and_then(|s| self.source(s)),
                );
            }
            None => skipped.push("credentials file".to_string()),
        }

        if env.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
            skipped.push("ECS RAM role (disabled)".to_string());
        } else {
            push("ECS RAM role".into(), self.source(SourceSpec::Ecs { role_name: None }));
        }

        match env.get("ALIBABA_CLOUD_CREDENTIALS_URI") {
            Some(uri) => push(
                "credentials URI".into(),
                self.source(SourceSpec::Uri { uri: uri.to_string() }),
            ),
            None => skipped.push("credentials URI".to_string()),
        }

        Ok(DefaultChain::new(entries, skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_output_never_shows_secrets() {
        let env = Env::from_pairs([
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIdebug"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "debug-secret-value"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "debug-token-value"),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "1"),
        ]);
        let b = build_credentials_with_env(&CredentialsConfig::default(), &env).unwrap();
        let c = b.provider().credentials().await.unwrap();
        assert_eq!(c.access_key_secret, "debug-secret-value");
        let text = format!("{b:?} {:?} {:?} {c:?}", b.cache, env);
        assert!(
            !text.contains("debug-secret-value") && !text.contains("debug-token-value"),
            "{text}"
        );
        let p = ProcessSource::new("fetch-creds --password hunter2").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        let u = UriSource::new("http://user:pw@127.0.0.1:1/creds?token=abc").unwrap();
        let shown = format!("{u:?} {}", u.describe());
        assert!(!shown.contains("abc") && !shown.contains("pw"), "{shown}");
    }
}
