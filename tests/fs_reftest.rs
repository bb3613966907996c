//! Reference-model property test: random sequences of create/write/truncate/rename/unlink/
//! mkdir/rmdir are applied to `OssFs` over `MockClient` and to an in-memory model of a POSIX
//! tree. After every operation both must agree on the outcome (success or the same errno); at
//! the end the trees (names, kinds, file contents) must be equal, read through the same `OssFs`
//! and through a fresh one over the same bucket (what is in OSS, not only in caches).
//!
//! Parts are tiny (64 bytes) so the streaming and staged multipart paths run too.

mod fs_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use fs_support::{ROOT, name};
use fuser::FileType;
use ossmount::client::mock::MockClient;
use ossmount::fs::{FsConfig, OssFs, SetAttr};
use proptest::prelude::*;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const PART_BYTES: u64 = 64;

#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: usize,
        name: usize,
        data: Vec<u8>,
    },
    Write {
        target: usize,
        offset: u16,
        data: Vec<u8>,
    },
    Truncate {
        target: usize,
        size: u16,
    },
    Rename {
        target: usize,
        dir: usize,
        name: usize,
        noreplace: bool,
    },
    Unlink {
        target: usize,
    },
    Mkdir {
        dir: usize,
        name: usize,
    },
    Rmdir {
        target: usize,
    },
    /// One open file: optional O_TRUNC, several writes (sequential or at random offsets), a read
    /// of the handle's own data before close.
    Session {
        target: usize,
        truncate: bool,
        sequential: bool,
        writes: Vec<(u16, Vec<u8>)>,
        read_at: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let data = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        3 => (any::<usize>(), 0..NAMES.len(), data.clone()).prop_map(|(dir, name, data)| Op::Create { dir, name, data }),
        2 => (any::<usize>(), 0..400u16, data).prop_map(|(target, offset, data)| Op::Write { target, offset, data }),
        1 => (any::<usize>(), 0..400u16).prop_map(|(target, size)| Op::Truncate { target, size }),
        2 => (any::<usize>(), any::<usize>(), 0..NAMES.len(), any::<bool>())
            .prop_map(|(target, dir, name, noreplace)| Op::Rename { target, dir, name, noreplace }),
        1 => any::<usize>().prop_map(|target| Op::Unlink { target }),
        2 => (any::<usize>(), 0..NAMES.len()).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        1 => any::<usize>().prop_map(|target| Op::Rmdir { target }),
        3 => (
            any::<usize>(),
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec((0..400u16, proptest::collection::vec(any::<u8>(), 1..150)), 1..6),
            0..500u16,
        )
            .prop_map(|(target, truncate, sequential, writes, read_at)| Op::Session {
                target,
                truncate,
                sequential,
                writes,
                read_at
            }),
    ]
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
}

/// The model: path → node ("" is the root and is not stored).
#[derive(Default, Debug)]
struct Model {
    nodes: BTreeMap<String, Node>,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

impl Model {
    fn dirs(&self) -> Vec<String> {
        let mut v = vec![String::new()];
        v.extend(
            self.nodes
                .iter()
                .filter(|(_, n)| **n == Node::Dir)
                .map(|(p, _)| p.clone()),
        );
        v
    }
    fn paths(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }
    fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.nodes.keys().any(|k| k.starts_with(&prefix))
    }

