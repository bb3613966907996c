//! The inode table: inode numbers ↔ paths, lookup counts for `forget`, TTL'd attributes and the
//! negative-lookup cache.
//!
//! A path keeps its inode number while the table knows it (from a lookup, a listing or a local
//! create), so repeated lookups, readdir and open agree. Paths are relative to the mount root
//! (`""` is the root, `"a/b"` a child) and always valid UTF-8 (OSS keys are). An inode that is
//! unlinked or renamed over is detached from its path but stays until the kernel forgets it, so
//! open files keep working.
//!
//! All state sits behind one `std::sync::Mutex`, taken briefly and never across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::object::{ETag, UserMeta};

/// Inode number of the mount root.
pub const ROOT_INO: u64 = 1;

/// What a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// POSIX attributes stored as user metadata (`x-oss-meta-mode/uid/gid/mtime`), when known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaAttrs {
    /// st_mode, type bits included.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
    /// Other `x-oss-meta-*` entries (from other tools), carried over when we rewrite the object.
    pub extra: UserMeta,
}

/// User-metadata names (without `x-oss-meta-`).
pub const META_MODE: &str = "mode";
pub const META_UID: &str = "uid";
pub const META_GID: &str = "gid";
pub const META_MTIME: &str = "mtime";
/// Our extension: the nanoseconds of the mtime, when not zero (`mtime` stays whole seconds, as
/// ossfs writes and reads it).
pub const META_MTIME_NSEC: &str = "mtime-nsec";

