"""The real `gce monitor` in a real terminal (tmux), against the running endpoint: it draws the
endpoint, changes screens on a key, and quits on q leaving the terminal as it found it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.endpoint import wait_until

GCE = str(Path(sys.executable).parent / "gce")
pytestmark = pytest.mark.skipif(not shutil.which("tmux"), reason="make test installs tmux")


class Tmux:
    def __init__(self) -> None:
        self.socket = f"gce-test-{uuid.uuid4().hex[:8]}"  # a server of its own, never the user's

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "monitor")

    def shows(self, text: str) -> str | None:
        screen = self.screen()
        return screen if text in screen else None


@pytest.fixture
def tmux():
    t = Tmux()
    try:
        yield t
    finally:
        subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True, timeout=10)
        # tmux leaves its socket file behind when its server is killed
        tmpdir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmpdir / t.socket).unlink(missing_ok=True)


def test_gce_monitor_in_a_terminal(live, tmux):
    env = {"GCE_HOME": os.environ["GCE_HOME"], "PATH": os.environ["PATH"], "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    tmux("new-session", "-d", "-s", "monitor", "-x", "80", "-y", "24",
         *(f"-e{k}={v}" for k, v in env.items()), f"{GCE} monitor ep -r 0.5; echo monitor-exited-$?; sleep 30")
    screen = wait_until(lambda: tmux.shows("connected"), timeout=30)
    assert "1 Endpoints" in screen and "running" in screen and "ep" in screen
    tmux("send-keys", "-t", "monitor", "5")
    screen = wait_until(lambda: tmux.shows("failed"), timeout=10)
    assert "[bold red]x[/]" in screen  # the failing function's name, as text
    tmux("send-keys", "-t", "monitor", "/")
    wait_until(lambda: tmux.shows("filter:"), timeout=10)
    tmux("send-keys", "-t", "monitor", "failed", "Enter")  # keep the filter
    wait_until(lambda: not tmux.shows("success"), timeout=10)
    tmux("send-keys", "-t", "monitor", "Enter")  # open the failed task
    screen = wait_until(lambda: tmux.shows("traceback"), timeout=10)
    assert "ValueError: [bold red]x[/]" in screen and "pwned" not in screen  # no escape reached the terminal
    tmux("send-keys", "-t", "monitor", "Escape")
    wait_until(lambda: not tmux.shows("traceback"), timeout=10)
    tmux("send-keys", "-t", "monitor", "q")
    screen = wait_until(lambda: tmux.shows("monitor-exited-0"), timeout=10)
    assert "1 Endpoints" not in screen  # the alternate screen is gone
