//! The optional disk tier: one checksummed file per block under a private directory, bounded
//! by `cache_size_bytes`, evicted least recently used.
//!
//! The tier lives in `<cache_dir>/ossmount-cache/` (mode 0700, files 0600), which is emptied
//! when the mount starts and removed when it ends, so one `cache_dir` serves one mount at a time
//! and nothing of a previous run is trusted. A block's file name is the SHA-256 of
//! (key, ETag, index); the file repeats them in its header, so a name collision or a stale file
//! can never serve the wrong bytes, and a CRC-64 over header and data catches corruption (a
//! corrupt file is deleted and reported as a miss, so the block is fetched again).
//!
//! Writes are asynchronous: `schedule_write` queues the block for a writer thread (at most
//! `MAX_PENDING_WRITES` blocks; beyond that a write is dropped, the tier being only a cache) and
//! returns. Queued blocks keep their memory charge, so they count against the memory budget.
//! The in-memory index (key → file, LRU order) is the only lock; no I/O happens while it is
//! held.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::object::BlockKey;
use crate::prefetch::budget::Charge;

/// Name of the directory the tier owns inside `cache_dir`.
pub const DISK_CACHE_SUBDIR: &str = "ossmount-cache";

/// Blocks queued for writing at most (each holds its memory charge until written): 32 MiB.
pub const MAX_PENDING_WRITES: usize = 32;

/// First bytes of every block file (format version 1).
const MAGIC: &[u8; 8] = b"OSSMBLK1";

/// Why the disk tier could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    #[error("cache directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cache directory {path}: cache size must be at least one block")]
    TooSmall { path: PathBuf },
}

/// Counters of the disk tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub blocks: u64,
    pub used_bytes: u64,
    pub writes: u64,
    pub write_drops: u64,
    pub write_errors: u64,
    pub corrupt: u64,
    pub evictions: u64,
}

struct Entry {
    file: PathBuf,
    bytes: u64,
}

struct Index {
    lru: LruCache<BlockKey, Entry>,
    used_bytes: u64,
}

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    write_drops: AtomicU64,
    write_errors: AtomicU64,
    corrupt: AtomicU64,
    evictions: AtomicU64,
}

/// State shared with the writer thread and with blocking reads.
pub(crate) struct DiskShared {
    dir: PathBuf,
    capacity_bytes: u64,
    index: Mutex<Index>,
    counters: Counters,
}

enum Job {
    /// Write this block; the charge keeps it accounted until written.
    Write {
        key: BlockKey,
        data: Bytes,
        _charge: Arc<Charge>,
    },
    /// Acknowledge once every job before this one is done.
    Barrier(SyncSender<()>),
}

/// The disk tier of one mount.
pub(crate) struct DiskTier {
    shared: Arc<DiskShared>,
    writer: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

fn dir_error(path: &Path) -> impl FnOnce(io::Error) -> DiskCacheError + '_ {
    move |source| DiskCacheError::Directory {
        path: path.to_path_buf(),
        source,
    }
}

