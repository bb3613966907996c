//! The shared credentials ini file (`~/.alibabacloud/credentials`, PROTOCOL.md §8.3) and the
//! permission policy for every credential file we read.
//!
//! Path: `--credentials-file`, else `$ALIBABA_CLOUD_CREDENTIALS_FILE`, else
//! `~/.alibabacloud/credentials` (Go, Node) or, if that does not exist,
//! `~/.alibabacloud/credentials.ini` (Python). Section: `--profile`, else
//! `$ALIBABA_CLOUD_PROFILE`, else `default`. Types: `access_key`, `sts`, `ram_role_arn`,
//! `ecs_ram_role`, `oidc_role_arn`, `credentials_uri`. Values are trimmed and a trailing
//! ` # comment` is removed (except in `policy`), as the Python SDK does.
//!
//! **Permissions.** A credential file readable by group or others is *accepted with a
//! `warn!`* (naming the file and the fix, `chmod 600`), not refused: the official SDKs and the
//! aliyun CLI accept such files and refusing would break working setups, while the warning
//! makes the exposure visible. (ossfs refuses for its own passwd file; we do not read it.)
//! We never write credentials to disk.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::builder::{SourceSpec, StsSpec};
use super::env::Env;
use super::sts::{DEFAULT_DURATION_SECS, RoleSessionParams};
use super::{AuthError, Credentials};

/// Largest credential file we read.
const MAX_CREDENTIAL_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a credential file: size-bounded, with a `warn!` if group/others can read it.
pub fn read_credential_file(path: &Path, source_name: &str) -> Result<String, AuthError> {
    let err = |m: String| AuthError::Config {
        source_name: source_name.to_string(),
        message: m,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(err(format!("{} is not a regular file", path.display())));
    }
    if meta.len() > MAX_CREDENTIAL_FILE_BYTES {
        return Err(err(format!(
            "{} is larger than {MAX_CREDENTIAL_FILE_BYTES} bytes",
            path.display()
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        warn!(
            file = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "credential file is accessible by group or others; run chmod 600 on it"
        );
    }
    std::fs::read_to_string(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))
}

/// Candidate ini paths in order (only `$ALIBABA_CLOUD_CREDENTIALS_FILE` when set).
pub fn default_ini_paths(env: &Env) -> Vec<PathBuf> {
    if let Some(p) = env.get("ALIBABA_CLOUD_CREDENTIALS_FILE") {
        return vec![PathBuf::from(p)];
    }
    match env.home() {
        Some(h) => vec![
            h.join(".alibabacloud/credentials"),
            h.join(".alibabacloud/credentials.ini"),
        ],
        None => Vec::new(),
    }
}

/// The first existing default ini file, if any.
pub fn find_default_ini(env: &Env) -> Option<PathBuf> {
    default_ini_paths(env).into_iter().find(|p| p.exists())
}

fn clean_value(key: &str, v: &str) -> String {
    let v = v.trim();
    if key == "policy" {
        return v.to_string();
    }
    match v.find(" #").or_else(|| v.find("\t#")) {
        Some(i) => v[..i].trim_end().to_string(),
        None => v.to_string(),
    }
}

/// Parses `text` (an ini file at `path`) and returns the spec of section `profile`.
pub fn parse_ini_profile(text: &str, profile: &str, path: &Path, env: &Env) -> Result<SourceSpec, AuthError> {
    let name = format!("profile {profile} in {}", path.display());
    let err = |m: String| AuthError::Config {
        source_name: name.clone(),
        message: m,
    };
    let opt = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..Default::default()
    };
    let ini = ini::Ini::load_from_str_opt(text, opt).map_err(|e| AuthError::Config {
        source_name: path.display().to_string(),
        message: format!("not a valid ini file: {e}"),
    })?;
    let section = ini.section(Some(profile)).ok_or_else(|| {
        let have: Vec<&str> = ini.sections().flatten().collect();
        AuthError::Config {
            source_name: path.display().to_string(),
            message: format!("no profile [{profile}] (profiles: {})", have.join(", ")),
        }
    })?;
    let get = |k: &str| section.get(k).map(|v| clean_value(k, v)).filter(|v| !v.is_empty());
    let need = |k: &str| get(k).ok_or_else(|| err(format!("missing {k}")));
    let kind = get("type")
        .or_else(|| get("enable").map(|_| String::new()))
        .unwrap_or_default();
    let keys = || -> Result<Credentials, AuthError> {
        Ok(Credentials::new(need("access_key_id")?, need("access_key_secret")?))
    };
    let session_name = || {
        get("role_session_name")
            .or_else(|| env.get("ALIBABA_CLOUD_ROLE_SESSION_NAME").map(str::to_string))
            .unwrap_or_else(super::sts::default_session_name)
    };
    let sts = StsSpec {
        endpoint: get("sts_endpoint"),
        region: get("sts_region"),
        vpc: get("enable_vpc").is_some_and(|v| super::util::is_truthy(&v)),
    };
    match kind.as_str() {
        "access_key" => Ok(SourceSpec::Static { creds: keys()?, name }),
        "sts" => Ok(SourceSpec::Static {
            creds: keys()?.with_token(need("security_token")?),
            name,
        }),
        "ram_role_arn" => Ok(SourceSpec::AssumeRole {
            base: Box::new(SourceSpec::Static {
                creds: keys()?,
                name: name.clone(),
            }),
            params: RoleSessionParams {
                role_arn: need("role_arn")?,
                session_name: session_name(),
                policy: get("policy"),
                duration_secs: parse_duration(get("duration_seconds"), &err)?,
                external_id: get("external_id"),
            },
            sts,
        }),
        "ecs_ram_role" => Ok(SourceSpec::Ecs {
            role_name: get("role_name"),
        }),
        "oidc_role_arn" => Ok(SourceSpec::Oidc {
            params: RoleSessionParams {
                role_arn: need("role_arn")?,
                session_name: session_name(),
                policy: get("policy"),
                duration_secs: parse_duration(get("duration_seconds"), &err)?,
                external_id: None,
            },
            provider_arn: need("oidc_provider_arn")?,
            token_file: PathBuf::from(need("oidc_token_file_path")?),
            sts,
        }),
        "credentials_uri" => Ok(SourceSpec::Uri {
            uri: need("credentials_uri")?,
        }),
        "" => Err(err(
            "missing type (access_key, sts, ram_role_arn, ecs_ram_role, oidc_role_arn, credentials_uri)".into(),
        )),
        other => Err(err(format!(
            "unsupported type {other:?} (supported: access_key, sts, ram_role_arn, ecs_ram_role, oidc_role_arn, credentials_uri)"
        ))),
    }
}

fn parse_duration(v: Option<String>, err: &dyn Fn(String) -> AuthError) -> Result<u64, AuthError> {
    match v {
        None => Ok(DEFAULT_DURATION_SECS),
        Some(s) => s
            .parse()
            .map_err(|_| err(format!("duration_seconds {s:?} is not a number"))),
    }
}

/// Whether the ini `text` has a section `profile` (false if it does not parse).
pub fn ini_has_profile(text: &str, profile: &str) -> bool {
    let opt = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..Default::default()
    };
    ini::Ini::load_from_str_opt(text, opt).is_ok_and(|i| i.section(Some(profile)).is_some())
}

