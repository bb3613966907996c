"""Signature, token and policy failures as the official OSS SDKs see them."""

from __future__ import annotations

import json
import time
import uuid

import alibabacloud_oss_v2 as oss
import oss2
import pytest
from conftest import (
    BUCKET,
    MIN_DURATION_SECS,
    READONLY_PREFIX,
    ROLE_FULL,
    ROLE_READONLY,
    USER_AK,
    USER_CREDS,
    Creds,
    assume_role,
    oss2_bucket,
    oss2_error,
    v2_client,
    v2_error,
)

SIGNATURE_MISMATCH_EC = "0002-00000040"
TOKEN_EXPIRED_EC = "0002-00000007"


def _oss2_get(creds, server, version, key="no-matter"):
    return oss2_bucket(server, creds, version).get_object(key)


def _v2_get(creds, server, version, key="no-matter"):
    return v2_client(server, creds, version).get_object(oss.GetObjectRequest(bucket=BUCKET, key=key))


# --------------------------------------------------------------------------------------
# Wrong secret / unknown key / anonymous


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_oss2_wrong_secret(server, version):
    bad = Creds(USER_AK, "definitely-not-the-secret")
    err = oss2_error(oss2_bucket(server, bad, version).put_object, "wrong-secret.txt", b"x")
    assert err.status == 403
    assert err.code == "SignatureDoesNotMatch"
    assert err.ec == SIGNATURE_MISMATCH_EC
    assert err.details.get("StringToSign")
    assert err.details.get("OSSAccessKeyId") == USER_AK
    # Nothing was written.
    assert not oss2_bucket(server, USER_CREDS, version).object_exists("wrong-secret.txt")


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_oss2_wrong_secret_string_to_sign_matches(server, version):
    """The StringToSign the server reports must be what oss2 signed (proves both sides agree)."""
    bad = Creds(USER_AK, "definitely-not-the-secret")
    b = oss2_bucket(server, bad, version)
    key = "目录/sts check +&.txt"
    err = oss2_error(b.get_object, key, byte_range=(0, 3), headers={"x-oss-meta-probe": "1"})
    reported = err.details.get("StringToSign", "")
    if version == "v1":
        assert reported.startswith("GET\n")
        assert reported.endswith(f"/{BUCKET}/{key}")
        assert "x-oss-meta-probe:1\n" in reported
    else:
        assert reported.startswith("OSS4-HMAC-SHA256\n")
        assert "/cn-hangzhou/oss/aliyun_v4_request\n" in reported


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_v2_wrong_secret(server, version):
    bad = Creds(USER_AK, "definitely-not-the-secret")
    err = v2_error(_v2_get, bad, server, version)
    assert err.status_code == 403
    assert err.code == "SignatureDoesNotMatch"
    assert err.ec == SIGNATURE_MISMATCH_EC
    # HEAD: same error decoded from x-oss-err.
    client = v2_client(server, bad, version)
    err = v2_error(client.head_object, oss.HeadObjectRequest(bucket=BUCKET, key="k"))
    assert err.status_code == 403
    assert err.code == "SignatureDoesNotMatch"


def test_unknown_access_key(server):
    nobody = Creds("LTAI5tNobodyKnowsMe", "whatever")
    err = oss2_error(_oss2_get, nobody, server, "v1")
    assert err.status == 403
    assert err.code == "InvalidAccessKeyId"
    err = v2_error(_v2_get, nobody, server, "v4")
    assert err.status_code == 403
    assert err.code == "InvalidAccessKeyId"


def test_anonymous_refused(server):
    b = oss2.Bucket(oss2.AnonymousAuth(), server.endpoint, BUCKET)
    err = oss2_error(b.get_object, "anything")
    assert err.status == 403
    assert err.code == "AccessDenied"


def test_wrong_region_in_v4_scope(server):
    """V4 scope region must be the server's region."""
    b = oss2.Bucket(
        oss2.AuthV4(USER_CREDS.access_key_id, USER_CREDS.access_key_secret),
        server.endpoint,
        BUCKET,
        region="cn-beijing",
    )
    err = oss2_error(b.get_object, "anything")
    assert err.status in (400, 403)
    assert err.code in (
        "SignatureDoesNotMatch",
        "InvalidArgument",
        "AuthorizationHeaderMalformed",
        "InvalidRegion",
        "AccessDenied",
    )


