//! Getting blocks from OSS: read-ahead planning, in-flight de-duplication, request and memory
//! limits. This layer knows nothing about the cache; it delivers blocks through the
//! [`BlockSink`] trait, which the cache implements (imports point down only).
//!
//! # Pipeline
//!
//! A read of one open file turns into a [`window::ReadPlan`]: the *demand* blocks it needs now
//! and, if the reader is sequential, *ahead* blocks to prefetch. [`Fetcher::fetch`] claims, under
//! one lock, every block that is neither cached nor already being fetched, groups the claimed
//! blocks into contiguous runs that never cross a `part_size` boundary (one ranged GET each, so
//! a long sequential read becomes parallel 8 MiB GETs, aligned so that two readers of one object
//! ask for the same parts), and spawns one task per GET. Blocks another GET is already fetching
//! are not fetched again: the caller gets a handle on that GET's result (a `watch` channel per
//! GET, shared by all its blocks). A landed GET is cut into blocks, which go to the sink and to
//! the waiters; failures go to the waiters only, so errors are never cached.
//!
//! # Limits
//!
//! - At most `max_concurrency` GETs run at once (a global semaphore), read-ahead at most three
//!   quarters of them, so a reader waiting on a block always finds a free slot soon.
//! - Every GET reserves its bytes from the [`budget::MemoryBudget`] first. Read-ahead uses
//!   `try_reserve` at planning time: when the in-flight share of the budget is used up it issues
//!   nothing more and tells the reader's window to shrink, instead of exceeding the budget.
//!   Demand GETs wait for room, inside their task.
//! - Every GET carries `If-Match: <ETag>`: if the object changed since it was opened, the read
//!   fails with `PreconditionFailed` (the filesystem maps that to `ESTALE`) rather than mixing
//!   two versions.
//!
//! # Locks
//!
//! One lock here: the in-flight map. While holding it, [`Fetcher::fetch`] calls the sink's
//! `get`/`contains` (which take the cache's locks), so the order is: in-flight map, then cache
//! locks. A GET task calls `BlockSink::insert` without holding the map, and removes its entries
//! from the map only after delivering, so a block is always findable in one of the two.

pub mod budget;
pub mod window;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{Semaphore, watch};

use crate::auth::AuthError;
use crate::client::{ClientError, GetObjectParams, ObjectClient};
use crate::object::{BlockIndex, BlockKey, ObjectId};

use budget::{Charge, MemoryBudget, Reservation};
use window::{block_byte_range, split_at_parts};

/// Read-ahead GETs may use at most this share of `max_concurrency` (numerator over
/// `READ_AHEAD_REQUEST_SHARE_DENOMINATOR`, at least one request): the rest is kept for GETs a
/// reader is waiting on, so a random read is not queued behind other readers' read-ahead.
pub const READ_AHEAD_REQUEST_SHARE_NUMERATOR: usize = 3;
/// See [`READ_AHEAD_REQUEST_SHARE_NUMERATOR`].
pub const READ_AHEAD_REQUEST_SHARE_DENOMINATOR: usize = 4;

/// Where fetched blocks go. Implemented by the cache.
pub trait BlockSink: Send + Sync + 'static {
    /// The block if it is held in memory. Must be cheap: called with the in-flight map locked.
    fn get(&self, key: &BlockKey) -> Option<Bytes>;
    /// Whether the block can be had without a GET (memory or a local tier). Must be cheap and
    /// must not do I/O: called with the in-flight map locked.
    fn contains(&self, key: &BlockKey) -> bool;
    /// A GET delivered this block. `charge` accounts for the allocation the block is a slice of
    /// and must be kept as long as the block is. `ahead`: fetched ahead of its reader, which
    /// has not read it yet (see [`budget::MemoryBudget::add_unread`]).
    fn insert(&self, key: BlockKey, data: Bytes, charge: Arc<Charge>, ahead: bool);
    /// Memory was reserved for a GET: evict until the budget is within its limit again.
    fn reclaim(&self);
}

/// Why a block could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum PrefetchError {
    /// The GET covering the block failed.
    #[error("GET {key} bytes {start}..{end}: {source}")]
    Get {
        key: String,
        start: u64,
        end: u64,
        #[source]
        source: ClientError,
    },
    /// The task running the GET ended without a result (runtime shutting down, or a bug).
    #[error("GET {key} bytes {start}..{end} ended without a result")]
    Lost { key: String, start: u64, end: u64 },
}

impl PrefetchError {
    /// The client error behind this failure (a lost task is reported as a transport error).
    pub fn into_client_error(self) -> ClientError {
        match self {
            PrefetchError::Get { source, .. } => source,
            lost @ PrefetchError::Lost { .. } => ClientError::Transport(lost.to_string()),
        }
    }
}

