//! Reusable data buffers for GET bodies and upload parts. A sequential read or write streams
//! gigabytes through buffers of a few sizes (a part, a block). Allocating each one fresh made
//! the kernel fault every page in again (98% of the read path's page faults in `perf`, and
//! page-table lock contention with the FUSE reply copy), and buffers of several MiB freed in
//! the middle of malloc's heaps kept resident memory well above what was in use.
//!
//! So data buffers are anonymous memory mappings of their own, outside malloc: a
//! [`BufferPool`] keeps the ones that come back, up to a byte cap, and hands them out again
//! with their pages already in; the rest are unmapped at once, which returns their memory to
//! the system. Resident data memory is therefore exactly the buffers in use plus the idle cap.
//!
//! A buffer is filled through [`PoolBuf`] and frozen into `Bytes` ([`PoolBuf::freeze`]); the
//! `Bytes` (and every slice of it) share one owner, which gives the mapping back to the pool
//! when the last slice is dropped.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use memmap2::MmapMut;

/// Idle bytes a pool keeps by default: half the default memory limit, the most the read path
/// has in flight at once, so the buffers one burst of read-ahead frees are there for the next
/// (with less, buffers were unmapped and mapped again in turn, faulting every page). Buffers in
/// use are not counted (the cache's memory budget and the writers' part limits account for
/// them). A mount sets it to half its `--memory-limit` ([`BufferPool::set_idle_cap`]).
pub const DEFAULT_IDLE_BYTES: usize = 64 * 1024 * 1024;

/// Buffers of at least this many bytes ask for transparent huge pages.
const HUGE_PAGE_MIN_BYTES: usize = 4 * 1024 * 1024;

/// A buffer is reused for a request of `len` bytes only if its capacity is at most this many
/// times `len` (a 1 MiB read must not pin an 8 MiB buffer).
const MAX_CAPACITY_RATIO: usize = 2;

/// See the module documentation.
#[derive(Debug)]
pub struct BufferPool {
    idle_cap_bytes: std::sync::atomic::AtomicUsize,
    idle: Mutex<Idle>,
    stats: Mutex<BufferStats>,
}

/// Counters of a [`BufferPool`] (for metrics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BufferStats {
    /// Buffers handed out again from the idle list.
    pub reused: u64,
    /// Buffers newly mapped.
    pub mapped: u64,
    /// Buffers unmapped on return because the idle list was full.
    pub unmapped: u64,
}

#[derive(Debug, Default)]
struct Idle {
    maps: Vec<MmapMut>,
    bytes: usize,
}

/// Where a buffer's bytes live: a mapping (returned to the pool), or, should mapping fail, the
/// heap.
enum Storage {
    Map(MmapMut),
    Heap(Vec<u8>),
}

impl Storage {
    fn capacity(&self) -> usize {
        match self {
            Storage::Map(m) => m.len(),
            Storage::Heap(v) => v.len(),
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Storage::Map(m) => m,
            Storage::Heap(v) => v,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Map(m) => m,
            Storage::Heap(v) => v,
        }
    }
}

/// A buffer being filled: `len` bytes written of `capacity`.
pub struct PoolBuf {
    storage: Option<Storage>,
    len: usize,
    pool: Arc<BufferPool>,
}

/// Owner of a frozen buffer: gives it back to its pool when dropped.
struct Frozen {
    storage: Option<Storage>,
    len: usize,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        self.storage.as_ref().map_or(&[][..], |s| &s.bytes()[..self.len])
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(storage) = self.storage.take() {
            self.pool.give_back(storage);
        }
    }
}

