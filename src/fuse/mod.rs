//! `FuseAdapter<C>`: the thin `fuser::Filesystem` (0.18) translator in front of `OssFs<C>`.
//! Each method opens one `tracing` span, runs the async operation to completion with
//! `Handle::block_on` on the calling fuser worker thread (the runtime must be multi-threaded;
//! fuser worker threads are plain threads outside any runtime), replies, and counts errors. No
//! filesystem logic lives here; see `fs`.

pub mod session;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use tracing::{Level, debug, error, info, trace, warn};

use crate::client::ObjectClient;
use crate::fs::{FsError, Opened, OssFs, PageFill, SetAttr};

/// Largest write the kernel may send in one request.
pub const MAX_WRITE_BYTES: u32 = 1024 * 1024;
/// Kernel read-ahead we ask for (the kernel caps it at its own maximum).
pub const MAX_READAHEAD_BYTES: u32 = 1024 * 1024;
/// Asynchronous requests (read-ahead) the kernel keeps in flight; fuser's default is 16.
pub const MAX_BACKGROUND_REQUESTS: u16 = 64;

/// Page-cache pushes waiting for the page-fill thread; more are dropped (they only save
/// future requests). Each holds up to a 1 MiB block that the cache may already have evicted,
/// outside `--memory-limit`: 16 bounds that at 16 MiB. With fio's random 4 KiB reads over 2 GiB
/// none was dropped (195,000 IOPS, as with 64).
pub const PAGE_FILL_QUEUE_LEN: usize = 16;

/// See the module documentation.
pub struct FuseAdapter<C: ObjectClient> {
    fs: Arc<OssFs<C>>,
    rt: tokio::runtime::Handle,
    counters: Arc<FuseCounters>,
    /// Set once the session exists ([`FuseAdapter::notifier_slot`]); until then nothing is
    /// pushed into the page cache.
    notifier: Arc<OnceLock<Notifier>>,
    page_fill: SyncSender<PageFill>,
}

/// Kernel requests handled and answered with an error, and page-cache pushes; shared with
/// `--metrics-addr`.
#[derive(Debug, Default)]
pub struct FuseCounters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Bytes pushed into the kernel's page cache around random reads.
    pub page_fill_bytes: AtomicU64,
    /// Pushes dropped because the queue was full or the file had changed.
    pub page_fill_dropped: AtomicU64,
}

