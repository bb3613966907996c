"""Object operations through oss2 (V1 and V4 signatures, AK/SK and STS) against osslocal."""

from __future__ import annotations

import oss2
import pytest
from conftest import (
    BUCKET,
    MISSING_BUCKET,
    OTHER_BUCKET,
    REGION,
    SPECIAL_KEY,
    USER_CREDS,
    crc64,
    oss2_bucket,
    oss2_error,
    payload,
)


def test_put_get_roundtrip_with_crc(ob, prefix):
    data = payload(70_000, seed=1)
    key = prefix + "obj.bin"
    put = ob.put_object(key, data)
    assert put.status == 200
    # oss2 (enable_crc=True) already compared its CRC with x-oss-hash-crc64ecma; check anyway.
    assert put.crc == crc64(data)
    assert put.etag and put.etag == put.etag.upper()
    got = ob.get_object(key)
    assert got.status == 200
    body = got.read()  # the CRC adapter verifies the whole-object CRC on a full read
    assert body == data
    assert got.server_crc == crc64(data)
    assert got.content_length == len(data)
    assert got.etag == put.etag
    assert got.object_type == "Normal"


def test_empty_object(ob, prefix):
    # oss2 streams an empty body through its CRC adapter: requests sends it chunked.
    key = prefix + "empty"
    put = ob.put_object(key, b"")
    assert put.crc == 0
    got = ob.get_object(key)
    assert got.read() == b""
    assert ob.head_object(key).content_length == 0


def test_overwrite_replaces_content(ob, prefix):
    key = prefix + "over.txt"
    ob.put_object(key, b"first version")
    ob.put_object(key, b"second")
    assert ob.get_object(key).read() == b"second"


def test_user_metadata_and_content_type_roundtrip(ob, prefix):
    key = prefix + "meta.txt"
    headers = {
        "x-oss-meta-Author": "Interop Tester",
        "x-oss-meta-empty-ish": "v",
        "Content-Type": "application/x-interop",
        "Cache-Control": "no-cache",
        "Content-Disposition": "attachment; filename=meta.txt",
    }
    ob.put_object(key, b"meta body", headers=headers)
    head = ob.head_object(key)
    assert head.headers["x-oss-meta-author"] == "Interop Tester"  # names are stored lower-case
    assert head.headers["x-oss-meta-empty-ish"] == "v"
    assert head.content_type == "application/x-interop"
    assert head.headers.get("Cache-Control") == "no-cache"
    assert head.headers.get("Content-Disposition") == "attachment; filename=meta.txt"
    got = ob.get_object(key)
    assert got.headers["x-oss-meta-author"] == "Interop Tester"
    assert got.read() == b"meta body"


def test_oss2_guesses_content_type_from_extension(ob, prefix):
    ob.put_object(prefix + "page.html", b"<html></html>")
    assert ob.head_object(prefix + "page.html").content_type == "text/html"


def test_range_reads(ob, prefix):
    data = payload(100, seed=2)
    key = prefix + "range.bin"
    ob.put_object(key, data)

    r = ob.get_object(key, byte_range=(10, 19))
    assert r.status == 206
    assert r.read() == data[10:20]
    assert r.content_range == "bytes 10-19/100"

    r = ob.get_object(key, byte_range=(90, None))  # bytes=90-
    assert r.status == 206
    assert r.read() == data[90:]

    r = ob.get_object(key, byte_range=(None, 5))  # bytes=-5 (suffix)
    assert r.status == 206
    assert r.read() == data[95:]


def test_invalid_range_returns_whole_object(ob, prefix):
    """Without x-oss-range-behavior, an unsatisfiable range is ignored: 200 + whole body."""
    data = payload(100, seed=3)
    key = prefix + "range-invalid.bin"
    ob.put_object(key, data)
    r = ob.get_object(key, byte_range=(200, 300))
    assert r.status == 200
    assert r.read() == data
    assert r.content_range is None


