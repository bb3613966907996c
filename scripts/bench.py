#!/usr/bin/env python3
"""Benchmark suite of ossmount against osslocal, side by side with plain HTTP (curl) and, when
available, s3fs and rclone mounts of the same server. Prints a markdown table (medians of
several runs, ratios to curl) and writes JSON to target/bench/.

Workloads:
  a  sequential read of a large file, cold (fresh mount, dropped page cache) and warm (re-read)
  b  sequential write of a large file (dd bs=1M conv=fsync)
  c  random 4 KiB reads over the large file for a fixed time (fio): IOPS, p50, p99
  d  4 parallel readers of 4 different files
  e  create/write/close many 16 KiB files, then read them back
  f  ls -l and find over 10,000 files
  g  peak RSS of each filesystem process during each workload

Also, as context for the read rows, the FUSE ceiling of the machine: the same sequential and
parallel reads through examples/nullfs.rs, a filesystem that answers every read from 64 MiB of
memory with ossmount's kernel settings (no HTTP, no cache logic).

Run through scripts/bench.sh, which installs what is missing and builds release binaries.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
OSSLOCAL = TARGET / "release" / "osslocal"
OSSMOUNT = TARGET / "release" / "ossmount"
NULLFS = TARGET / "release" / "examples" / "nullfs"
BUCKET = "bench-bucket"
AK, SK = "LTAI5tBenchAccessKey", "BenchSecret0123456789abcdef"
MIB = 1 << 20


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, capture_output=True, text=True, **kw)


def drop_caches():
    subprocess.run("sync; echo 3 > /proc/sys/vm/drop_caches", shell=True)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == path for line in f)


def unmount(path):
    for cmd in (["fusermount3", "-u", path], ["umount", path], ["umount", "-l", path]):
        if not is_mounted(path):
            return
        subprocess.run(cmd, capture_output=True)
        for _ in range(100):
            if not is_mounted(path):
                return
            time.sleep(0.05)


class Server:
    def __init__(self, work):
        self.data = work / "data"
        self.data.mkdir(parents=True)
        ready = work / "ready"
        self.proc = subprocess.Popen(
            [str(OSSLOCAL), "--listen", "127.0.0.1:0", "--data-dir", str(self.data), "--bucket", BUCKET,
             "--access-key", f"{AK}:{SK}", "--anonymous", "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=open(work / "osslocal.log", "wb"))
        for _ in range(400):
            if ready.exists() and ready.read_text().strip():
                break
            time.sleep(0.05)
        self.addr = ready.read_text().strip()
        self.url = f"http://{self.addr}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RssSampler:
    """Peak RSS (VmHWM) of a process over a workload; resets the high-water mark first."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        if self.pid:
            try:
                Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            except OSError:
                pass
        return self

    def __exit__(self, *a):
        self.peak_mib = None
        if self.pid:
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_mib = int(line.split()[1]) / 1024
            except OSError:
                pass


class Target:
    """A way to reach the bucket: a mount (ossmount, s3fs, rclone) or curl."""
    name = "?"
    pid = None

    def __init__(self, work, server):
        self.work = work
        self.server = server
        self.mnt = work / f"mnt-{self.name}"
        self.mnt.mkdir(exist_ok=True)

    def path(self, key):
        return self.mnt / key

    def unmount(self):
        unmount(str(self.mnt))

    def clear_cache(self):
        """Empty the client-side cache this target keeps between mounts (s3fs's use_cache,
        rclone's cache dir), so that "cold" means nothing is cached on the client."""
        for d in self.cache_dirs():
            shutil.rmtree(d, ignore_errors=True)

    def cache_dirs(self):
        return []


class OssMount(Target):
    name = "ossmount"

    def mount(self):
        env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK)
        sh([str(OSSMOUNT), BUCKET, str(self.mnt), "--endpoint", self.server.url, "--region", "cn-hangzhou",
            "--log-file", str(self.work / "ossmount.log"), "--log-level", "warn"], env=env)
        self.pid = int(sh(["pgrep", "-n", "-f", f"ossmount {BUCKET} {self.mnt}"]).stdout.split()[0])