def test_clock_skew(server, faults):
    faults.set_faults(time_offset_secs=3600)
    err = oss2_error(oss2_bucket(server, USER_CREDS, "v1").get_object, "skew")
    assert err.status == 403
    assert err.code == "RequestTimeTooSkewed"
    client = v2_client(server, USER_CREDS, "v4", retry_max_attempts=1)
    err = v2_error(client.get_object, oss.GetObjectRequest(bucket=BUCKET, key="skew"))
    assert err.status_code == 403
    assert err.code == "RequestTimeTooSkewed"


# --------------------------------------------------------------------------------------
# STS tokens


def test_sts_token_expires_by_time(server):
    creds = assume_role(server, session_name="short-lived", duration=MIN_DURATION_SECS)
    key = f"expiry/{uuid.uuid4().hex}"
    oss2_bucket(server, creds, "v4").put_object(key, b"before expiry")
    time.sleep(MIN_DURATION_SECS + 1.5)
    for version in ("v1", "v4"):
        err = oss2_error(oss2_bucket(server, creds, version).get_object, key)
        assert err.status == 403, version
        assert err.code == "SecurityTokenExpired", version
        assert err.ec == TOKEN_EXPIRED_EC
    err = v2_error(v2_client(server, creds, "v4").get_object, oss.GetObjectRequest(bucket=BUCKET, key=key))
    assert err.status_code == 403
    assert err.code == "SecurityTokenExpired"
    # A fresh token works again.
    fresh = assume_role(server, session_name="after-expiry")
    assert oss2_bucket(server, fresh, "v4").get_object(key).read() == b"before expiry"


def test_expire_tokens_fault(server, faults):
    creds = assume_role(server, session_name="to-be-expired")
    key = f"expiry/{uuid.uuid4().hex}"
    b = oss2_bucket(server, creds, "v1")
    b.put_object(key, b"x")
    faults.set_faults(expire_tokens=True)
    err = oss2_error(b.get_object, key)
    assert err.status == 403
    assert err.code == "SecurityTokenExpired"
    err = v2_error(v2_client(server, creds, "v4").get_object, oss.GetObjectRequest(bucket=BUCKET, key=key))
    assert err.code == "SecurityTokenExpired"
    # A token issued after the fault is accepted even while the fault is active.
    time.sleep(1.1)
    fresh = assume_role(server, session_name="issued-after-fault")
    assert oss2_bucket(server, fresh, "v1").get_object(key).read() == b"x"


def _tamper(token: str) -> str:
    mid = len(token) // 2
    replacement = "A" if token[mid] != "A" else "B"
    return token[:mid] + replacement + token[mid + 1 :]


def test_tampered_token(server):
    creds = assume_role(server)
    bad = Creds(creds.access_key_id, creds.access_key_secret, _tamper(creds.security_token))
    for version in ("v1", "v4"):
        err = oss2_error(oss2_bucket(server, bad, version).get_object, "k")
        assert err.status == 403
        assert err.code == "InvalidSecurityToken", version


def test_token_of_another_session(server):
    a = assume_role(server, session_name="session-a")
    b = assume_role(server, session_name="session-b")
    mixed = Creds(a.access_key_id, a.access_key_secret, b.security_token)
    err = oss2_error(oss2_bucket(server, mixed, "v4").get_object, "k")
    assert err.status == 403
    assert err.code in ("InvalidSecurityToken", "SignatureDoesNotMatch")


def test_sts_key_without_token(server):
    a = assume_role(server)
    err = oss2_error(oss2_bucket(server, Creds(a.access_key_id, a.access_key_secret), "v1").get_object, "k")
    assert err.status == 403
    assert err.code in ("InvalidSecurityToken", "InvalidAccessKeyId")


def test_v2_v1_signer_with_sts_token_divergence(server):
    """PROTOCOL.md §9.1: alibabacloud-oss-v2's V1 signer sends the token as `security-token`,
    outside the signature. Whatever osslocal does with it, it must not be a 5xx or a success
    that bypasses the token (the secret is the session's, so only a token check can accept it)."""
    creds = assume_role(server)
    client = v2_client(server, creds, "v1", retry_max_attempts=1)
    key = f"div/{uuid.uuid4().hex}"
    try:
        client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=b"d"))
    except oss.exceptions.OperationError as e:
        err = e.unwrap()
        assert isinstance(err, oss.exceptions.ServiceError)
        assert err.status_code == 403
        assert err.code in ("InvalidSecurityToken", "InvalidAccessKeyId", "SignatureDoesNotMatch")
    else:
        # Accepted: the object must really be there.
        assert oss2_bucket(server, USER_CREDS, "v4").get_object(key).read() == b"d"


