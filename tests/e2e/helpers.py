"""Small helpers shared by the end-to-end tests."""
import hashlib
import os
import random
import subprocess
from pathlib import Path


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def tree_digest(root):
    """{relative path: ('d', None) | ('f', sha256) | ('l', target)} for everything under root."""
    out = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath) / d
            rel = str(p.relative_to(root))
            out[rel] = ("l", os.readlink(p)) if p.is_symlink() else ("d", None)
        for f in filenames:
            p = Path(dirpath) / f
            rel = str(p.relative_to(root))
            out[rel] = ("l", os.readlink(p)) if p.is_symlink() else ("f", sha256(p))
    return out


def write_random(path, size, seed=None):
    rnd = random.Random(seed if seed is not None else size)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(rnd.randbytes(n))
            left -= n


def make_tree(root, seed=1):
    """A tree with empty, small, block-straddling and multipart-sized files, nested dirs, odd names."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = {"empty": 0, "one": 1, "page": 4096, "mib_plus": (1 << 20) + 1, "nine_mib": 9 * (1 << 20) + 123}
    for name, size in sizes.items():
        write_random(root / f"{name}.bin", size, seed + size)
    (root / "sub" / "deeper" / "deepest").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    for i in range(20):
        write_random(root / "sub" / f"file-{i:02}.txt", 100 + i * 37, seed + i)
    write_random(root / "sub" / "deeper" / "deepest" / "leaf", 5000, seed)
    (root / "sub" / "space name + plus & ünïcödé.txt").write_text("odd name\n")
    return root


def run(cmd, **kw):
    """Run a command (list or shell string); raise with its output on failure."""
    shell = isinstance(cmd, str)
    r = subprocess.run(cmd, shell=shell, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{cmd!r} failed ({r.returncode}):\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r.stdout
