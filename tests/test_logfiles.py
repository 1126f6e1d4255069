"""Log files stay bounded: the manager's and a user endpoint's rotate at LOG_BYTES, stdout and
stderr written into a log follow it when it rotates, and a child's captured stderr (a user
endpoint's, a detached manager's) is rotated each time one is started on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gce import logfiles
from gce.errors import PermissionDenied

WRITE = """
import logging, sys
from gce import logfiles
logfiles.LOG_BYTES = 64 * 1024
log = logging.getLogger("t")
log.addHandler(logfiles.rotating_handler(sys.argv[1], "%(message)s"))
log.setLevel(logging.INFO)
for i in range(20_000):
    log.info("line %06d %s", i, "x" * 80)
"""


def test_a_log_written_past_its_bound_rotates_and_keeps_a_bounded_history(tmp_path):
    path = tmp_path / "logs" / "endpoint.log"
    subprocess.run([sys.executable, "-c", WRITE, str(path)], check=True)  # ~1.8 MB through a 64 KiB bound
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files] == ["endpoint.log"] + [f"endpoint.log.{i}" for i in range(1, 6)]
    assert all(f.stat().st_size <= 64 * 1024 for f in files)
    assert "line 019999" in path.read_text()  # the newest lines are in the live file
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_a_large_captured_stderr_is_rotated_before_the_next_start(tmp_path, monkeypatch):
    monkeypatch.setattr(logfiles, "LOG_BYTES", 1000)
    path = tmp_path / "uep.stderr"
    logfiles.rotate_if_large(path)  # nothing there yet: nothing to do
    for n in range(8):
        path.write_text(f"start {n}\n" + "y" * 1000)
        logfiles.rotate_if_large(path)
        assert not path.exists()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == [f"uep.stderr.{i}" for i in range(1, 6)]
    assert (tmp_path / "uep.stderr.1").read_text().startswith("start 7")
    assert (tmp_path / "uep.stderr.5").read_text().startswith("start 3")
    path.write_text("small")
    logfiles.rotate_if_large(path)
    assert path.read_text() == "small"


# Like a user endpoint: stdout and stderr opened by its manager on its log file (gce/daemon/spawn.py),
# and its log handler on the same file; stderr may instead go elsewhere (like the manager's).
FOLLOW = """
import logging, os, sys
from gce import logfiles
logfiles.LOG_BYTES = 64 * 1024
log_path, err_path = sys.argv[1], sys.argv[2]
log = logging.getLogger("t")
log.addHandler(logfiles.rotating_handler(log_path, "%(message)s"))
log.setLevel(logging.INFO)
for i in range(6_000):
    log.info("record %06d %s", i, "x" * 80)
    print(f"print {i:06d}", flush=True)  # through sys.stdout (fd 1)
    os.write(2, f"raw {i:06d}\\n".encode())  # straight to fd 2, as a C library or a child would
