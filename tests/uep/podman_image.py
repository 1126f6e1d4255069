"""A worker image for podman, built offline and cached by its inputs (RECIPES.md, worker containers).

The image is the systemd tests' cached Debian bookworm rootfs (its python3.11 is the venv's
interpreter) imported with ``podman import``; the worker needs nothing else in it, since the
tests bind-mount the project and its venv read-only at their own paths. It lives in a podman
store of its own under the test cache, named by the hash of its inputs (the rootfs tarball's
stamp, size and time, and this recipe), so a changed rootfs makes a new image and the
machine's own podman store is never touched. Rootful podman here needs runc (crun refuses
hybrid cgroups), cgroupfs, and open-file limits within root's hard limit: a containers.conf
of the store's says so, and CONTAINERS_CONF / CONTAINERS_STORAGE_CONF point podman at both.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.systemd.container import CACHE, MirrorUnreachable, ensure_rootfs

RECIPE = "podman import of the bookworm rootfs, v1"


@dataclass(frozen=True)
class PodmanStore:
    image: str
    env: dict[str, str]  # CONTAINERS_CONF and CONTAINERS_STORAGE_CONF

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=120, check=check)

    def containers(self) -> list[str]:
        """Every container of the store, running or not (names)."""
        out = self.podman("ps", "-a", "--format", "{{.Names}}").stdout
        return out.split()

    def remove_all(self) -> None:
        self.podman("rm", "-af", check=False)


def _write_confs(store: Path, runroot: Path) -> dict[str, str]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if hard == resource.RLIM_INFINITY else hard
    (store / "containers.conf").write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n')
    (store / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{store / "graph"}"\nrunroot = "{runroot}"\n')
    return {"CONTAINERS_CONF": str(store / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(store / "storage.conf")}


def worker_image() -> PodmanStore:
    """The cached store and image; skips when this host cannot build or run it."""
    if os.geteuid() != 0:
        pytest.skip("the podman tests run rootful podman: run as root")
    missing = [t for t in ("podman", "runc", "zstd") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: apt-get install -y podman runc zstd (make test does it)")
    try:
        tarball = ensure_rootfs()
    except MirrorUnreachable as e:
        pytest.skip(f"no rootfs to make the worker image of: {e}")
    stamp = tarball.with_name("bookworm-rootfs.packages")
    st = tarball.stat()
    key = hashlib.sha256(f"{RECIPE}\n{stamp.read_text()}\n{st.st_size}\n{st.st_mtime_ns}".encode()).hexdigest()[:16]
    store = CACHE / f"podman-worker-{key}"
    runroot = Path("/run/gce-tests-podman") / key  # podman's run state belongs on a tmpfs
    image = f"localhost/gce-worker:{key}"
    store.mkdir(parents=True, exist_ok=True)
    runroot.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".podman.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ps = PodmanStore(image, _write_confs(store, runroot))
        if ps.podman("image", "exists", image, check=False).returncode != 0:
            with subprocess.Popen(["zstd", "-dc", str(tarball)], stdout=subprocess.PIPE) as unpack:
                made = subprocess.run(["podman", "import", "-", image], stdin=unpack.stdout,
                                      env={**os.environ, **ps.env}, capture_output=True, text=True, timeout=600)
            if made.returncode != 0:
                pytest.fail(f"podman import of {tarball} failed:\n{made.stderr[-2000:]}", pytrace=False)
    return ps
