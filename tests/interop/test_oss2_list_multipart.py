"""Listing and multipart upload through oss2 (V1 and V4, AK/SK and STS) against osslocal."""

from __future__ import annotations

import oss2
import pytest
from conftest import BUCKET, SPECIAL_KEY, crc64, oss2_error, payload

MIN_PART_SIZE_BYTES = 100 * 1024


def _populate(ob, prefix):
    """25 keys: 10 at the top, 10 under a/, 5 under b/ (plus their contents)."""
    keys = [f"{prefix}k{i:02d}" for i in range(10)]
    keys += [f"{prefix}a/{i:02d}" for i in range(10)]
    keys += [f"{prefix}b/{i:02d}" for i in range(5)]
    for k in keys:
        ob.put_object(k, k.encode())
    return sorted(keys)


def test_list_v2_paginates_in_order(ob, prefix):
    keys = _populate(ob, prefix)
    seen, pages, token = [], 0, ""
    while True:
        r = ob.list_objects_v2(prefix=prefix, continuation_token=token, max_keys=10)
        pages += 1
        assert len(r.object_list) <= 10
        seen += [o.key for o in r.object_list]
        if not r.is_truncated:
            break
        assert r.next_continuation_token
        token = r.next_continuation_token
    assert pages == 3
    assert seen == keys
    # Listed metadata matches the object.
    r = ob.list_objects_v2(prefix=prefix + "k00", max_keys=10)
    (info,) = r.object_list
    head = ob.head_object(prefix + "k00")
    assert info.size == len((prefix + "k00").encode())
    assert info.etag == head.etag
    assert info.type == "Normal"
    assert info.storage_class == "Standard"
    assert info.last_modified == head.last_modified


def test_list_v2_delimiter(ob, prefix):
    keys = _populate(ob, prefix)
    files, dirs, token, pages = [], [], "", 0
    while True:
        r = ob.list_objects_v2(prefix=prefix, delimiter="/", continuation_token=token, max_keys=5)
        pages += 1
        assert len(r.object_list) + len(r.prefix_list) <= 5
        files += [o.key for o in r.object_list]
        dirs += r.prefix_list
        if not r.is_truncated:
            break
        token = r.next_continuation_token
    assert files == [k for k in keys if "/" not in k[len(prefix) :]]
    assert dirs == [prefix + "a/", prefix + "b/"]
    assert pages == 3  # 12 entries, 5 per page


def test_list_v2_start_after_and_iterator(ob, prefix):
    keys = _populate(ob, prefix)
    r = ob.list_objects_v2(prefix=prefix, start_after=prefix + "a/04", max_keys=1000)
    assert [o.key for o in r.object_list] == [k for k in keys if k > prefix + "a/04"]
    it = oss2.ObjectIteratorV2(ob, prefix=prefix + "a/", max_keys=3)
    assert [o.key for o in it] == [k for k in keys if k.startswith(prefix + "a/")]


def test_list_v2_fetch_owner(ob, prefix):
    ob.put_object(prefix + "owned", b"o")
    r = ob.list_objects_v2(prefix=prefix, fetch_owner=True)
    (info,) = r.object_list
    assert info.owner is not None and info.owner.id
    r = ob.list_objects_v2(prefix=prefix, fetch_owner=False)
    assert r.object_list[0].owner is None


def test_list_v2_special_keys_url_encoded(ob, prefix):
    special = [prefix + SPECIAL_KEY, prefix + "sp ace/x", prefix + "amp&er/y", prefix + "ctrl\tchar"]
    for k in special:
        ob.put_object(k, b"s")
    r = ob.list_objects_v2(prefix=prefix, delimiter="/")
    assert sorted(o.key for o in r.object_list) == sorted([prefix + "ctrl\tchar"])
    assert sorted(r.prefix_list) == sorted([prefix + "目录/", prefix + "sp ace/", prefix + "amp&er/"])
    r = ob.list_objects_v2(prefix=prefix + "目录/")
    assert [o.key for o in r.object_list] == [prefix + SPECIAL_KEY]


def test_list_v1_marker_pagination(ob, prefix):
    keys = _populate(ob, prefix)
    seen, marker, pages = [], "", 0
    while True:
        r = ob.list_objects(prefix=prefix, marker=marker, max_keys=10)
        pages += 1
        seen += [o.key for o in r.object_list]
        if not r.is_truncated:
            break
        assert r.next_marker
        marker = r.next_marker
    assert pages == 3
    assert seen == keys
    # Entries (objects and common prefixes) come merged in key order across pages.
    it = oss2.ObjectIterator(ob, prefix=prefix, delimiter="/", max_keys=4)
    listed = [o.key for o in it]
    assert listed == [prefix + "a/", prefix + "b/"] + [k for k in keys if "/" not in k[len(prefix) :]]


