"""Log files stay bounded: the manager's and a user endpoint's rotate at LOG_BYTES, and a
child's captured stderr is rotated each time a child is started on it."""

from __future__ import annotations

import subprocess
import sys

from gce import logfiles

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
