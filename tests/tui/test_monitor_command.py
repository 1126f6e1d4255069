"""gce monitor without a terminal: one snapshot as tables, as JSON, and as plain lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path



GCE = str(Path(sys.executable).parent / "gce")


def _gce(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([GCE, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "300", **env}, stdin=subprocess.DEVNULL)


def test_once_prints_every_screen_of_a_running_endpoint_as_tables(live):
    done = _gce("monitor", "ep", "--once")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for title in ("Endpoints", "User endpoints", "Workers", "Tasks"):
        assert f"\n{title}\n" in f"\n{out}", out
    ep_line = next(ln for ln in out.splitlines() if ln.startswith("ep "))
    assert "running" in ep_line and "connected" in ep_line and "thread" in ep_line
    assert "TASK_EXCEPTION" in out or "failed" in out
    # the failure's message is user text: its markup stays text, its escape sequence is gone
    assert "[bold red]x[/]" in out and "\x1b" not in out and "pwned" not in out


def test_a_pipe_gets_the_tables_too(live):
    done = _gce("monitor")
    assert done.returncode == 0 and "\nEndpoints\n" in f"\n{done.stdout}" and "ep " in done.stdout


def test_json_is_one_snapshot(live):
    done = _gce("monitor", "ep", "--json")
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    (ep,) = snap["endpoints"]
    assert ep["name"] == "ep" and ep["state"] == "running" and ep["status"]["endpoint_id"] == live.endpoint_id
    assert sorted(t["state"] for t in ep["tasks"]) == ["failed", "success"]


def test_a_stopped_endpoint_shows_as_stopped_without_a_traceback(live, tmp_path):
    from tests.endpoint import Endpoint

    other = Endpoint(live.broker, live.home, name="idle")
    done = _gce("monitor", "--once")
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("idle "))
    assert line.split()[1] == "stopped" and "Traceback" not in done.stderr + done.stdout
    import shutil

    shutil.rmtree(other.paths.config_dir)


def test_an_unknown_endpoint_is_exit_78(live):
    done = _gce("monitor", "nosuch", "--once")
    assert done.returncode == 78 and done.stderr.startswith("error: no endpoint named 'nosuch'")


def test_plain_prints_a_line_per_row_when_piped(live):
    done = _gce("monitor", "ep", "--plain")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(ln.startswith("Endpoints ep: NAME ep, STATE running, BROKER connected") for ln in lines), lines
    assert any(ln.startswith("User endpoints ep/default: ") for ln in lines)
    assert sum(ln.startswith("Tasks ep/") for ln in lines) == 2


def test_gce_help_does_not_load_textual():
    code = ("import sys; from gce.cli import app; from typer.main import get_command; get_command(app); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'gce') and "
            "(m.startswith('textual') or m.startswith('gce.tui'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