class S3fsMount(Target):
    name = "s3fs"

    def mount(self):
        pw = self.work / "s3fs.passwd"
        pw.write_text(f"{AK}:{SK}\n")
        pw.chmod(0o600)
        # documented performance options: parallel multipart, bigger parts, stat cache
        sh(["s3fs", BUCKET, str(self.mnt), "-o", f"url={self.server.url},use_path_request_style,passwd_file={pw}",
            "-o", "parallel_count=16,multipart_size=8,max_stat_cache_size=100000,stat_cache_expire=60",
            "-o", f"use_cache={self.work / 's3fs-cache'},endpoint=cn-hangzhou,sigv4"])
        self.pid = int(sh(["pgrep", "-n", "-f", f"s3fs {BUCKET} {self.mnt}"]).stdout.split()[0])

    def cache_dirs(self):
        return [self.work / "s3fs-cache"]


class RcloneMount(Target):
    name = "rclone"

    def mount(self):
        conf = self.work / "rclone.conf"
        conf.write_text(f"[osslocal]\ntype = s3\nprovider = Other\naccess_key_id = {AK}\nsecret_access_key = {SK}\n"
                        f"endpoint = {self.server.url}\nforce_path_style = true\nregion = cn-hangzhou\n")
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        # documented performance options (larger chunks, more transfers, upload concurrency); VFS
        # cache off so that a write has reached the server when dd's fsync returns, as with the
        # other mounts (with --vfs-cache-mode writes rclone uploads after close, in the background)
        subprocess.Popen(["rclone", "--config", str(conf), "mount", f"osslocal:{BUCKET}", str(self.mnt),
                          "--vfs-cache-mode", "off", "--vfs-read-chunk-size", "16M", "--transfers", "16",
                          "--s3-upload-concurrency", "8", "--s3-chunk-size", "8M", "--dir-cache-time", "60s",
                          "--cache-dir", str(self.work / "rclone-cache")],
                         env=env, stdout=subprocess.DEVNULL, stderr=open(self.work / "rclone.log", "wb"))
        for _ in range(200):
            if is_mounted(str(self.mnt)):
                break
            time.sleep(0.05)
        self.pid = int(sh(["pgrep", "-n", "-f", f"rclone --config {conf}"]).stdout.split()[0])

    def cache_dirs(self):
        return [self.work / "rclone-cache"]


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def curl_get(url, out="/dev/null"):
    sh(["curl", "-sS", "-f", "-o", out, url])


def curl_put(url, path):
    sh(["curl", "-sS", "-f", "-X", "PUT", "-T", str(path), "-o", "/dev/null", url])


def dd_read(path):
    sh(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mib", type=int, default=2048)
    ap.add_argument("--par-mib", type=int, default=512)
    ap.add_argument("--small-files", type=int, default=2000)
    ap.add_argument("--list-files", type=int, default=10000)
    ap.add_argument("--fio-secs", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--targets", default="ossmount,s3fs,rclone")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ossmount-bench-"))
    server = Server(work)
    results = {"config": vars(args), "workloads": {}}
    targets = []
    try:
        # --- data set, written through curl (anonymous PUT) so every target reads the same objects
        src = work / "big.bin"
        sh(["dd", "if=/dev/urandom", f"of={src}", "bs=1M", f"count={args.big_mib}", "status=none"])
        base = f"{server.url}/{BUCKET}"
        curl_put(f"{base}/big.bin", src)
        for i in range(4):
            p = work / f"par{i}.bin"
            sh(["dd", "if=/dev/urandom", f"of={p}", "bs=1M", f"count={args.par_mib}", "status=none"])
            curl_put(f"{base}/par/{i}.bin", p)
        make_list_tree(base, args.list_files)

        # --- curl baselines
        curl = {"seq_read": [], "seq_write": [], "par_read": []}
        for _ in range(args.runs):
            drop_caches()
            curl["seq_read"].append(args.big_mib / timed(lambda: curl_get(f"{base}/big.bin")))
            curl["seq_write"].append(args.big_mib / timed(lambda: curl_put(f"{base}/curl-put.bin", src)))
            drop_caches()
            curl["par_read"].append(4 * args.par_mib / timed(lambda: parallel(
                [lambda i=i: curl_get(f"{base}/par/{i}.bin") for i in range(4)])))
        results["curl"] = {k: statistics.median(v) for k, v in curl.items()}
        results["fuse_ceiling"] = fuse_ceiling(work, args)

        wanted = args.targets.split(",")
        for cls in (OssMount, S3fsMount, RcloneMount):
            if cls.name not in wanted:
                continue
            if cls.name != "ossmount" and not shutil.which(cls.name):
                results["workloads"][cls.name] = {"unavailable": f"{cls.name} not installed"}
                continue
            t = cls(work, server)
            try:
                results["workloads"][t.name] = run_target(t, args, src, work)
            except Exception as e:  # a peer failing must not hide ossmount's numbers
                results["workloads"][t.name] = {"error": str(e)[:500]}
            finally:
                t.unmount()
    finally:
        for t in targets:
            t.unmount()
        server.stop()
    out_dir = TARGET / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2))
    print(render(results))
    shutil.rmtree(work, ignore_errors=True)


