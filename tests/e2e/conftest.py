"""Fixtures for the FUSE end-to-end tests: a real osslocal server and real ossmount mounts.

Everything started here is stopped in finalizers, and every mount is unmounted (lazily if it
must be) even when a test fails, so no stale mount is ever left behind.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
PROFILE = os.environ.get("OSSMOUNT_E2E_PROFILE", "release")
OSSLOCAL = TARGET / PROFILE / "osslocal"
OSSMOUNT = TARGET / PROFILE / "ossmount"

BUCKET = "e2e-bucket"
AK, SK = "LTAI5tE2eTestAccessKey", "E2eTestSecretKey0123456789abcdef"
ROLE = "acs:ram::1234567890123456:role/e2e-mount"
RO_ROLE = "acs:ram::1234567890123456:role/e2e-readonly"
NO_PUT_ROLE = "acs:ram::1234567890123456:role/e2e-noput"


def _require(path):
    if not path.exists():
        raise RuntimeError(f"{path} is missing: build it first (cargo build --release --workspace)")


class OssLocal:
    """A running osslocal with admin helpers."""

    def __init__(self, workdir, min_duration=5):
        _require(OSSLOCAL)
        self.workdir = Path(workdir)
        self.data = self.workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / "ready"
        policies = self.workdir / "policies"
        policies.mkdir(exist_ok=True)
        ro = policies / "ro.json"
        ro.write_text(json.dumps({"Version": "1", "Statement": [
            {"Effect": "Allow", "Action": ["oss:GetObject", "oss:ListObjects", "oss:GetSymlink",
                                           "oss:GetBucketInfo"], "Resource": "*"}]}))
        noput = policies / "noput.json"
        noput.write_text(json.dumps({"Version": "1", "Statement": [
            {"Effect": "Allow", "Action": "oss:*", "Resource": "*"},
            {"Effect": "Deny", "Action": ["oss:PutObject"], "Resource": "acs:oss:*:*:%s/deny-test/denied/?*" % BUCKET}]}))
        self.log = open(self.workdir / "osslocal.log", "wb")
        self.proc = subprocess.Popen(
            [str(OSSLOCAL), "--listen", "127.0.0.1:0", "--data-dir", str(self.data), "--bucket", BUCKET,
             "--access-key", f"{AK}:{SK}", "--role", ROLE, "--role", f"{RO_ROLE}=@{ro}",
             "--role", f"{NO_PUT_ROLE}=@{noput}", "--min-duration", str(min_duration),
             "--ready-file", str(ready)],
            stdout=subprocess.PIPE, stderr=self.log)
        deadline = time.time() + 20
        while not ready.exists() or not ready.read_text().strip():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("osslocal did not start; see osslocal.log")
            time.sleep(0.05)
        self.addr = ready.read_text().strip()
        self.url = f"http://{self.addr}"

    def admin(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        method = "GET" if body is None and path == "stats" else "POST"
        req = urllib.request.Request(f"{self.url}/_osslocal/{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
            return json.loads(text) if text.strip().startswith("{") else text

    def stats(self):
        return self.admin("stats")

    def reset_stats(self):
        self.admin("stats/reset", {})

    def faults(self, **kw):
        self.admin("faults", kw)

    def clear_faults(self):
        self.admin("faults/clear", {})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == path for line in f)


def force_unmount(path):
    for cmd in (["fusermount3", "-u", str(path)], ["umount", str(path)], ["fusermount3", "-u", "-z", str(path)],
                ["umount", "-l", str(path)]):
        if not is_mounted(path):
            return
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.1)


class Mount:
    """An ossmount daemon mounted on a temp dir."""

    def __init__(self, server, workdir, prefix="", extra=(), env=None, role=ROLE, duration=None, name="mnt"):
        _require(OSSMOUNT)
        self.server = server
        self.prefix = prefix
        self.path = Path(workdir) / name
        self.path.mkdir(parents=True, exist_ok=True)
        self.logfile = Path(workdir) / f"{name}.log"
        args = [str(OSSMOUNT), f"{BUCKET}/{prefix}" if prefix else BUCKET, str(self.path),
                "--endpoint", server.url, "--sts-endpoint", server.url, "--region", "cn-hangzhou",
                "--log-file", str(self.logfile), "--log-level", "debug"]
        if role:
            args += ["--role-arn", role]
        if duration:
            args += ["--duration", str(duration)]
        args += list(extra)
        full_env = dict(os.environ)
        full_env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": AK, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SK,
                         "OSSMOUNT_ALLOW_SHORT_DURATION": "1"})
        for k in ("ALIBABA_CLOUD_SECURITY_TOKEN", "OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET"):
            full_env.pop(k, None)
        if env:
            full_env.update(env)
        self.result = subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=60)
        if self.result.returncode != 0:
            raise RuntimeError(f"ossmount failed ({self.result.returncode}): {self.result.stderr}")
        if not is_mounted(self.path):
            raise RuntimeError("ossmount exited 0 but nothing is mounted")

    def log_text(self):
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def unmount(self):
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True)
            deadline = time.time() + 30
            while is_mounted(self.path) and time.time() < deadline:
                time.sleep(0.1)
        force_unmount(self.path)


@pytest.fixture(scope="session")
def workroot():
    d = tempfile.mkdtemp(prefix="ossmount-e2e-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def server(workroot):
    s = OssLocal(workroot / "server")
    yield s
    s.stop()


@pytest.fixture
def make_mount(server, workroot, request):
    """Factory: make_mount(prefix=..., extra=[...]) -> Mount; all unmounted at teardown."""
    mounts = []
    counter = [0]

    def factory(prefix="", extra=(), **kw):
        counter[0] += 1
        name = f"{request.node.name[:40]}-{counter[0]}".replace("[", "_").replace("]", "_")
        m = Mount(server, workroot / "mounts", prefix=prefix, extra=extra, name=name, **kw)
        mounts.append(m)
        return m

    yield factory
    for m in mounts:
        m.unmount()


@pytest.fixture
def mnt(make_mount, request):
    """A fresh mount of a prefix unique to the test."""
    prefix = "t-" + request.node.name.replace("[", "_").replace("]", "_")[:60] + "/"
    return make_mount(prefix=prefix)
