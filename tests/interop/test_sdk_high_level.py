"""Higher-level SDK paths users actually call: resumable/managed transfers, conditional GETs,
response-header overrides, streamed (chunked) uploads."""

from __future__ import annotations

import alibabacloud_oss_v2 as oss
import oss2
import pytest
from conftest import BUCKET, SPECIAL_KEY, USER_CREDS, crc64, oss2_bucket, oss2_error, payload, v2_client

TRANSFER_SIZE_BYTES = 1_200_000
PART_SIZE_BYTES = 256 * 1024


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_oss2_resumable_upload_and_download(server, prefix, tmp_path, version):
    b = oss2_bucket(server, USER_CREDS, version)
    data = payload(TRANSFER_SIZE_BYTES, seed=50)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    key = prefix + "resumable " + SPECIAL_KEY
    oss2.resumable_upload(
        b,
        key,
        str(src),
        store=oss2.ResumableStore(root=str(tmp_path)),
        multipart_threshold=PART_SIZE_BYTES,
        part_size=PART_SIZE_BYTES,
        num_threads=2,
    )
    head = b.head_object(key)
    assert head.object_type == "Multipart"
    assert head.content_length == len(data)
    assert head.server_crc == crc64(data)

    dst = tmp_path / "dst.bin"
    oss2.resumable_download(
        b,
        key,
        str(dst),
        store=oss2.ResumableDownloadStore(root=str(tmp_path)),
        multiget_threshold=PART_SIZE_BYTES,
        part_size=PART_SIZE_BYTES,
        num_threads=2,
    )
    assert dst.read_bytes() == data


def test_v2_uploader_and_downloader(server, prefix, tmp_path):
    client = v2_client(server, USER_CREDS, "v4")
    data = payload(TRANSFER_SIZE_BYTES, seed=51)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    key = prefix + "managed/" + SPECIAL_KEY
    uploader = client.uploader(part_size=PART_SIZE_BYTES, parallel_num=2, leave_parts_on_error=False)
    res = uploader.upload_file(oss.PutObjectRequest(bucket=BUCKET, key=key), filepath=str(src))
    assert int(res.hash_crc64) == crc64(data)
    head = client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key=key))
    assert head.object_type == "Multipart"
    assert head.content_length == len(data)

    dst = tmp_path / "dst.bin"
    downloader = client.downloader(part_size=PART_SIZE_BYTES, parallel_num=2)
    downloader.download_file(oss.GetObjectRequest(bucket=BUCKET, key=key), filepath=str(dst))
    assert dst.read_bytes() == data


def test_v2_copier_multipart(server, prefix):
    client = v2_client(server, USER_CREDS, "v4")
    data = payload(TRANSFER_SIZE_BYTES, seed=52)
    src = prefix + "copier-src.bin"
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=src, body=data, metadata={"from": "copier"}))
    dst = prefix + "copier-dst.bin"
    copier = client.copier(part_size=PART_SIZE_BYTES, parallel_num=2, multipart_copy_threshold=PART_SIZE_BYTES)
    copier.copy(oss.CopyObjectRequest(bucket=BUCKET, key=dst, source_bucket=BUCKET, source_key=src))
    got = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=dst))
    assert got.body.read() == data
    assert got.metadata.get("from") == "copier"


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_oss2_streamed_upload_is_chunked(server, prefix, version):
    """An iterable body has no length: oss2/requests send it with Transfer-Encoding: chunked."""
    b = oss2_bucket(server, USER_CREDS, version)
    chunks = [payload(10_000, seed=i) for i in range(5)]
    key = prefix + "chunked.bin"
    res = b.put_object(key, iter(chunks))
    assert res.crc == crc64(b"".join(chunks))
    assert b.get_object(key).read() == b"".join(chunks)


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_oss2_directory_marker(server, prefix, version):
    """`put_object('dir/', '')` is how oss2 users create folders."""
    b = oss2_bucket(server, USER_CREDS, version)
    b.put_object(prefix + "folder/", "")
    r = b.list_objects_v2(prefix=prefix, delimiter="/")
    assert r.prefix_list == [prefix + "folder/"]
    assert b.head_object(prefix + "folder/").content_length == 0


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_conditional_get(server, prefix, version):
    b = oss2_bucket(server, USER_CREDS, version)
    key = prefix + "cond.txt"
    etag = b.put_object(key, b"conditional").etag
    err = oss2_error(b.get_object, key, headers={"If-None-Match": f'"{etag}"'})
    assert err.status == 304
    err = oss2_error(b.get_object, key, headers={"If-Match": '"0123456789ABCDEF0123456789ABCDEF"'})
    assert err.status == 412
    assert err.code == "PreconditionFailed"
    assert b.get_object(key, headers={"If-Match": f'"{etag}"'}).read() == b"conditional"


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_response_header_overrides(server, prefix, version):
    """response-* parameters are V1 sub-resources: signed, and they override the answer."""
    b = oss2_bucket(server, USER_CREDS, version)
    key = prefix + "override.bin"
    b.put_object(key, b"override", headers={"Content-Type": "application/octet-stream"})
    r = b.get_object(
        key,
        params={
            "response-content-type": "text/x-override",
            "response-content-disposition": 'attachment; filename="a b.txt"',
            "response-cache-control": "no-store",
        },
    )
    assert r.read() == b"override"
    assert r.headers["Content-Type"] == "text/x-override"
    assert r.headers["Content-Disposition"] == 'attachment; filename="a b.txt"'
    assert r.headers["Cache-Control"] == "no-store"


def test_v2_forbid_overwrite(server, prefix):
    client = v2_client(server, USER_CREDS, "v4")
    key = prefix + "once.txt"
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=b"first", forbid_overwrite=True))
    with pytest.raises(oss.exceptions.OperationError) as info:
        client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=b"second", forbid_overwrite=True))
    err = info.value.unwrap()
    assert err.status_code == 409
    assert err.code == "FileAlreadyExists"
    assert client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key)).body.read() == b"first"


def test_v2_append_only_file(server, prefix):
    client = v2_client(server, USER_CREDS, "v4")
    key = prefix + "appendable.log"
    chunks = [b"line one\n", payload(70_000, seed=53), b"last line\n"]
    with client.append_file(BUCKET, key) as f:
        for c in chunks:
            f.write(c)
    # Re-open: the SDK finds the current length with HEAD and continues from there.
    with client.append_file(BUCKET, key) as f:
        f.write(b"reopened\n")
    data = b"".join(chunks) + b"reopened\n"
    got = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key))
    assert got.object_type == "Appendable"
    assert got.body.read() == data
    assert int(got.hash_crc64) == crc64(data)


def test_v2_read_only_file_seek_and_read(server, prefix):
    client = v2_client(server, USER_CREDS, "v4")
    key = prefix + "random-access.bin"
    data = payload(TRANSFER_SIZE_BYTES, seed=54)
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=data))
    with client.open_file(BUCKET, key) as f:
        assert f.read(10) == data[:10]
        f.seek(500_000)
        assert f.read(1000) == data[500_000:501_000]
        f.seek(-100, 2)
        assert f.read() == data[-100:]
        f.seek(0)
        assert f.read() == data
