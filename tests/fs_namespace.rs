//! Namespace operations of `OssFs` over `MockClient`, without FUSE: lookup, readdir paging,
//! caching, mkdir/rmdir, unlink, rename, symlinks, metadata, read-only refusal.

mod fs_support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fs_support::*;
use fuser::FileType;
use ossmount::client::failure::{FailureClient, internal_error};
use ossmount::client::mock::{MockObject, MockOp};
use ossmount::fs::SetAttr;

#[tokio::test]
async fn lookup_finds_files_markers_and_implicit_dirs_with_one_list_each() {
    let m = mock();
    m.add_object("p/a.txt", MockObject::constant(1, 10));
    m.add_object("p/marked/", MockObject::from_bytes(Vec::new()));
    m.add_object("p/implicit/x", MockObject::constant(2, 3));
    let fs = new_fs(m.clone(), "p/");

    let a = fs.lookup(ROOT, name("a.txt")).await.unwrap();
    assert_eq!(a.attr.kind, FileType::RegularFile);
    assert_eq!(a.attr.size, 10);
    assert_eq!(a.attr.perm, 0o644);
    assert_eq!(a.attr.uid, 1000);
    let d = fs.lookup(ROOT, name("marked")).await.unwrap();
    assert_eq!(d.attr.kind, FileType::Directory);
    let i = fs.lookup(ROOT, name("implicit")).await.unwrap();
    assert_eq!(i.attr.kind, FileType::Directory);
    // One listing each; directories, the first time, one more 1-key listing of `name/` to
    // find their marker, and a HEAD of the marker for its mode/owner.
    assert_eq!(m.op_count(MockOp::ListObjects), 5);
    assert_eq!(
        m.op_count(MockOp::HeadObject),
        2,
        "the file's and the marker's user metadata, once"
    );

    let err = fs.lookup(ROOT, name("missing")).await.unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    // Negative cache: no second request.
    let err = fs.lookup(ROOT, name("missing")).await.unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(m.op_count(MockOp::ListObjects), 6);

    // Within the TTL, lookup and getattr make no request.
    m.reset_counts();
    let again = fs.lookup(ROOT, name("a.txt")).await.unwrap();
    assert_eq!(again.attr.ino, a.attr.ino, "stable inode numbers");
    fs.getattr(a.attr.ino.0, None).await.unwrap();
    fs.getattr(d.attr.ino.0, None).await.unwrap();
    assert_eq!(m.total_ops(), 0);
}

#[tokio::test]
async fn lookup_sees_a_directory_behind_many_similar_names() {
    let m = mock();
    for i in 0..100 {
        m.add_object(&format!("data-{i:03}"), MockObject::constant(1, 1));
    }
    m.add_object("data/inner", MockObject::constant(1, 1));
    m.add_object("data", MockObject::constant(1, 1));
    let fs = new_fs(m.clone(), "");
    let e = fs.lookup(ROOT, name("data")).await.unwrap();
    assert_eq!(
        e.attr.kind,
        FileType::Directory,
        "the directory wins over the file of the same name"
    );
    // Two to find it behind the similar names, one to learn it has no marker.
    assert_eq!(m.op_count(MockOp::ListObjects), 3);
}

#[tokio::test]
async fn attributes_expire_and_getattr_heads_once() {
    let m = mock();
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("mode".to_string(), (0o100600u32).to_string());
    meta.insert("uid".to_string(), "42".to_string());
    meta.insert("mtime".to_string(), "1600000000".to_string());
    m.add_object("f", MockObject::constant(1, 5).with_user_meta(meta));
    let mut cfg = config("");
    cfg.metadata_ttl = Some(Duration::from_millis(50));
    let fs = ossmount::fs::OssFs::new(m.clone(), cfg).unwrap();
    let e = fs.lookup(ROOT, name("f")).await.unwrap();
    // A path lookup finds the file by listing (no user metadata) and HEADs it once.
    assert_eq!(m.op_count(MockOp::HeadObject), 1);
    assert_eq!(e.attr.perm, 0o600);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let a = fs.getattr(e.attr.ino.0, None).await.unwrap();
    assert_eq!(m.op_count(MockOp::HeadObject), 2, "getattr revalidates after the TTL");
    assert_eq!(a.attr.perm, 0o600);
    assert_eq!(a.attr.uid, 42);
    assert_eq!(
        a.attr.mtime,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
    );
}

