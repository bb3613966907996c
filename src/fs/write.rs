//! The content of a file open for writing, and how it reaches OSS.
//!
//! One `FileWriter` per inode with open write handles (every handle of the inode shares it, so
//! all of them read and write the same bytes). Its state:
//!
//! - `Clean`: the content is the object version `base` (or empty when there is none).
//! - `Empty`: the content is empty (a new file, or truncated to 0); uploading it is one
//!   PutObject of zero bytes.
//! - `Streaming`: writes so far were sequential from offset 0 on empty content. Bytes collect in
//!   a part buffer; each full part (`part_size`) is uploaded in the background as a multipart
//!   part, at most `max_parts_in_flight` at once per file and `upload_permits` over the mount (a
//!   write waits when a limit is reached: backpressure, not unbounded buffering). Writes past the end fill the gap
//!   with zeros; a rewrite that falls inside the part buffer is patched in place. Closing
//!   completes the upload, or sends a single PutObject when the file never filled a part.
//! - `Staged`: everything else (overwrite of existing bytes, appends to existing objects,
//!   truncation to a size other than 0, random writes, writes after a read of streamed data)
//!   works on a staging file holding the whole new content (the existing object is downloaded
//!   into it on the first modification). Flush uploads the file: one PutObject up to a part,
//!   otherwise a multipart upload with parts read from the file, `max_concurrency` at a time.
//!
//! An upload that fails is aborted (nothing partial becomes visible) and the caller gets the
//! errno. A failed streaming upload cannot be retried (the parts are gone): the writer turns
//! `Failed` and every later write/flush on it fails. A failed staged upload keeps the staging
//! file and is retried by the next flush/fsync/close.
//!
//! Uploads report the new object version through `take_uploaded`, which the filesystem drains
//! after every call to update the inode.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::cache::{DataCache, DataReader};
use crate::client::buffers::{BufferPool, PoolBuf};
use crate::client::{
    ClientError, CompleteMultipartUploadParams, CopyObjectParams, CreateMultipartUploadParams, GetObjectParams,
    MAX_PARTS, MetadataDirective, ObjectClient, PutObjectParams, UploadPartParams, UploadedPart,
};
use crate::fs::error::FsError;
use crate::fs::inode::MetaAttrs;
use crate::object::{ETag, ObjectId, UserMeta};

/// Shared pieces a writer needs.
pub struct WriteCtx<C: ObjectClient> {
    pub client: Arc<C>,
    pub cache: Arc<DataCache<C>>,
    pub part_size_bytes: u64,
    pub max_parts_in_flight: usize,
    pub max_concurrency: usize,
    pub staging_dir: PathBuf,
    /// Parts in flight over the whole mount (each holds one part buffer): bounds upload memory
    /// whatever the number of files being written.
    pub upload_permits: Arc<tokio::sync::Semaphore>,
}

/// Start uploading one part once a mount-wide upload slot is free (waiting is the backpressure).
async fn spawn_part<C: ObjectClient>(
    ctx: &WriteCtx<C>,
    params: UploadPartParams,
) -> Result<JoinHandle<Result<UploadedPart, ClientError>>, FsError> {
    let permit = ctx
        .upload_permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| FsError::with_source(libc::EIO, "upload slots closed", e))?;
    let client = ctx.client.clone();
    Ok(tokio::spawn(async move {
        let r = client.upload_part(params).await;
        drop(permit);
        r
    }))
}

/// An object version a writer starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    pub etag: ETag,
    pub size: u64,
}

/// What an upload produced.
#[derive(Clone, Debug)]
pub struct Uploaded {
    pub etag: ETag,
    pub size: u64,
    pub user_meta: UserMeta,
    pub time: SystemTime,
}

/// A streaming upload's bytes not sent yet. Small files stay in a heap buffer; from
/// [`SMALL_PENDING_BYTES`] on they move into a pooled buffer of one part (`client::buffers`),
/// which is filled to exactly `part_size` and sent without being copied or regrown.
#[derive(Default)]
struct Pending {
    heap: BytesMut,
    part: Option<PoolBuf>,
}

