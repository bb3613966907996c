//! Data reads for open files. `DataCache` is shared by the whole mount; `DataReader` is the
//! per-open-file read state (`open` makes one for an object version, `read` is `&self` and may be
//! called concurrently, since the kernel issues parallel reads for one handle).
//!
//! # Design
//!
//! **Blocks.** Objects are cached in fixed blocks of [`BLOCK_SIZE_BYTES`] (1 MiB: the largest
//! FUSE read, so a read touches at most two blocks; a random 4 KiB read costs one 1 MiB GET;
//! 256 blocks fill the default budget) keyed by [`BlockKey`] = (key, ETag, index). Because the
//! ETag is part of the key, a changed object can never be served from blocks of its previous
//! version; [`DataCache::invalidate`] only frees memory early.
//!
//! **Tiers.** The memory tier is an LRU list of blocks. The optional disk tier
//! (`cache_dir`, bounded by `cache_size_bytes`) keeps one CRC-64-checked file per block, written
//! asynchronously by a writer thread, evicted LRU (see `disk`); [`DataCache::try_new`] fails
//! if it cannot be set up, [`DataCache::new`] logs that and runs from memory only. A read looks in memory, then on
//! disk, then asks the prefetcher, which issues GETs (or joins GETs already in flight), and
//! stitches the blocks (a read inside one block is a zero-copy slice).
//!
//! **Read-ahead.** Each `DataReader` owns a [`ReadAhead`] window: the first read and every
//! seek fetch only the blocks read; a sequential reader reads ahead 2 MiB, and the window
//! doubles for every half window consumed, up to [`MAX_WINDOW_BYTES`] (64 MiB), fetched as
//! parallel `part_size` GETs (see `prefetch::window`). Blocks of the window that are on disk are
//! read ahead from disk into memory instead.
//!
//! **Memory.** `memory_limit_bytes` covers cached blocks *and* bytes of GETs in flight (see
//! `prefetch::budget`): in-flight bytes may use at most half of it; read-ahead that does not
//! fit is not issued (the window halves) and reads that need bytes now wait for room. The
//! memory tier evicts least recently used blocks whenever the total is over the limit. The
//! ceiling is independent of the number of readers: 100 sequential readers share the same
//! 128 MiB of in-flight room that one reader may use. Read-ahead may also use only three
//! quarters of the `max_concurrency` request slots, so a read that waits is never queued behind
//! other readers' read-ahead. Blocks are slices of the GET response
//! they came in; the response's charge lasts until its last block is dropped, so accounting
//! follows real allocations.
//!
//! # Locks
//!
//! Order: a reader's read-ahead state, then the prefetcher's in-flight map, then the memory
//! tier's LRU, then the disk tier's index. None is held across `.await` or during file I/O.

mod disk;
mod memory;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};

use crate::client::{ClientError, ObjectClient};
use crate::object::{BlockIndex, BlockKey, ObjectId};
use crate::prefetch::budget::{Charge, MemoryBudget};
use crate::prefetch::window::{ReadAhead, block_byte_range, blocks_covering};
use crate::prefetch::{BlockSink, FetchStats, Fetched, Fetcher, FetcherConfig};

pub use crate::prefetch::window::{BLOCK_SIZE_BYTES, INITIAL_WINDOW_BYTES, MAX_WINDOW_BYTES};
pub use disk::{DISK_CACHE_SUBDIR, DiskCacheError, DiskStats};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("reading {key} at {offset}: {source}")]
    Client {
        key: String,
        offset: u64,
        #[source]
        source: ClientError,
    },
}

/// Sizes and limits of the data cache.
#[derive(Clone, Debug)]
pub struct DataCacheConfig {
    /// Largest GET (default 8 MiB); read-ahead is fetched in GETs of this size.
    pub part_size_bytes: u64,
    /// GETs in flight at once over the whole mount.
    pub max_concurrency: usize,
    /// Ceiling for cached blocks plus bytes of GETs in flight.
    pub memory_limit_bytes: u64,
    /// Directory for the disk tier; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// Ceiling of the disk tier (block files including headers).
    pub cache_size_bytes: u64,
}

