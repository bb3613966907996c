"""Fixtures for the SDK interop suite: one osslocal per session, driven by the official SDKs.

The server binary comes from ``$OSSLOCAL_BIN`` (set by ``scripts/interop.sh``), else from the
cargo target directory (``$CARGO_TARGET_DIR`` or ``<repo>/target``, release before debug).
If it cannot be found or does not start, every test fails loudly: nothing is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

BUCKET = "interop-bucket"
OTHER_BUCKET = "interop-other"
MISSING_BUCKET = "interop-no-such-bucket"
REGION = "cn-hangzhou"
ACCOUNT_ID = "1234567890123456"

# RAM user known to osslocal (passed with --access-key).
USER_AK = "LTAI5tInteropUser0001"
USER_SK = "interopUserSecret0123456789abcdef"

ROLE_FULL = f"acs:ram::{ACCOUNT_ID}:role/interop-full"
ROLE_READONLY = f"acs:ram::{ACCOUNT_ID}:role/interop-readonly"
READONLY_PREFIX = "public/"
READONLY_POLICY = {
    "Version": "1",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["oss:GetObject"],
            "Resource": [f"acs:oss:*:*:{BUCKET}/{READONLY_PREFIX}*"],
        }
    ],
}

MIN_DURATION_SECS = 5
SERVER_START_TIMEOUT_SECS = 30.0
SERVER_STOP_TIMEOUT_SECS = 5.0
ADMIN_TIMEOUT_SECS = 10.0

# The key every SDK must carry through unchanged (spaces, reserved and unicode characters).
SPECIAL_KEY = "目录/文件 名+&=?#~!*'().txt"


def _find_binary() -> Path:
    explicit = os.environ.get("OSSLOCAL_BIN")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            pytest.fail(f"OSSLOCAL_BIN={explicit} does not exist; build osslocal first")
        return path
    target = Path(os.environ.get("CARGO_TARGET_DIR") or (REPO_ROOT / "target"))
    for profile in ("release", "debug"):
        candidate = target / profile / "osslocal"
        if candidate.is_file():
            return candidate
    pytest.fail(
        f"osslocal binary not found under {target}/{{release,debug}}; "
        "run scripts/interop.sh (it builds it) or set OSSLOCAL_BIN"
    )


@dataclass
class Server:
    """A running osslocal and what the tests need to talk to it."""

    address: str  # "127.0.0.1:PORT"
    proc: subprocess.Popen
    data_dir: Path
    log_dir: Path
    stdout_first_line: str

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}"

    @property
    def host(self) -> str:
        return self.address.split(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stderr_tail(self, limit: int = 4000) -> str:
        try:
            return (self.log_dir / "stderr.log").read_text(errors="replace")[-limit:]
        except OSError as err:
            return f"<no stderr: {err}>"


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM osslocal if pytest itself dies (Linux prctl)."""
    try:
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _read_first_line(path: Path) -> str:
    try:
        with path.open("r", errors="replace") as f:
            return f.readline().strip()
    except OSError:
        return ""


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    binary = _find_binary()
    base = tmp_path_factory.mktemp("osslocal")
    data_dir = base / "data"
    data_dir.mkdir()
    log_dir = base / "logs"
    log_dir.mkdir()
    ready_file = base / "ready"
    policy_file = base / "readonly-policy.json"
    policy_file.write_text(json.dumps(READONLY_POLICY))

    args = [
        str(binary),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        "--bucket",
        BUCKET,
        "--bucket",
        OTHER_BUCKET,
        "--region",
        REGION,
        "--access-key",
        f"{USER_AK}:{USER_SK}",
        "--role",
        ROLE_FULL,
        "--role",
        f"{ROLE_READONLY}=@{policy_file}",
        "--min-duration",
        str(MIN_DURATION_SECS),
        "--ready-file",
        str(ready_file),
    ]
    stdout = (log_dir / "stdout.log").open("wb")
    stderr = (log_dir / "stderr.log").open("wb")
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    proc = subprocess.Popen(
        args,
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env=env,
        preexec_fn=_die_with_parent,
    )
    stdout.close()
    stderr.close()

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=SERVER_STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECS
        address = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if ready_file.exists():
                address = ready_file.read_text().strip()
                if address:
                    break
            time.sleep(0.05)
        if not address:
            err = (log_dir / "stderr.log").read_text(errors="replace")[-4000:]
            pytest.fail(
                f"osslocal did not become ready within {SERVER_START_TIMEOUT_SECS}s "
                f"(exit code {proc.poll()}); args: {' '.join(args[1:])}\nstderr:\n{err}"
            )
        srv = Server(
            address=address,
            proc=proc,
            data_dir=data_dir,
            log_dir=log_dir,
            stdout_first_line=_read_first_line(log_dir / "stdout.log"),
        )
        yield srv
    finally:
        stop()
        if os.environ.get("INTEROP_KEEP_LOGS"):
            keep = Path(os.environ["INTEROP_KEEP_LOGS"])
            keep.mkdir(parents=True, exist_ok=True)
            for name in ("stdout.log", "stderr.log"):
                src = log_dir / name
                if src.exists():
                    shutil.copy(src, keep / name)