# --------------------------------------------------------------------------------------
# Policies


@pytest.fixture(scope="module")
def seeded(server):
    """Objects the read-only role may and may not read (written with the RAM user)."""
    b = oss2_bucket(server, USER_CREDS, "v4")
    tag = uuid.uuid4().hex[:8]
    public_key = f"{READONLY_PREFIX}{tag}/readable.txt"
    private_key = f"private/{tag}/secret.txt"
    b.put_object(public_key, b"public data")
    b.put_object(private_key, b"private data")
    return public_key, private_key


def _assert_denied_oss2(fn, *args, **kwargs):
    err = oss2_error(fn, *args, **kwargs)
    assert err.status == 403
    assert err.code == "AccessDenied"
    return err


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_role_policy_limits_access(server, seeded, version):
    public_key, private_key = seeded
    creds = assume_role(server, role_arn=ROLE_READONLY, session_name="readonly")
    b = oss2_bucket(server, creds, version)
    assert b.get_object(public_key).read() == b"public data"
    assert b.head_object(public_key).content_length == len(b"public data")
    _assert_denied_oss2(b.get_object, private_key)
    err = oss2_error(b.head_object, private_key)  # HEAD: code from x-oss-err
    assert err.status == 403 and err.code == "AccessDenied"
    _assert_denied_oss2(b.put_object, public_key, b"overwrite")
    _assert_denied_oss2(b.delete_object, public_key)
    _assert_denied_oss2(b.list_objects_v2, prefix=READONLY_PREFIX)
    _assert_denied_oss2(b.init_multipart_upload, READONLY_PREFIX + "mp")
    _assert_denied_oss2(b.append_object, READONLY_PREFIX + "append", 0, b"a")
    _assert_denied_oss2(b.copy_object, BUCKET, public_key, READONLY_PREFIX + "copy")
    # Nothing was changed.
    assert oss2_bucket(server, USER_CREDS, "v4").get_object(public_key).read() == b"public data"


def test_role_policy_with_v2_sdk(server, seeded):
    public_key, private_key = seeded
    creds = assume_role(server, role_arn=ROLE_READONLY, session_name="readonly-v2")
    client = v2_client(server, creds, "v4")
    got = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=public_key))
    assert got.body.read() == b"public data"
    err = v2_error(client.get_object, oss.GetObjectRequest(bucket=BUCKET, key=private_key))
    assert err.status_code == 403 and err.code == "AccessDenied"
    err = v2_error(client.put_object, oss.PutObjectRequest(bucket=BUCKET, key=public_key, body=b"no"))
    assert err.code == "AccessDenied"
    # DeleteMultipleObjects is checked per key: the object must survive whatever the answer.
    try:
        client.delete_multiple_objects(
            oss.DeleteMultipleObjectsRequest(bucket=BUCKET, objects=[oss.DeleteObject(key=public_key)])
        )
    except oss.exceptions.OperationError as e:
        assert e.unwrap().code == "AccessDenied"
    assert oss2_bucket(server, USER_CREDS, "v4").get_object(public_key).read() == b"public data"
    err = v2_error(client.get_bucket_info, oss.GetBucketInfoRequest(bucket=BUCKET))
    assert err.code == "AccessDenied"


def test_session_policy_narrows_full_role(server, seeded):
    public_key, private_key = seeded
    policy = json.dumps(
        {
            "Version": "1",
            "Statement": [
                {"Effect": "Allow", "Action": "oss:GetObject", "Resource": f"acs:oss:*:*:{BUCKET}/{READONLY_PREFIX}*"}
            ],
        },
        separators=(",", ":"),
    )
    creds = assume_role(server, role_arn=ROLE_FULL, session_name="narrowed", policy=policy)
    b = oss2_bucket(server, creds, "v4")
    assert b.get_object(public_key).read() == b"public data"
    _assert_denied_oss2(b.get_object, private_key)
    _assert_denied_oss2(b.put_object, f"{READONLY_PREFIX}new", b"x")


