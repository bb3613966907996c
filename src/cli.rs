//! The command line: `ossmount [OPTIONS] <BUCKET[/PREFIX] | oss://BUCKET/PREFIX> <MOUNTPOINT>`.
//!
//! Every long option also works as `-o name=value` (dashes or underscores), so `/etc/fstab` and
//! `mount -t fuse.ossmount` work; the mount(8) options ordinary FUSE mounts accept (`ro`, `rw`,
//! `allow_other`, `uid=`, `umask=`, `_netdev`, `nofail`, ...) are mapped or ignored as mount(8)
//! users expect. `-o` items are rewritten into long options before clap parses, so both spellings
//! share one definition and one validation. No I/O here except reading `--policy @FILE`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::config::{
    CacheConfig, Config, CredentialsConfig, EndpointConfig, FuseConfig, LogConfig, SignatureVersion, TransferConfig,
};

/// Smallest part size OSS accepts for a part that is not the last.
const MIN_PART_SIZE_BYTES: u64 = 100 * 1024;
/// Largest part size OSS accepts.
const MAX_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest memory budget that still holds a few parts in flight.
const MIN_MEMORY_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

/// Why the command line was refused. Each message names the option and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Parse(#[from] clap::Error),
    #[error("invalid {option}: {message}")]
    Invalid { option: &'static str, message: String },
    #[error("unknown mount option '-o {0}' (see ossmount --help)")]
    UnknownMountOption(String),
    #[error("cannot read policy file {path}: {source}")]
    PolicyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(option: &'static str, message: impl Into<String>) -> CliError {
    CliError::Invalid {
        option,
        message: message.into(),
    }
}

/// Mount an Alibaba Cloud OSS bucket, or a prefix of it, as a local directory.
#[derive(Parser, Debug)]
#[command(name = "ossmount", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct CliArgs {
    /// BUCKET, BUCKET/PREFIX or oss://BUCKET/PREFIX
    #[arg(value_name = "BUCKET[/PREFIX]")]
    pub source: String,

    /// Directory to mount on
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,

    /// OSS endpoint URL, e.g. https://oss-cn-hangzhou.aliyuncs.com
    #[arg(long, help_heading = "Endpoint", env = "OSS_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Region ID for signature V4 (derived from the endpoint when it is oss-<region>.aliyuncs.com)
    #[arg(long, help_heading = "Endpoint", env = "OSS_REGION")]
    pub region: Option<String>,
    /// OSS signature version: 4 (default) or 1
    #[arg(long, value_name = "4|1", default_value = "4", help_heading = "Endpoint")]
    pub signature_version: String,
    /// Address the bucket as /BUCKET/KEY (automatic for IP and localhost endpoints)
    #[arg(long, help_heading = "Endpoint")]
    pub path_style: bool,

    /// Assume this RAM role (acs:ram::ACCOUNT:role/NAME) on top of the base credentials
    #[arg(long, value_name = "ARN", help_heading = "Credentials")]
    pub role_arn: Option<String>,
    /// Session name for AssumeRole (default ossmount-HOST-PID)
    #[arg(long, value_name = "NAME", help_heading = "Credentials")]
    pub role_session_name: Option<String>,
    /// Session policy for AssumeRole: inline JSON or @FILE
    #[arg(long, value_name = "JSON|@FILE", help_heading = "Credentials")]
    pub policy: Option<String>,
    /// Lifetime of the assumed-role credentials in seconds (900-43200; default 3600)
    #[arg(long, value_name = "SECS", help_heading = "Credentials")]
    pub duration: Option<u64>,
    /// External ID for AssumeRole
    #[arg(long, value_name = "ID", help_heading = "Credentials")]
    pub external_id: Option<String>,
    /// STS endpoint URL (default sts.aliyuncs.com, or sts.$ALIBABA_CLOUD_STS_REGION.aliyuncs.com)
    #[arg(long, value_name = "URL", help_heading = "Credentials")]
    pub sts_endpoint: Option<String>,
    /// Profile of ~/.alibabacloud/credentials or ~/.aliyun/config.json
    #[arg(long, value_name = "NAME", help_heading = "Credentials")]
    pub profile: Option<String>,
    /// Credentials ini file (default ~/.alibabacloud/credentials)
    #[arg(long, value_name = "PATH", help_heading = "Credentials")]
    pub credentials_file: Option<PathBuf>,
    /// Command printing credentials as JSON (AccessKeyId, AccessKeySecret, SecurityToken, Expiration)
    #[arg(long, value_name = "CMD", help_heading = "Credentials")]
    pub credential_process: Option<String>,
    /// URL answering credentials as JSON
    #[arg(long, value_name = "URL", help_heading = "Credentials")]
    pub credentials_uri: Option<String>,
    /// ECS instance RAM role name (credentials from the instance metadata service)
    #[arg(long, value_name = "NAME", help_heading = "Credentials")]
    pub ecs_ram_role: Option<String>,

    /// Mount read-only: every mutation fails with EROFS and no write request is sent
    #[arg(long, help_heading = "Mount")]
    pub read_only: bool,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf when not root)
    #[arg(long, help_heading = "Mount")]
    pub allow_other: bool,
    /// Let root access the mount
    #[arg(long, help_heading = "Mount")]
    pub allow_root: bool,
    /// Owner of every file and directory (default: the mounting user)
    #[arg(long, help_heading = "Mount")]
    pub uid: Option<u32>,
    /// Group of every file and directory (default: the mounting user's group)
    #[arg(long, help_heading = "Mount")]
    pub gid: Option<u32>,
    /// Permission bits of files without x-oss-meta-mode, octal
    #[arg(long, value_name = "OCTAL", default_value = "0644", help_heading = "Mount")]
    pub file_mode: String,
    /// Permission bits of directories without x-oss-meta-mode, octal
    #[arg(long, value_name = "OCTAL", default_value = "0755", help_heading = "Mount")]
    pub dir_mode: String,
    /// Stay in the foreground (default: return once the mount is live)
    #[arg(short = 'f', long, help_heading = "Mount")]
    pub foreground: bool,
    /// Unmount automatically when the ossmount process exits
    #[arg(long, help_heading = "Mount")]
    pub auto_unmount: bool,
    /// Let the kernel check permissions from mode, uid and gid
    #[arg(long, help_heading = "Mount")]
    pub default_permissions: bool,
    /// Number of threads serving kernel requests
    #[arg(long, value_name = "N", default_value_t = crate::config::DEFAULT_FUSE_THREADS, help_heading = "Mount")]
    pub fuse_threads: usize,
    /// Mount options, comma separated: any long option as name=value, plus ro, rw, allow_other, uid=, gid=, umask=, _netdev, nofail, ...
    #[arg(short = 'o', value_name = "OPTIONS", help_heading = "Mount")]
    pub options: Vec<String>,

    /// Directory for the disk block cache and staging files (default: memory cache, private temp staging)
    #[arg(long, value_name = "DIR", help_heading = "Cache")]
    pub cache_dir: Option<PathBuf>,
    /// Size limit of the disk cache (e.g. 10G)
    #[arg(long, value_name = "SIZE", help_heading = "Cache")]
    pub cache_size: Option<String>,
    /// Memory ceiling for cached and in-flight read data (default 128M)
    #[arg(long, value_name = "SIZE", help_heading = "Cache")]
    pub memory_limit: Option<String>,
    /// How long attributes and directory entries are trusted, in seconds, or "indefinite"
    #[arg(long, value_name = "SECS|indefinite", help_heading = "Cache")]
    pub metadata_ttl: Option<String>,
    /// How long a failed lookup is remembered, in seconds
    #[arg(long, value_name = "SECS", help_heading = "Cache")]
    pub negative_ttl: Option<String>,
    /// Size of upload parts and read requests (100K to 5G; default 8M)
    #[arg(long, value_name = "SIZE", help_heading = "Cache")]
    pub part_size: Option<String>,
    /// Concurrent requests to OSS
    #[arg(long, value_name = "N", help_heading = "Cache")]
    pub max_concurrency: Option<usize>,

    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter)
    #[arg(long, value_name = "LEVEL", help_heading = "Logging", env = "OSSMOUNT_LOG")]
    pub log_level: Option<String>,
    /// Write logs to this file (default: stderr in the foreground, syslog-less file-less daemon: none)
    #[arg(long, value_name = "PATH", help_heading = "Logging")]
    pub log_file: Option<PathBuf>,
    /// Log format
    #[arg(long, value_name = "text|json", default_value = "text", help_heading = "Logging")]
    pub log_format: String,
    /// Serve metrics (JSON counters) on this address, e.g. 127.0.0.1:9100
    #[arg(long, value_name = "ADDR", help_heading = "Logging")]
    pub metrics_addr: Option<String>,

    /// Check credentials, endpoint and bucket access, print what was found, and exit
    #[arg(long)]
    pub check: bool,

    /// umask from `-o umask=` (applied to file and dir modes)
    #[arg(skip)]
    pub umask: Option<u32>,
}

