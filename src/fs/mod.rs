//! `OssFs<C>`: the POSIX operations of the mount, as async functions returning plain structs.
//! No FUSE types except `fuser::{FileAttr, FileType}` as values, so everything here runs in
//! tests over `MockClient`/`FailureClient` without a kernel.
//!
//! Namespace: a file is the object `prefix + path`; a directory is the common prefix
//! `prefix + path + "/"`, with or without a marker object of that name (mkdir creates one, rmdir
//! deletes it). When both `a` and `a/` exist the directory wins and the file is hidden. Where
//! requests happen (see doc/SEMANTICS.md for the whole story):
//! - lookup of a name not cached: one ListObjectsV2 (prefix `dir/name`, delimiter `/`), which
//!   finds a file, a marker or an implicit directory at once;
//! - readdir: ListObjectsV2 pages of 1000, attributes taken from the listing;
//! - getattr/open when the cached attributes are older than `metadata_ttl`: one HEAD (files; it
//!   also brings `x-oss-meta-mode/uid/gid/mtime`), GetSymlink (links) or a listing (dirs);
//! - writes: see `write.rs`; metadata changes: CopyObject of the object onto itself (REPLACE).
//!
//! Lock order: a writer's `tokio::sync::Mutex` may be held while the inode table's or the
//! handle maps' `std::sync::Mutex` is taken briefly; never the other way round, and no std
//! mutex is held across an `.await`.

pub mod dir;
pub mod error;
pub mod inode;
pub mod symlink;
pub mod write;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fuser::{FileAttr, FileType, INodeNo};
use futures::{StreamExt, TryStreamExt};
use tracing::{debug, warn};

use crate::cache::{DataCache, DataCacheConfig, DataReader};
use crate::client::{
    ClientError, CompleteMultipartUploadParams, CopyObjectParams, CreateMultipartUploadParams, ListObjectsParams,
    MAX_DELETE_KEYS, MAX_LIST_KEYS, MAX_PARTS, MetadataDirective, ObjectClient, PutObjectParams, PutSymlinkParams,
    UploadPartCopyParams, UploadedPart,
};
use crate::object::{ETag, ObjectId, ObjectType, UserMeta};

use dir::{DirItem, DirSnapshot, valid_name};
pub use error::FsError;
use inode::{Found, Inode, InodeTable, Kind, MetaAttrs, ROOT_INO, Stat, join_path};
use write::{FileWriter, ObjectVersion, WriteCtx, set_user_meta};

/// Attribute TTL handed to the kernel when `metadata_ttl` is indefinite.
pub const INDEFINITE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Keys asked for by the ListObjectsV2 of a lookup.
pub const LOOKUP_LIST_KEYS: usize = 32;
/// Entries returned by one readdir call (the kernel asks again from the next offset).
/// (A kernel readdir buffer is one page: about 100 plain entries or 25 with attributes.)
pub const READDIR_BATCH_ENTRIES: usize = 128;
/// `meta_etag` of a directory found to have no marker object (its metadata was checked: there
/// is none to read).
const IMPLICIT_DIR_META: &str = "implicit-directory";
/// Complete directory listings kept for reuse within the metadata TTL (directories).
pub const LISTING_CACHE_DIRS: usize = 64;
/// Listings longer than this (entries) are not kept.
pub const LISTING_CACHE_MAX_ENTRIES: usize = 100_000;
/// Entries returned by one readdirplus call.
pub const READDIRPLUS_BATCH_ENTRIES: usize = 48;
/// Above this many inodes, opendir drops those the kernel holds no reference to and whose
/// attributes have expired (they were only seen in listings).
pub const INODE_SOFT_LIMIT: usize = 1_000_000;
/// Multipart parts of one streaming writer in flight at once.
pub const MAX_PARTS_IN_FLIGHT_PER_WRITER: usize = 4;
/// Objects larger than this are copied with UploadPartCopy instead of CopyObject.
pub const COPY_OBJECT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Block size reported in `st_blksize` (cp and friends size their buffers from it).
pub const BLKSIZE_BYTES: u32 = 1024 * 1024;
/// Capacity numbers reported by statfs (OSS has no meaningful limits): 1 PiB in 4 KiB blocks.
pub const STATFS_BLOCK_BYTES: u32 = 4096;
pub const STATFS_BLOCKS: u64 = (1u64 << 50) / STATFS_BLOCK_BYTES as u64;
pub const STATFS_FILES: u64 = 1 << 40;

/// Configuration of the filesystem layer.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Key prefix of the mount: `""` or ending in `/`.
    pub prefix: String,
    pub read_only: bool,
    /// Owner shown for objects without `x-oss-meta-uid/gid`.
    pub uid: u32,
    pub gid: u32,
    /// Permission bits shown for files/directories without `x-oss-meta-mode`.
    pub file_mode: u32,
    pub dir_mode: u32,
    /// How long attributes and entries are trusted; None = indefinitely.
    pub metadata_ttl: Option<Duration>,
    pub negative_ttl: Duration,
    pub part_size_bytes: u64,
    pub max_concurrency: usize,
    /// Where staging files go; None = a private temporary directory (0700, removed at shutdown).
    pub staging_dir: Option<PathBuf>,
    pub data_cache: DataCacheConfig,
}

impl FsConfig {
    /// Defaults for tests and simple callers.
    pub fn new(prefix: impl Into<String>) -> Self {
        FsConfig {
            prefix: prefix.into(),
            read_only: false,
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
            metadata_ttl: Some(Duration::from_secs(1)),
            negative_ttl: Duration::from_secs(1),
            part_size_bytes: crate::config::DEFAULT_PART_SIZE_BYTES,
            max_concurrency: crate::config::DEFAULT_MAX_CONCURRENCY,
            staging_dir: None,
            data_cache: DataCacheConfig {
                part_size_bytes: crate::config::DEFAULT_PART_SIZE_BYTES,
                max_concurrency: crate::config::DEFAULT_MAX_CONCURRENCY,
                memory_limit_bytes: crate::config::DEFAULT_MEMORY_LIMIT_BYTES,
                cache_dir: None,
                cache_size_bytes: 0,
            },
        }
    }
}

/// Name of the staging subdirectory under `--cache-dir` (the disk cache uses its own).
pub const STAGING_SUBDIR: &str = "staging";

impl FsConfig {
    /// The filesystem configuration of a mount: owner defaults to the mounting user, staging
    /// files go under `<cache-dir>/staging` when a cache directory is configured (else a
    /// private temporary directory).
    pub fn from_config(config: &crate::config::Config) -> Self {
        let data_cache = DataCacheConfig {
            part_size_bytes: config.transfer.part_size_bytes,
            max_concurrency: config.transfer.max_concurrency,
            memory_limit_bytes: config.cache.memory_limit_bytes,
            cache_dir: config.cache.cache_dir.clone(),
            cache_size_bytes: config.cache.cache_size_bytes,
        };
        FsConfig {
            prefix: config.prefix.clone(),
            read_only: config.fuse.read_only,
            uid: config.fuse.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
            gid: config.fuse.gid.unwrap_or_else(|| nix::unistd::getegid().as_raw()),
            file_mode: config.fuse.file_mode,
            dir_mode: config.fuse.dir_mode,
            metadata_ttl: config.cache.metadata_ttl,
            negative_ttl: config.cache.negative_ttl,
            part_size_bytes: config.transfer.part_size_bytes,
            max_concurrency: config.transfer.max_concurrency,
            staging_dir: config.cache.cache_dir.as_ref().map(|d| d.join(STAGING_SUBDIR)),
            data_cache,
        }
    }
}

/// A looked-up (or created) name.
#[derive(Clone, Debug)]
pub struct Entry {
    pub attr: FileAttr,
    pub ttl: Duration,
}

/// Attributes of an inode.
#[derive(Clone, Debug)]
pub struct Attr {
    pub attr: FileAttr,
    pub ttl: Duration,
}

/// What setattr changes (None = unchanged).
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
    pub fh: Option<u64>,
}

/// An open file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
    pub direct_io: bool,
}

/// One directory entry. `offset` is the offset of the *next* entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: u64,
    pub offset: u64,
    pub kind: FileType,
    pub name: OsString,
    /// With readdirplus: the entry (the caller must call `readdirplus_added` for each entry it
    /// hands to the kernel, since that counts as a lookup).
    pub attr: Option<Entry>,
}

/// statfs numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

struct WriterSlot<C: ObjectClient> {
    writer: tokio::sync::Mutex<FileWriter<C>>,
    opens: AtomicUsize,
    size: AtomicU64,
}

struct FileHandle<C: ObjectClient> {
    ino: u64,
    writable: bool,
    reader: Mutex<Option<(ETag, Arc<DataReader<C>>)>>,
}

struct DirHandle {
    ino: u64,
    snapshot: tokio::sync::Mutex<DirSnapshot>,
    /// The snapshot came from the listing cache (its attributes may be older than the inodes').
    cached: std::sync::atomic::AtomicBool,
    /// Mutation count when the snapshot's listing started (see `OssFs::mutations`).
    generation: AtomicU64,
}

/// A complete listing of a directory, reused by `opendir` within the metadata TTL while
/// nothing in the mount changed.
struct CachedListing {
    items: Arc<Vec<DirItem>>,
    generation: u64,
    at: std::time::Instant,
}

/// Counts a mutation in and out (see `OssFs::mutations`).
struct Mutation<'a>(&'a AtomicU64);

impl<'a> Mutation<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Mutation(counter)
    }
}

