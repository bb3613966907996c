"""STS through the official RPC SDK (aliyun-python-sdk-core + aliyun-python-sdk-sts) against osslocal."""

from __future__ import annotations

import datetime
import json
import re
import uuid

import pytest
from aliyunsdksts.request.v20150401.GetCallerIdentityRequest import GetCallerIdentityRequest
from conftest import (
    ACCOUNT_ID,
    MIN_DURATION_SECS,
    ROLE_FULL,
    USER_AK,
    USER_SK,
    assume_role,
    assume_role_raw,
    oss2_bucket,
    sts_client,
    sts_error,
    sts_request,
)

EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CLOCK_SLACK_SECS = 60


def _expiration(answer: dict) -> datetime.datetime:
    raw = answer["Credentials"]["Expiration"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw), raw
    return datetime.datetime.strptime(raw, EXPIRATION_FORMAT).replace(tzinfo=datetime.timezone.utc)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def test_assume_role_answer_shape(server):
    answer = assume_role_raw(server, session_name="shape.check@host-01", duration=900)
    assert answer["RequestId"]
    creds = answer["Credentials"]
    assert creds["AccessKeyId"].startswith("STS.")
    assert creds["AccessKeySecret"] and creds["SecurityToken"]
    assert creds["AccessKeySecret"] != USER_SK
    remaining = (_expiration(answer) - _now()).total_seconds()
    assert 900 - CLOCK_SLACK_SECS <= remaining <= 900 + CLOCK_SLACK_SECS
    user = answer["AssumedRoleUser"]
    assert user["Arn"] and "shape.check@host-01" in user["Arn"]
    assert user["AssumedRoleId"] and user["AssumedRoleId"].endswith(":shape.check@host-01")


def test_each_assume_role_gives_new_credentials(server):
    a = assume_role(server, session_name="one-session")
    b = assume_role(server, session_name="one-session")
    assert a.access_key_id != b.access_key_id
    assert a.security_token != b.security_token


def test_default_duration_is_one_hour(server):
    answer = assume_role_raw(server, duration=None)
    remaining = (_expiration(answer) - _now()).total_seconds()
    assert 3600 - CLOCK_SLACK_SECS <= remaining <= 3600 + CLOCK_SLACK_SECS


def test_min_duration_flag_allows_short_tokens(server):
    answer = assume_role_raw(server, duration=MIN_DURATION_SECS)
    remaining = (_expiration(answer) - _now()).total_seconds()
    assert remaining <= MIN_DURATION_SECS + 2


@pytest.mark.parametrize("duration", [MIN_DURATION_SECS - 1, 43201, 0])
def test_bad_duration(server, duration):
    err = sts_error(assume_role_raw, server, duration=duration)
    assert err.get_error_code() == "InvalidParameter.DurationSeconds"
    assert err.get_http_status() == 400


@pytest.mark.parametrize("name", ["a", "has space", "bad/slash", "x" * 65, "semi;colon"])
def test_bad_role_session_name(server, name):
    err = sts_error(assume_role_raw, server, session_name=name)
    assert err.get_error_code() == "InvalidParameter.RoleSessionName"
    assert err.get_http_status() == 400


@pytest.mark.parametrize("name", ["ab", "a.b@c-d_e", "x" * 64])
def test_good_role_session_names(server, name):
    assert assume_role(server, session_name=name).access_key_id.startswith("STS.")


@pytest.mark.parametrize(
    "policy",
    [
        "{not json",
        json.dumps({"Version": "1"}),  # no Statement
        json.dumps({"Version": "1", "Statement": [{"Effect": "Maybe", "Action": "oss:*", "Resource": "*"}]}),
        json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "oss:*"}]}),  # no Resource
    ],
)
def test_malformed_policy(server, policy):
    err = sts_error(assume_role_raw, server, policy=policy)
    assert err.get_error_code() == "InvalidParameter.PolicyGrammar"
    assert err.get_http_status() == 400


def test_unknown_role(server):
    err = sts_error(assume_role_raw, server, role_arn=f"acs:ram::{ACCOUNT_ID}:role/no-such-role")
    assert err.get_error_code() == "EntityNotExist.Role"
    assert err.get_http_status() in (400, 404)


def test_malformed_role_arn(server):
    err = sts_error(assume_role_raw, server, role_arn="not-an-arn")
    assert err.get_error_code() == "InvalidParameter.RoleArn"
    assert err.get_http_status() == 400


def test_wrong_secret(server):
    """The SDK turns SignatureDoesNotMatch into InvalidAccessKeySecret exactly when the server's
    string-to-sign (echoed in the message) equals the one the SDK signed: a byte-exact check of §7.3."""
    err = sts_error(assume_role_raw, server, sk="wrong-secret")
    assert err.get_http_status() == 400
    assert err.get_error_code() == "InvalidAccessKeySecret", err.get_error_msg()