def test_standard_range_behavior(ob, prefix):
    data = payload(100, seed=4)
    key = prefix + "range-std.bin"
    ob.put_object(key, data)
    std = {"x-oss-range-behavior": "standard"}
    err = oss2_error(ob.get_object, key, byte_range=(200, 300), headers=std)
    assert err.status == 416
    assert err.code == "InvalidRange"
    # End beyond size is clamped.
    r = ob.get_object(key, byte_range=(90, 200), headers=std)
    assert r.status == 206
    assert r.read() == data[90:]
    assert r.content_range == "bytes 90-99/100"


def test_head_and_get_object_meta(ob, prefix):
    data = b"x" * 1234
    key = prefix + "head.bin"
    put = ob.put_object(key, data, headers={"x-oss-meta-k": "v"})
    head = ob.head_object(key)
    assert head.status == 200
    assert head.content_length == 1234
    assert head.etag == put.etag
    assert head.object_type == "Normal"
    assert head.server_crc == crc64(data)
    assert head.last_modified > 0
    assert head.headers.get("x-oss-storage-class") == "Standard"
    assert head.headers.get("x-oss-request-id")

    meta = ob.get_object_meta(key)
    assert meta.status == 200
    assert meta.content_length == 1234
    assert meta.etag == put.etag
    assert meta.last_modified == head.last_modified
    assert int(meta.headers["x-oss-hash-crc64ecma"]) == crc64(data)


def test_object_exists(ob, prefix):
    key = prefix + "exists"
    assert not ob.object_exists(key)
    ob.put_object(key, b"1")
    assert ob.object_exists(key)


def test_delete_object(ob, prefix):
    key = prefix + "del.txt"
    ob.put_object(key, b"bye")
    assert ob.delete_object(key).status == 204
    err = oss2_error(ob.get_object, key)
    assert err.code == "NoSuchKey"
    # Deleting a missing key is not an error.
    assert ob.delete_object(key).status == 204


def test_batch_delete(ob, prefix):
    keys = [prefix + f"batch/{i}" for i in range(5)] + [prefix + "batch/" + SPECIAL_KEY]
    for k in keys:
        ob.put_object(k, b"d")
    result = ob.batch_delete_objects(keys + [prefix + "batch/never-existed"])
    assert result.status == 200
    assert set(keys) <= set(result.deleted_keys)
    for k in keys:
        assert not ob.object_exists(k)


def test_special_character_key(ob, prefix):
    key = prefix + SPECIAL_KEY
    data = "unicode body ✓".encode()
    ob.put_object(key, data, headers={"x-oss-meta-x": "1"})
    assert ob.get_object(key).read() == data
    assert ob.head_object(key).content_length == len(data)
    assert ob.get_object_meta(key).content_length == len(data)
    listed = ob.list_objects_v2(prefix=prefix).object_list
    assert [o.key for o in listed] == [key]
    listed_v1 = ob.list_objects(prefix=prefix).object_list
    assert [o.key for o in listed_v1] == [key]
    ob.delete_object(key)
    assert not ob.object_exists(key)


@pytest.mark.parametrize(
    "name",
    ["a b", "plus+sign", "percent%41", "tilde~", "semi;colon", "dir//double", "ünï/çødé", "emoji-😀"],
)
def test_awkward_keys(server, prefix, name):
    for version in ("v1", "v4"):
        b = oss2_bucket(server, USER_CREDS, version)
        key = f"{prefix}{version}/{name}"
        b.put_object(key, name.encode())
        assert b.get_object(key).read() == name.encode()
        assert [o.key for o in b.list_objects_v2(prefix=f"{prefix}{version}/").object_list] == [key]