def test_session_policy_cannot_widen_role(server, seeded):
    public_key, _ = seeded
    wide = json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "oss:*", "Resource": "*"}]})
    creds = assume_role(server, role_arn=ROLE_READONLY, session_name="widen-attempt", policy=wide)
    b = oss2_bucket(server, creds, "v1")
    assert b.get_object(public_key).read() == b"public data"
    _assert_denied_oss2(b.put_object, f"{READONLY_PREFIX}widened", b"x")


def test_explicit_deny_wins(server, seeded):
    public_key, _ = seeded
    policy = json.dumps(
        {
            "Version": "1",
            "Statement": [
                {"Effect": "Allow", "Action": "oss:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "oss:Get*", "Resource": f"acs:oss:*:*:{BUCKET}/{READONLY_PREFIX}*"},
            ],
        }
    )
    creds = assume_role(server, session_name="deny-wins", policy=policy)
    b = oss2_bucket(server, creds, "v4")
    _assert_denied_oss2(b.get_object, public_key)
    key = f"deny-wins/{uuid.uuid4().hex}"
    b.put_object(key, b"allowed elsewhere")
    assert b.get_object(key).read() == b"allowed elsewhere"


def test_session_policy_with_unicode_and_reserved_characters(server):
    """A compact policy whose Resource holds UTF-8 and RPC-reserved characters: exercises the
    RPC signature encoding (§7.3) and policy matching on unicode keys."""
    allowed_prefix = f"目录/~+*!()'&=;{uuid.uuid4().hex[:6]}/"
    policy = json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["oss:PutObject", "oss:GetObject"],
                    "Resource": [f"acs:oss:*:*:{BUCKET}/{allowed_prefix}*"],
                }
            ],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    creds = assume_role(server, session_name="unicode-policy", policy=policy)
    b = oss2_bucket(server, creds, "v4")
    b.put_object(allowed_prefix + "文件.txt", b"ok")
    assert b.get_object(allowed_prefix + "文件.txt").read() == b"ok"
    _assert_denied_oss2(b.put_object, "目录/elsewhere.txt", b"no")


def test_session_policy_bucket_level_actions(server, seeded):
    """Bucket operations are authorized against `acs:oss:*:*:<bucket>` (no key)."""
    public_key, private_key = seeded
    policy = json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["oss:ListObjects", "oss:GetBucketInfo"],
                    "Resource": [f"acs:oss:*:*:{BUCKET}"],
                },
                {"Effect": "Allow", "Action": "oss:GetObject", "Resource": f"acs:oss:*:*:{BUCKET}/{READONLY_PREFIX}*"},
            ],
        }
    )
    creds = assume_role(server, session_name="bucket-level", policy=policy)
    b = oss2_bucket(server, creds, "v1")
    listed = [o.key for o in b.list_objects_v2(prefix=public_key).object_list]
    assert listed == [public_key]
    assert [o.key for o in b.list_objects(prefix=private_key).object_list] == [private_key]
    assert b.get_bucket_info().name == BUCKET
    assert b.get_object(public_key).read() == b"public data"
    _assert_denied_oss2(b.get_object, private_key)
    _assert_denied_oss2(b.get_bucket_location)
    _assert_denied_oss2(b.list_multipart_uploads)


def test_expired_token_in_presigned_url(server, faults):
    import requests

    creds = assume_role(server, session_name="presign-expiry")
    key = f"expiry/{uuid.uuid4().hex}"
    oss2_bucket(server, USER_CREDS, "v4").put_object(key, b"p")
    urls = [oss2_bucket(server, creds, version).sign_url("GET", key, 300) for version in ("v1", "v4")]
    for url in urls:
        assert requests.get(url, timeout=10).content == b"p"
    faults.set_faults(expire_tokens=True)
    for url in urls:
        r = requests.get(url, timeout=10)
        assert r.status_code == 403
        assert "<Code>SecurityTokenExpired</Code>" in r.text


def test_time_offset_fault_moves_token_expiry(server, faults):
    """The admin clock offset applies to token expiry too: a 60 s token is dead 120 s "later"
    (still well inside the 15-minute skew window)."""
    creds = assume_role(server, session_name="offset-expiry", duration=60)
    key = f"expiry/{uuid.uuid4().hex}"
    b = oss2_bucket(server, creds, "v4")
    b.put_object(key, b"o")
    faults.set_faults(time_offset_secs=120)
    err = oss2_error(b.get_object, key)
    assert err.status == 403
    assert err.code == "SecurityTokenExpired"
    faults.clear_faults()
    assert b.get_object(key).read() == b"o"