const AFTER_HELP: &str = "\
Credentials, when no credentials option is given, come from the default chain: environment \
(ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET/SECURITY_TOKEN, OSS_ACCESS_KEY_ID/SECRET/SESSION_TOKEN), \
OIDC (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE), \
~/.aliyun/config.json, ~/.alibabacloud/credentials, ECS instance metadata, \
ALIBABA_CLOUD_CREDENTIALS_URI. --role-arn assumes a role on top of whichever source is used.

Examples:
  ossmount my-bucket/team-a /data --endpoint https://oss-cn-hangzhou.aliyuncs.com --role-arn acs:ram::123:role/data
  mount -t fuse.ossmount my-bucket/team-a /data -o endpoint=https://oss-cn-hangzhou.aliyuncs.com,ro,allow_other";

/// mount(8) options that have no meaning for ossmount and are accepted silently.
const IGNORED_MOUNT_OPTIONS: &[&str] = &[
    "rw",
    "_netdev",
    "nofail",
    "noauto",
    "auto",
    "user",
    "users",
    "nouser",
    "defaults",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "async",
    "sync",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "loud",
    "silent",
    "owner",
    "group",
    "comment",
    "fsname",
    "subtype",
    "big_writes",
    "kernel_cache",
    "auto_cache",
];

/// Parse a command line (including argv\[0\]).
pub fn parse<I, T>(args: I) -> Result<CliArgs, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let (rewritten, umask) = expand_mount_options(args.into_iter().map(Into::into).collect())?;
    let mut parsed = CliArgs::try_parse_from(rewritten)?;
    parsed.umask = umask;
    Ok(parsed)
}