impl MetaAttrs {
    /// Parse the ossfs 1.x convention (decimal numbers; mtime in Unix seconds).
    pub fn from_user_meta(meta: &UserMeta) -> Self {
        let num = |k: &str| meta.get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let mtime = meta.get(META_MTIME).and_then(|v| {
            let v = v.trim();
            // Accept "secs" and "secs.fraction".
            let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
            let secs: u64 = secs.parse().ok()?;
            let mut nanos: u32 = 0;
            if !frac.is_empty() {
                let digits: String = frac.chars().take(9).collect();
                let scale = 10u32.pow(9 - digits.len() as u32);
                nanos = digits.parse::<u32>().ok()? * scale;
            } else if let Some(n) = num(META_MTIME_NSEC) {
                nanos = u32::try_from(n).ok().filter(|n| *n < 1_000_000_000).unwrap_or(0);
            }
            SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
        });
        let extra = meta
            .iter()
            .filter(|(k, _)| ![META_MODE, META_UID, META_GID, META_MTIME, META_MTIME_NSEC].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        MetaAttrs {
            extra,
            mode: num(META_MODE).and_then(|m| u32::try_from(m).ok()),
            uid: num(META_UID).and_then(|m| u32::try_from(m).ok()),
            gid: num(META_GID).and_then(|m| u32::try_from(m).ok()),
            mtime,
        }
    }

    /// Write these attributes into `meta` (leaving other entries alone).
    pub fn apply_to(&self, meta: &mut UserMeta) {
        for (k, v) in &self.extra {
            meta.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if let Some(m) = self.mode {
            meta.insert(META_MODE.to_string(), m.to_string());
        }
        if let Some(u) = self.uid {
            meta.insert(META_UID.to_string(), u.to_string());
        }
        if let Some(g) = self.gid {
            meta.insert(META_GID.to_string(), g.to_string());
        }
        if let Some(t) = self.mtime {
            let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            meta.insert(META_MTIME.to_string(), d.as_secs().to_string());
            if d.subsec_nanos() != 0 {
                meta.insert(META_MTIME_NSEC.to_string(), d.subsec_nanos().to_string());
            } else {
                meta.remove(META_MTIME_NSEC);
            }
        }
    }
}

/// What we know about an object version behind an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    /// LastModified of the object (or the time of our own change).
    pub last_modified: SystemTime,
    pub etag: Option<ETag>,
    pub meta: MetaAttrs,
    /// The ETag whose user metadata `meta` reflects (from a HEAD or our own write); a listing
    /// showing the same ETag keeps `meta`, a different one drops it.
    pub meta_etag: Option<ETag>,
}

impl Stat {
    pub fn new(size: u64, last_modified: SystemTime, etag: Option<ETag>) -> Self {
        Stat {
            size,
            last_modified,
            etag,
            meta: MetaAttrs::default(),
            meta_etag: None,
        }
    }
}

/// One inode.
#[derive(Clone, Debug)]
pub struct Inode {
    pub ino: u64,
    pub parent: u64,
    pub name: String,
    /// Path relative to the mount root; empty for the root.
    pub path: String,
    pub kind: Kind,
    pub lookups: u64,
    pub stat: Stat,
    /// When the attributes were last confirmed by OSS (or set by our own change).
    pub validated: Instant,
    /// Created locally and not uploaded yet (no object exists).
    pub local_only: bool,
    /// Unlinked or renamed over: no longer reachable by path.
    pub detached: bool,
    /// Symlink target, once read.
    pub symlink_target: Option<String>,
    /// ETag seen at the last `open`, for `keep_cache`.
    pub last_open_etag: Option<ETag>,
    /// The cached attributes are known to be outdated (moved by a directory rename).
    pub stale: bool,
    /// The last ETag this mount produced itself (upload, copy, metadata rewrite): open handles
    /// follow such a change, but stay pinned to their version when someone else changed it.
    pub own_etag: Option<ETag>,
    /// The file had a writer in this mount: its page cache may hold data newer than any
    /// object version, so nothing is pushed into it (see `OssFs::fill_page_cache`).
    pub had_writer: bool,
}

impl Inode {
    pub fn is_fresh(&self, ttl: Option<Duration>) -> bool {
        self.local_only || (!self.stale && ttl.is_none_or(|ttl| self.validated.elapsed() < ttl))
    }
}

/// What a lookup or listing found remotely.
#[derive(Clone, Debug)]
pub struct Found {
    pub kind: Kind,
    pub stat: Stat,
}

struct Inner {
    inodes: HashMap<u64, Inode>,
    /// Inodes with `local_only` set (few: files being created), so readdir and rmdir need not
    /// scan the whole table.
    local: std::collections::HashSet<u64>,
    by_path: HashMap<String, u64>,
    negative: HashMap<String, Instant>,
    next_ino: u64,
}

/// See the module documentation.
pub struct InodeTable {
    inner: Mutex<Inner>,
}

pub fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

impl InodeTable {
    pub fn new(root_mtime: SystemTime) -> Self {
        let root = Inode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            name: String::new(),
            path: String::new(),
            kind: Kind::Dir,
            lookups: 1,
            stat: Stat::new(0, root_mtime, None),
            validated: Instant::now(),
            local_only: false,
            detached: false,
            symlink_target: None,
            last_open_etag: None,
            stale: false,
            own_etag: None,
            had_writer: false,
        };
        let mut inodes = HashMap::new();
        inodes.insert(ROOT_INO, root);
        let mut by_path = HashMap::new();
        by_path.insert(String::new(), ROOT_INO);
        InodeTable {
            inner: Mutex::new(Inner {
                inodes,
                local: Default::default(),
                by_path,
                negative: HashMap::new(),
                next_ino: ROOT_INO + 1,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below leaves the maps consistent before it can panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, ino: u64) -> Option<Inode> {
        self.lock().inodes.get(&ino).cloned()
    }

    pub fn by_path(&self, path: &str) -> Option<Inode> {
        let inner = self.lock();
        inner.by_path.get(path).and_then(|ino| inner.inodes.get(ino)).cloned()
    }

    /// Look at an inode without copying it.
    pub fn with<R>(&self, ino: u64, f: impl FnOnce(&Inode) -> R) -> Option<R> {
        self.lock().inodes.get(&ino).map(f)
    }

    /// Modify an inode in place; returns the modified copy.
    pub fn update<F: FnOnce(&mut Inode)>(&self, ino: u64, f: F) -> Option<Inode> {
        let mut inner = self.lock();
        let inode = inner.inodes.get_mut(&ino)?;
        f(inode);
        let copy = inode.clone();
        if copy.local_only && !copy.detached {
            inner.local.insert(ino);
        } else {
            inner.local.remove(&ino);
        }
        Some(copy)
    }

    /// Whether `path` is known not to exist (negative cache, not expired).
    pub fn is_negative(&self, path: &str) -> bool {
        let mut inner = self.lock();
        match inner.negative.get(path) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                inner.negative.remove(path);
                false
            }
            None => false,
        }
    }