impl Drop for Mutation<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

enum Staging {
    Private(tempfile::TempDir),
    Given(PathBuf),
}

impl Staging {
    fn path(&self) -> &Path {
        match self {
            Staging::Private(d) => d.path(),
            Staging::Given(p) => p,
        }
    }
}

/// The filesystem. See the module documentation.
pub struct OssFs<C: ObjectClient> {
    client: Arc<C>,
    config: FsConfig,
    inodes: InodeTable,
    writers: Mutex<HashMap<u64, Arc<WriterSlot<C>>>>,
    handles: Mutex<HashMap<u64, Arc<FileHandle<C>>>>,
    dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
    next_fh: AtomicU64,
    ctx: WriteCtx<C>,
    staging: Mutex<Option<Staging>>,
    mount_time: SystemTime,
    copy_object_max_bytes: AtomicU64,
    /// Inode count left by the last prune.
    prune_floor: AtomicUsize,
    /// Held (shared) while bytes are pushed into the kernel's page cache, and (exclusive) while
    /// a file gets its first writer, so a push never lands after a write began.
    page_fill: std::sync::RwLock<()>,
    /// Raised when any change through this mount starts and again when it ends: a listing
    /// taken while the count did not move reflects every change made here.
    mutations: AtomicU64,
    /// Complete directory listings by directory inode, valid for the metadata TTL while
    /// `mutations` has not moved since they were taken.
    listings: Mutex<HashMap<u64, CachedListing>>,
}

/// What `OssFs::read_for_kernel` returns: the bytes asked for and, for a random read of a file
/// nobody writes here, more of the same object version for the kernel's page cache.
#[derive(Debug, Default)]
pub struct ReadReply {
    pub data: Bytes,
    pub page_fill: Option<PageFill>,
}

/// Bytes of one object version that the kernel may cache for `ino`: `(offset, bytes)` ranges,
/// pushed with `OssFs::fill_page_cache`.
#[derive(Debug)]
pub struct PageFill {
    pub ino: u64,
    etag: ETag,
    pub ranges: Vec<(u64, Bytes)>,
}

impl PageFill {
    /// Bytes in all ranges.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(_, b)| b.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn err(errno: i32, message: impl Into<String>) -> FsError {
    FsError::new(errno, message)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps behind these mutexes are left consistent by every critical section.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

/// Longest OSS object key, in bytes.
const MAX_KEY_BYTES: usize = 1023;

/// User-metadata name (without `x-oss-meta-`) of a device file's `st_rdev`.
const META_RDEV: &str = "rdev";

/// FIFOs, sockets and device nodes are empty objects whose `x-oss-meta-mode` carries the file
/// type (as s3fs and ossfs store them); everything else about them is a regular object.
fn special_type(meta: &MetaAttrs) -> Option<FileType> {
    match meta.mode? & libc::S_IFMT {
        libc::S_IFIFO => Some(FileType::NamedPipe),
        libc::S_IFSOCK => Some(FileType::Socket),
        libc::S_IFCHR => Some(FileType::CharDevice),
        libc::S_IFBLK => Some(FileType::BlockDevice),
        _ => None,
    }
}

/// The type bits a mode change must keep: those of a special file, else the kind's.
fn kept_type_bits(kind: Kind, meta: &MetaAttrs) -> u32 {
    match (kind, special_type(meta)) {
        (Kind::File, Some(_)) => meta.mode.unwrap_or(0) & libc::S_IFMT,
        _ => type_bits(kind),
    }
}

fn type_bits(kind: Kind) -> u32 {
    match kind {
        Kind::File => libc::S_IFREG,
        Kind::Dir => libc::S_IFDIR,
        Kind::Symlink => libc::S_IFLNK,
    }
}

impl<C: ObjectClient> OssFs<C> {
    /// A filesystem over `client`. Fails when the prefix is malformed or the staging directory
    /// cannot be created.
    pub fn new(client: Arc<C>, config: FsConfig) -> Result<Self, FsError> {
        if !config.prefix.is_empty() && !config.prefix.ends_with('/') {
            return Err(err(
                libc::EINVAL,
                format!("prefix {:?} must be empty or end with '/'", config.prefix),
            ));
        }
        if config.part_size_bytes == 0 {
            return Err(err(libc::EINVAL, "part size must not be zero"));
        }
        let staging = match &config.staging_dir {
            Some(dir) => {
                std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
                    .create(dir)
                    .map_err(|e| {
                        FsError::with_source(libc::EIO, format!("creating staging dir {}", dir.display()), e)
                    })?;
                Staging::Given(dir.clone())
            }
            None => {
                // tempfile creates the directory with mode 0700.
                let d = tempfile::Builder::new()
                    .prefix("ossmount-staging-")
                    .tempdir()
                    .map_err(|e| FsError::with_source(libc::EIO, "creating private staging dir", e))?;
                Staging::Private(d)
            }
        };
        // A disk tier that cannot be used stops the mount here, with the directory named.
        let cache = Arc::new(
            DataCache::try_new(client.clone(), config.data_cache.clone())
                .map_err(|e| FsError::with_source(libc::EIO, "disk cache", e))?,
        );
        let ctx = WriteCtx {
            client: client.clone(),
            cache,
            part_size_bytes: config.part_size_bytes,
            max_parts_in_flight: MAX_PARTS_IN_FLIGHT_PER_WRITER.min(config.max_concurrency.max(1)),
            max_concurrency: config.max_concurrency.max(1),
            staging_dir: staging.path().to_path_buf(),
            upload_permits: Arc::new(tokio::sync::Semaphore::new(config.max_concurrency.max(1))),
        };
        let mount_time = SystemTime::now();
        Ok(OssFs {
            client,
            inodes: InodeTable::new(mount_time),
            writers: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            ctx,
            staging: Mutex::new(Some(staging)),
            mount_time,
            config,
            copy_object_max_bytes: AtomicU64::new(COPY_OBJECT_MAX_BYTES),
            prune_floor: AtomicUsize::new(0),
            page_fill: std::sync::RwLock::new(()),
            mutations: AtomicU64::new(0),
            listings: Mutex::new(HashMap::new()),
        })
    }

    /// Objects above this size are renamed with UploadPartCopy (default `COPY_OBJECT_MAX_BYTES`;
    /// tests lower it).
    pub fn set_copy_object_max_bytes(&self, bytes: u64) {
        self.copy_object_max_bytes.store(bytes, Ordering::SeqCst);
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    pub fn client(&self) -> &Arc<C> {
        &self.client
    }

    /// The staging directory in use.
    pub fn staging_dir(&self) -> PathBuf {
        self.ctx.staging_dir.clone()
    }

    fn ttl(&self) -> Duration {
        self.config.metadata_ttl.unwrap_or(INDEFINITE_TTL)
    }

    /// EROFS on a read-only mount; otherwise the change is counted until the guard drops.
    fn check_writable(&self) -> Result<Mutation<'_>, FsError> {
        if self.config.read_only {
            return Err(err(libc::EROFS, "read-only mount"));
        }
        Ok(Mutation::new(&self.mutations))
    }

    /// Object key of a file/symlink path, or key prefix of a directory path.
    fn key(&self, path: &str, kind: Kind) -> String {
        match kind {
            Kind::Dir if path.is_empty() => self.config.prefix.clone(),
            Kind::Dir => format!("{}{path}/", self.config.prefix),
            _ => format!("{}{path}", self.config.prefix),
        }
    }

    fn attr_of(&self, inode: &Inode, size_override: Option<u64>) -> FileAttr {
        let meta = &inode.stat.meta;
        let default_perm = match inode.kind {
            Kind::File => self.config.file_mode,
            Kind::Dir => self.config.dir_mode,
            Kind::Symlink => 0o777,
        };
        let perm = meta.mode.map_or(default_perm, |m| m & 0o7777);
        let mtime = meta.mtime.unwrap_or(inode.stat.last_modified);
        let special = if inode.kind == Kind::File {
            special_type(meta)
        } else {
            None
        };
        let rdev = special
            .and_then(|_| meta.extra.get(META_RDEV))
            .and_then(|r| r.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let size = match inode.kind {
            Kind::Symlink => inode
                .symlink_target
                .as_ref()
                .map_or(inode.stat.size, |t| t.len() as u64),
            Kind::Dir => 0,
            Kind::File => size_override.unwrap_or(inode.stat.size),
        };
        FileAttr {
            ino: INodeNo(inode.ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: special.unwrap_or_else(|| file_type(inode.kind)),
            perm: perm as u16,
            nlink: if inode.kind == Kind::Dir { 2 } else { 1 },
            uid: meta.uid.unwrap_or(self.config.uid),
            gid: meta.gid.unwrap_or(self.config.gid),
            rdev,
            blksize: BLKSIZE_BYTES,
            flags: 0,
        }
    }

    fn writer_slot(&self, ino: u64) -> Option<Arc<WriterSlot<C>>> {
        lock(&self.writers).get(&ino).cloned()
    }

    fn entry_of(&self, inode: &Inode) -> Entry {
        let size = self.writer_slot(inode.ino).map(|s| s.size.load(Ordering::SeqCst));
        Entry {
            attr: self.attr_of(inode, size),
            ttl: self.ttl(),
        }
    }

    fn inode(&self, ino: u64) -> Result<Inode, FsError> {
        self.inodes
            .get(ino)
            .ok_or_else(|| err(libc::ENOENT, format!("inode {ino} unknown")))
    }

    fn dir_inode(&self, ino: u64) -> Result<Inode, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind != Kind::Dir {
            return Err(err(libc::ENOTDIR, format!("{} is not a directory", inode.path)));
        }
        Ok(inode)
    }

    /// A name from the kernel as UTF-8 (OSS keys are UTF-8), validated as a file name.
    fn name_str<'a>(&self, name: &'a OsStr) -> Result<&'a str, FsError> {
        let s = name
            .to_str()
            .ok_or_else(|| err(libc::EINVAL, format!("{name:?} is not valid UTF-8")))?;
        if s.len() > dir::NAME_MAX_BYTES {
            return Err(err(libc::ENAMETOOLONG, "name longer than 255 bytes"));
        }
        if !valid_name(s) {
            return Err(err(libc::EINVAL, format!("invalid name {s:?}")));
        }
        Ok(s)
    }