/// Rewrite every `-o a=b,c` (and `-oa=b`) into long options clap understands.
fn expand_mount_options(args: Vec<OsString>) -> Result<(Vec<OsString>, Option<u32>), CliError> {
    let command = CliArgs::command();
    let long_names: Vec<(String, bool)> = command
        .get_arguments()
        .filter_map(|a| {
            let takes_value = a.get_action().takes_values();
            a.get_long().map(|l| (l.to_string(), takes_value))
        })
        .collect();
    let mut out = Vec::with_capacity(args.len());
    let mut umask = None;
    let mut iter = args.into_iter();
    if let Some(argv0) = iter.next() {
        out.push(argv0);
    }
    let mut pending_o = false;
    for arg in iter {
        let text = arg.to_string_lossy().to_string();
        let options = if pending_o {
            pending_o = false;
            Some(text)
        } else if text == "-o" {
            pending_o = true;
            continue;
        } else {
            text.strip_prefix("-o").map(str::to_string)
        };
        let Some(options) = options else {
            out.push(arg);
            continue;
        };
        for item in split_options(&options) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim().to_string(), Some(v.to_string())),
                None => (item.trim().to_string(), None),
            };
            if name.is_empty() {
                continue;
            }
            let normalized = name.replace('_', "-");
            match normalized.as_str() {
                "ro" => out.push("--read-only".into()),
                "umask" => {
                    let v = value.ok_or_else(|| invalid("-o umask", "needs a value, e.g. umask=022"))?;
                    umask = Some(parse_octal("-o umask", &v)?);
                }
                "x-systemd.automount" | "x-systemd.requires" => {}
                _ if normalized.starts_with("x-") => {}
                _ if IGNORED_MOUNT_OPTIONS.contains(&name.as_str()) => {}
                _ => {
                    let Some((long, takes_value)) = long_names.iter().find(|(l, _)| *l == normalized) else {
                        return Err(CliError::UnknownMountOption(item.to_string()));
                    };
                    match (takes_value, value) {
                        (true, Some(v)) => out.push(format!("--{long}={v}").into()),
                        (true, None) => {
                            return Err(invalid("-o", format!("option '{name}' needs a value: {name}=...")));
                        }
                        (false, None) => out.push(format!("--{long}").into()),
                        (false, Some(v)) if v == "true" || v == "1" || v == "yes" => {
                            out.push(format!("--{long}").into())
                        }
                        (false, Some(v)) if v == "false" || v == "0" || v == "no" => {}
                        (false, Some(_)) => return Err(invalid("-o", format!("option '{name}' takes no value"))),
                    }
                }
            }
        }
    }
    if pending_o {
        return Err(invalid("-o", "needs a comma-separated list of options"));
    }
    Ok((out, umask))
}