/// The page-fill thread: pushes the bytes around random reads into the kernel's page cache
/// (FUSE_NOTIFY_STORE), so the next reads nearby are page-cache hits. It runs apart from the
/// request threads because a push waits for pages the kernel holds locked for a read in
/// progress, which only a request thread can answer. Ends when the adapter is dropped.
fn run_page_fill<C: ObjectClient>(
    fs: Arc<OssFs<C>>,
    notifier: Arc<OnceLock<Notifier>>,
    counters: Arc<FuseCounters>,
    queue: Receiver<PageFill>,
) {
    for fill in queue {
        let Some(notifier) = notifier.get() else {
            counters.page_fill_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut pushed = 0u64;
        let allowed = fs.fill_page_cache(&fill, || {
            for (offset, data) in &fill.ranges {
                match notifier.store(INodeNo(fill.ino), *offset, data) {
                    Ok(()) => pushed += data.len() as u64,
                    // ENOENT: the kernel forgot the inode meanwhile; nothing to fill.
                    Err(e) => {
                        debug!(ino = fill.ino, offset, error = %e, "page cache push refused");
                        break;
                    }
                }
            }
        });
        if allowed {
            counters.page_fill_bytes.fetch_add(pushed, Ordering::Relaxed);
        } else {
            counters.page_fill_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Log an error at its own level (tracing levels are static, hence the match).
fn log_error(op: &str, e: &FsError) {
    let chain = e.chain();
    let errno = e.errno();
    match e.log_level() {
        Level::ERROR => error!(op, errno, "{chain}"),
        Level::WARN => warn!(op, errno, "{chain}"),
        Level::INFO => info!(op, errno, "{chain}"),
        Level::DEBUG => debug!(op, errno, "{chain}"),
        Level::TRACE => trace!(op, errno, "{chain}"),
    }
}

fn fopen_flags(o: &Opened) -> FopenFlags {
    let mut f = FopenFlags::empty();
    if o.keep_cache {
        f |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.direct_io {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    f
}

fn time(t: Option<TimeOrNow>) -> Option<SystemTime> {
    t.map(|t| match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    })
}

impl<C: ObjectClient> FuseAdapter<C> {
    /// `rt` must belong to a multi-thread runtime.
    pub fn new(fs: Arc<OssFs<C>>, rt: tokio::runtime::Handle) -> Self {
        let counters = Arc::new(FuseCounters::default());
        let notifier = Arc::new(OnceLock::new());
        let (page_fill, queue) = std::sync::mpsc::sync_channel(PAGE_FILL_QUEUE_LEN);
        let (thread_fs, thread_notifier, thread_counters) = (fs.clone(), notifier.clone(), counters.clone());
        let spawned = std::thread::Builder::new()
            .name("ossmount-pagefill".into())
            .spawn(move || run_page_fill(thread_fs, thread_notifier, thread_counters, queue));
        if let Err(e) = spawned {
            // Reads still work; they just do not fill the page cache around them.
            warn!(error = %e, "page-fill thread not started");
        }
        FuseAdapter {
            fs,
            rt,
            counters,
            notifier,
            page_fill,
        }
    }

    /// Where the session's `Notifier` goes once the session exists (`Session::notifier`):
    /// from then on the bytes around random reads are pushed into the kernel's page cache.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    /// The request counters, shareable after the adapter moved into the session.
    pub fn counters(&self) -> Arc<FuseCounters> {
        self.counters.clone()
    }

    /// Requests answered with an error so far.
    pub fn error_count(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// Requests handled so far.
    pub fn request_count(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// Run `f` in a span, count it, and turn an error into an errno (logged at its level).
    fn run<T>(
        &self,
        op: &'static str,
        req: &Request,
        ino: u64,
        f: impl Future<Output = Result<T, FsError>>,
    ) -> Result<T, Errno> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("fuse", op, req = req.unique().0, ino, pid = req.pid());
        let _enter = span.enter();
        match self.rt.block_on(f) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                log_error(op, &e);
                Err(Errno::from_i32(e.errno()))
            }
        }
    }
}

/// The data-path settings ossmount asks of the kernel at init: [`MAX_WRITE_BYTES`],
/// [`MAX_READAHEAD_BYTES`] and [`MAX_BACKGROUND_REQUESTS`], each lowered to the kernel's
/// maximum where it offers less. Public so that `examples/nullfs.rs` measures the FUSE ceiling
/// with exactly these.
pub fn request_data_path_settings(config: &mut KernelConfig) {
    if let Err(max) = config.set_max_write(MAX_WRITE_BYTES) {
        let _ = config.set_max_write(max);
    }
    if let Err(max) = config.set_max_readahead(MAX_READAHEAD_BYTES) {
        let _ = config.set_max_readahead(max);
    }
    if config.set_max_background(MAX_BACKGROUND_REQUESTS).is_ok() {
        let _ = config.set_congestion_threshold(MAX_BACKGROUND_REQUESTS * 3 / 4);
    }
}

impl<C: ObjectClient> Filesystem for FuseAdapter<C> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        request_data_path_settings(config);
        // Directory listings with attributes: `ls -l` needs no lookup per entry.
        let wanted = InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO;
        if config.add_capabilities(wanted).is_err() {
            debug!("kernel lacks readdirplus");
        }
        // Lookups and readdirs of one directory may run concurrently (`find`, parallel builds);
        // the inode table is safe for that.
        if config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS).is_err() {
            debug!("kernel lacks parallel directory operations");
        }
        Ok(())
    }

    fn destroy(&mut self) {
        // destroy may run on a thread inside the runtime (when a session is dropped there):
        // block on a fresh thread so Handle::block_on never panics.
        let fs = self.fs.clone();
        let rt = self.rt.clone();
        let joined = std::thread::Builder::new()
            .name("ossmount-shutdown".to_string())
            .spawn(move || rt.block_on(fs.shutdown()))
            .map(|h| h.join());
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(_)) => error!("filesystem shutdown panicked"),
            Err(e) => error!(error = %e, "could not start the shutdown thread"),
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.run("lookup", req, parent.0, self.fs.lookup(parent.0, name)) {
            Ok(e) => reply.entry(&e.ttl, &e.attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.run("getattr", req, ino.0, self.fs.getattr(ino.0, fh.map(|f| f.0))) {
            Ok(a) => reply.attr(&a.ttl, &a.attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: time(atime),
            mtime: time(mtime),
            fh: fh.map(|f| f.0),
        };
        match self.run("setattr", req, ino.0, self.fs.setattr(ino.0, set)) {
            Ok(a) => reply.attr(&a.ttl, &a.attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.run("readlink", req, ino.0, self.fs.readlink(ino.0)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let (uid, gid) = (req.uid(), req.gid());
        match self.run(
            "mknod",
            req,
            parent.0,
            self.fs.mknod(parent.0, name, mode, umask, rdev, uid, gid),
        ) {
            Ok(e) => reply.entry(&e.ttl, &e.attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let (uid, gid) = (req.uid(), req.gid());
        match self.run(
            "mkdir",
            req,
            parent.0,
            self.fs.mkdir(parent.0, name, mode, umask, uid, gid),
        ) {
            Ok(e) => reply.entry(&e.ttl, &e.attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.run("unlink", req, parent.0, self.fs.unlink(parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.run("rmdir", req, parent.0, self.fs.rmdir(parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let (uid, gid) = (req.uid(), req.gid());
        match self.run(
            "symlink",
            req,
            parent.0,
            self.fs.symlink(parent.0, link_name, target, uid, gid),
        ) {
            Ok(e) => reply.entry(&e.ttl, &e.attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.run(
            "rename",
            req,
            parent.0,
            self.fs.rename(parent.0, name, newparent.0, newname, flags.bits()),
        ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        match self.run("link", req, ino.0, self.fs.link(ino.0, newparent.0, newname)) {
            Ok(e) => reply.entry(&e.ttl, &e.attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.run("open", req, ino.0, self.fs.open(ino.0, flags.0)) {
            Ok(o) => reply.opened(FileHandle(o.fh), fopen_flags(&o)),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.run("read", req, ino.0, self.fs.read_for_kernel(ino.0, fh.0, offset, size)) {
            Ok(out) => {
                reply.data(&out.data);
                if let Some(fill) = out.page_fill
                    && let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.page_fill.try_send(fill)
                {
                    self.counters.page_fill_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.run("write", req, ino.0, self.fs.write(ino.0, fh.0, offset, data)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        match self.run("flush", req, ino.0, self.fs.flush(ino.0, fh.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.run("release", req, ino.0, self.fs.release(ino.0, fh.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(&self, req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        match self.run("fsync", req, ino.0, self.fs.fsync(ino.0, fh.0, datasync)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.run("opendir", req, ino.0, self.fs.opendir(ino.0)) {
            Ok(o) => reply.opened(FileHandle(o.fh), fopen_flags(&o)),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.run("readdir", req, ino.0, self.fs.readdir(ino.0, fh.0, offset, false)) {
            Ok(entries) => {
                for e in entries {
                    if reply.add(INodeNo(e.ino), e.offset, e.kind, &e.name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(&self, req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        match self.run("readdirplus", req, ino.0, self.fs.readdir(ino.0, fh.0, offset, true)) {
            Ok(entries) => {
                for e in entries {
                    let Some(entry) = &e.attr else { continue };
                    if reply.add(
                        INodeNo(e.ino),
                        e.offset,
                        &e.name,
                        &entry.ttl,
                        &entry.attr,
                        Generation(0),
                    ) {
                        break;
                    }
                    // The kernel takes a reference for every entry except "." and "..".
                    if e.name != "." && e.name != ".." {
                        self.fs.readdirplus_added(e.ino);
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(&self, req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        match self.run("releasedir", req, ino.0, self.fs.releasedir(ino.0, fh.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Directory changes are made in OSS synchronously by each operation.
        reply.ok()
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.run("statfs", req, ino.0, self.fs.statfs()) {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let (uid, gid) = (req.uid(), req.gid());
        match self.run("access", req, ino.0, self.fs.access(ino.0, mask.bits(), uid, gid)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (uid, gid) = (req.uid(), req.gid());
        match self.run(
            "create",
            req,
            parent.0,
            self.fs.create(parent.0, name, mode, umask, flags, uid, gid),
        ) {
            Ok((e, o)) => reply.created(&e.ttl, &e.attr, Generation(0), FileHandle(o.fh), fopen_flags(&o)),
            Err(e) => reply.error(e),
        }
    }
}
