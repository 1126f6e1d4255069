"""gce diagnostic's audit check: a running manager whose audit log cannot be written (tasks still
run) warns with what waits and what was lost; one that writes it passes."""

from __future__ import annotations

from tests.commands.helpers import control_server, running
from tests.commands.test_diagnostic import diagnose, unreachable
from tests.commands.test_diagnostic_states import HEALTHY


def _audit_row(paths, audit: dict) -> dict:
    with running(paths), control_server(paths, {**HEALTHY, "audit": audit}):
        result, rows = diagnose("--endpoint", "ep", "--json")
    return rows[("ep", "audit")]


def test_an_audit_log_that_cannot_be_written_warns_and_one_that_can_passes(home):
    paths = unreachable("ep")
    full = _audit_row(paths, {"path": "/l/audit/ep.jsonl", "waiting": 12, "lost": 3, "error": "No space left on device"})
    assert (full["status"], full["reason"]) == (
        "WARN", "cannot write /l/audit/ep.jsonl: No space left on device; 12 lines wait, 3 were lost "
        "(tasks run all the same)")
    assert full["hint"] == ("make room on (or remount read-write) the file system of /l/audit/ep.jsonl; what waits "
                            "is written by itself")
    well = _audit_row(paths, {"path": "/l/audit/ep.jsonl", "waiting": 0, "lost": 0, "error": ""})
    assert (well["status"], well["reason"]) == ("PASS", "the manager writes its audit log /l/audit/ep.jsonl")