#[tokio::test]
async fn readdir_of_2500_entries_takes_3_list_requests_and_no_head_or_get() {
    let m = mock();
    for i in 0..2400 {
        m.add_object(&format!("big/f{i:05}"), MockObject::constant(1, i % 7));
    }
    for i in 0..100 {
        m.add_object(&format!("big/d{i:03}/x"), MockObject::constant(1, 1));
    }
    let fs = new_fs(m.clone(), "");
    let big = lookup_ino(&fs, ROOT, "big").await.unwrap();
    m.reset_counts();
    let opened = fs.opendir(big).await.unwrap();
    let mut offset = 0;
    let mut entries = Vec::new();
    loop {
        let batch = fs.readdir(big, opened.fh, offset, true).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for e in batch {
            assert!(e.offset > offset, "offsets increase");
            offset = e.offset;
            assert!(e.attr.is_some());
            entries.push(e);
        }
    }
    assert_eq!(entries.len(), 2502);
    assert_eq!(entries[0].name, ".");
    assert_eq!(entries[1].name, "..");
    assert_eq!(entries.iter().filter(|e| e.kind == FileType::Directory).count(), 102);
    assert_eq!(m.op_count(MockOp::ListObjects), 3);
    assert_eq!(m.op_count(MockOp::HeadObject) + m.op_count(MockOp::GetObject), 0);

    // Re-reading from a remembered offset gives the same entries (stable offsets).
    let again = fs.readdir(big, opened.fh, entries[1500].offset, false).await.unwrap();
    assert_eq!(again[0].name, entries[1501].name);
    assert_eq!(m.op_count(MockOp::ListObjects), 3);

    // `ls -l` after the listing: every stat is answered from the cache.
    for e in &entries[2..] {
        let l = fs.lookup(big, &e.name).await.unwrap();
        assert_eq!(l.attr.ino.0, e.ino);
    }
    assert_eq!(m.total_ops(), 3);
    fs.releasedir(big, opened.fh).await.unwrap();
}

#[tokio::test]
async fn keys_that_are_not_posix_names_are_skipped() {
    let m = mock();
    m.add_object("d/ok", MockObject::constant(1, 1));
    m.add_object("d//double", MockObject::constant(1, 1));
    m.add_object("d/..", MockObject::constant(1, 1));
    m.add_object("d/.", MockObject::constant(1, 1));
    m.add_object(&format!("d/{}", "x".repeat(300)), MockObject::constant(1, 1));
    m.add_object("d/", MockObject::from_bytes(Vec::new()));
    m.add_object("d/same", MockObject::constant(1, 1));
    m.add_object("d/same/child", MockObject::constant(1, 1));
    let fs = new_fs(m.clone(), "");
    let d = lookup_ino(&fs, ROOT, "d").await.unwrap();
    assert_eq!(list(&fs, d).await.unwrap(), ["ok", "same"]);
    let same = fs.lookup(d, name("same")).await.unwrap();
    assert_eq!(same.attr.kind, FileType::Directory);
}

#[tokio::test]
async fn mkdir_rmdir_and_enotempty() {
    let m = mock();
    let fs = new_fs(m.clone(), "pre/");
    let e = fs.mkdir(ROOT, name("d"), 0o755, 0o022, 7, 8).await.unwrap();
    assert_eq!(e.attr.kind, FileType::Directory);
    assert_eq!(e.attr.uid, 7);
    let marker = m.object("pre/d/").expect("marker object");
    assert_eq!(
        marker.user_meta.get("mode").map(String::as_str),
        Some(&*(libc::S_IFDIR | 0o755).to_string())
    );
    assert_eq!(
        fs.mkdir(ROOT, name("d"), 0o755, 0, 0, 0).await.unwrap_err().errno(),
        libc::EEXIST
    );
    let d = e.attr.ino.0;
    write_file(&fs, d, "f", b"hello").await.unwrap();
    assert_eq!(fs.rmdir(ROOT, name("d")).await.unwrap_err().errno(), libc::ENOTEMPTY);
    assert_eq!(fs.unlink(ROOT, name("d")).await.unwrap_err().errno(), libc::EISDIR);
    assert_eq!(fs.rmdir(d, name("f")).await.unwrap_err().errno(), libc::ENOTDIR);
    fs.unlink(d, name("f")).await.unwrap();
    fs.rmdir(ROOT, name("d")).await.unwrap();
    assert!(m.keys().is_empty(), "{:?}", m.keys());
    assert_eq!(fs.lookup(ROOT, name("d")).await.unwrap_err().errno(), libc::ENOENT);
    assert_eq!(list(&fs, ROOT).await.unwrap(), Vec::<String>::new());

    // An implicit directory: rmdir when its last child is gone succeeds.
    m.add_object("pre/imp/x", MockObject::constant(1, 1));
    let fs = new_fs(m.clone(), "pre/");
    let imp = lookup_ino(&fs, ROOT, "imp").await.unwrap();
    fs.unlink(imp, name("x")).await.unwrap();
    fs.rmdir(ROOT, name("imp")).await.unwrap();
    assert!(m.keys().is_empty());
}

