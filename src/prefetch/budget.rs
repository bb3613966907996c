//! The global memory budget of the read path: one byte counter for everything the cache holds
//! or has asked for, plus a semaphore that caps bytes *in flight* (requested from OSS, not yet
//! delivered).
//!
//! - A GET reserves its bytes before it is sent: read-ahead with [`MemoryBudget::try_reserve`]
//!   (no room means no read-ahead: the prefetcher backs off), a read that needs the bytes now
//!   with [`MemoryBudget::reserve`] (waits for in-flight GETs to land; they always do, so this
//!   cannot deadlock).
//! - In-flight bytes are capped at `limit / IN_FLIGHT_SHARE_DIVISOR`, so the rest of the budget is
//!   always available to cached blocks and read-ahead can never starve the cache.
//! - When the GET lands its reservation becomes a [`Charge`] for the bytes received, shared (an
//!   `Arc`) by all blocks cut from that response: the blocks are slices of one allocation, which
//!   lives until the last of them is dropped, and the charge is released exactly then. The cache
//!   evicts until `used <= limit`, so the ceiling counts real allocations, not just block lengths.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// In-flight (requested, not yet delivered) bytes may use at most `1 / IN_FLIGHT_SHARE_DIVISOR`
/// of the memory limit: with the defaults, 128 MiB of 256 MiB, which is exactly 16 concurrent
/// 8 MiB GETs.
pub const IN_FLIGHT_SHARE_DIVISOR: u64 = 2;

/// Read-ahead, in flight plus landed and not yet read, may hold at most this percentage of the
/// memory limit. Past it, fetching further ahead would only evict blocks fetched ahead earlier
/// and not read yet (by this reader or another), to fetch them again: several sequential
/// readers share the budget instead of thrashing it.
pub const READ_AHEAD_SHARE_PERCENT: u64 = 75;

/// Byte accounting shared by the cache and the prefetcher of one mount.
#[derive(Debug)]
pub struct MemoryBudget {
    limit_bytes: u64,
    block_size_bytes: u64,
    used_bytes: AtomicU64,
    peak_bytes: AtomicU64,
    /// Bytes of landed allocations (GET responses) with a block fetched ahead and not read
    /// yet (kept by [`Charge::add_unread_block`]).
    unread_bytes: AtomicU64,
    /// Permits are blocks of in-flight data.
    in_flight: Arc<Semaphore>,
    in_flight_cap_blocks: u32,
}

impl MemoryBudget {
    /// A budget of `limit_bytes` for data in blocks of `block_size_bytes`. At least one block
    /// may always be in flight, whatever the limit.
    pub fn new(limit_bytes: u64, block_size_bytes: u64) -> Arc<Self> {
        let block_size_bytes = block_size_bytes.max(1);
        let cap_blocks = (limit_bytes / IN_FLIGHT_SHARE_DIVISOR / block_size_bytes).clamp(1, u64::from(u32::MAX >> 3));
        let cap_blocks = u32::try_from(cap_blocks).unwrap_or(1);
        Arc::new(MemoryBudget {
            limit_bytes,
            block_size_bytes,
            used_bytes: AtomicU64::new(0),
            peak_bytes: AtomicU64::new(0),
            unread_bytes: AtomicU64::new(0),
            in_flight: Arc::new(Semaphore::new(cap_blocks as usize)),
            in_flight_cap_blocks: cap_blocks,
        })
    }