    /// What OSS has at `path`: one ListObjectsV2 (a second one only when many keys like
    /// `name-x`, `name.y` sort between `name` and `name/`).
    async fn remote_lookup(&self, path: &str) -> Result<Option<Found>, FsError> {
        let key = self.key(path, Kind::File);
        let dir_key = format!("{key}/");
        let page = self
            .client
            .list_objects(
                ListObjectsParams::new(key.clone())
                    .delimiter("/")
                    .max_keys(LOOKUP_LIST_KEYS),
            )
            .await?;
        let mut is_dir = page.common_prefixes.contains(&dir_key);
        if !is_dir && page.next_continuation_token.is_some() {
            let last_object = page.objects.last().map(|o| o.key.as_str());
            let last_prefix = page.common_prefixes.last().map(|p| p.as_str());
            let reached = last_object.max(last_prefix).is_some_and(|k| k >= dir_key.as_str());
            if !reached {
                let page2 = self
                    .client
                    .list_objects(ListObjectsParams::new(dir_key.clone()).max_keys(1))
                    .await?;
                is_dir = !page2.objects.is_empty() || !page2.common_prefixes.is_empty();
            }
        }
        if is_dir {
            return Ok(Some(Found {
                kind: Kind::Dir,
                stat: Stat::new(0, self.mount_time, None),
            }));
        }
        Ok(page.objects.iter().find(|o| o.key == key).map(|o| Found {
            kind: if o.object_type == ObjectType::Symlink {
                Kind::Symlink
            } else {
                Kind::File
            },
            stat: Stat::new(o.size, o.last_modified, Some(o.etag.clone())),
        }))
    }

    /// The child `name` of `parent` (cached, or looked up remotely), without a kernel reference.
    async fn child(&self, parent: &Inode, name: &str) -> Result<Option<Inode>, FsError> {
        let path = join_path(&parent.path, name);
        if let Some(inode) = self.inodes.by_path(&path) {
            if inode.is_fresh(self.config.metadata_ttl) || self.writer_slot(inode.ino).is_some() {
                return Ok(Some(inode));
            }
        }
        if self.inodes.is_negative(&path) {
            return Ok(None);
        }
        match self.remote_lookup(&path).await? {
            Some(found) => Ok(Some(self.inodes.upsert(parent.ino, &parent.path, name, found, false))),
            None => {
                if let Some(inode) = self.inodes.by_path(&path) {
                    if inode.local_only || self.writer_slot(inode.ino).is_some() {
                        return Ok(Some(inode));
                    }
                    self.inodes.remove_path(&path, self.config.negative_ttl);
                } else {
                    self.inodes.set_negative(&path, self.config.negative_ttl);
                }
                Ok(None)
            }
        }
    }

    pub async fn lookup(&self, parent: u64, name: &OsStr) -> Result<Entry, FsError> {
        let parent = self.dir_inode(parent)?;
        let Some(name) = name.to_str() else {
            return Err(err(libc::ENOENT, "non-UTF-8 names cannot exist in OSS"));
        };
        if name.len() > dir::NAME_MAX_BYTES {
            return Err(err(libc::ENAMETOOLONG, "name longer than 255 bytes"));
        }
        if !valid_name(name) {
            return Err(err(libc::ENOENT, format!("{name:?} is not a valid name")));
        }
        let path = join_path(&parent.path, name);
        let cached = self
            .inodes
            .by_path(&path)
            .is_some_and(|i| i.is_fresh(self.config.metadata_ttl));
        match self.child(&parent, name).await? {
            Some(mut inode) => {
                // A file found by this lookup's listing (not one a listing just showed) whose
                // user metadata was never read: one HEAD, so a path-based stat shows the mode,
                // owner and mtime other clients set (listings carry none).
                if !cached && Self::metadata_unknown(&inode) {
                    inode = self.revalidate(&inode).await?;
                }
                self.inodes.add_lookup(inode.ino);
                Ok(self.entry_of(&inode))
            }
            None => Err(err(
                libc::ENOENT,
                format!("{} not found", join_path(&parent.path, name)),
            )),
        }
    }

    fn metadata_unknown(inode: &Inode) -> bool {
        match inode.kind {
            Kind::File => !inode.local_only && inode.stat.etag.is_some() && inode.stat.meta_etag != inode.stat.etag,
            // A directory whose marker (if any) was never read: its mode and owner may be set.
            Kind::Dir => inode.ino != ROOT_INO && !inode.local_only && inode.stat.meta_etag.is_none(),
            Kind::Symlink => false,
        }
    }

    pub fn forget(&self, ino: u64, nlookup: u64) {
        self.inodes.forget(ino, nlookup);
    }

    /// One kernel reference for an entry returned by readdirplus.
    pub fn readdirplus_added(&self, ino: u64) {
        self.inodes.add_lookup(ino);
    }

