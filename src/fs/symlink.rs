//! Symlink targets: POSIX paths on the mount side, object keys on the OSS side.
//!
//! OSS resolves a Symlink object's `x-oss-symlink-target` as a key of the same bucket, and
//! the official SDKs write full keys there. A POSIX symlink holds a path, usually relative to
//! the link's directory. To keep both worlds right:
//! - creating a link stores, as the OSS target, the key the path resolves to (so GetObject on
//!   the link through any SDK reaches the right object), and keeps the exact text the user gave
//!   in the user metadata `x-oss-meta-symlink-path` (percent-encoded), so `readlink` returns it
//!   byte for byte;
//! - reading a link without that metadata (made by an SDK or another tool) turns the target
//!   key into a path relative to the link's directory;
//! - absolute targets, targets that climb above the bucket root and over-long ones are stored
//!   as the nearest valid key (OSS validates targets as object names but cannot follow these
//!   anyway) and `readlink` returns the kept text.
//!
//! Renaming a link keeps its text (as POSIX does) and recomputes the OSS target for the new
//! location.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::object::UserMeta;

/// User metadata name (without `x-oss-meta-`) holding the link text as the user wrote it.
pub const SYMLINK_PATH_META: &str = "symlink-path";

/// Characters kept literal in the stored link text (header values must be plain ASCII).
const META_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// The OSS target key for a link at `link_key` whose POSIX text is `path`, and the user
/// metadata entry that preserves `path`.
pub fn to_oss(link_key: &str, path: &str) -> (String, (String, String)) {
    let meta = (
        SYMLINK_PATH_META.to_string(),
        utf8_percent_encode(path, META_ENCODE).to_string(),
    );
    if path.starts_with('/') {
        return (as_key(path), meta);
    }
    let target = resolve(parent_of(link_key), path).unwrap_or_else(|| path.to_string());
    (as_key(&target), meta)
}

/// Longest OSS key, in bytes.
const MAX_KEY_BYTES: usize = 1023;

/// Make `target` a valid OSS key (OSS validates symlink targets as object names): no leading
/// `/` or `\`, not empty, at most 1023 bytes. Targets that needed this cannot be followed by
/// OSS anyway; `readlink` uses the text kept in the metadata.
fn as_key(target: &str) -> String {
    let trimmed = target.trim_start_matches(['/', '\\']);
    let mut end = trimmed.len().min(MAX_KEY_BYTES);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let key = &trimmed[..end];
    if key.is_empty() {
        ".".to_string()
    } else {
        key.to_string()
    }
}

/// The POSIX text of a link at `link_key` with OSS target `target` and user metadata `meta`.
pub fn to_posix(link_key: &str, target: &str, meta: &UserMeta) -> String {
    if let Some(encoded) = meta.get(SYMLINK_PATH_META) {
        if let Ok(text) = percent_decode_str(encoded).decode_utf8() {
            return text.into_owned();
        }
    }
    if target.starts_with('/') || target.is_empty() {
        return target.to_string();
    }
    relative(parent_of(link_key), target)
}

/// Recompute the OSS target for a link moved to `new_key`: links we made keep their text;
/// others keep their target key (it names an object, not a path).
pub fn retarget(new_key: &str, target: &str, meta: &UserMeta) -> String {
    match meta
        .get(SYMLINK_PATH_META)
        .and_then(|e| percent_decode_str(e).decode_utf8().ok())
    {
        Some(text) => to_oss(new_key, &text).0,
        None => target.to_string(),
    }
}

/// Directory part of a key (`a/b/c` → `a/b`, `c` → ``).
fn parent_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// `dir` + `path` with `.`/`..` and empty segments resolved; None when `..` climbs above the root.
fn resolve(dir: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    let mut out = parts.join("/");
    if path.ends_with('/') && !out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Path from directory `from` to key `to`, e.g. (`a/b`, `a/c/d`) → `../c/d`.
fn relative(from: &str, to: &str) -> String {
    let from: Vec<&str> = from.split('/').filter(|s| !s.is_empty()).collect();
    let to_parts: Vec<&str> = to.split('/').filter(|s| !s.is_empty()).collect();
    let common = from.iter().zip(&to_parts).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = std::iter::repeat_n("..", from.len() - common).collect();
    parts.extend(&to_parts[common..]);
    let mut out = parts.join("/");
    if out.is_empty() {
        out.push('.');
    }
    if to.ends_with('/') {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_of(link_key: &str, path: &str) -> UserMeta {
        let (_, (k, v)) = to_oss(link_key, path);
        UserMeta::from([(k, v)])
    }

    #[test]
    fn relative_links_point_oss_at_the_resolved_key_and_read_back_verbatim() {
        let (t, _) = to_oss("pre/d/link", "target.txt");
        assert_eq!(t, "pre/d/target.txt");
        let (t, _) = to_oss("pre/d/link", "../x/./y");
        assert_eq!(t, "pre/x/y");
        for text in ["target.txt", "../x/./y", "./a//b", "ünï code + space.txt", "dir/"] {
            assert_eq!(to_posix("pre/d/link", "ignored", &meta_of("pre/d/link", text)), text);
        }
    }

    #[test]
    fn absolute_escaping_and_long_targets_become_valid_keys_and_read_back_verbatim() {
        assert_eq!(to_oss("pre/link", "/etc/passwd").0, "etc/passwd");
        assert_eq!(to_oss("link", "../../outside").0, "../../outside");
        assert_eq!(to_oss("a/link", "..").0, ".");
        let long = format!("/{}", "x/".repeat(1000));
        assert!(to_oss("link", &long).0.len() <= 1023);
        for text in ["/etc/passwd", "/", long.as_str()] {
            assert_eq!(to_posix("link", "ignored", &meta_of("link", text)), text);
        }
    }

    #[test]
    fn sdk_links_become_relative_paths() {
        let none = UserMeta::new();
        assert_eq!(to_posix("from-sdk/link", "from-sdk/plain.txt", &none), "plain.txt");
        assert_eq!(to_posix("a/b/link", "a/c/d", &none), "../c/d");
        assert_eq!(to_posix("link", "x/y", &none), "x/y");
        assert_eq!(to_posix("a/link", "/abs", &none), "/abs");
    }

    #[test]
    fn rename_recomputes_targets_of_our_links_only() {
        let ours = meta_of("a/link", "t.txt");
        assert_eq!(retarget("b/c/link", "a/t.txt", &ours), "b/c/t.txt");
        assert_eq!(retarget("b/c/link", "a/t.txt", &UserMeta::new()), "a/t.txt");
    }
}
