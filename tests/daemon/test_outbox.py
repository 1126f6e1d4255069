"""The outbox keeps the last results for the status: how each task ended, in one line; and the small
results of one loop turn for one Executor's queue go as one message (gce.transport.bundles)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from gce.daemon.outbox import Outbox
from gce.daemon.spool import RESULT, Spool
from gce.daemon.status import RECENT_TASKS
from gce.transport import bundles, names
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


class RecordingLink:
    """The broker is there: publishes are recorded, and confirmed (or nacked) when the test says."""

    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes, dict, dict]] = []  # key, content type, body, headers, kw

    def publish(self, exchange: str, key: str, body: bytes, headers: dict, **kw: Any) -> bool:
        self.sent.append((key, kw["content_type"], body, headers, kw))
        return True

    def confirm(self, ok: bool = True) -> None:
        for *_, kw in self.sent:
            kw["on_confirm"](ok)


def _spooled(spool: Spool, n: int, reply_to: str = "gce.results.alice.1", bundles_: bool = True,
             prefix: str = "t") -> None:
    for i in range(n):
        spool.add_task({"task_id": f"{prefix}{i}", "task": {"reply_to": reply_to, "result_bundles": bundles_}}, b"")


def _turn(outbox: Outbox, put: Callable[[], None]) -> None:
    """PUT's results in one turn of an event loop, and what the end of that turn sends."""
    async def one_turn() -> None:
        put()
        await asyncio.sleep(0)  # the turn ends: its results are published

    asyncio.run(one_turn())


def test_results_of_one_turn_for_one_queue_go_as_one_message_and_leave_the_spool_on_its_confirm(tmp_path):
    spool = Spool(tmp_path / "spool")
    link = RecordingLink()
    outbox = Outbox(spool, link, on_spooled=lambda: None)
    _spooled(spool, 5)
    _spooled(spool, 2, reply_to="gce.results.bob.7", prefix="b")
    _spooled(spool, 1, bundles_=False, prefix="old")  # its submitter did not ask: a message of its own
    big = b"z" * (bundles.SMALL + 1)  # too big to share a message

    def put() -> None:
        for i in range(5):
            assert outbox.put(ResultHeaders(f"t{i}", "ep", "success"), b"r%d" % i if i != 3 else big)
        assert outbox.put(failure("b0", "ep", "USER_EXCEPTION", "boom"), b"e")
        assert outbox.put(ResultHeaders("b1", "ep", "success"), b"ok")
        assert outbox.put(ResultHeaders("old0", "ep", "success"), b"ok")
        assert link.sent[0][0] == "gce.results.alice.1" and len(link.sent) == 2  # the big one and the old one, at once

    _turn(outbox, put)
    kinds = [(key, ctype) for key, ctype, *_ in link.sent]
    assert kinds == [("gce.results.alice.1", names.RESULT_CONTENT_TYPE), ("gce.results.alice.1", names.RESULT_CONTENT_TYPE),
                     ("gce.results.alice.1", names.RESULT_BUNDLE_CONTENT_TYPE),
                     ("gce.results.bob.7", names.RESULT_BUNDLE_CONTENT_TYPE)]
    alice, why = bundles.decode(bundles.RESULTS, link.sent[2][2])
    assert why == "" and [(h["task-id"], body) for h, body in alice] == [("t0", b"r0"), ("t1", b"r1"), ("t2", b"r2"),
                                                                         ("t4", b"r4")]
    assert link.sent[2][3] == {"gce-protocol": names.PROTOCOL_VERSION, "results": "4"}
    bob, _ = bundles.decode(bundles.RESULTS, link.sent[3][2])
    assert [ResultHeaders.from_amqp(None, h).error_code for h, _ in bob] == ["USER_EXCEPTION", ""]
    assert all(spool.entries[t].kind == RESULT for t in ("t0", "t4", "b1", "old0"))
    link.confirm()
    assert spool.entries == {}  # every result confirmed: nothing is published again
    assert all(outbox.answered(t) for t in ("t0", "t3", "b0", "old0"))


def test_a_lone_result_goes_as_a_plain_result_message(tmp_path):
    spool = Spool(tmp_path / "spool")
    link = RecordingLink()
    outbox = Outbox(spool, link, on_spooled=lambda: None)
    _spooled(spool, 1)
    _turn(outbox, lambda: outbox.put(ResultHeaders("t0", "ep", "success"), b"ok"))
    [(key, ctype, body, headers, kw)] = link.sent
    assert (key, ctype, body, kw["correlation_id"]) == ("gce.results.alice.1", names.RESULT_CONTENT_TYPE, b"ok", "t0")
    assert headers["task-id"] == "t0"


def test_a_nacked_bundle_keeps_all_its_results_to_publish_again_one_by_one(tmp_path):
    spool = Spool(tmp_path / "spool")
    link = RecordingLink()
    outbox = Outbox(spool, link, on_spooled=lambda: None)
    _spooled(spool, 3)

    outbox._retry_soon = lambda: None  # type: ignore[method-assign]  # its timer is not this test's
    _turn(outbox, lambda: [outbox.put(ResultHeaders(f"t{i}", "ep", "success"), b"ok") for i in range(3)])
    link.confirm(ok=False)
    assert outbox.unpublished == {"t0", "t1", "t2"} and set(spool.entries) == {"t0", "t1", "t2"}
    link.sent.clear()
    outbox.republish()
    assert sorted(kw["correlation_id"] for *_, kw in link.sent) == ["t0", "t1", "t2"]
    assert {ctype for _, ctype, *_ in link.sent} == {names.RESULT_CONTENT_TYPE}
