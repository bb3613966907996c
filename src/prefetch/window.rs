//! Pure read-ahead arithmetic: block alignment, sequential detection, window growth and reset,
//! and the split of a block range into GET-sized runs. No I/O, no locks, no clocks, so every
//! rule here is unit-tested directly.
//!
//! The model: a reader (one open file) has a *frontier* (the end of the furthest read so far),
//! an *issued* mark (blocks below it have been requested by read-ahead) and a *window* (how
//! many blocks beyond the current read read-ahead should cover). A read is *sequential* when
//! it starts near the frontier (within `SEQUENTIAL_SLACK_BYTES` either way, or anywhere inside
//! the range already issued), which tolerates the kernel's out-of-order parallel reads of one
//! handle. Once no more than half the window is left ahead of a sequential reader, the window
//! doubles (up to the cap) and read-ahead extends to `read end + window`, its end rounded up to
//! a part boundary once the window is at least a part: the window doubles for every half
//! window consumed, and every request is at least half a window. Any other read is a seek: the window goes back to its initial size and nothing
//! beyond the read itself is fetched, so random reads cost exactly the blocks they touch.

use std::ops::Range;

use crate::object::BlockIndex;

/// Size of a cache block. 1 MiB: the largest read the kernel sends through FUSE (`max_read`
/// is at most 1 MiB), so a sequential read touches at most two blocks and a random 4 KiB
/// read costs one 1 MiB ranged GET (on OSS the request latency, not the extra bytes,
/// dominates that); the default 256 MiB budget holds 256 blocks, a cheap LRU; one block is
/// one disk-tier file, large enough for efficient file I/O and small enough for fine-grained
/// eviction.
pub const BLOCK_SIZE_BYTES: u64 = 1024 * 1024;

/// Read-ahead window of a new reader and after a seek: one block, so the first read-ahead
/// (which doubles it) asks for 2 MiB. Small, so a file read only in its first few MiB
/// (file(1), headers, thumbnails) costs little more than it reads.
pub const INITIAL_WINDOW_BYTES: u64 = BLOCK_SIZE_BYTES;

/// Largest read-ahead window of one reader: 64 MiB, i.e. eight 8 MiB GETs in flight per
/// sequential reader, enough to fill a 10 Gbit/s link at 50 ms per request. The global
/// memory budget bounds the sum over readers (mountpoint-s3's 2 GiB per handle is what gets
/// it OOM-killed with many readers).
pub const MAX_WINDOW_BYTES: u64 = 64 * 1024 * 1024;

/// Factor by which the window grows on each sequential extension.
pub const WINDOW_GROWTH_FACTOR: u64 = 2;

/// How far (in bytes, either way) a read may start from the frontier and still count as
/// sequential. The kernel issues up to `max_background` reads of one handle concurrently and
/// they reach us slightly out of order; 4 MiB covers that with margin.
pub const SEQUENTIAL_SLACK_BYTES: u64 = 4 * 1024 * 1024;

/// The blocks `[first, end)` that cover the bytes `[offset, end_offset)`.
pub fn blocks_covering(offset: u64, end_offset: u64, block_size: u64) -> Range<BlockIndex> {
    if end_offset <= offset {
        return offset / block_size..offset / block_size;
    }
    offset / block_size..end_offset.div_ceil(block_size)
}

/// Number of blocks of an object of `size` bytes.
pub fn block_count(size: u64, block_size: u64) -> BlockIndex {
    size.div_ceil(block_size)
}

/// Byte range of block `index` of an object of `size` bytes (the last block may be short).
pub fn block_byte_range(index: BlockIndex, size: u64, block_size: u64) -> Range<u64> {
    let start = index.saturating_mul(block_size).min(size);
    start..start.saturating_add(block_size).min(size)
}

/// Split `blocks` into runs that never cross a multiple of `part_blocks`, so each run is one
/// GET of at most a part, and two readers of the same object ask for the same aligned parts.
pub fn split_at_parts(blocks: Range<BlockIndex>, part_blocks: u64) -> Vec<Range<BlockIndex>> {
    let part_blocks = part_blocks.max(1);
    let mut runs = Vec::new();
    let mut start = blocks.start;
    while start < blocks.end {
        let boundary = (start / part_blocks + 1) * part_blocks;
        let end = boundary.min(blocks.end);
        runs.push(start..end);
        start = end;
    }
    runs
}

