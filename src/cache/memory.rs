//! The memory tier: blocks in an LRU list, evicted whenever the shared memory budget is over its
//! limit (cached blocks and in-flight GETs count against the same budget). One lock, never held
//! across `.await`; blocks evicted under it are dropped after it is released, so freeing a large
//! allocation never happens inside the critical section.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use lru::LruCache;

use crate::object::BlockKey;
use crate::prefetch::budget::{Charge, MemoryBudget};

struct CachedBlock {
    data: Bytes,
    _charge: Arc<Charge>,
}

struct Inner {
    lru: LruCache<BlockKey, CachedBlock>,
    bytes: u64,
}

impl Inner {
    /// Pop least recently used blocks while the budget is over its limit (call with lock held).
    /// The charge of each evicted block is dropped at once, so `over_limit` sees the release;
    /// its bytes go to `evicted`, to be freed after the lock is released. Records the peak.
    fn evict_over_limit(&mut self, budget: &MemoryBudget, evicted: &mut Vec<Bytes>) {
        while budget.over_limit() {
            let Some((_, block)) = self.lru.pop_lru() else { break };
            self.bytes -= block.data.len() as u64;
            evicted.push(block.data);
        }
        budget.record_peak();
    }
}

/// Blocks held in memory.
pub(crate) struct MemoryTier {
    inner: Mutex<Inner>,
    budget: Arc<MemoryBudget>,
    evictions: AtomicU64,
}

impl MemoryTier {
    pub(crate) fn new(budget: Arc<MemoryBudget>) -> Self {
        MemoryTier {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            budget,
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The block, marking it recently used.
    pub(crate) fn get(&self, key: &BlockKey) -> Option<Bytes> {
        self.lock().lru.get(key).map(|b| b.data.clone())
    }

    /// Whether the block is held (does not change its position).
    pub(crate) fn contains(&self, key: &BlockKey) -> bool {
        self.lock().lru.contains(key)
    }

    /// Hold a block, then evict down to the budget (possibly this very block, if everything
    /// else is pinned by in-flight reservations).
    pub(crate) fn insert(&self, key: BlockKey, data: Bytes, charge: Arc<Charge>) {
        let mut evicted = Vec::new();
        let replaced = {
            let mut inner = self.lock();
            inner.bytes += data.len() as u64;
            let mut replaced = None;
            if let Some(old) = inner.lru.put(key, CachedBlock { data, _charge: charge }) {
                inner.bytes -= old.data.len() as u64;
                // The old charge is released here; its bytes are freed after the lock.
                replaced = Some(old.data);
            }
            inner.evict_over_limit(&self.budget, &mut evicted);
            replaced
        };
        drop(replaced);
        self.evictions.fetch_add(evicted.len() as u64, Ordering::Relaxed);
        drop(evicted);
    }

    /// Evict until the budget is within its limit.
    pub(crate) fn reclaim(&self) {
        let mut evicted = Vec::new();
        self.lock().evict_over_limit(&self.budget, &mut evicted);
        self.evictions.fetch_add(evicted.len() as u64, Ordering::Relaxed);
        drop(evicted);
    }

    /// Drop every block of `key`, whatever its ETag.
    pub(crate) fn invalidate(&self, key: &str) {
        let mut evicted = Vec::new();
        {
            let mut inner = self.lock();
            let keys: Vec<BlockKey> = inner
                .lru
                .iter()
                .filter(|(k, _)| k.object.key() == key)
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                if let Some(b) = inner.lru.pop(&k) {
                    inner.bytes -= b.data.len() as u64;
                    evicted.push(b.data);
                }
            }
        }
        drop(evicted);
    }

    /// (blocks, bytes) held.
    pub(crate) fn usage(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.lru.len() as u64, inner.bytes)
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}