    /// The configured ceiling.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// Bytes currently reserved or charged.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// Highest `used_bytes` recorded by [`MemoryBudget::record_peak`].
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes.load(Ordering::Relaxed)
    }

    /// Whether the cache must evict: more is used than the limit allows.
    pub fn over_limit(&self) -> bool {
        self.used_bytes() > self.limit_bytes
    }

    /// Bytes currently reserved for GETs in flight (rounded to blocks).
    pub fn in_flight_bytes(&self) -> u64 {
        let free = self.in_flight.available_permits() as u64;
        (u64::from(self.in_flight_cap_blocks).saturating_sub(free)) * self.block_size_bytes
    }

    /// The largest reservation possible, in blocks; GETs are never larger than this.
    pub fn max_reservation_blocks(&self) -> u64 {
        u64::from(self.in_flight_cap_blocks)
    }

    /// Note the current use as a candidate peak. The cache calls this after each eviction
    /// pass: a reservation briefly counts before the eviction that makes room for it, but no
    /// memory is allocated in between, so the peak after eviction is the one that matters.
    pub fn record_peak(&self) {
        self.peak_bytes.fetch_max(self.used_bytes(), Ordering::Relaxed);
    }

    fn add_used(&self, bytes: u64) {
        self.used_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub_used(&self, bytes: u64) {
        self.used_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn blocks_to_permits(&self, blocks: u64) -> u32 {
        u32::try_from(blocks.clamp(1, u64::from(self.in_flight_cap_blocks))).unwrap_or(self.in_flight_cap_blocks)
    }

    /// `bytes` more of landed read-ahead are not read yet.
    pub fn add_unread(&self, bytes: u64) {
        self.unread_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` counted by [`MemoryBudget::add_unread`] were read, or evicted unread.
    pub fn sub_unread(&self, bytes: u64) {
        // Never below zero, whatever the order of concurrent updates.
        let _ = self
            .unread_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(bytes)));
    }

    /// Bytes fetched ahead, landed and not read yet.
    pub fn unread_bytes(&self) -> u64 {
        self.unread_bytes.load(Ordering::Relaxed)
    }

    /// Reserve `blocks` blocks for a read-ahead GET, or `None` if the in-flight share is used
    /// up, or if read-ahead (in flight plus landed unread) would pass
    /// [`READ_AHEAD_SHARE_PERCENT`] of the limit while some of it is pending.
    pub fn try_reserve(self: &Arc<Self>, blocks: u64) -> Option<Reservation> {
        let permits = self.blocks_to_permits(blocks);
        let pending = self.in_flight_bytes() + self.unread_bytes();
        let wanted = u64::from(permits) * self.block_size_bytes;
        if pending > 0 && pending + wanted > self.limit_bytes.saturating_mul(READ_AHEAD_SHARE_PERCENT) / 100 {
            return None;
        }
        let permit = self.in_flight.clone().try_acquire_many_owned(permits).ok()?;
        Some(self.reservation(permit, permits))
    }

    /// Reserve `blocks` blocks (clamped to [`MemoryBudget::max_reservation_blocks`]) for a GET a
    /// reader waits on, waiting for in-flight GETs to land if needed.
    pub async fn reserve(self: &Arc<Self>, blocks: u64) -> Reservation {
        let permits = self.blocks_to_permits(blocks);
        match self.in_flight.clone().acquire_many_owned(permits).await {
            Ok(permit) => self.reservation(permit, permits),
            // The semaphore is never closed; if it were, account the bytes without a permit.
            Err(_) => {
                let bytes = u64::from(permits) * self.block_size_bytes;
                self.add_used(bytes);
                Reservation {
                    budget: self.clone(),
                    bytes,
                    _permit: None,
                }
            }
        }
    }

    fn reservation(self: &Arc<Self>, permit: OwnedSemaphorePermit, permits: u32) -> Reservation {
        let bytes = u64::from(permits) * self.block_size_bytes;
        self.add_used(bytes);
        Reservation {
            budget: self.clone(),
            bytes,
            _permit: Some(permit),
        }
    }

    /// Charge `bytes` of data that did not come through a reservation (e.g. a block read back
    /// from the disk tier).
    pub fn charge(self: &Arc<Self>, bytes: u64) -> Charge {
        self.add_used(bytes);
        Charge::new(self.clone(), bytes)
    }
}

/// Bytes reserved for one GET in flight. Dropping it (a failed GET) releases everything.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The GET landed with `bytes` bytes: release the in-flight permit and keep those bytes
    /// charged until the returned charge is dropped.
    pub fn into_charge(self, bytes: u64) -> Charge {
        let budget = self.budget.clone();
        // Dropping `self` releases the reserved bytes and the in-flight permit.
        drop(self);
        budget.add_used(bytes);
        Charge::new(budget, bytes)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.sub_used(self.bytes);
    }
}

/// Bytes of delivered data; released on drop. Shared (`Arc<Charge>`) by the blocks of one GET.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: u64,
    /// Blocks of this allocation fetched ahead and not read yet. While there is one, the whole
    /// allocation counts as unread read-ahead: reading the other blocks frees nothing.
    unread_blocks: AtomicU64,
}

impl Charge {
    fn new(budget: Arc<MemoryBudget>, bytes: u64) -> Self {
        Charge {
            budget,
            bytes,
            unread_blocks: AtomicU64::new(0),
        }
    }

    /// Bytes charged.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// One more block of this allocation was fetched ahead and is not read yet.
    pub fn add_unread_block(&self) {
        if self.unread_blocks.fetch_add(1, Ordering::Relaxed) == 0 {
            self.budget.add_unread(self.bytes);
        }
    }

    /// A block counted by [`Charge::add_unread_block`] was read, or left the cache unread.
    pub fn unread_block_done(&self) {
        let before = self
            .unread_blocks
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(1)));
        if before == Ok(1) {
            self.budget.sub_unread(self.bytes);
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if *self.unread_blocks.get_mut() > 0 {
            self.budget.sub_unread(self.bytes);
        }
        self.budget.sub_used(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn reservations_and_charges_account_bytes() {
        let budget = MemoryBudget::new(16 * MIB, MIB);
        assert_eq!(budget.max_reservation_blocks(), 8);
        let r = budget.try_reserve(3).unwrap();
        budget.record_peak();
        assert_eq!(budget.used_bytes(), 3 * MIB);
        assert_eq!(budget.in_flight_bytes(), 3 * MIB);
        let c = r.into_charge(2 * MIB + 5);
        budget.record_peak();
        assert_eq!(budget.used_bytes(), 2 * MIB + 5);
        assert_eq!(budget.in_flight_bytes(), 0);
        let shared = Arc::new(c);
        let other = shared.clone();
        drop(shared);
        assert_eq!(budget.used_bytes(), 2 * MIB + 5, "still referenced by another block");
        drop(other);
        assert_eq!(budget.used_bytes(), 0);
        assert_eq!(budget.peak_bytes(), 3 * MIB);
    }

    #[test]
    fn read_ahead_backs_off_at_in_flight_cap() {
        let budget = MemoryBudget::new(16 * MIB, MIB);
        let a = budget.try_reserve(6).unwrap();
        assert!(budget.try_reserve(3).is_none());
        let b = budget.try_reserve(2).unwrap();
        assert!(budget.try_reserve(1).is_none());
        drop(a);
        assert!(budget.try_reserve(6).is_some());
        drop(b);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn landed_unread_read_ahead_counts_until_read() {
        let budget = MemoryBudget::new(16 * MIB, MIB);
        // 12 MiB (75 %) of landed read-ahead nobody has read yet: no room for more.
        budget.add_unread(11 * MIB);
        assert!(budget.try_reserve(1).is_some(), "11 + 1 MiB fits in 75 % of 16 MiB");
        assert!(budget.try_reserve(2).is_none(), "11 + 2 MiB does not");
        budget.add_unread(MIB);
        assert!(budget.try_reserve(1).is_none());
        // Read (or evicted): room again.
        budget.sub_unread(4 * MIB);
        assert_eq!(budget.unread_bytes(), 8 * MIB);
        assert!(budget.try_reserve(4).is_some());
        budget.sub_unread(100 * MIB);
        assert_eq!(budget.unread_bytes(), 0, "never below zero");
    }

    #[test]
    fn an_allocation_counts_as_unread_until_its_last_unread_block_is_done() {
        let budget = MemoryBudget::new(64 * MIB, MIB);
        let charge = budget.try_reserve(8).unwrap().into_charge(8 * MIB);
        for _ in 0..3 {
            charge.add_unread_block();
        }
        assert_eq!(budget.unread_bytes(), 8 * MIB, "the whole allocation, once");
        charge.unread_block_done();
        charge.unread_block_done();
        assert_eq!(budget.unread_bytes(), 8 * MIB, "one block still unread pins all of it");
        charge.unread_block_done();
        assert_eq!(budget.unread_bytes(), 0);
        charge.add_unread_block();
        drop(charge);
        assert_eq!(budget.unread_bytes(), 0, "dropped with an unread block");
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn tiny_limit_still_allows_one_block() {
        let budget = MemoryBudget::new(100, MIB);
        assert_eq!(budget.max_reservation_blocks(), 1);
        assert!(budget.try_reserve(4).is_some());
    }

    #[tokio::test]
    async fn reserve_waits_for_in_flight_to_land() {
        let budget = MemoryBudget::new(4 * MIB, MIB);
        let held = budget.try_reserve(2).unwrap();
        let b2 = budget.clone();
        let waiter = tokio::spawn(async move { b2.reserve(1).await.bytes() });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let _charge = held.into_charge(MIB);
        assert_eq!(waiter.await.unwrap(), MIB);
    }
}