/// Split `-o` text on commas, except inside braces/brackets or quotes (so an inline JSON
/// policy survives) and after a backslash.
fn split_options(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' | '\'' if quote == Some(c) => {
                quote = None;
                current.push(c)
            }
            '"' | '\'' if quote.is_none() && depth > 0 => {
                quote = Some(c);
                current.push(c)
            }
            '{' | '[' if quote.is_none() => {
                depth += 1;
                current.push(c)
            }
            '}' | ']' if quote.is_none() => {
                depth -= 1;
                current.push(c)
            }
            ',' if quote.is_none() && depth <= 0 => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

fn parse_octal(option: &'static str, text: &str) -> Result<u32, CliError> {
    let digits = text.trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| invalid(option, format!("'{text}' is not an octal mode like 0644")))
}

/// Parse a size: `123`, `64K`, `8M`, `8MiB`, `1G`, `1.5G`.
pub fn parse_size(option: &'static str, text: &str) -> Result<u64, CliError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(invalid(
                option,
                format!("unknown unit '{other}' in '{text}' (use K, M, G or T)"),
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| invalid(option, format!("'{text}' is not a size like 8M")))?;
    if !value.is_finite() || value < 0.0 {
        return Err(invalid(option, format!("'{text}' is not a size like 8M")));
    }
    Ok((value * multiplier as f64) as u64)
}

fn parse_secs(option: &'static str, text: &str) -> Result<Duration, CliError> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| invalid(option, format!("'{text}' is not a number of seconds")))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(invalid(option, format!("'{text}' is not a number of seconds")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `bucket`, `bucket/prefix`, `oss://bucket/prefix` → (bucket, prefix with trailing `/` or empty).
pub fn parse_source(text: &str) -> Result<(String, String), CliError> {
    let rest = text.strip_prefix("oss://").unwrap_or(text);
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, p),
        None => (rest, ""),
    };
    validate_bucket(bucket)?;
    let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(invalid(
            "BUCKET/PREFIX",
            format!("prefix '{prefix}' may not contain '.' or '..' segments"),
        ));
    }
    let mut prefix = segments.join("/");
    if !prefix.is_empty() {
        prefix.push('/');
    }
    if prefix.len() > 1023 {
        return Err(invalid("BUCKET/PREFIX", "prefix is longer than an OSS key may be"));
    }
    Ok((bucket.to_string(), prefix))
}

