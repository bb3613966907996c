"""Every operation through alibabacloud-oss-v2 (V4 default, V1, STS) against osslocal."""

from __future__ import annotations

import datetime
import urllib.parse

import alibabacloud_oss_v2 as oss
from conftest import (
    BUCKET,
    MISSING_BUCKET,
    REGION,
    SPECIAL_KEY,
    USER_CREDS,
    crc64,
    payload,
    v2_client,
    v2_error,
)

MIN_PART_SIZE_BYTES = 100 * 1024


def put(client, key, data, **kw):
    return client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=data, **kw))


def get(client, key, **kw):
    return client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key, **kw))


def read(client, key, **kw) -> bytes:
    return get(client, key, **kw).body.read()


def head(client, key):
    return client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key=key))


def exists(client, key) -> bool:
    return client.is_object_exist(BUCKET, key)


def test_put_get_roundtrip_with_crc(v2, prefix):
    data = payload(90_000, seed=21)
    key = prefix + "obj.bin"
    res = put(v2, key, data)  # the SDK checks the upload CRC against x-oss-hash-crc64ecma
    assert res.status_code == 200
    assert int(res.hash_crc64) == crc64(data)
    assert res.etag
    g = get(v2, key)
    assert g.status_code == 200
    assert g.body.read() == data
    assert g.content_length == len(data)
    assert int(g.hash_crc64) == crc64(data)
    assert g.etag == res.etag
    assert g.object_type == "Normal"


def test_user_metadata_roundtrip(v2, prefix):
    key = prefix + "meta.bin"
    put(v2, key, b"m", metadata={"Owner": "Interop", "x": "y z"}, content_type="application/x-v2")
    h = head(v2, key)
    meta = {k.lower(): v for k, v in h.metadata.items()}
    assert meta == {"owner": "Interop", "x": "y z"}
    assert h.content_type == "application/x-v2"
    g = get(v2, key)
    assert {k.lower(): v for k, v in g.metadata.items()} == {"owner": "Interop", "x": "y z"}


def test_ranges(v2, prefix):
    data = payload(100, seed=22)
    key = prefix + "range.bin"
    put(v2, key, data)
    g = get(v2, key, range_header="bytes=10-19")
    assert g.status_code == 206
    assert g.content_range == "bytes 10-19/100"
    assert g.body.read() == data[10:20]
    assert read(v2, key, range_header="bytes=-7") == data[93:]
    assert read(v2, key, range_header="bytes=95-") == data[95:]
    # Unsatisfiable range without range-behavior: whole object, 200.
    g = get(v2, key, range_header="bytes=100-200")
    assert g.status_code == 200
    assert g.body.read() == data
    # Malformed range: ignored.
    g = get(v2, key, range_header="bytes=abc")
    assert g.status_code == 200
    assert g.body.read() == data
    # Multi-range: only the first range is honoured (PROTOCOL.md §4.1).
    g = get(v2, key, range_header="bytes=0-1,5-6")
    assert g.body.read() in (data[0:2], data)


def test_standard_range_behavior(v2, prefix):
    data = payload(100, seed=23)
    key = prefix + "range-std.bin"
    put(v2, key, data)
    err = v2_error(get, v2, key, range_header="bytes=100-200", range_behavior="standard")
    assert err.status_code == 416
    assert err.code == "InvalidRange"
    g = get(v2, key, range_header="bytes=50-1000", range_behavior="standard")
    assert g.status_code == 206
    assert g.content_range == "bytes 50-99/100"
    assert g.body.read() == data[50:]


def test_head_and_object_meta(v2, prefix):
    data = b"0123456789" * 10
    key = prefix + "head.bin"
    res = put(v2, key, data)
    h = head(v2, key)
    assert h.content_length == 100
    assert h.etag == res.etag
    assert int(h.hash_crc64) == crc64(data)
    assert h.object_type == "Normal"
    assert h.storage_class == "Standard"
    assert isinstance(h.last_modified, datetime.datetime)
    m = v2.get_object_meta(oss.GetObjectMetaRequest(bucket=BUCKET, key=key))
    assert m.content_length == 100
    assert m.etag == res.etag
    assert int(m.hash_crc64) == crc64(data)
    assert m.last_modified == h.last_modified


