//! Write paths of `OssFs` over `MockClient`/`FailureClient`, without FUSE: small files, streaming
//! multipart uploads, staging for overwrite/append/truncate/random writes, reading back one's
//! own writes, and failures (nothing partial visible, uploads aborted, errno returned).

mod fs_support;

use std::sync::Arc;

use fs_support::*;
use ossmount::client::failure::{FailureClient, internal_error};
use ossmount::client::mock::{MockClient, MockObject, MockOp, ramp_bytes};
use ossmount::crc64;
use ossmount::fs::{OssFs, SetAttr};

#[tokio::test]
async fn small_file_is_one_put_with_posix_metadata() {
    let m = mock();
    let fs = new_fs(m.clone(), "pre/");
    let ino = write_file(&fs, ROOT, "hello.txt", b"hello world").await.unwrap();
    assert_eq!(m.op_count(MockOp::PutObject), 1);
    assert_eq!(m.op_count(MockOp::CreateMultipartUpload), 0);
    let o = m.object("pre/hello.txt").unwrap();
    assert_eq!(&o.data[..], b"hello world");
    assert_eq!(o.user_meta["mode"], (libc::S_IFREG | 0o644).to_string());
    assert_eq!(o.user_meta["uid"], "1000");
    assert_eq!(o.user_meta["gid"], "1000");
    assert!(o.user_meta["mtime"].parse::<u64>().unwrap() > 1_700_000_000);
    let a = fs.getattr(ino, None).await.unwrap();
    assert_eq!(a.attr.size, 11);
    assert_eq!(read_file(&fs, ino).await.unwrap(), b"hello world");
    assert_eq!(list(&fs, ROOT).await.unwrap(), ["hello.txt"]);
}

#[tokio::test]
async fn touch_creates_an_empty_object_and_new_files_are_listed_before_close() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    let (e, o) = fs
        .create(ROOT, name("t"), 0o644, 0, libc::O_WRONLY | libc::O_CREAT, 0, 0)
        .await
        .unwrap();
    // Visible locally before it is uploaded.
    assert_eq!(list(&fs, ROOT).await.unwrap(), ["t"]);
    assert!(!m.contains_key("t"));
    fs.release(e.attr.ino.0, o.fh).await.unwrap();
    assert_eq!(m.object_data("t").unwrap().len(), 0);
    // mknod of a regular file writes at once; FIFOs, sockets and devices are empty objects
    // whose x-oss-meta-mode carries the type (and x-oss-meta-rdev the device number).
    fs.mknod(ROOT, name("n"), libc::S_IFREG | 0o600, 0, 0, 0, 0)
        .await
        .unwrap();
    assert!(m.contains_key("n"));
    let e = fs
        .mknod(ROOT, name("fifo"), libc::S_IFIFO | 0o600, 0, 0, 0, 0)
        .await
        .unwrap();
    assert_eq!(e.attr.kind, fuser::FileType::NamedPipe);
    let dev = fs
        .mknod(ROOT, name("dev"), libc::S_IFCHR | 0o640, 0, 0x0102, 0, 0)
        .await
        .unwrap();
    assert_eq!((dev.attr.kind, dev.attr.rdev), (fuser::FileType::CharDevice, 0x0102));
    let meta = &m.object("dev").unwrap().user_meta;
    assert_eq!(
        meta.get("mode").map(String::as_str),
        Some((libc::S_IFCHR | 0o640).to_string().as_str())
    );
    assert_eq!(meta.get("rdev").map(String::as_str), Some("258"));
    // A fresh mount sees the types once the metadata is read (lookup HEADs unknown files).
    let fs2 = new_fs(m.clone(), "");
    let again = fs2.lookup(ROOT, name("fifo")).await.unwrap();
    assert_eq!(again.attr.kind, fuser::FileType::NamedPipe);
    // chmod keeps the type.
    let a = fs2
        .setattr(
            again.attr.ino.0,
            ossmount::fs::SetAttr {
                mode: Some(0o644),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((a.attr.kind, a.attr.perm), (fuser::FileType::NamedPipe, 0o644));
}

#[tokio::test]
async fn sequential_large_write_streams_a_multipart_upload() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    let data = ramp_bytes(7, 9 * PART as usize + 12345);
    let (e, o) = fs
        .create(ROOT, name("big"), 0o644, 0, libc::O_WRONLY, 0, 0)
        .await
        .unwrap();
    let ino = e.attr.ino.0;
    for (i, chunk) in data.chunks(100_000).enumerate() {
        fs.write(ino, o.fh, (i * 100_000) as u64, chunk).await.unwrap();
    }
    // Parts went up while writing (at most a few in flight), before close.
    assert!(m.op_count(MockOp::UploadPart) >= 5, "parts uploaded during the writes");
    assert_eq!(fs.getattr(ino, None).await.unwrap().attr.size, data.len() as u64);
    fs.release(ino, o.fh).await.unwrap();
    assert_eq!(m.op_count(MockOp::CreateMultipartUpload), 1);
    assert_eq!(m.op_count(MockOp::UploadPart), 10);
    assert_eq!(m.op_count(MockOp::CompleteMultipartUpload), 1);
    assert_eq!(m.op_count(MockOp::PutObject), 0);
    assert_eq!(m.op_count(MockOp::GetObject), 0);
    let stored = m.object_data("big").unwrap();
    assert_eq!(crc64::checksum(&stored), crc64::checksum(&data));
    assert!(m.object("big").unwrap().user_meta.contains_key("mode"));
    assert_eq!(read_file(&fs, ino).await.unwrap(), data);
}

