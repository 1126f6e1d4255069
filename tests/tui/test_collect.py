"""collect() against managers that answer, hang, or stop; plain lines say only what changed."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

from gce.config.paths import endpoint_paths
from gce.tui import rows
from gce.tui.collect import Snapshot, collect, fold
from gce.tui.report import plain_lines
from tests.commands.helpers import running
from tests.tui import fixed


def test_a_manager_that_does_not_answer_is_not_answering_since_it_first_did_not(gce_home, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    paths = endpoint_paths("hung")
    paths.config_dir.mkdir(parents=True)
    paths.control_socket.parent.mkdir(parents=True, exist_ok=True)
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(paths.control_socket))
    hung.listen(8)  # takes connections, never answers: a manager stuck in a long call
    try:
        with running(paths):
            began = time.monotonic()
            first = collect({"hung": paths}, timeout=0.3, now=1_800_000_000.0)
            assert time.monotonic() - began < 2  # bounded by the refresh, never frozen
            second = collect({"hung": paths}, first, timeout=0.3, now=1_800_000_005.0)
    finally:
        hung.close()
    (view,) = second.endpoints
    assert view.state == "not answering" and view.silent_since == 1_800_000_000.0
    assert rows.endpoint_rows(second)[0][1][1] == "not answering since 08:00:00"


def test_a_stopped_endpoint_is_stopped_and_forgets_its_last_figures(gce_home):
    paths = endpoint_paths("gone")
    paths.config_dir.mkdir(parents=True)
    was_running = replace(fixed.snapshot().endpoints[0], name="gone")
    assert was_running.status and was_running.rates
    snap = collect({"gone": paths}, Snapshot(0.0, (was_running,)), timeout=0.3)
    (view,) = snap.endpoints
    assert view.state == "stopped" and view.status is None and view.rates == ()
    assert rows.endpoint_rows(snap) == [("gone", ("gone", "stopped") + ("-",) * 9)]


def test_events_fold_into_one_row_per_task_newest_first():
    rows_ = fold((), [{"task_id": "a", "event": "received", "function_name": "f", "submitter": "s"},
                      {"task_id": "b", "event": "received"},
                      {"task_id": "a", "event": "failed", "code": "TASK_EXCEPTION", "ran_for": 1.5}])
    assert [(r["task_id"], r["state"]) for r in rows_] == [("a", "failed"), ("b", "received")]
    assert rows_[0]["function_name"] == "f" and rows_[0]["code"] == "TASK_EXCEPTION"


def test_plain_lines_say_each_row_once_then_only_changes(tmp_path):
    snap = fixed.snapshot()
    lines = plain_lines(snap, None)
    assert "Endpoints cluster: NAME cluster, STATE running, BROKER connected, HOST login01, ENGINE htex, " \
           "UPTIME 2h03m, GCE 0.1.0, IN/s 1.6, OUT/s 0.5, OUTSTANDING 1, FAILED 5m 1" in lines
    assert any(ln.startswith("Tasks cluster/5b2e: TASK 5b2e, FUNCTION [bold red]x[/],") for ln in lines)
    assert not any("\x1b" in ln for ln in lines)
    assert plain_lines(snap, snap) == []
