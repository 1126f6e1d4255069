"""proctree.kill_marked on real processes: what carries the marker dies, in any session, forks and
all; another marker, or the marker in another account's process, is left alone."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time

import pytest

from gce.daemon import proctree


def _alive(pid: int) -> bool:
    st = proctree._stat(pid)
    return st is not None and st.state not in ("Z", "X")


def _start(entry: str, *command: str) -> subprocess.Popen:
    name, value = entry.split("=", 1)
    return subprocess.Popen(list(command), env={**os.environ, name: value}, start_new_session=True,
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the other account's process needs root to start")
def test_kill_marked_kills_every_marked_process_of_the_account_and_nothing_else():
    entry = f"GCE_TASK_INSTANCE={secrets.token_hex(16)}"
    other = f"GCE_TASK_INSTANCE={secrets.token_hex(16)}"
    # A shell that forked a grandchild in yet another session, and printed its pid.
    marked = _start(entry, "/bin/sh", "-c", "setsid sleep 600 & echo $!; exec sleep 600")
    grandchild = int(marked.stdout.readline())
    unmarked = _start(other, "sleep", "600")
    foreign = _start(entry, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "600")
    procs = [marked, unmarked, foreign]
    try:
        deadline = time.monotonic() + 10  # setpriv has exec'd sleep as nobody
        while proctree._real_uid(foreign.pid) != 65534 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proctree.kill_marked(entry, os.getuid()) == 2
        assert marked.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while _alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(grandchild)
        assert unmarked.poll() is None and foreign.poll() is None
        assert proctree.kill_marked(entry, os.getuid()) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait()
        try:
            os.kill(grandchild, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_killed_process_that_lingers_is_counted_once(monkeypatch):
    # SIGKILL is delivered, not done, when the signal call returns: the next round may still list
    # the process. Here the signal is withheld (the process stays as a lingering one would).
    entry = f"GCE_TASK_INSTANCE={secrets.token_hex(16)}"
    lingering = _start(entry, "sleep", "600")
    sent: list[int] = []
    monkeypatch.setattr(proctree, "_signal_if", lambda pid, check, sig: check(pid) and not sent.append(pid))
    try:
        assert proctree.kill_marked(entry, os.getuid()) == 1
        assert sent == [lingering.pid]
    finally:
        lingering.kill()
        lingering.wait()
