"""gce's .deb and .rpm for the tests, built once per content of what goes into them.

A build takes a minute or more (a venv, pystemd compiled, the package packed), so each built
file is kept under ``${GCE_TEST_CACHE:-/var/cache/gce-tests}/packages/<sha256>/``, where the hash
covers the tracked files of gce/, packaging/, man/, pyproject.toml and README.md as they are in
the work tree (uncommitted edits included), the kind, the version and the build date. One builder
at a time: two test runs (or two engineers) never build into the same directory at once.

The locked dependencies' wheels (pystemd compiled from its sdist) are kept too, under the hash of
both locks, the interpreter and libsystemd (``packaging/build-venv.sh``'s GCE_WHEEL_CACHE), so only
the first build of a run fetches and compiles them. The reproducibility test's second build takes
nothing from either cache.

The build date (SOURCE_DATE_EPOCH) is the time of the last commit that touched those inputs, so
an unrelated commit does not invalidate the cache, and a fresh build of the same inputs gives the
same bytes as the cached one (what the reproducibility test compares).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import gce

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("GCE_TEST_CACHE", "/var/cache/gce-tests")) / "packages"
WHEELS = CACHE.parent / "package-wheels"  # packaging/build-venv.sh's GCE_WHEEL_CACHE
INPUTS = ("gce", "packaging", "man", "pyproject.toml", "README.md")
BUILDERS = {"deb": "packaging/deb/build.sh", "rpm": "packaging/rpm/build.sh"}
TIMEOUT = 900
KEEP_DAYS = 2  # a package no test asked for in this long is removed (each is ~20 MB)


class BuildFailed(RuntimeError):
    pass


def version_b() -> str:
    """The upgrade's second version: the same tree, sorting after gce.__version__ for dpkg and rpm."""
    return f"{gce.__version__}.post1"


def source_date_epoch() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct", "--", *INPUTS],
                         capture_output=True, text=True, check=True).stdout.strip()
    return out or "0"


def inputs_hash(kind: str, version: str, epoch: str) -> str:
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--", *INPUTS],
                           capture_output=True, check=True).stdout.decode().split("\0")
    h = hashlib.sha256(f"{kind}\0{version}\0{epoch}\0".encode())
    for name in sorted(f for f in files if f):
        path = ROOT / name
        if path.is_symlink() or not path.is_file():
            h.update(f"{name}\0-\0".encode())  # deleted in the work tree, or a link: its name says enough
            continue
        mode = "x" if os.access(path, os.X_OK) else "-"
        h.update(f"{name}\0{mode}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def inputs_key(kind: str, version: str) -> str:
    """The cache slot's name for this tree as it is now."""
    return inputs_hash(kind, version, source_date_epoch())


def build(kind: str, version: str, outdir: Path, epoch: str | None = None, wheels: bool = False) -> Path:
    """Build into OUTDIR and return the package's path: wholly afresh, or with WHEELS, taking the
    locked dependencies' wheels (pystemd's compiled) from the cache of the locks' hash."""
    env = dict(os.environ, SOURCE_DATE_EPOCH=epoch or source_date_epoch())
    env.pop("GCE_WHEEL_CACHE", None)
    if wheels:
        env["GCE_WHEEL_CACHE"] = str(WHEELS)
    proc = subprocess.run(["bash", str(ROOT / BUILDERS[kind]), version, str(outdir)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    out = proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        raise BuildFailed(f"{BUILDERS[kind]} {version} failed (exit {proc.returncode}):\n{out[-3000:]}")
    return Path(lines[-1])


def prune(keep: Path) -> None:
    """Remove the packages of inputs that no test has asked for in KEEP_DAYS (the lock is held)."""
    cutoff = time.time() - KEEP_DAYS * 86400
    for old in CACHE.iterdir():
        if old.is_dir() and old != keep and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)


def package(kind: str, version: str | None = None) -> Path:
    """The KIND package (deb or rpm) of this tree at VERSION (default gce.__version__), from the
    cache when its inputs were built before."""
    version = version or gce.__version__
    epoch = source_date_epoch()
    slot = CACHE / inputs_hash(kind, version, epoch)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prune(keep=slot)
        if (slot / ".built").is_file():  # written last: the name of the finished package
            os.utime(slot)
            return slot / (slot / ".built").read_text()
        partial = CACHE / f"{slot.name}.{os.getpid()}.part"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            built = build(kind, version, partial, epoch, wheels=True)
            (partial / ".built").write_text(built.relative_to(partial).as_posix())
            shutil.rmtree(slot, ignore_errors=True)
            partial.rename(slot)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return slot / built.name