def test_copy_object_copy_directive(ob, prefix):
    src = prefix + "src " + SPECIAL_KEY
    dst = prefix + "dst/copy.txt"
    data = payload(5000, seed=5)
    ob.put_object(src, data, headers={"x-oss-meta-origin": "src", "Content-Type": "text/x-src"})
    res = ob.copy_object(BUCKET, src, dst)
    assert res.status == 200
    # oss2 reads the ETag of the copy from the response header; same bytes, same MD5 ETag.
    assert res.etag == ob.head_object(src).etag
    got = ob.get_object(dst)
    assert got.etag == res.etag
    assert got.read() == data
    assert got.headers["x-oss-meta-origin"] == "src"
    assert got.content_type == "text/x-src"
    assert got.server_crc == crc64(data)


def test_copy_object_replace_directive(ob, prefix):
    src = prefix + "src.txt"
    dst = prefix + "dst.txt"
    ob.put_object(src, b"payload", headers={"x-oss-meta-old": "1", "Content-Type": "text/x-old"})
    ob.copy_object(
        BUCKET,
        src,
        dst,
        headers={
            "x-oss-metadata-directive": "REPLACE",
            "x-oss-meta-new": "2",
            "Content-Type": "text/x-new",
        },
    )
    head = ob.head_object(dst)
    assert head.headers.get("x-oss-meta-new") == "2"
    assert "x-oss-meta-old" not in head.headers
    assert head.content_type == "text/x-new"
    assert ob.get_object(dst).read() == b"payload"
    # The source is untouched.
    assert ob.head_object(src).headers.get("x-oss-meta-old") == "1"


def test_copy_onto_itself_replaces_metadata(ob, prefix):
    key = prefix + "self.txt"
    ob.put_object(key, b"same", headers={"x-oss-meta-v": "1"})
    ob.copy_object(BUCKET, key, key, headers={"x-oss-metadata-directive": "REPLACE", "x-oss-meta-v": "2"})
    head = ob.head_object(key)
    assert head.headers.get("x-oss-meta-v") == "2"
    assert ob.get_object(key).read() == b"same"


def test_copy_across_buckets(server, ob, prefix):
    src = prefix + "cross.txt"
    ob.put_object(src, b"cross bucket")
    other = oss2_bucket(server, USER_CREDS, "v4", OTHER_BUCKET)
    other.copy_object(BUCKET, src, src)
    assert other.get_object(src).read() == b"cross bucket"


def test_copy_missing_source(ob, prefix):
    err = oss2_error(ob.copy_object, BUCKET, prefix + "nope", prefix + "dst")
    assert err.status == 404
    assert err.code == "NoSuchKey"


def test_append_object(ob, prefix):
    key = prefix + "append.log"
    first, second, third = b"hello", b" world", payload(3000, seed=6)
    r1 = ob.append_object(key, 0, first, init_crc=0)  # oss2 chains and checks the CRC
    assert r1.next_position == 5
    assert r1.crc == crc64(first)
    r2 = ob.append_object(key, r1.next_position, second, init_crc=r1.crc)
    assert r2.next_position == 11
    r3 = ob.append_object(key, r2.next_position, third, init_crc=r2.crc)
    assert r3.next_position == 11 + len(third)
    assert r3.crc == crc64(first + second + third)
    head = ob.head_object(key)
    assert head.object_type == "Appendable"
    assert int(head.headers["x-oss-next-append-position"]) == r3.next_position
    assert ob.get_object(key).read() == first + second + third


def test_append_wrong_position(ob, prefix):
    key = prefix + "append-bad.log"
    ob.append_object(key, 0, b"12345")
    err = oss2_error(ob.append_object, key, 3, b"x")
    assert err.status == 409
    assert err.code == "PositionNotEqualToLength"
    assert int(err.headers["x-oss-next-append-position"]) == 5
    # The object is unchanged.
    assert ob.get_object(key).read() == b"12345"


def test_append_to_normal_object(ob, prefix):
    key = prefix + "normal.txt"
    ob.put_object(key, b"normal")
    err = oss2_error(ob.append_object, key, 6, b"more")
    assert err.status == 409
    assert err.code == "ObjectNotAppendable"