fn validate_bucket(bucket: &str) -> Result<(), CliError> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = bucket.bytes().next().is_some_and(|b| b != b'-') && bucket.bytes().last().is_some_and(|b| b != b'-');
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(invalid(
            "BUCKET",
            format!(
                "'{bucket}' is not a bucket name (3-63 characters a-z, 0-9 and '-', starting and ending with a letter or digit)"
            ),
        ))
    }
}

/// Is the endpoint host an IP address or localhost (path-style addressing then)?
pub fn is_ip_or_localhost(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => true,
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

impl CliArgs {
    /// Turn the parsed arguments into a validated `Config`.
    pub fn into_config(self) -> Result<Config, CliError> {
        let (bucket, prefix) = parse_source(&self.source)?;
        let endpoint_url = match &self.endpoint {
            Some(e) => {
                let url = url::Url::parse(e).map_err(|err| {
                    invalid(
                        "--endpoint",
                        format!("'{e}' is not a URL ({err}); e.g. https://oss-cn-hangzhou.aliyuncs.com"),
                    )
                })?;
                if url.scheme() != "http" && url.scheme() != "https" {
                    return Err(invalid(
                        "--endpoint",
                        format!("'{e}' must start with http:// or https://"),
                    ));
                }
                if url.host().is_none() {
                    return Err(invalid("--endpoint", format!("'{e}' has no host")));
                }
                e.trim_end_matches('/').to_string()
            }
            None => match &self.region {
                Some(r) => format!("https://oss-{r}.aliyuncs.com"),
                None => {
                    return Err(invalid(
                        "--endpoint",
                        "missing: give --endpoint URL (e.g. https://oss-cn-hangzhou.aliyuncs.com) or --region ID",
                    ));
                }
            },
        };
        let signature_version = match self.signature_version.as_str() {
            "4" | "v4" | "V4" => SignatureVersion::V4,
            "1" | "v1" | "V1" => SignatureVersion::V1,
            other => return Err(invalid("--signature-version", format!("'{other}' is not 4 or 1"))),
        };
        let path_style = self.path_style || is_ip_or_localhost(&endpoint_url);

        let policy = match &self.policy {
            Some(p) if p.starts_with('@') => {
                let path = &p[1..];
                Some(std::fs::read_to_string(path).map_err(|source| CliError::PolicyFile {
                    path: path.to_string(),
                    source,
                })?)
            }
            other => other.clone(),
        };
        if let Some(p) = &policy {
            serde_json::from_str::<serde_json::Value>(p)
                .map_err(|e| invalid("--policy", format!("not valid JSON: {e}")))?;
        }

        let umask = self.umask.unwrap_or(0);
        let file_mode = parse_octal("--file-mode", &self.file_mode)? & !umask & 0o7777;
        let dir_mode = parse_octal("--dir-mode", &self.dir_mode)? & !umask & 0o7777;
        if self.fuse_threads == 0 || self.fuse_threads > 256 {
            return Err(invalid("--fuse-threads", "must be between 1 and 256"));
        }
        if self.auto_unmount && !(self.allow_other || self.allow_root) && !nix::unistd::geteuid().is_root() {
            // fusermount needs allow_other/allow_root to implement auto_unmount for non-root users;
            // we turn on allow_root below, which is the least permissive choice.
        }

        let mut cache = CacheConfig {
            cache_dir: self.cache_dir.clone(),
            ..CacheConfig::default()
        };
        if let Some(s) = &self.cache_size {
            cache.cache_size_bytes = parse_size("--cache-size", s)?;
        }
        if let Some(s) = &self.memory_limit {
            cache.memory_limit_bytes = parse_size("--memory-limit", s)?;
            if cache.memory_limit_bytes < MIN_MEMORY_LIMIT_BYTES {
                return Err(invalid("--memory-limit", format!("'{s}' is below the minimum of 16M")));
            }
        }
        if let Some(t) = &self.metadata_ttl {
            cache.metadata_ttl = if t == "indefinite" || t == "inf" {
                None
            } else {
                Some(parse_secs("--metadata-ttl", t)?)
            };
        }
        if let Some(t) = &self.negative_ttl {
            cache.negative_ttl = parse_secs("--negative-ttl", t)?;
        }
        let mut transfer = TransferConfig::default();
        if let Some(s) = &self.part_size {
            transfer.part_size_bytes = parse_size("--part-size", s)?;
            if !(MIN_PART_SIZE_BYTES..=MAX_PART_SIZE_BYTES).contains(&transfer.part_size_bytes) {
                return Err(invalid("--part-size", format!("'{s}' is outside 100K..5G")));
            }
        }
        if let Some(n) = self.max_concurrency {
            if n == 0 || n > 1024 {
                return Err(invalid("--max-concurrency", "must be between 1 and 1024"));
            }
            transfer.max_concurrency = n;
        }
        if cache.memory_limit_bytes < 2 * transfer.part_size_bytes {
            return Err(invalid(
                "--memory-limit",
                format!(
                    "{} bytes cannot hold two parts of --part-size {} bytes; raise --memory-limit or lower --part-size",
                    cache.memory_limit_bytes, transfer.part_size_bytes
                ),
            ));
        }
        let json = match self.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => return Err(invalid("--log-format", format!("'{other}' is not text or json"))),
        };
        if let Some(d) = self.duration {
            if d == 0 {
                return Err(invalid(
                    "--duration",
                    "must be a positive number of seconds (900-43200)",
                ));
            }
        }
        if let Some(addr) = &self.metrics_addr {
            addr.parse::<std::net::SocketAddr>().map_err(|e| {
                invalid(
                    "--metrics-addr",
                    format!("'{addr}' is not an address like 127.0.0.1:9100 ({e})"),
                )
            })?;
        }

        Ok(Config {
            bucket,
            prefix,
            mountpoint: self.mountpoint,
            endpoint: EndpointConfig {
                url: endpoint_url,
                region: self.region,
                signature_version,
                path_style,
            },
            credentials: CredentialsConfig {
                access_key_id: None,
                access_key_secret: None,
                security_token: None,
                role_arn: self.role_arn,
                role_session_name: self.role_session_name,
                policy,
                duration_secs: self.duration,
                external_id: self.external_id,
                sts_endpoint: self.sts_endpoint,
                profile: self.profile,
                credentials_file: self.credentials_file,
                credential_process: self.credential_process,
                credentials_uri: self.credentials_uri,
                ecs_ram_role: self.ecs_ram_role,
            },
            fuse: FuseConfig {
                read_only: self.read_only,
                allow_other: self.allow_other,
                allow_root: self.allow_root,
                auto_unmount: self.auto_unmount,
                foreground: self.foreground || self.check,
                uid: self.uid,
                gid: self.gid,
                file_mode,
                dir_mode,
                default_permissions: self.default_permissions,
                threads: self.fuse_threads,
                extra_options: Vec::new(),
            },
            cache,
            transfer,
            log: LogConfig {
                level: self.log_level,
                file: self.log_file,
                json,
                metrics_addr: self.metrics_addr,
            },
            check_only: self.check,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<Config, CliError> {
        let mut v = vec!["ossmount"];
        v.extend_from_slice(args);
        parse(v)?.into_config()
    }

    #[test]
    fn source_forms() {
        assert_eq!(parse_source("bkt").unwrap(), ("bkt".into(), "".into()));
        assert_eq!(parse_source("bkt/a/b").unwrap(), ("bkt".into(), "a/b/".into()));
        assert_eq!(parse_source("oss://bkt/a/b/").unwrap(), ("bkt".into(), "a/b/".into()));
        assert_eq!(parse_source("bkt//a//").unwrap(), ("bkt".into(), "a/".into()));
        assert!(parse_source("Bad_Bucket").is_err());
        assert!(parse_source("ab").is_err());
        assert!(parse_source("bkt/../x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("x", "8M").unwrap(), 8 << 20);
        assert_eq!(parse_size("x", "8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("x", "1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("x", "4096").unwrap(), 4096);
        assert!(parse_size("x", "8Q").is_err());
        assert!(parse_size("x", "lots").is_err());
    }

    #[test]
    fn long_options_and_dash_o_agree() {
        let a = cfg(&[
            "bkt/p",
            "/mnt",
            "--endpoint",
            "http://127.0.0.1:9000",
            "--read-only",
            "--uid",
            "7",
            "--part-size",
            "16M",
        ])
        .unwrap();
        let b = cfg(&[
            "bkt/p",
            "/mnt",
            "-o",
            "endpoint=http://127.0.0.1:9000,ro,uid=7,part_size=16M",
        ])
        .unwrap();
        assert_eq!(a.fuse.read_only, b.fuse.read_only);
        assert_eq!(a.fuse.uid, b.fuse.uid);
        assert_eq!(a.transfer.part_size_bytes, b.transfer.part_size_bytes);
        assert_eq!(a.endpoint.url, b.endpoint.url);
        assert!(b.endpoint.path_style, "IP endpoints use path style");
    }

    #[test]
    fn fstab_style_options_are_accepted() {
        let c = cfg(&[
            "bkt",
            "/mnt",
            "-o",
            "rw,_netdev,nofail,noauto,user,defaults,allow_other,umask=022,endpoint=https://oss-cn-hangzhou.aliyuncs.com,x-systemd.automount",
        ])
        .unwrap();
        assert!(c.fuse.allow_other);
        assert!(!c.endpoint.path_style);
        assert_eq!(c.fuse.file_mode, 0o644);
        assert_eq!(c.fuse.dir_mode, 0o755);
        let c = cfg(&["bkt", "/mnt", "-oendpoint=http://localhost:1,umask=077"]).unwrap();
        assert_eq!(c.fuse.file_mode, 0o600);
        assert_eq!(c.fuse.dir_mode, 0o700);
    }

    #[test]
    fn inline_json_policy_survives_dash_o() {
        let c = cfg(&[
            "bkt",
            "/mnt",
            "-o",
            r#"endpoint=http://127.0.0.1:1,policy={"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"*"}]},ro"#,
        ])
        .unwrap();
        assert!(c.fuse.read_only);
        assert!(c.credentials.policy.unwrap().contains("\"Statement\""));
    }

    #[test]
    fn bad_input_is_refused_with_the_option_named() {
        let e = cfg(&["bkt", "/mnt", "-o", "endpoint=http://x:1,frobnicate=3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("frobnicate"), "{e}");
        let e = cfg(&["bkt", "/mnt"]).unwrap_err().to_string();
        assert!(e.contains("--endpoint"), "{e}");
        let e = cfg(&["bkt", "/mnt", "--endpoint", "ftp://x"]).unwrap_err().to_string();
        assert!(e.contains("--endpoint"), "{e}");
        let e = cfg(&["bkt", "/mnt", "--region", "cn-hangzhou", "--policy", "{not json"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--policy"), "{e}");
        let e = cfg(&["bkt", "/mnt", "--region", "cn-hangzhou", "--part-size", "10K"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--part-size"), "{e}");
        let e = cfg(&["bkt", "/mnt", "--region", "cn-hangzhou", "--signature-version", "3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--signature-version"), "{e}");
        let e = cfg(&["bkt", "/mnt", "--region", "cn-hangzhou", "--file-mode", "999"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--file-mode"), "{e}");
        let e = cfg(&[
            "bkt",
            "/mnt",
            "--region",
            "cn-hangzhou",
            "--memory-limit",
            "20M",
            "--part-size",
            "16M",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--memory-limit"), "{e}");
    }

    #[test]
    fn region_alone_gives_the_public_endpoint_and_ttl_parses() {
        let c = cfg(&[
            "bkt",
            "/mnt",
            "--region",
            "cn-beijing",
            "--metadata-ttl",
            "indefinite",
            "--negative-ttl",
            "0.5",
        ])
        .unwrap();
        assert_eq!(c.endpoint.url, "https://oss-cn-beijing.aliyuncs.com");
        assert_eq!(c.cache.metadata_ttl, None);
        assert_eq!(c.cache.negative_ttl, Duration::from_millis(500));
    }
}