    pub fn set_negative(&self, path: &str, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        // Bound the cache: drop expired entries when it grows.
        if inner.negative.len() > NEGATIVE_CACHE_MAX_ENTRIES {
            let now = Instant::now();
            inner.negative.retain(|_, until| *until > now);
            if inner.negative.len() > NEGATIVE_CACHE_MAX_ENTRIES {
                inner.negative.clear();
            }
        }
        inner.negative.insert(path.to_string(), Instant::now() + ttl);
    }

    pub fn clear_negative(&self, path: &str) {
        self.lock().negative.remove(path);
    }

    /// Record what OSS says is at `parent`/`name`; returns the inode (same number as before when
    /// the kind did not change). `lookup` adds one kernel reference.
    pub fn upsert(&self, parent: u64, parent_path: &str, name: &str, found: Found, lookup: bool) -> Inode {
        let path = join_path(parent_path, name);
        let mut inner = self.lock();
        inner.negative.remove(&path);
        if let Some(ino) = inner.by_path.get(&path).copied() {
            if let Some(inode) = inner.inodes.get_mut(&ino) {
                if inode.kind == found.kind {
                    if !inode.local_only {
                        let keep_meta = inode.stat.meta_etag.is_some() && inode.stat.meta_etag == found.stat.etag;
                        let old_meta = std::mem::take(&mut inode.stat.meta);
                        let old_meta_etag = inode.stat.meta_etag.take();
                        let mut stat = found.stat;
                        // Listings carry no user metadata: keep what we know of the same file
                        // version, and of a directory always (its marker's metadata is read
                        // by `revalidate`, which brings its own).
                        if stat.meta_etag.is_none() && (keep_meta || inode.kind == Kind::Dir) {
                            stat.meta = old_meta;
                            stat.meta_etag = old_meta_etag;
                        }
                        if inode.stat.etag != stat.etag {
                            inode.symlink_target = None;
                        }
                        inode.stat = stat;
                        inode.validated = Instant::now();
                        inode.stale = false;
                    }
                    if lookup {
                        inode.lookups += 1;
                    }
                    return inode.clone();
                }
                inode.detached = true;
            }
            inner.by_path.remove(&path);
        }
        let ino = inner.next_ino;
        inner.next_ino += 1;
        let inode = Inode {
            ino,
            parent,
            name: name.to_string(),
            path: path.clone(),
            kind: found.kind,
            lookups: u64::from(lookup),
            stat: found.stat,
            validated: Instant::now(),
            local_only: false,
            detached: false,
            symlink_target: None,
            last_open_etag: None,
            stale: false,
            own_etag: None,
            had_writer: false,
        };
        inner.by_path.insert(path, ino);
        inner.inodes.insert(ino, inode.clone());
        inode
    }

    /// A name created locally (not in OSS yet, or just written by us).
    pub fn insert_local(
        &self,
        parent: u64,
        parent_path: &str,
        name: &str,
        kind: Kind,
        stat: Stat,
        local_only: bool,
    ) -> Inode {
        let found = Found { kind, stat };
        let inode = self.upsert(parent, parent_path, name, found, true);
        self.update(inode.ino, |i| {
            i.local_only = local_only;
            i.validated = Instant::now();
        })
        .unwrap_or(inode)
    }

    /// The kernel dropped `n` references.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut inner = self.lock();
        let Some(inode) = inner.inodes.get_mut(&ino) else {
            return;
        };
        inode.lookups = inode.lookups.saturating_sub(n);
        if inode.lookups == 0 {
            let path = inode.path.clone();
            let detached = inode.detached;
            inner.inodes.remove(&ino);
            inner.local.remove(&ino);
            if !detached && inner.by_path.get(&path) == Some(&ino) {
                inner.by_path.remove(&path);
            }
        }
    }

    /// Add one kernel reference (readdirplus entries).
    pub fn add_lookup(&self, ino: u64) {
        if let Some(i) = self.lock().inodes.get_mut(&ino) {
            i.lookups += 1;
        }
    }

