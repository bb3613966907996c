"""Long mounts survive credentials: tokens that live seconds are refreshed in the background
before they expire, so no operation fails and OSS never sees an expired token. Bad
credential configuration stops the mount before anything is mounted."""
import os
import subprocess
import threading
import time

import pytest

from conftest import OSSMOUNT, BUCKET, AK, SK, is_mounted
from helpers import sha256, write_random

SOAK_SECS = int(os.environ.get("OSSMOUNT_E2E_SOAK_SECS", "60"))
TOKEN_SECS = int(os.environ.get("OSSMOUNT_E2E_TOKEN_SECS", "20"))


def test_short_tokens_with_cp_and_dd_running(server, make_mount, tmp_path):
    m = make_mount(prefix="soak/", duration=TOKEN_SECS)
    src = tmp_path / "payload"
    write_random(src, 3 << 20, 7)
    digest = sha256(src)
    server.reset_stats()
    failures = []
    done = time.time() + SOAK_SECS

    def cp_loop(i):
        n = 0
        while time.time() < done:
            dst = m.path / f"cp-{i}-{n % 3}"
            r = subprocess.run(["cp", str(src), str(dst)], capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(("cp", r.stderr))
            elif sha256(dst) != digest:
                failures.append(("cp", "content mismatch"))
            n += 1

    def dd_loop():
        n = 0
        while time.time() < done:
            r = subprocess.run(["dd", "if=/dev/zero", f"of={m.path / f'dd-{n % 2}'}", "bs=1M", "count=4",
                                "conv=fsync", "status=none"], capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(("dd", r.stderr))
            r = subprocess.run(["ls", "-l", str(m.path)], capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(("ls", r.stderr))
            n += 1

    threads = [threading.Thread(target=cp_loop, args=(i,)) for i in range(2)] + [threading.Thread(target=dd_loop)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = server.stats()
    print(f"{SOAK_SECS} s with {TOKEN_SECS} s tokens: {len(failures)} failed operations, "
          f"{stats['sts']['AssumeRole']} AssumeRole, {stats['errors'].get('SecurityTokenExpired', 0)} SecurityTokenExpired, "
          f"{stats['requests']} requests")
    assert failures == []
    expected_refreshes = SOAK_SECS // TOKEN_SECS
    assert stats["sts"]["AssumeRole"] >= expected_refreshes, stats["sts"]
    assert stats["errors"].get("SecurityTokenExpired", 0) == 0, stats["errors"]
    assert "refresh" in m.log_text().lower()


def _mount_fails(server, tmp_path, extra, env=None, expect=None):
    mp = tmp_path / "mp"
    mp.mkdir(exist_ok=True)
    full_env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK)
    full_env.update(env or {})
    r = subprocess.run([str(OSSMOUNT), BUCKET, str(mp), "--endpoint", server.url, "--sts-endpoint", server.url, "--region", "cn-hangzhou"]
                       + extra, capture_output=True, text=True, timeout=90, env=full_env)
    assert r.returncode != 0, r
    assert not is_mounted(mp), "a failed mount left something mounted"
    msg = r.stderr.strip()
    assert len(msg.splitlines()) == 1, f"expected one line, got: {msg!r}"
    if expect:
        assert expect.lower() in msg.lower(), msg
    return msg


ROLE = "acs:ram::1234567890123456:role/e2e-mount"


def test_malformed_policy(server, tmp_path):
    _mount_fails(server, tmp_path, ["--role-arn", ROLE, "--policy", '{"Version": "1", "Statement": ['], expect="policy")


def test_bad_role_arn(server, tmp_path):
    _mount_fails(server, tmp_path, ["--role-arn", "arn:aws:iam::1:role/x"], expect="arn")


def test_out_of_range_duration(server, tmp_path):
    _mount_fails(server, tmp_path, ["--role-arn", ROLE, "--duration", "100000"], expect="duration")


def test_missing_oidc_token_file(server, tmp_path):
    env = {"ALIBABA_CLOUD_ROLE_ARN": ROLE, "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "acs:ram::1234567890123456:oidc-provider/p",
           "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(tmp_path / "nope")}
    clean = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""}
    env.update(clean)
    _mount_fails(server, tmp_path, [], env=env, expect="token")


def test_credential_process_printing_garbage(server, tmp_path):
    _mount_fails(server, tmp_path, ["--credential-process", "echo this is not json"], expect="credential")


def test_credential_process_hanging(server, tmp_path):
    t0 = time.time()
    _mount_fails(server, tmp_path, ["--credential-process", "sleep 600"], expect="credential")
    assert time.time() - t0 < 80


def test_wrong_secret(server, tmp_path):
    _mount_fails(server, tmp_path, [], env={"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "wrong"}, expect="Signature")


def test_missing_bucket(server, tmp_path):
    mp = tmp_path / "mp2"
    mp.mkdir()
    r = subprocess.run([str(OSSMOUNT), "no-such-bucket", str(mp), "--endpoint", server.url, "--region", "cn-hangzhou"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK))
    assert r.returncode != 0 and "no-such-bucket" in r.stderr and not is_mounted(mp)


def test_unreachable_endpoint(tmp_path):
    mp = tmp_path / "mp3"
    mp.mkdir()
    r = subprocess.run([str(OSSMOUNT), BUCKET, str(mp), "--endpoint", "http://127.0.0.1:9", "--region", "cn-hangzhou"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK))
    assert r.returncode != 0 and not is_mounted(mp)
    assert "127.0.0.1:9" in r.stderr


def test_sigterm_unmounts_cleanly(make_mount):
    m = make_mount(prefix="sig/")
    (m.path / "f").write_text("x")
    pids = subprocess.run(["pgrep", "-f", f"ossmount .* {m.path} "], capture_output=True, text=True).stdout.split()
    assert pids, "daemon not found"
    for p in pids:
        os.kill(int(p), 15)
    deadline = time.time() + 20
    while is_mounted(m.path) and time.time() < deadline:
        time.sleep(0.1)
    assert not is_mounted(m.path), m.log_text()[-3000:]


def test_check_prints_and_exits(server, tmp_path):
    r = subprocess.run([str(OSSMOUNT), BUCKET, str(tmp_path), "--endpoint", server.url, "--region", "cn-hangzhou", "--check"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK))
    assert r.returncode == 0, r.stderr
    assert BUCKET in r.stdout and "environment" in r.stdout.lower()
    assert not is_mounted(tmp_path)


def test_sts_outage_longer_than_token_life(server, make_mount, tmp_path):
    """STS down for twice the token lifetime: operations keep working while the token is
    valid, fail promptly once it expired, and work again within seconds after STS returns,
    with no remount."""
    life = 10
    m = make_mount(prefix="outage/", duration=life)
    src = tmp_path / "p"
    write_random(src, 64 << 10, 3)

    def op(i):
        t0 = time.time()
        r = subprocess.run(["cp", str(src), str(m.path / f"f{i}")], capture_output=True, text=True, timeout=60)
        return r.returncode == 0, time.time() - t0

    assert op(0)[0]
    server.faults(sts_outage=True)
    try:
        outcomes = []
        t_start = time.time()
        i = 1
        while time.time() - t_start < 2 * life:
            ok, took = op(i)
            outcomes.append((time.time() - t_start, ok, took))
            i += 1
            time.sleep(0.5)
        assert outcomes[0][1], "the first operation right after STS went down must still succeed"
        failed = [o for o in outcomes if not o[1]]
        assert failed, "the token outlived twice its lifetime?"
        assert max(o[2] for o in failed) < 10, f"failures were not prompt: {failed}"
    finally:
        server.clear_faults()
    t_back = time.time()
    while True:
        ok, _ = op(i)
        i += 1
        if ok:
            break
        assert time.time() - t_back < 10, "did not recover within seconds of STS returning"
        time.sleep(0.5)
    assert is_mounted(m.path)
