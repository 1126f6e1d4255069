"""The condition each task future waits on, at a fraction of a ``threading.Condition``'s memory.

A ``concurrent.futures.Future`` makes a ``threading.Condition`` of its own: an RLock, a deque
and five bound methods, 1.3 KiB of the 1.6 KiB a Future costs. An Executor with a million
outstanding tasks would spend 1.3 GB on them. Here every future's condition shares one RLock
and keeps only its list of waiting threads: the lock is held only for a few lines of
``Future`` at a time (never while a callback runs or a thread waits), so sharing it costs no
parallelism worth having, and ``concurrent.futures.wait`` may hold all of them at once (an
RLock counts its holder's acquisitions).
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.RLock()


class SharedLockCondition(threading.Condition):
    """A ``threading.Condition`` on the one lock all of them share (see the module's docstring)."""

    def __init__(self) -> None:  # no super().__init__(): no lock, deque or bound methods of its own
        self._lock = _LOCK
        # A list, not a deque: Condition only appends, removes, reads [0], counts and iterates it.
        self._waiters: list[Any] = []  # type: ignore[assignment]

    # Condition binds these per instance in its __init__; here they are the class's.
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]

    def _is_owned(self) -> bool:
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]