def test_delete_and_batch_delete(v2, prefix):
    put(v2, prefix + "single", b"1")
    res = v2.delete_object(oss.DeleteObjectRequest(bucket=BUCKET, key=prefix + "single"))
    assert res.status_code == 204
    assert not exists(v2, prefix + "single")

    keys = [prefix + f"many/{i}" for i in range(4)] + [prefix + "many/" + SPECIAL_KEY]
    for k in keys:
        put(v2, k, b"x")
    res = v2.delete_multiple_objects(
        oss.DeleteMultipleObjectsRequest(bucket=BUCKET, objects=[oss.DeleteObject(key=k) for k in keys])
    )
    assert res.status_code == 200
    assert sorted(d.key for d in res.deleted_objects) == sorted(keys)
    for k in keys:
        assert not exists(v2, k)
    # Quiet mode: nothing listed when everything succeeded.
    put(v2, prefix + "quiet", b"q")
    res = v2.delete_multiple_objects(
        oss.DeleteMultipleObjectsRequest(bucket=BUCKET, objects=[oss.DeleteObject(key=prefix + "quiet")], quiet=True)
    )
    assert not res.deleted_objects
    assert not exists(v2, prefix + "quiet")


def test_special_character_key(v2, prefix):
    key = prefix + SPECIAL_KEY
    put(v2, key, b"special")
    assert read(v2, key) == b"special"
    assert head(v2, key).content_length == 7
    r = v2.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix=prefix))
    assert [o.key for o in r.contents] == [key]
    v2.delete_object(oss.DeleteObjectRequest(bucket=BUCKET, key=key))
    assert not exists(v2, key)


def test_list_v2_pagination_and_delimiter(v2, prefix):
    keys = sorted([f"{prefix}f{i:02d}" for i in range(10)] + [f"{prefix}d/{i:02d}" for i in range(15)])
    for k in keys:
        put(v2, k, b"v")
    pages = list(
        v2.list_objects_v2_paginator().iter_page(oss.ListObjectsV2Request(bucket=BUCKET, prefix=prefix), limit=10)
    )
    assert len(pages) == 3
    assert [o.key for p in pages for o in p.contents] == keys
    assert [p.key_count for p in pages] == [10, 10, 5]
    assert pages[0].is_truncated and not pages[-1].is_truncated

    pages = list(
        v2.list_objects_v2_paginator().iter_page(
            oss.ListObjectsV2Request(bucket=BUCKET, prefix=prefix, delimiter="/"), limit=4
        )
    )
    files = [o.key for p in pages for o in p.contents]
    dirs = [c.prefix for p in pages for c in (p.common_prefixes or [])]
    assert files == [k for k in keys if "/" not in k[len(prefix) :]]
    assert dirs == [prefix + "d/"]
    assert len(pages) == 3  # 11 entries, 4 per page

    r = v2.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix=prefix, start_after=prefix + "d/13"))
    assert [o.key for o in r.contents] == [k for k in keys if k > prefix + "d/13"]


def test_list_v1(v2, prefix):
    keys = sorted(f"{prefix}{c}/{i}" for c in "xy" for i in range(6))
    for k in keys:
        put(v2, k, b"v")
    pages = list(v2.list_objects_paginator().iter_page(oss.ListObjectsRequest(bucket=BUCKET, prefix=prefix), limit=5))
    assert [o.key for p in pages for o in p.contents] == keys
    assert len(pages) == 3
    r = v2.list_objects(oss.ListObjectsRequest(bucket=BUCKET, prefix=prefix, delimiter="/"))
    assert [c.prefix for c in r.common_prefixes] == [prefix + "x/", prefix + "y/"]
    assert not r.contents


def test_copy_object(v2, prefix):
    src = prefix + "src/" + SPECIAL_KEY
    data = payload(4096, seed=24)
    put(v2, src, data, metadata={"origin": "src"}, content_type="text/x-src")
    dst = prefix + "dst/copied.bin"
    res = v2.copy_object(oss.CopyObjectRequest(bucket=BUCKET, key=dst, source_bucket=BUCKET, source_key=src))
    assert res.status_code == 200
    assert int(res.hash_crc64) == crc64(data)
    g = get(v2, dst)
    assert g.body.read() == data
    assert g.metadata.get("origin") == "src"
    assert g.content_type == "text/x-src"

    dst2 = prefix + "dst/replaced.bin"
    v2.copy_object(
        oss.CopyObjectRequest(
            bucket=BUCKET,
            key=dst2,
            source_bucket=BUCKET,
            source_key=src,
            metadata_directive="REPLACE",
            metadata={"fresh": "1"},
            content_type="text/x-new",
        )
    )
    h = head(v2, dst2)
    assert {k.lower(): v for k, v in h.metadata.items()} == {"fresh": "1"}
    assert h.content_type == "text/x-new"
    assert read(v2, dst2) == data