impl DataCacheConfig {
    /// The data-cache part of the mount configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        DataCacheConfig {
            part_size_bytes: config.transfer.part_size_bytes,
            max_concurrency: config.transfer.max_concurrency,
            memory_limit_bytes: config.cache.memory_limit_bytes,
            cache_dir: config.cache.cache_dir.clone(),
            cache_size_bytes: config.cache.cache_size_bytes,
        }
    }
}

impl Default for DataCacheConfig {
    fn default() -> Self {
        DataCacheConfig {
            part_size_bytes: crate::config::DEFAULT_PART_SIZE_BYTES,
            max_concurrency: crate::config::DEFAULT_MAX_CONCURRENCY,
            memory_limit_bytes: crate::config::DEFAULT_MEMORY_LIMIT_BYTES,
            cache_dir: None,
            cache_size_bytes: crate::config::DEFAULT_CACHE_SIZE_BYTES,
        }
    }
}

/// Counters and gauges of a `DataCache` (for logs, metrics and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks read served from memory.
    pub memory_hits: u64,
    /// Blocks read served from the disk tier.
    pub disk_hits: u64,
    /// Blocks read ahead from the disk tier into memory.
    pub disk_prefetches: u64,
    /// Blocks read that needed a GET of their own (not cached, not in flight).
    pub misses: u64,
    /// Blocks held in memory, and their bytes.
    pub memory_blocks: u64,
    pub memory_block_bytes: u64,
    /// Bytes counted against `memory_limit_bytes` now (cached + in flight), and the peak.
    pub memory_used_bytes: u64,
    pub memory_peak_bytes: u64,
    pub memory_limit_bytes: u64,
    /// Bytes reserved by GETs in flight.
    pub in_flight_bytes: u64,
    pub memory_evictions: u64,
    /// Blocks fetched ahead that were evicted before anyone read them.
    pub read_ahead_evicted_unread: u64,
    pub fetch: FetchStats,
    /// Present when the disk tier is on.
    pub disk: Option<DiskStats>,
}

#[derive(Default)]
struct HitCounters {
    memory_hits: std::sync::atomic::AtomicU64,
    disk_hits: std::sync::atomic::AtomicU64,
    disk_prefetches: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

/// Memory and disk tiers behind one `BlockSink`.
struct BlockStore {
    memory: memory::MemoryTier,
    disk: Option<disk::DiskTier>,
}

impl BlockSink for BlockStore {
    fn get(&self, key: &BlockKey) -> Option<Bytes> {
        self.memory.get(key)
    }

    fn contains(&self, key: &BlockKey) -> bool {
        self.memory.contains(key) || self.disk.as_ref().is_some_and(|d| d.contains(key))
    }

    fn insert(&self, key: BlockKey, data: Bytes, charge: Arc<Charge>, ahead: bool) {
        if let Some(disk) = &self.disk {
            disk.schedule_write(key.clone(), data.clone(), charge.clone());
        }
        self.memory.insert(key, data, charge, ahead);
    }

    fn reclaim(&self) {
        self.memory.reclaim();
    }
}

/// Shared read machinery of one mount.
pub struct DataCache<C: ObjectClient> {
    config: DataCacheConfig,
    store: Arc<BlockStore>,
    budget: Arc<MemoryBudget>,
    fetcher: Fetcher<C>,
    counters: Arc<HitCounters>,
}

impl<C: ObjectClient> DataCache<C> {
    /// The cache of one mount. If the disk tier cannot be set up, it is logged and the cache
    /// runs from memory only; use [`DataCache::try_new`] to fail instead.
    pub fn new(client: Arc<C>, config: DataCacheConfig) -> Self {
        match Self::try_new(client.clone(), config.clone()) {
            Ok(cache) => cache,
            Err(e) => {
                tracing::error!(error = %e, "disk cache disabled");
                Self::build(
                    client,
                    DataCacheConfig {
                        cache_dir: None,
                        ..config
                    },
                    None,
                )
            }
        }
    }

    /// The cache of one mount, failing if the disk tier (`cache_dir`) cannot be set up.
    pub fn try_new(client: Arc<C>, config: DataCacheConfig) -> Result<Self, DiskCacheError> {
        let disk = match &config.cache_dir {
            Some(dir) => Some(disk::DiskTier::open(dir, config.cache_size_bytes, BLOCK_SIZE_BYTES)?),
            None => None,
        };
        Ok(Self::build(client, config, disk))
    }

