//! Plain configuration data, built by `cli` and consumed by `mount`. No I/O, no clap.
//! `Config::validate` rejects impossible combinations before anything starts.

use std::path::PathBuf;
use std::time::Duration;

/// Default size of a multipart part and of a prefetch request.
pub const DEFAULT_PART_SIZE_BYTES: u64 = 8 * 1024 * 1024;
/// Default number of concurrent requests to OSS (reads and writes, each).
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// Default memory budget for cached and in-flight data.
/// With the upload buffers of a few concurrent writers (4 parts in flight per file, 8 MiB each)
/// this keeps the process under about 300 MiB resident with defaults.
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 128 * 1024 * 1024;
/// Default TTL of cached attributes and directory entries.
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(1);
/// Default TTL of a negative lookup.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// Default disk cache size when `--cache-dir` is given without `--cache-size`.
pub const DEFAULT_CACHE_SIZE_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// Which OSS signature to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    #[default]
    V4,
    V1,
}

/// Threads serving kernel requests, unless `--fuse-threads` says otherwise.
pub const DEFAULT_FUSE_THREADS: usize = 16;

/// Where OSS is and how to address it.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// e.g. `https://oss-cn-hangzhou.aliyuncs.com` or `http://127.0.0.1:9000`
    pub url: String,
    /// e.g. `cn-hangzhou`; derived from the endpoint host when absent.
    pub region: Option<String>,
    pub signature_version: SignatureVersion,
    /// Path-style addressing (`/bucket/key`); automatic for IP/localhost endpoints.
    pub path_style: bool,
}

/// How to obtain credentials. Everything optional: with nothing set the default chain runs.
#[derive(Clone, Debug, Default)]
pub struct CredentialsConfig {
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    pub security_token: Option<String>,
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    /// Session policy JSON (already read from `@file`).
    pub policy: Option<String>,
    pub duration_secs: Option<u64>,
    pub external_id: Option<String>,
    pub sts_endpoint: Option<String>,
    pub profile: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub credential_process: Option<String>,
    pub credentials_uri: Option<String>,
    pub ecs_ram_role: Option<String>,
}

/// Kernel-facing options.
#[derive(Clone, Debug)]
pub struct FuseConfig {
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub auto_unmount: bool,
    pub foreground: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub file_mode: u32,
    pub dir_mode: u32,
    /// Let the kernel check permissions from mode/uid/gid (`-o default_permissions`).
    pub default_permissions: bool,
    pub threads: usize,
    /// Extra `-o` options passed through to the kernel.
    pub extra_options: Vec<String>,
}

impl Default for FuseConfig {
    fn default() -> Self {
        FuseConfig {
            read_only: false,
            allow_other: false,
            allow_root: false,
            auto_unmount: false,
            foreground: false,
            uid: None,
            gid: None,
            file_mode: 0o644,
            dir_mode: 0o755,
            default_permissions: false,
            threads: DEFAULT_FUSE_THREADS,
            extra_options: Vec::new(),
        }
    }
}

/// Metadata and data caching.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub cache_dir: Option<PathBuf>,
    pub cache_size_bytes: u64,
    pub memory_limit_bytes: u64,
    /// None = indefinite.
    pub metadata_ttl: Option<Duration>,
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            cache_dir: None,
            cache_size_bytes: DEFAULT_CACHE_SIZE_BYTES,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            metadata_ttl: Some(DEFAULT_METADATA_TTL),
            negative_ttl: DEFAULT_NEGATIVE_TTL,
        }
    }
}

/// Transfer sizes and parallelism.
#[derive(Clone, Debug)]
pub struct TransferConfig {
    pub part_size_bytes: u64,
    pub max_concurrency: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            part_size_bytes: DEFAULT_PART_SIZE_BYTES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
        }
    }
}

/// Logging.
#[derive(Clone, Debug, Default)]
pub struct LogConfig {
    pub level: Option<String>,
    pub file: Option<PathBuf>,
    pub json: bool,
    pub metrics_addr: Option<String>,
}

/// Everything `mount` needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub bucket: String,
    /// Key prefix of the mount, empty or ending in `/`.
    pub prefix: String,
    pub mountpoint: PathBuf,
    pub endpoint: EndpointConfig,
    pub credentials: CredentialsConfig,
    pub fuse: FuseConfig,
    pub cache: CacheConfig,
    pub transfer: TransferConfig,
    pub log: LogConfig,
    /// `--check`: validate and exit.
    pub check_only: bool,
}
