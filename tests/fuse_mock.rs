//! End to end through the kernel: `OssFs<MockClient>` mounted with FUSE on a temporary
//! directory, driven with std::fs syscalls and ordinary tools (ls, cp, mv, rm, dd, truncate,
//! ln, stat). Needs `/dev/fuse` and permission to mount (root, or `fusermount3` from the fuse3
//! package); without them the test fails with a message saying so.
//!
//! The `Mounted` guard unmounts in `Drop` (also on panic): first through the session, then with
//! `fusermount3 -u -z` as a fallback, so no stale mount is ever left behind.

mod fs_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ossmount::client::mock::{MockClient, MockObject, MockOp, ramp_bytes};
use ossmount::config::FuseConfig;
use ossmount::fs::OssFs;
use ossmount::fuse::session;

struct Mounted {
    dir: tempfile::TempDir,
    session: Option<fuser::BackgroundSession>,
    // Dropped after the session (field order): the filesystem's shutdown runs on it.
    rt: Option<tokio::runtime::Runtime>,
}

impl Mounted {
    fn new(mock: Arc<MockClient>) -> Self {
        Self::with_client(mock, false)
    }

    fn with_client<C: ossmount::client::ObjectClient>(client: Arc<C>, read_only: bool) -> Self {
        assert!(
            Path::new("/dev/fuse").exists(),
            "this test needs /dev/fuse (load the fuse module; apt-get install fuse3)"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = fs_support::config("mnt/");
        cfg.metadata_ttl = Some(Duration::from_secs(1));
        cfg.negative_ttl = Duration::from_millis(200);
        cfg.read_only = read_only;
        let fs = Arc::new(OssFs::new(client, cfg).unwrap());
        // auto_unmount (fusermount3 watches us) also cleans up when the test process is killed
        // before Drop can run; fuser requires allow_other with it.
        let fuse_cfg = FuseConfig {
            threads: 2,
            read_only,
            allow_other: true,
            auto_unmount: true,
            ..Default::default()
        };
        let session = session::mount(fs, rt.handle().clone(), dir.path(), &fuse_cfg, "ossmount:bucket/mnt/")
            .unwrap_or_else(|e| panic!("mounting FUSE failed (needs root or fusermount3): {e}"));
        Mounted {
            dir,
            session: Some(session),
            rt: Some(rt),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if let Err(e) = session::unmount(session, self.dir.path()) {
                eprintln!("unmount through the session failed: {e}");
            }
        }
        // Belt and braces: never leave a stale mount behind, even after a panic above.
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(self.dir.path())
            .output();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn sh(cwd: &Path, cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).current_dir(cwd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn ordinary_tools_work_on_a_mock_mount() {
    let mock = fs_support::mock();
    mock.add_object("mnt/existing.bin", MockObject::ramp(3, 300_000));
    mock.add_object("mnt/docs/readme.txt", MockObject::from_bytes(b"read me\n".to_vec()));
    mock.add_object("outside/secret", MockObject::constant(1, 10));
    let m = Mounted::new(mock.clone());
    let root = m.dir.path().to_path_buf();

    // Listing and reading what was already there (the prefix is the root; nothing outside).
    let ls = sh(&root, "ls -la");
    assert!(ls.contains("existing.bin") && ls.contains("docs"), "{ls}");
    assert!(!ls.contains("outside"), "{ls}");
    assert_eq!(std::fs::read(m.path("existing.bin")).unwrap(), ramp_bytes(3, 300_000));
    assert_eq!(std::fs::read_to_string(m.path("docs/readme.txt")).unwrap(), "read me\n");
    let lists = mock.op_count(MockOp::ListObjects);
    assert!(lists <= 6, "listing took {lists} list requests");

    // Write, read back, and find it in the bucket.
    std::fs::write(m.path("hello.txt"), b"hello fuse").unwrap();
    assert_eq!(std::fs::read(m.path("hello.txt")).unwrap(), b"hello fuse");
    assert_eq!(&mock.object_data("mnt/hello.txt").unwrap()[..], b"hello fuse");

    // Directories, cp -r, mv, rm -r.
    sh(
        &root,
        "mkdir -p a/b/c && echo one > a/1 && echo two > a/b/2 && echo three > a/b/c/3",
    );
    sh(&root, "cp -r a copy && diff -r a copy");
    sh(&root, "mv copy moved && test ! -e copy && test -f moved/b/c/3");
    assert_eq!(&mock.object_data("mnt/moved/b/c/3").unwrap()[..], b"three\n");
    assert!(!mock.contains_key("mnt/copy/1"));
    sh(&root, "rm -r moved && test ! -e moved");
    assert!(
        mock.keys().iter().all(|k| !k.starts_with("mnt/moved")),
        "{:?}",
        mock.keys()
    );
    let err = Command::new("rmdir").arg("a").current_dir(&root).output().unwrap();
    assert!(!err.status.success(), "rmdir of a non-empty directory must fail");

    // A large sequential write with dd goes up as a multipart upload.
    sh(&root, "dd if=/dev/urandom of=big bs=64k count=40 status=none");
    let local = std::fs::read(m.path("big")).unwrap();
    assert_eq!(local.len(), 40 * 64 * 1024);
    assert_eq!(mock.object_data("mnt/big").unwrap(), local);
    assert!(mock.op_count(MockOp::CompleteMultipartUpload) >= 1);

    // truncate, append, overwrite in place.
    sh(&root, "truncate -s 100 big");
    assert_eq!(std::fs::metadata(m.path("big")).unwrap().len(), 100);
    assert_eq!(mock.object_data("mnt/big").unwrap(), local[..100]);
    sh(&root, "echo more >> hello.txt");
    assert_eq!(std::fs::read(m.path("hello.txt")).unwrap(), b"hello fusemore\n");
    sh(
        &root,
        "printf XY | dd of=hello.txt bs=1 seek=2 conv=notrunc status=none",
    );
    assert_eq!(&mock.object_data("mnt/hello.txt").unwrap()[..], b"heXYo fusemore\n");

    // Symlinks.
    sh(&root, "ln -s hello.txt link && test -L link");
    assert_eq!(std::fs::read_link(m.path("link")).unwrap(), Path::new("hello.txt"));
    assert_eq!(std::fs::read(m.path("link")).unwrap(), b"heXYo fusemore\n");

    // chmod and touch -d (utimens) persist as metadata; rename over an existing file.
    sh(&root, "chmod 600 hello.txt && touch -d @1500000000 hello.txt");
    let meta = mock.object("mnt/hello.txt").unwrap().user_meta;
    assert_eq!(meta["mode"], (libc::S_IFREG | 0o600).to_string());
    assert_eq!(meta["mtime"], "1500000000");
    let stat = sh(&root, "stat -c '%a %Y' hello.txt");
    assert_eq!(stat.trim(), "600 1500000000");
    sh(&root, "echo new > other && mv other hello.txt && test ! -e other");
    assert_eq!(std::fs::read_to_string(m.path("hello.txt")).unwrap(), "new\n");

    // touch creates an empty object; hard links are refused.
    sh(&root, "touch empty");
    assert_eq!(mock.object_data("mnt/empty").unwrap().len(), 0);
    let ln = Command::new("ln")
        .args(["empty", "hard"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(!ln.status.success());

    // find sees everything without per-entry requests beyond the listings.
    let found = sh(&root, "find . | sort");
    for want in ["./a/b/c/3", "./docs/readme.txt", "./empty", "./link", "./big"] {
        assert!(
            found.lines().any(|l| l == want),
            "{want} missing from find output:\n{found}"
        );
    }
    drop(m);
    assert!(mock.in_progress_uploads().is_empty());
}

#[test]
fn rsync_tar_git_and_editors_work_on_a_mock_mount() {
    let mock = fs_support::mock();
    let m = Mounted::new(mock.clone());
    let root = m.dir.path().to_path_buf();
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    sh(
        s,
        "mkdir -p tree/sub && echo alpha > tree/a && head -c 300000 /dev/urandom > tree/sub/blob",
    );
    sh(
        s,
        "chmod 640 tree/a && touch -d '2020-01-02 03:04:05.123456789' tree/a && ln -s a tree/link",
    );

    // rsync -a copies, and a second run finds nothing to do (mtime, mode, size preserved).
    let dst = root.join("mirror");
    sh(s, &format!("rsync -a tree/ {}/", dst.display()));
    sh(s, &format!("diff -r tree {}", dst.display()));
    let again = sh(s, &format!("rsync -a --itemize-changes tree/ {}/", dst.display()));
    assert!(again.trim().is_empty(), "second rsync transferred: {again}");
    let st = sh(&root, "stat -c '%a %y' mirror/a");
    assert!(st.starts_with("640 2020-01-02 03:04:05.123456789"), "{st}");

    // tar in and out.
    sh(s, &format!("tar -cf {}/t.tar -C tree .", root.display()));
    sh(
        &root,
        "mkdir untarred && tar -xf t.tar -C untarred && diff -r untarred mirror",
    );

    // git: init, commit, status, log.
    sh(
        &root,
        "mkdir repo && cd repo && git init -q && git config user.email t@e && git config user.name t",
    );
    sh(
        &root,
        "cd repo && echo 'fn main() {}' > main.rs && git add main.rs && git commit -qm first",
    );
    sh(&root, "cd repo && echo '// more' >> main.rs && git commit -qam second");
    let log = sh(&root, "cd repo && git log --oneline | wc -l");
    assert_eq!(log.trim(), "2");
    let status = sh(&root, "cd repo && git status --porcelain");
    assert!(status.trim().is_empty(), "{status}");

    // An editor's save: write a temp file, fsync, rename over the original.
    sh(&root, "printf 'v1\\n' > doc.txt");
    sh(
        &root,
        "printf 'v2\\n' > .doc.txt.swp && sync .doc.txt.swp && mv .doc.txt.swp doc.txt",
    );
    assert_eq!(std::fs::read_to_string(m.path("doc.txt")).unwrap(), "v2\n");
    // vim in ex mode edits in place (swap file with random writes, then writes the file).
    sh(&root, "vim -Nu NONE -i NONE -es -c 's/v2/v3/' -c 'wq' doc.txt");
    assert_eq!(std::fs::read_to_string(m.path("doc.txt")).unwrap(), "v3\n");
    assert_eq!(&mock.object_data("mnt/doc.txt").unwrap()[..], b"v3\n");
    assert_eq!(mock.object_data("mnt/mirror/sub/blob").unwrap().len(), 300_000);
    assert!(mock.contains_key("mnt/repo/.git/HEAD"));
    assert_eq!(
        mock.object("mnt/mirror/link").unwrap().symlink_target.as_deref(),
        Some("mnt/mirror/a"),
        "OSS gets the key the link resolves to (doc/SEMANTICS.md)"
    );
    drop(m);
    assert!(mock.in_progress_uploads().is_empty());
}

#[test]
fn read_only_mount_refuses_writes_with_erofs_and_sends_none() {
    let mock = fs_support::mock();
    mock.add_object("mnt/f", MockObject::from_bytes(b"data".to_vec()));
    mock.add_object("mnt/d/x", MockObject::from_bytes(b"x".to_vec()));
    let m = Mounted::with_client(mock.clone(), true);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"data");
    let erofs = |r: std::io::Result<()>| {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS));
    };
    erofs(std::fs::write(m.path("new"), b"x"));
    erofs(std::fs::write(m.path("f"), b"x"));
    erofs(std::fs::create_dir(m.path("nd")));
    erofs(std::fs::remove_file(m.path("f")));
    erofs(std::fs::remove_dir_all(m.path("d")));
    erofs(std::fs::rename(m.path("f"), m.path("g")));
    erofs(std::os::unix::fs::symlink("f", m.path("l")));
    assert_eq!(mock.write_ops(), 0);
}

#[test]
fn failed_upload_makes_close_fail_with_eio_and_leaves_nothing() {
    use std::io::Write;
    let mock = fs_support::mock();
    let fc = Arc::new(ossmount::client::failure::FailureClient::new(mock.clone()));
    fc.fail_nth(MockOp::UploadPart, 2, ossmount::client::failure::internal_error);
    fc.fail_always(MockOp::PutObject, ossmount::client::failure::internal_error);
    let m = Mounted::with_client(fc.clone(), false);
    // Small file: the PutObject at close fails.
    let mut f = std::fs::File::create(m.path("small")).unwrap();
    f.write_all(b"abc").unwrap();
    let err = f.sync_all().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    drop(f);
    assert!(!mock.contains_key("mnt/small"));
    // Large file: a part upload fails; the write or the close reports it, nothing is visible.
    let mut f = std::fs::File::create(m.path("large")).unwrap();
    let data = ramp_bytes(5, 10 * fs_support::PART as usize);
    let write = f.write_all(&data);
    let sync = f.sync_all();
    assert!(write.is_err() || sync.is_err(), "the failure must reach the writer");
    let errno = write.err().or(sync.err()).and_then(|e| e.raw_os_error());
    assert_eq!(errno, Some(libc::EIO));
    drop(f);
    assert!(!mock.contains_key("mnt/large"));
    assert!(mock.in_progress_uploads().is_empty());
}

#[test]
fn concurrent_writers_and_readers_in_one_directory() {
    let mock = fs_support::mock();
    let m = Mounted::new(mock.clone());
    std::fs::create_dir(m.path("shared")).unwrap();
    let dir = m.path("shared");
    let threads: Vec<_> = (0..6u8)
        .map(|t| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for i in 0..15usize {
                    let p = dir.join(format!("t{t}-{i}"));
                    let data = ramp_bytes(t.wrapping_add(i as u8), 1000 + i * 20_000);
                    std::fs::write(&p, &data).unwrap();
                    assert_eq!(std::fs::read(&p).unwrap(), data);
                    if i % 3 == 0 {
                        std::fs::rename(&p, dir.join(format!("r{t}-{i}"))).unwrap();
                    }
                    let _ = std::fs::read_dir(&dir).unwrap().count();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 90);
    assert_eq!(names.iter().filter(|n| n.starts_with('r')).count(), 30);
    assert_eq!(
        mock.keys().iter().filter(|k| k.starts_with("mnt/shared/")).count(),
        91,
        "90 files + marker"
    );
}
