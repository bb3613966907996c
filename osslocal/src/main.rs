//! `osslocal`: a local OSS + STS server for tests, demos and benchmarks of ossmount.
//! Parses the command line, prepares the data dir and the auth/STS state, prints the bound
//! address (first stdout line, and `--ready-file`), serves until SIGTERM/SIGINT.

mod admin;
#[allow(dead_code)] // parts of the auth engineer's API the server does not call
mod auth;
mod error;
mod ops;
#[allow(dead_code)] // parts of the auth engineer's API the server does not call
mod policy;
mod server;
mod storage;
#[allow(dead_code)] // parts of the auth engineer's API the server does not call
mod sts;
#[allow(dead_code)] // parts of the auth engineer's API the server does not call
mod token;
mod xml;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;

/// How long shutdown waits for in-flight blocking I/O.
const SHUTDOWN_GRACE_SECS: u64 = 5;

#[derive(Parser, Debug)]
#[command(name = "osslocal", version, about = "A local OSS + STS server for testing ossmount")]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Directory holding buckets, objects and server state.
    #[arg(long)]
    data_dir: PathBuf,
    /// Bucket to serve (repeatable).
    #[arg(long = "bucket", value_name = "NAME")]
    buckets: Vec<String>,
    /// Region id (V4 scope, GetBucketLocation).
    #[arg(long, default_value = "cn-hangzhou")]
    region: String,
    /// RAM user credentials `AK:SK` (repeatable); allowed everything.
    #[arg(long = "access-key", value_name = "AK:SK")]
    access_keys: Vec<String>,
    /// Assumable role `ARN[=@POLICY.json]` (repeatable).
    #[arg(long = "role", value_name = "ARN[=@POLICY.json]")]
    roles: Vec<String>,
    /// Smallest DurationSeconds STS accepts.
    #[arg(long, value_name = "SECS", default_value_t = sts::DEFAULT_MIN_DURATION_SECS)]
    min_duration: u64,
    /// Write the bound address to this file once accepting connections.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Accept unsigned requests (allowed everything).
    #[arg(long)]
    anonymous: bool,
    /// Skip fsync of objects and metadata: much faster small writes; objects survive a process
    /// restart but not a machine crash.
    #[arg(long)]
    no_fsync: bool,
    /// Trusted OIDC provider `ARN[=ISSUER]` for AssumeRoleWithOIDC (repeatable).
    #[arg(long = "oidc-provider", value_name = "ARN[=ISSUER]")]
    oidc_providers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(
        "invalid bucket name {0:?}: use 3-63 characters a-z, 0-9 and '-', starting and ending with a letter or digit"
    )]
    BucketName(String),
    #[error("--access-key must be AK:SK, got a value without ':'")]
    AccessKey,
    #[error("--role {arn}: {reason}")]
    Role { arn: String, reason: String },
    #[error("creating the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Sts(#[from] sts::StsError),
    #[error("data dir: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("{0}")]
    Server(#[from] server::ServerError),
    #[error("writing the ready file {path}: {source}")]
    ReadyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

fn valid_bucket(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn parse_roles(specs: &[String]) -> Result<HashMap<String, sts::Role>, MainError> {
    let mut roles = HashMap::new();
    for spec in specs {
        let (arn, policy) = match spec.split_once("=@") {
            Some((arn, file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| MainError::Role {
                    arn: arn.to_string(),
                    reason: format!("reading {file}: {e}"),
                })?;
                let p = policy::Policy::parse(&text).map_err(|reason| MainError::Role {
                    arn: arn.to_string(),
                    reason: format!("policy {file}: {reason}"),
                })?;
                (arn.to_string(), Some(p))
            }
            None => (spec.clone(), None),
        };
        if !arn.starts_with("acs:ram::") || !arn.contains(":role/") {
            return Err(MainError::Role {
                arn,
                reason: "expected acs:ram::<account>:role/<name>".into(),
            });
        }
        let mut role = sts::Role::new(arn.clone());
        role.policy = policy;
        roles.insert(arn, role);
    }
    Ok(roles)
}

fn write_ready_file(path: &Path, addr: &str) -> Result<(), MainError> {
    let err = |source| MainError::ReadyFile {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp-osslocal");
    std::fs::write(&tmp, format!("{addr}\n")).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Resolves on the first SIGTERM or SIGINT; the handlers are installed when this is called.
fn shutdown_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn run(cli: Cli) -> Result<(), MainError> {
    for b in &cli.buckets {
        if !valid_bucket(b) {
            return Err(MainError::BucketName(b.clone()));
        }
    }
    let mut keys = HashMap::new();
    for spec in &cli.access_keys {
        let (ak, sk) = spec.split_once(':').ok_or(MainError::AccessKey)?;
        keys.insert(ak.to_string(), sk.to_string());
    }
    std::fs::create_dir_all(&cli.data_dir).map_err(|source| MainError::DataDir {
        path: cli.data_dir.clone(),
        source,
    })?;
    let storage = storage::Storage::open(&cli.data_dir, &cli.buckets, !cli.no_fsync)?;
    let oidc_providers = cli
        .oidc_providers
        .iter()
        .map(|s| match s.split_once('=') {
            Some((arn, issuer)) => sts::OidcProvider {
                arn: arn.to_string(),
                issuer: Some(issuer.to_string()),
            },
            None => sts::OidcProvider {
                arn: s.clone(),
                issuer: None,
            },
        })
        .collect();
    let mut sts_state = sts::StsState::new(keys.clone(), sts::StsState::load_or_create_token_key(&cli.data_dir)?);
    sts_state.roles = parse_roles(&cli.roles)?;
    sts_state.oidc_providers = oidc_providers;
    sts_state.min_duration = cli.min_duration;
    sts_state.account_id = server::ACCOUNT_ID.to_string();
    let sts_state = Arc::new(sts_state);
    let auth_cfg = auth::AuthConfig {
        keys,
        anonymous: cli.anonymous,
        region: cli.region.clone(),
        sts: sts_state,
    };
    let app = Arc::new(server::App::new(storage, auth_cfg, cli.region.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(MainError::Runtime)?;
    rt.block_on(async move {
        // Install the handlers before announcing readiness, so an early SIGTERM is clean.
        let signals = shutdown_signals().map_err(MainError::Signals)?;
        let ready_file = cli.ready_file.clone();
        server::serve(
            app,
            &cli.listen,
            |addr| {
                let addr = addr.to_string();
                // Ready file first: whoever read the stdout line may look for it at once.
                if let Some(p) = &ready_file {
                    write_ready_file(p, &addr).map_err(|e| e.to_string())?;
                }
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{addr}");
                let _ = out.flush();
                Ok(())
            },
            async {
                signals.await;
                tracing::info!("shutting down");
            },
        )
        .await?;
        Ok::<(), MainError>(())
    })?;
    // Give blocking writers/readers a moment to notice their peers are gone.
    rt.shutdown_timeout(std::time::Duration::from_secs(SHUTDOWN_GRACE_SECS));
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OSSLOCAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    if let Err(e) = run(cli) {
        eprintln!("osslocal: {e}");
        std::process::exit(1);
    }
}
