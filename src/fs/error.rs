//! `FsError`: the one error type at the filesystem boundary. Every failure must become a C errno
//! for the kernel, so an `FsError` carries its errno, the level it should be logged at, a short
//! message and the source chain. The conversions from `ClientError` and `CacheError` below are
//! the **only** place where OSS outcomes become errnos; they match every variant exhaustively
//! (no `_ =>` arm), so a new variant forces a decision here.
//!
//! Choices worth knowing:
//! - `PreconditionFailed` (the object changed under an open file) → `ESTALE`, as NFS does.
//! - `Credentials` (no credentials could be obtained at all: the source is down) → `EIO`, not
//!   `EACCES`: the file's permissions are not the problem and the mount recovers when the source
//!   does; `AccessDenied` (OSS refused, also after one credential refresh) → `EACCES`.
//! - `NoSuchBucket` → `EIO` (logged at error): the whole mount is broken, not one name.
//! - 5xx/throttling that outlived the client's retries, transport failures, CRC mismatches and
//!   unparseable answers → `EIO`.

use std::error::Error as StdError;
use std::fmt;

use tracing::Level;

use crate::cache::CacheError;
use crate::client::{ClientError, ServiceError};

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An error of a filesystem operation: errno + log level + message + source.
pub struct FsError {
    errno: i32,
    level: Level,
    message: String,
    source: Option<BoxError>,
}

impl FsError {
    /// An error without a source.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        FsError {
            errno,
            level: default_level(errno),
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source`.
    pub fn with_source(errno: i32, message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        FsError {
            errno,
            level: default_level(errno),
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Override the log level.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Prefix the message with what was being done (`"unlink a/b: "` + message).
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn errno(&self) -> i32 {
        self.errno
    }

    pub fn log_level(&self) -> Level {
        self.level
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Message and the whole source chain on one line, for logs.
    pub fn chain(&self) -> String {
        let mut s = self.message.clone();
        let mut cur: Option<&(dyn StdError + 'static)> = self.source.as_deref().map(|e| e as _);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

/// Expected outcomes (a name that does not exist, a directory that is not empty ...) log at
/// debug; everything else at warn.
fn default_level(errno: i32) -> Level {
    match errno {
        libc::ENOENT
        | libc::EEXIST
        | libc::ENOTEMPTY
        | libc::ENOTDIR
        | libc::EISDIR
        | libc::EROFS
        | libc::EPERM
        | libc::EACCES
        | libc::ENAMETOOLONG
        | libc::EINVAL
        | libc::ENODATA
        | libc::ELOOP => Level::DEBUG,
        _ => Level::WARN,
    }
}

impl fmt::Debug for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FsError(errno {}, {})", self.errno, self.chain())
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for FsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// Shorthand: `fs_err!(libc::ENOENT, "no {name}")`.
#[macro_export]
#[doc(hidden)]
macro_rules! fs_err {
    ($errno:expr, $($arg:tt)*) => {
        $crate::fs::error::FsError::new($errno, format!($($arg)*))
    };
}

/// The errno and log level for a client error. The single mapping; exhaustive on purpose.
fn client_errno(e: &ClientError) -> (i32, Level) {
    match e {
        ClientError::NoSuchKey(_) => (libc::ENOENT, Level::DEBUG),
        // The bucket itself is gone or never existed: nothing in the mount can work.
        ClientError::NoSuchBucket(_) => (libc::EIO, Level::ERROR),
        ClientError::AccessDenied(_) => (libc::EACCES, Level::WARN),
        // The object changed between our metadata and the request (If-Match failed).
        ClientError::PreconditionFailed(_) => (libc::ESTALE, Level::WARN),
        ClientError::AlreadyExists(_) => (libc::EEXIST, Level::DEBUG),
        ClientError::InvalidRange(_) => (libc::EINVAL, Level::WARN),
        // Someone else appended to the object concurrently: our view is stale.
        ClientError::AppendPositionMismatch { .. } => (libc::ESTALE, Level::WARN),
        // We never append to objects we did not create as appendable; seeing this is a bug or
        // a concurrent writer replacing the object.
        ClientError::NotAppendable(_) => (libc::EIO, Level::WARN),
        ClientError::Service(se) => service_errno(se),
        // No credentials could be obtained (source unreachable ...): an I/O failure of the
        // mount, not a permission problem of this file. See the module documentation.
        ClientError::Credentials(_) => (libc::EIO, Level::ERROR),
        ClientError::Transport(_) => (libc::EIO, Level::WARN),
        ClientError::Integrity { .. } => (libc::EIO, Level::ERROR),
        ClientError::InvalidResponse(_) => (libc::EIO, Level::ERROR),
        ClientError::InvalidRequest(_) => (libc::EINVAL, Level::WARN),
    }
}

/// Other error answers, by OSS code. Unknown codes are I/O errors.
fn service_errno(se: &ServiceError) -> (i32, Level) {
    match se.code.as_str() {
        "EntityTooLarge" => (libc::EFBIG, Level::WARN),
        "InvalidObjectName" | "KeyTooLong" => (libc::ENAMETOOLONG, Level::WARN),
        "NotSymlink" => (libc::EINVAL, Level::WARN),
        "FileAlreadyExists" => (libc::EEXIST, Level::DEBUG),
        "InvalidTargetType" | "SymlinkTargetNotExist" => (libc::ENOENT, Level::DEBUG),
        _ if se.status == 403 => (libc::EACCES, Level::WARN),
        _ if se.status == 404 => (libc::ENOENT, Level::DEBUG),
        _ => (libc::EIO, Level::WARN),
    }
}

impl From<ClientError> for FsError {
    fn from(e: ClientError) -> Self {
        let (errno, level) = client_errno(&e);
        FsError {
            errno,
            level,
            message: "OSS request failed".to_string(),
            source: Some(Box::new(e)),
        }
    }
}

impl From<CacheError> for FsError {
    fn from(e: CacheError) -> Self {
        let (errno, level) = match &e {
            CacheError::Client { source, .. } => client_errno(source),
        };
        FsError {
            errno,
            level,
            message: "read failed".to_string(),
            source: Some(Box::new(e)),
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        FsError {
            errno,
            level: Level::WARN,
            message: "local staging I/O failed".to_string(),
            source: Some(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::mock::service_error;

    #[test]
    fn mapping_examples() {
        let e: FsError = ClientError::NoSuchKey(service_error(404, "NoSuchKey", "x")).into();
        assert_eq!(e.errno(), libc::ENOENT);
        let e: FsError = ClientError::PreconditionFailed(service_error(412, "PreconditionFailed", "x")).into();
        assert_eq!(e.errno(), libc::ESTALE);
        let e: FsError = ClientError::Service(service_error(503, "ServiceUnavailable", "x")).into();
        assert_eq!(e.errno(), libc::EIO);
        let e: FsError = ClientError::Service(service_error(400, "EntityTooLarge", "x")).into();
        assert_eq!(e.errno(), libc::EFBIG);
        let e: FsError = ClientError::Integrity {
            what: "k".into(),
            expected: 1,
            actual: 2,
        }
        .into();
        assert_eq!(e.errno(), libc::EIO);
        assert_eq!(e.log_level(), Level::ERROR);
        let e: FsError = ClientError::AccessDenied(service_error(403, "AccessDenied", "policy")).into();
        assert_eq!(e.errno(), libc::EACCES);
        assert!(e.chain().contains("policy"), "{}", e.chain());
    }
}