def test_list_v1_delimiter(ob, prefix):
    keys = _populate(ob, prefix)
    r = ob.list_objects(prefix=prefix, delimiter="/", max_keys=100)
    assert [o.key for o in r.object_list] == [k for k in keys if "/" not in k[len(prefix) :]]
    assert r.prefix_list == [prefix + "a/", prefix + "b/"]
    assert not r.is_truncated


def test_list_empty_prefix(ob, prefix):
    r = ob.list_objects_v2(prefix=prefix + "nothing-here/")
    assert r.object_list == [] and r.prefix_list == [] and not r.is_truncated


def test_multipart_full_cycle(ob, prefix):
    key = prefix + "mp " + SPECIAL_KEY
    src_key = prefix + "mp-copy-source.bin"
    source = payload(300_000, seed=10)
    ob.put_object(src_key, source)

    init = ob.init_multipart_upload(key, headers={"x-oss-meta-mp": "yes", "Content-Type": "application/x-mp"})
    upload_id = init.upload_id
    assert upload_id

    uploads = ob.list_multipart_uploads(prefix=prefix)
    assert [(u.key, u.upload_id) for u in uploads.upload_list] == [(key, upload_id)]

    part1 = payload(MIN_PART_SIZE_BYTES + 1000, seed=11)
    r1 = ob.upload_part(key, upload_id, 1, part1)
    assert r1.crc == crc64(part1)
    # Part 2 copied from bytes [1000, 1000 + 120000) of another object.
    r2 = ob.upload_part_copy(BUCKET, src_key, (1000, 1000 + 120_000 - 1), key, upload_id, 2)
    part2 = source[1000:121_000]
    part3 = b"short last part"
    r3 = ob.upload_part(key, upload_id, 3, part3)

    parts = ob.list_parts(key, upload_id)
    assert [p.part_number for p in parts.parts] == [1, 2, 3]
    assert [p.size for p in parts.parts] == [len(part1), len(part2), len(part3)]
    assert [p.etag for p in parts.parts] == [r1.etag, r2.etag, r3.etag]

    infos = [
        oss2.models.PartInfo(1, r1.etag, size=len(part1), part_crc=crc64(part1)),
        oss2.models.PartInfo(2, r2.etag, size=len(part2), part_crc=crc64(part2)),
        oss2.models.PartInfo(3, r3.etag, size=len(part3), part_crc=crc64(part3)),
    ]
    done = ob.complete_multipart_upload(key, upload_id, infos)  # oss2 checks the combined CRC
    assert done.status == 200
    whole = part1 + part2 + part3
    assert done.crc == crc64(whole)

    head = ob.head_object(key)
    assert head.object_type == "Multipart"
    assert head.content_length == len(whole)
    assert head.headers.get("x-oss-meta-mp") == "yes"
    assert head.content_type == "application/x-mp"
    assert head.etag == done.etag
    assert ob.get_object(key).read() == whole
    assert (
        ob.get_object(key, byte_range=(len(part1) - 5, len(part1) + 4)).read() == whole[len(part1) - 5 : len(part1) + 5]
    )
    assert ob.list_multipart_uploads(prefix=prefix).upload_list == []


def test_multipart_abort(ob, prefix):
    key = prefix + "aborted.bin"
    upload_id = ob.init_multipart_upload(key).upload_id
    ob.upload_part(key, upload_id, 1, b"part")
    assert ob.abort_multipart_upload(key, upload_id).status == 204
    err = oss2_error(ob.list_parts, key, upload_id)
    assert err.status == 404
    assert err.code == "NoSuchUpload"
    err = oss2_error(ob.upload_part, key, upload_id, 2, b"late")
    assert err.code == "NoSuchUpload"
    assert ob.list_multipart_uploads(prefix=prefix).upload_list == []
    assert not ob.object_exists(key)


def test_multipart_entity_too_small(ob, prefix):
    key = prefix + "small-parts.bin"
    upload_id = ob.init_multipart_upload(key).upload_id
    r1 = ob.upload_part(key, upload_id, 1, b"a" * 1000)
    r2 = ob.upload_part(key, upload_id, 2, b"b" * 10)
    err = oss2_error(
        ob.complete_multipart_upload,
        key,
        upload_id,
        [oss2.models.PartInfo(1, r1.etag), oss2.models.PartInfo(2, r2.etag)],
    )
    assert err.status == 400
    assert err.code == "EntityTooSmall"
    assert not ob.object_exists(key)
    ob.abort_multipart_upload(key, upload_id)