    /// Fetch fresh attributes of `inode` from OSS (HEAD for files, GetSymlink for links, a
    /// listing for directories).
    async fn revalidate(&self, inode: &Inode) -> Result<Inode, FsError> {
        if inode.ino == ROOT_INO || inode.local_only || inode.detached {
            return Ok(inode.clone());
        }
        let key = self.key(&inode.path, inode.kind);
        let result = match inode.kind {
            Kind::File => match self.client.head_object(&key).await {
                Ok(meta) if meta.object_type != ObjectType::Symlink => {
                    let mut stat = Stat::new(meta.size, meta.last_modified, Some(meta.etag.clone()));
                    stat.meta = MetaAttrs::from_user_meta(&meta.user_meta);
                    stat.meta_etag = Some(meta.etag);
                    Some(stat)
                }
                Ok(_) => None,
                Err(ClientError::NoSuchKey(_)) => None,
                Err(e) => return Err(e.into()),
            },
            Kind::Symlink => match self.client.get_symlink(&key).await {
                Ok(link) => {
                    let target = symlink::to_posix(&key, &link.target, &link.user_meta);
                    let mut stat = Stat::new(target.len() as u64, link.last_modified, Some(link.etag.clone()));
                    stat.meta = MetaAttrs::from_user_meta(&link.user_meta);
                    stat.meta_etag = Some(link.etag);
                    self.inodes.update(inode.ino, |i| i.symlink_target = Some(target));
                    Some(stat)
                }
                Err(ClientError::NoSuchKey(_)) => None,
                Err(e) => return Err(e.into()),
            },
            Kind::Dir => {
                let page = self
                    .client
                    .list_objects(ListObjectsParams::new(key.clone()).max_keys(1))
                    .await?;
                if page.objects.is_empty() && page.common_prefixes.is_empty() {
                    None
                } else {
                    let mut stat = Stat::new(0, inode.stat.last_modified, None);
                    stat.meta = inode.stat.meta.clone();
                    stat.meta_etag = inode.stat.meta_etag.clone();
                    let marker = page.objects.first().filter(|o| o.key == key);
                    if marker.is_none() && stat.meta_etag.is_none() {
                        // Implicit: no marker, so nothing more to read; remember it was checked.
                        stat.meta_etag = Some(ETag::new(IMPLICIT_DIR_META));
                    }
                    if let Some(marker) = marker {
                        stat.last_modified = marker.last_modified;
                        stat.etag = Some(marker.etag.clone());
                        if inode.stat.meta_etag.as_ref() != Some(&marker.etag) {
                            // The marker changed (or was never read): its metadata holds the
                            // directory's mode/owner/mtime.
                            match self.client.head_object(&key).await {
                                Ok(head) => {
                                    stat.meta = MetaAttrs::from_user_meta(&head.user_meta);
                                    stat.meta_etag = Some(head.etag);
                                }
                                Err(ClientError::NoSuchKey(_)) => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                    }
                    Some(stat)
                }
            }
        };
        match result {
            Some(stat) => {
                let kind = inode.kind;
                let parent_path = inode::parent_of(&inode.path).to_string();
                let found = Found { kind, stat };
                Ok(self
                    .inodes
                    .upsert(inode.parent, &parent_path, &inode.name, found, false))
            }
            None => {
                self.inodes.remove_path(&inode.path, self.config.negative_ttl);
                Err(err(libc::ENOENT, format!("{} no longer exists", inode.path)))
            }
        }
    }

    pub async fn getattr(&self, ino: u64, _fh: Option<u64>) -> Result<Attr, FsError> {
        let mut inode = self.inode(ino)?;
        if let Some(slot) = self.writer_slot(ino) {
            let size = slot.size.load(Ordering::SeqCst);
            return Ok(Attr {
                attr: self.attr_of(&inode, Some(size)),
                ttl: self.ttl(),
            });
        }
        if !inode.is_fresh(self.config.metadata_ttl) {
            inode = self.revalidate(&inode).await?;
        }
        Ok(Attr {
            attr: self.attr_of(&inode, None),
            ttl: self.ttl(),
        })
    }

    fn after_writer(&self, ino: u64, slot: &WriterSlot<C>, writer: &mut FileWriter<C>) {
        slot.size.store(writer.size(), Ordering::SeqCst);
        if let Some(mtime) = writer.automatic_mtime() {
            // Shown while writing = what the upload will store.
            self.inodes.update(ino, |i| {
                if i.stat.meta.mtime != Some(mtime) {
                    i.stat.meta.mtime = Some(mtime);
                }
            });
        }
        if let Some(up) = writer.take_uploaded() {
            self.inodes.update(ino, |i| {
                i.stat.size = up.size;
                i.stat.etag = Some(up.etag.clone());
                i.stat.last_modified = up.time;
                i.stat.meta = MetaAttrs::from_user_meta(&up.user_meta);
                i.stat.meta_etag = Some(up.etag.clone());
                i.own_etag = Some(up.etag.clone());
                i.local_only = false;
                i.validated = std::time::Instant::now();
            });
        }
    }

    /// The writer of `ino` (created from the inode's current object when there is none), pinned:
    /// its user count is raised under the writers lock, so a concurrent last `release` can never
    /// drop it from the table between the lookup and the pin. Every pin is paired with
    /// [`Self::unpin_writer`].
    fn pin_writer(&self, inode: &Inode, dirty: bool) -> Arc<WriterSlot<C>> {
        if !self.inodes.with(inode.ino, |i| i.had_writer).unwrap_or(false) {
            // Exclusive: waits for a page-cache push of this file's old bytes to finish.
            let _no_fill = self.page_fill.write().unwrap_or_else(|e| e.into_inner());
            self.inodes.update(inode.ino, |i| i.had_writer = true);
        }
        let mut writers = lock(&self.writers);
        let slot = writers
            .entry(inode.ino)
            .or_insert_with(|| {
                let base = match (&inode.stat.etag, inode.local_only) {
                    (Some(etag), false) => Some(ObjectVersion {
                        key: self.key(&inode.path, Kind::File),
                        etag: etag.clone(),
                        size: inode.stat.size,
                    }),
                    _ => None,
                };
                let mut meta = inode.stat.meta.clone();
                meta.mode.get_or_insert(libc::S_IFREG | self.config.file_mode);
                let size = base.as_ref().map_or(0, |b| b.size);
                Arc::new(WriterSlot {
                    writer: tokio::sync::Mutex::new(FileWriter::new(base, meta, UserMeta::new(), dirty)),
                    opens: AtomicUsize::new(0),
                    size: AtomicU64::new(size),
                })
            })
            .clone();
        slot.opens.fetch_add(1, Ordering::SeqCst);
        slot
    }

    /// Drop one pin; the last one removes the writer from the table. Returns whether it was the
    /// last.
    fn unpin_writer(&self, ino: u64, slot: &Arc<WriterSlot<C>>) -> bool {
        let mut writers = lock(&self.writers);
        let last = slot.opens.fetch_sub(1, Ordering::SeqCst) == 1;
        if last && writers.get(&ino).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            writers.remove(&ino);
        }
        last
    }

    /// Flush the writer of `ino` to its current key (or drop its content when the file was
    /// unlinked meanwhile).
    async fn flush_writer(&self, ino: u64, slot: &WriterSlot<C>) -> Result<(), FsError> {
        let _mutation = Mutation::new(&self.mutations);
        let mut writer = slot.writer.lock().await;
        let inode = self.inode(ino)?;
        if inode.detached {
            writer.discard(&self.ctx).await;
            return Ok(());
        }
        let key = self.key(&inode.path, Kind::File);
        let result = writer.flush(&self.ctx, &key).await;
        self.after_writer(ino, slot, &mut writer);
        result.map_err(|e| e.context(format!("flushing {}", inode.path)))
    }

    pub async fn setattr(&self, ino: u64, req: SetAttr) -> Result<Attr, FsError> {
        let inode = self.inode(ino)?;
        let changes_meta = req.mode.is_some() || req.uid.is_some() || req.gid.is_some() || req.mtime.is_some();
        let _mutation = if req.size.is_some() || changes_meta {
            Some(self.check_writable()?)
        } else {
            None
        };
        if let Some(size) = req.size {
            if inode.kind != Kind::File {
                return Err(err(
                    if inode.kind == Kind::Dir {
                        libc::EISDIR
                    } else {
                        libc::EINVAL
                    },
                    "truncate of a non-file",
                ));
            }
            let existing = self.writer_slot(ino);
            let meta_unknown = inode.stat.etag.is_some() && inode.stat.meta_etag != inode.stat.etag;
            let inode = if existing.is_none() && (meta_unknown || !inode.is_fresh(self.config.metadata_ttl)) {
                self.revalidate(&inode).await?
            } else {
                inode.clone()
            };
            // Pinned for the duration of the call: a last `release` racing with this truncate
            // (close() returns before the kernel sends RELEASE) must not drop the writer
            // between our truncate and its upload.
            let slot = self.pin_writer(&inode, false);
            let truncated = {
                let mut writer = slot.writer.lock().await;
                let key = self.key(&inode.path, Kind::File);
                let r = writer.truncate(&self.ctx, &key, size).await;
                self.after_writer(ino, &slot, &mut writer);
                r
            };
            // No open file besides this call: make the change now (otherwise it goes up with
            // the open file's next flush or close).
            let result = match truncated {
                Ok(()) if slot.opens.load(Ordering::SeqCst) == 1 => self.flush_writer(ino, &slot).await,
                other => other,
            };
            self.unpin_writer(ino, &slot);
            result?;
        }
        if changes_meta {
            let mut inode = self.inode(ino)?;
            let mut attrs = inode.stat.meta.clone();
            if let Some(mode) = req.mode {
                attrs.mode = Some(kept_type_bits(inode.kind, &attrs) | (mode & 0o7777));
            }
            if let Some(uid) = req.uid {
                attrs.uid = Some(uid);
            }
            if let Some(gid) = req.gid {
                attrs.gid = Some(gid);
            }
            if let Some(mtime) = req.mtime {
                attrs.mtime = Some(mtime);
            }
            if attrs.mtime.is_none() {
                attrs.mtime = Some(inode.stat.last_modified);
            }
            match self.writer_slot(ino) {
                Some(slot) => {
                    // Held while persisting, so the writer's base follows the new ETag.
                    let mut writer = slot.writer.lock().await;
                    writer.meta = attrs.clone();
                    if req.mtime.is_some() {
                        writer.explicit_mtime = true;
                    }
                    // Pending data: the attributes go up with it (one request, as `cp -p` wants).
                    if !writer.is_dirty() {
                        if let Some(etag) = self.persist_meta(&inode, &attrs).await? {
                            writer.rebase(None, etag);
                        }
                    }
                }
                None => {
                    self.persist_meta(&inode, &attrs).await?;
                }
            }
            inode = self
                .inodes
                .update(ino, |i| {
                    i.stat.meta = attrs.clone();
                    i.validated = std::time::Instant::now();
                })
                .ok_or_else(|| err(libc::ENOENT, "inode vanished"))?;
            return Ok(Attr {
                attr: self.entry_of(&inode).attr,
                ttl: self.ttl(),
            });
        }
        let inode = self.inode(ino)?;
        Ok(Attr {
            attr: self.entry_of(&inode).attr,
            ttl: self.ttl(),
        })
    }

    /// Store POSIX attributes of an existing object (no open writer with pending data); returns
    /// the file's new ETag.
    async fn persist_meta(&self, inode: &Inode, attrs: &MetaAttrs) -> Result<Option<ETag>, FsError> {
        if inode.local_only || inode.detached {
            return Ok(None);
        }
        let key = self.key(&inode.path, inode.kind);
        match inode.kind {
            Kind::File => {
                let head = self.client.head_object(&key).await?;
                let mut meta = head.user_meta.clone();
                attrs.apply_to(&mut meta);
                let etag = set_user_meta(&self.ctx, &key, &head.etag, meta.clone()).await?;
                self.inodes.update(inode.ino, |i| {
                    i.stat.etag = Some(etag.clone());
                    i.stat.meta_etag = Some(etag.clone());
                    i.own_etag = Some(etag.clone());
                    i.stat.size = head.size;
                });
                return Ok(Some(etag));
            }
            Kind::Dir if inode.ino == ROOT_INO => {
                // The mount root has no object of its own (the prefix may not even have a
                // marker): keep the change for this mount only, so `rsync -a src/ mnt/` and
                // `touch mnt` succeed.
                debug!("attributes of the mount root are kept in memory only");
            }
            Kind::Dir => {
                let mut meta = match self.client.head_object(&key).await {
                    Ok(head) => head.user_meta,
                    Err(ClientError::NoSuchKey(_)) => UserMeta::new(),
                    Err(e) => return Err(e.into()),
                };
                attrs.apply_to(&mut meta);
                // Writing the marker also turns an implicit directory into an explicit one.
                let put = self
                    .client
                    .put_object(PutObjectParams::new(key, Bytes::new()).user_meta(meta))
                    .await?;
                self.inodes.update(inode.ino, |i| {
                    i.stat.etag = Some(put.etag.clone());
                    i.stat.meta_etag = Some(put.etag);
                });
            }
            Kind::Symlink => {
                let link = self.client.get_symlink(&key).await?;
                let mut meta = link.user_meta.clone();
                attrs.apply_to(&mut meta);
                let params = PutSymlinkParams {
                    key,
                    target: link.target,
                    user_meta: meta,
                    forbid_overwrite: false,
                };
                let etag = self.client.put_symlink(params).await?;
                self.inodes.update(inode.ino, |i| {
                    i.stat.etag = Some(etag.clone());
                    i.stat.meta_etag = Some(etag.clone());
                });
            }
        }
        Ok(None)
    }

    pub async fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind != Kind::Symlink {
            return Err(err(libc::EINVAL, "not a symlink"));
        }
        if let Some(t) = inode.symlink_target.filter(|_| inode.stat.etag.is_some()) {
            return Ok(t.into_bytes());
        }
        let key = self.key(&inode.path, Kind::Symlink);
        let link = self.client.get_symlink(&key).await?;
        let target = symlink::to_posix(&key, &link.target, &link.user_meta);
        self.inodes.update(ino, |i| i.symlink_target = Some(target.clone()));
        Ok(target.into_bytes())
    }

