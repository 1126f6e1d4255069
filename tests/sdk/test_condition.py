"""Task futures share one lock (gce.sdk.condition) and still behave as concurrent.futures says:
result() waits for its own future only, wait() and as_completed() see every one complete."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import pytest

from gce.sdk.executor import TaskFuture


def test_result_waits_for_its_own_future_and_times_out_alone():
    mine, other = TaskFuture("mine"), TaskFuture("other")
    threading.Timer(0.05, other.set_result, ("theirs",)).start()
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # another future completing does not end this wait
        mine.result(timeout=0.3)
    assert time.monotonic() - started >= 0.3 and other.result(timeout=5) == "theirs"
    threading.Timer(0.05, mine.set_result, (42,)).start()
    assert mine.result(timeout=5) == 42


def test_wait_and_as_completed_see_every_future_set_from_another_thread():
    futures = [TaskFuture(str(i)) for i in range(10_000)]

    def answer() -> None:
        for i, f in enumerate(futures):
            f.set_result(i) if i % 2 else f.set_exception(ValueError(i))

    threading.Thread(target=answer).start()
    done, not_done = cf.wait(futures, timeout=30)
    assert len(done) == 10_000 and not not_done
    assert sorted(f.result() for f in cf.as_completed(futures[1::2], timeout=5)) == list(range(1, 10_000, 2))
    called = []
    futures[0].add_done_callback(called.append)
    assert called == [futures[0]] and isinstance(futures[0].exception(), ValueError)


def test_a_cancelled_future_wakes_its_waiter():
    fut = TaskFuture("t")
    threading.Timer(0.05, fut.cancel).start()
    with pytest.raises(cf.CancelledError):
        fut.result(timeout=5)