    fn build(client: Arc<C>, config: DataCacheConfig, disk: Option<disk::DiskTier>) -> Self {
        let budget = MemoryBudget::new(config.memory_limit_bytes, BLOCK_SIZE_BYTES);
        let store = Arc::new(BlockStore {
            memory: memory::MemoryTier::new(budget.clone()),
            disk,
        });
        let fetcher = Fetcher::new(
            client,
            store.clone(),
            budget.clone(),
            FetcherConfig {
                block_size_bytes: BLOCK_SIZE_BYTES,
                part_size_bytes: config.part_size_bytes,
                max_concurrency: config.max_concurrency,
            },
        );
        DataCache {
            config,
            store,
            budget,
            fetcher,
            counters: Arc::new(HitCounters::default()),
        }
    }

    /// Read state for one open file of the object version `object`, which is `size` bytes long.
    pub fn open(self: &Arc<Self>, object: ObjectId, size: u64) -> DataReader<C> {
        DataReader {
            cache: self.clone(),
            object,
            size,
            readahead: Mutex::new(ReadAhead::new(self.config.part_size_bytes)),
        }
    }

    /// Drop every cached block of `key` (all versions), in memory and on disk. Not needed for
    /// correctness (blocks are keyed by ETag), but frees space when an object is overwritten or
    /// deleted. Blocks of GETs still in flight land afterwards; they belong to the old ETag and
    /// age out.
    pub fn invalidate(&self, key: &str) {
        self.store.memory.invalidate(key);
        if let Some(disk) = &self.store.disk {
            disk.invalidate(key);
        }
    }

    /// The configuration this cache runs with.
    pub fn config(&self) -> &DataCacheConfig {
        &self.config
    }

    /// Where the disk tier keeps its files, when it is on.
    pub fn disk_dir(&self) -> Option<&Path> {
        self.store.disk.as_ref().map(|d| d.dir())
    }

    /// Wait until queued disk writes are done (no-op without a disk tier). Blocking.
    pub fn flush_disk(&self) {
        if let Some(disk) = &self.store.disk {
            disk.flush();
        }
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        use std::sync::atomic::Ordering::Relaxed;
        let (memory_blocks, memory_block_bytes) = self.store.memory.usage();
        CacheStats {
            memory_hits: self.counters.memory_hits.load(Relaxed),
            disk_hits: self.counters.disk_hits.load(Relaxed),
            disk_prefetches: self.counters.disk_prefetches.load(Relaxed),
            misses: self.counters.misses.load(Relaxed),
            memory_blocks,
            memory_block_bytes,
            memory_used_bytes: self.budget.used_bytes(),
            memory_peak_bytes: self.budget.peak_bytes(),
            memory_limit_bytes: self.budget.limit_bytes(),
            in_flight_bytes: self.budget.in_flight_bytes(),
            memory_evictions: self.store.memory.evictions(),
            read_ahead_evicted_unread: self.store.memory.evicted_unread(),
            fetch: self.fetcher.stats(),
            disk: self.store.disk.as_ref().map(|d| d.stats()),
        }
    }

    /// Read ahead from the disk tier: load the blocks of `ahead` that are on disk but not in
    /// memory (the prefetcher skips those) into memory, in a blocking task, one at a time so
    /// each is charged and evicted like any other block.
    fn promote_from_disk(&self, object: &ObjectId, ahead: Range<BlockIndex>) {
        let Some(disk) = &self.store.disk else { return };
        let keys: Vec<BlockKey> = ahead
            .map(|index| BlockKey {
                object: object.clone(),
                index,
            })
            .filter(|key| !self.store.memory.contains(key) && disk.contains(key))
            .collect();
        if keys.is_empty() {
            return;
        }
        let shared = disk.shared();
        let store = self.store.clone();
        let budget = self.budget.clone();
        let counters = self.counters.clone();
        tokio::task::spawn_blocking(move || {
            for key in keys {
                if store.memory.contains(&key) {
                    continue;
                }
                if let Some(data) = shared.read(&key) {
                    counters
                        .disk_prefetches
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let charge = Arc::new(budget.charge(data.len() as u64));
                    store.memory.insert(key, data, charge, true);
                }
            }
        });
    }

