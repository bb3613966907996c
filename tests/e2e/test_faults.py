"""Faults injected through osslocal's admin API: retries hide transient errors; a final
failure reaches the caller as an errno and leaves nothing partial in the bucket."""
import os
import subprocess

import oss2
import pytest

from conftest import AK, SK, BUCKET, NO_PUT_ROLE
from helpers import sha256, write_random

FAULT_COPY_MIB = int(os.environ.get("OSSMOUNT_E2E_FAULT_COPY_MIB", "1024"))


def test_copy_in_and_out_with_10_percent_503(server, mnt, tmp_path):
    src = tmp_path / "big"
    write_random(src, FAULT_COPY_MIB << 20, 42)
    server.reset_stats()
    server.faults(error_rate=0.1, error_status=503, error_code="ServiceUnavailable")
    try:
        subprocess.run(["cp", str(src), str(mnt.path / "big")], check=True)
        # drop the kernel page cache so the read really goes to the server
        subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=False)
        subprocess.run(["cp", str(mnt.path / "big"), str(tmp_path / "back")], check=True)
    finally:
        server.clear_faults()
    assert sha256(tmp_path / "back") == sha256(src)
    errors = server.stats()["errors"]
    assert errors.get("ServiceUnavailable", 0) > 0, "no fault was injected"


def test_denied_upload_fails_close_and_leaves_nothing(server, make_mount, tmp_path):
    m = make_mount(prefix="deny-test/", role=NO_PUT_ROLE)
    (m.path / "denied").mkdir(exist_ok=True)
    small = tmp_path / "small"
    write_random(small, 1000)
    big = tmp_path / "big"
    write_random(big, 20 << 20)
    for f in (small, big):
        r = subprocess.run(["cp", str(f), str(m.path / "denied" / f.name)], capture_output=True, text=True)
        assert r.returncode != 0, f"cp of {f.name} into a denied prefix succeeded"
    b = oss2.Bucket(oss2.AuthV4(AK, SK), server.url, BUCKET, region="cn-hangzhou")
    keys = [o.key for o in oss2.ObjectIteratorV2(b, prefix="deny-test/denied/")]
    assert [k for k in keys if not k.endswith("/")] == []
    uploads = [u.key for u in oss2.MultipartUploadIterator(b, prefix="deny-test/denied/")]
    assert uploads == []