#[tokio::test]
async fn overwrite_goes_through_staging() {
    let m = mock();
    let original = ramp_bytes(1, 3 * PART as usize);
    m.add_object("f", MockObject::from_bytes(original.clone()));
    let fs = new_fs(m.clone(), "");
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let o = fs.open(f, libc::O_RDWR).await.unwrap();
    fs.write(f, o.fh, 1000, b"PATCH").await.unwrap();
    // Reads on the writing handle see the new bytes before close.
    let got = fs.read(f, o.fh, 998, 9).await.unwrap();
    let mut expect = original.clone();
    expect[1000..1005].copy_from_slice(b"PATCH");
    assert_eq!(&got[..], &expect[998..1007]);
    assert!(m.object_data("f").unwrap() == original, "nothing uploaded before flush");
    fs.release(f, o.fh).await.unwrap();
    assert_eq!(m.object_data("f").unwrap(), expect);
    // Staged content above one part is uploaded in parts.
    assert_eq!(m.op_count(MockOp::UploadPart), 3);
}

#[tokio::test]
async fn append_and_o_append_writes() {
    let m = mock();
    m.add_object("log", MockObject::from_bytes(b"line1\n".to_vec()));
    let fs = new_fs(m.clone(), "");
    let f = lookup_ino(&fs, ROOT, "log").await.unwrap();
    let o = fs.open(f, libc::O_WRONLY | libc::O_APPEND).await.unwrap();
    // The kernel turns O_APPEND into writes at the current size.
    fs.write(f, o.fh, 6, b"line2\n").await.unwrap();
    fs.release(f, o.fh).await.unwrap();
    assert_eq!(&m.object_data("log").unwrap()[..], b"line1\nline2\n");
}