impl DiskTier {
    /// Set up the tier under `cache_dir` (created if missing), holding at most `capacity_bytes`.
    pub(crate) fn open(cache_dir: &Path, capacity_bytes: u64, block_size: u64) -> Result<Self, DiskCacheError> {
        if capacity_bytes < block_size {
            return Err(DiskCacheError::TooSmall {
                path: cache_dir.to_path_buf(),
            });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(cache_dir)
            .map_err(dir_error(cache_dir))?;
        let dir = cache_dir.join(DISK_CACHE_SUBDIR);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&dir).map_err(dir_error(&dir))?,
            Ok(_) => fs::remove_file(&dir).map_err(dir_error(&dir))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(dir_error(&dir)(e)),
        }
        // `create` (not recursive) fails if someone else created it in between.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(dir_error(&dir))?;
        let shared = Arc::new(DiskShared {
            dir,
            capacity_bytes,
            index: Mutex::new(Index {
                lru: LruCache::unbounded(),
                used_bytes: 0,
            }),
            counters: Counters::default(),
        });
        let (tx, rx) = sync_channel(MAX_PENDING_WRITES);
        let writer_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ossmount-disk-cache".into())
            .spawn(move || writer_loop(writer_shared, rx))
            .map_err(dir_error(cache_dir))?;
        Ok(DiskTier {
            shared,
            writer: Some(tx),
            thread: Some(thread),
        })
    }

    /// The directory holding the block files.
    pub(crate) fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub(crate) fn shared(&self) -> Arc<DiskShared> {
        self.shared.clone()
    }

    /// Whether the block is on disk (no I/O).
    pub(crate) fn contains(&self, key: &BlockKey) -> bool {
        self.shared.lock().lru.contains(key)
    }

    /// Queue the block for writing, unless it is already on disk or the queue is full.
    pub(crate) fn schedule_write(&self, key: BlockKey, data: Bytes, charge: Arc<Charge>) {
        if self.contains(&key) {
            return;
        }
        let Some(writer) = &self.writer else { return };
        match writer.try_send(Job::Write {
            key,
            data,
            _charge: charge,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.counters.write_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Forget every block of `key` (any ETag) and delete their files.
    pub(crate) fn invalidate(&self, key: &str) {
        let victims: Vec<Entry> = {
            let mut index = self.shared.lock();
            let keys: Vec<BlockKey> = index
                .lru
                .iter()
                .filter(|(k, _)| k.object.key() == key)
                .map(|(k, _)| k.clone())
                .collect();
            let mut victims = Vec::with_capacity(keys.len());
            for k in keys {
                if let Some(e) = index.lru.pop(&k) {
                    index.used_bytes = index.used_bytes.saturating_sub(e.bytes);
                    victims.push(e);
                }
            }
            victims
        };
        for v in victims {
            let _ = fs::remove_file(&v.file);
        }
    }

    pub(crate) fn stats(&self) -> DiskStats {
        let (blocks, used_bytes) = {
            let index = self.shared.lock();
            (index.lru.len() as u64, index.used_bytes)
        };
        let c = &self.shared.counters;
        DiskStats {
            blocks,
            used_bytes,
            writes: c.writes.load(Ordering::Relaxed),
            write_drops: c.write_drops.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
        }
    }

    /// Wait until every queued write is done (tests and orderly shutdown).
    pub(crate) fn flush(&self) {
        let Some(writer) = &self.writer else { return };
        let (done_tx, done_rx) = sync_channel(1);
        if writer.send(Job::Barrier(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

impl Drop for DiskTier {
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Err(e) = fs::remove_dir_all(&self.shared.dir) {
            tracing::warn!(dir = %self.shared.dir.display(), error = %e, "could not remove the disk cache");
        }
    }
}

impl DiskShared {
    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file_for(&self, key: &BlockKey) -> PathBuf {
        let mut h = Sha256::new();
        h.update(key.object.key().as_bytes());
        h.update([0]);
        h.update(key.object.etag().as_str().as_bytes());
        h.update([0]);
        h.update(key.index.to_le_bytes());
        let name = hex::encode(h.finalize());
        self.dir.join(&name[..2]).join(format!("{name}.blk"))
    }

    /// Read a block back, verifying it. Blocking: call from a blocking thread. A corrupt or
    /// vanished file is a miss (and a corrupt one is deleted).
    pub(crate) fn read(&self, key: &BlockKey) -> Option<Bytes> {
        let file = self.lock().lru.get(key).map(|e| e.file.clone())?;
        let raw = match fs::read(&file) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "disk cache block unreadable");
                self.forget(key);
                return None;
            }
        };
        match decode(&raw, key) {
            Some(range) => Some(Bytes::from(raw).slice(range)),
            None => {
                self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %file.display(), "disk cache block failed verification; discarded");
                self.forget(key);
                let _ = fs::remove_file(&file);
                None
            }
        }
    }

    fn forget(&self, key: &BlockKey) {
        let mut index = self.lock();
        if let Some(e) = index.lru.pop(key) {
            index.used_bytes = index.used_bytes.saturating_sub(e.bytes);
        }
    }

    fn write(&self, key: BlockKey, data: &Bytes) {
        if self.lock().lru.contains(&key) {
            return;
        }
        let header = encode_header(&key, data);
        let bytes = (header.len() + data.len()) as u64;
        if bytes > self.capacity_bytes {
            return;
        }
        let file = self.file_for(&key);
        if let Err(e) = write_file(&file, &header, data) {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(file = %file.display(), error = %e, "disk cache write failed");
            return;
        }
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        let victims: Vec<Entry> = {
            let mut index = self.lock();
            index.used_bytes += bytes;
            if let Some(old) = index.lru.put(key, Entry { file, bytes }) {
                index.used_bytes = index.used_bytes.saturating_sub(old.bytes);
            }
            let mut victims = Vec::new();
            while index.used_bytes > self.capacity_bytes {
                let Some((_, e)) = index.lru.pop_lru() else { break };
                index.used_bytes = index.used_bytes.saturating_sub(e.bytes);
                victims.push(e);
            }
            victims
        };
        for v in victims {
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            let _ = fs::remove_file(&v.file);
        }
    }
}

fn write_file(file: &Path, header: &[u8], data: &[u8]) -> io::Result<()> {
    if let Some(parent) = file.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    }
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(header)?;
    f.write_all(data)?;
    drop(f);
    fs::rename(&tmp, file)
}