def fuse_ceiling(work, args):
    """Sequential and 4-parallel reads through examples/nullfs.rs (medians, MB/s)."""
    mnt = work / "mnt-null"
    mnt.mkdir(exist_ok=True)
    proc = subprocess.Popen([str(NULLFS), str(mnt), str(max(args.big_mib, args.par_mib))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out = {"seq_read": [], "par_read": []}
    try:
        for _ in range(100):
            if is_mounted(mnt):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("nullfs did not mount")
        for _ in range(args.runs):
            drop_caches()
            out["seq_read"].append(args.big_mib / timed(lambda: dd_read(mnt / "zero-0")))
            drop_caches()
            out["par_read"].append(4 * args.par_mib / timed(lambda: parallel(
                [lambda i=i: sh(["dd", f"if={mnt / f'zero-{i}'}", "of=/dev/null", "bs=1M",
                                 f"count={args.par_mib}", "status=none"]) for i in range(4)])))
    finally:
        unmount(str(mnt))
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {k: statistics.median(v) for k, v in out.items()}


def parallel(fns):
    ts = [threading.Thread(target=f) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def make_list_tree(base, n):
    # 10,000 small objects under list/ via curl's parallel mode would need a URL list; use a thread pool
    import concurrent.futures
    import urllib.request

    def put(i):
        req = urllib.request.Request(f"{base}/list/f{i:05}.txt", data=b"x" * (i % 100), method="PUT")
        urllib.request.urlopen(req, timeout=30).read()

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(put, range(n)))


def run_target(t, args, src, work):
    r = {"seq_read_cold": [], "seq_read_warm": [], "seq_write": [], "par_read": [], "small_write": [],
         "small_read": [], "ls_l": [], "find": [], "rss": {}}
    rss = r["rss"]

    def track(name, fn):
        with RssSampler(t.pid) as s:
            v = fn()
        if s.peak_mib is not None:
            rss[name] = max(rss.get(name, 0), s.peak_mib)
        return v

    for run in range(args.runs):
        t.clear_cache()
        drop_caches()
        t.mount()
        try:
            r["seq_read_cold"].append(track("seq_read", lambda: args.big_mib / timed(lambda: dd_read(t.path("big.bin")))))
            r["seq_read_warm"].append(track("seq_read", lambda: args.big_mib / timed(lambda: dd_read(t.path("big.bin")))))
            r["seq_write"].append(track("seq_write", lambda: args.big_mib / timed(lambda: sh(
                ["dd", f"if={src}", f"of={t.path(f'w-{run}.bin')}", "bs=1M", "conv=fsync", "status=none"]))))
            # Measured: remove it, so three targets × runs do not fill the disk.
            os.remove(t.path(f"w-{run}.bin"))
            drop_caches()
            r["par_read"].append(track("par_read", lambda: 4 * args.par_mib / timed(lambda: parallel(
                [lambda i=i: dd_read(t.path(f"par/{i}.bin")) for i in range(4)]))))
            d = t.path(f"small-{run}")
            r["small_write"].append(track("small_files", lambda: timed(lambda: sh(
                f"mkdir -p {d} && head -c 16384 /dev/urandom > {work}/s16k && "
                f"for i in $(seq 1 {args.small_files}); do cp {work}/s16k {d}/f$i; done"))))
            drop_caches()
            r["small_read"].append(track("small_files", lambda: timed(lambda: sh(f"cat {d}/* > /dev/null"))))
            r["ls_l"].append(track("listing", lambda: timed(lambda: sh(f"ls -l {t.path('list')} > /dev/null"))))
            r["find"].append(track("listing", lambda: timed(lambda: sh(f"find {t.path('list')} > /dev/null"))))
        finally:
            t.unmount()
    # fio random reads once (long), from an empty client cache like the cold reads
    t.clear_cache()
    drop_caches()
    t.mount()
    try:
        r["fio"] = track("random_read", lambda: fio_random(t.path("big.bin"), args.fio_secs))
    finally:
        t.unmount()
    out = {k: statistics.median(v) for k, v in r.items() if isinstance(v, list) and v}
    out["fio"] = r["fio"]
    out["rss_peak_mib"] = rss
    return out


def fio_random(path, secs):
    if not shutil.which("fio"):
        return {"unavailable": "fio not installed"}
    res = sh(["fio", "--name=rand", f"--filename={path}", "--rw=randread", "--bs=4k", "--direct=0",
              "--ioengine=psync", f"--runtime={secs}", "--time_based", "--readonly", "--invalidate=1",
              "--output-format=json"])
    job = json.loads(res.stdout)["jobs"][0]["read"]
    pct = job.get("clat_ns", {}).get("percentile", {})
    return {"iops": job["iops"], "p50_ms": pct.get("50.000000", 0) / 1e6, "p99_ms": pct.get("99.000000", 0) / 1e6}


def render(res):
    c = res["curl"]
    lines = ["| workload | curl | " + " | ".join(res["workloads"]) + " |",
             "| --- | --- | " + " | ".join("---" for _ in res["workloads"]) + " |"]

    def row(label, key, base=None, unit="MB/s", lower_better=False):
        cells = []
        for name, w in res["workloads"].items():
            v = w.get(key) if isinstance(w, dict) else None
            if v is None:
                cells.append(w.get("unavailable") or w.get("error", "n/a")[:40] if isinstance(w, dict) else "n/a")
            elif base:
                cells.append(f"{v:.0f} {unit} ({v / base:.2f}×)")
            else:
                cells.append(f"{v:.2f} {unit}")
        lines.append(f"| {label} | {f'{base:.0f} {unit}' if base else '—'} | " + " | ".join(cells) + " |")

    row("seq read 2 GiB, cold", "seq_read_cold", c["seq_read"])
    row("seq read 2 GiB, warm", "seq_read_warm", c["seq_read"])
    row("seq write 2 GiB (conv=fsync)", "seq_write", c["seq_write"])
    row("4 parallel readers", "par_read", c["par_read"])
    row("2,000 × 16 KiB create+write+close", "small_write", unit="s")
    row("2,000 × 16 KiB read back", "small_read", unit="s")
    row("ls -l 10,000 files", "ls_l", unit="s")
    row("find 10,000 files", "find", unit="s")
    fio_cells = []
    rss_cells = []
    for name, w in res["workloads"].items():
        f = w.get("fio") if isinstance(w, dict) else None
        fio_cells.append(f"{f['iops']:.0f} IOPS, p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms"
                         if isinstance(f, dict) and "iops" in f else "n/a")
        r = w.get("rss_peak_mib") if isinstance(w, dict) else None
        rss_cells.append(f"{max(r.values()):.0f} MiB" if r else "n/a")
    lines.append("| random 4 KiB reads (fio) | — | " + " | ".join(fio_cells) + " |")
    lines.append("| peak RSS (max over workloads) | — | " + " | ".join(rss_cells) + " |")
    ceiling = res.get("fuse_ceiling")
    if ceiling:
        parts = []
        for key, label in (("seq_read", "sequential read"), ("par_read", "4 parallel readers")):
            own = res["workloads"].get("ossmount", {})
            cold = own.get("seq_read_cold" if key == "seq_read" else key) if isinstance(own, dict) else None
            share = f", ossmount cold at {cold / ceiling[key]:.0%} of it" if cold else ""
            parts.append(f"{label} {ceiling[key]:.0f} MB/s ({ceiling[key] / c[key]:.2f}× curl{share})")
        lines.append("")
        lines.append("FUSE ceiling (examples/nullfs.rs: answers from memory, no HTTP): " + "; ".join(parts) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench.py must run as root (drops the page cache, mounts)")
    main()
