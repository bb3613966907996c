"""Request counts seen by osslocal: listings come from ListObjectsV2 pages of 1000, never a
request per entry; cached attributes make no request within the TTL."""
import os
import concurrent.futures
import time

import oss2

from conftest import AK, SK, BUCKET


def bucket_client(server):
    return oss2.Bucket(oss2.AuthV4(AK, SK), server.url, BUCKET, region="cn-hangzhou")


def test_ls_l_of_10000_files_makes_at_most_11_lists_and_no_head_or_get(server, make_mount):
    b = bucket_client(server)
    prefix = "many/"
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: b.put_object(f"{prefix}f{i:05}.txt", b"x" * (i % 7)), range(10_000)))
    m = make_mount(prefix=prefix, extra=["--metadata-ttl", "60"])
    server.reset_stats()
    out = os.popen(f"ls -l {m.path} | wc -l").read()
    assert int(out.strip()) == 10_001  # "total" line + entries
    s = server.stats()["ops"]
    print(f"ls -l of 10,000 files: {s.get('ListObjectsV2', 0)} ListObjectsV2, {s.get('HeadObject', 0)} HeadObject, {s.get('GetObject', 0)} GetObject")
    assert s.get("ListObjectsV2", 0) <= 11, s
    assert s.get("HeadObject", 0) == 0, s
    assert s.get("GetObject", 0) == 0, s
    # stat of an already-listed file within the TTL makes no request at all
    server.reset_stats()
    st = os.stat(m.path / "f00005.txt")
    assert st.st_size == 5
    after = {k: v for k, v in server.stats()["ops"].items() if v}
    assert after == {}, after


def resident_pages(path):
    """Pages of `path` in the kernel's page cache (util-linux fincore)."""
    out = os.popen(f"fincore --raw --noheadings --bytes --output PAGES {path}").read().split()
    assert out, f"fincore gave nothing for {path}"
    return int(out[0])


def test_random_4k_read_fills_the_page_cache_around_it_with_one_get(server, make_mount):
    """A random 4 KiB read costs one 1 MiB GET; the bytes around it go into the kernel's page
    cache, so reads elsewhere in that MiB are answered without a request."""
    b = bucket_client(server)
    data = os.urandom(4 << 20)
    b.put_object("random/big.bin", data)
    m = make_mount(prefix="random/")
    path = m.path / "big.bin"
    server.reset_stats()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        at = (2 << 20) + 8192
        assert os.pread(fd, 4096, at) == data[at:at + 4096]
        # The push runs on its own thread right after the answer.
        for _ in range(100):
            if resident_pages(path) >= 256:
                break
            time.sleep(0.02)
        pages = resident_pages(path)
        print(f"after one random 4 KiB read: {pages} pages of the file resident")
        assert pages >= 256, pages
        gets = server.stats()["ops"].get("GetObject", 0)
        for off in range(2 << 20, 3 << 20, 64 << 10):
            assert os.pread(fd, 4096, off) == data[off:off + 4096]
        assert server.stats()["ops"].get("GetObject", 0) == gets == 1
    finally:
        os.close(fd)


def test_kernel_read_ahead_is_raised_to_1_mib(server, make_mount):
    """The kernel caps a FUSE mount's read-ahead at 128 KiB; ossmount (as root) raises its
    backing device's setting to 1 MiB (a sequential reader then waits on 1 MiB requests)."""
    assert os.geteuid() == 0, "the e2e suite runs as root (mounts, sysfs)"
    b = bucket_client(server)
    data = os.urandom(16 << 20)
    b.put_object("ra/big.bin", data)
    m = make_mount(prefix="ra/")
    dev = os.stat(m.path).st_dev
    setting = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    with open(setting) as f:
        assert int(f.read()) == 1024
    with open(m.path / "big.bin", "rb") as f:
        assert f.read() == data
