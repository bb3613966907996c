"""The mount and the official oss2 SDK see the same bucket."""
import os
import stat
import time

import oss2

from conftest import AK, SK, BUCKET
from helpers import make_tree, sha256, tree_digest


def bucket_client(server):
    return oss2.Bucket(oss2.AuthV4(AK, SK), server.url, BUCKET, region="cn-hangzhou")


def test_files_written_through_mount_read_back_identically_with_oss2(server, mnt, tmp_path):
    src = make_tree(tmp_path / "src")
    os.system(f"cp -r {src} {mnt.path / 'w'}")
    b = bucket_client(server)
    for rel, (kind, digest) in tree_digest(src).items():
        if kind != "f":
            continue
        key = f"{mnt.prefix}w/{rel}"
        b.get_object_to_file(key, str(tmp_path / "dl"))
        assert sha256(tmp_path / "dl") == digest, key
        head = b.head_object(key)
        assert head.headers.get("x-oss-hash-crc64ecma")


def test_objects_written_by_oss2_appear_correctly(server, make_mount):
    b = bucket_client(server)
    p = "from-sdk/"
    b.put_object(p + "plain.txt", b"plain\n")
    b.put_object(p + "marker-dir/", b"")
    b.put_object(p + "implicit/child.txt", b"child\n")
    b.put_object(p + "moded.sh", b"#!/bin/sh\n", headers={"x-oss-meta-mode": str(0o100755),
                                                        "x-oss-meta-uid": "1234", "x-oss-meta-gid": "4321",
                                                        "x-oss-meta-mtime": "1700000000"})
    b.put_symlink(p + "plain.txt", p + "link")
    m = make_mount(prefix=p)
    names = sorted(os.listdir(m.path))
    assert names == ["implicit", "link", "marker-dir", "moded.sh", "plain.txt"]
    assert (m.path / "plain.txt").read_text() == "plain\n"
    assert (m.path / "marker-dir").is_dir() and os.listdir(m.path / "marker-dir") == []
    assert (m.path / "implicit").is_dir()
    assert (m.path / "implicit" / "child.txt").read_text() == "child\n"
    # listings carry no user metadata: mode/owner/mtime arrive with the first getattr after the
    # metadata TTL (1 s by default), as doc/SEMANTICS.md says
    time.sleep(1.5)
    st = os.stat(m.path / "moded.sh")
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    assert int(st.st_mtime) == 1700000000
    assert os.readlink(m.path / "link") == "plain.txt"
    assert (m.path / "link").read_text() == "plain\n"
