"""The outbox keeps the last results for the status: how each task ended, in one line."""

from __future__ import annotations

from gce.daemon.outbox import Outbox
from gce.daemon.spool import Spool
from gce.daemon.status import RECENT_TASKS
from gce.transport.message import ResultHeaders, failure


class OfflineLink:
    """The broker is away: every publish waits (the seam Outbox publishes through)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def publish(self, exchange: str, key: str, body: bytes, headers: dict, **kw: object) -> bool:
        self.sent.append(str(kw.get("correlation_id")))
        return False


def test_the_last_results_are_kept_one_line_each(tmp_path):
    spool = Spool(tmp_path / "spool")
    link = OfflineLink()
    outbox = Outbox(spool, link, on_spooled=lambda: None)
    for i in range(RECENT_TASKS + 10):
        spool.add_task({"task_id": f"t{i}", "task": {"reply_to": "gce.results.alice.1"}}, b"")
    for i in range(RECENT_TASKS + 9):
        assert outbox.put(ResultHeaders(f"t{i}", "ep", "success"), b"ok")
    assert outbox.put(failure(f"t{RECENT_TASKS + 9}", "ep", "USER_EXCEPTION",
                              "ZeroDivisionError: division by zero\nTraceback (most recent call last):\n  ..."), b"")
    assert not outbox.put(ResultHeaders("t0", "ep", "success"), b"again")  # answered already: not kept twice

    recent = list(outbox.recent)
    assert len(recent) == RECENT_TASKS
    assert [r.task_id for r in recent] == [f"t{i}" for i in range(10, RECENT_TASKS + 10)]
    last = recent[-1]
    assert (last.status, last.code, last.message) == ("failed", "USER_EXCEPTION", "ZeroDivisionError: division by zero")
    assert last.finished_at is not None and recent[0].status == "success" and recent[0].message == ""
    assert len(link.sent) == RECENT_TASKS + 10 and outbox.unpublished == {f"t{i}" for i in range(RECENT_TASKS + 10)}
    spool.close()
