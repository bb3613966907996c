"""Ordinary tools on a real mount of osslocal: contents byte-identical, listings equal to a
local reference copy, errnos as doc/SEMANTICS.md says."""
import errno
import os
import subprocess
from pathlib import Path

import pytest

from helpers import make_tree, run, sha256, tree_digest, write_random


def test_cp_r_round_trip_is_identical(mnt, tmp_path):
    src = make_tree(tmp_path / "src")
    run(["cp", "-r", str(src), str(mnt.path / "tree")])
    assert tree_digest(mnt.path / "tree") == tree_digest(src)
    run(["cp", "-r", str(mnt.path / "tree"), str(tmp_path / "back")])
    assert tree_digest(tmp_path / "back") == tree_digest(src)


def test_listings_match_reference_copy(mnt, tmp_path):
    src = make_tree(tmp_path / "src")
    run(["cp", "-r", str(src), str(mnt.path / "tree")])
    local = sorted(run(["find", "."], cwd=src).split())
    mounted = sorted(run(["find", "."], cwd=mnt.path / "tree").split())
    assert mounted == local
    ls_local = sorted(l.split()[-1] for l in run(["ls", "-l", str(src / "sub")]).splitlines()[1:])
    ls_mnt = sorted(l.split()[-1] for l in run(["ls", "-l", str(mnt.path / "tree" / "sub")]).splitlines()[1:])
    assert ls_mnt == ls_local
    # sizes in ls -l equal
    for name in ["nine_mib.bin", "empty.bin", "one.bin"]:
        assert os.stat(mnt.path / "tree" / name).st_size == os.stat(src / name).st_size


def test_mv_and_rm_r(mnt, tmp_path):
    src = make_tree(tmp_path / "src")
    run(["cp", "-r", str(src), str(mnt.path / "a")])
    run(["mv", str(mnt.path / "a" / "one.bin"), str(mnt.path / "a" / "uno.bin")])
    assert not (mnt.path / "a" / "one.bin").exists()
    assert sha256(mnt.path / "a" / "uno.bin") == sha256(src / "one.bin")
    run(["mv", str(mnt.path / "a" / "sub"), str(mnt.path / "a" / "moved")])
    assert not (mnt.path / "a" / "sub").exists()
    expected = {k.replace("sub", "moved", 1) if k.startswith("sub") else k: v
                for k, v in tree_digest(src).items() if k != "one.bin"}
    expected["uno.bin"] = tree_digest(src)["one.bin"]
    assert tree_digest(mnt.path / "a") == expected
    # mv across filesystems (mount -> local) keeps contents
    run(["mv", str(mnt.path / "a" / "nine_mib.bin"), str(tmp_path / "nine")])
    assert sha256(tmp_path / "nine") == sha256(src / "nine_mib.bin")
    run(["rm", "-r", str(mnt.path / "a")])
    assert not (mnt.path / "a").exists()
    assert os.listdir(mnt.path) == []


def test_dd_cat_truncate(mnt, tmp_path):
    f = mnt.path / "dd.bin"
    run(["dd", "if=/dev/urandom", f"of={tmp_path / 'ref'}", "bs=1M", "count=12", "status=none"])
    run(["dd", f"if={tmp_path / 'ref'}", f"of={f}", "bs=1M", "conv=fsync", "status=none"])
    assert sha256(f) == sha256(tmp_path / "ref")
    out = subprocess.run(["cat", str(f)], capture_output=True).stdout
    assert out == (tmp_path / "ref").read_bytes()
    for size in ["5000", "0", "3M", "7"]:
        run(["truncate", "-s", size, str(f)])
        run(["truncate", "-s", size, str(tmp_path / "ref")])
        assert os.stat(f).st_size == os.stat(tmp_path / "ref").st_size
        assert sha256(f) == sha256(tmp_path / "ref"), f"after truncate -s {size}"


def test_overwrite_append_and_random_writes(mnt, tmp_path):
    f = mnt.path / "edit.bin"
    ref = tmp_path / "edit.bin"
    write_random(ref, 3 * (1 << 20) + 17, 5)
    run(["cp", str(ref), str(f)])
    for path in (f, ref):
        with open(path, "r+b") as h:
            h.seek(100)
            h.write(b"X" * 5000)
            h.seek((1 << 20) - 3)
            h.write(b"boundary")
        with open(path, "ab") as h:
            h.write(b"appended tail\n")
    assert sha256(f) == sha256(ref)
    # a file being written reads back its own data before close
    with open(f, "r+b") as h:
        h.seek(10)
        h.write(b"fresh")
        h.seek(10)
        assert h.read(5) == b"fresh"


def test_symlinks(mnt):
    (mnt.path / "target.txt").write_text("through the link\n")
    os.symlink("target.txt", mnt.path / "link")
    assert os.readlink(mnt.path / "link") == "target.txt"
    assert (mnt.path / "link").read_text() == "through the link\n"
    run(["ln", "-s", "../elsewhere/x", str(mnt.path / "dangling")])
    assert os.readlink(mnt.path / "dangling") == "../elsewhere/x"
    assert (mnt.path / "dangling").is_symlink()