#[tokio::test]
async fn unlink_deletes_the_object() {
    let m = mock();
    m.add_object("a", MockObject::constant(1, 1));
    let fs = new_fs(m.clone(), "");
    fs.unlink(ROOT, name("a")).await.unwrap();
    assert!(!m.contains_key("a"));
    assert_eq!(fs.unlink(ROOT, name("a")).await.unwrap_err().errno(), libc::ENOENT);
}

#[tokio::test]
async fn rename_file_dir_noreplace_exchange() {
    let m = mock();
    m.add_object("a", MockObject::ramp(1, 1000));
    m.add_object("b", MockObject::ramp(2, 10));
    m.add_object("dir/x", MockObject::ramp(3, 5));
    m.add_object("dir/sub/y", MockObject::ramp(4, 5));
    m.add_object("dir/", MockObject::from_bytes(Vec::new()));
    m.add_object("full/z", MockObject::ramp(5, 5));
    let fs = new_fs(m.clone(), "");
    let a = lookup_ino(&fs, ROOT, "a").await.unwrap();

    let e = fs
        .rename(ROOT, name("a"), ROOT, name("b"), libc::RENAME_NOREPLACE)
        .await
        .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    let e = fs
        .rename(ROOT, name("a"), ROOT, name("b"), libc::RENAME_EXCHANGE)
        .await
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);

    // Over an existing file: replaces it.
    fs.rename(ROOT, name("a"), ROOT, name("b"), 0).await.unwrap();
    assert!(!m.contains_key("a"));
    assert_eq!(m.object_data("b").unwrap().len(), 1000);
    let b = lookup_ino(&fs, ROOT, "b").await.unwrap();
    assert_eq!(b, a, "the inode follows the rename");
    assert_eq!(
        read_file(&fs, b).await.unwrap(),
        ossmount::client::mock::ramp_bytes(1, 1000)
    );

    // Directory onto a non-empty directory: ENOTEMPTY; onto a file: ENOTDIR.
    let e = fs.rename(ROOT, name("dir"), ROOT, name("full"), 0).await.unwrap_err();
    assert_eq!(e.errno(), libc::ENOTEMPTY);
    let e = fs.rename(ROOT, name("dir"), ROOT, name("b"), 0).await.unwrap_err();
    assert_eq!(e.errno(), libc::ENOTDIR);
    let e = fs.rename(ROOT, name("b"), ROOT, name("full"), 0).await.unwrap_err();
    assert_eq!(e.errno(), libc::EISDIR);

    fs.rename(ROOT, name("dir"), ROOT, name("moved"), 0).await.unwrap();
    let mut keys = m.keys();
    keys.sort();
    assert_eq!(keys, ["b", "full/z", "moved/", "moved/sub/y", "moved/x"]);
    let moved = lookup_ino(&fs, ROOT, "moved").await.unwrap();
    assert_eq!(list(&fs, moved).await.unwrap(), ["sub", "x"]);
    let x = lookup_ino(&fs, moved, "x").await.unwrap();
    assert_eq!(
        read_file(&fs, x).await.unwrap(),
        ossmount::client::mock::ramp_bytes(3, 5)
    );
    assert_eq!(fs.lookup(ROOT, name("dir")).await.unwrap_err().errno(), libc::ENOENT);
}

