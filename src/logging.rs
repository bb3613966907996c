//! Logging setup: a `tracing` subscriber with an env-style filter (`--log-level`), text or JSON
//! (`--log-format`), to stderr or a file (`--log-file`). Secrets never reach this layer: every
//! type holding one has a redacting `Debug`, and request URLs with signatures are never logged.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Filter used when `--log-level` is not given.
pub const DEFAULT_LOG_FILTER: &str = "warn,fuser=error,ossmount=info";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid --log-level '{filter}': {message}")]
    Filter { filter: String, message: String },
    #[error("cannot open --log-file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Install the global subscriber. `to_stderr` is false for a daemon without `--log-file`
/// (its stderr is closed), in which case nothing is written.
pub fn init(config: &LogConfig, to_stderr: bool) -> Result<(), LoggingError> {
    let filter_text = config.level.clone().unwrap_or_else(|| DEFAULT_LOG_FILTER.to_string());
    let filter_text = match filter_text.as_str() {
        // A bare level applies to ossmount; dependencies stay at warn.
        "error" | "warn" | "info" | "debug" | "trace" => format!("warn,fuser=error,ossmount={filter_text}"),
        _ => filter_text,
    };
    let filter = EnvFilter::try_new(&filter_text).map_err(|e| LoggingError::Filter {
        filter: filter_text.clone(),
        message: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let result = match (&config.file, config.json) {
        (Some(path), json) => {
            let file = open_log_file(path)?;
            let writer = Mutex::new(file);
            if json {
                builder.json().with_writer(writer).try_init()
            } else {
                builder.with_ansi(false).with_writer(writer).try_init()
            }
        }
        (None, _) if !to_stderr => builder.with_writer(std::io::sink).try_init(),
        (None, true) => builder.json().with_writer(std::io::stderr).try_init(),
        (None, false) => builder.with_writer(std::io::stderr).try_init(),
    };
    // A second init (tests) keeps the first subscriber; that is not an error worth failing for.
    let _ = result;
    Ok(())
}

fn open_log_file(path: &Path) -> Result<std::fs::File, LoggingError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| LoggingError::File {
            path: path.display().to_string(),
            source,
        })
}
