//! Data reads for open files. `DataCache` is shared by the whole filesystem; `DataReader` is the
//! per-open-file read state (`open` makes one for an object version, `read` is `&self` and may be
//! called concurrently, since the kernel issues parallel reads for one handle).
//!
//! This first version reads each request straight from the client (no caching, no read-ahead);
//! the block cache and prefetcher replace the internals behind the same API.

use std::sync::Arc;

use bytes::Bytes;

use crate::client::{ClientError, GetObjectParams, ObjectClient};
use crate::object::ObjectId;

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
    pub part_size_bytes: u64,
    pub max_concurrency: usize,
    pub memory_limit_bytes: u64,
    pub cache_dir: Option<std::path::PathBuf>,
    pub cache_size_bytes: u64,
}

/// Shared read machinery of one mount.
pub struct DataCache<C: ObjectClient> {
    client: Arc<C>,
    #[allow(dead_code)]
    config: DataCacheConfig,
}

impl<C: ObjectClient> DataCache<C> {
    pub fn new(client: Arc<C>, config: DataCacheConfig) -> Self {
        DataCache { client, config }
    }

    /// Read state for one open file of the object version `object`, which is `size` bytes long.
    pub fn open(self: &Arc<Self>, object: ObjectId, size: u64) -> DataReader<C> {
        DataReader { cache: self.clone(), object, size }
    }
}

/// Per-open-file read state.
pub struct DataReader<C: ObjectClient> {
    cache: Arc<DataCache<C>>,
    object: ObjectId,
    size: u64,
}

impl<C: ObjectClient> DataReader<C> {
    pub fn object(&self) -> &ObjectId {
        &self.object
    }

    /// Up to `len` bytes at `offset`; shorter only at the end of the object.
    pub async fn read(&self, offset: u64, len: usize) -> Result<Bytes, CacheError> {
        if offset >= self.size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + len as u64).min(self.size);
        let params = GetObjectParams::new(self.object.key())
            .range(offset..end)
            .if_match(self.object.etag().clone());
        let result = self.cache.client.get_object(params).await.map_err(|source| CacheError::Client {
            key: self.object.key().to_string(),
            offset,
            source,
        })?;
        Ok(result.data)
    }
}