    /// Fail with EEXIST when `name` exists in `parent`.
    async fn ensure_absent(&self, parent: &Inode, name: &str) -> Result<String, FsError> {
        let path = join_path(&parent.path, name);
        self.check_key_length(&path)?;
        if self.child(parent, name).await?.is_some() {
            return Err(err(libc::EEXIST, format!("{path} exists")));
        }
        Ok(path)
    }

    /// OSS keys are at most 1023 bytes: a longer path cannot exist (ENAMETOOLONG, as for a
    /// path over PATH_MAX). Checked with the directory form, the longest key of a path.
    fn check_key_length(&self, path: &str) -> Result<(), FsError> {
        if self.key(path, Kind::Dir).len() > MAX_KEY_BYTES {
            return Err(err(
                libc::ENAMETOOLONG,
                format!("the OSS key of {path} would exceed {MAX_KEY_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    fn new_meta(&self, kind: Kind, mode: u32, uid: u32, gid: u32) -> MetaAttrs {
        MetaAttrs {
            mode: Some(type_bits(kind) | (mode & 0o7777)),
            uid: Some(uid),
            gid: Some(gid),
            mtime: Some(SystemTime::now()),
            extra: UserMeta::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Entry, FsError> {
        let _mutation = self.check_writable()?;
        let parent = self.dir_inode(parent)?;
        let name = self.name_str(name)?;
        let path = self.ensure_absent(&parent, name).await?;
        let attrs = self.new_meta(Kind::Dir, mode & !umask, uid, gid);
        let mut meta = UserMeta::new();
        attrs.apply_to(&mut meta);
        let key = self.key(&path, Kind::Dir);
        let r = self
            .client
            .put_object(PutObjectParams::new(key, Bytes::new()).user_meta(meta))
            .await?;
        let mut stat = Stat::new(0, SystemTime::now(), Some(r.etag.clone()));
        stat.meta = attrs;
        stat.meta_etag = Some(r.etag);
        let inode = self
            .inodes
            .insert_local(parent.ino, &parent.path, name, Kind::Dir, stat, false);
        Ok(self.entry_of(&inode))
    }

    /// mknod: regular files only (an empty object is written at once); FIFOs, sockets and
    /// devices cannot be stored in OSS (EPERM).
    #[allow(clippy::too_many_arguments)]
    pub async fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Entry, FsError> {
        let _mutation = self.check_writable()?;
        let file_type = mode & libc::S_IFMT;
        let special = matches!(
            file_type,
            libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK
        );
        if file_type != libc::S_IFREG && file_type != 0 && !special {
            return Err(err(libc::EINVAL, "unknown file type for mknod"));
        }
        let parent = self.dir_inode(parent)?;
        let name = self.name_str(name)?;
        let path = self.ensure_absent(&parent, name).await?;
        let mut attrs = self.new_meta(Kind::File, mode & !umask, uid, gid);
        if special {
            attrs.mode = Some(file_type | (mode & !umask & 0o7777));
            if matches!(file_type, libc::S_IFCHR | libc::S_IFBLK) {
                attrs.extra.insert(META_RDEV.to_string(), rdev.to_string());
            }
        }
        let mut meta = UserMeta::new();
        attrs.apply_to(&mut meta);
        let r = self
            .client
            .put_object(PutObjectParams::new(self.key(&path, Kind::File), Bytes::new()).user_meta(meta))
            .await?;
        let mut stat = Stat::new(0, SystemTime::now(), Some(r.etag.clone()));
        stat.meta = attrs;
        stat.meta_etag = Some(r.etag);
        let inode = self
            .inodes
            .insert_local(parent.ino, &parent.path, name, Kind::File, stat, false);
        Ok(self.entry_of(&inode))
    }

    pub async fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        let _mutation = self.check_writable()?;
        let parent = self.dir_inode(parent)?;
        let name = self.name_str(name)?;
        let path = join_path(&parent.path, name);
        let Some(inode) = self.child(&parent, name).await? else {
            return Err(err(libc::ENOENT, format!("{path} not found")));
        };
        if inode.kind == Kind::Dir {
            return Err(err(libc::EISDIR, format!("{path} is a directory")));
        }
        if let Some(slot) = self.writer_slot(inode.ino) {
            slot.writer.lock().await.detach(&self.ctx).await;
        }
        if !inode.local_only {
            self.client.delete_object(&self.key(&path, inode.kind)).await?;
        }
        self.inodes.remove_path(&path, self.config.negative_ttl);
        Ok(())
    }

    /// Whether the directory at `path` has any child, remote or local.
    async fn dir_has_children(&self, path: &str) -> Result<bool, FsError> {
        if !self.inodes.local_children(path).is_empty() {
            return Ok(true);
        }
        let key = self.key(path, Kind::Dir);
        let page = self
            .client
            .list_objects(ListObjectsParams::new(key.clone()).delimiter("/").max_keys(2))
            .await?;
        Ok(page.objects.iter().any(|o| o.key != key) || !page.common_prefixes.is_empty())
    }

    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        let _mutation = self.check_writable()?;
        let parent = self.dir_inode(parent)?;
        let name = self.name_str(name)?;
        let path = join_path(&parent.path, name);
        let Some(inode) = self.child(&parent, name).await? else {
            return Err(err(libc::ENOENT, format!("{path} not found")));
        };
        if inode.kind != Kind::Dir {
            return Err(err(libc::ENOTDIR, format!("{path} is not a directory")));
        }
        if self.dir_has_children(&path).await? {
            return Err(err(libc::ENOTEMPTY, format!("{path} is not empty")));
        }
        // Deleting an absent marker (implicit directory) succeeds.
        self.client.delete_object(&self.key(&path, Kind::Dir)).await?;
        self.inodes.remove_path(&path, self.config.negative_ttl);
        Ok(())
    }

    pub async fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        uid: u32,
        gid: u32,
    ) -> Result<Entry, FsError> {
        let _mutation = self.check_writable()?;
        let parent = self.dir_inode(parent)?;
        let name = self.name_str(name)?;
        let target = target
            .to_str()
            .ok_or_else(|| err(libc::EINVAL, "symlink target is not valid UTF-8"))?;
        let path = self.ensure_absent(&parent, name).await?;
        let attrs = self.new_meta(Kind::Symlink, 0o777, uid, gid);
        let mut meta = UserMeta::new();
        attrs.apply_to(&mut meta);
        let key = self.key(&path, Kind::Symlink);
        let (oss_target, (meta_name, meta_value)) = symlink::to_oss(&key, target);
        meta.insert(meta_name, meta_value);
        let params = PutSymlinkParams {
            key,
            target: oss_target,
            user_meta: meta,
            forbid_overwrite: false,
        };
        let etag = self.client.put_symlink(params).await?;
        let mut stat = Stat::new(target.len() as u64, SystemTime::now(), Some(etag.clone()));
        stat.meta = attrs;
        stat.meta_etag = Some(etag);
        let inode = self
            .inodes
            .insert_local(parent.ino, &parent.path, name, Kind::Symlink, stat, false);
        let target = target.to_string();
        let inode = self
            .inodes
            .update(inode.ino, |i| i.symlink_target = Some(target))
            .unwrap_or(inode);
        Ok(self.entry_of(&inode))
    }

    /// Hard links cannot be represented in OSS: EPERM (as on filesystems without them).
    pub async fn link(&self, _ino: u64, _newparent: u64, _newname: &OsStr) -> Result<Entry, FsError> {
        let _mutation = self.check_writable()?;
        Err(err(libc::EPERM, "hard links are not supported"))
    }

    /// Copy one object (file or symlink) to `dest` and return the new ETag.
    async fn copy_object(
        &self,
        src: &str,
        dest: &str,
        kind: Kind,
        etag: Option<&ETag>,
        size: u64,
    ) -> Result<ETag, FsError> {
        if kind == Kind::Symlink {
            let link = self.client.get_symlink(src).await?;
            let params = PutSymlinkParams {
                key: dest.to_string(),
                target: symlink::retarget(dest, &link.target, &link.user_meta),
                user_meta: link.user_meta,
                forbid_overwrite: false,
            };
            return Ok(self.client.put_symlink(params).await?);
        }
        if size <= self.copy_object_max_bytes.load(Ordering::SeqCst) {
            let params = CopyObjectParams {
                source_key: src.to_string(),
                dest_key: dest.to_string(),
                metadata: MetadataDirective::Copy,
                source_if_match: etag.cloned(),
                forbid_overwrite: false,
            };
            return Ok(self.client.copy_object(params).await?.etag);
        }
        // Large: UploadPartCopy in parallel, metadata taken from a HEAD of the source.
        let head = self.client.head_object(src).await?;
        let size = head.size;
        let part = self.config.part_size_bytes.max(size.div_ceil(u64::from(MAX_PARTS)));
        let mut params = CreateMultipartUploadParams::new(dest).user_meta(head.user_meta.clone());
        params.content_type = head.content_type.clone();
        let upload_id = self.client.create_multipart_upload(params).await?;
        let n = size.div_ceil(part);
        let parts: Result<Vec<UploadedPart>, ClientError> = futures::stream::iter(0..n)
            .map(|i| {
                let params = UploadPartCopyParams {
                    key: dest.to_string(),
                    upload_id: upload_id.clone(),
                    part_number: (i + 1) as u32,
                    source_key: src.to_string(),
                    source_range: Some(i * part..((i + 1) * part).min(size)),
                    source_if_match: Some(head.etag.clone()),
                };
                self.client.upload_part_copy(params)
            })
            .buffer_unordered(self.config.max_concurrency.max(1))
            .try_collect()
            .await;
        let result = match parts {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.part_number);
                let params = CompleteMultipartUploadParams {
                    key: dest.to_string(),
                    upload_id: upload_id.clone(),
                    parts,
                    forbid_overwrite: false,
                };
                self.client.complete_multipart_upload(params).await.map(|r| r.etag)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(etag) => Ok(etag),
            Err(e) => {
                if let Err(abort) = self.client.abort_multipart_upload(dest, &upload_id).await {
                    warn!(key = dest, error = %abort, "aborting multipart copy failed");
                }
                Err(e.into())
            }
        }
    }

    pub async fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), FsError> {
        let _mutation = self.check_writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 || flags & libc::RENAME_WHITEOUT != 0 {
            return Err(err(libc::EINVAL, "RENAME_EXCHANGE/RENAME_WHITEOUT are not supported"));
        }
        let parent = self.dir_inode(parent)?;
        let newparent = self.dir_inode(newparent)?;
        let name = self.name_str(name)?;
        let newname = self.name_str(newname)?;
        let from = join_path(&parent.path, name);
        let to = join_path(&newparent.path, newname);
        self.check_key_length(&to)?;
        let Some(src) = self.child(&parent, name).await? else {
            return Err(err(libc::ENOENT, format!("{from} not found")));
        };
        if from == to {
            return Ok(());
        }
        let src_kind = src.kind;
        if src.kind == Kind::Dir && (to.starts_with(&format!("{from}/"))) {
            return Err(err(libc::EINVAL, "cannot move a directory into itself"));
        }
        let dest = self.child(&newparent, newname).await?;
        if let Some(dest) = &dest {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(err(libc::EEXIST, format!("{to} exists")));
            }
            match (src.kind == Kind::Dir, dest.kind == Kind::Dir) {
                (true, false) => return Err(err(libc::ENOTDIR, format!("{to} is not a directory"))),
                (false, true) => return Err(err(libc::EISDIR, format!("{to} is a directory"))),
                (true, true) => {
                    if self.dir_has_children(&to).await? {
                        return Err(err(libc::ENOTEMPTY, format!("{to} is not empty")));
                    }
                }
                (false, false) => {}
            }
        }
        let mut copied_below = HashMap::new();
        if src.kind == Kind::Dir {
            copied_below = self.rename_dir(&from, &to).await?;
        } else {
            // Data written but not uploaded goes up under the old name first, so the copy
            // carries it.
            let mut src = src;
            if let Some(slot) = self.writer_slot(src.ino) {
                self.flush_writer(src.ino, &slot).await?;
                src = self.inode(src.ino)?;
            }
            if !src.local_only {
                let from_key = self.key(&from, src.kind);
                let to_key = self.key(&to, src.kind);
                let new_etag = self
                    .copy_object(&from_key, &to_key, src.kind, src.stat.etag.as_ref(), src.stat.size)
                    .await?;
                self.client.delete_object(&from_key).await?;
                if let Some(slot) = self.writer_slot(src.ino) {
                    slot.writer.lock().await.rebase(Some(to_key.clone()), new_etag.clone());
                }
                let old_etag = src.stat.etag.clone();
                self.inodes.update(src.ino, |i| {
                    if i.stat.meta_etag.is_some() && i.stat.meta_etag == old_etag {
                        i.stat.meta_etag = Some(new_etag.clone());
                    }
                    i.own_etag = Some(new_etag.clone());
                    i.stat.etag = Some(new_etag);
                });
            }
            // else: never uploaded (nothing to copy); the pending upload goes to the new name.
            if let Some(dest) = &dest {
                if let Some(slot) = self.writer_slot(dest.ino) {
                    slot.writer.lock().await.detach(&self.ctx).await;
                }
                if dest.local_only {
                    // The destination was a file being created: it is replaced and never uploaded.
                    self.inodes.update(dest.ino, |i| i.local_only = false);
                }
            }
        }
        // Objects below a renamed directory have new ETags: they are revalidated on next use.
        self.inodes.rename(
            &from,
            &to,
            newparent.ino,
            newname,
            src_kind == Kind::Dir,
            self.config.negative_ttl,
        );
        // Known objects below a renamed directory: same bytes, new key and ETag.
        for (dest_key, etag) in copied_below.into_values() {
            let Some(path) = dest_key.strip_prefix(&self.config.prefix) else {
                continue;
            };
            if let Some(inode) = self.inodes.by_path(path) {
                self.inodes.update(inode.ino, |i| {
                    if i.stat.meta_etag.is_some() && i.stat.meta_etag == i.stat.etag {
                        i.stat.meta_etag = Some(etag.clone());
                    }
                    i.stat.etag = Some(etag.clone());
                    i.own_etag = Some(etag);
                    i.stale = false;
                });
            }
        }
        Ok(())
    }

