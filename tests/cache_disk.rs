//! The disk tier of `DataCache`: round trip, permissions, corruption, eviction by size,
//! invalidation, start-up and shutdown cleanup.

mod cache_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cache_support::{FakeClient, KIB, MIB};
use ossmount::cache::{DISK_CACHE_SUBDIR, DataCache, DataCacheConfig, DataReader};

fn config(dir: &Path, memory_limit_bytes: u64, cache_size_bytes: u64) -> DataCacheConfig {
    DataCacheConfig {
        part_size_bytes: 8 * MIB,
        max_concurrency: 16,
        memory_limit_bytes,
        cache_dir: Some(dir.to_path_buf()),
        cache_size_bytes,
    }
}

fn block_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in fs::read_dir(dir).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            for f in fs::read_dir(&sub).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "blk") {
                    out.push(f);
                }
            }
        }
    }
    out
}

async fn check_read(reader: &DataReader<FakeClient>, client: &FakeClient, offset: u64, len: u64) {
    let got = reader.read(offset, len as usize).await.unwrap();
    let want = client.expected(reader.object().key(), offset..offset + len);
    assert!(got[..] == want[..], "content at {offset}");
}

async fn read_all(reader: &DataReader<FakeClient>, client: &FakeClient, size: u64) {
    let mut off = 0;
    while off < size {
        check_read(reader, client, off, 256 * KIB).await;
        off += 256 * KIB;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_round_trip_through_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let client = Arc::new(FakeClient::new());
    // Memory half the object: the start of a second pass must come from disk, not memory.
    let cache = Arc::new(DataCache::try_new(client.clone(), config(tmp.path(), 8 * MIB, 64 * MIB)).unwrap());
    let size = 16 * MIB + 5;
    let id = client.put("disk", size);
    let reader = cache.open(id.clone(), size);
    read_all(&reader, &client, size).await;
    cache.flush_disk();
    let stats = cache.stats();
    let disk = stats.disk.clone().unwrap();
    assert_eq!(disk.blocks, 17, "{stats:?}");
    assert_eq!(block_files(cache.disk_dir().unwrap()).len(), 17);
    assert!(disk.used_bytes > size && disk.used_bytes < size + 17 * KIB);
    let gets = client.gets();

    let again = cache.open(id, size);
    // Two sequential reads open a read-ahead window: its blocks are read ahead from disk.
    check_read(&again, &client, 0, 128 * KIB).await;
    check_read(&again, &client, 128 * KIB, 128 * KIB).await;
    for _ in 0..100 {
        if cache.stats().disk_prefetches >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(cache.stats().disk_prefetches, 2, "{:?}", cache.stats());
    let hits_before = cache.stats().memory_hits;
    check_read(&again, &client, MIB, 128 * KIB).await;
    check_read(&again, &client, 2 * MIB, 128 * KIB).await;
    assert_eq!(
        cache.stats().memory_hits,
        hits_before + 2,
        "read-ahead blocks came from memory"
    );
    read_all(&again, &client, size).await;
    assert_eq!(client.gets(), gets, "second pass served locally");
    let stats = cache.stats();
    assert!(stats.disk_hits + stats.disk_prefetches >= 8, "{stats:?}");
    assert!(stats.memory_peak_bytes <= 8 * MIB, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_is_private_and_files_are_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("not-yet-there");
    let client = Arc::new(FakeClient::new());
    let cache = Arc::new(DataCache::try_new(client.clone(), config(&base, 8 * MIB, 64 * MIB)).unwrap());
    let dir = cache.disk_dir().unwrap().to_path_buf();
    assert_eq!(dir, base.join(DISK_CACHE_SUBDIR));
    assert_eq!(fs::metadata(&base).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let id = client.put("perm", 2 * MIB);
    cache.open(id, 2 * MIB).read(0, 10).await.unwrap();
    cache.flush_disk();
    let files = block_files(&dir);
    assert_eq!(files.len(), 1);
    assert_eq!(fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(files[0].parent().unwrap()).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_block_is_discarded_and_refetched() {
    let tmp = tempfile::tempdir().unwrap();
    let client = Arc::new(FakeClient::new());
    // Memory holds only two blocks so the block we corrupt is gone from memory.
    let cache = Arc::new(DataCache::try_new(client.clone(), config(tmp.path(), 2 * MIB, 64 * MIB)).unwrap());
    let size = 8 * MIB;
    let id = client.put("corrupt", size);
    // Random reads, one block each, so nothing is read ahead.
    for b in [0u64, 5, 2, 7, 3] {
        check_read(&cache.open(id.clone(), size), &client, b * MIB + 17, 100).await;
    }
    cache.flush_disk();
    let files = block_files(cache.disk_dir().unwrap());
    assert_eq!(files.len(), 5);
    for f in &files {
        let mut raw = fs::read(f).unwrap();
        let n = raw.len();
        raw[n - 1000] ^= 0x40;
        fs::write(f, raw).unwrap();
    }
    let gets = client.gets();
    for b in [0u64, 5, 2, 7, 3] {
        check_read(&cache.open(id.clone(), size), &client, b * MIB + 17, 100).await;
    }
    let stats = cache.stats();
    let disk = stats.disk.clone().unwrap();
    // Whatever memory still held was served from memory; every block that went to disk was
    // found corrupt, discarded and fetched again.
    let refetched = client.gets() - gets;
    assert!(refetched >= 3, "{stats:?}");
    assert_eq!(disk.corrupt, refetched, "{stats:?}");
    assert_eq!(stats.disk_hits, 0, "a corrupt block must never be served: {stats:?}");
    cache.flush_disk();
    // The refetched blocks were written again, intact.
    assert_eq!(cache.stats().disk.unwrap().blocks, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_is_bounded_and_evicts_least_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let client = Arc::new(FakeClient::new());
    let cap = 5 * MIB + 5 * KIB;
    let cache = Arc::new(DataCache::try_new(client.clone(), config(tmp.path(), 4 * MIB, cap)).unwrap());
    let size = 16 * MIB;
    let id = client.put("evict", size);
    let reader = cache.open(id.clone(), size);
    read_all(&reader, &client, size).await;
    cache.flush_disk();
    let disk = cache.stats().disk.unwrap();
    assert_eq!(disk.blocks, 5, "{disk:?}");
    assert!(disk.used_bytes <= cap);
    assert_eq!(disk.evictions, disk.writes - 5, "{disk:?}");
    assert!(disk.writes >= 16);
    assert_eq!(block_files(cache.disk_dir().unwrap()).len(), 5);
    // The last five blocks survived; an early one has to be fetched again.
    let gets = client.gets();
    check_read(&cache.open(id.clone(), size), &client, 15 * MIB, 100).await;
    assert_eq!(client.gets(), gets);
    check_read(&cache.open(id, size), &client, 0, 100).await;
    assert_eq!(client.gets(), gets + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_removes_blocks_from_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let client = Arc::new(FakeClient::new());
    let cache = Arc::new(DataCache::try_new(client.clone(), config(tmp.path(), 8 * MIB, 64 * MIB)).unwrap());
    let a = client.put("a", 3 * MIB);
    let b = client.put("b", 3 * MIB);
    read_all(&cache.open(a, 3 * MIB), &client, 3 * MIB).await;
    read_all(&cache.open(b, 3 * MIB), &client, 3 * MIB).await;
    cache.flush_disk();
    assert_eq!(block_files(cache.disk_dir().unwrap()).len(), 6);
    cache.invalidate("a");
    assert_eq!(block_files(cache.disk_dir().unwrap()).len(), 3);
    assert_eq!(cache.stats().disk.unwrap().blocks, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_files_are_cleared_at_start_and_directory_removed_at_end() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join(DISK_CACHE_SUBDIR).join("ab");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("stale.blk"), b"left over from a crash").unwrap();
    fs::write(tmp.path().join("unrelated"), b"not ours").unwrap();
    let client = Arc::new(FakeClient::new());
    let cache = DataCache::try_new(client.clone(), config(tmp.path(), 8 * MIB, 64 * MIB)).unwrap();
    assert!(!old.exists());
    assert!(tmp.path().join(DISK_CACHE_SUBDIR).is_dir());
    drop(cache);
    assert!(!tmp.path().join(DISK_CACHE_SUBDIR).exists());
    assert!(
        tmp.path().join("unrelated").exists(),
        "only our subdirectory is touched"
    );
}

#[test]
fn unusable_cache_dir_fails_try_new_and_new_falls_back_to_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let client = Arc::new(FakeClient::new());
    let err = DataCache::try_new(client.clone(), config(&file, 8 * MIB, 64 * MIB))
        .err()
        .unwrap();
    assert!(err.to_string().contains("a-file"), "{err}");
    let too_small = DataCache::try_new(client.clone(), config(tmp.path(), 8 * MIB, 1000))
        .err()
        .unwrap();
    assert!(too_small.to_string().contains("at least one block"), "{too_small}");
    let cache = DataCache::new(client, config(&file, 8 * MIB, 64 * MIB));
    assert!(cache.disk_dir().is_none());
    assert!(cache.stats().disk.is_none());
}
