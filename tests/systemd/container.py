"""A Debian bookworm booted with systemd-nspawn: a real systemd for tests (RECIPES.md).

The rootfs is debootstrapped once and cached as a tarball outside the repository; each
`Machine` unpacks a throwaway copy (boots keep their writes, so a reboot keeps what was
enabled), boots it in a private mount namespace (the host's /run stays clean), shares the
host's network (the session broker on 127.0.0.1 is reachable) and sees the project and its
venv read-only at the same paths, so the gce under test is the one inside the container.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

CACHE = Path(os.environ.get("GCE_TEST_CACHE", "/var/cache/gce-tests"))
TARBALL = CACHE / "bookworm-rootfs.tar.zst"
# man-db, bash-completion, logrotate and rpm: the packaging tests install gce's .deb offline (its
# dependencies must already be here) and its .rpm with rpm -i, and use its manual and completion.
PACKAGES = ("systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,python3,python3-venv,python3.11,"
            "libsystemd0,procps,iproute2,man-db,bash-completion,logrotate,rpm")
TOOLS = ("debootstrap", "systemd-nspawn", "zstd", "unshare", "nsenter")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What debootstrap prints when the mirror cannot be reached (the one reason to skip).
_OFFLINE = re.compile(r"Failed getting release file|Temporary failure resolving|Could not resolve|"
                      r"Network is unreachable|Connection refused|Connection timed out")


class MirrorUnreachable(RuntimeError):
    pass


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]


def debian_mirror() -> str:
    """The machine's own Debian mirror (the URIs: line of its deb822 sources), else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for stanza in sources.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            if uris and re.search(r"^Suites:.*\bbookworm\b", stanza, re.M) and "security" not in uris.group(1):
                return uris.group(1)
    return "http://deb.debian.org/debian"


def ensure_rootfs() -> Path:
    """The cached rootfs tarball, built on first use (~70 s); one builder at a time."""
    stamp = CACHE / "bookworm-rootfs.packages"  # what the tarball was built with
    if TARBALL.exists() and stamp.exists() and stamp.read_text().strip() == PACKAGES:
        return TARBALL
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if TARBALL.exists() and stamp.exists() and stamp.read_text().strip() == PACKAGES:
            return TARBALL
        build = CACHE / f"build.{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        try:
            proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
                                   str(build / "rootfs"), debian_mirror()],
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                out = (proc.stdout + proc.stderr)[-3000:]
                if _OFFLINE.search(out):
                    raise MirrorUnreachable(f"debootstrap cannot reach {debian_mirror()}:\n{out}")
                raise RuntimeError(f"debootstrap failed ({proc.returncode}):\n{out}")
            part = TARBALL.with_name(TARBALL.name + ".part")
            subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(build / "rootfs"),
                            "-I", "zstd -T0 -3 -q", "-cf", str(part), "."], check=True)
            os.replace(part, TARBALL)
            stamp.write_text(PACKAGES + "\n")
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return TARBALL


class PystemdUnavailable(RuntimeError):
    pass


def ensure_pystemd_wheels() -> list[Path]:
    """pystemd and what it needs beyond this venv, as wheels for this Python (cached). PyPI has
    no pystemd wheel: it builds against libsystemd (libsystemd-dev pkg-config gcc python3-dev)."""
    wheels = CACHE / "wheels"
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not list(wheels.glob("pystemd-*.whl")):
            proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), "pystemd"],
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise PystemdUnavailable(f"pip wheel pystemd failed (needs libsystemd-dev pkg-config gcc "
                                         f"python3-dev):\n{(proc.stdout + proc.stderr)[-2000:]}")
    import importlib.util

    return [w for w in sorted(wheels.glob("*.whl"))
            if w.name.startswith("pystemd-") or importlib.util.find_spec(w.name.split("-")[0].lower()) is None]