    /// Blocks `blocks` of `object` from the local tiers; `None` where neither has it.
    async fn local_blocks(&self, object: &ObjectId, blocks: Range<BlockIndex>) -> Vec<Option<Bytes>> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut got: Vec<Option<Bytes>> = blocks
            .clone()
            .map(|index| {
                self.store.memory.get(&BlockKey {
                    object: object.clone(),
                    index,
                })
            })
            .collect();
        self.counters
            .memory_hits
            .fetch_add(got.iter().filter(|b| b.is_some()).count() as u64, Relaxed);
        let Some(disk) = &self.store.disk else { return got };
        for (slot, index) in blocks.enumerate() {
            if got[slot].is_some() {
                continue;
            }
            let key = BlockKey {
                object: object.clone(),
                index,
            };
            if !disk.contains(&key) {
                continue;
            }
            let shared = disk.shared();
            let lookup = key.clone();
            let data = match tokio::task::spawn_blocking(move || shared.read(&lookup)).await {
                Ok(Some(data)) => data,
                Ok(None) | Err(_) => continue,
            };
            self.counters.disk_hits.fetch_add(1, Relaxed);
            let charge = Arc::new(self.budget.charge(data.len() as u64));
            self.store.memory.insert(key, data.clone(), charge, false);
            got[slot] = Some(data);
        }
        got
    }
}

/// Per-open-file read state.
/// Only reads up to this size (bytes) report their surroundings: the kernel asks for what a
/// random read misses (a few pages), while larger requests come from its own read-ahead, whose
/// neighbours it asks for next anyway.
pub const SURROUNDINGS_MAX_READ_BYTES: u64 = 128 * 1024;

/// What [`DataReader::read_with_surroundings`] returns.
#[derive(Clone, Debug, Default)]
pub struct ReadOutput {
    /// The bytes asked for.
    pub data: Bytes,
    /// For a random read, the rest of the blocks it touched, as `(object offset, bytes)`.
    pub surroundings: Vec<(u64, Bytes)>,
}

pub struct DataReader<C: ObjectClient> {
    cache: Arc<DataCache<C>>,
    object: ObjectId,
    size: u64,
    readahead: Mutex<ReadAhead>,
}

impl<C: ObjectClient> DataReader<C> {
    pub fn object(&self) -> &ObjectId {
        &self.object
    }

    /// Size of the object version this reader reads.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Up to `len` bytes at `offset`; shorter only at the end of the object. Safe to call
    /// concurrently. Must run within a tokio runtime (GETs and disk reads are spawned tasks, so
    /// a read that is abandoned still fills the cache). Fails with the client's error, e.g.
    /// `PreconditionFailed` when the object no longer has this reader's ETag.
    pub async fn read(&self, offset: u64, len: usize) -> Result<Bytes, CacheError> {
        Ok(self.read_with_surroundings(offset, len).await?.data)
    }