    /// Copy every key under `from/` to `to/` (bounded concurrency), then delete the sources.
    /// Not atomic: a failure part-way leaves both trees partly populated (never data loss: the
    /// sources are deleted only after every copy succeeded).
    async fn rename_dir(&self, from: &str, to: &str) -> Result<HashMap<String, (String, ETag)>, FsError> {
        // Flush pending writes of files below, so their content moves too.
        let open: Vec<(u64, Arc<WriterSlot<C>>)> = lock(&self.writers).iter().map(|(i, s)| (*i, s.clone())).collect();
        let mut below = Vec::new();
        for (ino, slot) in open {
            if let Some(inode) = self.inodes.get(ino) {
                if inode.path.starts_with(&format!("{from}/")) {
                    self.flush_writer(ino, &slot).await?;
                    below.push((self.key(&inode.path, Kind::File), slot));
                }
            }
        }
        let from_key = self.key(from, Kind::Dir);
        let to_key = self.key(to, Kind::Dir);
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects(
                    ListObjectsParams::new(from_key.clone())
                        .max_keys(MAX_LIST_KEYS)
                        .continuation_token(token),
                )
                .await?;
            keys.extend(page.objects);
            token = page.next_continuation_token;
            if token.is_none() {
                break;
            }
        }
        let results: Vec<Result<(String, String, ETag), FsError>> = futures::stream::iter(keys.iter())
            .map(|o| {
                let dest = format!("{to_key}{}", &o.key[from_key.len()..]);
                let kind = if o.object_type == ObjectType::Symlink {
                    Kind::Symlink
                } else {
                    Kind::File
                };
                async move {
                    let etag = self.copy_object(&o.key, &dest, kind, Some(&o.etag), o.size).await?;
                    Ok((o.key.clone(), dest, etag))
                }
            })
            .buffer_unordered(self.config.max_concurrency.max(1))
            .collect()
            .await;
        let mut copied = HashMap::new();
        for r in results {
            let (src, dest, etag) = r.map_err(|e| e.context(format!("renaming {from} to {to}: copying")))?;
            copied.insert(src, (dest, etag));
        }
        // Files open below keep working on the copies.
        for (key, slot) in below {
            if let Some((dest, etag)) = copied.get(&key) {
                slot.writer.lock().await.rebase(Some(dest.clone()), etag.clone());
            }
        }
        let all: Vec<String> = keys.into_iter().map(|o| o.key).collect();
        for chunk in all.chunks(MAX_DELETE_KEYS) {
            let failed = self.client.delete_objects(chunk).await?;
            if let Some(f) = failed.first() {
                return Err(err(
                    libc::EIO,
                    format!("renaming {from}: could not delete {}: {} {}", f.key, f.code, f.message),
                ));
            }
        }
        Ok(copied)
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::SeqCst)
    }

    pub async fn open(&self, ino: u64, flags: i32) -> Result<Opened, FsError> {
        let mut inode = self.inode(ino)?;
        match inode.kind {
            Kind::Dir => return Err(err(libc::EISDIR, "is a directory")),
            Kind::Symlink => return Err(err(libc::ELOOP, "is a symlink")),
            Kind::File => {}
        }
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writable || flags & libc::O_TRUNC != 0 {
            let _mutation = self.check_writable()?;
        }
        let slot = self.writer_slot(ino);
        // Close-to-open: a file not being written here is revalidated when its attributes are
        // older than the TTL.
        // A rewrite must also carry the object's mode/owner/other metadata: learn them first.
        let meta_unknown =
            writable && !inode.local_only && inode.stat.etag.is_some() && inode.stat.meta_etag != inode.stat.etag;
        if slot.is_none() && (meta_unknown || !inode.is_fresh(self.config.metadata_ttl)) {
            inode = self.revalidate(&inode).await?;
        }
        let keep_cache = slot.is_none() && inode.stat.etag.is_some() && inode.last_open_etag == inode.stat.etag;
        let etag = inode.stat.etag.clone();
        self.inodes.update(ino, |i| i.last_open_etag = etag);
        let reader = match (&inode.stat.etag, inode.local_only) {
            (Some(etag), false) => {
                let id = ObjectId::new(self.key(&inode.path, Kind::File), etag.clone());
                Some((etag.clone(), Arc::new(self.ctx.cache.open(id, inode.stat.size))))
            }
            _ => None,
        };
        if writable {
            self.pin_writer(&inode, false);
        }
        let fh = self.new_fh();
        lock(&self.handles).insert(
            fh,
            Arc::new(FileHandle {
                ino,
                writable,
                reader: Mutex::new(reader),
            }),
        );
        Ok(Opened {
            fh,
            keep_cache,
            direct_io: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        uid: u32,
        gid: u32,
    ) -> Result<(Entry, Opened), FsError> {
        let _mutation = self.check_writable()?;
        let parent = self.dir_inode(parent)?;
        let name = self.name_str(name)?;
        let path = join_path(&parent.path, name);
        if let Some(existing) = self.child(&parent, name).await? {
            if flags & libc::O_EXCL != 0 {
                return Err(err(libc::EEXIST, format!("{path} exists")));
            }
            if existing.kind == Kind::Dir {
                return Err(err(libc::EISDIR, format!("{path} is a directory")));
            }
            // Lost a race with another creator: open what is there (O_TRUNC included, which
            // the kernel does not send separately for a create).
            let opened = self.open(existing.ino, flags).await?;
            if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
                let set = SetAttr {
                    size: Some(0),
                    fh: Some(opened.fh),
                    ..Default::default()
                };
                if let Err(e) = self.setattr(existing.ino, set).await {
                    let _ = self.release(existing.ino, opened.fh).await;
                    return Err(e);
                }
            }
            self.inodes.add_lookup(existing.ino);
            return Ok((self.entry_of(&self.inode(existing.ino)?), opened));
        }
        let attrs = self.new_meta(Kind::File, mode & !umask, uid, gid);
        let mut stat = Stat::new(0, SystemTime::now(), None);
        stat.meta = attrs;
        // Not uploaded until flush/close: a new file costs one PutObject, not two.
        let inode = self
            .inodes
            .insert_local(parent.ino, &parent.path, name, Kind::File, stat, true);
        self.pin_writer(&inode, true);
        let fh = self.new_fh();
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if !writable {
            // O_CREAT|O_RDONLY: the writer still uploads the empty file at close.
            debug!(path, "create with O_RDONLY");
        }
        lock(&self.handles).insert(
            fh,
            Arc::new(FileHandle {
                ino: inode.ino,
                writable: true,
                reader: Mutex::new(None),
            }),
        );
        Ok((
            self.entry_of(&inode),
            Opened {
                fh,
                keep_cache: false,
                direct_io: false,
            },
        ))
    }

    fn handle(&self, fh: u64) -> Result<Arc<FileHandle<C>>, FsError> {
        lock(&self.handles)
            .get(&fh)
            .cloned()
            .ok_or_else(|| err(libc::EBADF, format!("unknown file handle {fh}")))
    }

    pub async fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Bytes, FsError> {
        Ok(self.read_for_kernel(ino, fh, offset, size).await?.data)
    }

    /// A read, plus the bytes around it that the kernel may cache (see [`ReadReply`]).
    pub async fn read_for_kernel(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<ReadReply, FsError> {
        let handle = self.handle(fh)?;
        if let Some(slot) = self.writer_slot(ino) {
            let mut writer = slot.writer.lock().await;
            let r = writer.read(&self.ctx, offset, size as usize).await;
            self.after_writer(ino, &slot, &mut writer);
            return Ok(ReadReply {
                data: r?,
                page_fill: None,
            });
        }
        let (current, own, local_only, object_size) = self
            .inodes
            .with(ino, |i| {
                (i.stat.etag.clone(), i.own_etag.clone(), i.local_only, i.stat.size)
            })
            .ok_or_else(|| err(libc::ENOENT, format!("inode {ino} unknown")))?;
        let reader = {
            let mut guard = lock(&handle.reader);
            match (&*guard, &current) {
                (Some((etag, r)), Some(current)) if etag == current => Some((etag.clone(), r.clone())),
                // Changed by someone else: stay on the version seen at open (reads of a
                // replaced object then fail with ESTALE rather than mix two versions).
                (Some((etag, r)), Some(current)) if own.as_ref() != Some(current) => Some((etag.clone(), r.clone())),
                (Some((etag, r)), None) => Some((etag.clone(), r.clone())),
                (_, Some(current)) if !local_only => {
                    // Our own upload (through another handle) replaced the object: read the new one.
                    let path = self.inode(ino)?.path;
                    let id = ObjectId::new(self.key(&path, Kind::File), current.clone());
                    let r = Arc::new(self.ctx.cache.open(id, object_size));
                    *guard = Some((current.clone(), r.clone()));
                    Some((current.clone(), r))
                }
                _ => None,
            }
        };
        let Some((etag, reader)) = reader else {
            return Ok(ReadReply::default());
        };
        let out = reader.read_with_surroundings(offset, size as usize).await?;
        let page_fill = (!out.surroundings.is_empty() && current.as_ref() == Some(&etag)).then(|| PageFill {
            ino,
            etag,
            ranges: out.surroundings,
        });
        Ok(ReadReply {
            data: out.data,
            page_fill,
        })
    }

    /// Run `push` (which hands `fill` to the kernel's page cache) if the bytes may be cached:
    /// the file still has the object version they came from and has had no writer in this
    /// mount (a writer's newer bytes, possibly only in the page cache yet, must never be
    /// overwritten). Returns whether `push` ran. Blocking: call it from a thread of its own,
    /// never while answering a kernel request (the kernel may hold the pages locked until a
    /// pending read is answered).
    pub fn fill_page_cache(&self, fill: &PageFill, push: impl FnOnce()) -> bool {
        let _shared = self.page_fill.read().unwrap_or_else(|e| e.into_inner());
        let allowed = self
            .inodes
            .with(fill.ino, |i| {
                !i.had_writer && !i.detached && i.stat.etag.as_ref() == Some(&fill.etag)
            })
            .unwrap_or(false)
            && self.writer_slot(fill.ino).is_none();
        if allowed {
            push();
        }
        allowed
    }

    pub async fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let _mutation = self.check_writable()?;
        let handle = self.handle(fh)?;
        if !handle.writable {
            return Err(err(libc::EBADF, "file not open for writing"));
        }
        let slot = self
            .writer_slot(ino)
            .ok_or_else(|| err(libc::EBADF, "no writer for this file"))?;
        let inode = self.inode(ino)?;
        let key = self.key(&inode.path, Kind::File);
        let mut writer = slot.writer.lock().await;
        let r = writer.write(&self.ctx, &key, offset, data).await;
        self.after_writer(ino, &slot, &mut writer);
        r.map_err(|e| e.context(format!("writing {}", inode.path)))?;
        Ok(data.len() as u32)
    }

    /// Called on every close of a file descriptor: uploads pending data; the handle stays usable.
    pub async fn flush(&self, ino: u64, fh: u64) -> Result<(), FsError> {
        let handle = self.handle(fh)?;
        if !handle.writable {
            return Ok(());
        }
        match self.writer_slot(ino) {
            Some(slot) => self.flush_writer(ino, &slot).await,
            None => Ok(()),
        }
    }

    pub async fn fsync(&self, ino: u64, fh: u64, _datasync: bool) -> Result<(), FsError> {
        self.flush(ino, fh).await
    }

    pub async fn release(&self, ino: u64, fh: u64) -> Result<(), FsError> {
        let Some(handle) = lock(&self.handles).remove(&fh) else {
            return Err(err(libc::EBADF, format!("unknown file handle {fh}")));
        };
        if handle.ino != ino {
            warn!(
                ino,
                fh,
                handle_ino = handle.ino,
                "release of a handle with another inode"
            );
        }
        let ino = handle.ino;
        if !handle.writable {
            return Ok(());
        }
        let Some(slot) = self.writer_slot(ino) else {
            return Ok(());
        };
        let result = self.flush_writer(ino, &slot).await;
        // The last user and a failed upload: nothing more can be done with the content, so
        // release the staging file and any multipart upload.
        if self.unpin_writer(ino, &slot) && result.is_err() {
            slot.writer.lock().await.discard(&self.ctx).await;
            self.inodes.update(ino, |i| {
                if i.local_only {
                    // Never made it to OSS: the name disappears.
                    i.detached = true;
                }
            });
            if let Some(inode) = self.inodes.get(ino) {
                if inode.detached && inode.local_only {
                    self.inodes.remove_path(&inode.path, Duration::ZERO);
                }
            }
        }
        result
    }

    pub async fn opendir(&self, ino: u64) -> Result<Opened, FsError> {
        let inode = self.dir_inode(ino)?;
        // Prune when above the limit, and again only after 10% more growth (a table full of
        // referenced inodes must not be rescanned on every opendir).
        let len = self.inodes.len();
        let threshold = INODE_SOFT_LIMIT.max(self.prune_floor.load(Ordering::Relaxed) + INODE_SOFT_LIMIT / 10);
        if len > threshold {
            let busy: Vec<u64> = lock(&self.writers).keys().copied().collect();
            let removed = self.inodes.prune_unreferenced(self.config.metadata_ttl, &busy);
            self.prune_floor.store(len - removed, Ordering::Relaxed);
            debug!(removed, "pruned inodes without kernel references");
        }
        let fh = self.new_fh();
        let snapshot = DirSnapshot::new(self.key(&inode.path, Kind::Dir));
        lock(&self.dirs).insert(
            fh,
            Arc::new(DirHandle {
                ino,
                snapshot: tokio::sync::Mutex::new(snapshot),
                cached: std::sync::atomic::AtomicBool::new(false),
                generation: AtomicU64::new(0),
            }),
        );
        Ok(Opened {
            fh,
            keep_cache: false,
            direct_io: false,
        })
    }

    pub async fn readdir(&self, ino: u64, fh: u64, offset: u64, plus: bool) -> Result<Vec<DirEntry>, FsError> {
        let inode = self.dir_inode(ino)?;
        let handle = lock(&self.dirs)
            .get(&fh)
            .cloned()
            .ok_or_else(|| err(libc::EBADF, "unknown directory handle"))?;
        if handle.ino != ino {
            return Err(err(libc::EBADF, "directory handle of another inode"));
        }
        let mut snapshot = handle.snapshot.lock().await;
        if offset == 0 || !snapshot.started() {
            if offset == 0 && snapshot.started() {
                // rewinddir: a new snapshot.
                *snapshot = DirSnapshot::new(self.key(&inode.path, Kind::Dir));
            }
            if !snapshot.started() {
                let generation = self.mutations.load(Ordering::SeqCst);
                handle.generation.store(generation, Ordering::SeqCst);
                match self.cached_listing(ino, generation) {
                    Some(items) => {
                        *snapshot = DirSnapshot::from_items(self.key(&inode.path, Kind::Dir), items.to_vec());
                        handle.cached.store(true, Ordering::SeqCst);
                    }
                    None => handle.cached.store(false, Ordering::SeqCst),
                }
            }
        }
        let from_cache = handle.cached.load(Ordering::SeqCst);
        let mut out = Vec::new();
        let mut offset = offset;
        let dot = |ino: u64, name: &str, next: u64, attr: Option<Entry>| DirEntry {
            ino,
            offset: next,
            kind: FileType::Directory,
            name: OsString::from(name),
            attr,
        };
        if offset == 0 {
            let attr = plus.then(|| self.entry_of(&inode));
            out.push(dot(ino, ".", 1, attr));
            offset = 1;
        }
        if offset == 1 {
            let parent = self.inodes.get(inode.parent).unwrap_or_else(|| inode.clone());
            let attr = plus.then(|| self.entry_of(&parent));
            out.push(dot(parent.ino, "..", 2, attr));
            offset = 2;
        }
        let start = (offset - 2) as usize;
        let want = start
            + if plus {
                READDIRPLUS_BATCH_ENTRIES
            } else {
                READDIR_BATCH_ENTRIES
            };
        let was_done = snapshot.done;
        snapshot.fill(self.client.as_ref(), want).await?;
        if snapshot.done && !was_done {
            for local in self.inodes.local_children(&inode.path) {
                snapshot.push_local(DirItem {
                    name: local.name.clone(),
                    kind: local.kind,
                    stat: None,
                });
            }
            self.store_listing(ino, handle.generation.load(Ordering::SeqCst), &snapshot.items);
        }
        let end = snapshot.items.len().min(want);
        for (i, item) in snapshot.items.iter().enumerate().take(end).skip(start) {
            let child = match &item.stat {
                Some(stat) => {
                    let found = Found {
                        kind: item.kind,
                        stat: stat.clone(),
                    };
                    match self.inodes.by_path(&join_path(&inode.path, &item.name)) {
                        // Files being written here keep their local state; and a cached
                        // listing never overrides what the inode learnt since.
                        Some(existing)
                            if from_cache || existing.local_only || self.writer_slot(existing.ino).is_some() =>
                        {
                            existing
                        }
                        _ => self.inodes.upsert(ino, &inode.path, &item.name, found, false),
                    }
                }
                None => match self.inodes.by_path(&join_path(&inode.path, &item.name)) {
                    Some(existing) if existing.kind == item.kind => existing,
                    _ => {
                        let found = Found {
                            kind: item.kind,
                            stat: Stat::new(0, self.mount_time, None),
                        };
                        self.inodes.upsert(ino, &inode.path, &item.name, found, false)
                    }
                },
            };
            out.push(DirEntry {
                ino: child.ino,
                offset: i as u64 + 3,
                kind: file_type(child.kind),
                name: OsString::from(item.name.clone()),
                attr: plus.then(|| self.entry_of(&child)),
            });
        }
        Ok(out)
    }

    /// The cached complete listing of directory `ino`, if it is younger than the metadata TTL
    /// and nothing changed through this mount since it was taken (`generation` is the
    /// current mutation count).
    fn cached_listing(&self, ino: u64, generation: u64) -> Option<Arc<Vec<DirItem>>> {
        let ttl = self.config.metadata_ttl;
        let mut listings = lock(&self.listings);
        let fresh = listings
            .get(&ino)
            .is_some_and(|l| l.generation == generation && ttl.is_none_or(|ttl| l.at.elapsed() < ttl));
        if fresh {
            return listings.get(&ino).map(|l| l.items.clone());
        }
        listings.remove(&ino);
        None
    }

    /// Keep a complete listing that started at mutation count `generation`, unless something
    /// changed meanwhile (it could then miss that change). At most `LISTING_CACHE_DIRS`
    /// directories are kept; the oldest go first.
    fn store_listing(&self, ino: u64, generation: u64, items: &[DirItem]) {
        if self.config.metadata_ttl == Some(Duration::ZERO)
            || items.len() > LISTING_CACHE_MAX_ENTRIES
            || self.mutations.load(Ordering::SeqCst) != generation
        {
            return;
        }
        let mut listings = lock(&self.listings);
        if listings.len() >= LISTING_CACHE_DIRS {
            let stale: Vec<u64> = listings
                .iter()
                .filter(|(_, l)| l.generation != generation)
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                listings.remove(&k);
            }
            if listings.len() >= LISTING_CACHE_DIRS
                && let Some(oldest) = listings.iter().min_by_key(|(_, l)| l.at).map(|(k, _)| *k)
            {
                listings.remove(&oldest);
            }
        }
        listings.insert(
            ino,
            CachedListing {
                items: Arc::new(items.to_vec()),
                generation,
                at: std::time::Instant::now(),
            },
        );
    }

    pub async fn releasedir(&self, _ino: u64, fh: u64) -> Result<(), FsError> {
        lock(&self.dirs).remove(&fh);
        Ok(())
    }

    pub async fn statfs(&self) -> Result<StatFs, FsError> {
        Ok(StatFs {
            blocks: STATFS_BLOCKS,
            bfree: STATFS_BLOCKS,
            bavail: STATFS_BLOCKS,
            files: STATFS_FILES,
            ffree: STATFS_FILES,
            bsize: STATFS_BLOCK_BYTES,
            namelen: dir::NAME_MAX_BYTES as u32,
            frsize: STATFS_BLOCK_BYTES,
        })
    }

    /// access(2) against the mode/uid/gid we show (`uid`/`gid` of the caller).
    pub async fn access(&self, ino: u64, mask: i32, uid: u32, gid: u32) -> Result<(), FsError> {
        let inode = self.inode(ino)?;
        if mask == libc::F_OK {
            return Ok(());
        }
        if mask & libc::W_OK != 0 && self.config.read_only {
            return Err(err(libc::EROFS, "read-only mount"));
        }
        let attr = self.attr_of(&inode, None);
        let perm = u32::from(attr.perm);
        if uid == 0 {
            // Root may read and write anything; execute needs some x bit (directories: always).
            if mask & libc::X_OK != 0 && inode.kind != Kind::Dir && perm & 0o111 == 0 {
                return Err(err(libc::EACCES, "no execute permission"));
            }
            return Ok(());
        }
        let bits = if uid == attr.uid {
            (perm >> 6) & 7
        } else if gid == attr.gid {
            (perm >> 3) & 7
        } else {
            perm & 7
        };
        let want = (mask as u32) & 7;
        if bits & want == want {
            Ok(())
        } else {
            Err(err(libc::EACCES, "permission denied"))
        }
    }

    /// Unmount: upload what open files still hold (best effort, errors logged), abort what
    /// cannot be completed, and remove the private staging directory.
    pub async fn shutdown(&self) {
        let slots: Vec<(u64, Arc<WriterSlot<C>>)> = lock(&self.writers).drain().collect();
        for (ino, slot) in slots {
            if let Err(e) = self.flush_writer(ino, &slot).await {
                warn!(ino, error = %e.chain(), "upload at unmount failed; the new content is lost");
                slot.writer.lock().await.discard(&self.ctx).await;
            }
        }
        lock(&self.handles).clear();
        lock(&self.dirs).clear();
        if let Some(Staging::Private(dir)) = lock(&self.staging).take() {
            if let Err(e) = dir.close() {
                warn!(error = %e, "removing the staging directory failed");
            }
        }
    }

    /// Number of inodes known (tests, metrics).
    /// Counters of the data cache (hits, misses, GETs, memory), for `--metrics-addr`.
    pub fn cache_stats(&self) -> crate::cache::CacheStats {
        self.ctx.cache.stats()
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }
}
