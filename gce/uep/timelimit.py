"""A task's time limit, kept by the worker that runs it.

The limit (a task's ``walltime``, or its Executor's ``task_timeout``) interrupts the function with
``TaskTimedOut``, a BaseException so that the function's own ``except Exception`` does not take it.
On a worker's main thread (process pools, parsl's workers) SIGALRM delivers it.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class TaskTimedOut(BaseException):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the task ran past its time limit of {seconds:g} s and was stopped")
        self.seconds = seconds


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Run the body for at most SECONDS (None: no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_signum: int, _frame: Any) -> None:
        raise TaskTimedOut(seconds)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