/// Sizes and limits of a [`Fetcher`].
#[derive(Clone, Debug)]
pub struct FetcherConfig {
    /// Size of a cache block; every GET covers whole blocks.
    pub block_size_bytes: u64,
    /// Largest GET (rounded down to whole blocks, at least one).
    pub part_size_bytes: u64,
    /// GETs running at once, over all readers.
    pub max_concurrency: usize,
}

/// Counters of a [`Fetcher`], all monotonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// GET requests sent.
    pub get_requests: u64,
    /// Bytes received by successful GETs.
    pub get_bytes: u64,
    /// GETs that failed.
    pub get_errors: u64,
    /// GETs issued as read-ahead (a subset of `get_requests`).
    pub ahead_gets: u64,
    /// Blocks a reader needed that another GET was already fetching (de-duplicated).
    pub dedup_waits: u64,
    /// Times read-ahead stopped short because the in-flight memory share was used up.
    pub ahead_denied: u64,
}

#[derive(Default)]
struct Counters {
    get_requests: AtomicU64,
    get_bytes: AtomicU64,
    get_errors: AtomicU64,
    ahead_gets: AtomicU64,
    dedup_waits: AtomicU64,
    ahead_denied: AtomicU64,
}

type Outcome = Result<Arc<[Bytes]>, Arc<ClientError>>;
type InFlightMap = HashMap<BlockKey, Pending>;
/// A GET to spawn: its blocks, its reservation (read-ahead reserves at planning time), and the
/// channel its waiters listen on.
type PlannedGet = (Range<BlockIndex>, Option<Reservation>, watch::Sender<Option<Outcome>>);

/// A block being fetched by some GET: that GET's result channel and the block's slot in it.
#[derive(Clone)]
struct Pending {
    rx: watch::Receiver<Option<Outcome>>,
    slot: usize,
    range: Range<u64>,
}

/// A demand block: already available, or the GET that will deliver it.
pub struct BlockWait {
    key: Arc<str>,
    state: WaitState,
}

enum WaitState {
    Ready(Bytes),
    Pending(Pending),
}

impl BlockWait {
    /// The block's bytes, once its GET has landed.
    pub async fn wait(self) -> Result<Bytes, PrefetchError> {
        let pending = match self.state {
            WaitState::Ready(data) => return Ok(data),
            WaitState::Pending(p) => p,
        };
        let Pending { mut rx, slot, range } = pending;
        let lost = || PrefetchError::Lost {
            key: self.key.to_string(),
            start: range.start,
            end: range.end,
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => return Err(lost()),
        };
        match outcome {
            Some(Ok(blocks)) => blocks.get(slot).cloned().ok_or_else(lost),
            Some(Err(e)) => Err(PrefetchError::Get {
                key: self.key.to_string(),
                start: range.start,
                end: range.end,
                source: clone_client_error(&e),
            }),
            None => Err(lost()),
        }
    }
}

/// What [`Fetcher::fetch`] did.
pub struct Fetched {
    /// One entry per demand block: where its bytes will come from.
    pub waits: Vec<(BlockIndex, BlockWait)>,
    /// Demand blocks for which a new GET was issued (neither cached nor in flight).
    pub claimed_demand: Vec<BlockIndex>,
    /// Read-ahead stopped at this block because the memory budget had no room.
    pub ahead_stopped_at: Option<BlockIndex>,
}

/// Fetches blocks of objects for all readers of a mount.
pub struct Fetcher<C: ObjectClient> {
    client: Arc<C>,
    sink: Arc<dyn BlockSink>,
    budget: Arc<MemoryBudget>,
    requests: Arc<Semaphore>,
    ahead_requests: Arc<Semaphore>,
    block_size: u64,
    run_blocks: u64,
    in_flight: Arc<Mutex<InFlightMap>>,
    counters: Arc<Counters>,
}