def test_multipart_full_cycle(v2, prefix):
    key = prefix + "mp/" + SPECIAL_KEY
    src_key = prefix + "mp-src.bin"
    source = payload(250_000, seed=25)
    put(v2, src_key, source)
    init = v2.initiate_multipart_upload(
        oss.InitiateMultipartUploadRequest(bucket=BUCKET, key=key, metadata={"mp": "1"})
    )
    upload_id = init.upload_id
    assert init.key == key and init.bucket == BUCKET and upload_id

    ups = v2.list_multipart_uploads(oss.ListMultipartUploadsRequest(bucket=BUCKET, prefix=prefix))
    assert [(u.key, u.upload_id) for u in ups.uploads] == [(key, upload_id)]

    p1 = payload(MIN_PART_SIZE_BYTES, seed=26)
    r1 = v2.upload_part(oss.UploadPartRequest(bucket=BUCKET, key=key, upload_id=upload_id, part_number=1, body=p1))
    assert int(r1.hash_crc64) == crc64(p1)
    r2 = v2.upload_part_copy(
        oss.UploadPartCopyRequest(
            bucket=BUCKET,
            key=key,
            upload_id=upload_id,
            part_number=2,
            source_bucket=BUCKET,
            source_key=src_key,
            source_range="bytes=0-149999",
        )
    )
    p2 = source[:150_000]
    p3 = b"tail"
    r3 = v2.upload_part(oss.UploadPartRequest(bucket=BUCKET, key=key, upload_id=upload_id, part_number=3, body=p3))

    lp = v2.list_parts(oss.ListPartsRequest(bucket=BUCKET, key=key, upload_id=upload_id))
    assert [(p.part_number, p.size, p.etag) for p in lp.parts] == [
        (1, len(p1), r1.etag),
        (2, len(p2), r2.etag),
        (3, len(p3), r3.etag),
    ]
    assert [int(p.hash_crc64) for p in lp.parts] == [crc64(p1), crc64(p2), crc64(p3)]

    done = v2.complete_multipart_upload(
        oss.CompleteMultipartUploadRequest(
            bucket=BUCKET,
            key=key,
            upload_id=upload_id,
            complete_multipart_upload=oss.CompleteMultipartUpload(
                parts=[
                    oss.UploadPart(part_number=1, etag=r1.etag),
                    oss.UploadPart(part_number=2, etag=r2.etag),
                    oss.UploadPart(part_number=3, etag=r3.etag),
                ]
            ),
        )
    )
    whole = p1 + p2 + p3
    assert done.key == key and done.bucket == BUCKET
    assert int(done.hash_crc64) == crc64(whole)
    g = get(v2, key)
    assert g.object_type == "Multipart"
    assert g.metadata.get("mp") == "1"
    assert g.body.read() == whole
    ups = v2.list_multipart_uploads(oss.ListMultipartUploadsRequest(bucket=BUCKET, prefix=prefix))
    assert not ups.uploads


def test_multipart_complete_all_header(v2, prefix):
    key = prefix + "complete-all.bin"
    upload_id = v2.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=BUCKET, key=key)).upload_id
    p1 = payload(MIN_PART_SIZE_BYTES, seed=27)
    v2.upload_part(oss.UploadPartRequest(bucket=BUCKET, key=key, upload_id=upload_id, part_number=1, body=p1))
    v2.upload_part(oss.UploadPartRequest(bucket=BUCKET, key=key, upload_id=upload_id, part_number=2, body=b"end"))
    v2.complete_multipart_upload(
        oss.CompleteMultipartUploadRequest(bucket=BUCKET, key=key, upload_id=upload_id, complete_all="yes")
    )
    assert read(v2, key) == p1 + b"end"