# --------------------------------------------------------------------------------------
# Admin API


class Admin:
    """Client for osslocal's /_osslocal/ admin endpoints (urllib only, no SDK)."""

    def __init__(self, server: Server):
        self.base = f"{server.endpoint}/_osslocal"

    def _call(self, method: str, path: str, body: Optional[dict] = None):
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif method == "POST":
            data = b""
        req = urllib.request.Request(f"{self.base}/{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=ADMIN_TIMEOUT_SECS) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raise AssertionError(f"admin {method} /_osslocal/{path} answered {err.code}: {err.read()[:500]!r}") from err
        assert 200 <= status < 300, f"admin {method} {path} answered {status}"
        if raw.strip():
            try:
                return json.loads(raw)
            except ValueError:
                return raw
        return None

    def stats(self) -> dict:
        stats = self._call("GET", "stats")
        assert isinstance(stats, dict), f"stats is not a JSON object: {stats!r}"
        return stats

    def reset_stats(self) -> None:
        self._call("POST", "stats/reset")

    def set_faults(self, **faults) -> None:
        self._call("POST", "faults", faults)

    def clear_faults(self) -> None:
        self._call("POST", "faults/clear")


@pytest.fixture(scope="session")
def admin(server) -> Admin:
    return Admin(server)


@pytest.fixture
def faults(admin):
    """Admin client whose faults are always cleared when the test ends (even on failure)."""
    admin.clear_faults()
    try:
        yield admin
    finally:
        admin.clear_faults()


# --------------------------------------------------------------------------------------
# Credentials and STS (through aliyun-python-sdk-core, the official RPC SDK)


@dataclass
class Creds:
    access_key_id: str
    access_key_secret: str
    security_token: Optional[str] = None
    expiration: Optional[str] = None

    def __repr__(self) -> str:  # keep secrets out of pytest output
        kind = "sts" if self.security_token else "ak"
        return f"Creds({kind}, {self.access_key_id[:8]}...)"


USER_CREDS = Creds(USER_AK, USER_SK)


def sts_client(server: Server, ak: str = USER_AK, sk: str = USER_SK, token: Optional[str] = None):
    from aliyunsdkcore.client import AcsClient

    if token:
        from aliyunsdkcore.auth.credentials import StsTokenCredential

        return AcsClient(
            region_id=REGION,
            credential=StsTokenCredential(ak, sk, token),
            auto_retry=False,
            timeout=10,
            connect_timeout=5,
        )
    return AcsClient(ak, sk, REGION, auto_retry=False, timeout=10, connect_timeout=5)


def sts_request(server: Server, request):
    """Point an aliyunsdksts request at osslocal (plain HTTP, explicit endpoint)."""
    request.set_endpoint(server.address)
    request.set_protocol_type("http")
    request.set_accept_format("JSON")
    return request


def assume_role_raw(
    server: Server,
    role_arn: str = ROLE_FULL,
    session_name: str = "interop-session",
    duration: Optional[int] = 900,
    policy: Optional[str] = None,
    ak: str = USER_AK,
    sk: str = USER_SK,
    token: Optional[str] = None,
) -> dict:
    """AssumeRole through aliyun-python-sdk-core + aliyun-python-sdk-sts; returns the JSON answer."""
    from aliyunsdksts.request.v20150401.AssumeRoleRequest import AssumeRoleRequest

    req = sts_request(server, AssumeRoleRequest())
    req.set_RoleArn(role_arn)
    req.set_RoleSessionName(session_name)
    if duration is not None:
        req.set_DurationSeconds(duration)
    if policy is not None:
        req.set_Policy(policy)
    body = sts_client(server, ak, sk, token).do_action_with_exception(req)
    return json.loads(body)


def assume_role(server: Server, **kwargs) -> Creds:
    answer = assume_role_raw(server, **kwargs)
    c = answer["Credentials"]
    return Creds(c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"], c["Expiration"])


@pytest.fixture
def sts_creds(server) -> Creds:
    """Fresh credentials for the unrestricted role (function scope: some tests expire tokens)."""
    return assume_role(server, session_name=f"interop-{uuid.uuid4().hex[:12]}")


# --------------------------------------------------------------------------------------
# SDK clients


def oss2_bucket(server: Server, creds: Creds, version: str, bucket: str = BUCKET):
    """An oss2.Bucket signing with V1 (`v1`) or V4 (`v4`), AK/SK or STS."""
    import oss2

    if version == "v1":
        if creds.security_token:
            auth = oss2.StsAuth(creds.access_key_id, creds.access_key_secret, creds.security_token)
        else:
            auth = oss2.Auth(creds.access_key_id, creds.access_key_secret)
        return oss2.Bucket(auth, server.endpoint, bucket, connect_timeout=10)
    if version == "v4":
        if creds.security_token:
            provider = oss2.credentials.StaticCredentialsProvider(
                creds.access_key_id, creds.access_key_secret, creds.security_token
            )
            auth = oss2.ProviderAuthV4(provider)
        else:
            auth = oss2.AuthV4(creds.access_key_id, creds.access_key_secret)
        return oss2.Bucket(auth, server.endpoint, bucket, region=REGION, connect_timeout=10)
    raise ValueError(version)


def v2_client(server: Server, creds: Creds, version: str = "v4", retry_max_attempts: Optional[int] = None):
    """An alibabacloud_oss_v2.Client (V4 by default, V1 via signature_version), path style."""
    import alibabacloud_oss_v2 as oss

    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(
        creds.access_key_id, creds.access_key_secret, creds.security_token
    )
    cfg.region = REGION
    cfg.endpoint = server.endpoint
    cfg.use_path_style = True
    cfg.signature_version = version
    cfg.connect_timeout = 10
    cfg.readwrite_timeout = 20
    if retry_max_attempts is not None:
        cfg.retry_max_attempts = retry_max_attempts
    return oss.Client(cfg)


# oss2: both signature versions, with the RAM user's keys and with an STS token from the SDK.
OSS2_VARIANTS = ["v1-ak", "v4-ak", "v1-sts", "v4-sts"]
# alibabacloud-oss-v2: V4 (its default) and V1, AK and STS. V1+STS is excluded: that SDK sends
# the token in a non-x-oss header outside the signature (PROTOCOL.md §9.1), see test_auth.py.
V2_VARIANTS = ["v4-ak", "v1-ak", "v4-sts"]


def _creds_for(server: Server, variant: str) -> Creds:
    if variant.endswith("-sts"):
        return assume_role(server, session_name=f"interop-{uuid.uuid4().hex[:12]}")
    return USER_CREDS


@pytest.fixture(params=OSS2_VARIANTS)
def ob(request, server):
    """oss2.Bucket for each auth variant."""
    version = request.param.split("-")[0]
    return oss2_bucket(server, _creds_for(server, request.param), version)


@pytest.fixture(params=V2_VARIANTS)
def v2(request, server):
    """alibabacloud_oss_v2.Client for each auth variant."""
    version = request.param.split("-")[0]
    return v2_client(server, _creds_for(server, request.param), version)


@pytest.fixture
def prefix() -> str:
    """A key prefix unique to the test, so tests never see each other's objects."""
    return f"t-{uuid.uuid4().hex[:10]}/"


# --------------------------------------------------------------------------------------
# Helpers


def crc64(data: bytes, init: int = 0) -> int:
    """CRC-64/XZ as the SDKs compute it (oss2.utils.Crc64)."""
    import oss2

    c = oss2.utils.Crc64(init)
    c.update(data)
    return c.crc


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes."""
    import hashlib

    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def oss2_error(fn, *args, **kwargs):
    """Run an oss2 call that must fail with a service error; return the exception."""
    import oss2

    with pytest.raises(oss2.exceptions.OssError) as info:
        fn(*args, **kwargs)
    return info.value


def v2_error(fn, *args, **kwargs):
    """Run an alibabacloud-oss-v2 call that must fail with a ServiceError; return it."""
    import alibabacloud_oss_v2 as oss

    with pytest.raises(oss.exceptions.OperationError) as info:
        fn(*args, **kwargs)
    err = info.value.unwrap()
    assert isinstance(err, oss.exceptions.ServiceError), f"not a service error: {err!r}"
    return err


def sts_error(fn, *args, **kwargs):
    """Run an aliyun-python-sdk-core call that must fail with a ServerException; return it."""
    from aliyunsdkcore.acs_exception.exceptions import ServerException

    with pytest.raises(ServerException) as info:
        fn(*args, **kwargs)
    return info.value


def temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="interop-"))
