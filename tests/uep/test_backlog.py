"""A user endpoint's backlog costs the same per task however long it is.

Counted, not timed: the engine's own waiting structure is swapped for a subclass of its type
that counts every task it hands out (by index, by slice, by iteration or by pop), so a copy of
the rest of the backlog for each batch shows as work growing with the backlog.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from gce.uep.engines import BATCH_MAX_TASKS, HighThroughputEngine
from gce.uep.pools import Engine


def counting(structure: Any) -> Any:
    """STRUCTURE as an instance of a subclass of its type that counts the items read out of it
    (``.touched``, on the class); a slice of it counts too, and stays a counting one."""
    base = type(structure)

    class Counting(base):  # type: ignore[valid-type, misc]
        touched = 0

        def __getitem__(self, i: Any) -> Any:
            got = base.__getitem__(self, i)
            if isinstance(i, slice):
                Counting.touched += len(got)
                return Counting(got)
            Counting.touched += 1
            return got

        def __iter__(self) -> Any:
            for item in base.__iter__(self):
                Counting.touched += 1
                yield item

        def popleft(self) -> Any:
            Counting.touched += 1
            return base.popleft(self)  # type: ignore[attr-defined]

        def pop(self, *args: Any) -> Any:
            Counting.touched += 1
            return base.pop(self, *args)

    return Counting(structure)


class _Open:  # the failing-block breaker, closed: every task may go to parsl
    def refusal(self) -> None:
        return None


def _backlog_through_engine(n: int) -> tuple[int, list[int]]:
    """N small tasks submitted to a HighThroughputEngine while parsl has no free slot, then
    drained: (items its waiting structure handed out, the size of each batch sent to parsl).
    Parsl itself is the seam: what would be submitted to it is recorded instead."""
    engine = HighThroughputEngine({}, "/nonexistent", 1 << 20)
    engine.guard = _Open()  # type: ignore[assignment]
    engine.slots = 0
    engine._waiting = counting(engine._waiting)
    sent: list[list[tuple[bytes, Future]]] = []
    engine._send = lambda tasks, spec: sent.append(list(tasks))  # type: ignore[method-assign]
    futures = [Engine.submit(engine, b"%d" % i, {}, f"t{i}") for i in range(n)]
    assert sent == []  # every task waits for a slot
    engine.slots = n  # slots free up: the whole backlog goes
    engine._drain()
    order = [payload for batch in sent for payload, _ in batch]
    assert order == [b"%d" % i for i in range(n)]  # each task once, oldest first
    assert [outer for batch in sent for _, outer in batch] == futures
    return type(engine._waiting).touched, [len(b) for b in sent]


def test_a_backlog_of_50k_tasks_is_drained_touching_each_task_a_bounded_number_of_times():
    n = 50_000
    touched, sizes = _backlog_through_engine(n)
    assert all(1 <= s <= BATCH_MAX_TASKS for s in sizes)
    assert len(sizes) == -(-n // BATCH_MAX_TASKS)  # full batches: the backlog is there to fill them
    assert touched <= 3 * n, f"the waiting list handed out {touched:,} items for {n:,} tasks"


def test_twice_the_backlog_is_twice_the_work():
    small, _ = _backlog_through_engine(10_000)
    large, _ = _backlog_through_engine(20_000)
    assert large <= 2.1 * small, f"10k waiting tasks cost {small:,} items, 20k cost {large:,}"
