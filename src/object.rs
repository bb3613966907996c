//! Shared vocabulary of the crate: object keys, ETags, object identity and metadata, and the
//! block keys the cache uses. Nothing here does I/O; every layer may import it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// An OSS ETag exactly as the server sent it, quotes included (`"5B3C..."`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ETag(Arc<str>);

impl ETag {
    pub fn new(s: impl AsRef<str>) -> Self {
        ETag(Arc::from(s.as_ref()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of one version of an object's content: key plus ETag. A block cached under
/// one `ObjectId` is never served for another, so a changed object never yields stale bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    key: Arc<str>,
    etag: ETag,
}

impl ObjectId {
    pub fn new(key: impl AsRef<str>, etag: ETag) -> Self {
        ObjectId { key: Arc::from(key.as_ref()), etag }
    }
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn etag(&self) -> &ETag {
        &self.etag
    }
}

/// The OSS object type (`x-oss-object-type` / `<Type>` in listings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ObjectType {
    #[default]
    Normal,
    Multipart,
    Appendable,
    Symlink,
}

impl ObjectType {
    pub fn parse(s: &str) -> ObjectType {
        match s {
            "Multipart" => ObjectType::Multipart,
            "Appendable" => ObjectType::Appendable,
            "Symlink" => ObjectType::Symlink,
            _ => ObjectType::Normal,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            ObjectType::Normal => "Normal",
            ObjectType::Multipart => "Multipart",
            ObjectType::Appendable => "Appendable",
            ObjectType::Symlink => "Symlink",
        }
    }
}

/// User metadata (`x-oss-meta-<name>`), names stored lower-case without the prefix.
pub type UserMeta = BTreeMap<String, String>;

/// What HeadObject (or GetObject's headers) tells about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: ETag,
    pub last_modified: SystemTime,
    pub object_type: ObjectType,
    /// `x-oss-hash-crc64ecma` of the whole object, when the server sent it.
    pub crc64: Option<u64>,
    pub content_type: Option<String>,
    /// `x-oss-meta-*`, lower-case names without the prefix (e.g. `mode`, `uid`, `mtime`).
    pub user_meta: UserMeta,
}

/// Index of a fixed-size block of an object.
pub type BlockIndex = u64;

/// Key of one cached block: the object version and the block index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub object: ObjectId,
    pub index: BlockIndex,
}