def test_multipart_abort_and_errors(v2, prefix):
    key = prefix + "abort.bin"
    upload_id = v2.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=BUCKET, key=key)).upload_id
    r1 = v2.upload_part(
        oss.UploadPartRequest(bucket=BUCKET, key=key, upload_id=upload_id, part_number=1, body=b"a" * 100)
    )
    r2 = v2.upload_part(oss.UploadPartRequest(bucket=BUCKET, key=key, upload_id=upload_id, part_number=2, body=b"b"))
    err = v2_error(
        v2.complete_multipart_upload,
        oss.CompleteMultipartUploadRequest(
            bucket=BUCKET,
            key=key,
            upload_id=upload_id,
            complete_multipart_upload=oss.CompleteMultipartUpload(
                parts=[oss.UploadPart(part_number=1, etag=r1.etag), oss.UploadPart(part_number=2, etag=r2.etag)]
            ),
        ),
    )
    assert err.status_code == 400
    assert err.code == "EntityTooSmall"
    res = v2.abort_multipart_upload(oss.AbortMultipartUploadRequest(bucket=BUCKET, key=key, upload_id=upload_id))
    assert res.status_code == 204
    err = v2_error(v2.list_parts, oss.ListPartsRequest(bucket=BUCKET, key=key, upload_id=upload_id))
    assert err.status_code == 404
    assert err.code == "NoSuchUpload"


def test_append(v2, prefix):
    key = prefix + "append.log"
    a, b = b"first;", payload(2000, seed=28)
    r1 = v2.append_object(oss.AppendObjectRequest(bucket=BUCKET, key=key, position=0, body=a))
    assert r1.next_position == len(a)
    assert int(r1.hash_crc64) == crc64(a)
    r2 = v2.append_object(oss.AppendObjectRequest(bucket=BUCKET, key=key, position=r1.next_position, body=b))
    assert r2.next_position == len(a) + len(b)
    assert int(r2.hash_crc64) == crc64(a + b)
    h = head(v2, key)
    assert h.object_type == "Appendable"
    assert int(h.next_append_position) == len(a) + len(b)
    assert read(v2, key) == a + b

    err = v2_error(v2.append_object, oss.AppendObjectRequest(bucket=BUCKET, key=key, position=1, body=b"x"))
    assert err.status_code == 409
    assert err.code == "PositionNotEqualToLength"
    assert err.ec == "0026-00000016"
    assert int(err.headers.get("x-oss-next-append-position")) == len(a) + len(b)

    put(v2, prefix + "normal", b"n")
    err = v2_error(
        v2.append_object, oss.AppendObjectRequest(bucket=BUCKET, key=prefix + "normal", position=1, body=b"x")
    )
    assert err.status_code == 409
    assert err.code == "ObjectNotAppendable"


def test_symlink(v2, prefix):
    target = prefix + "target.txt"
    link = prefix + "links/the-link"
    put(v2, target, b"pointed-to")
    res = v2.put_symlink(oss.PutSymlinkRequest(bucket=BUCKET, key=link, target=target, metadata={"s": "1"}))
    assert res.status_code == 200
    g = v2.get_symlink(oss.GetSymlinkRequest(bucket=BUCKET, key=link))
    # This SDK passes the header through untouched (PROTOCOL.md §4.11): accept the raw or the
    # percent-encoded form, but it must name the target.
    assert urllib.parse.unquote(g.target) == target
    assert g.metadata.get("s") == "1"
    assert read(v2, link) == b"pointed-to"
    listed = v2.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix=link)).contents
    assert [(o.key, o.object_type) for o in listed] == [(link, "Symlink")]


def test_bucket_info_and_location(v2):
    info = v2.get_bucket_info(oss.GetBucketInfoRequest(bucket=BUCKET)).bucket_info
    assert info.name == BUCKET
    assert info.location == f"oss-{REGION}"
    assert info.storage_class == "Standard"
    assert isinstance(info.creation_date, datetime.datetime)
    loc = v2.get_bucket_location(oss.GetBucketLocationRequest(bucket=BUCKET))
    assert loc.location == f"oss-{REGION}"


def test_list_buckets(server):
    client = v2_client(server, USER_CREDS)
    names = [b.name for p in client.list_buckets_paginator().iter_page(oss.ListBucketsRequest()) for b in p.buckets]
    assert BUCKET in names
    assert MISSING_BUCKET not in names