/// What one read should fetch: the blocks it needs now and the blocks to read ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPlan {
    /// Blocks covering the requested bytes.
    pub demand: Range<BlockIndex>,
    /// Blocks to prefetch (possibly empty); starts at or after `demand.end`.
    pub ahead: Range<BlockIndex>,
    /// Whether the read was judged sequential.
    pub sequential: bool,
}

/// Per-reader sequential detection and window state.
#[derive(Clone, Debug)]
pub struct ReadAhead {
    block_size: u64,
    part_blocks: u64,
    initial_window_blocks: u64,
    max_window_blocks: u64,
    /// End (bytes) of the furthest read so far; `None` before the first read.
    frontier: Option<u64>,
    /// Read-ahead has requested every block below this index (since the last seek).
    issued_until: BlockIndex,
    /// Current window, in blocks.
    window_blocks: u64,
}

impl ReadAhead {
    /// State for a new reader with the default window sizes. `part_size_bytes` aligns the end
    /// of large windows to part boundaries.
    pub fn new(part_size_bytes: u64) -> Self {
        Self::with_sizes(
            BLOCK_SIZE_BYTES,
            part_size_bytes,
            INITIAL_WINDOW_BYTES,
            MAX_WINDOW_BYTES,
        )
    }

    /// State with explicit sizes (all in bytes; windows are rounded to whole blocks, min 1).
    pub fn with_sizes(block_size: u64, part_size_bytes: u64, initial_window_bytes: u64, max_window_bytes: u64) -> Self {
        let block_size = block_size.max(1);
        let initial = (initial_window_bytes / block_size).max(1);
        let max = (max_window_bytes / block_size).max(initial);
        ReadAhead {
            block_size,
            part_blocks: (part_size_bytes / block_size).max(1),
            initial_window_blocks: initial,
            max_window_blocks: max,
            frontier: None,
            issued_until: 0,
            window_blocks: initial,
        }
    }

    /// Current window in bytes.
    pub fn window_bytes(&self) -> u64 {
        self.window_blocks * self.block_size
    }

    /// Blocks below this index have been requested by read-ahead.
    pub fn issued_until(&self) -> BlockIndex {
        self.issued_until
    }

    fn is_sequential(&self, offset: u64) -> bool {
        let Some(frontier) = self.frontier else {
            return false;
        };
        let issued_end = self.issued_until.saturating_mul(self.block_size);
        let near_frontier = offset.saturating_add(SEQUENTIAL_SLACK_BYTES) >= frontier
            && offset <= frontier.saturating_add(SEQUENTIAL_SLACK_BYTES);
        let inside_issued = offset >= frontier.saturating_sub(SEQUENTIAL_SLACK_BYTES) && offset < issued_end;
        near_frontier || inside_issued
    }

    /// Record a read of `len` bytes at `offset` of an object of `size` bytes and plan what to
    /// fetch. The caller reports back with [`ReadAhead::ahead_limited`] if it could not issue
    /// all of `ahead`.
    pub fn on_read(&mut self, offset: u64, len: u64, size: u64) -> ReadPlan {
        let end = offset.saturating_add(len).min(size);
        let demand = blocks_covering(offset.min(size), end, self.block_size);
        let last_block = block_count(size, self.block_size);
        let sequential = self.is_sequential(offset);
        self.frontier = Some(self.frontier.map_or(end, |f| if sequential { f.max(end) } else { end }));
        if !sequential {
            // First read or a seek: fetch only what is read; restart the window.
            self.window_blocks = self.initial_window_blocks;
            self.issued_until = demand.end;
            return ReadPlan {
                demand: demand.clone(),
                ahead: demand.end..demand.end,
                sequential,
            };
        }
        let issued = self.issued_until.max(demand.end);
        // Extend only once no more than half the window is left ahead of the reader: the
        // window then doubles for every half window consumed (growth follows consumption, not
        // the number of reads), and each extension is at least half a window, i.e. large GETs.
        let remaining = issued - demand.end;
        let grown = (self.window_blocks * WINDOW_GROWTH_FACTOR).min(self.max_window_blocks);
        let mut target = demand.end.saturating_add(grown);
        if grown >= self.part_blocks {
            target = target.div_ceil(self.part_blocks) * self.part_blocks;
        }
        let target = target.min(last_block);
        if remaining * 2 > self.window_blocks || target <= issued {
            self.issued_until = issued;
            return ReadPlan {
                demand,
                ahead: issued..issued,
                sequential,
            };
        }
        self.issued_until = target;
        self.window_blocks = grown;
        ReadPlan {
            demand,
            ahead: issued..target,
            sequential,
        }
    }

