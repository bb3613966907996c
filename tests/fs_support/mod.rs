//! Helpers shared by the `fs_*` tests: an `OssFs` over `MockClient` (optionally wrapped in a
//! `FailureClient`) and small drivers for common sequences of operations.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use ossmount::client::ObjectClient;
use ossmount::client::mock::MockClient;
use ossmount::fs::{FsConfig, FsError, OssFs};

pub const ROOT: u64 = 1;
/// Small parts so multipart paths run with little data (the mock's minimum is lowered to match).
pub const PART: u64 = 128 * 1024;

pub fn config(prefix: &str) -> FsConfig {
    let mut c = FsConfig::new(prefix);
    c.part_size_bytes = PART;
    c.max_concurrency = 4;
    c.metadata_ttl = Some(Duration::from_secs(60));
    c.negative_ttl = Duration::from_secs(60);
    c.uid = 1000;
    c.gid = 1000;
    c
}

pub fn mock() -> Arc<MockClient> {
    let m = Arc::new(MockClient::new("bucket"));
    m.set_min_part_size(PART);
    m
}

pub fn new_fs<C: ObjectClient>(client: Arc<C>, prefix: &str) -> OssFs<C> {
    OssFs::new(client, config(prefix)).unwrap()
}

pub fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// create + write + release; returns the inode.
pub async fn write_file<C: ObjectClient>(fs: &OssFs<C>, parent: u64, n: &str, data: &[u8]) -> Result<u64, FsError> {
    let (entry, opened) = fs
        .create(
            parent,
            name(n),
            0o100644,
            0o022,
            libc::O_WRONLY | libc::O_CREAT,
            1000,
            1000,
        )
        .await?;
    let ino = entry.attr.ino.0;
    let mut off = 0usize;
    while off < data.len() {
        let end = (off + 64 * 1024).min(data.len());
        let w = fs.write(ino, opened.fh, off as u64, &data[off..end]).await;
        if let Err(e) = w {
            let _ = fs.release(ino, opened.fh).await;
            return Err(e);
        }
        off = end;
    }
    fs.flush(ino, opened.fh).await?;
    fs.release(ino, opened.fh).await?;
    Ok(ino)
}

/// open + read everything + release.
pub async fn read_file<C: ObjectClient>(fs: &OssFs<C>, ino: u64) -> Result<Vec<u8>, FsError> {
    let opened = fs.open(ino, libc::O_RDONLY).await?;
    let mut out = Vec::new();
    loop {
        let chunk = fs.read(ino, opened.fh, out.len() as u64, 100_000).await?;
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(ino, opened.fh).await?;
    Ok(out)
}

/// Every name of a directory (without "." and ".."), read like `ls` does.
pub async fn list<C: ObjectClient>(fs: &OssFs<C>, ino: u64) -> Result<Vec<String>, FsError> {
    let opened = fs.opendir(ino).await?;
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let batch = fs.readdir(ino, opened.fh, offset, false).await?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            offset = e.offset;
            let n = e.name.to_string_lossy().to_string();
            if n != "." && n != ".." {
                names.push(n);
            }
        }
    }
    fs.releasedir(ino, opened.fh).await?;
    names.sort();
    Ok(names)
}

pub async fn lookup_ino<C: ObjectClient>(fs: &OssFs<C>, parent: u64, n: &str) -> Result<u64, FsError> {
    Ok(fs.lookup(parent, name(n)).await?.attr.ino.0)
}