    /// Apply and return the expected errno (0 = success).
    fn apply(&mut self, op: &ResolvedOp) -> i32 {
        match op {
            ResolvedOp::Create { path, data } => {
                if self.nodes.contains_key(path) {
                    return libc::EEXIST;
                }
                self.nodes.insert(path.clone(), Node::File(data.clone()));
                0
            }
            ResolvedOp::Write { path, offset, data } => match self.nodes.get_mut(path) {
                Some(Node::File(content)) => {
                    if !data.is_empty() {
                        let end = *offset as usize + data.len();
                        if content.len() < end {
                            content.resize(end, 0);
                        }
                        content[*offset as usize..end].copy_from_slice(data);
                    }
                    0
                }
                Some(Node::Dir) => libc::EISDIR,
                None => libc::ENOENT,
            },
            ResolvedOp::Truncate { path, size } => match self.nodes.get_mut(path) {
                Some(Node::File(content)) => {
                    content.resize(*size as usize, 0);
                    0
                }
                Some(Node::Dir) => libc::EISDIR,
                None => libc::ENOENT,
            },
            ResolvedOp::Rename { from, to, noreplace } => {
                let Some(src) = self.nodes.get(from).cloned() else {
                    return libc::ENOENT;
                };
                if from == to {
                    return 0;
                }
                if src == Node::Dir && to.starts_with(&format!("{from}/")) {
                    return libc::EINVAL;
                }
                if let Some(dest) = self.nodes.get(to) {
                    if *noreplace {
                        return libc::EEXIST;
                    }
                    match (&src, dest) {
                        (Node::Dir, Node::File(_)) => return libc::ENOTDIR,
                        (Node::File(_), Node::Dir) => return libc::EISDIR,
                        (Node::Dir, Node::Dir) if self.has_children(to) => return libc::ENOTEMPTY,
                        _ => {}
                    }
                }
                let prefix = format!("{from}/");
                let moved: Vec<(String, Node)> = self
                    .nodes
                    .iter()
                    .filter(|(k, _)| *k == from || k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, _) in &moved {
                    self.nodes.remove(k);
                }
                self.nodes.remove(to);
                for (k, v) in moved {
                    self.nodes.insert(format!("{to}{}", &k[from.len()..]), v);
                }
                0
            }
            ResolvedOp::Unlink { path } => match self.nodes.get(path) {
                Some(Node::File(_)) => {
                    self.nodes.remove(path);
                    0
                }
                Some(Node::Dir) => libc::EISDIR,
                None => libc::ENOENT,
            },
            ResolvedOp::Mkdir { path } => {
                if self.nodes.contains_key(path) {
                    return libc::EEXIST;
                }
                self.nodes.insert(path.clone(), Node::Dir);
                0
            }
            ResolvedOp::Session {
                path, truncate, writes, ..
            } => match self.nodes.get_mut(path) {
                Some(Node::File(content)) => {
                    if *truncate {
                        content.clear();
                    }
                    for (offset, data) in writes {
                        let end = *offset as usize + data.len();
                        if content.len() < end {
                            content.resize(end, 0);
                        }
                        content[*offset as usize..end].copy_from_slice(data);
                    }
                    0
                }
                Some(Node::Dir) => libc::EISDIR,
                None => libc::ENOENT,
            },
            ResolvedOp::Rmdir { path } => match self.nodes.get(path) {
                Some(Node::Dir) if self.has_children(path) => libc::ENOTEMPTY,
                Some(Node::Dir) => {
                    self.nodes.remove(path);
                    0
                }
                Some(Node::File(_)) => libc::ENOTDIR,
                None => libc::ENOENT,
            },
        }
    }
}