#[tokio::test]
async fn rename_of_a_large_file_uses_part_copies() {
    let m = mock();
    // Above the CopyObject limit (lowered from 1 GiB for the test): part copies of a part each.
    let size = 4 * PART as usize + 1;
    m.add_object("big", MockObject::ramp(9, size));
    let fs = new_fs(m.clone(), "");
    fs.set_copy_object_max_bytes(2 * PART);
    lookup_ino(&fs, ROOT, "big").await.unwrap();
    fs.rename(ROOT, name("big"), ROOT, name("big2"), 0).await.unwrap();
    assert_eq!(m.op_count(MockOp::UploadPartCopy), 5);
    assert_eq!(m.op_count(MockOp::CopyObject), 0);
    assert_eq!(
        m.object_data("big2").unwrap(),
        ossmount::client::mock::ramp_bytes(9, size)
    );
    assert!(m.in_progress_uploads().is_empty());
    assert!(!m.contains_key("big"));
}

#[tokio::test]
async fn symlinks_round_trip() {
    let m = mock();
    let fs = new_fs(m.clone(), "p/");
    let e = fs
        .symlink(ROOT, name("l"), std::path::Path::new("../target file"), 5, 6)
        .await
        .unwrap();
    assert_eq!(e.attr.kind, FileType::Symlink);
    assert_eq!(e.attr.size, "../target file".len() as u64);
    // OSS gets the key the path resolves to (so SDK readers follow it); the text is kept in meta.
    assert_eq!(m.object("p/l").unwrap().symlink_target.as_deref(), Some("target file"));
    let fs2 = new_fs(m.clone(), "p/");
    assert_eq!(list(&fs2, ROOT).await.unwrap(), ["l"]);
    let l = fs2.lookup(ROOT, name("l")).await.unwrap();
    assert_eq!(l.attr.kind, FileType::Symlink);
    assert_eq!(fs2.readlink(l.attr.ino.0).await.unwrap(), b"../target file");
    fs2.rename(ROOT, name("l"), ROOT, name("l2"), 0).await.unwrap();
    assert_eq!(m.object("p/l2").unwrap().symlink_target.as_deref(), Some("target file"));
    let l2 = fs2.lookup(ROOT, name("l2")).await.unwrap();
    assert_eq!(fs2.readlink(l2.attr.ino.0).await.unwrap(), b"../target file");
    // A link written by an SDK holds a full key: shown relative to the link's directory.
    m.add_object("p/sub/sdk-link", MockObject::symlink("p/other/file.txt"));
    let sub = fs2.lookup(ROOT, name("sub")).await.unwrap();
    let sdk = fs2.lookup(sub.attr.ino.0, name("sdk-link")).await.unwrap();
    assert_eq!(fs2.readlink(sdk.attr.ino.0).await.unwrap(), b"../other/file.txt");
    assert_eq!(
        fs2.link(l.attr.ino.0, ROOT, name("hard")).await.unwrap_err().errno(),
        libc::EPERM
    );
}