def test_rsync_a_round_trip_and_second_run_is_noop(mnt, tmp_path):
    src = make_tree(tmp_path / "src")
    os.chmod(src / "one.bin", 0o600)
    run(["rsync", "-a", f"{src}/", f"{mnt.path / 'r'}/"])
    assert tree_digest(mnt.path / "r") == tree_digest(src)
    assert (os.stat(mnt.path / "r" / "one.bin").st_mode & 0o777) == 0o600
    assert int(os.stat(mnt.path / "r" / "page.bin").st_mtime) == int(os.stat(src / "page.bin").st_mtime)
    again = run(["rsync", "-a", "--itemize-changes", f"{src}/", f"{mnt.path / 'r'}/"])
    changed = [l for l in again.splitlines() if l and not l.startswith(".d") and not l.startswith(".L")]
    assert changed == [], f"second rsync transferred again: {changed}"


def test_tar_create_and_extract(mnt, tmp_path):
    src = make_tree(tmp_path / "src")
    run(["tar", "-C", str(src), "-cf", str(tmp_path / "a.tar"), "."])
    (mnt.path / "x").mkdir()
    run(["tar", "-C", str(mnt.path / "x"), "-xf", str(tmp_path / "a.tar")])
    assert tree_digest(mnt.path / "x") == tree_digest(src)
    run(["tar", "-C", str(mnt.path / "x"), "-cf", str(mnt.path / "b.tar"), "."])
    (tmp_path / "y").mkdir()
    run(["tar", "-C", str(tmp_path / "y"), "-xf", str(mnt.path / "b.tar")])
    assert tree_digest(tmp_path / "y") == tree_digest(src)


def test_git_init_and_commit(mnt):
    repo = mnt.path / "repo"
    repo.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    run(["git", "init", "-q"], cwd=repo, env=env)
    (repo / "README").write_text("hello\n")
    (repo / "src").mkdir()
    (repo / "src" / "main.c").write_text("int main(void){return 0;}\n")
    run(["git", "add", "-A"], cwd=repo, env=env)
    run(["git", "commit", "-q", "-m", "first"], cwd=repo, env=env)
    (repo / "README").write_text("hello again\n")
    run(["git", "commit", "-q", "-am", "second"], cwd=repo, env=env)
    assert run(["git", "status", "--porcelain"], cwd=repo, env=env).strip() == ""
    assert len(run(["git", "log", "--oneline"], cwd=repo, env=env).splitlines()) == 2
    run(["git", "fsck", "--strict"], cwd=repo, env=env)


def _errno_of(fn):
    with pytest.raises(OSError) as e:
        fn()
    return e.value.errno


def test_errnos(mnt):
    (mnt.path / "d").mkdir()
    (mnt.path / "d" / "f").write_text("x")
    assert _errno_of(lambda: os.rmdir(mnt.path / "d")) == errno.ENOTEMPTY
    assert _errno_of(lambda: os.mkdir(mnt.path / "d")) == errno.EEXIST
    assert _errno_of(lambda: open(mnt.path / "missing")) == errno.ENOENT
    assert _errno_of(lambda: os.link(mnt.path / "d" / "f", mnt.path / "hard")) == errno.EPERM
    assert _errno_of(lambda: os.rmdir(mnt.path / "d" / "f")) == errno.ENOTDIR
    assert _errno_of(lambda: os.unlink(mnt.path / "d")) in (errno.EISDIR, errno.EPERM)
    assert _errno_of(lambda: (mnt.path / ("n" * 256)).write_text("x")) == errno.ENAMETOOLONG


def test_read_only_mount_refuses_writes_and_sends_none(server, make_mount, mnt):
    (mnt.path / "existing.txt").write_text("data\n")
    ro = make_mount(prefix=mnt.prefix, extra=["--read-only"])
    server.reset_stats()
    assert (ro.path / "existing.txt").read_text() == "data\n"
    for fn in (lambda: (ro.path / "new").write_text("x"),
               lambda: os.mkdir(ro.path / "dir"),
               lambda: os.unlink(ro.path / "existing.txt"),
               lambda: os.rename(ro.path / "existing.txt", ro.path / "moved"),
               lambda: os.chmod(ro.path / "existing.txt", 0o600),
               lambda: os.symlink("x", ro.path / "l"),
               lambda: open(ro.path / "existing.txt", "r+b")):
        assert _errno_of(fn) == errno.EROFS
    ops = server.stats()["ops"]
    writes = {k: v for k, v in ops.items() if v and k in (
        "PutObject", "DeleteObject", "DeleteMultipleObjects", "CopyObject", "InitiateMultipartUpload",
        "UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "AppendObject", "PutSymlink")}
    assert writes == {}



def test_metrics_endpoint_serves_counters(make_mount):
    import json
    import socket
    import urllib.request
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    m = make_mount(prefix="metrics/", extra=["--metrics-addr", f"127.0.0.1:{port}"])
    (m.path / "f").write_bytes(b"x" * 100_000)
    assert (m.path / "f").read_bytes() == b"x" * 100_000
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        data = json.loads(r.read())
    assert data["fuse"]["requests"] > 0
    assert data["cache"]["memory_limit_bytes"] == 128 << 20