impl PoolBuf {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.storage.as_ref().map_or(0, Storage::capacity)
    }

    /// Room left.
    pub fn remaining(&self) -> usize {
        self.capacity() - self.len
    }

    /// Append as much of `data` as fits; returns how many bytes were taken.
    pub fn append(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.remaining());
        if let Some(storage) = self.storage.as_mut() {
            storage.bytes_mut()[self.len..self.len + n].copy_from_slice(&data[..n]);
        }
        self.len += n;
        n
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        self.storage.as_ref().map_or(&[][..], |s| &s.bytes()[..self.len])
    }

    /// The bytes written so far, for patching in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        self.storage.as_mut().map_or(&mut [][..], |s| &mut s.bytes_mut()[..len])
    }

    /// The written bytes as `Bytes`; the storage returns to the pool when the last slice of
    /// them is dropped.
    pub fn freeze(mut self) -> Bytes {
        if self.len == 0 {
            return Bytes::new();
        }
        Bytes::from_owner(Frozen {
            storage: self.storage.take(),
            len: self.len,
            pool: self.pool.clone(),
        })
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(storage) = self.storage.take() {
            self.pool.give_back(storage);
        }
    }
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl BufferPool {
    /// The process's pool (GET bodies and upload parts), with [`DEFAULT_IDLE_BYTES`].
    pub fn global() -> &'static Arc<BufferPool> {
        static GLOBAL: std::sync::OnceLock<Arc<BufferPool>> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(|| BufferPool::new(DEFAULT_IDLE_BYTES))
    }

    /// A pool keeping at most `idle_cap_bytes` of idle buffers.
    pub fn new(idle_cap_bytes: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            idle_cap_bytes: std::sync::atomic::AtomicUsize::new(idle_cap_bytes),
            idle: Mutex::new(Idle::default()),
            stats: Mutex::new(BufferStats::default()),
        })
    }

    /// An empty buffer with room for at least `capacity` bytes: an idle one of a fitting size
    /// when there is one, else a new mapping.
    pub fn take(self: &Arc<Self>, capacity: usize) -> PoolBuf {
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let most = capacity.max(1).saturating_mul(MAX_CAPACITY_RATIO);
            // The most recently released fitting buffer: its pages are the likeliest to still
            // be in the CPU caches. `remove` keeps the release order (a few entries).
            match idle.maps.iter().rposition(|m| m.len() >= capacity && m.len() <= most) {
                Some(i) => {
                    let map = idle.maps.remove(i);
                    idle.bytes -= map.len();
                    Some(map)
                }
                None => None,
            }
        };
        {
            let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            match (&reused, capacity) {
                (Some(_), _) => stats.reused += 1,
                (None, 0) => {}
                (None, _) => stats.mapped += 1,
            }
        }
        let storage = match reused {
            Some(map) => Storage::Map(map),
            None if capacity == 0 => Storage::Heap(Vec::new()),
            None => match MmapMut::map_anon(capacity) {
                Ok(map) => {
                    if capacity >= HUGE_PAGE_MIN_BYTES {
                        // Best effort: fewer faults, and cheaper page pinning when the kernel
                        // copies a FUSE reply out of the buffer.
                        let _ = map.advise(memmap2::Advice::HugePage);
                    }
                    Storage::Map(map)
                }
                Err(e) => {
                    tracing::warn!(capacity, error = %e, "mapping a data buffer failed; using the heap");
                    Storage::Heap(vec![0; capacity])
                }
            },
        };
        PoolBuf {
            storage: Some(storage),
            len: 0,
            pool: self.clone(),
        }
    }

    /// Keep at most `bytes` of idle buffers from now on.
    pub fn set_idle_cap(&self, bytes: usize) {
        self.idle_cap_bytes.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counters so far.
    pub fn stats(&self) -> BufferStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).bytes
    }

    fn give_back(&self, storage: Storage) {
        let Storage::Map(map) = storage else {
            return;
        };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.bytes + map.len() <= self.idle_cap_bytes.load(std::sync::atomic::Ordering::Relaxed) {
            idle.bytes += map.len();
            idle.maps.push(map);
            return;
        }
        drop(idle);
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).unmapped += 1;
        // `map` is unmapped here: the pool never holds more than its cap.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_slice_is_dropped_and_are_reused() {
        let pool = BufferPool::new(1 << 20);
        let mut b = pool.take(10_000);
        assert_eq!(b.append(&[7u8; 1000]), 1000);
        let ptr = b.as_slice().as_ptr();
        let bytes = b.freeze();
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(pool.idle_bytes(), 10_000);
        let again = pool.take(9000);
        assert_eq!(again.as_slice().as_ptr(), ptr, "the same mapping is handed out again");
        assert!(again.is_empty());
        assert_eq!(pool.idle_bytes(), 0);
        // Dropped unfrozen: back to the pool too.
        drop(again);
        assert_eq!(pool.idle_bytes(), 10_000);
    }

    #[test]
    fn append_stops_at_capacity_and_patching_works() {
        let pool = BufferPool::new(0);
        let mut b = pool.take(4096);
        assert_eq!(b.capacity(), 4096);
        assert_eq!(b.append(&[1u8; 3000]), 3000);
        assert_eq!(b.append(&[2u8; 3000]), 1096);
        assert_eq!(b.remaining(), 0);
        b.as_mut_slice()[0] = 9;
        let bytes = b.freeze();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(bytes[0], 9);
        assert_eq!(bytes[2999], 1);
        assert_eq!(bytes[3000], 2);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a zero cap keeps nothing");
    }

    #[test]
    fn idle_bytes_never_exceed_the_cap_and_sizes_must_fit() {
        let pool = BufferPool::new(12_000);
        let (a, b) = (pool.take(8192), pool.take(8192));
        drop(a);
        drop(b);
        assert_eq!(pool.idle_bytes(), 8192);
        // Too big for a 100-byte request (ratio), too small for a 9000-byte one: new buffers.
        let small = pool.take(100);
        let large = pool.take(9000);
        assert!(small.capacity() < 8192);
        assert!(large.capacity() >= 9000);
        assert_eq!(pool.idle_bytes(), 8192);
        assert_eq!(pool.take(5000).capacity(), 8192);
        drop((small, large));
        assert!(pool.idle_bytes() <= 12_000);
        assert!(pool.take(0).freeze().is_empty());
    }
}
