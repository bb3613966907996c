//! Reusable buffers for GET bodies. A sequential read streams gigabytes through buffers of a
//! few sizes (a part, a block); allocating each one fresh made the kernel fault in every page
//! again (98% of the read path's page faults, and page-table lock contention with the FUSE
//! reply copy, in `perf`). A [`BufferPool`] keeps buffers that come back, up to a byte cap, and
//! hands them out again already faulted in.
//!
//! A buffer is filled as a `Vec<u8>` ([`BufferPool::take`]) and frozen into `Bytes`
//! ([`BufferPool::freeze`]); the `Bytes` (and every slice of it) shares one owner, which gives
//! the buffer back to the pool when the last slice is dropped.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Idle bytes a pool keeps by default: four 8 MiB parts. Buffers in use are not counted (the
/// cache's memory budget accounts for them).
pub const DEFAULT_IDLE_BYTES: usize = 32 * 1024 * 1024;

/// A buffer is reused for a request of `len` bytes only if its capacity is at most this many
/// times `len` (a 1 MiB read must not pin an 8 MiB buffer).
const MAX_CAPACITY_RATIO: usize = 2;

/// See the module documentation.
#[derive(Debug)]
pub struct BufferPool {
    idle_cap_bytes: usize,
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

/// Owner of a frozen buffer: gives it back to its pool when dropped.
struct Pooled {
    data: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.data));
    }
}

impl BufferPool {
    /// A pool keeping at most `idle_cap_bytes` of idle buffers.
    pub fn new(idle_cap_bytes: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            idle_cap_bytes,
            idle: Mutex::new(Idle::default()),
        })
    }

    /// An empty buffer with room for at least `len` bytes: an idle one of a fitting size when
    /// there is one, else a new one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let fits =
                |b: &Vec<u8>| b.capacity() >= len && b.capacity() <= len.max(1).saturating_mul(MAX_CAPACITY_RATIO);
            if let Some(i) = idle.buffers.iter().position(fits) {
                let buffer = idle.buffers.swap_remove(i);
                idle.bytes -= buffer.capacity();
                return buffer;
            }
        }
        Vec::with_capacity(len)
    }

    /// `data` as `Bytes` whose storage returns to this pool once every slice is dropped.
    pub fn freeze(self: &Arc<Self>, data: Vec<u8>) -> Bytes {
        if data.is_empty() {
            return Bytes::new();
        }
        Bytes::from_owner(Pooled {
            data,
            pool: self.clone(),
        })
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).bytes
    }

    fn give_back(&self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity == 0 {
            return;
        }
        buffer.clear();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.bytes + capacity <= self.idle_cap_bytes {
            idle.bytes += capacity;
            idle.buffers.push(buffer);
        }
        // Else dropped here: the pool never holds more than its cap.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_slice_is_dropped_and_are_reused() {
        let pool = BufferPool::new(1 << 20);
        let mut v = pool.take(1000);
        v.extend_from_slice(&[7u8; 1000]);
        let ptr = v.as_ptr();
        let bytes = pool.freeze(v);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert!(pool.idle_bytes() >= 1000);
        let again = pool.take(900);
        assert_eq!(again.as_ptr(), ptr, "the same allocation is handed out again");
        assert!(again.is_empty());
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn idle_bytes_never_exceed_the_cap_and_sizes_must_fit() {
        let pool = BufferPool::new(3000);
        let a = pool.freeze(vec![1u8; 2000]);
        let b = pool.freeze(vec![2u8; 2000]);
        drop(a);
        drop(b);
        assert!(pool.idle_bytes() <= 3000);
        // Too big for a 100-byte request (ratio), too small for a 5000-byte one: new buffers.
        assert!(pool.take(100).capacity() < 2000);
        assert!(pool.take(5000).capacity() >= 5000);
        assert_eq!(pool.take(1500).capacity(), 2000);
        assert!(pool.freeze(Vec::new()).is_empty());
    }
}