print(os.readlink("/proc/self/fd/1"), os.readlink("/proc/self/fd/2"), file=sys.__stdout__, flush=True)
"""


def _run_follow(log: Path, err: Path) -> list[str]:
    with open(log, "ab") as out, open(err, "ab") as errf:
        subprocess.run([sys.executable, "-c", FOLLOW, str(log), str(err)], stdout=out, stderr=errf, check=True)
    return log.read_text().splitlines()[-1].split()


def test_stdout_and_stderr_written_into_the_log_file_follow_it_when_it_rotates(tmp_path):
    log = tmp_path / "uep.log"
    fd1, fd2 = _run_follow(log, log)
    # Both descriptors ended on the live file, not on a renamed one nor a deleted one.
    assert (fd1, fd2) == (str(log), str(log))
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["uep.log"] + [f"uep.log.{i}" for i in range(1, 6)]
    assert all(f.stat().st_size <= 64 * 1024 + 100 for f in files)  # one raw line past the check at most
    live = log.read_text()
    assert "record 005999" in live and "print 005999" in live and "raw 005999" in live
    assert "raw 000000" not in live  # the oldest went out with the rotated files


def test_stderr_going_elsewhere_is_left_alone_when_the_log_rotates(tmp_path):
    log, err = tmp_path / "endpoint.log", tmp_path / "endpoint.log.stderr"
    fd1, fd2 = _run_follow(log, err)
    assert (fd1, fd2) == (str(log), str(err))
    assert err.read_text().splitlines()[-1] == "raw 005999" and "raw 000000" in err.read_text()


def test_a_detached_start_rotates_the_managers_large_stderr_first(gce_home, monkeypatch):
    from gce.config.paths import endpoint_paths
    from gce.daemon import launcher
    from gce.errors import Unavailable
    from tests.endpoint import processes_under, wait_until

    with socket.socket() as s:  # a port where nothing listens: the start fails fast, after opening stderr
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    configure = subprocess.run([str(Path(sys.executable).parent / "gce"), "configure", "demo", "--no-input",
                                "--broker-url", f"amqp://ep@127.0.0.1:{port}/gce", "--engine", "thread"],
                               capture_output=True, text=True, timeout=60)
    assert configure.returncode == 0, configure.stderr
    paths = endpoint_paths("demo")
    stderr = launcher.stderr_file(paths)
    assert stderr == gce_home / "demo" / "endpoint.log.stderr"
    monkeypatch.setattr(logfiles, "LOG_BYTES", 1000)
    for start in range(3):
        stderr.write_text(f"from start {start}\n" + "z" * 1000)
        with pytest.raises(Unavailable):
            launcher.start_detached(paths, timeout=30)
        assert stderr.exists() and stderr.stat().st_size < 1000  # this start's own, small
    assert [(gce_home / "demo" / f"endpoint.log.stderr.{i}").read_text().split("\n")[0] for i in (1, 2, 3)] == [
        "from start 2", "from start 1", "from start 0"]
    wait_until(lambda: not processes_under(gce_home), timeout=15)


# -- who may read a log: its owner (and an admin group the admin chose), whatever the umask ---------------

def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


UMASK_022 = "import os; os.umask(0o022)\n"  # root's usual umask: RotatingFileHandler alone makes 0644 files


def test_a_log_and_every_file_rotation_makes_are_private_whatever_the_umask(tmp_path):
    path = tmp_path / "logs" / "endpoint.log"
    subprocess.run([sys.executable, "-c", UMASK_022 + WRITE, str(path)], check=True)
    files = sorted(path.parent.iterdir())
    assert len(files) == 6
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_logs_found_with_wider_modes_are_narrowed(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    path, old, admin = d / "endpoint.log", d / "endpoint.log.1", d / "endpoint.log.2"
    for f in (path, old, admin):
        f.write_text("from an older gce\n")
        f.chmod(0o666)
    os.chown(admin, -1, 4)  # given to an admin group (adm): its members keep reading it
    handler = logfiles.rotating_handler(path, "%(message)s")
    handler.close()
    assert (_mode(path), _mode(old), _mode(admin)) == (0o600, 0o600, 0o640)


def test_a_captured_stderr_is_opened_private_and_narrowed(tmp_path):
    path = tmp_path / "uep.stderr"
    old = os.umask(0o022)
    try:
        with logfiles.open_append(path) as f:
            f.write(b"one\n")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    path.chmod(0o644)
    with logfiles.open_append(path) as f:
        f.write(b"two\n")
    assert _mode(path) == 0o600 and path.read_bytes() == b"one\ntwo\n"


def test_a_planted_symlink_is_not_followed(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("root's\n")
    d = tmp_path / "logs"
    d.mkdir()
    (d / "endpoint.log").symlink_to(target)
    for open_it in (lambda p: logfiles.rotating_handler(p, "%(message)s"), logfiles.open_append):
        with pytest.raises(PermissionDenied) as e:
            open_it(d / "endpoint.log")
        assert e.value.why == "it is a symbolic link"
    assert target.read_text() == "root's\n" and _mode(target) == 0o644


def test_no_log_in_a_directory_others_may_write_or_in_a_file_they_own(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(PermissionDenied) as e:
        logfiles.rotating_handler(d / "endpoint.log", "%(message)s")
    assert (str(e.value), e.value.hint) == (
        f"cannot write the log {d}: other users may write to its directory", f"chmod go-w {d}")
    assert not (d / "endpoint.log").exists()
    d.chmod(0o1777)  # sticky, like /tmp: others cannot replace our files, but may plant their own
    planted = d / "uep.stderr"
    planted.write_text("")
    os.chown(planted, 65534, 65534)
    with pytest.raises(PermissionDenied) as e:
        logfiles.open_append(planted)
    assert e.value.why == "it is not a regular file of this user"
    with logfiles.open_append(d / "mine.stderr"):
        pass
