"""osslocal's command-line contract, admin counters and fault injection, seen through the SDKs."""

from __future__ import annotations

import re
import time
import uuid

import alibabacloud_oss_v2 as oss
import oss2
import pytest
from conftest import BUCKET, USER_CREDS, crc64, oss2_bucket, oss2_error, payload, v2_client, v2_error

LATENCY_MS = 300


def test_cli_prints_bound_address(server):
    assert re.fullmatch(r"127\.0\.0\.1:\d+", server.address), server.address
    assert server.port != 0
    assert server.stdout_first_line == server.address


def test_crc64_reference_value():
    """The SDK CRC used by every check in this suite is CRC-64/XZ (PROTOCOL.md §6)."""
    assert crc64(b"123456789") == 11051210869376104954


def test_stats_count_operations_and_errors(server, admin):
    b = oss2_bucket(server, USER_CREDS, "v4")
    key = f"stats/{uuid.uuid4().hex}"
    data = payload(10_000, seed=40)
    admin.reset_stats()
    b.put_object(key, data)
    assert b.get_object(key).read() == data
    b.head_object(key)
    b.get_object_meta(key)
    b.list_objects_v2(prefix="stats/")
    b.delete_object(key)
    oss2_error(b.get_object, key)
    stats = admin.stats()
    ops = stats["ops"]
    for name, count in {
        "PutObject": 1,
        "GetObject": 2,
        "HeadObject": 1,
        "GetObjectMeta": 1,
        "ListObjectsV2": 1,
        "DeleteObject": 1,
    }.items():
        assert ops.get(name) == count, (name, ops)
    assert stats["errors"].get("NoSuchKey") == 1, stats["errors"]
    assert stats["requests"] >= 7
    assert stats["bytes_in"] >= len(data)
    assert stats["bytes_out"] >= len(data)


def test_stats_names_for_every_operation(server, admin):
    b = oss2_bucket(server, USER_CREDS, "v1")
    p = f"stats-all/{uuid.uuid4().hex}/"
    admin.reset_stats()
    b.put_object(p + "src", b"s" * 10)
    b.copy_object(BUCKET, p + "src", p + "copy")
    b.batch_delete_objects([p + "copy"])
    b.list_objects(prefix=p)
    up = b.init_multipart_upload(p + "mp").upload_id
    b.upload_part(p + "mp", up, 1, b"part")
    b.upload_part_copy(BUCKET, p + "src", (0, 4), p + "mp", up, 2)
    b.list_parts(p + "mp", up)
    b.list_multipart_uploads(prefix=p)
    b.abort_multipart_upload(p + "mp", up)
    up = b.init_multipart_upload(p + "mp2").upload_id
    r = b.upload_part(p + "mp2", up, 1, b"x")
    b.complete_multipart_upload(p + "mp2", up, [oss2.models.PartInfo(1, r.etag)])
    b.append_object(p + "app", 0, b"a")
    b.put_symlink(p + "src", p + "link")
    b.get_symlink(p + "link")
    b.get_bucket_info()
    b.get_bucket_location()
    oss2.Service(oss2.Auth(USER_CREDS.access_key_id, USER_CREDS.access_key_secret), server.endpoint).list_buckets()
    ops = admin.stats()["ops"]
    for name in (
        "CopyObject",
        "DeleteMultipleObjects",
        "ListObjects",
        "InitiateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "ListParts",
        "ListMultipartUploads",
        "AbortMultipartUpload",
        "CompleteMultipartUpload",
        "AppendObject",
        "PutSymlink",
        "GetSymlink",
        "GetBucketInfo",
        "GetBucketLocation",
        "ListBuckets",
    ):
        assert ops.get(name, 0) >= 1, (name, ops)
    assert ops.get("InitiateMultipartUpload") == 2
    assert ops.get("UploadPart") == 2


def test_stats_reset(server, admin):
    oss2_bucket(server, USER_CREDS, "v4").put_object(f"reset/{uuid.uuid4().hex}", b"r")
    admin.reset_stats()
    stats = admin.stats()
    assert not any(stats["ops"].values()), stats["ops"]
    assert not any(stats["errors"].values()), stats["errors"]
    assert stats["requests"] <= 1  # the stats request itself may or may not count
    assert stats["bytes_in"] == 0


