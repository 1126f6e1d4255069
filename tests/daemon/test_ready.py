"""The start-up handshake over a real pipe: one JSON line, read back whole or refused clearly."""

from __future__ import annotations

import os

import pytest

from gce.daemon import launcher
from gce.daemon.ready import MAX_LINE, Outcome, ReadyPipe, ReadyReport, Refusal, ReportError


def _through_a_pipe(report: ReadyReport) -> bytes:
    rfd, wfd = os.pipe()
    pipe = ReadyPipe(wfd)
    pipe.say(report)
    pipe.say(ReadyReport(Outcome.FAILED, "said twice"))  # once only: the second is dropped
    with os.fdopen(rfd, "rb") as r:
        return r.read()  # EOF: the manager's end was closed after the one line


@pytest.mark.parametrize("report", [
    ReadyReport(Outcome.READY),
    ReadyReport(Outcome.FAILED, "cannot connect to the broker at amqp://u:***@h/v: connection refused"),
    ReadyReport(Outcome.REFUSED, error=Refusal("endpoint 'demo' is already running", "its manager (pid 7) holds "
                                               "/x/manager.lock", "gce status demo", 73)),
])
def test_each_outcome_arrives_as_one_line(report):
    line = _through_a_pipe(report)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert ReadyReport.from_line(line) == report


def test_a_huge_reason_is_cut_to_fit_the_pipe_and_stays_json():
    line = _through_a_pipe(ReadyReport(Outcome.FAILED, "\x01é" * 100_000))
    assert len(line) <= MAX_LINE
    back = ReadyReport.from_line(line)
    assert back.outcome is Outcome.FAILED and back.reason.startswith("\x01é\x01é") and len(back.reason) > 1000


@pytest.mark.parametrize("line, why", [
    (b"ready\n", "not a JSON line: b'ready\\n'"),
    (b'["ready"]\n', "not a JSON object"),
    (b'{"outcome": "maybe"}\n', "unknown outcome 'maybe'"),
    (b'{"outcome": "failed", "reason": 3}\n', "its reason is not a string"),
    (b'{"outcome": "refused"}\n', "a refusal without its error"),
    (b'{"outcome": "refused", "error": {"what": "x"}}\n', "a refusal without an exit code"),
    (b'{"outcome": "rea', "not a JSON line"),
])
def test_a_garbled_report_is_refused_saying_why(line, why):
    with pytest.raises(ReportError) as e:
        ReadyReport.from_line(line)
    assert str(e.value).startswith(why)


def test_the_launcher_names_a_missing_or_garbled_report():
    assert launcher._read_report(b"") == ""
    assert launcher._read_report(b"ready\n") == ", and its start-up report could not be read (not a JSON line: " \
                                                "b'ready\\n')"
    assert launcher._read_report(ReadyReport(Outcome.READY).to_line()) == ReadyReport(Outcome.READY)