    /// Like [`DataReader::read`], and for a read judged random, also the rest of the blocks it
    /// touched (`surroundings`: zero-copy slices of blocks the read had to have anyway). The
    /// kernel asks for exactly the pages a random read misses (4 KiB for a 4 KiB read), so a
    /// caller that can hand these bytes to the kernel's page cache turns the next reads near
    /// this one into page-cache hits instead of FUSE round trips.
    pub async fn read_with_surroundings(&self, offset: u64, len: usize) -> Result<ReadOutput, CacheError> {
        if offset >= self.size || len == 0 {
            return Ok(ReadOutput::default());
        }
        let end = offset.saturating_add(len as u64).min(self.size);
        let cache = &*self.cache;
        let blocks = blocks_covering(offset, end, BLOCK_SIZE_BYTES);
        let mut got = cache.local_blocks(&self.object, blocks.clone()).await;
        let missing: Vec<BlockIndex> = blocks
            .clone()
            .zip(got.iter())
            .filter(|(_, b)| b.is_none())
            .map(|(i, _)| i)
            .collect();

        let (fetched, ahead, sequential) = {
            let mut readahead = self.readahead.lock().unwrap_or_else(PoisonError::into_inner);
            let issued_before = readahead.issued_until();
            let plan = readahead.on_read(offset, end - offset, self.size);
            if missing.is_empty() && plan.ahead.is_empty() {
                // Everything was local and nothing is to be read ahead.
                (
                    Fetched {
                        waits: Vec::new(),
                        claimed_demand: Vec::new(),
                        ahead_stopped_at: None,
                    },
                    plan.ahead,
                    plan.sequential,
                )
            } else {
                let fetched = cache
                    .fetcher
                    .fetch(&self.object, self.size, &missing, plan.ahead.clone());
                if let Some(stopped_at) = fetched.ahead_stopped_at {
                    readahead.ahead_limited(stopped_at);
                }
                if plan.sequential && fetched.claimed_demand.iter().any(|&i| i < issued_before) {
                    readahead.ahead_wasted();
                }
                (fetched, plan.ahead, plan.sequential)
            }
        };
        cache.promote_from_disk(&self.object, ahead);
        cache.counters.misses.fetch_add(
            fetched.claimed_demand.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        for (index, wait) in fetched.waits {
            let data = wait.wait().await.map_err(|e| CacheError::Client {
                key: self.object.key().to_string(),
                offset,
                source: e.into_client_error(),
            })?;
            if let Some(slot) = index.checked_sub(blocks.start).and_then(|s| got.get_mut(s as usize)) {
                *slot = Some(data);
            }
        }
        if sequential {
            // Blocks read to their end are done with: evict them before anything read ahead.
            let done_until = if end == self.size {
                blocks.end
            } else {
                end / BLOCK_SIZE_BYTES
            };
            if done_until > blocks.start {
                cache.store.memory.demote(&self.object, blocks.start..done_until);
            }
        }
        let surroundings = if sequential || end - offset > SURROUNDINGS_MAX_READ_BYTES {
            Vec::new()
        } else {
            self.surroundings(offset, end, blocks.start, &got)
        };
        let data = self
            .stitch(offset, end, blocks.start, got)
            .map_err(|index| CacheError::Client {
                key: self.object.key().to_string(),
                offset,
                source: ClientError::InvalidResponse(format!("block {index} missing or of the wrong length")),
            })?;
        Ok(ReadOutput { data, surroundings })
    }

    /// The parts of the blocks starting at `first` that lie outside `[offset, end)`, as
    /// `(object offset, bytes)`.
    fn surroundings(&self, offset: u64, end: u64, first: BlockIndex, got: &[Option<Bytes>]) -> Vec<(u64, Bytes)> {
        let mut out = Vec::new();
        for (i, block) in got.iter().enumerate() {
            let range = block_byte_range(first + i as u64, self.size, BLOCK_SIZE_BYTES);
            let Some(data) = block.as_ref().filter(|d| d.len() as u64 == range.end - range.start) else {
                continue;
            };
            if range.start < offset {
                let to = offset.min(range.end) - range.start;
                out.push((range.start, data.slice(..to as usize)));
            }
            if range.end > end {
                let from = end.max(range.start) - range.start;
                out.push((range.start + from, data.slice(from as usize..)));
            }
        }
        out
    }

    /// The bytes `[offset, end)` from the blocks starting at block `first`, or the index of a
    /// block that is missing or has the wrong length.
    fn stitch(&self, offset: u64, end: u64, first: BlockIndex, got: Vec<Option<Bytes>>) -> Result<Bytes, BlockIndex> {
        let mut parts = Vec::with_capacity(got.len());
        for (i, block) in got.into_iter().enumerate() {
            let index = first + i as u64;
            let range = block_byte_range(index, self.size, BLOCK_SIZE_BYTES);
            let data = block
                .filter(|d| d.len() as u64 == range.end - range.start)
                .ok_or(index)?;
            let from = offset.max(range.start) - range.start;
            let to = end.min(range.end) - range.start;
            parts.push(data.slice(from as usize..to as usize));
        }
        if parts.len() == 1 {
            return Ok(parts.pop().unwrap_or_default());
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }
}