fn writer_loop(shared: Arc<DiskShared>, rx: Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::Write { key, data, _charge } => shared.write(key, &data),
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// File layout: MAGIC, crc64 (u64 LE) of everything after it, key length (u32 LE), key, ETag
/// length (u32 LE), ETag, block index (u64 LE), data length (u64 LE), data. Returns the header
/// (everything before the data), so the data is written from the block without a copy.
fn encode_header(key: &BlockKey, data: &[u8]) -> Vec<u8> {
    let k = key.object.key().as_bytes();
    let e = key.object.etag().as_str().as_bytes();
    let mut rest = Vec::with_capacity(4 + k.len() + 4 + e.len() + 16);
    rest.extend_from_slice(&(k.len() as u32).to_le_bytes());
    rest.extend_from_slice(k);
    rest.extend_from_slice(&(e.len() as u32).to_le_bytes());
    rest.extend_from_slice(e);
    rest.extend_from_slice(&key.index.to_le_bytes());
    rest.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let mut digest = crate::crc64::Crc64Digest::new();
    digest.update(&rest);
    digest.update(data);
    let mut header = Vec::with_capacity(16 + rest.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&digest.value().to_le_bytes());
    header.extend_from_slice(&rest);
    header
}

/// Where the data of a block file is, if the file is intact and is the block `key`.
fn decode(raw: &[u8], key: &BlockKey) -> Option<std::ops::Range<usize>> {
    let mut r = Reader { raw, pos: 0 };
    if r.take(8)? != MAGIC {
        return None;
    }
    let crc = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    if crate::crc64::checksum(raw.get(16..)?) != crc {
        return None;
    }
    let klen = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
    if r.take(klen)? != key.object.key().as_bytes() {
        return None;
    }
    let elen = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
    if r.take(elen)? != key.object.etag().as_str().as_bytes() {
        return None;
    }
    if u64::from_le_bytes(r.take(8)?.try_into().ok()?) != key.index {
        return None;
    }
    let dlen = usize::try_from(u64::from_le_bytes(r.take(8)?.try_into().ok()?)).ok()?;
    let start = r.pos;
    if raw.len() - start != dlen {
        return None;
    }
    Some(start..raw.len())
}

struct Reader<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.raw.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{ETag, ObjectId};

    fn key(index: u64) -> BlockKey {
        BlockKey {
            object: ObjectId::new("dir/file", ETag::new("\"abc\"")),
            index,
        }
    }

    fn encode(key: &BlockKey, data: &[u8]) -> Vec<u8> {
        let mut raw = encode_header(key, data);
        raw.extend_from_slice(data);
        raw
    }

    #[test]
    fn block_crc_is_the_oss_crc64() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        assert_eq!(crate::crc64::CRC64.checksum(&data), crate::crc64::checksum(&data));
        assert_eq!(crate::crc64::checksum(b"123456789"), 0x995d_c9bb_df19_39fa);
    }

    #[test]
    fn decode_accepts_intact_and_rejects_damaged_or_foreign_files() {
        let data = vec![7u8; 5000];
        let raw = encode(&key(3), &data);
        let range = decode(&raw, &key(3)).unwrap();
        assert_eq!(&raw[range], &data[..]);
        // Another block, another version or another key: never served.
        assert!(decode(&raw, &key(4)).is_none());
        let other_etag = BlockKey {
            object: ObjectId::new("dir/file", ETag::new("\"abd\"")),
            index: 3,
        };
        assert!(decode(&raw, &other_etag).is_none());
        // Any flipped bit, truncation or extension is caught.
        for pos in [0, 9, 20, raw.len() / 2, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[pos] ^= 1;
            assert!(decode(&bad, &key(3)).is_none(), "flip at {pos}");
        }
        assert!(decode(&raw[..raw.len() - 1], &key(3)).is_none());
        let mut longer = raw.clone();
        longer.push(0);
        assert!(decode(&longer, &key(3)).is_none());
        assert!(decode(&[], &key(3)).is_none());
    }
}