fn lock_map(map: &Mutex<InFlightMap>) -> MutexGuard<'_, InFlightMap> {
    // A panic while holding the lock cannot leave the map inconsistent (single inserts and
    // removes), so a poisoned lock is still usable.
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C: ObjectClient> Fetcher<C> {
    /// A fetcher delivering into `sink`, reserving memory from `budget`.
    pub fn new(client: Arc<C>, sink: Arc<dyn BlockSink>, budget: Arc<MemoryBudget>, config: FetcherConfig) -> Self {
        let block_size = config.block_size_bytes.max(1);
        let part_blocks = (config.part_size_bytes / block_size).max(1);
        Fetcher {
            client,
            sink,
            run_blocks: part_blocks.min(budget.max_reservation_blocks()),
            budget,
            requests: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            ahead_requests: Arc::new(Semaphore::new(
                (config.max_concurrency * READ_AHEAD_REQUEST_SHARE_NUMERATOR / READ_AHEAD_REQUEST_SHARE_DENOMINATOR)
                    .max(1),
            )),
            block_size,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> FetchStats {
        let c = &self.counters;
        FetchStats {
            get_requests: c.get_requests.load(Ordering::Relaxed),
            get_bytes: c.get_bytes.load(Ordering::Relaxed),
            get_errors: c.get_errors.load(Ordering::Relaxed),
            ahead_gets: c.ahead_gets.load(Ordering::Relaxed),
            dedup_waits: c.dedup_waits.load(Ordering::Relaxed),
            ahead_denied: c.ahead_denied.load(Ordering::Relaxed),
        }
    }

    /// Blocks currently being fetched.
    pub fn in_flight_blocks(&self) -> usize {
        lock_map(&self.in_flight).len()
    }

    /// Make sure the `demand` blocks of `object` (which is `size` bytes long) are on their way
    /// and start read-ahead of `ahead`. Demand blocks the sink has in memory are returned
    /// ready. Must be called within a tokio runtime (GETs run as spawned tasks, so they
    /// complete and fill the cache even if the caller stops waiting).
    pub fn fetch(&self, object: &ObjectId, size: u64, demand: &[BlockIndex], ahead: Range<BlockIndex>) -> Fetched {
        let key_name: Arc<str> = Arc::from(object.key());
        let mut waits = Vec::with_capacity(demand.len());
        let mut claimed_demand = Vec::new();
        let mut gets: Vec<PlannedGet> = Vec::new();
        let mut ahead_stopped_at = None;
        {
            let mut map = lock_map(&self.in_flight);
            for &index in demand {
                let key = BlockKey {
                    object: object.clone(),
                    index,
                };
                if let Some(p) = map.get(&key) {
                    self.counters.dedup_waits.fetch_add(1, Ordering::Relaxed);
                    waits.push((
                        index,
                        BlockWait {
                            key: key_name.clone(),
                            state: WaitState::Pending(p.clone()),
                        },
                    ));
                } else if let Some(data) = self.sink.get(&key) {
                    waits.push((
                        index,
                        BlockWait {
                            key: key_name.clone(),
                            state: WaitState::Ready(data),
                        },
                    ));
                } else {
                    claimed_demand.push(index);
                }
            }
            for run in contiguous_runs(&claimed_demand) {
                for blocks in split_at_parts(run, self.run_blocks) {
                    let tx = self.register(&mut map, object, size, blocks.clone());
                    for index in blocks.clone() {
                        let key = BlockKey {
                            object: object.clone(),
                            index,
                        };
                        if let Some(p) = map.get(&key) {
                            waits.push((
                                index,
                                BlockWait {
                                    key: key_name.clone(),
                                    state: WaitState::Pending(p.clone()),
                                },
                            ));
                        }
                    }
                    gets.push((blocks, None, tx));
                }
            }
            let claimable: Vec<BlockIndex> = ahead
                .filter(|&index| {
                    let key = BlockKey {
                        object: object.clone(),
                        index,
                    };
                    !map.contains_key(&key) && !self.sink.contains(&key)
                })
                .collect();
            'ahead: for run in contiguous_runs(&claimable) {
                for blocks in split_at_parts(run, self.run_blocks) {
                    let Some(reservation) = self.budget.try_reserve(blocks.end - blocks.start) else {
                        self.counters.ahead_denied.fetch_add(1, Ordering::Relaxed);
                        ahead_stopped_at = Some(blocks.start);
                        break 'ahead;
                    };
                    let tx = self.register(&mut map, object, size, blocks.clone());
                    gets.push((blocks, Some(reservation), tx));
                }
            }
        }
        for (blocks, reservation, tx) in gets {
            if reservation.is_some() {
                self.counters.ahead_gets.fetch_add(1, Ordering::Relaxed);
            }
            let task = GetTask {
                client: self.client.clone(),
                sink: self.sink.clone(),
                budget: self.budget.clone(),
                requests: self.requests.clone(),
                ahead_requests: self.ahead_requests.clone(),
                in_flight: self.in_flight.clone(),
                counters: self.counters.clone(),
                object: object.clone(),
                size,
                block_size: self.block_size,
                blocks,
            };
            tokio::spawn(task.run(reservation, tx));
        }
        Fetched {
            waits,
            claimed_demand,
            ahead_stopped_at,
        }
    }

    /// Enter `blocks` in the in-flight map as one GET and return the GET's result channel.
    fn register(
        &self,
        map: &mut InFlightMap,
        object: &ObjectId,
        size: u64,
        blocks: Range<BlockIndex>,
    ) -> watch::Sender<Option<Outcome>> {
        let (tx, rx) = watch::channel(None);
        let range = get_byte_range(&blocks, size, self.block_size);
        for (slot, index) in blocks.enumerate() {
            let pending = Pending {
                rx: rx.clone(),
                slot,
                range: range.clone(),
            };
            map.insert(
                BlockKey {
                    object: object.clone(),
                    index,
                },
                pending,
            );
        }
        tx
    }
}

/// Bytes covered by the blocks `blocks` of an object of `size` bytes.
fn get_byte_range(blocks: &Range<BlockIndex>, size: u64, block_size: u64) -> Range<u64> {
    let start = block_byte_range(blocks.start, size, block_size).start;
    let end = block_byte_range(blocks.end.saturating_sub(1), size, block_size).end;
    start..end.max(start)
}

/// Group sorted, distinct indices into maximal contiguous ranges.
fn contiguous_runs(indices: &[BlockIndex]) -> Vec<Range<BlockIndex>> {
    let mut runs: Vec<Range<BlockIndex>> = Vec::new();
    for &i in indices {
        match runs.last_mut() {
            Some(run) if run.end == i => run.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

/// One GET and the delivery of its blocks.
struct GetTask<C: ObjectClient> {
    client: Arc<C>,
    sink: Arc<dyn BlockSink>,
    budget: Arc<MemoryBudget>,
    requests: Arc<Semaphore>,
    ahead_requests: Arc<Semaphore>,
    in_flight: Arc<Mutex<InFlightMap>>,
    counters: Arc<Counters>,
    object: ObjectId,
    size: u64,
    block_size: u64,
    blocks: Range<BlockIndex>,
}

/// Removes a GET's entries from the in-flight map when the task ends, however it ends.
struct Unregister {
    in_flight: Arc<Mutex<InFlightMap>>,
    object: ObjectId,
    blocks: Range<BlockIndex>,
    rx: watch::Receiver<Option<Outcome>>,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        let mut map = lock_map(&self.in_flight);
        for index in self.blocks.clone() {
            let key = BlockKey {
                object: self.object.clone(),
                index,
            };
            if map.get(&key).is_some_and(|p| p.rx.same_channel(&self.rx)) {
                map.remove(&key);
            }
        }
    }
}

impl<C: ObjectClient> GetTask<C> {
    async fn run(self, reservation: Option<Reservation>, tx: watch::Sender<Option<Outcome>>) {
        let unregister = Unregister {
            in_flight: self.in_flight.clone(),
            object: self.object.clone(),
            blocks: self.blocks.clone(),
            rx: tx.subscribe(),
        };
        let nblocks = self.blocks.end - self.blocks.start;
        let is_ahead = reservation.is_some();
        let reservation = match reservation {
            Some(r) => r,
            None => self.budget.reserve(nblocks).await,
        };
        self.sink.reclaim();
        let range = get_byte_range(&self.blocks, self.size, self.block_size);
        let params = GetObjectParams::new(self.object.key())
            .range(range.clone())
            .if_match(self.object.etag().clone());
        let result = {
            // Read-ahead first takes a permit of its share, then one of the total. The
            // semaphores are never closed; without a permit the GET still runs.
            let _ahead_permit = if is_ahead {
                self.ahead_requests.acquire().await.ok()
            } else {
                None
            };
            let _permit = self.requests.acquire().await.ok();
            self.counters.get_requests.fetch_add(1, Ordering::Relaxed);
            self.client.get_object(params).await
        };
        let outcome = match result {
            Ok(got) if got.offset == range.start && got.data.len() as u64 == range.end - range.start => {
                self.counters
                    .get_bytes
                    .fetch_add(got.data.len() as u64, Ordering::Relaxed);
                Ok(self.deliver(got.data, reservation, is_ahead))
            }
            Ok(got) => Err(ClientError::InvalidResponse(format!(
                "GET {} bytes {}..{} returned {} bytes at offset {}",
                self.object.key(),
                range.start,
                range.end,
                got.data.len(),
                got.offset
            ))),
            Err(e) => Err(e),
        };
        let outcome = outcome.map_err(|e| {
            self.counters.get_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(key = self.object.key(), start = range.start, end = range.end, error = %e, "block GET failed");
            Arc::new(e)
        });
        // Leave the in-flight map before waking the waiters: a reader woken by a failure and
        // retrying at once must start a new GET, not find this failed one. (Delivered blocks
        // are already in the sink.)
        drop(unregister);
        tx.send_replace(Some(outcome));
    }

    /// Cut the response into blocks, hand them to the sink, and return them for the waiters.
    fn deliver(&self, data: Bytes, reservation: Reservation, ahead: bool) -> Arc<[Bytes]> {
        let charge = Arc::new(reservation.into_charge(data.len() as u64));
        let mut blocks = Vec::with_capacity((self.blocks.end - self.blocks.start) as usize);
        let base = block_byte_range(self.blocks.start, self.size, self.block_size).start;
        for index in self.blocks.clone() {
            let r = block_byte_range(index, self.size, self.block_size);
            let block = data.slice((r.start - base) as usize..(r.end - base) as usize);
            self.sink.insert(
                BlockKey {
                    object: self.object.clone(),
                    index,
                },
                block.clone(),
                charge.clone(),
                ahead,
            );
            blocks.push(block);
        }
        Arc::from(blocks)
    }
}

/// A copy of a client error, for every reader waiting on one failed GET. Exhaustive on purpose:
/// a new variant must decide how it is shared.
pub fn clone_client_error(e: &ClientError) -> ClientError {
    match e {
        ClientError::NoSuchKey(s) => ClientError::NoSuchKey(s.clone()),
        ClientError::NoSuchBucket(s) => ClientError::NoSuchBucket(s.clone()),
        ClientError::AccessDenied(s) => ClientError::AccessDenied(s.clone()),
        ClientError::PreconditionFailed(s) => ClientError::PreconditionFailed(s.clone()),
        ClientError::AlreadyExists(s) => ClientError::AlreadyExists(s.clone()),
        ClientError::InvalidRange(s) => ClientError::InvalidRange(s.clone()),
        ClientError::AppendPositionMismatch { error, next_position } => ClientError::AppendPositionMismatch {
            error: error.clone(),
            next_position: *next_position,
        },
        ClientError::NotAppendable(s) => ClientError::NotAppendable(s.clone()),
        ClientError::Service(s) => ClientError::Service(s.clone()),
        ClientError::Credentials(a) => ClientError::Credentials(clone_auth_error(a)),
        ClientError::Transport(m) => ClientError::Transport(m.clone()),
        ClientError::Integrity { what, expected, actual } => ClientError::Integrity {
            what: what.clone(),
            expected: *expected,
            actual: *actual,
        },
        ClientError::InvalidResponse(m) => ClientError::InvalidResponse(m.clone()),
        ClientError::InvalidRequest(m) => ClientError::InvalidRequest(m.clone()),
    }
}

fn clone_auth_error(e: &AuthError) -> AuthError {
    match e {
        AuthError::Service {
            source_name,
            code,
            message,
            request_id,
        } => AuthError::Service {
            source_name: source_name.clone(),
            code: code.clone(),
            message: message.clone(),
            request_id: request_id.clone(),
        },
        AuthError::Unreachable { source_name, message } => AuthError::Unreachable {
            source_name: source_name.clone(),
            message: message.clone(),
        },
        AuthError::InvalidResponse { source_name, message } => AuthError::InvalidResponse {
            source_name: source_name.clone(),
            message: message.clone(),
        },
        AuthError::Config { source_name, message } => AuthError::Config {
            source_name: source_name.clone(),
            message: message.clone(),
        },
        AuthError::NotFound(m) => AuthError::NotFound(m.clone()),
        AuthError::Expired { last_error } => AuthError::Expired {
            last_error: last_error.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_runs_group_neighbours() {
        assert_eq!(contiguous_runs(&[]), Vec::<Range<u64>>::new());
        assert_eq!(contiguous_runs(&[3]), vec![3..4]);
        assert_eq!(contiguous_runs(&[1, 2, 3, 7, 8, 10]), vec![1..4, 7..9, 10..11]);
    }

    #[test]
    fn get_byte_range_clamps_last_block() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(get_byte_range(&(0..2), 10 * MIB, MIB), 0..2 * MIB);
        assert_eq!(get_byte_range(&(8..10), 9 * MIB + 7, MIB), 8 * MIB..9 * MIB + 7);
    }

    #[test]
    fn cloned_errors_keep_variant_and_message() {
        let e = ClientError::Credentials(AuthError::Expired {
            last_error: "sts down".into(),
        });
        let c = clone_client_error(&e);
        assert!(matches!(c, ClientError::Credentials(AuthError::Expired { .. })));
        assert_eq!(c.to_string(), e.to_string());
        let e = ClientError::Transport("reset".into());
        assert_eq!(clone_client_error(&e).to_string(), e.to_string());
    }
}