impl Pending {
    fn len(&self) -> usize {
        self.part.as_ref().map_or(self.heap.len(), PoolBuf::len)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn as_slice(&self) -> &[u8] {
        self.part.as_ref().map_or(&self.heap[..], PoolBuf::as_slice)
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self.part.as_mut() {
            Some(p) => p.as_mut_slice(),
            None => &mut self.heap[..],
        }
    }

    /// Append as much of `data` as fits below `part_size`; returns how much was taken.
    fn append(&mut self, data: &[u8], part_size: usize) -> usize {
        if self.part.is_none() {
            if self.heap.len() + data.len() < SMALL_PENDING_BYTES.min(part_size) {
                self.heap.extend_from_slice(data);
                return data.len();
            }
            let mut part = BufferPool::global().take(part_size);
            part.append(&self.heap);
            self.heap = BytesMut::new();
            self.part = Some(part);
        }
        match self.part.as_mut() {
            Some(p) => p.append(&data[..data.len().min(part_size.saturating_sub(p.len()))]),
            None => 0,
        }
    }

    /// Everything pending, as the body of a part or object.
    fn take(&mut self) -> Bytes {
        match self.part.take() {
            Some(p) => p.freeze(),
            None => std::mem::take(&mut self.heap).freeze(),
        }
    }
}

/// Pending bytes below this stay in a growable heap buffer (most files are small); beyond it a
/// part-size buffer is taken from the pool.
pub const SMALL_PENDING_BYTES: usize = 1024 * 1024;

struct Streaming {
    key: String,
    upload_id: Option<String>,
    buf: Pending,
    size: u64,
    next_part: u32,
    in_flight: VecDeque<JoinHandle<Result<UploadedPart, ClientError>>>,
    parts: Vec<UploadedPart>,
    meta_sent: Option<UserMeta>,
}

struct Staged {
    file: Arc<std::fs::File>,
    size: u64,
}

enum WriteState {
    Clean,
    Empty,
    Streaming(Box<Streaming>),
    Staged(Staged),
    Failed(i32),
}

/// See the module documentation.
pub struct FileWriter<C: ObjectClient> {
    state: WriteState,
    dirty: bool,
    base: Option<ObjectVersion>,
    /// POSIX attributes to store with the next upload.
    pub meta: MetaAttrs,
    /// Other user metadata of the base object, preserved across rewrites.
    pub other_meta: UserMeta,
    /// `meta.mtime` was set explicitly (utimens) after the last write.
    pub explicit_mtime: bool,
    /// When the content last changed (write, truncate, or creation): the mtime uploaded unless
    /// one was set explicitly, so the mtime shown while writing is the one stored.
    last_change: Option<SystemTime>,
    reader: Option<(ETag, Arc<DataReader<C>>)>,
    uploaded: Option<Uploaded>,
}

fn eio(message: impl Into<String>) -> FsError {
    FsError::new(libc::EIO, message)
}

impl<C: ObjectClient> FileWriter<C> {
    /// A writer whose content is the object `base` (None: an empty file that exists in OSS or
    /// is about to; `dirty` says whether it must be uploaded even if never written).
    pub fn new(base: Option<ObjectVersion>, meta: MetaAttrs, other_meta: UserMeta, dirty: bool) -> Self {
        let state = match &base {
            Some(b) if b.size > 0 => WriteState::Clean,
            _ => WriteState::Empty,
        };
        let last_change = if dirty { meta.mtime } else { None };
        FileWriter {
            state,
            dirty,
            base,
            meta,
            last_change,
            other_meta,
            explicit_mtime: false,
            reader: None,
            uploaded: None,
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The current content length.
    pub fn size(&self) -> u64 {
        match &self.state {
            WriteState::Clean => self.base.as_ref().map_or(0, |b| b.size),
            WriteState::Empty | WriteState::Failed(_) => 0,
            WriteState::Streaming(s) => s.size,
            WriteState::Staged(s) => s.size,
        }
    }

    /// The base object was copied or its metadata rewritten: same bytes, new ETag (and key,
    /// after a rename).
    pub fn rebase(&mut self, key: Option<String>, etag: ETag) {
        if let Some(base) = &mut self.base {
            if let Some(key) = key {
                base.key = key;
            }
            base.etag = etag;
            self.reader = None;
        }
    }

    /// The last upload's result, once.
    pub fn take_uploaded(&mut self) -> Option<Uploaded> {
        self.uploaded.take()
    }

    fn check_failed(&self) -> Result<(), FsError> {
        match self.state {
            WriteState::Failed(errno) => Err(FsError::new(
                errno,
                "an earlier upload of this file failed; its new content is lost",
            )),
            _ => Ok(()),
        }
    }

    /// Write `data` at `offset` of the file stored at `key`.
    pub async fn write(&mut self, ctx: &WriteCtx<C>, key: &str, offset: u64, data: &[u8]) -> Result<(), FsError> {
        self.check_failed()?;
        if data.is_empty() {
            return Ok(());
        }
        if let WriteState::Clean = self.state {
            if self.base.as_ref().is_none_or(|b| b.size == 0) {
                self.state = WriteState::Empty;
            }
        }
        match &mut self.state {
            WriteState::Empty if offset == 0 => {
                self.state = WriteState::Streaming(Box::new(Streaming {
                    key: key.to_string(),
                    upload_id: None,
                    buf: Pending::default(),
                    size: 0,
                    next_part: 1,
                    in_flight: VecDeque::new(),
                    parts: Vec::new(),
                    meta_sent: None,
                }));
                self.stream_append(ctx, data).await?;
            }
            WriteState::Streaming(s) if offset >= s.size => {
                if offset > s.size {
                    let gap = offset - s.size;
                    self.stream_zeros(ctx, gap).await?;
                }
                self.stream_append(ctx, data).await?;
            }
            WriteState::Streaming(s)
                if offset >= s.size - s.buf.len() as u64 && offset + data.len() as u64 <= s.size =>
            {
                // A rewrite within the bytes not sent yet: patch the buffer.
                let start = (offset - (s.size - s.buf.len() as u64)) as usize;
                s.buf.as_mut_slice()[start..start + data.len()].copy_from_slice(data);
            }
            _ => {
                self.ensure_staged(ctx, key).await?;
                let WriteState::Staged(staged) = &mut self.state else {
                    return Err(eio("internal: staging file missing"));
                };
                staged.file.write_all_at(data, offset)?;
                staged.size = staged.size.max(offset + data.len() as u64);
            }
        }
        self.dirty = true;
        self.explicit_mtime = false;
        self.last_change = Some(SystemTime::now());
        Ok(())
    }

    async fn stream_zeros(&mut self, ctx: &WriteCtx<C>, mut len: u64) -> Result<(), FsError> {
        let chunk = vec![0u8; (ctx.part_size_bytes.min(len)) as usize];
        while len > 0 {
            let n = len.min(chunk.len() as u64) as usize;
            self.stream_append(ctx, &chunk[..n]).await?;
            len -= n as u64;
        }
        Ok(())
    }

    async fn stream_append(&mut self, ctx: &WriteCtx<C>, data: &[u8]) -> Result<(), FsError> {
        let meta = self.user_meta_now();
        let WriteState::Streaming(s) = &mut self.state else {
            return Err(eio("internal: not streaming"));
        };
        let part_size = ctx.part_size_bytes as usize;
        let mut rest = data;
        let mut result = Ok(());
        loop {
            let taken = s.buf.append(rest, part_size);
            s.size += taken as u64;
            rest = &rest[taken..];
            if s.buf.len() < part_size {
                break;
            }
            if s.next_part > MAX_PARTS {
                result = Err(FsError::new(
                    libc::EFBIG,
                    format!("file exceeds {MAX_PARTS} parts of {part_size} bytes"),
                ));
                break;
            }
            let upload_id = match &s.upload_id {
                Some(id) => id.clone(),
                None => {
                    let params = CreateMultipartUploadParams::new(s.key.clone()).user_meta(meta.clone());
                    match ctx.client.create_multipart_upload(params).await {
                        Ok(id) => {
                            s.upload_id = Some(id.clone());
                            s.meta_sent = Some(meta.clone());
                            id
                        }
                        Err(e) => {
                            result = Err(FsError::from(e).context("starting multipart upload"));
                            break;
                        }
                    }
                }
            };
            let body = s.buf.take();
            let params = UploadPartParams {
                key: s.key.clone(),
                upload_id,
                part_number: s.next_part,
                body,
            };
            s.next_part += 1;
            match spawn_part(ctx, params).await {
                Ok(task) => s.in_flight.push_back(task),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            while s.in_flight.len() > ctx.max_parts_in_flight.max(1) {
                if let Err(e) = Self::await_oldest(s).await {
                    result = Err(e);
                    break;
                }
            }
            if result.is_err() {
                break;
            }
        }
        if let Err(e) = result {
            self.fail_streaming(ctx, &e).await;
            return Err(e);
        }
        Ok(())
    }

    async fn await_oldest(s: &mut Streaming) -> Result<(), FsError> {
        let Some(task) = s.in_flight.pop_front() else {
            return Ok(());
        };
        match task.await {
            Ok(Ok(part)) => {
                s.parts.push(part);
                Ok(())
            }
            Ok(Err(e)) => Err(FsError::from(e).context("uploading part")),
            Err(join) => Err(FsError::with_source(libc::EIO, "upload task failed", join)),
        }
    }

    /// Abort the streaming upload after `error`; the writer becomes `Failed`.
    async fn fail_streaming(&mut self, ctx: &WriteCtx<C>, error: &FsError) {
        if let WriteState::Streaming(s) = &mut self.state {
            for task in s.in_flight.drain(..) {
                task.abort();
            }
            if let Some(id) = s.upload_id.take() {
                if let Err(e) = ctx.client.abort_multipart_upload(&s.key, &id).await {
                    warn!(key = %s.key, error = %e, "aborting multipart upload failed");
                }
            }
        }
        let errno = if error.errno() == libc::EFBIG {
            libc::EFBIG
        } else {
            libc::EIO
        };
        self.state = WriteState::Failed(errno);
        self.dirty = false;
    }

    /// The user metadata an upload made now carries.
    fn user_meta_now(&self) -> UserMeta {
        let mut meta = self.other_meta.clone();
        let mut attrs = self.meta.clone();
        if !self.explicit_mtime {
            attrs.mtime = Some(self.last_change.unwrap_or_else(SystemTime::now));
        }
        attrs.apply_to(&mut meta);
        meta
    }

    /// The mtime the next upload will store, unless it was set explicitly: the time of the last
    /// change of the content.
    pub fn automatic_mtime(&self) -> Option<SystemTime> {
        if self.explicit_mtime || !self.dirty {
            return None;
        }
        self.last_change
    }

    /// Set the length of the content.
    pub async fn truncate(&mut self, ctx: &WriteCtx<C>, key: &str, size: u64) -> Result<(), FsError> {
        self.check_failed()?;
        if size == self.size() && !matches!(self.state, WriteState::Empty) {
            self.dirty = true;
            self.explicit_mtime = false;
            self.last_change = Some(SystemTime::now());
            return Ok(());
        }
        if size == 0 {
            self.discard(ctx).await;
            self.state = WriteState::Empty;
        } else {
            match &self.state {
                WriteState::Streaming(s) if size > s.size => {
                    let gap = size - s.size;
                    self.stream_zeros(ctx, gap).await?;
                }
                _ => {
                    self.ensure_staged(ctx, key).await?;
                    if let WriteState::Staged(staged) = &mut self.state {
                        staged.file.set_len(size)?;
                        staged.size = size;
                    }
                }
            }
        }
        self.dirty = true;
        self.explicit_mtime = false;
        self.last_change = Some(SystemTime::now());
        Ok(())
    }

    /// Move the content into a staging file (downloading the base object when needed).
    async fn ensure_staged(&mut self, ctx: &WriteCtx<C>, key: &str) -> Result<(), FsError> {
        match &mut self.state {
            WriteState::Staged(_) => return Ok(()),
            WriteState::Failed(errno) => return Err(FsError::new(*errno, "earlier upload failed")),
            WriteState::Empty => {
                let file = tempfile::tempfile_in(&ctx.staging_dir)?;
                self.state = WriteState::Staged(Staged {
                    file: Arc::new(file),
                    size: 0,
                });
            }
            WriteState::Streaming(s) if s.upload_id.is_none() => {
                // Nothing sent yet: the buffer is the whole content.
                let file = tempfile::tempfile_in(&ctx.staging_dir)?;
                file.write_all_at(s.buf.as_slice(), 0)?;
                let size = s.size;
                self.state = WriteState::Staged(Staged {
                    file: Arc::new(file),
                    size,
                });
            }
            WriteState::Streaming(_) => {
                // Parts are already in OSS: finish the object, then stage it like any other.
                debug!(
                    key,
                    "non-sequential write on a streaming upload: completing it and staging"
                );
                self.finish_streaming(ctx).await?;
                return Box::pin(self.ensure_staged(ctx, key)).await;
            }
            WriteState::Clean => {
                let file = tempfile::tempfile_in(&ctx.staging_dir)?;
                let file = Arc::new(file);
                let mut size = 0;
                if let Some(base) = self.base.clone() {
                    download_into(ctx, &base, &file).await?;
                    size = base.size;
                }
                self.state = WriteState::Staged(Staged { file, size });
            }
        }
        Ok(())
    }

    /// Read from the content.
    pub async fn read(&mut self, ctx: &WriteCtx<C>, offset: u64, len: usize) -> Result<Bytes, FsError> {
        self.check_failed()?;
        if matches!(self.state, WriteState::Streaming(_)) {
            // Parts already sent are not kept: finish the object so it can be read back.
            self.finish_streaming(ctx).await?;
        }
        match &self.state {
            WriteState::Empty | WriteState::Failed(_) | WriteState::Streaming(_) => Ok(Bytes::new()),
            WriteState::Staged(s) => {
                if offset >= s.size {
                    return Ok(Bytes::new());
                }
                let n = (len as u64).min(s.size - offset) as usize;
                let mut buf = vec![0u8; n];
                let mut done = 0;
                while done < n {
                    let got = s.file.read_at(&mut buf[done..], offset + done as u64)?;
                    if got == 0 {
                        break; // sparse tail beyond the file's data: zeros
                    }
                    done += got;
                }
                Ok(Bytes::from(buf))
            }
            WriteState::Clean => {
                let Some(base) = self.base.clone() else {
                    return Ok(Bytes::new());
                };
                let reader = match &self.reader {
                    Some((etag, r)) if *etag == base.etag => r.clone(),
                    _ => {
                        let r = Arc::new(ctx.cache.open(ObjectId::new(&base.key, base.etag.clone()), base.size));
                        self.reader = Some((base.etag.clone(), r.clone()));
                        r
                    }
                };
                Ok(reader.read(offset, len).await?)
            }
        }
    }

    /// Complete a streaming upload; the state becomes `Clean` on the new version.
    async fn finish_streaming(&mut self, ctx: &WriteCtx<C>) -> Result<(), FsError> {
        let meta_now = self.user_meta_now();
        let WriteState::Streaming(s) = &mut self.state else {
            return Ok(());
        };
        let key = s.key.clone();
        let result = match s.upload_id.clone() {
            None => {
                let body = s.buf.take();
                let size = body.len() as u64;
                ctx.client
                    .put_object(PutObjectParams::new(key.clone(), body).user_meta(meta_now.clone()))
                    .await
                    .map(|r| (r.etag, size, meta_now.clone()))
                    .map_err(|e| FsError::from(e).context(format!("uploading {key}")))
            }
            Some(upload_id) => Self::complete_streaming(ctx, s, &upload_id)
                .await
                .map(|etag| (etag, s.size, s.meta_sent.clone().unwrap_or_default())),
        };
        let (mut etag, size, mut sent_meta) = match result {
            Ok(v) => v,
            Err(e) => {
                self.fail_streaming(ctx, &e).await;
                return Err(e);
            }
        };
        if sent_meta != meta_now && self.explicit_mtime_or_attrs_changed(&sent_meta, &meta_now) {
            // chmod/chown/utimens arrived after the upload started: store them now.
            match set_user_meta(ctx, &key, &etag, meta_now.clone()).await {
                Ok(new_etag) => {
                    etag = new_etag;
                    sent_meta = meta_now;
                }
                Err(e) => {
                    self.base = Some(ObjectVersion {
                        key: key.clone(),
                        etag: etag.clone(),
                        size,
                    });
                    self.state = WriteState::Clean;
                    self.dirty = false;
                    return Err(e.context(format!("storing attributes of {key}")));
                }
            }
        }
        self.base = Some(ObjectVersion {
            key,
            etag: etag.clone(),
            size,
        });
        self.state = WriteState::Clean;
        self.dirty = false;
        self.uploaded = Some(Uploaded {
            etag,
            size,
            user_meta: sent_meta,
            time: SystemTime::now(),
        });
        Ok(())
    }

    /// Whether the attributes (not just the automatic mtime) differ between two metadata maps.
    fn explicit_mtime_or_attrs_changed(&self, sent: &UserMeta, now: &UserMeta) -> bool {
        let strip = |m: &UserMeta| {
            let mut m = m.clone();
            if !self.explicit_mtime {
                m.remove(crate::fs::inode::META_MTIME);
                m.remove(crate::fs::inode::META_MTIME_NSEC);
            }
            m
        };
        strip(sent) != strip(now)
    }

    async fn complete_streaming(ctx: &WriteCtx<C>, s: &mut Streaming, upload_id: &str) -> Result<ETag, FsError> {
        if !s.buf.is_empty() {
            if s.next_part > MAX_PARTS {
                return Err(FsError::new(libc::EFBIG, format!("file exceeds {MAX_PARTS} parts")));
            }
            let body = s.buf.take();
            let params = UploadPartParams {
                key: s.key.clone(),
                upload_id: upload_id.to_string(),
                part_number: s.next_part,
                body,
            };
            s.next_part += 1;
            let task = spawn_part(ctx, params).await?;
            s.in_flight.push_back(task);
        }
        while !s.in_flight.is_empty() {
            Self::await_oldest(s).await?;
        }
        let mut parts = s.parts.clone();
        parts.sort_by_key(|p| p.part_number);
        let params = CompleteMultipartUploadParams {
            key: s.key.clone(),
            upload_id: upload_id.to_string(),
            parts,
            forbid_overwrite: false,
        };
        let result = ctx
            .client
            .complete_multipart_upload(params)
            .await
            .map_err(|e| FsError::from(e).context(format!("completing upload of {}", s.key)))?;
        s.upload_id = None;
        Ok(result.etag)
    }

    /// Upload the content to `key` if it changed. On success the object is complete in OSS with
    /// a verified CRC-64.
    pub async fn flush(&mut self, ctx: &WriteCtx<C>, key: &str) -> Result<(), FsError> {
        self.check_failed()?;
        if !self.dirty {
            return Ok(());
        }
        match &self.state {
            WriteState::Failed(_) | WriteState::Clean => {
                self.dirty = false;
                Ok(())
            }
            WriteState::Streaming(_) => self.finish_streaming(ctx).await,
            WriteState::Empty => {
                let meta = self.user_meta_now();
                let r = ctx
                    .client
                    .put_object(PutObjectParams::new(key, Bytes::new()).user_meta(meta.clone()))
                    .await
                    .map_err(|e| FsError::from(e).context(format!("uploading {key}")))?;
                self.base = Some(ObjectVersion {
                    key: key.to_string(),
                    etag: r.etag.clone(),
                    size: 0,
                });
                self.dirty = false;
                self.uploaded = Some(Uploaded {
                    etag: r.etag,
                    size: 0,
                    user_meta: meta,
                    time: SystemTime::now(),
                });
                Ok(())
            }
            WriteState::Staged(s) => {
                let meta = self.user_meta_now();
                let file = s.file.clone();
                let size = s.size;
                let etag = upload_file(ctx, key, file, size, meta.clone()).await?;
                self.base = Some(ObjectVersion {
                    key: key.to_string(),
                    etag: etag.clone(),
                    size,
                });
                self.reader = None;
                self.dirty = false;
                self.uploaded = Some(Uploaded {
                    etag,
                    size,
                    user_meta: meta,
                    time: SystemTime::now(),
                });
                Ok(())
            }
        }
    }

    /// The file lost its name (unlink, renamed over) while open: nothing may be uploaded any
    /// more. Buffered content moves to a staging file so the open handles keep working; a
    /// streaming upload that already sent parts is aborted and its content is lost (later
    /// reads and writes fail with EIO rather than resurrect the name).
    pub async fn detach(&mut self, ctx: &WriteCtx<C>) {
        let sent = matches!(&self.state, WriteState::Streaming(s) if s.upload_id.is_some());
        if sent {
            let e = FsError::new(libc::EIO, "file unlinked while its upload was streaming");
            self.fail_streaming(ctx, &e).await;
        } else if matches!(self.state, WriteState::Streaming(_)) {
            if let Err(e) = self.ensure_staged(ctx, "").await {
                warn!(error = %e.chain(), "keeping the content of an unlinked file failed");
                self.state = WriteState::Failed(libc::EIO);
            }
        }
        self.dirty = false;
    }

    /// Drop unsent content (the file was unlinked, or is being truncated to 0): abort a
    /// multipart upload in progress.
    pub async fn discard(&mut self, ctx: &WriteCtx<C>) {
        if let WriteState::Streaming(s) = &mut self.state {
            for task in s.in_flight.drain(..) {
                task.abort();
            }
            if let Some(id) = s.upload_id.take() {
                if let Err(e) = ctx.client.abort_multipart_upload(&s.key, &id).await {
                    warn!(key = %s.key, error = %e, "aborting multipart upload failed");
                }
            }
        }
        if !matches!(self.state, WriteState::Failed(_)) {
            self.state = WriteState::Empty;
        }
        self.dirty = false;
    }
}

/// Download `base` into `file` (ranged GETs of a part each, a few at a time, pinned to the ETag).
async fn download_into<C: ObjectClient>(
    ctx: &WriteCtx<C>,
    base: &ObjectVersion,
    file: &Arc<std::fs::File>,
) -> Result<(), FsError> {
    let part = ctx.part_size_bytes.max(1);
    let ranges: Vec<std::ops::Range<u64>> = (0..base.size.div_ceil(part))
        .map(|i| i * part..((i + 1) * part).min(base.size))
        .collect();
    let client = ctx.client.clone();
    let mut stream = futures::stream::iter(ranges)
        .map(|r| {
            let client = client.clone();
            let params = GetObjectParams::new(base.key.clone())
                .range(r.clone())
                .if_match(base.etag.clone());
            async move { client.get_object(params).await.map(|res| (r.start, res.data)) }
        })
        .buffered(ctx.max_concurrency.clamp(1, DOWNLOAD_PARALLEL_MAX));
    while let Some(item) = stream.next().await {
        let (offset, data) =
            item.map_err(|e| FsError::from(e).context(format!("downloading {} for staging", base.key)))?;
        file.write_all_at(&data, offset)?;
    }
    file.set_len(base.size)?;
    Ok(())
}

/// Most ranged GETs in flight while downloading an object into a staging file.
pub const DOWNLOAD_PARALLEL_MAX: usize = 8;

/// Upload `size` bytes of `file` to `key`; returns the new ETag. Aborts a failed multipart upload.
async fn upload_file<C: ObjectClient>(
    ctx: &WriteCtx<C>,
    key: &str,
    file: Arc<std::fs::File>,
    size: u64,
    meta: UserMeta,
) -> Result<ETag, FsError> {
    let read_chunk = |file: Arc<std::fs::File>, offset: u64, len: u64| async move {
        tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
            let mut buf = vec![0u8; len as usize];
            let mut done = 0usize;
            while done < buf.len() {
                let n = file.read_at(&mut buf[done..], offset + done as u64)?;
                if n == 0 {
                    break; // sparse tail: zeros
                }
                done += n;
            }
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(|e| FsError::with_source(libc::EIO, "staging read task failed", e))?
        .map_err(FsError::from)
    };
    if size <= ctx.part_size_bytes {
        let body = read_chunk(file, 0, size).await?;
        let r = ctx
            .client
            .put_object(PutObjectParams::new(key, body).user_meta(meta))
            .await
            .map_err(|e| FsError::from(e).context(format!("uploading {key}")))?;
        return Ok(r.etag);
    }
    let part = ctx.part_size_bytes.max(size.div_ceil(u64::from(MAX_PARTS)));
    let upload_id = ctx
        .client
        .create_multipart_upload(CreateMultipartUploadParams::new(key).user_meta(meta))
        .await
        .map_err(|e| FsError::from(e).context(format!("starting upload of {key}")))?;
    let n_parts = size.div_ceil(part);
    let parts: Result<Vec<UploadedPart>, FsError> = futures::stream::iter(0..n_parts)
        .map(|i| {
            let file = file.clone();
            let client = ctx.client.clone();
            let upload_id = upload_id.clone();
            let key = key.to_string();
            let permits = ctx.upload_permits.clone();
            async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|e| FsError::with_source(libc::EIO, "upload slots closed", e))?;
                let offset = i * part;
                let body = read_chunk(file, offset, part.min(size - offset)).await?;
                let params = UploadPartParams {
                    key,
                    upload_id,
                    part_number: (i + 1) as u32,
                    body,
                };
                client
                    .upload_part(params)
                    .await
                    .map_err(|e| FsError::from(e).context("uploading part"))
            }
        })
        .buffer_unordered(ctx.max_concurrency.max(1))
        .try_collect()
        .await;
    let result = match parts {
        Ok(mut parts) => {
            parts.sort_by_key(|p| p.part_number);
            let params = CompleteMultipartUploadParams {
                key: key.to_string(),
                upload_id: upload_id.clone(),
                parts,
                forbid_overwrite: false,
            };
            ctx.client
                .complete_multipart_upload(params)
                .await
                .map(|r| r.etag)
                .map_err(|e| FsError::from(e).context(format!("completing upload of {key}")))
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        if let Err(e) = ctx.client.abort_multipart_upload(key, &upload_id).await {
            warn!(key, error = %e, "aborting multipart upload failed");
        }
    }
    result
}

/// Replace the user metadata of `key` (CopyObject onto itself, REPLACE, pinned to `etag`).
pub async fn set_user_meta<C: ObjectClient>(
    ctx: &WriteCtx<C>,
    key: &str,
    etag: &ETag,
    user_meta: UserMeta,
) -> Result<ETag, FsError> {
    let params = CopyObjectParams {
        source_key: key.to_string(),
        dest_key: key.to_string(),
        metadata: MetadataDirective::Replace {
            content_type: None,
            user_meta,
        },
        source_if_match: Some(etag.clone()),
        forbid_overwrite: false,
    };
    Ok(ctx.client.copy_object(params).await?.etag)
}