    /// `path` no longer exists: detach its inode (kept for open files until forgotten).
    pub fn remove_path(&self, path: &str, negative_ttl: Duration) {
        let mut inner = self.lock();
        if let Some(ino) = inner.by_path.remove(path) {
            if let Some(inode) = inner.inodes.get_mut(&ino) {
                inode.detached = true;
                inode.local_only = false;
            }
            inner.local.remove(&ino);
        }
        if !negative_ttl.is_zero() {
            inner.negative.insert(path.to_string(), Instant::now() + negative_ttl);
        }
    }

    /// Move `from` (and, for a directory, everything below it) to `to` under `new_parent`.
    /// `mark_stale`: the objects below were copied (new ETags): revalidate them on next use.
    pub fn rename(
        &self,
        from: &str,
        to: &str,
        new_parent: u64,
        new_name: &str,
        mark_stale: bool,
        negative_ttl: Duration,
    ) {
        let mut inner = self.lock();
        // Whatever was at the destination is replaced.
        if let Some(old) = inner.by_path.remove(to) {
            if let Some(inode) = inner.inodes.get_mut(&old) {
                inode.detached = true;
            }
        }
        let prefix = format!("{from}/");
        let source = inner.by_path.get(from).copied();
        let is_dir = source
            .and_then(|ino| inner.inodes.get(&ino))
            .is_none_or(|i| i.kind == Kind::Dir);
        let moved: Vec<(String, u64)> = match source {
            // A file or symlink: nothing can be below it, no need to scan the table.
            Some(ino) if !is_dir => vec![(from.to_string(), ino)],
            _ => inner
                .by_path
                .iter()
                .filter(|(p, _)| p.as_str() == from || p.starts_with(&prefix))
                .map(|(p, i)| (p.clone(), *i))
                .collect(),
        };
        for (old_path, ino) in moved {
            inner.by_path.remove(&old_path);
            let new_path = format!("{to}{}", &old_path[from.len()..]);
            // Anything cached below the destination is stale.
            if let Some(stale) = inner.by_path.remove(&new_path) {
                if let Some(inode) = inner.inodes.get_mut(&stale) {
                    inode.detached = true;
                }
            }
            if let Some(inode) = inner.inodes.get_mut(&ino) {
                inode.path = new_path.clone();
                if old_path == from {
                    inode.parent = new_parent;
                    inode.name = new_name.to_string();
                } else if mark_stale && !inode.local_only {
                    inode.stale = true;
                }
            }
            inner.by_path.insert(new_path, ino);
        }
        inner
            .negative
            .retain(|p, _| !(p == to || p.starts_with(&format!("{to}/"))));
        if !negative_ttl.is_zero() {
            inner.negative.insert(from.to_string(), Instant::now() + negative_ttl);
        }
    }

    /// Children of `dir_path` that exist only locally (created, not uploaded yet).
    pub fn local_children(&self, dir_path: &str) -> Vec<Inode> {
        let inner = self.lock();
        inner
            .local
            .iter()
            .filter_map(|ino| inner.inodes.get(ino))
            .filter(|i| i.local_only && !i.detached && parent_of(&i.path) == dir_path && !i.path.is_empty())
            .cloned()
            .collect()
    }

    /// Drop inodes nobody references (no kernel lookups, not local, not in `busy`) whose
    /// attributes expired; returns how many were dropped.
    pub fn prune_unreferenced(&self, ttl: Option<Duration>, busy: &[u64]) -> usize {
        let mut inner = self.lock();
        let doomed: Vec<(u64, String, bool)> = inner
            .inodes
            .values()
            .filter(|i| {
                i.ino != ROOT_INO && i.lookups == 0 && !i.local_only && !i.is_fresh(ttl) && !busy.contains(&i.ino)
            })
            .map(|i| (i.ino, i.path.clone(), i.detached))
            .collect();
        for (ino, path, detached) in &doomed {
            inner.inodes.remove(ino);
            if !detached && inner.by_path.get(path) == Some(ino) {
                inner.by_path.remove(path);
            }
        }
        doomed.len()
    }

    /// Number of inodes (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().inodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Largest number of negative entries kept before expired ones are swept.
pub const NEGATIVE_CACHE_MAX_ENTRIES: usize = 100_000;

/// The parent path of `path` (`""` for top-level names).
pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(size: u64, etag: &str) -> Stat {
        Stat::new(size, SystemTime::UNIX_EPOCH, Some(ETag::new(etag)))
    }

