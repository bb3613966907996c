//! The aliyun CLI configuration `~/.aliyun/config.json` (PROTOCOL.md §8.4):
//! `{"current": NAME, "profiles": [{"name", "mode", ...}]}`. Path: `$ALIBABA_CLOUD_CONFIG_FILE`
//! else `~/.aliyun/config.json`; profile: `--profile`, else `$ALIBABA_CLOUD_PROFILE`, else the
//! file's `current`. Modes: `AK`, `StsToken`, `RamRoleArn`, `EcsRamRole`, `OIDC`,
//! `ChainableRamRoleArn` (`source_profile`, resolved recursively up to
//! [`MAX_SOURCE_PROFILE_DEPTH`]), `External` (`process_command`). `CloudSSO`/`OAuth` need the
//! CLI's interactive login and are refused with a clear message.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::builder::{SourceSpec, StsSpec};
use super::env::Env;
use super::profile::read_credential_file;
use super::sts::{DEFAULT_DURATION_SECS, RoleSessionParams, default_session_name};
use super::util::is_truthy;
use super::{AuthError, Credentials};

/// Deepest chain of `source_profile` references we follow.
pub const MAX_SOURCE_PROFILE_DEPTH: usize = 5;

#[derive(Deserialize)]
struct CliConfig {
    current: Option<String>,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CliProfile {
    name: String,
    mode: String,
    access_key_id: String,
    access_key_secret: String,
    sts_token: String,
    ram_role_arn: String,
    ram_session_name: String,
    role_session_name: String,
    expired_seconds: Option<u64>,
    policy: String,
    external_id: String,
    sts_region: String,
    enable_vpc: Option<serde_json::Value>,
    ram_role_name: String,
    oidc_provider_arn: String,
    oidc_token_file: String,
    source_profile: String,
    process_command: String,
}

/// The CLI config path (`$ALIBABA_CLOUD_CONFIG_FILE` or `~/.aliyun/config.json`).
pub fn default_cli_config_path(env: &Env) -> Option<PathBuf> {
    env.get("ALIBABA_CLOUD_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| env.home().map(|h| h.join(".aliyun/config.json")))
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() { None } else { Some(s.to_string()) }
}

/// Parses `text` (the JSON at `path`) and returns the spec of `profile` (or `current`).
pub fn parse_cli_profile(text: &str, profile: Option<&str>, path: &Path, env: &Env) -> Result<SourceSpec, AuthError> {
    let cfg: CliConfig = serde_json::from_str(text).map_err(|e| AuthError::Config {
        source_name: path.display().to_string(),
        message: format!("not a valid aliyun CLI config: {e}"),
    })?;
    let name = profile
        .map(str::to_string)
        .or_else(|| cfg.current.clone().filter(|c| !c.is_empty()))
        .unwrap_or_else(|| "default".to_string());
    resolve(&cfg, &name, path, env, 0)
}

fn resolve(cfg: &CliConfig, name: &str, path: &Path, env: &Env, depth: usize) -> Result<SourceSpec, AuthError> {
    let source_name = format!("aliyun CLI profile {name} in {}", path.display());
    let err = |m: String| AuthError::Config {
        source_name: source_name.clone(),
        message: m,
    };
    if depth > MAX_SOURCE_PROFILE_DEPTH {
        return Err(err(format!(
            "source_profile chain deeper than {MAX_SOURCE_PROFILE_DEPTH} (a loop?)"
        )));
    }
    let p = cfg.profiles.iter().find(|p| p.name == name).ok_or_else(|| {
        let have: Vec<&str> = cfg.profiles.iter().map(|p| p.name.as_str()).collect();
        AuthError::Config {
            source_name: path.display().to_string(),
            message: format!("no aliyun CLI profile {name:?} (profiles: {})", have.join(", ")),
        }
    })?;
    let need = |v: &str, field: &str| non_empty(v).ok_or_else(|| err(format!("missing {field}")));
    let keys = || -> Result<Credentials, AuthError> {
        Ok(Credentials::new(
            need(&p.access_key_id, "access_key_id")?,
            need(&p.access_key_secret, "access_key_secret")?,
        ))
    };
    let session_name = || {
        non_empty(&p.ram_session_name)
            .or_else(|| non_empty(&p.role_session_name))
            .or_else(|| env.get("ALIBABA_CLOUD_ROLE_SESSION_NAME").map(str::to_string))
            .unwrap_or_else(default_session_name)
    };
    let role_params = || -> Result<RoleSessionParams, AuthError> {
        Ok(RoleSessionParams {
            role_arn: need(&p.ram_role_arn, "ram_role_arn")?,
            session_name: session_name(),
            policy: non_empty(&p.policy),
            duration_secs: p.expired_seconds.filter(|s| *s > 0).unwrap_or(DEFAULT_DURATION_SECS),
            external_id: non_empty(&p.external_id),
        })
    };
    let vpc = match &p.enable_vpc {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => is_truthy(s),
        _ => false,
    };
    let sts = StsSpec {
        endpoint: None,
        region: non_empty(&p.sts_region),
        vpc,
    };
    match p.mode.as_str() {
        "AK" => Ok(SourceSpec::Static {
            creds: keys()?,
            name: source_name,
        }),
        "StsToken" => Ok(SourceSpec::Static {
            creds: keys()?.with_token(need(&p.sts_token, "sts_token")?),
            name: source_name,
        }),
        "RamRoleArn" => Ok(SourceSpec::AssumeRole {
            base: Box::new(SourceSpec::Static {
                creds: keys()?,
                name: source_name.clone(),
            }),
            params: role_params()?,
            sts,
        }),
        "ChainableRamRoleArn" => {
            let src = need(&p.source_profile, "source_profile")?;
            let base = resolve(cfg, &src, path, env, depth + 1)?;
            Ok(SourceSpec::AssumeRole {
                base: Box::new(base),
                params: role_params()?,
                sts,
            })
        }
        "EcsRamRole" => Ok(SourceSpec::Ecs {
            role_name: non_empty(&p.ram_role_name),
        }),
        "OIDC" => Ok(SourceSpec::Oidc {
            params: RoleSessionParams {
                external_id: None,
                ..role_params()?
            },
            provider_arn: need(&p.oidc_provider_arn, "oidc_provider_arn")?,
            token_file: PathBuf::from(need(&p.oidc_token_file, "oidc_token_file")?),
            sts,
        }),
        "External" => Ok(SourceSpec::Process {
            command: need(&p.process_command, "process_command")?,
        }),
        "CloudSSO" | "OAuth" => Err(err(format!(
            "mode {} needs the aliyun CLI's interactive login; use `--credential-process \"aliyun configure export-credentials --profile {name}\"` or another mode",
            p.mode
        ))),
        "" => Err(err("missing mode".into())),
        other => Err(err(format!("unsupported mode {other:?}"))),
    }
}

/// Reads `path` and returns the spec of `profile` (or the file's `current`).
pub fn load_cli_profile(path: &Path, profile: Option<&str>, env: &Env) -> Result<SourceSpec, AuthError> {
    let text = read_credential_file(path, "aliyun CLI config")?;
    parse_cli_profile(&text, profile, path, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../tests/data/vectors/examples/aliyun_cli_config.json");

    fn parse(profile: Option<&str>) -> Result<SourceSpec, AuthError> {
        parse_cli_profile(EXAMPLE, profile, Path::new("config.json"), &Env::default())
    }

    #[test]
    fn example_modes() {
        assert!(
            matches!(parse(None).unwrap(), SourceSpec::Static { creds, .. } if creds.access_key_id == "LTAI5tFuseVectorsAccessKey" && !creds.is_temporary())
        );
        assert!(
            matches!(parse(Some("sts")).unwrap(), SourceSpec::Static { creds, .. } if creds.security_token.as_deref() == Some("CAIS8gF1q6Ft5B2y..."))
        );
        match parse(Some("role")).unwrap() {
            SourceSpec::AssumeRole { params, sts, .. } => {
                assert_eq!(params.session_name, "fuse-session");
                assert_eq!(params.duration_secs, 3600);
                assert_eq!(sts.region.as_deref(), Some("cn-hangzhou"));
            }
            other => panic!("{other:?}"),
        }
        match parse(Some("chained")).unwrap() {
            SourceSpec::AssumeRole { base, params, .. } => {
                assert_eq!(params.session_name, "fuse-chained");
                assert!(matches!(*base, SourceSpec::Static { .. }));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(Some("ecs")).unwrap(), SourceSpec::Ecs { role_name: Some(r) } if r == "EcsRamRoleOss"));
        assert!(matches!(parse(Some("oidc")).unwrap(), SourceSpec::Oidc { .. }));
        assert!(
            matches!(parse(Some("ext")).unwrap(), SourceSpec::Process { command } if command == "/usr/local/bin/get-oss-creds --json")
        );
        let e = parse(Some("missing")).unwrap_err().to_string();
        assert!(e.contains("no aliyun CLI profile \"missing\""), "{e}");
    }

    #[test]
    fn source_profile_loop_is_refused() {
        let text = r#"{"profiles":[{"name":"a","mode":"ChainableRamRoleArn","source_profile":"b","ram_role_arn":"acs:ram::1:role/r"},
                                    {"name":"b","mode":"ChainableRamRoleArn","source_profile":"a","ram_role_arn":"acs:ram::1:role/r"}]}"#;
        let e = parse_cli_profile(text, Some("a"), Path::new("c"), &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("deeper than"), "{e}");
        let e = parse_cli_profile("{", None, Path::new("c"), &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid aliyun CLI config"), "{e}");
    }
}
