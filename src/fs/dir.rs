//! Directory handles: a paged ListObjectsV2 (delimiter `/`, pages of 1000) read into a per-handle
//! snapshot, so readdir offsets stay stable across pages and calls, and never one request per
//! entry (attributes come from the listing).
//!
//! Offsets: 1 is `.`, 2 is `..`, entry `i` of the snapshot has offset `i + 3` (the offset passed
//! back is always the one of the *next* entry). Reading offset 0 again (rewinddir) starts a new
//! snapshot.
//!
//! Names that cannot be POSIX names (empty segments as in `a//b`, `.`, `..`, longer than 255
//! bytes) are skipped with a debug log. When an object `a` and a prefix `a/` both exist, the
//! directory wins and the file is hidden: a file is held back until the listing has moved past
//! `a/`, then emitted only if no such directory showed up.

use std::collections::HashSet;
use std::time::SystemTime;

use tracing::debug;

use crate::client::{ListObjectsParams, ListObjectsResult, MAX_LIST_KEYS, ObjectClient};
use crate::fs::error::FsError;
use crate::fs::inode::{Kind, Stat};
use crate::object::ObjectType;

/// Longest file name (bytes) we expose.
pub const NAME_MAX_BYTES: usize = 255;

/// One entry of a directory snapshot.
#[derive(Clone, Debug)]
pub struct DirItem {
    pub name: String,
    pub kind: Kind,
    /// Attributes from the listing (directories: none known, `None`).
    pub stat: Option<Stat>,
}

/// Whether `name` can be a POSIX file name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= NAME_MAX_BYTES
        && !name.contains('/')
        && !name.contains('\0')
}

/// A directory listing in progress. `prefix` is the directory's key prefix (`""` or ends in `/`).
pub struct DirSnapshot {
    prefix: String,
    pub items: Vec<DirItem>,
    token: Option<String>,
    started: bool,
    pub done: bool,
    dir_names: HashSet<String>,
    emitted_files: HashSet<String>,
    pending_files: Vec<DirItem>,
}

impl DirSnapshot {
    pub fn new(prefix: String) -> Self {
        DirSnapshot {
            prefix,
            items: Vec::new(),
            token: None,
            started: false,
            done: false,
            dir_names: HashSet::new(),
            emitted_files: HashSet::new(),
            pending_files: Vec::new(),
        }
    }

    /// A complete snapshot made of the items of an earlier complete listing.
    pub fn from_items(prefix: String, items: Vec<DirItem>) -> Self {
        let mut snapshot = DirSnapshot::new(prefix);
        for item in &items {
            match item.kind {
                Kind::Dir => snapshot.dir_names.insert(item.name.clone()),
                _ => snapshot.emitted_files.insert(item.name.clone()),
            };
        }
        snapshot.items = items;
        snapshot.started = true;
        snapshot.done = true;
        snapshot
    }

    /// Fetch pages until at least `want` items are known or the listing is complete.
    pub async fn fill<C: ObjectClient>(&mut self, client: &C, want: usize) -> Result<(), FsError> {
        while self.items.len() < want && !self.done {
            let params = ListObjectsParams::new(self.prefix.clone())
                .delimiter("/")
                .max_keys(MAX_LIST_KEYS)
                .continuation_token(self.token.clone());
            let page = client.list_objects(params).await?;
            self.started = true;
            self.absorb(page);
        }
        Ok(())
    }

    /// Names this snapshot has emitted or holds back (for merging local entries at the end).
    pub fn contains(&self, name: &str) -> bool {
        self.dir_names.contains(name) || self.emitted_files.contains(name)
    }

    /// Append an entry that exists only locally (after the listing completed).
    pub fn push_local(&mut self, item: DirItem) {
        if !self.contains(&item.name) {
            match item.kind {
                Kind::Dir => self.dir_names.insert(item.name.clone()),
                _ => self.emitted_files.insert(item.name.clone()),
            };
            self.items.push(item);
        }
    }

    fn absorb(&mut self, page: ListObjectsResult) {
        let mut last_key: Option<String> = None;
        for object in page.objects {
            if last_key.as_deref().is_none_or(|k| k < object.key.as_str()) {
                last_key = Some(object.key.clone());
            }
            let Some(rel) = object.key.strip_prefix(&self.prefix) else {
                continue;
            };
            if rel.is_empty() {
                // The directory's own marker object.
                continue;
            }
            if !valid_name(rel) {
                debug!(key = %object.key, "skipping key that is not a valid file name");
                continue;
            }
            if self.dir_names.contains(rel) {
                debug!(key = %object.key, "file hidden by a directory of the same name");
                continue;
            }
            let kind = if object.object_type == ObjectType::Symlink {
                Kind::Symlink
            } else {
                Kind::File
            };
            let stat = Stat::new(object.size, object.last_modified, Some(object.etag.clone()));
            self.pending_files.push(DirItem {
                name: rel.to_string(),
                kind,
                stat: Some(stat),
            });
        }
        for prefix in page.common_prefixes {
            if last_key.as_deref().is_none_or(|k| k < prefix.as_str()) {
                last_key = Some(prefix.clone());
            }
            let Some(rel) = prefix.strip_prefix(&self.prefix).and_then(|r| r.strip_suffix('/')) else {
                continue;
            };
            if !valid_name(rel) {
                debug!(prefix = %prefix, "skipping prefix that is not a valid directory name");
                continue;
            }
            if self.emitted_files.contains(rel) {
                // Only possible when a file was already emitted on an earlier page; the
                // hold-back below makes that impossible for keys listed in order.
                debug!(prefix = %prefix, "directory shadows a file already listed");
            }
            self.pending_files.retain(|f| f.name != rel);
            if self.dir_names.insert(rel.to_string()) {
                self.items.push(DirItem {
                    name: rel.to_string(),
                    kind: Kind::Dir,
                    stat: None,
                });
            }
        }
        self.token = page.next_continuation_token;
        if self.token.is_none() {
            self.done = true;
        }
        // Release held-back files whose `name/` sorts before where the listing has got to.
        let done = self.done;
        let prefix = self.prefix.clone();
        let pending = std::mem::take(&mut self.pending_files);
        for file in pending {
            let dir_key = format!("{prefix}{}/", file.name);
            let passed = done || last_key.as_deref().is_some_and(|k| k >= dir_key.as_str());
            if passed {
                if !self.dir_names.contains(&file.name) {
                    self.emitted_files.insert(file.name.clone());
                    self.items.push(file);
                }
            } else {
                self.pending_files.push(file);
            }
        }
    }

    /// Whether any page was fetched yet.
    pub fn started(&self) -> bool {
        self.started
    }
}

/// Last-modified time to show for directories whose marker we have not read.
pub fn default_dir_mtime(mount_time: SystemTime) -> SystemTime {
    mount_time
}