def test_injected_errors_are_retried_by_v2_sdk(server, faults):
    key = f"faults/{uuid.uuid4().hex}"
    data = payload(2048, seed=41)
    oss2_bucket(server, USER_CREDS, "v4").put_object(key, data)
    faults.reset_stats()
    faults.set_faults(
        error_rate=1.0, error_status=503, error_code="ServiceUnavailable", ops=["GetObject"], max_faults=2
    )
    client = v2_client(server, USER_CREDS, "v4")  # default: 3 attempts, 503 is retryable
    got = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key))
    assert got.body.read() == data
    stats = faults.stats()
    assert stats["errors"].get("ServiceUnavailable") == 2
    assert stats["ops"].get("GetObject") == 3


def test_injected_errors_reach_oss2(server, faults):
    key = f"faults/{uuid.uuid4().hex}"
    b = oss2_bucket(server, USER_CREDS, "v1")
    b.put_object(key, b"abc")
    faults.set_faults(error_rate=1.0, error_status=503, error_code="ServiceUnavailable", ops=["GetObject"])
    err = oss2_error(b.get_object, key)
    assert err.status == 503
    assert err.code == "ServiceUnavailable"
    # Other operations are not affected.
    b.put_object(key, b"def")
    faults.clear_faults()
    assert b.get_object(key).read() == b"def"


def test_injected_error_is_retry_exhausted_in_v2(server, faults):
    key = f"faults/{uuid.uuid4().hex}"
    oss2_bucket(server, USER_CREDS, "v4").put_object(key, b"abc")
    faults.set_faults(error_rate=1.0, error_status=500, error_code="InternalError", ops=["HeadObject"])
    client = v2_client(server, USER_CREDS, "v4", retry_max_attempts=2)
    err = v2_error(client.head_object, oss.HeadObjectRequest(bucket=BUCKET, key=key))
    assert err.status_code == 500
    assert err.code == "InternalError"


def test_latency_fault(server, faults):
    key = f"faults/{uuid.uuid4().hex}"
    b = oss2_bucket(server, USER_CREDS, "v4")
    b.put_object(key, b"slow")
    faults.set_faults(latency_ms=LATENCY_MS, ops=["GetObject"])
    start = time.monotonic()
    assert b.get_object(key).read() == b"slow"
    assert time.monotonic() - start >= LATENCY_MS / 1000.0 * 0.9


def test_connection_reset_mid_body(server, faults):
    key = f"faults/{uuid.uuid4().hex}"
    data = payload(256 * 1024, seed=42)
    b = oss2_bucket(server, USER_CREDS, "v4")
    b.put_object(key, data)
    faults.set_faults(reset_rate=1.0, reset_after_bytes=1000)
    # The SDK must notice the cut: a short body never passes as the object.
    with pytest.raises(Exception) as info:  # noqa: B017 - requests/urllib3/oss2 raise different types
        body = b.get_object(key).read()
        assert body == data, "truncated body returned without error"
    assert not isinstance(info.value, AssertionError), str(info.value)
    client = v2_client(server, USER_CREDS, "v4", retry_max_attempts=1)
    with pytest.raises(Exception) as info:  # noqa: B017
        body = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key)).body.read()
        assert body == data, "truncated body returned without error"
    assert not isinstance(info.value, AssertionError), str(info.value)
    faults.clear_faults()
    assert b.get_object(key).read() == data


def test_admin_accepts_every_documented_fault_field(server, faults):
    # Posting the documented fields together must be accepted.
    faults.set_faults(
        error_rate=0.0,
        error_status=503,
        error_code="ServiceUnavailable",
        ops=["GetObject"],
        latency_ms=0,
        reset_rate=0.0,
        reset_after_bytes=65536,
        sts_outage=False,
        time_offset_secs=0,
        expire_tokens=False,
        max_faults=10,
    )
    key = f"faults/{uuid.uuid4().hex}"
    b = oss2_bucket(server, USER_CREDS, "v4")
    b.put_object(key, b"ok")
    assert b.get_object(key).read() == b"ok"