class Machine:
    """One container: `boot`, `run` commands in it, `reboot`, and `destroy` (always)."""

    def __init__(self, workdir: Path, name: str = "gcetest") -> None:
        self.workdir = workdir
        self.root = workdir / "rootfs"
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.leader = 0
        self.boots = 0

    def unpack(self, tarball: Path) -> None:
        self.root.mkdir(parents=True)
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(self.root), "-I", "zstd -T0 -q",
                        "-xf", str(tarball)], check=True)

    def binds(self) -> list[str]:
        """The project and the venv running the tests, read-only at the same paths."""
        project = Path(__file__).resolve().parents[2]
        paths = [project]
        if not Path(sys.prefix).resolve().is_relative_to(project):
            paths.append(Path(sys.prefix).resolve())
        return [f"--bind-ro={p}" for p in paths]

    def boot(self, timeout: float = 60) -> None:
        self.boots += 1
        log = open(self.workdir / f"boot{self.boots}.log", "wb")
        script = ('mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && '
                  'exec systemd-nspawn "$@"')
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", "-D", str(self.root),
             "--boot", "--register=no", "--keep-unit", "--console=passive", f"--machine={self.name}",
             *self.binds()],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        self.leader = 0
        while not self.leader:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the container did not boot: {self.boot_log()}")
            kids = [p for p in psutil.Process(self.proc.pid).children() if p.name() == "systemd"]
            self.leader = kids[0].pid if kids else 0
            time.sleep(0.05)
        state = ""
        while not state:  # empty until systemd listens on its socket ("Failed to connect to bus")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the container's systemd does not answer: {self.boot_log()}")
            state = self.run("systemctl is-system-running --wait", check=False, timeout=timeout).stdout.strip()
            time.sleep(0.05)
        if state not in ("running", "degraded"):
            raise RuntimeError(f"the container's systemd is {state!r}: {self.run('systemctl --failed').stdout}")

    def boot_log(self) -> str:
        return (self.workdir / f"boot{self.boots}.log").read_text(errors="replace")[-3000:]

    def run(self, command: str, user: str | None = None, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run COMMAND (a shell line) inside, as root or USER, with a clean environment."""
        base = {"PATH": PATH, "LANG": "C.UTF-8", "NO_COLOR": "1", "COLUMNS": "200", "SYSTEMD_COLORS": "0",
                "SYSTEMD_PAGER": "", **(env or {})}
        argv = ["sh", "-c", command]
        if user is None:
            base["HOME"] = "/root"
        else:
            uid = int(self.run(f"id -u {shlex.quote(user)}").stdout)
            base.update(HOME=f"/home/{user}", USER=user, XDG_RUNTIME_DIR=f"/run/user/{uid}")
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]
        proc = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-p", "-C", "-r", "-w", "env", "-i",
             *(f"{k}={v}" for k, v in base.items()), *argv],
            capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"in the container, {command!r} exited {proc.returncode}:\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def show(self, unit: str, *props: str, user: str | None = None) -> dict[str, str]:
        systemctl = "systemctl --user" if user else "systemctl"
        out = self.run(f"{systemctl} show -p {','.join(props)} {unit}", user=user).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_active(self, unit: str, user: str | None = None, timeout: float = 60) -> dict[str, str]:
        """UNIT's state once it is active and running (READY=1 seen), or fail saying what it is."""
        props = ("ActiveState", "SubState", "MainPID", "NRestarts", "StatusText", "Result", "ExecMainStatus")
        deadline = time.monotonic() + timeout
        while True:
            state = self.show(unit, *props, user=user)
            if state["ActiveState"] == "active" and state["SubState"] == "running":
                return state
            if time.monotonic() > deadline:
                systemctl = "systemctl --user" if user else "systemctl"
                status = self.run(f"{systemctl} status --no-pager -n 30 {unit}", user=user, check=False).stdout
                raise AssertionError(f"{unit} is not active: {state}\n{status}")
            time.sleep(0.2)

    def wait_exit(self, timeout: float) -> bool:
        try:
            assert self.proc is not None
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def reboot(self) -> None:
        self.run("systemctl reboot", check=False)
        if not self.wait_exit(60):
            raise RuntimeError("the container did not go down for its reboot")
        self.boot()

    def destroy(self) -> None:
        """Power off (kill if it will not), then remove the rootfs copy."""
        if self.proc is not None and self.proc.poll() is None:
            if self.leader:
                try:
                    self.run("systemctl poweroff", check=False, timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            if not self.wait_exit(30):
                for pid in (self.leader, self.proc.pid):  # pid 1 of a namespace takes it all down
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.wait_exit(30)
        shutil.rmtree(self.workdir, ignore_errors=True)