def test_wrong_secret_with_policy_with_spaces(server):
    """Same byte-exact check with a pretty-printed policy (spaces, newlines, quotes)."""
    policy = json.dumps(
        {
            "Version": "1",
            "Statement": [{"Effect": "Allow", "Action": ["oss:GetObject"], "Resource": ["acs:oss:*:*:*"]}],
        },
        indent=2,
    )
    err = sts_error(assume_role_raw, server, sk="wrong-secret", policy=policy)
    assert err.get_error_code() == "InvalidAccessKeySecret", err.get_error_msg()


def test_unknown_access_key(server):
    err = sts_error(assume_role_raw, server, ak="LTAI5tNobodyKnowsMe", sk="whatever")
    assert err.get_error_code() == "InvalidAccessKeyId.NotFound"
    assert err.get_http_status() in (400, 403, 404)


def test_pretty_printed_session_policy_is_accepted(server):
    policy = json.dumps(
        {
            "Version": "1",
            "Statement": [
                {"Effect": "Allow", "Action": ["oss:GetObject", "oss:PutObject"], "Resource": ["acs:oss:*:*:*"]}
            ],
        },
        indent=4,
    )
    creds = assume_role(server, policy=policy, session_name="pretty-policy")
    assert creds.access_key_id.startswith("STS.")


def test_get_caller_identity_user(server):
    req = sts_request(server, GetCallerIdentityRequest())
    answer = json.loads(sts_client(server).do_action_with_exception(req))
    assert answer["AccountId"] == ACCOUNT_ID
    assert answer["IdentityType"] == "RAMUser"
    assert answer["Arn"]
    assert answer["RequestId"]


def test_get_caller_identity_assumed_role(server):
    creds = assume_role(server, session_name="who-am-i")
    req = sts_request(server, GetCallerIdentityRequest())
    client = sts_client(server, creds.access_key_id, creds.access_key_secret, creds.security_token)
    answer = json.loads(client.do_action_with_exception(req))
    assert answer["AccountId"] == ACCOUNT_ID
    assert answer["IdentityType"] == "AssumedRoleUser"
    assert "who-am-i" in answer["Arn"]


def test_role_chaining_with_sts_credentials(server):
    """AssumeRole called with STS credentials (SecurityToken parameter, PROTOCOL.md §7.2)."""
    first = assume_role(server, session_name="chain-first")
    second = assume_role(
        server,
        session_name="chain-second",
        ak=first.access_key_id,
        sk=first.access_key_secret,
        token=first.security_token,
    )
    assert second.access_key_id.startswith("STS.")
    assert second.access_key_id != first.access_key_id
    b = oss2_bucket(server, second, "v4")
    b.put_object("chained/" + uuid.uuid4().hex, b"ok")


def test_sts_outage_fault(server, faults):
    faults.set_faults(sts_outage=True)
    err = sts_error(assume_role_raw, server)
    assert err.get_http_status() == 503
    assert err.get_error_code() == "ServiceUnavailable"
    faults.clear_faults()
    assert assume_role(server).access_key_id.startswith("STS.")


def test_sts_counted_in_stats(server, admin):
    before = admin.stats()["sts"].get("AssumeRole", 0)
    assume_role(server)
    assume_role(server)
    after = admin.stats()["sts"].get("AssumeRole", 0)
    assert after - before == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # get_response: the SDK's raw-answer call
def test_xml_format(server):
    """Format=XML (the RPC default when Format is absent is XML too): <AssumeRoleResponse>."""
    import xml.etree.ElementTree as ET

    from aliyunsdksts.request.v20150401.AssumeRoleRequest import AssumeRoleRequest

    req = sts_request(server, AssumeRoleRequest())
    req.set_RoleArn(ROLE_FULL)
    req.set_RoleSessionName("xml-format")
    req.set_DurationSeconds(900)
    req.set_accept_format("XML")
    status, _headers, body = sts_client(server).get_response(req)
    assert status == 200, body
    root = ET.fromstring(body)
    assert root.tag == "AssumeRoleResponse"
    assert root.findtext("Credentials/AccessKeyId", "").startswith("STS.")
    assert root.findtext("Credentials/SecurityToken")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", root.findtext("Credentials/Expiration", ""))

    # Errors in XML too.
    req.set_RoleSessionName("x")
    status, _headers, body = sts_client(server).get_response(req)
    assert status == 400
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert root.findtext("Code") == "InvalidParameter.RoleSessionName"


@pytest.mark.parametrize("secret,expected", [(USER_SK, None), ("wrong-secret", "InvalidAccessKeySecret")])
def test_assume_role_with_get(server, secret, expected):
    """GET with every parameter in the query (the credentials SDKs' shape); the method is signed."""
    from aliyunsdksts.request.v20150401.AssumeRoleRequest import AssumeRoleRequest

    req = sts_request(server, AssumeRoleRequest())
    req.set_method("GET")
    req.set_RoleArn(ROLE_FULL)
    req.set_RoleSessionName("get-method")
    client = sts_client(server, USER_AK, secret)
    if expected is None:
        answer = json.loads(client.do_action_with_exception(req))
        assert answer["Credentials"]["AccessKeyId"].startswith("STS.")
    else:
        err = sts_error(client.do_action_with_exception, req)
        assert err.get_error_code() == expected, err.get_error_msg()