    /// The caller issued read-ahead only below `stopped_at` (the memory budget said no):
    /// remember that and halve the window (not below the initial one), as mountpoint-s3 does
    /// when memory cannot be reserved.
    pub fn ahead_limited(&mut self, stopped_at: BlockIndex) {
        self.issued_until = self.issued_until.min(stopped_at);
        self.window_blocks = (self.window_blocks / WINDOW_GROWTH_FACTOR).max(self.initial_window_blocks);
    }

    /// Blocks this reader had read ahead were gone (evicted before use) when it got to them:
    /// read-ahead is outrunning the cache, so halve the window.
    pub fn ahead_wasted(&mut self) {
        self.window_blocks = (self.window_blocks / WINDOW_GROWTH_FACTOR).max(self.initial_window_blocks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const KIB: u64 = 1024;

    #[test]
    fn blocks_covering_aligns_outward() {
        assert_eq!(blocks_covering(0, 1, MIB), 0..1);
        assert_eq!(blocks_covering(0, MIB, MIB), 0..1);
        assert_eq!(blocks_covering(MIB - 1, MIB + 1, MIB), 0..2);
        assert_eq!(blocks_covering(5 * MIB, 5 * MIB + 4 * KIB, MIB), 5..6);
        assert_eq!(blocks_covering(3 * MIB, 3 * MIB, MIB), 3..3);
    }

    #[test]
    fn block_ranges_clamp_to_size() {
        assert_eq!(block_count(0, MIB), 0);
        assert_eq!(block_count(1, MIB), 1);
        assert_eq!(block_count(MIB, MIB), 1);
        assert_eq!(block_count(MIB + 1, MIB), 2);
        assert_eq!(block_byte_range(0, 10, MIB), 0..10);
        assert_eq!(block_byte_range(1, 3 * MIB / 2, MIB), MIB..3 * MIB / 2);
        assert_eq!(block_byte_range(2, MIB, MIB), MIB..MIB);
    }

    #[test]
    fn split_at_parts_respects_part_grid() {
        assert_eq!(split_at_parts(0..8, 8), vec![0..8]);
        assert_eq!(split_at_parts(3..20, 8), vec![3..8, 8..16, 16..20]);
        assert_eq!(split_at_parts(5..5, 8), Vec::<Range<u64>>::new());
        assert_eq!(split_at_parts(0..3, 0), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn first_read_fetches_only_its_blocks() {
        let mut ra = ReadAhead::new(8 * MIB);
        let plan = ra.on_read(0, 128 * KIB, 1024 * MIB);
        assert_eq!(plan.demand, 0..1);
        assert!(plan.ahead.is_empty());
        assert!(!plan.sequential);
    }

    #[test]
    fn sequential_reads_grow_window_geometrically_to_cap() {
        let size = 4096 * MIB;
        let mut ra = ReadAhead::new(8 * MIB);
        ra.on_read(0, MIB, size);
        let mut windows = Vec::new();
        let mut total_ahead = 0;
        let mut extensions = 0;
        for i in 1..200u64 {
            let plan = ra.on_read(i * MIB, MIB, size);
            assert!(plan.sequential, "read {i}");
            assert_eq!(plan.demand, i..i + 1);
            if !plan.ahead.is_empty() {
                extensions += 1;
                assert!(plan.ahead.start >= plan.demand.end);
                total_ahead += plan.ahead.end - plan.ahead.start;
            }
            windows.push(ra.window_bytes());
            // Read-ahead never reaches further than the window (plus part alignment) past the read.
            assert!(ra.issued_until() <= i + 1 + MAX_WINDOW_BYTES / MIB + 8);
        }
        assert_eq!(windows[0], 2 * INITIAL_WINDOW_BYTES);
        assert!(
            windows.windows(2).all(|w| w[1] >= w[0]),
            "window never shrinks on sequential reads"
        );
        assert_eq!(*windows.last().unwrap(), MAX_WINDOW_BYTES);
        // Blocks 0 and 1 were demand; everything after them was read ahead exactly once, in few
        // large extensions.
        assert_eq!(ra.issued_until(), 2 + total_ahead);
        assert!(extensions <= 14, "extensions: {extensions}");
    }

    #[test]
    fn growth_follows_consumption_not_read_count() {
        // Many small reads inside the first block must not snowball the window.
        let size = 4096 * MIB;
        let mut ra = ReadAhead::new(8 * MIB);
        for i in 0..8u64 {
            ra.on_read(i * 128 * KIB, 128 * KIB, size);
        }
        assert!(
            ra.issued_until() <= 3,
            "issued {} blocks after reading one",
            ra.issued_until()
        );
        assert_eq!(ra.window_bytes(), 2 * INITIAL_WINDOW_BYTES);
        // The window doubles per half window consumed, so it is at most twice what was read (and
        // at most the cap): after reading n MiB, at most n + min(2n, cap) MiB (plus part
        // alignment) were requested.
        for i in 8..(64 * 8u64) {
            ra.on_read(i * 128 * KIB, 128 * KIB, size);
            let consumed_blocks = (i + 1) * 128 * KIB / MIB + 1;
            let bound = consumed_blocks + (2 * consumed_blocks).min(MAX_WINDOW_BYTES / MIB) + 8 + 2;
            assert!(ra.issued_until() <= bound, "read {i}: issued {}", ra.issued_until());
        }
    }

    #[test]
    fn large_windows_end_on_part_boundaries() {
        let size = 4096 * MIB;
        let mut ra = ReadAhead::new(8 * MIB);
        ra.on_read(0, MIB, size);
        for i in 1..100u64 {
            let plan = ra.on_read(i * MIB, MIB, size);
            if !plan.ahead.is_empty() && ra.window_bytes() > 8 * MIB {
                assert_eq!(plan.ahead.end % 8, 0, "{plan:?}");
            }
        }
    }

    #[test]
    fn seek_resets_window_and_fetches_only_demand() {
        let size = 4096 * MIB;
        let mut ra = ReadAhead::new(8 * MIB);
        for i in 0..20u64 {
            ra.on_read(i * MIB, MIB, size);
        }
        assert!(ra.window_bytes() > INITIAL_WINDOW_BYTES);
        let plan = ra.on_read(3000 * MIB, 4 * KIB, size);
        assert!(!plan.sequential);
        assert_eq!(plan.demand, 3000..3001);
        assert!(plan.ahead.is_empty());
        assert_eq!(ra.window_bytes(), INITIAL_WINDOW_BYTES);
        // Reading on from there restarts with the small window.
        let plan = ra.on_read(3000 * MIB + 4 * KIB, 4 * KIB, size);
        assert!(plan.sequential);
        assert_eq!(plan.ahead, 3001..3003);
    }

    #[test]
    fn random_reads_never_read_ahead() {
        let size = 4096 * MIB;
        let mut ra = ReadAhead::new(8 * MIB);
        for off in [100u64, 7, 3000, 42, 1500, 2, 900] {
            let plan = ra.on_read(off * MIB, 4 * KIB, size);
            assert!(plan.ahead.is_empty(), "{plan:?}");
            assert_eq!(plan.demand.end - plan.demand.start, 1);
        }
    }

    #[test]
    fn out_of_order_parallel_reads_stay_sequential() {
        let size = 1024 * MIB;
        let mut ra = ReadAhead::new(8 * MIB);
        ra.on_read(0, 128 * KIB, size);
        // The kernel's parallel 128 KiB reads arrive shuffled within a few requests.
        for chunk in (1..64u64).collect::<Vec<_>>().chunks(4) {
            for &i in chunk.iter().rev() {
                let plan = ra.on_read(i * 128 * KIB, 128 * KIB, size);
                assert!(plan.sequential, "read {i}");
            }
        }
        assert!(ra.window_bytes() > INITIAL_WINDOW_BYTES);
    }

    #[test]
    fn window_stops_at_object_end() {
        let size = 5 * MIB + 10;
        let mut ra = ReadAhead::new(8 * MIB);
        ra.on_read(0, MIB, size);
        let plan = ra.on_read(MIB, MIB, size);
        assert_eq!(plan.ahead, 2..4);
        let plan = ra.on_read(2 * MIB, MIB, size);
        assert_eq!(plan.ahead, 4..6);
        let plan = ra.on_read(3 * MIB, MIB, size);
        assert!(plan.ahead.is_empty());
        let plan = ra.on_read(5 * MIB, MIB, size);
        assert_eq!(plan.demand, 5..6);
        assert!(plan.ahead.is_empty());
        // Reads at or past the end have no blocks.
        let plan = ra.on_read(size, MIB, size);
        assert!(plan.demand.is_empty() && plan.ahead.is_empty());
    }

    #[test]
    fn budget_denial_halves_window_and_rewinds_issued() {
        let size = 4096 * MIB;
        let mut ra = ReadAhead::new(8 * MIB);
        for i in 0..10u64 {
            ra.on_read(i * MIB, MIB, size);
        }
        let before = ra.window_bytes();
        let issued = ra.issued_until();
        ra.ahead_limited(issued - 4);
        assert_eq!(ra.window_bytes(), before / 2);
        assert_eq!(ra.issued_until(), issued - 4);
        // The blocks that were not issued get asked for again by a later sequential read.
        let next = (10..200u64)
            .map(|i| ra.on_read(i * MIB, MIB, size))
            .find(|plan| !plan.ahead.is_empty())
            .unwrap();
        assert!(next.sequential);
        assert_eq!(next.ahead.start, issued - 4);
        for _ in 0..20 {
            ra.ahead_wasted();
        }
        assert_eq!(ra.window_bytes(), INITIAL_WINDOW_BYTES);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn plans_stay_within_object_and_window(
                size in 0u64..(600 * MIB),
                reads in proptest::collection::vec((0u64..(700 * MIB), 1u64..(2 * MIB), any::<bool>()), 1..80),
            ) {
                let part = 8 * MIB;
                let mut ra = ReadAhead::new(part);
                let mut offset_prev_end = 0u64;
                for (offset, len, continue_on) in reads {
                    // Mix sequential continuations with arbitrary jumps.
                    let offset = if continue_on { offset_prev_end } else { offset };
                    let plan = ra.on_read(offset, len, size);
                    let last = block_count(size, MIB);
                    if offset < size {
                        let end = (offset + len).min(size);
                        prop_assert_eq!(plan.demand.clone(), blocks_covering(offset, end, MIB));
                    } else {
                        prop_assert!(plan.demand.is_empty());
                    }
                    prop_assert!(plan.ahead.start >= plan.demand.end || plan.ahead.is_empty());
                    prop_assert!(plan.ahead.end <= last.max(plan.ahead.start));
                    prop_assert!(plan.ahead.end <= plan.demand.end + MAX_WINDOW_BYTES / MIB + part / MIB);
                    if !plan.sequential {
                        prop_assert!(plan.ahead.is_empty());
                        prop_assert_eq!(ra.window_bytes(), INITIAL_WINDOW_BYTES);
                    }
                    prop_assert!(ra.window_bytes() >= INITIAL_WINDOW_BYTES && ra.window_bytes() <= MAX_WINDOW_BYTES);
                    offset_prev_end = offset.saturating_add(len);
                }
            }
        }
    }
}
