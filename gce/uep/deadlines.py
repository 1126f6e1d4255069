"""The user endpoint's own deadline for tasks with a time limit, whatever its engine does.

A worker keeps a task's limit itself (gce.uep.timelimit), but a thread of the user endpoint
cannot be killed, and an engine may lose track of a worker. So a task with a limit whose outcome
has not come ``GRACE`` seconds past its limit, counted from when its engine says a worker began it,
is answered TIMEOUT by the user endpoint, and the outcome that comes later is dropped: each task
is answered once, by whichever comes first. A worker lost after a task's limit had passed is
taken as the task's own doing (the worker kills its process when the function will not stop),
so it is answered TIMEOUT too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from gce.transport.message import ErrorCode, ResultHeaders, failure
from gce.uep import timelimit

# Seconds past its limit after which a task with no outcome is answered TIMEOUT: after the worker
# killed its process (timelimit.GRACE) and the engine had a second to see it.
GRACE = timelimit.GRACE + 1.0
PERIOD = 0.2  # seconds between two looks at the deadlines


@dataclass
class Limited:
    task_id: str
    limit: float
    handed_at: float  # when the user endpoint handed it to its engine

    def answer(self, endpoint_id: str, how: str) -> ResultHeaders:
        """The TIMEOUT result the user endpoint sends for this task itself; HOW: what it saw."""
        rh = failure(self.task_id, endpoint_id, ErrorCode.TIMEOUT,
                     f"the task ran past its time limit of {self.limit:g} s: {how} "
                     "(its walltime, or the Executor's task_timeout)")
        rh.timings = {"started": self.handed_at, "finished": time.time()}
        return rh


class Deadlines:
    """Tasks with a limit, until each is answered. STARTED_AT(task_id) is when the engine says a
    worker began the task (None: not yet, or it cannot tell); EXPIRED(task) answers one past its
    deadline."""

    def __init__(self, started_at: Callable[[str], float | None], expired: Callable[[Limited], None],
                 grace: float = GRACE) -> None:
        self.started_at = started_at
        self.expired = expired
        self.grace = grace
        self._lock = threading.Lock()
        self._tasks: dict[str, Limited] = {}
        self.overdue = 0  # tasks answered at their deadline: their engine may still run them

    def add(self, task_id: str, limit: float) -> None:
        with self._lock:
            self._tasks[task_id] = Limited(task_id, limit, time.time())

    def claim(self, task_id: str) -> Limited | None:
        """Take TASK_ID out of the watch to answer it from its outcome; None when it was answered
        already (its deadline passed first)."""
        with self._lock:
            return self._tasks.pop(task_id, None)

    def past_limit(self, task: Limited, now: float | None = None) -> bool:
        """Whether TASK has run its whole limit: counted from when a worker began it, or, for an
        engine that cannot tell, from when it was handed over."""
        began = self.started_at(task.task_id) or task.handed_at
        return (now or time.time()) >= began + task.limit

    def check(self, now: float | None = None) -> list[Limited]:
        """Answer (EXPIRED) and forget every task past its limit plus the grace; those tasks."""
        now = now or time.time()
        with self._lock:
            tasks = list(self._tasks.values())
        due = []
        for task in tasks:
            began = self.started_at(task.task_id)
            if began is not None and now >= began + task.limit + self.grace:
                due.append(task)
        late = []
        with self._lock:
            for task in due:
                if self._tasks.pop(task.task_id, None) is not None:
                    late.append(task)
        self.overdue += len(late)
        for task in late:
            self.expired(task)
        return late

    def watch(self, stopping: threading.Event) -> None:
        """Check the deadlines until STOPPING is set (the body of a thread)."""
        while not stopping.wait(PERIOD):
            self.check()