#[tokio::test]
async fn truncate_without_open_file() {
    let m = mock();
    m.add_object("f", MockObject::from_bytes(b"0123456789".to_vec()));
    let fs = new_fs(m.clone(), "");
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let a = fs
        .setattr(
            f,
            SetAttr {
                size: Some(4),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(a.attr.size, 4);
    assert_eq!(&m.object_data("f").unwrap()[..], b"0123");
    fs.setattr(
        f,
        SetAttr {
            size: Some(6),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(&m.object_data("f").unwrap()[..], b"0123\0\0");
    let gets = m.op_count(MockOp::GetObject);
    fs.setattr(
        f,
        SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(m.object_data("f").unwrap().len(), 0);
    assert_eq!(m.op_count(MockOp::GetObject), gets, "truncate to 0 downloads nothing");
    assert_eq!(fs.getattr(f, None).await.unwrap().attr.size, 0);
}

#[tokio::test]
async fn o_trunc_rewrite_streams_without_downloading() {
    let m = mock();
    m.add_object("f", MockObject::ramp(1, 5 * PART as usize));
    let fs = new_fs(m.clone(), "");
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    // What the kernel sends for open(O_WRONLY|O_TRUNC): open, then setattr(size=0, fh).
    let o = fs.open(f, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.setattr(
        f,
        SetAttr {
            size: Some(0),
            fh: Some(o.fh),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let data = ramp_bytes(2, 2 * PART as usize + 5);
    fs.write(f, o.fh, 0, &data).await.unwrap();
    fs.release(f, o.fh).await.unwrap();
    assert_eq!(m.op_count(MockOp::GetObject), 0);
    assert_eq!(m.op_count(MockOp::UploadPart), 3);
    assert_eq!(m.object_data("f").unwrap(), data);
}

#[tokio::test]
async fn random_writes_and_gaps_on_a_new_file() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    let (e, o) = fs.create(ROOT, name("r"), 0o644, 0, libc::O_RDWR, 0, 0).await.unwrap();
    let f = e.attr.ino.0;
    fs.write(f, o.fh, 10, b"world").await.unwrap(); // past EOF: zero gap
    fs.write(f, o.fh, 0, b"hello").await.unwrap(); // rewrite inside the unsent buffer
    fs.write(f, o.fh, 3, b"LO").await.unwrap();
    assert_eq!(&fs.read(f, o.fh, 0, 100).await.unwrap()[..], b"helLO\0\0\0\0\0world");
    fs.setattr(
        f,
        SetAttr {
            size: Some(12),
            fh: Some(o.fh),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.release(f, o.fh).await.unwrap();
    assert_eq!(&m.object_data("r").unwrap()[..], b"helLO\0\0\0\0\0wo");
}

#[tokio::test]
async fn non_sequential_write_after_parts_were_sent_completes_and_stages() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    let (e, o) = fs.create(ROOT, name("s"), 0o644, 0, libc::O_RDWR, 0, 0).await.unwrap();
    let f = e.attr.ino.0;
    let data = ramp_bytes(3, 3 * PART as usize);
    fs.write(f, o.fh, 0, &data).await.unwrap();
    fs.write(f, o.fh, 5, b"XY").await.unwrap();
    fs.release(f, o.fh).await.unwrap();
    let mut expect = data.clone();
    expect[5..7].copy_from_slice(b"XY");
    assert_eq!(m.object_data("s").unwrap(), expect);
    assert!(m.in_progress_uploads().is_empty());
}

#[tokio::test]
async fn flush_on_dup_close_keeps_the_handle_usable() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    let (e, o) = fs
        .create(ROOT, name("d"), 0o644, 0, libc::O_WRONLY, 0, 0)
        .await
        .unwrap();
    let f = e.attr.ino.0;
    fs.write(f, o.fh, 0, b"abc").await.unwrap();
    fs.flush(f, o.fh).await.unwrap();
    assert_eq!(&m.object_data("d").unwrap()[..], b"abc");
    fs.write(f, o.fh, 3, b"def").await.unwrap();
    fs.fsync(f, o.fh, false).await.unwrap();
    assert_eq!(&m.object_data("d").unwrap()[..], b"abcdef");
    fs.release(f, o.fh).await.unwrap();
    assert_eq!(
        m.op_count(MockOp::PutObject),
        2,
        "release after fsync uploads nothing more"
    );
}

#[tokio::test]
async fn two_handles_share_one_content() {
    let m = mock();
    m.add_object("f", MockObject::from_bytes(b"aaaa".to_vec()));
    let fs = new_fs(m.clone(), "");
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let r = fs.open(f, libc::O_RDONLY).await.unwrap();
    let w = fs.open(f, libc::O_WRONLY).await.unwrap();
    fs.write(f, w.fh, 1, b"bb").await.unwrap();
    assert_eq!(&fs.read(f, r.fh, 0, 10).await.unwrap()[..], b"abba");
    fs.release(f, w.fh).await.unwrap();
    assert_eq!(&fs.read(f, r.fh, 0, 10).await.unwrap()[..], b"abba");
    fs.release(f, r.fh).await.unwrap();
}

#[tokio::test]
async fn unlink_while_open_uploads_nothing() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    let (e, o) = fs
        .create(ROOT, name("gone"), 0o644, 0, libc::O_WRONLY, 0, 0)
        .await
        .unwrap();
    let f = e.attr.ino.0;
    fs.write(f, o.fh, 0, &ramp_bytes(1, 2 * PART as usize)).await.unwrap();
    fs.unlink(ROOT, name("gone")).await.unwrap();
    fs.release(f, o.fh).await.unwrap();
    assert!(!m.contains_key("gone"));
    assert!(m.in_progress_uploads().is_empty(), "the multipart upload was aborted");
}

#[tokio::test]
async fn failed_part_upload_returns_eio_aborts_and_leaves_nothing_visible() {
    let m = mock();
    let fc = Arc::new(FailureClient::new(m.clone()));
    fc.fail_nth(MockOp::UploadPart, 2, internal_error);
    let fs = new_fs(fc.clone(), "");
    let data = ramp_bytes(1, 8 * PART as usize);
    let err = write_file(&fs, ROOT, "broken", &data).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(!m.contains_key("broken"));
    assert!(m.in_progress_uploads().is_empty());
    assert_eq!(fc.op_count(MockOp::AbortMultipartUpload), 1);
    assert_eq!(fc.op_count(MockOp::CompleteMultipartUpload), 0);
    // The name does not linger after the failed close.
    assert_eq!(fs.lookup(ROOT, name("broken")).await.unwrap_err().errno(), libc::ENOENT);
}

#[tokio::test]
async fn failed_small_put_returns_eio_on_close() {
    let m = mock();
    let fc = Arc::new(FailureClient::new(m.clone()));
    fc.fail_always(MockOp::PutObject, internal_error);
    let fs = new_fs(fc.clone(), "");
    let (e, o) = fs
        .create(ROOT, name("x"), 0o644, 0, libc::O_WRONLY, 0, 0)
        .await
        .unwrap();
    fs.write(e.attr.ino.0, o.fh, 0, b"data").await.unwrap();
    assert_eq!(fs.flush(e.attr.ino.0, o.fh).await.unwrap_err().errno(), libc::EIO);
    assert_eq!(fs.release(e.attr.ino.0, o.fh).await.unwrap_err().errno(), libc::EIO);
    assert!(!m.contains_key("x"));
}

#[tokio::test]
async fn failed_staged_upload_is_retried_by_the_next_flush() {
    let m = mock();
    m.add_object("f", MockObject::from_bytes(b"old".to_vec()));
    let fc = Arc::new(FailureClient::new(m.clone()));
    fc.fail_nth(MockOp::PutObject, 1, internal_error);
    let fs = new_fs(fc.clone(), "");
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let o = fs.open(f, libc::O_RDWR).await.unwrap();
    fs.write(f, o.fh, 3, b"new").await.unwrap();
    assert_eq!(fs.fsync(f, o.fh, false).await.unwrap_err().errno(), libc::EIO);
    assert_eq!(&m.object_data("f").unwrap()[..], b"old");
    fs.release(f, o.fh).await.unwrap();
    assert_eq!(&m.object_data("f").unwrap()[..], b"oldnew");
}

#[tokio::test]
async fn changed_object_under_an_open_file_is_estale() {
    let m = mock();
    m.add_object("f", MockObject::ramp(1, 100));
    let fs = new_fs(m.clone(), "");
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let o = fs.open(f, libc::O_RDONLY).await.unwrap();
    m.add_object("f", MockObject::ramp(2, 100));
    assert_eq!(fs.read(f, o.fh, 0, 10).await.unwrap_err().errno(), libc::ESTALE);
}

#[tokio::test]
async fn cp_p_pattern_sets_metadata_in_the_same_upload() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    let (e, o) = fs
        .create(ROOT, name("c"), 0o600, 0, libc::O_WRONLY, 0, 0)
        .await
        .unwrap();
    let f = e.attr.ino.0;
    fs.write(f, o.fh, 0, b"content").await.unwrap();
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_234_567_890);
    fs.setattr(
        f,
        SetAttr {
            mtime: Some(t),
            fh: Some(o.fh),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.setattr(
        f,
        SetAttr {
            uid: Some(5),
            gid: Some(6),
            fh: Some(o.fh),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.setattr(
        f,
        SetAttr {
            mode: Some(0o751),
            fh: Some(o.fh),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.release(f, o.fh).await.unwrap();
    assert_eq!(m.op_count(MockOp::PutObject), 1);
    assert_eq!(m.op_count(MockOp::CopyObject), 0);
    let obj = m.object("c").unwrap();
    assert_eq!(obj.user_meta["mtime"], "1234567890");
    assert_eq!(obj.user_meta["uid"], "5");
    assert_eq!(obj.user_meta["mode"], (libc::S_IFREG | 0o751).to_string());
    let a = fs.getattr(f, None).await.unwrap();
    assert_eq!(a.attr.mtime, t);
    assert_eq!(a.attr.perm, 0o751);
}

#[tokio::test]
async fn shutdown_uploads_open_files_and_removes_private_staging() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    let staging = fs.staging_dir();
    assert!(staging.is_dir());
    let (e, o) = fs
        .create(ROOT, name("open"), 0o644, 0, libc::O_WRONLY, 0, 0)
        .await
        .unwrap();
    fs.write(e.attr.ino.0, o.fh, 0, b"pending").await.unwrap();
    fs.shutdown().await;
    assert_eq!(&m.object_data("open").unwrap()[..], b"pending");
    assert!(!staging.exists());
}

#[tokio::test]
async fn create_over_an_unseen_existing_file_honours_o_trunc() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    // The name is not cached, the object appears, then create(O_CREAT|O_TRUNC) arrives.
    m.add_object("raced", MockObject::from_bytes(b"old content".to_vec()));
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
    let (e, o) = fs.create(ROOT, name("raced"), 0o644, 0, flags, 0, 0).await.unwrap();
    fs.write(e.attr.ino.0, o.fh, 0, b"new").await.unwrap();
    fs.release(e.attr.ino.0, o.fh).await.unwrap();
    assert_eq!(&m.object_data("raced").unwrap()[..], b"new");
    let err = fs
        .create(ROOT, name("raced"), 0o644, 0, flags | libc::O_EXCL, 0, 0)
        .await
        .unwrap_err();
    assert_eq!(err.errno(), libc::EEXIST);
}

#[tokio::test]
async fn chmod_and_rename_of_a_file_open_for_writing_keep_later_writes_working() {
    let m = mock();
    m.add_object("f", MockObject::from_bytes(b"0123456789".to_vec()));
    let fs = new_fs(m.clone(), "");
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let o = fs.open(f, libc::O_RDWR).await.unwrap();
    // Metadata change rewrites the object (new ETag) while the file is open but unmodified.
    fs.setattr(
        f,
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.rename(ROOT, name("f"), ROOT, name("g"), 0).await.unwrap();
    fs.write(f, o.fh, 2, b"ab").await.unwrap();
    fs.release(f, o.fh).await.unwrap();
    assert!(!m.contains_key("f"));
    let g = m.object("g").unwrap();
    assert_eq!(&g.data[..], b"01ab456789");
    assert_eq!(g.user_meta["mode"], (libc::S_IFREG | 0o600).to_string());

    // The same below a renamed directory.
    fs.mkdir(ROOT, name("d"), 0o755, 0, 0, 0).await.unwrap();
    let d = lookup_ino(&fs, ROOT, "d").await.unwrap();
    write_file(&fs, d, "x", b"hello").await.unwrap();
    let x = lookup_ino(&fs, d, "x").await.unwrap();
    let o = fs.open(x, libc::O_WRONLY).await.unwrap();
    fs.rename(ROOT, name("d"), ROOT, name("e"), 0).await.unwrap();
    fs.write(x, o.fh, 5, b" world").await.unwrap();
    fs.release(x, o.fh).await.unwrap();
    assert_eq!(&m.object_data("e/x").unwrap()[..], b"hello world");
    assert!(!m.contains_key("d/x"));
}

#[tokio::test]
async fn times_of_the_mount_root_can_be_set() {
    let m = mock();
    let fs = new_fs(m.clone(), "p/");
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let a = fs
        .setattr(
            ROOT,
            SetAttr {
                mtime: Some(t),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(a.attr.mtime, t);
    assert_eq!(m.write_ops(), 0, "kept in memory: the root has no object");
}

#[tokio::test]
async fn open_readers_stay_pinned_unless_the_change_is_ours() {
    let m = mock();
    // Large enough that a far offset is not in the data cache after the first read.
    const BIG: usize = 20 << 20;
    m.add_object("f", MockObject::ramp(1, BIG));
    m.add_object("d/g", MockObject::ramp(2, 100));
    let mut cfg = config("");
    cfg.metadata_ttl = Some(std::time::Duration::ZERO);
    let fs = ossmount::fs::OssFs::new(m.clone(), cfg).unwrap();
    let f = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let o = fs.open(f, libc::O_RDONLY).await.unwrap();
    assert_eq!(&fs.read(f, o.fh, 0, 4).await.unwrap()[..], &ramp_bytes(1, 4)[..]);
    // Another client replaces the object; a getattr learns the new ETag. Blocks of the old
    // version already cached still read (the same version, never a mix); anything else
    // fails with ESTALE.
    m.add_object("f", MockObject::ramp(9, BIG));
    fs.getattr(f, None).await.unwrap();
    assert_eq!(
        fs.read(f, o.fh, (BIG - 8) as u64, 4).await.unwrap_err().errno(),
        libc::ESTALE
    );
    fs.release(f, o.fh).await.unwrap();

    // Our own renames move open readers along.
    let d = lookup_ino(&fs, ROOT, "d").await.unwrap();
    let g = lookup_ino(&fs, d, "g").await.unwrap();
    let o = fs.open(g, libc::O_RDONLY).await.unwrap();
    fs.rename(ROOT, name("d"), ROOT, name("e"), 0).await.unwrap();
    assert_eq!(&fs.read(g, o.fh, 0, 100).await.unwrap()[..], &ramp_bytes(2, 100)[..]);
    let e = lookup_ino(&fs, ROOT, "e").await.unwrap();
    fs.rename(e, name("g"), ROOT, name("h"), 0).await.unwrap();
    assert_eq!(&fs.read(g, o.fh, 50, 50).await.unwrap()[..], &ramp_bytes(2, 100)[50..]);
    fs.release(g, o.fh).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_in_flight_are_bounded_over_the_whole_mount() {
    let m = mock();
    let fc = Arc::new(FailureClient::new(m.clone()));
    fc.add_latency(Some(MockOp::UploadPart), std::time::Duration::from_millis(20));
    let mut cfg = config("");
    cfg.max_concurrency = 3;
    let fs = Arc::new(ossmount::fs::OssFs::new(fc.clone(), cfg).unwrap());
    let mut tasks = Vec::new();
    for i in 0..6 {
        let fs = fs.clone();
        tasks.push(tokio::spawn(async move {
            let data = ramp_bytes(i as u8, 6 * PART as usize);
            write_file(&fs, ROOT, &format!("f{i}"), &data).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(fc.op_count(MockOp::UploadPart), 36);
    assert!(
        fc.max_in_flight(MockOp::UploadPart) <= 3,
        "{}",
        fc.max_in_flight(MockOp::UploadPart)
    );
    assert!(fc.max_in_flight(MockOp::UploadPart) >= 2, "uploads did run in parallel");
    for i in 0..6 {
        assert_eq!(
            m.object_data(&format!("f{i}")).unwrap(),
            ramp_bytes(i as u8, 6 * PART as usize)
        );
    }
}

#[tokio::test]
async fn rewriting_an_object_keeps_its_mode_owner_and_other_metadata() {
    let m = mock();
    let meta: std::collections::BTreeMap<String, String> = [
        ("mode".to_string(), (libc::S_IFREG | 0o600).to_string()),
        ("uid".to_string(), "33".to_string()),
        ("color".to_string(), "blue".to_string()),
    ]
    .into_iter()
    .collect();
    m.add_object("secret", MockObject::from_bytes(b"old".to_vec()).with_user_meta(meta));
    let fs = new_fs(m.clone(), "");
    let f = lookup_ino(&fs, ROOT, "secret").await.unwrap();
    // Like `echo new > secret`: open(O_TRUNC), setattr(0), write, close.
    let o = fs.open(f, libc::O_WRONLY | libc::O_TRUNC).await.unwrap();
    fs.setattr(
        f,
        SetAttr {
            size: Some(0),
            fh: Some(o.fh),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.write(f, o.fh, 0, b"new").await.unwrap();
    fs.release(f, o.fh).await.unwrap();
    let obj = m.object("secret").unwrap();
    assert_eq!(&obj.data[..], b"new");
    assert_eq!(
        obj.user_meta["mode"],
        (libc::S_IFREG | 0o600).to_string(),
        "permissions not loosened"
    );
    assert_eq!(obj.user_meta["uid"], "33");
    assert_eq!(obj.user_meta["color"], "blue");
    assert_eq!(m.op_count(MockOp::HeadObject), 1, "one HEAD to learn the metadata");
}

#[tokio::test]
async fn an_unlinked_open_file_never_comes_back() {
    let m = mock();
    let fs = new_fs(m.clone(), "");
    // Small: the content stays usable through the open handle, nothing is uploaded.
    let (e, o) = fs
        .create(ROOT, name("tmp"), 0o644, 0, libc::O_RDWR, 0, 0)
        .await
        .unwrap();
    let f = e.attr.ino.0;
    fs.write(f, o.fh, 0, b"scratch").await.unwrap();
    fs.unlink(ROOT, name("tmp")).await.unwrap();
    fs.write(f, o.fh, 7, b" data").await.unwrap();
    assert_eq!(&fs.read(f, o.fh, 0, 100).await.unwrap()[..], b"scratch data");
    fs.release(f, o.fh).await.unwrap();
    assert!(!m.contains_key("tmp"));
    // Large (parts already sent): the upload is aborted; reads fail rather than upload.
    let (e, o) = fs
        .create(ROOT, name("big"), 0o644, 0, libc::O_RDWR, 0, 0)
        .await
        .unwrap();
    let f = e.attr.ino.0;
    fs.write(f, o.fh, 0, &ramp_bytes(1, 2 * PART as usize)).await.unwrap();
    fs.unlink(ROOT, name("big")).await.unwrap();
    assert_eq!(fs.read(f, o.fh, 0, 10).await.unwrap_err().errno(), libc::EIO);
    let _ = fs.release(f, o.fh).await;
    assert!(!m.contains_key("big"));
    assert!(m.in_progress_uploads().is_empty());
    assert_eq!(m.op_count(MockOp::CompleteMultipartUpload), 0);
    assert_eq!(m.op_count(MockOp::PutObject), 0);
}

/// A file `f` created and written with `data` but not closed, over a client whose PutObject
/// then takes 50 ms: (mock, fs, inode, open handle).
async fn written_then_slow_put(data: &[u8]) -> (Arc<MockClient>, OssFs<FailureClient<MockClient>>, u64, u64) {
    let m = mock();
    let fc = Arc::new(FailureClient::new(m.clone()));
    let fs = OssFs::new(fc.clone(), config("")).unwrap();
    let (e, o) = fs
        .create(ROOT, name("f"), 0o644, 0, libc::O_WRONLY | libc::O_CREAT, 0, 0)
        .await
        .unwrap();
    let ino = e.attr.ino.0;
    fs.write(ino, o.fh, 0, data).await.unwrap();
    fc.add_latency(Some(MockOp::PutObject), std::time::Duration::from_millis(50));
    (m, fs, ino, o.fh)
}

/// close() returns after FLUSH while the kernel sends RELEASE later, so `truncate(path)` can run
/// while the last release is still uploading. The truncate must not be applied to a writer that
/// the release then drops (pjdfstest `truncate::shrink_not_empty` caught this under load).
#[tokio::test]
async fn truncate_racing_with_the_last_release_is_not_lost() {
    // The release holds the writer while its PutObject is slow; the truncate arrives meanwhile.
    let (m, fs, ino, fh) = written_then_slow_put(&[7u8; 12345]).await;
    let truncate = SetAttr {
        size: Some(23456),
        ..Default::default()
    };
    let (released, truncated) = tokio::join!(fs.release(ino, fh), fs.setattr(ino, truncate));
    released.unwrap();
    assert_eq!(truncated.unwrap().attr.size, 23456);
    let data = m.object_data("f").unwrap();
    assert_eq!(data.len(), 23456, "the truncate reached OSS");
    assert!(data[..12345].iter().all(|&b| b == 7) && data[12345..].iter().all(|&b| b == 0));
    assert_eq!(fs.getattr(ino, None).await.unwrap().attr.size, 23456);
}

/// An open for writing that arrives while the previous handle's release is uploading must get a
/// writer that stays in the table (the release must not drop it from under the new handle).
#[tokio::test]
async fn open_racing_with_the_last_release_keeps_its_writer() {
    let (m, fs, ino, fh) = written_then_slow_put(b"first").await;
    let (released, opened) = tokio::join!(fs.release(ino, fh), fs.open(ino, libc::O_WRONLY));
    released.unwrap();
    let fh = opened.unwrap().fh;
    fs.write(ino, fh, 5, b" second").await.unwrap();
    fs.release(ino, fh).await.unwrap();
    assert_eq!(&m.object_data("f").unwrap()[..], b"first second");
}