#[tokio::test]
async fn chmod_chown_utimens_are_stored_as_user_metadata() {
    let m = mock();
    m.add_object("f", MockObject::ramp(1, 100));
    let fs = new_fs(m.clone(), "");
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_500_000_000, 250);
    let a = fs
        .setattr(
            f,
            SetAttr {
                mode: Some(0o640),
                uid: Some(11),
                gid: Some(12),
                mtime: Some(t),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(a.attr.perm, 0o640);
    assert_eq!((a.attr.uid, a.attr.gid), (11, 12));
    assert_eq!(a.attr.mtime, t);
    let o = m.object("f").unwrap();
    assert_eq!(o.user_meta["mode"], (libc::S_IFREG | 0o640).to_string());
    assert_eq!(o.user_meta["uid"], "11");
    assert_eq!(o.user_meta["gid"], "12");
    assert_eq!(o.user_meta["mtime"], "1500000000");
    assert_eq!(o.user_meta["mtime-nsec"], "250");
    assert_eq!(o.data, ossmount::client::mock::ramp_bytes(1, 100), "content untouched");
    // A fresh mount sees them after its HEAD.
    let mut cfg = config("");
    cfg.metadata_ttl = Some(Duration::ZERO);
    let fs2 = ossmount::fs::OssFs::new(m.clone(), cfg).unwrap();
    let f2 = lookup_ino(&fs2, ROOT, "f").await.unwrap();
    let a2 = fs2.getattr(f2, None).await.unwrap();
    assert_eq!(a2.attr.perm, 0o640);
    assert_eq!(a2.attr.mtime, t);

    // Directories: chmod writes the marker (making an implicit directory explicit).
    m.add_object("d/x", MockObject::constant(1, 1));
    let d = lookup_ino(&fs, ROOT, "d").await.unwrap();
    fs.setattr(
        d,
        SetAttr {
            mode: Some(0o700),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        m.object("d/").unwrap().user_meta["mode"],
        (libc::S_IFDIR | 0o700).to_string()
    );
}

#[tokio::test]
async fn read_only_refuses_every_mutation_without_a_write_request() {
    let m = mock();
    m.add_object("f", MockObject::ramp(1, 10));
    m.add_object("d/x", MockObject::ramp(1, 10));
    let mut cfg = config("");
    cfg.read_only = true;
    let fs = ossmount::fs::OssFs::new(m.clone(), cfg).unwrap();
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let d = lookup_ino(&fs, ROOT, "d").await.unwrap();
    let erofs = |r: Result<(), ossmount::fs::FsError>| assert_eq!(r.unwrap_err().errno(), libc::EROFS);
    erofs(fs.mkdir(ROOT, name("n"), 0o755, 0, 0, 0).await.map(|_| ()));
    erofs(
        fs.mknod(ROOT, name("n"), libc::S_IFREG | 0o644, 0, 0, 0, 0)
            .await
            .map(|_| ()),
    );
    erofs(
        fs.create(ROOT, name("n"), 0o644, 0, libc::O_WRONLY, 0, 0)
            .await
            .map(|_| ()),
    );
    erofs(fs.unlink(ROOT, name("f")).await);
    erofs(fs.rmdir(ROOT, name("d")).await);
    erofs(fs.rename(ROOT, name("f"), ROOT, name("g"), 0).await);
    erofs(
        fs.symlink(ROOT, name("l"), std::path::Path::new("f"), 0, 0)
            .await
            .map(|_| ()),
    );
    erofs(fs.link(f, ROOT, name("h")).await.map(|_| ()));
    erofs(fs.open(f, libc::O_WRONLY).await.map(|_| ()));
    erofs(fs.open(f, libc::O_RDWR).await.map(|_| ()));
    erofs(
        fs.setattr(
            f,
            SetAttr {
                size: Some(0),
                ..Default::default()
            },
        )
        .await
        .map(|_| ()),
    );
    erofs(
        fs.setattr(
            f,
            SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .await
        .map(|_| ()),
    );
    erofs(fs.access(f, libc::W_OK, 0, 0).await);
    // Reading works.
    assert_eq!(
        read_file(&fs, f).await.unwrap(),
        ossmount::client::mock::ramp_bytes(1, 10)
    );
    assert_eq!(list(&fs, d).await.unwrap(), ["x"]);
    assert_eq!(m.write_ops(), 0);
}

#[tokio::test]
async fn access_checks_mode_and_owner() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    let (e, o) = fs
        .create(ROOT, name("f"), 0o640, 0, libc::O_WRONLY, 10, 20)
        .await
        .unwrap();
    fs.release(e.attr.ino.0, o.fh).await.unwrap();
    let f = e.attr.ino.0;
    fs.access(f, libc::R_OK | libc::W_OK, 10, 99).await.unwrap();
    fs.access(f, libc::R_OK, 11, 20).await.unwrap();
    assert_eq!(
        fs.access(f, libc::W_OK, 11, 20).await.unwrap_err().errno(),
        libc::EACCES
    );
    assert_eq!(
        fs.access(f, libc::R_OK, 11, 21).await.unwrap_err().errno(),
        libc::EACCES
    );
    fs.access(f, libc::R_OK | libc::W_OK, 0, 0).await.unwrap();
    assert_eq!(fs.access(f, libc::X_OK, 0, 0).await.unwrap_err().errno(), libc::EACCES);
    fs.access(f, libc::F_OK, 11, 21).await.unwrap();
}

#[tokio::test]
async fn list_failure_surfaces_as_eio() {
    let m = mock();
    m.add_object("f", MockObject::constant(1, 1));
    let fc = Arc::new(FailureClient::new(m.clone()));
    fc.fail_always(MockOp::ListObjects, internal_error);
    let fs = new_fs(fc.clone(), "");
    assert_eq!(fs.lookup(ROOT, name("f")).await.unwrap_err().errno(), libc::EIO);
    let o = fs.opendir(ROOT).await.unwrap();
    // "." and ".." come first; the listing error surfaces on the same call.
    assert_eq!(fs.readdir(ROOT, o.fh, 0, false).await.unwrap_err().errno(), libc::EIO);
}

#[tokio::test]
async fn statfs_reports_large_numbers() {
    let fs = new_fs(mock(), "");
    let s = fs.statfs().await.unwrap();
    assert!(s.blocks >= 1 << 30);
    assert_eq!(s.bfree, s.blocks);
    assert_eq!(s.namelen, 255);
}

#[tokio::test]
async fn directory_wins_over_a_file_of_the_same_name_across_listing_pages() {
    let m = mock();
    m.add_object("same", MockObject::constant(1, 1));
    for i in 0..1500 {
        m.add_object(&format!("same-{i:04}"), MockObject::constant(1, 1));
    }
    m.add_object("same/child", MockObject::constant(1, 1));
    m.add_object("zzz", MockObject::constant(1, 1));
    let fs = new_fs(m.clone(), "");
    let names = list(&fs, ROOT).await.unwrap();
    assert_eq!(names.len(), 1502, "1500 + same + zzz");
    assert_eq!(names.iter().filter(|n| *n == "same").count(), 1);
    let e = fs.lookup(ROOT, name("same")).await.unwrap();
    assert_eq!(e.attr.kind, FileType::Directory);
    assert_eq!(
        m.op_count(MockOp::ListObjects),
        2,
        "two pages, lookup answered from the listing"
    );
}

#[test]
fn fs_config_from_mount_config() {
    use ossmount::config::*;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        bucket: "b".into(),
        prefix: "team/".into(),
        mountpoint: "/mnt".into(),
        endpoint: EndpointConfig {
            url: "http://127.0.0.1:1".into(),
            region: None,
            signature_version: SignatureVersion::V4,
            path_style: true,
        },
        credentials: CredentialsConfig::default(),
        fuse: FuseConfig {
            read_only: true,
            uid: Some(7),
            ..Default::default()
        },
        cache: CacheConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            metadata_ttl: None,
            ..Default::default()
        },
        transfer: TransferConfig::default(),
        log: LogConfig::default(),
        check_only: false,
    };
    let c = ossmount::fs::FsConfig::from_config(&config);
    assert_eq!(c.prefix, "team/");
    assert!(c.read_only);
    assert_eq!(c.uid, 7);
    assert_eq!(c.metadata_ttl, None);
    assert_eq!(c.staging_dir.as_deref(), Some(dir.path().join("staging").as_path()));
    let fs = ossmount::fs::OssFs::new(mock(), c).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(fs.staging_dir()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn directory_metadata_is_read_from_its_marker_on_revalidation() {
    let m = mock();
    let meta: std::collections::BTreeMap<String, String> = [
        ("mode".to_string(), (libc::S_IFDIR | 0o700).to_string()),
        ("uid".to_string(), "9".to_string()),
    ]
    .into_iter()
    .collect();
    m.add_object("d/", MockObject::from_bytes(Vec::new()).with_user_meta(meta));
    m.add_object("d/x", MockObject::constant(1, 1));
    let mut cfg = config("");
    cfg.metadata_ttl = Some(Duration::ZERO);
    let fs = ossmount::fs::OssFs::new(m.clone(), cfg).unwrap();
    let d = lookup_ino(&fs, ROOT, "d").await.unwrap();
    let a = fs.getattr(d, None).await.unwrap();
    assert_eq!(a.attr.perm, 0o700);
    assert_eq!(a.attr.uid, 9);
    assert_eq!(m.op_count(MockOp::HeadObject), 1);
    // Unchanged marker: no second HEAD.
    fs.getattr(d, None).await.unwrap();
    assert_eq!(m.op_count(MockOp::HeadObject), 1);
}

/// `ls -l` then `find` (or two `ls`) within the metadata TTL: the second listing is served from
/// the first, with no request; any change through the mount, or the TTL, ends that.
#[tokio::test]
async fn a_complete_listing_is_reused_within_the_ttl_until_anything_changes_here() {
    let m = mock();
    for i in 0..1500 {
        m.add_object(&format!("d/f{i:04}"), MockObject::constant(1, 3));
    }
    let mut cfg = config("");
    cfg.metadata_ttl = Some(std::time::Duration::from_millis(400));
    let fs = ossmount::fs::OssFs::new(m.clone(), cfg).unwrap();
    let d = lookup_ino(&fs, ROOT, "d").await.unwrap();
    m.reset_counts();
    assert_eq!(list(&fs, d).await.unwrap().len(), 1500);
    assert_eq!(m.op_count(MockOp::ListObjects), 2);
    assert_eq!(list(&fs, d).await.unwrap().len(), 1500);
    assert_eq!(m.op_count(MockOp::ListObjects), 2, "second listing came from the first");

    // A change through the mount anywhere: listed again, and the change is in it.
    write_file(&fs, d, "new", b"x").await.unwrap();
    m.reset_counts();
    let names = list(&fs, d).await.unwrap();
    assert_eq!(names.len(), 1501);
    assert!(names.contains(&"new".to_string()));
    assert_eq!(m.op_count(MockOp::ListObjects), 2);
    lookup_ino(&fs, d, "f0007").await.unwrap();
    fs.unlink(d, name("f0007")).await.unwrap();
    let names = list(&fs, d).await.unwrap();
    assert!(!names.contains(&"f0007".to_string()));

    // Someone else's change shows once the TTL is over.
    m.add_object("d/external", MockObject::constant(2, 5));
    assert!(!list(&fs, d).await.unwrap().contains(&"external".to_string()));
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert!(list(&fs, d).await.unwrap().contains(&"external".to_string()));
}

/// A reused listing never rolls an inode back to the attributes it had when listed.
#[tokio::test]
async fn a_reused_listing_does_not_override_newer_attributes() {
    let m = mock();
    m.add_object("d/a", MockObject::constant(1, 10));
    let mut cfg = config("");
    cfg.metadata_ttl = Some(std::time::Duration::from_secs(60));
    let fs = ossmount::fs::OssFs::new(m.clone(), cfg).unwrap();
    let d = lookup_ino(&fs, ROOT, "d").await.unwrap();
    assert_eq!(list(&fs, d).await.unwrap(), ["a"]);
    // Our own rewrite of `a` (a change: the cached listing is dropped) ...
    let a = lookup_ino(&fs, d, "a").await.unwrap();
    let o = fs.open(a, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.setattr(
        a,
        ossmount::fs::SetAttr {
            size: Some(0),
            fh: Some(o.fh),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.write(a, o.fh, 0, &[9u8; 25]).await.unwrap();
    fs.release(a, o.fh).await.unwrap();
    // ... so listings after it show the new size, first from OSS, then from the cache.
    for _ in 0..2 {
        let o = fs.opendir(d).await.unwrap();
        let entries = fs.readdir(d, o.fh, 0, true).await.unwrap();
        let e = entries.iter().find(|e| e.name == "a").unwrap();
        assert_eq!(e.attr.as_ref().unwrap().attr.size, 25);
        fs.releasedir(d, o.fh).await.unwrap();
    }
}

/// chmod/chown of a directory are kept in its marker and survive the attribute TTL (a lookup
/// after it) and a remount (a new mount reads the marker), as for files.
#[tokio::test]
async fn directory_mode_and_owner_survive_the_ttl_and_a_remount() {
    let m = mock();
    let mut cfg = config("");
    cfg.metadata_ttl = Some(Duration::from_millis(100));
    let fs = ossmount::fs::OssFs::new(m.clone(), cfg.clone()).unwrap();
    let d = fs.mkdir(ROOT, name("shared"), 0o755, 0, 0, 0).await.unwrap().attr.ino.0;
    fs.setattr(
        d,
        SetAttr {
            mode: Some(0o1777),
            uid: Some(4321),
            gid: Some(99),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let e = fs.lookup(ROOT, name("shared")).await.unwrap();
    assert_eq!(
        (e.attr.perm, e.attr.uid, e.attr.gid),
        (0o1777, 4321, 99),
        "after the TTL"
    );
    let a = fs.getattr(d, None).await.unwrap();
    assert_eq!((a.attr.perm, a.attr.uid), (0o1777, 4321));

    let remounted = ossmount::fs::OssFs::new(m.clone(), cfg).unwrap();
    let e = remounted.lookup(ROOT, name("shared")).await.unwrap();
    assert_eq!(
        (e.attr.perm, e.attr.uid, e.attr.gid),
        (0o1777, 4321, 99),
        "after a remount"
    );
    // Known now: a lookup after the TTL needs no HEAD.
    tokio::time::sleep(Duration::from_millis(150)).await;
    m.reset_counts();
    remounted.lookup(ROOT, name("shared")).await.unwrap();
    assert_eq!(m.op_count(MockOp::HeadObject), 0);
}
