"""Running a task again when its worker died under it: ``max_retries_on_system_failure``.

A worker killed by a signal or out of memory answers its task WORKER_LOST. Often the task did
nothing wrong (a node was lost, a neighbour in the pool ate the memory), so, as Globus Compute's
engines do, such a task may be run again, up to its ``max_retries_on_system_failure`` more times:
the task's own value (an Executor argument, sent in its headers) wins over the engine's
(``engine.max_retries_on_system_failure``, default 0), and neither may pass MAX_RETRIES, so a
task that always kills its worker cannot keep an endpoint busy for ever. Only a lost worker is a
system failure: a user exception, a time limit, a cancel or a refusal is answered at once. The
final WORKER_LOST answer says how many attempts were made. A user endpoint that dies takes its
tasks' count with it; its manager runs them again by its own rule (``limits.task_attempts``).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from gce.transport.message import TaskHeaders
from gce.uep.pools import WorkerLost

log = logging.getLogger(__name__)

KEY = "max_retries_on_system_failure"
MAX_RETRIES = 10  # the most a task may ask for (the schema's maximum for the engine's value too)


@dataclass(frozen=True)
class Attempt:
    """What one attempt at a task leaves: how many were made, how many retries it had, and its
    payload while it may be run again."""

    task_id: str
    attempts: int
    allowed: int
    payload: bytes | None

    def again(self, fut: Future[Any]) -> bool:
        """Whether to run the task again: its worker died under it (FUT) and it has attempts left."""
        return self.payload is not None and not fut.cancelled() and isinstance(fut.exception(), WorkerLost)

    def told(self, fut: Future[Any]) -> Future[Any]:
        """FUT, the task's answer; a lost worker's says how many attempts were made."""
        if fut.cancelled() or not isinstance(fut.exception(), WorkerLost):
            return fut
        told: Future[Any] = Future()
        told.set_exception(WorkerLost(f"{fut.exception()}; {self.attempts} attempt{'s' if self.attempts > 1 else ''} "
                                      f"({KEY} was {self.allowed})"))
        return told


class Retries:
    """Each task's attempts so far, and its payload while it may be run again; nothing is kept
    of a task that may not run again."""

    def __init__(self, default: int = 0) -> None:
        self.default = default
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[int, bytes | None]] = {}  # task id -> (attempts, payload)

    def take(self, engine: dict[str, Any]) -> dict[str, Any]:
        """ENGINE (an engine spec) without this module's key, whose value becomes the default."""
        engine = dict(engine)
        self.default = min(int(engine.pop(KEY, 0) or 0), MAX_RETRIES)
        return engine

    def allowed(self, th: TaskHeaders) -> int:
        """How many more times TH may run after its first attempt."""
        asked = getattr(th, KEY, None)
        return self.default if asked is None else max(0, min(int(asked), MAX_RETRIES))

    def keep(self, th: TaskHeaders, payload: bytes) -> None:
        """TH was handed to the engine (once more): count it, and keep its payload while it may run again."""
        allowed = self.allowed(th)
        if not allowed:
            return
        with self._lock:
            attempts = self._kept.get(th.task_id, (0, None))[0] + 1
            self._kept[th.task_id] = (attempts, payload if attempts <= allowed else None)

    def settle(self, th: TaskHeaders) -> Attempt:
        """The attempt at TH whose outcome came, which is forgotten here (resume() carries it on)."""
        with self._lock:
            attempts, payload = self._kept.pop(th.task_id, (1, None))
        return Attempt(th.task_id, attempts, self.allowed(th), payload)

    def resume(self, attempt: Attempt, fut: Future[Any]) -> bytes:
        """The payload to run ATTEMPT's task with once more (its worker died: FUT's exception)."""
        assert attempt.payload is not None
        with self._lock:
            self._kept[attempt.task_id] = (attempt.attempts, None)  # keep() counts the next one
        log.warning("task %s: its worker died (%s): running it again (attempt %d of at most %d)", attempt.task_id,
                    fut.exception(), attempt.attempts + 1, attempt.allowed + 1)
        return attempt.payload