def test_symlink(ob, prefix):
    target = prefix + "dir/target file.txt"
    link = prefix + "link"
    data = b"symlink target data"
    ob.put_object(target, data)
    res = ob.put_symlink(target, link, headers={"x-oss-meta-l": "1"})
    assert res.status == 200
    got = ob.get_symlink(link)
    assert got.target_key == target
    assert got.headers.get("x-oss-meta-l") == "1"
    # Reading through the link gives the target's bytes.
    assert ob.get_object(link).read() == data
    # The link itself is an object of type Symlink (which headers HEAD shows is unverified).
    (listed,) = [o for o in ob.list_objects_v2(prefix=link).object_list if o.key == link]
    assert listed.type == "Symlink"


def test_symlink_unicode_target(ob, prefix):
    target = prefix + SPECIAL_KEY
    link = prefix + "链接"
    ob.put_object(target, b"t")
    ob.put_symlink(target, link)
    assert ob.get_symlink(link).target_key == target
    assert ob.get_object(link).read() == b"t"


def test_symlink_to_missing_target(ob, prefix):
    link = prefix + "dangling"
    ob.put_symlink(prefix + "missing-target", link)
    assert ob.get_symlink(link).target_key == prefix + "missing-target"
    err = oss2_error(ob.get_object, link)
    assert err.status == 404
    assert err.code in ("NoSuchKey", "SymlinkTargetNotExist")


def test_get_symlink_on_normal_object(ob, prefix):
    key = prefix + "plain"
    ob.put_object(key, b"p")
    err = oss2_error(ob.get_symlink, key)
    assert err.status in (400, 404)


def test_bucket_info_and_location(ob):
    info = ob.get_bucket_info()
    assert info.name == BUCKET
    assert info.location == f"oss-{REGION}"
    assert info.storage_class == "Standard"
    loc = ob.get_bucket_location()
    assert loc.location == f"oss-{REGION}"


def test_no_such_key(ob, prefix):
    err = oss2_error(ob.get_object, prefix + "missing")
    assert err.status == 404
    assert err.code == "NoSuchKey"
    assert err.request_id
    assert err.details.get("EC")
    # HEAD errors: no body, oss2 decodes the x-oss-err header.
    err = oss2_error(ob.head_object, prefix + "missing")
    assert err.status == 404
    assert err.code == "NoSuchKey"
    err = oss2_error(ob.get_object_meta, prefix + "missing")
    assert err.status == 404


def test_no_such_bucket(server, ob, prefix):
    missing = oss2_bucket(server, USER_CREDS, "v4", MISSING_BUCKET)
    for call in (
        lambda: missing.get_object(prefix + "k"),
        lambda: missing.put_object(prefix + "k", b"x"),
        lambda: missing.list_objects_v2(),
        lambda: missing.get_bucket_info(),
    ):
        err = oss2_error(call)
        assert err.status == 404
        assert err.code == "NoSuchBucket"
        assert err.details.get("BucketName") == MISSING_BUCKET


def test_content_md5_checked(ob, prefix):
    import base64
    import hashlib

    key = prefix + "md5.txt"
    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    ob.put_object(key, b"abc", headers={"Content-MD5": good})
    err = oss2_error(ob.put_object, key, b"abd", headers={"Content-MD5": good})
    assert err.status == 400
    assert err.code in ("InvalidDigest", "BadDigest")
    assert ob.get_object(key).read() == b"abc"


