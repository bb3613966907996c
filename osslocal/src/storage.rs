//! On-disk object store behind osslocal.
//!
//! Layout under `--data-dir`:
//! ```text
//! buckets/<bucket>/meta/<sha256(key)>.json   sidecar metadata (key, size, etag, crc64, ...)
//! buckets/<bucket>/data/<sha256(key)>.<uuid> object bytes of one version
//! .osslocal/tmp/<uuid>                       uploads in progress (removed at start)
//! .osslocal/uploads/<upload id>/             multipart uploads: upload.json, part-N.json, part-N.<uuid>
//! ```
//! Keys are opaque: a file name is derived only from the SHA-256 of the key, so no key can
//! name a path outside the data dir. Every write streams into a temp file while hashing (MD5
//! and CRC-64/XZ) on a blocking thread, is fsynced, renamed into a fresh version file and
//! then published by renaming the sidecar under the bucket's index lock. A reader that has
//! opened a version file keeps reading that version even after it is replaced or deleted
//! (the old version is unlinked, never modified). Appends copy the old version into a new one.
//!
//! Lock order: `Storage::uploads` → `Upload::parts`; a bucket's `index` lock is never held
//! together with another lock. No lock is held across `.await` or bulk I/O (the index lock
//! covers only a sidecar rename and the map update).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, TimeZone, Utc};
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc;

/// CRC-64/XZ with a slice-by-16 table: the reference the SIMD digest is tested against.
#[cfg(test)]
pub static CRC64: crc::Crc<u64, crc::Table<16>> = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_XZ);

/// Size of the chunks handed to the blocking writer and read back for GETs and copies.
pub const IO_CHUNK_BYTES: usize = 1024 * 1024;
/// Bounded queue between the network task and the blocking writer thread.
const WRITER_QUEUE_CHUNKS: usize = 4;
/// GET bodies are sent from mappings of the data file of at most this many bytes each.
const MAP_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// Mapping offsets are multiples of this (the largest common page size).
const MAP_ALIGN_BYTES: u64 = 64 * 1024;
/// A stalled upload (client alive but sending nothing) is abandoned after this long.
const BODY_IDLE_TIMEOUT_SECS: u64 = 120;
/// How often an open races with a concurrent replace before giving up.
const OPEN_RETRIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata error while {context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("request body ended after {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    #[error("request body is longer than the declared {expected} bytes")]
    TooLong { expected: u64 },
    #[error("chunked request body exceeds {limit} bytes")]
    Oversized { limit: u64 },
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("object already exists")]
    Exists,
    #[error("append position {position} does not match length {length}")]
    Position { position: u64, length: u64 },
    #[error("Content-MD5 does not match the body")]
    BadDigest,
    #[error("object is not appendable")]
    NotAppendable,
    #[error("writer thread failed: {0}")]
    Join(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of our short locks cannot leave the map half-updated in a
    // way that matters more than refusing all further service, so recover the guard.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectType {
    Normal,
    Appendable,
    Multipart,
    Symlink,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Normal => "Normal",
            ObjectType::Appendable => "Appendable",
            ObjectType::Multipart => "Multipart",
            ObjectType::Symlink => "Symlink",
        }
    }
}

/// Metadata a client supplies on write (PutObject, Initiate, Append create, Copy REPLACE).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteMeta {
    pub content_type: String,
    /// Lower-case names without the `x-oss-meta-` prefix.
    pub user_meta: BTreeMap<String, String>,
    /// Standard headers stored and returned verbatim (cache-control, content-disposition, ...).
    pub headers: BTreeMap<String, String>,
}

/// Sidecar metadata of one object version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Quoted upper-case hex, e.g. `"5EB63BBBE01EEED093CB22BB8F5ACDC3"`.
    pub etag: String,
    pub crc64: u64,
    pub last_modified_ms: i64,
    pub object_type: ObjectType,
    pub meta: WriteMeta,
    pub symlink_target: Option<String>,
    /// File name under the bucket's `data/` dir; `None` for symlinks and multipart objects.
    pub data_file: Option<String>,
    /// A completed multipart object: its parts' files under `data/`, in order; the object is
    /// their concatenation (as in OSS, completing an upload copies nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_parts: Vec<DataPart>,
}

/// One file of a multipart object's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPart {
    pub file: String,
    pub size: u64,
}

/// The opened data of an object version.
pub enum ObjectData {
    File(File),
    /// Multipart: the part files with their sizes, in order.
    Parts(Vec<(File, u64)>),
}

impl ObjectData {
    /// The file ranges holding bytes `[offset, offset + len)` of the object.
    pub fn ranges(self, offset: u64, len: u64) -> Vec<FileRange> {
        if len == 0 {
            return Vec::new();
        }
        match self {
            ObjectData::File(file) => vec![FileRange { file, offset, len }],
            ObjectData::Parts(parts) => {
                let (end, mut start) = (offset.saturating_add(len), 0u64);
                let mut out = Vec::new();
                for (file, size) in parts {
                    let (from, to) = (offset.max(start), end.min(start + size));
                    if from < to {
                        out.push(FileRange {
                            file,
                            offset: from - start,
                            len: to - from,
                        });
                    }
                    start += size;
                }
                out
            }
        }
    }
}

/// New data for [`Bucket::commit`].
pub enum NewData {
    /// None (symlinks).
    None,
    /// A written temp file, moved into place.
    Temp(TempFile),
    /// Multipart part files (path, size), linked into place in this order.
    Parts(Vec<(PathBuf, u64)>),
}

