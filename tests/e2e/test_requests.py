"""Request counts seen by osslocal: listings come from ListObjectsV2 pages of 1000, never a
request per entry; cached attributes make no request within the TTL."""
import os
import concurrent.futures

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