/// An `Op` with its indices resolved against the model's current paths.
#[derive(Clone, Debug)]
enum ResolvedOp {
    Create {
        path: String,
        data: Vec<u8>,
    },
    Write {
        path: String,
        offset: u16,
        data: Vec<u8>,
    },
    Truncate {
        path: String,
        size: u16,
    },
    Rename {
        from: String,
        to: String,
        noreplace: bool,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Session {
        path: String,
        truncate: bool,
        writes: Vec<(u64, Vec<u8>)>,
        read_at: u64,
    },
}

/// Bytes a read of `len` at `offset` returns from `content`.
fn read_range(content: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let start = (offset as usize).min(content.len());
    let end = (start + len).min(content.len());
    content[start..end].to_vec()
}

const SESSION_READ_BYTES: usize = 100;

fn resolve(model: &Model, op: &Op) -> Option<ResolvedOp> {
    let dirs = model.dirs();
    let paths = model.paths();
    let pick = |v: &Vec<String>, i: usize| {
        if v.is_empty() {
            None
        } else {
            Some(v[i % v.len()].clone())
        }
    };
    Some(match op {
        Op::Create { dir, name, data } => ResolvedOp::Create {
            path: join(&pick(&dirs, *dir)?, NAMES[*name]),
            data: data.clone(),
        },
        Op::Write { target, offset, data } => ResolvedOp::Write {
            path: pick(&paths, *target)?,
            offset: *offset,
            data: data.clone(),
        },
        Op::Truncate { target, size } => ResolvedOp::Truncate {
            path: pick(&paths, *target)?,
            size: *size,
        },
        Op::Rename {
            target,
            dir,
            name,
            noreplace,
        } => ResolvedOp::Rename {
            from: pick(&paths, *target)?,
            to: join(&pick(&dirs, *dir)?, NAMES[*name]),
            noreplace: *noreplace,
        },
        Op::Unlink { target } => ResolvedOp::Unlink {
            path: pick(&paths, *target)?,
        },
        Op::Mkdir { dir, name } => ResolvedOp::Mkdir {
            path: join(&pick(&dirs, *dir)?, NAMES[*name]),
        },
        Op::Rmdir { target } => ResolvedOp::Rmdir {
            path: pick(&paths, *target)?,
        },
        Op::Session {
            target,
            truncate,
            sequential,
            writes,
            read_at,
        } => {
            let mut next = 0u64;
            let writes = writes
                .iter()
                .map(|(off, data)| {
                    let offset = if *sequential { next } else { u64::from(*off) };
                    next = offset + data.len() as u64;
                    (offset, data.clone())
                })
                .collect();
            ResolvedOp::Session {
                path: pick(&paths, *target)?,
                truncate: *truncate,
                writes,
                read_at: u64::from(*read_at),
            }
        }
    })
}

fn config() -> FsConfig {
    let mut c = FsConfig::new("root/");
    c.part_size_bytes = PART_BYTES;
    c.max_concurrency = 3;
    c
}

/// Inode of `path` (looked up component by component).
async fn ino_of(fs: &OssFs<MockClient>, path: &str) -> Result<u64, i32> {
    let mut ino = ROOT;
    if path.is_empty() {
        return Ok(ino);
    }
    for part in path.split('/') {
        ino = fs.lookup(ino, name(part)).await.map_err(|e| e.errno())?.attr.ino.0;
    }
    Ok(ino)
}

async fn apply_fs(fs: &OssFs<MockClient>, op: &ResolvedOp) -> (i32, Option<Vec<u8>>) {
    let mut read_back = None;
    let r: Result<(), i32> = async {
        match op {
            ResolvedOp::Create { path, data } => {
                let dir = ino_of(fs, parent(path)).await?;
                let leaf = &path[path.rfind('/').map_or(0, |i| i + 1)..];
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
                let (e, o) = fs
                    .create(dir, name(leaf), 0o644, 0o022, flags, 0, 0)
                    .await
                    .map_err(|e| e.errno())?;
                let ino = e.attr.ino.0;
                let w = fs.write(ino, o.fh, 0, data).await;
                let rel = fs.release(ino, o.fh).await;
                w.map_err(|e| e.errno())?;
                rel.map_err(|e| e.errno())
            }
            ResolvedOp::Write { path, offset, data } => {
                let ino = ino_of(fs, path).await?;
                let o = fs.open(ino, libc::O_RDWR).await.map_err(|e| e.errno())?;
                let w = fs.write(ino, o.fh, u64::from(*offset), data).await;
                let rel = fs.release(ino, o.fh).await;
                w.map_err(|e| e.errno())?;
                rel.map_err(|e| e.errno())
            }
            ResolvedOp::Truncate { path, size } => {
                let ino = ino_of(fs, path).await?;
                let set = SetAttr {
                    size: Some(u64::from(*size)),
                    ..Default::default()
                };
                fs.setattr(ino, set).await.map(|_| ()).map_err(|e| e.errno())
            }
            ResolvedOp::Rename { from, to, noreplace } => {
                let from_dir = ino_of(fs, parent(from)).await?;
                let to_dir = ino_of(fs, parent(to)).await?;
                let leaf = |p: &str| p[p.rfind('/').map_or(0, |i| i + 1)..].to_string();
                let flags = if *noreplace { libc::RENAME_NOREPLACE } else { 0 };
                fs.rename(from_dir, name(&leaf(from)), to_dir, name(&leaf(to)), flags)
                    .await
                    .map_err(|e| e.errno())
            }
            ResolvedOp::Unlink { path } => {
                let dir = ino_of(fs, parent(path)).await?;
                let leaf = &path[path.rfind('/').map_or(0, |i| i + 1)..];
                fs.unlink(dir, name(leaf)).await.map_err(|e| e.errno())
            }
            ResolvedOp::Mkdir { path } => {
                let dir = ino_of(fs, parent(path)).await?;
                let leaf = &path[path.rfind('/').map_or(0, |i| i + 1)..];
                fs.mkdir(dir, name(leaf), 0o755, 0o022, 0, 0)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.errno())
            }
            ResolvedOp::Rmdir { path } => {
                let dir = ino_of(fs, parent(path)).await?;
                let leaf = &path[path.rfind('/').map_or(0, |i| i + 1)..];
                fs.rmdir(dir, name(leaf)).await.map_err(|e| e.errno())
            }
            ResolvedOp::Session {
                path,
                truncate,
                writes,
                read_at,
            } => {
                let ino = ino_of(fs, path).await?;
                let o = fs.open(ino, libc::O_RDWR).await.map_err(|e| e.errno())?;
                let body = async {
                    if *truncate {
                        let set = SetAttr {
                            size: Some(0),
                            fh: Some(o.fh),
                            ..Default::default()
                        };
                        fs.setattr(ino, set).await.map_err(|e| e.errno())?;
                    }
                    for (offset, data) in writes {
                        fs.write(ino, o.fh, *offset, data).await.map_err(|e| e.errno())?;
                    }
                    let got = fs
                        .read(ino, o.fh, *read_at, SESSION_READ_BYTES as u32)
                        .await
                        .map_err(|e| e.errno())?;
                    Ok::<Vec<u8>, i32>(got.to_vec())
                }
                .await;
                let rel = fs.release(ino, o.fh).await;
                read_back = Some(body?);
                rel.map_err(|e| e.errno())
            }
        }
    }
    .await;
    let errno = match r {
        Ok(()) => 0,
        Err(errno) => errno,
    };
    (errno, read_back)
}