impl ObjectMeta {
    pub fn last_modified(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.last_modified_ms)
            .single()
            .unwrap_or_else(Utc::now)
    }
}

/// Result of streaming bytes into a temp file.
pub struct Written {
    pub temp: TempFile,
    pub size: u64,
    pub md5: [u8; 16],
    pub crc64: u64,
}

impl Written {
    pub fn etag(&self) -> String {
        format!("\"{}\"", hex::encode_upper(self.md5))
    }
}

/// A temp file removed on drop unless persisted (renamed away).
pub struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn persist(mut self, to: &Path) -> std::io::Result<()> {
        if let Some(p) = self.path.take() {
            if let Err(e) = std::fs::rename(&p, to) {
                let _ = std::fs::remove_file(&p);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// MD5 + CRC-64 accumulated over a byte stream.
struct Hashers {
    /// None when MD5 is not needed or computed on another thread.
    md5: Option<Md5>,
    crc: crc64fast::Digest,
    size: u64,
}

impl Hashers {
    fn new(with_md5: bool) -> Self {
        Hashers {
            md5: with_md5.then(Md5::new),
            crc: crc64fast::Digest::new(),
            size: 0,
        }
    }
    fn update(&mut self, data: &[u8]) {
        if let Some(m) = &mut self.md5 {
            m.update(data);
        }
        self.crc.write(data);
        self.size += data.len() as u64;
    }
    fn finish(self) -> (Option<[u8; 16]>, u64, u64) {
        (self.md5.map(|m| m.finalize().into()), self.crc.sum64(), self.size)
    }
}

/// CRC-64/XZ of `a ‖ b` from `crc(a)`, `crc(b)` and `len(b)` (zlib's GF(2) matrix method,
/// valid because init and xorout are equal). Lets CompleteMultipartUpload skip re-reading.
pub fn crc64_combine(mut crc1: u64, crc2: u64, mut len2: u64) -> u64 {
    fn times(mat: &[u64; 64], mut vec: u64) -> u64 {
        let mut sum = 0;
        let mut i = 0;
        while vec != 0 {
            if vec & 1 != 0 {
                sum ^= mat[i];
            }
            vec >>= 1;
            i += 1;
        }
        sum
    }
    fn square(out: &mut [u64; 64], mat: &[u64; 64]) {
        for (n, o) in out.iter_mut().enumerate() {
            *o = times(mat, mat[n]);
        }
    }
    const POLY_REFLECTED: u64 = 0xC96C_5795_D787_0F42;
    if len2 == 0 {
        return crc1;
    }
    let mut odd = [0u64; 64];
    let mut even = [0u64; 64];
    // Operator for one zero bit.
    odd[0] = POLY_REFLECTED;
    for (n, o) in odd.iter_mut().enumerate().skip(1) {
        *o = 1u64 << (n - 1);
    }
    square(&mut even, &odd); // two zero bits
    square(&mut odd, &even); // four zero bits
    // Apply len2 zero bytes to crc1, one bit of len2 at a time.
    loop {
        square(&mut even, &odd);
        if len2 & 1 != 0 {
            crc1 = times(&even, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
        square(&mut odd, &even);
        if len2 & 1 != 0 {
            crc1 = times(&odd, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
    }
    crc1 ^ crc2
}

/// Continue a finalized CRC-64/XZ value over more bytes.
#[cfg(test)]
pub fn crc64_continue(crc: u64, data: &[u8]) -> u64 {
    let mut d = CRC64.digest_with_initial((crc ^ u64::MAX).reverse_bits());
    d.update(data);
    d.finalize()
}

/// How long a request body must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLen {
    /// `Content-Length`: exactly this many bytes.
    Exact(u64),
    /// Chunked transfer encoding: anything up to this many bytes.
    AtMost(u64),
}

/// The parameters of one AppendObject besides its body.
pub struct AppendRequest {
    pub position: u64,
    pub expected: BodyLen,
    /// Metadata of the request; used only when the append creates the object.
    pub meta: WriteMeta,
    pub content_md5: Option<[u8; 16]>,
}

/// Where a write's first bytes come from before the streamed body (appends, copies).
pub struct FileRange {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

/// One multipart part.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartInfo {
    pub number: u32,
    pub size: u64,
    pub md5_hex: String,
    pub crc64: u64,
    pub last_modified_ms: i64,
    pub file: String,
}

impl PartInfo {
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.md5_hex)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadInfo {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub initiated_ms: i64,
    pub meta: WriteMeta,
}

pub struct Upload {
    pub info: UploadInfo,
    dir: PathBuf,
    parts: Mutex<BTreeMap<u32, PartInfo>>,
}

impl Upload {
    pub fn parts(&self) -> BTreeMap<u32, PartInfo> {
        lock(&self.parts).clone()
    }
    pub fn part_path(&self, p: &PartInfo) -> PathBuf {
        self.dir.join(&p.file)
    }
}

/// An object version and its opened data file (None for symlinks).
pub type Opened = (Arc<ObjectMeta>, Option<ObjectData>);

pub struct Bucket {
    pub name: String,
    pub created: DateTime<Utc>,
    dir: PathBuf,
    /// fsync data and sidecars before publishing them.
    durable: bool,
    index: Mutex<BTreeMap<Vec<u8>, Arc<ObjectMeta>>>,
}

/// One entry of a listing: an object or a common prefix.
pub enum ListEntry {
    Object(Arc<ObjectMeta>),
    Prefix(String),
}

pub struct ListPage {
    pub entries: Vec<ListEntry>,
    pub truncated: bool,
    /// Last key or common prefix returned (for the next marker / token).
    pub last: Option<String>,
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Smallest byte string greater than every string starting with `prefix` (None: no bound).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xFF {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `File::sync_all` unless durability is switched off (`--no-fsync`).
fn sync(f: &File, durable: bool, what: &str) -> Result<(), StorageError> {
    if durable {
        f.sync_all().map_err(io_err(format!("syncing {what}")))
    } else {
        Ok(())
    }
}

fn write_json_atomic<T: Serialize>(
    dir: &Path,
    tmp_dir: &Path,
    name: &str,
    value: &T,
    durable: bool,
) -> Result<(), StorageError> {
    let tmp = tmp_dir.join(uuid::Uuid::new_v4().simple().to_string());
    let data = serde_json::to_vec(value).map_err(|source| StorageError::Json {
        context: format!("encoding {name}"),
        source,
    })?;
    let guard = TempFile {
        path: Some(tmp.clone()),
    };
    let mut f = File::create(&tmp).map_err(io_err("creating a sidecar temp file"))?;
    f.write_all(&data).map_err(io_err("writing a sidecar"))?;
    sync(&f, durable, "a sidecar")?;
    guard.persist(&dir.join(name)).map_err(io_err("renaming a sidecar"))
}

impl Bucket {
    fn meta_dir(&self) -> PathBuf {
        self.dir.join("meta")
    }
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn data_path(&self, meta: &ObjectMeta) -> Option<PathBuf> {
        meta.data_file.as_ref().map(|f| self.data_dir().join(f))
    }

    /// Every data file of `meta` (one, the parts, or none).
    fn data_paths(&self, meta: &ObjectMeta) -> Vec<PathBuf> {
        let dir = self.data_dir();
        meta.data_file
            .iter()
            .chain(meta.data_parts.iter().map(|p| &p.file))
            .map(|f| dir.join(f))
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<Arc<ObjectMeta>> {
        lock(&self.index).get(key.as_bytes()).cloned()
    }

    /// Current version of `key` with its data file opened (None for symlinks' file).
    /// Retries when a concurrent writer replaced the version between lookup and open.
    pub fn open(&self, key: &str) -> Result<Option<Opened>, StorageError> {
        'retry: for _ in 0..OPEN_RETRIES {
            let Some(meta) = self.get(key) else { return Ok(None) };
            if !meta.data_parts.is_empty() {
                let mut files = Vec::with_capacity(meta.data_parts.len());
                for part in &meta.data_parts {
                    match File::open(self.data_dir().join(&part.file)) {
                        Ok(f) => files.push((f, part.size)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'retry,
                        Err(e) => return Err(io_err("opening object data")(e)),
                    }
                }
                return Ok(Some((meta, Some(ObjectData::Parts(files)))));
            }
            let Some(path) = self.data_path(&meta) else {
                return Ok(Some((meta, None)));
            };
            match File::open(&path) {
                Ok(f) => return Ok(Some((meta, Some(ObjectData::File(f))))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("opening object data")(e)),
            }
        }
        Err(StorageError::Io {
            context: "opening object data (replaced too often)".into(),
            source: std::io::Error::other("concurrent replacement"),
        })
    }

    /// Publish a new version of an object. `data` (already fsynced) is moved into place.
    /// With `forbid_overwrite` an existing key answers `Exists` and nothing changes.
    /// `expect_etag`: only publish if the current version still has this ETag (appends).
    pub fn commit(
        &self,
        tmp_dir: &Path,
        mut meta: ObjectMeta,
        data: NewData,
        forbid_overwrite: bool,
        expect: Option<&Option<String>>,
    ) -> Result<Arc<ObjectMeta>, StorageError> {
        let hash = key_hash(&meta.key);
        let mut new_data_paths: Vec<PathBuf> = Vec::new();
        let cleanup = |paths: &[PathBuf]| {
            for p in paths {
                let _ = std::fs::remove_file(p);
            }
        };
        match data {
            NewData::None => {}
            NewData::Temp(temp) => {
                let name = format!("{hash}.{}", uuid::Uuid::new_v4().simple());
                let path = self.data_dir().join(&name);
                temp.persist(&path).map_err(io_err("moving object data into place"))?;
                meta.data_file = Some(name);
                new_data_paths.push(path);
            }
            NewData::Parts(parts) => {
                // Hard links: the upload's files stay until the upload is discarded, so a
                // failure here leaves the upload intact.
                let base = format!("{hash}.{}", uuid::Uuid::new_v4().simple());
                meta.data_file = None;
                meta.data_parts = Vec::with_capacity(parts.len());
                for (i, (src, size)) in parts.iter().enumerate() {
                    let name = format!("{base}.p{}", i + 1);
                    let path = self.data_dir().join(&name);
                    if let Err(e) = std::fs::hard_link(src, &path) {
                        cleanup(&new_data_paths);
                        return Err(io_err("linking a part into place")(e));
                    }
                    new_data_paths.push(path);
                    meta.data_parts.push(DataPart {
                        file: name,
                        size: *size,
                    });
                }
            }
        }
        let new_data_path = &new_data_paths;
        // Sidecar written and synced outside the lock; only the rename is inside.
        let tmp_meta = tmp_dir.join(format!("{}.json", uuid::Uuid::new_v4().simple()));
        let tmp_guard = TempFile {
            path: Some(tmp_meta.clone()),
        };
        let res = (|| {
            let bytes = serde_json::to_vec(&meta).map_err(|source| StorageError::Json {
                context: "encoding object metadata".into(),
                source,
            })?;
            let mut f = File::create(&tmp_meta).map_err(io_err("creating a sidecar"))?;
            f.write_all(&bytes).map_err(io_err("writing a sidecar"))?;
            sync(&f, self.durable, "a sidecar")
        })();
        if let Err(e) = res {
            cleanup(new_data_path);
            return Err(e);
        }
        let meta = Arc::new(meta);
        let old = {
            let mut index = lock(&self.index);
            let cur = index.get(meta.key.as_bytes());
            if forbid_overwrite && cur.is_some() {
                drop(index);
                cleanup(new_data_path);
                return Err(StorageError::Exists);
            }
            if let Some(expected) = expect {
                let cur_etag = cur.map(|m| m.etag.clone());
                if cur_etag.as_ref() != expected.as_ref() {
                    let length = cur.map(|m| m.size).unwrap_or(0);
                    drop(index);
                    cleanup(new_data_path);
                    return Err(StorageError::Position {
                        position: u64::MAX,
                        length,
                    });
                }
            }
            if let Err(e) = tmp_guard.persist(&self.meta_dir().join(format!("{hash}.json"))) {
                drop(index);
                cleanup(new_data_path);
                return Err(io_err("publishing a sidecar")(e));
            }
            index.insert(meta.key.as_bytes().to_vec(), meta.clone())
        };
        if let Some(old) = old {
            // Every new version has new file names, so all the old ones go.
            let keep = self.data_paths(&meta);
            let stale: Vec<PathBuf> = self
                .data_paths(&old)
                .into_iter()
                .filter(|p| !keep.contains(p))
                .collect();
            cleanup(&stale);
        }
        Ok(meta)
    }

    /// Remove an object; `false` when it did not exist.
    pub fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let hash = key_hash(key);
        let old = {
            let mut index = lock(&self.index);
            if !index.contains_key(key.as_bytes()) {
                return Ok(false);
            }
            match std::fs::remove_file(self.meta_dir().join(format!("{hash}.json"))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing a sidecar")(e)),
            }
            index.remove(key.as_bytes())
        };
        if let Some(old) = old {
            for p in self.data_paths(&old) {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(true)
    }

    /// One page of a listing. `after`: exclusive start key (marker, start-after or token).
    pub fn list(&self, prefix: &str, delimiter: &str, after: Option<&str>, max: usize) -> ListPage {
        let index = lock(&self.index);
        let mut start: Bound<Vec<u8>> = Bound::Included(prefix.as_bytes().to_vec());
        if let Some(after) = after
            && after.as_bytes() >= prefix.as_bytes()
        {
            start = Bound::Excluded(after.as_bytes().to_vec());
            // Resuming inside a common prefix that was already returned: skip all of it.
            if !delimiter.is_empty()
                && let Some(rest) = after.strip_prefix(prefix)
                && let Some(pos) = rest.find(delimiter)
            {
                let cp = &after[..prefix.len() + pos + delimiter.len()];
                match prefix_successor(cp.as_bytes()) {
                    Some(s) => start = Bound::Included(s),
                    None => {
                        return ListPage {
                            entries: vec![],
                            truncated: false,
                            last: None,
                        };
                    }
                }
            }
        }
        let mut entries = Vec::new();
        let mut last = None;
        let mut cursor = start;
        loop {
            let mut next_cursor = None;
            for (k, meta) in index.range((cursor.clone(), Bound::Unbounded)) {
                if !k.starts_with(prefix.as_bytes()) {
                    return ListPage {
                        entries,
                        truncated: false,
                        last,
                    };
                }
                if entries.len() >= max {
                    return ListPage {
                        entries,
                        truncated: true,
                        last,
                    };
                }
                let rest = &meta.key[prefix.len()..];
                if !delimiter.is_empty()
                    && let Some(pos) = rest.find(delimiter)
                {
                    let cp = meta.key[..prefix.len() + pos + delimiter.len()].to_string();
                    last = Some(cp.clone());
                    let succ = prefix_successor(cp.as_bytes());
                    entries.push(ListEntry::Prefix(cp));
                    match succ {
                        Some(s) => next_cursor = Some(Bound::Included(s)),
                        None => {
                            return ListPage {
                                entries,
                                truncated: false,
                                last,
                            };
                        }
                    }
                    break;
                }
                last = Some(meta.key.clone());
                entries.push(ListEntry::Object(meta.clone()));
            }
            match next_cursor {
                Some(c) => cursor = c,
                None => {
                    return ListPage {
                        entries,
                        truncated: false,
                        last,
                    };
                }
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.index).len()
    }
}

pub struct Storage {
    tmp_dir: PathBuf,
    uploads_dir: PathBuf,
    buckets: BTreeMap<String, Arc<Bucket>>,
    uploads: Mutex<HashMap<String, Arc<Upload>>>,
    /// Serialises appends (an append reads the current version and publishes the next).
    append_lock: tokio::sync::Mutex<()>,
    durable: bool,
}

impl Storage {
    /// Open (creating as needed) the data dir and rebuild the indexes from the sidecars.
    /// `durable: false` skips every fsync (`--no-fsync`): objects still survive a process
    /// restart, not a machine crash.
    pub fn open(root: &Path, bucket_names: &[String], durable: bool) -> Result<Storage, StorageError> {
        let state = root.join(".osslocal");
        let tmp_dir = state.join("tmp");
        let uploads_dir = state.join("uploads");
        // Leftover temp files are uploads that never completed.
        let _ = std::fs::remove_dir_all(&tmp_dir);
        for d in [&tmp_dir, &uploads_dir] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let mut buckets = BTreeMap::new();
        for name in bucket_names {
            let dir = root.join("buckets").join(name);
            for sub in ["meta", "data"] {
                std::fs::create_dir_all(dir.join(sub)).map_err(io_err(format!("creating bucket dir {name}")))?;
            }
            let created = std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .map(DateTime::<Utc>::from)
                .unwrap_or_else(|_| Utc::now());
            let bucket = Bucket {
                name: name.clone(),
                created,
                dir,
                durable,
                index: Mutex::new(BTreeMap::new()),
            };
            bucket.rebuild()?;
            buckets.insert(name.clone(), Arc::new(bucket));
        }
        let storage = Storage {
            durable,
            tmp_dir,
            uploads_dir,
            buckets,
            uploads: Mutex::new(HashMap::new()),
            append_lock: tokio::sync::Mutex::new(()),
        };
        storage.load_uploads();
        Ok(storage)
    }

    pub fn bucket(&self, name: &str) -> Option<Arc<Bucket>> {
        self.buckets.get(name).cloned()
    }
    pub fn buckets(&self) -> impl Iterator<Item = &Arc<Bucket>> {
        self.buckets.values()
    }

    fn new_temp(&self) -> Result<(TempFile, File), StorageError> {
        let path = self.tmp_dir.join(uuid::Uuid::new_v4().simple().to_string());
        let f = File::create(&path).map_err(io_err("creating a temp file"))?;
        Ok((TempFile { path: Some(path) }, f))
    }

    /// Stream `body` (optionally preceded by a byte range of an existing file) into a synced
    /// temp file, hashing on a blocking thread. `expected`: the exact body length required.
    pub async fn ingest<S>(
        &self,
        prefix: Option<Vec<FileRange>>,
        mut body: S,
        expected: BodyLen,
    ) -> Result<Written, StorageError>
    where
        S: futures::Stream<Item = Result<Bytes, String>> + Unpin,
    {
        use futures::StreamExt;
        let (temp, file) = self.new_temp()?;
        let (tx, rx) = mpsc::channel::<Bytes>(WRITER_QUEUE_CHUNKS);
        // Without a prefix, MD5 (the slowest hash, ~650 MB/s) runs on its own thread in
        // parallel with CRC + write; with a prefix it must see the prefix first.
        let (md5_tx, md5_task) = if prefix.is_none() {
            let (mtx, mut mrx) = mpsc::channel::<Bytes>(WRITER_QUEUE_CHUNKS);
            let task = tokio::task::spawn_blocking(move || {
                let mut h = Md5::new();
                while let Some(c) = mrx.blocking_recv() {
                    h.update(&c);
                }
                <[u8; 16]>::from(h.finalize())
            });
            (Some(mtx), Some(task))
        } else {
            (None, None)
        };
        let md5_in_writer = md5_tx.is_none();
        let durable = self.durable;
        let writer = tokio::task::spawn_blocking(move || write_loop(file, prefix, rx, md5_in_writer, durable));
        let mut got: u64 = 0;
        let mut buf = BytesMut::with_capacity(IO_CHUNK_BYTES);
        let mut failure = None;
        loop {
            let item =
                match tokio::time::timeout(std::time::Duration::from_secs(BODY_IDLE_TIMEOUT_SECS), body.next()).await {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(_) => Err(format!("no body data for {BODY_IDLE_TIMEOUT_SECS} s")),
                };
            match item {
                Ok(chunk) => {
                    got += chunk.len() as u64;
                    match expected {
                        BodyLen::Exact(n) if got > n => {
                            failure = Some(StorageError::TooLong { expected: n });
                            break;
                        }
                        BodyLen::AtMost(limit) if got > limit => {
                            failure = Some(StorageError::Oversized { limit });
                            break;
                        }
                        _ => {}
                    }
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= IO_CHUNK_BYTES {
                        let full = buf.split().freeze();
                        buf.reserve(IO_CHUNK_BYTES);
                        if let Some(m) = &md5_tx {
                            let _ = m.send(full.clone()).await;
                        }
                        if tx.send(full).await.is_err() {
                            break; // writer failed; its error is reported below
                        }
                    }
                }
                Err(e) => {
                    failure = Some(StorageError::Body(e));
                    break;
                }
            }
        }
        if failure.is_none() && !buf.is_empty() {
            let last = buf.freeze();
            if let Some(m) = &md5_tx {
                let _ = m.send(last.clone()).await;
            }
            let _ = tx.send(last).await;
        }
        drop(tx);
        drop(md5_tx);
        let written = writer.await.map_err(|e| StorageError::Join(e.to_string()))?;
        let md5_separate = match md5_task {
            Some(t) => Some(t.await.map_err(|e| StorageError::Join(e.to_string()))?),
            None => None,
        };
        if let Some(f) = failure {
            return Err(f);
        }
        let (md5, crc64, size) = written?;
        let md5 = md5.or(md5_separate).unwrap_or_default();
        if let BodyLen::Exact(expected) = expected
            && got < expected
        {
            return Err(StorageError::Truncated { got, expected });
        }
        Ok(Written { temp, size, md5, crc64 })
    }

    /// Copy byte ranges of existing files into a synced temp file (CopyObject, UploadPartCopy,
    /// CompleteMultipartUpload). `with_md5: false` leaves `Written::md5` zero.
    pub async fn copy_ranges(&self, ranges: Vec<FileRange>, with_md5: bool) -> Result<Written, StorageError> {
        let (temp, mut file) = self.new_temp()?;
        let durable = self.durable;
        let res = tokio::task::spawn_blocking(move || {
            let mut h = Hashers::new(with_md5);
            for mut r in ranges {
                copy_range(&mut file, &mut r, &mut h)?;
            }
            sync(&file, durable, "a temp file")?;
            Ok::<_, StorageError>(h.finish())
        })
        .await
        .map_err(|e| StorageError::Join(e.to_string()))?;
        let (md5, crc64, size) = res?;
        Ok(Written {
            temp,
            size,
            md5: md5.unwrap_or_default(),
            crc64,
        })
    }

    pub fn commit(
        &self,
        bucket: &Bucket,
        meta: ObjectMeta,
        data: NewData,
        forbid_overwrite: bool,
    ) -> Result<Arc<ObjectMeta>, StorageError> {
        bucket.commit(&self.tmp_dir, meta, data, forbid_overwrite, None)
    }

    /// AppendObject: `req.position` must equal the current length (0 creates the object).
    pub async fn append<S>(
        &self,
        bucket: &Arc<Bucket>,
        key: &str,
        req: AppendRequest,
        body: S,
    ) -> Result<Arc<ObjectMeta>, StorageError>
    where
        S: futures::Stream<Item = Result<Bytes, String>> + Unpin,
    {
        let AppendRequest {
            position,
            expected,
            meta,
            content_md5,
        } = req;
        let _serial = self.append_lock.lock().await;
        let cur = bucket.get(key);
        let (prefix, write_meta, expect) = match &cur {
            None => {
                if position != 0 {
                    return Err(StorageError::Position { position, length: 0 });
                }
                (None, meta, None)
            }
            Some(m) if m.object_type != ObjectType::Appendable => return Err(StorageError::NotAppendable),
            Some(m) => {
                if position != m.size {
                    return Err(StorageError::Position {
                        position,
                        length: m.size,
                    });
                }
                let prefix = match bucket.open(key)? {
                    Some((opened, Some(data))) if opened.etag == m.etag => Some(data.ranges(0, m.size)),
                    _ => {
                        return Err(StorageError::Position {
                            position,
                            length: m.size,
                        });
                    }
                };
                (prefix, m.meta.clone(), Some(m.etag.clone()))
            }
        };
        let creating = prefix.is_none();
        let w = self.ingest(prefix, body, expected).await?;
        // Content-MD5 covers the appended bytes; their MD5 is known when they are the whole
        // object. Later appends are verified by the client through the chained CRC.
        if creating && content_md5.is_some_and(|m| m != w.md5) {
            return Err(StorageError::BadDigest);
        }
        let meta = ObjectMeta {
            key: key.to_string(),
            size: w.size,
            etag: w.etag(),
            crc64: w.crc64,
            last_modified_ms: now_ms(),
            object_type: ObjectType::Appendable,
            meta: write_meta,
            symlink_target: None,
            data_file: None,
            data_parts: Vec::new(),
        };
        // A PutObject/Delete that raced with this append wins: refuse to publish over it.
        let (b, tmp_dir) = (bucket.clone(), self.tmp_dir.clone());
        let committed =
            tokio::task::spawn_blocking(move || b.commit(&tmp_dir, meta, NewData::Temp(w.temp), false, Some(&expect)))
                .await
                .map_err(|e| StorageError::Join(e.to_string()))?;
        committed.map_err(|e| match e {
            StorageError::Position { length, .. } => match bucket.get(key) {
                Some(m) if m.object_type != ObjectType::Appendable => StorageError::NotAppendable,
                _ => StorageError::Position { position, length },
            },
            other => other,
        })
    }

    // ----- multipart -----

    pub fn initiate(&self, bucket: &str, key: &str, meta: WriteMeta) -> Result<Arc<Upload>, StorageError> {
        let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let dir = self.uploads_dir.join(&id);
        std::fs::create_dir_all(&dir).map_err(io_err("creating an upload dir"))?;
        let info = UploadInfo {
            id: id.clone(),
            bucket: bucket.into(),
            key: key.into(),
            initiated_ms: now_ms(),
            meta,
        };
        write_json_atomic(&dir, &self.tmp_dir, "upload.json", &info, self.durable)?;
        let up = Arc::new(Upload {
            info,
            dir,
            parts: Mutex::new(BTreeMap::new()),
        });
        lock(&self.uploads).insert(id, up.clone());
        Ok(up)
    }

    /// The upload `id` if it belongs to `bucket`/`key`.
    pub fn upload(&self, bucket: &str, key: &str, id: &str) -> Option<Arc<Upload>> {
        lock(&self.uploads)
            .get(id)
            .filter(|u| u.info.bucket == bucket && u.info.key == key)
            .cloned()
    }

    pub fn uploads_of(&self, bucket: &str) -> Vec<Arc<Upload>> {
        let mut v: Vec<_> = lock(&self.uploads)
            .values()
            .filter(|u| u.info.bucket == bucket)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.info.key.as_str(), a.info.id.as_str()).cmp(&(b.info.key.as_str(), b.info.id.as_str())));
        v
    }

    pub fn put_part(&self, up: &Upload, number: u32, w: Written) -> Result<PartInfo, StorageError> {
        let file = format!("part-{number}.{}", uuid::Uuid::new_v4().simple());
        w.temp
            .persist(&up.dir.join(&file))
            .map_err(io_err("moving a part into place"))?;
        let info = PartInfo {
            number,
            size: w.size,
            md5_hex: hex::encode_upper(w.md5),
            crc64: w.crc64,
            last_modified_ms: now_ms(),
            file,
        };
        write_json_atomic(
            &up.dir,
            &self.tmp_dir,
            &format!("part-{number}.json"),
            &info,
            self.durable,
        )?;
        let old = lock(&up.parts).insert(number, info.clone());
        if let Some(old) = old {
            let _ = std::fs::remove_file(up.dir.join(old.file));
        }
        Ok(info)
    }

    /// Forget an upload and remove its files; false when it was already gone.
    pub fn remove_upload(&self, id: &str) -> bool {
        let up = lock(&self.uploads).remove(id);
        match up {
            Some(up) => {
                let _ = std::fs::remove_dir_all(&up.dir);
                true
            }
            None => false,
        }
    }

    /// Claim an upload for completion (so a concurrent Abort/Complete sees it gone).
    pub fn take_upload(&self, id: &str) -> Option<Arc<Upload>> {
        lock(&self.uploads).remove(id)
    }

    /// Put back an upload whose completion was refused (bad part list etc.).
    pub fn restore_upload(&self, up: Arc<Upload>) {
        lock(&self.uploads).insert(up.info.id.clone(), up);
    }

    pub fn discard_upload_files(&self, up: &Upload) {
        let _ = std::fs::remove_dir_all(&up.dir);
    }

    fn load_uploads(&self) {
        let Ok(rd) = std::fs::read_dir(&self.uploads_dir) else {
            return;
        };
        let mut map = lock(&self.uploads);
        for entry in rd.flatten() {
            let dir = entry.path();
            let Ok(bytes) = std::fs::read(dir.join("upload.json")) else {
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            };
            let Ok(info) = serde_json::from_slice::<UploadInfo>(&bytes) else {
                continue;
            };
            if !self.buckets.contains_key(&info.bucket) {
                continue;
            }
            let mut parts = BTreeMap::new();
            if let Ok(files) = std::fs::read_dir(&dir) {
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    if name.starts_with("part-")
                        && name.ends_with(".json")
                        && let Ok(b) = std::fs::read(f.path())
                        && let Ok(p) = serde_json::from_slice::<PartInfo>(&b)
                        && dir.join(&p.file).exists()
                    {
                        parts.insert(p.number, p);
                    }
                }
            }
            let id = info.id.clone();
            map.insert(
                id,
                Arc::new(Upload {
                    info,
                    dir,
                    parts: Mutex::new(parts),
                }),
            );
        }
    }
}

impl Bucket {
    fn rebuild(&self) -> Result<(), StorageError> {
        let mut index = BTreeMap::new();
        let rd = std::fs::read_dir(self.meta_dir()).map_err(io_err("reading bucket metadata"))?;
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(bytes) = std::fs::read(&path) else { continue };
            match serde_json::from_slice::<ObjectMeta>(&bytes) {
                Ok(m)
                    if path
                        .file_stem()
                        .is_some_and(|s| s.to_string_lossy() == key_hash(&m.key)) =>
                {
                    index.insert(m.key.as_bytes().to_vec(), Arc::new(m));
                }
                _ => tracing::warn!(path = %path.display(), "ignoring an unreadable sidecar"),
            }
        }
        // Remove data files no sidecar refers to (crash between data rename and publish).
        let live: std::collections::HashSet<&str> = index
            .values()
            .flat_map(|m| m.data_file.iter().chain(m.data_parts.iter().map(|p| &p.file)))
            .map(String::as_str)
            .collect();
        if let Ok(rd) = std::fs::read_dir(self.data_dir()) {
            for entry in rd.flatten() {
                if !live.contains(entry.file_name().to_string_lossy().as_ref()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        *lock(&self.index) = index;
        Ok(())
    }
}

fn copy_range(out: &mut File, r: &mut FileRange, h: &mut Hashers) -> Result<(), StorageError> {
    let src = &mut r.file;
    src.seek(SeekFrom::Start(r.offset))
        .map_err(io_err("seeking a copy source"))?;
    let mut buf = vec![0u8; IO_CHUNK_BYTES];
    let mut left = r.len;
    while left > 0 {
        let want = left.min(IO_CHUNK_BYTES as u64) as usize;
        let n = src.read(&mut buf[..want]).map_err(io_err("reading a copy source"))?;
        if n == 0 {
            return Err(StorageError::Io {
                context: "reading a copy source".into(),
                source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            });
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err("writing a temp file"))?;
        left -= n as u64;
    }
    Ok(())
}

fn write_loop(
    mut file: File,
    prefix: Option<Vec<FileRange>>,
    mut rx: mpsc::Receiver<Bytes>,
    with_md5: bool,
    durable: bool,
) -> Result<(Option<[u8; 16]>, u64, u64), StorageError> {
    let mut h = Hashers::new(with_md5);
    for mut p in prefix.into_iter().flatten() {
        copy_range(&mut file, &mut p, &mut h)?;
    }
    while let Some(chunk) = rx.blocking_recv() {
        h.update(&chunk);
        file.write_all(&chunk).map_err(io_err("writing a temp file"))?;
    }
    sync(&file, durable, "a temp file")?;
    Ok(h.finish())
}

/// Stream the bytes of `ranges` (in order) from a blocking thread, delivering chunks through
/// a bounded channel (the receiver drives an HTTP response body).
pub fn spawn_reader(ranges: Vec<FileRange>) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(WRITER_QUEUE_CHUNKS);
    tokio::task::spawn_blocking(move || {
        for range in ranges {
            if let Err(e) = send_mapped(&range, &tx) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    });
    rx
}

/// Send the bytes of one range as chunks mapped from its file. Chunks are mapped (and
/// populated here, off the async threads) instead of read into buffers: the body goes from the
/// page cache to the socket with one copy, not two. `Ok` also when the receiver went away.
fn send_mapped(range: &FileRange, tx: &mpsc::Sender<std::io::Result<Bytes>>) -> std::io::Result<()> {
    let (offset, len) = (range.offset, range.len);
    let end = offset.saturating_add(len);
    // A data file shorter than its metadata says would make a mapping fault (SIGBUS): check
    // first. Data files never change once committed (every write makes new files).
    let have = range.file.metadata()?.len();
    if have < end {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("data file has {have} bytes, {end} needed"),
        ));
    }
    let mut pos = offset;
    while pos < end {
        let map_start = pos - pos % MAP_ALIGN_BYTES;
        let map_end = end.min(map_start + MAP_CHUNK_BYTES);
        // SAFETY: the file is never truncated or rewritten in place while osslocal runs
        // (objects are replaced by moving new files into place), and its length was checked
        // above, so the mapping stays valid for as long as the `Bytes` lives.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(map_start)
                .len((map_end - map_start) as usize)
                .populate()
                .map(&range.file)?
        };
        let chunk = Bytes::from_owner(map).slice((pos - map_start) as usize..);
        pos = map_end;
        if tx.blocking_send(Ok(chunk)).is_err() {
            return Ok(()); // client went away
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value_and_continuation() {
        assert_eq!(CRC64.checksum(b"123456789"), 0x995DC9BBDF1939FA);
        let whole = CRC64.checksum(b"hello world, appended");
        let first = CRC64.checksum(b"hello world");
        assert_eq!(crc64_continue(first, b", appended"), whole);
        assert_eq!(crc64_continue(CRC64.checksum(b""), b"abc"), CRC64.checksum(b"abc"));
    }

    #[test]
    fn crc_combine_matches_sdk_vector_and_direct_computation() {
        // vectors/oss_crc64.json combine_example
        assert_eq!(
            crc64_combine(1796661072844795914, 13862388409544367202, 6),
            14969823782951187105
        );
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for split in [0, 1, 100, 65536, 299_999, 300_000] {
            let (a, b) = data.split_at(split);
            let combined = crc64_combine(CRC64.checksum(a), CRC64.checksum(b), b.len() as u64);
            assert_eq!(combined, CRC64.checksum(&data), "split at {split}");
        }
    }

    #[test]
    fn successor_of_prefixes() {
        assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_successor(&[b'a', 0xFF]), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(&[0xFF]), None);
    }

    fn meta(key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            size: 0,
            etag: "\"X\"".into(),
            crc64: 0,
            last_modified_ms: 0,
            object_type: ObjectType::Normal,
            meta: WriteMeta::default(),
            symlink_target: None,
            data_file: None,
            data_parts: Vec::new(),
        }
    }

    #[test]
    fn listing_with_delimiter_skips_whole_prefixes_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), &["b".to_string()], true).unwrap();
        let b = s.bucket("b").unwrap();
        for k in ["a/1", "a/2", "a/sub/x", "a/sub/y", "a/z", "b"] {
            s.commit(&b, meta(k), NewData::None, false).unwrap();
        }
        let names = |p: &ListPage| {
            p.entries
                .iter()
                .map(|e| match e {
                    ListEntry::Object(m) => m.key.clone(),
                    ListEntry::Prefix(p) => format!("P:{p}"),
                })
                .collect::<Vec<_>>()
        };
        let p = b.list("a/", "/", None, 1000);
        assert_eq!(names(&p), ["a/1", "a/2", "P:a/sub/", "a/z"]);
        let p1 = b.list("a/", "/", None, 3);
        assert!(p1.truncated);
        assert_eq!(p1.last.as_deref(), Some("a/sub/"));
        let p2 = b.list("a/", "/", p1.last.as_deref(), 3);
        assert_eq!(names(&p2), ["a/z"]);
        assert!(!p2.truncated);
        let all = b.list("", "", None, 1000);
        assert_eq!(all.entries.len(), 6);
        assert!(s.commit(&b, meta("b"), NewData::None, true).is_err());
        assert!(b.delete("b").unwrap());
        assert!(!b.delete("b").unwrap());
        // restart keeps the index
        drop(s);
        let s = Storage::open(dir.path(), &["b".to_string()], true).unwrap();
        assert_eq!(s.bucket("b").unwrap().len(), 5);
    }
}