def test_presigned_get_and_put(ob, prefix):
    import requests

    key = prefix + "presigned " + SPECIAL_KEY
    ob.put_object(key, b"signed-url body")
    r = requests.get(ob.sign_url("GET", key, 300), timeout=10)
    assert r.status_code == 200, r.text
    assert r.content == b"signed-url body"

    put_key = prefix + "presigned-put.bin"
    url = ob.sign_url("PUT", put_key, 300, headers={"Content-Type": "application/x-put"})
    r = requests.put(url, data=b"uploaded via url", headers={"Content-Type": "application/x-put"}, timeout=10)
    assert r.status_code == 200, r.text
    assert ob.get_object(put_key).read() == b"uploaded via url"
    assert ob.head_object(put_key).content_type == "application/x-put"

    # The signature covers Content-Type: sending another one is refused.
    r = requests.put(url, data=b"other", headers={"Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in r.text


def test_presigned_url_expired(server, prefix):
    import requests

    b = oss2_bucket(server, USER_CREDS, "v1")
    key = prefix + "expired-url"
    b.put_object(key, b"x")
    r = requests.get(b.sign_url("GET", key, -60), timeout=10)  # Expires one minute in the past
    assert r.status_code == 403
    assert "<Code>AccessDenied</Code>" in r.text


@pytest.fixture
def loopback_invalid_domain(monkeypatch):
    """Resolve `*.invalid` (a reserved TLD that never reaches DNS) to 127.0.0.1 for this test,
    so the SDKs build genuine virtual-hosted URLs (`http://<bucket>.osslocal.invalid:PORT/key`)."""
    import socket

    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".invalid"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return "osslocal.invalid"


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_virtual_hosted_style(server, prefix, version, loopback_invalid_domain):
    import alibabacloud_oss_v2 as oss

    endpoint = f"http://{loopback_invalid_domain}:{server.port}"
    creds = USER_CREDS
    auth = (
        oss2.Auth(creds.access_key_id, creds.access_key_secret)
        if version == "v1"
        else oss2.AuthV4(creds.access_key_id, creds.access_key_secret)
    )
    b = oss2.Bucket(auth, endpoint, BUCKET, region=REGION if version == "v4" else None)
    assert b._make_url(BUCKET, "k").startswith(f"http://{BUCKET}.{loopback_invalid_domain}:")
    key = prefix + "vhost " + SPECIAL_KEY
    b.put_object(key, b"virtual")
    assert b.get_object(key).read() == b"virtual"
    assert [o.key for o in b.list_objects_v2(prefix=prefix).object_list] == [key]
    # The same object through path style.
    assert oss2_bucket(server, USER_CREDS, version).get_object(key).read() == b"virtual"

    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(creds.access_key_id, creds.access_key_secret)
    cfg.region = REGION
    cfg.endpoint = endpoint
    cfg.signature_version = version
    client = oss.Client(cfg)
    got = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key))
    assert got.body.read() == b"virtual"


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_object_name_limits(server, prefix, version):
    b = oss2_bucket(server, USER_CREDS, version)
    longest = prefix + "k" * (1023 - len(prefix.encode()))
    assert len(longest.encode()) == 1023
    b.put_object(longest, b"1023")
    assert b.get_object(longest).read() == b"1023"
    err = oss2_error(b.put_object, longest + "k", b"1024")
    assert err.status == 400
    assert err.code == "InvalidObjectName"
    err = oss2_error(b.put_object, "/" + prefix + "leading-slash", b"x")
    assert err.status == 400
    assert err.code == "InvalidObjectName"
    err = oss2_error(b.put_object, "\\" + prefix + "leading-backslash", b"x")
    assert err.status == 400
    assert err.code == "InvalidObjectName"


def test_v4_presigned_with_additional_headers(server, prefix):
    """x-oss-additional-headers: extra headers (here `host` and a custom one) enter the signature."""
    import requests

    b = oss2_bucket(server, USER_CREDS, "v4")
    key = prefix + "additional-headers.txt"
    b.put_object(key, b"additional")
    headers = {"x-custom-signed": "yes"}
    url = b.sign_url("GET", key, 300, headers=headers, additional_headers={"host", "x-custom-signed"})
    assert "x-oss-additional-headers=" in url
    r = requests.get(url, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.content == b"additional"
    r = requests.get(url, headers={"x-custom-signed": "tampered"}, timeout=10)
    assert r.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in r.text