def test_multipart_invalid_part(ob, prefix):
    key = prefix + "invalid-part.bin"
    upload_id = ob.init_multipart_upload(key).upload_id
    ob.upload_part(key, upload_id, 1, b"a")
    err = oss2_error(
        ob.complete_multipart_upload, key, upload_id, [oss2.models.PartInfo(1, '"0123456789ABCDEF0123456789ABCDEF"')]
    )
    assert err.status == 400
    assert err.code == "InvalidPart"
    ob.abort_multipart_upload(key, upload_id)


def test_multipart_single_small_part_is_fine(ob, prefix):
    key = prefix + "one-part.bin"
    upload_id = ob.init_multipart_upload(key).upload_id
    r1 = ob.upload_part(key, upload_id, 1, b"tiny")
    ob.complete_multipart_upload(key, upload_id, [oss2.models.PartInfo(1, r1.etag, size=4, part_crc=crc64(b"tiny"))])
    assert ob.get_object(key).read() == b"tiny"


def test_multipart_replaced_part(ob, prefix):
    key = prefix + "replaced-part.bin"
    upload_id = ob.init_multipart_upload(key).upload_id
    ob.upload_part(key, upload_id, 1, b"old")
    r = ob.upload_part(key, upload_id, 1, b"new!")
    parts = ob.list_parts(key, upload_id).parts
    assert [(p.part_number, p.size, p.etag) for p in parts] == [(1, 4, r.etag)]
    ob.complete_multipart_upload(key, upload_id, [oss2.models.PartInfo(1, r.etag)])
    assert ob.get_object(key).read() == b"new!"


def test_multipart_bad_part_number(ob, prefix):
    key = prefix + "bad-part-number.bin"
    upload_id = ob.init_multipart_upload(key).upload_id
    err = oss2_error(ob.upload_part, key, upload_id, 10001, b"x")
    assert err.status == 400
    assert err.code == "InvalidArgument"
    ob.abort_multipart_upload(key, upload_id)


@pytest.mark.parametrize("max_parts", [2])
def test_list_parts_pagination(ob, prefix, max_parts):
    key = prefix + "many-parts.bin"
    upload_id = ob.init_multipart_upload(key).upload_id
    for n in range(1, 6):
        ob.upload_part(key, upload_id, n, bytes([n]))
    seen, marker = [], 0
    while True:
        r = ob.list_parts(key, upload_id, marker=str(marker) if marker else "", max_parts=max_parts)
        assert len(r.parts) <= max_parts
        seen += [p.part_number for p in r.parts]
        if not r.is_truncated:
            break
        marker = r.next_marker
    assert seen == [1, 2, 3, 4, 5]
    ob.abort_multipart_upload(key, upload_id)


SPECIAL_NAMES = ["a+b", "a b", "a&b=c", "a%2Fb", "a?b#c", "ü", "目录", "~!*'()", "a\tb", "z;z", "a/b/c", "zz"]


@pytest.mark.parametrize("listing", ["v2", "v1"])
def test_pagination_tokens_over_special_keys(ob, prefix, listing):
    """Continuation tokens / markers built from awkward keys survive url-encoding round trips."""
    keys = sorted(prefix + n for n in SPECIAL_NAMES)
    for k in keys:
        ob.put_object(k, b"s")
    it = (
        oss2.ObjectIteratorV2(ob, prefix=prefix, max_keys=3)
        if listing == "v2"
        else oss2.ObjectIterator(ob, prefix=prefix, max_keys=3)
    )
    assert [o.key for o in it] == keys


def test_list_multipart_uploads_pagination_and_delimiter(ob, prefix):
    keys = [prefix + "u/1", prefix + "u/2", prefix + "v", prefix + "w", prefix + "w"]  # two uploads for "w"
    ids = [(k, ob.init_multipart_upload(k).upload_id) for k in keys]
    try:
        listed = [(u.key, u.upload_id) for u in oss2.MultipartUploadIterator(ob, prefix=prefix, max_uploads=2)]
        assert sorted(listed) == sorted(ids)
        assert [k for k, _ in listed] == sorted(k for k, _ in ids)
        r = ob.list_multipart_uploads(prefix=prefix, delimiter="/")
        assert r.prefix_list == [prefix + "u/"]
        assert sorted(u.key for u in r.upload_list) == [prefix + "v", prefix + "w", prefix + "w"]
    finally:
        for k, upload_id in ids:
            ob.abort_multipart_upload(k, upload_id)
