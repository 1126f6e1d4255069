"""The diagnostic's log check judges the current run only; errors of earlier runs are a note."""

from __future__ import annotations

from tests.commands.test_diagnostic import diagnose, unreachable

EARLIER = ("2026-01-01 10:00:00,000 INFO manager[7] gce.daemon: starting\n"
           "2026-01-01 10:00:01,000 ERROR manager[7] gce.daemon: start-up failed: boom\n"
           "Traceback (most recent call last):\n"
           "RuntimeError: boom\n")
CURRENT = ("2026-01-02 09:00:00,000 INFO manager[9] gce.daemon: endpoint quiet is ready\n"
           "2026-01-02 09:00:05,000 INFO manager[9] gce.daemon: stopping\n")


def test_errors_of_an_earlier_run_are_a_note_not_a_warning(home):
    paths = unreachable("quiet")
    paths.log_file.write_text(EARLIER + CURRENT)
    _, rows = diagnose("--endpoint", "quiet", "--json")
    log = rows[("quiet", "log")]
    assert log["status"] == "PASS"
    assert log["reason"] == (f"{paths.log_file}: no errors in the current run's 2 lines; note: earlier runs "
                             "logged 2 error lines, the last: Traceback (most recent call last):")
    assert len(log["details"]["tail"]) == 6


def test_only_the_current_run_s_errors_are_counted(home):
    paths = unreachable("quiet")
    paths.log_file.write_text(EARLIER + CURRENT.replace("INFO manager[9] gce.daemon: stopping",
                                                        "ERROR manager[9] gce.daemon: the broker link failed: x"))
    _, rows = diagnose("--endpoint", "quiet", "--json")
    log = rows[("quiet", "log")]
    assert log["status"] == "WARN"
    assert log["reason"] == ("1 error line among the current run's last 2; the last: 2026-01-02 09:00:05,000 "
                             "ERROR manager[9] gce.daemon: the broker link failed: x; note: earlier runs "
                             "logged 2 error lines")
