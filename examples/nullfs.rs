//! A FUSE filesystem that does nothing: `/zero-N` (N = 0..4) are read-only files of SIZE_MIB
//! MiB, answered from a ring of [`DATA_RING_BYTES`] of data in memory, with the same kernel
//! settings as ossmount (max_write, read-ahead in FUSE and in the kernel, worker threads,
//! clone_fd, page cache kept).
//! (Not zeros from a static array: those pages would all be the kernel's one zero page, always
//! in the CPU caches, and the kernel pins them for free: that measures a ceiling no real data
//! reaches.) `scripts/bench.py` reads through it
//! to measure the ceiling of any FUSE filesystem on the machine, without HTTP or caching: the
//! kernel's request round trips and its two copies (reply into the page cache, page cache
//! into the reader).
//!
//! Usage: `nullfs MOUNTPOINT [SIZE_MIB]`; runs until unmounted (`fusermount3 -u MOUNTPOINT`).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};

/// Files served, `/zero-0` to `/zero-{FILES-1}`.
const FILES: u64 = 4;
/// Largest read answered at once; the kernel never asks for more than max_pages (1 MiB).
const MAX_READ_BYTES: usize = 1024 * 1024;
/// Bytes the reads cycle through: more than the CPU caches hold, like a real cache's blocks.
const DATA_RING_BYTES: usize = 64 * 1024 * 1024;
/// Attribute and entry validity: long, nothing ever changes.
const TTL: Duration = Duration::from_secs(3600);

struct NullFs {
    size: u64,
    data: Vec<u8>,
}

impl NullFs {
    fn attr(&self, ino: u64) -> FileAttr {
        let dir = ino == 1;
        FileAttr {
            ino: INodeNo(ino),
            size: if dir { 0 } else { self.size },
            blocks: if dir { 0 } else { self.size.div_ceil(512) },
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir { 0o755 } else { 0o444 },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        ossmount::fuse::request_data_path_settings(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let n = name
            .to_str()
            .and_then(|n| n.strip_prefix("zero-"))
            .and_then(|n| n.parse::<u64>().ok());
        match n {
            Some(n) if parent.0 == 1 && n < FILES => reply.entry(&TTL, &self.attr(n + 2), Generation(0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino.0 == 1 || (2..2 + FILES).contains(&ino.0) {
            reply.attr(&TTL, &self.attr(ino.0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let len = (size as usize)
            .min(MAX_READ_BYTES)
            .min(self.size.saturating_sub(offset) as usize);
        let at = (offset % DATA_RING_BYTES as u64) as usize;
        reply.data(&self.data[at..at + len]);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino.0 != 1 {
            return reply.error(Errno::ENOTDIR);
        }
        for i in offset..FILES {
            if reply.add(INodeNo(i + 2), i + 1, FileType::RegularFile, format!("zero-{i}")) {
                break;
            }
        }
        reply.ok();
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(mountpoint) = args.next().map(PathBuf::from) else {
        eprintln!("usage: nullfs MOUNTPOINT [SIZE_MIB]");
        std::process::exit(2);
    };
    let size_mib: u64 = match args.next().map(|s| s.to_string_lossy().parse()) {
        None => 2048,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("nullfs: SIZE_MIB must be a number");
            std::process::exit(2);
        }
    };
    let mut config = Config::default();
    config.mount_options = vec![MountOption::FSName("nullfs".into()), MountOption::RO];
    config.n_threads = Some(ossmount::config::DEFAULT_FUSE_THREADS);
    config.clone_fd = true;
    // One read's worth past the ring, so a read starting anywhere in the ring is one slice.
    let data: Vec<u8> = (0..DATA_RING_BYTES + MAX_READ_BYTES).map(|i| (i % 251) as u8).collect();
    let fs = NullFs {
        size: size_mib * 1024 * 1024,
        data,
    };
    // Before mounting: afterwards, resolving the path would ask this not yet serving filesystem.
    let mountpoint = mountpoint.canonicalize()?;
    let session = fuser::Session::new(fs, &mountpoint, &config)?;
    // Mounted: the kernel read-ahead ossmount sets for itself (as root).
    ossmount::mount::raise_kernel_read_ahead(&mountpoint);
    session.run()
}