    #[test]
    fn stable_inode_numbers_and_forget() {
        let t = InodeTable::new(SystemTime::now());
        let a = t.upsert(
            ROOT_INO,
            "",
            "a",
            Found {
                kind: Kind::File,
                stat: stat(1, "e1"),
            },
            true,
        );
        let again = t.upsert(
            ROOT_INO,
            "",
            "a",
            Found {
                kind: Kind::File,
                stat: stat(2, "e2"),
            },
            true,
        );
        assert_eq!(a.ino, again.ino);
        assert_eq!(again.stat.size, 2);
        assert_eq!(again.lookups, 2);
        t.forget(a.ino, 1);
        assert!(t.get(a.ino).is_some());
        t.forget(a.ino, 1);
        assert!(t.get(a.ino).is_none());
        assert!(t.by_path("a").is_none());
    }

    #[test]
    fn meta_kept_while_etag_unchanged() {
        let t = InodeTable::new(SystemTime::now());
        let mut s = stat(1, "e1");
        s.meta.mode = Some(0o100600);
        s.meta_etag = Some(ETag::new("e1"));
        t.upsert(
            ROOT_INO,
            "",
            "a",
            Found {
                kind: Kind::File,
                stat: s,
            },
            true,
        );
        let b = t.upsert(
            ROOT_INO,
            "",
            "a",
            Found {
                kind: Kind::File,
                stat: stat(1, "e1"),
            },
            false,
        );
        assert_eq!(b.stat.meta.mode, Some(0o100600));
        let c = t.upsert(
            ROOT_INO,
            "",
            "a",
            Found {
                kind: Kind::File,
                stat: stat(1, "e2"),
            },
            false,
        );
        assert_eq!(c.stat.meta.mode, None);
    }

    #[test]
    fn rename_moves_subtree() {
        let t = InodeTable::new(SystemTime::now());
        let d = t.upsert(
            ROOT_INO,
            "",
            "d",
            Found {
                kind: Kind::Dir,
                stat: stat(0, ""),
            },
            true,
        );
        let f = t.upsert(
            d.ino,
            "d",
            "f",
            Found {
                kind: Kind::File,
                stat: stat(1, "e"),
            },
            true,
        );
        t.rename("d", "e", ROOT_INO, "e", true, Duration::from_secs(1));
        assert_eq!(t.by_path("e/f").map(|i| i.ino), Some(f.ino));
        assert_eq!(t.by_path("e").map(|i| i.ino), Some(d.ino));
        assert!(t.by_path("d").is_none());
        assert!(t.is_negative("d"));
    }

    #[test]
    fn prune_keeps_referenced_and_fresh_inodes() {
        let t = InodeTable::new(SystemTime::now());
        let kept = t.upsert(
            ROOT_INO,
            "",
            "looked",
            Found {
                kind: Kind::File,
                stat: stat(1, "a"),
            },
            true,
        );
        let listed = t.upsert(
            ROOT_INO,
            "",
            "listed",
            Found {
                kind: Kind::File,
                stat: stat(1, "b"),
            },
            false,
        );
        let busy = t.upsert(
            ROOT_INO,
            "",
            "busy",
            Found {
                kind: Kind::File,
                stat: stat(1, "c"),
            },
            false,
        );
        assert_eq!(
            t.prune_unreferenced(Some(Duration::from_secs(60)), &[]),
            0,
            "fresh entries stay"
        );
        assert_eq!(t.prune_unreferenced(Some(Duration::ZERO), &[busy.ino]), 1);
        assert!(t.get(listed.ino).is_none());
        assert!(t.by_path("listed").is_none());
        assert!(t.get(kept.ino).is_some());
        assert!(t.get(busy.ino).is_some());
    }

    #[test]
    fn meta_round_trip() {
        let m = MetaAttrs {
            mode: Some(0o100644),
            uid: Some(1000),
            gid: Some(100),
            mtime: Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
            extra: [("color".to_string(), "blue".to_string())].into_iter().collect(),
        };
        let mut um = UserMeta::new();
        m.apply_to(&mut um);
        assert_eq!(um.get("mode").map(String::as_str), Some("33188"));
        assert_eq!(um.get("mtime").map(String::as_str), Some("1700000000"));
        assert_eq!(MetaAttrs::from_user_meta(&um), m);
    }
}