def test_missing_key_and_bucket(v2, prefix):
    err = v2_error(get, v2, prefix + "missing")
    assert err.status_code == 404
    assert err.code == "NoSuchKey"
    assert err.ec == "0026-00000001"
    assert err.request_id
    # HEAD: the error comes from the base64 x-oss-err header.
    err = v2_error(head, v2, prefix + "missing")
    assert err.status_code == 404
    assert err.code == "NoSuchKey"
    err = v2_error(v2.get_object, oss.GetObjectRequest(bucket=MISSING_BUCKET, key="k"))
    assert err.status_code == 404
    assert err.code == "NoSuchBucket"
    err = v2_error(v2.list_objects_v2, oss.ListObjectsV2Request(bucket=MISSING_BUCKET))
    assert err.code == "NoSuchBucket"
    err = v2_error(v2.get_bucket_info, oss.GetBucketInfoRequest(bucket=MISSING_BUCKET))
    assert err.code == "NoSuchBucket"


def test_presigned_urls(v2, prefix):
    import requests

    key = prefix + "presign/" + SPECIAL_KEY
    put(v2, key, b"presigned v2")
    pre = v2.presign(oss.GetObjectRequest(bucket=BUCKET, key=key), expires=datetime.timedelta(minutes=5))
    assert pre.method == "GET"
    r = requests.get(pre.url, headers=dict(pre.signed_headers or {}), timeout=10)
    assert r.status_code == 200, r.text
    assert r.content == b"presigned v2"

    put_key = prefix + "presign-put.bin"
    pre = v2.presign(oss.PutObjectRequest(bucket=BUCKET, key=put_key), expires=datetime.timedelta(minutes=5))
    r = requests.put(pre.url, data=b"via presigned put", headers=dict(pre.signed_headers or {}), timeout=10)
    assert r.status_code == 200, r.text
    assert read(v2, put_key) == b"via presigned put"

    # A tampered signature is refused.
    bad = pre.url.replace("Signature=", "Signature=0").replace("x-oss-signature=", "x-oss-signature=0")
    r = requests.put(bad, data=b"x", headers=dict(pre.signed_headers or {}), timeout=10)
    assert r.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in r.text
    assert read(v2, put_key) == b"via presigned put"


def test_paginators_over_special_keys(v2, prefix):
    names = ["a+b", "a b", "a&b=c", "a%2Fb", "a?b#c", "ü", "目录", "~!*'()", "z;z", "a/b/c", "zz"]
    keys = sorted(prefix + n for n in names)
    for k in keys:
        put(v2, k, b"s")
    pages = v2.list_objects_v2_paginator().iter_page(oss.ListObjectsV2Request(bucket=BUCKET, prefix=prefix), limit=2)
    assert [o.key for p in pages for o in p.contents] == keys
    pages = v2.list_objects_paginator().iter_page(oss.ListObjectsRequest(bucket=BUCKET, prefix=prefix), limit=2)
    assert [o.key for p in pages for o in p.contents] == keys


LARGE_LISTING_KEYS = 1005


def test_list_pages_of_1000(server, prefix):
    """ossmount lists with max-keys=1000: a full page, then the rest; above 1000 is never honoured."""
    from concurrent.futures import ThreadPoolExecutor

    client = v2_client(server, USER_CREDS, "v4")
    keys = sorted(f"{prefix}{i:05d}" for i in range(LARGE_LISTING_KEYS))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda k: put(client, k, b""), keys))
    first = client.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix=prefix, max_keys=1000))
    assert first.key_count == 1000 and len(first.contents) == 1000
    assert first.is_truncated
    second = client.list_objects_v2(
        oss.ListObjectsV2Request(
            bucket=BUCKET, prefix=prefix, max_keys=1000, continuation_token=first.next_continuation_token
        )
    )
    assert not second.is_truncated
    assert [o.key for o in first.contents + second.contents] == keys
    try:
        over = client.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix=prefix, max_keys=1001))
    except oss.exceptions.OperationError as e:
        err = e.unwrap()
        assert err.status_code == 400 and err.code == "InvalidArgument"
    else:
        assert len(over.contents) <= 1000