/// Reads `path` and returns the spec of section `profile`.
pub fn load_ini_profile(path: &Path, profile: &str, env: &Env) -> Result<SourceSpec, AuthError> {
    let text = read_credential_file(path, "credentials file")?;
    parse_ini_profile(&text, profile, path, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../tests/data/vectors/examples/alibabacloud_credentials.ini");

    fn parse(profile: &str) -> Result<SourceSpec, AuthError> {
        parse_ini_profile(EXAMPLE, profile, Path::new("credentials"), &Env::default())
    }

    #[test]
    fn example_profiles() {
        match parse("default").unwrap() {
            SourceSpec::Static { creds, .. } => {
                assert_eq!(creds.access_key_id, "LTAI5tFuseVectorsAccessKey");
                assert_eq!(creds.access_key_secret, "FuseVectorsAccessKeySecret0123456789");
            }
            other => panic!("{other:?}"),
        }
        match parse("role").unwrap() {
            SourceSpec::AssumeRole { base, params, .. } => {
                assert!(matches!(*base, SourceSpec::Static { .. }));
                assert_eq!(params.role_arn, "acs:ram::1234567890123456:role/oss-fuse-role");
                assert_eq!(params.session_name, "fuse-session");
                assert_eq!(params.duration_secs, 3600);
                assert!(params.policy.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("ecs").unwrap(), SourceSpec::Ecs { role_name: Some(r) } if r == "EcsRamRoleOss"));
        match parse("rrsa").unwrap() {
            SourceSpec::Oidc {
                params,
                provider_arn,
                token_file,
                ..
            } => {
                assert_eq!(params.session_name, "rrsa-fuse");
                assert!(provider_arn.ends_with("oidc-provider/ack-rrsa-c1234567890"));
                assert!(token_file.ends_with("token"));
            }
            other => panic!("{other:?}"),
        }
        let e = parse("nope").unwrap_err().to_string();
        assert!(
            e.contains("no profile [nope]") && e.contains("default, role, ecs, rrsa"),
            "{e}"
        );
    }

    #[test]
    fn sts_type_comments_and_errors() {
        let text = "[s]\ntype = sts\naccess_key_id = STS.x # the id\naccess_key_secret = sec\nsecurity_token = tok\n\
                    [bad]\ntype = rsa_key_pair\n[half]\ntype = access_key\naccess_key_id = a\n";
        match parse_ini_profile(text, "s", Path::new("f"), &Env::default()).unwrap() {
            SourceSpec::Static { creds, .. } => {
                assert_eq!(creds.access_key_id, "STS.x");
                assert_eq!(creds.security_token.as_deref(), Some("tok"));
            }
            other => panic!("{other:?}"),
        }
        let e = parse_ini_profile(text, "bad", Path::new("f"), &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported type"), "{e}");
        let e = parse_ini_profile(text, "half", Path::new("f"), &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing access_key_secret"), "{e}");
    }
}