/// The whole tree as `OssFs` shows it.
async fn snapshot(fs: &OssFs<MockClient>) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(ROOT, String::new())];
    while let Some((ino, path)) = stack.pop() {
        let opened = fs.opendir(ino).await.unwrap();
        let mut offset = 0;
        loop {
            let batch = fs.readdir(ino, opened.fh, offset, false).await.unwrap();
            if batch.is_empty() {
                break;
            }
            for e in batch {
                offset = e.offset;
                let n = e.name.to_string_lossy().to_string();
                if n == "." || n == ".." {
                    continue;
                }
                let child = join(&path, &n);
                let entry = fs.lookup(ino, &e.name).await.unwrap();
                assert_eq!(entry.attr.kind, e.kind, "{child}: readdir and lookup agree on the kind");
                if e.kind == FileType::Directory {
                    out.insert(child.clone(), Node::Dir);
                    stack.push((entry.attr.ino.0, child));
                } else {
                    let data = fs_support::read_file(fs, entry.attr.ino.0).await.unwrap();
                    assert_eq!(entry.attr.size, data.len() as u64, "{child}: size agrees with content");
                    out.insert(child, Node::File(data));
                }
            }
        }
        fs.releasedir(ino, opened.fh).await.unwrap();
    }
    out
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mock = Arc::new(MockClient::new("bucket"));
        mock.set_min_part_size(1);
        let fs = OssFs::new(mock.clone(), config()).unwrap();
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let Some(resolved) = resolve(&model, op) else { continue };
            let expected = model.apply(&resolved);
            let (got, read_back) = apply_fs(&fs, &resolved).await;
            prop_assert_eq!(got, expected, "op #{} {:?}", i, resolved);
            if let (ResolvedOp::Session { path, read_at, .. }, Some(bytes)) = (&resolved, read_back) {
                let Some(Node::File(content)) = model.nodes.get(path) else {
                    unreachable!()
                };
                prop_assert_eq!(
                    bytes,
                    read_range(content, *read_at, SESSION_READ_BYTES),
                    "read-back in op #{}",
                    i
                );
            }
        }
        prop_assert_eq!(&snapshot(&fs).await, &model.nodes, "same OssFs");
        let fresh = OssFs::new(mock.clone(), config()).unwrap();
        prop_assert_eq!(
            &snapshot(&fresh).await,
            &model.nodes,
            "fresh OssFs over the same bucket"
        );
        prop_assert!(mock.in_progress_uploads().is_empty(), "no multipart upload left behind");
        fs.shutdown().await;
        fresh.shutdown().await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2000, ..ProptestConfig::default() })]
    #[test]
    fn oss_fs_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}

/// Sequences that found bugs, kept as plain tests.
#[test]
fn rename_directory_over_empty_directory() {
    run(vec![
        Op::Mkdir { dir: 0, name: 0 },
        Op::Mkdir { dir: 0, name: 1 },
        Op::Create {
            dir: 1,
            name: 2,
            data: b"x".to_vec(),
        },
        Op::Rename {
            target: 0,
            dir: 0,
            name: 1,
            noreplace: false,
        },
    ])
    .unwrap();
}
