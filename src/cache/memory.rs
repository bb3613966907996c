//! The memory tier: blocks in an LRU list, evicted whenever the shared memory budget is over its
//! limit (cached blocks and in-flight GETs count against the same budget). One lock, never held
//! across `.await`; blocks evicted under it are dropped after it is released, so freeing a large
//! allocation never happens inside the critical section.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use lru::LruCache;

use crate::object::{BlockIndex, BlockKey, ObjectId};
use crate::prefetch::budget::{Charge, MemoryBudget};

struct CachedBlock {
    data: Bytes,
    charge: Arc<Charge>,
    /// Fetched ahead and not read yet: counted in the budget's unread bytes.
    unread: bool,
}

struct Inner {
    lru: LruCache<BlockKey, CachedBlock>,
    bytes: u64,
    /// Blocks fetched ahead that left the tier before anyone read them.
    evicted_unread: u64,
}

impl Inner {
    /// Pop least recently used blocks while the budget is over its limit (call with lock held).
    /// The charge of each evicted block is dropped at once, so `over_limit` sees the release;
    /// its bytes go to `evicted`, to be freed after the lock is released. Records the peak.
    fn evict_over_limit(&mut self, budget: &MemoryBudget, evicted: &mut Vec<Bytes>) {
        while budget.over_limit() {
            let Some((_, block)) = self.lru.pop_lru() else { break };
            if self.forget(block, evicted) {
                self.evicted_unread += 1;
            }
        }
        budget.record_peak();
    }

    /// Account for a block leaving the tier; its bytes go to `evicted`. Returns whether it
    /// left unread.
    fn forget(&mut self, block: CachedBlock, evicted: &mut Vec<Bytes>) -> bool {
        self.bytes -= block.data.len() as u64;
        if block.unread {
            block.charge.unread_block_done();
        }
        evicted.push(block.data);
        block.unread
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
                evicted_unread: 0,
            }),
            budget,
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The block, marking it recently used (and read).
    pub(crate) fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let mut inner = self.lock();
        let block = inner.lru.get_mut(key)?;
        if std::mem::take(&mut block.unread) {
            block.charge.unread_block_done();
        }
        Some(block.data.clone())
    }

    /// Whether the block is held (does not change its position).
    pub(crate) fn contains(&self, key: &BlockKey) -> bool {
        self.lock().lru.contains(key)
    }

    /// Hold a block, then evict down to the budget (possibly this very block, if everything
    /// else is pinned by in-flight reservations).
    /// `ahead`: fetched ahead of its reader and not read yet.
    pub(crate) fn insert(&self, key: BlockKey, data: Bytes, charge: Arc<Charge>, ahead: bool) {
        let mut evicted = Vec::new();
        {
            let mut inner = self.lock();
            inner.bytes += data.len() as u64;
            if ahead {
                charge.add_unread_block();
            }
            let block = CachedBlock {
                data,
                charge,
                unread: ahead,
            };
            if let Some(old) = inner.lru.put(key, block) {
                // The old charge is released here; its bytes are freed after the lock.
                inner.forget(old, &mut evicted);
            }
            inner.evict_over_limit(&self.budget, &mut evicted);
        }
        self.evictions.fetch_add(evicted.len() as u64, Ordering::Relaxed);
        drop(evicted);
    }

    /// Make these blocks the first to go: a sequential reader has read them to the end, and the
    /// kernel's page cache now holds their bytes. Without this, the blocks it just read would be
    /// the most recently used ones, and the LRU order would evict blocks fetched ahead and not yet
    /// read (by this reader or by another) first, to fetch them again moments later.
    pub(crate) fn demote(&self, object: &ObjectId, blocks: Range<BlockIndex>) {
        let mut inner = self.lock();
        for index in blocks {
            let key = BlockKey {
                object: object.clone(),
                index,
            };
            if let Some(block) = inner.lru.peek_mut(&key)
                && std::mem::take(&mut block.unread)
            {
                block.charge.unread_block_done();
            }
            inner.lru.demote(&key);
        }
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
                    inner.forget(b, &mut evicted);
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

    /// Blocks fetched ahead that were evicted before anyone read them (read-ahead wasted).
    pub(crate) fn evicted_unread(&self) -> u64 {
        self.lock().evicted_unread
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn object() -> ObjectId {
        ObjectId::new("k", crate::object::ETag::new("\"e\""))
    }

    fn key(index: BlockIndex) -> BlockKey {
        BlockKey {
            object: object(),
            index,
        }
    }

    /// Insert block `index` (1 MiB, charged to `budget`).
    fn insert(tier: &MemoryTier, budget: &Arc<MemoryBudget>, index: BlockIndex, ahead: bool) {
        let charge = Arc::new(budget.charge(MIB));
        tier.insert(key(index), Bytes::from(vec![0u8; MIB as usize]), charge, ahead);
    }

    #[test]
    fn demoted_blocks_are_evicted_first() {
        let budget = MemoryBudget::new(4 * MIB, MIB);
        let tier = MemoryTier::new(budget.clone());
        for i in 0..4 {
            insert(&tier, &budget, i, false);
        }
        assert!(tier.get(&key(0)).is_some(), "block 0 is now the most recently used");
        tier.demote(&object(), 0..1);
        insert(&tier, &budget, 4, false);
        assert!(!tier.contains(&key(0)), "the demoted block went first");
        assert!(tier.contains(&key(1)) && tier.contains(&key(4)));
    }

    #[test]
    fn ahead_blocks_count_as_unread_until_read_demoted_or_evicted() {
        let budget = MemoryBudget::new(3 * MIB, MIB);
        let tier = MemoryTier::new(budget.clone());
        for i in 0..3 {
            insert(&tier, &budget, i, true);
        }
        assert_eq!(budget.unread_bytes(), 3 * MIB);
        assert!(tier.get(&key(1)).is_some());
        assert_eq!(budget.unread_bytes(), 2 * MIB, "read");
        tier.demote(&object(), 2..3);
        assert_eq!(budget.unread_bytes(), MIB, "read to its end");
        // The demoted block goes first, then block 0, the least recently used, unread.
        insert(&tier, &budget, 3, false);
        assert!(!tier.contains(&key(2)));
        assert_eq!((budget.unread_bytes(), tier.evicted_unread()), (MIB, 0));
        insert(&tier, &budget, 4, false);
        assert!(!tier.contains(&key(0)));
        assert_eq!(budget.unread_bytes(), 0, "evicted unread");
        assert_eq!(tier.evicted_unread(), 1);
    }
}
